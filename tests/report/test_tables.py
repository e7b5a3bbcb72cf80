"""The report reads the workspace's tables in batches, only the columns it shows, and keeps
a bounded pool of example images per value: the same page as a whole-table read."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from biasaudit.core.io import read_parquet_table
from biasaudit.report import ReportOptions, render_report, tables
from biasaudit.report.inputs import load_inputs


def _page(ws) -> str:
    return re.sub(r"\d{4}-\d\d-\d\d \d\d:\d\d UTC", "TIME", render_report(load_inputs(ws)))


def test_candidate_pool_is_exact_up_to_its_size_then_bounded_and_batch_independent():
    rng = np.random.default_rng(0)
    values = pd.Series(rng.choice(["a", "b", "c"], 500, p=[0.7, 0.25, 0.05]))
    images = pd.Series([f"{i:05d}.png" for i in range(500)])
    whole = tables.CandidatePool(max_pool=100)
    whole.add(values, images)
    pieces = tables.CandidatePool(max_pool=100)
    for lo in range(0, 500, 37):
        pieces.add(values[lo : lo + 37], images[lo : lo + 37])
    assert whole.counts().to_dict() == values.value_counts(sort=False).to_dict()
    assert pieces.counts().to_dict() == whole.counts().to_dict()
    for v in "abc":
        everyone = images[values == v].tolist()
        assert pieces.ids(v) == whole.ids(v)
        if len(everyone) <= 100:
            assert whole.ids(v) == everyone  # small: every image, in table order
        else:
            assert len(whole.ids(v)) == 100 and set(whole.ids(v)) <= set(everyone)
            assert whole.ids(v) == sorted(whole.ids(v))  # table order
    assert tables.bounded_ids(images[:50].tolist(), 100) == images[:50].tolist()
    sampled = tables.bounded_ids(images.tolist(), 100)
    assert len(sampled) == 100 and sampled == sorted(sampled) and sampled == tables.bounded_ids(images.tolist(), 100)


def test_manifest_and_coverage_in_small_batches_equal_whole_table_reads(workspace, monkeypatch):
    manifest = pd.read_parquet(workspace / "manifest.parquet")
    bad = manifest.index[3::20]  # 10 unusable rows spread over the batches
    manifest.loc[bad, "status"] = "unreadable"
    manifest.loc[bad, "error"] = "truncated file"
    manifest.loc[manifest.index[::50], "warning"] = "odd size"
    manifest.to_parquet(workspace / "manifest.parquet", index=False)
    monkeypatch.setattr(tables, "BATCH_ROWS", 7)
    summary = tables.read_manifest(workspace / "manifest.parquet", label_columns=["Smiling", "Male", "nope"],
                                   max_error_rows=3)
    assert summary.n_images == len(manifest) == 200
    assert summary.n_errors == 10 and summary.n_warnings == 4
    assert [r["image"] for r in summary.error_rows] == manifest.loc[bad[:3], "image"].tolist()
    assert summary.error_rows[0]["error"] == "truncated file"
    ok = manifest[manifest["status"] == "ok"].set_index("image")
    assert list(summary.labels.columns) == ["Smiling", "Male"]  # only the columns asked for that exist
    pd.testing.assert_frame_equal(summary.labels, ok[["Smiling", "Male"]])
    seg = read_parquet_table(workspace / "segments.parquet")
    whole = seg.groupby("part", sort=False)["present"].mean().sort_values(ascending=False)
    assert tables.part_coverage(workspace / "segments.parquet") == [(str(p), float(v)) for p, v in whole.items()]
    usable = seg[seg["image"].isin(ok.index)].groupby("part", sort=False)["present"].mean()
    assert tables.part_coverage(workspace / "segments.parquet", usable=summary.labels.index) == [
        (str(p), float(v)) for p, v in usable.sort_values(ascending=False).items()]


def test_the_page_does_not_depend_on_batch_size_and_reads_only_needed_columns(workspace, monkeypatch):
    before = _page(workspace)
    read: list[tuple[str, tuple[str, ...]]] = []
    real = pq.ParquetFile.iter_batches

    def spy(self, *args, columns=None, **kw):
        read.append((str(self.metadata.num_rows), tuple(columns or ())))
        return real(self, *args, columns=columns, **kw)

    monkeypatch.setattr(tables, "BATCH_ROWS", 11)
    monkeypatch.setattr(pq.ParquetFile, "iter_batches", spy)
    assert _page(workspace) == before
    columns = {c for _, cols in read for c in cols}
    assert {"image", "status", "part", "present", "node", "Smiling"} <= columns
    assert not columns & {"sha256", "path", "width", "n_pixels", "source", "area_frac", "lab_l", "cluster_name"}


def test_a_small_pool_bounds_the_exemplars_but_keeps_the_counts(workspace):
    pool = tables.attribute_pool(workspace / "attributes.parquet", node="hair", column="colour", max_pool=3)
    attrs = pd.read_parquet(workspace / "attributes.parquet")
    hair = attrs[attrs["node"] == "hair"]["colour"].astype(str)
    assert pool.counts().to_dict() == hair.value_counts(sort=False).to_dict()
    assert all(len(pool.ids(v)) == min(3, n) for v, n in pool.counts().items())
    # the page: every exemplar grid still says how many images have the value
    inputs = load_inputs(workspace)
    small = render_report(inputs, options=ReportOptions(max_pool=3))
    full = render_report(inputs)
    count = re.compile(r"\(([\d,]+) images?\)")
    assert count.findall(small) == count.findall(full) and count.findall(full)
    assert 0 < small.count("<img") < full.count("<img")  # 4 thumbnails per value, from a pool of 3


@pytest.mark.parametrize("missing", ["segments.parquet", "attributes.parquet"])
def test_missing_tables_still_render(workspace, missing):
    import shutil

    path = workspace / missing
    shutil.rmtree(path) if path.is_dir() else path.unlink()
    assert "Dataset" in _page(workspace)
