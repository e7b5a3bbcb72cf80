"""HEML trains on a bounded sample (``max_train_images``) and still embeds every image."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from heml_fixtures import TREE

from biasaudit.core.errors import ValidationError
from biasaudit.heml import HEML, load_recipe, train_sample

WS_RECIPE = {
    "schema": "celebamask-hq",
    "defaults": {"resolution": 16, "epochs": 1, "trunk": "small-cnn:8"},
    "tree": {"name": "image", "children": [{"name": "mouth", "parts": ["mouth", "u_lip", "l_lip"]},
                                           {"name": "hair", "parts": ["hair"]}]},
}


def test_train_sample_keeps_every_row_up_to_the_cap():
    assert train_sample(7, max_images=7).tolist() == list(range(7))
    assert train_sample(7, y=[None] * 7, max_images=10).tolist() == list(range(7))
    assert train_sample(3000, max_images=None).tolist() == list(range(3000))


def test_train_sample_is_deterministic_stratified_and_skips_missing_labels():
    y = pd.Series(["a"] * 600 + ["b"] * 300 + [None] * 100)
    rows = train_sample(1000, y=y, max_images=90, seed=3)
    assert len(rows) == 90 and np.all(np.diff(rows) > 0)
    assert (rows < 600).sum() == 60 and ((rows >= 600) & (rows < 900)).sum() == 30 and (rows >= 900).sum() == 0
    assert rows.tolist() == train_sample(1000, y=y, max_images=90, seed=3).tolist()
    assert rows.tolist() != train_sample(1000, y=y, max_images=90, seed=4).tolist()
    # fewer labelled rows than the cap: exactly the labelled rows
    assert train_sample(1000, y=y, max_images=950).tolist() == list(range(900))
    # no labels (self-supervision): a uniform sample of the cap's size
    assert len(np.unique(train_sample(1000, max_images=90))) == 90


@pytest.mark.parametrize("bad", [0, 3, 2.5, "100", True])
def test_bad_cap_is_a_clear_error(bad):
    with pytest.raises(ValidationError, match="'max_train_images' parameter must be an int >= 4 or None"):
        train_sample(10, max_images=bad)


def test_fit_above_the_cap_trains_on_the_sample_and_embeds_everything(faces):
    images, maps, y = faces  # 96 images
    heml = HEML(tree=load_recipe(TREE), device="cpu", seed=0, max_train_images=40).fit(images, maps, y)
    assert len(heml.train_images_) == 40
    assert heml.train_images_.tolist() == train_sample(96, y=y, max_images=40, seed=0).tolist()
    for name, m in heml.metrics_.items():
        assert m["n_train"] + m["n_test"] <= 40, name
    assert heml.metrics_["mouth"]["n_train"] + heml.metrics_["mouth"]["n_test"] == 40  # mouth is in every image
    emb = heml.embed(images, maps)
    assert emb["mouth"].shape == (96, 128)
    # the same result as fitting on the sample directly: the cap only chooses rows
    direct = HEML(tree=load_recipe(TREE), device="cpu", seed=0).fit(
        images[heml.train_images_], maps[heml.train_images_], y[heml.train_images_])
    for key, value in heml.models_["mouth"].state_dict().items():
        assert torch.equal(value, direct.models_["mouth"].state_dict()[key]), key


def test_fit_at_or_below_the_cap_is_unchanged(faces, fitted):
    images, maps, y = faces
    capped = HEML(tree=load_recipe(TREE), device="cpu", seed=0, max_train_images=96).fit(images, maps, y)
    assert capped.train_images_.tolist() == list(range(96))
    for name in fitted.models_:
        ours, theirs = capped.models_[name].state_dict(), fitted.models_[name].state_dict()
        assert all(torch.equal(ours[k], theirs[k]) for k in theirs), name
        assert capped.metrics_[name]["precision_at_1"] == fitted.metrics_[name]["precision_at_1"]


@pytest.fixture(scope="module")
def segmented(tmp_path_factory):
    """SynthFaces (30 images, 64 px) segmented from its masks."""
    from biasaudit.data.synth import SynthFacesConfig, write_synthfaces
    from biasaudit.segment import segment_dataset

    root = tmp_path_factory.mktemp("sample")
    data, ws = root / "data", root / "ws"
    write_synthfaces(data, SynthFacesConfig(n=30, seed=2, size=64))
    segment_dataset(data, ws, segmenter="masks")
    return ws


def test_workspace_loads_only_the_sample_for_training_and_embeds_all(segmented, monkeypatch):
    import biasaudit.heml.workspace as hw

    loads: list[list[str]] = []
    real = hw.load_arrays

    def counting(ws_root, image_ids, **kw):
        loads.append(list(image_ids))
        return real(ws_root, image_ids, **kw)

    monkeypatch.setattr(hw, "load_arrays", counting)
    hw.fit_heml_workspace(segmented, supervision="label:Smiling", recipe=WS_RECIPE, image_size=64, device="cpu",
                          max_train_images=12)
    table = hw.usable_images(segmented, columns=["Smiling"])
    expected = [table["image"][i] for i in train_sample(len(table), y=table["Smiling"], max_images=12)]
    assert loads[0] == expected  # training loaded the 12 sampled images, and only them
    assert sum(len(ids) for ids in loads[1:]) == len(table) == 30  # embedding streamed every image
    assert np.load(segmented / "embeddings" / "mouth.npy").shape == (30, 128)
    glue = json.loads((segmented / "models" / "workspace.json").read_text())
    assert (glue["n_images"], glue["n_train_images"], glue["max_train_images"]) == (30, 12, 12)
    meta = json.loads((segmented / "models" / "heml.json").read_text())
    assert meta["params"]["max_train_images"] == 12 and meta["n_train_images"] == 12
    assert HEML.load(segmented / "models", device="cpu").max_train_images == 12


def test_cli_options_are_documented():
    from click.testing import CliRunner

    from biasaudit.cli import main

    assert "--max-train-images" in CliRunner().invoke(main, ["heml", "--help"]).output
    assert "--heml-max-images" in CliRunner().invoke(main, ["scan", "--help"]).output
