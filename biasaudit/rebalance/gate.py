"""The quality gate: a synthesized sample is kept only when it carries what it was made for.

:func:`check_sample` re-measures the target part with the segment statistics the scan
uses (:func:`biasaudit.segment.part_statistics`, and the audit's attribute rules in
:mod:`biasaudit.audit.attributes`) and answers with a :class:`GateVerdict`. Reasons, in
the order they are checked:

- ``area_out_of_range``: the part is present but its share of the image lies outside
  ``area_range`` (the range seen in real images);
- ``wrong_value``: the re-measured value is not ``expected_value``.

:class:`EmbeddingGate` adds the HEML check (``embedding_mismatch``): the target node's
embedding of the new image must lie nearer the centroid of real images with the intended
value than any other value's centroid.

>>> import numpy as np
>>> from biasaudit.core.schema import Schema
>>> schema = Schema("toy", {0: "background", 1: "hair"})
>>> image = np.zeros((8, 8, 3), np.uint8); image[:4] = (220, 190, 130)
>>> mask = np.zeros((8, 8), np.uint8); mask[:4] = 1
>>> check_sample(image, mask, schema=schema, part="hair", attribute="colour", expected_value="blond")
GateVerdict(ok=True, reason='')
>>> check_sample(image, mask, schema=schema, part="hair", attribute="presence", expected_value="absent")
GateVerdict(ok=False, reason='wrong_value')
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from biasaudit.audit.attributes import MIN_COLOUR_AREA, SHAPE_NAMES, SIZE_NAMES
from biasaudit.core.errors import ValidationError
from biasaudit.core.schema import Schema

#: Every reason a sample can be rejected for, as counted in rebalance.json.
REJECT_REASONS = ("area_out_of_range", "wrong_value", "embedding_mismatch", "recombine_failed")
#: Attribute kinds the gate can re-measure from an image and its mask.
MEASURABLE = ("colour", "presence", "size", "shape")


@dataclass(frozen=True)
class GateVerdict:
    ok: bool
    reason: str  # "" when ok, else one of REJECT_REASONS


OK = GateVerdict(True, "")


def measure(image: np.ndarray, mask: np.ndarray, *, schema: Schema, part: str, attribute: str,
            thresholds: tuple[float, float] | None = None) -> tuple[str, float]:
    """(value, area share) of ``part`` in one image, as the audit would name the value.

    ``thresholds`` are the two tertile cut points (of area share for ``size``, of box
    width / height for ``shape``) among real images; those two kinds need them.
    """
    from biasaudit.segment.stats import part_statistics_columns

    if attribute not in MEASURABLE:
        raise ValidationError(
            f"attribute '{attribute}' cannot be re-measured from a mask; expected one of "
            f"{', '.join(MEASURABLE)} (appearance clusters are checked by the HEML gate)."
        )
    part_id = schema.id_of(part)
    if part_id == 0:
        raise ValidationError(f"part '{part}' is the background of schema '{schema.name}'; choose a part.")
    only = Schema(schema.name, {0: "_rest", part_id: part})  # statistics of this one part only
    row = {k: v[0] for k, v in part_statistics_columns(image, mask, only, image_id="sample").items()}
    area = float(row["area_frac"])
    present = bool(row["present"])
    if attribute == "presence":
        return ("present" if present else "absent"), area
    if not present:
        return "", area
    if attribute == "colour":
        return (str(row["colour"]) if area >= MIN_COLOUR_AREA else ""), area
    if thresholds is None:
        raise ValidationError(f"check_sample: attribute '{attribute}' needs thresholds (two tertile cut points).")
    if attribute == "size":
        x = area
        names = SIZE_NAMES
    else:
        height = max(1, row["bbox_y1"] - row["bbox_y0"])
        x = (row["bbox_x1"] - row["bbox_x0"]) / height
        names = SHAPE_NAMES
    lo, hi = thresholds
    return (names[0] if x <= lo else names[1] if x <= hi else names[2]), area


def check_sample(image: np.ndarray, mask: np.ndarray, *, schema: Schema, part: str, attribute: str,
                 expected_value: str, area_range: tuple[float, float] | None = None,
                 thresholds: tuple[float, float] | None = None) -> GateVerdict:
    """Is ``part`` of this sample within ``area_range`` and does it carry ``expected_value``?

    ``attribute`` is the attribute kind as the audit names it (``colour``, ``presence``,
    ``size``, ``shape``); ``thresholds`` as in :func:`measure`.
    """
    value, area = measure(image, mask, schema=schema, part=part, attribute=attribute, thresholds=thresholds)
    if area_range is not None and area > 0:
        lo, hi = area_range
        if not (lo <= area <= hi):
            return GateVerdict(False, "area_out_of_range")
    if value != expected_value:
        return GateVerdict(False, "wrong_value")
    return OK


@dataclass(frozen=True)
class EmbeddingGate:
    """The HEML check: nearest value centroid in the target node's embedding space.

    ``centroids`` maps each attribute value to the mean embedding of the real images that
    carry it; ``embed`` turns (image, mask) into that node's embedding vector.
    """

    embed: object  # Callable[[np.ndarray, np.ndarray], np.ndarray]
    centroids: Mapping[str, np.ndarray]
    node: str = ""

    def check(self, image: np.ndarray, mask: np.ndarray, expected_value: str) -> GateVerdict:
        if expected_value not in self.centroids or len(self.centroids) < 2:
            return OK
        z = np.asarray(self.embed(image, mask), dtype=np.float32).ravel()
        if not np.any(z):
            return OK  # the node does not see this part (absent): nothing to compare
        nearest = min(self.centroids, key=lambda v: float(np.linalg.norm(z - self.centroids[v])))
        return OK if nearest == expected_value else GateVerdict(False, "embedding_mismatch")
