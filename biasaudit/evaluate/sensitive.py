"""``--sensitive``: a label column, or a part attribute measured from the part maps.

``part:PART`` (or ``part:PART:ATTRIBUTE``) names the attribute the way the scan does
(:func:`biasaudit.audit.attributes.mask_attributes` over the segment statistics of
:mod:`biasaudit.segment.stats`): ``part:hair`` is the hair's colour name (``blond``,
``black``…), ``part:hat:presence`` is ``present`` / ``absent``; ``size`` and ``shape`` are
the scan's tertiles. A part too small or absent to have a colour gets ``none``. No group
label is needed anywhere.

>>> parse_sensitive("part:hair")
SensitiveSpec(column=None, part='hair', attribute='colour')
>>> parse_sensitive("Blond_Hair").column
'Blond_Hair'
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from biasaudit.core.errors import ValidationError

PART_ATTRIBUTES = ("colour", "presence", "size", "shape")
NO_VALUE = "none"


@dataclass(frozen=True)
class SensitiveSpec:
    column: str | None = None
    part: str | None = None
    attribute: str = "colour"

    @property
    def is_part(self) -> bool:
        return self.part is not None

    def __str__(self) -> str:
        if self.part is None:
            return str(self.column)
        return f"part:{self.part}" + ("" if self.attribute == "colour" else f":{self.attribute}")


def parse_sensitive(text: str) -> SensitiveSpec:
    """Parse ``COL``, ``part:PART`` or ``part:PART:ATTRIBUTE``."""
    text = str(text).strip()
    if not text:
        raise ValidationError("--sensitive is empty; give a column (e.g. Male) or part:PART (e.g. part:hair).")
    if not text.startswith("part:"):
        return SensitiveSpec(column=text)
    _, part, *rest = text.split(":")
    attribute = rest[0] if rest else "colour"
    if not part or len(rest) > 1 or attribute not in PART_ATTRIBUTES:
        raise ValidationError(
            f"--sensitive {text}: expected part:PART or part:PART:ATTRIBUTE with ATTRIBUTE one of "
            f"{', '.join(PART_ATTRIBUTES)} (e.g. part:hair, part:hat:presence)."
        )
    return SensitiveSpec(part=part, attribute=attribute)


def check_part(spec: SensitiveSpec, schema, *, where: str) -> None:
    """Raise when ``spec.part`` is not a part of ``schema``."""
    if schema is None:
        raise ValidationError(f"{where}: has no schema (no masks, no schema.json), so --sensitive {spec} has no parts to name.")
    if spec.part not in schema.part_names:
        raise ValidationError(
            f"--sensitive {spec}: '{spec.part}' is not a part of {where}'s schema '{schema.name}'. "
            f"Expected one of: {', '.join(schema.part_names)}."
        )


def sensitive_values(image_set, spec: SensitiveSpec, *, where: str = "") -> np.ndarray:
    """One text value per image of ``image_set`` (in its ``ids`` order)."""
    shown = where or str(image_set.root)
    if not spec.is_part:
        if spec.column not in image_set.labels.columns:
            raise ValidationError(
                f"{shown}: has no column '{spec.column}' for --sensitive (found: "
                f"{', '.join(map(str, image_set.labels.columns[:20]))}). Give a column it has, or part:PART."
            )
        column = image_set.labels[spec.column]
        if column.isna().any():
            missing = column[column.isna()].index[0]
            raise ValidationError(f"{shown}: image '{missing}' has no value for --sensitive {spec.column}; fill it in labels.csv.")
        return column.astype(str).to_numpy()
    from biasaudit.audit.attributes import mask_attributes

    if image_set.segments is None:
        raise ValidationError(f"{shown}: part statistics were not computed; load it with with_parts=True.")
    attrs = mask_attributes(image_set.segments[image_set.segments["part"] == spec.part])
    values = attrs.set_index("image")[spec.attribute].reindex(list(image_set.ids)).fillna("")
    return values.replace("", NO_VALUE).astype(str).to_numpy()
