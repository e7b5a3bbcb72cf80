"""Attributes per (image, node): the vocabulary findings are written in.

Two sources (DESIGN.md §6):

- **mask-derived**, from ``segments.parquet``, per schema part: ``presence``
  (present | absent), ``colour`` (the segment stage's colour name, where the part covers
  at least ``MIN_COLOUR_AREA`` of the image: the colour of a few dozen pixels of eyebrow
  is noise, not a group),
  ``size`` (tertile of area_frac among images where the part is present: small | medium |
  large) and ``shape`` (tertile of bounding-box width / height: narrow | medium | wide);
- **discovered**, from a node's embeddings: k-means clusters, k chosen by silhouette in
  ``k_range`` (on at most ``silhouette_sample`` images), each cluster named from its
  members' dominant colour / presence / size of the node's main part, and shown by its
  most typical images (nearest the centroid).

>>> import pandas as pd
>>> seg = pd.DataFrame({"image": ["a", "b", "c"], "part": "hair", "present": True,
...     "area_frac": [0.1, 0.2, 0.3], "colour": ["blond", "black", "blond"],
...     "bbox_x0": 0, "bbox_y0": 0, "bbox_x1": [10, 20, 30], "bbox_y1": 10})
>>> mask_attributes(seg)["size"].tolist()
['small', 'medium', 'large']
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

SIZE_NAMES = ("small", "medium", "large")
#: parts smaller than this share of the image get no colour name (too few pixels to trust)
MIN_COLOUR_AREA = 0.01
SHAPE_NAMES = ("narrow", "medium", "wide")


def _tertiles(values: pd.Series, names: tuple[str, str, str]) -> pd.Series:
    # rank first so ties (many equal areas) still split into three near-equal groups
    if len(values) < 3:
        return pd.Series(names[1], index=values.index)
    ranks = values.rank(method="first")
    return pd.qcut(ranks, 3, labels=list(names)).astype(str)


def mask_attributes(segments: pd.DataFrame, *, min_colour_area: float = MIN_COLOUR_AREA) -> pd.DataFrame:
    """Presence, colour, size and shape per (image, part) from a segments table."""
    seg = segments.reset_index(drop=True)
    out = pd.DataFrame({"image": seg["image"].astype(str), "node": seg["part"].astype(str)})
    present = seg["present"].astype(bool)
    out["presence"] = np.where(present, "present", "absent")
    colour = seg["colour"].fillna("").astype(str) if "colour" in seg else pd.Series("", index=seg.index)
    out["colour"] = np.where(present & (seg["area_frac"].astype(float) >= min_colour_area), colour, "")
    out["size"] = ""
    out["shape"] = ""
    width = (seg["bbox_x1"] - seg["bbox_x0"]).astype(float)
    height = (seg["bbox_y1"] - seg["bbox_y0"]).astype(float).replace(0, np.nan)
    aspect = width / height
    for _, idx in seg[present].groupby(seg.loc[present, "part"]).groups.items():
        out.loc[idx, "size"] = _tertiles(seg.loc[idx, "area_frac"].astype(float), SIZE_NAMES)
        out.loc[idx, "shape"] = _tertiles(aspect.loc[idx].fillna(1.0), SHAPE_NAMES)
    return out.reset_index(drop=True)


@dataclass(frozen=True)
class Cluster:
    node: str
    cluster: int
    name: str
    n_images: int
    exemplars: tuple[str, ...]
    description: dict = field(default_factory=dict)


def reduce_dims(x: np.ndarray, *, dims: int = 16, seed: int = 0) -> np.ndarray:
    """PCA to ``dims`` components: clusters live in the leading directions of an
    embedding, and k-means on 16 numbers instead of 128 is what keeps the scan fast."""
    from sklearn.decomposition import PCA

    if x.shape[1] <= dims or len(x) <= dims:
        return x
    return PCA(n_components=dims, random_state=seed).fit_transform(x).astype(np.float32)


def choose_k(x: np.ndarray, *, k_range: tuple[int, int] = (2, 8), seed: int = 0,
             sample: int = 600) -> tuple[int, dict[int, float]]:
    """The k in ``k_range`` with the best silhouette (ties → smaller k), judged on a
    random sample of at most ``sample`` rows."""
    from sklearn.cluster import KMeans
    from sklearn.metrics import silhouette_score

    rng = np.random.default_rng(seed)
    xs = x if len(x) <= sample else x[rng.choice(len(x), sample, replace=False)]
    scores: dict[int, float] = {}
    for k in range(k_range[0], min(k_range[1], len(xs) - 1) + 1):
        labels = KMeans(n_clusters=k, n_init=2, random_state=seed).fit_predict(xs)
        if len(np.unique(labels)) < 2:
            continue
        scores[k] = float(silhouette_score(xs, labels, random_state=seed))
    if not scores:
        return 1, scores
    best = max(scores.values())
    return min(k for k, s in scores.items() if s >= best - 1e-9), scores


def _dominant(values: pd.Series) -> tuple[str, float]:
    values = values[values.astype(str) != ""]
    if values.empty:
        return "", 0.0
    counts = values.value_counts(normalize=True)
    return str(counts.index[0]), float(counts.iloc[0])


def discover_clusters(
    node: str, embedding: pd.DataFrame, mask_attrs: pd.DataFrame, parts: tuple[str, ...], *,
    k_range: tuple[int, int] = (2, 8), seed: int = 0, n_exemplars: int = 6,
) -> tuple[pd.DataFrame, list[Cluster]]:
    """Cluster one node's embeddings; returns rows (image, node, cluster, cluster_name)."""
    from sklearn.cluster import KMeans

    emb = embedding.dropna()
    if len(emb) < max(10, k_range[0] * 3):
        return pd.DataFrame(columns=["image", "node", "cluster", "cluster_name"]), []
    x = reduce_dims(emb.to_numpy(dtype=np.float32), seed=seed)
    k, scores = choose_k(x, k_range=k_range, seed=seed)
    if k < 2:
        return pd.DataFrame(columns=["image", "node", "cluster", "cluster_name"]), []
    km = KMeans(n_clusters=k, n_init=3, random_state=seed).fit(x)
    labels = km.labels_
    dist = np.linalg.norm(x - km.cluster_centers_[labels], axis=1)
    ids = emb.index.astype(str).to_numpy()
    # name clusters after the node's largest part (by mean area) among mask attributes
    part_rows = mask_attrs[mask_attrs["node"].isin(parts)]
    main = parts[0]
    if not part_rows.empty and "size" in part_rows:
        present_share = part_rows.assign(p=part_rows["presence"] == "present").groupby("node")["p"].mean()
        main = str(present_share.idxmax()) if not present_share.empty else main
    main_rows = part_rows[part_rows["node"] == main].set_index("image")
    clusters: list[Cluster] = []
    names: dict[int, str] = {}
    for c in range(k):
        members = ids[labels == c]
        sub = main_rows.reindex(members)
        colour, colour_share = _dominant(sub["colour"].fillna("")) if "colour" in sub else ("", 0.0)
        size, size_share = _dominant(sub["size"].fillna("")) if "size" in sub else ("", 0.0)
        presence = float((sub["presence"] == "present").mean()) if "presence" in sub else 1.0
        bits = []
        if presence < 0.5:
            bits.append(f"mostly no {main}")
        else:
            if colour and colour_share >= 0.5:
                bits.append(f"{colour} {main}")
            elif colour:
                bits.append(f"mixed-colour {main}")
            if size and size_share >= 0.5:
                bits.append(size)
        name = ", ".join(bits) or f"{main} group"
        order = np.argsort(dist[labels == c])[:n_exemplars]
        clusters.append(Cluster(
            node=node, cluster=c, name=name, n_images=int(len(members)),
            exemplars=tuple(members[order].tolist()),
            description={"colour": colour, "colour_share": round(colour_share, 3), "size": size,
                         "presence": round(presence, 3), "silhouette": scores},
        ))
        names[c] = name
    # two clusters may get the same description; number them so values stay distinct
    seen: dict[str, int] = {}
    for c in range(k):
        if list(names.values()).count(names[c]) > 1:
            seen[names[c]] = seen.get(names[c], 0) + 1
            names[c] = f"{names[c]} #{seen[names[c]]}"
    clusters = [Cluster(cl.node, cl.cluster, names[cl.cluster], cl.n_images, cl.exemplars, cl.description)
                for cl in clusters]
    rows = pd.DataFrame({"image": ids, "node": node, "cluster": labels.astype(int),
                         "cluster_name": [names[c] for c in labels]})
    return rows, clusters


def build_attributes(
    segments: pd.DataFrame, embeddings: dict[str, pd.DataFrame] | None = None,
    node_parts: dict[str, tuple[str, ...]] | None = None, *, k_range: tuple[int, int] = (2, 8),
    seed: int = 0,
) -> tuple[pd.DataFrame, list[Cluster]]:
    """The attributes table (one row per (image, node)) and the discovered clusters."""
    mask = mask_attributes(segments)
    frames = []
    clusters: list[Cluster] = []
    for node, emb in sorted((embeddings or {}).items()):
        parts = (node_parts or {}).get(node, tuple(node.split("+")))
        rows, cl = discover_clusters(node, emb, mask, parts, k_range=k_range, seed=seed)
        frames.append(rows)
        clusters.extend(cl)
    discovered = (pd.concat(frames, ignore_index=True) if frames
                  else pd.DataFrame(columns=["image", "node", "cluster", "cluster_name"]))
    table = mask.merge(discovered, on=["image", "node"], how="outer")
    for col in ("presence", "colour", "size", "shape", "cluster_name"):
        table[col] = table[col].fillna("").astype(str)
    table["cluster"] = table["cluster"].fillna(-1).astype(int)
    return table.sort_values(["node", "image"]).reset_index(drop=True), clusters
