"""`biasaudit demo` end to end (mask statistics only, so it runs in seconds)."""

from __future__ import annotations

import json

from click.testing import CliRunner

from biasaudit.cli import main


def test_demo_finds_the_planted_bias_and_reuses_its_data(tmp_path):
    out = tmp_path / "demo"
    runner = CliRunner()
    first = runner.invoke(main, ["-q", "demo", "--out", str(out), "--n", "300", "--no-heml"])
    assert first.exit_code == 0, first.output
    assert "found the planted bias" in first.output
    findings = json.loads((out / "ws" / "findings.json").read_text())
    top = findings["findings"][0]
    assert top["segment"] == "hair" and "blond" in top["attribute"] and top["severity"] >= 0.5
    stamp = (out / "data" / "images" / "00000.png").stat().st_mtime_ns
    second = runner.invoke(main, ["-q", "demo", "--out", str(out), "--n", "300", "--no-heml"])
    assert second.exit_code == 0 and "reusing" in second.output
    # the generated data is reused, not regenerated
    assert (out / "data" / "images" / "00000.png").stat().st_mtime_ns == stamp
