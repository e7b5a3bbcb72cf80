"""Issue 13: peak resident memory of ``biasaudit scan`` against the number of images.

Each scan runs in a fresh process on SynthFaces (128 px, Smiling planted on blond hair);
its peak RSS is the kernel's ``ru_maxrss`` of that process (``os.wait4``: what
``/usr/bin/time -v`` prints as "Maximum resident set size"). The goal is flat memory:

- ``--no-heml`` (mask statistics only): n = 2,000 against n = 20,000, less than 30% apart;
- with HEML (self-supervised, ``--epochs-scale`` shortens training, memory does not
  depend on it): n = 2,000 against n = 8,000.

``--heap-sizes 2000,20000`` also measures the segment stage's Python heap
(``tracemalloc`` in a fresh process, ``segment_dataset`` with the dataset's masks, one
thread): the peak while the dataset is opened and validated, the peak while it is
segmented, and the most held at the end of a segmented batch; their growth per image
between the sizes says what the stage keeps per image (goal: nothing but a few bytes).

Datasets are generated once into ``--work`` and reused; every scan gets a fresh workspace.
``--report`` also renders the HTML report (the default of ``biasaudit scan``); without it
the scan alone is measured (``--no-report``).

    OMP_NUM_THREADS=1 nice -n 10 python reports/bench/bench_memory.py --work /tmp/bench_memory

``main(argv)`` runs it from Python (the benchmark runner) and returns the records
(figures, ratios, facts).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from reports.bench.records import fact, figure, ratio  # noqa: E402

#: the issue's goal: peak RSS of the larger scan at most this much above the smaller one's
GOAL = 0.30


def dataset(work: Path, n: int, *, seed: int = 0) -> Path:
    """SynthFaces with ``n`` images under ``work`` (generated once, reused after)."""
    path = work / f"faces{n}"
    done = path / "synth.json"
    if done.is_file() and len(list((path / "images").iterdir())) == n:
        return path
    shutil.rmtree(path, ignore_errors=True)
    subprocess.run([sys.executable, "-m", "biasaudit", "-q", "synth", "faces", "--n", str(n), "--seed", str(seed),
                    "--out", str(path), "--plant", "Smiling:Blond_Hair=0.8"], check=True)
    return path


def peak_rss(cmd: list[str], *, env: dict[str, str]) -> tuple[float, float, int]:
    """(peak RSS in MiB, wall seconds, exit status) of ``cmd`` run as a child process."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited with {proc.returncode}:\n{err[-3000:]}")
    return usage.ru_maxrss / 1024.0, time.perf_counter() - start, proc.returncode


def scan_peak(data: Path, work: Path, *, heml: bool, epochs_scale: float, report: bool) -> tuple[float, float]:
    ws = Path(tempfile.mkdtemp(prefix="ws-", dir=work))
    try:
        cmd = [sys.executable, "-m", "biasaudit", "-q", "scan", str(data), "--out", str(ws), "--label", "Smiling",
               "--device", "cpu", "--report" if report else "--no-report"]
        cmd += ["--epochs-scale", str(epochs_scale)] if heml else ["--no-heml"]
        env = {**os.environ, "BIASAUDIT_PROGRESS": "0", "HF_HUB_OFFLINE": "1"}
        rss, seconds, _ = peak_rss(cmd, env=env)
        return rss, seconds
    finally:
        shutil.rmtree(ws, ignore_errors=True)


#: run in a child process: tracemalloc around segment_dataset, split at the manifest's save
HEAP_CODE = """
import json, sys, tracemalloc
import pandas, pyarrow  # imported before tracing: module state is not per image
import biasaudit.segment.pipeline as pipeline
state = {"held_segmenting": 0}
kill_point = pipeline.kill_point
def spy(name):
    current, peak = tracemalloc.get_traced_memory()
    if name == "validate":
        state["peak_open_validate"] = peak
        tracemalloc.reset_peak()
    elif name == "segment-batch":
        state["held_segmenting"] = max(state["held_segmenting"], current)
    kill_point(name)
pipeline.kill_point = spy
tracemalloc.start()
pipeline.segment_dataset(sys.argv[1], sys.argv[2], segmenter="masks", workers=1)
state["peak_segmenting"] = tracemalloc.get_traced_memory()[1]
print(json.dumps(state))
"""
HEAP_PARTS = (("peak_open_validate", "Python heap peak, open + validate"),
              ("peak_segmenting", "Python heap peak, segmenting"),
              ("held_segmenting", "Python heap held at a segmented batch"))


def segment_heap(data: Path, work: Path) -> dict[str, int]:
    """The segment stage's Python heap in bytes (see :data:`HEAP_CODE`), in a fresh process."""
    ws = Path(tempfile.mkdtemp(prefix="ws-", dir=work))
    try:
        env = {**os.environ, "BIASAUDIT_PROGRESS": "0", "HF_HUB_OFFLINE": "1"}
        out = subprocess.run([sys.executable, "-c", HEAP_CODE, str(data), str(ws)], env=env, check=True,
                             capture_output=True, text=True)
        return json.loads(out.stdout.strip().splitlines()[-1])
    finally:
        shutil.rmtree(ws, ignore_errors=True)


def run(*, sizes: list[int], heml_sizes: list[int], epochs_scale: float, repeat: int, work: Path,
        report: bool, heap_sizes: list[int] = ()) -> dict:
    """Measure every (mode, n) ``repeat`` times; returns figures, ratios, facts and a table."""
    figures, ratios, facts, rows = [], [], [], []
    heap: dict[int, dict[str, int]] = {}
    for n in heap_sizes:
        heap[n] = segment_heap(dataset(work, n), work)
        for key, name in HEAP_PARTS:
            figures.append(figure(f"segment stage, n={n:,}: {name}", [heap[n][key] / 2**20], unit="MiB", n=n,
                                  command=f"segment_dataset(faces{n}, WS, segmenter='masks', workers=1)"))
    if len(heap) >= 2:
        lo, hi = min(heap), max(heap)
        for key, name in HEAP_PARTS:
            per_image = (heap[hi][key] - heap[lo][key]) / (hi - lo)
            facts.append(fact(f"segment stage: {name}, growth per image from n={lo:,} to n={hi:,} (bytes)",
                              round(per_image, 1)))
    for mode, ns in (("no-heml", sizes), ("heml", heml_sizes)):
        per_n = {}
        for n in ns:
            data = dataset(work, n)
            runs = [scan_peak(data, work, heml=mode == "heml", epochs_scale=epochs_scale, report=report)
                    for _ in range(repeat)]
            cmd = (f"biasaudit scan faces{n} --out WS --label Smiling --device cpu "
                   f"{'--report' if report else '--no-report'} "
                   + (f"--epochs-scale {epochs_scale}" if mode == "heml" else "--no-heml"))
            fig = figure(f"scan {mode}, n={n:,}: peak RSS", [r[0] for r in runs], unit="MiB", n=n, command=cmd)
            figures.append(fig)
            figures.append(figure(f"scan {mode}, n={n:,}: wall time", [r[1] for r in runs], unit="s", n=n,
                                  command=cmd))
            per_n[n] = fig
            rows.append((mode, n, fig["median"], float(sorted(r[1] for r in runs)[len(runs) // 2])))
        if len(per_n) >= 2:
            lo, hi = min(per_n), max(per_n)
            r = ratio(f"scan {mode}: peak RSS n={hi:,} / n={lo:,}", per_n[hi], per_n[lo])
            ratios.append(r)
            facts.append(fact(f"scan {mode}: peak RSS grows < {GOAL:.0%} from n={lo:,} to n={hi:,}",
                              bool(r["value"] - 1 < GOAL), note=f"ratio {r['value']:.3f}"))
    return {"figures": figures, "ratios": ratios, "facts": facts, "rows": rows, "heap": heap,
            "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}"}


def markdown(result: dict) -> str:
    lines = ["| scan | n | peak RSS (MiB) | wall (s) |", "|---|---:|---:|---:|"]
    for mode, n, rss, secs in result["rows"]:
        lines.append(f"| {mode} | {n:,} | {rss:,.0f} | {secs:,.1f} |")
    for r in result["ratios"]:
        lines.append("")
        lines.append(f"{r['name']}: **{r['value']:.2f}×** (goal: < {1 + GOAL:.2f}×)")
    heap = result.get("heap") or {}
    if heap:
        lines += ["", "| segment stage, Python heap (MiB) | " + " | ".join(f"n = {n:,}" for n in heap)
                  + (" | growth per image (B) |" if len(heap) >= 2 else " |"),
                  "|---|" + "---:|" * (len(heap) + (len(heap) >= 2))]
        lo, hi = min(heap), max(heap)
        for key, name in HEAP_PARTS:
            cells = " | ".join(f"{heap[n][key] / 2**20:,.1f}" for n in heap)
            growth = f" | {(heap[hi][key] - heap[lo][key]) / (hi - lo):,.0f} |" if len(heap) >= 2 else " |"
            lines.append(f"| {name} | {cells}{growth}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--sizes", default="2000,20000", help="n for the --no-heml scans (comma-separated)")
    ap.add_argument("--heml-sizes", default="2000,8000", help="n for the HEML scans; '' skips them")
    ap.add_argument("--heap-sizes", default="", help="n for the segment stage's Python heap (e.g. 2000,20000)")
    ap.add_argument("--epochs-scale", type=float, default=0.05, help="HEML epochs multiplier (time only)")
    ap.add_argument("--repeat", type=int, default=1, help="scans per (mode, n); the median is reported")
    ap.add_argument("--work", type=Path, default=None, help="folder for datasets and workspaces (default: a temp dir)")
    ap.add_argument("--report", action="store_true", help="also render report.html (scan's default)")
    ap.add_argument("--quick", action="store_true", help="n = 200 vs 2,000 (no HEML): checks the script in minutes")
    ap.add_argument("--json", type=Path, default=None, help="write the records here")
    args = ap.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",") if s]
    heml_sizes = [int(s) for s in args.heml_sizes.split(",") if s]
    heap_sizes = [int(s) for s in args.heap_sizes.split(",") if s]
    if args.quick:
        sizes, heml_sizes = [200, 2000], []
    work = args.work or Path(tempfile.mkdtemp(prefix="bench_memory-"))
    work.mkdir(parents=True, exist_ok=True)
    result = run(sizes=sizes, heml_sizes=heml_sizes, epochs_scale=args.epochs_scale, repeat=max(1, args.repeat),
                 work=work, report=args.report, heap_sizes=heap_sizes)
    print(markdown(result))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2), "utf-8")
    return result


if __name__ == "__main__":
    main()
