"""The Python API: one function per stage on the package, keyword-only options, dataclass
results; the stage functions survive importing the sub-packages that share their names."""

from __future__ import annotations

import dataclasses
import inspect
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import biasaudit

ROOT = Path(__file__).resolve().parents[1]
STAGES = ("scan", "rebalance", "evaluate", "probe", "report")


def test_each_stage_is_a_function_with_keyword_only_options():
    for name in STAGES:
        fn = getattr(biasaudit, name)
        assert inspect.isfunction(fn), name
        params = list(inspect.signature(fn).parameters.values())
        positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
        assert len(positional) <= 1, (name, positional)  # the data/workspace at most; the rest keyword-only
        assert fn.__doc__


def test_stage_functions_survive_importing_same_named_subpackages_first():
    # a fresh interpreter: the first import of biasaudit.rebalance.recombine (etc.) must not
    # replace biasaudit.rebalance (the function) with the sub-package
    # (biasaudit.evaluate is left out only because importing it loads torch: slow; the guard
    # is the same for the three names and is checked in-process below)
    code = ("import biasaudit.rebalance.recombine, biasaudit.report.render\n"
            "import importlib; importlib.import_module('biasaudit.rebalance.api')\n"
            "import biasaudit, inspect\n"
            "assert all(inspect.isfunction(getattr(biasaudit, n)) for n in "
            "('scan', 'rebalance', 'evaluate', 'probe', 'report')), "
            "[getattr(biasaudit, n) for n in ('rebalance', 'evaluate', 'report')]\n"
            "from biasaudit.rebalance import swap_part\n"
            "from biasaudit.report import write_report\n")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=ROOT)
    assert done.returncode == 0, done.stderr


def test_rebinding_a_stage_name_to_a_module_is_ignored():
    import types

    before = biasaudit.evaluate
    biasaudit.evaluate = types.ModuleType("biasaudit.evaluate")  # what the import system does
    assert biasaudit.evaluate is before
    import importlib

    importlib.import_module("biasaudit.evaluate.fairness")
    assert inspect.isfunction(biasaudit.evaluate) and inspect.isfunction(biasaudit.report)


def test_import_biasaudit_stays_light():
    # every CLI call imports the package: the stage functions import their stage on call
    code = "import sys, biasaudit; assert not {'torch', 'pandas', 'scipy'} & set(sys.modules), sys.modules.keys()"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-500:]


def test_scan_and_report_return_dataclasses(tmp_path):
    data = biasaudit.synth_faces(tmp_path / "faces", n=120, plant="Smiling:Blond_Hair=0.9")
    scan = biasaudit.scan(data, out=tmp_path / "ws", labels="Smiling", causal="mouth,u_lip,l_lip", heml=False)
    assert dataclasses.is_dataclass(scan) and scan.findings[0].segment == "hair"
    report = biasaudit.report(tmp_path / "ws")
    assert dataclasses.is_dataclass(report) and report.path.is_file() and report.n_bytes > 0
    assert report.sections[0] == "verdict"
    with pytest.raises(TypeError):
        biasaudit.scan(data, tmp_path / "ws2")  # options are keyword-only


def readme_python() -> str:
    text = (ROOT / "README.md").read_text("utf-8")
    match = re.search(r"<!-- python-api[^>]*-->\s*```python\n(.*?)```", text, re.S)
    assert match, "README.md has no ```python block after <!-- python-api -->"
    return match.group(1)


def test_readme_python_block_is_the_whole_loop():
    code = readme_python()
    compile(code, "README.md", "exec")
    assert len(code.strip().splitlines()) <= 13
    for call in ("biasaudit.scan(", "biasaudit.rebalance(", "biasaudit.evaluate(", "biasaudit.probe(",
                 "biasaudit.report("):
        assert call in code


@pytest.mark.slow
def test_readme_python_lines_run_as_written(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    exec(compile(readme_python(), "README.md", "exec"), {})
    assert (tmp_path / "ws" / "report.html").is_file()
