"""Layout adapters: each reads one public dataset layout in place into a :class:`Dataset`.

The registry key is the name used by ``open_dataset(layout=...)`` and ``--layout``.
Detection tries the most specific layouts first; ``native`` (a bare ``images/``) last.

>>> ds = open_dataset("DATA")  # doctest: +SKIP
>>> ds.layout, ds.n_images  # doctest: +SKIP
('native', 12)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from biasaudit.core.errors import DatasetError, ValidationError
from biasaudit.core.schema import Schema
from biasaudit.data.adapters import ade20k, ccp, celebamask_hq, lip, native
from biasaudit.data.dataset import Dataset
from biasaudit.data.images import display_path


@dataclass(frozen=True)
class Layout:
    """One dataset layout: how to recognise it and how to read it."""

    name: str
    detect: Callable[[Path], bool]
    open: Callable[..., Dataset]
    looks_for: str


# Order = detection priority (SceneParse150 also has images/, so native goes last).
LAYOUTS: dict[str, Layout] = {
    layout.name: layout
    for layout in (
        Layout("celebamask-hq", celebamask_hq.detect, celebamask_hq.open_celebamask_hq,
               "CelebA-HQ-img/ (+ CelebAMask-HQ-mask-anno/)"),
        Layout("ccp", ccp.detect, ccp.open_ccp, "photos/ + labels_png/ or present_labels.csv"),
        Layout("lip", lip.detect, lip.open_lip,
               "TrainVal_images/ + TrainVal_parsing_annotations/ (or train_images/ + train_segmentations/)"),
        Layout("ade20k", ade20k.detect, ade20k.open_ade20k,
               "images/ + annotations/ (SceneParse150) or images/ADE/ (full ADE20K)"),
        Layout("native", native.detect, native.open_native, "images/ (+ masks/, labels.csv, schema.json)"),
    )
}


def detect_layout(root: str | Path) -> str:
    """The name of the first layout whose folders ``root`` has; raises DatasetError if none."""
    root = Path(root)
    for layout in LAYOUTS.values():
        if layout.detect(root):
            return layout.name
    looked = "; ".join(f"{layout.name}: {layout.looks_for}" for layout in LAYOUTS.values())
    try:
        entries = sorted(p.name for p in root.iterdir())
    except OSError:
        entries = []
    found = "the folder is empty" if not entries else "found: " + ", ".join(map(display_path, entries[:8])) + (" …" if len(entries) > 8 else "")
    raise DatasetError(
        f"{display_path(root)} is not a dataset folder of any known layout ({found}). Looked for {looked}. "
        f"Put the images in {display_path(root)}/images/ or pass --layout."
    )


def open_dataset(
    root: str | Path, *, layout: str = "auto", schema: str | Path | Schema | None = None
) -> Dataset:
    """Read the dataset at ``root`` in place (nothing is decoded, nothing is written).

    ``layout`` is ``auto`` (detect) or one of :data:`LAYOUTS`; ``schema`` is a built-in
    schema name, a ``schema.json`` path or a :class:`Schema`, overriding the layout's
    default (native: ``schema.json`` if present; required when ``masks/`` exists).

    >>> ds = open_dataset("ccp", layout="ccp")  # doctest: +SKIP
    >>> ds.schema.name  # doctest: +SKIP
    'ccp'
    """
    root = Path(root)
    if not root.exists():
        raise DatasetError(f"{display_path(root)} does not exist; give the path of a dataset folder.")
    if not root.is_dir():
        raise DatasetError(f"{display_path(root)} is a file; give the dataset's folder (the one holding images/).")
    if layout == "auto":
        layout = detect_layout(root)
    if layout not in LAYOUTS:
        raise ValidationError(
            f"Unknown layout '{layout}'. Expected auto or one of: {', '.join(LAYOUTS)}."
        )
    return LAYOUTS[layout].open(root, schema=schema)


__all__ = ["LAYOUTS", "Layout", "detect_layout", "open_dataset"]
