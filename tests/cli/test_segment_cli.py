from __future__ import annotations

import shutil

import pandas as pd
import pytest
from click.testing import CliRunner

from biasaudit.cli import main


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    from biasaudit.data.synth.faces import SynthFacesConfig, write_synthfaces

    out = tmp_path_factory.mktemp("cli-synth") / "faces"
    write_synthfaces(out, SynthFacesConfig(n=12, seed=5, size=64))
    return out


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    from biasaudit.core.schema import get_schema
    from biasaudit.segment.testing import build_tiny_segformer

    path = tmp_path_factory.mktemp("cli-model") / "tiny"
    return build_tiny_segformer(path, dict(get_schema("celebamask-hq").classes))


def test_segment_with_masks_prints_summary_and_writes_workspace(synth, tmp_path):
    ws = tmp_path / "ws"
    res = CliRunner().invoke(main, ["-q", "segment", str(synth), "--out", str(ws)])
    assert res.exit_code == 0, res.output
    assert "12 ok, 0 failed" in res.output and "hair" in res.output
    seg = pd.read_parquet(ws / "segments.parquet")
    assert seg["image"].nunique() == 12 and len(seg) == 12 * 18
    again = CliRunner().invoke(main, ["-q", "segment", str(synth), "--out", str(ws)])
    assert "12 unchanged" in again.output


def test_segment_with_a_tiny_segformer_on_cpu(synth, tiny_model, tmp_path):
    ws = tmp_path / "ws"
    args = ["-q", "segment", str(synth), "--out", str(ws), "--segmenter", f"segformer:{tiny_model}",
            "--device", "cpu", "--batch-size", "4"]
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 0, res.output
    assert "12 segmented" in res.output
    assert len(list((ws / "masks").glob("*/*.png"))) == 12
    shutil.rmtree(ws / "segments.parquet")
    res = CliRunner().invoke(main, args)
    assert "12 from the mask cache" in res.output


def test_missing_model_directory_is_a_clean_error(synth, tmp_path):
    res = CliRunner().invoke(main, ["segment", str(synth), "--out", str(tmp_path / "ws"),
                                    "--segmenter", f"segformer:{tmp_path / 'no' / 'such'}"])
    assert res.exit_code == 1
    assert "does not exist" in res.output and "Traceback" not in res.output
    assert "Repo id" not in res.output


def test_unknown_segmenter_is_a_clean_error(synth, tmp_path):
    res = CliRunner().invoke(main, ["segment", str(synth), "--out", str(tmp_path / "ws"), "--segmenter", "magic"])
    assert res.exit_code == 1 and "Unknown segmenter 'magic'" in res.output
