"""Per-part statistics of one label map: the rows of ``WS/segments.parquet``.

One row per (image, part) for every schema part except the background (id 0), also
for absent parts, so "hat present in 3 % of images" is a plain mean of ``present``.

Columns: ``image, part, class_id, present, area_frac, bbox_x0, bbox_y0, bbox_x1,
bbox_y1, lab_l, lab_a, lab_b, colour, n_pixels``. ``present`` is ``n_pixels >=
min_pixels`` (default 1, so it agrees exactly with a dataset's own "labels present"
tags). The bbox is in pixels, inclusive ``x0,y0`` and exclusive ``x1,y1``
(-1 when absent). The Lab colour is the robust median of
:func:`biasaudit.segment.colour.robust_lab` and ``colour`` its name by
:data:`biasaudit.segment.colour.COLOUR_RULES`; both are only computed for parts with at
least ``min_colour_pixels`` pixels (NaN / "" otherwise) because a handful of boundary
pixels has no meaningful colour. Parts larger than :data:`MAX_COLOUR_PIXELS` are
summarised from an even stride through their pixels.

>>> import numpy as np
>>> from biasaudit.core.schema import Schema
>>> schema = Schema("toy", {0: "background", 1: "hair", 2: "hat"})
>>> image = np.zeros((8, 8, 3), np.uint8); image[:4] = (220, 190, 130)
>>> lm = np.zeros((8, 8), np.uint8); lm[:4] = 1
>>> t = part_statistics(image, lm, schema, image_id="a.png")
>>> t[["part", "present", "area_frac", "colour"]].values.tolist()
[['hair', True, 0.5, 'blond'], ['hat', False, 0.0, '']]
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from biasaudit.core.schema import Schema
from biasaudit.segment.colour import colour_name_lab, rgb_to_lab, robust_lab

# Colour summaries use at most this many pixels per part (an even stride through the part),
# which keeps the median cheap on large images without changing the name.
MAX_COLOUR_PIXELS = 5_000

SEGMENT_COLUMNS = (
    "image", "part", "class_id", "present", "area_frac",
    "bbox_x0", "bbox_y0", "bbox_x1", "bbox_y1",
    "lab_l", "lab_a", "lab_b", "colour", "n_pixels",
)


def part_statistics(
    image: np.ndarray | None,
    label_map: np.ndarray,
    schema: Schema,
    *,
    image_id: str,
    min_pixels: int = 1,
    min_colour_pixels: int = 20,
) -> pd.DataFrame:
    """The segment rows of one image (see the module docstring); ``image`` may be None
    when only geometry is wanted (colours are then NaN / "")."""
    return pd.DataFrame(part_statistics_columns(
        image, label_map, schema, image_id=image_id,
        min_pixels=min_pixels, min_colour_pixels=min_colour_pixels,
    ), columns=list(SEGMENT_COLUMNS))


def part_statistics_columns(
    image: np.ndarray | None,
    label_map: np.ndarray,
    schema: Schema,
    *,
    image_id: str,
    min_pixels: int = 1,
    min_colour_pixels: int = 20,
) -> dict[str, list]:
    """Same as :func:`part_statistics` as a dict of column lists (cheap to concatenate
    over many images)."""
    label_map = np.asarray(label_map)
    h, w = label_map.shape[:2]
    total = float(h * w)
    part_ids = [i for i in schema.ids if i != 0]
    flat = label_map.ravel()
    counts = np.bincount(flat, minlength=max(schema.max_id + 1, 1))
    # One stable sort groups the pixels of every class (radix sort for 8/16-bit ids, O(N)),
    # so each part's rows, columns and colours are a slice instead of a full-image mask.
    order = np.argsort(flat, kind="stable")
    starts = np.concatenate([[0], np.cumsum(counts)])
    rgb = np.ascontiguousarray(image, dtype=np.uint8).reshape(-1, 3) if image is not None else None
    geometry: dict[int, tuple[int, int, int, int]] = {}
    samples: dict[int, np.ndarray] = {}
    for class_id in part_ids:
        n = int(counts[class_id]) if class_id < len(counts) else 0
        if n == 0:
            continue
        idx = order[starts[class_id] : starts[class_id + 1]]
        # idx is sorted (stable sort of row-major positions), so rows are monotone
        xs = idx % w
        geometry[class_id] = (int(xs.min()), int(idx[0] // w), int(xs.max()) + 1, int(idx[-1] // w) + 1)
        if rgb is not None and n >= min_colour_pixels:
            samples[class_id] = idx[:: max(1, n // MAX_COLOUR_PIXELS)]
    lab_of: dict[int, tuple[float, float, float]] = {}
    if samples:
        # One colour conversion for the sampled pixels of all parts, then split per part.
        lab = rgb_to_lab(rgb[np.concatenate(list(samples.values()))])
        bounds = np.cumsum([0] + [len(v) for v in samples.values()])
        for k, class_id in enumerate(samples):
            lab_of[class_id] = robust_lab(lab[bounds[k] : bounds[k + 1]])
    cols: dict[str, list] = {c: [] for c in SEGMENT_COLUMNS}
    for class_id in part_ids:
        n = int(counts[class_id]) if class_id < len(counts) else 0
        x0, y0, x1, y1 = geometry.get(class_id, (-1, -1, -1, -1))
        lab_l, lab_a, lab_b = lab_of.get(class_id, (float("nan"),) * 3)
        name = colour_name_lab(lab_l, lab_a, lab_b, part=schema.classes[class_id]) if class_id in lab_of else ""
        cols["image"].append(image_id)
        cols["part"].append(schema.classes[class_id])
        cols["class_id"].append(class_id)
        cols["present"].append(bool(n >= min_pixels and n > 0))
        cols["area_frac"].append(n / total if total else 0.0)
        cols["bbox_x0"].append(x0)
        cols["bbox_y0"].append(y0)
        cols["bbox_x1"].append(x1)
        cols["bbox_y1"].append(y1)
        cols["lab_l"].append(lab_l)
        cols["lab_a"].append(lab_a)
        cols["lab_b"].append(lab_b)
        cols["colour"].append(name)
        cols["n_pixels"].append(n)
    return cols


def segments_frame(columns: dict[str, list] | None = None) -> pd.DataFrame:
    """A segments table with the documented column order and dtypes."""
    frame = pd.DataFrame(columns or {c: [] for c in SEGMENT_COLUMNS}, columns=list(SEGMENT_COLUMNS))
    return frame.astype({
        "image": "string", "part": "string", "class_id": "int32", "present": "bool",
        "area_frac": "float64", "bbox_x0": "int32", "bbox_y0": "int32", "bbox_x1": "int32",
        "bbox_y1": "int32", "lab_l": "float32", "lab_a": "float32", "lab_b": "float32",
        "colour": "string", "n_pixels": "int64",
    })
