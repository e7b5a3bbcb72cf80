"""How a parent is built from its children: validation rows held out of training, skill
measured on them (never on the test split), and the choice of what a parent keeps: its
best child's embedding carried forward, the children-only combination, or the
fine-tuned parent (only when significantly better on validation)."""

from __future__ import annotations

import numpy as np
import pytest
from heml_fixtures import TREE, make_bars

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
        # each query's hit among the validation rows and against the node's training rows, averaged
        assert m["n_val_gallery"] == m["n_train"]
        assert m["val_precision_at_1"] == pytest.approx(
            (m["val_precision_at_1_among_val"] + m["val_precision_at_1_to_train"]) / 2)
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


def test_parent_keeps_its_label_carrying_child_when_its_own_pixels_would_drown_it(bars, monkeypatch):
    # A parent whose start is dominated by its own (label-free) pixels: without the choice
    # on validation rows the root would sit near chance while its mouth child is near 1.
    monkeypatch.setattr(estimator, "OWN_SHARE", 0.97)
    images, maps, y = bars
    heml = HEML(tree=load_recipe(BARS_TREE), device="cpu", seed=0).fit(images, maps, y)
    root, mouth = heml.metrics_["image"], heml.metrics_["mouth"]
    assert mouth["precision_at_1"] >= 0.85
    sel = root["selected"]
    assert sel["kept"] in ("pass-through:mouth", "children")
    assert sel["val_p_at_1"][sel["kept"]] > sel["val_p_at_1"]["fine-tuned"]
    assert root["precision_at_1"] >= mouth["precision_at_1"] - 0.05
    # what was kept is what is saved and embedded: the fusion ignores the root's own pixels
    own_block = heml.models_["image"].fusion.weight[:, : heml.models_["image"].embedding_dim]
    assert float(own_block.detach().abs().max()) == 0.0


def test_a_pass_through_parent_measures_exactly_what_its_child_measured(bars):
    # 0 epochs at the root: nothing it could add, so it carries its best child forward and
    # its test P@1 and embeddings are the child's, to the bit that decides a neighbour
    images, maps, y = bars
    heml = HEML(tree=load_recipe(BARS_TREE), device="cpu", seed=0).fit(images, maps, y)
    sel = heml.metrics_["image"]["selected"]
    assert sel["default"] == "pass-through:mouth"  # the child that retrieves best on validation
    assert sel["kept"] == "pass-through:mouth"
    for key in ("precision_at_1", "map_at_r"):
        assert heml.metrics_["image"][key] == heml.metrics_["mouth"][key]
    emb = heml.embed(images[:20], maps[:20], nodes=["image", "mouth"])
    np.testing.assert_allclose(emb["image"], emb["mouth"], atol=1e-6)


def test_a_child_missing_from_some_images_is_never_passed_through(fitted):
    # the ear is absent from every 4th image: carried forward, those images would have no
    # hair+ear embedding at all
    sel = fitted.metrics_["hair+ear"]["selected"]
    assert "pass-through:hair" in sel["val_p_at_1"] and "pass-through:ear" not in sel["val_p_at_1"]
    assert sel["kept"] != "pass-through:ear"


def test_the_choice_needs_a_significant_gain_over_the_default():
    from biasaudit.heml.parents import choose_parent

    rng = np.random.default_rng(0)
    child = (rng.random(210) < 0.5).astype(float)
    noisy = child.copy()
    flip = rng.choice(210, 14, replace=False)
    noisy[flip[:10]] = 1.0  # up to +10 queries, down 4: a raw argmax would take it
    noisy[flip[10:]] = 0.0
    if noisy.mean() <= child.mean():
        pytest.skip("draw gave no raw gain")  # pragma: no cover (seeded: does not happen)
    assert choose_parent({"pass-through:a": child, "fine-tuned": noisy}, "pass-through:a") == "pass-through:a"
    better = np.maximum(child, (rng.random(210) < 0.8).astype(float))
    assert choose_parent({"pass-through:a": child, "fine-tuned": better}, "pass-through:a") == "fine-tuned"
    # among candidates that clear the margin, the best one
    best = np.ones(210)
    assert choose_parent({"pass-through:a": child, "fine-tuned": better, "children": best},
                         "pass-through:a") == "children"


def test_the_default_carries_forward_the_one_child_that_carries_the_label(fitted):
    # root: the mouth alone carries it (hair+ear is random) → its pass-through; hair+ear:
    # nothing below it has skill → the best child on validation that is present wherever
    # the parent is (the ear is not) is copied, so its P@1 is that child's, not a new draw
    root, side = fitted.metrics_["image"]["selected"], fitted.metrics_["hair+ear"]["selected"]
    assert root["skilled_children"] == ["mouth"] and root["default"] == "pass-through:mouth"
    assert side["skilled_children"] == [] and side["default"] == "pass-through:hair"


def test_a_parent_keeps_what_validation_ranks_best_or_its_default(fitted):
    sel = fitted.metrics_["image"]["selected"]
    assert sel["kept"] in sel["val_p_at_1"] and sel["default"] in sel["val_p_at_1"]
    assert fitted.metrics_["image"]["val_precision_at_1"] == pytest.approx(sel["val_p_at_1"][sel["kept"]], abs=1e-4)
    assert sel["val_p_at_1"][sel["kept"]] >= sel["val_p_at_1"][sel["default"]]


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


def test_a_collapsed_embedding_scores_its_chance_level_not_a_draw():
    # a node whose pixels carry no label learns near-identical embeddings (cosine > 0.996
    # between any two on SynthFaces): neighbours that float32 cannot tell apart are tied,
    # so P@1 is the expected share of same-label neighbours, not whichever rounds first
    import torch
    from torch.nn import functional as F

    from biasaudit.heml.quality import knn_float64, nearest_hits, retrieval_metrics

    g = torch.Generator().manual_seed(0)
    emb = F.normalize(torch.ones(300, 128) + 1e-4 * torch.randn(300, 128, generator=g), dim=1)
    e64 = F.normalize(emb.double(), dim=1)  # cosine: float32 unit vectors are unit to 1e-7 only
    exact = e64 @ e64.T
    exact.fill_diagonal_(-2.0)
    rough = emb @ emb.T
    rough.fill_diagonal_(-2.0)
    assert (rough.argmax(1) != exact.argmax(1)).sum() > 10  # float32 gets many neighbours wrong
    _, idx = knn_float64(emb, 3, emb, ref_includes_query=True)  # MAP@R's ranking: exact
    assert torch.equal(idx, exact.topk(3, dim=1).indices)
    labels = np.arange(300) % 2
    hits = nearest_hits(emb, labels)
    assert hits.mean() == pytest.approx(retrieval_metrics(emb, labels)["precision_at_1"])
    assert np.allclose(hits, 149 / 299)  # every other row tied: 149 of 299 share the label
    ranked = (labels[exact.argmax(1).numpy()] == labels).mean()
    assert abs(ranked - 149 / 299) > 0.01  # what the exact ranking of the residue said instead


def test_ties_are_only_neighbours_float32_cannot_tell_apart():
    import torch
    from torch.nn import functional as F

    from biasaudit.heml.quality import nearest_hits

    # two tight clusters, one per label, 1e-3 apart inside: nothing is tied, P@1 is exact
    g = torch.Generator().manual_seed(1)
    centres = F.normalize(torch.randn(2, 64, generator=g), dim=1)
    labels = np.repeat([0, 1], 50)
    emb = F.normalize(centres[labels] + 1e-3 * torch.randn(100, 64, generator=g), dim=1)
    assert nearest_hits(emb, labels).tolist() == [1.0] * 100
    # the query's same-label neighbour at cosine 0.9 and another-label row just below it:
    # 1e-4 lower is an order float32 resolves (D·eps32 = 2.4e-7 at D = 2), 1e-9 is not
    def unit(c: float) -> list[float]:
        return [c, (1.0 - c * c) ** 0.5]

    for gap, hit in ((1e-4, 1.0), (1e-9, 0.5)):
        emb = torch.tensor([[1.0, 0.0], unit(0.9), unit(0.9 - gap), [-1.0, 0.0]], dtype=torch.float64)
        assert nearest_hits(emb, np.array([0, 0, 1, 1]))[0] == hit


def test_two_children_that_carry_the_label_default_to_the_learned_combination(faces):
    # mouth and hair colour both give the label: there is something to combine, so the
    # default is the fine-tuned parent (a pass-through would drop one child's evidence)
    images, maps, y = faces
    images = images.copy()
    hair = maps == 13
    tint = np.where(y[:, None, None, None] == 1, [200, 200, 40], [40, 200, 200]).astype(np.uint8)
    images[hair] = np.broadcast_to(tint, images.shape)[hair]
    recipe = {**BARS_TREE, "tree": {**BARS_TREE["tree"], "epochs": 1}}
    heml = HEML(tree=load_recipe(recipe), device="cpu", seed=0).fit(images, maps, y)
    sel = heml.metrics_["image"]["selected"]
    assert set(sel["skilled_children"]) == {"mouth", "hair"}
    assert sel["default"] == "fine-tuned"


def test_a_node_carries_the_label_when_a_node_below_it_has_skill(fitted):
    # one parent's validation rows can miss a weak signal its children showed: skill below
    # a child counts as that child's (Wearing_Hat: lower_face looked like chance on its own)
    only_mouth = lambda m: m is fitted.metrics_["mouth"]  # noqa: E731
    assert fitted._carries_label("image", only_mouth)
    assert fitted._carries_label("mouth", only_mouth)
    assert not fitted._carries_label("hair+ear", only_mouth)


def test_a_part_some_images_lack_is_also_scored_on_its_parents_rows(fitted, faces):
    _, maps, y = faces
    ear, parent = fitted.metrics_["ear"], fitted.metrics_["hair+ear"]
    test = np.zeros(len(y), bool)
    test[fitted.split_["test"]] = True
    has_ear = (maps == 8).any(axis=(1, 2))  # l_ear, absent from every 4th image
    assert ear["n_test"] == (test & has_ear).sum() < ear["n_test_all_images"] == parent["n_test"] == test.sum()
    assert ear["chance_p_at_1_all_images"] == pytest.approx(parent["chance_p_at_1"])
    from biasaudit.heml.quality import precision_at_1_all_images

    assert ear["precision_at_1_all_images"] == pytest.approx(precision_at_1_all_images(
        ear["precision_at_1"], y[test & has_ear], y[test & ~has_ear]))
    for node in ("mouth", "hair", "hair+ear", "image"):  # present in every image: one figure is enough
        assert "precision_at_1_all_images" not in fitted.metrics_[node]


def test_over_every_image_the_absent_images_form_one_tied_group():
    from biasaudit.heml.quality import precision_at_1_all_images

    # no image lacks the part: the figure is the node's own
    assert precision_at_1_all_images(0.8, np.array([0, 1, 1]), np.array([])) == 0.8
    # glasses (label 1) only where the part is: at chance 1.0 among its images, yet presence
    # alone tells the label, which the parent's rows show
    assert precision_at_1_all_images(1.0, np.array([1, 1, 1]), np.array([0, 0, 0, 0, 0])) == 1.0
    # absent images score the share of the other absent images with their label: 1/2 each here
    assert precision_at_1_all_images(1.0, np.array([0, 0, 1, 1]), np.array([0, 0, 1])) == pytest.approx(
        (4 * 1.0 + 1 / 2 + 1 / 2 + 0) / 7)
    # a lone absent image has no tie partner: its nearest are the present images, all tied
    assert precision_at_1_all_images(1.0, np.array([0, 0, 0, 1]), np.array([0])) == pytest.approx((4 + 3 / 4) / 5)
    # a lone present image likewise scores the share of the absent images with its label
    assert precision_at_1_all_images(float("nan"), np.array([1]), np.array([1, 1, 0])) == pytest.approx(
        (2 / 3 + 1 / 2 + 1 / 2 + 0) / 4)


def test_a_part_whose_presence_carries_the_label_counts_for_its_parent(faces):
    # the label is whether the ear is there: among the images with an ear every one has
    # label 1, so the ear node has nothing to learn or to show on its own rows; over every
    # validation image it tells the label, and its parent (which sees the ear's absence as
    # a zero embedding) must count it as carrying the label and weigh it in
    images, maps, _ = faces
    y = (maps == 8).any(axis=(1, 2)).astype(int)
    heml = HEML(tree=load_recipe(TREE), device="cpu", seed=0).fit(images, maps, y)
    ear = heml.metrics_["ear"]
    assert "val_precision_at_1" not in ear  # one class among its own validation rows
    assert ear["n_val_all_images"] == heml.metrics_["hair+ear"]["n_val"]
    assert ear["val_chance_p_at_1_all_images"] == pytest.approx(heml.metrics_["hair+ear"]["val_chance_p_at_1"])
    assert ear["val_precision_at_1_all_images"] == 1.0  # present and absent images each tied with their own
    sel = heml.metrics_["hair+ear"]["selected"]
    assert "ear" in sel["skilled_children"]  # (the hair's crop shows some of the ear: it has skill too)
    # the children's combination alone now tells the label, through the ear's presence
    # (before, the ear weighed 0 in it and it read 0.85 on validation, the hair's)
    assert sel["children_weights"]["ear"] > 0.5
    assert sel["val_p_at_1"]["children"] == 1.0
    assert heml.metrics_["hair+ear"]["precision_at_1"] >= 0.9
    # the trunk's start still averages what the children's weights learned from pixels
    assert heml._skills(["hair", "ear"], presence=False)[1] == 0.0
    for node in ("mouth", "hair", "hair+ear", "image"):  # present in every image
        assert "val_precision_at_1_all_images" not in heml.metrics_[node]


def test_validation_hits_over_every_image_match_the_test_figure():
    from biasaudit.heml.quality import (
        gallery_hits_all_images,
        hits_all_images,
        precision_at_1_all_images,
    )

    present, absent = np.array([0, 1, 1, 0]), np.array([0, 0, 1])
    hits = hits_all_images(np.full(4, 0.75), present, absent)
    assert hits.mean() == pytest.approx(precision_at_1_all_images(0.75, present, absent))
    assert hits[4:].tolist() == [0.5, 0.5, 0.0]
    # against a gallery: an absent query is tied with the gallery's absent rows...
    g = gallery_hits_all_images(np.ones(4), present, absent, np.array([0, 1]), np.array([0, 0, 0, 1]))
    assert g.tolist() == [1.0, 1.0, 1.0, 1.0, 0.75, 0.75, 0.25]
    # ...or, where the gallery has none, with all of its present rows
    g = gallery_hits_all_images(np.ones(4), present, absent, np.array([0, 0, 1]), np.array([], int))
    assert g[4:].tolist() == pytest.approx([2 / 3, 2 / 3, 1 / 3])
    # a gallery of absent rows only: the present queries are tied with all of them
    g = gallery_hits_all_images(np.zeros(4), present, absent, np.array([], int), np.array([0, 1]))
    assert g.tolist() == [0.5] * 7


def test_the_heml_table_shows_such_a_part_on_its_parents_rows_too(fitted):
    from biasaudit.cli.heml import format_node_table

    header, *rows = format_node_table(fitted).splitlines()
    assert header.split()[-3:] == ["P@1", "all", "chance"]
    cells = {r.split()[0]: r.split() for r in rows if r.strip() and r.split()[0] in fitted.metrics_}
    ear = fitted.metrics_["ear"]
    assert cells["ear"][-2:] == [f"{ear['precision_at_1_all_images']:.3f}", f"{ear['chance_p_at_1_all_images']:.3f}"]
    assert len(cells["mouth"]) == len(cells["ear"]) - 2  # nothing to add where every image has the part
    assert any("one tied group" in r for r in rows)


def test_a_gallery_is_searched_instead_of_the_other_queries():
    import torch

    from biasaudit.heml.quality import nearest_hits, validation_hits

    q = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8]])
    y = np.array([0, 1, 0])
    g = torch.tensor([[0.5, 0.866], [0.0, 1.0]])
    # among themselves the last two queries' nearest rows have another label...
    assert nearest_hits(q, y).tolist() == [1.0, 0.0, 0.0]
    # ...the gallery (searched instead, nothing left out) has a nearest row of each one's label
    assert nearest_hits(q, y, gallery=g, gallery_labels=np.array([0, 1])).tolist() == [1.0, 1.0, 1.0]
    assert validation_hits(q, y, g, np.array([0, 1])).tolist() == [1.0, 0.5, 0.5]
    assert validation_hits(q, y, g[:0], np.array([], int)).tolist() == [1.0, 0.0, 0.0]  # no gallery
    with pytest.raises(ValueError, match="gallery has 2 rows but gallery_labels 1"):
        nearest_hits(q, y, gallery=g, gallery_labels=np.array([0]))


@pytest.mark.parametrize("embedder", ["mlp", "dgml"])
def test_a_parent_fuses_the_own_embedding_it_computes_once_as_its_forward_does(embedder):
    # the parent choice embeds the own pixels once and tries each fusion on them
    import torch

    from biasaudit.heml.trunks import build_node_model

    model = build_node_model("small-cnn:8", embedding_dim=8, hidden_dim=16, seed=0, embedder=embedder,
                             groups=2, n_children=2).eval()
    if embedder == "dgml":
        model.set_attention_prior([((1,), 1.0)])
    g = torch.Generator().manual_seed(0)
    x = torch.rand(5, 3, 16, 16, generator=g)
    prior = torch.rand(5, 16 * 16 if embedder == "dgml" else 0, generator=g)  # per pixel, non-negative
    kids = torch.cat([torch.randn(5, 16, generator=g), prior], dim=1)
    with torch.no_grad():
        split = model.fuse(model.own_embedding(x, kids), kids)
        torch.testing.assert_close(split, model(x, kids))
        model.init_fusion([0.0, 1.0, 0.0])  # a pass-through of the first child
        torch.testing.assert_close(model.fuse(model.own_embedding(x, kids), kids),
                                   torch.nn.functional.normalize(kids[:, :8], dim=1))
