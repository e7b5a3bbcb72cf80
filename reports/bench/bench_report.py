"""Benchmark the HTML report at scale: size and render time of a 10,000-image report.

Generates SynthFaces (default 10,000 × 128 px, blond hair planted on Smiling), scans it
with mask statistics only (``--no-heml``: the issue allows it, the report's thumbnails
and sections do not depend on HEML), writes the report, and loads it in headless
Chromium (the system ``/usr/bin/chromium``) three times: the time to the ``load`` event
and the number of decoded images. Thumbnails are sampled, so the size must not grow with
the dataset: acceptance is < 15 MB and < 5 s.

    python reports/bench/bench_report.py                      # ~5 min on 2 shared cores
    python reports/bench/bench_report.py --n 2000 --work /tmp/rb
    python reports/bench/bench_report.py --screenshots reports/   # also the committed screenshots
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tests" / "report"))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=10_000)
    ap.add_argument("--work", type=Path, default=Path("/tmp/bench-report"))
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--loads", type=int, default=3)
    args = ap.parse_args()
    os.environ.setdefault("BIASAUDIT_PROGRESS", "0")
    result = run(n=args.n, work=args.work, workers=args.workers, loads=args.loads)
    print(json.dumps(result, indent=2))
    return 0


def run(*, n: int, work: Path, workers: int = 2, loads: int = 3) -> dict:
    """Generate (or reuse under ``work``), scan, write the report, load it ``loads`` times."""
    from report_browser import chromium_path, load_report

    from biasaudit.audit.scan import run_scan
    from biasaudit.data.synth.faces import SynthFacesConfig, write_synthfaces
    from biasaudit.report import write_report

    data, ws = work / f"data-{n}", work / f"ws-{n}"
    seconds = {}
    t0 = time.perf_counter()
    if not (data / "synth.json").is_file():
        write_synthfaces(data, SynthFacesConfig(n=n, seed=0, plants=("Smiling:Blond_Hair=0.9",)), workers=workers)
    seconds["synth"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    if not (ws / "findings.json").is_file():
        run_scan(data, ws, labels=["Smiling"], causal=["mouth", "u_lip", "l_lip"], heml=False)
    seconds["scan (--no-heml)"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    path = write_report(ws)
    seconds["write_report"] = time.perf_counter() - t0
    size = path.stat().st_size
    load_times = []
    n_images = 0
    if chromium_path():
        for _ in range(loads):
            loaded = load_report(path)
            assert not loaded.console_errors and not loaded.requests, (loaded.console_errors, loaded.requests)
            assert all(img["w"] > 0 for img in loaded.images)
            load_times.append(loaded.load_seconds)
            n_images = len(loaded.images)
    return {"n_images": n, "report_bytes": size, "report_mb": round(size / 2**20, 2),
            "embedded_images": n_images, "chromium_load_s": [round(x, 3) for x in load_times],
            "seconds": {k: round(v, 1) for k, v in seconds.items()}}


if __name__ == "__main__":
    sys.exit(main())
