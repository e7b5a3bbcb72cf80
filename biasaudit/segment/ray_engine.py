"""Segmentation and part statistics as one Ray Data ``map_batches`` stage (``--engine ray``).

Each batch of images is decoded, looked up in the mask cache, segmented and described
(:func:`biasaudit.segment.stats.part_statistics_columns`) where the batch runs. A model
segmenter (SegFormer, MediaPipe) is built once per actor of an actor pool, one GPU per
actor when the cluster has GPUs; the dataset's own masks are read by plain Ray tasks.
Results come back in the order of the images, and :func:`biasaudit.segment.pipeline`
writes them exactly as the local engine does.

>>> from biasaudit.core.engine import use_engine
>>> with use_engine("ray"):                                   # doctest: +SKIP
...     segment_dataset("DATA", "WS", segmenter="mediapipe-face")
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import pandas as pd

from biasaudit.segment.base import Segmenter, SegmentFailure

#: label maps per Ray Data batch for the stored-masks stage (cheap per image: large batches
#: keep Ray's per-task overhead small)
MASK_BATCH = 64


def ray_plan(segments_path: Path, images: list[str], *, sha_of: dict[str, str], sources: dict[str, str],
             legacy: pd.DataFrame | None = None) -> list[str]:
    """The images of ``images`` (manifest order) that have no current rows yet: those the
    Ray stage segments. Only the ``image, sha256, source`` columns of the previous rows
    are read, shard by shard (``legacy``: an older workspace's single table)."""
    from biasaudit.core.io import parquet_parts

    previous: dict[str, tuple[str, str]] = {}
    frames = [legacy] if legacy is not None else (
        _key_columns(part) for part in parquet_parts(segments_path))
    for rows in frames:
        if rows is None or not len(rows):
            continue
        first = rows.drop_duplicates("image")
        previous.update(zip(first["image"].astype(str),
                            zip(first["sha256"].astype(str), first["source"].astype(str), strict=True), strict=True))
    return [img for img in images if img in sha_of and previous.get(img) != (sha_of[img], sources.get(img))]


def _key_columns(path: Path) -> pd.DataFrame | None:
    try:
        return pd.read_parquet(path, columns=["image", "sha256", "source"])
    except (OSError, ValueError, KeyError):
        return None  # an unreadable shard is recomputed


class RaySegmentStream:
    """One Ray Data stage over the planned images (see :func:`ray_plan`), consumed shard
    by shard in the same order: :meth:`take` hands over the rows of the images a shard
    needs. The actors (and their models) live for the whole run, not one shard.

    ``rebuild`` makes the segmenter on a worker (a model cannot travel between
    machines); None sends ``seg`` itself, which then must be picklable. ``batch_size``:
    images per actor call (None: the default of the actors' device, 64 on GPUs).
    """

    def __init__(self, seg: Segmenter, samples: list, *, sha_of: dict[str, str], sources: dict[str, str],
                 masks_dir: Path | None, rebuild: Callable[[], Segmenter] | None, device: str = "auto",
                 batch_size: int | None = None) -> None:
        from biasaudit.core.engine import ray_map_batches, ray_resources, ray_session

        ray_session()
        self.sha_of, self.sources = sha_of, sources
        make = rebuild if rebuild is not None else partial(_same, seg)
        items = [{"sample": s, "sha": sha_of[s.image_id]} for s in samples]
        if seg.needs_images:
            from biasaudit.segment.base import DEFAULT_BATCH_SIZE

            _, gpus = ray_resources()
            on_gpus = bool(gpus) and device != "cpu"
            # the driver may have no GPU: the actors' device sets the default batch, not its own
            batch = batch_size or (DEFAULT_BATCH_SIZE["cuda"] if on_gpus else seg.batch_size)
            results = ray_map_batches(
                _SegmentActor, items, batch_size=max(1, batch),
                gpus_per_actor=1.0 if on_gpus else 0.0,
                constructor_kwargs={"make": make, "masks_dir": None if masks_dir is None else str(masks_dir)},
            )
        else:
            results = ray_map_batches(partial(_segment_stored, make=make), items, batch_size=MASK_BATCH)
        self._results = zip((s.image_id for s in samples), results, strict=True)
        self._planned = {s.image_id for s in samples}
        self._ready: dict[str, dict] = {}

    def take(self, ids: list[str], columns: dict[str, list], failures: dict[str, str],
             counts: dict[str, int]) -> list[str]:
        """Append the rows of ``ids`` to ``columns`` (failures and segmented/cached counts
        too); return the ids the stage was not planned for, for the caller to do itself."""
        unplanned = []
        for img in ids:
            if img not in self._planned:
                unplanned.append(img)
                continue
            while img not in self._ready:
                got, out = next(self._results)
                self._ready[got] = out
            out = self._ready.pop(img)
            self._planned.discard(img)
            if "failure" in out:
                failures[img] = out["failure"]
                continue
            cols = out["cols"]
            n = len(cols["image"])
            cols["sha256"] = [self.sha_of[img]] * n
            cols["source"] = [self.sources[img]] * n
            for c, vals in cols.items():
                columns.setdefault(c, []).extend(vals)
            if out["how"] in counts:
                counts[out["how"]] += 1
        return unplanned


def _same(seg: Segmenter) -> Segmenter:  # noqa: D103  (a picklable "return seg")
    return seg


def _segment_items(seg: Segmenter, items: list[dict], cache) -> list[dict[str, Any]]:
    """One batch, as the local loop does it: read, reuse cached maps, segment the rest, describe."""
    from biasaudit.segment.pipeline import decode_sample, label_maps
    from biasaudit.segment.stats import part_statistics_columns

    samples = [it["sample"] for it in items]
    shas = [it.get("sha") for it in items]
    decoded = [decode_sample(seg, s, sha, cache) for s, sha in zip(samples, shas, strict=True)]
    maps, how = label_maps(seg, samples, decoded, shas, cache)
    results = []
    for k, s in enumerate(samples):
        if isinstance(maps[k], SegmentFailure):
            results.append({"failure": maps[k].message})
        else:
            cols = part_statistics_columns(decoded[k].image, maps[k], seg.schema, image_id=s.image_id)
            results.append({"cols": cols, "how": how[k]})
    return results


def _segment_stored(items: list[dict], make: Callable[[], Segmenter]) -> list[dict[str, Any]]:
    """Ray task: the dataset's own masks (no model, nothing cached)."""
    seg = make()
    try:
        return _segment_items(seg, items, None)
    finally:
        seg.close()


class _SegmentActor:
    """Ray Data actor: one model segmenter (and its mask cache) per actor."""

    def __init__(self, make: Callable[[], Segmenter], masks_dir: str | None) -> None:
        from biasaudit.segment.cache import MaskCache

        self.seg = make()
        self.cache = None if masks_dir is None else MaskCache(masks_dir, fingerprint=self.seg.fingerprint)

    def __call__(self, items: list[dict]) -> list[dict[str, Any]]:
        return _segment_items(self.seg, items, self.cache)
