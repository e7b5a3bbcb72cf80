"""Run every finder, control false discoveries across all of them, score and rank.

Decision points, in order:
1. every finder proposes findings with raw p-values;
2. Benjamini–Hochberg over *all* tests of the scan gives q-values;
3. severity = effect score × confidence (``stats.severity``), flagged at >= 0.5; findings
   with severity 0 (q >= ALPHA, or no effect of practical size) are dropped;
4. findings on causal parts (``--causal`` and every node containing one), and geometric
   findings on parts whose geometry a causal part explains (``confounding``), move to
   the expected evidence;
5. per (segment, label) the strongest finding is kept and the others attach to it as
   ``related`` evidence, so one bias reads as one finding;
6. rank: severity, then smaller nodes (a leaf explains better than a merge), then kind.
"""

from __future__ import annotations

from dataclasses import dataclass

from biasaudit.audit import stats
from biasaudit.audit.finders import FINDERS, Finder
from biasaudit.audit.findings import Finding
from biasaudit.audit.inputs import GEOMETRIC_ATTRIBUTES, AuditInputs

_KIND_ORDER = {"association": 0, "under_representation": 1, "shortcut": 2}


@dataclass(frozen=True)
class AuditResult:
    findings: list[Finding]
    expected: list[Finding]
    n_tests: int

    @property
    def flagged(self) -> list[Finding]:
        return [f for f in self.findings if f.flagged]


def run_audit(inputs: AuditInputs, *, finders: list[Finder] | None = None) -> AuditResult:
    """Findings for ``inputs``; deterministic for a fixed ``inputs.seed``.

    >>> # see tests/audit/test_run.py for a planted-bias example
    """
    finders = finders if finders is not None else [cls() for cls in FINDERS.values()]
    candidates: list[Finding] = []
    for finder in finders:
        candidates.extend(finder.find(inputs))
    q = stats.benjamini_hochberg([f.p_value for f in candidates])
    scored = []
    for f, qv in zip(candidates, q, strict=True):
        sev = stats.severity(f.effect, float(qv))
        if sev <= 0:  # not a discovery, or a discovery of no practical size
            continue
        scored.append(f.with_(q_value=float(qv), severity=sev))
    bias, expected = [], []
    for f in scored:
        reason = inputs.causal_reason(f.segment)
        kind = f.evidence.get("attribute_kind", "")
        if not reason and (kind in GEOMETRIC_ATTRIBUTES or kind == "embedding"):
            reason = inputs.confounded.get(f.segment, "")
            reason = f"its geometry follows a causal part: {reason}" if reason else ""
        if reason:
            expected.append(f.with_(expected=True, expected_reason=reason))
        else:
            bias.append(f)
    findings = _rank(_merge(bias, inputs), inputs)
    expected = _rank(_merge(expected, inputs), inputs)
    return AuditResult(findings=findings, expected=expected, n_tests=len(candidates))


def _sort_key(f: Finding, inputs: AuditInputs):
    return (-f.severity, len(inputs.parts_of(f.segment)), _KIND_ORDER.get(f.kind, 9),
            f.segment, f.attribute, f.label or "")


def _merge(findings: list[Finding], inputs: AuditInputs) -> list[Finding]:
    groups: dict[tuple, list[Finding]] = {}
    for f in findings:
        # under-representation has no label: each rare value stands on its own
        key = (f.segment, f.label, f.attribute if f.kind == "under_representation" else "")
        groups.setdefault(key, []).append(f)
    merged = []
    for group in groups.values():
        group.sort(key=lambda f: _sort_key(f, inputs))
        head, rest = group[0], group[1:]
        if rest:
            related = [{"kind": r.kind, "attribute": r.attribute, "severity": r.severity,
                        "summary": r.summary} for r in rest]
            head = head.with_(evidence={**head.evidence, "related": related})
        merged.append(head)
    return merged


def _rank(findings: list[Finding], inputs: AuditInputs) -> list[Finding]:
    ordered = sorted(findings, key=lambda f: _sort_key(f, inputs))
    return [f.with_(rank=i + 1) for i, f in enumerate(ordered)]
