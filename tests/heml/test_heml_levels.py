"""The nodes of a tree level trained in forked worker processes (biasaudit.heml.levels)."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from heml_fixtures import TREE

from biasaudit.core.errors import BiasauditError, ValidationError
from biasaudit.heml import HEML, load_recipe
from biasaudit.heml.levels import MIN_PARALLEL_IMAGES, LevelPlan, fork_available, plan_level


def test_the_workers_share_the_threads_of_this_process(monkeypatch):
    monkeypatch.setattr("biasaudit.core.threads.available_cpus", lambda: 4)
    big = MIN_PARALLEL_IMAGES
    if fork_available():
        assert plan_level(n_groups=11, n_images=big, n_jobs=None, threads=4, device="cpu") == LevelPlan(4, 1)
        assert plan_level(n_groups=3, n_images=big, n_jobs=None, threads=4, device="cpu") == LevelPlan(3, 1)
        assert plan_level(n_groups=11, n_images=big, n_jobs=2, threads=4, device="cpu") == LevelPlan(2, 2)
        assert plan_level(n_groups=11, n_images=10, n_jobs=-1, threads=4, device="cpu") == LevelPlan(4, 1)
    # a small fit, one node, one job, or a GPU: everything in this process on every thread
    assert plan_level(n_groups=11, n_images=big - 1, n_jobs=None, threads=4, device="cpu") == LevelPlan(1, 4)
    assert plan_level(n_groups=1, n_images=big, n_jobs=None, threads=4, device="cpu") == LevelPlan(1, 4)
    assert plan_level(n_groups=11, n_images=big, n_jobs=1, threads=4, device="cpu") == LevelPlan(1, 4)
    assert plan_level(n_groups=11, n_images=big, n_jobs=None, threads=4, device="cuda") == LevelPlan(1, 4)
    # BIASAUDIT_THREADS=1 on a 4-CPU machine: one thread's worth of work, in this process
    assert plan_level(n_groups=11, n_images=big, n_jobs=None, threads=1, device="cpu") == LevelPlan(1, 1)


@pytest.mark.parametrize("bad", [0, -2, 1.5, "2", True])
def test_n_jobs_must_be_none_minus_one_or_positive(faces, bad):
    images, maps, y = faces
    with pytest.raises(ValidationError, match="n_jobs"):
        HEML(tree=load_recipe(TREE), device="cpu", n_jobs=bad).fit(images, maps, y)


@pytest.mark.skipif(not fork_available(), reason="workers are forked (Linux only)")
def test_nodes_trained_in_workers_equal_nodes_trained_here(faces, fitted, monkeypatch):
    images, maps, y = faces
    calls = []
    from biasaudit.heml import levels

    real = levels.fit_in_workers
    monkeypatch.setattr("biasaudit.heml.estimator.fit_in_workers",
                        lambda heml, steps, *a, **k: calls.append(steps) or real(heml, steps, *a, **k))
    # the package fixture fits in this process on one thread; two workers of one thread each
    parallel = HEML(tree=load_recipe(TREE), device="cpu", seed=0, n_jobs=2).fit(images, maps, y)
    in_workers, here = LevelPlan(workers=2, threads=1), LevelPlan(workers=1, threads=1)
    assert calls == [[(["mouth"], in_workers), (["hair"], in_workers), (["ear"], in_workers),
                      (["hair+ear"], here), (["image"], here)]]
    assert torch.get_num_threads() == 1  # the workers' thread count never leaks into this process
    assert list(parallel.models_) == list(fitted.models_)
    for name in fitted.models_:
        a, b = fitted.models_[name].state_dict(), parallel.models_[name].state_dict()
        assert a.keys() == b.keys()
        for key in a:
            assert torch.equal(a[key], b[key]), (name, key)
        same = {k: v for k, v in fitted.metrics_[name].items() if k != "train_seconds"}
        assert same == {k: v for k, v in parallel.metrics_[name].items() if k != "train_seconds"}
        assert fitted.history_[name] == parallel.history_[name]
    np.testing.assert_array_equal(fitted.embed(images, maps)["image"], parallel.embed(images, maps)["image"])


@pytest.mark.skipif(not fork_available(), reason="workers are forked (Linux only)")
def test_dgml_parents_trained_in_workers_keep_their_attention_prior(faces):
    images, maps, y = faces
    here = HEML(tree=load_recipe(TREE), device="cpu", seed=0, embedder="dgml", n_jobs=1).fit(images, maps, y)
    there = HEML(tree=load_recipe(TREE), device="cpu", seed=0, embedder="dgml", n_jobs=2).fit(images, maps, y)
    assert getattr(there.models_["image"], "attention_prior", None)  # the root reads the mouth leaf's skill
    for name in here.models_:
        assert getattr(here.models_[name], "attention_prior", None) == getattr(there.models_[name],
                                                                                "attention_prior", None)
    a, b = here.embed(images, maps), there.embed(images, maps)
    for name in a:
        np.testing.assert_array_equal(a[name], b[name])


def _killed(*args):
    os._exit(9)  # what the kernel's out-of-memory killer leaves: no result, no exception


@pytest.mark.skipif(not fork_available(), reason="workers are forked (Linux only)")
def test_a_worker_that_dies_names_the_nodes_and_the_fix(faces, monkeypatch):
    images, maps, y = faces
    monkeypatch.setattr("biasaudit.heml.levels._fit_group_in_worker", _killed)
    with pytest.raises(BiasauditError, match=r"mouth, hair, ear.*n_jobs=1"):
        HEML(tree=load_recipe(TREE), device="cpu", seed=0, n_jobs=2).fit(images, maps, y)


def test_a_parent_trains_as_soon_as_its_children_are_trained(monkeypatch):
    """Simulated clock: each worker node takes its duration; ``low`` (mouth + nose) starts
    while ``l_ear``, a node of the level below, still trains."""
    from concurrent.futures import Future
    from types import SimpleNamespace

    from biasaudit.heml import levels

    tree = load_recipe({"schema": "celebamask-hq", "tree": {"name": "image", "children": [
        {"name": "top", "children": ["hair", "l_ear"]}, {"name": "low", "children": ["mouth", "nose"]}]}})
    duration = {"hair": 1, "l_ear": 5, "mouth": 1, "nose": 1, "top": 1, "low": 1}
    clock, running = [0], {}

    class Pool:
        def submit(self, fn, group, threads, state):
            assert fn is levels._fit_group_in_worker and threads == 1
            future = Future()
            running[future] = clock[0] + duration[group[0]]
            return future

    def next_to_finish(futures, return_when):
        future = min(running, key=running.get)
        clock[0] = running.pop(future)
        future.set_result(None)
        return {future}, set(futures) - {future}

    here = []
    heml = SimpleNamespace(tree_=tree, _fit_group=lambda group, *args: here.append((group, clock[0])))
    monkeypatch.setattr(levels, "wait", next_to_finish)
    monkeypatch.setattr(levels, "group_state", lambda heml, group, tree: None)
    monkeypatch.setattr(levels, "merge_group", lambda heml, group, out: None)
    workers, alone = LevelPlan(workers=2, threads=1), LevelPlan(workers=1, threads=2)
    steps = [([name], workers) for name in ("hair", "l_ear", "mouth", "nose", "top", "low")] + [(["image"], alone)]
    trained = set()
    done = [g[0] for g in levels._train_when_ready(heml, steps, (), Pool(), 2, trained)]
    assert done == ["hair", "mouth", "nose", "low", "l_ear", "top", "image"]
    assert here == [(["image"], 6)] and trained == set(tree.nodes)


def test_a_worker_gets_the_metrics_of_every_node_below_the_children(fitted):
    """A parent's choice looks for skill anywhere below a child (`HEML._carries_label`): a
    worker or a Ray task that had only the children's metrics could choose differently."""
    import copy

    from biasaudit.heml.levels import group_state

    heml = copy.copy(fitted)
    heml._all_emb = {}  # a fit's children embeddings, dropped when it ends
    state = group_state(heml, ["image"], tree=False)
    assert set(state["models"]) == {"mouth", "hair+ear"} and "tree" not in state
    assert set(state["metrics"]) == {"mouth", "hair+ear", "hair", "ear"}
