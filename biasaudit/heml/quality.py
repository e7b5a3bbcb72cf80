"""Retrieval quality of a node's embeddings: Precision@1 and MAP@R (pml AccuracyCalculator).

Every held-out embedding queries all the others (leave-one-out). The k-NN search ranks by
float64 similarity where float32 cannot (:func:`knn_float64`), so faiss stays optional and the ranking does not depend on
rounding: a node whose pixels carry no label learns a collapsed embedding (on SynthFaces
every test pair of such a node has cosine > 0.996, and the gap between a query's first
and second neighbour is 10⁻⁸ to 10⁻⁷, at float32's resolution). In float32, which
neighbour comes first there was decided by rounding and batching (pml's batched search
and a dense product disagreed by up to 0.03 in P@1 on the same embeddings), and a parent
that carries its child's embedding forward could score differently from that child.

>>> import torch
>>> emb = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9]])
>>> retrieval_metrics(emb, np.array([0, 0, 1, 1]))["precision_at_1"]
1.0
"""

from __future__ import annotations

import numpy as np


def retrieval_metrics(embeddings, labels: np.ndarray) -> dict[str, float]:
    """``precision_at_1``, ``map_at_r`` and ``chance_p_at_1`` (Σ class share², the P@1 of
    embeddings that carry no label information) for ``embeddings`` with ``labels``."""
    import torch
    from pytorch_metric_learning.utils.accuracy_calculator import AccuracyCalculator

    emb = torch.as_tensor(embeddings, dtype=torch.float32).cpu()
    labels = np.asarray(labels)
    _, counts = np.unique(labels, return_counts=True)
    chance = float(((counts / counts.sum()) ** 2).sum()) if counts.size else float("nan")
    if len(labels) < 2 or counts.max() < 2:
        return {"precision_at_1": float("nan"), "map_at_r": float("nan"), "chance_p_at_1": chance}
    calc = AccuracyCalculator(
        include=("precision_at_1", "mean_average_precision_at_r"),
        k="max_bin_count",
        knn_func=knn_float64,
    )
    lab = torch.as_tensor(labels)
    res = calc.get_accuracy(emb, lab, emb, lab, ref_includes_query=True)
    return {
        "precision_at_1": float(res["precision_at_1"]),
        "map_at_r": float(res["mean_average_precision_at_r"]),
        "chance_p_at_1": chance,
    }


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


def nearest_hits(embeddings, labels: np.ndarray) -> np.ndarray:
    """Per query, 1.0 when its nearest other embedding (cosine, float64) has its label, else
    0.0: leave-one-out Precision@1 is the mean. Paired comparisons of two embeddings of the
    same rows (``HEML._validate``) use the per-query values.

    >>> import torch
    >>> emb = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.2, 0.8]])
    >>> nearest_hits(emb, np.array([0, 1, 1, 1])).tolist()
    [0.0, 0.0, 1.0, 1.0]
    """
    labels = np.asarray(labels)
    if len(labels) < 2:
        return np.zeros(len(labels))
    _, idx = knn_float64(embeddings, 1, embeddings, ref_includes_query=True)
    return (labels[idx[:, 0].numpy()] == labels).astype(float)
