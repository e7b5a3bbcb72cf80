"""HEML's tree levels on Ray (``--engine ray``): the nodes of one level are independent
(each reads only its children, trained at the level below), so each trains as its own
Ray task, with one GPU when the cluster has them.

A task runs exactly the code the local engine runs (:meth:`HEML._fit_group`) on a copy
of the estimator holding the node's children, with the same seeds and the same number
of torch threads as this process, so the fitted models, metrics and embeddings are the
ones a local fit gives. The images and part maps go to the object store once per fit.

:func:`embed_on_ray` runs :meth:`HEML.embed` as a Ray Data stage over the blocks of
images the local engine embeds one at a time, in an actor pool holding the models.
:func:`embed_workspace_on_ray` does the same for a whole workspace in one stage: the
actors (and the models they hold) are started once, and each reads its blocks' images and
part maps from the workspace itself, so the driver never holds the images.

>>> from biasaudit.core.engine import use_engine
>>> with use_engine("ray"):                                   # doctest: +SKIP
...     HEML(tree="celebamask-hq", supervision="self").fit(images, maps)
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import numpy as np

from biasaudit.core.threads import keep_freed_heap


class RayLevels:
    """Trains the groups of one tree level as parallel Ray tasks and merges the results
    into ``heml`` in the level's order (the same state a sequential fit leaves)."""

    def __init__(self, heml, images: np.ndarray, label_maps: np.ndarray, y_codes: np.ndarray,
                 train_mask: np.ndarray, test_mask: np.ndarray) -> None:
        import torch

        from biasaudit.core.engine import ray_resources, ray_session

        ray = ray_session()
        self.heml = heml
        self.threads = torch.get_num_threads()
        _, gpus = ray_resources()
        self.num_gpus = 1 if gpus and heml.device != "cpu" else 0
        # part ids fit in 16 bits: a quarter of the transfer of the int64 maps
        compact = label_maps.astype(np.uint16) if label_maps.max(initial=0) < 2 ** 16 else label_maps
        self.refs = [ray.put(a) for a in (images, compact, y_codes, train_mask, test_mask)]
        self.maps_dtype = label_maps.dtype
        self._task = ray.remote(_fit_group_task).options(num_cpus=1, num_gpus=self.num_gpus)

    def fit(self, groups: list[list[str]], *, threads: int | None = None) -> None:
        """Train ``groups`` as parallel tasks with ``threads`` torch threads each (default:
        this process's count; the local engine passes the count its workers would use)."""
        import ray

        from biasaudit.heml.levels import group_state, merge_group

        heml = self.heml
        params = heml.get_params()
        futures = [self._task.remote(params, group_state(heml, group), group, *self.refs, str(self.maps_dtype),
                                     threads or self.threads)
                   for group in groups]
        for group, out in zip(groups, ray.get(futures), strict=True):
            merge_group(heml, group, out)


def _fit_group_task(params: dict[str, Any], state: dict[str, Any], group: list[str], images, label_maps,
                    y_codes, train_mask, test_mask, maps_dtype: str, threads: int) -> dict[str, Any]:
    """One group of one level, on a Ray worker (see the module docstring)."""
    import torch

    from biasaudit.heml.estimator import HEML
    from biasaudit.heml.levels import group_result, install_state
    from biasaudit.heml.training import resolve_device

    # the local fit's thread count: CPU reductions are summed in per-thread chunks, so the
    # same count gives the same bits
    torch.set_num_threads(threads)
    keep_freed_heap()  # the local fit's heap settings (see biasaudit.core.threads)
    heml = HEML(**params)
    heml.models_, heml.losses_, heml.metrics_, heml.history_, heml.area_, heml._all_emb = {}, {}, {}, {}, {}, {}
    install_state(heml, state)
    heml._frozen_trunks = {}
    setup = resolve_device(heml.device)
    heml.device_ = str(setup.device)
    label_maps = np.asarray(label_maps).astype(maps_dtype)
    heml._fit_group(group, images, label_maps, y_codes, train_mask, test_mask, setup)
    return group_result(heml, group)


def embed_on_ray(heml, images: np.ndarray, label_maps: np.ndarray, *, nodes: list[str],
                 batch_size: int) -> dict[str, np.ndarray]:
    """:meth:`HEML.embed` as a Ray Data stage: one item per block of ``batch_size`` images
    (the blocks the local engine uses, so the bits are the same), embedded by an actor pool
    that holds the models (one GPU per actor when the cluster has GPUs)."""
    import torch

    from biasaudit.core.engine import ray_resources, ray_session

    ray = ray_session()
    cpus, gpus = ray_resources()
    per_actor = 1 if gpus and heml.device != "cpu" else 0
    compact = label_maps.astype(np.uint16) if label_maps.max(initial=0) < 2 ** 16 else label_maps
    refs = [ray.put(heml), ray.put(images), ray.put(compact)]
    starts = list(range(0, len(images), batch_size))
    ds = ray.data.from_items([{"lo": lo} for lo in starts], override_num_blocks=len(starts))
    out = ds.map_batches(
        _EmbedActor, batch_size=1, batch_format="numpy", zero_copy_batch=False,
        compute=ray.data.ActorPoolStrategy(size=max(1, min(gpus if per_actor else cpus, len(starts)))),
        num_cpus=1, num_gpus=per_actor,
        fn_constructor_kwargs={"refs": refs, "nodes": nodes, "batch_size": batch_size,
                               "maps_dtype": str(label_maps.dtype), "threads": torch.get_num_threads()},
    )
    dims = [heml.models_[n].embedding_dim for n in nodes]
    blocks: dict[int, np.ndarray] = {}
    for batch in out.iter_batches(batch_size=None, batch_format="numpy"):
        for lo, rows, data in zip(batch["lo"].tolist(), batch["rows"].tolist(), batch["data"].tolist(), strict=True):
            blocks[int(lo)] = np.frombuffer(data, np.float32).reshape(int(rows), sum(dims))
    if sorted(blocks) != starts:
        from biasaudit.core.errors import BiasauditError

        raise BiasauditError(f"the Ray embedding stage returned {len(blocks)} of {len(starts)} blocks; re-run.")
    whole = np.concatenate([blocks[lo] for lo in starts])
    edges = np.cumsum([0, *dims])
    return {n: np.ascontiguousarray(whole[:, edges[k]:edges[k + 1]]) for k, n in enumerate(nodes)}


def _models_on_device(heml, nodes: list[str]):
    """(device setup, the nodes whose models ``nodes`` need), those models moved to the
    device in eval mode: what every embedding actor does once when it starts."""
    from biasaudit.heml.training import resolve_device

    setup = resolve_device(heml.device)
    needed: set[str] = set()
    for name in nodes:
        needed |= heml._needs(name)
    for name in needed:
        heml.models_[name] = heml.models_[name].to(setup.device).eval()
    return setup, needed


class _EmbedActor:
    """Ray Data actor: a copy of the fitted HEML (models on this worker's device)."""

    def __init__(self, refs: list, nodes: list[str], batch_size: int, maps_dtype: str, threads: int) -> None:
        import ray
        import torch


        torch.set_num_threads(threads)  # the driver's: same count, same bits (see _fit_group_task)
        keep_freed_heap()
        self.heml, self.images, maps = ray.get(refs)
        self.maps = np.asarray(maps).astype(maps_dtype)
        self.nodes, self.batch_size = nodes, batch_size
        self.setup, self.needed = _models_on_device(self.heml, nodes)

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        los, rows, data = [], [], []
        for lo in batch["lo"].tolist():
            lo = int(lo)
            hi = lo + self.batch_size
            emb = self.heml._embed_block(self.images[lo:hi], self.maps[lo:hi], self.needed, self.setup,
                                         self.batch_size)
            whole = np.concatenate([emb[n] for n in self.nodes], axis=1).astype(np.float32)
            los.append(lo)
            rows.append(len(whole))
            data.append(whole.tobytes())
        return {"lo": np.asarray(los, np.int64), "rows": np.asarray(rows, np.int64),
                "data": np.array(data, dtype=object)}


def embed_workspace_on_ray(ws_root, heml, ids: list[str], *, image_size: int, chunk: int,
                           batch_size: int) -> Iterator[tuple[int, dict[str, np.ndarray]]]:
    """(first row, node → float32 embeddings) per block of the images ``ids``, in order,
    from one Ray Data stage over the whole list: one actor pool for the whole embedding,
    not one per chunk. The blocks are those :func:`~biasaudit.heml.workspace.embed_workspace`
    embeds locally (``batch_size`` images, never straddling a ``chunk``), so the bits are
    the local engine's. Ray Data streams the blocks (bounded memory); out-of-order ones wait
    here until their turn."""
    import torch

    from biasaudit.core.engine import ray_resources, ray_session
    from biasaudit.core.errors import BiasauditError

    ray = ray_session()
    cpus, gpus = ray_resources()
    per_actor = 1 if gpus and heml.device != "cpu" else 0
    blocks = [(lo, min(lo + batch_size, top)) for first in range(0, len(ids), chunk)
              for top in [min(first + chunk, len(ids))] for lo in range(first, top, batch_size)]
    if not blocks:
        return
    nodes = list(heml.tree_.nodes)
    dims = [heml.models_[n].embedding_dim for n in nodes]
    edges = np.cumsum([0, *dims])
    # image ids travel as JSON text: one plain string column whatever the ids look like
    items = [{"lo": lo, "ids": json.dumps(ids[lo:hi])} for lo, hi in blocks]
    ds = ray.data.from_items(items, override_num_blocks=len(items))
    out = ds.map_batches(
        _WorkspaceEmbedActor, batch_size=1, batch_format="numpy", zero_copy_batch=False,
        compute=ray.data.ActorPoolStrategy(size=max(1, min(gpus if per_actor else cpus, len(items)))),
        num_cpus=1, num_gpus=per_actor,
        fn_constructor_kwargs={"heml_ref": ray.put(heml), "ws_root": str(ws_root), "image_size": image_size,
                               "nodes": nodes, "batch_size": batch_size, "threads": torch.get_num_threads()},
    )
    starts = [lo for lo, _ in blocks]
    waiting: dict[int, np.ndarray] = {}
    k = 0
    for batch in out.iter_batches(batch_size=None, batch_format="numpy"):
        for lo, rows, data in zip(batch["lo"].tolist(), batch["rows"].tolist(), batch["data"].tolist(), strict=True):
            waiting[int(lo)] = np.frombuffer(data, np.float32).reshape(int(rows), sum(dims))
        while k < len(starts) and starts[k] in waiting:
            whole = waiting.pop(starts[k])
            yield starts[k], {n: np.ascontiguousarray(whole[:, edges[j]:edges[j + 1]]) for j, n in enumerate(nodes)}
            k += 1
    if k != len(starts) or waiting:
        raise BiasauditError(f"the Ray embedding stage returned {k} of {len(starts)} blocks in order; re-run.")


class _WorkspaceEmbedActor:
    """Ray Data actor: a copy of the fitted HEML (models on this worker's device) that
    reads each block's images and part maps from the workspace and embeds them."""

    def __init__(self, heml_ref, ws_root: str, image_size: int, nodes: list[str], batch_size: int,
                 threads: int) -> None:
        import ray
        import torch


        torch.set_num_threads(threads)  # the driver's: same count, same bits (see _fit_group_task)
        keep_freed_heap()
        self.heml = ray.get(heml_ref)
        self.ws_root, self.image_size, self.nodes, self.batch_size = ws_root, image_size, nodes, batch_size
        self.setup, self.needed = _models_on_device(self.heml, nodes)

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        from biasaudit.heml.inputs import check_arrays
        from biasaudit.heml.workspace import load_arrays

        los, rows, data = [], [], []
        for lo, text in zip(batch["lo"].tolist(), batch["ids"].tolist(), strict=True):
            images, maps = load_arrays(self.ws_root, json.loads(text), image_size=self.image_size, workers=1)
            images, maps = check_arrays(images, maps)
            emb = self.heml._embed_block(images, maps, self.needed, self.setup, self.batch_size)
            whole = np.concatenate([emb[n] for n in self.nodes], axis=1).astype(np.float32)
            los.append(int(lo))
            rows.append(len(whole))
            data.append(whole.tobytes())
        return {"lo": np.asarray(los, np.int64), "rows": np.asarray(rows, np.int64),
                "data": np.array(data, dtype=object)}
