"""Embedding a workspace on Ray (issue 13): one Ray Data stage, one actor pool, for every
chunk of images, and the local engine's bytes in ``WS/embeddings``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from biasaudit.core.engine import read_stage_timings, use_engine

TREE = {
    "schema": "celebamask-hq",
    "defaults": {"resolution": 16, "epochs": 1, "trunk": "small-cnn:4"},
    "tree": {"name": "image", "children": [
        {"name": "hair", "parts": ["hair"]},
        {"name": "face", "children": [{"name": "eyes", "parts": ["l_eye", "r_eye"]},
                                      {"name": "mouth", "parts": ["mouth", "u_lip", "l_lip"]}]},
    ]},
}


@pytest.fixture(scope="module")
def segmented(tmp_path_factory) -> Path:
    from biasaudit.data.synth.faces import SynthFacesConfig, write_synthfaces
    from biasaudit.segment import segment_dataset

    root = tmp_path_factory.mktemp("rayembed")
    faces = write_synthfaces(root / "faces", SynthFacesConfig(n=40, seed=2, size=64))
    segment_dataset(faces, root / "ws")
    return root / "ws"


def test_workspace_embedding_on_ray_is_one_stage_with_the_local_bytes(ray_local, segmented, tmp_path, monkeypatch):
    import shutil

    import ray.data

    from biasaudit.heml import HEML
    from biasaudit.heml import workspace as hw

    ids = hw.usable_images(segmented)["image"].tolist()
    images, maps = hw.load_arrays(segmented, ids, image_size=32)
    heml = HEML(tree=TREE, supervision="self", device="cpu", seed=1, embedding_dim=8).fit(images, maps)
    # blocks of 8 images in chunks of 12 (blocks never straddle a chunk: 8+4, 8+4, 8+4, 4)
    monkeypatch.setitem(hw.EMBED_BATCH, "cpu", 8)
    local_ws, ray_ws = tmp_path / "local", tmp_path / "ray"
    for ws in (local_ws, ray_ws):
        shutil.copytree(segmented, ws)
    hw.embed_workspace(local_ws, heml, ids, image_size=32, chunk=12)

    stages = []
    real = ray.data.Dataset.map_batches

    def counting(self, fn, *args, **kwargs):
        stages.append(getattr(fn, "__name__", str(fn)))
        return real(self, fn, *args, **kwargs)

    monkeypatch.setattr(ray.data.Dataset, "map_batches", counting)
    with use_engine("ray"):
        hw.embed_workspace(ray_ws, heml, ids, image_size=32, chunk=12)
    assert stages == ["_WorkspaceEmbedActor"]  # one pool for the 4 chunks, not one per chunk

    local_files = sorted(p.relative_to(local_ws) for p in (local_ws / "embeddings").glob("*"))
    assert local_files == sorted(p.relative_to(ray_ws) for p in (ray_ws / "embeddings").glob("*"))
    for rel in local_files:
        assert (local_ws / rel).read_bytes() == (ray_ws / rel).read_bytes(), rel
    hair = np.load(ray_ws / "embeddings" / "hair.npy")
    assert hair.shape == (40, 8) and np.any(hair != 0)
    timing = read_stage_timings(ray_ws)["embed"]
    assert timing["engine"] == "ray" and timing["n_images"] == 40 and timing["batch_size"] == 8
