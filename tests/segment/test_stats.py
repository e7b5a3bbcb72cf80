from __future__ import annotations

import math

import numpy as np
import pytest

from biasaudit.core.schema import Schema
from biasaudit.segment.stats import SEGMENT_COLUMNS, part_statistics

SCHEMA = Schema("toy", {0: "background", 1: "hair", 2: "hat", 3: "cloth"})


def _scene():
    # 10×20 image: hair = rows 0-3, cols 5-14 (40 px, blond); cloth = rows 8-9 (40 px, red);
    # hat = 3 stray pixels (too few to name a colour).
    image = np.zeros((10, 20, 3), np.uint8)
    lm = np.zeros((10, 20), np.uint8)
    lm[0:4, 5:15] = 1
    image[0:4, 5:15] = (220, 190, 130)
    lm[8:10, :] = 3
    image[8:10, :] = (200, 30, 30)
    lm[5, 0:3] = 2
    return image, lm


def test_rows_hold_area_bbox_and_colour_per_part():
    image, lm = _scene()
    raw = part_statistics(image, lm, SCHEMA, image_id="x.png")
    assert list(raw.columns) == list(SEGMENT_COLUMNS) and raw["image"].eq("x.png").all()
    t = raw.set_index("part")
    assert list(t.index) == ["hair", "hat", "cloth"]  # background has no row
    assert t.loc["hair", "n_pixels"] == 40 and t.loc["hair", "area_frac"] == pytest.approx(40 / 200)
    assert t.loc["hair", ["bbox_x0", "bbox_y0", "bbox_x1", "bbox_y1"]].tolist() == [5, 0, 15, 4]
    assert t.loc["cloth", ["bbox_x0", "bbox_y0", "bbox_x1", "bbox_y1"]].tolist() == [0, 8, 20, 10]
    assert t.loc["hair", "colour"] == "blond" and t.loc["cloth", "colour"] == "red"
    assert t.loc["hair", "lab_l"] == pytest.approx(78.2, abs=0.5)
    # 3 pixels: present, but no colour (below min_colour_pixels=20)
    assert bool(t.loc["hat", "present"]) and t.loc["hat", "colour"] == "" and math.isnan(t.loc["hat", "lab_l"])


def test_absent_part_has_sentinels():
    image, lm = _scene()
    lm[lm == 2] = 0
    t = part_statistics(image, lm, SCHEMA, image_id="x.png").set_index("part")
    assert not t.loc["hat", "present"]
    assert t.loc["hat", ["bbox_x0", "bbox_y0", "bbox_x1", "bbox_y1"]].tolist() == [-1, -1, -1, -1]
    assert t.loc["hat", "n_pixels"] == 0 and t.loc["hat", "area_frac"] == 0.0


def test_min_pixels_sets_presence_threshold():
    image, lm = _scene()
    t = part_statistics(image, lm, SCHEMA, image_id="x.png", min_pixels=5).set_index("part")
    assert not t.loc["hat", "present"] and t.loc["hat", "n_pixels"] == 3


def test_geometry_without_image_has_no_colour():
    _, lm = _scene()
    t = part_statistics(None, lm, SCHEMA, image_id="x.png").set_index("part")
    assert t.loc["hair", "n_pixels"] == 40 and t["colour"].eq("").all()
