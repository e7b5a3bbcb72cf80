"""Training loops: one node at a time, or a whole tree level at once with stacked parameters.

``train_modules`` trains K modules (K node models, or K embedders over cached frozen
features) on K datasets. With K == 1 it is the plain loop. With K > 1 the modules'
parameters are stacked (``torch.func.stack_module_state``) and one ``vmap``-ed
``functional_call`` runs all K forward/backward passes as a single batched computation;
Adam is element-wise, so one Adam over the stacked tensors equals K independent ones.
Each node still draws batches from its own data and has its own loss (and proxies).
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from biasaudit.heml.losses import LossBundle


@dataclass(frozen=True)
class DeviceSetup:
    """Where and how tensors run: ``autocast`` (bf16) and ``channels_last`` only on CUDA."""

    device: torch.device
    autocast: bool
    channels_last: bool

    @property
    def is_cuda(self) -> bool:
        return self.device.type == "cuda"


def resolve_device(device: str) -> DeviceSetup:
    """``auto`` → CUDA when present (bf16 autocast), else CPU; channels_last on both
    (oneDNN's CPU convolutions and max-pooling run 1.3× and ~8× faster on NHWC tensors)."""
    from biasaudit.core.errors import ValidationError

    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValidationError(
            f"--device {device} was asked for but torch sees no CUDA device; use --device cpu or auto."
        )
    if not (device == "cpu" or device.startswith("cuda")):
        raise ValidationError(f"--device must be auto, cpu or cuda[:N]; got '{device}'.")
    dev = torch.device(device)
    return DeviceSetup(device=dev, autocast=dev.type == "cuda", channels_last=True)


def to_device(x: torch.Tensor, setup: DeviceSetup) -> torch.Tensor:
    """Copy a CPU tensor to the device once, through pinned memory on CUDA."""
    if setup.is_cuda:
        if x.device.type != "cpu":  # already on a GPU: only pageable host memory is pinned
            return x.to(setup.device)
        return x.pin_memory().to(setup.device, non_blocking=True)
    return x


def prepare_images(x: torch.Tensor, setup: DeviceSetup) -> torch.Tensor:
    """uint8 N×3×H×W → float on the device, channels_last on CUDA."""
    x = x.to(setup.device, non_blocking=True).float()
    if setup.channels_last and x.ndim == 4:
        x = x.contiguous(memory_format=torch.channels_last)
    return x


def augment(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """A random view of each image in a 0–255 float batch: scale, shift, mirror, brightness.

    Used for ``self`` supervision (two views of one input are positives) and, when asked,
    for label supervision. Out-of-image pixels become 0, the default background.
    """
    b = x.shape[0]

    def u(lo: float, hi: float, *shape: int) -> torch.Tensor:
        return (torch.rand(shape or (b,), generator=gen) * (hi - lo) + lo).to(x.device)

    scale = u(0.75, 1.0)
    flip = (torch.rand(b, generator=gen) < 0.5).to(x.device, x.dtype) * 2 - 1
    theta = torch.zeros(b, 2, 3, device=x.device, dtype=x.dtype)
    theta[:, 0, 0] = scale * flip
    theta[:, 1, 1] = scale
    theta[:, 0, 2] = u(-0.12, 0.12)
    theta[:, 1, 2] = u(-0.12, 0.12)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    x = F.grid_sample(x, grid, align_corners=False)
    gain = u(0.75, 1.25).view(b, 1, 1, 1)
    shift = u(-20.0, 20.0, b, 3).view(b, 3, 1, 1)
    return (x * gain + shift).clamp(0.0, 255.0)


def batch_loss(bundle: LossBundle, emb: torch.Tensor, y: torch.Tensor | None,
               emb_view: torch.Tensor | None = None) -> torch.Tensor:
    """One node's loss on one batch (``emb_view`` given: self-supervised pairs)."""
    if emb_view is not None:
        return bundle.loss(emb, emb_view)
    tuples = bundle.miner(emb, y) if bundle.miner is not None else None
    return bundle.loss(emb, y, tuples)


def train_modules(
    modules: list[nn.Module],
    bundles: list[LossBundle],
    inputs: list[torch.Tensor | tuple[torch.Tensor, ...]],
    targets: list[torch.Tensor | None],
    *,
    normalize: bool,
    epochs: int,
    batch_size: int,
    lr: float,
    loss_lr: float,
    setup: DeviceSetup,
    gen: torch.Generator,
    self_supervised: bool = False,
    augment_inputs: bool = False,
    progress_desc: str | None = None,
) -> list[list[float]]:
    """Train ``modules[k]`` on ``inputs[k]`` (already on the device) with ``bundles[k]``.

    ``inputs[k]`` is a tensor, or a tuple whose first item is the images/features and
    whose further items (e.g. the children's embeddings of a parent) are passed to the
    module as extra arguments, row-aligned with the first. A module with an ``aux_loss()``
    (DGML's diversity loss) has it added to its metric loss (one module at a time only).

    ``normalize``: L2-normalise outputs here (when the module is an embedder over cached
    features; node models normalise themselves). Returns each module's mean loss per epoch.
    Images (4-D uint8 inputs) are converted per batch; feature inputs are used as given.
    """
    from biasaudit.core.progress import progress

    k = len(modules)
    inputs = [x if isinstance(x, tuple) else (x,) for x in inputs]
    sizes = [len(x[0]) for x in inputs]
    bs = max(2, min(batch_size, *sizes))
    steps = math.ceil(max(sizes) / bs)
    for m in modules:
        m.train()
    if k == 1:
        params = {n: p for n, p in modules[0].named_parameters() if p.requires_grad}
        buffers: dict[str, torch.Tensor] = {}
        base = modules[0]
    else:
        params, buffers = torch.func.stack_module_state(modules)
        params = {n: p.detach().contiguous().requires_grad_(True) for n, p in params.items()}
        base = copy.deepcopy(modules[0]).to("meta")
    optim = torch.optim.Adam(params.values(), lr=lr)
    loss_params = [p for b in bundles for p in b.loss.parameters()]
    loss_optim = torch.optim.Adam(loss_params, lr=loss_lr) if loss_params else None

    aux_of = getattr(base, "aux_loss", None) if k == 1 else None

    def forward(x: tuple[torch.Tensor, ...]) -> torch.Tensor:
        # x: tuple of K×B×... ; returns K×B×D embeddings in float32
        with torch.autocast(device_type=setup.device.type, dtype=torch.bfloat16, enabled=setup.autocast):
            if k == 1:
                out = base(*(xi[0] for xi in x)).unsqueeze(0)
            else:
                out = torch.func.vmap(
                    lambda p, b, *xi: torch.func.functional_call(base, (p, b), xi)
                )(params, buffers, *x)
        out = out.float()
        return F.normalize(out, dim=-1) if normalize else out

    def take(j: int, idx: torch.Tensor, view: bool) -> tuple[torch.Tensor, ...]:
        first, *extra = inputs[j]
        x = first[idx.to(first.device)]
        extra = [e[idx.to(e.device)] for e in extra]
        if x.dtype == torch.uint8:
            x = prepare_images(x, setup)
            if view or augment_inputs:
                x = augment(x, gen)
            if k > 1:
                # vmap cannot run group_norm on channels_last inputs (torch NYI); stacked
                # convolutions are grouped convolutions anyway, so plain layout loses nothing.
                x = x.contiguous()
        return (x, *extra)

    def stack(parts: list[tuple[torch.Tensor, ...]]) -> tuple[torch.Tensor, ...]:
        return tuple(torch.stack(items) for items in zip(*parts, strict=True))

    perms = [torch.randperm(n, generator=gen) for n in sizes]
    cursors = [0] * k
    history: list[list[float]] = [[] for _ in range(k)]
    epoch_iter = range(epochs)
    if progress_desc:
        epoch_iter = progress(epoch_iter, desc=progress_desc, total=epochs, unit="epoch")
    for _ in epoch_iter:
        totals = [0.0] * k
        for _ in range(steps):
            idxs = []
            for j in range(k):
                if cursors[j] + bs > sizes[j]:
                    perms[j] = torch.randperm(sizes[j], generator=gen)
                    cursors[j] = 0
                idxs.append(perms[j][cursors[j] : cursors[j] + bs])
                cursors[j] += bs
            if self_supervised:
                xa = stack([take(j, idxs[j], True) for j in range(k)])
                xb = stack([take(j, idxs[j], True) for j in range(k)])
                emb = forward(tuple(torch.cat([a, b], dim=1) for a, b in zip(xa, xb, strict=True)))
                losses = [batch_loss(bundles[j], emb[j, :bs], None, emb[j, bs:]) for j in range(k)]
            else:
                emb = forward(stack([take(j, idxs[j], False) for j in range(k)]))
                losses = [
                    batch_loss(bundles[j], emb[j], targets[j][idxs[j].to(targets[j].device)])
                    for j in range(k)
                ]
            total = torch.stack(losses).sum()
            aux = aux_of() if aux_of is not None else None
            if aux is not None:
                total = total + aux
            optim.zero_grad(set_to_none=True)
            if loss_optim is not None:
                loss_optim.zero_grad(set_to_none=True)
            total.backward()
            optim.step()
            if loss_optim is not None:
                loss_optim.step()
            for j in range(k):
                totals[j] += float(losses[j].detach())
        for j in range(k):
            history[j].append(totals[j] / steps)
    if k > 1:
        with torch.no_grad():
            for j, m in enumerate(modules):
                for name, p in m.named_parameters():
                    p.copy_(params[name][j])
    for m in modules:
        m.eval()
    return history


@torch.no_grad()
def run_batched(fn, x: torch.Tensor, setup: DeviceSetup, *, batch_size: int = 256,
                extra: torch.Tensor | None = None) -> torch.Tensor:
    """``fn`` over ``x`` in batches (images converted per batch); float32 result on the CPU.
    ``extra`` (row-aligned with ``x``) is passed as ``fn``'s second argument."""
    outs = []
    for start in range(0, len(x), batch_size):
        xb = to_device(x[start : start + batch_size], setup)  # through pinned memory on CUDA
        xb = prepare_images(xb, setup) if xb.dtype == torch.uint8 else xb
        args = (xb,) if extra is None else (xb, to_device(extra[start : start + batch_size], setup))
        with torch.autocast(device_type=setup.device.type, dtype=torch.bfloat16, enabled=setup.autocast):
            out = fn(*args)
        outs.append(out.float().cpu())
    if not outs:
        return torch.zeros(0)
    return torch.cat(outs)


class Stopwatch:
    """Wall time and (on CUDA) peak allocated GPU memory of one block."""

    def __init__(self, setup: DeviceSetup) -> None:
        self.setup = setup
        self.seconds = 0.0
        self.peak_gpu_mb: float | None = None

    def __enter__(self) -> Stopwatch:
        if self.setup.is_cuda:
            torch.cuda.synchronize(self.setup.device)
            torch.cuda.reset_peak_memory_stats(self.setup.device)
        self._t0 = time.perf_counter()
        return self

    def __exit__(self, *exc) -> None:
        if self.setup.is_cuda:
            torch.cuda.synchronize(self.setup.device)
            self.peak_gpu_mb = torch.cuda.max_memory_allocated(self.setup.device) / 2**20
        self.seconds = time.perf_counter() - self._t0
