"""The native layout (DESIGN.md §2)::

    DATA/images/<relative path>.{jpg,jpeg,png,webp,bmp}
    DATA/masks/<same relative path>.png     optional, single-channel label maps, same size
    DATA/labels.csv                         optional, column ``image`` + labels/attributes
    DATA/schema.json                        optional, the schema of the masks

>>> ds = open_native(Path("DATA"), schema=None)  # doctest: +SKIP
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from biasaudit.core.errors import DatasetError
from biasaudit.core.schema import load_schema
from biasaudit.data.adapters._common import (
    attach_labels,
    read_labels_csv,
    resolve_schema,
    scan_images,
    with_label_maps,
)
from biasaudit.data.dataset import Dataset

NAME = "native"


def detect(root: Path) -> bool:
    return (root / "images").is_dir()


def open_native(root: Path, *, schema=None) -> Dataset:
    images_dir = root / "images"
    if not images_dir.is_dir():
        raise DatasetError(f"{root} has no images/ folder; the native layout keeps its images in DATA/images/.")
    scanned = scan_images(images_dir, root=root)
    samples, problems = scanned.samples, list(scanned.problems)

    schema_file = root / "schema.json"
    default = load_schema(schema_file) if schema_file.is_file() and schema is None else None
    resolved = resolve_schema(schema, default=default, root=root)

    masks_dir = root / "masks"
    masks_expected = masks_dir.is_dir()
    if masks_expected:
        if resolved is None:
            raise DatasetError(
                f"{root} has a masks/ folder but no schema.json, so the meaning of its pixel values is "
                f"unknown; pass --schema (celebamask-hq, lip, ade20k-150, ccp or a schema.json path) "
                f"or add DATA/schema.json."
            )
        samples, mask_problems = with_label_maps(samples, masks_dir, root=root, id_base=images_dir)
        problems.extend(mask_problems)

    labels = pd.DataFrame(index=pd.Index([], name="image"))
    labels_file = root / "labels.csv"
    if labels_file.is_file():
        table = read_labels_csv(labels_file, root=root)
        labels, label_problems = attach_labels(samples, table, source="labels.csv")
        problems.extend(label_problems)

    return Dataset(
        root=root, layout=NAME, schema=resolved, samples=samples, labels=labels,
        problems=problems, masks_expected=masks_expected,
    )
