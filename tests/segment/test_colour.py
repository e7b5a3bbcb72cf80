from __future__ import annotations

import math

import numpy as np
import pytest

from biasaudit.segment.colour import COLOUR_RULES, colour_name_lab, rgb_to_lab, robust_lab


def _name(rgb, part=None):
    lab = rgb_to_lab(np.array([rgb], np.uint8))[0]
    return colour_name_lab(*map(float, lab), part=part)


@pytest.mark.parametrize(
    ("rgb", "part", "expected"),
    [
        ((20, 18, 16), "hair", "black"),
        ((100, 70, 50), "hair", "brown"),
        ((140, 100, 70), "hair", "brown"),
        ((220, 190, 130), "hair", "blond"),
        ((170, 140, 90), "hair", "blond"),
        ((145, 55, 40), "hair", "red"),  # auburn
        ((183, 82, 42), "hair", "red"),  # ginger
        ((150, 150, 150), "hair", "gray"),
        ((85, 80, 78), "hair", "black"),  # dark neutral hair is black, a shirt of it is gray
        ((85, 80, 78), "cloth", "gray"),
        ((70, 55, 45), "hair", "brown"),  # dark but warm: brown, not black
        ((30, 36, 48), "hair", "black"),  # dark with a cool cast (outdoor light): black
        ((125, 125, 125), "hair", "gray"),
        ((245, 245, 245), "cloth", "white"),
        ((200, 30, 30), "cloth", "red"),
        ((40, 70, 200), "cloth", "blue"),
        ((20, 30, 80), "cloth", "blue"),  # navy stays blue, not black
        ((40, 160, 60), "cloth", "green"),
        ((240, 220, 40), "cloth", "yellow"),
        ((255, 140, 0), "cloth", "orange"),
        ((120, 50, 160), "cloth", "purple"),
        ((255, 180, 200), "cloth", "pink"),
        ((225, 200, 170), "cloth", "beige"),
        ((225, 200, 170), "hair", "blond"),
        ((16, 16, 19), "cloth", "black"),
    ],
)
def test_reference_colours_get_the_names_a_person_would_use(rgb, part, expected):
    assert _name(rgb, part) == expected


def test_every_rule_is_reachable_by_some_colour():
    # Sweep the Lab gamut coarsely; a rule that never fires is dead weight in the table.
    seen = set()
    for lightness in range(2, 100, 4):
        for a in range(-80, 81, 8):
            for b in range(-80, 81, 8):
                for part in ("hair", "cloth"):
                    seen.add(colour_name_lab(lightness, a, b, part=part))
    assert {r.name for r in COLOUR_RULES} <= seen


def test_nan_colour_has_no_name():
    assert colour_name_lab(math.nan, 0.0, 0.0) == ""


def test_robust_lab_ignores_shadows_and_highlights():
    # 80 % of the pixels are mid blond; 10 % black shadow and 10 % specular white.
    body = np.tile(np.array([[75.0, 3.0, 35.0]], np.float32), (80, 1))
    shadow = np.tile(np.array([[0.0, 0.0, 0.0]], np.float32), (10, 1))
    glare = np.tile(np.array([[100.0, 0.0, 0.0]], np.float32), (10, 1))
    assert robust_lab(np.concatenate([shadow, body, glare])) == pytest.approx((75.0, 3.0, 35.0))
    assert all(math.isnan(v) for v in robust_lab(np.zeros((0, 3), np.float32)))


def test_rgb_to_lab_matches_known_values():
    lab = rgb_to_lab(np.array([[255, 0, 0], [0, 0, 0]], np.uint8))
    assert lab[0] == pytest.approx([53.24, 80.09, 67.20], abs=0.5)  # sRGB red, D65
    assert lab[1] == pytest.approx([0.0, 0.0, 0.0], abs=1e-3)


def test_docstring_table_lists_the_rules_in_order():
    import biasaudit.segment.colour as colour

    rows = [line.split()[0] for line in colour.__doc__.splitlines()
            if line and line.split()[0].isalpha() and line.startswith(line.split()[0] + " " * 3)]
    assert rows[1:] == [r.name for r in COLOUR_RULES]  # rows[0] is the header ("name")
