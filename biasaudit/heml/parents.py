"""What a parent node learns besides its fused embedding: its own pixels' pathway.

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

from collections.abc import Callable

import torch
from torch import nn

#: Weight of the own-pathway loss against the fused embedding's loss: equal, so the own
#: pixels' model is trained as a leaf of its segment would be.
OWN_LOSS_WEIGHT = 1.0


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
