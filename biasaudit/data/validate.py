"""Validation: decode every image and mask once and record, per file, what is wrong.

The result is a :class:`Manifest`: one row per image (and one per label row or stray
file that has no image), never a crash and never a silent skip. A dataset is *usable*
when at least one image is ``ok``; every other row says in a sentence what to fix.

>>> manifest = validate_dataset(open_dataset("DATA"))  # doctest: +SKIP
>>> manifest.n_ok, manifest.n_errors  # doctest: +SKIP
(10, 2)
"""

from __future__ import annotations

import hashlib
import json
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from biasaudit.core.errors import ValidationError
from biasaudit.core.io import atomic_path
from biasaudit.core.progress import progress
from biasaudit.data.dataset import Dataset, Problem, Sample
from biasaudit.data.images import (
    ImageReadError,
    MaskReadError,
    decode_image,
    display_path,
    mask_array,
)

BASE_COLUMNS = (
    "image", "path", "sha256", "width", "height", "status", "error", "warning", "has_mask",
)
_META_KEY = b"biasaudit.manifest"


# eq=False: comparing DataFrames with == is elementwise, so a generated __eq__ would raise.
@dataclass(frozen=True, eq=False)
class Manifest:
    """The validated dataset: ``table`` (one row per image, columns :data:`BASE_COLUMNS`
    then the label/attribute columns) and every :class:`Problem` found.

    ``is_usable`` means at least one image is ``ok``.

    >>> m = Manifest.load("ws/manifest.parquet")  # doctest: +SKIP
    >>> m.table.loc[m.table.status == "error", ["path", "error"]]  # doctest: +SKIP
    """

    table: pd.DataFrame
    dataset_root: str
    layout: str
    schema_name: str
    problems: list[Problem] = field(default_factory=list)

    @property
    def n_images(self) -> int:
        return len(self.table)

    @property
    def n_ok(self) -> int:
        return int((self.table["status"] == "ok").sum())

    @property
    def n_errors(self) -> int:
        return int((self.table["status"] == "error").sum())

    @property
    def n_warnings(self) -> int:
        return int((self.table["warning"] != "").sum())

    @property
    def is_usable(self) -> bool:
        return self.n_ok > 0

    @property
    def label_columns(self) -> list[str]:
        return [c for c in self.table.columns if c not in BASE_COLUMNS]

    @property
    def ok(self) -> pd.DataFrame:
        """The rows of usable images."""
        return self.table[self.table["status"] == "ok"]

    def save(self, path: str | Path) -> None:
        """Write the table to Parquet atomically, with root/layout/schema/problems as metadata."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        table = pa.Table.from_pandas(self.table, preserve_index=False)
        meta = {
            "dataset_root": self.dataset_root,
            "layout": self.layout,
            "schema_name": self.schema_name,
            "problems": [p.__dict__ for p in self.problems],
        }
        table = table.replace_schema_metadata(
            {**(table.schema.metadata or {}), _META_KEY: json.dumps(meta, ensure_ascii=False).encode("utf-8")}
        )
        with atomic_path(path) as tmp:
            pq.write_table(table, tmp)

    @classmethod
    def load(cls, path: str | Path) -> Manifest:
        """Read a manifest written by :meth:`save`."""
        import pyarrow.parquet as pq

        path = Path(path)
        if not path.is_file():
            raise ValidationError(f"{path} does not exist; run `biasaudit validate DATA --manifest {path}` first.")
        table = pq.read_table(path)
        raw = (table.schema.metadata or {}).get(_META_KEY)
        if raw is None:
            raise ValidationError(f"{path} is a Parquet file but not a biasaudit manifest (no '{_META_KEY.decode()}' metadata).")
        meta = json.loads(raw.decode("utf-8"))
        return cls(
            table=table.to_pandas(),
            dataset_root=meta["dataset_root"],
            layout=meta["layout"],
            schema_name=meta["schema_name"],
            problems=[Problem(**p) for p in meta["problems"]],
        )


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _relative(message: str, name: str, root: str) -> str:
    # Library errors start with the file name; the row already names it in `path`, and
    # other files are shown relative to the dataset root.
    prefix = f"{name}: "
    message = message[len(prefix):] if message.startswith(prefix) else message
    return message.replace(root.rstrip("/") + "/", "")


def _link_note(path: Path, root: Path) -> tuple[str, bool] | None:
    """(message, fatal) when ``path`` or a folder on its way from ``root`` is a symbolic
    link; None for a plain file. A link is never followed outside the dataset."""
    try:
        rel = path.relative_to(root)
    except ValueError:
        return None
    linked = any((root / Path(*rel.parts[: i + 1])).is_symlink() for i in range(len(rel.parts)))
    if not linked:
        return None
    name = display_path(rel.as_posix())
    target = path.resolve()
    inside = target.is_relative_to(root.resolve())
    if not target.exists():
        return (f"{name} is a symbolic link whose target does not exist; replace it with the file", True)
    if not inside:
        return (f"{name} is a symbolic link to a file outside the dataset ({display_path(target)}); links are "
                f"not followed out of DATA. Copy the file into the dataset instead", True)
    return (f"{name} is a symbolic link to {display_path(target.relative_to(root.resolve()).as_posix())} "
            f"inside the dataset", False)


def _inspect(sample: Sample, dataset: Dataset, max_pixels: int | None) -> dict:
    rel = display_path(sample.image_path.relative_to(dataset.root).as_posix()) if sample.image_path.is_relative_to(dataset.root) else display_path(sample.image_path)
    row = {
        "image": sample.image_id, "path": rel, "sha256": "", "width": pd.NA, "height": pd.NA,
        "status": "ok", "error": [], "warning": [], "has_mask": sample.mask is not None,
    }
    name = display_path(sample.image_path)
    root = display_path(dataset.root)
    mask_paths = []
    if sample.mask is not None:
        mask_paths = ([sample.mask.path] if sample.mask.path is not None else []) + [p for _, p in sample.mask.parts]
    for path in [sample.image_path, *mask_paths]:
        note = _link_note(Path(path), Path(dataset.root))
        if note is not None:
            (row["error"] if note[1] else row["warning"]).append(note[0])
    if row["error"]:
        return row  # nothing outside DATA is opened, not even to hash it
    try:
        row["sha256"] = _sha256(sample.image_path)
        decoded = decode_image(sample.image_path, max_pixels=max_pixels)
    except ImageReadError as exc:
        row["error"].append(_relative(str(exc), name, root))
        return row
    except OSError as exc:
        row["error"].append(f"cannot be read ({exc.strerror or exc}); check the file's permissions.")
        return row
    row["width"], row["height"] = decoded.width, decoded.height
    row["warning"].extend(decoded.notes)
    declared = dataset.declared_sizes.get(sample.image_id)
    if declared is not None and declared != (decoded.width, decoded.height):
        row["warning"].append(
            f"the layout's metadata says {declared[0]}×{declared[1]} but the file is {decoded.width}×{decoded.height}"
        )
    if sample.mask is not None and dataset.schema is not None:
        try:
            mask_array(sample, dataset.schema, image_size=(decoded.width, decoded.height))
        except MaskReadError as exc:
            row["error"].append(_relative(str(exc), name, root))
    return row


def _problem_row(problem: Problem) -> dict:
    return {
        "image": problem.image_id, "path": problem.path, "sha256": "", "width": pd.NA,
        "height": pd.NA, "status": "error", "error": [problem.message], "warning": [],
        "has_mask": False,
    }


def _keep_label_dtypes(table: pd.DataFrame, labels: pd.DataFrame) -> pd.DataFrame:
    """Rows without labels get NA; keep integer labels integers (nullable) rather than floats."""
    for col in labels.columns:
        kind = labels[col].dtype.kind
        if kind in "iub":
            table[col] = table[col].astype("Int64" if kind in "iu" else "boolean")
    return table


def _as_parquet_reads_it(table: pd.DataFrame) -> pd.DataFrame:
    # Pass through Arrow once so the in-memory table has exactly the dtypes that
    # Manifest.load gives back (pandas versions differ in how they type strings).
    import pyarrow as pa

    return pa.Table.from_pandas(table, preserve_index=False).to_pandas()


def typed_manifest_table(table: pd.DataFrame, labels: pd.DataFrame | None) -> pd.DataFrame:
    """``table`` (manifest columns joined with ``labels``) typed exactly as
    :func:`validate_dataset` types it, so whoever assembles manifest rows another way (a
    re-run reusing old rows) writes the same file."""
    if labels is not None and len(labels.columns):
        table = _keep_label_dtypes(table, labels)
    return _as_parquet_reads_it(table)


def default_workers() -> int:
    """Threads used when ``workers`` is None: the CPU count, at most 8.

    >>> default_workers() >= 1
    True
    """
    return max(1, min(8, os.cpu_count() or 1))


#: validation rows become table columns this many at a time: a row is a dict of Python
#: objects (~650 bytes per image; 4,096 of them ≈ 2.7 MB), a column chunk a few Arrow buffers;
#: no list of every image's row is ever held
ROWS_PER_CHUNK = 4_096


def validate_dataset(
    dataset: Dataset, *, workers: int | None = None, max_pixels: int | None = None
) -> Manifest:
    """Decode every image (fully, so truncation is caught) and mask of ``dataset`` in
    ``workers`` threads and return the :class:`Manifest`.

    Nothing is written anywhere; ``max_pixels`` overrides the decompression-bomb limit.
    Rows are decoded a few per thread ahead and turned into table columns
    :data:`ROWS_PER_CHUNK` at a time, in the samples' order.

    >>> m = validate_dataset(open_dataset("DATA"), workers=4)  # doctest: +SKIP
    >>> m.is_usable  # doctest: +SKIP
    True
    """
    if workers is not None and (not isinstance(workers, int) or workers < 1):
        raise ValidationError(f"The 'workers' parameter of validate_dataset must be an int >= 1. Got {workers!r} instead.")
    n_workers = workers or default_workers()
    from biasaudit.core.engine import current_engine, decode_ahead

    # The adapter's problems first, then those found while decoding.
    problems = list(dataset.problems)
    noted: dict[str, list[Problem]] = {}
    for problem in dataset.problems:
        noted.setdefault(problem.image_id, []).append(problem)
    # an adapter's note goes to the last sample with its image id (ids are unique in practice)
    last = {s.image_id: k for k, s in enumerate(dataset.samples) if s.image_id in noted}
    with ThreadPoolExecutor(max_workers=n_workers) as pool:
        if current_engine().is_ray:  # `use_engine("ray")`: decode on the Ray cluster
            from biasaudit.data.ray_engine import inspect_on_ray

            rows = inspect_on_ray(dataset, max_pixels)
        else:
            rows = progress(decode_ahead(lambda s: _inspect(s, dataset, max_pixels), dataset.samples,
                                         pool=pool, ahead=4 * n_workers),
                            desc="validate", total=len(dataset.samples))
        frames, chunk = [], []
        for k, row in enumerate(rows):
            problems.extend(Problem(row["image"], row["path"], m, fatal=True) for m in row["error"])
            problems.extend(Problem(row["image"], row["path"], m, fatal=False) for m in row["warning"])
            if last.get(row["image"]) == k:
                for problem in noted[row["image"]]:
                    (row["error"] if problem.fatal else row["warning"]).append(problem.message)
            chunk.append(row)
            if len(chunk) == ROWS_PER_CHUNK:
                frames.append(_frame(chunk))
                chunk = []
    extra: dict[str, dict] = {}
    for problem in dataset.problems:
        if problem.image_id in last:
            continue
        row = extra.get(problem.image_id)
        if row is None:
            if not problem.fatal:
                continue  # a note about a file that is not an image (e.g. a JSON); see problems
            extra[problem.image_id] = _problem_row(problem)
            continue
        (row["error"] if problem.fatal else row["warning"]).append(problem.message)
    chunk.extend(extra.values())
    if chunk or not frames:
        frames.append(_frame(chunk))
    table = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
    del frames
    labels = None
    if len(dataset.labels.columns):
        labels = dataset.labels
        labels = labels[~labels.index.duplicated()]
        table = table.join(labels, on="image", how="left")
    return Manifest(
        table=typed_manifest_table(table.reset_index(drop=True), labels),
        dataset_root=str(display_path(dataset.root)),
        layout=dataset.layout,
        schema_name=dataset.schema.name if dataset.schema is not None else "",
        problems=problems,
    )


def _frame(rows: list[dict]) -> pd.DataFrame:
    """Validation rows as manifest columns (their messages joined into one sentence each)."""
    for row in rows:
        row["error"] = "; ".join(m.rstrip(".") for m in row["error"])
        row["warning"] = "; ".join(m.rstrip(".") for m in row["warning"])
        if row["error"]:
            row["status"] = "error"
    table = pd.DataFrame.from_records(rows, columns=list(BASE_COLUMNS))
    for col in ("image", "path", "sha256", "status", "error", "warning"):
        table[col] = table[col].astype(str)
    table["width"] = table["width"].astype("Int64")
    table["height"] = table["height"].astype("Int64")
    table["has_mask"] = table["has_mask"].astype(bool)
    return table


__all__ = ["BASE_COLUMNS", "Manifest", "default_workers", "typed_manifest_table", "validate_dataset"]
