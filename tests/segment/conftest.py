"""Fixtures for the segmentation tests: a tiny SynthFaces folder and a tiny random SegFormer."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from biasaudit.core.schema import get_schema
from biasaudit.segment.testing import build_tiny_segformer


@pytest.fixture(scope="session")
def synth_dir(tmp_path_factory) -> Path:
    """24 SynthFaces portraits at 64 px with celebamask-hq masks and 0/1 attributes."""
    from biasaudit.data.synth.faces import SynthFacesConfig, write_synthfaces

    out = tmp_path_factory.mktemp("synth") / "faces"
    write_synthfaces(out, SynthFacesConfig(n=24, seed=3, size=64))
    return out


@pytest.fixture
def synth_copy(synth_dir, tmp_path) -> Path:
    """A private copy of the SynthFaces folder a test may modify."""
    dst = tmp_path / "faces"
    shutil.copytree(synth_dir, dst)
    return dst


@pytest.fixture
def build_segformer():
    """The :func:`build_tiny_segformer` builder, for tests that need their own labels."""
    return build_tiny_segformer


@pytest.fixture(scope="session")
def tiny_segformer(tmp_path_factory) -> Path:
    """A tiny random SegFormer whose labels are the CelebAMask-HQ part names."""
    schema = get_schema("celebamask-hq")
    return build_tiny_segformer(tmp_path_factory.mktemp("models") / "tiny-face", dict(schema.classes))
