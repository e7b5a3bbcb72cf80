"""Validation streams its rows (issue 13): a few images decode ahead of the caller, and the
rows become table columns ``ROWS_PER_CHUNK`` at a time, so no list of every image's row is
held; the manifest is the same, byte for byte, whatever the chunk size."""

from __future__ import annotations

from pathlib import Path

import pytest

import biasaudit.data.validate as validate
from biasaudit.data import open_dataset, validate_dataset
from biasaudit.data.testing import write_bad_inputs


@pytest.fixture(scope="module")
def bad_root(tmp_path_factory) -> Path:
    """Every kind of bad input: adapter problems on images, on label rows without an image,
    and notes on files that are not images, next to good images."""
    return write_bad_inputs(tmp_path_factory.mktemp("streamed") / "bad").root


def _manifest_bytes(manifest, path: Path) -> bytes:
    manifest.save(path)
    return path.read_bytes()


def test_chunked_rows_give_the_same_manifest(bad_root, tmp_path, monkeypatch):
    whole = validate_dataset(open_dataset(bad_root), workers=2)
    assert whole.n_errors > 0 and len(whole.problems) > 0
    for chunk in (1, 2, 5):
        monkeypatch.setattr(validate, "ROWS_PER_CHUNK", chunk)
        chunked = validate_dataset(open_dataset(bad_root), workers=2)
        assert chunked.problems == whole.problems, chunk
        assert _manifest_bytes(chunked, tmp_path / f"c{chunk}.parquet") == _manifest_bytes(whole, tmp_path / "w.parquet")


def test_rows_are_decoded_a_few_ahead_and_framed_chunk_by_chunk(bad_root, monkeypatch):
    started: list[int] = []
    framed: list[tuple[int, int]] = []  # (rows in the chunk, inspections started by then)
    inspect, frame = validate._inspect, validate._frame

    def counting_inspect(*args, **kwargs):
        started.append(1)
        return inspect(*args, **kwargs)

    def counting_frame(rows):
        framed.append((len(rows), len(started)))
        return frame(rows)

    monkeypatch.setattr(validate, "_inspect", counting_inspect)
    monkeypatch.setattr(validate, "_frame", counting_frame)
    monkeypatch.setattr(validate, "ROWS_PER_CHUNK", 2)
    dataset = open_dataset(bad_root)
    n = len(dataset.samples)
    assert n > 10
    validate_dataset(dataset, workers=1)
    assert len(started) == n
    # the last chunk also carries the rows of label entries that have no image
    assert len(framed) > 2 and all(size <= 2 for size, _ in framed[:-1])
    # when the first chunk is framed, only the decode-ahead window (4 per thread) has
    # started beyond it, not every image of the dataset
    assert framed[0][1] <= 2 + 4 * 1 + 1 < n
