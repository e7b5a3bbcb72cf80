"""``biasaudit evaluate`` through click's CliRunner on a planted bias: the ERM model learns
the shortcut (low worst-group accuracy), the outputs follow the contract, every figure in
metrics.json is recomputed from predictions.parquet with fairlearn directly, and bad input
gives one clear line."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

from biasaudit.cli import main
from biasaudit.data.testing import tree_hashes

FAST = ["--seeds", "1", "--epochs", "10", "--size", "32"]


@pytest.fixture(scope="module")
def runner() -> CliRunner:
    return CliRunner()


def _synth(runner, out: Path, n: int, seed: int, *extra: str) -> Path:
    result = runner.invoke(main, ["-q", "synth", "faces", "--n", str(n), "--seed", str(seed), "--size", "64",
                                  "--out", str(out), "--plant", "Smiling:Blond_Hair=0.95", *extra])
    assert result.exit_code == 0, result.output
    return out


@pytest.fixture(scope="module")
def data(tmp_path_factory, runner) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("evaluate-cli")
    return _synth(runner, root / "train", 160, 5), _synth(runner, root / "test", 80, 6, "--balanced")


@pytest.fixture(scope="module")
def evaluated(data, runner, tmp_path_factory):
    train, test = data
    before = tree_hashes(train), tree_hashes(test)
    out = tmp_path_factory.mktemp("eval") / "eval"
    result = runner.invoke(main, ["-q", "evaluate", "--train", f"original={train}", "--test", str(test),
                                  "--label", "Smiling", "--sensitive", "Blond_Hair", "--out", str(out),
                                  "--baselines", "erm,oversample", *FAST])
    return result, out, before


def test_planted_bias_shows_as_low_worst_group_accuracy(evaluated):
    result, out, _ = evaluated
    assert result.exit_code == 0, result.output
    assert "worst-group acc" in result.output and "oversample" in result.output
    doc = json.loads((out / "metrics.json").read_text("utf-8"))
    erm = next(r for r in doc["summary"] if r["method"] == "erm")
    # 95 % of smiling faces are blond: ERM predicts by hair colour, so a minority cell fails
    assert erm["worst_group_accuracy_mean"] <= 0.4
    assert erm["equalized_odds_difference_mean"] >= 0.3


def test_outputs_follow_the_contract(evaluated, data):
    _, out, before = evaluated
    doc = json.loads((out / "metrics.json").read_text("utf-8"))
    assert [(r["train"], r["method"], r["seed"]) for r in doc["runs"]] == [("original", "erm", 0),
                                                                            ("original", "oversample", 0)]
    for key in ("label", "sensitive", "test", "train", "epochs", "size", "backbone", "seeds"):
        assert key in doc["settings"]
    assert doc["settings"]["train"] == {"original": str(data[0])}
    assert isinstance(doc["summary"], list) and doc["summary"][0]["n_seeds"] == 1
    for run in ("original-erm-s0", "original-oversample-s0"):
        folder = out / "runs" / run
        assert {p.name for p in folder.iterdir()} == {"model.safetensors", "config.json", "predictions.parquet"}
        pred = pd.read_parquet(folder / "predictions.parquet")
        assert list(pred.columns) == ["image", "y_true", "y_pred", "score", "sensitive"]
        assert len(pred) == 80 and pred["image"].is_unique
    # the inputs are never written to
    assert (tree_hashes(data[0]), tree_hashes(data[1])) == before


def test_every_figure_recomputes_from_predictions_with_fairlearn(evaluated):
    from fairlearn.metrics import (
        MetricFrame,
        count,
        demographic_parity_difference,
        equalized_odds_difference,
        false_positive_rate,
        selection_rate,
        true_positive_rate,
    )
    from sklearn.metrics import accuracy_score

    _, out, _ = evaluated
    doc = json.loads((out / "metrics.json").read_text("utf-8"))
    metrics = {"accuracy": accuracy_score, "selection_rate": selection_rate, "tpr": true_positive_rate,
               "fpr": false_positive_rate, "count": count}
    for run in doc["runs"]:
        p = pd.read_parquet(out / run["run"] / "predictions.parquet")
        y, yhat, s = p["y_true"], p["y_pred"], p["sensitive"]
        assert run["accuracy"] == pytest.approx(accuracy_score(y, yhat))
        assert run["demographic_parity_difference"] == pytest.approx(
            demographic_parity_difference(y, yhat, sensitive_features=s))
        assert run["equalized_odds_difference"] == pytest.approx(
            equalized_odds_difference(y, yhat, sensitive_features=s))
        by_s = MetricFrame(metrics=metrics, y_true=y, y_pred=yhat, sensitive_features=s).by_group
        cells = MetricFrame(metrics=metrics, y_true=y, y_pred=yhat,
                            sensitive_features=pd.DataFrame({"label": y.astype(str), "s": s})).by_group
        assert run["worst_group_accuracy"] == pytest.approx(cells["accuracy"].min())
        expected = {str(k): row for k, row in by_s.iterrows()}
        expected.update({f"{lab}|{val}": row for (lab, val), row in cells.iterrows()})
        assert set(run["by_group"]) == set(expected)
        for key, row in expected.items():
            got = run["by_group"][key]
            for metric in metrics:
                if got[metric] is None:  # a rate the cell's single label leaves undefined
                    assert "|" in key and metric in ("tpr", "fpr")
                    continue
                assert got[metric] == pytest.approx(row[metric]), (run["run"], key, metric)


def test_rerun_reuses_finished_runs(evaluated, data, runner):
    _, out, _ = evaluated
    train, test = data
    stamp = (out / "runs" / "original-erm-s0" / "model.safetensors").stat().st_mtime_ns
    result = runner.invoke(main, ["-q", "evaluate", "--train", f"original={train}", "--test", str(test),
                                  "--label", "Smiling", "--sensitive", "Blond_Hair", "--out", str(out), *FAST])
    assert result.exit_code == 0, result.output
    assert (out / "runs" / "original-erm-s0" / "model.safetensors").stat().st_mtime_ns == stamp


def _error(runner, args) -> str:
    result = runner.invoke(main, ["-q", "evaluate", *args])
    assert result.exit_code != 0
    assert result.exc_info is None or isinstance(result.exc_info[1], SystemExit), result.exc_info
    lines = [line for line in result.output.splitlines() if line.startswith("Error")]
    assert len(lines) == 1, result.output
    return lines[0]


def test_training_set_without_the_label(data, runner, tmp_path):
    train, test = data
    line = _error(runner, ["--train", f"original={train}", "--test", str(test), "--label", "Smiling",
                           "--sensitive", "Blond_Hair", "--out", str(tmp_path / "e"), *FAST,
                           "--train", f"other={_without_column(train, tmp_path / 'nolabel', 'Smiling')}"])
    assert "--train other=" in line and "no label column 'Smiling'" in line


def test_empty_group_in_the_test_set_is_named(data, runner, tmp_path):
    train, test = data
    # a sensitive column equal to the label: the cells 0|1 and 1|0 hold no image
    twin = _without_column(test, tmp_path / "twin", None)
    table = pd.read_csv(twin / "labels.csv")
    table["Twin"] = table["Smiling"]
    table.to_csv(twin / "labels.csv", index=False)
    line = _error(runner, ["--train", f"original={train}", "--test", str(twin), "--label", "Smiling",
                           "--sensitive", "Twin", "--out", str(tmp_path / "e"), *FAST])
    assert "(label|sensitive) group(s) 0|1, 1|0" in line and "worst-group accuracy is undefined" in line


def test_unknown_part_for_sensitive(data, runner, tmp_path):
    train, test = data
    line = _error(runner, ["--train", f"original={train}", "--test", str(test), "--label", "Smiling",
                           "--sensitive", "part:wings", "--out", str(tmp_path / "e"), *FAST])
    assert "'wings' is not a part" in line and "hair" in line


def test_bad_train_option(data, runner, tmp_path):
    _, test = data
    line = _error(runner, ["--train", "justafolder", "--test", str(test), "--label", "Smiling",
                           "--sensitive", "Blond_Hair", "--out", str(tmp_path / "e")])
    assert "NAME=DIR" in line


def _without_column(src: Path, dst: Path, column: str | None) -> Path:
    import shutil

    shutil.copytree(src, dst)
    if column is not None:
        table = pd.read_csv(dst / "labels.csv").drop(columns=[column])
        table.to_csv(dst / "labels.csv", index=False)
    return dst
