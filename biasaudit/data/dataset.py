"""The dataset object model shared by every stage.

A *layout* (native folder, CelebAMask-HQ, LIP, ADE20K, Clothing Co-Parsing) is read by
an adapter into a :class:`Dataset`: a list of :class:`Sample` (one per image, with a
:class:`MaskRef` saying where its part labels live), a label table, and the problems
found while reading the layout. Validation turns a ``Dataset`` into a manifest table.

Images are always joined on ``image`` (the id: the image's path relative to the
layout's image root, POSIX separators), never on row position.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import pandas as pd

from biasaudit.core.schema import Schema

MaskKind = Literal["label_map", "part_masks"]
MaskEncoding = Literal["index", "ade20k_rgb"]


@dataclass(frozen=True)
class MaskRef:
    """Where one image's part labels are stored.

    - ``kind="label_map"``: one image file whose pixel values are class ids
      (``encoding="index"``), or ADE20K full-format RGB (``encoding="ade20k_rgb"``,
      class = R/10*256 + G, remapped to the schema through ``value_map``).
    - ``kind="part_masks"``: one binary image per part (CelebAMask-HQ), as
      ``(class_id, path)`` pairs; later pairs paint over earlier ones.
    ``value_map`` maps raw pixel values to schema ids (unlisted values → 0) when the
    stored ids are not the schema's own.
    ``scale`` is the stored size relative to the image when a layout is known to keep
    its masks at another resolution (CelebAMask-HQ: 512 masks for 1024 images → 0.5);
    :func:`biasaudit.data.read_mask` upsamples such masks to the image's size.
    """

    kind: MaskKind
    path: Path | None = None
    parts: tuple[tuple[int, Path], ...] = ()
    encoding: MaskEncoding = "index"
    value_map: tuple[tuple[int, int], ...] = ()
    scale: float = 1.0


@dataclass(frozen=True)
class Sample:
    """One image of a dataset."""

    image_id: str
    image_path: Path
    mask: MaskRef | None = None


@dataclass(frozen=True)
class Problem:
    """Something wrong with one input, found before or during validation.

    ``image_id`` is the image it concerns (or the labels.csv entry as written);
    ``path`` is the offending file; ``message`` is a sentence saying what was expected,
    what was found and how to fix it.
    """

    image_id: str
    path: str
    message: str
    fatal: bool = True  # False: the image is still usable (e.g. it has no labels.csv row)


@dataclass
class Dataset:
    """A dataset as read by its layout adapter (nothing decoded or validated yet).

    ``schema`` is None only for a native dataset without masks and without schema.json
    (nothing needs one until a segmenter is chosen). ``labels`` is indexed by image id
    (plus entries of label rows whose image is missing, as written). ``declared_sizes``
    holds (width, height) a layout's metadata states per image; validation warns when
    the file disagrees.
    """

    root: Path
    layout: str
    schema: Schema | None
    samples: list[Sample]
    labels: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(index=pd.Index([], name="image")))
    problems: list[Problem] = field(default_factory=list)
    masks_expected: bool = False
    declared_sizes: dict[str, tuple[int, int]] = field(default_factory=dict)

    @property
    def n_images(self) -> int:
        return len(self.samples)

    def sample(self, image_id: str) -> Sample:
        for s in self.samples:
            if s.image_id == image_id:
                return s
        raise KeyError(image_id)
