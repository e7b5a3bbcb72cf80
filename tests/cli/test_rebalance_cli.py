"""``biasaudit rebalance`` end to end on a small SynthFaces set with a planted bias: the
association is repaired, origin is not a new shortcut, inputs stay untouched, errors are
one clean line, and a killed run resumes to the same NEW."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from PIL import Image

from biasaudit.cli import main
from biasaudit.data.testing import tree_hashes


@pytest.fixture(scope="module")
def runner() -> CliRunner:
    return CliRunner()


@pytest.fixture(scope="module")
def scanned(tmp_path_factory, runner) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("rebalance-cli")
    data, ws = root / "faces", root / "ws"
    r = runner.invoke(main, ["-q", "synth", "faces", "--n", "200", "--seed", "2", "--size", "64", "--out", str(data),
                             "--plant", "Smiling:Blond_Hair=0.9"])
    assert r.exit_code == 0, r.output
    r = runner.invoke(main, ["-q", "scan", str(data), "--out", str(ws), "--label", "Smiling",
                             "--causal", "mouth,u_lip,l_lip", "--no-heml"])
    assert r.exit_code == 0, r.output
    return data, ws


@pytest.fixture(scope="module")
def rebalanced(scanned, runner, tmp_path_factory):
    data, ws = scanned
    before = {**tree_hashes(data), **tree_hashes(ws)}
    new = tmp_path_factory.mktemp("new") / "new"
    # --no-report: the WS/report.html refresh is the one write to WS, tested in tests/cli/test_report_cli.py
    r = runner.invoke(main, ["-q", "rebalance", str(ws), "--target", "hair", "--out", str(new), "--no-report"])
    return r, new, before


def test_rebalance_repairs_the_planted_association(rebalanced, scanned):
    r, new, _ = rebalanced
    assert r.exit_code == 0, r.output
    doc = json.loads((new / "rebalance.json").read_text())
    assert doc["settings"]["attribute"] == "hair colour" and doc["settings"]["label"] == "Smiling"
    assert doc["before"]["cramers_v"] > 0.6
    assert doc["after"]["cramers_v"] < 0.12, doc["after"]
    assert doc["generated"] > 50 and doc["edited"] > 50
    assert doc["flagged_after"] == []  # the closing check is a fresh `scan` of NEW (no HEML)
    # origin is independent of the label and of the attribute (chi-square not significant)
    assert doc["after"]["origin_vs_label"]["p_value"] > 0.05
    assert doc["after"]["origin_vs_attribute"]["p_value"] > 0.05
    assert set(doc["rejected"]) >= {"area_out_of_range", "wrong_value", "embedding_mismatch", "recombine_failed"}
    assert "Cramér's V" in r.output and "origin" in r.output


def test_new_is_a_native_dataset_with_origin_and_provenance(rebalanced, scanned):
    _, new, _ = rebalanced
    data, _ = scanned
    labels = pd.read_csv(new / "labels.csv")
    original = pd.read_csv(data / "labels.csv")
    assert set(original.columns) < set(labels.columns)
    assert {"origin", "base", "donor", "method", "seed", "target", "attribute_value"} <= set(labels.columns)
    synth = labels[labels.origin == "synthetic"]
    assert len(synth) and synth.image.str.startswith("synthetic/").all()
    assert (synth.target == "hair").all() and (synth.method == "recombine").all()
    for image in synth.image.head(5):
        img = np.asarray(Image.open(new / "images" / image))
        mask = np.asarray(Image.open(new / "masks" / image))
        assert img.shape[:2] == mask.shape
    # a synthetic blond row says Blond_Hair=1 (the donor's), whatever its base had; Smiling is the base's
    blond = synth[synth.attribute_value == "blond"]
    assert (blond.Blond_Hair == 1).all()
    base_smiling = original.set_index("image").loc[synth.base, "Smiling"].to_numpy()
    assert np.array_equal(synth.Smiling.to_numpy(), base_smiling)
    # originals are hard links, files are readable by others, schema.json is carried over byte for byte
    assert (new / "labels.csv").stat().st_mode & 0o044 == 0o044
    real = labels[labels.origin == "real"].image.iloc[0]
    assert (new / "images" / real).stat().st_ino == (data / "images" / real).stat().st_ino
    assert (new / "schema.json").read_bytes() == (data / "schema.json").read_bytes()
    assert not list(new.parent.glob(".*rebalance-partial"))


def test_inputs_are_never_written(rebalanced, scanned):
    _, _, before = rebalanced
    data, ws = scanned
    assert {**tree_hashes(data), **tree_hashes(ws)} == before


@pytest.mark.parametrize("args, message", [
    (["--target", "tail"], "not a part of the workspace's schema"),
    (["--target", "hair", "--label", "Nope"], "--label Nope: no such column"),
    (["--target", "hat"], "flagged nothing on hat"),
    (["--target", "hair", "--method", "inpaint"], "needs --model"),
    (["--target", "neck", "--force", "--attribute", "presence"], "no donors for neck presence 'absent' (0 real"),
])
def test_user_errors_are_one_clean_line(scanned, runner, tmp_path, args, message):
    _, ws = scanned
    r = runner.invoke(main, ["-q", "rebalance", str(ws), "--out", str(tmp_path / "n"), *args])
    assert r.exit_code == 1 and message in r.output, r.output
    assert "Traceback" not in r.output and r.output.strip().count("\n") == 0


def test_workspace_and_out_errors(scanned, runner, tmp_path, rebalanced):
    data, ws = scanned
    _, new, _ = rebalanced
    r = runner.invoke(main, ["-q", "rebalance", str(data), "--target", "hair", "--out", str(tmp_path / "n")])
    assert r.exit_code == 1 and "is not a scan workspace" in r.output
    r = runner.invoke(main, ["-q", "rebalance", str(ws), "--target", "hair", "--out", str(data / "inside")])
    assert r.exit_code == 1 and "inside the dataset" in r.output
    r = runner.invoke(main, ["-q", "rebalance", str(ws), "--target", "hair", "--out", str(new)])
    assert r.exit_code == 1 and "already exists; pass --overwrite" in r.output
    model = tmp_path / "not-a-pipeline"
    model.mkdir()
    r = runner.invoke(main, ["-q", "rebalance", str(ws), "--target", "hair", "--out", str(tmp_path / "m"),
                             "--method", "inpaint", "--model", str(model)])
    assert r.exit_code == 1 and "not a diffusers pipeline folder" in r.output, r.output
