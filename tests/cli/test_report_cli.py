"""`biasaudit report WS [--rebalance NEW] [--eval EVAL] [--probe FILE] [--out FILE]`."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from biasaudit.audit.scan import run_scan
from biasaudit.cli import main

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "report"))
from report_fixtures import make_dataset, write_eval, write_probe, write_rebalance  # noqa: E402


def test_report_cli_writes_the_file_and_prints_its_path(tmp_path):
    data = make_dataset(tmp_path / "data", n=120)
    ws = tmp_path / "ws"
    run_scan(data, ws, labels=["Smiling"], causal=["mouth"], heml=False)
    runner = CliRunner()
    default = runner.invoke(main, ["report", str(ws)])
    assert default.exit_code == 0, default.output
    assert default.output.strip() == f"Report: {ws / 'report.html'}"
    out = tmp_path / "shared" / "bias.html"
    full = runner.invoke(main, ["report", str(ws), "--rebalance", str(write_rebalance(tmp_path / "new", data)),
                                "--eval", str(write_eval(tmp_path / "eval")),
                                "--probe", str(write_probe(tmp_path / "probe.json")), "--out", str(out)])
    assert full.exit_code == 0, full.output
    html = out.read_text("utf-8")
    assert "Synthesized samples beside their base and donor" in html and "Flip rate per part" in html
    assert f"--out {out}" in html  # the reproduce section names the same command


def test_report_cli_errors_are_one_line_without_traceback(tmp_path):
    result = CliRunner().invoke(main, ["report", str(tmp_path / "missing")])
    assert result.exit_code == 1
    assert "is not a scanned workspace" in result.output and "Traceback" not in result.output


def test_scan_writes_the_report_unless_told_not_to(tmp_path):
    data = make_dataset(tmp_path / "data", n=120)
    runner = CliRunner()
    ws = tmp_path / "ws"
    done = runner.invoke(main, ["-q", "scan", str(data), "--out", str(ws), "--label", "Smiling", "--no-heml"])
    assert done.exit_code == 0, done.output
    assert f"Report: {ws / 'report.html'}" in done.output and (ws / "report.html").is_file()
    quiet = tmp_path / "ws2"
    done = runner.invoke(main, ["-q", "scan", str(data), "--out", str(quiet), "--label", "Smiling", "--no-heml",
                                "--no-report"])
    assert done.exit_code == 0, done.output
    assert "Report:" not in done.output and not (quiet / "report.html").exists()


@pytest.mark.slow
def test_rebalance_refreshes_the_report_and_writes_nothing_else_to_the_workspace(tmp_path):
    from biasaudit.data.testing import tree_hashes

    data = make_dataset(tmp_path / "data", n=200)
    ws = tmp_path / "ws"
    runner = CliRunner()
    assert runner.invoke(main, ["-q", "scan", str(data), "--out", str(ws), "--label", "Smiling", "--no-heml"]
                         ).exit_code == 0
    before = {k: v for k, v in tree_hashes(ws).items() if not k.endswith(b"report.html")}
    done = runner.invoke(main, ["-q", "rebalance", str(ws), "--target", "hair", "--out", str(tmp_path / "new")])
    assert done.exit_code == 0, done.output
    assert f"Report: {ws / 'report.html'}" in done.output
    assert "Synthesized samples beside their base and donor" in (ws / "report.html").read_text("utf-8")
    assert {k: v for k, v in tree_hashes(ws).items() if not k.endswith(b"report.html")} == before
