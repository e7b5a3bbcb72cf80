"""How a parent is built from its children: validation rows held out of training, skill
measured on them (never on the test split), and the choice between a fine-tuned parent
and the children-only combination."""

from __future__ import annotations

import numpy as np
import pytest
from heml_fixtures import make_bars

from biasaudit.heml import HEML, estimator, load_recipe

BARS_TREE = {
    "schema": "celebamask-hq",
    "defaults": {"resolution": 16, "epochs": 4, "trunk": "small-cnn:8"},
    "tree": {"name": "image", "epochs": 0, "children": [
        {"name": "mouth", "parts": ["mouth"], "epochs": 8}, {"name": "hair", "parts": ["hair"]}]},
}


@pytest.fixture(scope="module")
def bars():
    return make_bars(160)


def test_validation_rows_are_held_out_of_training_and_disjoint_from_test(bars):
    images, maps, y = bars
    heml = HEML(tree=load_recipe(BARS_TREE), device="cpu", seed=0).fit(images, maps, y)
    train = np.zeros(len(y), bool)
    train[heml.split_["train"]] = True
    val = heml._validation_mask(train, y.astype(np.int64))
    assert val.sum() == round(train.sum() * estimator.VAL_SHARE)
    assert not (val & ~train).any()  # carved from the training split, never from test
    assert np.array_equal(val, heml._validation_mask(train, y.astype(np.int64)))  # deterministic (Ray tasks)
    for node in ("mouth", "hair", "image"):
        m = heml.metrics_[node]
        assert m["n_train"] + m["n_val"] == train.sum()  # every part is present in every image
        assert 0.0 <= m["val_precision_at_1"] <= 1.0
    # the parent's start weighs its children by validation skill, not by test P@1
    p, chance = heml._skill_inputs("mouth")
    assert p == heml.metrics_["mouth"]["val_precision_at_1"] and chance == heml.metrics_["mouth"]["val_chance_p_at_1"]
    init = heml.metrics_["image"]["init"]
    assert init["by"] == "skill" and init["weights"][0] > 0.8  # label supervision: the mouth, not the big hair


def test_self_supervision_holds_nothing_out(bars):
    images, maps, _ = bars
    heml = HEML(tree=load_recipe(BARS_TREE), device="cpu", seed=0, supervision="self",
                epochs_scale=0.25).fit(images[:48], maps[:48])
    assert "n_val" not in heml.metrics_["image"] and "selected" not in heml.metrics_["image"]


def test_parent_keeps_the_children_combination_when_its_own_pixels_would_drown_it(bars, monkeypatch):
    # A parent whose start is dominated by its own (label-free) pixels: without the choice
    # on validation rows the root would sit near chance while its mouth child is near 1.
    monkeypatch.setattr(estimator, "OWN_SHARE", 0.97)
    images, maps, y = bars
    heml = HEML(tree=load_recipe(BARS_TREE), device="cpu", seed=0).fit(images, maps, y)
    root, mouth = heml.metrics_["image"], heml.metrics_["mouth"]
    assert mouth["precision_at_1"] >= 0.85
    sel = root["selected"]
    assert sel["kept"] == "children" and sel["val_p_at_1_children"] > sel["val_p_at_1_fine_tuned"]
    assert root["precision_at_1"] >= mouth["precision_at_1"] - 0.05
    # what was kept is what is saved and embedded: the fusion ignores the root's own pixels
    own_block = heml.models_["image"].fusion.weight[:, : heml.models_["image"].embedding_dim]
    assert float(own_block.detach().abs().max()) == 0.0


def test_a_parent_that_learned_something_is_kept(fitted):
    sel = fitted.metrics_["image"]["selected"]
    assert sel["kept"] in ("fine-tuned", "children")
    best = max(sel["val_p_at_1_fine_tuned"], sel["val_p_at_1_children"])
    assert fitted.metrics_["image"]["val_precision_at_1"] == best


def _own_pathway_p_at_1(heml, images, maps, y) -> float:
    """P@1 on the test rows of the root's own pixels' embedding alone (no children)."""
    import torch
    from torch.nn import functional as F

    from biasaudit.heml.quality import retrieval_metrics

    test = heml.split_["test"]
    crops = heml.node_inputs(images[test], maps[test], "image").crops
    model = heml.models_["image"]
    with torch.no_grad():
        own = F.normalize(model.embedder(model.features(torch.from_numpy(crops).permute(0, 3, 1, 2).float())), dim=1)
    return retrieval_metrics(own, y[test])["precision_at_1"]


def test_a_parents_own_pixels_learn_the_label_too(bars):
    # The fused root meets the loss through its mouth child alone; its own pixels' pathway
    # must still become a model of its segment (for DGML: attention that means something).
    images, maps, y = bars
    recipe = {**BARS_TREE, "tree": {**BARS_TREE["tree"], "epochs": 6}}
    heml = HEML(tree=load_recipe(recipe), device="cpu", seed=0).fit(images, maps, y)
    assert heml.metrics_["image"]["precision_at_1"] >= 0.9
    assert _own_pathway_p_at_1(heml, images, maps, y) >= 0.85  # ≈ 0.56 without the own loss
    assert not heml.models_["image"].keep_own  # nothing is kept once training is over
