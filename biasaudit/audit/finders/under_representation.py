"""``under_representation``: attribute values far below their expected share.

Every value is tested, the rarest included (a colour in 10 of 2,000 images is the most
under-represented of all), against one of two baselines:

- a **reference** the user gave (``--reference FILE``: attribute, value, share; e.g.
  population shares of skin tones): every value it names is tested, also one seen in
  no image at all, for any attribute (colour, presence, size, shape);
- otherwise the **even share** 1 / k over the k values seen at least ``support_floor``
  times (the established groups; at least two), for the named colours of parts present
  in at least half of the images (hair, skin, cloth: parts every portrait has, so their
  colours describe the population; an accessory's colour describes a styling choice).
  Presence, size tertiles and embedding clusters are not tested against an even share:
  how often an accessory appears, or how a clustering splits, is not a population group.

Every dataset has values that are naturally rarer than an even share (white hair in
about 1% of portraits), so even-share findings carry ``basis: "even share"`` and are
ranked after every label bias and reference finding (``Finding.group``): they say
"rare here", and never crowd out a real bias.

One-sided exact binomial test; the effect is the shortfall below ``SHORTFALL_KNEE`` of the expected share:
max(0, 1 − ratio / SHORTFALL_KNEE). With the knee at 0.24 a value is flagged (severity
>= 0.5) at about a fifth of its expected share or less: 2% where 20% was expected
(ratio 0.1, effect 0.58) is flagged; 5% where 20% was expected (ratio 0.25) is not.

A colour value counts as short of the even share only when it is a visibly distinct
colour (needs ``inputs.colours``, the parts' CIELAB medians): the median, over its
images, of the CIE76 distance ΔE*ab to the nearest image named otherwise must be at
least ``TAIL_DELTA_E`` and at least ``TAIL_SPACING`` times the median distance between
neighbouring images of the part (sparse real data spaces even a continuum a few ΔE
apart). Below that the value is the tail of a continuum cut by the naming thresholds,
e.g. the palest of a continuous range of skin tones named "white" while their
neighbours, less than one just-noticeable difference away, are "beige": its rarity says
where a threshold lies, not that a group is missing. Rare gray hair in a dataset of
black, brown, blond and red hair sits tens of ΔE from every other image and is tested.
Such a tail is still tested and counted, with effect 0 (so never a finding) and the
reason in its evidence. A reference share given by the user is always judged as given.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats as sstats

from biasaudit.audit.attributes import plain_strings
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
            rows = plain_strings(rows)  # one node's rows: strings are cheap here
            attributes = set(self.attributes) | {a for (n, a) in inputs.reference if n == str(node)}
            for attribute in sorted(attributes):
                if attribute not in rows.columns:
                    continue
                out.extend(self._test(inputs, str(node), rows, attribute))
        return out

    def _test(self, inputs: AuditInputs, node: str, rows: pd.DataFrame, attribute: str) -> list[Finding]:
        values = rows[attribute]
        values = values[values.notna() & (values.astype(str) != "")].astype(str)
        n = len(values)
        reference = inputs.reference.get((node, attribute))
        if n == 0:
            return []
        counts = values.value_counts()
        gaps: dict[str, float | None] = {}
        tail_below = TAIL_DELTA_E
        if reference is None:
            if attribute not in self.attributes:
                return []
            if "presence" in rows and (rows["presence"] == "present").mean() < MIN_PRESENCE:
                return []
            supported = counts[counts >= inputs.support_floor(n)]
            if len(counts) < 2:
                return []
            k = max(2, len(supported))
            reference = {v: 1.0 / k for v in counts.index}
            basis = "even share"
            basis_text = f"an even share over the {k} established {attribute} values"
            if attribute == "colour" and inputs.colours is not None:
                lab = plain_strings(inputs.colours[inputs.colours["node"] == node]).set_index("image")
                names = pd.Series(values.to_numpy(), index=rows.loc[values.index, "image"].astype(str))
                gaps = {v: colour_gap(lab, names, v) for v in reference}
                tail_below = max(TAIL_DELTA_E, TAIL_SPACING * neighbour_spacing(lab.reindex(names.index)))
        else:
            basis = "reference"
            basis_text = "the reference share"
        out = []
        for value, expected_share in sorted(reference.items()):
            gap = gaps.get(value)
            tail = gap is not None and gap < tail_below
            observed = int(counts.get(value, 0))
            ratio = (observed / n) / expected_share if expected_share > 0 else 1.0
            effect = 0.0 if tail else max(0.0, 1.0 - ratio / SHORTFALL_KNEE)
            p = float(sstats.binomtest(observed, n, expected_share, alternative="less").pvalue)
            evidence = {"observed": observed, "n": n, "observed_share": round(observed / n, 4),
                        "expected_share": round(expected_share, 4), "ratio": round(ratio, 4),
                        "basis": basis, "test": "exact binomial (one-sided, less)",
                        "attribute_kind": attribute, "value": str(value)}
            if gap is not None:
                evidence["delta_e_to_other_colours"] = round(gap, 2)
            if tail:
                evidence["not_a_group"] = (
                    f"its images lie {gap:.1f} ΔE*ab from images named otherwise (below {tail_below:.1f}): "
                    f"the tail of a continuum cut by a colour-naming threshold")
            out.append(Finding(
                kind="under_representation", segment=node,
                attribute=f"{node} {attribute}: {value}", label=None, effect=effect, p_value=p,
                summary=(f"{node} {attribute} '{value}' appears in {observed} of {n} images "
                         f"({observed / n:.1%}); {basis_text} would be {expected_share:.1%} "
                         f"({expected_share * n:.0f} images)."),
                evidence=evidence,
            ))
        return out
