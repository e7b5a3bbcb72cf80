"""Which parts' geometry is explained by a causal part.

A hat hides hair; an open mouth stretches the face. When a part's bounding box overlaps a
causal part's box (intersection >= ``min_overlap`` of the smaller box) in at least
``min_share`` of the images where both are present, the part's geometric attributes
(presence, size, shape, appearance clusters, embedding probes) follow the causal part and
so the label: findings on them are reported as expected evidence, not as bias. Colour is
not geometric and is always tested.

>>> import pandas as pd
>>> seg = pd.DataFrame({"image": ["a", "a"], "part": ["hair", "hat"], "present": True,
...     "bbox_x0": [0, 0], "bbox_y0": [0, 0], "bbox_x1": [10, 10], "bbox_y1": [10, 4]})
>>> overlap_confounding(seg, {"hat"})
{'hair': 'overlaps the causal part hat in 100% of images'}
"""

from __future__ import annotations

import numpy as np
import pandas as pd


def overlap_confounding(
    segments: pd.DataFrame, causal: set[str] | frozenset[str], *, min_overlap: float = 0.05,
    min_share: float = 0.2,
) -> dict[str, str]:
    present = segments[segments["present"].astype(bool)]
    boxes = {part: rows.set_index("image")[["bbox_x0", "bbox_y0", "bbox_x1", "bbox_y1"]].astype(float)
             for part, rows in present.groupby("part")}
    out: dict[str, str] = {}
    for part, box in sorted(boxes.items()):
        if part in causal:
            continue
        reasons = []
        for c in sorted(causal):
            if c not in boxes:
                continue
            a, b = box.align(boxes[c], join="inner", axis=0)
            if a.empty:
                continue
            iw = (np.minimum(a.bbox_x1, b.bbox_x1) - np.maximum(a.bbox_x0, b.bbox_x0)).clip(lower=0)
            ih = (np.minimum(a.bbox_y1, b.bbox_y1) - np.maximum(a.bbox_y0, b.bbox_y0)).clip(lower=0)
            area_a = (a.bbox_x1 - a.bbox_x0) * (a.bbox_y1 - a.bbox_y0)
            area_b = (b.bbox_x1 - b.bbox_x0) * (b.bbox_y1 - b.bbox_y0)
            smaller = np.minimum(area_a, area_b).replace(0, np.nan)
            share = float(((iw * ih) / smaller >= min_overlap).mean())
            if share >= min_share:
                reasons.append((c, share))
        if reasons:
            out[part] = "; ".join(f"overlaps the causal part {c} in {s:.0%} of images" for c, s in reasons)
    return out


def node_confounding(node_parts: dict[str, tuple[str, ...]], part_reasons: dict[str, str]) -> dict[str, str]:
    """A node is confounded when any of its parts is."""
    out = dict(part_reasons)
    for node, parts in node_parts.items():
        hits = [f"{p} {part_reasons[p]}" for p in parts if p in part_reasons]
        if hits and node not in out:
            out[node] = "; ".join(hits)
    return out
