from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from biasaudit.cli import main

RECIPE = {
    "schema": "celebamask-hq",
    "defaults": {"resolution": 16, "epochs": 1, "trunk": "small-cnn:8"},
    "tree": {"name": "image", "children": [
        {"name": "mouth", "parts": ["mouth", "u_lip", "l_lip"]},
        {"name": "hair+hat", "children": ["hair", "hat"]},
    ]},
}


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    """SynthFaces (32 × 64 px) segmented from its masks, with a tiny HEML trained on Smiling."""
    from biasaudit.data.synth import SynthFacesConfig, write_synthfaces
    from biasaudit.heml.workspace import fit_heml_workspace
    from biasaudit.segment import segment_dataset

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # shared 2-core machines: avoid OpenMP spinning
    root = tmp_path_factory.mktemp("explain")
    data, ws = root / "data", root / "ws"
    write_synthfaces(data, SynthFacesConfig(n=32, seed=1, size=64))
    segment_dataset(data, ws, segmenter="masks")
    fit_heml_workspace(ws, supervision="label:Smiling", recipe=RECIPE, image_size=64, device="cpu")
    torch.set_num_threads(threads)
    return ws


def _ids(ws):
    import pandas as pd

    return pd.read_parquet(ws / "embeddings" / "index.parquet")["image"].tolist()


def test_workspace_outputs(workspace):
    ids = _ids(workspace)
    assert len(ids) == 32
    emb = np.load(workspace / "embeddings" / "mouth.npy")
    assert emb.dtype == np.float16 and emb.shape == (32, 128)
    metrics = json.loads((workspace / "models" / "mouth" / "metrics.json").read_text())
    assert {"precision_at_1", "map_at_r", "n_train", "n_test"} <= set(metrics)
    assert metrics["n_train"] + metrics["n_test"] == 32


def test_explain_json_tree(workspace):
    a, b = _ids(workspace)[:2]
    result = CliRunner().invoke(main, ["explain", a, b, "--workspace", str(workspace), "--json", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.output)
    names = [n["node"] for n in doc["nodes"]]
    assert names == ["image", "mouth", "hair+hat", "hair", "hat"]  # root first, depth-first
    assert doc["nodes"][0]["children"] == ["mouth", "hair+hat"]
    for node in doc["nodes"]:
        if node["present"]["a"] and node["present"]["b"]:
            assert node["snr_distance"] >= 0
        else:
            assert node["snr_distance"] is None


def test_explain_same_image_is_zero_everywhere_and_draws_png(workspace, tmp_path):
    a = _ids(workspace)[0]
    out = tmp_path / "tree.png"
    result = CliRunner().invoke(main, ["explain", a, a, "--workspace", str(workspace), "--out", str(out),
                                       "--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert "  image: 0.000" in result.output and "    mouth: 0.000" in result.output
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    from PIL import Image

    assert Image.open(out).size[0] >= 600


def test_explain_errors_are_clean(workspace, tmp_path):
    a = _ids(workspace)[0]
    result = CliRunner().invoke(main, ["explain", a, "nope.png", "--workspace", str(workspace)])
    assert result.exit_code == 1
    assert "Image 'nope.png' is not a usable image" in result.output and "Traceback" not in result.output
    empty = tmp_path / "empty"
    empty.mkdir()
    result = CliRunner().invoke(main, ["explain", a, a, "--workspace", str(empty)])
    assert result.exit_code == 1 and "does not hold trained HEML models" in result.output


def test_fit_needs_a_known_label_column(workspace):
    from biasaudit.core.errors import ValidationError
    from biasaudit.heml.workspace import fit_heml_workspace, parse_supervision

    with pytest.raises(ValidationError, match="column 'Happy' is not in .*Label columns there: .*Smiling"):
        fit_heml_workspace(workspace, supervision="label:Happy", recipe=RECIPE, device="cpu")
    with pytest.raises(ValidationError, match="'self' or 'label:<column>'"):
        parse_supervision("labels")
