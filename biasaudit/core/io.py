"""Atomic writes: every workspace file is written to a temp file and renamed into place,
so a killed run never leaves a half-written file that a resumed run would trust.

Large tables are *sharded*: ``WS/segments.parquet`` may be a folder of
``part-00000.parquet`` files (one per block of images, written as each block finishes),
so neither writer nor reader holds the whole table. :func:`read_parquet_table` and
:func:`iter_parquet_parts` read either form (a single file, as older workspaces have it,
or a folder of parts), in part order.

:func:`kill_point` marks the moments after which a workspace file is durable; a test sets
``BIASAUDIT_TEST_STOP_AFTER=<point>:<count>`` to end the process there, as a kill would.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temp path next to ``path``; on success rename it over ``path``.

    >>> with atomic_path("out.json") as tmp:  # doctest: +SKIP
    ...     tmp.write_text("{}")
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def write_bytes_atomic(path: str | Path, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_text_atomic(path: str | Path, text: str) -> None:
    write_bytes_atomic(path, text.encode("utf-8"))


def write_json_atomic(path: str | Path, obj: Any) -> None:
    write_text_atomic(path, json.dumps(obj, indent=2, ensure_ascii=False, default=_json_default) + "\n")


def write_parquet_atomic(path: str | Path, frame) -> None:
    """Write a pandas DataFrame to Parquet atomically (index not stored)."""
    with atomic_path(path) as tmp:
        frame.to_parquet(tmp, index=False)


def write_parquet_chunked_atomic(path: str | Path, frame, *, prepare=None, rows: int = 65536) -> None:
    """Write ``frame`` to Parquet atomically ``rows`` at a time, each chunk passed through
    ``prepare`` first (e.g. categories to strings): the converted copy of a large table
    never exists whole. Reads back as :func:`write_parquet_atomic`'s file would."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    prepare = prepare or (lambda chunk: chunk)
    with atomic_path(path) as tmp:
        writer = None
        try:
            for lo in range(0, max(len(frame), 1), rows):
                table = pa.Table.from_pandas(prepare(frame.iloc[lo : lo + rows]), preserve_index=False)
                if writer is None:
                    writer = pq.ParquetWriter(tmp, table.schema)
                writer.write_table(table.cast(writer.schema))
        finally:
            if writer is not None:
                writer.close()


#: what a sharded table's files are called, in row order
PART_GLOB = "part-*.parquet"


def part_path(folder: str | Path, index: int) -> Path:
    """The path of shard ``index`` of a sharded table folder.

    >>> part_path("ws/segments.parquet", 3).name
    'part-00003.parquet'
    """
    return Path(folder) / f"part-{index:05d}.parquet"


def parquet_parts(path: str | Path) -> list[Path]:
    """The files of a Parquet table in row order: ``[path]`` for a single file, the
    ``part-*.parquet`` files of a sharded folder, ``[]`` when there is neither."""
    path = Path(path)
    if path.is_file():
        return [path]
    if path.is_dir():
        return sorted(path.glob(PART_GLOB))
    return []


def release_arrow_memory() -> None:
    """Let Arrow hand freed memory back to the operating system.

    Arrow's default allocator (mimalloc or jemalloc) keeps what a read freed for later
    reads; reading a sharded table part by part then costs as much resident memory as
    reading it whole. The system allocator returns it (``ARROW_DEFAULT_MEMORY_POOL`` set by
    the user wins).
    """
    import pyarrow as pa

    if "ARROW_DEFAULT_MEMORY_POOL" not in os.environ and pa.default_memory_pool().backend_name != "system":
        pa.set_memory_pool(pa.system_memory_pool())


def release_freed_memory() -> None:
    """Hand the heap a finished stage freed back to the operating system.

    glibc keeps freed memory for reuse (much of it in the arenas of the worker threads that
    decoded images), so the next stage's tables would otherwise sit on top of the last
    stage's high-water mark. Called between the stages of a scan; a no-op off glibc.
    """
    import ctypes
    import gc

    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def iter_parquet_parts(path: str | Path, *, columns: list[str] | None = None) -> Iterator:
    """Each part of a (single-file or sharded) Parquet table as a DataFrame, in row order:
    what a reader that streams uses, holding one part at a time."""
    import pandas as pd

    release_arrow_memory()
    for part in parquet_parts(path):
        yield pd.read_parquet(part, columns=columns)


def read_parquet_table(path: str | Path, *, columns: list[str] | None = None):
    """A whole (single-file or sharded) Parquet table as one DataFrame; ``None`` when it
    does not exist. Readers that can stream use :func:`iter_parquet_parts` instead."""
    import pandas as pd

    frames = list(iter_parquet_parts(path, columns=columns))
    if not frames:
        return None
    return frames[0] if len(frames) == 1 else pd.concat(frames, ignore_index=True)


def table_exists(path: str | Path) -> bool:
    """Whether a Parquet table (a file, or a folder holding at least one part) is there."""
    return bool(parquet_parts(path)) or Path(path).is_dir()


#: the environment variable of :func:`kill_point` ("<point>:<count>", count defaults to 1)
STOP_ENV = "BIASAUDIT_TEST_STOP_AFTER"
#: the exit status of a process ended by :func:`kill_point`
KILLED_EXIT = 86
_passed: dict[str, int] = {}


def kill_point(name: str) -> None:
    """A moment at which a kill must leave a resumable workspace (everything before it is
    on disk). With ``BIASAUDIT_TEST_STOP_AFTER=<name>:<count>`` the process ends here the
    ``count``-th time, with ``os._exit`` (no cleanup, no ``finally``: a real kill), so a
    test can stop a scan at a chosen point deterministically. No-op otherwise.

    >>> kill_point("validate")  # the variable is unset: nothing happens
    """
    spec = os.environ.get(STOP_ENV)
    if not spec:
        return
    point, _, count = spec.rpartition(":") if ":" in spec else (spec, "", "1")
    if point != name:
        return
    _passed[name] = _passed.get(name, 0) + 1
    if _passed[name] >= int(count or 1):
        os._exit(KILLED_EXIT)


def _json_default(obj: Any):
    # numpy scalars and paths show up in configs and findings; make them plain JSON.
    import numpy as np

    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return obj.as_posix()
    raise TypeError(f"Object of type {type(obj).__name__} is not JSON serializable")
