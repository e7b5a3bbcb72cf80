from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from heml_fixtures import TREE, make_faces

from biasaudit.core.errors import NotFittedError, ValidationError
from biasaudit.heml import HEML, average_state_dicts, load_recipe
from biasaudit.heml.estimator import OWN_SHARE
from biasaudit.heml.losses import build_loss
from biasaudit.heml.training import resolve_device, train_modules
from biasaudit.heml.trunks import build_node_model


def test_label_node_learns_and_unrelated_node_stays_near_chance(fitted):
    m = fitted.metrics_
    assert m["mouth"]["precision_at_1"] >= 0.9
    assert m["image"]["precision_at_1"] >= 0.9
    # hair colour is random, independent of the label: P@1 ≈ chance (0.5) on 29 test images
    assert m["hair"]["chance_p_at_1"] == pytest.approx(0.5, abs=0.01)
    assert m["hair"]["precision_at_1"] <= 0.75
    # the ear is absent from every 4th image: those are neither trained nor scored (a
    # validation share of the training split is held out to build parents on)
    assert m["ear"]["n_train"] + m["ear"]["n_val"] + m["ear"]["n_test"] == 72
    assert m["mouth"]["n_train"] + m["mouth"]["n_val"] + m["mouth"]["n_test"] == 96
    assert set(m["mouth"]) >= {"precision_at_1", "map_at_r", "n_train", "n_test"}


def test_parent_starts_from_area_weighted_average_of_children(faces, monkeypatch):
    from biasaudit.heml import parents

    # 0 epochs: the "fine-tuned" parent is its start, which the choice on validation rows
    # would otherwise replace by its hair child's embedding (both at chance here)
    monkeypatch.setattr(parents, "choose_parent", lambda hits, default, **kw: "fine-tuned")
    images, maps, y = faces
    recipe = {**TREE, "tree": {"name": "hair+ear", "epochs": 0, "children": [
        {"name": "hair", "parts": ["hair"]}, {"name": "ear", "parts": ["l_ear"]}]}}
    heml = HEML(tree=load_recipe(recipe), device="cpu", fusion_init="area", init_weights="area").fit(images, maps, y)
    # hair covers 8×32 of 32×32 pixels, the ear 8×4 where present: area weights 0.25 : 0.03125
    w_hair, w_ear = 0.25 / 0.28125, 0.03125 / 0.28125
    assert heml.metrics_["hair+ear"]["init"]["weights"] == pytest.approx([w_hair, w_ear])
    hair, ear, parent = (heml.models_[n].state_dict() for n in ("hair", "ear", "hair+ear"))
    for key in parent:
        if key.startswith("fusion."):
            continue
        torch.testing.assert_close(parent[key], w_hair * hair[key] + w_ear * ear[key])
    # with fusion_init="area" the fusion starts as the area-weighted sum of [own, hair, ear] blocks
    own = OWN_SHARE
    d = heml.models_["hair"].embedding_dim
    eye = torch.eye(d)
    expected = torch.cat([own * eye, (1 - own) * w_hair * eye, (1 - own) * w_ear * eye], dim=1)
    torch.testing.assert_close(parent["fusion.weight"], expected)
    assert heml.metrics_["hair+ear"]["init"]["fusion_start"]["own"] == pytest.approx(own)


@pytest.mark.parametrize("how", ["equal", "p_at_1", "skill"])
def test_other_init_weightings(faces, how):
    images, maps, y = faces
    recipe = {**TREE, "tree": {"name": "top", "epochs": 0, "children": ["mouth", "hair"]}}
    heml = HEML(tree=load_recipe(recipe), device="cpu", init_weights=how).fit(images, maps, y)
    if how == "equal":
        expected = [0.5, 0.5]
    elif how == "skill":  # validation P@1 above chance: the mouth carries the label, the hair not
        skill = [max(heml.metrics_[c]["val_precision_at_1"] - heml.metrics_[c]["val_chance_p_at_1"], 0.0)
                 for c in ("mouth", "hair")]
        expected = [skill[0] / sum(skill), skill[1] / sum(skill)]
        assert expected[0] > 0.8
    else:
        # on the validation rows: nothing that builds the tree looks at the test split
        p = [heml.metrics_[c]["val_precision_at_1"] for c in ("mouth", "hair")]
        expected = [p[0] / sum(p), p[1] / sum(p)]
    assert heml.metrics_["top"]["init"]["weights"] == pytest.approx(expected)
    a, b, top = (heml.models_[n].state_dict() for n in ("mouth", "hair", "top"))
    k = "trunk.features.0.weight"
    torch.testing.assert_close(top[k], expected[0] * a[k] + expected[1] * b[k])


def test_average_state_dicts_by_hand():
    a = {"w": torch.tensor([1.0, 2.0]), "n": torch.tensor(3)}
    b = {"w": torch.tensor([3.0, 6.0]), "n": torch.tensor(9)}
    out = average_state_dicts([a, b], [1.0, 3.0])
    torch.testing.assert_close(out["w"], torch.tensor([2.5, 5.0]))
    assert int(out["n"]) == 3  # integer buffers are copied, not averaged
    with pytest.raises(ValidationError, match="different shapes"):
        average_state_dicts([a, {"w": torch.zeros(3), "n": torch.tensor(1)}], [1, 1])


def test_embed_marks_absent_nodes_with_zero_vectors(fitted, faces):
    images, maps, _ = faces
    emb = fitted.embed(images[:8], maps[:8])
    norms = np.linalg.norm(emb["ear"], axis=1)
    # fixture: the ear is missing from images 0 and 4
    np.testing.assert_allclose(norms, [0, 1, 1, 1, 0, 1, 1, 1], atol=1e-5)
    assert emb["mouth"].shape == (8, 128)
    assert fitted.transform(images[:3], maps[:3]).shape == (3, 128 * 5)


def test_not_fitted_and_bad_inputs():
    with pytest.raises(NotFittedError, match="not fitted yet"):
        HEML().embed(np.zeros((1, 4, 4, 3), np.uint8), np.zeros((1, 4, 4), np.int64))
    images, maps, y = make_faces(8)
    with pytest.raises(ValidationError, match="supervision='label' needs labels"):
        HEML(tree=load_recipe(TREE), device="cpu").fit(images, maps)
    with pytest.raises(ValidationError, match="y has 3 labels for 8 images"):
        HEML(tree=load_recipe(TREE), device="cpu").fit(images, maps, [0, 1, 0])
    with pytest.raises(ValidationError, match="1 distinct label value"):
        HEML(tree=load_recipe(TREE), device="cpu").fit(images, maps, np.ones(8))
    with pytest.raises(ValidationError, match="The 'init_weights' parameter must be one of"):
        HEML(tree=load_recipe(TREE), init_weights="max").fit(images, maps, y)
    with pytest.raises(ValidationError, match="unknown parameter"):
        HEML(colour="red")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message shown without CUDA")
def test_cuda_request_without_cuda_is_a_clear_error():
    assert resolve_device("auto").device.type == "cpu"
    with pytest.raises(ValidationError, match="no CUDA device; use --device cpu or auto"):
        resolve_device("cuda")


def test_save_and_load_round_trip_with_safetensors_only(fitted, faces, tmp_path):
    images, maps, _ = faces
    fitted.save(tmp_path)
    files = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file())
    assert "mouth/model.safetensors" in files and "hair+ear/config.json" in files
    assert not [f for f in files if f.endswith((".pt", ".pth", ".pkl", ".bin"))]
    metrics = json.loads((tmp_path / "mouth" / "metrics.json").read_text())
    assert metrics["precision_at_1"] == fitted.metrics_["mouth"]["precision_at_1"]
    assert metrics["n_test"] == fitted.metrics_["mouth"]["n_test"]
    loaded = HEML.load(tmp_path, device="cpu")
    a, b = fitted.embed(images[:6], maps[:6]), loaded.embed(images[:6], maps[:6])
    for node in a:
        np.testing.assert_allclose(a[node], b[node], atol=1e-6)
    with pytest.raises(ValidationError, match="does not hold trained HEML models"):
        HEML.load(tmp_path / "nothing")


def test_proxy_parameters_are_trained_and_persisted(faces, tmp_path):
    images, maps, y = faces
    recipe = {**TREE, "tree": {"name": "mouth", "parts": ["mouth"], "epochs": 2}}
    heml = HEML(tree=load_recipe(recipe), device="cpu", loss="proxy-anchor").fit(images, maps, y)
    proxies = heml.losses_["mouth"].proxies.detach().clone()
    torch.manual_seed(0)
    fresh = build_loss("proxy-anchor", num_classes=2, embedding_dim=128).loss.proxies
    assert not torch.allclose(proxies, fresh)
    heml.save(tmp_path)
    loaded = HEML.load(tmp_path, device="cpu")
    torch.testing.assert_close(loaded.losses_["mouth"].proxies, proxies)


def test_stacked_training_equals_separate_training():
    # A full-batch step is independent of batch order, so one step of two models stacked
    # (vmap, one Adam over stacked tensors) must match each model stepped alone. Only
    # summation order differs; Adam turns that float noise into visible changes where a
    # gradient is ~0, so compare the whole update, not single weights.
    setup = resolve_device("cpu")
    rng = np.random.default_rng(0)
    xs = [torch.from_numpy(rng.integers(0, 255, (16, 3, 16, 16), dtype=np.uint8)) for _ in range(2)]
    ys = [torch.tensor([0, 1] * 8), torch.tensor([0] * 8 + [1] * 8)]

    def fresh(seed):
        torch.manual_seed(seed)
        return build_node_model("small-cnn:8", embedding_dim=16)

    def loss():
        return build_loss("multi-similarity", num_classes=2, embedding_dim=16)

    def flat(model):
        return torch.cat([p.detach().flatten() for p in model.parameters()])

    kw = dict(normalize=False, epochs=1, batch_size=16, lr=1e-2, loss_lr=1e-2, setup=setup)
    together = [fresh(1), fresh(2)]
    train_modules(together, [loss(), loss()], xs, ys, gen=torch.Generator().manual_seed(0), **kw)
    for j, seed in enumerate((1, 2)):
        alone = fresh(seed)
        train_modules([alone], [loss()], [xs[j]], [ys[j]], gen=torch.Generator().manual_seed(0), **kw)
        update = flat(alone) - flat(fresh(seed))
        assert update.norm() > 0.1  # the step did move the weights
        assert (flat(alone) - flat(together[j])).norm() < 0.01 * update.norm()
        with torch.no_grad():
            torch.testing.assert_close(alone(xs[j].float()), together[j](xs[j].float()), atol=2e-3, rtol=0)


def test_concurrent_fit_trains_levels_together(faces):
    images, maps, y = faces
    heml = HEML(tree=load_recipe(TREE), device="cpu", concurrent=True).fit(images, maps, y)
    assert heml.metrics_["mouth"]["concurrent_group"] == ["mouth", "hair", "ear"]
    assert heml.metrics_["mouth"]["precision_at_1"] >= 0.9
    assert heml.metrics_["hair"]["precision_at_1"] <= 0.75


def test_self_supervision_learns_to_retrieve_views(faces):
    images, maps, _ = faces
    recipe = {**TREE, "tree": {"name": "hair", "parts": ["hair"], "epochs": 4}}
    untrained = HEML(tree=load_recipe({**recipe, "tree": {**recipe["tree"], "epochs": 0}}),
                     supervision="self", device="cpu").fit(images, maps)
    heml = HEML(tree=load_recipe(recipe), supervision="self", device="cpu").fit(images, maps)
    p = heml.metrics_["hair"]["precision_at_1"]
    # 29 held-out images, two views each: chance of finding the other view first is 1/57
    assert p > 0.25 and p > 2 * untrained.metrics_["hair"]["precision_at_1"]
    with pytest.raises(ValidationError, match="supervision 'self' has no classes"):
        HEML(tree=load_recipe(recipe), supervision="self", loss="proxy-anchor", device="cpu").fit(images, maps)


def test_baseline_spends_the_same_pixel_budget(faces):
    images, maps, y = faces
    heml = HEML(tree=load_recipe(TREE), device="cpu", baseline=True).fit(images, maps, y)
    spent = sum(m["epochs"] * m["n_train"] * m["resolution"] ** 2 for m in heml.metrics_.values())
    # 3 epochs × (4 nodes on every training image + the ear on 3 in 4) × 16², spread over
    # the 67 training-split images at 16² (the baseline builds no tree: no validation rows)
    n, ear = heml.metrics_["mouth"]["n_train"], heml.metrics_["ear"]["n_train"]
    assert n + heml.metrics_["mouth"]["n_val"] == 67 and ear < n
    assert spent == 3 * (n * 4 + ear) * 256
    assert heml.baseline_metrics_["epochs"] == round(spent / (67 * 256))
    assert heml.baseline_metrics_["n_train"] == 67
    assert 0.0 <= heml.baseline_metrics_["precision_at_1"] <= 1.0


def test_images_without_a_label_are_left_out(faces):
    images, maps, y = faces
    labels = [None if i % 3 == 0 else int(v) for i, v in enumerate(y)]  # 32 of 96 unlabelled
    recipe = {**TREE, "tree": {"name": "mouth", "parts": ["mouth"], "epochs": 1}}
    heml = HEML(tree=load_recipe(recipe), device="cpu").fit(images, maps, labels)
    m = heml.metrics_["mouth"]
    assert m["n_train"] + m["n_test"] == 64
    assert list(heml.classes_) == ["0", "1"]
    assert heml.embed(images[:3], maps[:3])["mouth"].shape == (3, 128)  # still embedded


@pytest.mark.parametrize("k", [1, 2])
def test_gpu_tensor_handling_bf16_autocast_and_channels_last_runs_on_cpu(k):
    # The CUDA path differs from the CPU one by bf16 autocast and channels_last (plus pinned
    # copies); both also exist on CPU, so the shapes, casts and stacking are checked here.
    from biasaudit.heml.training import DeviceSetup, run_batched

    setup = DeviceSetup(device=torch.device("cpu"), autocast=True, channels_last=True)
    rng = np.random.default_rng(0)
    xs = [torch.from_numpy(rng.integers(0, 255, (24, 3, 16, 16), dtype=np.uint8)) for _ in range(k)]
    ys = [torch.tensor([0, 1] * 12) for _ in range(k)]
    models = [build_node_model("small-cnn:8", embedding_dim=16, seed=0).to(memory_format=torch.channels_last)
              for _ in range(k)]
    bundles = [build_loss("proxy-anchor", num_classes=2, embedding_dim=16) for _ in range(k)]
    history = train_modules(models, bundles, xs, ys, normalize=False, epochs=2, batch_size=8, lr=1e-3,
                            loss_lr=1e-2, setup=setup, gen=torch.Generator().manual_seed(0))
    assert len(history) == k and all(len(h) == 2 and np.isfinite(h).all() for h in history)
    emb = run_batched(models[0], xs[0], setup)
    assert emb.dtype == torch.float32 and emb.shape == (24, 16)
    torch.testing.assert_close(emb.norm(dim=1), torch.ones(24), atol=2e-2, rtol=0)  # bf16 rounding
