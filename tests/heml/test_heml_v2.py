"""HEML v2: parents that read their children, the metric tree's whole-image distance,
recipe node names that are safe folder names, and the thread setup."""

from __future__ import annotations

import os
import platform
import subprocess
import sys

import numpy as np
import pytest
import torch
from heml_fixtures import TREE, make_bars, make_faces

from biasaudit.core.errors import ValidationError
from biasaudit.heml import HEML, explain_pair, load_recipe, node_weights, tree_distance_matrix

BARS_TREE = {
    "schema": "celebamask-hq",
    "defaults": {"resolution": 16, "epochs": 4, "trunk": "small-cnn:8"},
    "tree": {"name": "image", "epochs": 0, "children": [
        {"name": "mouth", "parts": ["mouth"], "epochs": 8}, {"name": "hair", "parts": ["hair"]}]},
}


@pytest.mark.parametrize("fusion_init", ["skill", "area"])
def test_parent_reading_children_keeps_the_label_signal(fusion_init, monkeypatch):
    # the label sits in a small bar; three quarters of the parent's pixels are noise. With
    # no fine-tuning (epochs 0 at the root) the root is exactly its starting point: the
    # skill-weighted fusion of its children keeps what the mouth node learned, while an
    # area-weighted one lets the noise block drown it (similarity scales with weight²).
    # The choice on validation rows (which would carry the mouth forward) is held at the
    # start here: this is about the start.
    from biasaudit.heml import parents

    monkeypatch.setattr(parents, "choose_parent", lambda hits, default, **kw: "fine-tuned")
    images, maps, y = make_bars(160)
    heml = HEML(tree=load_recipe(BARS_TREE), device="cpu", seed=0, init_weights="area",
                fusion_init=fusion_init).fit(images, maps, y)
    mouth, root = heml.metrics_["mouth"]["precision_at_1"], heml.metrics_["image"]["precision_at_1"]
    start = heml.metrics_["image"]["init"]["fusion_start"]
    assert mouth >= 0.85 and heml.models_["image"].n_children == 2
    if fusion_init == "skill":
        assert start["mouth"] > start["hair"]
        assert root >= mouth - 0.1
    else:
        assert start["mouth"] < 0.05
        assert root <= 0.7


def test_self_supervision_defaults_to_pixels_only():
    heml = HEML(supervision="self")
    assert not heml.reads_children() and HEML().reads_children()
    with pytest.raises(ValidationError, match="parent_inputs"):
        HEML(tree=load_recipe(TREE), parent_inputs="both", device="cpu").fit(*make_faces(16))


def test_embed_subset_of_a_fused_parent_matches_full_embed(fitted, faces):
    images, maps, _ = faces
    full = fitted.embed(images[:6], maps[:6])
    only = fitted.embed(images[:6], maps[:6], nodes=["image"])
    assert list(only) == ["image"]
    np.testing.assert_allclose(only["image"], full["image"], atol=1e-6)


def test_tree_distance_is_the_skill_weighted_mean_and_matches_the_matrix(fitted, faces):
    images, maps, _ = faces
    weights = node_weights(fitted)
    assert sum(weights.values()) == pytest.approx(1.0)
    # hair is random colour (no label skill); the mouth carries the label
    assert weights["mouth"] > weights["hair"]
    tree = explain_pair(fitted, images[0], maps[0], images[4], maps[4])
    present = {n.node: n.snr_distance for n in tree.nodes if n.snr_distance is not None}
    expected = sum(weights[k] * d for k, d in present.items()) / sum(weights[k] for k in present)
    assert tree.tree_distance == pytest.approx(expected)
    assert tree.root_distance == tree.distance("image")
    emb = fitted.embed(images[[0, 4]], maps[[0, 4]])
    matrix = tree_distance_matrix(emb, weights)
    assert matrix.shape == (2, 2) and matrix[0, 0] == pytest.approx(0.0, abs=1e-6)
    assert matrix[0, 1] == pytest.approx(expected, rel=1e-4)


def test_same_label_pairs_are_closer_in_the_tree_distance(fitted, faces):
    images, maps, y = faces
    rows = fitted.split_["test"][:24]
    emb = fitted.embed(images[rows], maps[rows])
    d = tree_distance_matrix(emb, node_weights(fitted))
    same = y[rows][:, None] == y[rows][None, :]
    off = ~np.eye(len(rows), dtype=bool)
    assert d[~same].mean() > 5 * d[same & off].mean()


@pytest.mark.parametrize("name, message", [
    ("a/b", "contains '/'"), ("up per", "contains ' '"), ("_baseline", "reserved"), ("..", "contains '.'"),
])
def test_recipe_node_names_must_be_safe_folder_names(name, message):
    recipe = {"schema": "celebamask-hq", "tree": {"name": "image", "children": [
        {"name": name, "parts": ["hair"]}, "mouth"]}}
    with pytest.raises(ValidationError, match=message):
        load_recipe(recipe)


def test_recipe_node_names_differing_only_in_case_are_refused():
    recipe = {"schema": "celebamask-hq", "tree": {"name": "image", "children": [
        {"name": "Hair", "parts": ["hair"]}, {"name": "hair", "parts": ["mouth"]}]}}
    with pytest.raises(ValidationError, match="differ only in letter case"):
        load_recipe(recipe)


def test_recipe_embedder_option():
    recipe = {**TREE, "defaults": {**TREE["defaults"], "embedder": "dgml"}}
    assert {n.options.embedder for n in load_recipe(recipe).nodes.values()} == {"dgml"}
    with pytest.raises(ValidationError, match="'embedder' option must be 'mlp' or 'dgml'"):
        load_recipe({**TREE, "defaults": {"embedder": "vit"}})


def test_tree_json_lists_every_node(fitted, tmp_path):
    import json

    fitted.save(tmp_path / "m")
    doc = json.loads((tmp_path / "m" / "tree.json").read_text())
    nodes = {n["name"]: n for n in doc["nodes"]}
    assert set(nodes) == set(fitted.tree_.nodes)
    assert nodes["hair+ear"]["parts"] == ["hair", "l_ear"] and nodes["hair+ear"]["children"] == ["hair", "ear"]
    assert nodes["hair"]["parent"] == "hair+ear" and nodes["image"]["parent"] is None
    assert load_recipe(doc).nodes.keys() == fitted.tree_.nodes.keys()


def test_configure_threads_follows_affinity_and_env(monkeypatch):
    from biasaudit.core import threads

    before = torch.get_num_threads()
    try:
        monkeypatch.setattr(threads.os, "sched_getaffinity", lambda pid: {0}, raising=False)
        monkeypatch.delenv("BIASAUDIT_THREADS", raising=False)
        monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
        assert threads.available_cpus() == 1
        assert threads.configure_threads() == 1 and torch.get_num_threads() == 1
        monkeypatch.setenv("OMP_NUM_THREADS", "3")
        assert threads.configure_threads() == 3  # a user's OpenMP setting wins over the affinity
        monkeypatch.setenv("BIASAUDIT_THREADS", "2")
        assert threads.configure_threads() == 2 and torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_passive_openmp_only_before_torch(monkeypatch):
    import sys

    from biasaudit.core import threads

    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    assert "torch" in sys.modules and threads.passive_openmp() is False
    monkeypatch.delitem(sys.modules, "torch")
    assert threads.passive_openmp() is True
    import os

    assert os.environ["OMP_WAIT_POLICY"] == "PASSIVE" and os.environ["GOMP_SPINCOUNT"] == "0"


# a training step's allocation pattern: several activation-sized blocks alive at once,
# all freed at the end of the step
_FIVE_STEPS_FAULTS = """
import resource
import numpy as np
def step():
    blocks = [np.ones(6 << 20, np.uint8) for _ in range(8)]
    return sum(int(b[::4096].sum()) for b in blocks)
step()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(5):
    step()
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="the heap settings are glibc's malloc options")
def test_a_kept_heap_reuses_what_a_training_step_freed():
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_") and k != "GLIBC_TUNABLES"}
    faults = {}
    for keep in (False, True):
        code = ("from biasaudit.core.threads import keep_freed_heap\nassert keep_freed_heap()\n" if keep else "")
        done = subprocess.run([sys.executable, "-c", code + _FIVE_STEPS_FAULTS], capture_output=True, text=True,
                              env=env, check=True)
        faults[keep] = int(done.stdout.split()[-1])
    # glibc's default hands the 48 MB back to the kernel at the end of every step and faults
    # them in again at the next (about 4,000 faults a step); a kept heap reuses them
    assert faults[True] * 10 < faults[False], faults


def test_a_users_own_malloc_settings_are_left_alone(monkeypatch):
    from biasaudit.core import threads

    monkeypatch.setattr(threads, "_heap_kept", False)
    monkeypatch.setenv("MALLOC_TRIM_THRESHOLD_", "1000000")
    assert threads.keep_freed_heap() is False
    monkeypatch.delenv("MALLOC_TRIM_THRESHOLD_")
    monkeypatch.setenv("GLIBC_TUNABLES", "glibc.malloc.mmap_threshold=1000000")
    assert threads.keep_freed_heap() is False
