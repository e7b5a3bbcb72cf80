"""Peak tensor memory of HEML's node training, measured without a GPU.

On CUDA, ``biasaudit.heml`` reports each node's ``torch.cuda.max_memory_allocated``: the
caching allocator's high-water mark of the bytes held by live tensors. A CPU has no such
counter, so :class:`LiveTensorBytes` keeps one: it sees every tensor an operator creates (a
``TorchDispatchMode``), adds its storage's bytes once, and subtracts them when the storage
is freed (a ``weakref.finalize`` on the storage). The peak is then the figure the GPU would
report for the same tensors, less what only a GPU allocates (cuBLAS/cuDNN workspaces, the
allocator's 512-byte rounding), and less what only a CPU allocates outside tensors (oneDNN
scratch pads, which this counter does not see either).

:func:`track_node_training` wraps the ``train_modules`` that ``biasaudit.heml.estimator``
calls, so each call (one node when the tree trains node by node in one process) gets its own
peak, counted from the same starting point as the GPU's ``reset_peak_memory_stats``: the
trained modules' parameters, the loss's parameters, and the inputs already on the device.
"""

from __future__ import annotations

import contextlib
import dataclasses
import weakref
from collections.abc import Iterable, Iterator

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten


class LiveTensorBytes(TorchDispatchMode):
    """Bytes held by live tensor storages, and their peak, while the mode is active."""

    def __init__(self) -> None:
        super().__init__()
        self._sizes: dict[int, int] = {}
        self.current = 0
        self.peak = 0

    def count(self, tensors: Iterable[torch.Tensor]) -> None:
        """Count tensors that exist already (parameters, inputs): the GPU's peak includes them."""
        for t in tensors:
            self._add(t)

    def _add(self, t: torch.Tensor) -> None:
        if t.device.type == "meta":
            return
        storage = t.untyped_storage()
        # views share a storage: count its bytes once, however many tensors look at it
        key = storage._cdata
        if key in self._sizes:
            return
        size = storage.nbytes()
        self._sizes[key] = size
        self.current += size
        self.peak = max(self.peak, self.current)
        weakref.finalize(storage, self._free, key)

    def _free(self, key: int) -> None:
        self.current -= self._sizes.pop(key, 0)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in tree_flatten(out)[0]:
            if isinstance(t, torch.Tensor):
                self._add(t)
        return out


def _tensors(obj) -> Iterator[torch.Tensor]:
    if isinstance(obj, torch.nn.Module):
        yield from obj.parameters()
        yield from obj.buffers()
    elif isinstance(obj, torch.Tensor):
        yield obj
    elif isinstance(obj, (list, tuple)):
        for item in obj:
            yield from _tensors(item)


@contextlib.contextmanager
def track_node_training(estimator_module, *, autocast: bool = False) -> Iterator[dict[str, float]]:
    """Patch ``estimator_module.train_modules`` for the block; yields ``{progress label: peak MiB}``.

    ``autocast=True`` trains under bf16 autocast on the CPU as well, as HEML does on CUDA,
    so the activations it keeps are the GPU's bf16 ones rather than fp32.
    """
    original = estimator_module.train_modules
    peaks: dict[str, float] = {}

    def measured(modules, bundles, inputs, targets, **kwargs):
        mode = LiveTensorBytes()
        mode.count(_tensors(list(modules)))
        mode.count(_tensors([b.loss for b in bundles]))
        mode.count(_tensors(list(inputs)))
        mode.count(_tensors([t for t in targets if t is not None]))
        if autocast:
            kwargs["setup"] = dataclasses.replace(kwargs["setup"], autocast=True)
        with mode:
            result = original(modules, bundles, inputs, targets, **kwargs)
        label = kwargs.get("progress_desc") or f"call {len(peaks) + 1}"
        peaks[label] = mode.peak / 2**20
        return result

    estimator_module.train_modules = measured
    try:
        yield peaks
    finally:
        estimator_module.train_modules = original
