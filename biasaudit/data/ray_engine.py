"""Validation as a Ray Data ``map_batches`` stage (``--engine ray``): every image and mask
is decoded and hashed where its batch runs; the rows come back in the samples' order and
:func:`biasaudit.data.validate.validate_dataset` assembles the manifest from them exactly
as it does from its own threads.
"""

from __future__ import annotations

from dataclasses import replace
from functools import partial
from typing import Any

#: images per Ray task: decoding one takes milliseconds, so batches amortise the task overhead
VALIDATE_BATCH = 64


def inspect_on_ray(dataset, max_pixels: int | None) -> list[dict[str, Any]]:
    """The per-image validation rows of ``dataset`` (see ``validate._inspect``), in order."""
    from biasaudit.core.engine import ray_map_batches

    # the workers need the dataset's root, schema and declared sizes, not its sample list
    # or label table (those travel with the batches, or not at all)
    light = replace(dataset, samples=[], labels=dataset.labels.iloc[:0], problems=[])
    rows = list(ray_map_batches(partial(_inspect_batch, dataset=light, max_pixels=max_pixels),
                                list(dataset.samples), batch_size=VALIDATE_BATCH, desc="validate (ray)"))
    for row in rows:  # JSON has no NA: the thread path's missing sizes are pd.NA
        for key in ("width", "height"):
            if row[key] is None:
                import pandas as pd

                row[key] = pd.NA
    return rows


def _inspect_batch(samples: list, dataset, max_pixels: int | None) -> list[dict[str, Any]]:
    from biasaudit.data.validate import _inspect

    return [_inspect(s, dataset, max_pixels) for s in samples]
