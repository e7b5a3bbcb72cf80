"""The benchmarks ``python -m reports.bench`` runs, one function each, reusing the scripts in
``reports/bench/`` (imported and called, or run as subprocesses where a fresh process is part
of the measurement: peak RSS, CPU pinning, or a script that another engineer owns).

Each function takes a :class:`Context` and returns ``{"params", "command", "figures",
"ratios", "facts", "details"}`` (see ``records.py``); it raises on failure and the runner
records the error. Sizes come from ``ctx.pick(quick=..., default=...)``: the default tier
is the sizes the scripts document, the quick tier checks the runner in minutes.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import json
import math
import os
import shlex
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .records import fact, figure, ratio

REPO = Path(__file__).resolve().parents[2]
SCRIPTS = Path(__file__).resolve().parent
TIERS = ("quick", "default", "full")


class MissingScript(FileNotFoundError):
    """A benchmark script that another change adds is not in this checkout."""


@dataclass(frozen=True)
class Context:
    """What a benchmark needs to know about this run of the runner."""

    tier: str
    repeat: int
    work: Path

    def pick(self, *, quick, default, full=None):
        """The value for this tier (``full`` falls back to ``default``)."""
        if self.tier == "quick":
            return quick
        if self.tier == "full" and full is not None:
            return full
        return default

    def dir(self, name: str) -> Path:
        path = self.work / name
        shutil.rmtree(path, ignore_errors=True)
        path.mkdir(parents=True)
        return path


@dataclass(frozen=True)
class Benchmark:
    name: str
    title: str
    run: Callable[[Context], dict]
    #: the tiers that run it when it is not named with --only
    tiers: tuple[str, ...] = TIERS
    about: str = ""


def _script(name: str, *args) -> list[str]:
    return [sys.executable, str(SCRIPTS / name), *map(str, args)]


def _shown(cmd: list[str]) -> str:
    """The command as a reader would type it from the repository root."""
    parts = ["python" if c == sys.executable else c for c in cmd]
    parts = [os.path.relpath(p, REPO) if p.startswith(str(REPO)) else p for p in parts]
    return shlex.join(parts)


#: Linux hands a child the parent's peak RSS (``ru_maxrss`` survives vfork + exec), so a script
#: started straight from this large process would report this process's peak as its own; a tiny
#: python in between, whose own peak is ~10 MB, keeps the script's figure its own.
FRESH = [sys.executable, "-c", "import subprocess, sys; sys.exit(subprocess.call(sys.argv[1:]))"]


def _call(cmd: list[str]) -> str:
    """Run a benchmark script (through ``FRESH``); its stdout, or a RuntimeError carrying the
    end of stderr."""
    proc = subprocess.run([*FRESH, *cmd], cwd=REPO, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        err = proc.stderr.strip()
        last = err.splitlines()[-1] if err else "no output on stderr"
        raise RuntimeError(f"`{_shown(cmd)}` exited with {proc.returncode}: {last}\n{err[-2000:]}")
    return proc.stdout


def _result(command: str, params: dict, figures=(), ratios=(), facts=(), details=None) -> dict:
    return {"command": command, "params": params, "figures": list(figures), "ratios": list(ratios),
            "facts": list(facts), "details": details or {}}


# --------------------------------------------------------------------------- scan


def scan(ctx: Context) -> dict:
    sizes = ctx.pick(quick=[(128, 100), (512, 30)], default=[(128, 1000), (512, 300)])
    figures, ratios, facts, details = [], [], [], {}
    per_size: dict[int, dict[str, dict]] = {}
    commands = []
    for px, n in sizes:
        cmd = _script("bench_scan.py", "one", "--n", n, "--size", px, "--heml", "--json")
        commands.append(_shown(cmd))
        # one fresh process per run: its peak RSS is this scan's alone
        runs = [json.loads(_call(cmd).strip().splitlines()[-1]) for _ in range(ctx.repeat)]
        details[f"{px}px"] = runs
        stages = list(dict.fromkeys(k for r in runs for k in r["stages"]))
        per_size[px] = {}
        for stage in stages:
            f = figure(f"{stage} stage, {px} px", [n / max(r["stages"][stage], 1e-9) for r in runs],
                       unit="images/s", n=n, command=_shown(cmd))
            per_size[px][stage] = f
            figures.append(f)
        figures.append(figure(f"whole scan, {px} px", [n / r["scan_s"] for r in runs], unit="images/s", n=n,
                              command=_shown(cmd)))
        figures.append(figure(f"generate SynthFaces, {px} px", [n / r["generate_s"] for r in runs],
                              unit="images/s", n=n, command=_shown(cmd)))
        figures.append(figure(f"peak RSS of the scanning process, {px} px", [r["peak_rss_mib"] for r in runs],
                              unit="MiB", n=n, command=_shown(cmd)))
        facts.append(fact(f"top flagged finding, {px} px (plant Smiling:Blond_Hair=0.9)", runs[0]["top"] or "none",
                          n=n))
    if len(sizes) == 2:
        (lo, _), (hi, _) = sizes
        for stage in per_size[lo]:
            if stage in per_size[hi]:
                ratios.append(ratio(f"{stage} stage throughput, {lo} px / {hi} px", per_size[lo][stage],
                                    per_size[hi][stage]))
    return _result("; ".join(commands), {"sizes": [{"px": px, "n": n} for px, n in sizes], "heml": True,
                                         "device": "cpu"}, figures, ratios, facts, details)


def scan_matrix(ctx: Context) -> dict:
    from reports.bench import bench_scan

    n, seeds, control = ctx.pick(quick=(300, 1, 1), default=(2000, 3, 5))
    rows = bench_scan.matrix_rows(n=n, generators=["synthfaces", "independent"], heml=False, seeds=seeds,
                                  control_seeds=control)
    command = _shown(_script("bench_scan.py", "matrix", "--n", n, "--no-heml", "--seeds", seeds,
                             "--control-seeds", control))
    facts = [fact("scans passing", f"{sum(r['ok'] for r in rows)}/{len(rows)}", n=n)]
    facts += [fact(f"{r['generator']}, {r['setting']}, seed {r['seed']}", f"{'pass' if r['ok'] else 'FAIL'}: {r['top']}",
                   n=n) for r in rows if not r["ok"]]
    figures = [figure("scan --no-heml (one matrix scan)", [r["seconds"] for r in rows], unit="s", n=n)]
    return _result(command, {"n": n, "seeds": seeds, "control_seeds": control}, figures, [], facts, {"rows": rows})


# --------------------------------------------------------------------------- segment / validate


def segment(ctx: Context) -> dict:
    from reports.bench import bench_segment

    n128, n512 = ctx.pick(quick=(40, 10), default=(300, 60))
    runs = []
    for i in range(ctx.repeat):
        tmp = ctx.dir(f"segment-{i}")
        try:
            runs.append(bench_segment.bench_size(tmp, size=128, n=n128) + bench_segment.bench_size(tmp, size=512, n=n512))
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    figures, ratios, facts = [], [], []
    cold: dict[str, dict] = {}
    for k, row in enumerate(runs[0]):
        what, n = row["what"], row["n"]
        cold[what] = figure(f"{what}: cold", [n / r[k]["cold_s"] for r in runs], unit="images/s", n=n)
        figures.append(cold[what])
        for key, label in (("cache_s", "label maps from the WS/masks cache"), ("warm_s", "warm re-run")):
            if row.get(key) is not None:
                f = figure(f"{what}: {label}", [n / r[k][key] for r in runs], unit="images/s", n=n)
                figures.append(f)
                if key == "warm_s":
                    ratios.append(ratio(f"{what}: warm re-run speed-up (images/s warm / cold)", f, cold[what]))
    for a, b in (("masks, end to end, 128 px", "masks, end to end, 512 px"),
                 ("segformer (tiny, CPU), end to end, 128 px", "segformer (tiny, CPU), end to end, 512 px")):
        if a in cold and b in cold:
            ratios.append(ratio(f"{a.rsplit(',', 1)[0]}: images/s at 128 px / 512 px (cold)", cold[a], cold[b]))
    try:
        mp = [bench_segment.bench_mediapipe(ctx.work / "mediapipe_overlay.png") for _ in range(ctx.repeat)]
        figures.append(figure("mediapipe-face, one 512×512 image (after start-up)",
                              [m["per_image_s"] * 1000 for m in mp], unit="ms", n=10))
    except Exception as exc:  # an optional part (face extra, skimage): say why, keep the rest
        facts.append(fact("mediapipe-face", f"not measured: {type(exc).__name__}: {exc}"))
    import torch

    details = {"runs": runs}
    if torch.cuda.is_available():
        details["segformer_cpu_vs_cuda"] = bench_segment.bench_devices(ctx.dir("segment-gpu"))
    else:
        facts.append(fact("SegFormer on GPU", "not measured (no GPU)"))
    command = _shown(_script("bench_segment.py", "--n128", n128, "--n512", n512))
    return _result(command, {"n128": n128, "n512": n512}, figures, ratios, facts, details)


def validate(ctx: Context) -> dict:
    from reports.bench import bench_validate

    n, size, real = ctx.pick(quick=(40, 128, False), default=(1000, 512, True))
    runs = [bench_validate.run(n=n, size=size, workers=[1, 2], real=real) for _ in range(ctx.repeat)]
    figures, ratios = [], []
    by: dict[tuple[str, int], dict] = {}
    for k, row in enumerate(runs[0]):
        f = figure(f"{row['data']}, {row['workers']} thread(s)", [r[k]["n"] / r[k]["seconds"] for r in runs],
                   unit="images/s", n=row["n"])
        by[row["data"], row["workers"]] = f
        figures.append(f)
    for (data, workers), f in by.items():
        if workers == 2 and (data, 1) in by:
            ratios.append(ratio(f"{data}: 2 threads / 1", f, by[data, 1]))
    command = _shown(_script("bench_validate.py", "--n", n, "--size", size, "--workers", "1,2"))
    return _result(command, {"n": n, "size": size, "workers": [1, 2], "real_ccp": real}, figures, ratios,
                   details={"runs": runs})


# --------------------------------------------------------------------------- HEML


def heml(ctx: Context) -> dict:
    from reports.bench import bench_heml

    n, size, epochs_scale = ctx.pick(quick=(200, 128, 0.25), default=(2000, 128, 1.0))
    clean, planted = ctx.work / "heml-clean.npz", ctx.work / "heml-planted.npz"
    bench_heml.make_data(clean, n=n, size=size, seed=0, plant=None)
    base = {"device": "cpu", "batch_size": 64, "epochs_scale": epochs_scale, "resolution_scale": 1.0,
            "embedder": None, "supervision": "label", "trunk": None, "threads": 0, "seed": 0}
    figures, ratios, facts = [], [], []
    runs: dict[str, list[dict]] = {}
    walls = {}
    for mode in ("sequential", "in-process", "concurrent"):
        spec = {**base, "data": str(clean), "concurrent": mode == "concurrent", "baseline": False,
                "n_jobs": 1 if mode == "in-process" else None}
        runs[mode] = [bench_heml.run_worker(spec) for _ in range(ctx.repeat)]
        walls[mode] = figure(f"tree fit wall time, {mode}", [r["wall_s"] for r in runs[mode]], unit="s", n=n)
        figures += [walls[mode],
                    figure(f"peak RSS, {mode}", [r["peak_rss_mb"] for r in runs[mode]], unit="MB", n=n),
                    figure(f"images per second of fit, {mode}", [n / r["wall_s"] for r in runs[mode]],
                           unit="images/s", n=n)]
    ratios.append(ratio("concurrent speed-up (sequential / concurrent wall time)", walls["sequential"],
                        walls["concurrent"]))
    ratios.append(ratio("level workers speed-up (in-process / sequential wall time)", walls["in-process"],
                        walls["sequential"]))
    bench_heml.make_data(planted, n=n, size=size, seed=0, plant=bench_heml.PLANT)
    plant = bench_heml.run_worker({**base, "data": str(planted), "concurrent": False, "baseline": False})
    first = runs["sequential"][0]
    for node in bench_heml.FOCUS:
        clean_p1 = first["metrics"].get(node, {}).get("precision_at_1")
        plant_p1 = plant["metrics"].get(node, {}).get("precision_at_1")
        facts.append(fact(f"{node} P@1, clean / planted {bench_heml.PLANT}", f"{clean_p1:.3f} / {plant_p1:.3f}"
                          if clean_p1 is not None and plant_p1 is not None else "–", n=n))
    facts.append(fact("device, torch threads", f"{first['device']}, {first['threads']}"))
    command = _shown(_script("bench_heml.py", "--n", n, "--size", size, "--epochs-scale", epochs_scale))
    return _result(command, {"n": n, "size": size, "epochs_scale": epochs_scale, "tree": "celebamask-hq",
                             "label": "Smiling", **base}, figures, ratios, facts,
                   {"runs": runs, "planted": plant})


# --------------------------------------------------------------------------- audit


def audit(ctx: Context) -> dict:
    from reports.bench import bench_audit

    n, seeds, labels = ctx.pick(quick=(300, 1, ["Smiling"]), default=(2000, 5, list(bench_audit.NULL_LABELS)))
    null = bench_audit.null_rows(n=n, seeds=seeds, labels=labels)
    pn, pseeds, strengths = ctx.pick(quick=(300, 1, [0.9]), default=(2000, 2, [0.6, 0.7, 0.8, 0.9]))
    power = bench_audit.power_rows(n=pn, seeds=pseeds, strengths=strengths)
    sn, nodes, perms = ctx.pick(quick=(300, 3, 20), default=(2000, 25, 200))
    shortcut = [bench_audit.shortcut_timing(n=sn, nodes=nodes, dims=128, permutations=perms)
                for _ in range(ctx.repeat)]

    alarms, tests = sum(r["false_alarm"] for r in null), sum(r["n_tests"] for r in null)
    label_tests = sum(r["n_label_tests"] for r in null)
    facts = [
        fact("null: scans with a false alarm", f"{alarms}/{len(null)}", n=n),
        fact("null: tests rejected at q < 0.01", f"{sum(r['n_rejected'] for r in null)}/{tests}", n=n),
        fact("null: label tests rejected", f"{sum(r['n_label_rejected'] for r in null)}/{label_tests}", n=n),
        fact("null: label rejections left as findings off causal parts",
             sum(r["label_findings_off_causal"] for r in null), n=n),
    ]
    for kind, (label, attr, _, _) in bench_audit.POWER.items():
        for p in strengths:
            sub = [r for r in power if r["kind"] == kind and r["p"] == p]
            facts.append(fact(f"power: {kind} bias ({label}: {attr}={p:g}), hair top flagged (right kind)",
                              f"{sum(r['part_hit'] for r in sub)}/{len(sub)} "
                              f"({sum(r['kind_hit'] for r in sub)}/{len(sub)})", n=pn))
    figures = [
        figure("scan --no-heml, one label (null datasets)", [r["seconds"] for r in null], unit="s", n=n),
        figure("scan --no-heml, one label (power datasets)", [r["seconds"] for r in power], unit="s", n=pn),
        figure(f"shortcut finder, {nodes} nodes × 128 dims, {perms} permutations", [s["seconds"] for s in shortcut],
               unit="s", n=sn),
    ]
    command = "; ".join([
        _shown(_script("bench_audit.py", "null", "--n", n, "--seeds", seeds, "--labels", ",".join(labels))),
        _shown(_script("bench_audit.py", "power", "--n", pn, "--seeds", pseeds,
                       "--strengths", ",".join(f"{p:g}" for p in strengths))),
        _shown(_script("bench_audit.py", "probe-timing", "--n", sn, "--nodes", nodes, "--permutations", perms)),
    ])
    params = {"null": {"n": n, "seeds": seeds, "labels": labels}, "power": {"n": pn, "seeds": pseeds,
              "strengths": strengths}, "shortcut": {"n": sn, "nodes": nodes, "permutations": perms}}
    return _result(command, params, figures, [], facts, {"null": null, "power": power, "shortcut": shortcut})


# --------------------------------------------------------------------------- rebalance


def rebalance(ctx: Context) -> dict:
    from reports.bench import bench_rebalance

    n, samples = ctx.pick(quick=(60, 30), default=(300, 600))
    root = ctx.dir("rebalance")
    figures, ratios, facts, details = [], [], [], {}
    core_figs = {}
    for size in (128, 512):
        ws = bench_rebalance._dataset(root, size, n)
        cores = [bench_rebalance.core(ws, samples) for _ in range(ctx.repeat)]
        details[f"core_{size}"] = cores
        k = cores[0]["samples"]
        core_figs[size] = figure(f"swap_part + gate, {size} px", [c["per_s"] for c in cores], unit="samples/s", n=k)
        figures += [core_figs[size],
                    figure(f"swap_part + gate, {size} px, per CPU-second", [c["per_cpu_s"] for c in cores],
                           unit="samples/CPU-s", n=k)]
        facts.append(fact(f"gate rejection rate, {size} px", f"{cores[0]['reject_rate']:.1%} {cores[0]['rejected']}",
                          n=k))
        if size == 128:
            ends = [bench_rebalance.end_to_end(ws, root / "new128") for _ in range(ctx.repeat)]
            details["end_to_end_128"] = ends
            figures.append(figure("run_rebalance end to end, 128 px", [e["per_s"] for e in ends],
                                  unit="samples/s", n=ends[0]["samples"]))
            facts.append(fact("Cramér's V after rebalance (closing check), 128 px", ends[0]["after_v"], n=n))
    ratios.append(ratio("swap_part + gate throughput, 128 px / 512 px", core_figs[128], core_figs[512]))
    command = _shown(_script("bench_rebalance.py", "--sizes", "128,512", "--n", n, "--samples", samples))
    return _result(command, {"n": n, "samples": samples, "sizes": [128, 512], "target": "hair",
                             "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS")}, figures, ratios, facts, details)


# --------------------------------------------------------------------------- synth / report


def synth(ctx: Context) -> dict:
    n = ctx.pick(quick=200, default=2000)
    out = ctx.dir("synth") / "synth.json"
    # a subprocess: the script pins itself to one core, which must not stick to the runner
    cmd = _script("bench_synth.py", "--n", n, "--no-write", "--json", out)
    runs = []
    for _ in range(ctx.repeat):
        _call(cmd)
        runs.append(json.loads(out.read_text("utf-8")))
    figs = [r["figures"] for r in runs]
    figures = [
        figure("render only, 1 core, 128 px", [f["render_images_per_cpu_s"] for f in figs], unit="images/CPU-s", n=n),
        figure("render + PNG + write, 1 core", [f["write_images_per_cpu_s"] for f in figs], unit="images/CPU-s", n=n),
        figure("render + PNG + write, 1 core (wall)", [f["write_images_per_s"] for f in figs], unit="images/s", n=n),
        figure("render + PNG + write, --workers 2", [f["write_workers2_images_per_s"] for f in figs],
               unit="images/s", n=n),
    ]
    ratios = [ratio("--workers 2 / 1 worker (wall)", figures[3], figures[2])]
    last = figs[-1]
    facts = [fact(k.replace("_", " "), last[k], n=n) for k in
             ("bad_mask_ids", "accessory_mismatches", "byte_identical_same_seed", "byte_identical_workers",
              "other_seed_differs", "hair_colour_agreement")]
    shown = _shown(cmd[:-2])  # the --json path is the runner's temp folder
    return _result(shown, {"n": n}, figures, ratios, facts, {"rows": runs[-1]["rows"]})


def report(ctx: Context) -> dict:
    from reports.bench import bench_report

    n = ctx.pick(quick=200, default=10_000)
    r = bench_report.run(n=n, work=ctx.dir("report"), workers=2, loads=ctx.repeat)
    figures = [figure(f"{k} (once)", [v], unit="s", n=n) for k, v in r["seconds"].items()]
    facts = [fact("report size", f"{r['report_mb']} MB", n=n), fact("embedded images", r["embedded_images"], n=n)]
    if r["chromium_load_s"]:
        figures.append(figure("Chromium load event", r["chromium_load_s"], unit="s", n=n))
    else:
        facts.append(fact("Chromium load time", "not measured (no Chromium found)"))
    command = _shown(_script("bench_report.py", "--n", n, "--loads", ctx.repeat))
    return _result(command, {"n": n}, figures, [], facts, {"result": r})


# --------------------------------------------------------------------------- repair (evaluate)


def evaluate(ctx: Context) -> dict:
    work = ctx.dir("evaluate")
    cmd = _script("bench_evaluate.py", "--work", work)
    if ctx.tier == "quick":
        helptext = _call(_script("bench_evaluate.py", "--help"))
        cmd += ["--plants", "0.95", "--seeds", "1", "--epochs", "1"]
        small = {"--n-train": "300", "--n-test": "200", "--pairs": "20", "--all-pairs": "10", "--baselines": "erm"}
        for flag, value in small.items():
            if flag in helptext:  # the script is being changed by others: pass what it knows
                cmd += [flag, value]
        if "--no-oracle" in helptext:
            cmd.append("--no-oracle")
    try:
        stdout = _call(cmd)
    except RuntimeError as exc:
        log = work / "bench.log"  # the script's own log of its CLI calls: the cause is there
        tail = log.read_text("utf-8", errors="replace")[-3000:] if log.is_file() else ""
        raise RuntimeError(f"{exc}\n--- end of bench.log ---\n{tail}") from None
    results = json.loads((work / "results.json").read_text("utf-8"))
    figures, facts = evaluate_records(results)
    slim = [{k: v for k, v in r.items() if k != "metrics"} | {"summary": (r.get("metrics") or {}).get("summary")}
            for r in results]
    shown = _shown(cmd).replace(str(work), "WORK")
    return _result(shown, {"argv": cmd[2:]}, figures, [], facts, {"results": slim, "markdown": stdout.strip()})


def evaluate_records(results: list[dict]) -> tuple[list[dict], list[dict]]:
    """Figures (step and per-run times) and facts (worst-group accuracy per training set and
    method, probe flip rates) from bench_evaluate.py's ``WORK/results.json``."""
    figures, facts = [], []
    for res in results:
        tag = f"{res.get('generator', 'synth')}, plant {res.get('plant')}"
        for step, t in (res.get("times") or {}).items():
            figures.append(figure(f"{tag}: {step} step (once)", [t["seconds"]], unit="s", n=None,
                                  note=f"peak RSS {t.get('max_rss_mb', float('nan')):.0f} MB"))
        metrics = res.get("metrics") or {}
        per_run = [r["seconds"] for r in metrics.get("runs", []) if r.get("seconds")]
        if per_run:
            figures.append(figure(f"{tag}: training + scoring one run", per_run, unit="s", n=None))
        for row in metrics.get("summary", []):
            wga, sd, acc = (row.get(k) for k in ("worst_group_accuracy_mean", "worst_group_accuracy_std",
                                                  "accuracy_mean"))
            if wga is None:
                continue
            spread = f" ± {sd:.1%}" if sd is not None and math.isfinite(sd) else ""
            overall = f" (accuracy {acc:.1%})" if acc is not None else ""
            facts.append(fact(f"{tag}: {row.get('train')} / {row.get('method')}, worst-group accuracy, "
                              f"{row.get('n_seeds')} seed(s)", f"{wga:.1%}{spread}{overall}",
                              n=(res.get("n_train") or None)))
        for name, probe in (res.get("probes") or {}).items():
            parts = probe.get("parts") or []
            if name != "all_parts" and parts and parts[0].get("flip_rate") is not None:
                facts.append(fact(f"{tag}: probe hair flip rate, ERM on {name}", f"{parts[0]['flip_rate']:.1%}",
                                  n=parts[0].get("n_pairs")))
    return figures, facts


# --------------------------------------------------------------------------- scripts owned by others


#: options for the scripts others own, per tier ("all": every tier), each passed only when the
#: script's --help lists it; a value is a string, None (a bare flag) or a function of the Context
EXTERNAL_ARGS: dict[str, dict[str, dict]] = {
    "bench_engine": {"all": {"--repeat": lambda ctx: str(ctx.repeat)},
                     # Ray's HEML stage took ~8 min for 100 images on the shared 2-core machine
                     "quick": {"--n": "100", "--no-heml": None}},
    # peak RSS is not a timing: one scan per size (its own default), not --repeat
    "bench_memory": {"all": {"--work": lambda ctx: str(ctx.dir("memory"))}, "quick": {"--quick": None}},
    "bench_gpu": {"all": {"--repeat": lambda ctx: str(ctx.repeat)}, "quick": {"--quick": None}},
}


def external(module: str) -> Callable[[Context], dict]:
    """A benchmark from ``reports/bench/<module>.py`` with a ``main(argv)``, imported only when
    it runs; a missing module is recorded by the runner, not a crash."""

    def run(ctx: Context) -> dict:
        if not (SCRIPTS / f"{module}.py").is_file():
            raise MissingScript(f"reports/bench/{module}.py is not there (yet); nothing to run")
        mod = importlib.import_module(f"reports.bench.{module}")
        helptext = _captured(mod.main, ["--help"])[1]
        options = EXTERNAL_ARGS.get(module, {})
        argv: list[str] = []
        for flag, value in {**options.get("all", {}), **options.get(ctx.tier, {})}.items():
            if flag in helptext:
                argv += [flag] if value is None else [flag, value(ctx) if callable(value) else value]
        if "--json" in helptext:
            # its own process: what it measures (peak RSS of its scans) must not see this one's memory
            out = ctx.dir(f"{module}-json") / "records.json"
            stdout = _call(_script(f"{module}.py", *argv, "--json", out))
            value = json.loads(out.read_text("utf-8"))
        else:
            value, stdout = _captured(mod.main, argv)
        if isinstance(value, int) and value != 0:
            raise RuntimeError(f"{module}.main({argv}) returned {value}: {stdout.strip()[-2000:]}")
        details = value if isinstance(value, dict) else {"returned": value}
        figures = [f for f in details.get("figures", []) if isinstance(f, dict) and "median" in f]
        ratios = [f for f in details.get("ratios", []) if isinstance(f, dict) and "value" in f]
        facts = _as_facts(details.get("facts", []))
        details = {**details, "stdout": stdout.strip()}
        shown = _shown(_script(f"{module}.py", *argv)).replace(str(ctx.work), "WORK")
        return _result(shown, {"argv": argv}, figures, ratios, facts, details)

    return run


def _as_facts(raw) -> list[dict]:
    """Fact records from a list of them, or from a plain ``{name: value}`` dict (one level of
    nesting flattened: ``identity.findings_identical``)."""
    if isinstance(raw, list):
        return [f for f in raw if isinstance(f, dict) and "value" in f]
    out = []
    for key, value in (raw or {}).items():
        if isinstance(value, dict):
            out += [fact(f"{key}: {k.replace('_', ' ')}", v) for k, v in value.items()]
        else:
            out.append(fact(key.replace("_", " "), value))
    return out


def _captured(fn, argv):
    buf = io.StringIO()
    try:
        with contextlib.redirect_stdout(buf):
            value = fn(argv)
    except SystemExit as exc:  # argparse --help / an error exit
        if exc.code not in (0, None):
            raise RuntimeError(f"exited with {exc.code}: {buf.getvalue().strip()[-2000:]}") from None
        value = 0
    return value, buf.getvalue()


BENCHMARKS: tuple[Benchmark, ...] = (
    Benchmark("synth", "SynthFaces generation", synth),
    Benchmark("validate", "Dataset validation (decode, sha256, mask checks)", validate),
    Benchmark("segment", "Segmentation per backend at 128 and 512 px", segment),
    Benchmark("scan", "Full scan (segment, HEML, audit) per stage at 128 and 512 px", scan),
    Benchmark("heml", "HEML tree fit: time and memory", heml),
    Benchmark("audit", "Audit: null calibration, detection power, shortcut-finder time", audit),
    Benchmark("rebalance", "Rebalance (recombine) throughput", rebalance),
    Benchmark("report", "HTML report size and load time", report),
    Benchmark("engine", "Local vs Ray engine throughput (bench_engine.py)", external("bench_engine")),
    Benchmark("memory", "Peak RSS against dataset size (bench_memory.py)", external("bench_memory")),
    Benchmark("gpu", "GPU path: decode vs compute per stage, share of the matmul ceiling (bench_gpu.py)",
              external("bench_gpu"), about="runs on a CPU too (~3 min on 2 cores); on a GPU: --device cuda"),
    Benchmark("scan-matrix", "Scan acceptance matrix (two generators, every plant)", scan_matrix,
              tiers=("full",), about="52 scans of 2,000 images"),
    Benchmark("evaluate", "The repair benchmark: scan → rebalance → evaluate → probe", evaluate,
              tiers=("quick", "full"), about="several CPU hours on 2 cores at full size"),
)


def by_name() -> dict[str, Benchmark]:
    return {b.name: b for b in BENCHMARKS}
