"""The HEML section: the segment tree with each node's held-out quality, and metric trees
(paper, Fig. 4) for telling pairs: nearest neighbours on the whole image that differ in
the label. Distances come from the embeddings the scan stored (``WS/embeddings``), so the
report needs no model and no torch; they are pml's ``SNRDistance``, var(b − a) / var(a).

>>> import numpy as np
>>> round(snr_distance(np.array([1.0, 0.0, -1.0]), np.array([1.0, 0.0, -1.0])), 3)
0.0
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from biasaudit.core.workspace import Workspace


def snr_distance(a: np.ndarray, b: np.ndarray) -> float:
    """pml's SNRDistance between two embeddings: var(b − a) / var(a)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    va = a.var()
    return float((b - a).var() / va) if va > 0 else float("nan")


def quality_tree(tree: Mapping[str, Any], metrics: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """The recipe tree as nested dicts with ``p_at_1``, ``map_at_r`` and ``chance`` per node."""
    def walk(node: Mapping[str, Any]) -> dict[str, Any]:
        name = str(node.get("name", "?"))
        m = metrics.get(name) or {}
        return {
            "name": name,
            "parts": [str(p) for p in node.get("parts") or ()],
            "p_at_1": m.get("precision_at_1"),
            "map_at_r": m.get("map_at_r"),
            "chance": m.get("chance_p_at_1"),
            "n_test": m.get("n_test"),
            "children": [walk(c) for c in node.get("children") or ()],
        }

    return walk(tree)


def telling_pairs(ws: Workspace, root: str, labels: Any, *, n_pairs: int = 3, max_images: int = 1500,
                  seed: int = 0) -> list[tuple[str, str]]:
    """Nearest neighbours (cosine, whole-image embedding) whose labels differ.

    ``labels``: a pandas Series indexed by image id (the scan's first label column).
    """
    import pandas as pd

    index_path = ws.embeddings_dir / "index.parquet"
    emb_path = ws.embedding_path(root)
    if not index_path.is_file() or not emb_path.is_file() or labels is None:
        return []
    ids = pd.read_parquet(index_path)["image"].astype(str).to_numpy()
    # memory-mapped and read in blocks: only the ``max_images`` compared rows are loaded whole
    emb = np.load(emb_path, mmap_mode="r")
    embedded = np.zeros(len(emb), bool)
    for lo in range(0, len(emb), 65536):
        embedded[lo : lo + 65536] = np.any(np.asarray(emb[lo : lo + 65536]) != 0, axis=1)
    y = pd.Series(labels).reindex(ids)
    keep = np.flatnonzero(y.notna().to_numpy() & embedded)
    if len(keep) > max_images:
        keep = np.sort(np.random.default_rng(seed).choice(keep, max_images, replace=False))
    if len(keep) < 2:
        return []
    x = np.asarray(emb[keep], np.float32)
    x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    sim = x @ x.T
    yk = y.to_numpy()[keep].astype(str)
    sim[yk[:, None] == yk[None, :]] = -np.inf  # only pairs that differ in the label
    pairs: list[tuple[str, str]] = []
    used: set[int] = set()
    for flat in np.argsort(-sim, axis=None):
        i, j = np.unravel_index(flat, sim.shape)
        if not np.isfinite(sim[i, j]):
            break
        if i >= j or i in used or j in used:
            continue
        pairs.append((str(ids[keep[i]]), str(ids[keep[j]])))
        used.update((i, j))
        if len(pairs) >= n_pairs:
            break
    return pairs


def metric_tree(ws: Workspace, tree: Mapping[str, Any], a: str, b: str, *, node_parts: Mapping[str, tuple[str, ...]],
                part_ids: Mapping[str, int], crop: Callable[[str, tuple[int, ...]], str | None]) -> dict[str, Any]:
    """The metric tree of images ``a`` and ``b`` as nested dicts (distance and both crops per node)."""
    import pandas as pd

    ids = pd.Index(pd.read_parquet(ws.embeddings_dir / "index.parquet")["image"].astype(str))
    ia, ib = (int(i) for i in ids.get_indexer([a, b]))
    if ia < 0 or ib < 0:
        raise KeyError(f"{a if ia < 0 else b} has no row in {ws.embeddings_dir / 'index.parquet'}")

    def walk(node: Mapping[str, Any]) -> dict[str, Any]:
        name = str(node.get("name", "?"))
        path = ws.embedding_path(name)
        dist = None
        present = (False, False)
        if path.is_file():
            emb = np.load(path, mmap_mode="r")
            ea, eb = np.asarray(emb[ia], np.float32), np.asarray(emb[ib], np.float32)
            present = (bool(np.any(ea != 0)), bool(np.any(eb != 0)))  # HEML embeds an absent part as zeros
            if all(present):
                dist = snr_distance(ea, eb)
        pids = tuple(part_ids[p] for p in node_parts.get(name, ()) if p in part_ids)
        return {
            "name": name, "distance": dist, "present_a": present[0], "present_b": present[1],
            "crop_a": crop(a, pids) if present[0] else None, "crop_b": crop(b, pids) if present[1] else None,
            "children": [walk(c) for c in node.get("children") or ()],
        }

    return walk(tree)
