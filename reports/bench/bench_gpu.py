"""Issue 13, item 3: the GPU path measured against the device's own ceiling (runs on a CPU too).

Three per-image stages, each run through the library as a scan runs it, and read back from
the ``WS/timings.json`` the stage writes (decoding summed over the ``--decode-workers``
threads, the time the model waited for decoded images, the model's compute, images/s):

- *segment, SegFormer-B0, 512 px*: a SegFormer with B0's shapes (random weights: nothing is
  downloaded) over SynthFaces portraits saved as 512-px JPEGs (``segment_dataset``,
  ``segformer:<dir>``, the device's default batch: 8 on a CPU, 64 on a GPU);
- *segment, dataset masks, 128 px*: the same stage reading the dataset's own masks (no
  model: bounded by decoding), also with one decoding worker for the speed-up of N;
- *embed, every node, 128 px*: a self-supervised HEML on the ~21-node celebamask-hq tree
  with an EfficientNet-Lite0 trunk (``--trunk``), fitted briefly on a few images, then
  ``embed_workspace`` over every image (crops of every node, the next chunk decoding
  while this one is embedded).

The ceiling: the model's FLOPs per image, counted with ``torch.utils.flop_counter.FlopCounterMode``
(a SegFormer forward pass; a HEML embedding of every node), against the device's measured
matrix-product rate (``--matmul-size``² matmuls: bf16 on CUDA, float32 on a CPU, which is what
the models run in there; the fastest of 10, measured before and after every run, the better
of the two). ``share of the matmul ceiling`` = images/s × FLOPs per image ÷ that
rate, from the model's compute seconds and from the stage's wall time. On CUDA the GPU's
utilisation is sampled during each stage (``torch.cuda.utilization``, when pynvml is there).

On a CPU (a quick check, small n):

    OMP_NUM_THREADS=1 nice -n 10 python reports/bench/bench_gpu.py --repeat 3

On a GPU machine (the issue's goals: SegFormer-B0 at 512 px ≥ 1,000 images/s end to end,
every node at 128 px ≥ 2,000 images/s, masks bounded by decoding):

    python reports/bench/bench_gpu.py --device cuda --n-seg 4096 --n-embed 8192 --n-masks 8192 --repeat 3

``main(argv)`` runs it from Python (the benchmark runner: ``python -m reports.bench --only gpu``);
``--json PATH`` also writes the records.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

os.environ.setdefault("BIASAUDIT_PROGRESS", "0")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from reports.bench.records import fact, figure, ratio  # noqa: E402

SCHEMA = "celebamask-hq"


# --------------------------------------------------------------------------- ceilings


def matmul_rate(device: str, *, size: int = 2048, repeat: int = 10) -> dict:
    """FLOP/s of ``size``² × ``size``² matrix products on ``device`` (bf16 on CUDA, float32 on
    a CPU): the fastest of ``repeat`` timed runs after a warm-up, i.e. the peak the device
    reached (neighbours on a shared machine can only slow a run down)."""
    import torch

    dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(size, size, generator=gen).to(device, dtype)
    b = torch.randn(size, size, generator=gen).to(device, dtype)
    reps = 20 if device.startswith("cuda") else 1
    times = []
    for k in range(repeat + 1):
        _sync(device)
        t0 = time.perf_counter()
        for _ in range(reps):
            torch.matmul(a, b)
        _sync(device)
        if k:  # the first run warms up (kernel choice, caches)
            times.append((time.perf_counter() - t0) / reps)
    flops = 2.0 * size ** 3
    return {"flops_per_s": flops / min(times), "dtype": str(dtype).replace("torch.", ""),
            "size": size, "threads": torch.get_num_threads()}


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        import torch

        torch.cuda.synchronize()


def segformer_flops(model_dir: Path, size: int) -> float:
    """FLOPs of one SegFormer forward pass on one ``size``² image."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode
    from transformers import AutoModelForSemanticSegmentation

    model = AutoModelForSemanticSegmentation.from_pretrained(model_dir, use_safetensors=True).eval()
    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        model(pixel_values=torch.zeros(1, 3, size, size))
    return float(counter.get_total_flops())


def embed_flops(heml, images, maps) -> float:
    """FLOPs per image of embedding every node (trunks and embedders, present crops only),
    counted on the CPU over ``images``."""
    from torch.utils.flop_counter import FlopCounterMode

    device = heml.device
    heml.device = "cpu"
    try:
        with FlopCounterMode(display=False) as counter:
            heml.embed(images, maps)
    finally:
        heml.device = device
    return float(counter.get_total_flops()) / len(images)


class GpuSampler:
    """The GPU's utilisation (%), sampled every 50 ms while a stage runs (CUDA with pynvml)."""

    def __init__(self, device: str) -> None:
        self.samples: list[float] = []
        self.available = False
        self._stop = threading.Event()
        self._thread = None
        if device.startswith("cuda"):
            import torch

            try:
                torch.cuda.utilization()
                self.available = True
            except Exception:  # noqa: BLE001  (no pynvml / no NVML: utilisation is not measured)
                self.available = False

    def __enter__(self) -> GpuSampler:
        if self.available:
            import torch

            def loop() -> None:
                while not self._stop.wait(0.05):
                    self.samples.append(float(torch.cuda.utilization()))

            self._thread = threading.Thread(target=loop, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    @property
    def mean(self) -> float | None:
        return statistics.fmean(self.samples) if self.samples else None


# --------------------------------------------------------------------------- data and models


def make_data(root: Path, *, n_seg: int, n_masks: int, workers: int, log) -> tuple[Path, Path]:
    """(512-px JPEG portraits without masks, 128-px SynthFaces with masks), generated with
    ``workers`` processes (not timed)."""
    import cv2

    from biasaudit.data.synth.faces import SynthFacesConfig, write_synthfaces

    small = root / "faces128"
    write_synthfaces(small, SynthFacesConfig(n=n_masks, seed=0, size=128, plants=("Smiling:Blond_Hair=0.9",)),
                     workers=workers)
    big = root / "faces512"
    png = root / "faces512-png"
    write_synthfaces(png, SynthFacesConfig(n=n_seg, seed=1, size=512), workers=workers)
    (big / "images").mkdir(parents=True)
    for path in sorted((png / "images").glob("*.png")):
        rgb = cv2.imread(str(path), cv2.IMREAD_COLOR)
        cv2.imwrite(str(big / "images" / f"{path.stem}.jpg"), rgb, [cv2.IMWRITE_JPEG_QUALITY, 90])
    shutil.rmtree(png)
    log(f"data: {n_seg} JPEGs at 512 px, {n_masks} SynthFaces at 128 px")
    return big, small


def build_segformer_b0(path: Path, size: int) -> Path:
    """SegFormer-B0's shapes (transformers' SegformerConfig defaults: hidden 32/64/160/256,
    depths 2/2/2/2, decoder 256) with the schema's labels, random weights, and an image
    processor resizing to ``size``²."""
    import torch
    from transformers import (
        SegformerConfig,
        SegformerForSemanticSegmentation,
        SegformerImageProcessor,
    )

    from biasaudit.core.schema import get_schema

    names = dict(get_schema(SCHEMA).classes)
    torch.manual_seed(0)
    config = SegformerConfig(num_labels=len(names), id2label=names, label2id={v: k for k, v in names.items()})
    SegformerForSemanticSegmentation(config).eval().save_pretrained(path)
    SegformerImageProcessor(size={"height": size, "width": size}).save_pretrained(path)
    return path


# --------------------------------------------------------------------------- stages


def run_segment(data: Path, ws: Path, *, segmenter: str, device: str, workers: int, schema: str | None,
                matmul_size: int) -> dict:
    from biasaudit.core.engine import make_engine, read_stage_timings
    from biasaudit.segment import segment_dataset

    shutil.rmtree(ws, ignore_errors=True)
    # the ceiling is measured on each side of each run (the better of the two): on a shared
    # machine the run and its ceiling see the same neighbours
    before = matmul_rate(device, size=matmul_size)["flops_per_s"]
    with GpuSampler(device) as gpu:
        segment_dataset(data, ws, segmenter=segmenter, schema=schema, device=device,
                        engine=make_engine("local", decode_workers=workers))
    timing = read_stage_timings(ws)["segment"]
    timing["gpu_util_mean"] = gpu.mean
    timing["matmul_flops_per_s"] = max(before, matmul_rate(device, size=matmul_size)["flops_per_s"])
    return timing


def fit_embedder(ws: Path, *, device: str, trunk: str, n_train: int, image_size: int):
    from biasaudit.heml import HEML
    from biasaudit.heml.workspace import load_arrays, usable_images

    ids = usable_images(ws)["image"].tolist()
    images, maps = load_arrays(ws, ids[:n_train], image_size=image_size)
    heml = HEML(tree=SCHEMA, supervision="self", device=device, trunk=trunk, epochs_scale=0.05, seed=0)
    heml.fit(images, maps)
    return heml, ids, images, maps


def run_embed(ws: Path, heml, ids: list[str], *, device: str, workers: int, image_size: int, chunk: int,
              matmul_size: int) -> dict:
    from biasaudit.core.engine import make_engine, read_stage_timings, use_engine
    from biasaudit.heml.workspace import embed_workspace

    shutil.rmtree(ws / "embeddings", ignore_errors=True)
    before = matmul_rate(device, size=matmul_size)["flops_per_s"]
    with GpuSampler(device) as gpu, use_engine(make_engine("local", decode_workers=workers)):
        embed_workspace(ws, heml, ids, image_size=image_size, chunk=chunk)
    timing = read_stage_timings(ws)["embed"]
    timing["gpu_util_mean"] = gpu.mean
    timing["matmul_flops_per_s"] = max(before, matmul_rate(device, size=matmul_size)["flops_per_s"])
    return timing


# --------------------------------------------------------------------------- records


def stage_records(name: str, runs: list[dict], *, flops: float | None, command: str) -> tuple[list, list]:
    n = runs[0]["n_images"]
    images_s = figure(f"{name}: images/s (end to end)", [r["images_per_s"] for r in runs], unit="images/s", n=n,
                      command=command)
    model_s = figure(f"{name}: images/s of the model's compute", [r["n_images"] / max(r["compute_s"], 1e-9)
                                                                   for r in runs], unit="images/s", n=n)
    figures = [images_s] + ([model_s] if flops else []) + [
        figure(f"{name}: wall", [r["wall_s"] for r in runs], unit="s", n=n),
        figure(f"{name}: decoding, summed over workers", [r["decode_s"] for r in runs], unit="s", n=n),
        figure(f"{name}: model waiting for decoded images", [r["wait_s"] for r in runs], unit="s", n=n),
        figure(f"{name}: model compute", [r["compute_s"] for r in runs], unit="s", n=n),
    ]
    for key, what in (("validate_s", "validation before it (decode + sha256)"),
                      ("stats_s", "part statistics, summed over workers"), ("write_s", "writing the embeddings")):
        if key in runs[0]:
            figures.append(figure(f"{name}: {what}", [r[key] for r in runs], unit="s", n=n))
    ratios = [ratio(f"{name}: share of the wall time the model computes (busy)",
                    figure("compute", [r["compute_s"] for r in runs], unit="s", n=n),
                    figure("wall", [r["wall_s"] for r in runs], unit="s", n=n))]
    if flops:
        # per run, against the matmul rate measured just before it: the median of those shares
        figures += [
            figure(f"{name}: matmul ceiling (matmul rate / FLOPs per image)",
                   [r["matmul_flops_per_s"] / flops for r in runs], unit="images/s", n=None),
            figure(f"{name}: share of the matmul ceiling, model compute",
                   [r["n_images"] * flops / max(r["compute_s"], 1e-9) / r["matmul_flops_per_s"] for r in runs],
                   unit="ratio", n=n),
            figure(f"{name}: share of the matmul ceiling, end to end",
                   [r["images_per_s"] * flops / r["matmul_flops_per_s"] for r in runs], unit="ratio", n=n),
        ]
    util = [r["gpu_util_mean"] for r in runs if r.get("gpu_util_mean") is not None]
    if util:
        figures.append(figure(f"{name}: GPU utilisation (sampled)", util, unit="%", n=n))
    return figures, ratios


def run(*, device: str = "auto", n_seg: int | None = None, n_masks: int | None = None, n_embed: int | None = None,
        repeat: int = 3, workers: int | None = None, trunk: str = "efficientnet-lite0", matmul_size: int | None = None,
        embed_chunk: int | None = None, work: Path | None = None, log=print) -> dict:
    import torch

    from biasaudit.core.engine import default_decode_workers
    from biasaudit.heml.workspace import EMBED_CHUNK
    from biasaudit.segment.base import resolve_device

    device = resolve_device(device)
    cuda = device.startswith("cuda")
    n_seg = n_seg or (4096 if cuda else 16)
    n_masks = n_masks or (8192 if cuda else 400)
    n_embed = n_embed or (8192 if cuda else 200)
    workers = workers or default_decode_workers()
    matmul_size = matmul_size or (8192 if cuda else 1024)
    own = work is None
    work = Path(tempfile.mkdtemp(prefix="bench_gpu-")) if own else Path(work)
    try:
        rate = matmul_rate(device, size=matmul_size)
        log(f"matmul: {rate['flops_per_s'] / 1e12:.3f} TFLOP/s ({rate['dtype']}, {matmul_size}², "
            f"{rate['threads']} torch threads)")
        embed_chunk = embed_chunk or (EMBED_CHUNK if cuda else 64)
        big, small = make_data(work, n_seg=n_seg, n_masks=max(n_masks, n_embed), workers=workers, log=log)
        model = build_segformer_b0(work / "segformer-b0", 512)
        seg_flops = segformer_flops(model, 512)
        log(f"SegFormer-B0 at 512 px: {seg_flops / 1e9:.2f} GFLOP per image")

        figures, ratios, details = [], [], {}

        def record(key: str, title: str, runs: list[dict], *, flops: float | None, command: str) -> None:
            details[key] = runs
            f, r = stage_records(title, runs, flops=flops, command=command)
            figures.extend(f)
            ratios.extend(r)
            log(f"{key}: {runs[-1]}")

        spec = f"segformer:{model}"
        record("segformer", "segment, SegFormer-B0, 512 px",
               [run_segment(big, work / "ws-seg", segmenter=spec, device=device, workers=workers, schema=SCHEMA,
                            matmul_size=matmul_size) for _ in range(repeat)],
               flops=seg_flops, command="segment_dataset(DATA512, WS, segmenter='segformer:B0')")
        record("masks", "segment, dataset masks, 128 px",
               [run_segment(small, work / "ws-masks", segmenter="masks", device=device, workers=workers,
                            schema=None, matmul_size=matmul_size) for _ in range(repeat)],
               flops=None, command="segment_dataset(DATA128, WS, segmenter='masks')")
        if workers > 1:  # what the decoding workers buy where decoding is the bound
            one = [run_segment(small, work / "ws-masks-1", segmenter="masks", device=device, workers=1,
                               schema=None, matmul_size=matmul_size) for _ in range(repeat)]
            details["masks_one_worker"] = one
            many = next(f for f in figures if f["name"] == "segment, dataset masks, 128 px: images/s (end to end)")
            single = figure("segment, dataset masks, 128 px: images/s with --decode-workers 1",
                            [r["images_per_s"] for r in one], unit="images/s", n=one[0]["n_images"])
            figures.append(single)
            ratios.append(ratio(f"segment, dataset masks, 128 px: --decode-workers {workers} / 1", many, single))

        ws = work / "ws-masks"
        heml, ids, images, maps = fit_embedder(ws, device=device, trunk=trunk, n_train=min(64, len(ids_of(ws))),
                                               image_size=128)
        per_image = embed_flops(heml, images[:16], maps[:16])
        log(f"HEML embedding ({len(heml.tree_.nodes)} nodes, {trunk}) at 128 px: {per_image / 1e9:.3f} GFLOP per image")
        record("embed", f"embed, {len(heml.tree_.nodes)} nodes ({trunk}), 128 px",
               [run_embed(ws, heml, ids[:n_embed], device=device, workers=workers, image_size=128,
                          chunk=embed_chunk, matmul_size=matmul_size) for _ in range(repeat)],
               flops=per_image, command=f"embed_workspace(WS128, heml, ids, chunk={embed_chunk})")

        gpu = torch.cuda.get_device_name(0) if cuda else "none"
        facts = [
            fact("device", device + (f" ({gpu})" if cuda else "")),
            fact("machine", f"{os.cpu_count()} CPUs ({platform.processor() or platform.machine()}), "
                            f"{len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else os.cpu_count()} "
                            f"usable; torch {torch.__version__}, {torch.get_num_threads()} threads"),
            fact("decode workers", workers),
            fact("matmul rate (first measurement; each run has its own)",
                 f"{rate['flops_per_s'] / 1e12:.4g} TFLOP/s ({rate['dtype']}, {matmul_size}²)"),
            fact("embedding chunk (images decoded ahead at once)", embed_chunk),
            fact("SegFormer-B0 FLOPs per 512-px image", f"{seg_flops / 1e9:.3g} G"),
            fact(f"HEML embedding FLOPs per 128-px image ({len(heml.tree_.nodes)} nodes, {trunk})",
                 f"{per_image / 1e9:.3g} G"),
        ]
        if cuda and not any(r.get("gpu_util_mean") is not None for rs in details.values() for r in rs):
            facts.append(fact("GPU utilisation", "not sampled (torch.cuda.utilization needs pynvml)"))
        if not cuda:
            facts.append(fact("GPU figures", "not measured (no GPU): the ratios are against this CPU's matmul rate"))
        return {"figures": figures, "ratios": ratios, "facts": facts,
                "params": {"device": device, "n_seg": n_seg, "n_masks": n_masks, "n_embed": n_embed, "repeat": repeat,
                           "decode_workers": workers, "trunk": trunk, "matmul_size": matmul_size,
                           "embed_chunk": embed_chunk},
                "matmul": rate, "runs": details}
    finally:
        if own:
            shutil.rmtree(work, ignore_errors=True)


def ids_of(ws: Path) -> list[str]:
    from biasaudit.heml.workspace import usable_images

    return usable_images(ws)["image"].tolist()


def markdown(records: dict) -> str:
    from reports.bench.records import fmt

    lines = ["| figure | median | min | max | unit | n |", "|---|---:|---:|---:|---|---:|"]
    for f in records["figures"]:
        lines.append(f"| {f['name']} | {fmt(f['median'])} | {fmt(f['min'])} | {fmt(f['max'])} | {f['unit']} | "
                     f"{fmt(f['n'])} |")
    lines += ["", "| ratio | value |", "|---|---:|"]
    lines += [f"| {r['name']} | {fmt(r['value'])} |" for r in records["ratios"]]
    lines += ["", *(f"- {f['name']}: {f['value']}" for f in records["facts"])]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="auto", help="auto | cpu | cuda[:N]")
    ap.add_argument("--n-seg", type=int, default=None, help="512-px JPEGs through SegFormer-B0 (CPU 16, GPU 4096)")
    ap.add_argument("--n-masks", type=int, default=None, help="128-px images, dataset masks (CPU 400, GPU 8192)")
    ap.add_argument("--n-embed", type=int, default=None, help="128-px images embedded (CPU 200, GPU 8192)")
    ap.add_argument("--repeat", type=int, default=3, help="runs per stage (medians are reported)")
    ap.add_argument("--decode-workers", type=int, default=None, help="default: one per usable CPU")
    ap.add_argument("--trunk", default="efficientnet-lite0", help="HEML trunk of every node")
    ap.add_argument("--matmul-size", type=int, default=None, help="side of the timed matmul (CPU 1024, GPU 8192)")
    ap.add_argument("--embed-chunk", type=int, default=None,
                    help="images per embedding chunk (CPU 64, so a small n still overlaps decoding; GPU 1,024)")
    ap.add_argument("--quick", action="store_true", help="tiny sizes: checks that the script runs")
    ap.add_argument("--json", type=Path, default=None, help="also write the records here")
    args = ap.parse_args(argv)
    sizes = dict(n_seg=args.n_seg, n_masks=args.n_masks, n_embed=args.n_embed)
    if args.quick:
        sizes = {k: v or small for (k, v), small in zip(sizes.items(), (4, 40, 40), strict=True)}
    records = run(device=args.device, repeat=1 if args.quick else args.repeat, workers=args.decode_workers,
                  trunk=args.trunk, matmul_size=args.matmul_size, embed_chunk=args.embed_chunk, log=lambda m: print(m, file=sys.stderr, flush=True),
                  **sizes)
    print(markdown(records))
    if args.json is not None:
        args.json.write_text(json.dumps(records, indent=2, default=str) + "\n", "utf-8")
    return records


if __name__ == "__main__":
    main()
