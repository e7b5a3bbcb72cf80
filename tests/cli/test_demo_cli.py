"""`biasaudit demo`: the fast path (mask statistics, stop after the scan) in seconds, and
the whole loop at toy sizes (slow)."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from biasaudit.cli import main


def test_demo_finds_the_planted_bias_writes_the_report_and_reuses_its_data(tmp_path):
    out = tmp_path / "demo"
    runner = CliRunner()
    args = ["-q", "demo", "--out", str(out), "--n", "200", "--test-n", "40", "--no-heml", "--until", "scan"]
    first = runner.invoke(main, args)
    assert first.exit_code == 0, first.output
    assert "Found the planted bias: Hair colour 'blond' predicts Smiling=1" in first.output
    report = out / "ws" / "report.html"
    assert f"Report: {report}" in first.output and report.is_file()
    assert "Hair colour &#39;blond&#39; predicts Smiling=1" in report.read_text("utf-8")
    findings = json.loads((out / "ws" / "findings.json").read_text())
    top = findings["findings"][0]
    assert top["segment"] == "hair" and "blond" in top["attribute"] and top["severity"] >= 0.5
    timings = json.loads((out / "timings.json").read_text())
    assert set(timings["seconds"]) == {"synth", "scan", "report"}
    stamp = (out / "data" / "images" / "00000.png").stat().st_mtime_ns
    second = runner.invoke(main, args)
    assert second.exit_code == 0 and "reusing" in second.output
    # the generated data is reused, not regenerated
    assert (out / "data" / "images" / "00000.png").stat().st_mtime_ns == stamp


@pytest.mark.slow
def test_demo_whole_loop_at_toy_sizes(tmp_path):
    out = tmp_path / "demo"
    result = CliRunner().invoke(main, ["-q", "demo", "--out", str(out), "--n", "300", "--test-n", "120",
                                       "--no-heml", "--seeds", "1", "--epochs", "1"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    i = next(k for k, line in enumerate(lines) if line.startswith("Found the planted bias"))
    assert lines[i + 1].startswith("Repair: Cramér's V of hair colour × Smiling")
    assert lines[i + 2].startswith("Fairness: worst-group accuracy by Blond_Hair")
    html = (out / "ws" / "report.html").read_text("utf-8")
    assert "Synthesized samples beside their base and donor" in html
    assert "Worst-group accuracy per training set" in html and "Flip rate per part" in html
    assert set(json.loads((out / "timings.json").read_text())["seconds"]) == {
        "synth", "scan", "rebalance", "evaluate", "probe", "report"}
