"""Tiny drawn faces with exact masks for the rebalance unit tests (celebamask-hq ids)."""

from __future__ import annotations

import cv2
import numpy as np

from biasaudit.core.schema import get_schema

SCHEMA = get_schema("celebamask-hq")
SKIN, EYE_G, L_EYE, HAIR, HAT = (SCHEMA.id_of(n) for n in ("skin", "eye_g", "l_eye", "hair", "hat"))
BLOND, BLACK, SKIN_RGB, BG = (228, 196, 128), (25, 22, 20), (200, 150, 120), (60, 90, 140)


def face(size: int = 64, *, hair=BLOND, hair_style: str = "short", hat: bool = False, glasses: bool = False,
         scale: float = 1.0, shift: tuple[int, int] = (0, 0)) -> tuple[np.ndarray, np.ndarray]:
    """(RGB image, label map) of a flat-coloured face: skin ellipse, eyes, optional hair, hat, glasses."""
    img = np.empty((size, size, 3), np.uint8)
    img[:] = BG
    lab = np.zeros((size, size), np.uint8)
    cx, cy = size // 2 + shift[0], int(size * 0.55) + shift[1]
    rx, ry = int(size * 0.2 * scale), int(size * 0.27 * scale)

    def paint(shape_fn, value, colour):
        m = np.zeros((size, size), np.uint8)
        shape_fn(m)
        img[m > 0] = colour
        lab[m > 0] = value

    if hair is not None and hair_style == "long":
        paint(lambda m: cv2.rectangle(m, (cx - rx - 4, cy - ry), (cx + rx + 4, cy + ry), 1, -1), HAIR, hair)
    paint(lambda m: cv2.ellipse(m, (cx, cy), (rx, ry), 0, 0, 360, 1, -1), SKIN, SKIN_RGB)
    if hair is not None:
        paint(lambda m: cv2.ellipse(m, (cx, cy - ry // 2), (rx + 2, ry // 2 + 2), 0, 180, 360, 1, -1), HAIR, hair)
    for ex in (cx - rx // 2, cx + rx // 2):
        paint(lambda m, ex=ex: cv2.circle(m, (ex, cy), max(1, rx // 5), 1, -1), L_EYE, (30, 30, 30))
    if glasses:
        for ex in (cx - rx // 2, cx + rx // 2):
            paint(lambda m, ex=ex: cv2.circle(m, (ex, cy), max(2, rx // 3), 1, 1), EYE_G, (150, 40, 160))
    if hat:
        paint(lambda m: cv2.rectangle(m, (cx - rx - 3, cy - ry - 3), (cx + rx + 3, cy - ry // 2), 1, -1), HAT,
              (40, 140, 60))
    return img, lab
