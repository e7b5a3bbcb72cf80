"""Colour a label map over its image, for reports and for eyeballing a segmenter.

>>> import numpy as np
>>> from biasaudit.core.schema import get_schema
>>> img = np.zeros((8, 8, 3), np.uint8); lm = np.zeros((8, 8), np.uint8); lm[:4] = 13
>>> overlay_parts(img, lm, get_schema("celebamask-hq"), alpha=1.0)[0, 0].tolist() != [0, 0, 0]
True
"""

from __future__ import annotations

import numpy as np

from biasaudit.core.schema import Schema


def part_palette(schema: Schema) -> dict[int, tuple[int, int, int]]:
    """A fixed, distinguishable RGB colour per class id (background black)."""
    import colorsys

    palette = {0: (0, 0, 0)}
    parts = [i for i in schema.ids if i != 0]
    for k, class_id in enumerate(parts):
        # golden-ratio hue steps keep neighbouring ids far apart in colour
        hue = (k * 0.618033988749895) % 1.0
        r, g, b = colorsys.hsv_to_rgb(hue, 0.85, 0.95 if k % 2 == 0 else 0.7)
        palette[class_id] = (int(r * 255), int(g * 255), int(b * 255))
    return palette


def overlay_parts(image: np.ndarray, label_map: np.ndarray, schema: Schema, *, alpha: float = 0.55,
                  legend: bool = False) -> np.ndarray:
    """Blend part colours over ``image`` (background left as is); with ``legend`` a
    column naming the parts that occur is appended on the right."""
    import cv2

    palette = part_palette(schema)
    lut = np.zeros((max(schema.max_id, int(label_map.max(initial=0))) + 1, 3), np.uint8)
    for class_id, colour in palette.items():
        lut[class_id] = colour
    colours = lut[label_map]
    fg = (label_map != 0)[..., None]
    out = np.where(fg, (1 - alpha) * image + alpha * colours, image).astype(np.uint8)
    # outline every part so small ones (eyes, lips) stay visible
    edges = cv2.morphologyEx(label_map.astype(np.uint16), cv2.MORPH_GRADIENT, np.ones((3, 3), np.uint8)) > 0
    out[edges] = (255, 255, 255)
    if not legend:
        return out
    present = [i for i in schema.ids if i != 0 and (label_map == i).any()]
    h = out.shape[0]
    panel = np.full((h, 170, 3), 255, np.uint8)
    row = max(14, min(24, h // max(len(present), 1)))
    for k, class_id in enumerate(present):
        y = 6 + k * row
        cv2.rectangle(panel, (6, y), (6 + row - 6, y + row - 6), tuple(int(c) for c in palette[class_id]), -1)
        cv2.putText(panel, schema.classes[class_id], (row + 6, y + row - 8), cv2.FONT_HERSHEY_SIMPLEX,
                    0.45, (0, 0, 0), 1, cv2.LINE_AA)
    return np.concatenate([out, panel], axis=1)
