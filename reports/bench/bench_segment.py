"""Segmentation throughput, cache speed-up and the mediapipe-face overlay picture.

Run from the repository root:

    .venv/bin/python reports/bench/bench_segment.py            # numbers + overlay
    .venv/bin/python reports/bench/bench_segment.py --write    # also update reports/benchmarks.md

Measures, on generated SynthFaces folders (native layout, celebamask-hq masks):
- ``masks``: end-to-end ``segment_dataset`` (validation + mask reading + statistics) on a
  cold workspace, then a warm re-run (every image unchanged → rows reused), and the
  statistics alone (``part_statistics`` on in-memory arrays);
- ``segformer`` with a tiny random SegFormer (2 stages, hidden 8/16) saved to a temp dir,
  processor size = image size: cold run (every image through the model), a re-run after
  deleting segments.parquet (label maps from the WS/masks cache) and a full warm re-run;
- ``mediapipe-face`` per-image latency on skimage's astronaut, and the overlay picture
  ``reports/mediapipe_overlay.png``.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("BIASAUDIT_PROGRESS", "0")

import numpy as np  # noqa: E402

REPO = Path(__file__).resolve().parents[2]


def _timed(fn):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def _tiny_segformer(path: Path, size: int) -> Path:
    from biasaudit.core.schema import get_schema
    from biasaudit.segment.testing import build_tiny_segformer

    return build_tiny_segformer(path, dict(get_schema("celebamask-hq").classes), size=size)


def bench_size(tmp: Path, *, size: int, n: int) -> list[dict]:
    from biasaudit.data import open_dataset, read_image, read_mask
    from biasaudit.data.synth.faces import SynthFacesConfig, write_synthfaces
    from biasaudit.segment import part_statistics, segment_dataset

    data = tmp / f"faces{size}"
    write_synthfaces(data, SynthFacesConfig(n=n, seed=0, size=size))
    rows = []

    ws = tmp / f"ws-masks-{size}"
    cold, t_cold = _timed(lambda: segment_dataset(data, ws, segmenter="masks"))
    warm, t_warm = _timed(lambda: segment_dataset(data, ws, segmenter="masks"))
    assert warm.n_reused == n
    rows.append({"what": f"masks, end to end, {size} px", "n": n, "cold_s": t_cold, "warm_s": t_warm})

    ds = open_dataset(data)
    arrays = [(s.image_id, read_image(s.image_path), read_mask(s, ds.schema)) for s in ds.samples]
    _, t_stats = _timed(lambda: [part_statistics(im, lm, ds.schema, image_id=i) for i, im, lm in arrays])
    rows.append({"what": f"part_statistics only (in memory), {size} px", "n": n, "cold_s": t_stats, "warm_s": None})

    model = _tiny_segformer(tmp / f"tiny{size}", size)
    ws = tmp / f"ws-sf-{size}"
    spec = f"segformer:{model}"
    cold, t_cold = _timed(lambda: segment_dataset(data, ws, segmenter=spec, device="cpu", batch_size=8))
    assert cold.n_segmented == n
    segments = ws / "segments.parquet"  # one file, or a folder of shards
    if segments.is_dir():
        shutil.rmtree(segments)
    else:
        segments.unlink()
    cached, t_cache = _timed(lambda: segment_dataset(data, ws, segmenter=spec, device="cpu", batch_size=8))
    assert cached.n_cached == n and cached.n_segmented == 0
    warm, t_warm = _timed(lambda: segment_dataset(data, ws, segmenter=spec, device="cpu", batch_size=8))
    assert warm.n_reused == n
    rows.append({"what": f"segformer (tiny, CPU), end to end, {size} px", "n": n, "cold_s": t_cold,
                 "warm_s": t_warm, "cache_s": t_cache})
    return rows


def bench_mediapipe(out_png: Path) -> dict:
    import cv2
    from skimage import data as skdata

    from biasaudit.core.schema import get_schema
    from biasaudit.segment import make_segmenter, overlay_parts

    image = skdata.astronaut()
    schema = get_schema("celebamask-hq")
    with make_segmenter("mediapipe-face", schema=schema) as seg:
        seg.segment_batch([image])  # graph start-up is not per-image cost
        reps = 10
        outs, t = _timed(lambda: [seg.segment_batch([image])[0] for _ in range(reps)])
    lm = outs[0]
    picture = overlay_parts(image, lm, schema, legend=True)
    out_png.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(out_png), picture[..., ::-1])
    parts = {schema.classes[i]: int((lm == i).sum()) for i in schema.ids if i and (lm == i).any()}
    return {"per_image_s": t / reps, "parts": parts}


def bench_devices(tmp: Path, *, n: int = 16, size: int = 512) -> str:
    """SegFormer throughput on CPU vs CUDA (bf16 autocast) and how often they agree."""
    import torch
    from transformers import (
        SegformerConfig,
        SegformerForSemanticSegmentation,
        SegformerImageProcessor,
    )

    from biasaudit.core.schema import get_schema
    from biasaudit.segment.segformer import SegformerSegmenter

    schema = get_schema("celebamask-hq")
    names = dict(schema.classes)
    tiny = dict(num_encoder_blocks=2, depths=[1, 1], sr_ratios=[2, 1], hidden_sizes=[8, 16],
                num_attention_heads=[1, 1], patch_sizes=[7, 3], strides=[4, 2], mlp_ratios=[2, 2],
                decoder_hidden_size=16)
    images = [np.random.default_rng(i).integers(0, 256, (size, size, 3), dtype=np.uint8) for i in range(n)]
    lines = [f"| model ({size} px, batch {n}) | device | img/s | pixels equal to CPU fp32 |", "|---|---|---:|---:|"]
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    for label, kwargs in (("tiny random (hidden 8/16)", tiny), ("SegFormer-B0-sized random", {})):
        torch.manual_seed(0)
        path = tmp / label.split()[0]
        SegformerForSemanticSegmentation(SegformerConfig(
            num_labels=len(names), id2label=names, label2id={v: k for k, v in names.items()}, **kwargs,
        )).save_pretrained(path)
        SegformerImageProcessor(size={"height": size, "width": size}).save_pretrained(path)
        reference = None
        for device in devices:
            seg = SegformerSegmenter.from_pretrained(path, schema=schema, device=device, batch_size=n)
            for _ in range(2):  # warm-up: kernels, autotuning
                seg.segment_batch(images)
            if device == "cuda":
                torch.cuda.synchronize()
            out, t = _timed(lambda seg=seg: seg.segment_batch(images))
            if device == "cuda":
                torch.cuda.synchronize()
            reference = reference or out
            agree = float(np.mean([np.mean(a == b) for a, b in zip(reference, out, strict=True)]))
            lines.append(f"| {label} | {device}{' (bf16 autocast)' if device == 'cuda' else ''} | "
                         f"{n / t:.1f} | {agree:.2%} |")
    return "\n".join(lines)


def machine() -> str:
    import torch

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return (f"{os.cpu_count()}-core CPU ({platform.processor() or platform.machine()}), {gpu} "
            f"(torch {torch.__version__}, {torch.get_num_threads()} threads), Python {platform.python_version()}")


def to_markdown(rows: list[dict], mp: dict) -> str:
    lines = [
        "## Segmentation",
        "",
        f"`reports/bench/bench_segment.py` on {machine()}. SynthFaces folders (native layout,",
        "celebamask-hq masks). *cold*: fresh workspace; *warm*: re-run on the same workspace",
        "(every image unchanged, rows reused); *cache*: re-run after deleting segments.parquet",
        "(label maps read from `WS/masks/`, statistics recomputed). Cold end-to-end times include",
        "validation (full decode + sha256 of every image and mask); warm re-runs skip decoding",
        "files whose size and modification time did not change. The cores were shared with other",
        "jobs (load average 2-4), so absolute numbers are noisy; the ratios are the point.",
        "",
        "| what | images | cold s | cold img/s | cache s | warm s | cold / warm |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        warm, cache = r.get("warm_s"), r.get("cache_s")
        cache_txt = "" if cache is None else f"{cache:.2f}"
        warm_txt = "" if warm is None else f"{warm:.2f}"
        ratio_txt = "" if warm is None else f"{r['cold_s'] / warm:.1f}x"
        lines.append(
            f"| {r['what']} | {r['n']} | {r['cold_s']:.2f} | {r['n'] / r['cold_s']:.0f} | "
            f"{cache_txt} | {warm_txt} | {ratio_txt} |"
        )
    lines += [
        "",
        f"mediapipe-face on skimage's astronaut (512×512): {mp['per_image_s'] * 1000:.0f} ms per image "
        f"after start-up; overlay in `reports/mediapipe_overlay.png`; parts (pixels): "
        + ", ".join(f"{k} {v}" for k, v in mp["parts"].items()) + ".",
        "",
        "GPU: `bench_segment.py --devices-only` compares SegFormer on CPU and CUDA (bf16",
        "autocast) on 16 random 512×512 images; run it on a GPU machine and paste the table here.",
        "",
    ]
    return "\n".join(lines)


def write_section(md: str, path: Path) -> None:
    text = path.read_text("utf-8") if path.is_file() else "# Benchmarks\n\n"
    pattern = re.compile(r"^## Segmentation\n.*?(?=^## |\Z)", re.S | re.M)
    text = pattern.sub(md + "\n", text) if pattern.search(text) else text.rstrip("\n") + "\n\n" + md
    path.write_text(text, "utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n128", type=int, default=300, help="images at 128 px")
    parser.add_argument("--n512", type=int, default=60, help="images at 512 px")
    parser.add_argument("--write", action="store_true", help="update reports/benchmarks.md")
    parser.add_argument("--devices-only", action="store_true",
                        help="only compare SegFormer on CPU and CUDA (print a table, write nothing)")
    args = parser.parse_args(argv)
    if args.devices_only:
        tmp = Path(tempfile.mkdtemp(prefix="bench-segment-"))
        try:
            print(machine())
            print(bench_devices(tmp))
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return 0
    tmp = Path(tempfile.mkdtemp(prefix="bench-segment-"))
    try:
        rows = bench_size(tmp, size=128, n=args.n128) + bench_size(tmp, size=512, n=args.n512)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    mp = bench_mediapipe(REPO / "reports" / "mediapipe_overlay.png")
    md = to_markdown(rows, mp)
    print(md)
    if args.write:
        write_section(md, REPO / "reports" / "benchmarks.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
