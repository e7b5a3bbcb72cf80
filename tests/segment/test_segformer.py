from __future__ import annotations

import numpy as np
import pytest

from biasaudit.core.errors import ValidationError
from biasaudit.core.schema import get_schema
from biasaudit.segment import make_segmenter
from biasaudit.segment.segformer import SegformerSegmenter

FACE = get_schema("celebamask-hq")


def _images():
    rng = np.random.default_rng(0)
    return [rng.integers(0, 256, (40, 56, 3), dtype=np.uint8), rng.integers(0, 256, (23, 31, 3), dtype=np.uint8)]


def test_tiny_segformer_round_trips_and_keeps_image_sizes(tiny_segformer):
    seg = make_segmenter(f"segformer:{tiny_segformer}", schema=FACE, device="cpu", batch_size=2)
    assert isinstance(seg, SegformerSegmenter) and seg.device == "cpu"
    assert seg.mapping.unmatched == ()
    out = seg.segment_batch(_images())
    assert [o.shape for o in out] == [(40, 56), (23, 31)]
    assert all(o.dtype == np.uint8 and o.max() <= FACE.max_id for o in out)
    # batched inference gives what one image at a time gives
    for image, batched in zip(_images(), out, strict=True):
        assert np.array_equal(seg.segment_batch([image])[0], batched)


def test_saved_weights_reload_to_the_same_predictions(tiny_segformer, tmp_path):
    first = make_segmenter(f"segformer:{tiny_segformer}", schema=FACE, device="cpu")
    first.model.save_pretrained(tmp_path / "again")
    first.processor.save_pretrained(tmp_path / "again")
    second = make_segmenter(f"segformer:{tmp_path / 'again'}", schema=FACE, device="cpu")
    images = _images()
    assert all(np.array_equal(a, b) for a, b in zip(first.segment_batch(images), second.segment_batch(images), strict=True))
    assert first.fingerprint != second.fingerprint  # a different folder is a different cache


def test_model_ids_are_translated_to_schema_ids(tmp_path, build_segformer):
    # A model whose label 1 is "hair" and label 2 "sky": every pixel must be 0 or 13 (hair).
    path = build_segformer(tmp_path / "m", {0: "background", 1: "hair", 2: "sky"})
    seg = make_segmenter(f"segformer:{path}", schema=FACE, device="cpu")
    assert seg.mapping.lut.tolist() == [0, 13, 0] and seg.mapping.unmatched == ("sky",)
    values = set(np.unique(np.concatenate([o.ravel() for o in seg.segment_batch(_images())])).tolist())
    assert values <= {0, 13}


def test_missing_directory_is_our_error_not_the_hubs(tmp_path):
    with pytest.raises(ValidationError) as info:
        make_segmenter(f"segformer:{tmp_path / 'nope' / 'model'}", schema=FACE, device="cpu")
    assert "does not exist" in str(info.value) and "Repo id" not in str(info.value)


def test_unreachable_hub_id_is_reported_offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ValidationError) as info:
        make_segmenter("segformer:nobody-xyz/not-a-model", schema=FACE, device="cpu")
    assert "nobody-xyz/not-a-model" in str(info.value) and "local folder" in str(info.value)


def test_directory_without_processor_says_how_to_fix(tiny_segformer, tmp_path):
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "config.json").write_text((tiny_segformer / "config.json").read_text())
    with pytest.raises(ValidationError, match="preprocessor_config.json"):
        make_segmenter(f"segformer:{tmp_path / 'm'}", schema=FACE, device="cpu")


def test_model_with_no_label_in_the_schema_is_refused(tmp_path, build_segformer):
    path = build_segformer(tmp_path / "m", {0: "sky", 1: "road"})
    with pytest.raises(ValidationError, match="--schema"):
        make_segmenter(f"segformer:{path}", schema=FACE, device="cpu")


@pytest.mark.parametrize("spec", ["segformer", "nonsense", ""])
def test_bad_specs_name_the_choices(spec):
    with pytest.raises(ValidationError, match="segformer:<"):
        make_segmenter(spec, schema=FACE)


def test_cuda_without_gpu_is_an_error(tiny_segformer):
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    with pytest.raises(ValidationError, match="--device cpu"):
        make_segmenter(f"segformer:{tiny_segformer}", schema=FACE, device="cuda")


def test_pickled_weights_are_refused_safetensors_only(tiny_segformer, tmp_path):
    # a pytorch_model.bin is a pickle, which can run code when loaded: only safetensors load
    import torch

    first = make_segmenter(f"segformer:{tiny_segformer}", schema=FACE, device="cpu")
    (tmp_path / "pickled").mkdir()
    first.model.config.save_pretrained(tmp_path / "pickled")
    first.processor.save_pretrained(tmp_path / "pickled")
    torch.save(first.model.state_dict(), tmp_path / "pickled" / "pytorch_model.bin")
    assert not list((tmp_path / "pickled").glob("*.safetensors"))
    with pytest.raises(ValidationError, match="segformer:"):
        make_segmenter(f"segformer:{tmp_path / 'pickled'}", schema=FACE, device="cpu")
