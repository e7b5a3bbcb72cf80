"""Findings as sentences a reviewer understands without knowing the statistics.

The scan's own ``summary`` is written for people who read contingency tables; the
report leads with the count a reviewer can check against the pictures: "131 of the 137
images with Smiling=1 show it, where 72 would be expected".

>>> f = {"kind": "association", "segment": "hair", "attribute": "hair colour: blond",
...      "label": "Smiling", "evidence": {"value": "blond", "attribute_kind": "colour",
...      "table": {"blond": {"0": 10, "1": 90}, "black": {"0": 90, "1": 10}}}}
>>> finding_sentence(f)
"Hair colour 'blond' predicts Smiling=1: 90 of the 100 images with Smiling=1 show it, where 50 would be expected if hair colour did not depend on Smiling."
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any


def attribute_title(finding: Mapping[str, Any]) -> tuple[str, str]:
    """(attribute name, value) from ``"hair colour: blond"``; the value from evidence first."""
    attribute = str(finding.get("attribute") or finding.get("segment") or "attribute")
    name, _, value = attribute.partition(":")
    value = str((finding.get("evidence") or {}).get("value") or value).strip()
    return name.strip(), value


def contingency(evidence: Mapping[str, Any]) -> tuple[list[str], list[str], list[list[float]]]:
    """(row values, label values, counts) of an association's table; empty when absent."""
    table = evidence.get("table") or {}
    if not isinstance(table, Mapping) or not table:
        return [], [], []
    rows = [str(r) for r in table]
    cols: list[str] = []
    for r in table.values():
        for c in (r or {}):
            if str(c) not in cols:
                cols.append(str(c))
    cols.sort()
    counts = [[float((table[r] or {}).get(c, (table[r] or {}).get(_num(c), 0)) or 0) for c in cols] for r in table]
    return rows, cols, counts


def _num(text: str):
    try:
        return int(text)
    except ValueError:
        return text


def expected_counts(counts: Sequence[Sequence[float]]) -> list[list[float]]:
    """Counts expected if rows and columns were independent (row total × column total / n)."""
    n = sum(sum(r) for r in counts)
    if n == 0:
        return [[0.0 for _ in r] for r in counts]
    col = [sum(r[j] for r in counts) for j in range(len(counts[0]))] if counts else []
    return [[sum(r) * col[j] / n for j in range(len(r))] for r in counts]


def finding_sentence(finding: Mapping[str, Any], *, sensitive: Sequence[str] = ()) -> str:
    """One plain sentence for a finding of any kind (falls back to the scan's summary)."""
    kind = finding.get("kind")
    evidence = finding.get("evidence") or {}
    name, value = attribute_title(finding)
    label = finding.get("label")
    try:
        if kind == "association" and label:
            return _association(name, value, str(label), evidence, verb="is tied to" if label in sensitive
                                else "predicts") or _summary(finding)
        if kind == "under_representation":
            obs, n = evidence.get("observed"), evidence.get("n")
            share = evidence.get("expected_share")
            if obs is not None and n and share is not None:
                return (f"{_cap(name)} '{value}' is rare: {int(obs):,} of {int(n):,} images "
                        f"({obs / n:.1%}), where an even share would be {share * n:,.0f} ({share:.0%}).")
        if kind == "shortcut" and label:
            auc = evidence.get("auc")
            whole = evidence.get("whole_image_auc")
            if auc is not None:
                part = finding.get("segment", "this part")
                tail = f" (the whole image: {whole:.2f})" if whole is not None else ""
                return (f"The {part} region alone predicts {label}: a linear probe on its appearance "
                        f"reaches AUC {auc:.2f}{tail}, where 0.50 means no information.")
    except (TypeError, ValueError, ZeroDivisionError):
        pass
    return _summary(finding)


def _association(name: str, value: str, label: str, evidence: Mapping[str, Any], *, verb: str) -> str | None:
    rows, cols, counts = contingency(evidence)
    if value not in rows or not cols:
        return None
    exp = expected_counts(counts)
    i = rows.index(value)
    # the label value this attribute value over-represents the most
    j = max(range(len(cols)), key=lambda c: counts[i][c] - exp[i][c])
    col_total = sum(r[j] for r in counts)
    return (f"{_cap(name)} '{value}' {verb} {label}={cols[j]}: {int(counts[i][j]):,} of the {int(col_total):,} "
            f"images with {label}={cols[j]} show it, where {exp[i][j]:,.0f} would be expected if "
            f"{name} did not depend on {label}.")


def _summary(finding: Mapping[str, Any]) -> str:
    text = str(finding.get("summary") or finding.get("attribute") or "").strip()
    return _cap(text) if text else "(no summary)"


def _cap(text: str) -> str:
    return text[:1].upper() + text[1:]


def deficit_cells(evidence: Mapping[str, Any]) -> set[tuple[str, str]]:
    """(value, label value) of the cells the audit marked as deficits (std residual < −2)."""
    out = set()
    for cell in evidence.get("cells") or ():
        if not isinstance(cell, Mapping):
            continue
        label = str(cell.get("label", ""))
        out.add((str(cell.get("value")), label.split("=", 1)[-1]))
    return out


def format_ci(ci: Any, digits: int = 2) -> str:
    """``[0.72, 0.87]`` → ``"0.72–0.87"``; empty when absent."""
    if isinstance(ci, Sequence) and not isinstance(ci, str) and len(ci) == 2 and None not in ci:
        return f"{float(ci[0]):.{digits}f}–{float(ci[1]):.{digits}f}"
    return ""


def format_q(q: Any) -> str:
    """A q-value readable at a glance: ``3.2e-37`` or ``0.004``."""
    try:
        q = float(q)
    except (TypeError, ValueError):
        return "–"
    if q == 0:
        return "< 1e-300"
    return f"{q:.1e}" if q < 1e-3 else f"{q:.3f}"
