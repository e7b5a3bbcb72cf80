"""A scan killed mid-way (SIGKILL, during HEML training) continues when re-run.

The real process is killed, not simulated: every workspace file is written atomically,
so the second run must trust what the first one finished (the segmentation) and redo
what it did not (HEML), and end with the same findings as an uninterrupted scan.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from biasaudit.data.synth import SynthFacesConfig, write_synthfaces

ARGS = ["--label", "Smiling", "--causal", "mouth,u_lip,l_lip", "--seed", "3", "--device", "cpu",
        "--epochs-scale", "0.3"]


def _scan(data: Path, ws: Path) -> subprocess.Popen:
    env = {**os.environ, "BIASAUDIT_PROGRESS": "0", "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "biasaudit", "scan", str(data), "--out", str(ws), *ARGS],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)


def _mask_findings(ws: Path) -> list[tuple]:
    # findings from mask statistics do not depend on how HEML's threads scheduled work
    doc = json.loads((ws / "findings.json").read_text())
    return [(f["kind"], f["segment"], f["attribute"], f["severity"]) for f in doc["findings"]
            if f["evidence"].get("attribute_kind") in ("colour", "presence", "size", "shape")]


def test_killed_scan_resumes_and_matches_an_uninterrupted_one(tmp_path):
    data = write_synthfaces(tmp_path / "faces", SynthFacesConfig(n=160, seed=3, plants=("Smiling:Blond_Hair=0.9",)))
    ws = tmp_path / "ws"
    proc = _scan(data, ws)
    deadline = time.monotonic() + 120
    # kill as soon as HEML has saved nothing yet but the segmentation is done
    while time.monotonic() < deadline and proc.poll() is None:
        if (ws / "segments.parquet").is_file():
            break
        time.sleep(0.05)
    assert proc.poll() is None, "the scan finished before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (ws / "findings.json").exists()

    again = _scan(data, ws)
    out, _ = again.communicate(timeout=600)
    assert again.returncode == 0, out.decode(errors="replace")
    assert (ws / "findings.json").is_file()

    fresh = tmp_path / "fresh"
    clean = _scan(data, fresh)
    out, _ = clean.communicate(timeout=600)
    assert clean.returncode == 0, out.decode(errors="replace")
    assert _mask_findings(ws) == _mask_findings(fresh)
    assert _mask_findings(ws)[0][1:3] == ("hair", "hair colour: blond")
