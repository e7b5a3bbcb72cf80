"""Benchmark HEML on SynthFaces: wall time, peak memory and per-node quality.

Runs full bottom-up training of the default ``celebamask-hq`` tree (21 nodes) on
SynthFaces (default 2,000 × 128 px, label ``Smiling``) once per mode (sequential,
``--concurrent``), each in a fresh subprocess so its peak RSS is its own, then once more
on a dataset with the planted bias ``Smiling:Blond_Hair=0.9`` (acceptance: the hair node
must see the label only with the plant). Prints a markdown report; ``--append FILE`` adds
it as a section to ``reports/benchmarks.md``.

    python reports/bench/bench_heml.py                                  # CPU, ~10 min on 2 cores
    python reports/bench/bench_heml.py --device cuda --batch-size 128   # GPU: per-node peak memory
    python reports/bench/bench_heml.py --device cuda --batch-size 128 \
        --trunk efficientnet-lite0:finetune --resolution-scale 2 --epochs-scale 2   # heavier GPU setting
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

PLANT = "Smiling:Blond_Hair=0.9"
FOCUS = ("mouth", "ears", "hair", "image")


def make_data(path: Path, *, n: int, size: int, seed: int, plant: str | None) -> None:
    from biasaudit.data.synth import SynthFacesConfig, generate_faces, sample_attributes

    config = SynthFacesConfig(n=n, seed=seed, size=size, plants=(plant,) if plant else ())
    table = sample_attributes(config)
    images, maps = [], []
    for _, image, mask, _ in generate_faces(config, table=table):
        images.append(image)
        maps.append(mask)
    np.savez(path, images=np.stack(images), maps=np.stack(maps), y=table["Smiling"].to_numpy(),
             blond=table["Blond_Hair"].to_numpy())


def worker(spec: dict) -> dict:
    import torch

    from biasaudit.heml import HEML

    torch.set_num_threads(spec["threads"])
    data = np.load(spec["data"])
    images, maps, y = data["images"], data["maps"].astype(np.int64), data["y"]
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    start = time.perf_counter()
    heml = HEML(tree="celebamask-hq", device=spec["device"], concurrent=spec["concurrent"],
                batch_size=spec["batch_size"], epochs_scale=spec["epochs_scale"], trunk=spec["trunk"],
                resolution_scale=spec.get("resolution_scale", 1.0),
                baseline=spec["baseline"], seed=spec["seed"]).fit(images, maps, y)
    wall = time.perf_counter() - start
    baseline = getattr(heml, "baseline_metrics_", None)
    out = {
        # the tree alone: the baseline (trained after it inside fit) is timed on its own
        "wall_s": wall - (baseline["train_seconds"] if baseline else 0.0),
        "rss_before_mb": rss_before,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "device": heml.device_,
        "metrics": heml.metrics_,
        "baseline": baseline,
    }
    if torch.cuda.is_available() and heml.device_.startswith("cuda"):
        out["gpu"] = torch.cuda.get_device_name(0)
    return out


def run_worker(spec: dict) -> dict:
    proc = subprocess.run([sys.executable, __file__, "--worker", json.dumps(spec)], capture_output=True,
                          text=True, env={**os.environ, "BIASAUDIT_PROGRESS": "0"})
    if proc.returncode != 0:
        raise SystemExit(f"worker failed:\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def fmt(x, digits: int = 3) -> str:
    return "–" if x is None or (isinstance(x, float) and not np.isfinite(x)) else f"{x:.{digits}f}"


def machine(threads: int) -> str:
    import torch

    cpu = os.cpu_count()
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return f"{platform.machine()} CPU, {cpu} cores, {gpu}; torch {torch.__version__}, {threads} torch thread(s)"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--epochs-scale", type=float, default=1.0)
    ap.add_argument("--resolution-scale", type=float, default=1.0, help="multiply every node's resolution")
    ap.add_argument("--trunk", default=None, help="force one trunk on every node (default: recipe)")
    ap.add_argument("--modes", default="sequential,concurrent")
    ap.add_argument("--no-plant-check", action="store_true", help="skip the planted-bias run")
    ap.add_argument("--baseline", action="store_true", help="also train the whole-image baseline")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--append", type=Path, help="append the report to this markdown file")
    args = ap.parse_args()
    if args.worker:
        print(json.dumps(worker(json.loads(args.worker)), default=float))
        return

    tmp = Path(tempfile.mkdtemp(prefix="bench_heml_"))
    clean, planted = tmp / "clean.npz", tmp / "planted.npz"
    make_data(clean, n=args.n, size=args.size, seed=args.seed, plant=None)
    base = {"device": args.device, "batch_size": args.batch_size, "epochs_scale": args.epochs_scale,
            "resolution_scale": args.resolution_scale,
            "trunk": args.trunk, "threads": args.threads, "seed": args.seed}
    runs = {}
    for mode in args.modes.split(","):
        spec = {**base, "data": str(clean), "concurrent": mode == "concurrent",
                "baseline": args.baseline and mode == "sequential"}
        runs[mode] = run_worker(spec)
        print(f"{mode}: {runs[mode]['wall_s']:.1f} s", file=sys.stderr)
    if not args.no_plant_check:
        make_data(planted, n=args.n, size=args.size, seed=args.seed, plant=PLANT)
        runs["planted"] = run_worker({**base, "data": str(planted), "concurrent": False, "baseline": False})

    first = next(iter(runs.values()))
    lines = [
        "## HEML",
        "",
        f"`python reports/bench/bench_heml.py --n {args.n} --size {args.size} --device {args.device} "
        f"--batch-size {args.batch_size} --threads {args.threads} --trunk {args.trunk or 'recipe'} "
        f"--resolution-scale {args.resolution_scale} --epochs-scale {args.epochs_scale}` on {time.strftime('%Y-%m-%d')}. "
        f"Machine: {machine(args.threads)}; "
        f"ran on {first['device']}. SynthFaces {args.n} × {args.size} px, label `Smiling`, default "
        f"`celebamask-hq` recipe (21 nodes, small-cnn trunks, 32 px leaves / 48 px root), 70/30 split.",
        "",
        "| mode | tree wall time (s) | peak RSS (MB) | RSS before fit (MB) | mouth P@1 | ears P@1 | hair P@1 | image P@1 |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for mode, r in runs.items():
        m = r["metrics"]
        label = mode if mode != "planted" else f"sequential, plant `{PLANT}`"
        lines.append(f"| {label} | {r['wall_s']:.1f} | {r['peak_rss_mb']:.0f} | {r['rss_before_mb']:.0f} | "
                     + " | ".join(fmt(m[n]["precision_at_1"]) for n in FOCUS) + " |")
    if "sequential" in runs and "concurrent" in runs:
        s, c = runs["sequential"], runs["concurrent"]
        lines += ["", f"Concurrent speed-up: {s['wall_s'] / c['wall_s']:.2f}× "
                      f"(peak RSS {c['peak_rss_mb'] - s['peak_rss_mb']:+.0f} MB vs sequential)."]
    seq = runs.get("sequential") or first
    if seq.get("baseline"):
        b = seq["baseline"]
        lines += ["", f"Whole-image baseline (same pixel budget, {b['epochs']} epochs at {b['resolution']} px): "
                      f"P@1 {fmt(b['precision_at_1'])}, MAP@R {fmt(b['map_at_r'])}, {b['train_seconds']:.1f} s."]
    lines += ["", "Per node (first mode; chance P@1 = Σ class share²):", "",
              "| node | n_train | n_test | res | epochs | P@1 | MAP@R | chance | train s | peak GPU MB |",
              "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for node, m in first["metrics"].items():
        lines.append(f"| {node} | {m['n_train']} | {m['n_test']} | {m['resolution']} | {m['epochs']} | "
                     f"{fmt(m['precision_at_1'])} | {fmt(m['map_at_r'])} | {fmt(m['chance_p_at_1'])} | "
                     f"{m['train_seconds']:.1f} | {fmt(m['peak_gpu_mem_mb'], 0)} |")
    gpu_peaks = [m["peak_gpu_mem_mb"] for m in first["metrics"].values() if m["peak_gpu_mem_mb"] is not None]
    if gpu_peaks:
        lines += ["", f"Peak GPU memory per node: max {max(gpu_peaks):.0f} MB at batch {args.batch_size} "
                      f"(paper: 2–3 GB per node; goal < 1 GB)."]
    report = "\n".join(lines) + "\n"
    print(report)
    (tmp / "result.json").write_text(json.dumps(runs, default=float, indent=1))
    if args.append:
        args.append.parent.mkdir(parents=True, exist_ok=True)
        existing = args.append.read_text("utf-8") if args.append.is_file() else "# Benchmarks\n"
        args.append.write_text(existing.rstrip("\n") + "\n\n" + report, "utf-8")


if __name__ == "__main__":
    main()
