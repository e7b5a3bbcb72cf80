"""Retrieval quality of a node's embeddings: Precision@1 and MAP@R (pml AccuracyCalculator).

Every held-out embedding queries all the others (leave-one-out); the k-NN search is
pml's ``CustomKNN`` over cosine similarity, so faiss stays optional.

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
    from pytorch_metric_learning.distances import CosineSimilarity
    from pytorch_metric_learning.utils.accuracy_calculator import AccuracyCalculator
    from pytorch_metric_learning.utils.inference import CustomKNN

    emb = torch.as_tensor(embeddings, dtype=torch.float32).cpu()
    labels = np.asarray(labels)
    _, counts = np.unique(labels, return_counts=True)
    chance = float(((counts / counts.sum()) ** 2).sum()) if counts.size else float("nan")
    if len(labels) < 2 or counts.max() < 2:
        return {"precision_at_1": float("nan"), "map_at_r": float("nan"), "chance_p_at_1": chance}
    calc = AccuracyCalculator(
        include=("precision_at_1", "mean_average_precision_at_r"),
        k="max_bin_count",
        knn_func=CustomKNN(CosineSimilarity(), batch_size=1024),
    )
    lab = torch.as_tensor(labels)
    res = calc.get_accuracy(emb, lab, emb, lab, ref_includes_query=True)
    return {
        "precision_at_1": float(res["precision_at_1"]),
        "map_at_r": float(res["mean_average_precision_at_r"]),
        "chance_p_at_1": chance,
    }
