"""HEML's nodes train side by side, one worker process per CPU.

A node reads only its children, so the nodes of a level are independent, and a node can
start as soon as its own children are trained. On a CPU the small node models (32–48 px
crops, batch 64) keep two torch threads busy only part of the time: the 11 leaves of the
default face tree trained in 138.8 s in this process on two threads and in 96.1 s in two
one-thread workers (medians of 3, SynthFaces 2,000 × 128, self-supervised;
`reports/benchmarks.md`, HEML v2, session 6). So a fit on the CPU gives each level with
several nodes worker processes with ``threads // workers`` torch threads each
(:func:`plan_level`), and :func:`fit_in_workers` starts each such node once its children
are trained, level or no level, so that the next level fills the CPUs the last nodes of
a level leave idle. Levels with a single node (the face, the head, the root) train in
this process on every thread.

The workers are forked from this process once, before the first node trains: they see
the images and the part maps without copying them, receive each node's trained children
(:func:`group_state`), run exactly :meth:`HEML._fit_group`, and send back the trained
node. A node's thread count is its level's whatever runs beside it, so a node trained in
a worker is bit-identical to one trained here with the same number of threads (a test
checks it), and the Ray engine (:mod:`biasaudit.heml.ray_engine`) gives its tasks the
same count, so the two engines agree. Forking needs Linux and a model on the CPU;
elsewhere, and for small fits where starting workers costs more than it saves (fewer
than :data:`MIN_PARALLEL_IMAGES` training images), every node trains in this process.

>>> plan_level(n_groups=11, n_images=1400, n_jobs=1, threads=2, device="cpu")
LevelPlan(workers=1, threads=2)
>>> plan_level(n_groups=11, n_images=1400, n_jobs=2, threads=2, device="cpu")
LevelPlan(workers=2, threads=1)
"""

from __future__ import annotations

import multiprocessing
import os
import sys
from concurrent.futures import FIRST_COMPLETED, wait
from dataclasses import dataclass
from typing import Any

import numpy as np

from biasaudit.core.errors import BiasauditError, ValidationError

#: Below this many images in the fit, every node trains in this process: forking the workers
#: and sending models back and forth cost about a second, more than a tiny tree takes.
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


def group_state(heml, group: list[str], *, tree: bool = True) -> dict[str, Any]:
    """What a worker needs of the fit to train ``group``: the group's children, the metrics
    of every node below them (a parent's choice looks for skill anywhere below a child,
    :meth:`HEML._carries_label`) and, with ``tree``, the tree and the label classes (a
    forked worker has those already)."""
    kids = [c for name in group for c in heml.tree_.nodes[name].children]
    below, stack = [], list(kids)
    while stack:
        node = stack.pop()
        below.append(node)
        stack.extend(heml.tree_.nodes[node].children)
    return {
        **({"tree": heml.tree_, "classes": heml.classes_} if tree else {}),
        "models": {c: heml.models_[c] for c in kids}, "losses": {c: heml.losses_[c] for c in kids},
        "metrics": {d: heml.metrics_[d] for d in below}, "history": {c: heml.history_[c] for c in kids},
        "area": {c: heml.area_[c] for c in kids},
        "emb": {c: heml._all_emb[c] for c in kids if c in heml._all_emb},
    }


def install_state(heml, state: dict[str, Any]) -> None:
    """Give a worker's copy of the fit what :func:`group_state` sent."""
    if "tree" in state:
        heml.tree_, heml.classes_ = state["tree"], state["classes"]
    for attr, key in (("models_", "models"), ("losses_", "losses"), ("metrics_", "metrics"),
                      ("history_", "history"), ("area_", "area"), ("_all_emb", "emb")):
        getattr(heml, attr).update(state[key])


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


# What a forked worker reads: set just before the workers fork, cleared after the fit.
_FIT: dict[str, Any] = {}


def fit_in_workers(heml, steps: list[tuple[list[str], LevelPlan]], fit_args: tuple, *, on_group=None) -> None:
    """Train every group of ``steps`` (bottom-up, each with its level's plan) and merge it
    into ``heml``; ``on_group(group)`` runs after each merge.

    A group whose level plans several workers trains in a worker process on that plan's
    threads as soon as its children are trained, so the next level's nodes fill the CPUs
    that a level's last nodes leave idle. A group whose level plans one worker (the face,
    the head, the root) trains in this process on every thread once no worker runs. The
    threads in use never exceed the fit's, and each node trains on its level's thread
    count whatever ran beside it, so the bits are those of a fit level by level. Results
    are kept in the order of ``steps``, as a fit in this process keeps them.
    """
    from concurrent.futures import ProcessPoolExecutor
    from concurrent.futures.process import BrokenProcessPool

    from biasaudit.core.progress import progress

    workers = max(plan.workers for _, plan in steps)
    trained: set[str] = set()
    _FIT.update(heml=heml, fit_args=fit_args)
    try:
        ctx = multiprocessing.get_context("fork")
        with ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=_start_worker) as pool:
            groups = _train_when_ready(heml, steps, fit_args, pool, workers, trained)
            unit = "node" if all(len(g) == 1 for g, _ in steps) else "group"
            desc = f"HEML tree on {workers} workers"
            for group in progress(groups, desc=desc, total=len(steps), unit=unit):
                if on_group is not None:
                    on_group(group)
    except BrokenProcessPool as err:
        lost = [name for group, plan in steps if plan.workers > 1 for name in group if name not in trained]
        raise BiasauditError(
            f"A HEML worker process training {', '.join(lost)} stopped without a result (killed, most "
            f"often for lack of memory: each of the {workers} workers holds its nodes' crops). "
            f"Train every node in this process instead: BIASAUDIT_THREADS=1 for the CLI, or HEML(n_jobs=1)."
        ) from err
    finally:
        _FIT.clear()
    order = [name for group, _ in steps for name in group]
    for attr in ("models_", "losses_", "metrics_", "history_", "area_", "_all_emb"):
        table = getattr(heml, attr)
        setattr(heml, attr, {name: table[name] for name in order if name in table})


def _train_when_ready(heml, steps, fit_args, pool, workers: int, trained: set[str]):
    """Yield each group of ``steps`` once it is trained and merged (see :func:`fit_in_workers`)."""
    budget = max(plan.workers * plan.threads for _, plan in steps)
    nodes = heml.tree_.nodes
    pending = list(steps)
    running: dict[Any, tuple[list[str], LevelPlan]] = {}

    def ready(group: list[str]) -> bool:
        return all(child in trained for name in group for child in nodes[name].children)

    while pending or running:
        for step in [s for s in pending if s[1].workers > 1 and ready(s[0])]:
            in_use = sum(plan.threads for _, plan in running.values())
            if len(running) >= workers or in_use + step[1].threads > budget:
                break
            pending.remove(step)
            state = group_state(heml, step[0], tree=False)
            running[pool.submit(_fit_group_in_worker, step[0], step[1].threads, state)] = step
        if running:  # a group for this process takes every thread: it waits for the workers
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in sorted(finished, key=lambda f: steps.index(running[f])):
                group, _plan = running.pop(future)
                merge_group(heml, group, future.result())
                trained.update(group)
                yield group
            continue
        # nothing runs, so every ready group left is one for this process (children come first)
        group, _plan = next(s for s in pending if ready(s[0]))
        pending.remove((group, _plan))
        heml._fit_group(group, *fit_args)
        trained.update(group)
        yield group


def _start_worker() -> None:
    # one bar per worker would interleave on the terminal; the parent shows the fit's
    os.environ["BIASAUDIT_PROGRESS"] = "0"


def _fit_group_in_worker(group: list[str], threads: int, state: dict[str, Any]) -> dict[str, Any]:
    import torch

    torch.set_num_threads(threads)
    heml = _FIT["heml"]  # this worker's copy, forked before any node was trained
    install_state(heml, state)
    heml._fit_group(group, *_FIT["fit_args"])
    return group_result(heml, group)
