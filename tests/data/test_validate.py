"""validate_dataset on the folder holding every bad input, and the Manifest object."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
from PIL import Image

from biasaudit.core.errors import DatasetError, ValidationError
from biasaudit.data import BASE_COLUMNS, Manifest, open_dataset, validate_dataset
from biasaudit.data.testing import NFD_NAME, gradient, label_map, tree_hashes, write_bad_inputs


@pytest.fixture()
def bad(tmp_path):
    return write_bad_inputs(tmp_path / "bad")


def test_every_bad_input_is_reported_and_nothing_is_written(bad):
    before = tree_hashes(bad.root)
    m = validate_dataset(open_dataset(bad.root), workers=2)
    assert tree_hashes(bad.root) == before
    t = m.table
    by_path = {p: row for p, row in zip(t["path"], t.to_dict("records"), strict=True)}
    by_image = {i: row for i, row in zip(t["image"], t.to_dict("records"), strict=True)}
    for name, phrase in bad.errors.items():
        row = by_path.get(name) or by_image.get(name)
        assert row is not None, f"{name} missing from the manifest"
        assert row["status"] == "error", name
        assert phrase in row["error"], (name, row["error"])
    for name, phrase in bad.warnings.items():
        row = by_path[name]
        assert row["status"] == "ok", (name, row["error"])
        assert phrase in row["warning"], (name, row["warning"])
    assert set(t.loc[t.status == "ok", "image"]) == set(bad.ok)
    assert (m.n_ok, m.n_errors) == (len(bad.ok), len(bad.errors))
    assert m.n_images == len(bad.ok) + len(bad.errors)
    assert m.is_usable


def test_manifest_columns_sizes_and_hashes(bad):
    m = validate_dataset(open_dataset(bad.root))
    assert list(m.table.columns) == [*BASE_COLUMNS, "smiling"]
    t = m.table.set_index("image")
    # EXIF orientation 6: stored 40×20, reported as displayed.
    assert (t.loc["rotated.jpg", "width"], t.loc["rotated.jpg", "height"]) == (20, 40)
    assert (t.loc["good_1.png", "width"], t.loc["good_1.png", "height"]) == (32, 24)
    data = (bad.root / "images" / "good_2.jpg").read_bytes()
    assert t.loc["good_2.jpg", "sha256"] == hashlib.sha256(data).hexdigest()
    assert t.loc["empty.jpg", "sha256"] == hashlib.sha256(b"").hexdigest()
    # labels.csv values survive, also on rows whose image is missing; the NFC row matched the NFD file.
    assert t.loc["missing.jpg", "smiling"] == 1
    assert t.loc["good_1.png", "smiling"] == 0
    assert t.loc[NFD_NAME, "smiling"] == 1
    assert bool(t.loc["good_1.png", "has_mask"]) and not bool(t.loc["no_mask.png", "has_mask"])
    assert (t.loc["no_mask.png", "width"], t.loc["bomb.png", "width"] is not None) == (32, True)


def test_problems_list_every_error_and_warning(bad):
    m = validate_dataset(open_dataset(bad.root))
    fatal = {p.image_id for p in m.problems if p.fatal}
    assert set(m.table.loc[m.table.status == "error", "image"]) <= fatal
    notes = {(p.image_id, p.message) for p in m.problems if not p.fatal}
    assert ("cmyk.jpg", "CMYK converted to RGB") in notes


def test_single_and_multi_thread_agree(bad):
    ds = open_dataset(bad.root)
    a = validate_dataset(ds, workers=1).table
    b = validate_dataset(ds, workers=2).table
    assert a.equals(b)


def test_save_and_load_round_trip(bad, tmp_path):
    m = validate_dataset(open_dataset(bad.root))
    out = tmp_path / "ws" / "manifest.parquet"
    m.save(out)
    back = Manifest.load(out)
    assert back.table.equals(m.table)
    assert (back.layout, back.schema_name, back.dataset_root) == ("native", "celebamask-hq", str(bad.root))
    assert back.problems == m.problems
    assert [p.name for p in out.parent.iterdir()] == ["manifest.parquet"]  # no temp file left


def test_load_rejects_other_files(tmp_path):
    import pandas as pd

    with pytest.raises(ValidationError, match="does not exist"):
        Manifest.load(tmp_path / "nope.parquet")
    pd.DataFrame({"a": [1]}).to_parquet(tmp_path / "x.parquet")
    with pytest.raises(ValidationError, match="not a biasaudit manifest"):
        Manifest.load(tmp_path / "x.parquet")


def test_empty_images_folder_is_not_usable(tmp_path):
    (tmp_path / "images").mkdir()
    m = validate_dataset(open_dataset(tmp_path))
    assert (m.n_images, m.n_ok, m.is_usable) == (0, 0, False)


def test_images_sharing_a_mask_name_are_both_errors(tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    for ext in ("jpg", "png"):
        Image.fromarray(gradient(4, 4)).save(tmp_path / "images" / f"a.{ext}")
    Image.fromarray(label_map(4, 4, (0, 1))).save(tmp_path / "masks" / "a.png")
    m = validate_dataset(open_dataset(tmp_path, schema="celebamask-hq"))
    assert m.n_errors == 2 and m.n_images == 2
    assert all("shares its mask name masks/a.png" in e for e in m.table["error"])


def test_labels_csv_problems_are_dataset_errors(tmp_path):
    (tmp_path / "images").mkdir()
    Image.fromarray(gradient(4, 4)).save(tmp_path / "images" / "a.png")
    (tmp_path / "labels.csv").write_bytes("image,who\na.png,Jos\xe9\n".encode("latin-1"))
    with pytest.raises(DatasetError, match=r"labels.csv is not UTF-8 \(byte 0xe9"):
        open_dataset(tmp_path)
    (tmp_path / "labels.csv").write_text("file,who\na.png,x\n", "utf-8")
    with pytest.raises(DatasetError, match="has no 'image' column"):
        open_dataset(tmp_path)
    (tmp_path / "labels.csv").write_text("", "utf-8")
    with pytest.raises(DatasetError, match="labels.csv is empty"):
        open_dataset(tmp_path)


def test_labels_path_hints_and_absolute_paths(tmp_path):
    (tmp_path / "images").mkdir()
    Image.fromarray(gradient(4, 4)).save(tmp_path / "images" / "a.png")
    (tmp_path / "labels.csv").write_text("image,y\nimages/a.png,1\n/etc/passwd,0\n", "utf-8")
    t = validate_dataset(open_dataset(tmp_path)).table.set_index("image")
    assert "did you mean 'a.png'?" in t.loc["images/a.png", "error"]
    assert "outside the image folder" in t.loc["/etc/passwd", "error"]
    assert t.loc["a.png", "warning"] == "no row in labels.csv"


def test_mask_checked_against_rotated_size(tmp_path):
    from biasaudit.data.testing import exif_rotated_jpeg

    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    (tmp_path / "images" / "r.jpg").write_bytes(exif_rotated_jpeg(40, 20))
    # A mask drawn on the stored (unrotated) pixels is 40×20: wrong once displayed.
    Image.fromarray(np.zeros((20, 40), np.uint8)).save(tmp_path / "masks" / "r.png")
    t = validate_dataset(open_dataset(tmp_path, schema="lip")).table
    assert "is 40×20 but its image images/r.jpg is 20×40" in t.loc[0, "error"]


def test_workers_must_be_positive(bad):
    with pytest.raises(ValidationError, match="'workers' parameter"):
        validate_dataset(open_dataset(bad.root), workers=0)


def test_control_characters_in_names_are_errors_shown_escaped(tmp_path):
    (tmp_path / "images").mkdir()
    Image.fromarray(gradient(4, 4)).save(tmp_path / "images" / "a\nb.png")
    Image.fromarray(gradient(4, 4)).save(tmp_path / "images" / "ok.png")
    t = validate_dataset(open_dataset(tmp_path)).table.set_index("path")
    assert "control characters" in t.loc["images/a\\nb.png", "error"]
    assert t.loc["images/ok.png", "status"] == "ok"


def test_symlinked_files_get_a_reason_and_are_never_followed_out_of_the_dataset(tmp_path):
    import json

    root = tmp_path / "data"
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    outside = tmp_path / "secret"
    outside.mkdir()
    Image.fromarray(gradient(16, 12)).save(outside / "private.png")
    Image.fromarray(label_map(16, 12)).save(outside / "private_mask.png")
    for name in ("a.png", "b.png", "c.png"):
        Image.fromarray(gradient(16, 12)).save(root / "images" / name)
        Image.fromarray(label_map(16, 12)).save(root / "masks" / name)
    (root / "images" / "out.png").symlink_to(outside / "private.png")  # image outside DATA
    (root / "masks" / "out.png").symlink_to(root / "masks" / "a.png")
    (root / "images" / "inside.png").symlink_to(root / "images" / "a.png")  # image inside DATA
    (root / "masks" / "inside.png").symlink_to(root / "masks" / "a.png")
    (root / "images" / "maskout.png").symlink_to(root / "images" / "b.png")
    (root / "masks" / "maskout.png").symlink_to(outside / "private_mask.png")  # mask outside DATA
    (root / "images" / "broken.png").symlink_to(tmp_path / "gone.png")
    Image.fromarray(label_map(16, 12)).save(root / "masks" / "broken.png")
    (root / "schema.json").write_text(json.dumps({"name": "toy", "classes": {"0": "background", "1": "skin",
                                                                              "13": "hair"}}))
    t = validate_dataset(open_dataset(root), workers=1).table.set_index("image")
    assert (t.loc[["a.png", "b.png", "c.png"], "status"] == "ok").all()
    for name in ("out.png", "maskout.png"):
        assert t.loc[name, "status"] == "error" and "outside the dataset" in t.loc[name, "error"]
        assert t.loc[name, "sha256"] == ""  # not even hashed: nothing outside DATA is read
    assert t.loc["broken.png", "status"] == "error" and "does not exist" in t.loc["broken.png", "error"]
    # a link inside DATA is usable, with a note saying where it points
    assert t.loc["inside.png", "status"] == "ok"
    assert "symbolic link to images/a.png inside the dataset" in t.loc["inside.png", "warning"]
