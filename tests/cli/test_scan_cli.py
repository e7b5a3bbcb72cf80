"""``biasaudit scan`` through click's CliRunner: clean errors, the printed table, the
findings.json contract (DESIGN.md §6), determinism, resume, and a read-only input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from biasaudit.cli import main
from biasaudit.data.testing import tree_hashes

KINDS = {"under_representation", "association", "shortcut"}
SCAN = ["--label", "Smiling", "--causal", "mouth,u_lip,l_lip", "--no-heml", "--seed", "4"]


@pytest.fixture(scope="module")
def runner() -> CliRunner:
    return CliRunner()


@pytest.fixture(scope="module")
def faces(tmp_path_factory, runner) -> Path:
    out = tmp_path_factory.mktemp("scan-cli") / "faces"
    result = runner.invoke(main, ["-q", "synth", "faces", "--n", "200", "--seed", "4", "--out", str(out),
                                  "--plant", "Smiling:Blond_Hair=0.9"])
    assert result.exit_code == 0, result.output
    return out


@pytest.fixture(scope="module")
def first_scan(faces, runner, tmp_path_factory):
    before = tree_hashes(faces)
    ws = tmp_path_factory.mktemp("ws") / "ws"
    result = runner.invoke(main, ["-q", "scan", str(faces), "--out", str(ws), *SCAN])
    return result, ws, before


def test_scan_prints_the_ranked_table(first_scan):
    result, _, _ = first_scan
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    header = next(i for i, line in enumerate(lines) if line.split()[:3] == ["rank", "sev", "kind"])
    first = lines[header + 1].split()
    # rank 1, a severity, the flag mark, then the planted finding
    assert first[0] == "1" and float(first[1]) >= 0.5 and first[2] == "!"
    assert first[3:5] == ["association", "hair"] and "'blond'" in lines[header + 1]
    assert "200 images (0 with errors)" in result.output
    assert "findings.json" in result.output


def test_findings_json_follows_the_design_schema(first_scan):
    _, ws, _ = first_scan
    doc = json.loads((ws / "findings.json").read_text("utf-8"))
    assert isinstance(doc["biasaudit_version"], str) and doc["biasaudit_version"]
    assert doc["dataset"] == {"n_images": 200, "n_errors": 0}
    assert isinstance(doc["findings"], list) and doc["findings"]
    for i, record in enumerate(doc["findings"], start=1):
        assert set(record) == {"rank", "kind", "segment", "parts", "attribute", "label", "severity",
                               "summary", "evidence"}
        # a leaf node covers exactly its own schema part (no HEML here: every node is a leaf)
        assert record["parts"] == [record["segment"]]
        assert record["rank"] == i
        assert record["kind"] in KINDS
        assert isinstance(record["segment"], str) and record["segment"]
        assert isinstance(record["attribute"], str) and record["attribute"]
        assert record["label"] is None or isinstance(record["label"], str)
        assert isinstance(record["severity"], float) and 0.0 <= record["severity"] <= 1.0
        assert isinstance(record["summary"], str) and record["summary"].endswith(".")
        assert isinstance(record["evidence"], dict)
        assert 0.0 <= record["evidence"]["q_value"] < 0.01  # only discoveries are listed
    severities = [r["severity"] for r in doc["findings"]]
    assert severities == sorted(severities, reverse=True)
    top = doc["findings"][0]
    assert (top["kind"], top["segment"], top["label"]) == ("association", "hair", "Smiling")
    assert "blond" in top["attribute"]
    assert {"cramers_v", "q_value", "cells"} <= set(top["evidence"])
    assert isinstance(top["evidence"]["cells"], list) and top["evidence"]["cells"]
    # declared causal parts are reported apart, each with the reason
    for record in doc["expected_evidence"]:
        assert record["routed_because"] == record["expected_reason"]
        on_causal = set(record["parts"]) & {"mouth", "u_lip", "l_lip"}
        # either on a causal part, or the size/shape of a part the lips border (pixel contact)
        assert on_causal or (record["evidence"]["attribute_kind"] in ("size", "shape")
                             and "borders it" in record["routed_because"]), record
    assert doc["tested"] is True and "two groups" in doc["ranking"]


def test_same_seed_gives_identical_findings_and_rerun_resumes(first_scan, faces, runner, tmp_path):
    result, ws, before = first_scan
    first = (ws / "findings.json").read_bytes()
    # a second workspace from nothing: byte-identical findings (no timing or path fields)
    other = tmp_path / "ws2"
    again = runner.invoke(main, ["-q", "scan", str(faces), "--out", str(other), *SCAN])
    assert again.exit_code == 0, again.output
    assert (other / "findings.json").read_bytes() == first
    # the same command in the same workspace continues there and agrees
    rerun = runner.invoke(main, ["-q", "scan", str(faces), "--out", str(ws), *SCAN])
    assert rerun.exit_code == 0, rerun.output
    assert (ws / "findings.json").read_bytes() == first
    # the dataset folder was only read
    assert tree_hashes(faces) == before


def test_unknown_label_is_a_clean_error_naming_the_columns(faces, runner, tmp_path):
    result = runner.invoke(main, ["scan", str(faces), "--out", str(tmp_path / "ws"), "--label", "Smilling",
                                  "--no-heml"])
    assert result.exit_code == 1
    assert "Traceback" not in result.output and isinstance(result.exception, SystemExit)
    assert "--label Smilling" in result.output
    for column in ("Smiling", "Blond_Hair", "Eyeglasses", "Wearing_Hat"):
        assert column in result.output


def test_unknown_causal_part_is_a_clean_error_naming_the_parts(faces, runner, tmp_path):
    result = runner.invoke(main, ["scan", str(faces), "--out", str(tmp_path / "ws"), "--label", "Smiling",
                                  "--causal", "mouth,lips", "--no-heml"])
    assert result.exit_code == 1
    assert "Traceback" not in result.output and isinstance(result.exception, SystemExit)
    assert "--causal lips" in result.output
    for part in ("mouth", "u_lip", "l_lip", "hair"):
        assert part in result.output


# ---- issue 8 ------------------------------------------------------------------------------
@pytest.fixture()
def small_faces(runner, tmp_path) -> Path:
    out = tmp_path / "small"
    result = runner.invoke(main, ["-q", "synth", "faces", "--n", "40", "--seed", "2", "--out", str(out)])
    assert result.exit_code == 0, result.output
    return out


def test_a_scan_that_tested_nothing_says_why_and_exits_1(small_faces, runner, tmp_path):
    import pandas as pd

    labels = pd.read_csv(small_faces / "labels.csv")
    labels["Smiling"] = 1  # one value: there is nothing to compare
    labels.to_csv(small_faces / "labels.csv", index=False)
    ws = tmp_path / "ws"
    result = runner.invoke(main, ["scan", str(small_faces), "--out", str(ws), *SCAN])
    assert result.exit_code == 1, result.output
    assert "Nothing was tested against the labels" in result.output
    assert "--label Smiling has only '1'" in result.output
    assert "No finding passed" not in result.output
    doc = json.loads((ws / "findings.json").read_text("utf-8"))
    assert doc["tested"] is False and "only '1'" in doc["not_tested_because"]


def test_options_are_checked_before_anything_is_segmented(faces, runner, tmp_path):
    for bad in (["--label", "Smilling"], ["--label", "Smiling", "--causal", "lips"],
                ["--label", "Smiling", "--sensitive", "Gender"]):
        ws = tmp_path / "-".join(bad).strip("-")
        result = runner.invoke(main, ["scan", str(faces), "--out", str(ws), "--no-heml", *bad])
        assert result.exit_code == 1 and bad[-1] in result.output, result.output
        assert not (ws / "segments.parquet").exists() and not (ws / "manifest.parquet").exists()


def test_failed_images_are_listed_with_their_reasons(small_faces, runner, tmp_path):
    (small_faces / "images" / "00003.png").write_bytes(b"not a png at all")
    result = runner.invoke(main, ["-q", "scan", str(small_faces), "--out", str(tmp_path / "ws"), *SCAN])
    assert result.exit_code == 0, result.output
    assert "1 image(s) could not be used" in result.output
    line = next(x for x in result.output.splitlines() if x.strip().startswith("00003.png:"))
    assert "not readable" in line


def test_reference_file_judges_shares_and_names_unseen_values(faces, runner, tmp_path):
    ref = tmp_path / "shares.csv"
    ref.write_text("attribute,value,share\nhair colour,green,0.1\n", "utf-8")
    ws = tmp_path / "ws"
    result = runner.invoke(main, ["-q", "scan", str(faces), "--out", str(ws), *SCAN, "--reference", str(ref)])
    assert result.exit_code == 0, result.output
    doc = json.loads((ws / "findings.json").read_text("utf-8"))
    green = [f for f in doc["findings"] if f["attribute"] == "hair colour: green"]
    assert green and green[0]["evidence"]["basis"] == "reference" and green[0]["evidence"]["observed"] == 0
    bad = tmp_path / "bad.csv"
    bad.write_text("attribute,value,share\nhair colour,green,1.5\n", "utf-8")
    result = runner.invoke(main, ["scan", str(faces), "--out", str(tmp_path / "ws2"), *SCAN, "--reference", str(bad)])
    assert result.exit_code == 1 and "outside (0, 1]" in result.output and "line 2" in result.output


def test_help_documents_the_ranking(runner):
    result = runner.invoke(main, ["scan", "--help"])
    assert "How findings are ranked" in result.output and "even share" in result.output
    assert "--reference" in result.output


def test_the_cli_and_the_library_train_the_scan_for_the_same_epochs():
    # the CLI states its default as a number (importing the audit would slow every --help);
    # a scan from the CLI, from biasaudit.scan and from run_scan must train alike
    import inspect

    from biasaudit.audit.scan import SCAN_EPOCHS_SCALE, ScanSettings, run_scan
    from biasaudit.cli.scan import scan

    option = next(p for p in scan.params if p.name == "epochs_scale")
    assert option.default == SCAN_EPOCHS_SCALE == ScanSettings().epochs_scale
    assert inspect.signature(run_scan).parameters["epochs_scale"].default is None
    assert f"{SCAN_EPOCHS_SCALE:g} trains a node" in option.help
