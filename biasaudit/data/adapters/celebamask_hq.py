"""CelebAMask-HQ in its official layout, read in place::

    CelebAMask-HQ/CelebA-HQ-img/<n>.jpg                       1024×1024 faces, n = 0..29999
    CelebAMask-HQ/CelebAMask-HQ-mask-anno/<n // 2000>/<n:05d>_<part>.png
                                                              512×512 binary mask per part
    CelebAMask-HQ/CelebAMask-HQ-attribute-anno.txt            count, 40 names, "<n>.jpg ±1 …"

Image ids are the file names (``0.jpg``). A partial copy is normal: attribute rows for
images that are absent become one note, not 30,000 errors. Part masks are painted in the reference order
of the dataset's ``g_mask.py`` (skin first, cloth last; later parts win) and are stored
at half the image size: their documented ``MaskRef.scale`` is 0.5, and ``read_mask``
upsamples them. Attributes become 0/1 integer columns (the file's -1 → 0).
``root`` may be the ``CelebAMask-HQ`` folder or its parent.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pandas as pd

from biasaudit.core.errors import DatasetError
from biasaudit.data.adapters._common import (
    attach_labels,
    iter_files,
    read_table_text,
    rel_posix,
    resolve_schema,
    scan_images,
)
from biasaudit.data.dataset import Dataset, MaskRef, Problem, SampleList
from biasaudit.data.images import display_path

NAME = "celebamask-hq"
IMAGE_DIR = "CelebA-HQ-img"
MASK_DIR = "CelebAMask-HQ-mask-anno"
ATTRIBUTE_FILE = "CelebAMask-HQ-attribute-anno.txt"
MASK_SCALE = 0.5
PART_ORDER = (
    "skin", "nose", "eye_g", "l_eye", "r_eye", "l_brow", "r_brow", "l_ear", "r_ear",
    "mouth", "u_lip", "l_lip", "hair", "hat", "ear_r", "neck_l", "neck", "cloth",
)
_MASK_NAME = re.compile(r"^(\d+)_([a-z_]+)\.png$")


def _base(root: Path) -> Path | None:
    for base in (root, root / "CelebAMask-HQ"):
        if (base / IMAGE_DIR).is_dir():
            return base
    return None


def detect(root: Path) -> bool:
    return _base(root) is not None


def _read_attributes(path: Path, *, root: Path) -> tuple[pd.DataFrame, list[Problem]]:
    shown = display_path(rel_posix(path, root))
    lines = read_table_text(path, root=root).splitlines()
    if len(lines) < 2:
        raise DatasetError(f"{shown} has {len(lines)} lines; expected a count line, a line of attribute names, then one row per image.")
    names = lines[1].split()
    problems: list[Problem] = []
    records = []
    for number, text in enumerate(lines[2:], start=3):
        fields = text.split()
        if not fields:
            continue
        entry, values = fields[0], fields[1:]
        if len(values) != len(names) or any(v not in ("1", "-1", "0") for v in values):
            problems.append(Problem(entry, ATTRIBUTE_FILE, (
                f"line {number} of {ATTRIBUTE_FILE} has {len(values)} values ({' '.join(values[:4])} …); "
                f"expected {len(names)} values of 1 or -1; fix the row."
            )))
            continue
        records.append({"image": entry, **{n: int(v == "1") for n, v in zip(names, values, strict=True)}, "_line": number})
    frame = pd.DataFrame.from_records(records, columns=["image", *names, "_line"])
    for n in names:
        frame[n] = frame[n].astype("int64")
    return frame, problems


def open_celebamask_hq(root: Path, *, schema=None) -> Dataset:
    base = _base(root)
    if base is None:
        raise DatasetError(f"{root} has no {IMAGE_DIR}/ folder (nor CelebAMask-HQ/{IMAGE_DIR}/); this is not a CelebAMask-HQ copy.")
    resolved = resolve_schema(schema, default=NAME, root=root)
    scanned = scan_images(base / IMAGE_DIR, root=root)
    samples, problems = scanned.samples, list(scanned.problems)

    number_of = {s.image_id: int(Path(s.image_id).stem) for s in samples if Path(s.image_id).stem.isdigit()}
    wanted = set(number_of.values())
    parts: dict[int, dict[str, str]] = {}  # paths as text: a Path object weighs several times more
    mask_root = base / MASK_DIR
    if mask_root.is_dir():
        for path in iter_files(mask_root):
            m = _MASK_NAME.match(path.name)
            shown = display_path(rel_posix(path, root))
            if m is None or m.group(2) not in PART_ORDER:
                problems.append(Problem(shown, shown, (
                    f"is not a CelebAMask-HQ part mask; expected <number:05d>_<part>.png with a part "
                    f"among {', '.join(PART_ORDER)}. Move it out of {MASK_DIR}/."
                )))
                continue
            number = int(m.group(1))
            if number not in wanted:
                problems.append(Problem(shown, shown, f"is a part mask for image {number}.jpg, which is not in {IMAGE_DIR}/; add the image or remove the mask."))
                continue
            parts.setdefault(number, {})[m.group(2)] = str(path)
    out = SampleList(root=root)
    for s in samples:
        found = parts.get(number_of.get(s.image_id, -1))
        if not found:
            problems.append(Problem(s.image_id, display_path(rel_posix(s.image_path, root)), (
                f"has no part masks: expected {MASK_DIR}/<n // 2000>/<n:05d>_<part>.png files for it; "
                f"add them or remove the image."
            )))
            out.append(s)
            continue
        pairs = tuple((resolved.id_of(p), Path(found[p])) for p in PART_ORDER if p in found)
        out.append(dataclasses.replace(s, mask=MaskRef(kind="part_masks", parts=pairs, scale=MASK_SCALE)))

    labels = pd.DataFrame(index=pd.Index([], name="image"))
    attr_file = base / ATTRIBUTE_FILE
    if attr_file.is_file():
        table, attr_problems = _read_attributes(attr_file, root=root)
        problems.extend(attr_problems)
        labels, label_problems = attach_labels(
            out, table, source=ATTRIBUTE_FILE, missing_image_is_error=False,
        )
        problems.extend(label_problems)
    return Dataset(root=root, layout=NAME, schema=resolved, samples=out, labels=labels,
                   problems=problems, masks_expected=True)
