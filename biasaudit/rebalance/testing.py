"""A tiny random diffusers inpainting pipeline for tests and the benchmark (no hub access).

The components follow diffusers' own pipeline tests (a UNet with 9 input channels: 4
latent + 1 mask + 4 masked-image latent; a two-block VAE; a 5-layer, 32-wide CLIP text
model) with one difference: the CLIP tokenizer is built offline from a small byte-level
vocabulary and an empty merges file written next to it, instead of being downloaded.

>>> path = write_tiny_inpaint_pipeline("tiny-inpaint")  # doctest: +SKIP
>>> run_rebalance("WS", target="hat", out="NEW", method="inpaint", model=path)  # doctest: +SKIP
"""

from __future__ import annotations

import json
from pathlib import Path


def _bytes_to_unicode() -> dict[int, str]:
    # the byte → printable character table of GPT-2 / CLIP byte-level BPE
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, [chr(c) for c in cs], strict=True))


def write_tiny_tokenizer_files(folder: str | Path) -> tuple[Path, Path]:
    """``vocab.json`` (every byte symbol, with and without ``</w>``, plus the two specials)
    and an empty ``merges.txt``: enough for CLIPTokenizer to encode any prompt."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    symbols = list(_bytes_to_unicode().values())
    tokens = ["<|startoftext|>", "<|endoftext|>"] + symbols + [s + "</w>" for s in symbols]
    vocab = {tok: i for i, tok in enumerate(tokens)}
    (folder / "vocab.json").write_text(json.dumps(vocab), "utf-8")
    (folder / "merges.txt").write_text("#version: 0.2\n", "utf-8")
    return folder / "vocab.json", folder / "merges.txt"


def write_tiny_inpaint_pipeline(folder: str | Path, *, seed: int = 0, sample_size: int = 32) -> Path:
    """Build a random StableDiffusionInpaintPipeline and save it (safetensors) to ``folder``.

    ``AutoPipelineForInpainting.from_pretrained(folder)`` loads it back.
    """
    import torch
    from diffusers import (
        AutoencoderKL,
        PNDMScheduler,
        StableDiffusionInpaintPipeline,
        UNet2DConditionModel,
    )
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    folder = Path(folder)
    torch.manual_seed(seed)
    unet = UNet2DConditionModel(
        block_out_channels=(32, 64), layers_per_block=2, sample_size=sample_size, in_channels=9,
        out_channels=4, down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), cross_attention_dim=32,
    )
    torch.manual_seed(seed)
    vae = AutoencoderKL(
        block_out_channels=[32, 64], in_channels=3, out_channels=3,
        down_block_types=["DownEncoderBlock2D", "DownEncoderBlock2D"],
        up_block_types=["UpDecoderBlock2D", "UpDecoderBlock2D"], latent_channels=4,
    )
    vocab, merges = write_tiny_tokenizer_files(folder / "_tokenizer_src")
    tokenizer = CLIPTokenizer(str(vocab), str(merges), model_max_length=77)
    torch.manual_seed(seed)
    text_encoder = CLIPTextModel(CLIPTextConfig(
        bos_token_id=0, eos_token_id=1, hidden_size=32, intermediate_size=37, layer_norm_eps=1e-05,
        num_attention_heads=4, num_hidden_layers=5, pad_token_id=1, vocab_size=len(tokenizer),
    ))
    pipe = StableDiffusionInpaintPipeline(
        unet=unet, scheduler=PNDMScheduler(skip_prk_steps=True, steps_offset=1), vae=vae, text_encoder=text_encoder,
        tokenizer=tokenizer, safety_checker=None, feature_extractor=None, requires_safety_checker=False,
    )
    pipe.save_pretrained(folder, safe_serialization=True)
    import shutil

    shutil.rmtree(folder / "_tokenizer_src")  # saved again under tokenizer/ by the pipeline
    return folder
