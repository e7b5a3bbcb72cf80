"""``biasaudit probe`` through click's CliRunner: a TorchScript model with a planted
reliance on blond hair, a run folder written by evaluate's code, and clean errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from biasaudit.cli import main
from biasaudit.evaluate.testing import save_blond_detector

# torch.jit.script/save warn that TorchScript is deprecated; users still ship TorchScript files
pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit:DeprecationWarning")



@pytest.fixture(scope="module")
def runner() -> CliRunner:
    return CliRunner()


@pytest.fixture(scope="module")
def faces(tmp_path_factory, runner) -> Path:
    out = tmp_path_factory.mktemp("probe-cli") / "faces"
    result = runner.invoke(main, ["-q", "synth", "faces", "--n", "40", "--seed", "8", "--size", "64", "--out", str(out),
                                  "--plant", "Smiling:Blond_Hair=0.9", "--balanced"])
    assert result.exit_code == 0, result.output
    return out


@pytest.fixture(scope="module")
def scripted(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("ts") / "blond.pt"
    save_blond_detector(path)
    return path


def test_all_parts_ranks_the_part_the_model_relies_on_first(runner, faces, scripted, tmp_path):
    out = tmp_path / "probe.json"
    result = runner.invoke(main, ["-q", "probe", "--torchscript", str(scripted), "--input-size", "64",
                                  "--data", str(faces), "--all-parts", "--pairs", "12", "--out", str(out)])
    assert result.exit_code == 0, result.output
    doc = json.loads(out.read_text("utf-8"))
    ranked = [p["part"] for p in doc["parts"]]
    assert ranked[0] == "hair", [(p["part"], p["flip_rate"]) for p in doc["parts"]]
    assert {"skin", "cloth", "mouth"} <= set(ranked)
    rates = [p["flip_rate"] for p in doc["parts"] if p["flip_rate"] is not None]
    assert rates == sorted(rates, reverse=True)
    table = [line for line in result.output.splitlines() if not line.startswith("·")]
    assert table[0].split()[:3] == ["part", "pairs", "flip"] and table[1].startswith("hair")


def test_probe_a_run_folder_of_evaluate(runner, faces, tmp_path):
    from biasaudit.evaluate.models import build_classifier, save_classifier

    run = tmp_path / "runs" / "original-erm-s0"
    save_classifier(build_classifier("small-cnn", seed=0), run, {"size": 32})
    out = tmp_path / "p.json"
    result = runner.invoke(main, ["-q", "probe", "--model", str(run), "--data", str(faces), "--target", "hair",
                                  "--pairs", "10", "--out", str(out)])
    assert result.exit_code == 0, result.output
    part = json.loads(out.read_text("utf-8"))["parts"][0]
    assert part["part"] == "hair" and part["n_pairs"] == 10
    assert sum(v["n"] for v in part["by_value"]) == 10
    assert np.isfinite(part["mean_abs_delta"])


@pytest.mark.parametrize("args, expected", [
    (["--torchscript", "{notts}", "--target", "hair"], "is not a TorchScript model"),
    (["--torchscript", "{ts}", "--target", "wings"], "--target wings: not a part"),
    (["--model", "{tmp}", "--target", "hair"], "expected a run folder of `biasaudit evaluate`"),
    (["--target", "hair"], "exactly one of --model"),
])
def test_errors_are_one_clean_line(runner, faces, scripted, tmp_path, args, expected):
    notts = tmp_path / "state.pt"
    torch.save({"w": torch.zeros(1)}, str(notts))
    args = [a.format(notts=notts, ts=scripted, tmp=tmp_path) for a in args]
    result = runner.invoke(main, ["-q", "probe", "--data", str(faces), *args])
    assert result.exit_code == 1
    assert not isinstance(result.exception, Exception) or isinstance(result.exception, SystemExit)
    errors = [line for line in result.output.splitlines() if line.startswith("Error")]
    assert len(errors) == 1 and expected in errors[0], result.output
