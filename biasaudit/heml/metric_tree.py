"""The metric tree (paper, Fig. 4): where two images agree and where they differ.

For images a and b, every node's embeddings are compared with pml's ``SNRDistance``,
var(a − b) / var(a). For unit-norm embeddings that is ≈ 2·(1 − cos(a, b)): 0 for
identical embeddings, ≈ 2 for unrelated (orthogonal) ones, up to ≈ 4 for opposite ones.
(The paper's Fig. 4 shows values in [0, 1]; its scaling is not published.) A node whose parts are missing from either image gets
``snr_distance = None`` and says which image lacks them.

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
    """Distances at every node, root first; ``crops`` holds each node's two inputs."""

    root: str
    nodes: tuple[NodeDistance, ...]
    crops: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict, compare=False, repr=False)

    def to_dict(self) -> dict[str, Any]:
        return {"root": self.root, "nodes": [n.to_dict() for n in self.nodes]}

    def distance(self, node: str) -> float | None:
        for n in self.nodes:
            if n.node == node:
                return n.snr_distance
        raise KeyError(node)


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
    for img, lm in ((image_a, map_a), (image_b, map_b)):
        imgs, maps = np.asarray(img)[None], np.asarray(lm)[None]
        out = heml.embed(imgs, maps)
        for name in tree.nodes:
            inp = heml.node_inputs(imgs, maps, name)
            emb.setdefault(name, []).append(out[name][0])
            crops.setdefault(name, []).append(inp.crops[0])
            present.setdefault(name, []).append(bool(inp.present[0]))
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
    return MetricTree(root=tree.root, nodes=tuple(nodes), crops={k: tuple(v) for k, v in crops.items()})


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
        if a is not None:
            gap = np.full((a.shape[0], max(1, a.shape[1] // 10), 3), 255, np.uint8)
            ax.imshow(np.concatenate([a, gap, b], axis=1), interpolation="nearest")
        dist = "absent" if n.snr_distance is None else f"{n.snr_distance:.2f}"
        ax.set_title(f"{n.node}\n{dist}", fontsize=8)
        ax.set_xticks([])
        ax.set_yticks([])
    if title:
        fig.suptitle(title, fontsize=10)
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    return path
