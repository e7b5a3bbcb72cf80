"""Benchmark ``biasaudit evaluate`` / ``probe``: the repair benchmark of issue 10.

For each plant strength P (default 0.99 and 0.95):

1. SynthFaces train n=2000 ``--plant Smiling:Blond_Hair=P`` (seed 0); one balanced test set
   n=1000 (``--balanced``, seed 1) and one balanced *oracle* training set n=2000 (seed 2),
   shared by every P;
2. ``biasaudit scan TRAIN --no-heml`` (mask statistics only: the scan's association
   finding on hair colour is what rebalance needs) → ``biasaudit rebalance WS --target hair``;
3. ``biasaudit evaluate --train original=TRAIN --train rebalanced=NEW --train oracle=ORACLE
   --baselines erm,oversample,reweight,subsample,groupdro --seeds 3 --sensitive Blond_Hair``;
4. ``biasaudit probe --target hair`` on the ERM models trained on the original and on the
   rebalanced set (seed 0), and ``--all-parts`` on the original ERM model.

Every step runs as the CLI does, in a subprocess, timed with its peak RSS. Results land in
``WORK/p<P>/`` (``eval/metrics.json``, ``probe-*.json``) and a markdown summary is printed
(``--append FILE`` adds it to reports/benchmarks.md). Run it niced on a shared machine:

    nice -n 10 python reports/bench/bench_evaluate.py --work /tmp/bench-evaluate
    python reports/bench/bench_evaluate.py --plants 0.95 --seeds 1 --epochs 5   # a quick look
    python reports/bench/bench_evaluate.py --independent   # also the independent face generator

Figures are those of the last completed steps: re-running with the same ``--work``
reuses generated data, scan, rebalance and every finished evaluate run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BASELINES = "erm,oversample,reweight,subsample,groupdro"
CAUSAL = "mouth,u_lip,l_lip"


def run(cmd: list[str], *, log: Path, env: dict | None = None) -> dict:
    """Run ``cmd`` (a biasaudit CLI call), return wall seconds and peak RSS of the child."""
    t0 = time.perf_counter()
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    with open(log, "a", encoding="utf-8") as fh:
        fh.write(f"\n$ {' '.join(cmd)}\n")
        fh.flush()
        proc = subprocess.run(cmd, stdout=fh, stderr=subprocess.STDOUT, env=env, check=False)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise SystemExit(f"failed ({proc.returncode}): {' '.join(cmd)}; see {log}")
    return {"seconds": time.perf_counter() - t0,
            "cpu_seconds": (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime),
            "max_rss_mb": after.ru_maxrss / 1024}


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "biasaudit", "-q", *args]


def synth(out: Path, *, n: int, seed: int, plant: float, balanced: bool, log: Path) -> None:
    if (out / "labels.csv").is_file():
        return
    extra = ["--balanced"] if balanced else []
    run(cli("synth", "faces", "--n", str(n), "--seed", str(seed), "--out", str(out),
            "--plant", f"Smiling:Blond_Hair={plant}", *extra), log=log)


def independent(out: Path, *, n: int, seed: int, plant: float) -> None:
    if (out / "labels.csv").is_file():
        return
    sys.path.insert(0, str(ROOT / "tests" / "audit"))
    from independent_faces import write_faces

    write_faces(out, n=n, seed=seed, plants=[f"Smiling:Blond_Hair={plant}"])


def evaluate_plant(work: Path, plant: float, args, *, test: Path, oracle: Path | None, log: Path,
                   gen: str = "synth") -> dict:
    folder = work / f"{gen}-p{plant}"
    folder.mkdir(parents=True, exist_ok=True)
    train = folder / "train"
    times: dict[str, dict] = {}
    if gen == "synth":
        synth(train, n=args.n_train, seed=0, plant=plant, balanced=False, log=log)
    else:
        independent(train, n=args.n_train, seed=10, plant=plant)
    ws, new = folder / "ws", folder / "rebalanced"
    if not (ws / "findings.json").is_file():
        times["scan"] = run(cli("scan", str(train), "--out", str(ws), "--label", "Smiling", "--causal", CAUSAL,
                                "--no-heml"), log=log)
    if not (new / "rebalance.json").is_file():
        times["rebalance"] = run(cli("rebalance", str(ws), "--target", "hair", "--out", str(new),
                                     "--overwrite"), log=log)
    trains = ["--train", f"original={train}", "--train", f"rebalanced={new}"]
    if oracle is not None:
        trains += ["--train", f"oracle={oracle}"]
    extra = ["--epochs", str(args.epochs)] if args.epochs else []
    times["evaluate"] = run(cli("evaluate", *trains, "--test", str(test), "--label", "Smiling",
                                "--sensitive", "Blond_Hair", "--out", str(folder / "eval"),
                                "--baselines", args.baselines, "--seeds", str(args.seeds), *extra), log=log)
    probes = {}
    if args.pairs:
        for name in ("original", "rebalanced"):
            path = folder / f"probe-{name}-hair.json"
            times[f"probe_{name}"] = run(cli("probe", "--model", str(folder / "eval" / "runs" / f"{name}-erm-s0"),
                                             "--data", str(test), "--target", "hair", "--pairs", str(args.pairs),
                                             "--out", str(path)), log=log)
            probes[name] = json.loads(path.read_text("utf-8"))
        if plant == args.all_parts_plant and gen == "synth":
            path = folder / "probe-original-all.json"
            times["probe_all"] = run(cli("probe", "--model", str(folder / "eval" / "runs" / "original-erm-s0"),
                                         "--data", str(test), "--all-parts", "--pairs", str(args.all_pairs),
                                         "--out", str(path)), log=log)
            probes["all_parts"] = json.loads(path.read_text("utf-8"))
    metrics = json.loads((folder / "eval" / "metrics.json").read_text("utf-8"))
    rebalance = json.loads((new / "rebalance.json").read_text("utf-8"))
    return {"plant": plant, "generator": gen, "metrics": metrics, "probes": probes, "times": times,
            "rebalance": {k: rebalance.get(k) for k in ("generated", "edited", "rejected")}}


def markdown(results: list[dict], args) -> str:
    lines = [f"## evaluate / probe: the repair benchmark ({time.strftime('%Y-%m-%d')})", "",
             f"`python reports/bench/bench_evaluate.py` on {platform.machine()}, {os.cpu_count()} CPUs "
             f"(shared with other busy processes: absolute times are pessimistic), "
             f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}. Train n={args.n_train}, balanced "
             f"test n={args.n_test}, label Smiling, sensitive Blond_Hair, {args.seeds} seeds, default recipe"
             f"{'' if not args.epochs else f' with --epochs {args.epochs}'}. Scan with --no-heml.", ""]
    for res in results:
        m = res["metrics"]
        lines += [f"### {res['generator']}, plant Smiling:Blond_Hair={res['plant']}", "",
                  "| train | method | seeds | worst-group acc | accuracy | DP diff | EO diff |",
                  "|---|---|---|---|---|---|---|"]
        for r in m["summary"]:
            lines.append(
                f"| {r['train']} | {r['method']} | {r['n_seeds']} | "
                f"{r['worst_group_accuracy_mean']:.1%} ± {r['worst_group_accuracy_std']:.1%} | "
                f"{r['accuracy_mean']:.1%} ± {r['accuracy_std']:.1%} | "
                f"{r['demographic_parity_difference_mean']:.3f} ± {r['demographic_parity_difference_std']:.3f} | "
                f"{r['equalized_odds_difference_mean']:.3f} ± {r['equalized_odds_difference_std']:.3f} |")
        reb = res["rebalance"]
        lines += ["", f"Rebalance: {reb['generated']} generated, {reb['edited']} edited, rejected {reb['rejected']}."]
        for name in ("original", "rebalanced"):
            p = res["probes"].get(name)
            if p:
                part = p["parts"][0]
                lo, hi = part["flip_rate_ci"] or (float("nan"), float("nan"))
                lines.append(f"Probe hair, ERM on {name} (seed 0): flip rate {part['flip_rate']:.1%} "
                             f"[{lo:.1%}, {hi:.1%}], mean |Δp| {part['mean_abs_delta']:.3f}, {part['n_pairs']} pairs.")
        allp = res["probes"].get("all_parts")
        if allp:
            ranked = ", ".join(f"{p['part']} {p['flip_rate']:.0%}" for p in allp["parts"] if p["flip_rate"] is not None)
            lines.append(f"Probe --all-parts, ERM on original: {ranked}.")
        t = res["times"]
        runs = [r for r in m["runs"] if r.get("seconds")]
        if runs:
            per = sorted(r["seconds"] for r in runs)
            lines.append(f"Training + scoring one run ({args.n_train} images): median {per[len(per) // 2]:.0f} s "
                         f"(min {per[0]:.0f}, max {per[-1]:.0f}) over {len(runs)} runs.")
        lines.append("Steps: " + ", ".join(f"{k} {v['seconds']:.0f} s (peak RSS {v['max_rss_mb']:.0f} MB)"
                                           for k, v in t.items()) + ".")
        lines.append("")
    lines.append("GPU: training images/s not measured (no GPU lent).")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", type=Path, default=Path("/tmp/bench-evaluate"))
    ap.add_argument("--plants", type=lambda s: [float(x) for x in s.split(",")], default=[0.99, 0.95])
    ap.add_argument("--n-train", type=int, default=2000)
    ap.add_argument("--n-test", type=int, default=1000)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--epochs", type=int, default=None)
    ap.add_argument("--baselines", default=BASELINES)
    ap.add_argument("--pairs", type=int, default=200, help="probe pairs (0: no probe)")
    ap.add_argument("--all-pairs", type=int, default=100, help="probe pairs per part for --all-parts")
    ap.add_argument("--all-parts-plant", type=float, default=0.99,
                    help="the plant whose original ERM model gets the --all-parts probe")
    ap.add_argument("--no-oracle", action="store_true")
    ap.add_argument("--independent", action="store_true",
                    help="also run the first plant on tests/audit/independent_faces.py data")
    ap.add_argument("--only-independent", action="store_true")
    ap.add_argument("--append", type=Path, default=None)
    args = ap.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    log = args.work / "bench.log"
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    results = []
    test, oracle = args.work / "test", None if args.no_oracle else args.work / "oracle"
    if not args.only_independent:
        synth(test, n=args.n_test, seed=1, plant=0.99, balanced=True, log=log)
        if oracle is not None:
            synth(oracle, n=args.n_train, seed=2, plant=0.99, balanced=True, log=log)
        for i, plant in enumerate(args.plants):
            # the oracle does not depend on the plant: train it once, beside the first plant
            results.append(evaluate_plant(args.work, plant, args, test=test, oracle=oracle if i == 0 else None,
                                          log=log))
            (args.work / "results.json").write_text(json.dumps(results, indent=2), "utf-8")
    if args.independent or args.only_independent:
        itest = args.work / "ind-test"
        independent(itest, n=args.n_test, seed=11, plant=0.5)
        results.append(evaluate_plant(args.work, args.plants[0], args, test=itest, oracle=None, log=log,
                                      gen="independent"))
        (args.work / "results.json").write_text(json.dumps(results, indent=2), "utf-8")
    text = markdown(results, args)
    print(text)
    if args.append:
        with open(args.append, "a", encoding="utf-8") as fh:
            fh.write("\n" + text + "\n")


if __name__ == "__main__":
    main()
