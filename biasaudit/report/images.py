"""Thumbnails embedded in the report: downscaled, the part of interest outlined, encoded
as base64 WebP (PNG where Pillow lacks WebP). Only sampled images are ever encoded, so
the report's size does not grow with the dataset.

>>> import numpy as np
>>> rgb = np.zeros((64, 64, 3), np.uint8); parts = np.zeros((64, 64), np.int64); parts[8:24, 8:24] = 13
>>> uri = thumbnail(rgb, parts, part_ids=[13], size=32)
>>> uri.startswith("data:image/")
True
"""

from __future__ import annotations

import base64
import io
from collections.abc import Sequence
from pathlib import Path

import numpy as np

#: the outline colour: saturated magenta reads against skin, hair and most cloth
OUTLINE_RGB = (255, 0, 200)


def _format() -> str:
    from PIL import features

    return "WEBP" if features.check("webp") else "PNG"


def encode(rgb: np.ndarray, *, quality: int = 72) -> str:
    """An RGB uint8 array as a ``data:`` URI."""
    from PIL import Image

    fmt = _format()
    buf = io.BytesIO()
    img = Image.fromarray(np.ascontiguousarray(rgb, dtype=np.uint8))
    if fmt == "WEBP":
        img.save(buf, format="WEBP", quality=quality, method=4)
    else:
        img.save(buf, format="PNG", optimize=True)
    return f"data:image/{fmt.lower()};base64,{base64.b64encode(buf.getvalue()).decode('ascii')}"


def downscale(rgb: np.ndarray, parts: np.ndarray | None, size: int):
    """(image, label map) with the longer side at most ``size`` (area / nearest)."""
    import cv2

    h, w = rgb.shape[:2]
    scale = size / max(h, w)
    if scale >= 1:
        return rgb, parts
    nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
    rgb = cv2.resize(rgb, (nw, nh), interpolation=cv2.INTER_AREA)
    if parts is not None:
        parts = cv2.resize(parts.astype(np.uint16), (nw, nh), interpolation=cv2.INTER_NEAREST)
    return rgb, parts


def outline(rgb: np.ndarray, mask: np.ndarray, *, dim: float = 0.55) -> np.ndarray:
    """Dim everything outside ``mask`` and draw its contour, so the part stands out."""
    import cv2

    out = rgb.astype(np.float32)
    out[~mask] = out[~mask] * dim + 255 * (1 - dim) * 0.25
    out = out.clip(0, 255).astype(np.uint8)
    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    thickness = max(1, round(max(rgb.shape[:2]) / 64))
    cv2.drawContours(out, contours, -1, OUTLINE_RGB, thickness)
    return out


def thumbnail(rgb: np.ndarray, parts: np.ndarray | None = None, *, part_ids: Sequence[int] = (),
              size: int = 96, crop: bool = False) -> str:
    """A downscaled thumbnail as a data URI, the parts ``part_ids`` outlined.

    ``crop``: cut to the parts' box (with a margin) first, as HEML's node inputs are.
    """
    rgb = np.asarray(rgb)
    if rgb.ndim == 2:
        rgb = np.repeat(rgb[..., None], 3, axis=2)
    rgb = rgb[..., :3]
    mask = None
    if parts is not None and len(part_ids):
        mask = np.isin(np.asarray(parts), list(part_ids))
        if crop and mask.any():
            ys, xs = np.nonzero(mask)
            pad = max(2, int(0.15 * max(np.ptp(ys) + 1, np.ptp(xs) + 1)))
            y0, y1 = max(0, ys.min() - pad), min(rgb.shape[0], ys.max() + pad + 1)
            x0, x1 = max(0, xs.min() - pad), min(rgb.shape[1], xs.max() + pad + 1)
            rgb, mask = rgb[y0:y1, x0:x1], mask[y0:y1, x0:x1]
    small, small_mask = downscale(rgb, mask, size)
    if small_mask is not None and small_mask.any():
        small = outline(small, small_mask.astype(bool))
    return encode(small)


def file_thumbnail(path: str | Path, *, mask_path: str | Path | None = None, part_ids: Sequence[int] = (),
                   size: int = 96) -> str | None:
    """A thumbnail of an image file (None when it cannot be read), outlined from a mask file."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            rgb = np.asarray(im.convert("RGB"))
    except (OSError, ValueError):
        return None
    parts = None
    if mask_path is not None and part_ids and Path(mask_path).is_file():
        try:
            with Image.open(mask_path) as im:
                parts = np.asarray(im)
            if parts.ndim == 3:
                parts = parts[..., 0]
            if parts.shape[:2] != rgb.shape[:2]:
                parts = None
        except (OSError, ValueError):
            parts = None
    return thumbnail(rgb, parts, part_ids=part_ids, size=size)
