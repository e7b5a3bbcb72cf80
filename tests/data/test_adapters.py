"""Each adapter on a tiny folder in its official layout, plus CCP and ADE20K on real data."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from biasaudit.core.errors import DatasetError, ValidationError
from biasaudit.data import (
    BASE_COLUMNS,
    detect_layout,
    open_dataset,
    read_mask,
    validate_dataset,
)
from biasaudit.data.adapters.ade20k import _name_lookup, class_id_for
from biasaudit.data.testing import (
    gradient,
    label_map,
    write_ade20k_full,
    write_ccp,
    write_celebamask_hq,
    write_lip,
    write_sceneparse150,
)


def test_celebamask_hq_official_layout(tmp_path):
    write_celebamask_hq(tmp_path, n=3, size=32)
    ds = open_dataset(tmp_path)
    assert (ds.layout, ds.schema.name, ds.n_images) == ("celebamask-hq", "celebamask-hq", 3)
    assert [s.image_id for s in ds.samples] == ["0.jpg", "1.jpg", "2.jpg"]
    mask = read_mask(ds.sample("0.jpg"), ds.schema)
    # 16×16 part masks (skin rows 4-15, hair rows 0-7 painted over it), upsampled ×2.
    assert mask.shape == (32, 32)
    np.testing.assert_array_equal(mask[[0, 15, 16, 31], 0], [13, 13, 1, 1])
    no_hair = read_mask(ds.sample("1.jpg"), ds.schema)
    np.testing.assert_array_equal(no_hair[[0, 7, 8, 31], 0], [0, 0, 1, 1])
    m = validate_dataset(ds)
    assert m.n_ok == 3 and m.n_errors == 0
    assert list(m.table.columns) == [*BASE_COLUMNS, "Smiling", "Male"]
    assert m.table.set_index("image").loc[["0.jpg", "1.jpg", "2.jpg"], "Smiling"].tolist() == [0, 1, 0]
    assert m.table.set_index("image").loc["0.jpg", "Male"] == 1


def test_celebamask_hq_problems(tmp_path):
    base = write_celebamask_hq(tmp_path, n=2, size=32)
    (base / "CelebAMask-HQ-mask-anno" / "0" / "00001_skin.png").unlink()
    Image.fromarray(np.zeros((16, 16), np.uint8)).save(base / "CelebAMask-HQ-mask-anno" / "0" / "00007_hair.png")
    m = validate_dataset(open_dataset(tmp_path))
    t = m.table.set_index("image")
    assert t.loc["1.jpg", "status"] == "error" and "has no part masks" in t.loc["1.jpg", "error"]
    orphan = "CelebAMask-HQ/CelebAMask-HQ-mask-anno/0/00007_hair.png"
    assert "7.jpg, which is not in CelebA-HQ-img" in t.loc[orphan, "error"]
    assert t.loc["0.jpg", "status"] == "ok"


def test_lip_official_layout_nested_as_unpacked(tmp_path):
    write_lip(tmp_path, size=(20, 30))
    assert detect_layout(tmp_path) == "lip"
    ds = open_dataset(tmp_path)
    assert ds.schema.name == "lip"
    assert sorted(s.image_id for s in ds.samples) == [
        "train_images/0_train.jpg", "train_images/1_train.jpg", "val_images/0_val.jpg",
    ]
    mask = read_mask(ds.sample("val_images/0_val.jpg"), ds.schema)
    assert mask.shape == (30, 20) and set(np.unique(mask)) == {0, 2, 5, 9}
    m = validate_dataset(ds)
    assert m.n_ok == 3
    assert m.table.set_index("image")["split"].to_dict()["val_images/0_val.jpg"] == "val"


def test_lip_flat_pairs(tmp_path):
    for folder in ("train_images", "train_segmentations"):
        (tmp_path / folder).mkdir()
    Image.fromarray(gradient(5, 5)).save(tmp_path / "train_images" / "a.jpg")
    Image.fromarray(label_map(5, 5, (0, 19))).save(tmp_path / "train_segmentations" / "a.png")
    ds = open_dataset(tmp_path)
    assert ds.layout == "lip" and ds.samples[0].mask is not None


def test_sceneparse150_layout(tmp_path):
    write_sceneparse150(tmp_path, size=(24, 16))
    ds = open_dataset(tmp_path)
    assert (ds.layout, ds.schema.name, ds.n_images) == ("ade20k", "ade20k-150", 4)
    sid = "training/ADE_train_00000001.jpg"
    assert set(np.unique(read_mask(ds.sample(sid), ds.schema))) == {0, 3, 150}
    m = validate_dataset(ds)
    t = m.table.set_index("image")
    assert m.n_ok == 4
    assert t.loc[sid, "split"] == "training" and t.loc[sid, "scene"] == "street"
    assert t.loc["validation/ADE_val_00000002.jpg", "scene"] == "bedroom"


def test_ade20k_full_format_maps_names_to_150(tmp_path):
    write_ade20k_full(tmp_path, size=(24, 16))
    ds = open_dataset(tmp_path)
    assert ds.layout == "ade20k"
    # Only the photo is a sample: _seg.png, _parts_1.png, the JSON and instance masks are annotations.
    assert [s.image_id for s in ds.samples] == ["training/urban/street/ADE_train_00000001.jpg"]
    mask = read_mask(ds.samples[0], ds.schema)
    # Rows 0-3 tree (5), 4-7 car (21), 8-11 banner (not in the 150 → 0), 12-15 background.
    np.testing.assert_array_equal(mask[:, 0], [5] * 4 + [21] * 4 + [0] * 8)
    m = validate_dataset(ds)
    assert m.n_ok == 1 and m.n_errors == 0
    assert m.table.loc[0, "scene"] == "outdoor/urban/street"


def test_ade20k_name_matching_uses_head_word_only():
    from biasaudit.core.schema import get_schema

    lookup = _name_lookup(get_schema("ade20k-150"))
    assert class_id_for("car, auto, automobile, machine, motorcar", lookup) == 21
    assert class_id_for("person, individual, someone, somebody, mortal, soul", lookup) == 13
    assert class_id_for("streetlight, street lamp", lookup) == 88
    assert class_id_for("crt screen", lookup) == 142
    assert class_id_for("wheel", lookup) == 0  # a synonym of bicycle, but not its name
    assert class_id_for("banner, streamer", lookup) == 0


def test_ccp_layout(tmp_path):
    write_ccp(tmp_path, n=3)
    ds = open_dataset(tmp_path)
    assert (ds.layout, ds.schema.name) == ("ccp", "ccp")
    m = validate_dataset(ds)
    t = m.table.set_index("image")
    assert m.n_ok == 3
    assert t.loc["0001.jpg", "hat"] == 1 and t.loc["0002.jpg", "hat"] == 0
    assert (t["hair"] == 1).all() and (t["jeans"] == 0).all()
    assert len(m.label_columns) == 58


def test_ccp_label_list_mismatch_is_a_dataset_error(tmp_path):
    write_ccp(tmp_path, n=1)
    (tmp_path / "label_list.csv").write_text("id,name\n0,null\n1,hats\n", "utf-8")
    with pytest.raises(DatasetError, match="label_list.csv does not match schema 'ccp'"):
        open_dataset(tmp_path)


def test_native_layout_reads_schema_json_and_labels(tmp_path):
    (tmp_path / "images" / "sub").mkdir(parents=True)
    (tmp_path / "masks" / "sub").mkdir(parents=True)
    Image.fromarray(gradient(6, 4)).save(tmp_path / "images" / "sub" / "a.png")
    Image.fromarray(label_map(6, 4, (0, 1))).save(tmp_path / "masks" / "sub" / "a.png")
    (tmp_path / "schema.json").write_text(json.dumps({"name": "mine", "classes": {"0": "bg", "1": "thing"}}))
    (tmp_path / "labels.csv").write_text("image,group,score,width\nsub/a.png,x,0.5,7\n", "utf-8")
    ds = open_dataset(tmp_path)
    assert (ds.layout, ds.schema.name) == ("native", "mine")
    m = validate_dataset(ds)
    row = m.table.iloc[0]
    assert (row["image"], row["status"], row["group"], row["score"]) == ("sub/a.png", "ok", "x", 0.5)
    # A label column named like a manifest column is kept under a prefixed name.
    assert row["width"] == 6 and row["label_width"] == 7
    # An explicit schema wins over schema.json.
    assert open_dataset(tmp_path, schema="celebamask-hq").schema.name == "celebamask-hq"


def test_native_masks_without_schema_ask_for_one(tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    with pytest.raises(DatasetError, match="pass --schema"):
        open_dataset(tmp_path)


def test_native_without_masks_needs_no_schema(tmp_path):
    (tmp_path / "images").mkdir()
    Image.fromarray(gradient(3, 3)).save(tmp_path / "images" / "a.png")
    ds = open_dataset(tmp_path)
    assert ds.schema is None and not ds.masks_expected
    assert validate_dataset(ds).n_ok == 1


def test_empty_and_missing_folders(tmp_path):
    with pytest.raises(DatasetError, match="the folder is empty"):
        open_dataset(tmp_path)
    with pytest.raises(DatasetError, match="does not exist"):
        open_dataset(tmp_path / "nope")
    with pytest.raises(ValidationError, match="Unknown layout 'coco'"):
        open_dataset(tmp_path, layout="coco")
    with pytest.raises(DatasetError, match="no images/ folder"):
        open_dataset(tmp_path, layout="native")


def test_unknown_folder_lists_what_was_looked_for(tmp_path):
    (tmp_path / "pictures").mkdir()
    with pytest.raises(DatasetError) as info:
        open_dataset(tmp_path)
    text = str(info.value)
    assert "found: pictures" in text and "CelebA-HQ-img/" in text and "images/ (+ masks/" in text


@pytest.mark.real_data
def test_ccp_real_data(ccp_dir):
    m = validate_dataset(open_dataset(ccp_dir))
    assert (m.layout, m.schema_name, m.n_images, m.n_ok) == ("ccp", "ccp", 350, 350)
    present = pd.read_csv(ccp_dir / "present_labels.csv", dtype={"image": str})
    t = m.table.set_index("image")
    ids = present["image"] + ".jpg"
    assert t.loc[ids, "width"].tolist() == present["width"].tolist()
    assert t.loc[ids, "height"].tolist() == present["height"].tolist()
    for sid, tags in zip(ids, present["labels_present"], strict=True):
        row = t.loc[sid, m.label_columns]
        assert set(row[row == 1].index) == set(tags.split(";"))
    # Counts stated in the data's SOURCES.md.
    assert (t["skin"].sum(), t["hair"].sum(), t["sunglasses"].sum(), t["hat"].sum()) == (350, 337, 105, 32)
    assert t["has_mask"].all() and (t["warning"] == "").all()


@pytest.mark.real_data
def test_ade20k_real_full_format(real_data_dir):
    root = real_data_dir / "ade20k"
    if not (root / "ADE20K_2021_17_01").is_dir():
        pytest.skip("ADE20K sample not present")
    ds = open_dataset(root)
    m = validate_dataset(ds)
    assert (m.layout, m.n_images, m.n_ok) == ("ade20k", 3, 3)
    sample = ds.sample("training/urban/street/ADE_train_00016900.jpg")
    mask = read_mask(sample, ds.schema)
    raw = np.asarray(Image.open(sample.mask.path)).astype(int)
    cls = raw[..., 0] // 10 * 256 + raw[..., 1]
    assert mask.shape == cls.shape == (1650, 2200)
    assert np.all(mask[cls == 2855] == 5)  # tree
    assert np.all(mask[cls == 401] == 21)  # car
    assert np.all(mask[cls == 0] == 0)


def test_partial_celebamask_copy_gives_one_note_not_an_error_per_row(tmp_path):
    base = write_celebamask_hq(tmp_path, n=3, size=32)
    (base / "CelebA-HQ-img" / "2.jpg").unlink()
    for p in (base / "CelebAMask-HQ-mask-anno" / "0").glob("00002_*.png"):
        p.unlink()
    m = validate_dataset(open_dataset(tmp_path))
    assert (m.n_images, m.n_ok, m.n_errors) == (2, 2, 0)
    notes = [p for p in m.problems if p.image_id == "CelebAMask-HQ-attribute-anno.txt"]
    assert len(notes) == 1 and "lists 1 image that is not in this copy (2.jpg)" in notes[0].message


def test_ade20k_without_json_warns_and_maps_to_background(tmp_path):
    write_ade20k_full(tmp_path)
    next(tmp_path.rglob("*.json")).unlink()
    m = validate_dataset(open_dataset(tmp_path))
    assert m.n_ok == 1
    assert "ADE_train_00000001.json is missing" in m.table.loc[0, "warning"]


def test_lip_annotation_folders_named_like_image_folders(tmp_path):
    # Some LIP copies keep the maps in TrainVal_parsing_annotations/TrainVal_images/train_images/.
    img_dir = tmp_path / "TrainVal_images" / "train_images"
    ann_dir = tmp_path / "TrainVal_parsing_annotations" / "TrainVal_images" / "train_images"
    img_dir.mkdir(parents=True)
    ann_dir.mkdir(parents=True)
    Image.fromarray(gradient(5, 7)).save(img_dir / "a.jpg")
    Image.fromarray(label_map(5, 7, (0, 13))).save(ann_dir / "a.png")
    ds = open_dataset(tmp_path)
    assert [s.image_id for s in ds.samples] == ["train_images/a.jpg"]
    assert ds.samples[0].mask.path == ann_dir / "a.png"
    assert validate_dataset(ds).n_ok == 1
