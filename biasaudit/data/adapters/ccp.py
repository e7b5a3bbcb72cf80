"""Clothing Co-Parsing (CCP) as kept in ``../shared/data/real/ccp``, read in place::

    photos/<id>.jpg            street-fashion photos
    labels_png/<id>.png        8-bit label maps, pixel value = CCP id (0 = null = background)
    present_labels.csv         image,width,height,labels_present ("hair;skin;…")
    label_list.csv             id,name (59 classes)

Ids are the photo file names (``0001.jpg``). ``present_labels.csv`` becomes one 0/1
integer column per CCP class name (``hair``, ``sunglasses``, ``t-shirt`` …; a class in no
image is a column of zeros). Its width/height must agree with the photo (else a warning).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from biasaudit.core.errors import DatasetError
from biasaudit.data.adapters._common import (
    attach_labels,
    read_labels_csv,
    resolve_schema,
    scan_images,
    with_label_maps,
)
from biasaudit.data.dataset import Dataset, Problem

NAME = "ccp"


def detect(root: Path) -> bool:
    return (root / "photos").is_dir() and any(
        (root / n).exists() for n in ("labels_png", "present_labels.csv", "label_list.csv")
    )


def _check_label_list(path: Path, schema, *, root: Path) -> None:
    table = read_labels_csv(path, root=root, id_column="id")
    names = {int(i): str(n) for i, n in zip(table["id"], table["name"], strict=True)}
    expected = {i: ("null" if i == 0 else n) for i, n in schema.classes.items()}
    if names != expected:
        diff = sorted(set(names.items()) ^ set(expected.items()))[:6]
        raise DatasetError(
            f"label_list.csv does not match schema '{schema.name}' (differences: {diff}); pass the "
            f"matching --schema or restore the original label_list.csv."
        )


def _declared_sizes(table: pd.DataFrame, ids) -> dict[str, tuple[int, int]]:
    if not {"width", "height"} <= set(table.columns):
        return {}
    by_stem = {}
    for entry, w, h in zip(table["image"], table["width"], table["height"], strict=True):
        try:
            by_stem.setdefault(str(entry), (int(w), int(h)))
        except (TypeError, ValueError):
            continue
    return {sid: by_stem[Path(sid).stem] for sid in ids if Path(sid).stem in by_stem}


def open_ccp(root: Path, *, schema=None) -> Dataset:
    photos = root / "photos"
    if not photos.is_dir():
        raise DatasetError(f"{root} has no photos/ folder; this is not a Clothing Co-Parsing copy.")
    resolved = resolve_schema(schema, default=NAME, root=root)
    if (root / "label_list.csv").is_file() and schema is None:
        _check_label_list(root / "label_list.csv", resolved, root=root)
    scanned = scan_images(photos, root=root)
    problems = list(scanned.problems)
    samples, mask_problems = with_label_maps(scanned.samples, root / "labels_png", root=root, id_base=photos)
    problems.extend(mask_problems)
    labels = pd.DataFrame(index=pd.Index([], name="image"))
    present_file = root / "present_labels.csv"
    if present_file.is_file():
        table = read_labels_csv(present_file, root=root)
        classes = list(resolved.part_names)
        tags = table.get("labels_present", pd.Series([""] * len(table)))
        rows = []
        for entry, line, text in zip(table["image"], table["_line"], tags, strict=True):
            present = {t.strip() for t in str(text).split(";") if t.strip()}
            unknown = sorted(present - set(classes))
            if unknown:
                problems.append(Problem(str(entry), "present_labels.csv", (
                    f"present_labels.csv line {line} names classes {unknown} that are not in schema '{resolved.name}'; they are ignored."
                ), fatal=False))
            rows.append({"image": entry, **{c: int(c in present) for c in classes}, "_line": line})
        frame = pd.DataFrame.from_records(rows, columns=["image", *classes, "_line"])
        labels, label_problems = attach_labels(
            samples, frame, source="present_labels.csv", key=lambda s: Path(s.image_id).stem,
        )
        problems.extend(label_problems)
        declared = _declared_sizes(table, labels.index)
    else:
        declared = {}
    return Dataset(root=root, layout=NAME, schema=resolved, samples=samples, labels=labels,
                   problems=problems, masks_expected=True, declared_sizes=declared)
