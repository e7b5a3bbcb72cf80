"""``biasaudit demo``: the whole loop on a generated dataset with a planted bias.

synth (a biased training set and a balanced test set) → scan → rebalance → evaluate
(original vs rebalanced, plus one baseline) → probe → report, then a three-line verdict.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import click

DEMO_PLANT = "Smiling:Blond_Hair=0.9"
DEMO_LABEL = "Smiling"
DEMO_SENSITIVE = "Blond_Hair"
DEMO_CAUSAL = ("mouth", "u_lip", "l_lip")
DEMO_TARGET = "hair"
DEMO_BASELINE = "reweight"
#: the demo trains 20 epochs, not evaluate's 30: with 30 its evaluation alone took 6 min of the
#: 10-minute budget on 2 CPU cores (reports/benchmarks.md, demo section)
DEMO_EPOCHS = 20
STAGES = ("scan", "rebalance", "evaluate", "probe")


@click.command("demo")
@click.option("--out", "out", type=click.Path(file_okay=False, path_type=Path), default=Path("biasaudit-demo"),
              show_default=True,
              help="Folder for everything: data/, test/, ws/ (with report.html), new/, eval/, probe.json.")
@click.option("--n", "n", type=click.IntRange(min=50), default=1000, show_default=True,
              help="Number of generated training portraits.")
@click.option("--test-n", "test_n", type=click.IntRange(min=40), default=400, show_default=True,
              help="Number of portraits in the balanced test set.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--heml/--no-heml", default=True, show_default=True,
              help="Train HEML embeddings too (minutes on a CPU); --no-heml audits mask statistics only.")
@click.option("--seeds", type=click.IntRange(min=1), default=3, show_default=True,
              help="Training seeds per classifier in the evaluation (mean ± std).")
@click.option("--epochs", type=click.IntRange(min=1), default=DEMO_EPOCHS, show_default=True,
              help="Classifier epochs in the evaluation. Fewer than evaluate's 30, so the whole "
                   "demo stays under 10 minutes on 2 CPU cores.")
@click.option("--until", type=click.Choice(STAGES), default="probe", show_default=True,
              help="Stop after this stage (the report is written either way).")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True)
def demo(out: Path, n: int, test_n: int, seed: int, heml: bool, seeds: int, epochs: int, until: str,
         device: str) -> None:
    """Generate SynthFaces with a planted bias, find it, repair it and prove the repair.

    \b
    1. synth:     N portraits where P(blond | Smiling) = 0.9 and P(blond | not Smiling) = 0.1,
                  and a balanced test set (every Smiling × blond cell equally common)
    2. scan:      validate → segment → statistics → HEML → attributes → findings
                  (--label Smiling, the mouth and lips declared causal)
    3. rebalance: synthesize the missing hair colour × Smiling combinations (recombine)
    4. evaluate:  classifiers for Smiling trained on the original and the rebalanced data,
                  plus the reweight baseline on the original; fairness by Blond_Hair
    5. probe:     swap one part at a time on test images: which part flips the prediction?
    6. report:    OUT/ws/report.html, then a three-line verdict
    Re-running reuses the generated data and the trained HEML in OUT.
    """
    from biasaudit.report import write_report

    out.mkdir(parents=True, exist_ok=True)
    data, test, ws = out / "data", out / "test", out / "ws"
    new, eval_dir, probe_file = out / "new", out / "eval", out / "probe.json"
    last = STAGES.index(until)
    n_steps = 3 + last
    seconds: dict[str, float] = {}
    cpu = _CpuClock()
    say = _Steps(n_steps, cpu)

    def log(msg: str) -> None:
        click.echo(f"    · {msg}", err=True)

    t0 = time.perf_counter()
    say(f"synth: {n} portraits with the plant {DEMO_PLANT} → {data}; {test_n} balanced → {test}")
    _synth(data, n=n, seed=seed, balanced=False)
    _synth(test, n=test_n, seed=seed + 1, balanced=True)
    seconds["synth"] = time.perf_counter() - t0

    from biasaudit.audit.scan import run_scan

    t0 = time.perf_counter()
    say(f"scan → {ws}")
    scan = run_scan(data, ws, labels=[DEMO_LABEL], causal=DEMO_CAUSAL, heml=heml, device=device, seed=seed, log=log)
    seconds["scan"] = time.perf_counter() - t0
    reb = ev = pr = None
    if last >= STAGES.index("rebalance"):
        from biasaudit.rebalance.api import run_rebalance

        t0 = time.perf_counter()
        say(f"rebalance --target {DEMO_TARGET} → {new}")
        reb = run_rebalance(ws, target=DEMO_TARGET, out=new, label=DEMO_LABEL, seed=seed, overwrite=True,
                            force=True, log=log)
        seconds["rebalance"] = time.perf_counter() - t0
    if last >= STAGES.index("evaluate"):
        from biasaudit.evaluate.api import run_evaluate

        t0 = time.perf_counter()
        say(f"evaluate original vs rebalanced (+ {DEMO_BASELINE}) on {test} → {eval_dir}")
        ev = run_evaluate(train={"original": data, "rebalanced": new}, test=test, label=DEMO_LABEL,
                          sensitive=DEMO_SENSITIVE, out=eval_dir, baselines=("erm", DEMO_BASELINE), seeds=seeds,
                          epochs=epochs, device=device, log=log)
        seconds["evaluate"] = time.perf_counter() - t0
    if last >= STAGES.index("probe"):
        from biasaudit.evaluate.probe import run_probe

        t0 = time.perf_counter()
        model = _probe_model(ev, eval_dir)
        say(f"probe {model} on {test}, every part → {probe_file}")
        pr = run_probe(model=model, data=test, all_parts=True, out=probe_file, device=device, log=log)
        seconds["probe"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    say("report")
    path = write_report(ws, rebalance=new if reb is not None else None, eval=eval_dir if ev is not None else None,
                        probe=probe_file if pr is not None else None)
    seconds["report"] = time.perf_counter() - t0
    cpu.lap(None)
    _write_timings(out / "timings.json", seconds, cpu.seconds, n=n, test_n=test_n, heml=heml, seeds=seeds,
                   epochs=epochs)

    click.echo(f"\nReport: {path}")
    for line in verdict_lines(scan, new if reb is not None else None, eval_dir if ev is not None else None):
        click.echo(line)
    click.echo("Stage times: " + ", ".join(f"{k} {v:.0f} s" for k, v in seconds.items()))


class _Steps:
    def __init__(self, total: int, cpu: _CpuClock) -> None:
        self.total, self.k, self.cpu = total, 0, cpu

    def __call__(self, text: str) -> None:
        self.k += 1
        self.cpu.lap(text.split(":")[0].split(" ")[0])
        click.echo(f"{self.k}/{self.total} {text}")


class _CpuClock:
    """CPU seconds (this process and its threads) per stage: on a machine shared with other
    busy processes, wall time overstates what a stage costs."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self._stage: str | None = None
        self._t = time.process_time()

    def lap(self, stage: str | None) -> None:
        now = time.process_time()
        if self._stage is not None:
            self.seconds[self._stage] = self.seconds.get(self._stage, 0.0) + now - self._t
        self._stage, self._t = stage, now


def verdict_lines(scan, new: Path | None, eval_dir: Path | None) -> list[str]:
    """Three lines: what was found; V before/after; worst-group accuracy before/after."""
    from biasaudit.report.sentences import finding_sentence

    top = scan.flagged[0] if scan.flagged else None
    planted = top is not None and top.segment == DEMO_TARGET and "blond" in top.attribute
    if top is None:
        found = "Found: nothing flagged (the planted bias was NOT found)."
    else:
        found = (f"Found {'the planted bias' if planted else 'something else (NOT the planted bias)'}: "
                 f"{finding_sentence(top.to_record())}")
    lines = [found]
    if new is not None and (new / "rebalance.json").is_file():
        doc = json.loads((new / "rebalance.json").read_text("utf-8"))
        s = doc.get("settings") or {}
        lines.append(f"Repair: Cramér's V of {s.get('attribute', 'the attribute')} × {s.get('label', DEMO_LABEL)} "
                     f"{_f(doc.get('before', {}).get('cramers_v'), 2)} before → "
                     f"{_f(doc.get('after', {}).get('cramers_v'), 2)} after ({doc.get('generated', 0)} synthesized, "
                     f"{doc.get('edited', 0)} edited).")
    else:
        lines.append("Repair: not run.")
    if eval_dir is not None and (eval_dir / "metrics.json").is_file():
        doc = json.loads((eval_dir / "metrics.json").read_text("utf-8"))
        rows = {(r.get("train"), r.get("method")): r for r in doc.get("summary") or ()}

        def wga(train: str, method: str) -> str:
            r = rows.get((train, method)) or {}
            return f"{_f(r.get('worst_group_accuracy_mean'), 3)} ± {_f(r.get('worst_group_accuracy_std'), 3)}"

        lines.append(f"Fairness: worst-group accuracy by {DEMO_SENSITIVE} × {DEMO_LABEL} {wga('original', 'erm')} "
                     f"(original) → {wga('rebalanced', 'erm')} (rebalanced); {DEMO_BASELINE} baseline "
                     f"{wga('original', DEMO_BASELINE)}.")
    else:
        lines.append("Fairness: not evaluated.")
    return lines


def _f(value, digits: int) -> str:
    try:
        return f"{float(value):.{digits}f}"
    except (TypeError, ValueError):
        return "?"


def _synth(folder: Path, *, n: int, seed: int, balanced: bool) -> None:
    from biasaudit.data.synth.faces import SynthFacesConfig, parse_plant, write_synthfaces

    marker = folder / "synth.json"
    if marker.is_file() and _same_config(marker, n=n, seed=seed, balanced=balanced):
        click.echo(f"    · reusing {folder}", err=True)
        return
    config = SynthFacesConfig(n=n, seed=seed, plants=(parse_plant(DEMO_PLANT),), balanced=balanced)
    write_synthfaces(folder, config, overwrite=marker.is_file())


def _same_config(marker: Path, *, n: int, seed: int, balanced: bool) -> bool:
    try:
        params = json.loads(marker.read_text("utf-8"))
    except (OSError, ValueError):
        return False
    return (params.get("n") == n and params.get("seed") == seed and bool(params.get("balanced")) == balanced
            and DEMO_PLANT in json.dumps(params))


def _probe_model(result, eval_dir: Path) -> Path:
    """The run to probe: plain training (erm) on the original data, first seed."""
    for run in getattr(result, "runs", None) or ():
        if run.get("train") == "original" and run.get("method") == "erm" and run.get("run"):
            return Path(getattr(result, "out", eval_dir)) / str(run["run"])
    raise click.ClickException(f"No trained model for 'original' (erm) in {eval_dir / 'metrics.json'}; "
                               f"the evaluation did not finish.")


def _write_timings(path: Path, seconds: dict[str, float], cpu: dict[str, float], **params) -> None:
    from biasaudit.core.io import write_json_atomic

    write_json_atomic(path, {"seconds": {k: round(v, 2) for k, v in seconds.items()},
                             "total_seconds": round(sum(seconds.values()), 2),
                             "cpu_seconds": {k: round(v, 2) for k, v in cpu.items()}, "params": params})
