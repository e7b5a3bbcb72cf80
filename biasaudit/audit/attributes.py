"""Attributes per (image, node): the vocabulary findings are written in.

Two sources (DESIGN.md §6):

- **mask-derived**, from ``segments.parquet``, per schema part: ``presence``
  (present | absent), ``colour`` (the segment stage's colour name, where the part covers
  at least ``MIN_COLOUR_AREA`` of the image: the colour of a few dozen pixels of eyebrow
  is noise, not a group),
  ``size`` (tertile of area_frac among images where the part is present: small | medium |
  large) and ``shape`` (tertile of bounding-box width / height: narrow | medium | wide);
- **discovered**, from a node's embeddings: k-means clusters, k chosen by silhouette in
  ``k_range`` (on at most ``silhouette_sample`` images), each cluster named in words from
  what the node's main part looks like in it, against the other clusters: its dominant
  colour name, and how light, large or wide the part is ("light brows", "small dark
  hair", "mostly no hat"); never a number. Shown by its most typical images (nearest
  the centroid).

>>> import pandas as pd
>>> seg = pd.DataFrame({"image": ["a", "b", "c"], "part": "hair", "present": True,
...     "area_frac": [0.1, 0.2, 0.3], "colour": ["blond", "black", "blond"],
...     "bbox_x0": 0, "bbox_y0": 0, "bbox_x1": [10, 20, 30], "bbox_y1": 10})
>>> mask_attributes(seg)["size"].tolist()
['small', 'medium', 'large']
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

SIZE_NAMES = ("small", "medium", "large")
#: parts smaller than this share of the image get no colour name (too few pixels to trust)
MIN_COLOUR_AREA = 0.01
SHAPE_NAMES = ("narrow", "medium", "wide")


def _tertile_codes(values: np.ndarray) -> np.ndarray:
    """0, 1, 2 for the lower, middle and upper third of ``values`` (1 for fewer than 3)."""
    # rank first so ties (many equal areas) still split into three near-equal groups
    if len(values) < 3:
        return np.ones(len(values), np.int8)
    ranks = pd.Series(values).rank(method="first")
    return pd.qcut(ranks, 3, labels=False).to_numpy(np.int8)


def _named(codes: np.ndarray, names: tuple[str, ...], *, categorical: bool = False) -> pd.Series:
    # codes into a small category list (then strings): no per-row Python objects on the way
    out = pd.Series(pd.Categorical.from_codes(codes, categories=list(names)))
    return out if categorical else out.astype(str)


def _text(values: pd.Series, *, categorical: bool) -> pd.Series:
    """``values`` as strings, or kept as categories (with "" among them) when asked."""
    values = values.reset_index(drop=True)
    if not categorical:
        return values.fillna("").astype(str)
    values = values if isinstance(values.dtype, pd.CategoricalDtype) else values.astype("category")
    if "" not in values.cat.categories:
        values = values.cat.add_categories([""])
    return values.fillna("")


def mask_attributes(segments: pd.DataFrame, *, min_colour_area: float = MIN_COLOUR_AREA) -> pd.DataFrame:
    """Presence, colour, size and shape per (image, part) from a segments table.

    Built from integer codes per column (one array of the table's length each). When the
    table's ``image`` column is categorical (a scan reads segments that way), every column
    of the result is categorical too: a few bytes per row, whatever the number of images.
    """
    n = len(segments)
    categorical = isinstance(segments["image"].dtype, pd.CategoricalDtype)
    part = _text(segments["part"], categorical=categorical)
    present = segments["present"].astype(bool).to_numpy()
    if "colour" in segments:
        colour = _text(segments["colour"], categorical=categorical)
        colour = colour.where(present & (segments["area_frac"].astype(float).to_numpy() >= min_colour_area), "")
    else:
        colour = _named(np.zeros(n, np.int8), ("",), categorical=categorical)
    area = segments["area_frac"].astype(float).to_numpy()
    width = (segments["bbox_x1"] - segments["bbox_x0"]).astype(float).to_numpy()
    height = (segments["bbox_y1"] - segments["bbox_y0"]).astype(float).to_numpy()
    with np.errstate(divide="ignore", invalid="ignore"):
        aspect = np.where(height > 0, width / np.where(height > 0, height, 1.0), np.nan)
    size = np.zeros(n, np.int8)  # 0: "" (absent), 1 + tertile otherwise
    shape = np.zeros(n, np.int8)
    codes, names = (part.cat.codes.to_numpy(), part.cat.categories) if categorical else pd.factorize(part)
    for k in range(len(names)):
        idx = np.flatnonzero((codes == k) & present)
        if len(idx):
            size[idx] = 1 + _tertile_codes(area[idx])
            shape[idx] = 1 + _tertile_codes(np.nan_to_num(aspect[idx], nan=1.0))
    image = segments["image"].reset_index(drop=True)
    return pd.DataFrame({
        "image": image if categorical else image.astype(str), "node": part,
        "presence": _named(present.astype(np.int8), ("absent", "present"), categorical=categorical),
        "colour": colour, "size": _named(size, ("", *SIZE_NAMES), categorical=categorical),
        "shape": _named(shape, ("", *SHAPE_NAMES), categorical=categorical),
    })


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


#: plain words for schema part names in cluster names
PART_WORDS = {"l_brow": "brows", "r_brow": "brows", "l_eye": "eyes", "r_eye": "eyes", "u_lip": "lips",
              "l_lip": "lips", "eye_g": "glasses", "l_ear": "ears", "r_ear": "ears", "ear_r": "earrings",
              "neck_l": "necklace"}
#: (low word, high word) per appearance measure; a cluster is described by the measures
#: on which its mean lies at least DESCRIBE_Z standard deviations from the whole node's
_WORDS = {"lightness": ("dark", "light"), "area": ("small", "large"), "aspect": ("narrow", "wide")}
_COMPARE = {"lightness": ("darker", "lighter"), "area": ("smaller", "larger"), "aspect": ("narrower", "wider")}
DESCRIBE_Z = 0.4
_MID = {"lightness": "mid-tone", "area": "mid-size", "aspect": "mid-width"}


def _part_words(part: str) -> str:
    return PART_WORDS.get(part, part.replace("_", " "))


def _appearance(main_rows: pd.DataFrame, measures: pd.DataFrame | None, part: str) -> pd.DataFrame | None:
    """Per image: lightness (L*), area and aspect of ``part`` where present, else None."""
    if measures is None or measures.empty:
        return None
    m = measures[(measures["part"] == part) & measures["present"].astype(bool)]
    if m.empty:
        return None
    m = m.set_index(m["image"].astype(str))
    width = (m["bbox_x1"] - m["bbox_x0"]).astype(float)
    height = (m["bbox_y1"] - m["bbox_y0"]).astype(float).replace(0, np.nan)
    out = pd.DataFrame({"area": m["area_frac"].astype(float), "aspect": width / height}, index=m.index)
    if "lab_l" in m:
        out["lightness"] = m["lab_l"].astype(float)
    return out


def name_clusters(described: dict[int, dict], part: str) -> dict[int, str]:
    """Names in words for clusters described by colour name, presence and z-scores.

    Each name uses the fewest words that tell the clusters apart: the dominant colour
    where it differs between clusters, then the measures on which the cluster stands out
    most; clusters still alike are told apart by comparison ("darker brows").

    >>> name_clusters({0: {"colour": "black", "presence": 1.0, "z": {"lightness": -1.0}},
    ...                1: {"colour": "black", "presence": 1.0, "z": {"lightness": 1.2}}}, "brows")
    {0: 'dark brows', 1: 'light brows'}
    """
    colours = {d["colour"] for d in described.values() if d["presence"] >= 0.5}
    words: dict[int, list[str]] = {}
    for c, d in described.items():
        if d["presence"] < 0.5:
            words[c] = [f"mostly no {part}"]
            continue
        ranked = sorted(((abs(z), dim, z) for dim, z in d["z"].items() if dim in _WORDS and abs(z) >= DESCRIBE_Z),
                        reverse=True)
        words[c] = [_WORDS[dim][z > 0] for _, dim, z in ranked]
        if d["colour"] and (len(colours) > 1 or not words[c]):
            words[c].append(d["colour"])
        elif not d["colour"]:
            words[c].append("mixed-colour")
    names: dict[int, str] = {}
    for depth in (1, 2, 3):
        names = {c: _phrase(w[:depth] if not w[0].startswith("mostly") else w[:1], part)
                 for c, w in words.items()}
        if len(set(names.values())) == len(names):
            return names
    # still alike: compare the alike clusters on the measure that separates them most
    for name in {n for n in names.values() if list(names.values()).count(n) > 1}:
        same = [c for c, n in names.items() if n == name]
        dims = {dim for c in same for dim in described[c]["z"] if dim in _COMPARE}
        if not dims:
            continue
        dim = max(dims, key=lambda d: np.ptp([described[c]["z"].get(d, 0.0) for c in same]))
        order = sorted(same, key=lambda c: described[c]["z"].get(dim, 0.0))
        lo, hi = _COMPARE[dim]
        for i, c in enumerate(order):
            if len(order) == 2:
                word = (lo, hi)[i]
            elif i in (0, len(order) - 1):
                word = (lo if i == 0 else hi)[:-2] + "est"  # darkest, largest, widest
            else:
                word = _MID[dim] + (f" {i} of {len(order) - 2}" if len(order) > 3 else "")
            names[c] = f"{word} {name}"
    return names


def _phrase(words: list[str], part: str) -> str:
    if words and words[0].startswith("mostly no"):
        return words[0]
    colour = [w for w in words if w not in {x for pair in _WORDS.values() for x in pair}]
    rest = [w for w in words if w not in colour]
    return " ".join([*rest, *colour, part])


def discover_clusters(
    node: str, embedding: pd.DataFrame, mask_attrs: pd.DataFrame, parts: tuple[str, ...], *,
    k_range: tuple[int, int] = (2, 8), seed: int = 0, n_exemplars: int = 6,
    measures: pd.DataFrame | None = None,
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
    features = _appearance(main_rows, measures, main)
    clusters: list[Cluster] = []
    described: dict[int, dict] = {}
    for c in range(k):
        members = ids[labels == c]
        sub = main_rows.reindex(members)
        colour, colour_share = _dominant(sub["colour"].fillna("")) if "colour" in sub else ("", 0.0)
        size, _ = _dominant(sub["size"].fillna("")) if "size" in sub else ("", 0.0)
        presence = float((sub["presence"] == "present").mean()) if "presence" in sub else 1.0
        z = {}
        if features is not None:
            inside = features.reindex(members).mean()
            spread = features.std().replace(0, np.nan)
            z = {dim: float(v) for dim, v in ((inside - features.mean()) / spread).items() if np.isfinite(v)}
        described[c] = {"colour": colour if colour_share >= 0.5 else "", "presence": presence, "z": z}
        order = np.argsort(dist[labels == c])[:n_exemplars]
        clusters.append(Cluster(
            node=node, cluster=c, name="", n_images=int(len(members)),
            exemplars=tuple(members[order].tolist()),
            description={"colour": colour, "colour_share": round(colour_share, 3), "size": size,
                         "presence": round(presence, 3), "silhouette": scores,
                         "z": {d: round(v, 2) for d, v in z.items()}},
        ))
    names = name_clusters(described, _part_words(main))
    clusters = [Cluster(cl.node, cl.cluster, names[cl.cluster], cl.n_images, cl.exemplars, cl.description)
                for cl in clusters]
    rows = pd.DataFrame({"image": ids, "node": node, "cluster": labels.astype(int),
                         "cluster_name": [names[c] for c in labels]})
    return rows, clusters


def plain_strings(table: pd.DataFrame) -> pd.DataFrame:
    """``table`` with its categorical columns as strings (what attributes.parquet stores).

    >>> plain_strings(pd.DataFrame({"a": pd.Categorical(["x", "y"])}))["a"].tolist()
    ['x', 'y']
    """
    cats = [c for c in table.columns if isinstance(table[c].dtype, pd.CategoricalDtype)]
    if not cats:
        return table
    return table.assign(**{c: _plain_column(table[c]) for c in cats})


def _plain_column(col: pd.Series) -> pd.Series:
    codes = col.cat.codes.to_numpy()
    if (codes < 0).any():  # missing values: let pandas spell them
        return col.astype(str)
    # the categories as strings, taken by code: cheaper than converting row by row
    return pd.Series(col.cat.categories.astype(str).take(codes), index=col.index, name=col.name)


def build_attributes(
    segments: pd.DataFrame, embeddings: Mapping[str, pd.DataFrame] | None = None,
    node_parts: dict[str, tuple[str, ...]] | None = None, *, k_range: tuple[int, int] = (2, 8),
    seed: int = 0,
) -> tuple[pd.DataFrame, list[Cluster]]:
    """The attributes table (one row per (image, node)) and the discovered clusters."""
    mask = mask_attributes(segments)
    frames = []
    clusters: list[Cluster] = []
    for node in sorted(embeddings or {}):
        emb = embeddings[node]  # one node at a time: a lazy mapping builds each on access
        parts = (node_parts or {}).get(node, tuple(node.split("+")))
        rows, cl = discover_clusters(node, emb, mask, parts, k_range=k_range, seed=seed, measures=segments)
        frames.append(rows)
        clusters.extend(cl)
    if frames:
        discovered = pd.concat(frames, ignore_index=True)
        mask = plain_strings(mask)  # merged with the clusters' string ids
        table = mask.merge(discovered, on=["image", "node"], how="outer")
        for col in ("presence", "colour", "size", "shape", "cluster_name"):
            table[col] = table[col].fillna("").astype(str)
        table["cluster"] = table["cluster"].fillna(-1).astype(int)
    else:  # mask attributes only (no HEML): no merge, no copy
        categorical = isinstance(mask["image"].dtype, pd.CategoricalDtype)
        table = mask.assign(cluster=np.full(len(mask), -1, dtype=int),
                            cluster_name=_named(np.zeros(len(mask), np.int8), ("",), categorical=categorical))
    return table.sort_values(["node", "image"]).reset_index(drop=True), clusters
