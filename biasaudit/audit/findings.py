"""The finding record every finder produces, and ``findings.json`` (DESIGN.md §6)."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Literal

from biasaudit.audit.stats import FLAG_THRESHOLD

FindingKind = Literal["under_representation", "association", "shortcut"]


@dataclass(frozen=True)
class Finding:
    """One ranked, evidence-backed statement about the dataset.

    ``p_value`` is the raw p-value of the finding's test; the audit replaces ``q_value``
    (Benjamini–Hochberg over every test of the scan) and ``severity`` once all finders ran.
    ``expected`` marks evidence on causal parts: reported, never counted as bias.
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
            "attribute": self.attribute,
            "label": self.label,
            "severity": self.severity,
            "summary": self.summary,
            "evidence": evidence,
        }
        if self.expected:
            record["expected_reason"] = self.expected_reason
        return record


def findings_document(
    findings: list[Finding], expected: list[Finding], *, version: str, n_images: int,
    n_errors: int, settings: dict[str, Any],
) -> dict[str, Any]:
    """The ``findings.json`` object: ranked findings first, expected evidence apart."""
    return {
        "biasaudit_version": version,
        "dataset": {"n_images": int(n_images), "n_errors": int(n_errors)},
        "findings": [f.to_record() for f in findings],
        "expected_evidence": [f.to_record() for f in expected],
        "settings": settings,
    }
