"""The finding record every finder produces, and ``findings.json`` (DESIGN.md §6)."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Literal

import pandas as pd

from biasaudit.audit.stats import FLAG_THRESHOLD

FindingKind = Literal["under_representation", "association", "shortcut"]


@dataclass(frozen=True)
class Finding:
    """One ranked, evidence-backed statement about the dataset.

    ``p_value`` is the raw p-value of the finding's test; the audit replaces ``q_value``
    (Benjamini–Hochberg over every test of the scan) and ``severity`` once all finders ran.
    ``expected`` marks evidence on causal parts: reported, never counted as bias, with
    ``expected_reason`` saying why (``routed_because`` in ``findings.json``).
    ``parts`` are the schema parts the node ``segment`` covers (``eye_region`` →
    ``l_eye, r_eye, l_brow, r_brow``); the audit fills them in, and judges "on a causal
    part" from them. ``values`` (image id → the value this finding describes for that
    image: the attribute value, or the probe's score half) lets the audit test one
    finding while holding another fixed; it is not written out.
    ``group`` orders the report: 0 for label biases and shortfalls against a reference
    the user gave, 1 for shortfalls against the default even share (ordinary rarity).
    """

    kind: FindingKind
    segment: str
    attribute: str
    label: str | None
    effect: float
    p_value: float
    summary: str
    evidence: dict[str, Any] = field(default_factory=dict)
    q_value: float = 1.0
    severity: float = 0.0
    expected: bool = False
    expected_reason: str = ""
    rank: int = 0
    parts: tuple[str, ...] = ()
    values: pd.Series | None = field(default=None, repr=False, compare=False)

    @property
    def group(self) -> int:
        return 1 if self.evidence.get("basis") == "even share" else 0

    @property
    def flagged(self) -> bool:
        return self.severity >= FLAG_THRESHOLD and not self.expected

    def with_(self, **changes) -> Finding:
        return replace(self, **changes)

    def to_record(self) -> dict[str, Any]:
        """The DESIGN.md §6 record (plus ``expected_reason`` on expected evidence)."""
        evidence = dict(self.evidence)
        evidence.setdefault("q_value", self.q_value)
        evidence.setdefault("p_value", self.p_value)
        record = {
            "rank": self.rank,
            "kind": self.kind,
            "segment": self.segment,
            "parts": list(self.parts),
            "attribute": self.attribute,
            "label": self.label,
            "severity": self.severity,
            "summary": self.summary,
            "evidence": evidence,
        }
        if self.expected:
            record["expected_reason"] = self.expected_reason
            record["routed_because"] = self.expected_reason
        return record


#: how findings are ordered, written into findings.json so a reader need not look it up
RANKING = (
    "Findings are ranked in two groups. First: label biases (associations and embedding "
    "shortcuts against --label/--sensitive columns) and shortfalls against a reference share "
    "the user gave (--reference), by severity. Then: shortfalls against the default "
    "even share over the values seen, by severity: every dataset has values that are naturally "
    "rarer than an even share (white hair), so these say 'rare here' and never outrank a bias. "
    "A finding that vanishes once a higher-ranked finding's attribute is held fixed is listed "
    "under it as a proxy, not ranked on its own."
)


def findings_document(
    findings: list[Finding], expected: list[Finding], *, version: str, n_images: int,
    n_errors: int, settings: dict[str, Any],
) -> dict[str, Any]:
    """The ``findings.json`` object: ranked findings first, expected evidence apart."""
    return {
        "biasaudit_version": version,
        "dataset": {"n_images": int(n_images), "n_errors": int(n_errors)},
        "findings": [f.to_record() for f in findings],
        "ranking": RANKING,
        "expected_evidence": [f.to_record() for f in expected],
        "settings": settings,
    }
