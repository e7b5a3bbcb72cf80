"""Issue-8 audit benchmark: (a) null calibration, (b) detection power.

(a) ``null``: SynthFaces with no plant, several seeds; each dataset scanned once per label
(Smiling, Eyeglasses, Wearing_Hat, Male), each with the parts that show that label in
SynthFaces declared causal. A *false alarm* is a scan with any flagged finding against
the label (association or shortcut) that is not expected evidence (not on a causal part,
not the occluded geometry of one). Also reported: the share of all tests, and of label
tests, that BH rejects at q = 0.01, and those rejections left as findings (off causal).

(b) ``power``: the independent generator (``tests/audit/independent_faces.py``) at
n = 2000, three plants in each dataset on three independent labels, each scanned
with its own label: a colour bias (``Smiling:Blond_Hair``), a presence bias
(``Wearing_Necklace:Bald``) and a size bias (``Young:Long_Hair``) at strengths
0.6 / 0.7 / 0.8 / 0.9; reported: how often the planted part (hair) is the top flagged
finding, and how often its attribute kind is the planted one.

    python reports/bench/bench_audit.py null --n 2000 --seeds 5
    python reports/bench/bench_audit.py null --n 1000 --seeds 2 --heml
    python reports/bench/bench_audit.py power --n 2000 --seeds 2
"""

from __future__ import annotations

import json
import os
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

#: the parts each label shows in in SynthFaces (biasaudit/data/synth/faces.py): Male as hair
#: style, jaw (skin), brow thickness and lipstick
NULL_LABELS = {
    "Smiling": ("mouth", "u_lip", "l_lip"),
    "Eyeglasses": ("eye_g",),
    "Wearing_Hat": ("hat",),
    "Male": ("hair", "skin", "l_brow", "r_brow", "u_lip", "l_lip", "mouth"),
}
#: (label, plant attribute, causal parts, planted attribute kind) for the power table
POWER = {
    "colour": ("Smiling", "Blond_Hair", ("mouth", "u_lip", "l_lip"), "colour"),
    "presence": ("Wearing_Necklace", "Bald", ("neck_l",), "presence"),
    "size": ("Young", "Long_Hair", (), "size"),
}


@click.group()
def cli() -> None:
    """Null calibration and detection power of `biasaudit scan`."""


def _scan(data: Path, ws: Path, label: str, causal, *, seed: int, heml: bool):
    from biasaudit.audit.scan import run_scan

    t0 = time.perf_counter()
    result = run_scan(data, ws, labels=[label], causal=list(causal), seed=seed, heml=heml, device="cpu")
    settings = json.loads((ws / "findings.json").read_text("utf-8"))["settings"]
    return result, settings, time.perf_counter() - t0


@cli.command()
@click.option("--n", type=int, default=2000, show_default=True)
@click.option("--seeds", type=int, default=5, show_default=True)
@click.option("--first-seed", type=int, default=100, show_default=True)
@click.option("--heml/--no-heml", default=False, show_default=True)
@click.option("--labels", default=",".join(NULL_LABELS), show_default=True)
@click.option("--log", type=click.Path(path_type=Path), default=None, help="Append one JSON line per scan.")
def null(n: int, seeds: int, first_seed: int, heml: bool, labels: str, log: Path | None) -> None:
    """Null calibration on SynthFaces with no plant."""
    rows = null_rows(n=n, seeds=seeds, first_seed=first_seed, heml=heml, labels=[x for x in labels.split(",") if x],
                     log=log)
    _null_summary(rows)


def null_rows(*, n: int, seeds: int, first_seed: int = 100, heml: bool = False, labels=tuple(NULL_LABELS),
              log: Path | None = None) -> list[dict]:
    """One dict per (seed, label) scan of an unplanted SynthFaces dataset."""
    from biasaudit.data.synth import SynthFacesConfig, write_synthfaces

    rows = []
    tmp = Path(tempfile.mkdtemp(prefix="bench-audit-null-"))
    try:
        for seed in range(first_seed, first_seed + seeds):
            data = write_synthfaces(tmp / f"faces-{seed}", SynthFacesConfig(n=n, seed=seed), overwrite=True)
            ws = tmp / f"ws-{seed}"  # one workspace per dataset: the label scans reuse segmentation (and HEML)
            for label in labels:
                result, settings, seconds = _scan(data, ws, label, NULL_LABELS[label], seed=seed, heml=heml)
                alarms = [f for f in result.flagged if f.label is not None]
                off_causal_rejected = sum(1 for f in result.findings if f.label is not None)
                row = {"seed": seed, "label": label, "heml": heml, "n": n, "false_alarm": bool(alarms),
                       "alarms": [f"{f.kind} {f.attribute} ({f.severity:.2f})" for f in alarms],
                       "n_tests": settings["n_tests"], "n_rejected": settings["n_rejected"],
                       "n_label_tests": settings["n_label_tests"], "n_label_rejected": settings["n_label_rejected"],
                       "label_findings_off_causal": off_causal_rejected, "seconds": round(seconds, 1),
                       "rare_flagged": [f.attribute for f in result.flagged if f.kind == "under_representation"]}
                _record(row, rows, log)
            shutil.rmtree(data, ignore_errors=True)
            shutil.rmtree(ws, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return rows


def _record(row: dict, rows: list[dict], log: str | None) -> None:
    """Keep a scan's row, print it, and append it to the JSON-lines log (a long run can be
    summarised from the log even when it is stopped part-way)."""
    rows.append(row)
    click.echo(json.dumps(row))
    if log:
        with open(log, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(row) + "\n")


def _null_summary(rows: list[dict]) -> None:
    scans = len(rows)
    alarms = sum(r["false_alarm"] for r in rows)
    tests = sum(r["n_tests"] for r in rows)
    label_tests = sum(r["n_label_tests"] for r in rows)
    click.echo("\n| scans | with a false alarm | tests rejected (q < 0.01) | label tests rejected | "
               "label rejections left as findings off causal |")
    click.echo("|---|---|---|---|---|")
    click.echo(f"| {scans} | {alarms} ({alarms / max(scans, 1):.1%}) | "
               f"{sum(r['n_rejected'] for r in rows)}/{tests} ({sum(r['n_rejected'] for r in rows) / max(tests, 1):.1%}) | "
               f"{sum(r['n_label_rejected'] for r in rows)}/{label_tests} "
               f"({sum(r['n_label_rejected'] for r in rows) / max(label_tests, 1):.1%}) | "
               f"{sum(r['label_findings_off_causal'] for r in rows)} |")
    for label in dict.fromkeys(r["label"] for r in rows):
        sub = [r for r in rows if r["label"] == label]
        click.echo(f"{label}: {sum(r['false_alarm'] for r in sub)}/{len(sub)} scans with a false alarm; "
                   f"{sum(r['n_label_rejected'] for r in sub)}/{sum(r['n_label_tests'] for r in sub)} label tests "
                   f"rejected; alarms: {[a for r in sub for a in r['alarms']]}")


@cli.command()
@click.option("--n", type=int, default=2000, show_default=True)
@click.option("--seeds", type=int, default=2, show_default=True)
@click.option("--strengths", default="0.6,0.7,0.8,0.9", show_default=True)
@click.option("--heml/--no-heml", default=False, show_default=True)
@click.option("--log", type=click.Path(path_type=Path), default=None, help="Append one JSON line per scan.")
def power(n: int, seeds: int, strengths: str, heml: bool, log: Path | None) -> None:
    """Detection power: colour, presence and size plants at several strengths."""
    rows = power_rows(n=n, seeds=seeds, strengths=[float(x) for x in strengths.split(",") if x], heml=heml, log=log)
    _power_summary(rows)


def power_rows(*, n: int, seeds: int, strengths, heml: bool = False, log: Path | None = None) -> list[dict]:
    """One dict per (strength, seed, plant kind) scan of the independent generator."""
    from independent_faces import write_faces

    rows = []
    tmp = Path(tempfile.mkdtemp(prefix="bench-audit-power-"))
    try:
        for p in strengths:
            for seed in range(seeds):
                plants = [f"{label}:{attr}={p:g}" for label, attr, _, _ in POWER.values()]
                data = write_faces(tmp / f"faces-{p}-{seed}", n=n, seed=seed, plants=plants)
                ws = tmp / f"ws-{p}-{seed}"
                for kind, (label, _, causal, attribute_kind) in POWER.items():
                    result, _, seconds = _scan(data, ws, label, causal, seed=seed, heml=heml)
                    flagged = [f for f in result.flagged if f.label == label]
                    top = flagged[0] if flagged else None
                    row = {"kind": kind, "p": p, "seed": seed, "n": n, "heml": heml,
                           "top": None if top is None else f"{top.kind} {top.attribute} ({top.severity:.2f})",
                           "part_hit": bool(top is not None and "hair" in top.parts),
                           "kind_hit": bool(top is not None and "hair" in top.parts
                                            and top.evidence.get("attribute_kind") == attribute_kind),
                           "seconds": round(seconds, 1)}
                    _record(row, rows, log)
                shutil.rmtree(data, ignore_errors=True)
                shutil.rmtree(ws, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return rows


def _power_summary(rows: list[dict]) -> None:
    ps = sorted({r["p"] for r in rows})
    click.echo("\n| bias (label: plant) | " + " | ".join(f"p = {p:g}" for p in ps) + " |")
    click.echo("|---|" + "---|" * len(ps))
    for kind, (label, attr, _, _) in POWER.items():
        cells = []
        for p in ps:
            sub = [r for r in rows if r["kind"] == kind and r["p"] == p]
            cells.append(f"{sum(r['part_hit'] for r in sub)}/{len(sub)} ({sum(r['kind_hit'] for r in sub)}/{len(sub)} {kind})")
        click.echo(f"| {kind} ({label}: {attr}) | " + " | ".join(cells) + " |")


@cli.command("probe-timing")
@click.option("--n", type=int, default=2000, show_default=True)
@click.option("--nodes", type=int, default=25, show_default=True, help="HEML nodes (the default face tree has ~25).")
@click.option("--dims", type=int, default=128, show_default=True)
@click.option("--permutations", type=int, default=200, show_default=True)
def probe_timing(n: int, nodes: int, dims: int, permutations: int) -> None:
    """Wall time of the shortcut finder (permutation p-values) for one label over all nodes."""
    r = shortcut_timing(n=n, nodes=nodes, dims=dims, permutations=permutations)
    click.echo(f"{nodes} nodes × {n} images × {dims} dims, {permutations} permutations: {r['seconds']:.1f} s "
               f"({r['seconds'] / nodes:.2f} s per node); null p < 0.05 in {r['null_p_below_005']:.0%} of nodes")


def shortcut_timing(*, n: int, nodes: int, dims: int, permutations: int) -> dict:
    """Time ``ShortcutFinder`` on random embeddings (no signal) for one label over ``nodes`` nodes."""
    import numpy as np
    import pandas as pd

    from biasaudit.audit import AuditInputs, Target
    from biasaudit.audit.finders.shortcut import ShortcutFinder

    rng = np.random.default_rng(0)
    ids = pd.Index([f"{i:05d}" for i in range(n)], name="image")
    y = rng.integers(0, 2, n)
    emb = {f"node{k}": pd.DataFrame(rng.normal(size=(n, dims)).astype(np.float32), index=ids) for k in range(nodes)}
    inputs = AuditInputs(attributes=pd.DataFrame(columns=["image", "node"]),
                         labels=pd.DataFrame({"y": y}, index=ids), targets=[Target("y")], embeddings=emb)
    finder = ShortcutFinder(n_permutations=permutations)
    t0 = time.perf_counter()
    found = finder.find(inputs)
    seconds = time.perf_counter() - t0
    ps = np.array([f.p_value for f in found])
    return {"n": n, "nodes": nodes, "dims": dims, "permutations": permutations, "seconds": seconds,
            "null_p_below_005": float((ps < 0.05).mean()) if len(ps) else float("nan")}


@cli.command()
@click.argument("log", type=click.Path(path_type=Path, exists=True))
@click.option("--what", type=click.Choice(["null", "power"]), required=True)
def summarize(log: Path, what: str) -> None:
    """Print the summary table of a --log file."""
    rows = [json.loads(line) for line in log.read_text("utf-8").splitlines() if line.strip()]
    (_null_summary if what == "null" else _power_summary)(rows)


if __name__ == "__main__":
    cli()
