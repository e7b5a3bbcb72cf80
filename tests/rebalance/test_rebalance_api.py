"""run_rebalance on a small SynthFaces set with a planted presence bias (Eyeglasses:Wearing_Hat):
adding and removing hats, a killed run that resumes to the same NEW, and the inpaint method
end to end on CPU with a tiny random diffusers pipeline."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from PIL import Image

from biasaudit.cli import main
from biasaudit.data.testing import tree_hashes
from biasaudit.rebalance import api
from biasaudit.rebalance.api import run_rebalance
from biasaudit.rebalance.sheet import rebalance_sheet


@pytest.fixture(scope="module")
def hat_ws(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("rebalance-api")
    runner = CliRunner()
    r = runner.invoke(main, ["-q", "synth", "faces", "--n", "160", "--seed", "5", "--size", "64",
                             "--out", str(root / "data"), "--plant", "Eyeglasses:Wearing_Hat=0.9"])
    assert r.exit_code == 0, r.output
    r = runner.invoke(main, ["-q", "scan", str(root / "data"), "--out", str(root / "ws"), "--label", "Eyeglasses",
                             "--causal", "eye_g", "--no-heml"])
    assert r.exit_code == 0, r.output
    return root / "ws"


def _relative_hashes(root: Path) -> dict[str, str]:
    return {Path(p.decode()).relative_to(root).as_posix(): h for p, h in tree_hashes(root).items()}


def test_presence_is_added_and_removed(hat_ws, tmp_path):
    result = run_rebalance(hat_ws, target="hat", out=tmp_path / "new")
    assert result.settings["attribute_kind"] == "presence"
    assert result.before["cramers_v"] > 0.5 and result.after["cramers_v"] < 0.15, result.after
    assert result.flagged_after == []
    doc = json.loads((tmp_path / "new" / "rebalance.json").read_text())
    actions = {s["action"] for s in doc["samples"]}
    assert {"add", "remove"} <= actions and "refill" in actions  # absent-cell edits are refills
    labels = pd.read_csv(tmp_path / "new" / "labels.csv").set_index("image")
    for s in doc["samples"]:
        mask = np.asarray(Image.open(tmp_path / "new" / "masks" / s["image"]))
        has_hat = bool((mask == 14).any())
        assert has_hat == (s["attribute_value"] == "present")
        # Wearing_Hat is the attribute written as a label: it follows the pixels, not the base
        assert labels.at[s["image"], "Wearing_Hat"] == int(has_hat)
    # the contact sheet: 4 triplets (synthesized | base | donor), 2 per row, captions below
    sheet = rebalance_sheet(tmp_path / "new", n=4, cell=32, zoom=3)
    assert sheet.shape == (2 * (32 + 16), 2 * (3 * 32 + 8), 3)


def test_killed_run_resumes_to_the_same_new(hat_ws, tmp_path, monkeypatch):
    args = dict(target="hat", budget=12, closing_check=False, seed=3)
    clean = run_rebalance(hat_ws, out=tmp_path / "clean", **args)
    assert clean.generated + clean.edited > 12

    calls = {"n": 0}
    real_swap = api.swap_part

    def dying_swap(*a, **k):
        calls["n"] += 1
        if calls["n"] > 7:
            raise KeyboardInterrupt  # the run is killed mid-way
        return real_swap(*a, **k)

    monkeypatch.setattr(api, "swap_part", dying_swap)
    with pytest.raises(KeyboardInterrupt):
        run_rebalance(hat_ws, out=tmp_path / "resumed", **args)
    assert not (tmp_path / "resumed").exists() and (tmp_path / ".resumed.rebalance-partial").is_dir()
    monkeypatch.setattr(api, "swap_part", real_swap)
    run_rebalance(hat_ws, out=tmp_path / "resumed", **args)
    a, b = _relative_hashes(tmp_path / "clean"), _relative_hashes(tmp_path / "resumed")
    a.pop("rebalance.json"), b.pop("rebalance.json")  # it names its own out folder
    assert a == b
    docs = [json.loads((tmp_path / n / "rebalance.json").read_text()) for n in ("clean", "resumed")]
    assert docs[0]["samples"] == docs[1]["samples"] and docs[0]["rejected"] == docs[1]["rejected"]


def test_inpaint_runs_end_to_end_with_a_tiny_random_pipeline(hat_ws, tmp_path):
    from biasaudit.rebalance.testing import write_tiny_inpaint_pipeline

    model = write_tiny_inpaint_pipeline(tmp_path / "tiny-inpaint")
    result = run_rebalance(hat_ws, target="hat", out=tmp_path / "new", method="inpaint", model=str(model),
                           strategy="equalize", budget=2, steps=1, device="cpu", closing_check=False)
    assert result.settings["method"] == "inpaint" and result.plan.n_new_total == 2
    assert result.generated + result.failed == 2 and result.generated >= 1
    labels = pd.read_csv(tmp_path / "new" / "labels.csv")
    synth = labels[labels.origin == "synthetic"]
    assert (synth.method == "inpaint").all()
    # the pipeline repainted the part's region; the rest of the base is kept exactly
    row = synth.iloc[0]
    data = Path(json.loads((tmp_path / "new" / "rebalance.json").read_text())["source"])
    new_img = np.asarray(Image.open(tmp_path / "new" / "images" / row.image).convert("RGB")).astype(int)
    base_img = np.asarray(Image.open(data / "images" / row.base).convert("RGB")).astype(int)
    changed = np.abs(new_img - base_img).max(axis=-1) > 0
    assert 0 < changed.mean() < 0.6


TINY_RECIPE = """
schema: celebamask-hq
defaults: {resolution: 16, epochs: 2, trunk: "small-cnn:8"}
tree:
  name: image
  children:
    - {name: hat, parts: [hat]}
    - {name: glasses, parts: [eye_g]}
"""


@pytest.mark.slow
def test_heml_gate_is_used_when_the_scan_trained_heml(tmp_path):
    from biasaudit.audit.scan import run_scan

    runner = CliRunner()
    r = runner.invoke(main, ["-q", "synth", "faces", "--n", "120", "--seed", "6", "--size", "64",
                             "--out", str(tmp_path / "data"), "--plant", "Eyeglasses:Wearing_Hat=0.9"])
    assert r.exit_code == 0, r.output
    recipe = tmp_path / "tiny.yaml"
    recipe.write_text(TINY_RECIPE)
    run_scan(tmp_path / "data", tmp_path / "ws", labels=["Eyeglasses"], causal=["eye_g"], recipe=str(recipe),
             heml=True, heml_size=32, device="cpu")
    result = run_rebalance(tmp_path / "ws", target="hat", out=tmp_path / "new", budget=6, closing_check=False,
                           strategy="equalize", force=True, attribute="presence")
    assert result.settings["heml_gate"] == "hat"
    assert result.generated + result.failed == 6


def _segments(hair: list[str], brows: list[str], cloth: list[str]) -> pd.DataFrame:
    rows = []
    for i, (h, b, c) in enumerate(zip(hair, brows, cloth, strict=True)):
        for part, colour in (("hair", h), ("l_brow", b), ("cloth", c)):
            rows.append({"image": f"{i:03d}.png", "part": part, "present": True, "colour": colour})
    return pd.DataFrame(rows)


def test_companion_parts_are_the_parts_whose_colour_goes_with_the_target():
    from types import SimpleNamespace

    rng = np.random.default_rng(0)
    hair = list(rng.choice(["blond", "black", "brown"], 120))
    brows = [{"blond": "beige", "black": "black", "brown": "brown"}[h] for h in hair]  # drawn in the hair colour
    cloth = list(rng.choice(["red", "green", "blue"], 120))
    scan = SimpleNamespace(segments=_segments(hair, brows, cloth))
    values = pd.Series(hair, index=[f"{i:03d}.png" for i in range(120)])
    assert api.companion_parts(scan, "hair", values) == ["l_brow"]
    # brows that only loosely follow the hair are no proxy
    loose = [b if rng.random() < 0.2 else str(rng.choice(["beige", "black", "brown"])) for b in brows]
    scan = SimpleNamespace(segments=_segments(hair, loose, cloth))
    assert api.companion_parts(scan, "hair", values) == []


def test_companions_are_moved_from_the_same_donor_and_named_in_rebalance_json(tmp_path):
    root = tmp_path
    runner = CliRunner()
    r = runner.invoke(main, ["-q", "synth", "faces", "--n", "200", "--seed", "2", "--size", "128",
                             "--out", str(root / "data"), "--plant", "Smiling:Blond_Hair=0.9"])
    assert r.exit_code == 0, r.output
    r = runner.invoke(main, ["-q", "scan", str(root / "data"), "--out", str(root / "ws"), "--label", "Smiling",
                             "--causal", "mouth,u_lip,l_lip", "--no-heml", "--no-report"])
    assert r.exit_code == 0, r.output
    result = run_rebalance(root / "ws", target="hair", out=root / "new", closing_check=False)
    # SynthFaces draws the brows in the hair colour: they must travel with the hair
    assert result.settings["companions"] == ["l_brow", "r_brow"]
    doc = json.loads((root / "new" / "rebalance.json").read_text())
    assert doc["settings"]["companions"] == ["l_brow", "r_brow"]
    moved = 0
    for s in doc["samples"][:30]:
        new = np.asarray(Image.open(root / "new" / "masks" / s["image"]))
        base = np.asarray(Image.open(root / "data" / "masks" / s["base"]))
        moved += int((new == 6).sum() != (base == 6).sum() or ((new == 6) != (base == 6)).any())
    assert moved >= 15  # l_brow (id 6) is re-pasted from the donor, not left as the base's
    with pytest.raises(api.RebalanceError, match="not another part"):
        run_rebalance(root / "ws", target="hair", out=root / "new2", companions="hair")
