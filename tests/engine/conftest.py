"""A local Ray instance with 2 CPUs for the engine tests (started once per module), and a
tiny SynthFaces folder with a planted bias."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="module")
def ray_local():
    """``ray`` connected to a fresh local instance; the engine code reuses it."""
    ray = pytest.importorskip("ray")
    pytest.importorskip("ray.data")
    if ray.is_initialized():
        ray.shutdown()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"BIASAUDIT_PROGRESS": "0", "HF_HUB_OFFLINE": "1",
                                       "OMP_WAIT_POLICY": "PASSIVE"}})
    yield ray
    ray.shutdown()


@pytest.fixture(scope="session")
def faces(tmp_path_factory) -> Path:
    """40 SynthFaces portraits at 64 px where Smiling goes with blond hair (P = 0.9)."""
    from biasaudit.data.synth.faces import SynthFacesConfig, write_synthfaces

    out = tmp_path_factory.mktemp("engine") / "faces"
    write_synthfaces(out, SynthFacesConfig(n=40, seed=0, size=64, plants=("Smiling:Blond_Hair=0.9",)))
    return out
