"""The GPU path's host side (issue 13, item 3), checked on the CPU: decoding runs ahead of
the model on N threads, the files are byte-identical for any N, and every per-image stage
records where its time went in ``WS/timings.json``."""

from __future__ import annotations

import json
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from biasaudit.cli import main
from biasaudit.core.engine import (
    StageClock,
    decode_ahead,
    make_engine,
    read_stage_timings,
    use_engine,
)
from biasaudit.core.errors import ValidationError

TREE = {
    "schema": "celebamask-hq",
    "defaults": {"resolution": 16, "epochs": 1, "trunk": "small-cnn:4"},
    "tree": {"name": "image", "children": [
        {"name": "hair", "parts": ["hair"]},
        {"name": "mouth", "parts": ["mouth", "u_lip", "l_lip"]},
    ]},
}


@pytest.fixture(scope="module")
def faces(tmp_path_factory) -> Path:
    from biasaudit.data.synth.faces import SynthFacesConfig, write_synthfaces

    out = tmp_path_factory.mktemp("decode") / "faces"
    write_synthfaces(out, SynthFacesConfig(n=24, seed=1, size=64, plants=("Smiling:Blond_Hair=0.9",)))
    return out


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    from biasaudit.core.schema import get_schema
    from biasaudit.segment.testing import build_tiny_segformer

    return build_tiny_segformer(tmp_path_factory.mktemp("model") / "tiny", dict(get_schema("celebamask-hq").classes))


def _files(root: Path, pattern: str) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.glob(pattern)) if p.is_file()}


# --------------------------------------------------------------------------- decode_ahead


def test_decode_ahead_keeps_order_and_bounds_the_work_in_flight():
    """Items finishing out of order still come back in order; never more than ``ahead``
    are decoded or waiting at once; the clock adds the workers' time."""
    live = {"now": 0, "most": 0}
    lock = threading.Lock()
    delays = [random.Random(7).random() * 0.01 for _ in range(30)]

    def work(k: int) -> int:
        with lock:
            live["now"] += 1
            live["most"] = max(live["most"], live["now"])
        time.sleep(delays[k])
        with lock:
            live["now"] -= 1
        return k * k

    clock = StageClock("t")
    with ThreadPoolExecutor(8) as pool:  # more threads than the window: the window is the bound
        out = list(decode_ahead(work, range(30), pool=pool, ahead=3, clock=clock))
    assert out == [k * k for k in range(30)]
    assert 1 < live["most"] <= 3
    assert clock.decode_s >= sum(delays) * 0.9


def test_decode_ahead_stops_decoding_when_the_consumer_stops():
    started = []
    with ThreadPoolExecutor(1) as pool:
        gen = decode_ahead(lambda k: started.append(k) or time.sleep(0.01), range(100), pool=pool, ahead=3)
        next(gen)
        gen.close()
    assert len(started) <= 5


def test_decode_workers_must_be_positive():
    with pytest.raises(ValidationError, match="--decode-workers must be an integer >= 1; got 0"):
        make_engine("local", decode_workers=0)
    assert make_engine("local").workers >= 1


# --------------------------------------------------------------------------- segment


@pytest.mark.parametrize("spec", ["masks", "tiny-segformer"])
def test_segment_files_are_identical_for_any_number_of_decode_workers(faces, tiny_model, tmp_path, spec):
    from biasaudit.segment import segment_dataset

    segmenter = f"segformer:{tiny_model}" if spec == "tiny-segformer" else spec
    outs = {}
    for n in (1, 3):
        ws = tmp_path / f"w{n}"
        # batches of 5: several batches, and statistics deferred past the next batch's model run
        r = segment_dataset(faces, ws, segmenter=segmenter, schema="celebamask-hq", device="cpu", batch_size=5,
                            engine=make_engine("local", decode_workers=n))
        assert r.n_ok == 24
        outs[n] = ws
    one, three = outs[1], outs[3]
    assert _files(one, "segments.parquet/*") == _files(three, "segments.parquet/*")
    assert (one / "manifest.parquet").read_bytes() == (three / "manifest.parquet").read_bytes()
    assert _files(one, "masks/*/*.png") == _files(three, "masks/*/*.png")
    if spec != "masks":
        assert len(_files(one, "masks/*/*.png")) == 24
    timing = read_stage_timings(three)["segment"]
    assert timing["decode_workers"] == 3 and timing["n_images"] == 24 and timing["batch_size"] == 5
    assert timing["decode_s"] > 0 and timing["compute_s"] > 0 and timing["stats_s"] > 0
    assert 0 <= timing["wait_s"] <= timing["wall_s"] and timing["images_per_s"] > 0
    assert 0 < timing["busy"] <= 1


def test_segformer_prepared_in_workers_gives_the_same_maps(tiny_model):
    """The processor run per image in a decoding worker gives the rows a whole-batch call
    gives, so the label maps are the same bits."""
    from biasaudit.core.schema import get_schema
    from biasaudit.segment import make_segmenter

    seg = make_segmenter(f"segformer:{tiny_model}", schema=get_schema("celebamask-hq"), device="cpu")
    assert seg.batch_size == 8  # the CPU default
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (40 + 3 * k, 48, 3), dtype=np.uint8) for k in range(4)]
    plain = seg.segment_batch(images)
    prepared = seg.segment_batch(images, prepared=[seg.prepare(None, im) for im in images])
    assert all(a.dtype == b.dtype and np.array_equal(a, b) for a, b in zip(plain, prepared, strict=True))


# --------------------------------------------------------------------------- embed


def test_embeddings_are_identical_for_any_number_of_decode_workers(faces, tmp_path):
    from biasaudit.heml import HEML
    from biasaudit.heml.workspace import embed_workspace, load_arrays, usable_images
    from biasaudit.segment import segment_dataset

    ws = tmp_path / "ws"
    segment_dataset(faces, ws)
    ids = usable_images(ws)["image"].tolist()
    images, maps = load_arrays(ws, ids, image_size=32)
    heml = HEML(tree=TREE, supervision="self", device="cpu", seed=0, embedding_dim=8).fit(images, maps)
    got = {}
    for n in (1, 3):
        with use_engine(make_engine("local", decode_workers=n)):
            # chunks of 10: three chunks, the next one decoding while this one is embedded
            emb = embed_workspace(ws, heml, ids, image_size=32, chunk=10)
        got[n] = {node: np.array(arr) for node, arr in emb.items()}
        timing = read_stage_timings(ws)["embed"]
        assert timing["decode_workers"] == n and timing["n_images"] == 24
        assert timing["decode_s"] > 0 and timing["compute_s"] > 0 and "write_s" in timing
    whole = heml.embed(images, maps)
    for node in got[1]:
        assert got[1][node].tobytes() == got[3][node].tobytes()
        # Chunks of 10 against one batch of 24: CPU kernels may block a batch differently,
        # one float32 ulp apart, which can flip a float16 rounding; so one float16 step.
        np.testing.assert_allclose(got[1][node].astype(np.float32), whole[node], rtol=2**-10, atol=1e-7)
    assert set(read_stage_timings(ws)) == {"segment", "embed"}


# --------------------------------------------------------------------------- CLI


def test_cli_decode_workers_option(faces, tmp_path):
    ws = tmp_path / "ws"
    ok = CliRunner().invoke(main, ["-q", "segment", str(faces), "--out", str(ws), "--decode-workers", "2"])
    assert ok.exit_code == 0, ok.output
    doc = json.loads((ws / "timings.json").read_text())
    assert doc["stages"]["segment"]["decode_workers"] == 2
    alias = CliRunner().invoke(main, ["-q", "segment", str(faces), "--out", str(tmp_path / "w2"), "--workers", "1"])
    assert alias.exit_code == 0, alias.output
    bad = CliRunner().invoke(main, ["scan", str(faces), "--out", str(tmp_path / "w3"), "--decode-workers", "0"])
    assert bad.exit_code == 2 and "0 is not in the range x>=1" in bad.output
