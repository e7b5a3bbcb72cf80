"""Run every finder, control false discoveries across all of them, score and rank.

Decision points, in order:

1. every finder proposes findings with raw p-values; each gets ``parts``, the schema
   parts its node covers;
2. Benjamini–Hochberg over *all* tests of the scan gives q-values;
3. severity = effect score × confidence (``stats.severity``), flagged at >= 0.5; findings
   with severity 0 (q >= ALPHA, or no effect of practical size) are dropped;
4. expected evidence (``expected_reason``, ``routed_because`` in findings.json):
   a finding whose parts include a causal part (``--causal``); the size or shape of a
   part that a causal part occludes (pixel contact, ``confounding``), and its appearance
   clusters and embedding, which see that outline too (a bias in such a part still shows
   in its colour or presence, tested by name); the presence of a part that the causal
   part hides (it covers the part's usual place where the part is missing). Colour is
   never routed, presence only when hidden;
5. per (segment, label) the strongest finding is kept and the others attach to it as
   ``related`` evidence, so one bias reads as one finding;
6. rank in two groups (``Finding.group``): label biases and shortfalls against a user's
   reference first, then shortfalls against the default even share; within a group by
   severity, then smaller nodes (a leaf explains better than a merge), then kind;
7. proxies: each flagged label finding is tested again holding each higher-ranked flagged
   finding of the same label fixed (labels permuted within its strata); where it
   vanishes it is listed under that finding as "a proxy of hair colour 'blond'" and
   leaves the ranking.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from biasaudit.audit import stats
from biasaudit.audit.finders import FINDERS, Finder
from biasaudit.audit.findings import Finding
from biasaudit.audit.inputs import (
    ATTRIBUTE_TITLES,
    EMBEDDING_ATTRIBUTES,
    GEOMETRIC_ATTRIBUTES,
    AuditInputs,
)

_KIND_ORDER = {"association": 0, "under_representation": 1, "shortcut": 2}
#: permutations of the stratified (proxy / occlusion) tests
STRATIFIED_PERMUTATIONS = 200


@dataclass(frozen=True)
class AuditResult:
    findings: list[Finding]
    expected: list[Finding]
    n_tests: int
    #: tests of an attribute against a label or sensitive column (0: the labels were never tested)
    n_label_tests: int = 0
    #: tests rejected by BH at q < ALPHA (all, and those against a label or sensitive column)
    n_rejected: int = 0
    n_label_rejected: int = 0

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
        candidates.extend(f.with_(parts=tuple(inputs.parts_of(f.segment))) for f in finder.find(inputs))
    q = stats.benjamini_hochberg([f.p_value for f in candidates])
    scored = []
    for f, qv in zip(candidates, q, strict=True):
        sev = stats.severity(f.effect, float(qv))
        if sev <= 0:  # not a discovery, or a discovery of no practical size
            continue
        # per-image values serve only the proxy tests between flagged findings: let the
        # others' go, so memory does not hold one per-image column per test
        keep = sev >= stats.FLAG_THRESHOLD and f.label is not None
        scored.append(f.with_(q_value=float(qv), severity=sev, **({} if keep else {"values": None})))
    bias, expected = [], []
    for f in scored:
        reason = _routed_because(f, inputs)
        if reason:
            expected.append(f.with_(expected=True, expected_reason=reason))
        else:
            bias.append(f)
    findings = _proxies(_rank(_merge(bias, inputs), inputs), inputs)
    expected = _rank(_merge(expected, inputs), inputs)
    rejected = [f for f, qv in zip(candidates, q, strict=True) if qv < stats.ALPHA]
    return AuditResult(findings=findings, expected=expected, n_tests=len(candidates),
                       n_label_tests=sum(f.label is not None for f in candidates),
                       n_rejected=len(rejected), n_label_rejected=sum(f.label is not None for f in rejected))


def _routed_because(f: Finding, inputs: AuditInputs) -> str:
    """Why ``f`` is expected evidence rather than a bias ("" when it is a bias)."""
    reason = inputs.causal_reason(f.segment)
    if reason:
        return reason
    occluded = inputs.confounded.get(f.segment, "")
    kind = f.evidence.get("attribute_kind", "")
    if f.label is None:
        return ""
    if kind == "presence" and inputs.hidden.get(f.segment):
        return f"its presence follows a causal part that hides it: {inputs.hidden[f.segment]}"
    if not occluded:
        return ""
    if kind in GEOMETRIC_ATTRIBUTES:
        return f"its {kind} follows an occluding causal part: {occluded}"
    if kind in EMBEDDING_ATTRIBUTES:
        return (f"its appearance {'cluster' if kind == 'cluster_name' else 'embedding'} sees the outline an "
                f"occluding causal part gives it ({occluded}); its colour and presence are tested by name")
    return ""


def _held_fixed(f: Finding, strata: pd.Series, inputs: AuditInputs) -> tuple[float, float]:
    """(conditional V, p) of ``f``'s values × its label within ``strata``."""
    values = f.values.dropna()
    labels = inputs.labels[f.label].reindex(values.index)
    keep = labels.notna().to_numpy()
    values, labels = values[keep], labels[keep].astype(str)
    s = strata.reindex(values.index).fillna("n/a").astype(str)
    return stats.stratified_association(values.astype(str).to_numpy(), labels.to_numpy(), s.to_numpy(),
                                        n_perm=STRATIFIED_PERMUTATIONS, seed=inputs.seed)


def _still_flagged(v: float, p: float) -> bool:
    return stats.severity(v, p) >= stats.FLAG_THRESHOLD


def _sort_key(f: Finding, inputs: AuditInputs):
    return (f.group, -f.severity, len(f.parts or inputs.parts_of(f.segment)), _KIND_ORDER.get(f.kind, 9),
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


def proxy_name(f: Finding) -> str:
    """How a proxy names the finding it re-describes: "hair colour 'blond'"."""
    if f.kind == "shortcut":
        return f"the {f.segment} embedding shortcut"
    kind = f.evidence.get("attribute_kind", "")
    title = ATTRIBUTE_TITLES.get(kind, kind)
    value = f.evidence.get("value")
    return f"{f.segment} {title} '{value}'" if value is not None else f.attribute


def _proxies(ranked: list[Finding], inputs: AuditInputs) -> list[Finding]:
    """Fold flagged label findings that vanish given a higher-ranked one under it."""
    kept: list[Finding] = []
    proxies: dict[int, list[dict]] = {}
    for f in ranked:
        host = None
        if f.flagged and f.label is not None and f.values is not None:
            for i, h in enumerate(kept):
                if not (h.flagged and h.label == f.label and h.values is not None):
                    continue
                v, p = _held_fixed(f, h.values.astype(str), inputs)
                if not _still_flagged(v, p):
                    host = (i, h, v, p)
                    break
        if host is None:
            kept.append(f)
            continue
        i, h, v, p = host
        proxies.setdefault(i, []).append({
            "kind": f.kind, "segment": f.segment, "parts": list(f.parts), "attribute": f.attribute,
            "label": f.label, "severity": f.severity, "summary": f.summary,
            "proxy_of": f"a proxy of {proxy_name(h)}",
            "held_fixed": {"conditional_cramers_v": round(v, 4), "p_value": round(p, 4),
                           "test": f"label permutation within {h.segment} {ATTRIBUTE_TITLES.get(h.evidence.get('attribute_kind', ''), 'values')} strata "
                                   f"({STRATIFIED_PERMUTATIONS} permutations)"},
        })
    out = []
    for i, f in enumerate(kept):
        if i in proxies:
            f = f.with_(evidence={**f.evidence, "proxies": proxies[i]})
        out.append(f.with_(rank=len(out) + 1))
    return out
