"""Benchmark rebalance: recombine throughput (samples/s) at 128 and 512 px with the quality
gate's rejection rate, plus the whole command (plan → NEW → closing check) at 128 px.

Per size: SynthFaces with ``Smiling:Blond_Hair=0.9`` (default 300 portraits), scanned with
``--no-heml``; then

- **core**: ``swap_part`` + ``check_sample`` on the planned (base, donor) pairs of a
  ``rebalance --target hair`` plan, in memory (images decoded beforehand), one thread;
- **end to end** (128 px only): ``run_rebalance`` wall time, which adds decoding, PNG
  writing, hard links, labels.csv and the closing mask-statistics scan.

Prints a markdown section; ``--append FILE`` adds it to ``reports/benchmarks.md``.

    OMP_NUM_THREADS=1 python reports/bench/bench_rebalance.py
    OMP_NUM_THREADS=1 python reports/bench/bench_rebalance.py --sizes 128 --n 1000 --samples 2000

GPU inpainting at 512 px is not timed here: no GPU was lent when this was written.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path


def _dataset(root: Path, size: int, n: int) -> Path:
    from biasaudit.audit.scan import run_scan
    from biasaudit.data.synth import SynthFacesConfig, write_synthfaces

    data = root / f"faces{size}"
    write_synthfaces(data, SynthFacesConfig(n=n, seed=0, size=size, plants=("Smiling:Blond_Hair=0.9",)))
    run_scan(data, root / f"ws{size}", labels=["Smiling"], causal=["mouth", "u_lip", "l_lip"], heml=False,
             device="cpu")
    return root / f"ws{size}"


def core(ws: Path, samples: int) -> dict:
    from biasaudit.rebalance import api
    from biasaudit.rebalance.gate import check_sample
    from biasaudit.rebalance.recombine import RecombineError, swap_part

    scan = api.read_scan(ws)
    kind = "colour"
    values, labels = api._values_and_labels(scan, "hair", kind, "Smiling")
    plan = api.make_plan(api._counts(values, labels)[lambda t: t.sum(axis=1) >= api.MIN_SUPPORT])
    jobs = api._assign(plan, scan, "hair", kind, values, labels, seed=0, max_tries=1)[:samples]
    load = api._loader(scan)
    seg = scan.segments[(scan.segments.part == "hair") & scan.segments.present]
    area = (float(seg.area_frac.min()), float(seg.area_frac.max()))
    pairs = [(job, load(job.base), load(job.donors[0])) for job in jobs if job.donors]
    hair = [scan.schema.id_of("hair")]
    rejected = {"recombine_failed": 0}
    t0, c0 = time.perf_counter(), time.process_time()
    for job, (bi, bm), (di, dm) in pairs:
        try:
            out = swap_part(bi, bm, di, dm, part_ids=hair, schema=scan.schema, seed=job.index)
        except RecombineError:
            rejected["recombine_failed"] += 1
            continue
        verdict = check_sample(out.image, out.mask, schema=scan.schema, part="hair", attribute=kind,
                               expected_value=job.attribute_value, area_range=area)
        if not verdict.ok:
            rejected[verdict.reason] = rejected.get(verdict.reason, 0) + 1
    secs, cpu = time.perf_counter() - t0, time.process_time() - c0
    n_rej = sum(rejected.values())
    return {"samples": len(pairs), "seconds": secs, "per_s": len(pairs) / secs, "per_cpu_s": len(pairs) / cpu,
            "rejected": rejected,
            "reject_rate": n_rej / max(1, len(pairs))}


def end_to_end(ws: Path, out: Path) -> dict:
    from biasaudit.rebalance.api import run_rebalance

    t0, c0 = time.perf_counter(), time.process_time()
    r = run_rebalance(ws, target="hair", out=out, overwrite=True)
    secs, cpu = time.perf_counter() - t0, time.process_time() - c0
    n = r.generated + r.edited
    tried = n + r.failed + sum(r.rejected.values())
    return {"samples": n, "seconds": secs, "per_s": n / secs, "per_cpu_s": n / cpu, "reject_rate": sum(r.rejected.values()) / max(1, tried),
            "rejected": {k: v for k, v in r.rejected.items() if v}, "after_v": r.after["cramers_v"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="128,512")
    ap.add_argument("--n", type=int, default=300, help="portraits per dataset")
    ap.add_argument("--samples", type=int, default=600, help="samples timed in the core loop")
    ap.add_argument("--no-end-to-end", action="store_true")
    ap.add_argument("--append", type=Path, default=None)
    args = ap.parse_args()
    os.environ.setdefault("BIASAUDIT_PROGRESS", "0")
    lines = ["", "## Rebalance (`bench_rebalance.py`)", "",
             f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, OMP_NUM_THREADS="
             f"{os.environ.get('OMP_NUM_THREADS', 'unset')}, load average {os.getloadavg()[0]:.1f} at start. "
             f"SynthFaces n={args.n}, `Smiling:Blond_Hair=0.9`, `--target hair` (decorrelate).", "",
             "samples/CPU-s divides by this process's CPU time: on a shared machine it is the figure",
             "that says what one idle core would do; wall samples/s is what this run saw.", "",
             "| px | what | samples | wall s | samples/s (wall) | samples/CPU-s | gate rejection rate | rejects by reason |",
             "|---|---|---|---|---|---|---|---|"]
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for size in [int(s) for s in args.sizes.split(",")]:
            ws = _dataset(root, size, args.n)
            c = core(ws, args.samples)
            lines.append(f"| {size} | swap_part + gate | {c['samples']} | {c['seconds']:.1f} | {c['per_s']:.1f} | "
                         f"{c['per_cpu_s']:.1f} | {c['reject_rate']:.1%} | {c['rejected']} |")
            print(lines[-1], file=sys.stderr)
            if size == 128 and not args.no_end_to_end:
                e = end_to_end(ws, root / "new128")
                lines.append(f"| {size} | run_rebalance end to end | {e['samples']} | {e['seconds']:.1f} | "
                             f"{e['per_s']:.1f} | {e['per_cpu_s']:.1f} | {e['reject_rate']:.1%} | {e['rejected']} |")
                print(lines[-1], file=sys.stderr)
    text = "\n".join(lines) + "\n"
    print(text)
    if args.append:
        with open(args.append, "a", encoding="utf-8") as fh:
            fh.write(text)


if __name__ == "__main__":
    main()
