"""``biasaudit synth faces`` through click's CliRunner."""

from __future__ import annotations

import pandas as pd
import pytest
from click.testing import CliRunner

from biasaudit.cli import main


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


def test_synth_faces_writes_a_dataset_and_reports_the_plant(runner, tmp_path):
    out = tmp_path / "faces"
    result = runner.invoke(main, ["-q", "synth", "faces", "--n", "20", "--seed", "1", "--out", str(out),
                                  "--plant", "Smiling:Blond_Hair=0.9", "--rare", "Gray_Hair=0.05"])
    assert result.exit_code == 0, result.output
    labels = pd.read_csv(out / "labels.csv")
    assert len(labels) == 20 and len(list((out / "masks").iterdir())) == 20
    on = labels.loc[labels.Smiling == 1, "Blond_Hair"].mean()
    assert "Wrote 20 portraits (128 px)" in result.output
    assert f"P(Blond_Hair=1 | Smiling=1) = {on:.3f}" in result.output


@pytest.mark.parametrize(
    "plant, fragment",
    [
        ("Smiling-Blond_Hair=0.9", "LABEL:ATTRIBUTE=P"),
        ("Smiling:Blond=0.9", "unknown attribute 'Blond'"),
        ("Smiling:Blond_Hair=1.5", "strictly between 0 and 1"),
    ],
)
def test_bad_plant_is_a_clean_usage_error(runner, tmp_path, plant, fragment):
    result = runner.invoke(main, ["synth", "faces", "--n", "5", "--out", str(tmp_path / "x"), "--plant", plant])
    assert result.exit_code == 2
    assert fragment in result.output and "Traceback" not in result.output
    assert isinstance(result.exception, SystemExit)
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["--n", "0"], "--n must be an integer >= 1"),
        (["--n", "3", "--plant", "Smiling:Male=0.9", "--plant", "Male:Smiling=0.9"], "form a cycle"),
        (["--n", "3", "--balanced"], "no --plant was given"),
        (["--n", "3", "--size", "16"], "--size must be an integer in [64, 2048]"),
    ],
)
def test_bad_designs_exit_1_with_the_message(runner, tmp_path, args, fragment):
    result = runner.invoke(main, ["synth", "faces", "--out", str(tmp_path / "x"), *args])
    assert result.exit_code == 1
    assert fragment in result.output and "Traceback" not in result.output


def test_non_empty_out_needs_overwrite(runner, tmp_path):
    out = tmp_path / "faces"
    args = ["-q", "synth", "faces", "--n", "3", "--out", str(out)]
    assert runner.invoke(main, args).exit_code == 0
    again = runner.invoke(main, args)
    assert again.exit_code == 1 and "is not empty" in again.output and "--overwrite" in again.output
    assert runner.invoke(main, [*args, "--overwrite"]).exit_code == 0


def test_help_lists_every_attribute(runner):
    from biasaudit.data.synth import ATTRIBUTES

    result = runner.invoke(main, ["synth", "faces", "--help"])
    assert result.exit_code == 0
    assert all(name in result.output for name in ATTRIBUTES)


@pytest.mark.slow
def test_plant_at_n2000_end_to_end(runner, tmp_path):
    import numpy as np
    from PIL import Image

    out = tmp_path / "faces"
    result = runner.invoke(main, ["-q", "synth", "faces", "--n", "2000", "--seed", "3", "--out", str(out),
                                  "--plant", "Eyeglasses:Wearing_Hat=0.9", "--workers", "2"])
    assert result.exit_code == 0, result.output
    labels = pd.read_csv(out / "labels.csv")
    glasses = np.array([(np.asarray(Image.open(out / "masks" / name)) == 3).any() for name in labels.image])
    hat = np.array([(np.asarray(Image.open(out / "masks" / name)) == 14).any() for name in labels.image])
    assert (glasses == labels.Eyeglasses.astype(bool)).all() and (hat == labels.Wearing_Hat.astype(bool)).all()
    assert abs(hat[glasses].mean() - 0.9) <= 0.03 and abs(hat[~glasses].mean() - 0.1) <= 0.03
