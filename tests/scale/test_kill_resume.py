"""A scan killed at any point and run again with the same arguments ends with a
byte-identical ``findings.json`` (issue 13).

The kill is real and deterministic: the scan runs in a subprocess with
``BIASAUDIT_TEST_STOP_AFTER=<point>:<count>``, and ``biasaudit.core.io.kill_point`` ends
that process with ``os._exit`` (no cleanup, no ``finally`` blocks, no flushing) the
``count``-th time the scan passes ``point``. Nothing races a file watcher. The same
arguments are then run to the end in the same workspace, and the bytes of its
``findings.json`` are compared with those of an uninterrupted scan.

Segments are sharded by 16 images here (the default is 1,024) so that a 40-image dataset
has finished shards, a shard in progress and shards not started when it is killed.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from biasaudit.core.io import KILLED_EXIT, STOP_ENV
from biasaudit.data.synth import SynthFacesConfig, write_synthfaces

N_IMAGES = 40
SHARD = 16
# the CLI, with small shards (a test-only setting: the module constant)
LAUNCH = (f"import sys; import biasaudit.segment.pipeline as p; p.SHARD_IMAGES = {SHARD}; "
          "from biasaudit.cli import main; sys.argv[0] = 'biasaudit'; main()")
ARGS = ["--label", "Smiling", "--causal", "mouth,u_lip,l_lip", "--seed", "3", "--device", "cpu", "--no-report"]
NO_HEML = ["--no-heml"]
HEML = ["--epochs-scale", "0.05"]


def _scan(data: Path, ws: Path, flags: list[str], *, stop: str | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "BIASAUDIT_PROGRESS": "0", "BIASAUDIT_THREADS": "1", "OMP_NUM_THREADS": "1",
           "HF_HUB_OFFLINE": "1"}
    env.pop(STOP_ENV, None)
    if stop is not None:
        env[STOP_ENV] = stop
    cmd = [sys.executable, "-c", LAUNCH, "-q", "scan", str(data), "--out", str(ws), *ARGS, *flags]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)


@pytest.fixture(scope="module")
def faces(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("kill")
    return write_synthfaces(root / "faces", SynthFacesConfig(n=N_IMAGES, seed=3, plants=("Smiling:Blond_Hair=0.9",)))


@pytest.fixture(scope="module")
def uninterrupted(faces, tmp_path_factory) -> dict[str, bytes]:
    """findings.json of uninterrupted scans, without and with HEML (computed on demand)."""
    cache: dict[str, bytes] = {}

    def get(kind: str) -> bytes:
        if kind not in cache:
            ws = tmp_path_factory.mktemp(f"fresh-{kind}") / "ws"
            done = _scan(faces, ws, NO_HEML if kind == "no-heml" else HEML)
            assert done.returncode == 0, done.stdout + done.stderr
            cache[kind] = (ws / "findings.json").read_bytes()
        return cache[kind]

    return get


def _kill_then_resume(faces: Path, ws: Path, flags: list[str], stop: str) -> bytes:
    killed = _scan(faces, ws, flags, stop=stop)
    assert killed.returncode == KILLED_EXIT, (
        f"the scan was not killed at {stop} (exit {killed.returncode}):\n{killed.stdout}{killed.stderr}")
    assert not (ws / "findings.json").exists()
    resumed = _scan(faces, ws, flags)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    return (ws / "findings.json").read_bytes()


# after validation (manifest only); mid-segment: 2 batches of 8 done, shard 0 (16 images)
# written, shard 1 half done in memory; after the attributes
FAST_POINTS = ["validate:1", "segment-batch:3", "audit:1"]


@pytest.mark.parametrize("stop", FAST_POINTS)
def test_killed_scan_resumes_to_byte_identical_findings(faces, uninterrupted, tmp_path, stop):
    resumed = _kill_then_resume(faces, tmp_path / "ws", NO_HEML, stop)
    assert resumed == uninterrupted("no-heml")
    if stop.startswith("segment-shard"):  # what the killed run finished was kept, not redone
        assert (tmp_path / "ws" / "segments.parquet" / "part-00000.parquet").is_file()


def test_segment_shards_survive_the_kill(faces, tmp_path):
    """A kill mid-segment leaves the finished shards on disk and nothing half-written."""
    ws = tmp_path / "ws"
    killed = _scan(faces, ws, NO_HEML, stop="segment-batch:3")
    assert killed.returncode == KILLED_EXIT
    parts = sorted(p.name for p in (ws / "segments.parquet").iterdir() if not p.name.startswith("."))
    assert parts == ["part-00000.parquet"]
    mtime = (ws / "segments.parquet" / "part-00000.parquet").stat().st_mtime_ns
    assert _scan(faces, ws, NO_HEML).returncode == 0
    # the finished shard was reused as it was, not rewritten
    assert (ws / "segments.parquet" / "part-00000.parquet").stat().st_mtime_ns == mtime
    assert sorted(p.name for p in (ws / "segments.parquet").glob("part-*.parquet")) == [
        "part-00000.parquet", "part-00001.parquet", "part-00002.parquet"]


# five points across every stage: validate, mid-segment, after the second HEML node is
# trained, after the third node's embeddings are written, and in the audit
ALL_POINTS = ["validate:1", "segment-batch:3", "heml-node:2", "embeddings:3", "audit:1"]


@pytest.mark.slow
@pytest.mark.parametrize("stop", ALL_POINTS)
def test_killed_heml_scan_resumes_to_byte_identical_findings(faces, uninterrupted, tmp_path, stop):
    resumed = _kill_then_resume(faces, tmp_path / "ws", HEML, stop)
    assert resumed == uninterrupted("heml")
