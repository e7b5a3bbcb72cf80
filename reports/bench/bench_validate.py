"""Dataset-layer throughput: open_dataset + validate_dataset (full decode, sha256, mask
checks) on the real CCP copy and on a generated native dataset, for 1 and 2 threads.

Run: .venv/bin/python reports/bench/bench_validate.py [--n 1000] [--size 512] [--workers 1,2]
Prints a Markdown table for reports/benchmarks.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

os.environ.setdefault("BIASAUDIT_PROGRESS", "0")

from biasaudit.data import open_dataset, validate_dataset  # noqa: E402
from biasaudit.data.testing import label_map  # noqa: E402

CCP = Path(__file__).resolve().parents[3] / "shared" / "data" / "real" / "ccp"


def make_native(root: Path, n: int, size: int) -> Path:
    rng = np.random.default_rng(0)
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    yy, xx = np.mgrid[0:size, 0:size]
    for i in range(n):
        base = rng.integers(0, 200, 3)
        img = np.stack([(xx + base[0]) % 256, (yy + base[1]) % 256, np.full_like(xx, base[2])], 2).astype(np.uint8)
        Image.fromarray(img).save(root / "images" / f"{i:05d}.jpg", quality=90)
        Image.fromarray(label_map(size, size, (0, 1, 13, 17))).save(root / "masks" / f"{i:05d}.png")
    return root


def bench(root: Path, workers: int, **kw) -> tuple[float, int]:
    start = time.perf_counter()
    m = validate_dataset(open_dataset(root, **kw), workers=workers)
    return time.perf_counter() - start, m.n_ok


def run(*, n: int, size: int, workers: list[int], real: bool = True) -> list[dict]:
    """One dict per (data, workers): seconds and images validated; ``real`` adds the CCP copy
    when it is present."""
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        native = make_native(Path(tmp) / "native", n, size)
        cases = [(f"generated native {size}×{size} JPEG + PNG mask", native, {"schema": "celebamask-hq"})]
        if real and (CCP / "photos").is_dir():
            cases.insert(0, ("CCP real (≈550×830 JPEG + label PNG)", CCP, {}))
        for name, root, kw in cases:
            bench(root, 1, **kw)  # warm the page cache so both runs read from memory
            for w in workers:
                seconds, n_ok = bench(root, w, **kw)
                rows.append({"data": name, "n": n_ok, "workers": w, "seconds": seconds})
    return rows


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--workers", default="1,2", help="comma-separated thread counts")
    args = ap.parse_args()
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPU cores, no GPU")
    print("| data | images | workers | seconds | images/s |")
    print("|---|---|---|---|---|")
    for r in run(n=args.n, size=args.size, workers=list(map(int, args.workers.split(",")))):
        print(f"| {r['data']} | {r['n']} | {r['workers']} | {r['seconds']:.2f} | {r['n'] / r['seconds']:.0f} |")


if __name__ == "__main__":
    main()
