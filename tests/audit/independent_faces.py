"""An independent face generator for the scan acceptance tests (issue 5).

Written from scratch and deliberately unlike SynthFaces (``biasaudit.data.synth``), so
that passing the acceptance checks on it says the audit works on the general case and not
on one generator's habits. Same native layout (``images/*.png``, ``masks/*.png`` with
celebamask-hq ids, ``labels.csv``, ``schema.json``) and the same plant / rare semantics:

- ``"LABEL:ATTR=p"`` makes P(ATTR=1 | LABEL=1) = p and P(ATTR=1 | LABEL=0) = 1 − p; when
  ATTR is one value of a one-hot group (a hair or cloth colour) and is drawn 0, another
  value of the group is drawn in proportion to its marginal;
- ``"ATTR=p"`` sets the marginal P(ATTR=1) = p (the rest of a one-hot group is rescaled).

What differs from SynthFaces, on purpose:

- marginals are CelebA-like and uneven (black hair 34 %, red 9 %; blue cloth 26 %), and
  labels are drawn as independent Bernoulli draws, not quotas;
- palettes: other shades, cloth colours include gray and purple but no yellow;
- drawing: an egg-shaped head rotated by an affine warp, five hair styles (crop, bob,
  long, bun, curls) drawn as a back layer plus a fringe over the forehead, four hat shapes
  (beanie, brimmed, cap with a visor, bucket), glasses as 1-2 px frames (the ``eye_g``
  mask is the frame; tinted lenses only on a quarter of them), a smile drawn as an upturned
  lip curve that is closed 45 % of the time (no ``mouth`` pixels) and open with teeth
  otherwise, while 12 % of neutral faces show a dark gap between the lips;
- backgrounds: gradients, flat colour with blotches or soft stripes, then a lighting ramp
  and sensor noise over the whole picture.

>>> table = sample_labels(4000, seed=0, plants=["Smiling:Blond_Hair=0.9"])
>>> [round(float(table.loc[table.Smiling == s, "Blond_Hair"].mean()), 1) for s in (1, 0)]
[0.9, 0.1]
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from biasaudit.core.schema import get_schema

# ---- classes (celebamask-hq ids) -----------------------------------------------------------
SKIN, NOSE, EYE_G, L_EYE, R_EYE, L_BROW, R_BROW, L_EAR, R_EAR = 1, 2, 3, 4, 5, 6, 7, 8, 9
MOUTH, U_LIP, L_LIP, HAIR, HAT, EAR_R, NECK_L, NECK, CLOTH = 10, 11, 12, 13, 14, 15, 16, 17, 18

# ---- palettes: (dark, light) RGB ends; a face takes a point between them -------------------
HAIR_PALETTE: dict[str, tuple[tuple[int, int, int], tuple[int, int, int]]] = {
    "Black_Hair": ((14, 12, 14), (38, 32, 30)),
    "Brown_Hair": ((84, 52, 30), (120, 80, 48)),
    "Blond_Hair": ((214, 180, 112), (246, 222, 160)),
    "Red_Hair": ((160, 52, 22), (200, 78, 36)),
    "Gray_Hair": ((150, 150, 152), (196, 196, 198)),
}
CLOTH_PALETTE: dict[str, tuple[tuple[int, int, int], tuple[int, int, int]]] = {
    "Blue_Cloth": ((24, 44, 130), (60, 96, 200)),
    "Black_Cloth": ((12, 12, 14), (34, 34, 38)),
    "White_Cloth": ((236, 236, 232), (250, 250, 248)),
    "Red_Cloth": ((170, 20, 26), (220, 46, 44)),
    "Green_Cloth": ((20, 100, 40), (60, 160, 76)),
    "Gray_Cloth": ((110, 110, 112), (150, 150, 154)),
    "Purple_Cloth": ((90, 30, 120), (130, 60, 170)),
}
SKIN_TONES = np.array([(250, 224, 204), (232, 190, 160), (204, 152, 114), (160, 106, 72), (112, 72, 48)],
                      np.float32)
BINARY = ("Male", "Smiling", "Eyeglasses", "Wearing_Hat", "Wearing_Earrings", "Wearing_Necklace", "Young")
GROUPS = {"hair": tuple(HAIR_PALETTE), "cloth": tuple(CLOTH_PALETTE)}
MARGINALS: dict[str, float] = {
    "Black_Hair": 0.34, "Brown_Hair": 0.27, "Blond_Hair": 0.18, "Red_Hair": 0.09, "Gray_Hair": 0.12,
    "Blue_Cloth": 0.26, "Black_Cloth": 0.2, "White_Cloth": 0.14, "Red_Cloth": 0.12,
    "Green_Cloth": 0.1, "Gray_Cloth": 0.1, "Purple_Cloth": 0.08,
    "Male": 0.42, "Smiling": 0.48, "Eyeglasses": 0.22, "Wearing_Hat": 0.25,
    "Wearing_Earrings": 0.2, "Wearing_Necklace": 0.14, "Young": 0.78,
}
#: hair presence and hair size, for plants of those kinds (issue 8): a column exists only in
#: a dataset whose plants or rares name it, drawn from its own stream, so every dataset
#: without them is drawn exactly as before. Bald: no hair pixels at all; Long_Hair: the
#: long style (hair down behind the shoulders: about twice the hair area), else never long.
EXTRA_MARGINALS: dict[str, float] = {"Bald": 0.15, "Long_Hair": 0.3}
COLUMNS = (*BINARY, *HAIR_PALETTE, *CLOTH_PALETTE, *EXTRA_MARGINALS)

_PLANT = re.compile(r"^(\w+):(\w+)=([0-9.]+)$")
_RARE = re.compile(r"^(\w+)=([0-9.]+)$")


@dataclass(frozen=True)
class _Plant:
    label: str
    attribute: str
    p: float


def _group_of(name: str) -> str | None:
    return next((g for g, members in GROUPS.items() if name in members), None)


def _parse(plants: Sequence[str], rares: Sequence[str]) -> tuple[list[_Plant], dict[str, float]]:
    parsed = []
    for text in plants:
        m = _PLANT.match(text.replace(" ", ""))
        if not m or m[1] not in COLUMNS or m[2] not in COLUMNS:
            raise ValueError(f"plant {text!r}: expected LABEL:ATTR=p with names from {COLUMNS}")
        parsed.append(_Plant(m[1], m[2], float(m[3])))
    marginals = {**MARGINALS, **EXTRA_MARGINALS}
    for text in rares:
        m = _RARE.match(text.replace(" ", ""))
        if not m or m[1] not in COLUMNS:
            raise ValueError(f"rare {text!r}: expected ATTR=p with a name from {COLUMNS}")
        name, p = m[1], float(m[2])
        group = _group_of(name)
        if group:
            others = [o for o in GROUPS[group] if o != name]
            rest = sum(marginals[o] for o in others)
            for o in others:
                marginals[o] *= (1 - p) / rest
        marginals[name] = p
    return parsed, marginals


def _draw_group(rng: np.random.Generator, group: str, marginals: dict[str, float], n: int,
                exclude: str | None = None) -> np.ndarray:
    members = [m for m in GROUPS[group] if m != exclude]
    w = np.array([marginals[m] for m in members])
    return np.array(members)[rng.choice(len(members), n, p=w / w.sum())]


def sample_labels(n: int, *, seed: int = 0, plants: Sequence[str] = (),
                  rares: Sequence[str] = ()) -> pd.DataFrame:
    """The 0/1 label table (Bernoulli draws; plants applied parents first).

    >>> sample_labels(5, seed=1).shape
    (5, 20)
    """
    parsed, marginals = _parse(plants, rares)
    rng = np.random.default_rng([seed, 7919])
    binary = {b: (rng.random(n) < marginals[b]).astype(int) for b in BINARY}
    groups = {g: _draw_group(rng, g, marginals, n) for g in GROUPS}
    named = {p.label for p in parsed} | {p.attribute for p in parsed} | {r.split("=")[0].strip() for r in rares}
    extra_rng = np.random.default_rng([seed, 7919, 1])
    for name in EXTRA_MARGINALS:
        if name in named:
            binary[name] = (extra_rng.random(n) < marginals[name]).astype(int)
    # a plant whose label is itself planted must be applied after that one
    order = sorted(parsed, key=lambda p: any(q.attribute == p.label for q in parsed))
    for plant in order:
        label = (binary[plant.label] if plant.label in binary
                 else (groups[_group_of(plant.label)] == plant.label).astype(int))
        want = rng.random(n) < np.where(label == 1, plant.p, 1 - plant.p)
        group = _group_of(plant.attribute)
        if group is None:
            binary[plant.attribute] = want.astype(int)
            continue
        values = groups[group].copy()
        values[want] = plant.attribute
        wrong = ~want & (values == plant.attribute)
        values[wrong] = _draw_group(rng, group, marginals, int(wrong.sum()), exclude=plant.attribute)
        groups[group] = values
    table = pd.DataFrame({"image": [f"p{i:05d}.png" for i in range(n)], **binary})
    for group, members in GROUPS.items():
        for m in members:
            table[m] = (groups[group] == m).astype(int)
    return table


# ---- drawing -------------------------------------------------------------------------------
class _Canvas:
    """An RGB picture and its label map painted together, back to front."""

    def __init__(self, size: int, background: np.ndarray, *, bald: bool = False) -> None:
        self.size = size
        self.rgb = background
        self.lab = np.zeros((size, size), np.uint8)
        self.bald = bald

    def px(self, pts) -> np.ndarray:
        return np.round(np.asarray(pts, np.float64) * self.size).astype(np.int32).reshape(-1, 1, 2)

    def region(self, draw) -> np.ndarray:
        m = np.zeros((self.size, self.size), np.uint8)
        draw(m)
        return m.astype(bool)

    def fill(self, region: np.ndarray, cls: int, colour, *, texture: np.ndarray | None = None) -> None:
        c = np.asarray(colour, np.float32)
        if cls == HAIR and self.bald:
            return
        if texture is None:
            self.rgb[region] = c
        else:
            self.rgb[region] = np.clip(c[None] * texture[region][:, None], 0, 255)
        self.lab[region] = cls

    def poly(self, pts, cls, colour, **kw) -> np.ndarray:
        r = self.region(lambda m: cv2.fillPoly(m, [self.px(pts)], 1))
        self.fill(r, cls, colour, **kw)
        return r

    def ellipse(self, c, axes, cls, colour, *, angle=0.0, start=0, end=360, thickness=-1, **kw):
        s = self.size
        r = self.region(lambda m: cv2.ellipse(
            m, (round(c[0] * s), round(c[1] * s)), (max(1, round(axes[0] * s)), max(1, round(axes[1] * s))),
            angle, start, end, 1, thickness))
        self.fill(r, cls, colour, **kw)
        return r

    def line(self, pts, cls, colour, thickness: int) -> np.ndarray:
        r = self.region(lambda m: cv2.polylines(m, [self.px(pts)], False, 1, thickness))
        self.fill(r, cls, colour)
        return r


def _shade(rng, pair, t=None) -> np.ndarray:
    lo, hi = np.asarray(pair[0], np.float32), np.asarray(pair[1], np.float32)
    return lo + (hi - lo) * (rng.random() if t is None else t)


def _arc(cx, cy, rx, ry, t0, t1, k=24):
    t = np.linspace(t0, t1, k)
    return np.stack([cx + rx * np.cos(t), cy + ry * np.sin(t)], 1)


def _background(rng, s: int) -> np.ndarray:
    kind = rng.integers(3)
    a = rng.uniform(40, 230, 3).astype(np.float32)
    b = np.clip(a + rng.uniform(-70, 70, 3), 0, 255).astype(np.float32)
    y = np.linspace(0, 1, s, dtype=np.float32)[:, None, None]
    if kind == 0:  # vertical gradient
        img = a + (b - a) * y * np.ones((1, s, 1), np.float32)
    elif kind == 1:  # flat with soft blotches
        img = np.broadcast_to(a, (s, s, 3)).copy()
        blot = cv2.GaussianBlur(rng.random((s // 8, s // 8)).astype(np.float32), (0, 0), 1.2)
        blot = cv2.resize(blot, (s, s), interpolation=cv2.INTER_CUBIC)[..., None]
        img += (b - a) * (blot - blot.mean()) * 2
    else:  # soft diagonal stripes
        xx, yy = np.meshgrid(np.arange(s), np.arange(s))
        wave = (0.5 + 0.5 * np.sin((xx + yy) * rng.uniform(0.08, 0.25)))[..., None].astype(np.float32)
        img = a + (b - a) * wave * 0.5
    return np.clip(img, 0, 255).astype(np.float32)


def draw_face(row: dict, rng: np.random.Generator, size: int = 128) -> tuple[np.ndarray, np.ndarray]:
    """One portrait (uint8 RGB) and its celebamask-hq label map from a label row."""
    s = size
    cv = _Canvas(s, _background(rng, s), bald=bool(row.get("Bald", 0)))
    male, smiling, young = row["Male"] == 1, row["Smiling"] == 1, row["Young"] == 1
    hair_name = next(h for h in HAIR_PALETTE if row[h] == 1)
    cloth_name = next(c for c in CLOTH_PALETTE if row[c] == 1)
    skin = SKIN_TONES[0] + (SKIN_TONES[-1] - SKIN_TONES[0]) * rng.beta(1.6, 2.2)
    hair_c = _shade(rng, HAIR_PALETTE[hair_name])
    cloth_c = _shade(rng, CLOTH_PALETTE[cloth_name])

    cx, cy = 0.5 + rng.uniform(-0.04, 0.04), 0.45 + rng.uniform(-0.03, 0.03)
    a, b = rng.uniform(0.17, 0.2), rng.uniform(0.22, 0.25)  # head half-width / half-height
    jaw = rng.uniform(0.05, 0.2) * (0.5 if male else 1.0)
    hair_tex = 0.88 + 0.24 * cv2.GaussianBlur(rng.random((s, s)).astype(np.float32), (0, 0), 0.8)

    # clothes and shoulders
    top = cy + b + rng.uniform(0.06, 0.1)
    sw = rng.uniform(0.36, 0.46) * (1.1 if male else 1.0)
    shoulders = [(cx - sw, 1.02), (cx - sw + 0.02, top + 0.08), (cx - 0.14, top), (cx + 0.14, top),
                 (cx + sw - 0.02, top + 0.08), (cx + sw, 1.02)]
    style = rng.choice(["crop", "bob", "long", "bun", "curls"],
                       p=[0.5, 0.15, 0.05, 0.1, 0.2] if male else [0.08, 0.3, 0.35, 0.12, 0.15])
    hair_back = rng.uniform(0.02, 0.05)
    if "Long_Hair" in row:  # a hair-size plant decides the style (the draw above keeps the stream)
        style = "long" if row["Long_Hair"] else ("bob" if style == "long" else style)
    if style == "long":  # long hair falls behind the shoulders
        cv.poly([(cx - a - 0.05, cy - 0.05), (cx + a + 0.05, cy - 0.05), (cx + a + 0.09, top + 0.16),
                 (cx - a - 0.09, top + 0.16)], HAIR, hair_c, texture=hair_tex)
    cv.poly(shoulders, CLOTH, cloth_c)
    neck_w = a * rng.uniform(0.42, 0.55)
    neck_c = skin * 0.9
    cv.poly([(cx - neck_w, cy + b * 0.6), (cx + neck_w, cy + b * 0.6), (cx + neck_w * 1.1, top + 0.03),
             (cx - neck_w * 1.1, top + 0.03)], NECK, neck_c)
    neckline = rng.integers(2)
    if neckline == 0:  # V neck
        cv.poly([(cx - 0.07, top - 0.005), (cx + 0.07, top - 0.005), (cx, top + 0.08)], NECK, neck_c)
    else:
        cv.ellipse((cx, top), (0.07, 0.035), NECK, neck_c, start=0, end=180)
    if row["Wearing_Necklace"]:
        chain = _arc(cx, top - 0.01, neck_w * 1.15, 0.05, 0.15, math.pi - 0.15)
        cv.line(chain, NECK_L, (225, 190, 90) if rng.random() < 0.5 else (210, 210, 215), 2)
    if style in ("bob", "curls"):  # volume behind the head
        cv.ellipse((cx, cy - 0.01), (a + 0.06, b + (0.02 if style == "bob" else -0.02)), HAIR, hair_c,
                   texture=hair_tex)
    # ears behind the face
    ey = cy + rng.uniform(-0.01, 0.02)
    for side, cls in ((-1, R_EAR), (1, L_EAR)):
        cv.ellipse((cx + side * a * 0.98, ey + 0.02), (0.03, 0.05), cls, skin * 0.94)
    if row["Wearing_Earrings"]:
        stud = rng.random() < 0.5
        for side in (-1, 1):
            c = (cx + side * a * 1.0, ey + 0.075)
            if stud:
                cv.ellipse(c, (0.012, 0.012), EAR_R, (230, 200, 90))
            else:
                cv.ellipse((c[0], c[1] + 0.02), (0.02, 0.025), EAR_R, (200, 200, 210), thickness=1)

    # egg-shaped face: narrower towards the chin
    t = np.linspace(0, 2 * math.pi, 64, endpoint=False)
    lower = np.clip(np.sin(t), 0, 1)
    face = np.stack([cx + a * np.cos(t) * (1 - jaw * lower ** 2), cy + b * np.sin(t)], 1)
    skin_tex = 0.97 + 0.06 * cv2.GaussianBlur(rng.random((s, s)).astype(np.float32), (0, 0), 2.0)
    face_region = cv.poly(face, SKIN, skin, texture=skin_tex)
    if male and rng.random() < 0.5:  # stubble on the lower face
        stubble = face_region & (np.arange(s)[:, None] > (cy + b * 0.35) * s)
        cv.fill(stubble, SKIN, skin * 0.8, texture=skin_tex)
    if not young:
        for dy in (-0.16, -0.13):
            cv.line(_arc(cx, cy + dy + 0.1, a * 0.5, 0.04, math.pi * 1.2, math.pi * 1.8, 10), SKIN,
                    skin * 0.82, 1)

    # hair on the crown and a fringe over the forehead
    crown = cv.region(lambda m: cv2.ellipse(m, (round(cx * s), round((cy - b * 0.25) * s)),
                                            (round((a + hair_back) * s), round((b * 0.85 + hair_back) * s)),
                                            0, 180, 360, 1, -1))
    fringe_y = cy - b * rng.uniform(0.35, 0.6)
    crown &= np.arange(s)[:, None] < fringe_y * s + (~face_region) * s
    cv.fill(crown, HAIR, hair_c, texture=hair_tex)
    if style == "bun":
        cv.ellipse((cx + rng.uniform(-0.03, 0.03), cy - b - 0.06), (0.07, 0.06), HAIR, hair_c,
                   texture=hair_tex)
    if style == "curls":
        for k in range(9):
            ang = math.pi * (1.05 + 0.9 * k / 8)
            cv.ellipse((cx + (a + 0.02) * math.cos(ang), cy - 0.02 + (b + 0.02) * math.sin(ang)),
                       (0.04, 0.04), HAIR, hair_c, texture=hair_tex)

    # brows, eyes, nose
    ex, eh = a * rng.uniform(0.42, 0.5), rng.uniform(0.018, 0.026)
    eye_y = cy - b * rng.uniform(0.02, 0.12)
    ew = rng.uniform(0.04, 0.05)
    brow_c = hair_c * 0.7 + np.float32(20)
    brow_t = 3 if male else 2
    for side, eye_cls, brow_cls in ((-1, R_EYE, R_BROW), (1, L_EYE, L_BROW)):
        ecx = cx + side * ex
        cv.line(_arc(ecx, eye_y - 0.02, ew * 1.1, 0.03, math.pi * 1.15, math.pi * 1.85, 8), brow_cls,
                brow_c, brow_t)
        almond = np.concatenate([_arc(ecx, eye_y + eh * 0.2, ew * 0.9, eh, math.pi, 2 * math.pi, 10),
                                 _arc(ecx, eye_y - eh * 0.2, ew * 0.9, eh * 0.8, 0, math.pi, 10)])
        cv.poly(almond, eye_cls, (240, 238, 232))
        cv.ellipse((ecx, eye_y), (eh * 0.8, eh * 0.8), eye_cls, (60, 40, 30))
    nose_y = cy + b * rng.uniform(0.22, 0.3)
    nw = a * rng.uniform(0.16, 0.22)
    cv.poly([(cx, eye_y + 0.01), (cx + nw, nose_y), (cx - nw, nose_y)], NOSE, skin * 0.88)

    # mouth: a smile bends the lip line up at the corners and widens it
    my = cy + b * rng.uniform(0.55, 0.62)
    mw = a * (rng.uniform(0.46, 0.56) if smiling else rng.uniform(0.36, 0.44))
    bend = rng.uniform(0.02, 0.032) if smiling else rng.uniform(-0.004, 0.004)
    lip_c = skin * 0.75 + np.array((40, 0, 5), np.float32)
    if not male and rng.random() < 0.4:
        lip_c = np.array((rng.uniform(150, 200), 30, 60), np.float32)
    xs = np.linspace(-1, 1, 15)
    line_y = my - bend * (xs ** 2) + bend * 0.3
    opening = (rng.uniform(0.012, 0.022) if (smiling and rng.random() < 0.55)
               else (rng.uniform(0.006, 0.01) if (not smiling and rng.random() < 0.12) else 0.0))
    up = np.stack([cx + mw * xs, line_y - opening / 2], 1)
    low = np.stack([cx + mw * xs, line_y + opening / 2], 1)
    u_thick, l_thick = rng.uniform(0.012, 0.018), rng.uniform(0.016, 0.024)
    bow = 0.004 * np.cos(xs * math.pi * 1.5) * (1 - xs ** 2)
    cv.poly(np.concatenate([up, (up - [0, 1] * (u_thick * (1 - xs ** 2) + bow)[:, None])[::-1]]),
            U_LIP, lip_c)
    cv.poly(np.concatenate([low, (low + [0, 1] * (l_thick * (1 - xs ** 4))[:, None])[::-1]]),
            L_LIP, lip_c * 0.95)
    if opening > 0:
        inner = np.concatenate([up[1:-1], low[1:-1][::-1]])
        cv.poly(inner, MOUTH, (60, 14, 20))
        if smiling:
            teeth = cv.region(lambda m: cv2.fillPoly(m, [cv.px(inner)], 1))
            teeth &= np.arange(s)[:, None] <= (my - 0.001) * s
            cv.rgb[teeth] = (236, 232, 220)

    if row["Eyeglasses"]:
        frame_c = np.array([(20, 20, 24), (150, 110, 60), (180, 180, 188), (120, 20, 30)][rng.integers(4)],
                           np.float32)
        round_rims = rng.random() < 0.5
        tinted = rng.random() < 0.25
        for side in (-1, 1):
            ecx = cx + side * ex
            if tinted:
                cv.ellipse((ecx, eye_y), (ew * 1.25, ew * 0.95), EYE_G, (40, 40, 50))
            if round_rims:
                cv.ellipse((ecx, eye_y), (ew * 1.25, ew * 1.0), EYE_G, frame_c, thickness=1)
            else:
                box = [(ecx - ew * 1.3, eye_y - ew * 0.85), (ecx + ew * 1.3, eye_y - ew * 0.85),
                       (ecx + ew * 1.2, eye_y + ew * 0.9), (ecx - ew * 1.2, eye_y + ew * 0.9)]
                cv.line(box + box[:1], EYE_G, frame_c, 1)
            cv.line([(ecx + side * ew * 1.25, eye_y), (cx + side * a * 0.97, eye_y - 0.01)], EYE_G, frame_c, 1)
        cv.line([(cx - ex + ew * 1.2, eye_y - 0.005), (cx + ex - ew * 1.2, eye_y - 0.005)], EYE_G, frame_c, 1)

    if row["Wearing_Hat"]:
        hat_c = np.array(cv2.cvtColor(np.uint8([[[rng.integers(180), rng.integers(60, 220),
                                                  rng.integers(60, 230)]]]), cv2.COLOR_HSV2RGB)[0, 0],
                         np.float32)
        shape = rng.integers(4)
        brim_y = cy - b * rng.uniform(0.35, 0.5)
        if shape == 0:  # beanie: a dome with a folded band
            cv.ellipse((cx, brim_y), (a + 0.03, b * 0.8), HAT, hat_c, start=180, end=360)
            cv.poly([(cx - a - 0.03, brim_y - 0.04), (cx + a + 0.03, brim_y - 0.04), (cx + a + 0.03, brim_y + 0.01),
                     (cx - a - 0.03, brim_y + 0.01)], HAT, hat_c * 0.85)
        elif shape == 1:  # brimmed hat: crown and a wide flat brim
            cv.poly([(cx - a * 0.8, brim_y - b * 0.75), (cx + a * 0.8, brim_y - b * 0.75),
                     (cx + a * 0.9, brim_y), (cx - a * 0.9, brim_y)], HAT, hat_c)
            cv.ellipse((cx, brim_y), (a + 0.09, 0.025), HAT, hat_c * 0.9)
        elif shape == 2:  # cap with a visor to one side
            side = 1 if rng.random() < 0.5 else -1
            cv.ellipse((cx, brim_y), (a + 0.02, b * 0.7), HAT, hat_c, start=180, end=360)
            cv.ellipse((cx + side * (a * 0.7), brim_y + 0.005), (a * 0.8, 0.02), HAT, hat_c * 0.8)
        else:  # bucket hat: a trapezoid that widens downwards
            cv.poly([(cx - a * 0.75, brim_y - b * 0.7), (cx + a * 0.75, brim_y - b * 0.7),
                     (cx + a + 0.07, brim_y + 0.03), (cx - a - 0.07, brim_y + 0.03)], HAT, hat_c)

    # a slight head tilt, then light and sensor noise over the whole picture
    m = cv2.getRotationMatrix2D((cx * s, cy * s), rng.uniform(-9, 9), 1.0)
    rgb = cv2.warpAffine(cv.rgb, m, (s, s), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    lab = cv2.warpAffine(cv.lab, m, (s, s), flags=cv2.INTER_NEAREST, borderMode=cv2.BORDER_REPLICATE)
    ramp = np.linspace(rng.uniform(0.92, 1.0), rng.uniform(1.0, 1.06), s, dtype=np.float32)
    rgb = rgb * (ramp[None, :, None] if rng.random() < 0.5 else ramp[:, None, None])
    rgb = rgb + rng.normal(0, rng.uniform(2, 6), rgb.shape).astype(np.float32)
    return np.clip(rgb, 0, 255).astype(np.uint8), lab


def write_faces(out: str | Path, *, n: int, seed: int = 0, plants: Sequence[str] = (),
                rares: Sequence[str] = (), size: int = 128) -> Path:
    """Write a dataset in the native layout and return its folder.

    >>> write_faces(tmp / "faces", n=20, plants=["Smiling:Blond_Hair=0.9"])  # doctest: +SKIP
    """
    out = Path(out)
    (out / "images").mkdir(parents=True, exist_ok=True)
    (out / "masks").mkdir(parents=True, exist_ok=True)
    table = sample_labels(n, seed=seed, plants=plants, rares=rares)
    for i, row in enumerate(table.to_dict("records")):
        rgb, lab = draw_face(row, np.random.default_rng([seed, i, 31]), size)
        cv2.imwrite(str(out / "images" / row["image"]), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
        cv2.imwrite(str(out / "masks" / row["image"]), lab)
    table.to_csv(out / "labels.csv", index=False)
    (out / "schema.json").write_text(json.dumps(get_schema("celebamask-hq").to_dict()), "utf-8")
    return out
