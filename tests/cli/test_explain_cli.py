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
    assert "'nope.png' is neither an image id" in result.output and "Traceback" not in result.output
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


def test_explain_prints_both_whole_image_distances(workspace):
    a, b = _ids(workspace)[:2]
    result = CliRunner().invoke(main, ["explain", a, b, "--workspace", str(workspace), "--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert "whole image, root embedding:" in result.output and "whole image, metric tree:" in result.output
    doc = json.loads(CliRunner().invoke(main, ["explain", a, b, "--workspace", str(workspace), "--json",
                                               "--device", "cpu"]).output)
    present = [n for n in doc["nodes"] if n["snr_distance"] is not None]
    weights = doc["tree_weights"]
    expected = sum(weights[n["node"]] * n["snr_distance"] for n in present) / sum(weights[n["node"]] for n in present)
    assert doc["tree_distance"] == pytest.approx(expected, abs=1e-5)
    assert doc["root_distance"] == doc["nodes"][0]["snr_distance"]


def test_explain_accepts_dataset_paths_and_new_images_with_masks(workspace, tmp_path):
    import shutil

    data = workspace.parent / "data"
    a, b = _ids(workspace)[:2]
    by_id = json.loads(CliRunner().invoke(main, ["explain", a, b, "--workspace", str(workspace), "--json",
                                                 "--device", "cpu"]).output)
    # the same pair given as a path inside the dataset
    by_path = CliRunner().invoke(main, ["explain", str(data / "images" / a), b, "--workspace", str(workspace),
                                        "--json", "--device", "cpu"])
    assert by_path.exit_code == 0, by_path.output
    assert json.loads(by_path.output)["nodes"] == by_id["nodes"]
    # a new image (a copy outside the dataset) needs its mask on a masks workspace
    new_img, new_mask = tmp_path / "new.png", tmp_path / "new_mask.png"
    shutil.copy(data / "images" / b, new_img)
    shutil.copy(data / "masks" / b, new_mask)
    refused = CliRunner().invoke(main, ["explain", a, str(new_img), "--workspace", str(workspace), "--device", "cpu"])
    assert refused.exit_code == 1 and "--mask" in refused.output and "Traceback" not in refused.output
    new = CliRunner().invoke(main, ["explain", a, str(new_img), "--mask", str(new_mask), "--workspace",
                                    str(workspace), "--json", "--device", "cpu"])
    assert new.exit_code == 0, new.output
    got = {n["node"]: n["snr_distance"] for n in json.loads(new.output)["nodes"]}
    want = {n["node"]: n["snr_distance"] for n in by_id["nodes"]}
    assert got == pytest.approx(want, abs=1e-4)
    bad_mask = tmp_path / "bad_mask.png"
    bad_mask.write_bytes(b"not a png")
    bad = CliRunner().invoke(main, ["explain", a, str(new_img), "--mask", str(bad_mask), "--workspace",
                                    str(workspace), "--device", "cpu"])
    assert bad.exit_code == 1 and "bad_mask.png" in bad.output and "Traceback" not in bad.output
    two = CliRunner().invoke(main, ["explain", a, str(new_img), "--mask", str(new_mask), "--mask", str(new_mask),
                                    "--workspace", str(workspace)])
    assert two.exit_code == 2 and "one --mask per new image" in two.output


def test_explain_out_refuses_to_write_into_the_dataset(workspace):
    data = workspace.parent / "data"
    a = _ids(workspace)[0]
    before = sorted(p.name for p in data.rglob("*"))
    result = CliRunner().invoke(main, ["explain", a, a, "--workspace", str(workspace), "--out",
                                       str(data / "images" / "tree.png"), "--device", "cpu"])
    assert result.exit_code == 2 and "inside the dataset folder" in result.output
    assert sorted(p.name for p in data.rglob("*")) == before


def test_new_images_are_segmented_with_the_workspace_model(tmp_path):
    """A workspace segmented by a model (a tiny random SegFormer): a new image needs no mask."""
    import shutil

    from biasaudit.core.errors import ValidationError
    from biasaudit.core.schema import get_schema
    from biasaudit.data.synth import SynthFacesConfig, write_synthfaces
    from biasaudit.heml.workspace import explain_workspace, fit_heml_workspace
    from biasaudit.segment import segment_dataset
    from biasaudit.segment.testing import build_tiny_segformer

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        model = build_tiny_segformer(tmp_path / "segformer", dict(get_schema("celebamask-hq").classes))
        data = write_synthfaces(tmp_path / "data", SynthFacesConfig(n=12, seed=4, size=64))
        shutil.rmtree(data / "masks")
        ws = tmp_path / "ws"
        segment_dataset(data, ws, segmenter=f"segformer:{model}", schema="celebamask-hq", device="cpu")
        everything = {"schema": "celebamask-hq", "defaults": {"resolution": 16, "epochs": 1, "trunk": "small-cnn:4"},
                      "tree": {"name": "image", "children": [
                          {"name": "a", "parts": [p for p in get_schema("celebamask-hq").part_names[:9]]},
                          {"name": "b", "parts": [p for p in get_schema("celebamask-hq").part_names[9:]]}]}}
        fit_heml_workspace(ws, supervision="self", recipe=everything, image_size=64, device="cpu")
        new = tmp_path / "elsewhere.png"
        shutil.copy(data / "images" / "00001.png", new)
        by_id = explain_workspace(ws, "00000.png", "00001.png", device="cpu")
        by_new = explain_workspace(ws, "00000.png", str(new), device="cpu")
        assert by_new.to_dict()["nodes"] == by_id.to_dict()["nodes"]
        with pytest.raises(ValidationError, match="drop --mask"):
            explain_workspace(ws, "00000.png", str(new), mask_b=new, device="cpu")
    finally:
        torch.set_num_threads(threads)
