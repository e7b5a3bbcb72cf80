"""The CPU stand-in for ``torch.cuda.max_memory_allocated`` that ``bench_heml.py --tensor-memory``
reports per HEML node: it must count each storage once, give bytes back when a storage dies,
and attribute each training call's peak to its own label."""

from __future__ import annotations

import dataclasses
import gc
import sys
import types
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))  # `reports` lives beside the package, not inside it

from reports.bench.tensor_memory import LiveTensorBytes, track_node_training  # noqa: E402

MIB = 2**20
N = MIB // 4  # float32 elements in one MiB


def test_counts_each_storage_once_and_gives_freed_bytes_back():
    weights = torch.zeros(N)
    mode = LiveTensorBytes()
    mode.count([weights, weights[:10]])  # a view of a counted tensor adds nothing
    assert mode.current == MIB
    with mode:
        x = torch.ones(N)
        y = x * 2
        view = y.view(2, -1)
        z = view * 3
        del x, y, view
        gc.collect()
        after_free = mode.current
        w = z + 1  # three MiB live again: below the earlier peak, which must stay
        del w
    assert after_free == 2 * MIB  # the weights and z
    assert mode.peak == 4 * MIB  # weights, x, y and z at once, before x and y were dropped
    assert z.sum().item() == 6 * N


def test_a_training_call_is_measured_under_its_own_label_and_the_patch_is_undone():
    @dataclasses.dataclass(frozen=True)
    class Setup:
        autocast: bool

    seen = []

    def train_modules(modules, bundles, inputs, targets, *, setup, progress_desc=None):
        seen.append(setup.autocast)
        hidden = inputs[0] * 2  # one more MiB, alive together with the input
        return [[float(hidden.sum())]]

    module = types.SimpleNamespace(train_modules=train_modules)
    model = torch.nn.Linear(N // 1024, 1024, bias=False)  # one MiB of weights
    bundle = types.SimpleNamespace(loss=torch.nn.Identity())
    with track_node_training(module, autocast=True) as peaks:
        module.train_modules([model], [bundle], [torch.ones(N)], [None], setup=Setup(False), progress_desc="HEML mouth")
        module.train_modules([model], [bundle], [torch.ones(2 * N)], [None], setup=Setup(False))
    assert module.train_modules is train_modules
    assert seen == [True, True]
    # model + input + hidden (and a 4-byte sum); the second call's count starts afresh
    assert peaks == {"HEML mouth": pytest.approx(3.0, abs=1e-3), "call 2": pytest.approx(5.0, abs=1e-3)}
