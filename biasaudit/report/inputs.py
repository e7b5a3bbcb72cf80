"""What a report reads: a scan workspace, and optionally a rebalance folder, an evaluation
folder and a probe file. Every file is read defensively (``.get`` with defaults): the
shapes of findings.json, rebalance.json, metrics.json and the probe output gain fields
over time, and a report must still render from an older or partial workspace.

The manifest, segment and attribute tables are not read here: the report reads them
later in batches, only the columns it needs (:mod:`biasaudit.report.tables`), so its
memory does not grow with the dataset.

>>> inputs = load_inputs("WS", rebalance="NEW", eval="EVAL", probe="probe.json")  # doctest: +SKIP
>>> inputs.findings[0]["segment"]                                                   # doctest: +SKIP
'hair'
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from biasaudit.core.errors import DatasetError, ValidationError
from biasaudit.core.io import table_exists
from biasaudit.core.workspace import Workspace


@dataclass(frozen=True)
class ReportInputs:
    """Everything a report shows: plain JSON-like data, and the paths of the workspace's
    tables (None where a table is missing)."""

    workspace: Path
    findings_doc: dict[str, Any]
    config: dict[str, Any]
    manifest_path: Path | None = None
    segments_path: Path | None = None
    attributes_path: Path | None = None
    node_parts: dict[str, tuple[str, ...]] = field(default_factory=dict)
    tree: dict[str, Any] | None = None     # WS/models/tree.json (a recipe mapping)
    node_metrics: dict[str, dict[str, Any]] = field(default_factory=dict)
    rebalance: dict[str, Any] | None = None
    rebalance_dir: Path | None = None
    eval: dict[str, Any] | None = None
    eval_dir: Path | None = None
    probe: dict[str, Any] | None = None
    probe_path: Path | None = None

    @property
    def findings(self) -> list[dict[str, Any]]:
        return [f for f in self.findings_doc.get("findings") or [] if isinstance(f, dict)]

    @property
    def expected(self) -> list[dict[str, Any]]:
        return [f for f in self.findings_doc.get("expected_evidence") or [] if isinstance(f, dict)]

    @property
    def scan_settings(self) -> dict[str, Any]:
        return {**(self.config.get("scan") or {}), **(self.findings_doc.get("settings") or {})}

    @property
    def part_ids(self) -> dict[str, int]:
        """Schema part name → class id (from the workspace config)."""
        for key in ("segment", "data"):
            classes = ((self.config.get(key) or {}).get("schema_classes") or {}).get("classes") or {}
            if classes:
                return {str(name): int(cid) for cid, name in classes.items()}
        return {}


def load_inputs(workspace: str | Path, *, rebalance: str | Path | None = None, eval: str | Path | None = None,
                probe: str | Path | None = None) -> ReportInputs:
    """Read a scanned workspace (and the optional stage outputs) for a report."""
    ws = Workspace(workspace)
    if not ws.findings.is_file():
        raise DatasetError(
            f"{ws.findings} does not exist; {ws.root} is not a scanned workspace. Run "
            f"`biasaudit scan DATA --out {ws.root} --label COL` first."
        )
    findings_doc = _read_json(ws.findings, "findings.json")
    config = _read_json(ws.config, "config.json") if ws.config.is_file() else {}

    def table(path: Path) -> Path | None:  # a file, or a folder of shards (segments.parquet)
        return path if table_exists(path) else None

    tree, node_parts, metrics = _heml(ws)
    reb_doc, reb_dir = _rebalance(rebalance)
    eval_doc, eval_dir = _eval(eval)
    probe_doc, probe_path = _probe(probe)
    return ReportInputs(
        workspace=ws.root, findings_doc=findings_doc, config=config, manifest_path=table(ws.manifest),
        segments_path=table(ws.segments), attributes_path=table(ws.attributes), node_parts=node_parts, tree=tree,
        node_metrics=metrics, rebalance=reb_doc, rebalance_dir=reb_dir, eval=eval_doc, eval_dir=eval_dir,
        probe=probe_doc, probe_path=probe_path,
    )


def _read_json(path: Path, what: str) -> dict[str, Any]:
    try:
        doc = json.loads(Path(path).read_text("utf-8"))
    except (OSError, ValueError) as exc:
        raise DatasetError(f"{path} could not be read as {what} ({exc}); re-run the stage that writes it.") from None
    if not isinstance(doc, dict):
        raise DatasetError(f"{path} is not a JSON object as {what} should be; re-run the stage that writes it.")
    return doc


def _heml(ws: Workspace):
    """The HEML segment tree, each node's parts and its held-out quality, when trained."""
    tree_path = ws.models_dir / "tree.json"
    if not tree_path.is_file():
        return None, {}, {}
    tree = _read_json(tree_path, "HEML tree.json")
    root = tree.get("tree") if isinstance(tree.get("tree"), dict) else tree
    node_parts: dict[str, tuple[str, ...]] = {}
    metrics: dict[str, dict[str, Any]] = {}

    def walk(node: dict[str, Any]) -> tuple[str, ...]:
        name = str(node.get("name", "?"))
        parts = tuple(str(p) for p in node.get("parts") or ())
        for child in node.get("children") or ():
            parts += walk(child)
        node_parts[name] = parts
        m = ws.model_dir(name) / "metrics.json"
        if m.is_file():
            try:
                metrics[name] = json.loads(m.read_text("utf-8"))
            except ValueError:
                pass
        return parts

    if isinstance(root, dict):
        walk(root)
    return root if isinstance(root, dict) else None, node_parts, metrics


def _rebalance(path: str | Path | None):
    if path is None:
        return None, None
    p = Path(path)
    file = p / "rebalance.json" if p.is_dir() else p
    if not file.is_file():
        raise ValidationError(
            f"--rebalance {path}: expected a folder written by `biasaudit rebalance` (with rebalance.json); "
            f"found no {file}."
        )
    return _read_json(file, "rebalance.json"), file.parent


def _eval(path: str | Path | None):
    if path is None:
        return None, None
    p = Path(path)
    file = p / "metrics.json" if p.is_dir() else p
    if not file.is_file():
        raise ValidationError(
            f"--eval {path}: expected a folder written by `biasaudit evaluate` (with metrics.json); found no {file}."
        )
    return _read_json(file, "metrics.json"), file.parent


def _probe(path: str | Path | None):
    if path is None:
        return None, None
    p = Path(path)
    if not p.is_file():
        raise ValidationError(f"--probe {path}: expected the JSON file written by `biasaudit probe --out FILE`; "
                              f"no such file.")
    return _read_json(p, "probe output"), p
