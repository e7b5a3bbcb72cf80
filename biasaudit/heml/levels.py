"""The nodes of one tree level train side by side, one worker process per CPU.

A node reads only its children, which the level below trained, so the nodes of a level
are independent. On a CPU the small node models (32–48 px crops, batch 64) keep two
torch threads busy only part of the time: the 11 leaves of the default face tree trained
in 138.8 s in this process on two threads and in 96.1 s in two one-thread workers (medians
of 3, SynthFaces 2,000 × 128, self-supervised; `reports/benchmarks.md`, HEML v2, session
6; the whole default scan: 0.91×, since the upper levels gain little). So a fit on the CPU
trains each level's nodes in worker processes with ``threads // workers`` torch threads
each (:func:`plan_level`); levels with a single node (the face, the head, the root) train
in this process on every thread.

Workers are forked from this process at each level: they see the fitted children, the
images and the part maps without copying them, run exactly :meth:`HEML._fit_group`, and
send back the trained node. A node trained in a worker is bit-identical to one trained
here with the same number of threads (a test checks it), and the Ray engine
(:mod:`biasaudit.heml.ray_engine`) gives its tasks the same thread count, so the two
engines agree. Forking needs Linux and a model on the CPU; elsewhere, and for small fits
where starting workers costs more than it saves (fewer than :data:`MIN_PARALLEL_IMAGES`
training images), the level trains in this process.

>>> plan_level(n_groups=11, n_images=1400, n_jobs=1, threads=2, device="cpu")
LevelPlan(workers=1, threads=2)
>>> plan_level(n_groups=11, n_images=1400, n_jobs=2, threads=2, device="cpu")
LevelPlan(workers=2, threads=1)
"""

from __future__ import annotations

import multiprocessing
import os
import sys
from dataclasses import dataclass
from typing import Any

import numpy as np

from biasaudit.core.errors import BiasauditError, ValidationError

#: Below this many images in the fit, a level trains in this process: forking and sending
#: the trained models back cost about a second per level, more than a tiny level takes.
MIN_PARALLEL_IMAGES = 256


@dataclass(frozen=True)
class LevelPlan:
    """How one level trains: ``workers`` processes (1: in this process), ``threads`` torch
    threads in each."""

    workers: int
    threads: int


def check_n_jobs(n_jobs: Any) -> None:
    if n_jobs is None:
        return
    if isinstance(n_jobs, bool) or not isinstance(n_jobs, (int, np.integer)) or n_jobs == 0 or n_jobs < -1:
        raise ValidationError(
            f"The 'n_jobs' parameter must be None (one worker per CPU when it pays off), -1 (one per CPU), "
            f"or a positive int (1: train in this process). Got {n_jobs!r} instead."
        )


def fork_available() -> bool:
    """Workers are forked (they inherit the fitted children and the images); macOS and
    Windows cannot fork a process that runs torch safely."""
    return sys.platform.startswith("linux") and "fork" in multiprocessing.get_all_start_methods()


def plan_level(*, n_groups: int, n_images: int, n_jobs: int | None, threads: int, device: str) -> LevelPlan:
    """Workers and threads for a level of ``n_groups`` independent groups.

    ``n_jobs`` as in scikit-learn: None picks one worker per CPU when the fit has at least
    :data:`MIN_PARALLEL_IMAGES` images, -1 one per CPU always, k ≥ 1 at most k. The
    workers share the ``threads`` this process would use (never more workers than
    threads, unless k asks for them), so the CPUs are not oversubscribed. On a GPU (one device) and where forking is unsafe, one worker.
    """
    from biasaudit.core.threads import available_cpus

    threads = max(1, int(threads))
    # never more workers than threads: a user who limits biasaudit to one thread
    # (BIASAUDIT_THREADS=1) gets one CPU's worth of work, not one per CPU
    cpus = min(available_cpus(), threads)
    if n_jobs is None:
        wanted = cpus if n_images >= MIN_PARALLEL_IMAGES else 1
    elif n_jobs == -1:
        wanted = cpus
    else:
        wanted = int(n_jobs)
    workers = min(wanted, n_groups)
    if workers < 2 or device != "cpu" or not fork_available():
        return LevelPlan(workers=1, threads=threads)
    return LevelPlan(workers=workers, threads=max(1, threads // workers))


def group_state(heml, group: list[str]) -> dict[str, Any]:
    """What a worker needs of the fit to train ``group``: the tree and the group's children."""
    kids = [c for name in group for c in heml.tree_.nodes[name].children]
    return {
        "tree": heml.tree_, "classes": heml.classes_,
        "models": {c: heml.models_[c] for c in kids}, "losses": {c: heml.losses_[c] for c in kids},
        "metrics": {c: heml.metrics_[c] for c in kids}, "history": {c: heml.history_[c] for c in kids},
        "area": {c: heml.area_[c] for c in kids},
        "emb": {c: heml._all_emb[c] for c in kids if c in heml._all_emb},
    }


def group_result(heml, group: list[str]) -> dict[str, Any]:
    """The trained nodes of ``group``, as a worker sends them back."""
    return {name: {"model": heml.models_[name], "loss": heml.losses_[name], "metrics": heml.metrics_[name],
                   "history": heml.history_[name], "area": heml.area_[name],
                   "emb": heml._all_emb.get(name)} for name in group}


def merge_group(heml, group: list[str], out: dict[str, Any]) -> None:
    """Put a worker's trained nodes into ``heml``: the state a fit in this process leaves."""
    for name in group:
        node = out[name]
        model = node["model"]
        if not model.trunk_trainable:  # one frozen trunk for the whole tree, as in this process
            model.trunk = heml._frozen_trunks.setdefault(model.trunk_spec, model.trunk)
        heml.models_[name] = model
        heml.losses_[name] = node["loss"]
        heml.metrics_[name] = node["metrics"]
        heml.history_[name] = node["history"]
        heml.area_[name] = node["area"]
        if node["emb"] is not None:
            heml._all_emb[name] = node["emb"]


# What a forked worker reads: set just before the level's workers fork, cleared after.
_LEVEL: dict[str, Any] = {}


def fit_level_in_workers(heml, groups: list[list[str]], plan: LevelPlan, fit_args: tuple,
                         *, on_group=None) -> None:
    """Train ``groups`` (one tree level) in ``plan.workers`` forked processes and merge
    them into ``heml`` in the level's order; ``on_group(group)`` runs after each merge."""
    from concurrent.futures import ProcessPoolExecutor
    from concurrent.futures.process import BrokenProcessPool

    from biasaudit.core.progress import progress

    names = [name for group in groups for name in group]
    _LEVEL.update(heml=heml, fit_args=fit_args)
    try:
        ctx = multiprocessing.get_context("fork")
        with ProcessPoolExecutor(max_workers=plan.workers, mp_context=ctx, initializer=_start_worker,
                                 initargs=(plan.threads,)) as pool:
            futures = [pool.submit(_fit_group_in_worker, group) for group in groups]
            desc = f"HEML {len(names)} nodes on {plan.workers} workers"
            for group, future in progress(zip(groups, futures, strict=True), desc=desc, total=len(groups),
                                          unit="node"):
                merge_group(heml, group, future.result())
                if on_group is not None:
                    on_group(group)
    except BrokenProcessPool as err:
        raise BiasauditError(
            f"A HEML worker process training {', '.join(names)} stopped without a result (killed, most "
            f"often for lack of memory: each of the {plan.workers} workers holds its nodes' crops). "
            f"Train every node in this process instead: BIASAUDIT_THREADS=1 for the CLI, or HEML(n_jobs=1)."
        ) from err
    finally:
        _LEVEL.clear()


def _start_worker(threads: int) -> None:
    import torch

    # one bar per worker would interleave on the terminal; the parent shows the level's
    os.environ["BIASAUDIT_PROGRESS"] = "0"
    torch.set_num_threads(threads)


def _fit_group_in_worker(group: list[str]) -> dict[str, Any]:
    heml = _LEVEL["heml"]
    heml._fit_group(group, *_LEVEL["fit_args"])
    return group_result(heml, group)
