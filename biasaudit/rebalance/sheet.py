"""Contact sheets of synthesized samples: each one beside its base and its donor.

Rows of triplets *synthesized | base | donor*, every image scaled to a common height,
with a caption naming the value made, the action and the kind (new / edited).

>>> picture = rebalance_sheet("NEW", n=16)  # doctest: +SKIP
>>> write_rebalance_sheet("NEW", "reports/rebalance_hair.png", n=16)  # doctest: +SKIP
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

_CAPTION_H = 16


def rebalance_sheet(new: str | Path, *, n: int = 16, cell: int = 128, cols: int = 2, seed: int = 0,
                    kinds: tuple[str, ...] = ("new", "edited"), zoom: float | None = None) -> np.ndarray:
    """An RGB picture of ``n`` samples of ``NEW/rebalance.json`` (a seeded random choice,
    new samples first), ``cols`` triplets per row. ``zoom`` crops every image to a square
    ``zoom`` times the target part's box around it (small parts in large photos)."""
    import cv2

    from biasaudit.core.schema import load_schema
    from biasaudit.data import open_dataset, read_image, read_mask

    new = Path(new)
    doc = json.loads((new / "rebalance.json").read_text("utf-8"))
    samples = [s for s in doc["samples"] if s["kind"] in kinds]
    rng = np.random.default_rng(seed)
    chosen = [samples[i] for i in sorted(rng.choice(len(samples), min(n, len(samples)), replace=False))]
    chosen.sort(key=lambda s: (s["kind"] != "new", s["image"]))
    source = open_dataset(doc["source"])
    paths = {s.image_id: s.image_path for s in source.samples}
    samples_by_id = {s.image_id: s for s in source.samples}
    rows = (len(chosen) + cols - 1) // cols

    def fit(img: np.ndarray) -> np.ndarray:
        h, w = img.shape[:2]
        scale = cell / max(h, w)
        img = cv2.resize(img, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)
        out = np.full((cell, cell, 3), 255, np.uint8)
        y, x = (cell - img.shape[0]) // 2, (cell - img.shape[1]) // 2
        out[y:y + img.shape[0], x:x + img.shape[1]] = img
        return out

    gap = 8
    width = cols * (3 * cell + gap)
    sheet = np.full((rows * (cell + _CAPTION_H), width, 3), 255, np.uint8)
    for k, s in enumerate(chosen):
        r, c = divmod(k, cols)
        y, x = r * (cell + _CAPTION_H), c * (3 * cell + gap)
        trio = [read_image(new / "images" / s["image"]), read_image(paths[s["base"]]), read_image(paths[s["donor"]])]
        if zoom:
            part = load_schema(new / "schema.json").id_of(doc["settings"]["target"])
            new_mask = read_mask(type(source.samples[0])(s["image"], new / "images" / s["image"],
                                                         _mask_ref(new / "masks" / Path(s["image"]).with_suffix(".png"))),
                                 load_schema(new / "schema.json"))
            base_mask = read_mask(samples_by_id[s["base"]], source.schema)
            donor_mask = read_mask(samples_by_id[s["donor"]], source.schema)
            box = _box(new_mask == part) or _box(base_mask == part)
            trio = [_crop(trio[0], box, zoom), _crop(trio[1], box, zoom),
                    _crop(trio[2], _box(donor_mask == part) or box, zoom)]
        for j, img in enumerate(trio):
            sheet[y:y + cell, x + j * cell:x + (j + 1) * cell] = fit(img)
        text = f"{s['attribute_value']} ({s['action']}, {s['kind']}) | base | donor"
        cv2.putText(sheet, text, (x + 2, y + cell + 12), cv2.FONT_HERSHEY_PLAIN, 0.8, (0, 0, 0), 1, cv2.LINE_AA)
    return sheet


def _mask_ref(path: Path):
    from biasaudit.data import MaskRef

    return MaskRef(kind="label_map", path=path)


def _box(region: np.ndarray) -> tuple[int, int, int, int] | None:
    if not region.any():
        return None
    ys, xs = np.nonzero(region)
    return int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1


def _crop(img: np.ndarray, box, zoom: float) -> np.ndarray:
    if box is None:
        return img
    x0, y0, x1, y1 = box
    side = int(max(x1 - x0, y1 - y0) * zoom)
    cx, cy = (x0 + x1) // 2, (y0 + y1) // 2
    h, w = img.shape[:2]
    side = min(side, h, w)
    x = int(np.clip(cx - side // 2, 0, w - side))
    y = int(np.clip(cy - side // 2, 0, h - side))
    return img[y:y + side, x:x + side]


def write_rebalance_sheet(new: str | Path, out: str | Path, **kwargs) -> Path:
    """:func:`rebalance_sheet` saved as a PNG (atomically)."""
    import os

    from PIL import Image

    from biasaudit.core.io import atomic_path

    out = Path(out)
    with atomic_path(out) as tmp:
        with open(tmp, "wb") as fh:
            Image.fromarray(rebalance_sheet(new, **kwargs)).save(fh, format="PNG")
        os.chmod(tmp, 0o644)  # a picture for people, not a private temp file
    return out
