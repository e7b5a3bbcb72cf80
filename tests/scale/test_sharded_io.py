"""Sharded workspace tables, their readers, older workspaces, and memory-bounded statistics
(issue 13)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from biasaudit.audit import stats
from biasaudit.core.errors import DatasetError
from biasaudit.core.io import (
    iter_parquet_parts,
    kill_point,
    parquet_parts,
    part_path,
    read_parquet_table,
)
from biasaudit.segment import pipeline, segment_dataset, segment_table
from biasaudit.segment.pipeline import iter_segment_parts


@pytest.fixture(scope="module")
def synth_dir(tmp_path_factory):
    """24 SynthFaces portraits at 64 px with celebamask-hq masks and 0/1 attributes."""
    from biasaudit.data.synth.faces import SynthFacesConfig, write_synthfaces

    return write_synthfaces(tmp_path_factory.mktemp("synth") / "faces", SynthFacesConfig(n=24, seed=3, size=64))


def test_a_sharded_table_reads_back_in_part_order(tmp_path):
    folder = tmp_path / "t.parquet"
    folder.mkdir()
    for k in (2, 0, 1):  # written out of order, read in part order
        pd.DataFrame({"i": [2 * k, 2 * k + 1]}).to_parquet(part_path(folder, k), index=False)
    (folder / ".part-00003.parquet.x.tmp").write_bytes(b"half")  # a killed write: never read
    assert [p.name for p in parquet_parts(folder)] == [f"part-0000{k}.parquet" for k in range(3)]
    assert read_parquet_table(folder)["i"].tolist() == list(range(6))
    assert [len(p) for p in iter_parquet_parts(folder)] == [2, 2, 2]
    assert pd.read_parquet(folder)["i"].tolist() == list(range(6))  # plain pandas reads it too
    single = tmp_path / "s.parquet"
    pd.DataFrame({"i": [7]}).to_parquet(single, index=False)
    assert read_parquet_table(single)["i"].tolist() == [7] and read_parquet_table(tmp_path / "none") is None


def test_kill_point_is_a_no_op_unless_asked(monkeypatch):
    monkeypatch.delenv("BIASAUDIT_TEST_STOP_AFTER", raising=False)
    kill_point("validate")
    monkeypatch.setenv("BIASAUDIT_TEST_STOP_AFTER", "audit:1")
    kill_point("validate")  # another point: still alive


def test_segments_are_sharded_in_manifest_order(synth_dir, tmp_path, monkeypatch):
    monkeypatch.setattr(pipeline, "SHARD_IMAGES", 10)
    ws = tmp_path / "ws"
    result = segment_dataset(synth_dir, ws, segmenter="masks")
    parts = sorted(p.name for p in (ws / "segments.parquet").iterdir())
    assert parts == ["part-00000.parquet", "part-00001.parquet", "part-00002.parquet"]  # 24 images
    manifest = pd.read_parquet(ws / "manifest.parquet")
    whole = segment_table(ws)
    assert whole["image"].drop_duplicates().tolist() == manifest["image"].tolist()
    assert [p["image"].nunique() for p in iter_segment_parts(ws)] == [10, 10, 4]
    pd.testing.assert_frame_equal(result.segments, whole)
    assert result.coverage().loc["skin", "n_present"] == 24
    # unchanged shards are reused as they are
    assert segment_dataset(synth_dir, ws, segmenter="masks").n_reused == 24
    # other shard boundaries: rows are reused where the shard's old file has them, the
    # rest recomputed, and the shards past the end removed
    monkeypatch.setattr(pipeline, "SHARD_IMAGES", 100)
    again = segment_dataset(synth_dir, ws, segmenter="masks")
    assert (again.n_reused, again.n_segmented) == (10, 14)
    assert [p.name for p in parquet_parts(ws / "segments.parquet")] == ["part-00000.parquet"]
    pd.testing.assert_frame_equal(segment_table(ws), whole)


def test_an_older_single_file_workspace_is_read_and_rewritten_as_shards(synth_dir, tmp_path):
    ws = tmp_path / "ws"
    segment_dataset(synth_dir, ws, segmenter="masks")
    whole = segment_table(ws)
    # what an older biasaudit left: one segments.parquet file
    import shutil

    shutil.rmtree(ws / "segments.parquet")
    whole.to_parquet(ws / "segments.parquet", index=False)
    pd.testing.assert_frame_equal(segment_table(ws), whole)  # readable as it is
    again = segment_dataset(synth_dir, ws, segmenter="masks")
    assert again.n_reused == 24 and again.n_segmented == 0  # its rows were reused, not recomputed
    assert (ws / "segments.parquet").is_dir()
    pd.testing.assert_frame_equal(segment_table(ws), whole)


def test_a_missing_segment_table_names_the_fix(tmp_path):
    with pytest.raises(DatasetError, match="biasaudit segment"):
        segment_table(tmp_path)


def test_permutation_tests_do_not_depend_on_their_batches(monkeypatch):
    rng = np.random.default_rng(1)
    hair = rng.integers(0, 3, 3000)
    label = (rng.random(3000) < 0.2 + 0.2 * hair).astype(int)
    brows = (hair + (rng.random(3000) < 0.1)) % 3
    sparse = np.array([[3, 0, 1], [0, 4, 0], [2, 2, 9]])
    whole = stats.stratified_association(brows, label, hair), stats.permutation_chi2_p(sparse, seed=0)
    monkeypatch.setattr(stats, "PERMUTATION_CELLS", 7_000)  # a few permutations per batch
    assert stats._batch_rows(3000, 200) == 2
    assert (stats.stratified_association(brows, label, hair), stats.permutation_chi2_p(sparse, seed=0)) == whole


def test_embeddings_are_read_by_image_id_never_by_row(tmp_path):
    from biasaudit.heml.workspace import read_embeddings, write_embeddings

    emb = {"hair": np.arange(6, dtype=np.float32).reshape(3, 2)}
    write_embeddings(tmp_path, ["a", "b", "c"], emb)
    got = read_embeddings(tmp_path, ["c", "a"], ["hair"])["hair"]
    assert got.dtype == np.float16 and got.tolist() == [[4, 5], [0, 1]]
    assert read_embeddings(tmp_path, None, ["hair"])["hair"].shape == (3, 2)
    with pytest.raises(DatasetError, match="no embedding for z"):
        read_embeddings(tmp_path, ["z"], ["hair"])
    # a new index drops the node files written for the old one
    write_embeddings(tmp_path, ["x"], {"mouth": np.ones((1, 2), np.float32)})
    assert not (tmp_path / "embeddings" / "hair.npy").exists()
