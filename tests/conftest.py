"""Shared test set-up: no network, no progress bars, and paths to optional real data."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# Nothing in the suite may reach a model hub; fail loudly instead of downloading.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("BIASAUDIT_PROGRESS", "0")

REAL_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "real"


@pytest.fixture(scope="session")
def real_data_dir() -> Path:
    """``../shared/data/real`` beside the checkout; tests using it skip when it is absent."""
    if not REAL_DATA.is_dir():
        pytest.skip(f"real data not found at {REAL_DATA}")
    return REAL_DATA


@pytest.fixture(scope="session")
def ccp_dir(real_data_dir: Path) -> Path:
    path = real_data_dir / "ccp"
    if not (path / "photos").is_dir():
        pytest.skip(f"Clothing Co-Parsing not found at {path}")
    return path
