from __future__ import annotations

import numpy as np
import pytest
import torch
from heml_fixtures import EAR, HAIR
from PIL import Image

from biasaudit.heml import explain_pair, render_metric_tree


def test_identical_images_are_at_distance_zero_everywhere(fitted, faces):
    images, maps, _ = faces
    tree = explain_pair(fitted, images[1], maps[1], images[1], maps[1])
    assert [n.node for n in tree.nodes] == ["image", "mouth", "hair+ear", "hair", "ear"]
    for node in tree.nodes:
        assert node.snr_distance == pytest.approx(0.0, abs=1e-6)


def test_changing_only_the_hair_moves_hair_nodes_not_the_mouth(fitted, faces):
    images, maps, _ = faces
    a, m = images[1], maps[1]
    b = a.copy()
    b[m == HAIR] = 255 - b[m == HAIR]  # invert the hair colour, nothing else
    tree = explain_pair(fitted, a, m, b, m)
    assert tree.distance("mouth") == pytest.approx(0.0, abs=1e-6)
    assert tree.distance("ear") == pytest.approx(0.0, abs=1e-6)
    assert tree.distance("hair") > 0.01
    # the parent moves less: its own pixels' pathway learns the label, which hair does not carry
    assert tree.distance("hair+ear") > 1e-3


def test_snr_distance_matches_the_formula(fitted, faces):
    images, maps, _ = faces
    tree = explain_pair(fitted, images[1], maps[1], images[2], maps[2])
    emb = fitted.embed(images[1:3], maps[1:3])["mouth"]
    a, b = torch.tensor(emb[0]), torch.tensor(emb[1])
    expected = float(torch.var(a - b) / torch.var(a))  # pml SNRDistance: var(a − b) / var(a)
    assert tree.distance("mouth") == pytest.approx(expected, rel=1e-4)


def test_absent_part_gives_none_and_json_says_which(fitted, faces, tmp_path):
    images, maps, _ = faces
    assert not (maps[0] == EAR).any() and (maps[1] == EAR).any()
    tree = explain_pair(fitted, images[0], maps[0], images[1], maps[1])
    ear = next(n for n in tree.to_dict()["nodes"] if n["node"] == "ear")
    assert ear == {"node": "ear", "children": [], "snr_distance": None, "present": {"a": False, "b": True}}
    out = render_metric_tree(tree, tmp_path / "t.png")
    assert out.read_bytes()[:4] == b"\x89PNG"
    assert np.asarray(Image.open(out)).std() > 0  # not a blank canvas
