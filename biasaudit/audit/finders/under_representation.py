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

A colour value is tested against the even share only when it is a visibly distinct
colour (needs ``inputs.colours``, the parts' CIELAB medians): the median, over its
images, of the CIE76 distance ΔE*ab to the nearest image named otherwise must be at
least ``TAIL_DELTA_E`` and at least ``TAIL_SPACING`` times the median distance between
neighbouring images of the part (sparse real data spaces even a continuum a few ΔE
apart). Below that the value is the tail of a continuum cut by the naming thresholds,
e.g. the palest of a continuous range of skin tones named "white" while their
neighbours, less than one just-noticeable difference away, are "beige": its rarity says
where a threshold lies, not that a group is missing. Rare gray hair in a dataset of
black, brown, blond and red hair sits tens of ΔE from every other image and is tested.
A reference share given by the user is always tested.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats as sstats

from biasaudit.audit.finders.base import Finder
from biasaudit.audit.findings import Finding
from biasaudit.audit.inputs import AuditInputs

#: a value at this fraction of its expected share (or above) has no shortfall at all
SHORTFALL_KNEE = 0.24
#: parts present in fewer images than this share are accessories: not tested
MIN_PRESENCE = 0.5
#: a colour value whose images lie closer than this (median ΔE*ab) to images named
#: otherwise is the tail of a continuum, not a group (2.3 is one just-noticeable difference)
TAIL_DELTA_E = 3.0
#: ... and closer than this many typical neighbour distances (median nearest-neighbour ΔE)
TAIL_SPACING = 2.0


def neighbour_spacing(lab: pd.DataFrame) -> float:
    """Median ΔE*ab from each image's colour to its nearest other image's (0 if < 2)."""
    from scipy.spatial import cKDTree

    x = lab[["lab_l", "lab_a", "lab_b"]].to_numpy(dtype=float)
    x = x[np.isfinite(x).all(axis=1)]
    if len(x) < 2:
        return 0.0
    return float(np.median(cKDTree(x).query(x, k=2)[0][:, 1]))


def colour_gap(lab: pd.DataFrame, names: pd.Series, value: str) -> float | None:
    """Median ΔE*ab from the images named ``value`` to the nearest image named otherwise.

    ``lab`` holds ``lab_l, lab_a, lab_b`` indexed by image; ``names`` the colour name per
    image. None when either side has no colour.

    >>> lab = pd.DataFrame({"lab_l": [50.0, 51.0, 90.0], "lab_a": 0.0, "lab_b": 0.0}, index=list("abc"))
    >>> colour_gap(lab, pd.Series(["gray", "gray", "white"], index=list("abc")), "white")
    39.0
    """
    from scipy.spatial import cKDTree

    x = lab.reindex(names.index)[["lab_l", "lab_a", "lab_b"]].to_numpy(dtype=float)
    ok = np.isfinite(x).all(axis=1)
    inside = ok & (names.to_numpy() == value)
    outside = ok & ~inside
    if not inside.any() or not outside.any():
        return None
    dist, _ = cKDTree(x[outside]).query(x[inside], k=1)
    return float(np.median(dist))


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
                gaps: dict[str, float | None] = {}
                tail_below = TAIL_DELTA_E
                if reference is None:
                    supported = counts[counts >= inputs.support_floor(n)]
                    if len(supported) < 2:
                        continue
                    n = int(supported.sum())
                    reference = {v: 1.0 / len(supported) for v in supported.index}
                    basis = f"an even share over {len(supported)} {attribute} values"
                    if attribute == "colour" and inputs.colours is not None:
                        lab = inputs.colours[inputs.colours["node"] == node].set_index("image")
                        names = pd.Series(values.to_numpy(), index=rows.loc[values.index, "image"].astype(str))
                        gaps = {v: colour_gap(lab, names, v) for v in reference}
                        tail_below = max(TAIL_DELTA_E, TAIL_SPACING * neighbour_spacing(lab.reindex(names.index)))
                else:
                    basis = "the reference share"
                for value, expected_share in reference.items():
                    gap = gaps.get(value)
                    if gap is not None and gap < tail_below:
                        continue
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
                                  "attribute_kind": attribute, "value": str(value),
                                  **({"delta_e_to_other_colours": round(gap, 2)} if gap is not None else {})},
                    ))
        return out
