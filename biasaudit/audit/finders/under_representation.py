"""``under_representation``: attribute values far below their expected share.

Tested attributes are the named colours of parts present in at least half of the images
(hair, skin, cloth: parts every portrait has, so their colours describe the population;
an accessory's colour describes a styling choice of a minority and is not tested). A
value's observed share is compared with the user's reference share, or by default with
an even share over the values seen at least ``support_floor`` times. Presence, size
tertiles and embedding clusters are not tested: how often an accessory appears, or how a
clustering splits, is not a population group. One-sided exact binomial test; the effect
is the shortfall below ``SHORTFALL_KNEE`` of the expected share:
max(0, 1 − ratio / SHORTFALL_KNEE). With the knee at 0.24 a value is flagged (severity
>= 0.5) at about a fifth of its expected share or less: 2% where 20% was expected
(ratio 0.1, effect 0.58) is flagged; 5% where 20% was expected (ratio 0.25) is not.
"""

from __future__ import annotations

from scipy import stats as sstats

from biasaudit.audit.finders.base import Finder
from biasaudit.audit.findings import Finding
from biasaudit.audit.inputs import AuditInputs

#: a value at this fraction of its expected share (or above) has no shortfall at all
SHORTFALL_KNEE = 0.24
#: parts present in fewer images than this share are accessories: not tested
MIN_PRESENCE = 0.5


class UnderRepresentationFinder(Finder):
    kind = "under_representation"

    def __init__(self, *, attributes: tuple[str, ...] = ("colour",)) -> None:
        self.attributes = attributes

    def find(self, inputs: AuditInputs) -> list[Finding]:
        out: list[Finding] = []
        for node, rows in inputs.attributes.groupby("node", sort=True):
            if "presence" in rows and (rows["presence"] == "present").mean() < MIN_PRESENCE:
                continue
            for attribute in self.attributes:
                if attribute not in rows.columns:
                    continue
                values = rows[attribute]
                values = values[values.notna() & (values.astype(str) != "")].astype(str)
                n = len(values)
                if n == 0:
                    continue
                counts = values.value_counts()
                reference = inputs.reference.get((str(node), attribute))
                if reference is None:
                    supported = counts[counts >= inputs.support_floor(n)]
                    if len(supported) < 2:
                        continue
                    n = int(supported.sum())
                    reference = {v: 1.0 / len(supported) for v in supported.index}
                    basis = f"an even share over {len(supported)} {attribute} values"
                else:
                    basis = "the reference share"
                for value, expected_share in reference.items():
                    observed = int(counts.get(value, 0))
                    ratio = (observed / n) / expected_share if expected_share > 0 else 1.0
                    effect = max(0.0, 1.0 - ratio / SHORTFALL_KNEE)
                    p = float(sstats.binomtest(observed, n, expected_share, alternative="less").pvalue)
                    out.append(Finding(
                        kind="under_representation", segment=str(node),
                        attribute=f"{node} {attribute}: {value}", label=None, effect=effect,
                        p_value=p,
                        summary=(f"{node} {attribute} '{value}' appears in {observed} of {n} images "
                                 f"({observed / n:.1%}); {basis} would be {expected_share:.1%} "
                                 f"({expected_share * n:.0f} images)."),
                        evidence={"observed": observed, "n": n, "observed_share": round(observed / n, 4),
                                  "expected_share": round(expected_share, 4), "ratio": round(ratio, 4),
                                  "test": "binomial (one-sided, less)",
                                  "attribute_kind": attribute, "value": str(value)},
                    ))
        return out
