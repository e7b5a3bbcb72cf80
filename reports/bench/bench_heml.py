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
    python reports/bench/bench_heml.py --modes sequential --embedder dgml --no-plant-check    # DGML nodes
    # the scan's HEML stage (self-supervised) timed against another checkout, one busy process beside it:
    python reports/bench/bench_heml.py --modes sequential --supervision self --no-plant-check \
        --compare-src /path/to/old/checkout --contend 1

Real photos: ``--ccp DIR`` trains label-supervised HEML (``biasaudit heml``'s code path, the
schema's default tree) on Clothing Co-Parsing with a tag as the label, once per seed, with
the whole-image baseline on the same pixel budget, and reports P@1 per node:

    nice -n 10 python reports/bench/bench_heml.py --ccp ../shared/data/real/ccp --ccp-label dress --seeds 0,1,2

Without a GPU: ``--tensor-memory 64,128`` trains the tree on the CPU and counts, per node, the
bytes held by live tensors (``tensor_memory.py``), the figure CUDA's ``max_memory_allocated``
gives, in fp32 and under bf16 autocast as on CUDA; the peak does not depend on the epochs, so a
small ``--epochs-scale`` (0.34: two epochs per leaf, one per parent) keeps it short:

    python reports/bench/bench_heml.py --tensor-memory 64,128 --epochs-scale 0.34

``--compare-src DIR`` runs every mode a second time with ``PYTHONPATH=DIR`` (an older
checkout) right after the current code, so both see the same machine load; the report
gives the ratio. ``--contend K`` keeps K CPU-bound processes busy during every run (a
shared machine). ``--threads 0`` (default) lets biasaudit size the threads from the CPUs
available (``os.sched_getaffinity``).
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

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # the worker runs as a script; `reports` lives beside the package
    sys.path.insert(0, str(ROOT))

from reports.bench.heml_rule import TOLERANCE  # noqa: E402  (issue 12's per-node rule, one place)

PLANT = "Smiling:Blond_Hair=0.9"
FOCUS = ("mouth", "ears", "hair", "image")
ATTENTION_REGION = ("mouth", "u_lip", "l_lip")
ATTENTION_NODES = ("mouth", "lower_face", "face", "head", "image")


def make_data(path: Path, *, n: int, size: int, seed: int, plant: str | None, label: str = "Smiling") -> None:
    from biasaudit.data.synth import SynthFacesConfig, generate_faces, sample_attributes

    config = SynthFacesConfig(n=n, seed=seed, size=size, plants=(plant,) if plant else ())
    table = sample_attributes(config)
    images, maps = [], []
    for _, image, mask, _ in generate_faces(config, table=table):
        images.append(image)
        maps.append(mask)
    np.savez(path, images=np.stack(images), maps=np.stack(maps), y=table[label].to_numpy(),
             blond=table["Blond_Hair"].to_numpy())


def worker(spec: dict) -> dict:
    import torch

    from biasaudit.heml import HEML  # first: it asks OpenMP not to spin before torch loads

    try:
        from biasaudit.core.threads import configure_threads
    except ImportError:  # an older checkout (--compare-src) without it
        configure_threads = None
    if spec["threads"] > 0:
        torch.set_num_threads(spec["threads"])
    elif configure_threads is not None:
        configure_threads()
    data = np.load(spec["data"])
    images, maps, y = data["images"], data["maps"].astype(np.int64), data["y"]
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    start = time.perf_counter()
    extra = {"embedder": spec["embedder"]} if spec.get("embedder") else {}
    if spec.get("n_jobs") is not None:  # "in-process": every node in this process (older checkouts: always)
        extra["n_jobs"] = spec["n_jobs"]
    heml = HEML(tree="celebamask-hq", device=spec["device"], concurrent=spec["concurrent"],
                batch_size=spec["batch_size"], epochs_scale=spec["epochs_scale"], trunk=spec["trunk"],
                resolution_scale=spec.get("resolution_scale", 1.0), supervision=spec.get("supervision", "label"),
                baseline=spec["baseline"], seed=spec["seed"], **extra)
    tensor_peaks = None
    if spec.get("tensor_memory"):  # every node in this process, one at a time: each call is one node
        import biasaudit.heml.estimator as estimator
        from reports.bench.tensor_memory import track_node_training

        with track_node_training(estimator, autocast=spec["tensor_memory"] == "bf16") as tensor_peaks:
            heml.fit(images, maps, y)
    else:
        heml.fit(images, maps, y)
    wall = time.perf_counter() - start
    baseline = getattr(heml, "baseline_metrics_", None)
    out = {
        # the tree alone: the baseline (trained after it inside fit) is timed on its own
        "wall_s": wall - (baseline["train_seconds"] if baseline else 0.0),
        "rss_before_mb": rss_before,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "device": heml.device_,
        "threads": torch.get_num_threads(),
        "metrics": heml.metrics_,
        "baseline": baseline,
        "tensor_peak_mb": tensor_peaks,
    }
    if torch.cuda.is_available() and heml.device_.startswith("cuda"):
        out["gpu"] = torch.cuda.get_device_name(0)
    if spec.get("attention") and spec.get("embedder") == "dgml":
        out["attention"] = attention_report(heml, images, maps, y)
    return out


def attention_report(heml, images, maps, y) -> dict:
    """DGML attention on the mouth and lips at the nodes above them, over the test split
    (issue 12: ≥ 3× the region's share of the node's pixels at the face or the root)."""
    from biasaudit.heml.dgml import attention_on_region

    test = heml.split_["test"]
    codes = np.unique(np.asarray(y).astype(str), return_inverse=True)[1]
    return {node: attention_on_region(heml, images[test], maps[test], node, ATTENTION_REGION, y=codes[test])
            for node in ATTENTION_NODES if node in heml.models_}


def profile_epoch(data: Path, *, repeats: int = 2) -> list[str]:
    """Where one epoch of a 32 px node goes: node inputs, the bare training step,
    augmentation, the miner + loss, and the whole loop, NCHW (before) vs channels_last."""
    import torch

    from biasaudit.heml.inputs import node_inputs
    from biasaudit.heml.losses import build_loss
    from biasaudit.heml.training import DeviceSetup, augment, train_modules
    from biasaudit.heml.tree import default_tree
    from biasaudit.heml.trunks import build_node_model

    d = np.load(data)
    images, maps, y = d["images"], d["maps"].astype(np.int64), d["y"]
    tree = default_tree("celebamask-hq")
    t0 = time.perf_counter()
    inp = node_inputs(images, maps, tree.part_ids("mouth"), resolution=32)
    prep = time.perf_counter() - t0
    n = min(1400, len(images))
    x = torch.from_numpy(inp.crops[:n]).permute(0, 3, 1, 2).contiguous()
    yt = torch.as_tensor(y[:n])
    rows = [f"node inputs (mouth, {len(images)} images, 32 px): {prep:.2f} s",
            "", "| layout | step only img/s | augment img/s | label epoch s (img/s) | self epoch s (img/s) |",
            "| --- | ---: | ---: | ---: | ---: |"]
    for cl in (False, True):
        setup = DeviceSetup(device=torch.device("cpu"), autocast=False, channels_last=cl)
        best = {"step": 1e9, "aug": 1e9, "label": 1e9, "self": 1e9}
        for _ in range(repeats):
            model = build_node_model("small-cnn", seed=0)
            if cl:
                model = model.to(memory_format=torch.channels_last)
            xb = x[:64].float()
            xb = xb.contiguous(memory_format=torch.channels_last) if cl else xb
            opt = torch.optim.Adam(model.parameters())
            t0 = time.perf_counter()
            for _ in range(10):
                loss = model(xb).pow(2).sum()
                opt.zero_grad()
                loss.backward()
                opt.step()
            best["step"] = min(best["step"], (time.perf_counter() - t0) / 640)
            gen = torch.Generator().manual_seed(0)
            t0 = time.perf_counter()
            for _ in range(10):
                augment(xb, gen)
            best["aug"] = min(best["aug"], (time.perf_counter() - t0) / 640)
            for kind in ("label", "self"):
                bundle = build_loss("ntxent" if kind == "self" else "triplet-margin", num_classes=2,
                                    embedding_dim=128, self_supervised=kind == "self")
                t0 = time.perf_counter()
                train_modules([model], [bundle], [x], [None if kind == "self" else yt], normalize=False, epochs=1,
                              batch_size=64, lr=1e-3, loss_lr=1e-2, setup=setup, gen=torch.Generator().manual_seed(0),
                              self_supervised=kind == "self")
                best[kind] = min(best[kind], time.perf_counter() - t0)
        rows.append(f"| {'channels_last' if cl else 'NCHW (before)'} | {1 / best['step']:.0f} | {1 / best['aug']:.0f} | "
                    f"{best['label']:.2f} ({n / best['label']:.0f}) | {best['self']:.2f} ({2 * n / best['self']:.0f} views) |")
    return rows


def ccp_report(data: Path, *, label: str, seeds: list[int], device: str) -> str:
    """Per-node P@1 of label-supervised HEML on real photos (Clothing Co-Parsing, a tag as
    the label), one fit per seed (split and initial weights), with the whole-image baseline
    trained on the same pixel budget. The dataset is only read; masks are the annotations."""
    from biasaudit.core.threads import configure_threads

    configure_threads()
    from biasaudit.heml.workspace import train_label_heml

    fits = []
    with tempfile.TemporaryDirectory(prefix="bench_heml_ccp_") as tmp:
        for seed in seeds:  # one workspace: the segmentation (the CCP label maps) is reused
            start = time.perf_counter()
            model = train_label_heml(data, Path(tmp) / "ws", label=label, device=device, seed=seed,
                                     segmenter="masks", baseline=True, embed=False)
            fits.append((model, time.perf_counter() - start))
            print(f"seed {seed}: {fits[-1][1]:.0f} s", file=sys.stderr)
    tree = fits[0][0].tree_
    head = " | ".join(f"seed {s}" for s in seeds)
    lines = [
        f"`nice -n 10 python reports/bench/bench_heml.py --ccp {data} --ccp-label {label} "
        f"--seeds {','.join(map(str, seeds))}` on {time.strftime('%Y-%m-%d')}, {device}, load average at the end "
        f"{os.getloadavg()[0]:.1f}. Clothing Co-Parsing, {len(fits[0][0].train_images_)} photos, label `{label}` "
        f"(the tag), annotated label maps, the schema's default tree ({len(tree.nodes)} nodes), 70/30 split per seed (15 % of the "
        f"training split held out as validation rows), CPU defaults. Test rows per seed: "
        f"{fits[0][0].metrics_[tree.root]['n_test']}; a node is scored on the test rows that have its parts.",
        "",
        f"| node | test rows (seed {seeds[0]}) | chance | {head} | mean P@1 | mean − chance | ≥ best child − 0.02 |",
        "| --- | ---: | ---: | " + " | ".join("---:" for _ in seeds) + " | ---: | ---: | :---: |",
    ]

    def mean(values: list[float]) -> float:
        finite = [v for v in values if v is not None and np.isfinite(v)]
        return float(np.mean(finite)) if finite else float("nan")

    def walk(name: str, depth: int) -> None:
        ms = [f.metrics_[name] for f, _ in fits]
        p = [m["precision_at_1"] for m in ms]
        kids = tree.nodes[name].children
        rule = ""
        if kids:
            ok = sum(m["precision_at_1"] >= max(f.metrics_[c]["precision_at_1"] for c in kids) - TOLERANCE
                     for (f, _), m in zip(fits, ms, strict=True))
            rule = f"{ok}/{len(fits)}"
        chance = mean([m["chance_p_at_1"] for m in ms])
        lines.append(f"| {'· ' * depth}{name} | {ms[0]['n_test']} | {fmt(chance)} | "
                     + " | ".join(fmt(v) for v in p) + f" | {fmt(mean(p))} | {fmt(mean(p) - chance)} | {rule} |")
        for child in kids:
            walk(child, depth + 1)

    walk(tree.root, 0)
    base = [f.baseline_metrics_ for f, _ in fits]
    bp = [b["precision_at_1"] for b in base]
    bc = mean([b["chance_p_at_1"] for b in base])
    lines.append(f"| whole-image baseline ({base[0]['epochs']} epochs at {base[0]['resolution']} px) | "
                 f"{base[0]['n_test']} | {fmt(bc)} | " + " | ".join(fmt(v) for v in bp)
                 + f" | {fmt(mean(bp))} | {fmt(mean(bp) - bc)} | |")
    lines += ["", "Wall time per seed (tree + baseline, shared machine): "
                  + ", ".join(f"{t:.0f} s" for _, t in fits) + "."]
    return "\n".join(lines) + "\n"


def run_worker(spec: dict, *, src: str | None = None, contend: int = 0) -> dict:
    env = {**os.environ, "BIASAUDIT_PROGRESS": "0"}
    if src:
        env["PYTHONPATH"] = src
        for key in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "KMP_BLOCKTIME"):
            env.pop(key, None)  # the old code ran with OpenMP's defaults
    busy = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(contend)]
    try:
        # through a tiny python: Linux hands a child its parent's peak RSS (ru_maxrss survives
        # vfork + exec), so a worker started straight from a large process (the benchmark runner)
        # would report that peak as its own
        fresh = [sys.executable, "-c", "import subprocess, sys; sys.exit(subprocess.call(sys.argv[1:]))"]
        proc = subprocess.run([*fresh, sys.executable, __file__, "--worker", json.dumps(spec)], capture_output=True,
                              text=True, env=env)
    finally:
        for b in busy:
            b.kill()
            b.wait()
    if proc.returncode != 0:
        raise SystemExit(f"worker failed:\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def tensor_memory_report(data: Path, base: dict, *, batch_sizes: list[int],
                         embedders: list[str]) -> tuple[str, int]:
    """Per-node peak tensor memory of the tree's training, on the CPU (``tensor_memory.py``):
    fp32, and bf16 autocast as HEML trains on CUDA, for each batch size and embedder. Returns
    the markdown table and the torch threads the workers used."""
    columns, peaks, meta, threads = [], {}, {}, 0
    for embedder in embedders:
        for batch in batch_sizes:
            for numerics in ("fp32", "bf16"):
                spec = {**base, "data": str(data), "concurrent": False, "baseline": False, "n_jobs": 1,
                        "batch_size": batch, "embedder": embedder, "attention": False, "tensor_memory": numerics}
                run = run_worker(spec)
                column = f"{embedder}, batch {batch}, {numerics}"
                columns.append(column)
                peaks[column] = {label.removeprefix("HEML "): mb for label, mb in run["tensor_peak_mb"].items()}
                meta, threads = run["metrics"], run["threads"]
                print(f"{column}: max {max(peaks[column].values()):.0f} MiB, {run['wall_s']:.0f} s", file=sys.stderr)
    lines = ["| node | res | n_train | epochs | " + " | ".join(columns) + " |",
             "| --- | ---: | ---: | ---: |" + " ---: |" * len(columns)]
    for node, m in meta.items():
        cells = [fmt(peaks[c].get(node), 0) for c in columns]
        lines.append(f"| {node} | {m['resolution']} | {m['n_train']} | {m['epochs']} | " + " | ".join(cells) + " |")
    lines.append("| **max** | | | | " + " | ".join(f"**{max(peaks[c].values()):.0f}**" for c in columns) + " |")
    return "\n".join(lines), threads


def append_report(path: Path, report: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    existing = path.read_text("utf-8") if path.is_file() else "# Benchmarks\n"
    path.write_text(existing.rstrip("\n") + "\n\n" + report, "utf-8")


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
    ap.add_argument("--modes", default="sequential,concurrent",
                    help="comma-separated: sequential (a level's nodes in one worker process per CPU), "
                         "in-process (every node in this process, n_jobs=1), concurrent (stacked levels)")
    ap.add_argument("--no-plant-check", action="store_true", help="skip the planted-bias run")
    ap.add_argument("--baseline", action="store_true", help="also train the whole-image baseline")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: from the CPUs available)")
    ap.add_argument("--embedder", choices=["mlp", "dgml"], default=None, help="force one embedder (default: recipe)")
    ap.add_argument("--supervision", choices=["label", "self"], default="label",
                    help="self = the scan's HEML stage")
    ap.add_argument("--compare-src", default=None, help="also run each mode with PYTHONPATH=this checkout")
    ap.add_argument("--contend", type=int, default=0, help="CPU-bound processes kept busy during each run")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--label", default="Smiling", help="SynthFaces label the tree learns (the plant check needs Smiling)")
    ap.add_argument("--append", type=Path, help="append the report to this markdown file")
    ap.add_argument("--profile", action="store_true", help="only profile one 32 px node's epoch")
    ap.add_argument("--ccp", type=Path, default=None, metavar="DIR",
                    help="only the real-photo check: Clothing Co-Parsing at DIR (skipped when absent)")
    ap.add_argument("--ccp-label", default="dress", help="CCP tag used as the label (with --ccp)")
    ap.add_argument("--seeds", default="0,1,2", help="seeds of the --ccp fits, comma-separated")
    ap.add_argument("--tensor-memory", default=None, metavar="BATCHES",
                    help="only the per-node peak tensor memory, on the CPU (no GPU needed), at these "
                         "comma-separated batch sizes, fp32 and bf16 autocast; with --embedder, that one "
                         "embedder, else mlp and dgml")
    args = ap.parse_args()
    if args.worker:
        print(json.dumps(worker(json.loads(args.worker)), default=float))
        return
    if args.ccp is not None:
        if not (args.ccp / "photos").is_dir():
            print(f"Clothing Co-Parsing not found at {args.ccp}: skipped.", file=sys.stderr)
            return
        report = "### HEML on real photos (Clothing Co-Parsing)\n\n" + ccp_report(
            args.ccp, label=args.ccp_label, seeds=[int(s) for s in args.seeds.split(",")], device=args.device)
        print(report)
        if args.append:
            append_report(args.append, report)
        return

    tmp = Path(tempfile.mkdtemp(prefix="bench_heml_"))
    clean, planted = tmp / "clean.npz", tmp / "planted.npz"
    make_data(clean, n=args.n, size=args.size, seed=args.seed, plant=None, label=args.label)
    if args.profile:
        import torch

        if args.threads:
            torch.set_num_threads(args.threads)
        print("\n".join([f"One 32 px node, 1,400 crops, batch 64, {torch.get_num_threads()} thread(s), "
                         f"load average {os.getloadavg()[0]:.1f}:", "", *profile_epoch(clean)]))
        return
    base = {"device": args.device, "batch_size": args.batch_size, "epochs_scale": args.epochs_scale,
            "resolution_scale": args.resolution_scale, "embedder": args.embedder,
            "supervision": args.supervision, "attention": args.embedder == "dgml",
            "trunk": args.trunk, "threads": args.threads, "seed": args.seed}
    if args.tensor_memory:
        batches = [int(b) for b in args.tensor_memory.split(",")]
        embedders = [args.embedder] if args.embedder else ["mlp", "dgml"]
        table, threads = tensor_memory_report(clean, {**base, "device": "cpu"}, batch_sizes=batches,
                                              embedders=embedders)
        report = "\n".join([
            "### HEML peak tensor memory per node (CPU count, the GPU's `max_memory_allocated` analogue)", "",
            f"`python reports/bench/bench_heml.py --tensor-memory {args.tensor_memory} --n {args.n} "
            f"--size {args.size} --epochs-scale {args.epochs_scale} --trunk {args.trunk or 'recipe'} "
            f"--resolution-scale {args.resolution_scale}"
            f"{f' --embedder {args.embedder}' if args.embedder else ''}` on {time.strftime('%Y-%m-%d')}. Machine: "
            f"{machine(threads)}. MiB held by live tensors while each node trains (its parameters, "
            f"its inputs, activations, gradients, optimizer state), label `{args.label}`, every node in "
            "one process. bf16: trained under bf16 autocast as on CUDA. Not counted: cuBLAS/cuDNN "
            "workspaces, which only a GPU allocates.", "", table, ""])
        print(report)
        if args.append:
            append_report(args.append, report)
        return
    runs = {}
    for mode in args.modes.split(","):
        spec = {**base, "data": str(clean), "concurrent": mode == "concurrent",
                "baseline": args.baseline and mode == "sequential", "n_jobs": 1 if mode == "in-process" else None}
        runs[mode] = run_worker(spec, contend=args.contend)
        print(f"{mode}: {runs[mode]['wall_s']:.1f} s", file=sys.stderr)
        if args.compare_src:
            old = {**spec, "embedder": None}
            runs[f"{mode}, {args.compare_src}"] = run_worker(old, src=args.compare_src, contend=args.contend)
            print(f"{mode} (old): {runs[f'{mode}, {args.compare_src}']['wall_s']:.1f} s", file=sys.stderr)
    if not args.no_plant_check:
        make_data(planted, n=args.n, size=args.size, seed=args.seed, plant=PLANT)
        runs["planted"] = run_worker({**base, "data": str(planted), "concurrent": False, "baseline": False},
                                     contend=args.contend)

    first = next(iter(runs.values()))
    lines = [
        "## HEML",
        "",
        f"`python reports/bench/bench_heml.py --n {args.n} --size {args.size} --device {args.device} "
        f"--batch-size {args.batch_size} --threads {args.threads} --trunk {args.trunk or 'recipe'} "
        f"--resolution-scale {args.resolution_scale} --epochs-scale {args.epochs_scale} "
        f"--supervision {args.supervision} --embedder {args.embedder or 'recipe'}"
        f"{f' --compare-src {args.compare_src}' if args.compare_src else ''}"
        f"{f' --contend {args.contend}' if args.contend else ''}` on {time.strftime('%Y-%m-%d')}. "
        f"Machine: {machine(first.get('threads', args.threads))}; load average at the end "
        f"{os.getloadavg()[0]:.1f}; "
        f"ran on {first['device']}. SynthFaces {args.n} × {args.size} px, label `{args.label}`, default "
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
    if args.compare_src:
        for mode in args.modes.split(","):
            new, old = runs[mode], runs[f"{mode}, {args.compare_src}"]
            lines += ["", f"{mode}: this code {new['wall_s']:.1f} s, {args.compare_src} {old['wall_s']:.1f} s "
                          f"(ratio old/new {old['wall_s'] / new['wall_s']:.2f}×)."]
    if "sequential" in runs and "in-process" in runs:
        s, i = runs["sequential"], runs["in-process"]
        lines += ["", f"Level workers speed-up: {i['wall_s'] / s['wall_s']:.2f}× (in-process / level workers "
                      f"wall time)."]
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
              "| node | n_train | n_test | res | epochs | P@1 | MAP@R | chance | P@1 all images | "
              "≥ best child − 0.02 | same rows | kept | train s | peak GPU MB |",
              "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | :---: | :---: | --- | ---: | ---: |"]

    def monotone(m: dict, key: str) -> str:
        kids = (m.get("init") or {}).get("children") or []
        best = max((first["metrics"][c].get(key, first["metrics"][c]["precision_at_1"]) for c in kids), default=None)
        return "" if best is None else ("yes" if m["precision_at_1"] >= best - TOLERANCE else f"no ({fmt(best)})")

    for node, m in first["metrics"].items():
        kept = (m.get("selected") or {}).get("kept", "")
        lines.append(f"| {node} | {m['n_train']} | {m['n_test']} | {m['resolution']} | {m['epochs']} | "
                     f"{fmt(m['precision_at_1'])} | {fmt(m['map_at_r'])} | {fmt(m['chance_p_at_1'])} | "
                     f"{fmt(m.get('precision_at_1_all_images'))} | {monotone(m, 'precision_at_1')} | "
                     f"{monotone(m, 'precision_at_1_all_images')} | "
                     f"{kept} | {m['train_seconds']:.1f} | {fmt(m['peak_gpu_mem_mb'], 0)} |")
    att = first.get("attention")
    if att:
        lines += ["", "DGML attention on mouth + lips, test split (ratio = attention mass / the region's "
                      "share of the node's own pixels; label-weighted: groups weighted by their own P@1 above chance; "
                      "prior off: the same parent with its attention prior's strength set to 0, the queries alone; "
                      "prior alone: the prior's bias with the queries set to 0):",
                  "", "| node | share of node pixels | mean of groups | best group | label-weighted | "
                      "prior off: mean / best / label-weighted | prior alone: mean / best | prior's mass on the region |",
                  "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]

        def x(v) -> str:
            return "–" if v is None else f"{v:.2f}×"

        for node, a in att.items():
            r = a["ratio_node"]
            off = (a.get("without_prior") or {}).get("ratio_node", {})
            alone = (a.get("prior_alone") or {}).get("ratio_node", {})
            lines.append(f"| {node} | {a['share_node']:.4f} | {x(r['mean_of_groups'])} | {x(r['best_group'])} | "
                         f"{x(r.get('label_weighted'))} | {x(off.get('mean_of_groups'))} / {x(off.get('best_group'))} / "
                         f"{x(off.get('label_weighted'))} | {x(alone.get('mean_of_groups'))} / "
                         f"{x(alone.get('best_group'))} | {fmt(a.get('prior_mass'), 3)} |")
    gpu_peaks = [m["peak_gpu_mem_mb"] for m in first["metrics"].values() if m["peak_gpu_mem_mb"] is not None]
    if gpu_peaks:
        lines += ["", f"Peak GPU memory per node: max {max(gpu_peaks):.0f} MB at batch {args.batch_size} "
                      f"(paper: 2–3 GB per node; goal < 1 GB)."]
    report = "\n".join(lines) + "\n"
    print(report)
    (tmp / "result.json").write_text(json.dumps(runs, default=float, indent=1))
    if args.append:
        append_report(args.append, report)


if __name__ == "__main__":
    main()
