"""Part recombination: put one image's part onto another image, with a pixel-exact mask.

:func:`swap_part` moves the donor's part (pixels whose label is in ``part_ids``) onto the
base, in five steps:

1. **Align.** A similarity transform (scale, rotation, shift) maps the donor onto the base.
   It is fitted on a *reference region* both images share and that the part does not
   change: the face skin (``skin`` / ``face``) when the schema has it, else every labelled
   pixel outside the part. In full-body photos (a tall silhouette) a head part is aligned
   on the head only: the skin in the top band of the silhouette (with the hair when the
   face shows little skin). Scale is the square
   root of the reference areas' ratio, rotation the difference of their principal axes
   (only when both are clearly elongated; at most :data:`MAX_ROTATION` degrees).
2. **Occlusion order.** Every part name has a layer (:data:`LAYERS`; hat over glasses over
   eyes and brows over hair over skin and clothes). The donor's part is pasted only where
   the base shows something on a lower or equal layer, so a base's hat stays over new hair
   and its glasses over new eyes.
3. **Fill.** Base part pixels the new part does not cover are relabelled with the nearest
   surrounding label and repainted by :func:`fill_region`: a smooth, label-aware fill (each
   pixel takes the local mean colour of its new label, by normalised box filtering at
   growing scales) with noise matched to that label's own grain.
4. **Blend.** The part is pasted with a feathered alpha (a blur of its mask, about 1 % of
   the image side), never onto pixels of higher layers. Colours are kept as the donor has
   them: Poisson blending would pull a part's colour toward the base's, and colour is
   often the very attribute being moved.
5. **Mask.** The new label map says ``part`` exactly where the pasted part has alpha
   >= 0.5, and the fill's labels where the old part was removed.

>>> import numpy as np
>>> from biasaudit.core.schema import Schema
>>> schema = Schema("toy", {0: "background", 1: "skin", 2: "hair"})
>>> base = np.full((32, 32, 3), 90, np.uint8); base_mask = np.zeros((32, 32), np.uint8)
>>> base_mask[8:28, 8:24] = 1
>>> donor, donor_mask = base.copy(), base_mask.copy()
>>> donor_mask[4:8, 8:24] = 2; donor[4:8, 8:24] = (230, 200, 130)
>>> swap = swap_part(base, base_mask, donor, donor_mask, part_ids=[2], schema=schema)
>>> swap.action, int((swap.mask == 2).sum())
('add', 64)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from biasaudit.core.errors import BiasauditError, ValidationError
from biasaudit.core.schema import Schema

#: Drawing order by part name: a higher layer is in front. Unknown names are on layer 1
#: (skin, body, clothes); background is always 0.
LAYERS: dict[str, int] = {
    "background": 0,
    "hair": 2, "beard": 2, "mustache": 2,
    "l_eye": 3, "r_eye": 3, "eye": 3, "eyes": 3, "l_brow": 3, "r_brow": 3, "eyebrow": 3,
    "nose": 3, "mouth": 3, "u_lip": 3, "l_lip": 3, "lips": 3,
    "ear_r": 3, "earrings": 3, "neck_l": 3, "necklace": 3, "scarf": 3, "tie": 3,
    "eye_g": 4, "glasses": 4, "sunglasses": 4,
    "hat": 5, "cap": 5,
}
#: Parts worn on the head: in full-body photos they are aligned on the head alone.
HEAD_PARTS = frozenset({"hair", "hat", "cap", "eye_g", "glasses", "sunglasses", "ear_r", "earrings",
                        "l_eye", "r_eye", "l_brow", "r_brow", "nose", "mouth", "u_lip", "l_lip",
                        "face", "beard", "mustache"})
#: Reference parts for alignment, in order of preference.
REFERENCE_PARTS = ("skin", "face")
#: Largest rotation (degrees) the alignment applies; beyond it the axis estimate is noise.
MAX_ROTATION = 25.0
#: Largest ratio of reference sizes that is still the same kind of picture.
MAX_SCALE = 3.0
#: Share of the silhouette height that is "the head" in a full-body photo.
HEAD_BAND = 0.16


class RecombineError(BiasauditError, ValueError):
    """A part swap that cannot be done (no shared reference region, part hidden, …)."""


@dataclass(frozen=True)
class PartSwap:
    """The result of :func:`swap_part`.

    ``image`` is H×W×3 uint8 RGB at the base's size, ``mask`` its label map (schema ids),
    pixel-exact for ``image``; ``action`` is ``replace``, ``add``, ``remove`` or ``none``.
    ``transform`` is the 2×3 donor → base similarity (None when nothing was pasted).
    """

    image: np.ndarray
    mask: np.ndarray
    action: str
    transform: np.ndarray | None = None


def swap_part(base_image: np.ndarray, base_mask: np.ndarray, donor_image: np.ndarray,
              donor_mask: np.ndarray, *, part_ids: Sequence[int], schema: Schema,
              seed: int = 0) -> PartSwap:
    """Put the donor's part (mask ids in ``part_ids``) onto the base (see the module docstring).

    donor has the part and base has it → ``replace``; donor has, base lacks → ``add``;
    donor lacks, base has → ``remove`` (the base's part is filled from its surroundings);
    neither → ``none`` (the base, unchanged). Raises :class:`RecombineError` when it
    cannot be done.
    """
    base_image, base_mask = _check_pair(base_image, base_mask, "base")
    donor_image, donor_mask = _check_pair(donor_image, donor_mask, "donor")
    ids = _check_part_ids(part_ids, schema)
    b_part = np.isin(base_mask, ids)
    d_part = np.isin(donor_mask, ids)
    has_base, has_donor = bool(b_part.any()), bool(d_part.any())
    if not has_base and not has_donor:
        return PartSwap(base_image.copy(), base_mask.copy(), "none")
    h, w = base_mask.shape
    paste = np.zeros((h, w), bool)
    warped_img = warped_lab = transform = None
    if has_donor:
        transform = align_parts(donor_mask, base_mask, ids, schema)
        warped_img, warped_lab = _warp(donor_image, np.where(d_part, donor_mask, 0), transform, (h, w))
        paste = np.isin(warped_lab, ids)
        expected = max(1.0, float(d_part.sum()) * abs(np.linalg.det(transform[:, :2])))
        if paste.sum() < 0.2 * expected:
            raise RecombineError(
                f"the donor's part ({_names(ids, schema)}) lands mostly outside the base image "
                f"({int(paste.sum())} of about {int(expected)} pixels inside); pick another donor."
            )
        paste &= ~_above(base_mask, ids, schema, b_part)
        if paste.sum() < 0.2 * expected:
            raise RecombineError(
                f"the donor's part ({_names(ids, schema)}) would be mostly hidden behind the base's "
                f"parts in front of it; pick another donor."
            )
    image = base_image.copy()
    mask = base_mask.copy()
    removed = b_part & ~paste
    if removed.any():
        mask[removed] = nearest_labels(base_mask, b_part)[removed]
        # annotations stop a pixel or two inside an object's edge: repaint a thin rim too, or
        # the old part's outline stays behind as a ghost (labels there are already right)
        rim = _grown(b_part, max(1, round(0.006 * min(h, w)))) & ~b_part & ~paste
        rim &= ~_above(base_mask, ids, schema, b_part)
        image = fill_region(image, removed | rim, mask, seed=seed)
        if not has_donor:
            image = _underlay(image, mask, removed | rim, base_mask, donor_image, donor_mask, ids, schema)
    if paste.any():
        alpha = _feather(paste, base_mask, ids, schema, b_part)
        ys, xs = np.nonzero(alpha > 0)
        win = (slice(ys.min(), ys.max() + 1), slice(xs.min(), xs.max() + 1))
        a = alpha[win][..., None]
        blended = image[win].astype(np.float32) * (1 - a) + warped_img[win].astype(np.float32) * a
        image[win] = np.clip(np.rint(blended), 0, 255).astype(np.uint8)
        mask[paste] = warped_lab[paste]
    action = "replace" if has_base and has_donor else ("add" if has_donor else "remove")
    return PartSwap(image=image, mask=mask, action=action, transform=transform)


# ---------------------------------------------------------------------------- alignment


def align_parts(donor_mask: np.ndarray, base_mask: np.ndarray, part_ids: Sequence[int],
                schema: Schema) -> np.ndarray:
    """The 2×3 similarity transform (donor pixel → base pixel) fitted on the reference regions.

    >>> from biasaudit.core.schema import Schema
    >>> s = Schema("toy", {0: "background", 1: "skin", 2: "hair"})
    >>> a = np.zeros((40, 40), np.uint8); a[10:20, 10:20] = 1
    >>> b = np.zeros((40, 40), np.uint8); b[10:30, 10:30] = 1
    >>> (align_parts(a, b, [2], s).round(2) + 0.0).tolist()
    [[2.0, 0.0, -9.5], [0.0, 2.0, -9.5]]
    """
    ids = list(part_ids)
    d_ref = reference_region(donor_mask, ids, schema)
    b_ref = reference_region(base_mask, ids, schema)
    if d_ref.sum() < 4 or b_ref.sum() < 4:
        which = "donor" if d_ref.sum() < 4 else "base"
        raise RecombineError(
            f"the {which} has no reference region to align the part on (expected pixels of "
            f"{' or '.join(REFERENCE_PARTS)} or other labelled parts); pick another {which}."
        )
    (dcx, dcy), d_area, d_angle, d_elong = _moments(d_ref)
    (bcx, bcy), b_area, b_angle, b_elong = _moments(b_ref)
    scale = math.sqrt(b_area / d_area)
    if not (1 / MAX_SCALE <= scale <= MAX_SCALE):
        raise RecombineError(
            f"the reference regions of donor and base differ in size by {scale:.1f}× (at most "
            f"{MAX_SCALE:.0f}× expected); pick a donor of a similar framing."
        )
    theta = 0.0
    if d_elong > 0.25 and b_elong > 0.25:
        theta = (b_angle - d_angle + 90.0) % 180.0 - 90.0  # axes have no direction
        theta = float(np.clip(theta, -MAX_ROTATION, MAX_ROTATION))
    rad = math.radians(theta)
    rot = scale * np.array([[math.cos(rad), -math.sin(rad)], [math.sin(rad), math.cos(rad)]])
    shift = np.array([bcx, bcy]) - rot @ np.array([dcx, dcy])
    return np.hstack([rot, shift[:, None]]).astype(np.float64)


def reference_region(mask: np.ndarray, part_ids: Sequence[int], schema: Schema) -> np.ndarray:
    """The pixels ``mask`` is aligned on (see the module docstring, step 1).

    A part that sits *on* the reference (sunglasses on the face: at least half of its
    outline touches reference pixels) counts as reference too, so that a face with
    sunglasses and one without have the same reference area and centre.
    """
    part = np.isin(mask, list(part_ids))
    ref_ids = [schema.id_of(n) for n in REFERENCE_PARTS if n in schema.names]
    on_ref = np.isin(mask, ref_ids) if ref_ids else np.zeros(mask.shape, bool)
    enclosed = part.any() and on_ref.any() and _touch_share(part, on_ref) >= 0.5
    keep = ~part | enclosed  # pixels that may be reference
    ref = (on_ref | (part & enclosed)) & keep
    if on_ref.sum() < 4:
        ref = (mask != 0) & ~part
    names = {schema.classes.get(int(i), "") for i in part_ids}
    silhouette = (mask != 0) & keep
    if names & HEAD_PARTS and silhouette.any():
        ys = np.flatnonzero(silhouette.any(axis=1))
        xs = np.flatnonzero(silhouette.any(axis=0))
        height, width = ys[-1] - ys[0] + 1, xs[-1] - xs[0] + 1
        if height > 1.6 * width and height > 0.5 * mask.shape[0]:
            band = np.zeros(mask.shape, bool)
            band[ys[0]: ys[0] + max(2, int(round(HEAD_BAND * height)))] = True
            # the face's skin sets the scale best (hair volume varies); hair too when skin is scarce
            for names in (REFERENCE_PARTS, (*REFERENCE_PARTS, "hair")):
                head_ids = [schema.id_of(n) for n in names if n in schema.names]
                head = ((np.isin(mask, head_ids) | (part & enclosed)) & keep & band) if head_ids \
                    else silhouette & band
                if head.sum() >= max(4, 0.002 * mask.size):
                    ref = head
                    break
    return ref


def _touch_share(region: np.ndarray, other: np.ndarray) -> float:
    """Share of ``region``'s outline (the 4-neighbour ring just outside it) that lies on ``other``."""
    import cv2

    kernel = np.array([[0, 1, 0], [1, 1, 1], [0, 1, 0]], np.uint8)
    ring = cv2.dilate(region.astype(np.uint8), kernel).astype(bool) & ~region
    n = int(ring.sum())
    return float((ring & other).sum()) / n if n else 0.0


def _moments(region: np.ndarray) -> tuple[tuple[float, float], float, float, float]:
    """(centroid, area, principal-axis angle in degrees, elongation 0..1) of a boolean region."""
    ys, xs = np.nonzero(region)
    cx, cy = float(xs.mean()), float(ys.mean())
    dx, dy = xs - cx, ys - cy
    mu20, mu02, mu11 = float((dx * dx).mean()), float((dy * dy).mean()), float((dx * dy).mean())
    angle = 0.5 * math.degrees(math.atan2(2 * mu11, mu20 - mu02))
    spread = math.hypot(mu20 - mu02, 2 * mu11)
    elong = spread / (mu20 + mu02) if (mu20 + mu02) > 0 else 0.0
    return (cx, cy), float(len(xs)), angle, elong


def _warp(image: np.ndarray, labels: np.ndarray, transform: np.ndarray, size: tuple[int, int]):
    import cv2

    h, w = size
    img = cv2.warpAffine(image, transform, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    lab = cv2.warpAffine(labels.astype(np.uint16) if labels.dtype != np.uint8 else labels, transform, (w, h),
                         flags=cv2.INTER_NEAREST, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    return img, lab.astype(labels.dtype)


# ---------------------------------------------------------------------------- occlusion


def layer_of(name: str) -> int:
    """The drawing layer of a part name (see :data:`LAYERS`).

    >>> layer_of("hat") > layer_of("hair") > layer_of("skin")
    True
    """
    return LAYERS.get(name, 1)


def _layer_map(mask: np.ndarray, schema: Schema) -> np.ndarray:
    lut = np.ones(int(max(schema.max_id, int(mask.max()))) + 1, np.int8)
    for i, name in schema.classes.items():
        lut[i] = layer_of(name)
    return lut[mask]


def _above(base_mask: np.ndarray, ids: Sequence[int], schema: Schema, b_part: np.ndarray) -> np.ndarray:
    """Base pixels in front of the part (a higher layer), which the pasted part must not cover."""
    part_layer = max(layer_of(schema.classes.get(int(i), "")) for i in ids)
    return (_layer_map(base_mask, schema) > part_layer) & ~b_part


def _feather(paste: np.ndarray, base_mask: np.ndarray, ids, schema: Schema, b_part: np.ndarray) -> np.ndarray:
    import cv2

    sigma = max(0.6, 0.006 * min(paste.shape))
    alpha = cv2.GaussianBlur(paste.astype(np.float32), (0, 0), sigma)
    # the mask says "part" exactly where alpha >= 0.5: hold the part's own pixels at or above it
    alpha = np.where(paste, np.maximum(alpha, 0.5), np.minimum(alpha, 0.49))
    alpha[_above(base_mask, ids, schema, b_part)] = 0.0  # parts in front stay crisp
    return alpha


# ---------------------------------------------------------------------------- filling


def nearest_labels(mask: np.ndarray, unknown: np.ndarray) -> np.ndarray:
    """Each pixel's label, where ``unknown`` pixels take the label of the nearest known pixel.

    >>> m = np.array([[1, 1, 5, 2, 2]]); nearest_labels(m, m == 5).tolist() in ([[1, 1, 1, 2, 2]], [[1, 1, 2, 2, 2]])
    True
    """
    from scipy import ndimage

    if not unknown.any():
        return mask.copy()
    if unknown.all():
        return np.zeros_like(mask)
    _, (iy, ix) = ndimage.distance_transform_edt(unknown, return_indices=True)
    return mask[iy, ix]


def fill_region(image: np.ndarray, region: np.ndarray, labels: np.ndarray, *, seed: int = 0) -> np.ndarray:
    """Repaint ``region`` of ``image`` from its surroundings, label by label.

    Each region pixel takes the local mean colour of the pixels *outside* the region that
    carry its label in ``labels`` (normalised box filtering, the smallest scale with
    enough support wins), plus Gaussian noise with that label's own fine-grain spread, so
    a filled patch has the grain of what surrounds it.

    >>> img = np.zeros((16, 16, 3), np.uint8); img[:, 8:] = 200
    >>> lab = np.zeros((16, 16), np.uint8); lab[:, 8:] = 1
    >>> reg = np.zeros((16, 16), bool); reg[6:10, 9:13] = True
    >>> int(fill_region(img, reg, lab)[7, 10, 0])
    200
    """
    import cv2

    if not region.any():
        return image.copy()
    rng = np.random.default_rng(seed)
    out = image.astype(np.float32)
    for value in np.unique(labels[region]):
        target = region & (labels == value)
        # work in a window around the pixels to fill: the far side of the image adds nothing
        ys, xs = np.nonzero(target)
        pad = max(8, ys.max() - ys.min() + 1, xs.max() - xs.min() + 1)
        win = (slice(max(0, ys.min() - pad), ys.max() + 1 + pad), slice(max(0, xs.min() - pad), xs.max() + 1 + pad))
        known = (labels[win] == value) & ~region[win]
        if known.sum() < 3:
            win = (slice(None), slice(None))
            known = (labels == value) & ~region
            if known.sum() < 3:
                known = ~region
        if not known.any():
            continue
        crop = out[win]
        t = target[win]
        fill = _normalised_fill(crop, known, t, size=t.shape)
        inner = known & _eroded(known)
        noise_sd = float(np.std((crop - cv2.blur(crop, (3, 3)))[inner])) if inner.any() else 0.0
        noise = rng.normal(0.0, noise_sd, size=(int(t.sum()), 3)).astype(np.float32)
        crop[t] = fill[t] + noise
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def _underlay(image: np.ndarray, mask: np.ndarray, removed: np.ndarray, base_mask: np.ndarray,
              donor_image: np.ndarray, donor_mask: np.ndarray, ids, schema: Schema) -> np.ndarray:
    """Where a removed part leaves a hole, show what the donor (who lacks the part) has at the
    same place, wherever the donor's label there is the label the hole was given (eyes under
    removed sunglasses are "skin" in some schemas), its colour shifted to the base's own
    pixels of that label; the smooth fill stays where the donor shows something else and
    on the background (a donor's background pattern would not belong here)."""
    import cv2

    try:
        transform = align_parts(donor_mask, base_mask, ids, schema)
    except RecombineError:
        return image
    h, w = mask.shape
    warped_img, warped_lab = _warp(donor_image, donor_mask, transform, (h, w))
    use = removed & (warped_lab == mask) & (mask != 0)
    if use.sum() < 4:
        return image
    ys, xs = np.nonzero(removed)
    pad = max(4, (ys.max() - ys.min() + xs.max() - xs.min()) // 2)
    win = (slice(max(0, ys.min() - pad), ys.max() + 1 + pad), slice(max(0, xs.min() - pad), xs.max() + 1 + pad))
    out = image.astype(np.float32)
    donor = warped_img.astype(np.float32)
    for value in np.unique(mask[use]):
        here = use & (mask == value)
        base_known = (base_mask[win] == value) & ~removed[win]
        donor_known = warped_lab[win] == value
        if base_known.sum() < 4 or donor_known.sum() < 4:
            use &= ~here
            continue
        shift = out[win][base_known].mean(axis=0) - donor[win][donor_known].mean(axis=0)
        donor[here] += shift
    alpha = cv2.GaussianBlur(use.astype(np.float32), (0, 0), max(0.8, 0.01 * min(h, w))) * use
    out = out * (1 - alpha[..., None]) + donor * alpha[..., None]
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def _grown(region: np.ndarray, pixels: int) -> np.ndarray:
    import cv2

    k = 2 * pixels + 1
    return cv2.dilate(region.astype(np.uint8), cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k))).astype(bool)


def _eroded(region: np.ndarray) -> np.ndarray:
    import cv2

    return cv2.erode(region.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)


def _normalised_fill(image: np.ndarray, known: np.ndarray, target: np.ndarray, *, size) -> np.ndarray:
    """Push-pull: average the known pixels down a pyramid (area halving), then come back up,
    keeping at each level the local average where enough of the block is known and the
    coarser estimate elsewhere. Smooth, and about two image resizes of work."""
    import cv2

    weight = known.astype(np.float32)
    num = image * weight[..., None]
    levels = []
    while True:
        levels.append((num, weight))
        h, w = weight.shape
        if h <= 2 and w <= 2:
            break
        half = (max(1, (w + 1) // 2), max(1, (h + 1) // 2))
        num = cv2.resize(num, half, interpolation=cv2.INTER_AREA)
        weight = cv2.resize(weight, half, interpolation=cv2.INTER_AREA)
    num, weight = levels[-1]
    fallback = image[known].mean(axis=0) if known.any() else np.zeros(3, np.float32)
    est = np.where(weight[..., None] > 0, num / np.maximum(weight, 1e-6)[..., None], fallback).astype(np.float32)
    for num, weight in reversed(levels[:-1]):
        h, w = weight.shape
        up = cv2.resize(est, (w, h), interpolation=cv2.INTER_LINEAR)
        local = num / np.maximum(weight, 1e-6)[..., None]
        conf = np.clip(weight * 2.0, 0.0, 1.0)[..., None]  # a block at least half known is trusted
        est = conf * local + (1.0 - conf) * up
    return est


# ---------------------------------------------------------------------------- validation


def _check_pair(image, mask, which: str) -> tuple[np.ndarray, np.ndarray]:
    image = np.asarray(image)
    mask = np.asarray(mask)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValidationError(
            f"{which} image must be an H×W×3 uint8 RGB array; got shape {image.shape}, dtype {image.dtype}."
        )
    if mask.ndim != 2 or mask.shape != image.shape[:2] or not np.issubdtype(mask.dtype, np.integer):
        raise ValidationError(
            f"{which} mask must be an integer label map of the image's size {image.shape[:2]}; got "
            f"shape {mask.shape}, dtype {mask.dtype}."
        )
    return image, mask


def _check_part_ids(part_ids: Sequence[int], schema: Schema) -> list[int]:
    ids = [int(i) for i in part_ids]
    bad = [i for i in ids if i == 0 or i not in schema.classes]
    if not ids or bad:
        raise ValidationError(
            f"part_ids {list(part_ids)} must be non-empty ids of schema '{schema.name}' parts "
            f"(not 0 = background); got unknown or background ids {bad}."
        )
    return ids


def _names(ids: Sequence[int], schema: Schema) -> str:
    return ", ".join(schema.classes.get(int(i), str(i)) for i in ids)
