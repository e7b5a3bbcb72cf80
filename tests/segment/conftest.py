"""Fixtures for the segmentation tests: a tiny SynthFaces folder and a tiny random SegFormer."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from biasaudit.core.schema import get_schema


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


def build_tiny_segformer(directory: Path, id2label: dict[int, str], *, size: int = 32, seed: int = 0) -> Path:
    """Save a randomly initialised two-stage SegFormer and its image processor to ``directory``."""
    import torch
    from transformers import (
        SegformerConfig,
        SegformerForSemanticSegmentation,
        SegformerImageProcessor,
    )

    config = SegformerConfig(
        num_channels=3, num_encoder_blocks=2, depths=[1, 1], sr_ratios=[2, 1], hidden_sizes=[8, 16],
        num_attention_heads=[1, 1], patch_sizes=[7, 3], strides=[4, 2], mlp_ratios=[2, 2],
        decoder_hidden_size=16, num_labels=len(id2label),
        id2label={int(k): v for k, v in id2label.items()}, label2id={v: int(k) for k, v in id2label.items()},
    )
    torch.manual_seed(seed)
    model = SegformerForSemanticSegmentation(config).eval()
    model.save_pretrained(directory)
    SegformerImageProcessor(size={"height": size, "width": size}).save_pretrained(directory)
    return directory


@pytest.fixture
def build_segformer():
    """The :func:`build_tiny_segformer` builder, for tests that need their own labels."""
    return build_tiny_segformer


@pytest.fixture(scope="session")
def tiny_segformer(tmp_path_factory) -> Path:
    """A tiny random SegFormer whose labels are the CelebAMask-HQ part names."""
    schema = get_schema("celebamask-hq")
    return build_tiny_segformer(tmp_path_factory.mktemp("models") / "tiny-face", dict(schema.classes))
