"""SynthFaces benchmark and acceptance figures.

Measures, on one pinned CPU core: render-only and end-to-end (render + PNG encode +
write) images/s at 128 px; end-to-end with 2 worker processes; checks the acceptance
points (masks hold only schema ids, --plant conditionals at n=2000 from labels and from
mask pixels, byte-identical output per seed, accessory pixels iff attribute, hair colour
names); writes ``reports/synthfaces_contact_sheet.png`` and the "SynthFaces" section of
``reports/benchmarks.md``.

Run: .venv/bin/python reports/bench/bench_synth.py [--n 2000] [--no-write] [--json FILE]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import tempfile
import time
from pathlib import Path

os.environ.setdefault("BIASAUDIT_PROGRESS", "0")

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from biasaudit.core.schema import get_schema  # noqa: E402
from biasaudit.data.synth import (  # noqa: E402
    HAIR_COLOURS,
    SynthFacesConfig,
    generate_faces,
    sample_attributes,
    write_synthfaces,
)
from biasaudit.data.synth.sheet import contact_sheet  # noqa: E402

REPORTS = Path(__file__).resolve().parents[1]
SECTION = "## SynthFaces"


def _digest(folder: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(folder.rglob("*")):
        if p.is_file():
            h.update(p.relative_to(folder).as_posix().encode())
            h.update(p.read_bytes())
    return h.hexdigest()


def _cell(text: str) -> str:
    return text.replace("|", "\\|")  # a bare | would split the Markdown table cell


def _timed(fn):
    """(wall seconds, CPU seconds of this process, result): on a shared machine the CPU
    time is the honest one-core figure, the wall time includes waiting for the core."""
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn()
    return time.perf_counter() - wall, time.process_time() - cpu, out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--no-write", action="store_true",
                    help="print only: leave reports/benchmarks.md and the contact sheet untouched")
    ap.add_argument("--json", type=Path, default=None, help="also write the figures to this JSON file")
    args = ap.parse_args(argv)
    n = args.n
    all_cores = os.sched_getaffinity(0) if hasattr(os, "sched_setaffinity") else set()
    if all_cores:
        os.sched_setaffinity(0, {min(all_cores)})  # one core, like taskset -c 0
    cv2.setNumThreads(1)
    schema = get_schema("celebamask-hq")
    ids = {name: schema.id_of(name) for name in schema.names}
    plants = ("Smiling:Blond_Hair=0.9", "Eyeglasses:Wearing_Hat=0.9")
    config = SynthFacesConfig(n=n, seed=0, plants=plants, rares=("Gray_Hair=0.05",))
    rows: list[tuple[str, str]] = []

    t_sample, _, table = _timed(lambda: sample_attributes(config))
    rows.append((f"sample_attributes, n={n}", f"{t_sample * 1e3:.0f} ms"))

    # Render only, and the acceptance checks on every rendered image.
    bad_ids = mismatch = 0
    hair_agree = None
    try:
        from biasaudit.segment import colour
    except ImportError:  # the segment stage is optional for this benchmark
        colour = None
    names = {"Blond_Hair": "blond", "Black_Hair": "black", "Brown_Hair": "brown", "Red_Hair": "red",
             "Gray_Hair": "gray"}
    agree = 0
    has_glasses, has_hat = np.zeros(n, bool), np.zeros(n, bool)
    faces = generate_faces(config, table=table)
    render_time = render_cpu = 0.0
    for k in range(n):
        start, start_cpu = time.perf_counter(), time.process_time()  # rendering only, not the checks
        _, image, mask, attrs = next(faces)
        render_time += time.perf_counter() - start
        render_cpu += time.process_time() - start_cpu
        present = set(np.unique(mask).tolist())
        bad_ids += not present <= set(schema.ids)
        for attribute, part in (("Eyeglasses", "eye_g"), ("Wearing_Hat", "hat"),
                                ("Wearing_Earrings", "ear_r"), ("Wearing_Necklace", "neck_l")):
            mismatch += (ids[part] in present) != bool(attrs[attribute])
        has_glasses[k], has_hat[k] = ids["eye_g"] in present, ids["hat"] in present
        if colour is not None:
            hair = next(h for h in HAIR_COLOURS if attrs[h])
            lab = colour.robust_lab(colour.rgb_to_lab(image[mask == ids["hair"]]))
            agree += colour.colour_name_lab(*lab, part="hair") == names[hair]
    if colour is not None:
        hair_agree = agree / n

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        t_write1, c_write1, _ = _timed(lambda: write_synthfaces(tmp / "a", config))
        t_write1b, c_write1b, _ = _timed(lambda: write_synthfaces(tmp / "b", config))
        identical = _digest(tmp / "a") == _digest(tmp / "b")
        if hasattr(os, "sched_setaffinity"):
            os.sched_setaffinity(0, all_cores)
        t_write2, _, _ = _timed(lambda: write_synthfaces(tmp / "c", config, workers=2))
        identical_workers = _digest(tmp / "a") == _digest(tmp / "c")
        other_seed = SynthFacesConfig(n=50, seed=1, plants=plants)
        write_synthfaces(tmp / "d", other_seed)
        differs = (tmp / "a" / "images" / "00000.png").read_bytes() != (tmp / "d" / "images" / "00000.png").read_bytes()
        labels = pd.read_csv(tmp / "a" / "labels.csv")
        mb = sum(p.stat().st_size for p in (tmp / "a").rglob("*") if p.is_file()) / 1e6

    def cond(label, attribute):
        return (labels.loc[labels[label] == 1, attribute].mean(), labels.loc[labels[label] == 0, attribute].mean())

    rows += [
        ("render only, 1 core, 128 px", f"{n / render_cpu:.0f} images per CPU-second "
                                         f"({n / render_time:.0f}/s wall)"),
        ("render + PNG + write, 1 core, 128 px",
         f"{n / min(c_write1, c_write1b):.0f} images per CPU-second ({n / min(t_write1, t_write1b):.0f}/s wall; "
         f"{n} images = {mb:.0f} MB)"),
        ("render + PNG + write, --workers 2 (2 cores)", f"{n / t_write2:.0f} images/s (incl. process start)"),
        ("masks with ids outside the schema", f"{bad_ids} / {n}"),
        ("eye_g/hat/ear_r/neck_l pixels ≠ attribute", f"{mismatch} / {4 * n} checks"),
    ]
    for plant in config.plants:
        on, off = cond(plant.label, plant.attribute)
        rows.append((f"--plant {plant.spec}, labels.csv", f"P(=1 | {plant.label}=1) = {on:.3f}, "
                                                          f"P(=1 | {plant.label}=0) = {off:.3f}"))
    rows.append(("--plant Eyeglasses:Wearing_Hat=0.9, read from mask pixels",
                 f"P(hat | eye_g) = {has_hat[has_glasses].mean():.3f}, "
                 f"P(hat | no eye_g) = {has_hat[~has_glasses].mean():.3f}"))
    rows.append(("--rare Gray_Hair=0.05", f"marginal = {labels['Gray_Hair'].mean():.3f}"))
    balanced = sample_attributes(SynthFacesConfig(n=n, seed=0, plants=plants, balanced=True))
    cells = balanced.groupby(["Smiling", "Blond_Hair"]).size().tolist()
    rows.append(("--balanced, (Smiling, Blond_Hair) cells", " / ".join(map(str, cells))))
    rows.append(("same seed twice, byte-identical", str(identical)))
    rows.append(("--workers 2 vs 1, byte-identical", str(identical_workers)))
    rows.append(("another seed gives other bytes", str(differs)))
    if hair_agree is not None:
        rows.append(("hair colour name (segment.colour) = attribute", f"{hair_agree:.1%}"))

    # No single pixel decides a label: the best one-pixel AUC (brightness) per label.
    from scipy.stats import rankdata

    probe = list(generate_faces(SynthFacesConfig(n=1000, seed=5)))
    pixels = np.stack([f[1].mean(axis=2).ravel() for f in probe])
    ranks = rankdata(pixels, axis=0)
    best = []
    for label in ("Smiling", "Eyeglasses", "Wearing_Hat", "Male", "Young", "Blond_Hair"):
        y = np.array([f[3][label] for f in probe], bool)
        n1, n0 = y.sum(), (~y).sum()
        auc = (ranks[y].sum(axis=0) - n1 * (n1 + 1) / 2) / (n1 * n0)
        best.append(f"{label} {np.max(np.maximum(auc, 1 - auc)):.2f}")
    rows.append(("best single-pixel AUC (brightness), n=1000, no plant", ", ".join(best)))

    if args.json is not None:
        figures = {"render_images_per_cpu_s": n / render_cpu, "render_images_per_s": n / render_time,
                   "write_images_per_cpu_s": n / min(c_write1, c_write1b),
                   "write_images_per_s": n / min(t_write1, t_write1b), "write_workers2_images_per_s": n / t_write2,
                   "dataset_mb": mb, "bad_mask_ids": bad_ids, "accessory_mismatches": mismatch,
                   "byte_identical_same_seed": identical, "byte_identical_workers": identical_workers,
                   "other_seed_differs": differs, "hair_colour_agreement": hair_agree}
        args.json.write_text(json.dumps({"n": n, "figures": figures, "rows": rows}, indent=1, default=float), "utf-8")
    if args.no_write:
        print("\n".join(f"| {_cell(a)} | {_cell(b)} |" for a, b in rows))
        return
    sheet = contact_sheet(SynthFacesConfig(n=32, seed=7), cols=8, rows=4)
    cv2.imwrite(str(REPORTS / "synthfaces_contact_sheet.png"), sheet[..., ::-1])

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    machine = (f"{platform.machine()}, {os.cpu_count()}-core CPU, no GPU, Python {platform.python_version()}, "
               f"load average {load:.1f} at the end (other jobs were sharing the cores)")
    lines = [
        SECTION, "",
        f"`reports/bench/bench_synth.py --n {n}` on {machine}; one process pinned to one core "
        f"(`sched_setaffinity`, OpenCV threads = 1) unless stated. Config: "
        f"`--n {n} --seed 0 --plant {' --plant '.join(plants)} --rare Gray_Hair=0.05`.", "",
        "| measure | result |", "|---|---|",
        *[f"| {_cell(a)} | {_cell(b)} |" for a, b in rows], "",
        "Contact sheet: `reports/synthfaces_contact_sheet.png` (seed 7, portraits above their "
        "colourised masks).", "",
    ]
    section = "\n".join(lines)
    print(section)
    bench_md = REPORTS / "benchmarks.md"
    text = bench_md.read_text("utf-8") if bench_md.exists() else "# Benchmarks\n\n"
    if SECTION in text:
        head, rest = text.split(SECTION, 1)
        nxt = rest.find("\n## ")
        text = head + section + ("\n" + rest[nxt + 1:] if nxt >= 0 else "")
    else:
        text = text.rstrip("\n") + "\n\n" + section
    bench_md.write_text(text, "utf-8")


if __name__ == "__main__":
    main()
