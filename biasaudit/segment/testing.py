"""A tiny random SegFormer for tests and benchmarks: no hub, no download, a few kB.

>>> from biasaudit.core.schema import get_schema
>>> path = build_tiny_segformer("tiny", dict(get_schema("celebamask-hq").classes))  # doctest: +SKIP
>>> make_segmenter(f"segformer:{path}", schema=get_schema("celebamask-hq"))  # doctest: +SKIP
"""

from __future__ import annotations

from pathlib import Path


def build_tiny_segformer(directory: str | Path, id2label: dict[int, str], *, size: int = 32, seed: int = 0) -> Path:
    """Save a randomly initialised two-stage SegFormer (hidden sizes 8/16) and its image
    processor (``size``² input) to ``directory``; returns the directory."""
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
    return Path(directory)
