"""The segment stage holds one shard, not the dataset (issue 13): the samples are kept
compactly (:class:`SampleList`) and built again when read, and segmentation walks
``manifest.parquet`` shard by shard, asking for each image's sample and file keys only
when its shard's turn comes."""

from __future__ import annotations

import weakref
from pathlib import Path

import pandas as pd
import pytest

import biasaudit.segment.pipeline as pipeline
from biasaudit.data import MaskRef, Sample, open_dataset
from biasaudit.data.dataset import SampleList
from biasaudit.data.testing import (
    write_bad_inputs,
    write_celebamask_hq,
    write_lip,
    write_sceneparse150,
)

SHARD = 4


@pytest.fixture(scope="module")
def faces(tmp_path_factory) -> Path:
    from biasaudit.data.synth.faces import SynthFacesConfig, write_synthfaces

    out = tmp_path_factory.mktemp("bounded") / "faces"
    write_synthfaces(out, SynthFacesConfig(n=30, seed=5, size=64))
    return out


def _track_samples(monkeypatch) -> dict[str, int]:
    """Count the Sample objects the dataset hands out that are alive at once, from the
    moment validation is saved (the kill point ``validate``) to the end."""
    state = {"alive": 0, "most": 0, "on": False}
    decode = SampleList._decode

    def gone() -> None:
        state["alive"] -= 1

    def counted(self, k):
        sample = decode(self, k)
        state["alive"] += 1
        weakref.finalize(sample, gone)
        if state["on"]:
            state["most"] = max(state["most"], state["alive"])
        return sample

    monkeypatch.setattr(SampleList, "_decode", counted)
    kill_point = pipeline.kill_point

    def spy(name: str) -> None:
        if name == "validate":
            state["on"] = True
            state["most"] = state["alive"]
        kill_point(name)

    monkeypatch.setattr(pipeline, "kill_point", spy)
    return state


def _track_source_keys(monkeypatch) -> list[int]:
    """Calls of ``_source_key`` (one stat of an image's files each) between two written
    shards, after validation."""
    windows = [0]
    on = {"seg": False}
    source_key, kill_point = pipeline._source_key, pipeline.kill_point

    def counted(seg, sample):
        if on["seg"]:
            windows[-1] += 1
        return source_key(seg, sample)

    def spy(name: str) -> None:
        if name == "validate":
            on["seg"] = True
        if name == "segment-shard":
            windows.append(0)
        kill_point(name)

    monkeypatch.setattr(pipeline, "_source_key", counted)
    monkeypatch.setattr(pipeline, "kill_point", spy)
    return windows


def test_segmenting_holds_one_shard_of_samples(faces, tmp_path, monkeypatch):
    monkeypatch.setattr(pipeline, "SHARD_IMAGES", SHARD)
    state = _track_samples(monkeypatch)
    result = pipeline.segment_dataset(faces, tmp_path / "ws", segmenter="masks", workers=1)
    assert result.n_ok == 30
    # a shard's samples, plus the few a decoding thread may still hold from the one before;
    # a per-image dict over the dataset would hold all 30
    assert 0 < state["most"] <= 2 * SHARD + 2 < 30


def test_file_keys_are_read_shard_by_shard(faces, tmp_path, monkeypatch):
    monkeypatch.setattr(pipeline, "SHARD_IMAGES", SHARD)
    windows = _track_source_keys(monkeypatch)
    pipeline.segment_dataset(faces, tmp_path / "ws", segmenter="masks", workers=1)
    assert sum(windows) == 30 and max(windows) <= SHARD


def test_resumed_run_still_walks_shard_by_shard(faces, tmp_path, monkeypatch):
    monkeypatch.setattr(pipeline, "SHARD_IMAGES", SHARD)
    ws = tmp_path / "ws"
    pipeline.segment_dataset(faces, ws, segmenter="masks", workers=1)
    first = {p.name: p.read_bytes() for p in (ws / "segments.parquet").iterdir()} | {
        "manifest": (ws / "manifest.parquet").read_bytes()}
    state = _track_samples(monkeypatch)
    again = pipeline.segment_dataset(faces, ws, segmenter="masks", workers=1)
    assert again.n_reused == 30 and again.n_segmented == 0
    assert state["most"] <= 2 * SHARD + 2
    assert first == {p.name: p.read_bytes() for p in (ws / "segments.parquet").iterdir()} | {
        "manifest": (ws / "manifest.parquet").read_bytes()}


def test_manifest_and_samples_must_line_up(faces, tmp_path, monkeypatch):
    """A manifest whose rows are not the dataset's samples in order is refused with the fix,
    never silently half-segmented."""
    from biasaudit.core.errors import ValidationError

    monkeypatch.setattr(pipeline, "SHARD_IMAGES", SHARD)
    real = pipeline._validate

    def shuffled(dataset, ws, seg, **kw):
        manifest = real(dataset, ws, seg, **kw)
        table = manifest.table.iloc[::-1].reset_index(drop=True)
        return type(manifest)(table, manifest.dataset_root, manifest.layout, manifest.schema_name,
                              manifest.problems)

    monkeypatch.setattr(pipeline, "_validate", shuffled)
    with pytest.raises(ValidationError, match="--revalidate"):
        pipeline.segment_dataset(faces, tmp_path / "ws", segmenter="masks", workers=1)


@pytest.mark.parametrize("write", [write_bad_inputs, write_celebamask_hq, write_lip, write_sceneparse150])
def test_sample_list_gives_back_the_adapters_samples(write, tmp_path):
    root = tmp_path / "data"
    write(root)
    dataset = open_dataset(root)
    assert isinstance(dataset.samples, SampleList) and len(dataset.samples) > 0
    plain = list(dataset.samples)
    again = SampleList(plain, root=root)
    assert list(again) == plain and again == plain and again[-1] == plain[-1]
    assert [str(s.image_path) for s in again] == [str(s.image_path) for s in plain]
    assert all(dataset.sample(s.image_id) == s for s in plain[:: max(1, len(plain) // 5)])


def test_sample_list_round_trips_odd_samples():
    root = Path("/data/set")
    odd = [
        Sample("a.png", root / "images" / "a.png"),
        Sample("outside.png", Path("/elsewhere/outside.png"), MaskRef(kind="label_map", path=Path("/x/m.png"))),
        Sample("rel.png", Path("images/rel.png")),
        Sample("caf\u00e9 \udce9.png", root / "images" / "caf\u00e9 \udce9.png"),
        Sample("parts.jpg", root / "p.jpg", MaskRef(kind="part_masks", parts=((1, root / "s.png"), (13, root / "h.png")),
                                                    scale=0.5)),
        Sample("ade.jpg", root / "a.jpg", MaskRef(kind="label_map", path=root / "a_seg.png", encoding="ade20k_rgb",
                                                  value_map=((3, 7), (9, 0)))),
        Sample("text-path.png", "images/text-path.png"),  # type: ignore[arg-type]  (kept as it is)
        Sample("listmap.png", root / "l.png", MaskRef(kind="label_map", path=root / "l_m.png",
                                                      value_map=[(1, 2)])),  # type: ignore[arg-type]
    ]
    stored = SampleList(odd, root=root)
    assert len(stored) == len(odd) and list(stored) == odd
    assert stored[1:3] == odd[1:3] and stored[-2] == odd[-2]
    assert stored[6].image_path == "images/text-path.png"
    with pytest.raises(IndexError):
        stored[len(odd)]
    assert SampleList(root=root) == [] and stored != odd[:-1]
    # an id is found where it opens a record, not inside a path
    assert [stored.position(s.image_id) for s in odd] == list(range(len(odd)))
    assert stored.position("images/a.png") is None and stored.position("png") is None


def test_looking_up_an_id_reads_a_few_records_not_the_list(monkeypatch):
    # HEML embeds every image of a workspace by id: a lookup that walks the list would make
    # that quadratic in the dataset's size
    stored = SampleList((Sample(f"{i:06d}.png", Path(f"/d/images/{i:06d}.png")) for i in range(5000)), root="/d")
    assert stored.position("004999.png") == 4999  # builds the index
    reads = []
    real = SampleList._record_id
    monkeypatch.setattr(SampleList, "_record_id", lambda self, k: reads.append(k) or real(self, k))
    assert [stored.position(f"{i:06d}.png") for i in range(0, 5000, 50)] == list(range(0, 5000, 50))
    assert stored.position("missing.png") is None
    assert len(reads) <= 101  # one record checked per hit (a hash collision would add one)
    stored.append(Sample("000007.png", Path("/d/dup.png")))  # a duplicate id: the first sample wins
    stored.append(Sample("late.png", Path("/d/late.png")))
    assert stored.position("000007.png") == 7 and stored.position("late.png") == 5001


def test_labels_are_typed_as_before(tmp_path):
    """``attach_labels`` builds the label table column by column; the types are those of
    rows read one by one (ints stay ints, text stays text, gaps become NaN)."""
    from biasaudit.data.adapters._common import attach_labels, read_labels_csv

    (tmp_path / "labels.csv").write_text("image,a,s,f\n0.png,1,x,0.5\n1.png,,y,\n../up.png,2,z,1\n0.png,5,w,2\n")
    samples = [Sample(f"{i}.png", tmp_path / f"{i}.png") for i in range(3)]
    labels, problems = attach_labels(samples, read_labels_csv(tmp_path / "labels.csv", root=tmp_path),
                                     source="labels.csv")
    assert labels.index.tolist() == ["0.png", "1.png", "../up.png"]
    assert labels.loc["0.png", "a"] == 1 and pd.isna(labels.loc["1.png", "a"])
    assert labels["a"].dtype.kind == "f" and labels["f"].dtype.kind == "f" and labels.loc["1.png", "s"] == "y"
    assert any("2 times" in p.message for p in problems) and any("outside" in p.message for p in problems)


def test_manifest_blocks_are_cut_to_the_shard_size_across_row_groups(tmp_path):
    """``manifest.parquet`` is read one shard at a time; a file written in row groups that
    do not match the shard size still gives blocks of exactly that size, in order."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    images = [f"{i:03d}.png" for i in range(23)]
    table = pa.table({"image": images, "sha256": [f"h{i}" for i in range(23)],
                      "status": ["ok" if i % 4 else "error" for i in range(23)], "error": [""] * 23})
    pq.write_table(table, tmp_path / "m.parquet", row_group_size=3)
    blocks = list(pipeline._manifest_blocks(tmp_path / "m.parquet", 5))
    assert [len(b[0]) for b in blocks] == [5, 5, 5, 5, 3]
    assert [i for b in blocks for i in b[0]] == images
    assert [s for b in blocks for s in b[2]] == table.column("status").to_pylist()
