"""Bounded readers of a workspace's tables for the report.

A report shows counts, shares and a few example images, so it never needs a table whole:
each reader takes only the columns it uses and walks the table in record batches
(``BATCH_ROWS`` rows, or one shard of a sharded table, at a time), keeping per-value
counts and at most ``max_pool`` candidate images per value. What stays in memory is one
row per usable image of the manifest's label columns (image id and label values), which
the label counts, the captions and the metric-tree pairs read.

A value's candidate pool is every image that has it, in table order, while there are at
most ``max_pool`` of them, so small datasets get exactly the exemplars a whole-table read
gives; above that, the ``max_pool`` images with the smallest hash of their id (a uniform
sample that does not depend on batch boundaries or on the run).

>>> import pandas as pd
>>> pool = CandidatePool(max_pool=2)
>>> pool.add(pd.Series(["a", "b", "a"]), pd.Series(["1.png", "2.png", "3.png"]))
>>> pool.add(pd.Series(["a"]), pd.Series(["4.png"]))
>>> pool.counts().to_dict(), len(pool.ids("a")), pool.ids("b")
({'a': 3, 'b': 1}, 2, ['2.png'])
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from biasaudit.core.io import parquet_parts, release_arrow_memory

#: rows per record batch: what one step of a reader holds of a table
BATCH_ROWS = 65536
#: candidate images kept per attribute value for the exemplar grids
MAX_POOL = 2000


def iter_batches(path: str | Path | None, columns: Sequence[str]) -> Iterator[Any]:
    """``columns`` of a (single-file or sharded) Parquet table as pandas DataFrames of at
    most :data:`BATCH_ROWS` rows, in row order; columns the table lacks are left out."""
    import pyarrow.parquet as pq

    if path is None:
        return
    release_arrow_memory()
    for part in parquet_parts(path):
        file = pq.ParquetFile(part)
        names = set(file.schema_arrow.names)
        wanted = [c for c in dict.fromkeys(columns) if c in names]
        for batch in file.iter_batches(batch_size=BATCH_ROWS, columns=wanted):
            yield batch.to_pandas()


def table_columns(path: str | Path | None) -> list[str]:
    """The column names of a (single-file or sharded) Parquet table; [] when absent."""
    import pyarrow.parquet as pq

    parts = parquet_parts(path) if path is not None else []
    return list(pq.read_schema(parts[0]).names) if parts else []


@dataclass(frozen=True)
class ManifestSummary:
    """What the report shows of the manifest, read in batches.

    ``labels``: usable images (``status == "ok"``, or every row without a status column)
    indexed by image id, with only the label columns asked for; None without an ``image``
    column. ``error_rows``: the first ``max_error_rows`` unusable rows (image, status,
    error).
    """

    columns: tuple[str, ...]
    n_images: int
    n_errors: int
    error_rows: tuple[dict[str, str], ...]
    n_warnings: int
    labels: Any = None
    has_status: bool = False
    has_warning: bool = False


def read_manifest(path: str | Path | None, *, label_columns: Sequence[str] = (),
                  max_error_rows: int = 5000) -> ManifestSummary | None:
    """Summarise the manifest at ``path`` (None when there is none)."""
    import pandas as pd

    columns = table_columns(path)
    if not columns:
        return None
    labels = [c for c in dict.fromkeys(label_columns) if c in columns and c != "image"]
    has_status, has_warning = "status" in columns, "warning" in columns
    n_images = n_errors = n_warnings = 0
    errors: list[dict[str, str]] = []
    ok_frames = []
    for batch in iter_batches(path, ["image", "status", "error", "warning", *labels]):
        n_images += len(batch)
        if has_warning:
            n_warnings += int((batch["warning"].fillna("").astype(str) != "").sum())
        if has_status:
            bad = batch[batch["status"] != "ok"]
            n_errors += len(bad)
            for _, r in bad.head(max(max_error_rows - len(errors), 0)).iterrows():
                errors.append({"image": str(r.get("image", "")), "status": str(r.get("status", "")),
                               "error": str(r.get("error", "") or "")})
            batch = batch[batch["status"] == "ok"]
        if "image" in batch.columns:
            ok_frames.append(batch[["image", *labels]])
    table = None
    if "image" in columns:
        ok = pd.concat(ok_frames, ignore_index=True) if ok_frames else pd.DataFrame(columns=["image", *labels])
        table = ok.assign(image=ok["image"].astype(str)).set_index("image")
    return ManifestSummary(columns=tuple(columns), n_images=n_images, n_errors=n_errors, error_rows=tuple(errors),
                           n_warnings=n_warnings, labels=table, has_status=has_status, has_warning=has_warning)


def part_coverage(path: str | Path | None, *, usable: Any = None) -> list[tuple[str, float]] | None:
    """(part, share of images in which it is present), most covered first, from the
    segment table's ``image``, ``part`` and ``present`` columns, one batch at a time;
    ``usable``: an index of image ids to count (None: every row). None when the table or
    one of those columns is missing."""
    import pandas as pd

    if not {"image", "part", "present"} <= set(table_columns(path)):
        return None
    sums: dict[str, float] = {}
    counts: dict[str, int] = {}
    for batch in iter_batches(path, ["image", "part", "present"]):
        if usable is not None:
            batch = batch[batch["image"].astype(str).isin(usable)]
        grouped = batch.groupby("part", sort=False)["present"].agg(["sum", "count"])
        for part, row in grouped.iterrows():
            sums[part] = sums.get(part, 0) + row["sum"]
            counts[part] = counts.get(part, 0) + int(row["count"])
    # the same Series a whole-table groupby(...).mean() gives, sorted the same way
    cov = pd.Series({p: sums[p] / counts[p] for p in sums}, dtype="float64")
    cov = cov.sort_values(ascending=False)
    return [(str(p), float(v)) for p, v in cov.items()]


@dataclass
class CandidatePool:
    """Per-value counts and a bounded, deterministic pool of image ids per value (see the
    module doc), fed one batch at a time."""

    max_pool: int = MAX_POOL
    _counts: dict[str, int] = field(default_factory=dict, init=False, repr=False)
    _pool: Any = field(default=None, init=False, repr=False)  # DataFrame: value, image, hash, pos
    _seen: int = field(default=0, init=False, repr=False)

    def add(self, values: Any, images: Any) -> None:
        """Add one batch: ``values`` and ``images`` row-aligned (pandas Series of str)."""
        import pandas as pd

        values = pd.Series(np.asarray(values, dtype=object)).astype(str)
        images = pd.Series(np.asarray(images, dtype=object)).astype(str)
        for value, count in values.value_counts(sort=False).items():
            self._counts[value] = self._counts.get(value, 0) + int(count)
        batch = pd.DataFrame({"value": values.to_numpy(), "image": images.to_numpy(),
                              "hash": pd.util.hash_array(images.to_numpy()),
                              "pos": np.arange(self._seen, self._seen + len(values))})
        self._seen += len(values)
        pool = batch if self._pool is None else pd.concat([self._pool, batch], ignore_index=True)
        sizes = pool.groupby("value", sort=False)["pos"].transform("size")
        if (sizes > self.max_pool).any():
            pool = pool.sort_values(["value", "hash", "pos"], kind="stable").groupby("value", sort=False).head(
                self.max_pool)
        self._pool = pool

    def counts(self) -> Any:
        """Every value's count, in order of first appearance (pandas Series)."""
        import pandas as pd

        return pd.Series(self._counts, dtype="int64")

    def ids(self, value: str) -> list[str]:
        """The pooled image ids of ``value``, in table order (every one when at most
        ``max_pool`` images have it)."""
        if self._pool is None:
            return []
        rows = self._pool[self._pool["value"] == value].sort_values("pos")
        return rows["image"].tolist()


def attribute_pool(path: str | Path | None, *, node: str, column: str, usable: Any = None,
                   max_pool: int = MAX_POOL) -> CandidatePool | None:
    """The values of attribute ``column`` of ``node`` in the attribute table, counted over
    the usable images, with a candidate pool per value; None when the table lacks the
    column."""
    if not {"image", "node", column} <= set(table_columns(path)):
        return None
    pool = CandidatePool(max_pool=max_pool)
    for batch in iter_batches(path, ["image", "node", column]):
        rows = batch[batch["node"].astype(str) == node]
        if usable is not None:
            rows = rows[rows["image"].astype(str).isin(usable)]
        if len(rows):
            pool.add(rows[column].astype(str), rows["image"].astype(str))
    return pool


def bounded_ids(ids: Sequence[str], max_pool: int = MAX_POOL) -> list[str]:
    """``ids`` as they are when at most ``max_pool``, else the pool :class:`CandidatePool`
    keeps (the ``max_pool`` smallest hashes, in the given order)."""
    if len(ids) <= max_pool:
        return list(ids)
    pool = CandidatePool(max_pool=max_pool)
    pool.add(["v"] * len(ids), list(ids))
    return pool.ids("v")
