"""`biasaudit heml DATA --out WS --label COL` on SynthFaces with a planted bias, then `explain`."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from biasaudit.cli import main

RECIPE = {
    "schema": "celebamask-hq",
    "defaults": {"resolution": 16, "epochs": 6, "trunk": "small-cnn:8"},
    "tree": {"name": "image", "epochs": 2, "children": [
        {"name": "mouth", "parts": ["mouth", "u_lip", "l_lip"]},
        {"name": "hair", "parts": ["hair"]},
    ]},
}


@pytest.fixture(scope="module")
def trained(train_heml_cli):
    return train_heml_cli("heml_cli", RECIPE, seed=1, data_seed=2, plants=("Smiling:Blond_Hair=0.95",))


def test_heml_trains_every_node_and_writes_metrics_and_tree(trained):
    _, ws, result = trained
    assert result.exit_code == 0, result.output
    assert "node" in result.output and "P@1" in result.output and "mouth" in result.output
    metrics = {n: json.loads((ws / "models" / n / "metrics.json").read_text()) for n in ("image", "mouth", "hair")}
    for m in metrics.values():
        assert {"precision_at_1", "map_at_r", "chance_p_at_1", "n_train", "n_test"} <= set(m)
        assert m["n_test"] > 0
    # the mouth shows Smiling; the planted hair colour follows it; the root keeps the signal
    assert metrics["mouth"]["precision_at_1"] >= 0.85
    assert metrics["hair"]["precision_at_1"] >= metrics["hair"]["chance_p_at_1"] + 0.15
    best_child = max(metrics["mouth"]["precision_at_1"], metrics["hair"]["precision_at_1"])
    assert metrics["image"]["precision_at_1"] >= best_child - 0.1
    tree = json.loads((ws / "models" / "tree.json").read_text())
    assert {n["name"]: n["children"] for n in tree["nodes"]}["image"] == ["mouth", "hair"]
    glue = json.loads((ws / "models" / "workspace.json").read_text())
    assert glue["supervision"] == "label:Smiling"


def test_explain_works_on_the_heml_workspace(trained):
    _, ws, _ = trained
    result = CliRunner().invoke(main, ["explain", "00000.png", "00001.png", "--workspace", str(ws),
                                       "--json", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.output)
    assert doc["root"] == "image" and doc["tree_distance"] is not None and doc["root_distance"] is not None


def test_heml_errors_are_clean(trained, tmp_path):
    data, _, _ = trained
    result = CliRunner().invoke(main, ["heml", str(data), "--out", str(tmp_path / "ws2"), "--label", "Happy",
                                       "--device", "cpu"])
    assert result.exit_code == 1 and "column 'Happy'" in result.output and "Traceback" not in result.output
    inside = CliRunner().invoke(main, ["heml", str(data), "--out", str(data / "ws"), "--label", "Smiling"])
    assert inside.exit_code == 1 and "inside the dataset folder" in inside.output
    assert not (data / "ws").exists()
