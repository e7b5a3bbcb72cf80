"""Map a segmentation model's ``id2label`` onto a schema, by name.

Names are compared after normalising (lower case; spaces, hyphens and dots become
``_``). Each model label is tried, in order, against:

1. a schema part of the same name (``"traffic light"`` → ``traffic_light``);
2. the same, for each comma/semicolon separated alternative of the label
   (ADE20K's long form ``"ashcan, trash can, garbage can"`` → ``ashcan``);
3. the schema's own aliases (``"edifice"`` → ``building``), when exactly one part claims it;
4. :data:`SYNONYMS`, cross-convention names for the same part
   (``"left_eye"`` → ``l_eye``, ``"upper_clothes"`` → ``cloth``, ``"face"`` → ``skin``).

Labels that match nothing go to the background (id 0) and are listed in
``LabelMapping.unmatched``. A face-parsing model trained on CelebAMask-HQ (its labels
are ``background, skin, nose, eye_g, l_eye, …, cloth``) maps one to one onto the
``celebamask-hq`` schema; an ADE20K model (150 labels, ids 0..149) maps onto the
``ade20k-150`` schema with every id shifted by one (schema id 0 is "other").

>>> from biasaudit.core.schema import get_schema
>>> m = map_labels_by_name({0: "background", 1: "hair", 2: "Left Eye"}, get_schema("celebamask-hq"))
>>> m.lut.tolist()
[0, 13, 4]
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from biasaudit.core.schema import Schema

# Cross-convention names: normalised model label → schema part names to try in order.
SYNONYMS: Mapping[str, tuple[str, ...]] = {
    "background": ("background",), "bg": ("background",), "null": ("background",),
    "other": ("background",), "unlabeled": ("background",), "unlabelled": ("background",),
    "void": ("background",),
    "face": ("skin",), "face_skin": ("skin",), "skin": ("skin",),
    "left_eye": ("l_eye",), "right_eye": ("r_eye",),
    "left_eyebrow": ("l_brow",), "right_eyebrow": ("r_brow",),
    "l_eyebrow": ("l_brow",), "r_eyebrow": ("r_brow",),
    "left_brow": ("l_brow",), "right_brow": ("r_brow",),
    "left_ear": ("l_ear",), "right_ear": ("r_ear",),
    "upper_lip": ("u_lip",), "lower_lip": ("l_lip",),
    "inner_mouth": ("mouth",), "teeth": ("mouth",),
    "eyeglasses": ("eye_g", "glasses", "sunglasses"), "eye_glasses": ("eye_g", "glasses", "sunglasses"),
    "glasses": ("eye_g", "glasses", "sunglasses"), "sunglasses": ("sunglasses", "eye_g", "glasses"),
    "earring": ("ear_r", "earrings"), "earrings": ("ear_r", "earrings"),
    "necklace": ("neck_l", "necklace"),
    "cap": ("hat",), "headwear": ("hat",),
    "upper_clothes": ("cloth", "upper_clothes"), "clothes": ("cloth", "apparel"),
    "apparel": ("cloth", "apparel"),
    "clothing": ("cloth", "apparel"), "cloth": ("cloth", "upper_clothes", "apparel"),
    "person": ("person",), "human": ("person",),
}


def normalise_label(name: str) -> str:
    """``"Traffic Light "`` → ``"traffic_light"``.

    >>> normalise_label("Chest-of drawers")
    'chest_of_drawers'
    """
    return re.sub(r"[\s\-.]+", "_", str(name).strip().lower()).strip("_")


@dataclass(frozen=True)
class LabelMapping:
    """``lut[model_id]`` is the schema id; ``matched`` model id → schema name;
    ``unmatched`` the model labels sent to background."""

    lut: np.ndarray
    matched: Mapping[int, str]
    unmatched: tuple[str, ...]


def map_labels_by_name(id2label: Mapping, schema: Schema) -> LabelMapping:
    """Map ``{model_id: label}`` onto ``schema`` ids (rules in the module docstring)."""
    by_name = {normalise_label(n): i for i, n in schema.classes.items()}
    alias_owner: dict[str, list[int]] = {}
    for part, aliases in schema.aliases.items():
        if normalise_label(part) not in by_name:
            continue
        for alias in aliases:
            alias_owner.setdefault(normalise_label(alias), []).append(by_name[normalise_label(part)])
    ids = {int(k): str(v) for k, v in id2label.items()}
    lut = np.zeros(max(ids, default=-1) + 1, dtype=np.int64)
    matched: dict[int, str] = {}
    unmatched: list[str] = []
    for model_id, label in sorted(ids.items()):
        target = _match(label, by_name, alias_owner)
        if target is None:
            unmatched.append(label)
        else:
            lut[model_id] = target
            matched[model_id] = schema.classes[target]
    return LabelMapping(lut=lut, matched=matched, unmatched=tuple(unmatched))


def _match(label: str, by_name: dict[str, int], alias_owner: dict[str, list[int]]) -> int | None:
    whole = normalise_label(label)
    candidates = [whole] + [normalise_label(p) for p in re.split(r"[,;]", label) if p.strip()]
    for cand in candidates:
        if cand in by_name:
            return by_name[cand]
    for cand in candidates:
        owners = set(alias_owner.get(cand, ()))
        if len(owners) == 1:
            return owners.pop()
    for cand in candidates:
        for part in SYNONYMS.get(cand, ()):
            if part in by_name:
                return by_name[part]
    return None
