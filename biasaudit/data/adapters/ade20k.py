"""ADE20K, read in place in either of its two public formats.

SceneParse150 (``ADEChallengeData2016``)::

    images/{training,validation}/<name>.jpg
    annotations/{training,validation}/<name>.png    values 0..150 = ade20k-150 ids
    sceneCategories.txt                             optional, "<name> <scene>" per line

Full ADE20K (``ADE20K_2021_17_01``)::

    images/ADE/<split>/<category>/<scene>/<name>.jpg
    …/<name>_seg.png      RGB, object class = R/10*256 + G (index into the full object list)
    …/<name>.json         per-object names and their class index (``name_ndx``)

Full-format class indices are mapped to ade20k-150 ids through each image's JSON: an
object's WordNet name (``"car, auto, automobile, machine, motorcar"``) is matched to the
150-class table's names and synonyms; anything not among the 150 becomes 0. Ids are paths
relative to ``images/`` (SceneParse150) or ``images/ADE/`` (full), with ``split`` and
``scene`` label columns.
"""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import pandas as pd

from biasaudit.core.errors import DatasetError
from biasaudit.core.schema import Schema
from biasaudit.data.adapters._common import (
    attach_labels,
    read_table_text,
    rel_posix,
    resolve_schema,
    scan_images,
    walk_files,
    with_label_maps,
)
from biasaudit.data.dataset import Dataset, MaskRef, Problem, SampleList
from biasaudit.data.images import display_path

NAME = "ade20k"
SCHEMA = "ade20k-150"


def _sceneparse_base(root: Path) -> Path | None:
    for base in (root, root / "ADEChallengeData2016"):
        if (base / "images").is_dir() and (base / "annotations").is_dir():
            return base
    return None


def _full_base(root: Path) -> Path | None:
    candidates = [root / "images" / "ADE", root / "ADE"]
    candidates += sorted(p / "images" / "ADE" for p in root.glob("ADE20K_*") if p.is_dir())
    return next((c for c in candidates if c.is_dir()), None)


def detect(root: Path) -> bool:
    return _sceneparse_base(root) is not None or _full_base(root) is not None


def _name_lookup(schema: Schema) -> dict[str, int]:
    lookup: dict[str, int] = {}
    for class_id, name in schema.classes.items():
        if class_id == 0:
            continue
        synonyms = schema.aliases.get(name, ())
        if synonyms:
            lookup.setdefault(", ".join(synonyms), class_id)
            lookup.setdefault(synonyms[0], class_id)
        lookup.setdefault(name, class_id)
        lookup.setdefault(name.replace("_", " "), class_id)
    return lookup


def class_id_for(full_name: str, lookup: dict[str, int]) -> int:
    """The ade20k-150 id of a full-ADE20K object name, or 0 when it is not one of the 150.

    >>> class_id_for("car, auto, automobile, machine, motorcar", _name_lookup(load_schema("ade20k-150")))  # doctest: +SKIP
    21
    """
    name = full_name.strip()
    if name in lookup:
        return lookup[name]
    # Only the head word: later synonyms are too loose ("wheel" is a synonym of bicycle).
    return lookup.get(name.split(",")[0].strip(), 0)


_PARTS = re.compile(r"_parts_\d+\.png$")


def _is_annotation(path: Path, base: Path) -> bool:
    """Annotation files live beside the images in the full format; they are not samples."""
    name = path.name
    if name.endswith("_seg.png") or _PARTS.search(name):
        return True
    if path.suffix.lower() == ".json" and any(path.with_suffix(e).is_file() for e in (".jpg", ".jpeg", ".png")):
        return True
    # Per-image folders (ADE_train_00016900/instance_000_….png) hold amodal instance masks.
    return any((parent.parent / f"{parent.name}.jpg").is_file() for parent in path.parents
               if parent != base and base in parent.parents)


def _read_json(path: Path) -> dict:
    data = path.read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        # Some ADE20K JSONs were written in Latin-1.
        text = data.decode("latin-1")
    return json.loads(text)


def _open_full(root: Path, base: Path, schema: Schema) -> Dataset:
    lookup = _name_lookup(schema)
    files = [p for p in walk_files(base) if not _is_annotation(p, base)]
    scanned = scan_images(base, root=root, files=files)
    problems = list(scanned.problems)
    samples = SampleList(root=root)
    labels: dict[str, dict] = {}
    for s in scanned.samples:
        stem = s.image_path.with_suffix("")
        seg = stem.parent / f"{stem.name}_seg.png"
        shown = display_path(rel_posix(s.image_path, root))
        rel_parts = Path(s.image_id).parts
        labels[s.image_id] = {
            "split": rel_parts[0] if len(rel_parts) > 1 else "",
            "scene": "/".join(rel_parts[1:-1]),
        }
        if not seg.is_file():
            problems.append(Problem(s.image_id, shown, f"has no mask: expected {display_path(rel_posix(seg, root))}; add it or remove the image."))
            samples.append(s)
            continue
        value_map: tuple[tuple[int, int], ...] = ()
        meta = stem.parent / f"{stem.name}.json"
        if meta.is_file():
            try:
                annotation = _read_json(meta)["annotation"]
                objects = annotation["object"]
                pairs = {}
                for obj in objects:
                    if int(obj.get("parts", {}).get("part_level", 0)) == 0:
                        pairs[int(obj["name_ndx"])] = class_id_for(str(obj["name"]), lookup)
                value_map = tuple(sorted(pairs.items()))
                scene = annotation.get("scene")
                if isinstance(scene, list) and scene:
                    labels[s.image_id]["scene"] = "/".join(map(str, scene))
            except (OSError, ValueError, KeyError, TypeError) as exc:
                problems.append(Problem(s.image_id, display_path(rel_posix(meta, root)), (
                    f"{meta.name} cannot be read as ADE20K annotation JSON ({type(exc).__name__}: {exc}); "
                    f"every object of this image maps to background (0). Re-copy the JSON."
                ), fatal=False))
        else:
            problems.append(Problem(s.image_id, display_path(rel_posix(meta, root)), (
                f"{meta.name} is missing, so the objects in {seg.name} cannot be named; every object "
                f"maps to background (0). Copy the JSON beside the image."
            ), fatal=False))
        samples.append(dataclasses.replace(s, mask=MaskRef(
            kind="label_map", path=seg, encoding="ade20k_rgb", value_map=value_map,
        )))
    frame = pd.DataFrame.from_dict(labels, orient="index", columns=["split", "scene"])
    frame.index.name = "image"
    return Dataset(root=root, layout=NAME, schema=schema, samples=samples, labels=frame,
                   problems=problems, masks_expected=True)


def _open_sceneparse(root: Path, base: Path, schema: Schema) -> Dataset:
    images_dir = base / "images"
    scanned = scan_images(images_dir, root=root)
    problems = list(scanned.problems)
    samples, mask_problems = with_label_maps(scanned.samples, base / "annotations", root=root, id_base=images_dir)
    problems.extend(mask_problems)
    split = {s.image_id: (Path(s.image_id).parts[0] if len(Path(s.image_id).parts) > 1 else "") for s in samples}
    labels = pd.DataFrame({"split": pd.Series(split, dtype=object)})
    scene_file = base / "sceneCategories.txt"
    if scene_file.is_file():
        rows = []
        for number, line in enumerate(read_table_text(scene_file, root=root).splitlines(), start=1):
            fields = line.split()
            if len(fields) >= 2:
                rows.append({"image": fields[0], "scene": fields[1], "_line": number})
        table = pd.DataFrame.from_records(rows, columns=["image", "scene", "_line"])
        scenes, scene_problems = attach_labels(
            samples, table, source="sceneCategories.txt", key=lambda s: Path(s.image_id).stem,
            missing_image_is_error=False,
        )
        problems.extend(scene_problems)
        labels = labels.join(scenes, how="left")
    labels.index.name = "image"
    return Dataset(root=root, layout=NAME, schema=schema, samples=samples, labels=labels,
                   problems=problems, masks_expected=True)


def open_ade20k(root: Path, *, schema=None) -> Dataset:
    resolved = resolve_schema(schema, default=SCHEMA, root=root)
    base = _sceneparse_base(root)
    if base is not None:
        return _open_sceneparse(root, base, resolved)
    full = _full_base(root)
    if full is not None:
        return _open_full(root, full, resolved)
    raise DatasetError(
        f"{root} is not an ADE20K copy: expected images/ + annotations/ (SceneParse150, "
        f"ADEChallengeData2016) or images/ADE/ (full ADE20K, e.g. ADE20K_2021_17_01/images/ADE)."
    )
