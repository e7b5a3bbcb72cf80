from __future__ import annotations

import numpy as np
import pytest
import torch
from heml_fixtures import TREE

from biasaudit.core.errors import ValidationError
from biasaudit.heml import HEML, build_node_model, load_efficientnet_lite0, load_recipe


def test_efficientnet_lite0_weights_classify_chelsea_as_a_cat():
    data = pytest.importorskip("skimage.data")
    from PIL import Image

    net = load_efficientnet_lite0()
    img = np.asarray(Image.fromarray(data.chelsea()).resize((224, 224), Image.BILINEAR), np.float32)
    x = torch.from_numpy((img - 127.0) / 128.0).permute(2, 0, 1)[None]
    with torch.no_grad():
        top = int(net(x).argmax())
    assert 281 <= top <= 285  # ImageNet cat classes (tabby … Egyptian cat)


def test_frozen_efficientnet_trunk_trains_only_the_embedder(faces, tmp_path):
    images, maps, y = faces
    recipe = {**TREE, "defaults": {"resolution": 32, "epochs": 3, "trunk": "efficientnet-lite0"},
              "tree": {"name": "mouth", "parts": ["mouth"]}}
    heml = HEML(tree=load_recipe(recipe), device="cpu").fit(images[:48], maps[:48], y[:48])
    model = heml.models_["mouth"]
    assert not model.trunk_trainable
    fresh = load_efficientnet_lite0()
    torch.testing.assert_close(model.trunk.net._conv_stem.weight, fresh._conv_stem.weight)
    assert heml.metrics_["mouth"]["precision_at_1"] >= 0.9
    heml.save(tmp_path)
    from safetensors.torch import load_file

    keys = load_file(str(tmp_path / "mouth" / "model.safetensors"))
    assert keys and all(k.startswith("model.") and "trunk" not in k for k in keys)  # 13 MB trunk not copied
    np.testing.assert_allclose(HEML.load(tmp_path, device="cpu").embed(images[:4], maps[:4])["mouth"],
                               heml.embed(images[:4], maps[:4])["mouth"], atol=1e-5)


def test_transformers_backbone_from_a_local_folder(faces, tmp_path):
    from transformers import ResNetConfig, ResNetModel

    torch.manual_seed(0)
    ResNetModel(ResNetConfig(embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1])).save_pretrained(tmp_path)
    model = build_node_model(f"hf:{tmp_path}", embedding_dim=8)
    assert model.trunk.out_dim == 16 and not model.trunk_trainable
    out = model(torch.zeros(2, 3, 32, 32))
    torch.testing.assert_close(out.norm(dim=1), torch.ones(2))
    images, maps, y = faces
    recipe = {**TREE, "defaults": {"resolution": 16, "epochs": 2, "trunk": f"hf:{tmp_path}"},
              "tree": {"name": "mouth", "parts": ["mouth"]}}
    heml = HEML(tree=load_recipe(recipe), device="cpu", embedding_dim=8).fit(images[:32], maps[:32], y[:32])
    assert heml.metrics_["mouth"]["n_train"] + heml.metrics_["mouth"]["n_test"] == 32


def test_unknown_trunks_are_named():
    with pytest.raises(ValidationError, match="Unknown trunk 'vgg'"):
        build_node_model("vgg")
    with pytest.raises(ValidationError, match="small-cnn:32"):
        build_node_model("small-cnn:wide")
    with pytest.raises(ValidationError, match="could not load a transformers model"):
        build_node_model("hf:/no/such/folder")


def test_nodes_share_one_frozen_trunk_and_one_seeded_start():
    shared: dict = {}
    a = build_node_model("efficientnet-lite0", embedding_dim=8, seed=3, frozen_trunks=shared)
    b = build_node_model("efficientnet-lite0", embedding_dim=8, seed=3, frozen_trunks=shared)
    assert a.trunk is b.trunk and list(shared) == ["efficientnet-lite0"]
    for p, q in zip(a.embedder.parameters(), b.embedder.parameters(), strict=True):
        torch.testing.assert_close(p, q)
    c, d = (build_node_model("small-cnn:8", embedding_dim=8, seed=3, frozen_trunks=shared) for _ in range(2))
    assert c.trunk is not d.trunk  # trained trunks are never shared ...
    torch.testing.assert_close(c.trunk.features[0].weight, d.trunk.features[0].weight)  # ... but start equal
