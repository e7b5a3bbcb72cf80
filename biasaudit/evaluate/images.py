"""Datasets as training tensors: every image decoded and resized once into a cached
``uint8`` tensor N×3×S×S, with its label row, so seeds and baselines never decode again.

Images are squashed to S×S (no crop: a classifier must see the whole picture, and
every method sees the same pixels). Images that cannot be decoded, or whose label is
missing, are left out and listed in ``skipped``.

>>> s = load_image_set("DATA", size=64, label="Smiling")  # doctest: +SKIP
>>> s.images.shape, s.y[:3]  # doctest: +SKIP
(torch.Size([2000, 3, 64, 64]), array([1, 0, 1]))
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from biasaudit.core.errors import BiasauditError, DatasetError, ValidationError
from biasaudit.core.progress import progress
from biasaudit.data import Dataset, open_dataset, read_image


@dataclass(frozen=True, eq=False)
class ImageSet:
    """One dataset ready for training or scoring.

    ``ids`` are image ids (joined on, never row positions); ``images`` the cached tensor;
    ``labels`` the label rows of ``ids`` (indexed by id); ``segments`` holds the part
    statistics rows of every image when they were asked for (``with_parts=True``).
    """

    root: Path
    ids: tuple[str, ...]
    images: torch.Tensor
    labels: pd.DataFrame
    dataset: Dataset = field(repr=False)
    skipped: tuple[tuple[str, str], ...] = ()
    segments: pd.DataFrame | None = field(default=None, repr=False)
    part_schema: object | None = field(default=None, repr=False)
    full: tuple[np.ndarray, ...] | None = field(default=None, repr=False)
    maps: tuple[np.ndarray, ...] | None = field(default=None, repr=False)

    def __len__(self) -> int:
        return len(self.ids)


def label_vector(image_set: ImageSet, label: str, *, positive=None, where: str = "") -> tuple[np.ndarray, object]:
    """(0/1 vector, positive value) for binary label column ``label``; the positive value
    is the larger of the two (1 for 0/1 and -1/1 labels) unless given."""
    column = image_set.labels[label]
    values = sorted(pd.unique(column.dropna()).tolist())
    if positive is None:
        if len(values) != 2:
            raise ValidationError(
                f"{where or image_set.root}: --label {label} must be binary (two values); found "
                f"{len(values)} value(s): {', '.join(map(str, values[:10]))}. Choose a 0/1 label column."
            )
        positive = values[-1]
    return (column.to_numpy() == positive).astype(np.int64), positive


def load_image_set(root: str | Path, *, size: int, label: str | None = None, where: str = "",
                   with_parts: bool = False, segmenter: str = "auto", device: str = "cpu",
                   workers: int = 4, desc: str = "decode", keep_full: bool = False,
                   limit: int | None = None, seed: int = 0) -> ImageSet:
    """Decode and resize every usable image of ``root`` (any layout) once.

    ``label``: keep only images with a value in that column (raises naming the columns
    there are when it is missing). ``with_parts``: also compute the scan's part statistics
    (:func:`biasaudit.segment.stats.part_statistics_columns`) on the full-size image and
    its part map (the dataset's masks, or ``segmenter``); ``keep_full`` keeps the
    full-size images and part maps too (the probe swaps parts on them). ``limit``: at most
    that many images, drawn at random with ``seed``.
    """
    import cv2

    root = Path(root)
    shown = where or str(root)
    dataset = open_dataset(root)
    labels = dataset.labels
    labels = labels[~labels.index.duplicated()].drop(columns=["_line"], errors="ignore")
    if label is not None and label not in labels.columns:
        available = ", ".join(map(str, labels.columns[:20])) or "no labels.csv columns"
        raise DatasetError(
            f"{shown}: has no label column '{label}' (found: {available}). "
            f"Give a --label that exists in every training and test set, or add it to labels.csv."
        )
    samples = list(dataset.samples)
    skipped: list[tuple[str, str]] = []
    if label is not None:
        known = labels[label].dropna().index
        missing = [s.image_id for s in samples if s.image_id not in known]
        skipped += [(i, f"no value for '{label}'") for i in missing]
        samples = [s for s in samples if s.image_id in known]
    if limit is not None and len(samples) > limit:
        keep_idx = np.sort(np.random.default_rng(seed).choice(len(samples), limit, replace=False))
        samples = [samples[i] for i in keep_idx]
    seg = None
    if with_parts:
        seg = _part_segmenter(dataset, segmenter, device=device, where=shown)

    def decode(sample):
        try:
            rgb = read_image(sample.image_path)
        except BiasauditError as exc:
            return None, str(exc), None
        interp = cv2.INTER_AREA if max(rgb.shape[:2]) > size else cv2.INTER_LINEAR
        small = cv2.resize(rgb, (size, size), interpolation=interp)
        return small, "", rgb if (with_parts or keep_full) else None

    ids: list[str] = []
    arrays: list[np.ndarray] = []
    seg_cols: dict[str, list] = {}
    full: list[np.ndarray] = []
    maps_kept: list[np.ndarray] = []
    chunk = 64
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for lo in progress(range(0, len(samples), chunk), desc=desc, total=(len(samples) + chunk - 1) // chunk,
                           unit="batch"):
            batch = samples[lo : lo + chunk]
            decoded = list(pool.map(decode, batch))
            keep = [(s, d) for s, d in zip(batch, decoded, strict=True) if d[0] is not None]
            skipped += [(s.image_id, d[1]) for s, d in zip(batch, decoded, strict=True) if d[0] is None]
            if seg is not None and keep:
                maps = seg([s for s, _ in keep], [d[2] for _, d in keep])
                ok = []
                for (s, d), lm in zip(keep, maps, strict=True):
                    if isinstance(lm, str):
                        skipped.append((s.image_id, lm))
                        continue
                    ok.append((s, d))
                    _add_stats(seg_cols, d[2], lm, s.image_id, seg.schema)
                    if keep_full:
                        maps_kept.append(lm)
                keep = ok
            ids += [s.image_id for s, _ in keep]
            arrays += [d[0] for _, d in keep]
            if keep_full:
                full += [d[2] for _, d in keep]
    if not ids:
        first = f" First problem: {skipped[0][0]}: {skipped[0][1]}" if skipped else ""
        raise DatasetError(f"{shown}: no usable image (every image failed to decode or lacks a label).{first}")
    images = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()
    segments = None
    if seg is not None:
        from biasaudit.segment.stats import segments_frame

        segments = segments_frame(seg_cols)
    return ImageSet(root=root, ids=tuple(ids), images=images, labels=labels.reindex(ids), dataset=dataset,
                    skipped=tuple(skipped), segments=segments,
                    part_schema=seg.schema if seg is not None else None,
                    full=tuple(full) if keep_full else None,
                    maps=tuple(maps_kept) if keep_full and seg is not None else None)


def _add_stats(cols: dict[str, list], rgb: np.ndarray, label_map: np.ndarray, image_id: str, schema) -> None:
    from biasaudit.segment.stats import part_statistics_columns

    for key, values in part_statistics_columns(rgb, label_map, schema, image_id=image_id).items():
        cols.setdefault(key, []).extend(values)


@dataclass(frozen=True)
class _PartMaps:
    """Callable (samples, full-size images) → label map or an error string per image."""

    schema: object
    dataset: Dataset
    model: object | None

    def __call__(self, samples, images):
        from biasaudit.data import MaskReadError
        from biasaudit.data.images import mask_array

        if self.model is None:
            out = []
            for s, rgb in zip(samples, images, strict=True):
                try:
                    out.append(mask_array(s, self.schema, image_size=(rgb.shape[1], rgb.shape[0])))
                except MaskReadError as exc:
                    out.append(str(exc))
            return out
        from biasaudit.segment import SegmentFailure

        maps = self.model.segment_samples(samples, images)
        return [m.message if isinstance(m, SegmentFailure) else m for m in maps]


def _part_segmenter(dataset: Dataset, spec: str, *, device: str, where: str) -> _PartMaps:
    """The dataset's own masks (``auto`` with masks, or ``masks``), else a model segmenter."""
    has_masks = any(s.mask is not None for s in dataset.samples)
    if spec in ("auto", "masks"):
        if not has_masks:
            raise ValidationError(
                f"{where}: has no part masks, so --sensitive part:... cannot be measured from them. "
                f"Give --segmenter (the scan's, e.g. mediapipe-face or segformer:DIR), or use a label column."
            )
        return _PartMaps(dataset.schema, dataset, None)
    from biasaudit.segment import make_segmenter

    if spec == "mediapipe-face":
        from biasaudit.core.schema import load_schema

        schema = load_schema("celebamask-hq")
    else:
        schema = dataset.schema
        if schema is None:
            raise ValidationError(f"{where}: has no schema.json; --segmenter {spec} needs to know the part names.")
    model = make_segmenter(spec, schema=schema, device=device)
    return _PartMaps(model.schema, dataset, model)
