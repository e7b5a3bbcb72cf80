"""SynthFaces: attribute sampling (plants, rares, balance), rendering (masks, visibility of
labels in their causal part) and the written dataset (layout, determinism)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from biasaudit.core.errors import DatasetError, ValidationError
from biasaudit.core.schema import get_schema
from biasaudit.data.synth import (
    ATTRIBUTES,
    CLOTH_COLOURS,
    HAIR_COLOURS,
    Plant,
    Rare,
    SynthFacesConfig,
    generate_faces,
    parse_plant,
    parse_rare,
    render_face,
    sample_attributes,
    write_synthfaces,
)

SCHEMA = get_schema("celebamask-hq")
ID = {name: SCHEMA.id_of(name) for name in SCHEMA.names}


def _cond(table: pd.DataFrame, label: str, attribute: str) -> tuple[float, float]:
    return (table.loc[table[label] == 1, attribute].mean(), table.loc[table[label] == 0, attribute].mean())


# ---- parsing and validation ---------------------------------------------------------------
def test_parse_plant_and_rare():
    assert parse_plant("Smiling:Blond_Hair=0.9") == Plant("Smiling", "Blond_Hair", 0.9)
    assert parse_plant(" Eyeglasses : Red_Cloth = 0.75 ") == Plant("Eyeglasses", "Red_Cloth", 0.75)
    assert parse_rare("Gray_Hair=0.02") == Rare("Gray_Hair", 0.02)


@pytest.mark.parametrize(
    "text, fragment",
    [
        ("Smiling-Blond_Hair=0.9", "LABEL:ATTRIBUTE=P"),
        ("Smiling:Blond=0.9", "unknown attribute 'Blond'. Expected one of: Blond_Hair, Black_Hair"),
        ("Smiling:Blond_Hair=1.5", "strictly between 0 and 1; got 1.5"),
        ("Smiling:Blond_Hair=0", "strictly between 0 and 1; got 0.0"),
        ("Smiling:Blond_Hair=high", "P 'high' is not a number"),
        ("Smiling:Smiling=0.9", "same attribute"),
        ("Blond_Hair:Black_Hair=0.9", "same one-hot group (hair colour)"),
    ],
)
def test_parse_plant_errors_name_the_input(text, fragment):
    with pytest.raises(ValidationError, match=None) as info:
        parse_plant(text)
    assert fragment in str(info.value)


def test_parse_rare_errors():
    with pytest.raises(ValidationError, match="ATTRIBUTE=P"):
        parse_rare("Gray_Hair")
    with pytest.raises(ValidationError, match="unknown attribute 'Grey_Hair'"):
        parse_rare("Grey_Hair=0.1")


@pytest.mark.parametrize(
    "kwargs, fragment",
    [
        ({"n": 0}, "--n must be an integer >= 1"),
        ({"n": 5, "size": 32}, "--size must be an integer in [64, 2048]"),
        ({"n": 5, "seed": -1}, "--seed must be an integer >= 0"),
        ({"n": 5, "plants": ("Smiling:Male=0.9", "Male:Smiling=0.8")}, "form a cycle"),
        ({"n": 5, "plants": ("Smiling:Blond_Hair=0.9", "Male:Black_Hair=0.8")}, "both set hair colour"),
        ({"n": 5, "plants": ("Smiling:Blond_Hair=0.9",), "rares": ("Blond_Hair=0.1",)}, "follows from the plant"),
        ({"n": 5, "balanced": True}, "no --plant was given"),
        ({"n": 5, "rares": ("Gray_Hair=0.6", "Red_Hair=0.5")}, "sum to 1.1"),
        ({"n": 5, "rares": ("Male=0.1", "Male=0.2")}, "given twice"),
    ],
)
def test_config_rejects_bad_designs(kwargs, fragment):
    with pytest.raises(ValidationError) as info:
        SynthFacesConfig(**kwargs)
    assert fragment in str(info.value)


# ---- attribute table ------------------------------------------------------------------------
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_plant_conditionals_match_at_n2000(seed):
    table = sample_attributes(SynthFacesConfig(n=2000, seed=seed, plants=("Smiling:Blond_Hair=0.9",)))
    on, off = _cond(table, "Smiling", "Blond_Hair")
    assert abs(on - 0.9) <= 0.03 and abs(off - 0.1) <= 0.03
    # One-hot groups stay one-hot; unplanted attributes keep their marginals.
    assert (table[list(HAIR_COLOURS)].sum(axis=1) == 1).all()
    assert (table[list(CLOTH_COLOURS)].sum(axis=1) == 1).all()
    assert abs(table["Male"].mean() - 0.5) <= 0.03
    assert abs(table["Eyeglasses"].mean() - 0.3) <= 0.03
    assert list(table.columns) == ["image", *ATTRIBUTES]
    assert table["image"].iloc[7] == "00007.png"


def test_chained_and_cloth_plants():
    plants = ("Wearing_Hat:Smiling=0.9", "Smiling:Blond_Hair=0.8", "Eyeglasses:Red_Cloth=0.9")
    table = sample_attributes(SynthFacesConfig(n=2000, seed=5, plants=plants))
    for plant in map(parse_plant, plants):
        on, off = _cond(table, plant.label, plant.attribute)
        assert abs(on - plant.p) <= 0.03, plant
        assert abs(off - (1 - plant.p)) <= 0.03, plant
    # Where a plant forces Red_Cloth=0 the other colours share the rows evenly (1/5 each).
    no_red = table[table["Red_Cloth"] == 0]
    assert no_red[["Blue_Cloth", "Green_Cloth", "Black_Cloth", "White_Cloth", "Yellow_Cloth"]].mean().between(0.17, 0.23).all()


def test_rare_sets_the_marginal_even_next_to_a_plant():
    table = sample_attributes(SynthFacesConfig(n=2000, seed=3, rares=("Gray_Hair=0.02", "Male=0.1")))
    assert abs(table["Gray_Hair"].mean() - 0.02) <= 0.002
    assert abs(table["Male"].mean() - 0.1) <= 0.002
    planted = sample_attributes(SynthFacesConfig(
        n=2000, seed=3, plants=("Smiling:Blond_Hair=0.9",), rares=("Gray_Hair=0.02",)))
    assert abs(planted["Gray_Hair"].mean() - 0.02) <= 0.004
    assert abs(_cond(planted, "Smiling", "Blond_Hair")[0] - 0.9) <= 0.03


def test_balanced_makes_planted_cells_equal():
    config = SynthFacesConfig(n=2000, seed=4, plants=("Smiling:Blond_Hair=0.9", "Eyeglasses:Wearing_Hat=0.95"),
                              balanced=True)
    table = sample_attributes(config)
    for label, attribute in (("Smiling", "Blond_Hair"), ("Eyeglasses", "Wearing_Hat")):
        cells = table.groupby([label, attribute]).size()
        assert len(cells) == 4 and cells.max() - cells.min() <= 2, cells.to_dict()


def test_sampling_is_deterministic_per_seed():
    a = sample_attributes(SynthFacesConfig(n=300, seed=9, plants=("Male:Wearing_Earrings=0.8",)))
    b = sample_attributes(SynthFacesConfig(n=300, seed=9, plants=("Male:Wearing_Earrings=0.8",)))
    c = sample_attributes(SynthFacesConfig(n=300, seed=10, plants=("Male:Wearing_Earrings=0.8",)))
    pd.testing.assert_frame_equal(a, b)
    assert not a.equals(c)


# ---- rendering --------------------------------------------------------------------------------
def _rendered(n=60, seed=11, size=128, **kwargs):
    return list(generate_faces(SynthFacesConfig(n=n, seed=seed, size=size, **kwargs)))


@pytest.mark.parametrize("size", [64, 128])
def test_masks_hold_schema_ids_and_accessories_match_attributes(size):
    faces = _rendered(size=size)
    accessories = {"Eyeglasses": "eye_g", "Wearing_Hat": "hat", "Wearing_Earrings": "ear_r",
                   "Wearing_Necklace": "neck_l"}
    for image_id, image, mask, attrs in faces:
        assert image.shape == (size, size, 3) and image.dtype == np.uint8
        assert mask.shape == (size, size) and mask.dtype == np.uint8
        present = set(np.unique(mask).tolist())
        assert present <= set(SCHEMA.ids)
        for attribute, part in accessories.items():
            assert (ID[part] in present) == bool(attrs[attribute]), (image_id, attribute)
        for part in ("skin", "hair", "l_eye", "r_eye", "nose", "u_lip", "l_lip", "neck", "cloth", "background"):
            assert ID[part] in present, (image_id, part)
    # Each accessory shows up both ways in 60 draws, so the iff above was exercised.
    for attribute in accessories:
        assert 0 < sum(f[3][attribute] for f in faces) < len(faces)


def test_smiling_changes_only_mouth_and_lips():
    lips = [ID["mouth"], ID["u_lip"], ID["l_lip"]]
    changed = 0
    for i in range(20):
        attrs = {"Brown_Hair": 1, "Male": i % 2, "Eyeglasses": int(i % 3 == 0), "Young": int(i % 4 > 0),
                 "Wearing_Hat": int(i % 5 == 0), "Blue_Cloth": 1}
        img0, m0 = render_face({**attrs, "Smiling": 0}, np.random.default_rng([42, i]), 128)
        img1, m1 = render_face({**attrs, "Smiling": 1}, np.random.default_rng([42, i]), 128)
        region = np.isin(m0, lips) | np.isin(m1, lips)
        assert np.array_equal(m0[~region], m1[~region])
        assert np.array_equal(img0[~region], img1[~region])
        changed += int(not np.array_equal(m0, m1))
        # Smiles are wider: more lip/mouth pixels, and open ones show teeth (mouth class).
        assert region.sum() > np.isin(m0, lips).sum()
    assert changed == 20


def test_poses_and_colours_vary():
    faces = _rendered(n=40, seed=2)
    mouth_y, mouth_x, skin = [], [], []
    for _, image, mask, _ in faces:
        ys, xs = np.nonzero(np.isin(mask, [ID["u_lip"], ID["l_lip"]]))
        mouth_y.append(ys.mean())
        mouth_x.append(xs.mean())
        skin.append(image[mask == ID["skin"]].mean(axis=0))
    assert np.std(mouth_x) > 2.0 and np.std(mouth_y) > 2.0  # pixels, at 128 px
    assert np.std(np.array(skin)[:, 0]) > 15.0


def _best_single_pixel_auc(faces, label: str) -> float:
    """The best AUC any one pixel's brightness reaches as a predictor of ``label``."""
    from scipy.stats import rankdata

    pixels = np.stack([f[1].mean(axis=2).ravel() for f in faces])
    y = np.array([f[3][label] for f in faces], bool)
    ranks = rankdata(pixels, axis=0)
    n1, n0 = y.sum(), (~y).sum()
    auc = (ranks[y].sum(axis=0) - n1 * (n1 + 1) / 2) / (n1 * n0)
    return float(np.max(np.maximum(auc, 1 - auc)))


def test_no_single_pixel_decides_a_label():
    faces = _rendered(n=300, seed=6)
    for label in ("Smiling", "Eyeglasses", "Wearing_Hat", "Male"):
        assert _best_single_pixel_auc(faces, label) < 0.8, label


def test_planted_bias_is_visible_in_the_masks():
    # End to end: plant hats on glasses wearers and read both back from pixels only.
    faces = _rendered(n=120, seed=8, plants=("Eyeglasses:Wearing_Hat=0.9",))
    has_glasses = np.array([(f[2] == ID["eye_g"]).any() for f in faces])
    has_hat = np.array([(f[2] == ID["hat"]).any() for f in faces])
    assert abs(has_hat[has_glasses].mean() - 0.9) <= 0.03
    assert abs(has_hat[~has_glasses].mean() - 0.1) <= 0.03


def test_hair_colour_reads_as_its_name():
    colour = pytest.importorskip("biasaudit.segment.colour")
    expected = {"Blond_Hair": "blond", "Black_Hair": "black", "Brown_Hair": "brown", "Red_Hair": "red",
                "Gray_Hair": "gray"}
    faces = _rendered(n=100, seed=13, rares=("Red_Hair=0.2", "Gray_Hair=0.2"))
    agree = 0
    for _, image, mask, attrs in faces:
        name = next(n for n in HAIR_COLOURS if attrs[n])
        lab = colour.robust_lab(colour.rgb_to_lab(image[mask == ID["hair"]]))
        agree += colour.colour_name_lab(*lab, part="hair") == expected[name]
    assert agree >= 95


# ---- written dataset ---------------------------------------------------------------------------
def _files(folder):
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_write_is_byte_identical_for_a_seed_and_workers(tmp_path):
    config = SynthFacesConfig(n=12, seed=3, plants=("Smiling:Blond_Hair=0.9",))
    a = _files(write_synthfaces(tmp_path / "a", config))
    b = _files(write_synthfaces(tmp_path / "b", config, workers=2))
    assert a == b
    assert len([k for k in a if k.startswith("images/")]) == 12
    other = _files(write_synthfaces(tmp_path / "c", SynthFacesConfig(n=12, seed=4, plants=config.plants)))
    assert all(a[f"images/{i:05d}.png"] != other[f"images/{i:05d}.png"] for i in range(12))


def test_written_layout(tmp_path):
    from PIL import Image

    out = write_synthfaces(tmp_path / "faces", SynthFacesConfig(n=5, seed=1, size=96, rares=("Male=0.4",)))
    labels = pd.read_csv(out / "labels.csv")
    assert list(labels.columns) == ["image", *ATTRIBUTES]
    assert labels["image"].tolist() == [f"{i:05d}.png" for i in range(5)]
    assert json.loads((out / "schema.json").read_text()) == SCHEMA.to_dict()
    meta = json.loads((out / "synth.json").read_text())
    assert (meta["n"], meta["seed"], meta["size"], meta["rares"], meta["balanced"]) == (5, 1, 96, ["Male=0.4"], False)
    for name in labels["image"]:
        image, mask = Image.open(out / "images" / name), Image.open(out / "masks" / name)
        assert image.mode == "RGB" and mask.mode == "L" and image.size == mask.size == (96, 96)
    # What was written is what the generator yields.
    _, img, msk, _ = next(generate_faces(SynthFacesConfig(n=5, seed=1, size=96, rares=("Male=0.4",))))
    assert np.array_equal(np.asarray(Image.open(out / "images/00000.png")), img)
    assert np.array_equal(np.asarray(Image.open(out / "masks/00000.png")), msk)


def test_refuses_non_empty_folders(tmp_path):
    config = SynthFacesConfig(n=3, seed=0)
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "photo.jpg").write_bytes(b"x")
    with pytest.raises(DatasetError, match="is not empty"):
        write_synthfaces(foreign, config)
    with pytest.raises(DatasetError, match="no synth.json"):
        write_synthfaces(foreign, config, overwrite=True)
    assert (foreign / "photo.jpg").read_bytes() == b"x"

    out = write_synthfaces(tmp_path / "faces", SynthFacesConfig(n=6, seed=0))
    with pytest.raises(DatasetError, match="--overwrite"):
        write_synthfaces(out, config)
    write_synthfaces(out, config, overwrite=True)
    assert sorted(p.name for p in (out / "images").iterdir()) == ["00000.png", "00001.png", "00002.png"]
    with pytest.raises(ValidationError, match="--workers"):
        write_synthfaces(tmp_path / "w", config, workers=0)
