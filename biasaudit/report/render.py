"""``write_report``: one self-contained HTML file from a scanned workspace (DESIGN.md §11).

Sections, in order: verdict, ranked findings (evidence heatmap, effect size with CI,
q-value, exemplar grids with the part outlined), expected evidence, dataset, HEML,
repair (``rebalance``), fairness (``eval``), model reliance (``probe``), reproduce.
Jinja2 autoescapes every value; charts are inline SVG, thumbnails base64 WebP; the page
needs no network and no JavaScript. Thumbnails are sampled (a fixed number per value),
so the report's size does not grow with the dataset.

>>> path = write_report("WS", rebalance="NEW", eval="EVAL", probe="probe.json")  # doctest: +SKIP
>>> path.name                                                                     # doctest: +SKIP
'report.html'
"""

from __future__ import annotations

import datetime as _dt
import json
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from biasaudit import __version__
from biasaudit.audit.scan import SCAN_EPOCHS_SCALE
from biasaudit.core.io import write_text_atomic
from biasaudit.core.workspace import Workspace
from biasaudit.report import heml_view, svg, tables
from biasaudit.report.images import downscale, file_thumbnail, thumbnail
from biasaudit.report.inputs import ReportInputs, load_inputs
from biasaudit.report.sentences import (
    attribute_title,
    contingency,
    deficit_cells,
    expected_counts,
    finding_sentence,
    format_ci,
    format_q,
)

#: section ids in page order; tests and the table of contents read this list
SECTIONS = (
    ("verdict", "Verdict"),
    ("findings", "Findings, ranked"),
    ("expected", "Expected evidence"),
    ("dataset", "Dataset"),
    ("heml", "HEML: parts and similarity"),
    ("repair", "Repair"),
    ("fairness", "Fairness"),
    ("reliance", "Model reliance"),
    ("reproduce", "Reproduce"),
)


@dataclass(frozen=True)
class ReportOptions:
    """How much the report shows; every count is fixed, so size does not grow with the data."""

    max_findings: int = 8          # findings with evidence and exemplars (the rest in a table)
    max_values: int = 6            # attribute values shown per finding
    thumbs_per_value: int = 4
    thumb_size: int = 88
    n_metric_trees: int = 3
    n_repair_samples: int = 6
    max_error_rows: int = 5000     # every unusable file up to this many (then a count)
    max_pool: int = tables.MAX_POOL  # images per value the exemplars are drawn from (counts stay exact)
    seed: int = 0


def write_report(workspace: str | Path, *, rebalance: str | Path | None = None, eval: str | Path | None = None,
                 probe: str | Path | None = None, out: str | Path | None = None,
                 options: ReportOptions | None = None) -> Path:
    """Write the report of ``workspace`` (default ``WS/report.html``) and return its path."""
    inputs = load_inputs(workspace, rebalance=rebalance, eval=eval, probe=probe)
    path = Path(out) if out is not None else Workspace(workspace).report
    html = render_report(inputs, options=options, out=path)
    write_text_atomic(path, html)
    return path


def render_report(inputs: ReportInputs, *, options: ReportOptions | None = None, out: Path | None = None) -> str:
    """The report's HTML as a string."""
    from jinja2 import Environment, FileSystemLoader, StrictUndefined

    opts = options or ReportOptions()
    ctx = _Context(inputs, opts)
    env = Environment(loader=FileSystemLoader(Path(__file__).parent / "templates"), autoescape=True,
                      undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters["num"] = _num
    env.filters["pct"] = _pct
    env.filters["pval"] = format_q
    template = env.get_template("report.html.j2")
    return template.render(**ctx.build(out=out))


def _num(value: Any, digits: int = 3) -> str:
    if value is None:
        return "–"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int | np.integer):
        return f"{int(value):,}"
    try:
        v = float(value)
    except (TypeError, ValueError):
        return str(value)
    if v != v:
        return "–"
    return f"{v:,.{digits}f}"


def _pct(value: Any) -> str:
    try:
        return f"{float(value):.0%}"
    except (TypeError, ValueError):
        return "–"


class _Context:
    """Builds the template's variables, one method per section."""

    def __init__(self, inputs: ReportInputs, opts: ReportOptions) -> None:
        self.inputs = inputs
        self.opts = opts
        self.settings = inputs.scan_settings
        self.part_ids = inputs.part_ids
        self.labels = [str(c) for c in self.settings.get("labels") or ()]
        self.sensitive = [str(c) for c in self.settings.get("sensitive") or ()]
        self._images: dict[str, tuple[np.ndarray, np.ndarray] | None] = {}
        # the manifest is read once, in batches: counts, the first error rows, and the label
        # columns of the usable images (captions, label counts, metric-tree pairs)
        finding_labels = [str(f["label"]) for f in inputs.findings + inputs.expected if f.get("label")]
        self.manifest = tables.read_manifest(inputs.manifest_path,
                                             label_columns=self.labels + self.sensitive + finding_labels,
                                             max_error_rows=opts.max_error_rows)
        self.label_table = self.manifest.labels if self.manifest is not None else None
        # usable image ids (None: no manifest ids, count every row of the other tables)
        self.usable = None
        if self.label_table is not None and len(self.label_table):
            self.usable = self.label_table.index.unique()

    # -------------------------------------------------------------- helpers
    def _load(self, image_id: str):
        if image_id not in self._images:
            from biasaudit.segment import load_segmentation

            try:
                rgb, parts = load_segmentation(self.inputs.workspace, image_id)
                # kept at most 512 px: enough for thumbnails and part crops, bounded memory on photos
                self._images[image_id] = downscale(rgb, parts, 512)
            except (OSError, ValueError, KeyError):  # a moved or unreadable image must not stop the report
                self._images[image_id] = None
        return self._images[image_id]

    def _thumb(self, image_id: str, part_ids: Sequence[int], *, size: int | None = None,
               crop: bool = False) -> str | None:
        loaded = self._load(image_id)
        if loaded is None:
            return None
        rgb, parts = loaded
        return thumbnail(rgb, parts, part_ids=part_ids, size=size or self.opts.thumb_size, crop=crop)

    def _parts_of(self, finding: Mapping[str, Any]) -> tuple[str, ...]:
        parts = finding.get("parts")
        if isinstance(parts, Sequence) and not isinstance(parts, str) and parts:
            return tuple(str(p) for p in parts)
        segment = str(finding.get("segment") or "")
        if segment in self.inputs.node_parts:
            return self.inputs.node_parts[segment]
        return tuple(p for p in segment.split("+") if p in self.part_ids)

    def _label_of(self, image_id: str, column: str | None) -> str | None:
        if column is None or self.label_table is None or column not in self.label_table.columns:
            return None
        try:
            value = self.label_table.at[image_id, column]
        except KeyError:
            return None
        return None if value is None or value != value else _clean_label(value)

    # -------------------------------------------------------------- sections
    def build(self, *, out: Path | None) -> dict[str, Any]:
        findings = self.findings()
        ctx = {
            "sections": list(SECTIONS),
            "thumb_size": self.opts.thumb_size,
            "meta": self.meta(out),
            "findings": findings,
            "more_findings": self.more_findings(),
            "expected": self.expected(),
            "dataset": self.dataset(),
            "heml": self.heml(),
            "repair": self.repair(),
            "fairness": self.fairness(),
            "reliance": self.reliance(),
            "reproduce": self.reproduce(out),
        }
        ctx["verdict"] = self.verdict(findings, ctx)
        return ctx

    def meta(self, out: Path | None) -> dict[str, Any]:
        data = (self.inputs.config.get("data") or {})
        return {
            "title": f"Bias report: {Path(str(data.get('root') or self.inputs.workspace)).name}",
            "data_root": str(data.get("root") or "unknown"),
            "workspace": str(self.inputs.workspace),
            "version": __version__,
            "scan_version": self.inputs.findings_doc.get("biasaudit_version") or "unknown",
            "generated": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "labels": self.labels,
            "sensitive": self.sensitive,
            "causal": [str(c) for c in self.settings.get("causal") or ()],
            # read back by refresh_report, so a later stage keeps the sections of earlier ones
            "inputs": json.dumps({k: str(Path(v).resolve()) for k, v in (
                ("rebalance", self.inputs.rebalance_dir), ("eval", self.inputs.eval_dir),
                ("probe", self.inputs.probe_path)) if v is not None}),
        }

    def verdict(self, findings: list[dict[str, Any]], ctx: Mapping[str, Any]) -> dict[str, Any]:
        doc = self.inputs.findings_doc
        dataset = doc.get("dataset") or {}
        n_images, n_errors = dataset.get("n_images"), dataset.get("n_errors") or 0
        flagged = [f for f in findings if f["flagged"]]
        targets = ", ".join(self.labels + self.sensitive) or "the label columns"
        intro = (f"biasaudit scanned {_num(n_images)} images ({_num(n_errors)} unusable) and tested every "
                 f"attribute of every part against {targets}, with false-discovery control (q < 0.01).")
        if flagged:
            head = (f"It flags {len(flagged)} finding{'s' if len(flagged) != 1 else ''} as bias: a model trained "
                    f"on this data can learn {'these' if len(flagged) != 1 else 'this'} instead of the label.")
        elif findings:
            head = ("Nothing reaches the bias threshold (severity ≥ 0.5); the weaker findings below are worth a "
                    "look but are not flagged.")
        else:
            head = "No part attribute is tied to a label beyond chance: nothing to repair."
        lines = []
        repair = ctx.get("repair")
        if repair and repair.get("v_before") is not None:
            edited = f" and {_num(repair['edited'])} edited" if repair.get("edited") else ""
            lines.append(f"Repair: Cramér's V between {repair['attribute']} and {repair['label']} went from "
                         f"{_num(repair['v_before'], 2)} to {_num(repair['v_after'], 2)} with "
                         f"{_num(repair['generated'])} synthesized{edited} images.")
        fair = ctx.get("fairness")
        if fair and fair.get("before_after"):
            b, a = fair["before_after"]
            lines.append(f"Fairness ({fair['method_label']}): worst-group accuracy {_num(b['value'], 3)} when "
                         f"trained on '{b['train']}', {_num(a['value'], 3)} on '{a['train']}'.")
        rel = ctx.get("reliance")
        if rel and rel.get("parts"):
            top = rel["parts"][0]
            lines.append(f"Model reliance: swapping only the {top['part']} flips the model's prediction in "
                         f"{_pct(top['flip_rate'])} of {_num(top['n_pairs'])} pairs.")
        return {
            "intro": intro, "head": head, "top": [f for f in (flagged or findings)[:3]],
            "flagged": len(flagged), "lines": lines, "key": (flagged or findings or [None])[0],
        }

    def findings(self) -> list[dict[str, Any]]:
        out = []
        for i, f in enumerate(self.inputs.findings[: self.opts.max_findings]):
            item = self._finding(f, exemplars=True)
            item["anchor"] = f"finding-{i + 1}"
            out.append(item)
        return out

    def more_findings(self) -> list[dict[str, Any]]:
        return [self._finding(f, exemplars=False) for f in self.inputs.findings[self.opts.max_findings:]]

    def _finding(self, f: Mapping[str, Any], *, exemplars: bool) -> dict[str, Any]:
        evidence = f.get("evidence") or {}
        name, value = attribute_title(f)
        label = f.get("label")
        severity = _float(f.get("severity"), 0.0)
        flagged = severity >= 0.5 and not f.get("expected_reason")
        effect_name, effect, ci = _effect(f)
        out: dict[str, Any] = {
            "rank": f.get("rank"), "kind": str(f.get("kind") or "finding"), "segment": str(f.get("segment") or ""),
            "attribute": name, "value": value, "label": label, "severity": severity, "flagged": flagged,
            "sentence": finding_sentence(f, sensitive=self.sensitive), "summary": str(f.get("summary") or ""),
            "effect_name": effect_name, "effect": effect, "ci": ci,
            "q": format_q(evidence.get("q_value", f.get("q_value"))), "n": evidence.get("n"),
            "notes": _notes(f), "heatmap": None, "exemplars": [], "parts": list(self._parts_of(f)),
            "anchor": "",
        }
        rows, cols, counts = contingency(evidence)
        if rows and cols and label:
            exp = expected_counts(counts)
            out["heatmap"] = svg.heatmap(
                rows, cols, counts, exp, row_title=name, col_title=str(label), deficits=deficit_cells(evidence),
                title=f"{name} by {label}: observed vs expected counts")
        if exemplars:
            out["exemplars"] = self._exemplars(f, rows)
        return out

    def _exemplars(self, f: Mapping[str, Any], table_rows: Sequence[str]) -> list[dict[str, Any]]:
        evidence = f.get("evidence") or {}
        segment = str(f.get("segment") or "")
        kind_col = str(evidence.get("attribute_kind") or "")
        label = f.get("label")
        parts = self._parts_of(f)
        pids = [self.part_ids[p] for p in parts if p in self.part_ids]
        part_text = " + ".join(parts) or segment
        rng = np.random.default_rng(self.opts.seed)
        groups: list[tuple[str, list[str], int]] = []
        # counts over every usable image; images drawn from a bounded pool per value (every
        # image of the value while there are at most tables.MAX_POOL)
        pool = tables.attribute_pool(self.inputs.attributes_path, node=segment, column=kind_col,
                                     usable=self.usable, max_pool=self.opts.max_pool) if kind_col else None
        if pool is not None:
            counts = pool.counts()
            counts = counts[counts.index != ""].sort_values(ascending=False, kind="stable")
            order = [v for v in table_rows if v in counts.index] or list(counts.index)
            name, value = attribute_title(f)
            if value in order:  # the finding's own value first
                order.remove(value)
                order.insert(0, value)
            for v in order[: self.opts.max_values]:
                groups.append((f"{name} '{v}'", pool.ids(v), int(counts[v])))
        elif label and self.label_table is not None and str(label) in self.label_table.columns:
            col = self.label_table[str(label)].dropna()
            for v in sorted({_clean_label(x) for x in col}, key=str)[: self.opts.max_values]:
                ids = [str(i) for i, x in col.items() if _clean_label(x) == v]
                groups.append((f"{label}={v}", tables.bounded_ids(ids, self.opts.max_pool), len(ids)))
        out = []
        for title, ids, count in groups:
            pick = sorted(rng.choice(ids, min(self.opts.thumbs_per_value, len(ids)), replace=False)) if ids else []
            images = []
            for image_id in pick:
                uri = self._thumb(image_id, pids)
                if uri is None:
                    continue
                lv = self._label_of(image_id, str(label) if label else None)
                caption = f"{label}={lv}" if lv is not None else image_id
                alt = (f"Image {image_id}, {title}" + (f", {label}={lv}" if lv is not None else "")
                       + (f"; the {part_text} outlined" if pids else ""))
                images.append({"uri": uri, "alt": alt, "caption": caption, "image": image_id})
            out.append({"title": title, "count": count, "images": images})
        return out

    def expected(self) -> list[dict[str, Any]]:
        out = []
        for f in self.inputs.expected:
            item = self._finding(f, exemplars=False)
            item["reason"] = str(f.get("expected_reason") or "on a part declared causal")
            item["flagged"] = False
            out.append(item)
        return out

    def dataset(self) -> dict[str, Any]:
        manifest = self.manifest
        doc = self.inputs.findings_doc.get("dataset") or {}
        n_ok = len(self.usable) if self.usable is not None else 0
        out: dict[str, Any] = {"n_images": doc.get("n_images"), "n_errors": doc.get("n_errors"), "errors": [],
                               "n_error_rows": 0, "coverage": None, "coverage_rows": [], "labels": [],
                               "n_ok": n_ok if manifest is not None else None, "warnings": 0}
        if manifest is not None:
            out["n_images"] = manifest.n_images
            if manifest.has_status:
                out["n_errors"] = manifest.n_errors
                out["n_error_rows"] = manifest.n_errors
                out["errors"] = [dict(r) for r in manifest.error_rows]
            if manifest.has_warning:
                out["warnings"] = manifest.n_warnings
            for col in self.labels + self.sensitive:
                if col in manifest.columns and self.label_table is not None:
                    vc = self.label_table[col].map(lambda x: "(missing)" if x != x else _clean_label(x)).value_counts()
                    out["labels"].append({"column": col, "counts": [(str(k), int(v)) for k, v in vc.items()]})
        coverage = tables.part_coverage(self.inputs.segments_path, usable=self.usable)
        if coverage is not None:
            out["coverage_rows"] = coverage
            out["coverage"] = svg.coverage_bars(out["coverage_rows"], title="Part coverage: share of usable "
                                                "images in which each part is present")
        return out

    def heml(self) -> dict[str, Any] | None:
        tree = self.inputs.tree
        if not tree:
            return None
        ws = Workspace(self.inputs.workspace)
        quality = heml_view.quality_tree(tree, self.inputs.node_metrics)
        trees = []
        label = self.labels[0] if self.labels else (self.sensitive[0] if self.sensitive else None)
        if label and self.label_table is not None and label in self.label_table.columns:
            pairs = heml_view.telling_pairs(ws, str(tree.get("name")), self.label_table[label],
                                            n_pairs=self.opts.n_metric_trees, seed=self.opts.seed)
            for a, b in pairs:
                try:
                    t = heml_view.metric_tree(ws, tree, a, b, node_parts=self.inputs.node_parts,
                                              part_ids=self.part_ids,
                                              crop=lambda image, pids: self._thumb(image, pids, size=44, crop=True))
                except (KeyError, OSError, ValueError):
                    continue
                trees.append({"a": a, "b": b, "label": label, "label_a": self._label_of(a, label),
                              "label_b": self._label_of(b, label), "tree": t,
                              "thumb_a": self._thumb(a, []), "thumb_b": self._thumb(b, [])})
        return {"quality": quality, "metric_trees": trees}

    def repair(self) -> dict[str, Any] | None:
        doc = self.inputs.rebalance
        if doc is None:
            return None
        s = doc.get("settings") or {}
        before, after = doc.get("before") or {}, doc.get("after") or {}
        attribute = str(s.get("attribute") or s.get("target") or "attribute")
        label = str(s.get("label") or "label")
        plan = doc.get("plan") or {}
        out: dict[str, Any] = {
            "settings": s, "attribute": attribute, "label": label,
            "plan_cells": [c for c in plan.get("cells") or () if isinstance(c, Mapping)],
            "n_new_total": plan.get("n_new_total"), "n_edited_total": plan.get("n_edited_total"),
            "budget_binds": plan.get("budget_binds"),
            "generated": doc.get("generated"), "edited": doc.get("edited"),
            "rejected": sorted(((str(k), v) for k, v in (doc.get("rejected") or {}).items()), key=lambda kv: kv[0]),
            "v_before": before.get("cramers_v"), "p_before": before.get("p_value"),
            "v_after": after.get("cramers_v"), "p_after": after.get("p_value"),
            "origin": [(k, after.get(k) or {}) for k in ("origin_vs_label", "origin_vs_attribute") if after.get(k)],
            "out": doc.get("out"), "source": doc.get("source"), "cells": [], "heatmaps": [], "samples": [],
        }
        b_cells = _cells(before.get("cells"))
        a_cells = _cells(after.get("cells"))
        keys = list(dict.fromkeys([*b_cells, *a_cells]))
        out["cells"] = [{"value": v, "label": lv, "before": b_cells.get((v, lv)), "after": a_cells.get((v, lv))}
                        for v, lv in keys]
        for when, cells in (("before", b_cells), ("after", a_cells)):
            if not cells:
                continue
            rows = list(dict.fromkeys(v for v, _ in keys))
            cols = sorted(dict.fromkeys(lv for _, lv in keys))
            counts = [[float(cells.get((r, c), 0) or 0) for c in cols] for r in rows]
            exp = expected_counts(counts)
            out["heatmaps"].append({"when": when, "svg": svg.heatmap(
                rows, cols, counts, exp, row_title=attribute, col_title=label, deficits=_deficits(rows, cols, counts),
                title=f"{attribute} by {label} {when} the repair: observed vs expected")})
        out["samples"] = self._repair_samples(doc, s)
        return out

    def _repair_samples(self, doc: Mapping[str, Any], s: Mapping[str, Any]) -> list[dict[str, Any]]:
        samples = [x for x in doc.get("samples") or () if isinstance(x, Mapping) and x.get("image")]
        if not samples:
            return []
        rng = np.random.default_rng(self.opts.seed)
        pick = sorted(rng.choice(len(samples), min(self.opts.n_repair_samples, len(samples)), replace=False))
        new_root = Path(str(doc.get("out") or self.inputs.rebalance_dir))
        if not (new_root / "images").is_dir() and self.inputs.rebalance_dir is not None:
            new_root = self.inputs.rebalance_dir
        src = Path(str(doc.get("source") or self.inputs.config.get("data", {}).get("root") or "."))
        target = str(s.get("target") or "")
        part_ids = _schema_ids(new_root / "schema.json") or self.part_ids
        parts = self.inputs.node_parts.get(target) or tuple(p for p in target.replace("+", ",").split(",") if p)
        pids = [part_ids[p] for p in parts if p in part_ids]
        out = []
        for k in pick:
            x = samples[int(k)]
            row = {"attribute_value": str(x.get("attribute_value", "")), "label_value": str(x.get("label_value", "")),
                   "kind": str(x.get("kind", "")), "cells": []}
            for role, root, rel in (("synthesized", new_root, x.get("image")), ("base", src, x.get("base")),
                                    ("donor", src, x.get("donor"))):
                if not rel:
                    continue
                rel = str(rel)
                uri = None
                if role != "synthesized":  # bases and donors are images of the scanned dataset, any layout
                    uri = self._thumb(rel, [self.part_ids[p] for p in parts if p in self.part_ids])
                if uri is None:
                    mask = root / "masks" / Path(rel).with_suffix(".png")
                    uri = file_thumbnail(root / "images" / rel, mask_path=mask, part_ids=pids,
                                         size=self.opts.thumb_size)
                row["cells"].append({"role": role, "image": rel, "uri": uri,
                                     "alt": f"{role} image {rel}" + (f"; the {target} outlined" if pids else "")})
            out.append(row)
        return out

    def fairness(self) -> dict[str, Any] | None:
        doc = self.inputs.eval
        if doc is None:
            return None
        summary = [r for r in doc.get("summary") or () if isinstance(r, Mapping)]
        s = doc.get("settings") or {}
        items = [(f"{r.get('train')} · {r.get('method')}", _float(r.get("worst_group_accuracy_mean")),
                  _float(r.get("worst_group_accuracy_std"))) for r in summary]
        chart = svg.bar_chart(items, title=f"Worst-group accuracy per training set and method (mean ± std over "
                                           f"seeds), by {s.get('sensitive', 'group')}",
                              x_label="worst-group accuracy (higher is fairer)") if items else None
        # per-group accuracy: mean over seeds of each run's by_group[<sensitive value>]
        groups: dict[tuple[str, str], dict[str, list[float]]] = {}
        names: list[str] = []
        for run in doc.get("runs") or ():
            if not isinstance(run, Mapping):
                continue
            key = (str(run.get("train")), str(run.get("method")))
            for g, m in (run.get("by_group") or {}).items():
                if "|" in str(g) or not isinstance(m, Mapping) or m.get("accuracy") is None:
                    continue
                groups.setdefault(key, {}).setdefault(str(g), []).append(float(m["accuracy"]))
                if str(g) not in names:
                    names.append(str(g))
        names.sort()
        per_group = [{"name": f"{t} · {m}", "cells": [_mean_std(groups[(t, m)].get(g)) for g in names]}
                     for t, m in groups]
        trains = list((s.get("train") or {}).keys()) or list(dict.fromkeys(str(r.get("train")) for r in summary))
        before_after = None
        erm = {str(r.get("train")): r for r in summary if str(r.get("method")) == "erm"}
        if len(trains) >= 2 and trains[0] in erm and trains[1] in erm:
            before_after = [{"train": t, "value": erm[t].get("worst_group_accuracy_mean")} for t in trains[:2]]
        return {"summary": summary, "chart": chart, "groups": names, "per_group": per_group, "settings": s,
                "before_after": before_after, "method_label": "plain training"}

    def reliance(self) -> dict[str, Any] | None:
        doc = self.inputs.probe
        if doc is None:
            return None
        parts = [p for p in doc.get("parts") or () if isinstance(p, Mapping)]
        parts = sorted(parts, key=lambda p: -_float(p.get("flip_rate"), 0.0))
        items = [(str(p.get("part")), _float(p.get("flip_rate"), 0.0), tuple(p.get("flip_rate_ci") or ()) or None)
                 for p in parts]
        chart = svg.bar_chart(items, title="Flip rate per part: share of pairs whose prediction changes when only "
                                           "that part is swapped (95% CI)",
                              x_label="flip rate", highlight=items[0][0] if items else None) if items else None
        return {"model": doc.get("model"), "data": doc.get("data"), "n_pairs": doc.get("n_pairs"), "chart": chart,
                "parts": [{"part": str(p.get("part")), "n_pairs": p.get("n_pairs"), "flip_rate": p.get("flip_rate"),
                           "flip_ci": format_ci(p.get("flip_rate_ci")), "delta": p.get("mean_abs_delta"),
                           "delta_ci": format_ci(p.get("mean_abs_delta_ci")),
                           # the most frequent swaps only: a long tail of 1-pair rows says nothing
                           "by_value": sorted((v for v in p.get("by_value") or () if isinstance(v, Mapping)),
                                              key=lambda v: -_float(v.get("n"), 0.0))[:12]}
                          for p in parts]}

    def reproduce(self, out: Path | None) -> dict[str, Any]:
        config = self.inputs.config
        s = self.settings
        ws = str(self.inputs.workspace)
        data = str((config.get("data") or {}).get("root") or "DATA")
        cmds = []
        scan = ["biasaudit", "scan", data, "--out", ws]
        for c in s.get("labels") or ():
            scan += ["--label", str(c)]
        for c in s.get("sensitive") or ():
            scan += ["--sensitive", str(c)]
        if s.get("causal"):
            scan += ["--causal", ",".join(str(c) for c in s["causal"])]
        for opt, key, default in (("--segmenter", "segmenter", "auto"), ("--schema", "schema", None),
                                  ("--layout", "layout", "auto"), ("--recipe", "recipe", None),
                                  ("--seed", "seed", 0), ("--epochs-scale", "epochs_scale", SCAN_EPOCHS_SCALE)):
            if s.get(key, default) not in (default, None):
                scan += [opt, str(s[key])]
        if s.get("heml") is False:
            scan.append("--no-heml")
        cmds.append(("scan", scan))
        report = ["biasaudit", "report", ws]
        reb = self.inputs.rebalance
        if reb is not None:
            rs = reb.get("settings") or {}
            cmd = ["biasaudit", "rebalance", ws, "--out", str(reb.get("out") or self.inputs.rebalance_dir)]
            # --attribute takes the attribute's kind (colour, presence, ...), not its title
            rs = {**rs, "attribute": rs.get("attribute_kind", rs.get("attribute"))}
            for opt, key in (("--target", "target"), ("--label", "label"), ("--attribute", "attribute"),
                             ("--strategy", "strategy"), ("--method", "method"), ("--budget", "budget"),
                             ("--seed", "seed")):
                if rs.get(key) is not None:
                    cmd += [opt, str(rs[key])]
            cmds.append(("rebalance", cmd))
            report += ["--rebalance", str(self.inputs.rebalance_dir)]
        ev = self.inputs.eval
        if ev is not None:
            es = ev.get("settings") or {}
            cmd = ["biasaudit", "evaluate"]
            for name, folder in (es.get("train") or {}).items():
                cmd += ["--train", f"{name}={folder}"]
            for opt, key in (("--test", "test"), ("--label", "label"), ("--sensitive", "sensitive"),
                             ("--seeds", "seeds"), ("--epochs", "epochs"), ("--size", "size"),
                             ("--backbone", "backbone")):
                if es.get(key) is not None:
                    cmd += [opt, str(es[key])]
            cmd += ["--out", str(self.inputs.eval_dir)]
            cmds.append(("evaluate", cmd))
            report += ["--eval", str(self.inputs.eval_dir)]
        if self.inputs.probe is not None:
            cmd = ["biasaudit", "probe", "--model", str(self.inputs.probe.get("model") or "MODEL"),
                   "--data", str(self.inputs.probe.get("data") or "DATA"), "--out", str(self.inputs.probe_path)]
            if len(self.inputs.probe.get("parts") or ()) > 1:
                cmd.append("--all-parts")
            cmds.append(("probe", cmd))
            report += ["--probe", str(self.inputs.probe_path)]
        if out is not None and Path(out) != Workspace(ws).report:
            report += ["--out", str(out)]
        cmds.append(("report", report))
        configs = [("WS/config.json", config)]
        if reb is not None:
            configs.append(("rebalance settings", reb.get("settings") or {}))
        if ev is not None:
            configs.append(("evaluate settings", ev.get("settings") or {}))
        return {"commands": [(name, shlex.join(c)) for name, c in cmds],
                "configs": [(name, json.dumps(c, indent=2, ensure_ascii=False, default=str)) for name, c in configs],
                "version": __version__}


def _float(value: Any, default: float = float("nan")) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return default


def _clean_label(value: Any) -> str:
    # labels read back from parquet are often 1.0/0.0; show them as the user wrote them
    if isinstance(value, float | np.floating) and float(value).is_integer():
        return str(int(value))
    return str(value)


def _effect(f: Mapping[str, Any]) -> tuple[str, float | None, str]:
    ev = f.get("evidence") or {}
    if ev.get("cramers_v") is not None:
        return "Cramér's V", _float(ev.get("cramers_v")), format_ci(ev.get("cramers_v_ci95"))
    if ev.get("auc") is not None:
        return "AUC", _float(ev.get("auc")), format_ci(ev.get("auc_ci95"))
    if ev.get("ratio") is not None:
        return "observed / even share", _float(ev.get("ratio")), format_ci(ev.get("ratio_ci95"))
    return "severity", _float(f.get("severity")), ""


def _notes(f: Mapping[str, Any], *, max_items: int = 6) -> list[dict[str, Any]]:
    """Extra context a finder may attach (related findings, routing, proxies), grouped and
    shortened: ``[{"title": ..., "items": [...], "more": n}]``."""
    out = []
    ev = f.get("evidence") or {}
    for key, title in (("routed_because", "Routed here because"),
                       ("proxies", "Proxies: other attributes tied to the label mostly through this one"),
                       ("related", "Related findings on the same part")):
        value = f.get(key, ev.get(key))
        if not value:
            continue
        if isinstance(value, str | Mapping):
            value = [value]
        if not isinstance(value, Sequence):
            value = [value]
        items = []
        for v in value:
            if isinstance(v, Mapping):
                text = str(v.get("attribute") or v.get("summary") or v.get("column") or json.dumps(v, default=str))
                extra = []
                if v.get("severity") is not None:
                    extra.append(f"severity {_float(v['severity']):.2f}")
                held = v.get("held_fixed")
                if isinstance(held, Mapping) and held.get("conditional_cramers_v") is not None:
                    extra.append(f"Cramér's V {_float(held['conditional_cramers_v']):.2f} with this attribute "
                                 f"held fixed")
                if extra:
                    text += f" ({'; '.join(extra)})"
            else:
                text = str(v)
            items.append(text)
        out.append({"title": title, "items": items[:max_items], "more": max(0, len(items) - max_items)})
    return out


def _cells(cells: Any) -> dict[tuple[str, str], int]:
    out: dict[tuple[str, str], int] = {}
    for c in cells or ():
        if isinstance(c, Mapping):
            out[(str(c.get("attribute_value")), str(c.get("label_value")))] = int(c.get("count") or 0)
    return out


def _deficits(rows: Sequence[str], cols: Sequence[str], counts: Sequence[Sequence[float]]) -> set[tuple[str, str]]:
    """Cells with an adjusted standardized residual below −2 (as the audit marks them)."""
    n = sum(sum(r) for r in counts)
    if n == 0:
        return set()
    exp = expected_counts(counts)
    rt = [sum(r) for r in counts]
    ct = [sum(r[j] for r in counts) for j in range(len(cols))]
    out = set()
    for i, r in enumerate(rows):
        for j, c in enumerate(cols):
            var = exp[i][j] * (1 - rt[i] / n) * (1 - ct[j] / n)
            if var > 0 and (counts[i][j] - exp[i][j]) / var ** 0.5 < -2:
                out.add((str(r), str(c)))
    return out


def _mean_std(values: list[float] | None) -> str:
    if not values:
        return "–"
    if len(values) == 1:
        return f"{values[0]:.3f}"
    return f"{float(np.mean(values)):.3f} ± {float(np.std(values, ddof=1)):.3f}"


def _schema_ids(path: Path) -> dict[str, int]:
    try:
        classes = json.loads(path.read_text("utf-8")).get("classes") or {}
        return {str(n): int(i) for i, n in classes.items()}
    except (OSError, ValueError, AttributeError):
        return {}
