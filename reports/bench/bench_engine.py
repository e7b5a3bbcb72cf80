"""Issue 13: the local engine against ``--engine ray`` (a local Ray instance with 2 CPUs).

Scans SynthFaces (n images, ``--size`` px, Smiling planted on blond hair) ``--repeat``
times with each engine into fresh workspaces and reports, per stage, the medians of

- *segment*: validation + segmentation (the dataset's masks) + part statistics;
- *HEML*: loading the part maps, training the self-supervised HEML (the Ray engine trains
  the nodes of one tree level as parallel tasks), embedding and writing the embeddings;

as images/s, with the Ray/local ratio of the same run. Ray's start-up is timed once and
not counted in the stages. The first pair of scans is also the identity check: the same
bytes in ``segments.parquet``, ``manifest.parquet``, ``findings.json``, ``attributes.parquet``
and ``embeddings/index.parquet``, the same embedding files, equal within float16 rounding
(the largest difference is reported in float16 ulps), and which engine ran each stage of the
Ray scan (its ``timings.json``).

    OMP_NUM_THREADS=1 nice -n 10 python reports/bench/bench_engine.py --n 500 --repeat 3

``main(argv)`` runs it from Python (the benchmark runner); ``run(...)`` returns the
records (figures, ratios, facts) without printing.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("BIASAUDIT_PROGRESS", "0")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
# Ray starts its workers at niceness +15 (so they never starve the raylet); on a shared
# machine that puts them behind the local engine's process and measures the neighbours, not
# the engines. The local Ray instance of this benchmark runs its workers at the driver's.
os.environ.setdefault("RAY_worker_niceness", "0")

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from reports.bench.records import figure, ratio  # noqa: E402

ENGINES = ("local", "ray")
STAGES = ("segment", "heml")


def _files(root: Path, pattern: str) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.glob(pattern)) if p.is_file()}


def identity(local: Path, ray: Path) -> dict:
    """What the two workspaces share: byte-identical segments / manifest / findings, and the
    largest embedding difference in float16 units in the last place (0 = identical)."""
    import numpy as np

    seg = _files(local, "segments.parquet*") | _files(local, "segments.parquet/**/*")
    seg_ray = _files(ray, "segments.parquet*") | _files(ray, "segments.parquet/**/*")
    emb = sorted(p.relative_to(local) for p in local.glob("embeddings/**/*.npy"))
    emb_ray = sorted(p.relative_to(ray) for p in ray.glob("embeddings/**/*.npy"))
    worst = 0.0
    for rel in sorted(set(emb) & set(emb_ray)):
        a = np.load(local / rel).astype(np.float32)
        b = np.load(ray / rel).astype(np.float32)
        ulp = np.spacing(np.maximum(np.abs(a), np.abs(b)).astype(np.float16)).astype(np.float32)
        worst = max(worst, float(np.max(np.abs(a - b) / ulp)) if a.size else 0.0)

    def same(name: str) -> bool:
        return (local / name).is_file() and (local / name).read_bytes() == (ray / name).read_bytes()

    return {
        "segments_identical": bool(seg) and seg == seg_ray,
        "manifest_identical": same("manifest.parquet"),
        "findings_identical": same("findings.json"),
        "attributes_identical": same("attributes.parquet"),
        # the embeddings' row order: equal values in another order would not be "equal"
        "embedding_index_identical": same("embeddings/index.parquet"),
        "embedding_files": len(emb),
        "embedding_files_same_names": len(emb) > 0 and emb == emb_ray,
        "embeddings_max_float16_ulps": worst,
    }


def run(*, n: int = 500, size: int = 128, repeat: int = 3, cpus: int = 2, heml: bool = True,
        epochs_scale: float = 1.0, log=print) -> dict:
    """Scan with both engines ``repeat`` times; returns ``{"figures", "ratios", "facts"}``."""
    from biasaudit.audit.scan import run_scan
    from biasaudit.core.engine import make_engine, ray_session, read_stage_timings
    from biasaudit.data.synth.faces import SynthFacesConfig, write_synthfaces

    seconds: dict[tuple[str, str], list[float]] = {(e, s): [] for e in ENGINES for s in STAGES}
    facts: dict = {"machine": f"{platform.machine()}, {os.cpu_count()} CPU cores (shared), no GPU",
                   "omp_num_threads": os.environ.get("OMP_NUM_THREADS", "unset"), "ray_cpus": cpus,
                   "ray_worker_niceness": os.environ.get("RAY_worker_niceness")}
    with tempfile.TemporaryDirectory(prefix="bench-engine-") as tmp:
        data = Path(tmp) / "faces"
        write_synthfaces(data, SynthFacesConfig(n=n, seed=0, size=size, plants=("Smiling:Blond_Hair=0.9",)))
        t0 = time.perf_counter()
        ray_session(make_engine("ray", num_cpus=cpus))
        facts["ray_start_seconds"] = round(time.perf_counter() - t0, 2)
        log(f"ray started in {facts['ray_start_seconds']} s")
        for k in range(repeat):
            for engine in ENGINES:
                ws = Path(tmp) / f"{engine}-{k}"
                result = run_scan(data, ws, labels=["Smiling"], causal=["mouth", "u_lip", "l_lip"], heml=heml,
                                  heml_size=size, epochs_scale=epochs_scale, engine=engine)
                for stage in STAGES if heml else ("segment",):
                    seconds[(engine, stage)].append(result.seconds[stage])
                log(f"run {k} {engine}: " + ", ".join(f"{s} {result.seconds.get(s, 0):.1f} s" for s in STAGES))
            if k == 0:
                facts["identity"] = identity(Path(tmp) / "local-0", Path(tmp) / "ray-0")
                # which engine each stage of the Ray scan really ran on (WS/timings.json)
                facts["ray scan stage engine"] = {stage: t.get("engine") for stage, t in
                                                   read_stage_timings(Path(tmp) / "ray-0").items()}
                log(f"identity: {facts['identity']}")
            for engine in ENGINES:
                shutil.rmtree(Path(tmp) / f"{engine}-{k}", ignore_errors=True)
    figures, ratios = [], []
    for stage in STAGES if heml else ("segment",):
        pair = {}
        for engine in ENGINES:
            rates = [n / s for s in seconds[(engine, stage)]]
            pair[engine] = figure(f"{stage} ({engine})", rates, unit="images/s", n=n,
                                  command=f"bench_engine.py --n {n} --size {size} --repeat {repeat}")
            figures.append(pair[engine])
        ratios.append(ratio(f"{stage}: ray / local", pair["ray"], pair["local"]))
    return {"figures": figures, "ratios": ratios, "facts": facts}


def markdown(records: dict, *, n: int, size: int) -> str:
    f = {r["name"]: r for r in records["figures"]}
    lines = ["| stage | local images/s | Ray images/s | Ray / local |", "|---|---|---|---|"]
    for r in records["ratios"]:
        stage = r["name"].split(":")[0]
        loc, ray = f[f"{stage} (local)"], f[f"{stage} (ray)"]
        lines.append(f"| {stage} | {loc['median']:.1f} ({loc['min']:.1f}–{loc['max']:.1f}) | "
                     f"{ray['median']:.1f} ({ray['min']:.1f}–{ray['max']:.1f}) | {r['value']:.2f} |")
    facts = records["facts"]
    lines.append("")
    lines.append(f"SynthFaces n={n} at {size} px, medians of {records['figures'][0]['repeat']} runs (min–max); "
                 f"{facts['machine']}; OMP_NUM_THREADS={facts['omp_num_threads']}; Ray: local instance with "
                 f"{facts['ray_cpus']} CPUs, start-up {facts['ray_start_seconds']} s (not counted).")
    if "identity" in facts:
        lines.append(f"Identity (first pair of scans): {facts['identity']}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=500)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--cpus", type=int, default=2, help="CPUs of the local Ray instance")
    ap.add_argument("--epochs-scale", type=float, default=1.0)
    ap.add_argument("--no-heml", action="store_true", help="segment stage only")
    args = ap.parse_args(argv)
    records = run(n=args.n, size=args.size, repeat=args.repeat, cpus=args.cpus, heml=not args.no_heml,
                  epochs_scale=args.epochs_scale, log=lambda m: print(m, file=sys.stderr, flush=True))
    print(markdown(records, n=args.n, size=args.size))
    return records


if __name__ == "__main__":
    main()
