"""``refresh_report``: what ``scan``, ``rebalance`` and ``evaluate`` call after they finish,
so that ``WS/report.html`` always shows every stage run so far.

The stage outputs a report was built from are recorded in the report itself (a
``<meta name="biasaudit-inputs">`` tag), so a refresh after ``evaluate`` keeps the
repair section that ``rebalance`` added. The workspace is found from the outputs when
not given: ``NEW/rebalance.json`` names it, and an evaluation names its training folders,
one of which may be a rebalanced folder.

>>> refresh_report(workspace="WS")             # after scan       # doctest: +SKIP
>>> refresh_report(rebalance="NEW")            # after rebalance  # doctest: +SKIP
>>> refresh_report(eval="EVAL")                # after evaluate   # doctest: +SKIP
"""

from __future__ import annotations

import html
import json
import re
from pathlib import Path

from biasaudit.core.workspace import Workspace

META_NAME = "biasaudit-inputs"
_META = re.compile(r'<meta name="biasaudit-inputs" content="([^"]*)">')


def recorded_inputs(report: str | Path) -> dict[str, str]:
    """The stage outputs an existing report was built from (empty when none or unreadable)."""
    try:
        head = Path(report).read_text("utf-8")[:20000]
    except (OSError, UnicodeDecodeError):
        return {}
    match = _META.search(head)
    if not match:
        return {}
    try:
        doc = json.loads(html.unescape(match.group(1)))
    except ValueError:
        return {}
    return {k: str(v) for k, v in doc.items() if k in ("rebalance", "eval", "probe") and v}


def find_workspace(*, rebalance: str | Path | None = None, eval: str | Path | None = None) -> Path | None:
    """The scan workspace behind a rebalanced folder or an evaluation, when it can be told."""
    candidates: list[Path] = []
    if rebalance is not None:
        candidates.append(Path(rebalance))
    if eval is not None:
        try:
            settings = json.loads((Path(eval) / "metrics.json").read_text("utf-8")).get("settings") or {}
        except (OSError, ValueError, AttributeError):
            settings = {}
        candidates += [Path(str(d)) for d in (settings.get("train") or {}).values()]
    for folder in candidates:
        try:
            ws = json.loads((folder / "rebalance.json").read_text("utf-8")).get("workspace")
        except (OSError, ValueError, AttributeError):
            continue
        if ws and Workspace(ws).findings.is_file():
            return Path(ws)
    return None


def refresh_report(*, workspace: str | Path | None = None, rebalance: str | Path | None = None,
                   eval: str | Path | None = None, probe: str | Path | None = None) -> Path | None:
    """Write or refresh ``WS/report.html`` with the given outputs plus those it already showed.

    Returns the report's path, or None when no scanned workspace can be found.
    """
    from biasaudit.report.render import write_report

    ws = Path(workspace) if workspace is not None else find_workspace(rebalance=rebalance, eval=eval)
    if ws is None or not Workspace(ws).findings.is_file():
        return None
    if rebalance is None and eval is not None:
        for folder in _train_folders(eval):
            if (folder / "rebalance.json").is_file():
                rebalance = folder
                break
    inputs = {k: v for k, v in recorded_inputs(Workspace(ws).report).items() if Path(v).exists()}
    given = {"rebalance": rebalance, "eval": eval, "probe": probe}
    inputs.update({k: str(v) for k, v in given.items() if v is not None})
    return write_report(ws, rebalance=inputs.get("rebalance"), eval=inputs.get("eval"), probe=inputs.get("probe"))


def _train_folders(eval: str | Path) -> list[Path]:
    try:
        settings = json.loads((Path(eval) / "metrics.json").read_text("utf-8")).get("settings") or {}
        return [Path(str(d)) for d in (settings.get("train") or {}).values()]
    except (OSError, ValueError, AttributeError):
        return []
