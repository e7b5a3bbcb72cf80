"""Node inputs: "the segment combined with background" (paper, Fig. 3).

For one node, every pixel outside the node's parts is replaced by a background colour,
the image is cropped to a square around the node's bounding box (plus a margin) and
resized to the node's resolution. A node whose parts are absent from an image (zero
pixels) is flagged ``present=False``: such images are left out of that node's training
and evaluation, and embedded as *absent* (an all-zero vector; real embeddings have unit
norm, so the two cannot be confused).

>>> import numpy as np
>>> imgs = np.zeros((1, 8, 8, 3), np.uint8); maps = np.zeros((1, 8, 8), np.int64)
>>> maps[0, 2:4, 2:6] = 5
>>> out = node_inputs(imgs, maps, (5,), resolution=4)
>>> out.crops.shape, bool(out.present[0]), float(out.area_frac[0])
((1, 4, 4, 3), True, 0.125)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from biasaudit.core.errors import ValidationError

#: Images whose masks are built at once (≈ 16 MB of booleans at 256 px).
_CHUNK = 256
#: Largest class id looked up through a table; larger ids (none in the shipped schemas) use ``np.isin``.
_MAX_TABLE = 1 << 16


@dataclass(frozen=True)
class NodeInputs:
    """Crops for one node: ``crops`` N×r×r×3 uint8 (zeros where absent), ``present`` N bool,
    ``area_frac`` N float (share of the image's pixels covered by the node's parts)."""

    crops: np.ndarray
    present: np.ndarray
    area_frac: np.ndarray


def check_arrays(images: np.ndarray, label_maps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Validate an image stack (N×H×W×3 uint8) and its label maps (N×H×W ints)."""
    images = np.asarray(images)
    label_maps = np.asarray(label_maps)
    if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8:
        raise ValidationError(
            f"images must be an N×H×W×3 uint8 array; got shape {images.shape} dtype {images.dtype}. "
            f"Stack RGB images with np.stack and convert with .astype(np.uint8)."
        )
    if label_maps.shape != images.shape[:3]:
        raise ValidationError(
            f"label_maps must be N×H×W matching images {images.shape[:3]}; got {label_maps.shape}. "
            f"Each label map must have its image's height and width."
        )
    if not np.issubdtype(label_maps.dtype, np.integer):
        raise ValidationError(f"label_maps must hold integer class ids; got dtype {label_maps.dtype}.")
    return images, label_maps


def node_inputs(
    images: np.ndarray,
    label_maps: np.ndarray,
    part_ids: tuple[int, ...],
    *,
    resolution: int,
    margin: float = 0.1,
    background: tuple[int, int, int] = (0, 0, 0),
) -> NodeInputs:
    """Masked, cropped and resized inputs of one node for every image (see module doc).

    The crop is the square around the parts' bounding box, grown by ``margin`` × its side
    on each side; where it leaves the image it is filled with ``background``, so aspect
    ratios are never distorted.
    """
    import cv2

    images, label_maps = check_arrays(images, label_maps)
    n, h, w = label_maps.shape
    bg = np.asarray(background, dtype=np.uint8)
    crops = np.zeros((n, resolution, resolution, 3), dtype=np.uint8)
    present = np.zeros(n, dtype=bool)
    area = np.zeros(n, dtype=np.float64)
    in_node = _part_lookup(label_maps, part_ids)
    for lo in range(0, n, _CHUNK):
        # masks and bounding boxes for a block of images at once: the per-image Python work
        # that is left is the crop and the resize
        mask = in_node(label_maps[lo : lo + _CHUNK])
        row_any, col_any = mask.any(axis=2), mask.any(axis=1)
        has = row_any.any(axis=1)
        present[lo : lo + len(mask)] = has
        area[lo : lo + len(mask)] = np.where(has, mask.sum(axis=(1, 2)) / (h * w), 0.0)
        y0s, y1s = row_any.argmax(axis=1), h - row_any[:, ::-1].argmax(axis=1)
        x0s, x1s = col_any.argmax(axis=1), w - col_any[:, ::-1].argmax(axis=1)
        for j in np.flatnonzero(has):
            i = lo + j
            y0, y1, x0, x1 = int(y0s[j]), int(y1s[j]), int(x0s[j]), int(x1s[j])
            side = max(y1 - y0, x1 - x0)
            side = int(np.ceil(side * (1.0 + 2.0 * margin)))
            cy, cx = (y0 + y1) / 2.0, (x0 + x1) / 2.0
            top, left = int(np.floor(cy - side / 2.0)), int(np.floor(cx - side / 2.0))
            canvas = np.empty((side, side, 3), dtype=np.uint8)
            canvas[:] = bg
            sy0, sx0 = max(top, 0), max(left, 0)
            sy1, sx1 = min(top + side, h), min(left + side, w)
            patch = images[i, sy0:sy1, sx0:sx1].copy()
            patch[~mask[j, sy0:sy1, sx0:sx1]] = bg
            canvas[sy0 - top : sy1 - top, sx0 - left : sx1 - left] = patch
            interp = cv2.INTER_AREA if side > resolution else cv2.INTER_LINEAR
            crops[i] = cv2.resize(canvas, (resolution, resolution), interpolation=interp)
    return NodeInputs(crops=crops, present=present, area_frac=area)


def _part_lookup(label_maps: np.ndarray, part_ids: tuple[int, ...]):
    """A function from a block of label maps to the boolean mask of ``part_ids``: a
    table lookup (one gather per pixel) for the small non-negative ids of every schema,
    ``np.isin`` (a sort per image) otherwise."""
    ids = np.asarray(part_ids, dtype=np.int64).reshape(-1)
    lo = int(label_maps.min(initial=0))
    hi = int(max(label_maps.max(initial=0), ids.max(initial=0)))
    if lo < 0 or hi >= _MAX_TABLE:
        return lambda block: np.isin(block, ids)
    table = np.zeros(hi + 1, dtype=bool)
    table[ids[ids >= 0]] = True
    return lambda block: table[block]


def region_masks(label_maps: np.ndarray, node_part_ids: tuple[int, ...], region_part_ids: tuple[int, ...], *,
                 resolution: int, margin: float = 0.1) -> np.ndarray:
    """Where ``region_part_ids`` (e.g. mouth and lips) lie inside each image's crop of the
    node covering ``node_part_ids``: N×r×r bool, aligned pixel for pixel with
    :func:`node_inputs`' crops (for measuring where attention falls).

    >>> maps = np.zeros((1, 8, 8), np.int64); maps[0, 2:6, 2:6] = 1; maps[0, 4:6, 2:6] = 2
    >>> region_masks(maps, (1, 2), (2,), resolution=4, margin=0.0)[0].astype(int).tolist()
    [[0, 0, 0, 0], [0, 0, 0, 0], [1, 1, 1, 1], [1, 1, 1, 1]]
    """
    label_maps = np.asarray(label_maps)
    paint = np.where(np.isin(label_maps, np.asarray(region_part_ids)), 255, 0).astype(np.uint8)
    out = node_inputs(np.repeat(paint[..., None], 3, axis=-1), label_maps, node_part_ids,
                      resolution=resolution, margin=margin)
    return out.crops[..., 0] >= 128


def whole_image_inputs(images: np.ndarray, *, resolution: int) -> np.ndarray:
    """Unmasked whole images resized to ``resolution`` (the single-model baseline's input)."""
    import cv2

    images = np.asarray(images)
    out = np.empty((len(images), resolution, resolution, 3), dtype=np.uint8)
    for i, img in enumerate(images):
        interp = cv2.INTER_AREA if max(img.shape[:2]) > resolution else cv2.INTER_LINEAR
        out[i] = cv2.resize(img, (resolution, resolution), interpolation=interp)
    return out
