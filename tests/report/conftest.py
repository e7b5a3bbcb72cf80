"""A small scanned workspace (mask statistics only: seconds) shared by the report tests,
plus copies that tests may extend with stage outputs."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from report_fixtures import (
    make_dataset,
    write_eval,
    write_heml_outputs,
    write_probe,
    write_rebalance,
)

from biasaudit.audit.scan import run_scan

CAUSAL = ("mouth", "u_lip", "l_lip")


@pytest.fixture(scope="session")
def scanned(tmp_path_factory) -> tuple[Path, Path]:
    """(DATA, WS): 200 SynthFaces with blond hair planted on Smiling, scanned without HEML."""
    root = tmp_path_factory.mktemp("report-scan")
    data = make_dataset(root / "data", n=200)
    ws = root / "ws"
    run_scan(data, ws, labels=["Smiling"], causal=CAUSAL, heml=False, seed=0)
    return data, ws


@pytest.fixture
def workspace(scanned, tmp_path) -> Path:
    """A private copy of the scanned workspace (tests may add files to it)."""
    ws = tmp_path / "ws"
    shutil.copytree(scanned[1], ws)
    return ws


@pytest.fixture
def stage_outputs(scanned, tmp_path) -> dict[str, Path]:
    """rebalance / eval / probe outputs in the interfaces.md shapes."""
    data, _ = scanned
    return {"rebalance": write_rebalance(tmp_path / "new", data), "eval": write_eval(tmp_path / "eval"),
            "probe": write_probe(tmp_path / "probe.json")}


@pytest.fixture
def heml_workspace(workspace) -> Path:
    write_heml_outputs(workspace)
    return workspace
