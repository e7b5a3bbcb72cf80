"""``run_rebalance``: a scan workspace → a repaired dataset folder NEW (native layout).

Steps (DESIGN.md §7):

1. read the scan: the label, the attribute of the target part (default: the top flagged
   finding on it), every image's value and label;
2. plan the cells (:mod:`biasaudit.rebalance.plan`) and print the plan;
3. give every planned sample a base (from the label group that needs it; for edits, the
   real image being edited) and a ranked list of donors carrying the needed value, matched
   to the base on every other attribute the audit measured (presence, colour, size and
   shape of every other part), parts in front of the target weighing most;
4. synthesize each sample (recombine or inpaint) and keep it only when the quality gate
   re-measures the intended value; a reject retries with the next donor;
5. write NEW: originals as hard links (copies across file systems), synthesized samples
   under ``images/synthetic/`` and ``masks/synthetic/``, ``labels.csv`` with ``origin``
   and provenance, ``schema.json`` and ``rebalance.json``;
6. closing check: a fresh mask-statistics scan of NEW (no HEML, in a temporary folder),
   the target association before and after, and ``origin`` × label / × attribute.

Work happens in a hidden sibling folder ``.NEW.rebalance-partial`` that is renamed to NEW
at the end. Every sample is seeded by its index and written with a small record, so a
killed run started again with the same arguments skips what is done and ends with the
same NEW as an uninterrupted run.

>>> result = run_rebalance("WS", target="hair", out="NEW")  # doctest: +SKIP
>>> result.after["cramers_v"] < 0.1  # doctest: +SKIP
True
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from biasaudit import __version__
from biasaudit.core.errors import BiasauditError, ValidationError
from biasaudit.core.io import _json_default, atomic_path, write_json_atomic, write_text_atomic
from biasaudit.core.progress import progress
from biasaudit.core.schema import Schema
from biasaudit.core.workspace import Workspace
from biasaudit.rebalance.gate import MEASURABLE, REJECT_REASONS, EmbeddingGate, check_sample
from biasaudit.rebalance.plan import STRATEGIES, Plan, chi_square_of, cramers_v_of, make_plan
from biasaudit.rebalance.recombine import RecombineError, layer_of, swap_part

METHODS = ("recombine", "inpaint")
_UMASK = os.umask(0)
os.umask(_UMASK)
#: --attribute choices (CLI name → attribute column of attributes.parquet)
ATTRIBUTE_KINDS = {"colour": "colour", "color": "colour", "presence": "presence", "size": "size",
                   "shape": "shape", "cluster": "cluster_name", "cluster_name": "cluster_name"}
#: a column of labels.csv whose Cramér's V with the target attribute reaches this is the
#: attribute written as a label (Blond_Hair for hair colour): synthetic rows take the donor's
TIED_V = 0.8
# a part whose colour goes with the target's this strongly is a proxy the model can switch to
# (SynthFaces paints the brows in the hair colour: V 0.79, every other part <= 0.25); it is
# moved with the target, or a rebalanced set keeps the old shortcut in that part
COMPANION_V = 0.5
#: a value needs this many real images to be planned (rarer values are noise, as in the audit)
MIN_SUPPORT = 5
#: fewest real carriers a value needs before it can be synthesized
MIN_DONORS = 2
SYNTHETIC_DIR = "synthetic"
PROVENANCE = ("origin", "base", "donor", "method", "seed", "target", "attribute_value")


class RebalanceError(BiasauditError, ValueError):
    """A rebalance that cannot run as asked (see the message for the fix)."""


@dataclass(frozen=True)
class Job:
    """One planned synthetic sample."""

    index: int
    kind: str  # "new" | "edited"
    attribute_value: str
    label_value: str
    base: str
    donors: tuple[str, ...]
    ghost: bool = False  # an edit of an "absent" cell: refill where a donor's part would go

    @property
    def image_id(self) -> str:
        return f"{SYNTHETIC_DIR}/{self.index:06d}.png"


@dataclass(frozen=True)
class RebalanceResult:
    out: Path
    plan: Plan
    generated: int
    edited: int
    rejected: dict[str, int]
    before: dict[str, Any]
    after: dict[str, Any]
    settings: dict[str, Any]
    failed: int = 0
    flagged_after: list[dict] = field(default_factory=list)

    def summary(self) -> str:
        b, a = self.before, self.after
        if not a:  # no closing check was run
            return (f"Wrote {self.out}: {self.generated} new and {self.edited} edited synthetic samples; "
                    f"{self.settings['attribute']} × {self.settings['label']}: Cramér's V {b['cramers_v']:.3f} before.")
        lines = [
            f"Wrote {self.out}: {self.generated} new and {self.edited} edited synthetic samples "
            f"({self.failed} planned samples found no donor that passed the gate).",
            "Rejected by the quality gate: " + (", ".join(f"{k} {v}" for k, v in self.rejected.items() if v) or "none"),
            f"{self.settings['attribute']} × {self.settings['label']}: Cramér's V {b['cramers_v']:.3f} before, "
            f"{a['cramers_v']:.3f} after (p = {a['p_value']:.3g}).",
            "cells (value, label: before → after): " + "; ".join(
                f"{c['attribute_value']},{c['label_value']}: {_count(b, c)} → {c['count']}" for c in a["cells"]),
            f"origin × {self.settings['label']}: chi2 {a['origin_vs_label']['chi2']:.2f}, "
            f"p = {a['origin_vs_label']['p_value']:.3g}; origin × {self.settings['attribute']}: "
            f"chi2 {a['origin_vs_attribute']['chi2']:.2f}, p = {a['origin_vs_attribute']['p_value']:.3g}.",
        ]
        if self.flagged_after:
            lines.append(f"Still flagged on {self.settings['target']}: " + "; ".join(
                f["summary"] for f in self.flagged_after))
        else:
            lines.append(f"No flagged finding on {self.settings['target']} in the closing scan.")
        return "\n".join(lines)


def _count(before: dict, cell: dict) -> int:
    for c in before["cells"]:
        if c["attribute_value"] == cell["attribute_value"] and c["label_value"] == cell["label_value"]:
            return c["count"]
    return 0


# =============================================================================== entry point


def run_rebalance(workspace: str | Path, *, target: str, out: str | Path, label: str | None = None,
                  attribute: str | None = None, strategy: str = "decorrelate", method: str = "recombine",
                  budget: int | None = None, model: str | None = None, seed: int = 0, overwrite: bool = False,
                  force: bool = False, log: Callable[[str], None] | None = None, max_tries: int = 5,
                  device: str = "auto", steps: int = 20, closing_check: bool = True,
                  companions: str | Sequence[str] = "auto") -> RebalanceResult:
    """Repair the association the scan in ``workspace`` found on part ``target`` into ``out``.

    ``companions``: parts swapped from the same donor together with the target. ``"auto"``
    takes, for a colour attribute and the ``recombine`` method, every part whose colour name
    goes with the target's (Cramér's V >= :data:`COMPANION_V`): brows painted in the hair
    colour would otherwise keep the old shortcut. ``"none"``, or a list of part names.
    """
    say = log or (lambda msg: None)
    if strategy not in STRATEGIES:
        raise ValidationError(f"--strategy {strategy}: expected one of {', '.join(STRATEGIES)}.")
    if method not in METHODS:
        raise ValidationError(f"--method {method}: expected one of {', '.join(METHODS)}.")
    if method == "inpaint" and not model:
        raise ValidationError("--method inpaint needs --model DIR (a diffusers inpainting pipeline folder or hub id).")
    if max_tries < 1:
        raise ValidationError(f"max_tries must be >= 1; got {max_tries}.")
    if method == "inpaint":
        from biasaudit.rebalance.inpaint import check_model_folder

        check_model_folder(model)
    scan = read_scan(workspace)
    out = Path(out)
    _check_out(out, scan, overwrite=overwrite)
    schema = scan.schema
    if target not in schema.part_names:
        raise RebalanceError(
            f"--target {target}: not a part of the workspace's schema '{schema.name}'. Expected one of: "
            f"{', '.join(schema.part_names)}."
        )
    label = _resolve_label(scan, label)
    kind = _resolve_attribute(scan, target, label, attribute, force=force)
    attr_name = f"{target} {'appearance cluster' if kind == 'cluster_name' else kind}"
    values, labels = _values_and_labels(scan, target, kind, label)
    counts = _counts(values, labels)
    supported = counts[counts.sum(axis=1) >= MIN_SUPPORT]
    if len(supported) < 2:
        carried = {str(v): int(n) for v, n in counts.sum(axis=1).items()}
        wanted = ["present", "absent"] if kind == "presence" else list(carried)
        rare = [v for v in wanted if carried.get(v, 0) < MIN_SUPPORT] or wanted
        raise RebalanceError(
            f"no donors for {attr_name} " + ", ".join(f"'{v}' ({carried.get(v, 0)} real images carry it)" for v in rare)
            + f"; at least two values with >= {MIN_SUPPORT} real carriers each are needed to rebalance. "
            f"Collect images that carry it, or choose another --attribute."
        )
    if supported.shape[1] < 2:
        raise RebalanceError(f"--label {label}: only one label value among images with a {attr_name}; "
                             f"nothing to decorrelate. Choose another --label.")
    plan = make_plan(supported, strategy=strategy, budget=budget)
    companion_parts = _resolve_companions(scan, target, kind, method, values, companions)
    settings = {"target": target, "label": label, "attribute": attr_name, "attribute_kind": kind,
                "strategy": strategy, "method": method, "budget": budget, "seed": seed,
                "model": str(model) if model else None, "max_tries": max_tries}
    if companion_parts:
        settings["companions"] = companion_parts
        say(f"parts moved with {target} (their colour goes with it, V >= {COMPANION_V}): "
            + ", ".join(companion_parts))
    say(f"plan for {attr_name} × {label} ({strategy}):\n{plan.table()}")
    _check_donors(plan, values, attr_name)
    generator = _make_generator(method, model=model, device=device, steps=steps, schema=schema,
                                target=target, kind=kind)

    gate = _Gate.build(scan, target, kind, values, say)
    settings["heml_gate"] = gate.embedding.node if gate.embedding is not None else None
    jobs = _assign(plan, scan, target, kind, values, labels, seed=seed, max_tries=max_tries)
    tied = tied_columns(scan.labels, values, exclude=(label,))
    if tied:
        say(f"columns tied to {attr_name} (V >= {TIED_V}), taken from the donor: {', '.join(tied)}")

    work = _work_dir(out, {"version": __version__, "workspace": str(scan.ws.root.resolve()),
                           "settings": settings, "plan": plan.to_dict()})
    with _atomic(work / "rebalance.json") as tmp:  # the plan, readable while samples are made
        tmp.write_text(json.dumps({"settings": settings, "plan": plan.to_dict()}, indent=2) + "\n", "utf-8")
    records = _synthesize(jobs, scan, work, generator=generator, gate=gate, target=target, kind=kind,
                          seed=seed, method=method, companions=companion_parts)
    kept = [r for r in records if r["kept"]]
    rejected = {reason: 0 for reason in REJECT_REASONS}
    for r in records:
        for reason, n in r["rejected"].items():
            rejected[reason] = rejected.get(reason, 0) + n
    say("writing the dataset")
    new_labels = _write_dataset(work, scan, kept, tied=tied, label=label, method=method, seed=seed, target=target)

    before = _association(values, labels, counts.index)
    after: dict[str, Any] = {}
    flagged_after: list[dict] = []
    if closing_check:
        say("closing check: scanning NEW (mask statistics)")
        after, flagged_after = _closing_check(work, scan, new_labels, target=target, kind=kind, label=label)
    doc = {
        "biasaudit_version": __version__, "workspace": str(scan.ws.root), "source": str(scan.data_root),
        "out": str(out), "settings": settings, "plan": plan.to_dict(),
        "generated": sum(1 for r in kept if r["kind"] == "new"),
        "edited": sum(1 for r in kept if r["kind"] == "edited"),
        "failed": len(records) - len(kept),
        "rejected": rejected, "before": before, "after": after, "flagged_after": flagged_after,
        "tied_columns": tied,
        "samples": [{"image": r["image"], "base": r["base"], "donor": r["donor"],
                     "attribute_value": r["attribute_value"], "label_value": r["label_value"],
                     "kind": r["kind"], "action": r["action"]} for r in kept],
    }
    with _atomic(work / "rebalance.json") as tmp:
        tmp.write_text(json.dumps(doc, indent=2, ensure_ascii=False, default=_json_default) + "\n", "utf-8")
    shutil.rmtree(work / ".records", ignore_errors=True)
    (work / ".rebalance-key.json").unlink(missing_ok=True)
    if out.exists():
        shutil.rmtree(out)  # --overwrite (checked above), and only now that NEW is complete
    os.replace(work, out)
    return RebalanceResult(out=out, plan=plan, generated=doc["generated"], edited=doc["edited"],
                           rejected=rejected, before=before, after=after, settings=settings,
                           failed=doc["failed"], flagged_after=flagged_after)


# =============================================================================== the scan


@dataclass(frozen=True)
class Scan:
    """What rebalance reads from a scan workspace (never written to)."""

    ws: Workspace
    config: dict
    schema: Schema
    data_root: Path
    manifest: pd.DataFrame  # ok rows only, indexed by image
    labels: pd.DataFrame  # label columns of the ok rows, indexed by image
    segments: pd.DataFrame
    attributes: pd.DataFrame
    findings: dict


def read_scan(workspace: str | Path) -> Scan:
    """The parts of a scan workspace rebalance needs; a clear error when it is not one."""
    from biasaudit.data import BASE_COLUMNS

    ws = Workspace(workspace)
    need = [ws.config, ws.manifest, ws.segments, ws.attributes, ws.findings]
    missing = [p.name for p in need if not p.exists()]  # segments.parquet: a folder of shards
    config = {}
    if not missing:
        try:
            config = json.loads(ws.config.read_text("utf-8"))
        except (OSError, json.JSONDecodeError):
            missing = ["config.json (unreadable)"]
    if missing or "scan" not in config or "segment" not in config:
        raise RebalanceError(
            f"{ws.root} is not a scan workspace (expected config.json with a scan section, manifest.parquet, "
            f"segments.parquet, attributes.parquet and findings.json; missing: {', '.join(missing) or 'scan section'}). "
            f"Run `biasaudit scan DATA --out {ws.root} --label COL` first."
        )
    schema = Schema.from_dict(config["segment"]["schema_classes"], source=str(ws.config))
    manifest = pd.read_parquet(ws.manifest)
    manifest = manifest[manifest["status"] == "ok"].set_index("image", drop=False)
    label_cols = [c for c in manifest.columns if c not in BASE_COLUMNS]
    segments = pd.read_parquet(ws.segments)
    segments = segments[segments["image"].isin(manifest.index)]
    return Scan(ws=ws, config=config, schema=schema, data_root=Path(config["data"]["root"]), manifest=manifest,
                labels=manifest[label_cols], segments=segments, attributes=pd.read_parquet(ws.attributes),
                findings=json.loads(ws.findings.read_text("utf-8")))


def _resolve_label(scan: Scan, label: str | None) -> str:
    scanned = list(scan.config["scan"].get("labels") or [])
    if label is None:
        if len(scanned) != 1:
            raise RebalanceError(
                f"the scan in {scan.ws.root} tested {len(scanned)} labels ({', '.join(scanned) or 'none'}); "
                f"say which to rebalance with --label COL."
            )
        label = scanned[0]
    if label not in scan.labels.columns:
        raise RebalanceError(
            f"--label {label}: no such column in the dataset's labels.csv. Expected one of: "
            f"{', '.join(scan.labels.columns) or '(none: the dataset has no labels)'}."
        )
    return label


def _resolve_attribute(scan: Scan, target: str, label: str, attribute: str | None, *, force: bool) -> str:
    if attribute is not None:
        key = attribute.strip().lower().replace("-", "_")
        if key not in ATTRIBUTE_KINDS:
            raise RebalanceError(
                f"--attribute {attribute}: expected one of colour, presence, size, shape, cluster."
            )
    on_part = [f for f in scan.findings.get("findings", [])
               if f.get("segment") == target and f.get("label") == label]
    flagged = [f for f in on_part if f.get("severity", 0) >= 0.5]
    if not flagged and not force:
        others = [f"{f['segment']}: {f['summary']}" for f in scan.findings.get("findings", [])
                  if f.get("severity", 0) >= 0.5]
        raise RebalanceError(
            f"--target {target}: the scan flagged nothing on {target} for {label}; nothing to repair. "
            + (f"Flagged findings: {' | '.join(others[:5])}. " if others else "The scan flagged nothing at all. ")
            + "Pass --force (with --attribute) to rebalance anyway."
        )
    if attribute is not None:
        return ATTRIBUTE_KINDS[attribute.strip().lower().replace("-", "_")]
    for f in flagged or on_part:
        kinds = [f.get("evidence", {}).get("attribute_kind", "")]
        kinds += [_kind_of(r.get("attribute", "")) for r in f.get("evidence", {}).get("related", [])]
        for k in kinds:
            if k in (*MEASURABLE, "cluster_name"):
                return k
    raise RebalanceError(
        f"--target {target}: no finding on {target} names a part attribute rebalance can change "
        f"(colour, presence, size, shape, cluster); give --attribute."
    )


def _kind_of(attribute_text: str) -> str:
    for k in ("colour", "presence", "size", "shape"):
        if f" {k}" in f" {attribute_text}":
            return k
    return "cluster_name" if "cluster" in attribute_text else ""


def _values_and_labels(scan: Scan, target: str, kind: str, label: str) -> tuple[pd.Series, pd.Series]:
    rows = scan.attributes[scan.attributes["node"] == target].set_index("image")
    if kind not in rows.columns:
        raise RebalanceError(f"attributes.parquet has no '{kind}' column for {target}; re-run the scan"
                             + (" with HEML (clusters need it)." if kind == "cluster_name" else "."))
    values = rows[kind].reindex(scan.labels.index).fillna("").astype(str)
    labels = scan.labels[label].map(_label_text)
    return values, labels


def _label_text(v) -> str:
    if v is None or (isinstance(v, float) and np.isnan(v)):
        return ""
    if isinstance(v, (float, np.floating)) and float(v).is_integer():
        return str(int(v))
    return str(v)


def _counts(values: pd.Series, labels: pd.Series) -> pd.DataFrame:
    ok = (values != "") & (labels != "")
    return pd.crosstab(values[ok], labels[ok]).sort_index()


def _association(values: pd.Series, labels: pd.Series, order) -> dict[str, Any]:
    counts = _counts(values, labels)
    chi2, p = chi_square_of(counts)
    cells = [{"attribute_value": str(v), "label_value": str(lv), "count": int(counts.loc[v, lv])}
             for v in counts.index for lv in counts.columns]
    return {"cramers_v": round(cramers_v_of(counts), 4), "chi2": round(chi2, 3), "p_value": p, "cells": cells}


def companion_parts(scan: Scan, target: str, values: pd.Series, *, min_v: float = COMPANION_V,
                    min_images: int = 50, max_p: float = 1e-3) -> list[str]:
    """Parts whose colour name goes with ``values`` (the target's colour per image) with
    Cramér's V >= ``min_v`` and a chi-square p-value below ``max_p``, over images where the
    part is present with a named colour (V alone is inflated on a few dozen images)."""
    seg = scan.segments
    out = []
    for part in sorted(set(seg["part"]) - {target}):
        rows = seg[(seg["part"] == part) & seg["present"]].set_index("image")["colour"].astype(str)
        joined = pd.concat([values, rows], axis=1, keys=["target", "part"], join="inner")
        joined = joined[(joined["target"] != "") & (joined["part"] != "")]
        if len(joined) < min_images or joined["part"].nunique() < 2 or joined["target"].nunique() < 2:
            continue
        table = pd.crosstab(joined["target"], joined["part"])
        if cramers_v_of(table) >= min_v and chi_square_of(table)[1] < max_p:
            out.append(part)
    return out


def _resolve_companions(scan: Scan, target: str, kind: str, method: str, values: pd.Series,
                        companions: str | Sequence[str]) -> list[str]:
    if isinstance(companions, str) and companions in ("auto", "none"):
        if companions == "none" or kind != "colour" or method != "recombine":
            return []
        return companion_parts(scan, target, values)
    names = [companions] if isinstance(companions, str) else list(companions)
    names = [n.strip() for name in names for n in str(name).split(",") if n.strip()]
    unknown = [n for n in names if n not in scan.schema.part_names or n == target]
    if unknown:
        raise RebalanceError(
            f"--companions {','.join(names)}: {', '.join(unknown)} is not another part of the schema "
            f"'{scan.schema.name}'. Expected 'auto', 'none' or parts among: {', '.join(scan.schema.part_names)}."
        )
    return names


def tied_columns(labels: pd.DataFrame, values: pd.Series, *, exclude=()) -> list[str]:
    """Label columns whose Cramér's V with ``values`` (rows with a value) is >= :data:`TIED_V`.

    >>> import pandas as pd
    >>> v = pd.Series(["blond", "dark", "blond", "dark"], index=list("abcd"))
    >>> t = pd.DataFrame({"Blond_Hair": [1, 0, 1, 0], "Smiling": [1, 1, 0, 0]}, index=list("abcd"))
    >>> tied_columns(t, v)
    ['Blond_Hair']
    """
    ok = values != ""
    out = []
    for col in labels.columns:
        if col in exclude:
            continue
        col_values = labels.loc[ok[ok].index, col].map(_label_text)
        if col_values.nunique() < 2:
            continue
        if cramers_v_of(pd.crosstab(values[ok], col_values)) >= TIED_V:
            out.append(col)
    return out


# =============================================================================== output folder


def _check_out(out: Path, scan: Scan, *, overwrite: bool) -> None:
    o = out.resolve()
    for name, other in (("the dataset", scan.data_root.resolve()), ("the workspace", scan.ws.root.resolve())):
        if o == other or other in o.parents:
            raise RebalanceError(f"--out {out} is inside {name} {other}; NEW must be a folder of its own "
                                 f"outside DATA and WS. Choose another --out.")
        if o in other.parents:
            raise RebalanceError(f"--out {out} contains {name} {other}; writing there could destroy it. "
                                 f"Choose another --out.")
    if out.exists() and not overwrite:
        raise RebalanceError(f"--out {out} already exists; pass --overwrite to replace it, or choose another folder.")
    if out.exists() and not out.is_dir():
        raise RebalanceError(f"--out {out} is a file, not a folder; choose another --out.")


def _work_dir(out: Path, key: dict) -> Path:
    """The hidden folder NEW is built in; a leftover one with the same key is resumed."""
    work = out.parent / f".{out.name}.rebalance-partial"
    key_text = json.dumps(key, sort_keys=True, default=str)
    key_file = work / ".rebalance-key.json"
    if work.exists():
        if key_file.is_file() and key_file.read_text("utf-8") == key_text:
            return work
        shutil.rmtree(work)  # left by a run with other arguments (or killed while renaming): start over
    work.mkdir(parents=True)
    write_text_atomic(key_file, key_text)
    return work


# =============================================================================== jobs


def _features(scan: Scan, target: str) -> tuple[np.ndarray, list[str]]:
    """One-hot rows (image order of ``scan.labels``) of every other part's measured attributes.

    Parts drawn in front of the target (a hat over hair) weigh 4×: a donor must share
    what would hide its part.
    """
    attrs = scan.attributes
    parts = [p for p in scan.schema.part_names if p != target]
    rows = attrs[attrs["node"].isin(parts)]
    t_layer = layer_of(target)
    blocks = []
    index = scan.labels.index
    for part, grp in rows.groupby("node"):
        g = grp.set_index("image").reindex(index)
        weight = 4.0 if layer_of(str(part)) > t_layer else 1.0
        for col in ("presence", "colour", "size", "shape"):
            if col not in g.columns:
                continue
            dummies = pd.get_dummies(g[col].fillna("").astype(str))
            dummies = dummies.drop(columns=[""], errors="ignore")
            if dummies.shape[1]:
                blocks.append(dummies.to_numpy(dtype=np.float32) * weight)
    if not blocks:
        return np.zeros((len(index), 1), np.float32), list(index)
    return np.hstack(blocks), list(index)


def _assign(plan: Plan, scan: Scan, target: str, kind: str, values: pd.Series, labels: pd.Series, *,
            seed: int, max_tries: int) -> list[Job]:
    """Every planned sample with its base and ranked donors; deterministic for a seed."""
    rng = np.random.default_rng(seed)
    feats, ids = _features(scan, target)
    row = {img: i for i, img in enumerate(ids)}
    jitter = rng.random(len(ids)) * 1e-3  # breaks ties among equally good donors, reproducibly
    jobs: list[Job] = []
    carriers = {v: [i for i in values.index if values[i] == v] for v in {c.attribute_value for c in plan.cells}}
    present = [i for i in values.index if values[i] == "present"]

    occluders = _occluders(scan, target)
    presence = _presence_keys(scan, occluders)

    def donors_for(base: str, pool: list[str]) -> tuple[str, ...]:
        pool = [d for d in pool if d != base]
        # a donor whose part is partly hidden (hair under a hat) leaves a hole on a base
        # without that occluder: keep donors that share the base's occluders when any do
        same = [d for d in pool if presence.get(d) == presence.get(base)]
        pool = same or pool
        if not pool:
            return ()
        idx = np.array([row[d] for d in pool])
        score = feats[idx] @ feats[row[base]] + jitter[idx]
        top = np.argsort(-score, kind="stable")[:max_tries]
        return tuple(pool[k] for k in top)

    for cell in plan.cells:
        a, lab = cell.attribute_value, cell.label_value
        group = [i for i in labels.index if labels[i] == lab]
        if cell.n_new:
            bases = [i for i in group if values[i] != "" and values[i] != a]
            if kind == "presence":
                bases = [i for i in group if values[i] != a]
            if not bases:
                raise RebalanceError(
                    f"no base for {a} × {cell.label_value}: every image with {cell.label_value} already carries "
                    f"'{a}'. Use --strategy equalize or another --attribute."
                )
            order = [bases[k] for k in _cycle(rng, len(bases), cell.n_new)]
            for base in order:
                jobs.append(Job(len(jobs), "new", a, lab, base, donors_for(base, carriers[a])))
        if cell.n_edited:
            members = [i for i in group if values[i] == a]
            chosen = [members[k] for k in rng.permutation(len(members))[: cell.n_edited]]
            ghost = kind == "presence" and a == "absent"
            for base in sorted(chosen):
                pool = present if ghost else carriers[a]
                jobs.append(Job(len(jobs), "edited", a, lab, base, donors_for(base, pool), ghost=ghost))
    return jobs


def _occluders(scan: Scan, target: str, *, min_contact: float = 0.15, min_share: float = 0.2,
               sample: int = 150, seed: int = 0) -> list[str]:
    """Parts drawn in front of ``target`` that cover it: the part's outline runs along the
    target for at least ``min_contact`` of its length in at least ``min_share`` of the
    sampled images that have both (a hat on hair; not the eyes, which hair only frames)."""
    import cv2

    from biasaudit.segment import load_part_map

    schema = scan.schema
    tid = schema.id_of(target)
    higher = [schema.id_of(p) for p in schema.part_names if p != target and layer_of(p) > layer_of(target)]
    if not higher:
        return []
    with_target = scan.segments[(scan.segments["part"] == target) & scan.segments["present"]]["image"].unique()
    rng = np.random.default_rng(seed)
    ids = rng.choice(with_target, min(sample, len(with_target)), replace=False) if len(with_target) else []
    seen = dict.fromkeys(higher, 0)
    touching = dict.fromkeys(higher, 0)
    kernel = np.array([[0, 1, 0], [1, 1, 1], [0, 1, 0]], np.uint8)
    for image_id in ids:
        lm = load_part_map(scan.ws.root, str(image_id))
        on_target = lm == tid
        for pid in higher:
            inside = lm == pid
            if not inside.any():
                continue
            seen[pid] += 1
            ring = cv2.dilate(inside.astype(np.uint8), kernel).astype(bool) & ~inside
            if ring.any() and (ring & on_target).sum() / ring.sum() >= min_contact:
                touching[pid] += 1
    return [schema.name_of(pid) for pid in higher if seen[pid] and touching[pid] / seen[pid] >= min_share]


def _presence_keys(scan: Scan, parts: list[str]) -> dict[str, tuple[bool, ...]]:
    if not parts:
        return {}
    seg = scan.segments[scan.segments["part"].isin(parts)]
    table = seg.pivot_table(index="image", columns="part", values="present", aggfunc="first").reindex(
        columns=parts).fillna(False).astype(bool)
    return {str(i): tuple(row) for i, row in zip(table.index, table.to_numpy(), strict=True)}


def _cycle(rng: np.random.Generator, n: int, k: int) -> list[int]:
    """``k`` indices into ``n`` items: each item once per round, in a fresh random order per round."""
    out: list[int] = []
    while len(out) < k:
        out.extend(rng.permutation(n).tolist())
    return out[:k]


def _check_donors(plan: Plan, values: pd.Series, attr_name: str) -> None:
    for cell in plan.cells:
        if cell.n_new + cell.n_edited == 0:
            continue
        n = int((values == cell.attribute_value).sum())
        if n < MIN_DONORS:
            raise RebalanceError(
                f"no donors for {attr_name} '{cell.attribute_value}': {n} real image(s) carry it, at least "
                f"{MIN_DONORS} are needed. Collect more, or lower the need with --budget."
            )


# =============================================================================== synthesis


@dataclass
class _Gate:
    part: str
    kind: str
    area_range: tuple[float, float] | None
    thresholds: tuple[float, float] | None
    embedding: EmbeddingGate | None

    @classmethod
    def build(cls, scan: Scan, target: str, kind: str, values: pd.Series, say) -> _Gate:
        seg = scan.segments[(scan.segments["part"] == target) & scan.segments["present"]]
        area_range = (float(seg["area_frac"].min()), float(seg["area_frac"].max())) if len(seg) else None
        thresholds = None
        if kind == "size" and len(seg):
            thresholds = tuple(float(x) for x in np.quantile(seg["area_frac"], [1 / 3, 2 / 3]))
        elif kind == "shape" and len(seg):
            aspect = (seg["bbox_x1"] - seg["bbox_x0"]) / (seg["bbox_y1"] - seg["bbox_y0"]).clip(lower=1)
            thresholds = tuple(float(x) for x in np.quantile(aspect, [1 / 3, 2 / 3]))
        embedding = _embedding_gate(scan, target, values, say)
        if kind == "cluster_name" and embedding is None:
            raise RebalanceError(f"--attribute cluster needs the scan's HEML models in {scan.ws.models_dir}; "
                                 f"re-run the scan with --heml.")
        return cls(target, kind, area_range, thresholds, embedding)

    def check(self, image: np.ndarray, mask: np.ndarray, schema: Schema, value: str):
        from biasaudit.rebalance.gate import OK

        verdict = OK
        if self.kind in MEASURABLE:
            verdict = check_sample(image, mask, schema=schema, part=self.part, attribute=self.kind,
                                   expected_value=value, area_range=self.area_range, thresholds=self.thresholds)
        if verdict.ok and self.embedding is not None:
            verdict = self.embedding.check(image, mask, value)
        return verdict


def _embedding_gate(scan: Scan, target: str, values: pd.Series, say) -> EmbeddingGate | None:
    """The HEML check when the scan trained HEML: centroids of the target node's embeddings per value."""
    ws = scan.ws
    if not (ws.models_dir / "scan-key.json").is_file():
        return None
    try:
        from biasaudit.heml import HEML

        model = HEML.load(ws.models_dir, device="cpu")
        nodes = model.tree_.nodes
        node = next((n for n, nd in nodes.items() if tuple(nd.parts) == (target,)), None)
        if node is None:
            node = min((n for n, nd in nodes.items() if target in nd.parts), key=lambda n: len(nodes[n].parts))
        index = pd.read_parquet(ws.embeddings_dir / "index.parquet")["image"].tolist()
        emb = np.load(ws.embedding_path(node)).astype(np.float32)
    except Exception as exc:  # noqa: BLE001 - the HEML check is an extra; say why it is skipped
        say(f"HEML gate skipped: cannot read the scan's HEML models ({exc}).")
        return None
    frame = pd.DataFrame(emb, index=index)
    centroids = {}
    for v in sorted(set(values) - {""}):
        ids = [i for i in values.index[values == v] if i in frame.index]
        rows = frame.loc[ids]
        rows = rows[np.any(rows.to_numpy() != 0, axis=1)]
        if len(rows) >= MIN_SUPPORT:
            centroids[v] = rows.to_numpy().mean(axis=0)
    size = int(scan.config["scan"].get("heml_size", 128))

    def embed(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
        import cv2

        img = cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA)
        lm = cv2.resize(mask.astype(np.uint16), (size, size), interpolation=cv2.INTER_NEAREST).astype(np.int64)
        return model.embed(img[None], lm[None], nodes=[node])[node][0]

    say(f"HEML gate on node '{node}' ({len(centroids)} value centroids)")
    return EmbeddingGate(embed=embed, centroids=centroids, node=node)


def _make_generator(method: str, *, model, device: str, steps: int, schema: Schema, target: str, kind: str):
    if method == "recombine":
        return None
    from biasaudit.rebalance.inpaint import InpaintGenerator

    return InpaintGenerator(model, device=device, steps=steps)


def _synthesize(jobs: list[Job], scan: Scan, work: Path, *, generator, gate: _Gate, target: str, kind: str,
                seed: int, method: str, companions: Sequence[str] = ()) -> list[dict]:
    from biasaudit.rebalance.inpaint import prompt_for

    schema = scan.schema
    part_ids = [schema.id_of(target)]
    load = _loader(scan)
    records_dir = work / ".records"
    records_dir.mkdir(exist_ok=True)
    (work / "images" / SYNTHETIC_DIR).mkdir(parents=True, exist_ok=True)
    (work / "masks" / SYNTHETIC_DIR).mkdir(parents=True, exist_ok=True)
    records = []
    for job in progress(jobs, desc="synthesizing", total=len(jobs), unit="sample"):
        rec_path = records_dir / f"{job.index:06d}.json"
        if rec_path.is_file():
            records.append(json.loads(rec_path.read_text("utf-8")))
            continue
        rejected = {r: 0 for r in REJECT_REASONS}
        record = {"index": job.index, "image": job.image_id, "base": job.base, "donor": "",
                  "attribute_value": job.attribute_value, "label_value": job.label_value, "kind": job.kind,
                  "ghost": job.ghost, "action": "", "kept": False}
        base_img, base_mask = load(job.base)
        for attempt, donor in enumerate(job.donors):
            sample_seed = _sample_seed(seed, job.index, attempt)
            donor_img, donor_mask = load(donor)
            try:
                if job.ghost:
                    image, mask, action = _ghost_edit(base_img, base_mask, donor_img, donor_mask, part_ids,
                                                      schema, sample_seed)
                else:
                    swap = swap_part(base_img, base_mask, donor_img, donor_mask, part_ids=part_ids,
                                     schema=schema, seed=sample_seed)
                    image, mask, action = swap.image, swap.mask, swap.action
                    for part in companions:  # each aligned on its own reference (brows on the face)
                        moved = swap_part(image, mask, donor_img, donor_mask, part_ids=[schema.id_of(part)],
                                          schema=schema, seed=sample_seed)
                        image, mask = moved.image, moved.mask
                    if generator is not None and action != "none":
                        region = _inpaint_region(base_mask, mask, part_ids)
                        prompt = prompt_for(target, kind, job.attribute_value)
                        image = generator(base_img, region, prompt, seed=sample_seed)
            except RecombineError:
                rejected["recombine_failed"] += 1
                continue
            verdict = gate.check(image, mask, schema, job.attribute_value)
            if not verdict.ok:
                rejected[verdict.reason] = rejected.get(verdict.reason, 0) + 1
                continue
            _write_png(work / "images" / job.image_id, image)
            _write_png(work / "masks" / job.image_id, mask)
            record.update(donor=donor, action=action, kept=True, seed=sample_seed)
            break
        record["rejected"] = rejected
        write_json_atomic(rec_path, record)
        records.append(record)
    return records


def _sample_seed(seed: int, index: int, attempt: int) -> int:
    digest = hashlib.sha256(f"{seed}:{index}:{attempt}".encode()).digest()
    return int.from_bytes(digest[:4], "little")


def _ghost_edit(base_img, base_mask, donor_img, donor_mask, part_ids, schema: Schema, seed: int):
    """Edit an image that lacks the part as a removal would: refill the region where the donor's
    part would sit (labels unchanged), so absent-cell edits carry the same fill traces."""
    import cv2

    from biasaudit.rebalance.recombine import align_parts, fill_region

    d_part = np.isin(donor_mask, part_ids)
    if not d_part.any():
        raise RecombineError("ghost edit needs a donor that has the part")
    m = align_parts(donor_mask, base_mask, part_ids, schema)
    h, w = base_mask.shape
    region = cv2.warpAffine(d_part.astype(np.uint8), m, (w, h), flags=cv2.INTER_NEAREST).astype(bool)
    if region.sum() < 4:
        raise RecombineError("the donor's part lands outside the base image")
    return fill_region(base_img, region, base_mask, seed=seed), base_mask.copy(), "refill"


def _inpaint_region(base_mask: np.ndarray, new_mask: np.ndarray, part_ids) -> np.ndarray:
    import cv2

    region = (base_mask != new_mask) | np.isin(new_mask, part_ids)
    k = max(3, int(round(0.03 * min(region.shape))) | 1)
    return cv2.dilate(region.astype(np.uint8), np.ones((k, k), np.uint8)).astype(bool)


def _loader(scan: Scan):
    """(image, label map) by image id, as the scan saw them; the dataset is opened once and
    its samples indexed (the workspace helpers look a sample up by scanning the list)."""
    from biasaudit.data import open_dataset, read_image, read_mask
    from biasaudit.segment import load_part_map

    config = scan.config
    data_schema = Schema.from_dict(config["data"]["schema_classes"])
    dataset = open_dataset(scan.data_root, layout=config["data"]["layout"], schema=data_schema)
    samples = {s.image_id: s for s in dataset.samples}
    own_masks = config["segment"].get("mask_cache") is None
    root = scan.ws.root

    @lru_cache(maxsize=128)
    def load(image_id: str) -> tuple[np.ndarray, np.ndarray]:
        sample = samples[image_id]
        img = read_image(sample.image_path)
        mask = read_mask(sample, dataset.schema) if own_masks else load_part_map(root, image_id)
        img.setflags(write=False)
        mask.setflags(write=False)
        return img, mask

    return load


def _write_png(path: Path, array: np.ndarray) -> None:
    import cv2

    path.parent.mkdir(parents=True, exist_ok=True)
    arr = np.asarray(array)
    if arr.ndim == 3:
        arr = cv2.cvtColor(arr, cv2.COLOR_RGB2BGR)
    elif arr.max(initial=0) < 256:
        arr = arr.astype(np.uint8)
    else:
        arr = arr.astype(np.uint16)
    ok, buf = cv2.imencode(".png", arr)
    if not ok:
        raise RebalanceError(f"could not encode {path} as PNG.")
    with _atomic(path) as tmp:
        tmp.write_bytes(buf.tobytes())


# =============================================================================== writing NEW


def _write_dataset(work: Path, scan: Scan, kept: list[dict], *, tied: list[str], label: str, method: str,
                   seed: int, target: str) -> pd.DataFrame:
    """Originals (minus the edited ones), labels.csv and schema.json into ``work``."""
    from biasaudit.data import open_dataset

    config = scan.config
    replaced = {r["base"] for r in kept if r["kind"] == "edited"}
    reals = [i for i in scan.labels.index if i not in replaced]
    dataset = open_dataset(scan.data_root, layout=config["data"]["layout"],
                           schema=Schema.from_dict(config["data"]["schema_classes"]))
    samples = {s.image_id: s for s in dataset.samples}
    own_masks = config["segment"].get("mask_cache") is None
    for image_id in progress(reals, desc="linking originals", total=len(reals)):
        sample = samples[image_id]
        _link(Path(sample.image_path), work / "images" / image_id)
        mask_dst = (work / "masks" / image_id).with_suffix(".png")
        ref = sample.mask
        if own_masks and ref is not None and ref.kind == "label_map" and ref.encoding == "index" \
                and not ref.value_map and ref.scale == 1.0 and ref.path is not None and ref.path.suffix == ".png":
            _link(ref.path, mask_dst)
        elif not mask_dst.exists():
            from biasaudit.segment import load_part_map

            _write_png(mask_dst, load_part_map(scan.ws.root, image_id))
    columns = list(scan.labels.columns)
    real_rows = scan.labels.loc[reals].copy()
    real_rows.insert(0, "image", reals)
    for col in PROVENANCE:
        real_rows[col] = "real" if col == "origin" else ""
    synth = []
    for r in sorted(kept, key=lambda r: r["index"]):
        row = {"image": r["image"], **{c: scan.labels.at[r["base"], c] for c in columns}}
        source = r["base"] if r.get("ghost") else r["donor"]
        for c in tied:
            row[c] = scan.labels.at[source, c]
        row.update(origin="synthetic", base=r["base"], donor=r["donor"], method=method if not r.get("ghost")
                   else "refill", seed=seed, target=target, attribute_value=r["attribute_value"])
        synth.append(row)
    table = pd.concat([real_rows.reset_index(drop=True), pd.DataFrame(synth, columns=real_rows.columns)],
                      ignore_index=True)
    with _atomic(work / "labels.csv") as tmp:
        table.to_csv(tmp, index=False)
    schema_file = scan.data_root / "schema.json"
    seg_schema = config["segment"]["schema_classes"]
    if config["data"]["layout"] == "native" and schema_file.is_file() \
            and config["data"]["schema_classes"] == seg_schema:
        with _atomic(work / "schema.json") as tmp:
            tmp.write_bytes(schema_file.read_bytes())
    else:
        with _atomic(work / "schema.json") as tmp:
            tmp.write_text(json.dumps(seg_schema, indent=2, ensure_ascii=False) + "\n", "utf-8")
    return table.set_index("image", drop=False)


@contextmanager
def _atomic(path: Path):
    """atomic_path, but the file ends with the usual permissions (mkstemp makes it 0600):
    NEW is a dataset others read."""
    with atomic_path(path) as tmp:
        yield tmp
        os.chmod(tmp, 0o666 & ~_UMASK)


def _link(src: Path, dst: Path) -> None:
    if dst.exists():
        return
    dst.parent.mkdir(parents=True, exist_ok=True)
    real = src.resolve()
    try:
        os.link(real, dst)
    except OSError:
        with _atomic(dst) as tmp:
            shutil.copyfile(real, tmp)


# =============================================================================== closing check


def _closing_check(work: Path, scan: Scan, new_labels: pd.DataFrame, *, target: str, kind: str,
                   label: str) -> tuple[dict[str, Any], list[dict]]:
    """A fresh mask-statistics scan of NEW in a temporary workspace; association after."""
    from biasaudit.audit.scan import run_scan

    causal = list(scan.config["scan"].get("causal") or [])
    with tempfile.TemporaryDirectory(prefix="biasaudit-rebalance-check-") as tmp:
        result = run_scan(work, Path(tmp) / "ws", labels=[label], causal=causal, heml=False,
                          seed=int(scan.config["scan"].get("seed", 0)), device="cpu")
        attrs = pd.read_parquet(Path(tmp) / "ws" / "attributes.parquet")
    rows = attrs[attrs["node"] == target].set_index("image")
    index = new_labels.index
    if kind in rows.columns and kind != "cluster_name":
        values = rows[kind].reindex(index).fillna("").astype(str)
    else:  # clusters cannot be re-found without HEML: use the values the samples were made for
        old = scan.attributes[scan.attributes["node"] == target].set_index("image")[kind]
        values = pd.Series([new_labels.at[i, "attribute_value"] or old.get(i, "") for i in index], index=index)
    labels = new_labels[label].map(_label_text)
    after = _association(values, labels, None)
    origin = new_labels["origin"].astype(str)
    ok = labels != ""
    after["origin_vs_label"] = dict(zip(("chi2", "p_value"), chi_square_of(pd.crosstab(origin[ok], labels[ok])),
                                        strict=True))
    ok = values != ""
    after["origin_vs_attribute"] = dict(zip(("chi2", "p_value"),
                                            chi_square_of(pd.crosstab(origin[ok], values[ok])), strict=True))
    flagged = [f.to_record() for f in result.flagged if f.segment == target and f.label == label]
    return after, flagged

