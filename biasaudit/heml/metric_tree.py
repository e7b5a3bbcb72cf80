"""The metric tree (paper, Fig. 4): where two images agree and where they differ.

For images a and b, every node's embeddings are compared with pml's ``SNRDistance``,
var(a − b) / var(a). For unit-norm embeddings that is ≈ 2·(1 − cos(a, b)): 0 for
identical embeddings, ≈ 2 for unrelated (orthogonal) ones, up to ≈ 4 for opposite ones.
(The paper's Fig. 4 shows values in [0, 1]; its scaling is not published.) A node whose parts are missing from either image gets
``snr_distance = None`` and says which image lacks them.

Two whole-image distances come with every tree: ``root_distance``, the root model's own
embedding distance, and ``tree_distance``, the metric tree's aggregate: the weighted
mean of the node distances over the nodes both images have, Σ wₖ dₖ / Σ wₖ. The weights
(:func:`node_weights`) are each node's held-out skill on its label, max(P@1 − chance, 0),
so nodes that carry the label count and label-free ones do not; without labels (``self``
supervision) every node counts the same. :func:`tree_distance_matrix` gives the same
aggregate for every pair of rows of stored embeddings (for the audit).

>>> tree = explain_pair(heml, img_a, map_a, img_b, map_b)     # doctest: +SKIP
>>> tree.to_dict()["nodes"][0]                                 # doctest: +SKIP
{'node': 'image', 'children': ['head', 'neck+cloth'], 'snr_distance': 0.41, ...}
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np


@dataclass(frozen=True)
class NodeDistance:
    """One node of a metric tree."""

    node: str
    children: tuple[str, ...]
    snr_distance: float | None
    present_a: bool
    present_b: bool

    def to_dict(self) -> dict[str, Any]:
        return {
            "node": self.node,
            "children": list(self.children),
            "snr_distance": None if self.snr_distance is None else round(self.snr_distance, 6),
            "present": {"a": self.present_a, "b": self.present_b},
        }


@dataclass(frozen=True)
class MetricTree:
    """Distances at every node, root first; ``crops`` holds each node's two inputs and
    ``attention`` (DGML nodes only) each group's attention map over them (G×r×r each)."""

    root: str
    nodes: tuple[NodeDistance, ...]
    crops: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict, compare=False, repr=False)
    weights: dict[str, float] = field(default_factory=dict, compare=False)
    attention: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict, compare=False, repr=False)

    @property
    def root_distance(self) -> float | None:
        """The root model's own embedding distance."""
        return self.distance(self.root)

    @property
    def tree_distance(self) -> float | None:
        """The weighted mean of the node distances (see the module doc)."""
        return aggregate_distance({n.node: n.snr_distance for n in self.nodes}, self.weights)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "root": self.root,
            "root_distance": _round(self.root_distance),
            "tree_distance": _round(self.tree_distance),
            "tree_weights": {k: round(v, 6) for k, v in self.weights.items()},
            "nodes": [n.to_dict() for n in self.nodes],
        }
        if self.attention:
            out["attention"] = {name: {"groups": int(a.shape[0]), "resolution": int(a.shape[-1]),
                                       "a": np.round(a, 5).tolist(), "b": np.round(b, 5).tolist()}
                                for name, (a, b) in self.attention.items()}
        return out

    def distance(self, node: str) -> float | None:
        for n in self.nodes:
            if n.node == node:
                return n.snr_distance
        raise KeyError(node)


def _fmt(value: float | None) -> str:
    return "–" if value is None else f"{value:.2f}"


def _round(value: float | None) -> float | None:
    return None if value is None else round(float(value), 6)


def node_weights(heml) -> dict[str, float]:
    """Each node's weight in the tree distance: max(P@1 − chance, 0) on its validation rows
    (on the held-out split for models trained without them), normalised to sum to 1; equal
    weights when no node has label skill (or no labels).

    >>> class H: supervision = "label"; tree_ = type("T", (), {"nodes": {"a": 0, "b": 0}})
    >>> H.metrics_ = {"a": {"precision_at_1": 0.9, "chance_p_at_1": 0.5},
    ...               "b": {"precision_at_1": 0.5, "chance_p_at_1": 0.5}}
    >>> node_weights(H)
    {'a': 1.0, 'b': 0.0}
    """
    names = list(heml.tree_.nodes)
    skill = {}
    if getattr(heml, "supervision", "label") == "label":
        for name in names:
            m = getattr(heml, "metrics_", {}).get(name) or {}
            key = "val_" if "val_precision_at_1" in m else ""  # the test split stays for reporting
            p, chance = m.get(f"{key}precision_at_1"), m.get(f"{key}chance_p_at_1")
            ok = isinstance(p, (int, float)) and isinstance(chance, (int, float)) and np.isfinite([p, chance]).all()
            skill[name] = max(float(p) - float(chance), 0.0) if ok else 0.0
    total = sum(skill.values())
    if total <= 0:
        return {name: 1.0 / len(names) for name in names}
    return {name: skill[name] / total for name in names}


def aggregate_distance(distances: dict[str, float | None], weights: dict[str, float]) -> float | None:
    """Σ wₖ dₖ / Σ wₖ over the nodes with a distance (both images have the parts); None
    when no weighted node has one.

    >>> aggregate_distance({"a": 1.0, "b": None, "c": 3.0}, {"a": 1.0, "b": 5.0, "c": 1.0})
    2.0
    """
    num = den = 0.0
    for name, d in distances.items():
        w = weights.get(name, 0.0)
        if d is not None and w > 0:
            num += w * d
            den += w
    return num / den if den > 0 else None


def snr_distance_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """pml's ``SNRDistance`` (on L2-normalised rows) between every row of ``a`` and of ``b``.

    >>> x = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    >>> snr_distance_matrix(x, x).round(3).tolist()
    [[0.0, 3.0], [3.0, 0.0]]
    """
    a = np.asarray(a, np.float64)
    b = np.asarray(b, np.float64)
    a = a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-12)
    b = b / np.maximum(np.linalg.norm(b, axis=1, keepdims=True), 1e-12)
    d = a.shape[1]
    ma, mb = a.mean(1), b.mean(1)
    # var(a−b)·(D−1) = |a−b|² − D·mean(a−b)², |a−b|² = 2 − 2a·b for unit rows
    num = 2.0 - 2.0 * (a @ b.T) - d * (ma[:, None] - mb[None, :]) ** 2
    den = 1.0 - d * ma**2
    return num / np.maximum(den, 1e-12)[:, None]


def tree_distance_matrix(embeddings: dict[str, np.ndarray], weights: dict[str, float],
                         rows: np.ndarray | None = None) -> np.ndarray:
    """The tree distance between every pair of ``rows`` (default: all) of stored per-node
    embeddings (node → N×D; all-zero rows = part absent). NaN where no weighted node is
    present in both images.

    >>> emb = {"a": np.eye(3), "b": np.zeros((3, 3))}
    >>> tree_distance_matrix(emb, {"a": 1.0, "b": 1.0}).round(2).tolist()[0]
    [0.0, 3.0, 3.0]
    """
    names = [n for n in embeddings if weights.get(n, 0.0) > 0]
    if not names:
        raise ValueError("tree_distance_matrix: no node has a positive weight.")
    n = len(next(iter(embeddings.values()))) if rows is None else len(rows)
    num, den = np.zeros((n, n)), np.zeros((n, n))
    for name in names:
        e = np.asarray(embeddings[name], np.float64)
        if rows is not None:
            e = e[rows]
        present = np.abs(e).sum(1) > 0
        both = present[:, None] & present[None, :]
        d = np.where(both, snr_distance_matrix(np.where(present[:, None], e, 1.0), np.where(present[:, None], e, 1.0)), 0.0)
        num += weights[name] * d
        den += weights[name] * both
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan)


def explain_pair(heml, image_a: np.ndarray, map_a: np.ndarray, image_b: np.ndarray, map_b: np.ndarray,
                 *, distance=None) -> MetricTree:
    """The metric tree of two images (H×W×3 uint8 each, with their H×W label maps).

    ``distance`` is any pml distance (default ``SNRDistance()``, as in the paper).
    The two images may differ in size.
    """
    import torch
    from pytorch_metric_learning.distances import SNRDistance

    heml._check_fitted()
    distance = distance or SNRDistance()
    tree = heml.tree_
    emb: dict[str, list[np.ndarray]] = {}
    crops: dict[str, list[np.ndarray]] = {}
    present: dict[str, list[bool]] = {}
    attention: dict[str, list[np.ndarray]] = {}
    for img, lm in ((image_a, map_a), (image_b, map_b)):
        imgs, maps = np.asarray(img)[None], np.asarray(lm)[None]
        out = heml.embed(imgs, maps)
        for name in tree.nodes:
            inp = heml.node_inputs(imgs, maps, name)
            emb.setdefault(name, []).append(out[name][0])
            crops.setdefault(name, []).append(inp.crops[0])
            present.setdefault(name, []).append(bool(inp.present[0]))
            if getattr(heml.models_[name], "embedder_kind", "mlp") == "dgml":
                from biasaudit.heml.dgml import attention_maps, node_prior

                maps_one = attention_maps(heml.models_[name], inp.crops[:1], node_prior(heml, maps, name))[0]
                attention.setdefault(name, []).append(maps_one if inp.present[0] else np.zeros_like(maps_one))
    order: list[str] = []

    def walk(name: str) -> None:
        order.append(name)
        for child in tree.nodes[name].children:
            walk(child)

    walk(tree.root)
    nodes = []
    for name in order:
        pa, pb = present[name]
        d = None
        if pa and pb:
            a, b = (torch.as_tensor(e, dtype=torch.float32)[None] for e in emb[name])
            d = float(distance(a, b)[0, 0])
        nodes.append(NodeDistance(name, tree.nodes[name].children, d, pa, pb))
    return MetricTree(root=tree.root, nodes=tuple(nodes), crops={k: tuple(v) for k, v in crops.items()},
                      weights=node_weights(heml), attention={k: tuple(v) for k, v in attention.items()})


def render_metric_tree(tree: MetricTree, path: str | Path, *, title: str | None = None) -> Path:
    """Draw the tree like the paper's Fig. 4: per node the two crops side by side with the
    distance above, the root on top and edges to each node's children. Writes a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from biasaudit.core.io import atomic_path

    by_name = {n.node: n for n in tree.nodes}
    xs: dict[str, float] = {}
    heights: dict[str, int] = {}

    def place(name: str) -> None:
        kids = by_name[name].children
        for child in kids:
            place(child)
        if kids:
            xs[name] = sum(xs[c] for c in kids) / len(kids)
            heights[name] = 1 + max(heights[c] for c in kids)
        else:
            xs[name] = float(sum(1 for n in xs if not by_name[n].children))
            heights[name] = 0

    place(tree.root)
    n_leaves = sum(1 for n in tree.nodes if not n.children)
    top = heights[tree.root]
    fig_w, fig_h = max(6.0, 1.9 * n_leaves), max(3.0, 1.6 * (top + 1))
    fig = plt.figure(figsize=(fig_w, fig_h), dpi=100)
    line_ax = fig.add_axes((0, 0, 1, 1))
    line_ax.set_xlim(-0.5, n_leaves - 0.5)
    line_ax.set_ylim(-0.6, top + 0.6)
    line_ax.axis("off")
    for n in tree.nodes:
        for c in n.children:
            line_ax.plot([xs[n.node], xs[c]], [heights[n.node], heights[c]], color="0.6", lw=1, zorder=0)
    box_w, box_h = 0.9 / n_leaves, 0.62 / (top + 1.2)
    for n in tree.nodes:
        cx = (xs[n.node] + 0.5) / n_leaves
        cy = (heights[n.node] + 0.6) / (top + 1.2)
        ax = fig.add_axes((cx - box_w / 2, cy - box_h / 2, box_w, box_h))
        a, b = tree.crops.get(n.node, (None, None))
        if a is not None and n.node in tree.attention:
            # DGML node: each image's crop followed by its groups' attention, A above B
            from biasaudit.heml.dgml import attention_overlays

            att_a, att_b = tree.attention[n.node]
            strip_a, strip_b = attention_overlays(a, att_a), attention_overlays(b, att_b)
            gap = np.full((max(1, a.shape[0] // 10), strip_a.shape[1], 3), 255, np.uint8)
            ax.imshow(np.concatenate([strip_a, gap, strip_b], axis=0), interpolation="nearest")
        elif a is not None:
            gap = np.full((a.shape[0], max(1, a.shape[1] // 10), 3), 255, np.uint8)
            ax.imshow(np.concatenate([a, gap, b], axis=1), interpolation="nearest")
        dist = "absent" if n.snr_distance is None else f"{n.snr_distance:.2f}"
        ax.set_title(f"{n.node}\n{dist}", fontsize=8)
        ax.set_xticks([])
        ax.set_yticks([])
    summary = f"root embedding {_fmt(tree.root_distance)} · metric tree {_fmt(tree.tree_distance)}"
    fig.suptitle(f"{title}\n{summary}" if title else summary, fontsize=10)
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    return path
