"""The fixed training recipe, and the four group baselines.

Every run of ``biasaudit evaluate`` trains with :class:`Recipe` (defaults below) and
scores the model of the **last** step: no validation set, no early stopping, no group
labels for model selection, which is the honest setting for a repair that claims to need
no group labels (and the baselines get the same treatment).

- Optimiser: AdamW (lr 3e-3) with cosine decay to 0 over the run, and strong decoupled
  weight decay (2.0) on every parameter trained from scratch; a pretrained trunk's weights
  decay by 1e-4 only, because decaying them towards zero would discard the pretraining
  (not tuned: the pretrained backbones are too slow to tune on CPUs). Strong weight decay
  is what lets a group-balanced method learn from a few minority images instead of
  memorising them (Sagawa et al. 2020 found the same for GroupDRO). SynthFaces plant 0.95,
  3 seeds: ``oversample`` 43.6 % ± 2.1 (Adam, L2 1e-4) → 93.6 % ± 3.9 worst-group accuracy
  (seeds 3 and 4: 78.4 % and 97.2 %), the balanced oracle 96.0 % → 98.4 %. Weight decay
  3.0 left ``oversample`` at 75 % on two of three seeds (81.9 % ± 11.9) and 6.0 collapses;
  1.0 reached 78–82 %. The price: ``reweight`` and ``groupdro``, whose batches carry rare,
  heavily weighted minority images, collapse to near-constant scores on some seeds
  (``reports/benchmarks.md``, "Evaluate and probe", has every recipe's table). Mixup
  instead reached 74–77 % and cost the oracle 18 points.
- Length: ``epochs`` (30) passes over the *training set as given* — every method on one
  training set takes the same number of optimiser steps, so ``subsample`` (a smaller set)
  repeats its images rather than training for less. (On SynthFaces a balanced n=2000
  training set reaches 96 % worst-group accuracy in 30 epochs; 20 stopped at 89 %, 40
  reached 97 % for a third more time.)
- Augmentation, as batched tensor ops on the cached ``uint8`` images: horizontal flip
  (p = 0.5) and a random crop of the image padded by ``size / 16`` pixels (edge pixels
  repeated).
- Loss: binary cross-entropy on one logit.

Methods (groups are the true (label × sensitive) cells of the training set):

- ``erm``: uniform shuffling, mean loss;
- ``oversample``: every batch drawn with replacement, P(image) ∝ 1 / size of its group,
  so groups are equally frequent in expectation;
- ``reweight``: uniform shuffling, each image's loss weighted by N / (G · size of its
  group) (mean weight 1);
- ``subsample``: every group cut at random down to the smallest one, then ``erm``;
- ``groupdro``: online GroupDRO (Sagawa et al. 2020, Algorithm 1): group weights
  q ← q · exp(η · group loss), normalised, loss = Σ q_g · loss_g, η = ``dro_step``.

>>> Recipe().epochs
30
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch.nn import functional as F

from biasaudit.core.errors import ValidationError
from biasaudit.core.progress import progress
from biasaudit.evaluate.models import Classifier, build_classifier

METHODS = ("erm", "oversample", "reweight", "subsample", "groupdro")
#: ``adamw`` (the default: decoupled weight decay) or ``adam`` (weight decay as an L2 term,
#: the recipe before strong weight decay; kept so old settings can be reproduced)
OPTIMIZERS = {"adamw": torch.optim.AdamW, "adam": torch.optim.Adam}


@dataclass(frozen=True)
class Recipe:
    """The training recipe (module docstring); one per ``evaluate`` call."""

    epochs: int = 30
    batch_size: int = 64
    lr: float = 3e-3
    weight_decay: float = 2.0
    pretrained_weight_decay: float = 1e-4
    optimizer: str = "adamw"
    flip: bool = True
    crop_frac: float = 1 / 16
    dro_step: float = 0.01
    predict_batch: int = 256

    def to_dict(self) -> dict:
        return asdict(self)


def resolve_device(device: str) -> torch.device:
    """``auto`` → CUDA when present, else CPU; ``cuda`` without a GPU is an error."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise ValidationError("--device cuda: no CUDA GPU is visible to torch here. Use --device cpu or auto.")
    if device not in ("cpu", "cuda"):
        raise ValidationError(f"--device {device}: expected auto, cpu or cuda.")
    return torch.device(device)


def augment(x: torch.Tensor, *, generator: torch.Generator, flip: bool = True, pad: int = 4) -> torch.Tensor:
    """Random horizontal flip and padded random crop of a uint8 batch N×3×S×S → float.

    One gather per axis does every image's crop at once (no per-image Python).

    >>> g = torch.Generator().manual_seed(0)
    >>> augment(torch.zeros(5, 3, 16, 16, dtype=torch.uint8), generator=g, pad=2).shape
    torch.Size([5, 3, 16, 16])
    """
    x = x.float()
    n, c, h, w = x.shape
    dev = x.device
    if flip:
        mirrored = torch.rand(n, generator=generator).to(dev) < 0.5
        x = torch.where(mirrored[:, None, None, None], x.flip(3), x)
    if pad > 0:
        xp = F.pad(x, (pad, pad, pad, pad), mode="replicate")
        dy = torch.randint(0, 2 * pad + 1, (n,), generator=generator).to(dev)
        dx = torch.randint(0, 2 * pad + 1, (n,), generator=generator).to(dev)
        rows = dy[:, None] + torch.arange(h, device=dev)[None]
        cols = dx[:, None] + torch.arange(w, device=dev)[None]
        xp = xp.gather(2, rows[:, None, :, None].expand(n, c, h, w + 2 * pad))
        x = xp.gather(3, cols[:, None, None, :].expand(n, c, h, w))
    return x


def group_codes(groups: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(integer code per image, size of each group) for group keys of any type."""
    keys, codes = np.unique(np.asarray(groups).astype(str), return_inverse=True)
    return codes.astype(np.int64), np.bincount(codes, minlength=len(keys))


def _index_stream(method: str, n_steps: int, batch: int, idx: np.ndarray, codes: np.ndarray,
                  counts: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The image indices of every step (n_steps × batch), drawn up front."""
    need = n_steps * batch
    if method == "oversample":
        p = 1.0 / counts[codes[idx]]
        return rng.choice(idx, size=need, replace=True, p=p / p.sum()).reshape(n_steps, batch)
    reps = math.ceil(need / len(idx))
    stream = np.concatenate([rng.permutation(idx) for _ in range(reps)])
    return stream[:need].reshape(n_steps, batch)


def _param_groups(model: Classifier, recipe: Recipe) -> list[dict]:
    pretrained = model.backbone != "small-cnn"
    trunk = [p for p in model.trunk.parameters() if p.requires_grad]
    head = [p for n, p in model.named_parameters() if p.requires_grad and not n.startswith("trunk.")]
    return [{"params": trunk, "weight_decay": recipe.pretrained_weight_decay if pretrained else recipe.weight_decay},
            {"params": head, "weight_decay": recipe.weight_decay}]


def train_classifier(images: torch.Tensor, y: np.ndarray, *, method: str = "erm",
                     groups: np.ndarray | None = None, recipe: Recipe = Recipe(),
                     backbone: str = "small-cnn", seed: int = 0, device: str | torch.device = "cpu",
                     desc: str = "train") -> Classifier:
    """Train a classifier on ``images`` (N×3×S×S uint8) for binary ``y`` (0/1) with ``method``.

    ``groups`` (one key per image, e.g. "1|blond") is required by every method but ``erm``.

    >>> imgs = torch.randint(0, 255, (8, 3, 16, 16), dtype=torch.uint8)
    >>> m = train_classifier(imgs, np.array([0, 1] * 4), recipe=Recipe(epochs=1, batch_size=4))
    >>> type(m).__name__
    'Classifier'
    """
    if method not in METHODS:
        raise ValidationError(f"method '{method}': expected one of {', '.join(METHODS)}.")
    y = np.asarray(y).astype(np.int64)
    n = len(y)
    if images.shape[0] != n:
        raise ValidationError(f"{images.shape[0]} images but {n} labels; give one label per image.")
    if method != "erm" and groups is None:
        raise ValidationError(f"method '{method}' needs the true groups (label × sensitive) of the training set.")
    codes, counts = group_codes(groups if groups is not None else np.zeros(n, np.int64))
    dev = torch.device(device)
    rng = np.random.default_rng(seed)
    gen = torch.Generator().manual_seed(seed)
    idx = np.arange(n)
    if method == "subsample":
        smallest = int(counts.min())
        idx = np.sort(np.concatenate([rng.choice(np.flatnonzero(codes == g), smallest, replace=False)
                                      for g in range(len(counts))]))
    batch = min(recipe.batch_size, n)
    n_steps = max(1, recipe.epochs * math.ceil(n / batch))
    steps = _index_stream(method, n_steps, batch, idx, codes, counts, rng)

    model = build_classifier(backbone, seed=seed).to(dev)
    if recipe.optimizer not in OPTIMIZERS:
        raise ValidationError(f"recipe optimizer '{recipe.optimizer}': expected one of {', '.join(OPTIMIZERS)}.")
    opt = OPTIMIZERS[recipe.optimizer](_param_groups(model, recipe), lr=recipe.lr)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda t: 0.5 * (1.0 + math.cos(math.pi * t / n_steps)))
    weights = torch.as_tensor(n / (len(counts) * counts[codes]), dtype=torch.float32, device=dev)
    y_t = torch.as_tensor(y, dtype=torch.float32, device=dev)
    codes_t = torch.as_tensor(codes, device=dev)
    q = torch.full((len(counts),), 1.0 / len(counts), device=dev)
    pad = max(1, round(images.shape[-1] * recipe.crop_frac)) if recipe.crop_frac > 0 else 0
    on_device = images.to(dev)
    model.train()
    for step in progress(range(n_steps), desc=desc, total=n_steps, unit="step"):
        b = torch.as_tensor(steps[step], device=dev)
        x = augment(on_device[b], generator=gen, flip=recipe.flip, pad=pad)
        losses = F.binary_cross_entropy_with_logits(model(x), y_t[b], reduction="none")
        if method == "reweight":
            loss = (losses * weights[b]).mean()
        elif method == "groupdro":
            g = codes_t[b]
            per_group = torch.zeros_like(q).index_add(0, g, losses)
            seen = torch.bincount(g, minlength=len(q)).float()
            group_loss = per_group / seen.clamp(min=1.0)
            q = q * torch.exp(recipe.dro_step * group_loss.detach())
            q = q / q.sum()
            loss = (q * group_loss).sum()
        else:
            loss = losses.mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
    return model.eval()


@torch.no_grad()
def predict_scores(model: torch.nn.Module, images: torch.Tensor, *, batch: int = 256,
                   device: str | torch.device = "cpu") -> np.ndarray:
    """P(positive) per image (sigmoid of the logit), in the order of ``images``."""
    model.eval()
    dev = torch.device(device)
    out = [torch.sigmoid(model(images[i : i + batch].to(dev).float())).cpu()
           for i in range(0, len(images), batch)]
    return torch.cat(out).numpy().astype(np.float64) if out else np.zeros(0)
