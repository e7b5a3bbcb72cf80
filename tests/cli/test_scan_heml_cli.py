"""`biasaudit scan` with HEML (concurrent levels) then `biasaudit explain` on its workspace."""

from __future__ import annotations

import json

from click.testing import CliRunner

from biasaudit.cli import main
from biasaudit.data.synth import SynthFacesConfig, write_synthfaces


def test_scan_with_concurrent_heml_writes_models_embeddings_and_explains(tmp_path):
    data = write_synthfaces(tmp_path / "faces", SynthFacesConfig(n=80, seed=5, plants=("Smiling:Blond_Hair=0.9",)))
    ws = tmp_path / "ws"
    runner = CliRunner()
    result = runner.invoke(main, ["-q", "scan", str(data), "--out", str(ws), "--label", "Smiling",
                                  "--causal", "mouth,u_lip,l_lip", "--device", "cpu", "--concurrent",
                                  "--epochs-scale", "0.2"])
    assert result.exit_code == 0, result.output
    tree = json.loads((ws / "models" / "tree.json").read_text())
    assert tree["schema"]["name"] == "celebamask-hq"
    metrics = sorted(p.parent.name for p in (ws / "models").glob("*/metrics.json"))
    assert "hair" in metrics and "mouth" in metrics and "image" in metrics
    for name in metrics:
        m = json.loads((ws / "models" / name / "metrics.json").read_text())
        assert {"precision_at_1", "map_at_r", "n_train", "n_test"} <= set(m)
    assert (ws / "embeddings" / "index.parquet").is_file() and (ws / "embeddings" / "hair.npy").is_file()
    config = json.loads((ws / "config.json").read_text())
    assert config["scan"]["concurrent"] is True

    # the findings themselves: the planted blond bias leads, found among HEML's findings too
    doc = json.loads((ws / "findings.json").read_text())
    top = doc["findings"][0]
    assert (top["kind"], top["segment"], top["label"]) == ("association", "hair", "Smiling")
    assert "blond" in top["attribute"] and top["severity"] >= 0.5
    heml_kinds = {f["evidence"]["attribute_kind"] for f in doc["findings"] + doc["expected_evidence"]}
    assert heml_kinds & {"embedding", "cluster_name"}, heml_kinds  # the embeddings were audited
    for f in doc["findings"] + doc["expected_evidence"]:
        assert f["parts"] and set(f["parts"]) <= set(tree["schema"]["classes"].values())
        if f["kind"] == "shortcut":
            assert f["evidence"]["test"].startswith("label permutation")
    # an internal node's parts are the schema parts under it, and a node covering a causal
    # part is expected evidence, never a finding
    smile = {"mouth", "u_lip", "l_lip"}
    assert not any(set(f["parts"]) & smile for f in doc["findings"])
    clusters = doc["settings"]["clusters"]
    assert clusters and not any("#" in c["name"] or "group" in c["name"] for c in clusters)

    explained = runner.invoke(main, ["explain", "00000.png", "00001.png", "--workspace", str(ws),
                                     "--json", "--device", "cpu"])
    assert explained.exit_code == 0, explained.output
    nodes = {n["node"]: n for n in json.loads(explained.output)["nodes"]}
    assert "hair" in nodes and 0.0 <= nodes["hair"]["snr_distance"]
