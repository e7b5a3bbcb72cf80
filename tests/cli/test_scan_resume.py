"""A scan stopped mid-way continues when re-run, and ends with the same findings.

The scan is stopped at a known point, deterministically: ``run_scan``'s ``on_stage`` hook
raises once a stage is done, which leaves the workspace exactly as a kill at that moment
would (every workspace file is written atomically, nothing is written on the way out).
The re-run must trust what the first run finished and redo the rest; *all* of its
findings must equal those of an uninterrupted scan.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from biasaudit.audit.scan import run_scan
from biasaudit.cli import main
from biasaudit.data.synth import SynthFacesConfig, write_synthfaces

ARGS = ["--label", "Smiling", "--causal", "mouth,u_lip,l_lip", "--seed", "3", "--device", "cpu"]


class _Stopped(Exception):
    pass


def _stop_after(stage: str):
    def hook(name: str) -> None:
        if name == stage:
            raise _Stopped(stage)
    return hook


def _findings(ws: Path) -> tuple[list, list]:
    doc = json.loads((ws / "findings.json").read_text("utf-8"))
    return doc["findings"], doc["expected_evidence"]


def _resume_matches_fresh(tmp_path: Path, *, stage: str, heml: bool, epochs_scale: float = 1.0) -> None:
    data = write_synthfaces(tmp_path / "faces", SynthFacesConfig(n=120, seed=3, plants=("Smiling:Blond_Hair=0.9",)))
    ws = tmp_path / "ws"
    kwargs = dict(labels=["Smiling"], causal=["mouth", "u_lip", "l_lip"], seed=3, device="cpu", heml=heml,
                  epochs_scale=epochs_scale)
    with pytest.raises(_Stopped):
        run_scan(data, ws, on_stage=_stop_after(stage), **kwargs)
    assert (ws / "segments.parquet").is_dir() and not (ws / "findings.json").exists()
    import pandas as pd

    segments = pd.read_parquet(ws / "segments.parquet")
    models = sorted((ws / "models").rglob("*.safetensors")) if heml else []
    model_mtimes = [p.stat().st_mtime_ns for p in models]

    flags = [*ARGS, "--epochs-scale", str(epochs_scale)] + ([] if heml else ["--no-heml"])
    runner = CliRunner()
    again = runner.invoke(main, ["-q", "scan", str(data), "--out", str(ws), *flags])
    assert again.exit_code == 0, again.output
    # what the first run finished was kept (HEML models not even rewritten)
    pd.testing.assert_frame_equal(pd.read_parquet(ws / "segments.parquet"), segments)
    assert [p.stat().st_mtime_ns for p in models] == model_mtimes
    fresh = tmp_path / "fresh"
    clean = runner.invoke(main, ["-q", "scan", str(data), "--out", str(fresh), *flags])
    assert clean.exit_code == 0, clean.output
    resumed, expected = _findings(ws)
    assert resumed and (resumed, expected) == _findings(fresh)  # every finding, every field
    assert resumed[0]["segment"] == "hair" and "blond" in resumed[0]["attribute"]


@pytest.mark.parametrize("stage", ["segment", "attributes"])
def test_stopped_scan_resumes_and_matches_an_uninterrupted_one(tmp_path, stage):
    _resume_matches_fresh(tmp_path, stage=stage, heml=False)


@pytest.mark.slow
def test_scan_stopped_after_heml_reuses_the_models_and_matches(tmp_path):
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # one thread: HEML training is bitwise repeatable
    try:
        _resume_matches_fresh(tmp_path, stage="heml", heml=True, epochs_scale=0.3)
    finally:
        torch.set_num_threads(threads)
