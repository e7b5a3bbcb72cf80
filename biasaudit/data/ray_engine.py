"""Validation as a Ray Data ``map_batches`` stage (``--engine ray``): every image and mask
is decoded and hashed where its batch runs; the rows come back in the samples' order and
:func:`biasaudit.data.validate.validate_dataset` assembles the manifest from them exactly
as it does from its own threads.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from functools import partial
from typing import Any

#: images per Ray task: decoding one takes milliseconds, so batches amortise the task overhead
VALIDATE_BATCH = 64


def inspect_on_ray(dataset, max_pixels: int | None) -> Iterator[dict[str, Any]]:
    """The per-image validation rows of ``dataset`` (see ``validate._inspect``), in order,
    as they come back (the caller turns them into columns chunk by chunk)."""
    import pandas as pd

    from biasaudit.core.engine import ray_map_batches

    # the workers need the dataset's root, schema and declared sizes, not its sample list
    # or label table (those travel with the batches, or not at all)
    light = replace(dataset, samples=[], labels=dataset.labels.iloc[:0], problems=[])
    for row in ray_map_batches(partial(_inspect_batch, dataset=light, max_pixels=max_pixels),
                               dataset.samples, batch_size=VALIDATE_BATCH, desc="validate (ray)"):
        for key in ("width", "height"):  # JSON has no NA: the thread path's missing sizes are pd.NA
            if row[key] is None:
                row[key] = pd.NA
        yield row


def _inspect_batch(samples: list, dataset, max_pixels: int | None) -> list[dict[str, Any]]:
    from biasaudit.data.validate import _inspect

    return [_inspect(s, dataset, max_pixels) for s in samples]
