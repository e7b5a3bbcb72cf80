from __future__ import annotations

import pytest
from heml_fixtures import make_bars

from biasaudit.core.errors import ValidationError
from biasaudit.heml import HEML, LOSSES, build_loss, load_recipe


def _recipe(epochs: int) -> dict:
    # one node seeing the noisy block and the labelled bar together
    return {"schema": "celebamask-hq", "defaults": {"resolution": 16, "trunk": "small-cnn:8"},
            "tree": {"name": "face", "parts": ["mouth", "hair"], "epochs": epochs}}


@pytest.fixture(scope="module")
def bars():
    return make_bars(128)


@pytest.fixture(scope="module")
def untrained_p1(bars):
    images, maps, y = bars
    heml = HEML(tree=load_recipe(_recipe(0)), device="cpu").fit(images, maps, y)
    return heml.metrics_["face"]["precision_at_1"]


def test_untrained_model_is_far_from_perfect(untrained_p1):
    # the noise block dominates random features; the bar's orientation is the label
    assert untrained_p1 < 0.8


@pytest.mark.parametrize("loss", LOSSES)
def test_every_loss_trains_end_to_end_and_beats_the_untrained_model(bars, untrained_p1, loss):
    images, maps, y = bars
    heml = HEML(tree=load_recipe(_recipe(8)), device="cpu", loss=loss).fit(images, maps, y)
    p1 = heml.metrics_["face"]["precision_at_1"]
    assert p1 >= 0.9 and p1 >= untrained_p1 + 0.15
    history = heml.history_["face"]
    assert len(history) == 8 and history[-1] < history[0]


def test_registry_names_and_errors():
    assert len(LOSSES) == 7
    bundle = build_loss("triplet-margin", num_classes=2, embedding_dim=8)
    assert type(bundle.miner).__name__ == "TripletMarginMiner" and not bundle.has_parameters
    assert build_loss("sub-center-arcface", num_classes=3, embedding_dim=8).has_parameters
    assert build_loss("angular", num_classes=2, embedding_dim=8).miner is None
    wrapped = build_loss("ntxent", num_classes=1, embedding_dim=8, self_supervised=True)
    assert type(wrapped.loss).__name__ == "SelfSupervisedLoss"
    with pytest.raises(ValidationError, match="Unknown loss 'hinge'. Expected one of: triplet-margin"):
        build_loss("hinge", num_classes=2, embedding_dim=8)
