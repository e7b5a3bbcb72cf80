"""Rendering one SynthFaces portrait: a label map drawn first, then coloured from it.

Geometry lives in *canonical* coordinates (the unit square, head centred near
(0.5, 0.46), the person looking at the camera). A random pose (rotation, scale,
translation) maps canonical points to pixels, and every part is rasterised with
integer-exact OpenCV polygons (``LINE_8``, no anti-aliasing), so the mask is exact.

Drawing fills an internal *paint* map whose ids are finer than the schema's (sclera,
iris, pupil, teeth, lens, frame …). Two look-up tables turn it into the outputs: paint
id → celebamask-hq class id (the mask) and paint id → colour (the image). Shading,
texture and noise are functions of the paint id and the pixel position only, never of
a pixel's neighbours, so changing one part changes no pixel outside it.

Every random number of a portrait is drawn up front, in a fixed order, whatever the
attributes say. Rendering the same ``rng`` state with one attribute flipped therefore
gives the same person, pose and background: only the parts that show the attribute
change (a counterfactual pair for free).

Left/right follow the person: ``l_eye`` / ``l_brow`` / ``l_ear`` are the person's
left, which is the image's right side.
"""

from __future__ import annotations

import colorsys
import math
from functools import lru_cache

import cv2
import numpy as np

# ---- paint ids (internal) -> celebamask-hq class ids -------------------------------------
_PAINT_TO_CLASS: dict[str, int] = {
    "background": 0,
    "skin": 1, "wrinkle": 1, "stubble": 1, "blush": 1,
    "nose": 2, "nostril": 2,
    "lens": 3, "frame": 3,
    "sclera_l": 4, "iris_l": 4, "pupil_l": 4, "lid_l": 4, "glint_l": 4,
    "sclera_r": 5, "iris_r": 5, "pupil_r": 5, "lid_r": 5, "glint_r": 5,
    "brow_l": 6, "brow_r": 7,
    "ear_l": 8, "ear_in_l": 8, "ear_r": 9, "ear_in_r": 9,
    "mouth": 10, "teeth": 10,
    "u_lip": 11, "l_lip": 12,
    "hair": 13, "hair_dark": 13,
    "hat": 14, "hat_band": 14,
    "earring": 15,
    "necklace": 16, "pendant": 16,
    "neck": 17,
    "cloth": 18, "cloth_trim": 18,
}
_PAINT_NAMES = tuple(_PAINT_TO_CLASS)
P = {name: i for i, name in enumerate(_PAINT_NAMES)}
MASK_LUT = np.zeros(256, np.uint8)
MASK_LUT[: len(_PAINT_NAMES)] = [_PAINT_TO_CLASS[n] for n in _PAINT_NAMES]

# Paint ids shaded like a rounded face (darker towards the face outline).
_FACE_SHADED = np.zeros(256, np.float32)
for _n in ("skin", "wrinkle", "stubble", "blush", "nose", "nostril", "lens"):
    _FACE_SHADED[P[_n]] = 1.0
_HAIR_TEXTURED = np.zeros(256, np.float32)
for _n in ("hair", "hair_dark", "brow_l", "brow_r"):
    _HAIR_TEXTURED[P[_n]] = 1.0

# ---- palettes: (darkest, lightest) RGB of each name; a portrait picks one shade in between.
# Each hair range stays inside one CIELAB colour name (black: L* < 30 and C* < 8; brown:
# L* 25-45, hue ~60; blond: L* > 65, hue ~80; red: C* > 45, hue < 55; gray: C* < 3,
# L* 55-75) even after the +-10 % lighting, so a segmenter names the colour it sees.
HAIR_PALETTE: dict[str, tuple[tuple[int, int, int], tuple[int, int, int]]] = {
    "Blond_Hair": ((200, 165, 100), (238, 212, 150)),
    "Black_Hair": ((20, 19, 19), (44, 41, 40)),
    "Brown_Hair": ((96, 60, 36), (138, 90, 54)),
    "Red_Hair": ((150, 46, 24), (192, 70, 38)),
    "Gray_Hair": ((138, 138, 140), (182, 182, 184)),
}
CLOTH_PALETTE: dict[str, tuple[tuple[int, int, int], tuple[int, int, int]]] = {
    "Red_Cloth": ((165, 25, 30), (215, 52, 48)),
    "Blue_Cloth": ((30, 55, 150), (70, 110, 215)),
    "Green_Cloth": ((25, 110, 45), (70, 170, 80)),
    "Black_Cloth": ((16, 16, 19), (40, 40, 45)),
    "White_Cloth": ((240, 240, 237), (252, 252, 250)),
    "Yellow_Cloth": ((222, 182, 24), (250, 216, 62)),
}
# Skin tones from light to dark; a portrait interpolates along this ramp.
_SKIN_RAMP = np.array(
    [(246, 220, 198), (236, 196, 164), (214, 164, 124), (176, 120, 84), (128, 84, 58), (92, 60, 42)],
    np.float32,
)

MALE_STYLES = ("short", "buzz", "swept", "curly", "medium")
FEMALE_STYLES = ("long", "bob", "bangs", "bun", "curly_long", "pixie")

_N_DRAWS = 160
_TAU = 2.0 * math.pi
_HAT_MARGIN = 0.04


class _Draws:
    """Uniforms drawn once per portrait and handed out in a fixed order."""

    __slots__ = ("_u", "_i")

    def __init__(self, rng: np.random.Generator) -> None:
        self._u = rng.random(_N_DRAWS)
        self._i = 0

    def u(self, lo: float = 0.0, hi: float = 1.0) -> float:
        value = lo + (hi - lo) * float(self._u[self._i])
        self._i += 1
        return value

    def pick(self, k: int) -> int:
        return min(int(self.u() * k), k - 1)

    def chance(self, p: float) -> bool:
        return self.u() < p


@lru_cache(maxsize=8)
def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float32)
    return (xs + 0.5) / size, (ys + 0.5) / size


@lru_cache(maxsize=4)
def _circle(n: int) -> tuple[np.ndarray, np.ndarray]:
    t = np.linspace(0.0, _TAU, n, endpoint=False)
    return np.cos(t), np.sin(t)


def _ellipse(cx: float, cy: float, rx: float, ry: float, n: int = 40) -> np.ndarray:
    c, s = _circle(n)
    return np.stack([cx + rx * c, cy + ry * s], axis=1)


def _arc(cx: float, cy: float, rx: float, ry: float, t0: float, t1: float, n: int = 16) -> np.ndarray:
    t = np.linspace(t0, t1, n)
    return np.stack([cx + rx * np.cos(t), cy + ry * np.sin(t)], axis=1)


class _Canvas:
    """The paint map plus the pose that maps canonical points to pixels."""

    def __init__(self, size: int, matrix: np.ndarray, scale: float) -> None:
        self.size = size
        self.paint = np.zeros((size, size), np.uint8)
        # Fixed point with 4 fractional bits: smooth outlines, still integer rasterisation.
        self._m = matrix * (size * 16.0)
        self._px = size * scale

    def _pts(self, xy: np.ndarray) -> np.ndarray:
        p = xy @ self._m[:, :2].T + self._m[:, 2]
        return np.rint(p).astype(np.int32).reshape(-1, 1, 2)

    def fill(self, xy: np.ndarray, paint: str) -> None:
        cv2.fillPoly(self.paint, [self._pts(xy)], P[paint], cv2.LINE_8, 4)

    def stroke(self, xy: np.ndarray, paint: str, width: float, *, closed: bool = False) -> None:
        thickness = max(1, int(round(width * self._px)))
        cv2.polylines(self.paint, [self._pts(xy)], closed, P[paint], thickness, cv2.LINE_8, 4)


def _mix(a, b, t: float) -> np.ndarray:
    a = np.asarray(a, np.float32)
    return a + (np.asarray(b, np.float32) - a) * t


def _hsv(h: float, s: float, v: float) -> np.ndarray:
    return np.array(colorsys.hsv_to_rgb(h % 1.0, s, v), np.float32) * 255.0


def _skin(t: float) -> np.ndarray:
    pos = t * (len(_SKIN_RAMP) - 1)
    i = min(int(pos), len(_SKIN_RAMP) - 2)
    return _mix(_SKIN_RAMP[i], _SKIN_RAMP[i + 1], pos - i)


def _one_hot(attrs: dict, names) -> str:
    chosen = [n for n in names if int(attrs.get(n, 0)) == 1]
    return chosen[0] if chosen else names[0]


def render_face(attrs: dict, rng: np.random.Generator, size: int = 128) -> tuple[np.ndarray, np.ndarray]:
    """Render one portrait showing ``attrs``; returns ``(image HxWx3 uint8, mask HxW uint8)``.

    ``attrs`` maps attribute names (``Blond_Hair``, ``Smiling``, ``Red_Cloth`` …) to 0/1;
    missing names count as 0, except ``Young`` (1); with no hair (cloth) colour set, the
    first one is used. The mask holds celebamask-hq class ids. The same ``rng`` state
    gives the same person and pose.

    >>> import numpy as np
    >>> img, mask = render_face({"Black_Hair": 1, "Smiling": 1}, np.random.default_rng(0))
    >>> img.shape, mask.shape, int(mask.max()) <= 18
    ((128, 128, 3), (128, 128), True)
    """
    d = _Draws(rng)
    male = int(attrs.get("Male", 0)) == 1
    smiling = int(attrs.get("Smiling", 0)) == 1
    glasses = int(attrs.get("Eyeglasses", 0)) == 1
    hat = int(attrs.get("Wearing_Hat", 0)) == 1
    earrings = int(attrs.get("Wearing_Earrings", 0)) == 1
    necklace = int(attrs.get("Wearing_Necklace", 0)) == 1
    young = int(attrs.get("Young", 1)) == 1
    hair_name = _one_hot(attrs, tuple(HAIR_PALETTE))
    cloth_name = _one_hot(attrs, tuple(CLOTH_PALETTE))

    # ---- every random number, in a fixed order -----------------------------------------
    rot = math.radians(d.u(-13.0, 13.0))
    scale = d.u(0.93, 1.14)
    tx, ty = d.u(-0.07, 0.07), d.u(-0.045, 0.055)
    yaw = d.u(-0.018, 0.018)  # inner features shift sideways: a hint of head turn
    fw, fh = d.u(0.172, 0.205), d.u(0.235, 0.262)
    jaw_f, jaw_m = d.u(0.2, 0.32), d.u(0.06, 0.16)
    ex, ey_off = d.u(0.074, 0.088), d.u(-0.03, -0.012)
    erx, ery = d.u(0.036, 0.046), d.u(0.015, 0.021)
    iris_t, gaze = d.u(), d.u(-0.25, 0.25)
    brow_h, brow_w, brow_arch = d.u(0.045, 0.06), d.u(0.008, 0.014), d.u(0.004, 0.014)
    nose_len, nose_w = d.u(0.07, 0.095), d.u(0.026, 0.038)
    mouth_dy, mw = d.u(0.15, 0.17), d.u(0.045, 0.058)
    ut, lt = d.u(0.010, 0.016), d.u(0.013, 0.02)
    neutral_curve, neutral_open, neutral_gap = d.u(-0.004, 0.003), d.chance(0.2), d.u(0.004, 0.008)
    smile_up, smile_open, smile_gap, teeth_frac = d.u(0.012, 0.022), d.chance(0.75), d.u(0.014, 0.026), d.u(0.45, 0.7)
    lipstick, lip_hue, lip_tint = d.chance(0.5), d.u(-0.04, 0.04), d.u(0.3, 0.65)
    skin_t, skin_hue, blush = d.u(), d.u(-0.04, 0.04), d.chance(0.35)
    stubble = d.chance(0.55)
    style_m, style_f = d.pick(len(MALE_STYLES)), d.pick(len(FEMALE_STYLES))
    hair_vol, hair_len, hair_part, hair_tilt = d.u(0.0, 1.0), d.u(0.0, 1.0), d.u(-0.5, 0.5), d.u(-1.0, 1.0)
    curl_k, curl_a, hairline = d.pick(4) + 9, d.u(0.05, 0.1), d.u(0.0, 1.0)
    hair_shade, tex_freq, tex_ang, tex_amp = d.u(), d.u(40.0, 90.0), d.u(-0.4, 0.4), d.u(0.05, 0.12)
    hat_kind, hat_h, hat_s, hat_v, hat_band = d.pick(3), d.u(), d.u(0.3, 0.85), d.u(0.25, 0.95), d.u()
    hat_low = d.u(0.05, 0.08)
    lens_kind, lens_rx, lens_ry, frame_w = d.pick(3), d.u(0.052, 0.062), d.u(0.036, 0.046), d.u(0.008, 0.016)
    frame_h, frame_v, shades = d.u(), d.u(0.05, 0.7), d.chance(0.15)
    ring_kind, ring_gold = d.pick(3), d.chance(0.6)
    neck_w, neck_kind, neck_deep = d.u(0.07, 0.09), d.pick(3), d.u(0.0, 1.0)
    chain_drop, chain_gold, pendant = d.u(0.06, 0.11), d.chance(0.5), d.chance(0.6)
    cloth_shade, cloth_pat, cloth_freq, shoulder = d.u(), d.pick(4), d.u(25.0, 45.0), d.u(0.38, 0.46)
    bg_h1, bg_h2, bg_s, bg_v1, bg_v2 = d.u(), d.u(), d.u(0.05, 0.6), d.u(0.3, 0.98), d.u(0.3, 0.98)
    bg_ang, bg_pat, bg_freq, bg_pat_a = d.u(0.0, _TAU), d.pick(4), d.u(8.0, 30.0), d.u(0.03, 0.1)
    light_ang, light_k, ambient = d.u(0.0, _TAU), d.u(0.0, 0.09), d.u(0.94, 1.06)
    noise_sigma, blob_amp = d.u(2.0, 7.0), d.u(0.0, 0.05)
    wrinkle_k = d.u(0.5, 1.0)

    cx, fy0 = 0.5, 0.46  # canonical head centre
    fcx = cx + yaw
    cos_r, sin_r = math.cos(rot) * scale, math.sin(rot) * scale
    # Rotate and scale about the chin-ish centre, then translate.
    ox, oy = 0.5, 0.55
    matrix = np.array(
        [[cos_r, -sin_r, ox + tx - cos_r * ox + sin_r * oy],
         [sin_r, cos_r, oy + ty - sin_r * ox - cos_r * oy]],
        np.float64,
    )
    cv = _Canvas(size, matrix, scale)

    # ---- cloth and neck ------------------------------------------------------------------
    cloth_top = fy0 + 0.34
    cv.fill(np.vstack([_arc(cx, cloth_top + 0.3, shoulder, 0.3, math.pi, _TAU, 24),
                       [[cx + shoulder + 0.05, 1.3], [cx - shoulder - 0.05, 1.3]]]), "cloth")

    style = MALE_STYLES[style_m] if male else FEMALE_STYLES[style_f]
    hair_top = fy0 - fh - 0.015 - 0.035 * hair_vol
    cap_rx = fw + 0.018 + 0.03 * hair_vol
    curly = style in ("curly", "curly_long")
    if style in ("long", "bangs", "curly_long", "bob", "medium"):
        bottom = {"bob": 0.66 + 0.06 * hair_len, "medium": 0.62 + 0.05 * hair_len}.get(
            style, 0.8 + 0.15 * hair_len)
        width = cap_rx + (0.035 if style in ("bob", "curly_long") else 0.015)
        back = np.vstack([
            _arc(cx, fy0 - 0.02, width, fy0 - 0.02 - hair_top, math.pi, _TAU, 20),
            [[cx + width + 0.01, bottom], [cx + width * 0.7, bottom + 0.02],
             [cx - width * 0.7, bottom + 0.02], [cx - width - 0.01, bottom]],
        ])
        if curly:
            back = _curl(back, cx, fy0, curl_k, curl_a)
        cv.fill(back, "hair")
    if style == "bun":
        cv.fill(_ellipse(cx + 0.3 * hair_part * fw, hair_top + 0.005, 0.055, 0.045), "hair")

    neck_top, neck_bot = fy0 + 0.15, cloth_top + 0.03 + 0.05 * neck_deep
    neck = [[cx - neck_w, neck_top], [cx + neck_w, neck_top], [cx + neck_w * 1.05, cloth_top + 0.01]]
    if neck_kind == 0:  # crew neckline
        neck += _arc(cx, cloth_top + 0.01, neck_w * 1.05, neck_bot - cloth_top - 0.01, 0.0, math.pi, 10).tolist()
    elif neck_kind == 1:  # V neckline
        neck += [[cx, neck_bot + 0.04]]
    else:  # square-ish neckline
        neck += [[cx + neck_w * 1.05, neck_bot], [cx - neck_w * 1.05, neck_bot]]
    neck += [[cx - neck_w * 1.05, cloth_top + 0.01]]
    neck_poly = np.array(neck)
    cv.fill(neck_poly, "neck")
    cv.stroke(neck_poly[2:], "cloth_trim", 0.014)
    if necklace:
        chain = _arc(cx, cloth_top - 0.03, neck_w * 0.95, chain_drop, 0.15, math.pi - 0.15, 14)
        cv.stroke(chain, "necklace", 0.011)
        if pendant:
            cv.fill(_ellipse(cx, cloth_top - 0.03 + chain_drop + 0.012, 0.012, 0.014, 12), "pendant")

    # ---- ears, face, skin details ------------------------------------------------------------
    ear_y = fy0 + ey_off + 0.03
    for side, name in ((-1, "r"), (1, "l")):
        ex_c = fcx - yaw * 0.5 + side * fw * 0.98
        cv.fill(_ellipse(ex_c, ear_y, 0.026, 0.05, 20), f"ear_{name}")
        t0 = -1.3 if side > 0 else math.pi - 1.3
        cv.stroke(_arc(ex_c - side * 0.006, ear_y, 0.013, 0.03, t0, t0 + 2.6, 8), f"ear_in_{name}", 0.006)
    jaw = jaw_m if male else jaw_f
    c, s = _circle(48)
    narrow = 1.0 - jaw * np.clip(s, 0.0, 1.0) ** 2
    face = np.stack([cx + fw * c * narrow, fy0 + fh * s], axis=1)
    cv.fill(face, "skin")
    mouth_y = fy0 + mouth_dy
    if male and stubble:
        # A beard shadow: from the cheeks at the sides down to just under the nose.
        side_y, mid_y = fy0 + 0.03, fy0 + nose_len + 0.028
        low = face[face[:, 1] > side_y]
        bx = np.linspace(low[-1, 0], low[0, 0], 11)
        bu = (bx - fcx) / fw
        cv.fill(np.vstack([low, np.stack([bx, side_y + (mid_y - side_y) * np.clip(1 - bu**2, 0.0, 1.0) ** 0.7], axis=1)]),
                "stubble")
    eye_y = fy0 + ey_off
    if blush:
        for side in (-1, 1):
            cv.fill(_ellipse(fcx + side * (ex + 0.01), eye_y + 0.07, 0.03, 0.018, 16), "blush")
    if not young:
        v = np.linspace(-1.0, 1.0, 9)
        for k in range(2):
            cv.stroke(np.stack([fcx + fw * 0.5 * v, eye_y - 0.1 - 0.024 * k + 0.012 * v**2], axis=1),
                      "wrinkle", 0.006)
        for side in (-1, 1):
            nx = fcx + side * nose_w * 1.25
            cv.stroke(np.array([[nx, fy0 + nose_len - 0.01],
                                [nx + side * 0.022 * wrinkle_k, mouth_y + 0.005]]), "wrinkle", 0.006)
            cv.stroke(np.array([[fcx + side * (ex + erx + 0.006), eye_y - 0.004],
                                [fcx + side * (ex + erx + 0.02), eye_y - 0.012]]), "wrinkle", 0.005)

    # ---- eyes (glasses' lenses first: eyes show through them) ----------------------------
    lens_centres = [(fcx + side * ex, eye_y + 0.004) for side in (-1, 1)]
    lens_shapes = [_lens(lx, ly, lens_rx, lens_ry, lens_kind) for lx, ly in lens_centres]
    if glasses:
        for shape in lens_shapes:
            cv.fill(shape, "lens")
    iris_r = ery * 0.95
    for side, name in ((-1, "r"), (1, "l")):
        ecx = fcx + side * ex
        c8, s8 = _circle(24)
        almond = np.stack([ecx + erx * c8, eye_y + ery * s8 * np.where(s8 < 0, 1.0, 0.75)], axis=1)
        cv.fill(almond, f"sclera_{name}")
        icx = ecx + gaze * erx * 0.35
        cv.fill(_ellipse(icx, eye_y + 0.001, iris_r, iris_r, 16), f"iris_{name}")
        cv.fill(_ellipse(icx, eye_y + 0.001, iris_r * 0.5, iris_r * 0.5, 12), f"pupil_{name}")
        cv.fill(_ellipse(icx + iris_r * 0.35, eye_y - iris_r * 0.35, iris_r * 0.22, iris_r * 0.22, 8),
                f"glint_{name}")
        cv.stroke(almond[12:], f"lid_{name}", 0.011 if male else 0.015)
        bx = np.linspace(-1.0, 1.0, 9)
        bcx = fcx + side * (ex + 0.006)
        top = eye_y - brow_h - brow_arch * (1 - bx**2) + 0.004 * bx * side
        brow = np.stack([bcx + bx * erx * 1.25, top], axis=1)
        thick = brow_w * (1.25 if male else 0.9) * (1 - 0.45 * ((bx * side + 1) / 2))
        cv.fill(np.vstack([brow, (brow + np.stack([0 * bx, thick], axis=1))[::-1]]), f"brow_{name}")

    # ---- nose ---------------------------------------------------------------------------
    ntop, ntip = eye_y + 0.025, fy0 + nose_len
    cv.fill(np.array([[fcx - 0.008, ntop], [fcx + 0.008, ntop], [fcx + nose_w * 0.55, ntip - 0.02],
                      [fcx + nose_w, ntip + 0.004], [fcx + nose_w * 0.6, ntip + 0.016],
                      [fcx - nose_w * 0.6, ntip + 0.016], [fcx - nose_w, ntip + 0.004],
                      [fcx - nose_w * 0.55, ntip - 0.02]]), "nose")
    for side in (-1, 1):
        cv.fill(_ellipse(fcx + side * nose_w * 0.45, ntip + 0.009, nose_w * 0.22, 0.006, 10), "nostril")

    # ---- mouth: the only place Smiling shows -------------------------------------------------
    # At least ~1.5 px per lip, or small renders would lose one lip under the other.
    ut, lt = max(ut, 1.5 / (size * scale)), max(lt, 1.5 / (size * scale))
    u = np.linspace(-1.0, 1.0, 15)
    hump = np.sqrt(np.clip(1 - u**2, 0.0, 1.0))
    bow = 1.0 - 0.3 * np.exp(-((u * 5.0) ** 2))
    if smiling:
        width = mw * 1.22
        line = mouth_y - smile_up * u**2 + smile_up * 0.3
        gap = smile_gap * (1 - u**2) if smile_open else np.zeros_like(u)
    else:
        width = mw
        line = mouth_y + neutral_curve * u**2
        gap = neutral_gap * (1 - u**2) if neutral_open else np.zeros_like(u)
    xs = fcx + width * u
    upper_top = np.stack([xs, line - ut * hump * bow - 0.002], axis=1)
    upper_bot = np.stack([xs, line], axis=1)
    lower_top = np.stack([xs, line + gap], axis=1)
    lower_bot = np.stack([xs, line + gap + lt * hump + 0.002], axis=1)
    if np.any(gap > 0):
        cv.fill(np.vstack([upper_bot, lower_top[::-1]]), "mouth")
        if smiling:
            cv.fill(np.vstack([upper_bot, np.stack([xs, line + gap * teeth_frac], axis=1)[::-1]]), "teeth")
    cv.fill(np.vstack([upper_top, upper_bot[::-1]]), "u_lip")
    cv.fill(np.vstack([lower_top, lower_bot[::-1]]), "l_lip")

    # ---- hair over the forehead ---------------------------------------------------------
    side_y = {"buzz": fy0 - 0.06, "pixie": fy0 + 0.0, "medium": fy0 + 0.03}.get(style, fy0 - 0.03)
    cap = _cap(cx, fy0, cap_rx, fy0 - 0.02 - hair_top, side_y)
    if style == "buzz":
        cap = _cap(cx, fy0, fw + 0.01, fy0 - 0.02 - (fy0 - fh - 0.008), side_y)
    if curly:
        cap = _curl(cap, cx, fy0, curl_k, curl_a)
    depth = {"bangs": 0.0, "buzz": 0.05}.get(style, 0.03 + 0.03 * hairline)
    line_y = (eye_y - 0.085 + 0.01 * hairline) if style == "bangs" else (fy0 - fh + 0.05 + 0.035 * hairline)
    hx = np.linspace(1.0, -1.0, 13)
    hl = line_y + depth * np.abs(hx - hair_part * (style != "bangs")) ** 1.5 * 0.5
    if style in ("swept", "long", "curly_long"):
        hl = hl + 0.02 * hair_tilt * hx
    hl = np.minimum(hl, side_y)
    hl[0] = hl[-1] = side_y
    cv.fill(np.vstack([cap, np.stack([cx + fw * 1.02 * hx, hl], axis=1)]), "hair")
    if style in ("long", "swept", "bob", "curly_long", "medium"):
        cv.stroke(np.array([[cx + hair_part * fw * 0.7, hair_top + 0.02],
                            [cx + hair_part * fw * 0.8, line_y + 0.01]]), "hair_dark", 0.008)

    # ---- hat, glasses, earrings: drawn last so they are always visible -----------------------
    if hat:
        brim_y = fy0 - fh + hat_low
        crown_top = hair_top - (0.05 if hat_kind == 2 else 0.025)
        if hat_kind == 0:  # beanie
            cv.fill(_cap(cx, brim_y, cap_rx + 0.022, brim_y - crown_top, brim_y), "hat")
            cv.fill(np.array([[cx - cap_rx - 0.024, brim_y - 0.035], [cx + cap_rx + 0.024, brim_y - 0.035],
                              [cx + cap_rx + 0.022, brim_y + 0.005], [cx - cap_rx - 0.022, brim_y + 0.005]]),
                    "hat_band")
        elif hat_kind == 1:  # baseball cap with a visor
            cv.fill(_cap(cx, brim_y, cap_rx + 0.018, brim_y - crown_top, brim_y), "hat")
            cv.fill(_ellipse(cx + 0.04 * hair_tilt, brim_y, fw + 0.05, 0.022, 24), "hat_band")
        else:  # brimmed hat
            cv.fill(np.array([[cx - fw * 0.8, crown_top], [cx + fw * 0.8, crown_top],
                              [cx + cap_rx, brim_y], [cx - cap_rx, brim_y]]), "hat")
            cv.fill(np.array([[cx - cap_rx * 0.98, brim_y - 0.03], [cx + cap_rx * 0.98, brim_y - 0.03],
                              [cx + cap_rx, brim_y - 0.005], [cx - cap_rx, brim_y - 0.005]]), "hat_band")
            cv.fill(_ellipse(cx, brim_y, cap_rx + 0.08, 0.022, 28), "hat")
    if glasses:
        for shape in lens_shapes:
            cv.stroke(shape, "frame", frame_w, closed=True)
        (lx0, ly0), (lx1, _) = lens_centres
        cv.stroke(np.array([[lx0 + lens_rx, ly0 - 0.008], [lx1 - lens_rx, ly0 - 0.008]]), "frame", frame_w)
        for side, lx in ((-1, lx0), (1, lx1)):
            cv.stroke(np.array([[lx + side * lens_rx, ly0 - 0.01], [cx + side * fw * 0.99, ly0 - 0.016]]),
                      "frame", frame_w * 0.8)
    if earrings:
        for side in (-1, 1):
            lobe_x, lobe_y = fcx - yaw * 0.5 + side * fw * 1.0, ear_y + 0.045
            if ring_kind == 0:  # stud
                cv.fill(_ellipse(lobe_x, lobe_y, 0.011, 0.011, 10), "earring")
            elif ring_kind == 1:  # hoop
                cv.stroke(_ellipse(lobe_x, lobe_y + 0.02, 0.017, 0.02, 16), "earring", 0.007, closed=True)
            else:  # drop
                cv.stroke(np.array([[lobe_x, lobe_y], [lobe_x, lobe_y + 0.025]]), "earring", 0.006)
                cv.fill(_ellipse(lobe_x, lobe_y + 0.03, 0.009, 0.012, 10), "earring")

    paint = cv.paint
    mask = MASK_LUT[paint]

    # ---- colours ---------------------------------------------------------------------------
    pal = np.zeros((len(_PAINT_NAMES), 3), np.float32)
    skin = _skin(skin_t) * np.array([1 + skin_hue, 1, 1 - skin_hue], np.float32)
    hair_c = _mix(*HAIR_PALETTE[hair_name], hair_shade)
    brow_c = _mix(hair_c, (30, 24, 20), 0.35)
    lip_nat = _mix(skin, (176, 84, 88), 0.45)
    lip_c = _mix(lip_nat, _hsv(0.97 + lip_hue, 0.75, 0.75), lip_tint) if (lipstick and not male) else lip_nat
    cloth_c = _mix(*CLOTH_PALETTE[cloth_name], cloth_shade)
    hat_c = _hsv(hat_h, hat_s, hat_v)
    frame_c = _hsv(frame_h, 0.5, frame_v)
    metal = np.array((222, 184, 80) if ring_gold else (205, 205, 212), np.float32)
    chain_c = np.array((215, 175, 70) if chain_gold else (200, 200, 206), np.float32)
    iris_c = _mix((70, 45, 25), (70, 120, 150), iris_t) if iris_t > 0.5 else _mix((40, 25, 15), (110, 75, 40), iris_t * 2)
    colours = {
        "skin": skin, "wrinkle": skin * 0.8, "stubble": _mix(skin, (70, 70, 75), 0.22),
        "blush": _mix(skin, (230, 110, 110), 0.22), "nose": skin * 0.93, "nostril": skin * 0.45,
        "lens": _mix(skin, (40, 40, 50), 0.75) if shades else _mix(skin, (180, 210, 230), 0.2),
        "frame": frame_c,
        "ear_l": skin * 0.95, "ear_r": skin * 0.95, "ear_in_l": skin * 0.72, "ear_in_r": skin * 0.72,
        "mouth": (70, 18, 24), "teeth": (238, 234, 222),
        "u_lip": lip_c * 0.88, "l_lip": lip_c,
        "hair": hair_c, "hair_dark": hair_c * 0.8,
        "hat": hat_c, "hat_band": _mix(hat_c, (20, 20, 20), 0.5) if hat_band < 0.5 else _mix(hat_c, (250, 250, 250), 0.5),
        "earring": metal, "necklace": chain_c, "pendant": _mix(chain_c, (200, 30, 60), 0.4 * pendant),
        "neck": skin * 0.84, "cloth": cloth_c, "cloth_trim": cloth_c * 0.82 + 6,
    }
    for side in ("l", "r"):
        colours[f"sclera_{side}"] = (238, 236, 232)
        colours[f"iris_{side}"] = iris_c
        colours[f"pupil_{side}"] = (12, 10, 10)
        colours[f"lid_{side}"] = (28, 22, 22)
        colours[f"glint_{side}"] = (250, 250, 250)
        colours[f"brow_{side}"] = brow_c
    for name, value in colours.items():
        pal[P[name]] = value

    xs_, ys_ = _grid(size)
    # Background: a two-colour gradient plus a pattern, wherever the paint is 0.
    c1 = _hsv(bg_h1, bg_s, bg_v1)
    c2 = _hsv(bg_h2, bg_s, bg_v2)
    pal[0] = c1
    ca, sa = math.cos(bg_ang), math.sin(bg_ang)
    lo = min(0.0, ca) + min(0.0, sa)  # the projection's range over the unit square
    along = (xs_ * ca + ys_ * sa - lo) * (1.0 / (abs(ca) + abs(sa)))
    if bg_pat == 1:
        pattern = np.sign(np.sin(along * (bg_freq * 3.0)))
    elif bg_pat == 2:
        pattern = np.sign(np.sin(xs_ * bg_freq) * np.sin(ys_ * bg_freq))
    elif bg_pat == 3:
        pattern = np.sin(xs_ * bg_freq + 2 * np.sin(ys_ * (bg_freq * 0.7)))
    else:
        pattern = None
    is_bg = paint == 0
    # Colour planes (3, H, W): per-plane products are contiguous, hence fast.
    img = np.take(np.ascontiguousarray(pal.T), paint, axis=1)
    img += (along * is_bg)[None] * (c2 - c1)[:, None, None]

    # Canonical coordinates of each pixel (inverse pose): shading turns with the head.
    inv = cv2.invertAffineTransform(matrix)
    cxs = inv[0, 0] * xs_ + inv[0, 1] * ys_ + inv[0, 2]
    cys = inv[1, 0] * xs_ + inv[1, 1] * ys_ + inv[1, 2]
    shade = (ambient + 2.0 * light_k * (math.cos(light_ang) * (xs_ - 0.5) + math.sin(light_ang) * (ys_ - 0.5)))
    if pattern is not None:
        shade *= 1.0 + (bg_pat_a * pattern) * is_bg
    rr = ((cxs - cx) * (1.0 / fw)) ** 2 + ((cys - fy0) * (1.0 / fh)) ** 2
    shade *= 1.0 - _FACE_SHADED[paint] * (0.22 * np.clip(rr - 0.45, 0.0, 0.6))
    strands = np.sin((cxs * math.cos(tex_ang) + cys * math.sin(tex_ang)) * tex_freq + 2.5 * np.sin(cys * 9.0))
    shade *= 1.0 + _HAIR_TEXTURED[paint] * (tex_amp * strands)
    if cloth_pat == 1:  # stripes in a darker shade of the same colour
        shade *= 1.0 - (mask == 18) * (0.12 * (np.sin(cys * (cloth_freq * 3)) > 0.4))
    elif cloth_pat == 2:  # soft folds
        shade *= 1.0 - (mask == 18) * (0.08 * np.sin(cxs * cloth_freq))
    blobs = cv2.resize(rng.random((5, 5), dtype=np.float32), (size, size), interpolation=cv2.INTER_LINEAR)
    shade *= 1.0 + blob_amp * (blobs - 0.5)
    img *= shade[None]
    # Sensor noise: the sum of two uniform bytes is a bell-shaped (triangular) noise with
    # std 104.5; far cheaper to draw than Gaussian noise.
    raw = np.frombuffer(rng.bytes(6 * size * size), np.uint8).reshape(2, 3, size, size)
    noise = raw[0].astype(np.float32)
    noise += raw[1]
    noise -= 255.0
    img += noise * np.float32(noise_sigma / 104.5)
    planes = np.clip(img, 0.0, 255.0, out=img).astype(np.uint8)
    image = cv2.merge([planes[0], planes[1], planes[2]])
    return image, mask


def _curl(points: np.ndarray, cx: float, cy: float, k: int, amp: float) -> np.ndarray:
    """Push an outline outwards in ``k`` bumps per turn (curly hair)."""
    v = points - [cx, cy]
    ang = np.arctan2(v[:, 1], v[:, 0])
    return [cx, cy] + v * (1.0 + amp * np.abs(np.sin(ang * k / 2.0)))[:, None]


def _cap(cx: float, cy: float, rx: float, ry: float, side_y: float) -> np.ndarray:
    """The upper part of an ellipse above ``side_y``, from left to right (hair or hat)."""
    t = np.linspace(math.pi, _TAU, 22)
    pts = np.stack([cx + rx * np.cos(t), (cy - 0.02) + ry * np.sin(t)], axis=1)
    drop = max(side_y - (cy - 0.02), 0.0)
    return np.vstack([[[cx - rx, cy - 0.02 + drop]], pts, [[cx + rx, cy - 0.02 + drop]]])


def _lens(cx: float, cy: float, rx: float, ry: float, kind: int) -> np.ndarray:
    if kind == 0:  # round
        return _ellipse(cx, cy, rx * 0.9, ry * 1.05, 24)
    c, s = _circle(24)
    if kind == 1:  # rectangular with rounded corners (a superellipse)
        return np.stack([cx + rx * np.sign(c) * np.abs(c) ** 0.5, cy + ry * np.sign(s) * np.abs(s) ** 0.5], axis=1)
    # aviator: wider at the top
    return np.stack([cx + rx * c * np.where(s > 0, 0.85, 1.0), cy + ry * s * np.where(s > 0, 1.2, 0.9)], axis=1)
