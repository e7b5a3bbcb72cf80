"""Tiny generated face-like data for HEML tests: coloured shapes in known parts.

Three celebamask-hq parts: ``mouth`` (id 10) whose colour is the label, ``hair`` (13)
and ``l_ear`` (8) with random colours independent of it. Every part is present in
every image except ``l_ear``, absent from every 4th image.
"""

from __future__ import annotations

import numpy as np

MOUTH, HAIR, EAR = 10, 13, 8

TREE = {
    "schema": "celebamask-hq",
    "defaults": {"resolution": 16, "epochs": 3, "trunk": "small-cnn:8"},
    "tree": {
        "name": "image",
        "children": [
            {"name": "mouth", "parts": ["mouth"]},
            {"name": "hair+ear", "children": [{"name": "hair", "parts": ["hair"]},
                                              {"name": "ear", "parts": ["l_ear"]}]},
        ],
    },
}


def make_faces(n: int = 96, *, size: int = 32, seed: int = 0):
    """(images N×S×S×3 uint8, label_maps N×S×S int64, y N int) with y = mouth colour class."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 2
    rng.shuffle(y)
    images = np.full((n, size, size, 3), 30, np.uint8)
    maps = np.zeros((n, size, size), np.int64)
    s = size // 8
    for i in range(n):
        hair_rgb = rng.integers(40, 255, 3)
        maps[i, 0 : 2 * s, :] = HAIR
        images[i, 0 : 2 * s, :] = hair_rgb
        mouth_rgb = np.array([220, 40, 40]) if y[i] else np.array([40, 40, 220])
        top = 5 * s + rng.integers(-1, 2)
        maps[i, top : top + s, 3 * s : 5 * s] = MOUTH
        images[i, top : top + s, 3 * s : 5 * s] = np.clip(mouth_rgb + rng.integers(-20, 21, 3), 0, 255)
        if i % 4:
            maps[i, 3 * s : 5 * s, 0:s] = EAR
            images[i, 3 * s : 5 * s, 0:s] = rng.integers(40, 255, 3)
    return images, maps, y


def make_bars(n: int = 128, *, size: int = 32, seed: int = 0):
    """A harder separable set: the label is a bar's orientation (horizontal/vertical) in
    ``mouth``, drawn in a random colour beside a large ``hair`` block of random noise, so
    an untrained network's embedding (dominated by colour) sits near chance."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 2
    rng.shuffle(y)
    images = np.zeros((n, size, size, 3), np.uint8)
    maps = np.zeros((n, size, size), np.int64)
    top = 3 * size // 4  # noise covers the top three quarters
    for i in range(n):
        maps[i, :top, :] = HAIR
        images[i, :top, :] = rng.integers(0, 255, (top, size, 3))
        c = size // 2 + rng.integers(-4, 5)
        r0 = top + size // 8
        if y[i]:
            sl = (slice(r0 - 1, r0 + 1), slice(c - 3, c + 4))
        else:
            sl = (slice(r0 - 3, r0 + 4), slice(c - 1, c + 1))
        maps[i][sl] = MOUTH
        images[i][sl] = rng.integers(60, 255, 3)
    return images, maps, y
