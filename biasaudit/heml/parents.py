"""How a parent node is built besides its weights: its own pixels' pathway, and the choice
of what it keeps (:func:`choose_parent`).

A parent that reads its children (``parent_inputs="children"``) embeds
``normalize(fusion([e_own, e_child1, e_child2]))``. Its fused embedding can meet the metric
loss through the children alone, so without more its own pixels' pathway (trunk and
embedder, started from the children's averaged weights) learns next to nothing: for a DGML
node, its attention maps would show where an untrained model looks, not where the label
sits in the node's pixels. :class:`OwnPathwayLoss` adds the same metric loss on ``e_own``,
so every node keeps a segment-specific model of its own pixels (the paper's node model),
and the fusion decides how much of it the node's similarity uses.

>>> import torch
>>> from pytorch_metric_learning.losses import TripletMarginLoss
>>> loss = OwnPathwayLoss(TripletMarginLoss(), None, own=lambda: None)
>>> float(loss(torch.eye(4), torch.tensor([0, 0, 1, 1]))) >= 0.0
True
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping

import numpy as np
import torch
from torch import nn

#: Weight of the own-pathway loss against the fused embedding's loss: equal, so the own
#: pixels' model is trained as a leaf of its segment would be.
OWN_LOSS_WEIGHT = 1.0
#: How many standard errors of the paired difference (one-sided 5 %) a candidate must gain
#: over the default on the validation queries to replace it (:func:`choose_parent`).
CHOICE_Z = 1.645


class OwnPathwayLoss(nn.Module):
    """``base(fused) + weight · base(own)``: the metric loss on a parent's fused embedding
    plus the same loss (own mined tuples) on its own pixels' embedding from ``own()``
    (:meth:`NodeModel.last_own_embedding`). ``base`` stays a sub-module, so its parameters
    (proxies) are trained once and saved under their own names from the original loss."""

    def __init__(self, base: nn.Module, miner: nn.Module | None, *,
                 own: Callable[[], torch.Tensor | None], weight: float | None = None) -> None:
        super().__init__()
        self.base = base
        self.miner = miner
        self._own = own
        self.weight = float(OWN_LOSS_WEIGHT if weight is None else weight)

    def forward(self, emb: torch.Tensor, y: torch.Tensor, tuples=None) -> torch.Tensor:
        loss = self.base(emb, y, tuples)
        own = self._own()
        if own is not None and self.weight:
            own = own.float()
            own_tuples = self.miner(own, y) if self.miner is not None else None
            loss = loss + self.weight * self.base(own, y, own_tuples)
        return loss


def choose_parent(hits: Mapping[str, np.ndarray], default: str, *, z: float = CHOICE_Z) -> str:
    """Which of a parent's candidate embeddings to keep, from ``hits``: candidate → per
    validation query its hit (:func:`~biasaudit.heml.quality.validation_hits`: whether its
    nearest other validation row, and its nearest training row, share its label, averaged;
    the share of them where several are tied), every candidate scored on the same queries.

    ``default`` is kept unless another candidate retrieves better by more than ``z``
    standard errors of the paired per-query difference; among those that do, the one with
    the highest P@1. A raw argmax would follow noise: at a node whose pixels carry no
    label every candidate is at chance, and 210 validation rows put one candidate's P@1
    ±0.035 (1 s.d.) from another's by luck alone, so the parent would change what it
    measures on a coin flip (and score below its children on the test split as often).

    >>> same = np.array([1.0, 0.0] * 50)
    >>> choose_parent({"child": same, "tuned": np.roll(same, 1)}, "child")     # both at chance
    'child'
    >>> choose_parent({"child": same, "tuned": np.ones(100)}, "child")         # clearly better
    'tuned'
    """
    base = np.asarray(hits[default], float)
    kept, kept_p = default, float(base.mean())
    for name, h in hits.items():
        if name == default:
            continue
        d = np.asarray(h, float) - base
        if len(d) < 2:
            continue
        gain = float(d.mean())
        se = float(d.std(ddof=1)) / math.sqrt(len(d))
        if gain > 0 and gain > z * se and float(np.mean(h)) > kept_p:
            kept, kept_p = name, float(np.mean(h))
    return kept


def significant_skill(metrics: Mapping[str, object], *, z: float = CHOICE_Z) -> bool:
    """Whether a trained node's validation P@1 is above its chance level by more than ``z``
    standard errors of P@1 under no skill (√(c(1−c)/n), c = chance, n = validation rows).

    >>> significant_skill({"val_precision_at_1": 0.77, "val_chance_p_at_1": 0.68, "n_val": 210})
    True
    >>> significant_skill({"val_precision_at_1": 0.52, "val_chance_p_at_1": 0.50, "n_val": 210})
    False
    """
    p, chance, n = (metrics.get(k) for k in ("val_precision_at_1", "val_chance_p_at_1", "n_val"))
    if p is None or chance is None or not n or not (math.isfinite(p) and math.isfinite(chance)):
        return False
    se = math.sqrt(max(chance * (1.0 - chance), 1e-12) / float(n))
    return p - chance > z * se


def as_parent_reads_it(metrics: Mapping[str, object]) -> Mapping[str, object]:
    """A child's validation figures as its parent reads them (skill weights, which
    children carry the label, a DGML parent's prior): over every validation image when the
    child's part is absent from some (``val_precision_at_1_all_images``, at that chance
    level and row count), else on the images that have it. The parent's input marks the
    images without the part (its embedding is zero there), so presence itself can carry
    the label: ``hat`` for Wearing_Hat sits at chance 1.0 among the images with a hat, and
    showed no skill on its own rows however well it predicts the label.

    >>> as_parent_reads_it({"val_precision_at_1": 1.0, "val_chance_p_at_1": 1.0, "n_val": 40,
    ...                     "val_precision_at_1_all_images": 0.97, "val_chance_p_at_1_all_images": 0.56,
    ...                     "n_val_all_images": 210})["val_precision_at_1"]
    0.97
    >>> significant_skill(as_parent_reads_it({"val_precision_at_1_all_images": 0.97,
    ...                   "val_chance_p_at_1_all_images": 0.56, "n_val_all_images": 210}))
    True
    """
    if "val_precision_at_1_all_images" not in metrics:
        return metrics
    return {**metrics, "val_precision_at_1": metrics["val_precision_at_1_all_images"],
            "val_chance_p_at_1": metrics.get("val_chance_p_at_1_all_images"),
            "n_val": metrics.get("n_val_all_images")}
