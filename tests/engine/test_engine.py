"""``--engine ray``: the same workspace files and findings as the local engine.

The Ray tests share one local instance with 2 CPUs (``ray_local``); they skip when the
``ray`` extra is not installed.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from biasaudit.cli import main
from biasaudit.core.engine import (
    RAY_EXTRA_MESSAGE,
    current_engine,
    import_ray,
    make_engine,
    use_engine,
)
from biasaudit.core.errors import MissingExtraError, ValidationError

TREE = {
    "schema": "celebamask-hq",
    "defaults": {"resolution": 16, "epochs": 2, "trunk": "small-cnn:8"},
    "tree": {"name": "image", "children": [
        {"name": "hair", "parts": ["hair"]},
        {"name": "face", "children": [{"name": "eyes", "parts": ["l_eye", "r_eye"]},
                                      {"name": "mouth", "parts": ["mouth", "u_lip", "l_lip"]}]},
    ]},
}


def _files(root: Path, pattern: str) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.glob(pattern)) if p.is_file()}


# ----------------------------------------------------------------- no Ray needed


def test_engine_choice_is_checked():
    with pytest.raises(ValidationError, match="--engine must be one of local, ray"):
        make_engine("spark")
    with pytest.raises(ValidationError, match="needs --engine ray"):
        make_engine("local", address="head:6379")
    with use_engine("ray", address="head:6379"):
        assert current_engine() == make_engine("ray", address="head:6379")
    assert not current_engine().is_ray


def test_missing_ray_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` now raises ImportError
    with pytest.raises(MissingExtraError) as err:
        import_ray()
    assert str(err.value) == RAY_EXTRA_MESSAGE == "--engine ray needs the ray extra: pip install 'biasaudit[ray]'"


def test_cli_address_needs_engine_ray(faces, tmp_path):
    result = CliRunner().invoke(main, ["segment", str(faces), "--out", str(tmp_path / "ws"),
                                       "--address", "head:6379"])
    assert result.exit_code == 1
    assert "--address head:6379 names a Ray cluster; it needs --engine ray." in result.output
    assert "Traceback" not in result.output


def test_cli_engine_ray_without_ray_is_one_line(faces, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)
    result = CliRunner().invoke(main, ["segment", str(faces), "--out", str(tmp_path / "ws"), "--engine", "ray"])
    assert result.exit_code == 1
    assert RAY_EXTRA_MESSAGE in result.output
    assert "Traceback" not in result.output


# ----------------------------------------------------------------- on a local Ray instance


def test_segment_on_ray_writes_the_same_files(ray_local, faces, tmp_path):
    from biasaudit.segment import segment_dataset

    local = segment_dataset(faces, tmp_path / "local")
    ray = segment_dataset(faces, tmp_path / "ray", engine="ray")
    assert (ray.n_ok, ray.n_segmented, ray.n_failed) == (local.n_ok, local.n_segmented, 0) == (40, 40, 0)
    shards = _files(tmp_path / "local", "segments.parquet/*")
    assert shards and shards == _files(tmp_path / "ray", "segments.parquet/*")
    assert (tmp_path / "local" / "manifest.parquet").read_bytes() == (tmp_path / "ray" / "manifest.parquet").read_bytes()
    again = segment_dataset(faces, tmp_path / "ray", engine="ray")  # nothing changed: nothing recomputed
    assert (again.n_reused, again.n_segmented) == (40, 0)


def test_model_segmenter_runs_in_an_actor_pool(ray_local, faces, tmp_path):
    """A SegFormer is rebuilt from its spec in each actor; the label maps it caches and the
    rows it describes are the local engine's."""
    from biasaudit.core.schema import get_schema
    from biasaudit.segment import segment_dataset
    from biasaudit.segment.testing import build_tiny_segformer

    model = build_tiny_segformer(tmp_path / "tiny", dict(get_schema("celebamask-hq").classes))
    spec = f"segformer:{model}"
    local = segment_dataset(faces, tmp_path / "local", segmenter=spec, schema="celebamask-hq", device="cpu")
    ray = segment_dataset(faces, tmp_path / "ray", segmenter=spec, schema="celebamask-hq", device="cpu",
                          engine="ray")
    assert ray.n_segmented == local.n_segmented == 40
    assert _files(tmp_path / "local", "segments.parquet/*") == _files(tmp_path / "ray", "segments.parquet/*")
    cached = _files(tmp_path / "ray", "masks/*/*.png")
    assert len(cached) == 40 and cached == _files(tmp_path / "local", "masks/*/*.png")


def test_heml_levels_on_ray_fit_the_same_models(ray_local, faces):
    """Each node of a level trains in its own Ray task, seeded as locally: the same weights,
    scores and embeddings (parents read their children's embeddings, which travel back);
    embedding on Ray gives the local engine's bits too."""
    import torch

    from biasaudit.data import open_dataset, read_image, read_mask
    from biasaudit.heml import HEML

    ds = open_dataset(faces)
    images = np.stack([read_image(s.image_path) for s in ds.samples])
    maps = np.stack([read_mask(s, ds.schema) for s in ds.samples]).astype(np.int64)
    y = ds.labels.loc[[s.image_id for s in ds.samples], "Smiling"].to_numpy()
    params = dict(tree=TREE, supervision="label", device="cpu", seed=3)
    local = HEML(**params).fit(images, maps, y)
    with use_engine("ray"):
        ray = HEML(**params).fit(images, maps, y)
    assert list(ray.models_) == list(local.models_)
    for name, model in local.models_.items():
        mine, theirs = model.state_dict(), ray.models_[name].state_dict()
        assert all(torch.equal(mine[k], theirs[k]) for k in mine), name
        keep = {k: v for k, v in local.metrics_[name].items() if k != "train_seconds"}
        assert keep == {k: v for k, v in ray.metrics_[name].items() if k != "train_seconds"}
    a, b = local.embed(images, maps), ray.embed(images, maps)
    assert all(np.array_equal(a[n], b[n]) for n in a)
    # embedding as a Ray Data stage (3 blocks of 16 images in an actor pool): the same bits
    blocks = local.embed(images, maps, batch_size=16)
    with use_engine("ray"):
        on_ray = local.embed(images, maps, batch_size=16, nodes=["image", "hair"])
    assert list(on_ray) == ["image", "hair"]
    assert all(np.array_equal(on_ray[n], blocks[n]) for n in on_ray)
    assert np.any(on_ray["hair"] != 0)


def test_scan_cli_on_ray_gives_identical_findings(ray_local, faces, tmp_path):
    """The audit after a Ray segmentation is the local one, byte for byte, and finds the plant."""
    outs = {}
    for engine in ("local", "ray"):
        ws = tmp_path / engine
        result = CliRunner().invoke(main, ["scan", str(faces), "--out", str(ws), "--label", "Smiling",
                                           "--causal", "mouth,u_lip,l_lip", "--no-heml", "--no-report", "--engine", engine])
        assert result.exit_code == 0, result.output
        outs[engine] = ws
    assert (outs["local"] / "findings.json").read_bytes() == (outs["ray"] / "findings.json").read_bytes()
    assert _files(outs["local"], "segments.parquet/*") == _files(outs["ray"], "segments.parquet/*")
    doc = json.loads((outs["ray"] / "findings.json").read_text())
    top = doc["findings"][0]
    assert (top["segment"], top["attribute"], top["label"]) == ("hair", "hair colour: blond", "Smiling")
    assert top["severity"] >= 0.5


@pytest.mark.slow
def test_full_scan_with_heml_on_ray_matches_local(ray_local, faces, tmp_path):
    """The whole scan (HEML levels as Ray tasks): identical segments and findings, embeddings
    equal within float16 rounding."""
    from biasaudit.audit.scan import run_scan

    for engine in ("local", "ray"):
        run_scan(faces, tmp_path / engine, labels=["Smiling"], epochs_scale=0.2, engine=engine)
    local, ray = tmp_path / "local", tmp_path / "ray"
    assert (local / "findings.json").read_bytes() == (ray / "findings.json").read_bytes()
    assert _files(local, "segments.parquet/*") == _files(ray, "segments.parquet/*")
    emb_local = _files(local, "embeddings/**/*.npy")
    assert emb_local and set(emb_local) == set(_files(ray, "embeddings/**/*.npy"))
    for rel in emb_local:
        a, b = np.load(local / rel).astype(np.float32), np.load(ray / rel).astype(np.float32)
        np.testing.assert_allclose(a, b, rtol=2 ** -10, atol=2 ** -14)
    index = sorted((local / "embeddings").glob("**/index*.parquet"))
    for path in index:
        pd.testing.assert_frame_equal(pd.read_parquet(path), pd.read_parquet(ray / path.relative_to(local)))
