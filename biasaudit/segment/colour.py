"""Human colour names for parts, from CIELAB thresholds.

A part's colour is summarised robustly: its pixels are converted to CIELAB (D65,
L* 0..100, a*/b* about -128..127, via OpenCV on float RGB), the darkest and brightest
10 % of L* are dropped (shadows, specular highlights), and the per-channel median of the
rest is the part's colour. That colour is named by the first matching row of
:data:`COLOUR_RULES` (C* = chroma = hypot(a*, b*), h = hue angle atan2(b*, a*) in degrees):

=========  =========  ===========  ===========  ===================  ==========
name       L*         C*           h (deg)      parts                example RGB
=========  =========  ===========  ===========  ===================  ==========
black      < 16       < 25         any          all                  (20,18,16)
black      < 30       < 8          any          all                  (45,45,45)
black      < 30       < 15         105..20      all                  (40,45,55) (cool cast)
black      < 50       < 8          any          hair-like            (85,80,78), (110,108,106)
white      >= 82      < 12         any          all                  (245,245,245)
gray       >= 30      < 8          any          all                  (150,150,150)
pink       >= 65      >= 15        330..40      all                  (255,180,200)
red        < 65       >= 35        330..56      all                  (200,30,30), (183,82,42)
orange     any        >= 50        40..75       all                  (255,140,0)
brown      < 55       8..50        20..105      all                  (100,70,50)
blond      >= 55      8..60        40..105      hair-like            (220,190,130)
beige      >= 55      8..45        40..105      other parts          (225,200,170)
olive      < 60       >= 25        75..115      all                  (128,128,0)
yellow     any        >= 35        75..115      all                  (240,220,40)
green      any        >= 8         105..190     all                  (40,160,60)
blue       any        >= 8         190..315     all                  (40,70,200), (20,30,80)
purple     any        >= 8         315..330     all                  (128,0,128)
gray       >= 30      < 12         any          all                  (fallback)
black      < 30       < 12         any          all                  (fallback)
=========  =========  ===========  ===========  ===================  ==========

Hue ranges wrap around 360 (``330..40`` is 330..360 and 0..40). Lower bounds are
inclusive, upper bounds exclusive. "Hair-like" parts (:data:`HAIR_PARTS`) say *blond*
where every other part says *beige*: a light warm shirt is beige, light warm hair is blond.
Warm colours left unnamed by the table (rare, e.g. saturated dark yellow-browns)
fall back to the nearest hue family.

>>> colour_name_lab(78.2, 2.5, 34.1, part="hair")
'blond'
>>> colour_name_lab(43.2, 63.0, 45.2)
'red'
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

# Parts whose light warm colour reads as "blond" rather than "beige".
HAIR_PARTS = frozenset({"hair", "l_brow", "r_brow", "eyebrow", "beard", "mustache"})


@dataclass(frozen=True)
class ColourRule:
    """One row of the naming table; a colour matches when every bound holds."""

    name: str
    l_min: float = 0.0
    l_max: float = math.inf
    c_min: float = 0.0
    c_max: float = math.inf
    h_from: float = 0.0
    h_to: float = 360.0
    parts: str = "all"  # "all" | "hair" | "other"

    def matches(self, lightness: float, chroma: float, hue: float, *, is_hair: bool) -> bool:
        if self.parts == "hair" and not is_hair:
            return False
        if self.parts == "other" and is_hair:
            return False
        if not (self.l_min <= lightness < self.l_max and self.c_min <= chroma < self.c_max):
            return False
        if self.h_from <= self.h_to:
            return self.h_from <= hue < self.h_to
        return hue >= self.h_from or hue < self.h_to  # the range wraps through 0 degrees


COLOUR_RULES: tuple[ColourRule, ...] = (
    ColourRule("black", l_max=16, c_max=25),
    ColourRule("black", l_max=30, c_max=8),
    ColourRule("black", l_max=30, c_max=15, h_from=105, h_to=20),
    ColourRule("black", l_max=50, c_max=8, parts="hair"),
    ColourRule("white", l_min=82, c_max=12),
    ColourRule("gray", l_min=30, c_max=8),
    ColourRule("pink", l_min=65, c_min=15, h_from=330, h_to=40),
    ColourRule("red", l_max=65, c_min=35, h_from=330, h_to=56),
    ColourRule("orange", c_min=50, h_from=40, h_to=75),
    ColourRule("brown", l_max=55, c_min=8, c_max=50, h_from=20, h_to=105),
    ColourRule("blond", l_min=55, c_min=8, c_max=60, h_from=40, h_to=105, parts="hair"),
    ColourRule("beige", l_min=55, c_min=8, c_max=45, h_from=40, h_to=105, parts="other"),
    ColourRule("olive", l_max=60, c_min=25, h_from=75, h_to=115),
    ColourRule("yellow", c_min=35, h_from=75, h_to=115),
    ColourRule("green", c_min=8, h_from=105, h_to=190),
    ColourRule("blue", c_min=8, h_from=190, h_to=315),
    ColourRule("purple", c_min=8, h_from=315, h_to=330),
    ColourRule("gray", l_min=30, c_max=12),
    ColourRule("black", l_max=30, c_max=12),
)

# Nearest hue family for the few warm colours the table leaves unnamed.
_HUE_FAMILIES = ((20.0, "red"), (56.0, "orange"), (90.0, "yellow"), (150.0, "green"),
                 (250.0, "blue"), (322.0, "purple"), (345.0, "pink"))


def colour_name_lab(lightness: float, a: float, b: float, *, part: str | None = None) -> str:
    """Name a CIELAB colour by :data:`COLOUR_RULES` (see the module docstring).

    >>> colour_name_lab(35.9, 36.8, -70.2)
    'blue'
    """
    if not (math.isfinite(lightness) and math.isfinite(a) and math.isfinite(b)):
        return ""
    chroma = math.hypot(a, b)
    hue = math.degrees(math.atan2(b, a)) % 360.0
    is_hair = part in HAIR_PARTS
    for rule in COLOUR_RULES:
        if rule.matches(lightness, chroma, hue, is_hair=is_hair):
            return rule.name
    return min(_HUE_FAMILIES, key=lambda f: min(abs(hue - f[0]), 360 - abs(hue - f[0])))[1]


def rgb_to_lab(rgb: np.ndarray) -> np.ndarray:
    """uint8 RGB (any shape ending in 3) → float32 CIELAB, L* in 0..100.

    >>> float(rgb_to_lab(np.array([[255, 255, 255]], np.uint8))[0, 0].round())
    100.0
    """
    import cv2

    rgb = np.asarray(rgb)
    flat = rgb.reshape(-1, 1, 3).astype(np.float32) / 255.0
    return cv2.cvtColor(flat, cv2.COLOR_RGB2Lab).reshape(rgb.shape).astype(np.float32)


def robust_lab(lab_pixels: np.ndarray, *, trim: float = 0.10) -> tuple[float, float, float]:
    """Median CIELAB of an (N, 3) pixel array after dropping the ``trim`` darkest and
    brightest fraction by L* (shadows and specular highlights would skew the name).

    >>> robust_lab(np.array([[0, 0, 0], [50, 1, 2], [50, 1, 2], [100, 0, 0]], np.float32))
    (50.0, 1.0, 2.0)
    """
    if len(lab_pixels) == 0:
        return (math.nan, math.nan, math.nan)
    lightness = lab_pixels[:, 0]
    if len(lab_pixels) >= 4 and trim > 0:
        lo, hi = np.quantile(lightness, [trim, 1.0 - trim])
        keep = (lightness >= lo) & (lightness <= hi)
        if keep.sum() >= 1:
            lab_pixels = lab_pixels[keep]
    med = np.median(lab_pixels, axis=0)
    return (float(med[0]), float(med[1]), float(med[2]))
