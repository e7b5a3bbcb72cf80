"""``segment_dataset``: validate a dataset, segment every usable image (cached), compute
per-part statistics and write the workspace files.

Files written (all atomically):

- ``WS/manifest.parquet`` — the validation manifest, where an image that could not be
  segmented becomes ``status=error`` with the reason in ``error``;
- ``WS/masks/<segmenter>-<hash>/<sha256>.png`` — label maps made by a model segmenter,
  keyed by image content; the ``masks`` segmenter reads the dataset's own masks instead;
- ``WS/segments.parquet/part-00000.parquet`` … — one row per (image, part), columns of
  :data:`biasaudit.segment.stats.SEGMENT_COLUMNS` plus ``sha256`` and ``source`` (what
  the row was computed from: re-runs reuse rows whose image hash and source match).
  Sharded: part *k* holds the images *k*·:data:`SHARD_IMAGES` … of the manifest, in
  manifest order, and is written as soon as they are done, so memory holds one shard of
  rows and a killed run loses at most one shard. ``pd.read_parquet(WS/segments.parquet)``
  reads the folder whole; :func:`segment_table` / :func:`iter_segment_parts` are the
  readers. A workspace written by an older version (one ``segments.parquet`` file) is
  still read, and rewritten as shards by the next ``segment``/``scan``;
- ``WS/config.json`` — the resolved configuration (merged into an existing file);
- ``WS/timings.json`` — under ``segment``, where the time went: decoding (summed over the
  decoding workers) against the segmenter's compute, and images/s
  (:class:`~biasaudit.core.engine.StageClock`).

Decoding runs ahead of the segmenter on ``workers`` threads (the engine's
``decode_workers``, default one per CPU): while the model segments one batch the next
ones are read, looked up in the mask cache and prepared for the model
(:meth:`Segmenter.prepare`), and their part statistics are computed while the model runs
the batch after (and fresh label maps are written to the cache there). Batches are made
in manifest order whatever the number of threads, so every file written is the same for
any ``workers``.

The manifest is saved right after validation; a killed run started again reuses every
finished shard (and, for model segmenters, every label map already in ``WS/masks``), so
no image is segmented twice.

>>> result = segment_dataset("DATA", "WS")  # doctest: +SKIP
>>> print(result.summary())  # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import json
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from functools import cached_property, lru_cache, partial
from pathlib import Path

import numpy as np
import pandas as pd

from biasaudit import __version__
from biasaudit.core.engine import (
    Engine,
    StageClock,
    current_engine,
    decode_ahead,
    make_engine,
    record_stage_timing,
    use_engine,
)
from biasaudit.core.errors import BiasauditError, DatasetError, ValidationError
from biasaudit.core.io import (
    iter_parquet_parts,
    kill_point,
    parquet_parts,
    part_path,
    read_parquet_table,
    release_arrow_memory,
    write_json_atomic,
    write_parquet_atomic,
)
from biasaudit.core.progress import progress_enabled
from biasaudit.core.schema import Schema, load_schema
from biasaudit.core.workspace import Workspace
from biasaudit.segment.base import Segmenter, SegmentFailure, make_segmenter, takes_prepared
from biasaudit.segment.cache import MaskCache, cache_dirname
from biasaudit.segment.stats import SEGMENT_COLUMNS, part_statistics_columns, segments_frame

MEDIAPIPE_SCHEMA = "celebamask-hq"
#: images per shard of ``segments.parquet/``: the rows memory holds at once, and the most
#: work a kill can lose
SHARD_IMAGES = 1024


@dataclass(frozen=True)
class SegmentationResult:
    """What :func:`segment_dataset` did; ``segments`` is the table it wrote (read from
    the workspace on first use: a scan streams the shards instead).

    ``n_segmented`` images went through the segmenter, ``n_cached`` label maps came from
    ``WS/masks``, ``n_reused`` images kept their rows from the previous segments.parquet.
    """

    workspace: Path
    segmenter: str
    schema: Schema
    n_images: int
    n_ok: int
    n_failed: int
    n_segmented: int
    n_cached: int
    n_reused: int
    seconds: float
    failures: pd.DataFrame = field(repr=False, compare=False)

    @cached_property
    def segments(self) -> pd.DataFrame:
        return segment_table(self.workspace)

    def coverage(self) -> pd.DataFrame:
        """Per part: images where it is present, that share, mean area when present and
        the most common colour name.

        >>> result.coverage().loc["hair", "frac_present"]  # doctest: +SKIP
        0.97
        """
        # counts summed shard by shard: the table is never held whole
        n_present: dict[str, int] = {}
        area: dict[str, float] = {}
        colours: dict[str, pd.Series] = {}
        for seg in iter_segment_parts(self.workspace, columns=["part", "present", "area_frac", "colour"]):
            for part, grp in seg.groupby("part", sort=False):
                present = grp[grp["present"]]
                n_present[part] = n_present.get(part, 0) + len(present)
                area[part] = area.get(part, 0.0) + float(present["area_frac"].sum())
                counts = present["colour"][present["colour"] != ""].value_counts()
                colours[part] = colours[part].add(counts, fill_value=0) if part in colours else counts
        rows = []
        n = max(self.n_ok, 1)
        for part, k in n_present.items():
            top = colours[part]
            rows.append({
                "part": part,
                "n_present": int(k),
                "frac_present": k / n,
                "mean_area_frac": area[part] / k if k else 0.0,
                "top_colour": str(top.sort_values(ascending=False, kind="stable").index[0]) if len(top) else "",
            })
        return pd.DataFrame(rows, columns=["part", "n_present", "frac_present", "mean_area_frac",
                                           "top_colour"]).set_index("part")

    def summary(self, *, max_parts: int = 40) -> str:
        """A few lines for the terminal: counts, then the parts coverage table."""
        lines = [
            f"Segmented {self.n_images} images with '{self.segmenter}' (schema {self.schema.name}) "
            f"in {self.seconds:.1f}s: {self.n_ok} ok, {self.n_failed} failed "
            f"({self.n_segmented} segmented, {self.n_cached} from the mask cache, "
            f"{self.n_reused} unchanged).",
        ]
        cov = self.coverage()
        cov = cov[cov["n_present"] > 0].sort_values("n_present", ascending=False)
        if len(cov):
            lines.append(f"{'part':<20} {'images':>7} {'share':>7} {'area':>7}  colour")
            for part, row in cov.head(max_parts).iterrows():
                lines.append(
                    f"{part:<20} {row.n_present:>7d} {row.frac_present:>7.1%} "
                    f"{row.mean_area_frac:>7.1%}  {row.top_colour}"
                )
            if len(cov) > max_parts:
                lines.append(f"… and {len(cov) - max_parts} more parts")
        if self.n_failed:
            lines.append("Failures (first 5; all are in manifest.parquet):")
            for rec in self.failures.head(5).itertuples():
                lines.append(f"  {rec.image}: {rec.error}")
        lines.append(f"Wrote {self.workspace / 'segments.parquet'}/")
        return "\n".join(lines)


def segment_dataset(
    data_root: str | Path,
    ws_root: str | Path,
    *,
    segmenter: str | Segmenter = "auto",
    schema: str | Path | Schema | None = None,
    layout: str = "auto",
    device: str = "auto",
    batch_size: int | None = None,
    workers: int | None = None,
    revalidate: bool = False,
    engine: str | Engine | None = None,
) -> SegmentationResult:
    """Validate, segment and describe every image of ``data_root`` into workspace ``ws_root``.

    ``segmenter`` is a spec (``auto``, ``masks``, ``segformer:<dir-or-id>``,
    ``mediapipe-face``) or a ready :class:`Segmenter`; ``auto`` means ``masks`` when the
    dataset has masks. ``schema`` overrides the dataset's schema (for a model, the schema
    its output is mapped to). On a re-run, images whose file (and mask files) keep their
    size and modification time, and that had no problem, keep their manifest row and
    statistics without being decoded again; ``revalidate=True`` decodes everything.
    ``engine`` (``local``, ``ray`` or an :class:`~biasaudit.core.engine.Engine`; default:
    the one chosen by ``use_engine``, else local) runs validation, segmentation and
    statistics on Ray Data instead of this process's threads; the files are the same.
    ``workers``: decoding threads (default: the engine's ``decode_workers``, else one per
    CPU); ``batch_size``: images per forward pass (default: 8 on a CPU, 64 on a GPU).

    >>> r = segment_dataset("data/faces", "ws", segmenter="masks")  # doctest: +SKIP
    >>> r.n_ok, r.segments.columns[:3].tolist()  # doctest: +SKIP
    (200, ['image', 'part', 'class_id'])
    """
    from biasaudit.data import open_dataset

    start = time.perf_counter()
    release_arrow_memory()  # shards are written and read one at a time: let their memory go
    data_root = Path(data_root)
    ws = Workspace(ws_root)
    _check_outside(data_root, ws.root)
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 1):
        raise ValidationError(f"--workers must be an integer >= 1; got {workers!r}.")
    schema_obj = _resolve_schema(schema)
    spec = segmenter.name if isinstance(segmenter, Segmenter) else str(segmenter)
    if spec == "mediapipe-face":
        if schema_obj is not None and schema_obj.name != MEDIAPIPE_SCHEMA:
            raise ValidationError(
                f"--segmenter mediapipe-face writes the '{MEDIAPIPE_SCHEMA}' schema; "
                f"--schema {schema_obj.name} cannot be used with it. Drop --schema."
            )
        schema_obj = load_schema(MEDIAPIPE_SCHEMA)
    dataset = open_dataset(data_root, layout=layout, schema=schema_obj)
    target_schema = schema_obj or dataset.schema
    if target_schema is None:
        raise ValidationError(
            f"{data_root} has no masks and no schema.json, so the part names are unknown. Give "
            f"--schema (celebamask-hq, lip, ade20k-150, ccp or a schema.json path)."
        )
    if spec == "auto":
        if not any(s.mask is not None for s in dataset.samples):
            raise ValidationError(
                f"{data_root} has no masks, so --segmenter auto cannot use them. Choose a model: "
                f"--segmenter segformer:<model dir> or --segmenter mediapipe-face (faces)."
            )
        spec = "masks"
    seg = segmenter if isinstance(segmenter, Segmenter) else make_segmenter(
        spec, schema=target_schema, device=device, batch_size=batch_size
    )
    ws.ensure()
    chosen = current_engine() if engine is None else make_engine(engine)
    workers = workers or chosen.workers
    # a model cannot travel between machines: Ray workers build their own from the spec
    rebuild = None if isinstance(segmenter, Segmenter) else partial(
        make_segmenter, spec, schema=target_schema, device=device, batch_size=batch_size)
    try:
        with use_engine(chosen):
            manifest = _validate(dataset, ws, seg, workers=workers, revalidate=revalidate)
            manifest.save(ws.manifest)
            n_ok = manifest.n_ok
            # from here on the manifest is read back shard by shard: its rows, and the label
            # table and problems that went into them, are not held
            del manifest
            dataset = replace(dataset, labels=dataset.labels.iloc[:0].copy(), problems=[])  # a view keeps it all
            kill_point("validate")
            result = _run(dataset, seg, ws, n_ok=n_ok, spec=spec, workers=workers, start=start,
                          rebuild=rebuild, device=device, batch_size=batch_size)
    finally:
        if not isinstance(segmenter, Segmenter):
            seg.close()
    _write_config(ws, dataset, seg, spec=spec, device=device, batch_size=seg.batch_size)
    return result


def _validate(dataset, ws: Workspace, seg: Segmenter, *, workers, revalidate: bool):
    """Validate only what changed since the last run in this workspace (see segment_dataset)."""
    from biasaudit.data import BASE_COLUMNS, Manifest, validate_dataset
    from biasaudit.data.dataset import SampleList
    from biasaudit.data.validate import typed_manifest_table

    prev_source = None if revalidate else _previous_sources(ws.segments)
    old = None
    if prev_source and ws.manifest.is_file():
        try:
            old = Manifest.load(ws.manifest)
        except (BiasauditError, OSError, ValueError, KeyError):
            old = None  # an unreadable manifest is rebuilt, never trusted
    if old is None:
        return validate_dataset(dataset, workers=workers)
    old_rows = old.table.drop_duplicates("image").set_index("image")
    del old
    clean = {i for i, status, warning in zip(old_rows.index, old_rows["status"], old_rows["warning"], strict=True)
             if status == "ok" and not warning}
    flagged = {p.image_id for p in dataset.problems}
    unchanged = [
        s.image_id for s in dataset.samples
        if s.image_id in clean and s.image_id not in flagged
        and prev_source.get(s.image_id) == _source_key(seg, s)
    ]
    if not unchanged:
        return validate_dataset(dataset, workers=workers)
    keep = set(unchanged)
    fresh = validate_dataset(
        replace(dataset, samples=SampleList((s for s in dataset.samples if s.image_id not in keep),
                                            root=dataset.root)),
        workers=workers,
    )
    base = old_rows.loc[unchanged, [c for c in BASE_COLUMNS if c != "image"]].reset_index()
    labels = None
    if len(dataset.labels.columns):
        labels = dataset.labels[~dataset.labels.index.duplicated()]
        base = base.join(labels, on="image", how="left")
    table = pd.concat([base, fresh.table], ignore_index=True) if len(fresh.table) else base
    order = {s.image_id: k for k, s in enumerate(dataset.samples)}
    table = table.sort_values("image", key=lambda col: col.map(lambda i: order.get(i, len(order))),
                              kind="stable", ignore_index=True)
    # typed as a fresh validation types them: a re-run writes the same manifest file
    return replace(fresh, table=typed_manifest_table(table, labels))


@dataclass(frozen=True)
class _Shard:
    """One block of :data:`SHARD_IMAGES` manifest rows, with what segmenting it needs:
    built from ``manifest.parquet`` and the dataset's samples when its turn comes, and
    dropped after, so nothing here grows with the dataset."""

    k: int
    images: list[str]  # every manifest row of the block, in order
    samples: dict[str, object]  # image → Sample, for the rows that are dataset images
    sha_of: dict[str, str]  # image → sha256, for the usable ones (status ok)
    sources: dict[str, str]  # image → what its rows are computed from (see _source_key)

    @property
    def wanted(self) -> list[str]:
        return [i for i in self.images if i in self.sha_of and i in self.samples]


def _manifest_blocks(path: Path, size: int):
    """(image, sha256, status) columns of ``manifest.parquet``, ``size`` rows at a time,
    in order: three columns of one block are read, never the table."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    columns = ["image", "sha256", "status"]
    held: list = []
    n_held = 0
    with pq.ParquetFile(path) as reader:
        for batch in reader.iter_batches(batch_size=size, columns=columns):
            held.append(batch)
            n_held += batch.num_rows
            while n_held >= size:  # row groups can end mid-block: blocks are re-cut to `size`
                table = pa.Table.from_batches(held)
                yield [table.column(c).slice(0, size).to_pylist() for c in columns]
                rest = table.slice(size)
                held, n_held = rest.to_batches(), rest.num_rows
    if n_held:
        table = pa.Table.from_batches(held)
        yield [table.column(c).to_pylist() for c in columns]


def _shards(ws: Workspace, dataset, seg: Segmenter):
    """The manifest's blocks as :class:`_Shard` objects, pairing each row with the dataset's
    next sample: validation writes the samples' rows first and in the samples' order, so
    one pass over both lines them up (a row without a sample, e.g. a label row naming a
    missing image, is an error row and is skipped)."""
    samples = iter(dataset.samples)
    ahead = next(samples, None)
    for k, (images, shas, statuses) in enumerate(_manifest_blocks(ws.manifest, SHARD_IMAGES)):
        by_id: dict[str, object] = {}
        for img in images:
            if ahead is not None and ahead.image_id == img:
                by_id[img] = ahead
                ahead = next(samples, None)
        sha_of = {img: sha for img, sha, status in zip(images, shas, statuses, strict=True) if status == "ok"}
        sources = {img: _source_key(seg, by_id[img]) for img in sha_of if img in by_id}
        yield _Shard(k, images, by_id, sha_of, sources)
    if ahead is not None:
        raise ValidationError(
            f"{ws.manifest} does not list the dataset's image '{ahead.image_id}' where validation puts it; the "
            f"manifest and the dataset disagree. Re-run with --revalidate."
        )


def _run(dataset, seg: Segmenter, ws: Workspace, *, n_ok: int, spec: str, workers, start, rebuild=None,
         device: str = "auto", batch_size: int | None = None) -> SegmentationResult:
    from collections import deque

    from tqdm.auto import tqdm

    model_backed = seg.needs_images
    cache = MaskCache(ws.masks_dir, fingerprint=seg.fingerprint) if model_backed else None

    counts = {"segmented": 0, "cached": 0, "reused": 0}
    failures: dict[str, str] = {}
    chunk = max(1, seg.batch_size)
    n_threads = workers or current_engine().workers
    clock = StageClock("segment", decode_workers=n_threads, device=str(getattr(seg, "device", "cpu")),
                       batch_size=chunk, engine=current_engine().name)
    clock.add("validate_s", time.perf_counter() - start)
    # decoded images in flight: the next two batches, and enough to keep every thread busy
    ahead = 2 * chunk + n_threads
    legacy = _legacy_rows(ws.segments)

    def add_stats(shard: _Shard, img: str, image: np.ndarray, label_map: np.ndarray,
                  store: bool) -> tuple[dict[str, list], float]:
        t0 = time.perf_counter()
        if store:  # PNG encoding a fresh map is CPU work too: off the model's thread
            cache.put(shard.sha_of[img], label_map)
        cols = part_statistics_columns(image, label_map, seg.schema, image_id=img)
        cols["sha256"] = [shard.sha_of[img]] * len(cols["image"])
        cols["source"] = [shard.sources[img]] * len(cols["image"])
        return cols, time.perf_counter() - t0

    def segment_ids(shard: _Shard, todo: list[str], columns: dict[str, list], pool, bar) -> None:
        """Segment and describe ``todo`` batch by batch, appending to ``columns`` in
        ``todo``'s order: the next batches decode while the model runs, and one batch's
        statistics are computed while the model runs the next."""
        if ray_stream is not None:  # --engine ray: rows come from one Ray Data stage for the whole run
            done = len(todo)
            todo = ray_stream.take(todo, columns, failures, counts)
            bar.update(done - len(todo))
            clock.n_images += done - len(todo)
        pending: deque = deque()  # (ids, statistics jobs) of the batch before this one

        def collect() -> None:
            ids, jobs = pending.popleft()
            for job in jobs:
                cols, seconds = job.result()
                clock.add("stats_s", seconds)
                for c, vals in cols.items():
                    columns[c].extend(vals)
            bar.update(len(ids))
            kill_point("segment-batch")

        def decode(img: str) -> Decoded:
            return decode_sample(seg, shard.samples[img], shard.sha_of[img], cache)

        decoded = decode_ahead(decode, todo, pool=pool, ahead=ahead, clock=clock)
        for lo in range(0, len(todo), chunk):
            ids = todo[lo : lo + chunk]
            batch = [next(decoded) for _ in ids]
            with clock.computing():
                maps, how = label_maps(seg, [shard.samples[i] for i in ids], batch,
                                       [shard.sha_of[i] for i in ids], cache, write_cache=False)
            counts["cached"] += how.count("cached")
            counts["segmented"] += how.count("segmented")
            clock.n_images += len(ids)
            jobs = []
            for k, img in enumerate(ids):
                if isinstance(maps[k], SegmentFailure):
                    failures[img] = maps[k].message
                else:
                    jobs.append(pool.submit(add_stats, shard, img, batch[k].image, maps[k],
                                            cache is not None and how[k] == "segmented"))
            pending.append((ids, jobs))
            if len(pending) > 1:
                collect()
        while pending:
            collect()

    ray_stream = None
    if current_engine().is_ray:
        # Ray Data takes the whole list of items at once: this path holds one entry per
        # usable image (the local engine holds one shard)
        from biasaudit.segment.ray_engine import RaySegmentStream, ray_plan

        samples: dict[str, object] = {}
        sha_of: dict[str, str] = {}
        sources: dict[str, str] = {}
        images: list[str] = []
        for shard in _shards(ws, dataset, seg):
            samples.update((i, shard.samples[i]) for i in shard.wanted)
            sha_of.update(shard.sha_of)
            sources.update(shard.sources)
            images.extend(shard.wanted)
        planned = ray_plan(ws.segments, images, sha_of=sha_of, sources=sources, legacy=legacy)
        ray_stream = RaySegmentStream(seg, [samples[i] for i in planned], sha_of=sha_of, sources=sources,
                                      masks_dir=ws.masks_dir if model_backed else None, rebuild=rebuild,
                                      device=device, batch_size=batch_size)
        del samples, images, planned
    n_shards = 0
    with ThreadPoolExecutor(max_workers=n_threads) as pool:
        bar = tqdm(total=n_ok, desc=f"segment ({spec})", unit="img", disable=not progress_enabled(),
                   delay=1.0, dynamic_ncols=True, leave=False)
        for shard in _shards(ws, dataset, seg):
            k, ids, wanted = shard.k, shard.images, shard.wanted
            n_shards = k + 1
            order = {img: i for i, img in enumerate(ids)}
            old = _load_previous(part_path(ws.segments, k)) if legacy is None else _rows_of(legacy, ids)
            reused = None
            todo = wanted
            if old is not None and len(old):
                key = old.groupby("image", sort=False)[["sha256", "source"]].first()
                current = {img for img, sha, src in zip(key.index, key["sha256"], key["source"], strict=True)
                           if img in shard.sha_of and sha == shard.sha_of[img] and src == shard.sources.get(img)}
                reused = old[old["image"].isin(current)]
                todo = [i for i in wanted if i not in current]
                counts["reused"] += len(wanted) - len(todo)
                bar.update(len(wanted) - len(todo))
                if not todo and set(key.index) == set(wanted) and legacy is None:
                    continue  # this shard is done and current: not even rewritten
            columns: dict[str, list] = {c: [] for c in (*SEGMENT_COLUMNS, "sha256", "source")}
            segment_ids(shard, todo, columns, pool, bar)
            _write_shard(ws, k, [reused], columns, order)
            kill_point("segment-shard")
        bar.close()
    _drop_stale(ws, n_shards)
    n_images, n_ok, failed = _save(ws, failures, spec)
    clock.wall_s = time.perf_counter() - start
    record_stage_timing(ws.root, clock)
    return SegmentationResult(
        workspace=ws.root, segmenter=spec, schema=seg.schema, n_images=n_images,
        n_ok=n_ok, n_failed=len(failed),
        n_segmented=counts["segmented"], n_cached=counts["cached"],
        n_reused=counts["reused"], seconds=time.perf_counter() - start,
        failures=failed,
    )


def _assemble(reused_parts: list[pd.DataFrame | None], columns: dict[str, list],
              order: dict[str, int]) -> pd.DataFrame:
    fresh = segments_frame({c: columns[c] for c in SEGMENT_COLUMNS})
    fresh["sha256"] = pd.array(columns["sha256"], dtype="string")
    fresh["source"] = pd.array(columns["source"], dtype="string")
    parts = [p for p in reused_parts if p is not None and len(p)]
    segments = pd.concat([*parts, fresh], ignore_index=True) if parts else fresh
    return segments.sort_values(["image", "class_id"], key=lambda s: s.map(order) if s.name == "image" else s,
                                kind="stable", ignore_index=True)


def _write_shard(ws: Workspace, k: int, reused: list[pd.DataFrame | None], columns: dict[str, list],
                 order: dict[str, int]) -> None:
    """Write shard ``k`` (atomically), or remove it when none of its images has rows."""
    frame = _assemble(reused, columns, order)
    path = part_path(ws.segments, k)
    if len(frame):
        ws.segments.mkdir(parents=True, exist_ok=True)
        write_parquet_atomic(path, frame)
    else:
        path.unlink(missing_ok=True)  # an empty part would carry no column types
        ws.segments.mkdir(parents=True, exist_ok=True)


def _drop_stale(ws: Workspace, n_shards: int) -> None:
    """Remove shards past the end (the dataset shrank); an empty folder is a valid table."""
    ws.segments.mkdir(parents=True, exist_ok=True)
    for path in parquet_parts(ws.segments):
        if path.parent == ws.segments and int(path.stem.split("-")[1]) >= n_shards:
            path.unlink()


def _save(ws: Workspace, failures: dict[str, str], spec: str) -> tuple[int, int, pd.DataFrame]:
    """Mark the segmentation failures in ``manifest.parquet`` (rewritten only when there
    are any; the file saved after validation is otherwise already final) and return
    (images, usable images, the failed rows' image and error)."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from biasaudit.data import Manifest

    if failures:
        manifest = Manifest.load(ws.manifest)
        table = manifest.table
        mask = table["image"].isin(failures)
        table.loc[mask, "status"] = "error"
        table.loc[mask, "error"] = table.loc[mask, "image"].map(
            lambda i: f"segmentation ({spec}) failed: {failures[i]}"
        )
        manifest.save(ws.manifest)
        del manifest, table
    n_images = n_ok = 0
    failed = []
    with pq.ParquetFile(ws.manifest) as reader:
        for batch in reader.iter_batches(batch_size=65_536, columns=["image", "status", "error"]):
            ok = pc.equal(batch.column("status"), "ok")
            n_images += batch.num_rows
            n_ok += int(pc.sum(ok).as_py() or 0)
            bad = batch.filter(pc.invert(ok))
            if bad.num_rows:
                failed.append(bad.select(["image", "error"]).to_pandas())
    columns = ["image", "error"]
    frame = pd.concat(failed, ignore_index=True) if failed else pd.DataFrame({c: pd.Series([], dtype=str) for c in columns})
    return n_images, n_ok, frame[columns].reset_index(drop=True)


@dataclass(frozen=True)
class Decoded:
    """One image as a decoding worker leaves it: the pixels (or why they could not be
    read), its label map from the mask cache when there is a current one, else what
    :meth:`Segmenter.prepare` made of it for the segmenter."""

    image: np.ndarray | SegmentFailure
    cached: np.ndarray | None = None
    prepared: object = None


def decode_sample(seg: Segmenter, sample, sha: str | None, cache) -> Decoded:
    """Read ``sample``'s image, reuse its cached label map of the same size, or prepare
    it for ``seg``: everything before the model, for a decoding worker. Both engines go
    through here."""
    image = _read_image_or_error(sample)
    if isinstance(image, SegmentFailure):
        return Decoded(image)
    if cache is not None and sha is not None:
        hit = cache.get(sha)
        if hit is not None and hit.shape == image.shape[:2]:
            return Decoded(image, cached=hit)
    return Decoded(image, prepared=seg.prepare(sample, image))


def label_maps(seg: Segmenter, samples: list, decoded: list[Decoded], shas: list[str], cache, *,
               write_cache: bool = True) -> tuple[list, list]:
    """(part map or :class:`SegmentFailure`, how) per image, from :func:`decode_sample`'s
    results: an unreadable image stays its failure; a cached map is reused (how
    ``cached``); the rest are segmented in one call and cached (how ``segmented``;
    ``write_cache=False``: the caller writes them). Both engines go through here."""
    maps: list = [d.image if isinstance(d.image, SegmentFailure) else d.cached for d in decoded]
    how: list[str | None] = ["cached" if d.cached is not None else None for d in decoded]
    need = [k for k in range(len(decoded)) if maps[k] is None]
    if need:
        prepared = [decoded[k].prepared for k in need]
        todo = ([samples[k] for k in need], [decoded[k].image for k in need])
        outs = (seg.segment_samples(*todo, prepared=prepared)
                if any(p is not None for p in prepared) and takes_prepared(seg.segment_samples)
                else seg.segment_samples(*todo))
        for k, out in zip(need, outs, strict=True):
            maps[k] = out
            if isinstance(out, np.ndarray):
                how[k] = "segmented"
                if cache is not None and write_cache:
                    cache.put(shas[k], out)
    return maps, how


def _read_image_or_error(sample) -> np.ndarray | SegmentFailure:
    from biasaudit.data import read_image

    try:
        return read_image(sample.image_path)
    except BiasauditError as exc:
        return SegmentFailure(str(exc))


def _source_key(seg: Segmenter, sample) -> str:
    """What an image's rows were computed from: the segmenter, and the size and
    modification time of the image file and (for stored masks) its mask files, so an
    edited file is re-read and an untouched one is not even decoded."""
    digest = hashlib.sha256(seg.fingerprint.encode())
    paths = [sample.image_path]
    ref = sample.mask
    if ref is not None and not seg.needs_images:
        paths += [ref.path] if ref.path is not None else []
        paths += [p for _, p in ref.parts]
    for p in paths:
        try:
            st = Path(p).stat()
            digest.update(f"{p}:{st.st_size}:{st.st_mtime_ns}".encode())
        except OSError:
            digest.update(f"{p}:missing".encode())
    return f"{seg.fingerprint}|{digest.hexdigest()[:16]}"


def _load_previous(path: Path) -> pd.DataFrame | None:
    """One file of segment rows (a shard, or an old single-file table); None when missing,
    unreadable or of another format (recomputed, never trusted)."""
    if not path.is_file():
        return None
    try:
        prev = pd.read_parquet(path)
    except (OSError, ValueError):
        return None
    if not {*SEGMENT_COLUMNS, "sha256", "source"} <= set(prev.columns):
        return None
    return prev


def _legacy_rows(path: Path) -> pd.DataFrame | None:
    """The rows of an older workspace's single-file ``segments.parquet`` (read once, whole:
    it was written whole), removed so the folder of shards can take its place."""
    if not path.is_file():
        return None
    rows = _load_previous(path)
    path.unlink()
    return rows if rows is not None else pd.DataFrame(columns=[*SEGMENT_COLUMNS, "sha256", "source"])


def _rows_of(rows: pd.DataFrame, ids: list[str]) -> pd.DataFrame:
    return rows[rows["image"].isin(set(ids))]


def _previous_sources(path: Path) -> dict[str, str]:
    """image → what its segment rows were computed from, over every shard (two columns
    read per shard); {} when there are none."""
    out: dict[str, str] = {}
    for part in parquet_parts(path):
        try:
            rows = pd.read_parquet(part, columns=["image", "source"])
        except (OSError, ValueError, KeyError):
            continue  # an unreadable shard is recomputed
        first = rows.drop_duplicates("image")
        out.update(zip(first["image"].astype(str), first["source"].astype(str), strict=True))
    return out


def _resolve_schema(schema) -> Schema | None:
    if schema is None or isinstance(schema, Schema):
        return schema
    return load_schema(schema)


def _check_outside(data_root: Path, ws_root: Path) -> None:
    data = data_root.resolve()
    ws = ws_root.resolve()
    if ws == data or data in ws.parents:
        raise ValidationError(
            f"--out {ws_root} is inside the dataset folder {data_root}; the input folder is never "
            f"written to. Choose a workspace folder outside it."
        )


def _write_config(ws: Workspace, dataset, seg: Segmenter, *, spec: str, device: str, batch_size: int) -> None:
    config: dict = {}
    if ws.config.is_file():
        try:
            config = json.loads(ws.config.read_text("utf-8"))
        except (OSError, json.JSONDecodeError):
            config = {}
    config["biasaudit_version"] = __version__
    config["data"] = {
        "root": str(Path(dataset.root).resolve()),
        "layout": dataset.layout,
        "schema": dataset.schema.name,
        "schema_classes": dataset.schema.to_dict(),
    }
    config["segment"] = {
        "segmenter": spec,
        "schema": seg.schema.name,
        "schema_classes": seg.schema.to_dict(),
        "fingerprint": seg.fingerprint,
        "mask_cache": f"masks/{cache_dirname(seg.fingerprint)}" if seg.needs_images else None,
        "device": getattr(seg, "device", device),
        "batch_size": batch_size,
    }
    write_json_atomic(ws.config, config)


# --------------------------------------------------------------------------- reading back


def load_part_map(ws_root: str | Path, image_id: str) -> np.ndarray:
    """The label map (schema ids) of ``image_id`` in a segmented workspace, whatever the
    backend: the dataset's own mask for ``masks``, the cached map otherwise.

    >>> load_part_map("ws", "0001.png").shape  # doctest: +SKIP
    (128, 128)
    """
    ws = Workspace(ws_root)
    config = _read_config(ws)
    seg_cfg = config["segment"]
    if seg_cfg.get("mask_cache") is None:
        dataset = _open_for(ws, config)
        try:
            sample = dataset.sample(image_id)
        except KeyError:
            raise DatasetError(f"Image '{image_id}' is not in the dataset {config['data']['root']}.") from None
        from biasaudit.data import read_mask

        return read_mask(sample, dataset.schema)
    sha = _sha_of(ws, image_id)
    path = ws.root / seg_cfg["mask_cache"] / f"{sha}.png"
    import cv2

    arr = cv2.imread(str(path), cv2.IMREAD_UNCHANGED) if path.is_file() else None
    if arr is None:
        raise DatasetError(
            f"{path}: no cached label map for '{image_id}' (was it segmented? status must be ok in "
            f"manifest.parquet). Re-run `biasaudit segment` to fill the cache."
        )
    return arr


def load_segmentation(ws_root: str | Path, image_id: str) -> tuple[np.ndarray, np.ndarray]:
    """(RGB image, label map) of ``image_id`` in a segmented workspace.

    >>> rgb, parts = load_segmentation("ws", "0001.png")  # doctest: +SKIP
    """
    from biasaudit.data import read_image

    ws = Workspace(ws_root)
    dataset = _open_for(ws, _read_config(ws))
    try:
        sample = dataset.sample(image_id)
    except KeyError:
        raise DatasetError(f"Image '{image_id}' is not in the dataset {dataset.root}.") from None
    return read_image(sample.image_path), load_part_map(ws_root, image_id)


def segment_table(ws_root: str | Path, *, columns: list[str] | None = None) -> pd.DataFrame:
    """``WS/segments.parquet`` (its shards, or an older workspace's single file) as one
    DataFrame; raises naming the file when missing. Streaming readers use
    :func:`iter_segment_parts`.

    >>> segment_table("ws", columns=["image", "part", "present"])  # doctest: +SKIP
    """
    path = Workspace(ws_root).segments
    table = read_parquet_table(path, columns=columns)
    if table is None:
        if path.is_dir():  # every image failed: a valid, empty table
            empty = segments_frame().assign(sha256=pd.array([], dtype="string"),
                                            source=pd.array([], dtype="string"))
            return empty[columns] if columns else empty
        raise DatasetError(f"{path} does not exist; run `biasaudit segment DATA --out {ws_root}` first.")
    return table


def iter_segment_parts(ws_root: str | Path, *, columns: list[str] | None = None):
    """The segment rows shard by shard (in manifest order), one DataFrame at a time.

    >>> n = sum(len(part) for part in iter_segment_parts("ws"))  # doctest: +SKIP
    """
    path = Workspace(ws_root).segments
    if not parquet_parts(path) and not path.is_dir():
        raise DatasetError(f"{path} does not exist; run `biasaudit segment DATA --out {ws_root}` first.")
    yield from iter_parquet_parts(path, columns=columns)


def _read_config(ws: Workspace) -> dict:
    if not ws.config.is_file():
        raise DatasetError(
            f"{ws.config} does not exist; {ws.root} is not a segmented workspace. Run "
            f"`biasaudit segment DATA --out {ws.root}` first."
        )
    config = json.loads(ws.config.read_text("utf-8"))
    if "segment" not in config or "data" not in config:
        raise DatasetError(f"{ws.config} has no 'segment' section; re-run `biasaudit segment`.")
    return config


def _open_for(ws: Workspace, config: dict):
    data = config["data"]
    return _open_cached(data["root"], data["layout"], json.dumps(data["schema_classes"], sort_keys=True),
                        ws.config.stat().st_mtime_ns)


@lru_cache(maxsize=4)
def _open_cached(root: str, layout: str, schema_json: str, _stamp: int):
    from biasaudit.data import open_dataset

    schema = Schema.from_dict(json.loads(schema_json), source="workspace config.json")
    return open_dataset(root, layout=layout, schema=schema)


def _sha_of(ws: Workspace, image_id: str) -> str:
    sha = _manifest_shas(str(ws.manifest), ws.manifest.stat().st_mtime_ns if ws.manifest.is_file() else 0)
    if image_id not in sha:
        raise DatasetError(f"Image '{image_id}' is not in {ws.manifest}.")
    return sha[image_id]


@lru_cache(maxsize=4)
def _manifest_shas(path: str, _stamp: int) -> dict[str, str]:
    if not Path(path).is_file():
        raise DatasetError(f"{path} does not exist; run `biasaudit segment` first.")
    table = pd.read_parquet(path, columns=["image", "sha256"])
    return dict(zip(table["image"], table["sha256"], strict=True))

