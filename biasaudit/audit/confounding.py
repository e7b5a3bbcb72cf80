"""Which parts a causal part occludes, from pixel contact between the masks.

A hat hides hair: where the hat is, the hair's mask stops, so the hair's *geometry*
(size, shape, bounding box) follows the hat and so the label Wearing_Hat. Findings on
that geometry are expected evidence, not bias. Nothing else is: a hat does not change
whether there is hair or what colour it is, so presence and colour are never routed.

Presence is routed in one case only: the part is *hidden under* the causal part. In
most of the images where the part is missing, the causal part covers the place where
the part usually is (``hidden_presence``: tinted glasses over an eye, a hat over all of
the hair). A bald head under no hat, or hair missing while the mouth smiles, is not
hidden by anything, and its presence finding stays a bias.

The rule follows occlusion, not closeness. A causal part occludes a part when the two
masks share a border: the causal part's outline (the ring of pixels just outside its
mask) runs along the part for at least ``min_contact`` of its length, or the part's own
outline runs along the causal part for that share of *its* length (thin glasses frames
crossing an eyebrow), in at least ``min_share`` of the images where both are present. Bounding boxes are not used: the mouth's box lies inside the
skin box and, with long hair, inside the hair box, yet the hair never touches the lips.

>>> import numpy as np
>>> from biasaudit.core.schema import Schema
>>> schema = Schema("toy", {0: "background", 1: "hair", 2: "hat", 3: "mouth"})
>>> lm = np.zeros((20, 20), np.uint8); lm[0:10, 2:18] = 1; lm[0:4, 4:16] = 2  # a hat on hair
>>> lm[15:17, 8:12] = 3  # a mouth in the hair's box, touching nothing but background
>>> contacts = mask_contacts(lm, schema, causal={"hat", "mouth"}, image_id="a")
>>> occlusion_confounding(contacts, {"hat", "mouth"})
{'hair': 'the causal part hat borders it along 100% of its outline in 100% of images'}
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pandas as pd

#: the share of a causal part's outline that must run along a part ...
MIN_CONTACT = 0.15
#: ... in at least this share of the images where both are present
MIN_SHARE = 0.2
#: label maps read to measure contact (a random sample: contact is a habit, not a count)
MAX_CONTACT_IMAGES = 300

CONTACT_COLUMNS = ("image", "causal", "part", "contact")


def mask_contacts(label_map: np.ndarray, schema, *, causal: Iterable[str], image_id: str) -> pd.DataFrame:
    """Rows (image, causal, part, contact): the larger of the share of the causal part's
    outline (pixels 4-adjacent to it, outside it) that lies on ``part`` and the share of
    ``part``'s outline (its pixels 4-adjacent to another label) that touches the causal
    part, for every part it touches, plus
    one row with part "" per causal part present (so an image where it touches nothing
    still counts)."""
    import cv2

    lm = np.asarray(label_map)
    rows = []
    ids = {name: cid for cid, name in schema.classes.items()}
    kernel = np.array([[0, 1, 0], [1, 1, 1], [0, 1, 0]], np.uint8)
    for c in sorted(causal):
        cid = ids.get(c)
        if cid is None:
            continue
        inside = lm == cid
        if not inside.any():
            continue
        ring = cv2.dilate(inside.astype(np.uint8), kernel).astype(bool) & ~inside
        total = int(ring.sum())
        if total == 0:
            continue
        rows.append((image_id, c, "", 0.0))
        counts = np.bincount(lm[ring].ravel().astype(np.int64), minlength=int(lm.max()) + 1)
        grown = ring | inside
        for other in np.nonzero(counts)[0]:
            name = schema.classes.get(int(other))
            if other == 0 or name is None or name == c:
                continue
            part = (lm == other).astype(np.uint8)
            edge = part.astype(bool) & ~cv2.erode(part, kernel, borderType=cv2.BORDER_REPLICATE).astype(bool)
            own = float((edge & grown).sum() / edge.sum()) if edge.any() else 0.0
            rows.append((image_id, c, name, max(counts[other] / total, own)))
    return pd.DataFrame(rows, columns=list(CONTACT_COLUMNS))


def workspace_occlusion(ws_root, image_ids: list[str], schema, causal: Iterable[str], *,
                        max_images: int = MAX_CONTACT_IMAGES, seed: int = 0) -> tuple[pd.DataFrame, dict[str, str]]:
    """(:func:`mask_contacts` rows, :func:`hidden_presence`) over a seeded sample of a
    segmented workspace's label maps."""
    import cv2

    from biasaudit.core.progress import progress
    from biasaudit.segment.pipeline import load_part_map

    causal = [c for c in causal if c in schema.classes.values()]
    if not causal or not image_ids:
        return pd.DataFrame(columns=list(CONTACT_COLUMNS)), {}
    ids = list(image_ids)
    if len(ids) > max_images:
        pick = np.sort(np.random.default_rng(seed).choice(len(ids), max_images, replace=False))
        ids = [ids[i] for i in pick]
    frames, grids = [], {}
    for i in progress(ids, desc="occlusion", unit="img"):
        lm = load_part_map(ws_root, i)
        frames.append(mask_contacts(lm, schema, causal=causal, image_id=i))
        grids[i] = cv2.resize(np.asarray(lm, np.uint16), (GRID, GRID), interpolation=cv2.INTER_NEAREST)
    contacts = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=list(CONTACT_COLUMNS))
    return contacts, hidden_presence(grids, schema, causal)


#: label maps are compared on a GRID × GRID raster (nearest), so images of any size agree
GRID = 32
#: a pixel of this grid is in a part's usual place when the part covers it in this share of
#: the images where the part is present
USUAL_PLACE = 0.3
#: a missing part is hidden when the causal part covers this share of its usual place ...
MIN_HIDDEN = 0.5
#: ... in at least this share of the images where the part is missing
MIN_HIDDEN_SHARE = 0.5


def hidden_presence(grids: dict[str, np.ndarray], schema, causal: Iterable[str], *,
                    min_hidden: float = MIN_HIDDEN, min_share: float = MIN_HIDDEN_SHARE) -> dict[str, str]:
    """part → why its absence is the causal part hiding it (see the module docstring).

    ``grids``: image id → label map resampled to a common small raster.

    >>> from biasaudit.core.schema import Schema
    >>> schema = Schema("toy", {0: "background", 1: "eye", 2: "eye_g", 3: "hair"})
    >>> seen = np.zeros((8, 8), np.uint8); seen[3:5, 2:6] = 1; seen[0:2] = 3
    >>> hidden = seen.copy(); hidden[2:6, 1:7] = 2  # tinted glasses over the eye
    >>> bald = seen.copy(); bald[0:2] = 0
    >>> grids = {"a": seen, "b": hidden, "c": hidden, "d": bald}
    >>> hidden_presence(grids, schema, {"eye_g"})
    {'eye': 'missing in 2 images, hidden under the causal part eye_g in 100% of them'}
    """
    names = {cid: name for cid, name in schema.classes.items() if cid != 0}
    ids = {name: cid for cid, name in names.items()}
    causal_ids = [ids[c] for c in sorted(causal) if c in ids]
    if not grids or not causal_ids:
        return {}
    stack = np.stack(list(grids.values()))
    out: dict[str, str] = {}
    for cid, name in sorted(names.items()):
        if name in causal:
            continue
        mine = stack == cid
        present = mine.any(axis=(1, 2))
        if present.sum() < 2 or present.all():
            continue
        usual = mine[present].mean(axis=0) >= USUAL_PLACE
        if not usual.any():
            continue
        missing = stack[~present]
        reasons = []
        for c in causal_ids:
            cover = (missing == c)[:, usual].mean(axis=1)
            share = float((cover >= min_hidden).mean())
            if share >= min_share:
                reasons.append(f"missing in {len(missing)} images, hidden under the causal part {names[c]} "
                               f"in {share:.0%} of them")
        if reasons:
            out[name] = "; ".join(reasons)
    return out


def occlusion_confounding(
    contacts: pd.DataFrame, causal: Iterable[str], *, segments: pd.DataFrame | None = None,
    min_contact: float = MIN_CONTACT, min_share: float = MIN_SHARE,
) -> dict[str, str]:
    """part → why its geometry follows a causal part (see the module docstring).

    The share counts images where the causal part is present (and, given ``segments``,
    the part too); a part in contact in no image is not listed.
    """
    causal = set(causal)
    out: dict[str, list[str]] = {}
    if contacts.empty:
        return {}
    present = None
    if segments is not None:
        seg = segments[segments["present"].astype(bool)]
        present = set(zip(seg["image"].astype(str), seg["part"].astype(str), strict=True))
    for c, rows in contacts.groupby("causal", sort=True):
        images = rows["image"].unique()
        for part, prow in rows.groupby("part", sort=True):
            if part in causal or part == "":
                continue
            if present is not None:
                both = [i for i in images if (i, part) in present]
            else:
                both = list(images)
            if not both:
                continue
            touching = prow.set_index("image")["contact"].reindex(both).fillna(0.0)
            hit = touching >= min_contact
            share = float(hit.mean())
            if share >= min_share:
                median = float(touching[hit].median())
                out.setdefault(str(part), []).append(
                    f"the causal part {c} borders it along {median:.0%} of its outline in {share:.0%} of images")
    return {part: "; ".join(reasons) for part, reasons in sorted(out.items())}


def node_confounding(node_parts: dict[str, tuple[str, ...]], part_reasons: dict[str, str]) -> dict[str, str]:
    """A node is occluded where any of its parts is."""
    out = dict(part_reasons)
    for node, parts in node_parts.items():
        hits = [f"{p}: {part_reasons[p]}" for p in parts if p in part_reasons]
        if hits and node not in out:
            out[node] = "; ".join(hits)
    return out
