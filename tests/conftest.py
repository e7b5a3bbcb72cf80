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


@pytest.fixture(scope="session")
def train_heml_cli(tmp_path_factory):
    """``biasaudit heml`` on 96 SynthFaces at 64 px with a tiny recipe, on one torch thread;
    ``train(name, recipe, seed=..., data_seed=..., plants=())`` returns (data, ws, result)."""
    import torch
    import yaml
    from click.testing import CliRunner

    from biasaudit.cli import main
    from biasaudit.data.synth import SynthFacesConfig, write_synthfaces

    def train(name: str, recipe: dict, *, seed: int, data_seed: int, plants: tuple[str, ...] = ()):
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            root = tmp_path_factory.mktemp(name)
            data = write_synthfaces(root / "faces", SynthFacesConfig(n=96, seed=data_seed, size=64, plants=plants))
            path = root / "tiny.yaml"
            path.write_text(yaml.safe_dump(recipe))
            ws = root / "ws"
            result = CliRunner().invoke(main, ["-q", "heml", str(data), "--out", str(ws), "--label", "Smiling",
                                               "--recipe", str(path), "--device", "cpu", "--seed", str(seed)])
        finally:
            torch.set_num_threads(threads)
        return data, ws, result

    return train
