"""DGML attentive grouping: the paper's stated properties, and its use as a node embedder."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from heml_fixtures import MOUTH, TREE, make_faces

from biasaudit.core.errors import ValidationError
from biasaudit.heml import HEML, load_recipe
from biasaudit.heml.dgml import (
    AttentiveGrouping,
    attention_maps,
    attention_mass,
    attention_overlays,
)
from biasaudit.heml.inputs import region_masks


def test_embedding_is_invariant_to_a_permutation_of_spatial_positions():
    torch.manual_seed(0)
    head = AttentiveGrouping(8, embedding_dim=12, groups=3).eval()
    fmap = torch.randn(5, 8, 4, 6)
    perm = torch.randperm(24)
    shuffled = fmap.flatten(2)[:, :, perm].reshape(5, 8, 4, 6)
    torch.testing.assert_close(head(shuffled), head(fmap), atol=1e-5, rtol=1e-5)
    # and the attention moves with the positions it belongs to
    torch.testing.assert_close(head.attention(shuffled), head.attention(fmap)[:, :, perm], atol=1e-6, rtol=1e-5)
    # sanity: a change that is not a permutation does change the embedding
    assert not torch.allclose(head(fmap * torch.linspace(0.5, 1.5, 6)), head(fmap), atol=1e-3)


def _group_similarity(weight: float) -> float:
    """Mean pairwise cosine of the group features after training on a metric loss with
    the diversity loss at ``weight``, from queries that start almost identical."""
    torch.manual_seed(0)
    head = AttentiveGrouping(8, embedding_dim=16, groups=4, diversity_weight=weight)
    with torch.no_grad():
        head.queries.copy_(head.queries[:1].repeat(4, 1) + 0.01 * torch.randn(4, head.key_dim))
    fmap = torch.randn(64, 8, 4, 4)
    y = (fmap[:, 0].mean((1, 2)) > 0).long()
    from pytorch_metric_learning.losses import TripletMarginLoss

    loss_fn = TripletMarginLoss()
    opt = torch.optim.Adam(head.parameters(), lr=0.05)
    for _ in range(60):
        emb = torch.nn.functional.normalize(head(fmap), dim=1)
        loss = loss_fn(emb, y)
        aux = head.aux_loss()
        if aux is not None:
            loss = loss + aux
        opt.zero_grad()
        loss.backward()
        opt.step()
    head.eval()
    with torch.no_grad():
        groups, _ = head.group_features(fmap)
        unit = torch.nn.functional.normalize(groups, dim=-1)
        cos = unit @ unit.transpose(1, 2)
        off = ~torch.eye(4, dtype=torch.bool)
        return float(cos[:, off].abs().mean())


def test_group_features_differ_once_the_diversity_loss_is_on():
    without, with_div = _group_similarity(0.0), _group_similarity(1.0)
    assert without > 0.9  # near-identical queries stay near-identical on the metric loss alone
    assert with_div < 0.5 and with_div < without - 0.4


def test_diversity_loss_value():
    head = AttentiveGrouping(4, embedding_dim=4, groups=2)
    same = torch.tensor([[[1.0, 0.0], [1.0, 0.0]]])
    orth = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]])
    assert float(head.diversity_loss(same)) == pytest.approx(1.0)
    assert float(head.diversity_loss(orth)) == pytest.approx(0.0)


def test_groups_must_divide_the_embedding():
    with pytest.raises(ValidationError, match="multiple of the number of groups"):
        AttentiveGrouping(8, embedding_dim=10, groups=4)


@pytest.fixture(scope="module")
def dgml_fitted():
    images, maps, y = make_faces(96)
    return HEML(tree=load_recipe(TREE), device="cpu", seed=0, embedder="dgml").fit(images, maps, y), (images, maps, y)


def test_dgml_nodes_learn_and_expose_attention_maps(dgml_fitted):
    heml, (images, maps, _) = dgml_fitted
    assert heml.metrics_["mouth"]["precision_at_1"] >= 0.9
    assert heml.models_["image"].embedder_kind == "dgml"
    inp = heml.node_inputs(images[:3], maps[:3], "image")
    att = attention_maps(heml.models_["image"], inp.crops)
    assert att.shape == (3, heml.groups, 16, 16)
    np.testing.assert_allclose(att.sum(axis=(2, 3)), 1.0, rtol=1e-4)
    mouth = region_masks(maps[:3], heml.tree_.part_ids("image"), (MOUTH,), resolution=16)
    mass = attention_mass(att, mouth)
    assert mass.shape == (3, heml.groups) and ((mass >= 0) & (mass <= 1 + 1e-6)).all()
    strip = attention_overlays(inp.crops[0], att[0])
    assert strip.shape == (16, 16 * (heml.groups + 1), 3) and strip.dtype == np.uint8


def test_dgml_round_trips_and_explains(dgml_fitted, tmp_path):
    from biasaudit.heml import explain_pair, load_heml

    heml, (images, maps, _) = dgml_fitted
    heml.save(tmp_path / "models")
    back = load_heml(tmp_path / "models", device="cpu")
    a, b = heml.embed(images[:4], maps[:4]), back.embed(images[:4], maps[:4])
    for name in a:
        np.testing.assert_allclose(a[name], b[name], atol=1e-5)
    tree = explain_pair(back, images[0], maps[0], images[1], maps[1])
    assert set(tree.attention) == set(heml.tree_.nodes) - {"ear"} or "image" in tree.attention
    assert "attention" in tree.to_dict() and tree.to_dict()["attention"]["image"]["groups"] == heml.groups


def test_dgml_attends_over_local_positions():
    # small-cnn's second block (8 px receptive field): 16 × 16 positions of a 32 px input,
    # not the last block's 4 × 4 whose positions each see more than the whole input
    from biasaudit.heml.trunks import build_node_model

    x = torch.zeros(2, 3, 32, 32)
    local = build_node_model("small-cnn:8", embedding_dim=8, embedder="dgml")
    assert local.features(x).shape[-3:] == (16, 16, 16)
    assert local.embedder.attention(local.features(x)).shape == (2, 4, 256)
    assert local(x).shape == (2, 8)
    last = build_node_model("small-cnn:8", embedding_dim=8, embedder="dgml", dgml_features="last")
    assert last.features(x).shape[-2:] == (4, 4)


def test_models_saved_before_the_local_map_still_attend_over_the_last_one(dgml_fitted, tmp_path):
    import json

    from safetensors.torch import load_file, save_file

    from biasaudit.heml import load_heml
    from biasaudit.heml.trunks import build_node_model

    heml, (images, maps, _) = dgml_fitted
    heml.save(tmp_path / "models")
    folder = tmp_path / "models" / "image"
    config = json.loads((folder / "config.json").read_text())
    assert config["dgml_features"] == "local"
    # the root as the previous version wrote it: attention over the last map, no key
    old = build_node_model(config["trunk"], embedding_dim=config["embedding_dim"], hidden_dim=config["hidden_dim"],
                           embedder="dgml", groups=config["groups"], n_children=config["n_children"],
                           dgml_features="last", seed=3).eval()
    tensors = {k: v for k, v in load_file(str(folder / "model.safetensors")).items() if not k.startswith("model.")}
    tensors.update({f"model.{k}": v.contiguous() for k, v in old.state_dict().items()})
    save_file(tensors, str(folder / "model.safetensors"))
    del config["dgml_features"]
    config.pop("attention_prior", None)  # nor the attention prior, which came later
    (folder / "config.json").write_text(json.dumps(config))
    back = load_heml(tmp_path / "models", device="cpu").models_["image"]
    assert back.dgml_features == "last"
    x, kids = torch.zeros(2, 3, 16, 16), torch.zeros(2, 2 * config["embedding_dim"])
    torch.testing.assert_close(back(x, kids), old(x, kids))


def test_attention_on_region_reports_ratios_to_the_region_share(dgml_fitted):
    from biasaudit.heml.dgml import attention_on_region

    heml, (images, maps, y) = dgml_fitted
    test = heml.split_["test"]
    out = attention_on_region(heml, images[test], maps[test], "image", ("mouth",), y=y[test])
    assert out["n"] == len(test) and 0.0 < out["share_node"] < 1.0 and out["share_crop"] <= out["share_node"]
    assert len(out["mass_per_group"]) == heml.groups and len(out["group_skill"]) == heml.groups
    assert out["mass"]["best_group"] >= out["mass"]["mean_of_groups"]
    for kind, mass in out["mass"].items():
        assert out["ratio_node"][kind] == pytest.approx(mass / out["share_node"])
        assert out["ratio_crop"][kind] == pytest.approx(mass / out["share_crop"])


def test_dgml_refuses_concurrent_and_frozen_trunks():
    images, maps, y = make_faces(16)
    with pytest.raises(ValidationError, match="drop --concurrent"):
        HEML(tree=load_recipe(TREE), device="cpu", embedder="dgml", concurrent=True).fit(images, maps, y)
