"""LIP (Look Into Person) in its official layout, read in place::

    TrainVal_images/{train,val}_images/<id>.jpg
    TrainVal_parsing_annotations/{train,val}_segmentations/<id>.png   values 0..19

The archives are often unpacked one level deeper (``TrainVal_images/TrainVal_images/…``)
and some copies keep the annotation folders named ``{train,val}_images`` inside
``TrainVal_parsing_annotations``; both are found. The flat pairing used by many training
repositories (``train_images/`` + ``train_segmentations/`` side by side under DATA) is
accepted too. Image ids are ``<split>_images/<file>``, with a ``split`` label column.
The test split (``Testing_images``) has no parsing annotations and is not read.
"""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from biasaudit.core.errors import DatasetError
from biasaudit.data.adapters._common import resolve_schema, scan_images, with_label_maps
from biasaudit.data.dataset import Dataset, SampleList

NAME = "lip"
SPLITS = ("train", "val")
_MAX_DEPTH = 4


def _folders(root: Path) -> list[tuple[Path, Path]]:
    """Relative folder paths under root (bounded depth, no symlinks) with their names."""
    out = []
    base_depth = len(root.parts)
    for dirpath, dirnames, _ in os.walk(root):
        here = Path(dirpath)
        if len(here.parts) - base_depth >= _MAX_DEPTH:
            dirnames[:] = []
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for d in dirnames:
            out.append((here / d, here.relative_to(root)))
    return out


def find_pairs(root: Path) -> list[tuple[str, Path, Path | None]]:
    """(split, image folder, annotation folder or None) for each split present."""
    images: dict[str, Path] = {}
    annotations: dict[str, Path] = {}
    for folder, parent in _folders(root):
        in_annotations = any("parsing" in p.lower() or "segmentation" in p.lower() for p in parent.parts)
        for split in SPLITS:
            if folder.name == f"{split}_segmentations" or (in_annotations and folder.name == f"{split}_images"):
                annotations.setdefault(split, folder)
            elif folder.name == f"{split}_images" and not in_annotations:
                images.setdefault(split, folder)
    return [(split, images[split], annotations.get(split)) for split in SPLITS if split in images]


def detect(root: Path) -> bool:
    if (root / "TrainVal_images").is_dir() or (root / "TrainVal_parsing_annotations").is_dir():
        return True
    return any(
        (root / f"{s}_images").is_dir() and (root / f"{s}_segmentations").is_dir() for s in SPLITS
    )


def open_lip(root: Path, *, schema=None) -> Dataset:
    pairs = find_pairs(root)
    if not pairs:
        raise DatasetError(
            f"{root} holds no LIP image folders; expected TrainVal_images/train_images/ and/or "
            f"TrainVal_images/val_images/ (or train_images/ beside train_segmentations/)."
        )
    resolved = resolve_schema(schema, default=NAME, root=root)
    samples, problems, split_of = SampleList(root=root), [], {}
    for split, image_dir, ann_dir in pairs:
        # Ids keep the split folder so train and val files with the same name stay distinct.
        scanned = scan_images(image_dir, root=root, id_base=image_dir.parent)
        problems.extend(scanned.problems)
        if ann_dir is None:
            ann_dir = image_dir.parent / f"{split}_segmentations"
        paired, mask_problems = with_label_maps(scanned.samples, ann_dir, root=root, id_base=image_dir)
        problems.extend(mask_problems)
        for s in paired:
            split_of[s.image_id] = split
            samples.append(s)
    labels = pd.DataFrame({"split": pd.Series(split_of, dtype=object)})
    labels.index.name = "image"
    return Dataset(root=root, layout=NAME, schema=resolved, samples=samples, labels=labels,
                   problems=problems, masks_expected=True)
