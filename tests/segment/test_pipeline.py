from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from biasaudit.core.errors import DatasetError, ValidationError
from biasaudit.data import Manifest, open_dataset, read_mask
from biasaudit.segment import load_part_map, load_segmentation, segment_dataset

HAIR = {"Blond_Hair": "blond", "Black_Hair": "black", "Brown_Hair": "brown", "Red_Hair": "red", "Gray_Hair": "gray"}


def _labels(root):
    return pd.read_csv(root / "labels.csv").set_index("image")


def test_masks_statistics_match_the_generator_truth(synth_dir, tmp_path):
    result = segment_dataset(synth_dir, tmp_path / "ws", segmenter="auto")
    seg, labels = result.segments, _labels(synth_dir)
    assert result.segmenter == "masks" and result.n_ok == 24 and result.n_failed == 0
    assert len(seg) == 24 * 18  # every part but the background, for every image
    hair = seg[seg.part == "hair"].set_index("image")["colour"]
    truth = labels[list(HAIR)].idxmax(axis=1).map(HAIR)
    assert (hair.reindex(truth.index) == truth).mean() >= 0.95
    for part, attr in (("hat", "Wearing_Hat"), ("eye_g", "Eyeglasses")):
        present = seg[seg.part == part].set_index("image")["present"].reindex(labels.index)
        assert (present.astype(int) == labels[attr]).all()
    # area fractions of one image sum to the non-background share, which is < 1
    per_image = seg.groupby("image")["area_frac"].sum()
    assert ((per_image > 0.2) & (per_image < 1.0)).all()


def test_workspace_files_and_config(synth_dir, tmp_path):
    ws = tmp_path / "ws"
    segment_dataset(synth_dir, ws, segmenter="masks")
    on_disk = pd.read_parquet(ws / "segments.parquet")
    assert {"image", "part", "present", "area_frac", "bbox_x0", "lab_l", "colour", "n_pixels"} <= set(on_disk.columns)
    manifest = Manifest.load(ws / "manifest.parquet")
    assert manifest.n_ok == 24
    config = json.loads((ws / "config.json").read_text())
    assert config["data"]["root"] == str(synth_dir.resolve())
    assert config["segment"]["segmenter"] == "masks" and config["segment"]["schema"] == "celebamask-hq"
    assert config["biasaudit_version"]
    assert not (ws / "masks").exists()  # stored masks are read in place, never copied


def test_rerun_reuses_unchanged_images_and_redoes_edited_masks(synth_copy, tmp_path):
    ws = tmp_path / "ws"
    first = segment_dataset(synth_copy, ws, segmenter="masks")
    again = segment_dataset(synth_copy, ws, segmenter="masks")
    assert again.n_reused == 24 and again.n_segmented == 0
    pd.testing.assert_frame_equal(first.segments, again.segments)
    # paint one mask's hat away: only that image is recomputed and its hat disappears
    image_id = first.segments[(first.segments.part == "hat") & first.segments.present]["image"].iloc[0]
    mask_path = synth_copy / "masks" / (image_id.rsplit(".", 1)[0] + ".png")
    arr = np.array(Image.open(mask_path))
    arr[arr == 14] = 0
    Image.fromarray(arr).save(mask_path)
    os.utime(mask_path, ns=(1, 1))  # a different mtime even on coarse clocks
    third = segment_dataset(synth_copy, ws, segmenter="masks")
    assert third.n_reused == 23 and third.n_segmented == 1
    hat = third.segments[(third.segments.part == "hat") & (third.segments.image == image_id)]
    assert not hat["present"].iloc[0]


def test_load_part_map_reads_the_datasets_mask(synth_dir, tmp_path):
    ws = tmp_path / "ws"
    segment_dataset(synth_dir, ws, segmenter="masks")
    ds = open_dataset(synth_dir)
    sample = ds.samples[5]
    rgb, parts = load_segmentation(ws, sample.image_id)
    assert np.array_equal(load_part_map(ws, sample.image_id), read_mask(sample, ds.schema))
    assert rgb.shape[:2] == parts.shape == (64, 64)
    with pytest.raises(DatasetError):
        load_part_map(ws, "missing.png")


def test_segformer_caches_by_content_and_never_segments_twice(synth_dir, tiny_segformer, tmp_path):
    ws = tmp_path / "ws"
    spec = f"segformer:{tiny_segformer}"
    first = segment_dataset(synth_dir, ws, segmenter=spec, device="cpu", batch_size=5)
    assert first.n_segmented == 24 and first.n_cached == 0
    cached = list((ws / "masks").glob("segformer-*/*.png"))
    manifest = pd.read_parquet(ws / "manifest.parquet")
    assert sorted(p.stem for p in cached) == sorted(manifest["sha256"])
    # lose the statistics (as a killed run would): label maps come back from the cache
    shutil.rmtree(ws / "segments.parquet")
    second = segment_dataset(synth_dir, ws, segmenter=spec, device="cpu")
    assert second.n_segmented == 0 and second.n_cached == 24
    pd.testing.assert_frame_equal(first.segments, second.segments)
    image_id = manifest["image"].iloc[3]
    lm = load_part_map(ws, image_id)
    assert lm.shape == (64, 64) and lm.max() <= 18
    # switching the segmenter back to masks recomputes everything (other source)
    third = segment_dataset(synth_dir, ws, segmenter="masks")
    assert third.n_reused == 0 and third.segmenter == "masks"


def test_images_without_a_face_become_manifest_errors(tmp_path):
    pytest.importorskip("mediapipe")
    skimage_data = pytest.importorskip("skimage.data")
    data = tmp_path / "photos"
    (data / "images").mkdir(parents=True)
    Image.fromarray(skimage_data.astronaut()).save(data / "images" / "astronaut.png")
    Image.fromarray(np.full((96, 128, 3), 90, np.uint8)).save(data / "images" / "wall.png")
    result = segment_dataset(data, tmp_path / "ws", segmenter="mediapipe-face")
    assert (result.n_ok, result.n_failed) == (1, 1)
    manifest = pd.read_parquet(tmp_path / "ws" / "manifest.parquet").set_index("image")
    assert manifest.loc["wall.png", "status"] == "error" and "no face" in manifest.loc["wall.png", "error"]
    assert manifest.loc["astronaut.png", "status"] == "ok"
    assert set(result.segments["image"]) == {"astronaut.png"}
    hair = result.segments[(result.segments.part == "hair")].iloc[0]
    assert hair["present"] and hair["bbox_y0"] < 60


def test_unreadable_image_is_an_error_row_not_a_crash(synth_copy, tmp_path):
    victim = sorted((synth_copy / "images").iterdir())[0]
    victim.write_bytes(b"not an image")
    result = segment_dataset(synth_copy, tmp_path / "ws", segmenter="masks")
    assert (result.n_ok, result.n_failed) == (23, 1)
    assert victim.name in set(result.failures["image"])


def test_workspace_inside_the_dataset_is_refused(synth_dir):
    with pytest.raises(ValidationError, match="never"):
        segment_dataset(synth_dir, synth_dir / "ws", segmenter="masks")


def test_auto_without_masks_names_the_model_choices(tmp_path):
    data = tmp_path / "photos"
    (data / "images").mkdir(parents=True)
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(data / "images" / "a.png")
    with pytest.raises(ValidationError, match="mediapipe-face"):
        segment_dataset(data, tmp_path / "ws", segmenter="auto", schema="celebamask-hq")


def test_coverage_and_summary(synth_dir, tmp_path):
    result = segment_dataset(synth_dir, tmp_path / "ws", segmenter="masks")
    cov = result.coverage()
    labels = _labels(synth_dir)
    assert cov.loc["hat", "n_present"] == labels["Wearing_Hat"].sum()
    assert cov.loc["skin", "frac_present"] == 1.0
    text = result.summary()
    assert "24 ok, 0 failed" in text and "hat" in text


def test_incremental_rerun_gives_the_same_manifest_and_sees_new_content(synth_copy, tmp_path):
    ws = tmp_path / "ws"
    segment_dataset(synth_copy, ws, segmenter="masks")
    full = pd.read_parquet(ws / "manifest.parquet")
    segment_dataset(synth_copy, ws, segmenter="masks")
    pd.testing.assert_frame_equal(pd.read_parquet(ws / "manifest.parquet"), full, check_dtype=False)
    # new pixels in one image: it is decoded and hashed again, the others are not
    victim = sorted((synth_copy / "images").iterdir())[2]
    Image.fromarray(np.full((64, 64, 3), 200, np.uint8)).save(victim)
    again = segment_dataset(synth_copy, ws, segmenter="masks")
    assert again.n_reused == 23
    after = pd.read_parquet(ws / "manifest.parquet").set_index("image")
    before = full.set_index("image")
    assert after.loc[victim.name, "sha256"] != before.loc[victim.name, "sha256"]
    assert (after.drop(victim.name)["sha256"] == before.drop(victim.name)["sha256"]).all()
    # an edited labels.csv shows up in the manifest even for untouched images
    labels = pd.read_csv(synth_copy / "labels.csv")
    labels["Smiling"] = 1 - labels["Smiling"]
    labels.to_csv(synth_copy / "labels.csv", index=False)
    segment_dataset(synth_copy, ws, segmenter="masks")
    flipped = pd.read_parquet(ws / "manifest.parquet").set_index("image")
    assert (flipped["Smiling"] == 1 - before["Smiling"].reindex(flipped.index)).all()
    forced = segment_dataset(synth_copy, ws, segmenter="masks", revalidate=True)
    assert forced.n_reused == 24  # re-decoded, but nothing changed, so rows are kept


def test_a_killed_run_resumes_from_its_last_checkpoint(synth_dir, tmp_path, monkeypatch):
    from biasaudit.core.schema import get_schema
    from biasaudit.segment import pipeline
    from biasaudit.segment.masks import MasksSegmenter

    class DiesOnThirdBatch(MasksSegmenter):
        calls = 0

        def segment_samples(self, samples, images):
            type(self).calls += 1
            if self.calls == 3:
                raise KeyboardInterrupt  # what Ctrl-C or a kill looks like mid-run
            return super().segment_samples(samples, images)

    monkeypatch.setattr(pipeline, "SHARD_IMAGES", 4)  # one shard per batch: each is saved when done
    ws = tmp_path / "ws"
    with pytest.raises(KeyboardInterrupt):
        segment_dataset(synth_dir, ws, segmenter=DiesOnThirdBatch(schema=get_schema("celebamask-hq"), batch_size=4))
    assert sorted(p.name for p in (ws / "segments.parquet").iterdir()) == ["part-00000.parquet", "part-00001.parquet"]
    assert pd.read_parquet(ws / "segments.parquet")["image"].nunique() == 8
    resumed = segment_dataset(synth_dir, ws, segmenter="masks")
    assert (resumed.n_reused, resumed.n_segmented, resumed.n_ok) == (8, 16, 24)
    fresh = segment_dataset(synth_dir, tmp_path / "ws2", segmenter="masks")
    cols = ["image", "part", "present", "n_pixels", "colour"]
    pd.testing.assert_frame_equal(resumed.segments[cols], fresh.segments[cols])
