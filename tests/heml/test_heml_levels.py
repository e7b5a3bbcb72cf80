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

    real = levels.fit_level_in_workers
    monkeypatch.setattr("biasaudit.heml.estimator.fit_level_in_workers",
                        lambda heml, groups, plan, *a, **k: calls.append((groups, plan)) or real(heml, groups, plan,
                                                                                                   *a, **k))
    # the package fixture fits in this process on one thread; two workers of one thread each
    parallel = HEML(tree=load_recipe(TREE), device="cpu", seed=0, n_jobs=2).fit(images, maps, y)
    assert calls == [([["mouth"], ["hair"], ["ear"]], LevelPlan(workers=2, threads=1))]
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


def _killed(group):
    os._exit(9)  # what the kernel's out-of-memory killer leaves: no result, no exception


@pytest.mark.skipif(not fork_available(), reason="workers are forked (Linux only)")
def test_a_worker_that_dies_names_the_nodes_and_the_fix(faces, monkeypatch):
    images, maps, y = faces
    monkeypatch.setattr("biasaudit.heml.levels._fit_group_in_worker", _killed)
    with pytest.raises(BiasauditError, match=r"mouth, hair, ear.*n_jobs=1"):
        HEML(tree=load_recipe(TREE), device="cpu", seed=0, n_jobs=2).fit(images, maps, y)
