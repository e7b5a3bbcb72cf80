"""Retrieval quality of a node's embeddings: Precision@1 and MAP@R.

Every held-out embedding queries all the others (leave-one-out). A node whose pixels
carry no label learns a collapsed embedding: on SynthFaces every test pair of such a node
has cosine > 0.996, and a query's first and second neighbours differ by 10⁻⁹ to 10⁻⁷ in
cosine, far below what a float32 similarity can resolve (D·ε₃₂ ≈ 1.5·10⁻⁵ for D = 128).
The model computes its loss in float32, so it cannot have learned an order among such
neighbours: which one comes first is a side effect of the input, not of the metric.

- **P@1 counts ties** (:func:`nearest_hits`). Neighbours whose similarity to the query lies
  within D·ε₃₂ of the nearest one are tied, and the query scores the share of its tied
  neighbours that have its label: the expected P@1 when ties are broken at random. A
  collapsed node then measures its chance level (±0.003 at 600 rows) instead of a draw
  from the ranking of its residue (±0.025). Ranking such a node exactly in float64
  (this module's previous rule) gave Smiling `neck+cloth` 0.483 against `neck` 0.525 with
  both at chance; counting ties gives 0.499 and 0.499 (reports/benchmarks.md, HEML v2,
  session 8). A node that separates its classes is unchanged (mouth 0.997 either way).
- **MAP@R** is pytorch-metric-learning's, over neighbours ranked by float64 similarity
  where float32 cannot order them (:func:`knn_float64`), so it does not depend on the
  search's rounding.
- **Over every image** (:func:`precision_at_1_all_images`), for a node whose part only some
  images have (``hat``, ``eye_g``): its P@1 is taken on the images with the part, at that
  subset's chance level, while its parent's is taken on every image. The second figure
  counts the images without the part as well, as one tied group, so the two are scored on
  the same rows and the same chance level.

>>> import torch
>>> emb = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9]])
>>> retrieval_metrics(emb, np.array([0, 0, 1, 1]))["precision_at_1"]
1.0
"""

from __future__ import annotations

import numpy as np


def retrieval_metrics(embeddings, labels: np.ndarray) -> dict[str, float]:
    """``precision_at_1`` (ties counted, :func:`nearest_hits`), ``map_at_r`` and
    ``chance_p_at_1`` (Σ class share², the P@1 of embeddings that carry no label
    information) for ``embeddings`` with ``labels``."""
    import torch
    from pytorch_metric_learning.utils.accuracy_calculator import AccuracyCalculator

    emb = torch.as_tensor(embeddings, dtype=torch.float32).cpu()
    labels = np.asarray(labels)
    _, counts = np.unique(labels, return_counts=True)
    chance = chance_p_at_1(labels)
    if len(labels) < 2 or counts.max() < 2:
        return {"precision_at_1": float("nan"), "map_at_r": float("nan"), "chance_p_at_1": chance}
    calc = AccuracyCalculator(include=("mean_average_precision_at_r",), k="max_bin_count", knn_func=knn_float64)
    lab = torch.as_tensor(labels)
    res = calc.get_accuracy(emb, lab, emb, lab, ref_includes_query=True)
    return {
        "precision_at_1": float(nearest_hits(emb, labels).mean()),
        "map_at_r": float(res["mean_average_precision_at_r"]),
        "chance_p_at_1": chance,
    }


def chance_p_at_1(labels: np.ndarray) -> float:
    """Σ class share²: the P@1 of embeddings that carry nothing about ``labels``."""
    _, counts = np.unique(np.asarray(labels), return_counts=True)
    return float(((counts / counts.sum()) ** 2).sum()) if counts.size else float("nan")


def knn_float64(query, k: int, reference, ref_includes_query: bool = False, *, chunk: int = 1024):
    """pml's ``knn_func`` contract (similarities and indices of the ``k`` most similar
    references, the query itself left out when ``ref_includes_query``), ranked as float64
    cosine similarity ranks them, ``chunk`` queries at a time.

    The search runs in float32; a query whose returned similarities lie closer together
    than float32 can tell apart (D·ε₃₂, the bound on a D-dimensional unit-vector dot
    product's rounding error) is searched again in float64. So well-spread embeddings
    cost what pml's search costs, and a collapsed node is still ranked exactly."""
    import torch
    from pytorch_metric_learning.utils.inference import return_results
    from torch.nn import functional as F

    ref32 = F.normalize(torch.as_tensor(reference).float(), dim=1)
    q32 = F.normalize(torch.as_tensor(query).float(), dim=1)
    k = min(k + int(ref_includes_query), len(ref32))
    extra = int(k < len(ref32))  # one more, to see a tie at the boundary of the k returned
    tol = ref32.shape[1] * torch.finfo(torch.float32).eps
    dist, idx = [], []
    ref64 = None  # built on the first tie only: well-spread embeddings never need it
    for lo in range(0, len(q32), chunk):
        d, i = torch.topk(q32[lo : lo + chunk] @ ref32.T, k + extra, dim=1)
        tied = ((d[:, :-1] - d[:, 1:]) < tol).any(dim=1) if d.shape[1] > 1 else torch.zeros(len(d), dtype=torch.bool)
        if tied.any():
            if ref64 is None:
                ref64 = F.normalize(torch.as_tensor(reference).double(), dim=1)
            q64 = F.normalize(torch.as_tensor(query)[lo : lo + chunk][tied].double(), dim=1)
            d64, i64 = torch.topk(q64 @ ref64.T, k + extra, dim=1)
            d[tied], i[tied] = d64.float(), i64
        dist.append(d[:, :k])
        idx.append(i[:, :k])
    return return_results(torch.cat(dist), torch.cat(idx), ref_includes_query)


def nearest_hits(embeddings, labels: np.ndarray, *, gallery=None, gallery_labels: np.ndarray | None = None,
                 chunk: int = 1024) -> np.ndarray:
    """Per query, the share of its nearest other embeddings that have its label: 1.0 or 0.0
    when one is nearest, a fraction when several lie within D·ε₃₂ of the nearest in cosine
    (tied, see the module doc). Leave-one-out Precision@1 is the mean; paired comparisons
    of two embeddings of the same rows (``HEML._validate``) use the per-query values.
    With a ``gallery`` (and its ``gallery_labels``), each query searches the gallery
    instead of the other queries (none is left out). Similarities are float64, ``chunk``
    queries at a time.

    >>> import torch
    >>> emb = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.2, 0.8]])
    >>> nearest_hits(emb, np.array([0, 1, 1, 1])).tolist()
    [0.0, 0.0, 1.0, 1.0]
    >>> nearest_hits(torch.ones(4, 2), np.array([0, 0, 1, 1])).tolist()  # all tied
    [0.3333333333333333, 0.3333333333333333, 0.3333333333333333, 0.3333333333333333]
    >>> nearest_hits(emb[[1, 3]], np.array([0, 1]), gallery=emb[[0, 2]], gallery_labels=np.array([0, 1])).tolist()
    [1.0, 1.0]
    """
    import torch
    from torch.nn import functional as F

    labels = np.asarray(labels)
    n = len(labels)
    if gallery is None:
        if n < 2:
            return np.zeros(n)
        ref_labels = labels
    else:
        ref_labels = np.asarray(gallery_labels)
        if len(ref_labels) != len(gallery):
            raise ValueError(f"gallery has {len(gallery)} rows but gallery_labels {len(ref_labels)}.")
        if n == 0 or len(ref_labels) == 0:
            return np.zeros(n)
    both = labels if gallery is None else np.concatenate([labels, ref_labels])  # one coding for both sides
    inverse = torch.as_tensor(np.unique(both, return_inverse=True)[1].reshape(-1))
    codes = inverse[:n]
    ref_codes = codes if gallery is None else inverse[n:]
    emb = F.normalize(torch.as_tensor(embeddings).double(), dim=1)
    ref = emb if gallery is None else F.normalize(torch.as_tensor(gallery).double(), dim=1)
    tol = emb.shape[1] * torch.finfo(torch.float32).eps
    out = np.empty(n)
    for lo in range(0, n, chunk):
        sim = emb[lo : lo + chunk] @ ref.T
        if gallery is None:
            rows = torch.arange(len(sim))
            sim[rows, lo + rows] = -torch.inf  # leave the query out
        tied = sim >= sim.max(dim=1, keepdim=True).values - tol
        same = ref_codes[None, :] == codes[lo : lo + chunk, None]
        out[lo : lo + chunk] = ((tied & same).sum(1).double() / tied.sum(1)).numpy()
    return out


def validation_hits(val_embeddings, val_labels: np.ndarray, train_embeddings=None,
                    train_labels: np.ndarray | None = None) -> np.ndarray:
    """Per validation query, the mean of two hits (:func:`nearest_hits`): among the other
    validation rows, and against the rows the node trained on as the gallery. Their mean is
    the validation P@1 that builds and chooses parents (``HEML._validate``); only the
    first when there are no training rows.

    Why both: the 210 validation rows of a 2,000-image tree are a sparse gallery, so one
    query's nearest neighbour there is itself a draw; the training rows are a denser
    gallery but one the node was fitted to. Each errs differently, and their mean ranks
    nodes as the 600-row test split does more often than either. Session 10's 14 runs
    (reports/benchmarks.md, HEML v2, session 11), the 46 SynthFaces sibling pairs whose
    test P@1 differ by more than 0.03: among validation rows 42 ordered as on test (the
    wrong picks cost 0.257 of test P@1 in all), against the training rows 43 (0.188),
    the mean 45 (0.063); on the independent generator all three ordered its 37 pairs
    right.

    >>> v = np.array([[1.0, 0.0], [0.0, 1.0]])
    >>> validation_hits(v, np.array([0, 1]), v, np.array([0, 1])).tolist()   # 0 among 2, 1 to train
    [0.5, 0.5]
    """
    among = nearest_hits(val_embeddings, val_labels)
    if train_embeddings is None or train_labels is None or len(train_labels) == 0:
        return among
    return (among + nearest_hits(val_embeddings, val_labels, gallery=train_embeddings,
                                 gallery_labels=train_labels)) / 2.0


def precision_at_1_all_images(p_at_1_present: float, present: np.ndarray, absent: np.ndarray) -> float:
    """Leave-one-out P@1 over every held-out image of a node whose part some images lack.

    ``p_at_1_present`` is the node's P@1 among the ``present`` images (their labels);
    ``absent`` holds the labels of the images without the part. Those images have no
    embedding of the part, so they count as one point: tied with each other and farther
    from every image with the part than any of those are from each other. An image without
    the part then scores the share of the other such images that have its label, and an
    image with it keeps its hit. A node that sees the label only through the part's
    presence (``eye_g`` for Eyeglasses, at chance 1.0 among glasses wearers) scores that
    here; one at chance among the wearers scores about the chance of all the images.

    >>> precision_at_1_all_images(1.0, np.array([1, 1, 0, 0]), np.array([0, 0, 1, 1]))
    0.6666666666666666
    >>> precision_at_1_all_images(0.5, np.array([0, 1]), np.array([]))
    0.5
    """
    present, absent = np.asarray(present), np.asarray(absent)
    n_p, n_a = len(present), len(absent)
    if n_a == 0:
        return float(p_at_1_present)
    if n_p + n_a < 2:
        return float("nan")
    # a lone present image has no neighbour of its own: hits_all_images scores it on the absent ones
    own = np.full(n_p, float(p_at_1_present)) if n_p >= 2 else np.zeros(n_p)
    return float(hits_all_images(own, present, absent).mean())


def hits_all_images(present_hits: np.ndarray, present: np.ndarray, absent: np.ndarray) -> np.ndarray:
    """Per query, the ``present`` images first, then the ``absent`` ones (labels): each
    one's leave-one-out hit over every image, the images without the part one tied group
    (:func:`precision_at_1_all_images`). ``present_hits`` are the present images' hits
    among themselves (:func:`nearest_hits`); a lone image of one side has no tie partner
    of its own, so it scores the share of the other side with its label.

    >>> hits_all_images(np.array([1.0, 1.0]), np.array([1, 1]), np.array([0, 0, 1])).tolist()
    [1.0, 1.0, 0.5, 0.5, 0.0]
    """
    present, absent = np.asarray(present), np.asarray(absent)
    n_p, n_a = len(present), len(absent)
    if n_a == 0:
        return np.asarray(present_hits, float)
    if n_p + n_a < 2:
        return np.zeros(n_p + n_a)
    own = np.asarray(present_hits, float) if n_p >= 2 else _same_label_share(present, absent, itself=False)
    others = (_same_label_share(absent, absent, itself=True) if n_a >= 2
              else _same_label_share(absent, present, itself=False))
    return np.concatenate([own, others])


def gallery_hits_all_images(present_hits: np.ndarray, present: np.ndarray, absent: np.ndarray,
                            gallery_present: np.ndarray, gallery_absent: np.ndarray) -> np.ndarray:
    """Per query (``present`` first, then ``absent``; labels throughout), its hit against a
    gallery whose ``gallery_absent`` rows lack the part. ``present_hits`` are the present
    queries' hits against the ``gallery_present`` rows (:func:`nearest_hits` with a
    gallery). A query without the part is tied with the gallery's rows without it and
    scores the share of them with its label; where the gallery has no row on a query's
    side, the other side is its tied nearest.

    >>> gallery_hits_all_images(np.array([1.0]), np.array([1]), np.array([0, 1]),
    ...                         np.array([1, 1]), np.array([0, 0, 0, 1])).tolist()
    [1.0, 0.75, 0.25]
    """
    present, absent = np.asarray(present), np.asarray(absent)
    gallery_present, gallery_absent = np.asarray(gallery_present), np.asarray(gallery_absent)
    if len(gallery_present) + len(gallery_absent) == 0:
        return np.zeros(len(present) + len(absent))
    own = (np.asarray(present_hits, float) if len(gallery_present)
           else _same_label_share(present, gallery_absent, itself=False))
    others = _same_label_share(absent, gallery_absent if len(gallery_absent) else gallery_present, itself=False)
    return np.concatenate([own, others])


def _same_label_share(queries: np.ndarray, pool: np.ndarray, *, itself: bool) -> np.ndarray:
    """Per query, the share of ``pool`` with its label (``itself``: each query is one of
    ``pool`` and is left out)."""
    queries, pool = np.asarray(queries), np.asarray(pool)
    if len(queries) == 0:
        return np.zeros(0)
    values, counts = np.unique(pool, return_counts=True)
    at = np.clip(np.searchsorted(values, queries), 0, len(values) - 1)
    same = np.where(values[at] == queries, counts[at], 0).astype(float)
    return (same - 1) / (len(pool) - 1) if itself else same / len(pool)
