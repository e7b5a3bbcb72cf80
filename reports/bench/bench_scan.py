"""Issue-5 scan benchmark: (a) the acceptance matrix, (b) scan time against dataset size.

(a) For both generators (SynthFaces and the independent one in
``tests/audit/independent_faces.py``), n images each: the three plants at p = 0.75 and
0.9 with 3 seeds, the rare gray hair with 3 seeds, and the control with 5 seeds; prints
one markdown row per scan (dataset, setting, seed, top flagged finding, pass/fail).
(b) A full scan (segment → HEML on the CPU → attributes → findings) of SynthFaces at
1000 / 2000 / 4000 images: wall time per stage, total including generation, and the
peak resident memory of the scanning process.

    .venv/bin/python reports/bench/bench_scan.py matrix --n 2000 --no-heml
    .venv/bin/python reports/bench/bench_scan.py timing --sizes 1000,2000,4000
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

import click

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "audit"))
os.environ.setdefault("BIASAUDIT_PROGRESS", "0")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from acceptance_cases import CASES, judge, make_dataset, scan_case  # noqa: E402


def _settings(seeds_plant: int, seeds_control: int):
    for name in ("smiling-blond", "glasses-redcloth", "hat-smiling"):
        for p in (0.75, 0.9):
            for seed in range(seeds_plant):
                yield CASES[name].with_p(p), seed
    for seed in range(seeds_plant):
        yield CASES["rare-gray"], seed
    for seed in range(seeds_control):
        yield CASES["control"], seed


@click.group()
def cli() -> None:
    """Scan acceptance matrix and timing."""


@cli.command()
@click.option("--n", type=int, default=2000, show_default=True)
@click.option("--generators", default="synthfaces,independent", show_default=True)
@click.option("--heml/--no-heml", default=False, show_default=True)
@click.option("--seeds", type=int, default=3, show_default=True, help="Seeds per plant / rare setting.")
@click.option("--control-seeds", type=int, default=5, show_default=True)
@click.option("--only", default="", help="Comma-separated case names to run (default: all).")
def matrix(n: int, generators: str, heml: bool, seeds: int, control_seeds: int, only: str) -> None:
    """The acceptance matrix as a markdown table."""
    click.echo(f"n={n}, heml={heml}\n")
    click.echo("| dataset | setting | seed | top flagged finding (segment / attribute / severity) | result | scan s |")
    click.echo("|---|---|---|---|---|---|")
    rows = matrix_rows(n=n, generators=generators.split(","), heml=heml, seeds=seeds, control_seeds=control_seeds,
                       only={s for s in only.split(",") if s},
                       echo=lambda r: click.echo(f"| {r['generator']} | {r['setting']} | {r['seed']} | {r['top']} | "
                                                 f"{'pass' if r['ok'] else '**FAIL**'} | {r['seconds']:.1f} |"))
    click.echo(f"\n{sum(r['ok'] for r in rows)}/{len(rows)} passed")


def matrix_rows(*, n: int, generators: list[str], heml: bool, seeds: int, control_seeds: int,
                only: set[str] = frozenset(), echo=None) -> list[dict]:
    """Scan every (generator, setting, seed) of the matrix; one dict per scan."""
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-scan-") as tmp:
        for generator in generators:
            for case, seed in _settings(seeds, control_seeds):
                if only and case.name.split(" ")[0] not in only:
                    continue
                data, ws = Path(tmp) / "data", Path(tmp) / "ws"
                shutil.rmtree(data, ignore_errors=True)
                shutil.rmtree(ws, ignore_errors=True)
                make_dataset(generator, data, case, n=n, seed=seed)
                t0 = time.perf_counter()
                result = scan_case(data, ws, case, seed=seed, heml=heml)
                ok, text = judge(case, result.findings)
                rows.append({"generator": generator, "setting": case.name, "seed": seed, "top": text, "ok": bool(ok),
                             "seconds": time.perf_counter() - t0, "n": n, "heml": heml})
                if echo is not None:
                    echo(rows[-1])
    return rows


@cli.command()
@click.option("--sizes", default="1000,2000,4000", show_default=True)
@click.option("--heml/--no-heml", default=True, show_default=True)
@click.option("--size", "px", type=int, default=128, show_default=True)
def timing(sizes: str, heml: bool, px: int) -> None:
    """Full scan time per stage at several dataset sizes (one process per size)."""
    import subprocess

    click.echo("| images | generate s | segment s | heml s | audit s | scan total s | total s | peak RSS MiB | top finding |")
    click.echo("|---|---|---|---|---|---|---|---|---|")
    for n in (int(s) for s in sizes.split(",")):
        # a fresh process per size, so the peak RSS is this size's alone
        out = subprocess.run([sys.executable, __file__, "one", "--n", str(n), "--size", str(px),
                              "--heml" if heml else "--no-heml"], capture_output=True, text=True, check=True)
        click.echo(out.stdout.strip().splitlines()[-1])


@cli.command(hidden=True)
@click.option("--n", type=int, required=True)
@click.option("--size", "px", type=int, default=128)
@click.option("--heml/--no-heml", default=True)
@click.option("--json", "as_json", is_flag=True, help="Print the figures as one JSON line instead of a table row.")
def one(n: int, px: int, heml: bool, as_json: bool) -> None:
    r = scan_once(n=n, px=px, heml=heml)
    if as_json:
        click.echo(json.dumps(r))
        return
    s = r["stages"]
    click.echo(f"| {n} | {r['generate_s']:.1f} | {s.get('segment', 0):.1f} | {s.get('heml', 0):.1f} "
               f"| {s.get('audit', 0):.1f} | {r['scan_s']:.1f} | {r['total_s']:.1f} | {r['peak_rss_mib']:.0f} | "
               f"{r['top'] or 'none'} |")


def scan_once(*, n: int, px: int, heml: bool) -> dict:
    """Generate SynthFaces (n, px px, blond hair planted on Smiling) and scan it once: seconds per
    scan stage, generation, total, and this process's peak RSS (run it in a fresh process)."""
    case = CASES["smiling-blond"]
    with tempfile.TemporaryDirectory(prefix="bench-scan-") as tmp:
        t0 = time.perf_counter()
        data = make_dataset("synthfaces", Path(tmp) / "data", case, n=n, seed=0, size=px)
        t_gen = time.perf_counter() - t0
        result = scan_case(data, Path(tmp) / "ws", case, seed=0, heml=heml, device="cpu")
        total = time.perf_counter() - t0
    top = result.flagged[0] if result.flagged else None
    return {"n": n, "px": px, "heml": heml, "generate_s": t_gen, "stages": dict(result.seconds),
            "scan_s": sum(result.seconds.values()), "total_s": total,
            "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "top": f"{top.attribute} ({top.severity:.2f})" if top else None}


if __name__ == "__main__":
    cli()
