"""The segmenter interface, the registry of backends and ``make_segmenter``.

A segmenter turns images into label maps in one schema. Per-image failures (no face
found, unreadable mask) are returned as :class:`SegmentFailure` values so that a batch
never dies for one bad image; they become ``status=error`` rows in the manifest.

>>> from biasaudit.core.schema import get_schema
>>> seg = make_segmenter("masks", schema=get_schema("celebamask-hq"))
>>> seg.name
'masks'
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from biasaudit.core.errors import ValidationError
from biasaudit.core.schema import Schema

if TYPE_CHECKING:
    from biasaudit.data.dataset import Sample


@dataclass(frozen=True)
class SegmentFailure:
    """Why one image could not be segmented (a sentence for the manifest's ``error``)."""

    message: str


SegmentOutput = np.ndarray | SegmentFailure


class Segmenter:
    """Base class: subclasses set ``name``/``schema`` and implement ``segment_batch``.

    ``fingerprint`` identifies everything that changes the output (backend, model
    files, schema); cached label maps are only reused under the same fingerprint.
    ``needs_images`` is False for backends that read stored masks instead of pixels.
    """

    name: str = "segmenter"
    schema: Schema
    batch_size: int = 8
    needs_images: bool = True

    @property
    def fingerprint(self) -> str:
        return f"{self.name}|{self.schema.name}"

    def segment_batch(self, images: Sequence[np.ndarray], prepared: Sequence[Any] | None = None
                      ) -> list[SegmentOutput]:
        """Label maps (H×W, schema ids, same size as each image) or failures, in order.
        ``prepared[i]`` is :meth:`prepare`'s result for ``images[i]`` when the caller made
        it ahead (in a decoding worker); the output is the same either way."""
        raise NotImplementedError

    def prepare(self, sample: Sample | None, image: np.ndarray) -> Any:
        """The per-image work that needs no model (resizing and normalising for a network,
        reading a stored mask), or None when there is none. The pipeline runs it in its
        decoding workers, ahead of and beside the model, and hands the result to
        :meth:`segment_samples`; it must be thread-safe and deterministic."""
        return None

    def segment_samples(
        self, samples: Sequence[Sample], images: Sequence[np.ndarray | None],
        prepared: Sequence[Any] | None = None,
    ) -> list[SegmentOutput]:
        """Segment dataset samples; ``images[i]`` is the decoded image of ``samples[i]``
        (None when it could not be read), ``prepared[i]`` its :meth:`prepare` (optional).
        Model backends only look at the pixels."""
        out: list[SegmentOutput] = [SegmentFailure("the image could not be read")] * len(samples)
        ok = [i for i, im in enumerate(images) if im is not None]
        for start in range(0, len(ok), max(1, self.batch_size)):
            idx = ok[start : start + max(1, self.batch_size)]
            batch = [images[i] for i in idx]
            ready = None if prepared is None else [prepared[i] for i in idx]
            results = (self.segment_batch(batch, prepared=ready)
                       if ready is not None and takes_prepared(self.segment_batch) else self.segment_batch(batch))
            for i, result in zip(idx, results, strict=True):
                out[i] = result
        return out

    def close(self) -> None:
        """Release native resources (model sessions); the segmenter is unusable after."""

    def __enter__(self) -> Segmenter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def takes_prepared(method: Callable) -> bool:
    """Whether ``segment_batch``/``segment_samples`` of a segmenter accepts ``prepared=``
    (one written before :meth:`Segmenter.prepare` existed does not: it is called without).

    >>> takes_prepared(Segmenter().segment_samples)
    True
    """
    try:
        return "prepared" in inspect.signature(method).parameters
    except (TypeError, ValueError):
        return False


SegmenterFactory = Callable[..., Segmenter]
_REGISTRY: dict[str, SegmenterFactory] = {}


def register_segmenter(name: str, factory: SegmenterFactory) -> None:
    """Make ``name`` (and ``name:<arg>``) available to :func:`make_segmenter`.

    The factory is called as ``factory(arg, schema=..., device=..., batch_size=...)``
    where ``arg`` is the text after the colon (None when there is none) and
    ``batch_size`` None asks for the backend's default.
    """
    _REGISTRY[name] = factory


def available_segmenters() -> tuple[str, ...]:
    _ensure_builtin()
    return tuple(sorted(_REGISTRY))


#: images per forward pass when none is asked for: small on a CPU (the model's working
#: memory grows with the batch), large on a GPU (only large batches fill it)
DEFAULT_BATCH_SIZE = {"cpu": 8, "cuda": 64}


def default_batch_size(device: str) -> int:
    """:data:`DEFAULT_BATCH_SIZE` for ``device`` (``auto``: the device it resolves to).

    >>> default_batch_size("cpu")
    8
    """
    return DEFAULT_BATCH_SIZE["cuda" if resolve_device(device).startswith("cuda") else "cpu"]


def make_segmenter(
    spec: str,
    *,
    schema: Schema,
    device: str = "auto",
    batch_size: int | None = None,
) -> Segmenter:
    """Build a segmenter from its spec: ``masks``, ``segformer:<dir-or-id>`` or
    ``mediapipe-face``. ``batch_size`` None: the backend's default (for a model,
    :func:`default_batch_size` of its device).

    >>> from biasaudit.core.schema import get_schema
    >>> make_segmenter("masks", schema=get_schema("lip")).schema.name
    'lip'
    """
    _ensure_builtin()
    if not isinstance(spec, str) or not spec.strip():
        raise ValidationError(
            f"--segmenter must be one of {_choices()}; got {spec!r}."
        )
    name, _, arg = spec.strip().partition(":")
    if name not in _REGISTRY:
        raise ValidationError(
            f"Unknown segmenter '{spec}'. Expected one of {_choices()}."
        )
    if batch_size is not None and (isinstance(batch_size, bool) or not isinstance(batch_size, int)
                                   or batch_size < 1):
        raise ValidationError(f"--batch-size must be an integer >= 1; got {batch_size!r}.")
    return _REGISTRY[name](arg or None, schema=schema, device=device, batch_size=batch_size)


def resolve_device(device: str) -> str:
    """``auto`` → ``cuda`` when a GPU is visible, else ``cpu``; ``cuda`` without a GPU
    is an error rather than a silent fallback.

    >>> resolve_device("cpu")
    'cpu'
    """
    if device not in ("auto", "cpu", "cuda") and not str(device).startswith("cuda:"):
        raise ValidationError(f"--device must be auto, cpu or cuda[:N]; got {device!r}.")
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValidationError(
            f"--device {device} was asked for but torch sees no CUDA GPU "
            f"(torch {torch.__version__}); use --device cpu or --device auto."
        )
    return device


def _choices() -> str:
    return ", ".join(
        f"{n}:<dir-or-model-id>" if n == "segformer" else n for n in sorted(_REGISTRY)
    )


def _ensure_builtin() -> None:
    # Importing the backend modules registers them; they import their heavy
    # dependencies lazily, so this stays cheap.
    if {"masks", "segformer", "mediapipe-face"} <= set(_REGISTRY):
        return
    from biasaudit.segment import masks, mediapipe_face, segformer  # noqa: F401
