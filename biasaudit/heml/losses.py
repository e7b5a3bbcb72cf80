"""The seven pytorch-metric-learning losses HEML trains with, by registry name.

Names are the same string in Python, recipes and on the command line:

================== ======================================== ======================
name               pml class                                 notes
================== ======================================== ======================
triplet-margin     TripletMarginLoss + TripletMarginMiner   the default
angular            AngularLoss
multi-similarity   MultiSimilarityLoss
ntxent             NTXentLoss                                also the ``self`` loss
snr-contrastive    SignalToNoiseRatioContrastiveLoss
proxy-anchor       ProxyAnchorLoss                           owns proxies (trained)
sub-center-arcface SubCenterArcFaceLoss                      owns sub-centres
================== ======================================== ======================

Losses that own parameters get their own optimizer (``loss_lr``) and are saved with
the node. With ``supervision="self"`` a pair-based loss is wrapped in pml's
``SelfSupervisedLoss`` (two augmented views of each input are the positives).

>>> build_loss("proxy-anchor", num_classes=2, embedding_dim=8).has_parameters
True
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

from torch import nn

from biasaudit.core.errors import ValidationError

LOSSES = (
    "triplet-margin",
    "angular",
    "multi-similarity",
    "ntxent",
    "snr-contrastive",
    "proxy-anchor",
    "sub-center-arcface",
)
PROXY_LOSSES = ("proxy-anchor", "sub-center-arcface")


@dataclass
class LossBundle:
    """A node's loss module, its miner (or None) and whether the loss has parameters."""

    loss: nn.Module
    miner: nn.Module | None
    has_parameters: bool


def build_loss(
    loss: str | nn.Module,
    *,
    num_classes: int,
    embedding_dim: int,
    miner: str | nn.Module | None = "default",
    self_supervised: bool = False,
    params: dict[str, Any] | None = None,
) -> LossBundle:
    """A fresh loss (and miner) for one node.

    ``loss`` is a registry name or a pml loss instance (deep-copied, so nodes never share
    proxies). ``miner="default"`` gives TripletMarginMiner to ``triplet-margin`` and no
    miner to the others; pass ``None`` for none or a pml miner instance.
    """
    from pytorch_metric_learning import losses, miners

    params = dict(params or {})
    name = loss if isinstance(loss, str) else type(loss).__name__
    if isinstance(loss, str):
        if loss not in LOSSES:
            raise ValidationError(f"Unknown loss '{loss}'. Expected one of: {', '.join(LOSSES)}.")
        if self_supervised and loss in PROXY_LOSSES:
            raise ValidationError(
                f"Loss '{loss}' learns one proxy per class, but supervision 'self' has no classes; "
                f"use ntxent (default for self), triplet-margin, angular, multi-similarity or snr-contrastive."
            )
        if loss == "triplet-margin":
            module = losses.TripletMarginLoss(**{"margin": 0.1, **params})
        elif loss == "angular":
            module = losses.AngularLoss(**params)
        elif loss == "multi-similarity":
            module = losses.MultiSimilarityLoss(**params)
        elif loss == "ntxent":
            module = losses.NTXentLoss(**{"temperature": 0.1, **params})
        elif loss == "snr-contrastive":
            module = losses.SignalToNoiseRatioContrastiveLoss(**params)
        elif loss == "proxy-anchor":
            module = losses.ProxyAnchorLoss(num_classes=num_classes, embedding_size=embedding_dim, **params)
        else:
            # margin in degrees; pml's default 28.6 with scale 64 is tuned for thousands of
            # identities and stalls on a handful of classes, so start gentler.
            module = losses.SubCenterArcFaceLoss(
                num_classes=num_classes, embedding_size=embedding_dim, **{"margin": 10.0, "scale": 16, **params}
            )
    else:
        module = copy.deepcopy(loss)
    has_parameters = any(True for _ in module.parameters())

    if miner == "default":
        miner_module = miners.TripletMarginMiner(margin=0.2, type_of_triplets="all") if name == "triplet-margin" else None
    elif miner is None or isinstance(miner, nn.Module):
        miner_module = copy.deepcopy(miner)
    else:
        raise ValidationError(f"miner must be 'default', None or a pml miner instance; got {miner!r}.")

    if self_supervised:
        if has_parameters:
            raise ValidationError(
                f"Loss {name} owns parameters (proxies), which supervision 'self' cannot train; "
                f"pick a pair-based loss such as ntxent."
            )
        module = losses.SelfSupervisedLoss(module, symmetric=True)
        miner_module = None  # SelfSupervisedLoss builds its own positive pairs
    return LossBundle(loss=module, miner=miner_module, has_parameters=has_parameters)
