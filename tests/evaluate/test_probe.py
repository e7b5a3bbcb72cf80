"""The part-swap probe: figures by hand, TorchScript loading, and a planted reliance on
hair colour that the probe must find (and not find on a part the model ignores)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from biasaudit.core.errors import ValidationError
from biasaudit.evaluate.probe import bootstrap_ci, part_figures, run_probe, torchscript_model
from biasaudit.evaluate.testing import save_blond_detector

# torch.jit.script/save warn that TorchScript is deprecated; users still ship TorchScript files
pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit:DeprecationWarning")



@pytest.fixture(scope="module")
def scripted(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("ts") / "blond.pt"
    save_blond_detector(path)
    return str(path)


@pytest.fixture(scope="module")
def faces(tmp_path_factory):
    from biasaudit.data.synth.faces import SynthFacesConfig, parse_plant, write_synthfaces

    out = tmp_path_factory.mktemp("probe") / "faces"
    config = SynthFacesConfig(n=40, seed=7, size=64, plants=(parse_plant("Smiling:Blond_Hair=0.9"),), balanced=True)
    return write_synthfaces(out, config, workers=1)


def test_part_figures_by_hand():
    r = part_figures("hair", ["blond", "blond", "black", "black"], ["black", "black", "blond", "blond"],
                     np.array([0.9, 0.8, 0.1, 0.4]), np.array([0.2, 0.7, 0.6, 0.6]), n_boot=200)
    assert r["flip_rate"] == 0.75 and r["n_pairs"] == 4
    assert r["mean_abs_delta"] == pytest.approx((0.7 + 0.1 + 0.5 + 0.2) / 4)
    by = {(v["from"], v["to"]): v for v in r["by_value"]}
    assert by[("blond", "black")]["flip_rate"] == 0.5 and by[("black", "blond")]["flip_rate"] == 1.0
    assert by[("blond", "black")]["mean_delta"] == pytest.approx(-0.4)
    assert by[("black", "blond")]["mean_delta"] == pytest.approx(0.35)
    lo, hi = r["flip_rate_ci"]
    assert 0.0 <= lo <= 0.75 <= hi <= 1.0


def test_bootstrap_ci_of_constant_and_mixed_values():
    assert bootstrap_ci(np.zeros(10)) == [0.0, 0.0]
    lo, hi = bootstrap_ci(np.array([0.0, 1.0] * 50), seed=1)
    assert lo < 0.5 < hi and hi - lo < 0.3


def test_non_torchscript_file_is_a_clear_error(tmp_path):
    path = tmp_path / "weights.pt"
    torch.save({"w": torch.zeros(2)}, str(path))
    with pytest.raises(ValidationError, match="is not a TorchScript model"):
        torchscript_model(path)
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a model at all")
    with pytest.raises(ValidationError, match="is not a TorchScript model"):
        torchscript_model(junk)


def test_probe_finds_a_planted_reliance_on_hair(scripted, faces, tmp_path):
    out = tmp_path / "probe.json"
    hair = run_probe(torchscript=scripted, data=faces, target="hair", pairs=30, input_size=64, out=out,
                     n_boot=200)
    cloth = run_probe(torchscript=scripted, data=faces, target="cloth", pairs=30, input_size=64, n_boot=200)
    h, c = hair.parts[0], cloth.parts[0]
    assert h["part"] == "hair" and h["n_pairs"] >= 20
    assert h["flip_rate"] >= 0.3, h
    assert c["flip_rate"] <= 0.1, c
    assert h["flip_rate_ci"][0] > c["flip_rate_ci"][1]
    # swaps that add or remove blond hair are the ones that move the score, in the right direction
    to_blond = [v for v in h["by_value"] if v["to"] == "blond"]
    from_blond = [v for v in h["by_value"] if v["from"] == "blond"]
    assert to_blond and all(v["mean_delta"] > 0 for v in to_blond)
    assert from_blond and all(v["mean_delta"] < 0 for v in from_blond)
    import json

    doc = json.loads(out.read_text("utf-8"))
    assert set(doc) >= {"biasaudit_version", "model", "data", "n_pairs", "parts"}
    assert set(doc["parts"][0]) >= {"part", "n_pairs", "flip_rate", "flip_rate_ci", "mean_abs_delta",
                                    "mean_abs_delta_ci", "by_value"}


def test_probe_rejects_unknown_part_and_missing_model(scripted, faces):
    with pytest.raises(ValidationError, match="--target wings: not a part"):
        run_probe(torchscript=scripted, data=faces, target="wings", pairs=5, input_size=64)
    with pytest.raises(ValidationError, match="exactly one of --model"):
        run_probe(data=faces, target="hair")
