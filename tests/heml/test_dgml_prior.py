"""A DGML parent's attention prior: where its label-carrying leaves lie in its input."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from heml_fixtures import HAIR, MOUTH, TREE, make_faces

from biasaudit.core.errors import ValidationError
from biasaudit.heml import HEML, load_recipe
from biasaudit.heml.dgml import (
    AttentiveGrouping,
    attention_on_region,
    attention_prior,
    combine_leaves,
    node_prior,
    pool_prior,
)


def test_the_prior_keeps_the_embedding_invariant_to_a_permutation_of_positions():
    torch.manual_seed(0)
    head = AttentiveGrouping(8, embedding_dim=12, groups=3)
    head.enable_prior()
    head.eval()
    fmap = torch.randn(5, 8, 4, 6)
    prior = torch.rand(5, 24).softmax(dim=1)
    perm = torch.randperm(24)
    shuffled = fmap.flatten(2)[:, :, perm].reshape(5, 8, 4, 6)
    # the prior is a per-position input: it moves with the positions, as the features do
    torch.testing.assert_close(head(shuffled, prior[:, perm]), head(fmap, prior), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(head.attention(shuffled, prior[:, perm]), head.attention(fmap, prior)[:, :, perm],
                               atol=1e-6, rtol=1e-5)
    # sanity: the prior does change the attention, and a prior left in place does not commute
    assert not torch.allclose(head.attention(fmap, prior), head.attention(fmap), atol=1e-3)
    assert not torch.allclose(head(shuffled, prior), head(fmap, prior), atol=1e-3)


def test_the_prior_strength_is_learnable_and_zero_strength_is_no_prior():
    torch.manual_seed(0)
    head = AttentiveGrouping(8, embedding_dim=8, groups=2)
    assert head.prior_strength is None and "prior_strength" not in head.state_dict()
    fmap, prior = torch.randn(3, 8, 4, 4), torch.rand(3, 16).softmax(dim=1)
    plain = head.attention(fmap, prior)  # no prior enabled: ignored
    head.enable_prior()
    assert head.prior_strength.requires_grad and "prior_strength" in head.state_dict()
    with torch.no_grad():
        head.prior_strength.zero_()
    torch.testing.assert_close(head.attention(fmap, prior), plain)


def test_combine_leaves_passes_each_childs_share_down_to_its_leaves():
    mouth, nose, skin = ((10,), 1.0), ((2,), 1.0), ((1,), 1.0)
    # lower_face: nose+mouth (its prior: the mouth) and skin, equally skilled; eyes without skill
    lower = combine_leaves([(0.5, (mouth,)), (0.5, (skin,))])
    assert dict(lower) == {(10,): 0.5, (1,): 0.5}
    face = combine_leaves([(0.0, (((4, 5), 1.0),)), (0.5, lower)])
    assert dict(face) == {(10,): 0.5, (1,): 0.5}
    assert combine_leaves([(0.0, (nose,)), (0.0, (mouth,))]) == ()


def test_attention_prior_spreads_each_leaf_over_its_own_pixels():
    maps = np.zeros((2, 16, 16), np.int64)
    maps[:, :, :] = 1                      # skin everywhere
    maps[0, 12:14, 6:10] = MOUTH           # 8 mouth pixels in the first image, none in the second
    prior = attention_prior(maps, (1, MOUTH), (((MOUTH,), 0.5), ((1,), 0.5)), resolution=16, margin=0.0)
    np.testing.assert_allclose(prior.sum(axis=(1, 2)), 1.0, rtol=1e-5)
    assert prior[0, 12, 6] == pytest.approx(0.5 / 8)
    assert prior[0, 0, 0] == pytest.approx(0.5 / (256 - 8))
    np.testing.assert_allclose(prior[1], 1.0 / 256, rtol=1e-5)  # only the skin: uniform
    pooled = pool_prior(torch.from_numpy(prior.reshape(2, -1)), (8, 8))
    torch.testing.assert_close(pooled.sum(dim=1), torch.ones(2))
    with pytest.raises(ValidationError, match="square"):
        pool_prior(torch.ones(1, 10), (2, 2))


@pytest.fixture(scope="module")
def fitted_pair():
    """The same DGML tree with the prior (the default) and without it (ablation)."""
    images, maps, y = make_faces(96)
    with_prior = HEML(tree=load_recipe(TREE), device="cpu", seed=0, embedder="dgml").fit(images, maps, y)
    mp = pytest.MonkeyPatch()
    mp.setattr(HEML, "_prior_leaves", lambda self, kids: ())
    try:
        without = HEML(tree=load_recipe(TREE), device="cpu", seed=0, embedder="dgml").fit(images, maps, y)
    finally:
        mp.undo()
    return with_prior, without, (images, maps, y)


def test_a_dgml_parent_attends_where_its_label_carrying_children_lie(fitted_pair):
    heml, without, (images, maps, y) = fitted_pair
    root = heml.models_["image"]
    # the mouth leaf carries the label, hair+ear does not: the prior is the mouth's pixels
    assert root.attention_prior == (((MOUTH,), 1.0),)
    assert heml.metrics_["image"]["init"]["attention_prior"] == [[[MOUTH], 1.0]]
    assert heml.models_["hair+ear"].attention_prior is None  # no child with skill: no prior
    test = heml.split_["test"]
    out = attention_on_region(heml, images[test], maps[test], "image", ("mouth",), y=y[test])
    base = attention_on_region(without, images[test], maps[test], "image", ("mouth",), y=y[test])
    assert out["prior_mass"] == pytest.approx(1.0)
    # measured: 1.86× with the prior, 0.22× without it, 0.21× with its strength set to 0
    assert out["ratio_node"]["mean_of_groups"] >= 1.5
    assert out["ratio_node"]["mean_of_groups"] >= 3 * base["ratio_node"]["mean_of_groups"]
    assert out["without_prior"]["ratio_node"]["mean_of_groups"] < out["ratio_node"]["mean_of_groups"] / 3
    assert heml.metrics_["image"]["precision_at_1"] >= without.metrics_["image"]["precision_at_1"] - 0.05


def test_the_prior_round_trips_and_explains(fitted_pair, tmp_path):
    from biasaudit.heml import explain_pair, load_heml
    from biasaudit.heml.dgml import attention_maps

    heml, _, (images, maps, _) = fitted_pair
    heml.save(tmp_path / "models")
    back = load_heml(tmp_path / "models", device="cpu")
    assert back.models_["image"].attention_prior == heml.models_["image"].attention_prior
    a, b = heml.embed(images[:5], maps[:5]), back.embed(images[:5], maps[:5])
    np.testing.assert_allclose(a["image"], b["image"], atol=1e-5)
    # the node's embedding does read the prior: another prior gives another embedding
    model = heml.models_["image"].eval()
    inp = heml.node_inputs(images[:5], maps[:5], "image")
    x = torch.from_numpy(inp.crops).permute(0, 3, 1, 2).float()
    kids = torch.from_numpy(np.concatenate([a[c] for c in ("mouth", "hair+ear")], 1))
    prior = node_prior(heml, maps[:5], "image")
    hair = torch.from_numpy(attention_prior(maps[:5], heml.tree_.part_ids("image"), (((HAIR,), 1.0),),
                                            resolution=16).reshape(5, -1))
    with torch.no_grad():
        torch.testing.assert_close(model(x, torch.cat([kids, prior], 1)), torch.from_numpy(a["image"]), atol=1e-5,
                                   rtol=1e-4)
        # (the own pixels' pathway: the fusion may have kept a child's embedding alone)
        fmap = model.features(x)
        own = model.embedder(fmap, pool_prior(prior, fmap.shape[-2:]))
        assert not torch.allclose(model.embedder(fmap, pool_prior(hair, fmap.shape[-2:])), own, atol=1e-4)
    tree = explain_pair(back, images[0], maps[0], images[1], maps[1])
    np.testing.assert_allclose(tree.attention["image"][0], attention_maps(back.models_["image"], inp.crops[:1],
                                                                          prior[:1])[0], atol=1e-6)


def test_mlp_trees_and_self_supervised_dgml_get_no_prior():
    images, maps, y = make_faces(48)
    mlp = HEML(tree=load_recipe(TREE), device="cpu", seed=0, epochs_scale=0.4).fit(images, maps, y)
    assert all(getattr(m, "attention_prior", None) is None for m in mlp.models_.values())
    assert "attention_prior" not in mlp.metrics_["image"]["init"]
    # no labels, no skill to place a prior by (and self-supervised parents read no children)
    own = HEML(tree=load_recipe(TREE), device="cpu", seed=0, embedder="dgml", supervision="self",
               epochs_scale=0.4).fit(images, maps)
    assert all(m.attention_prior is None for m in own.models_.values())
