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

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

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

    def segment_batch(self, images: Sequence[np.ndarray]) -> list[SegmentOutput]:
        """Label maps (H×W, schema ids, same size as each image) or failures, in order."""
        raise NotImplementedError

    def segment_samples(
        self, samples: Sequence[Sample], images: Sequence[np.ndarray | None]
    ) -> list[SegmentOutput]:
        """Segment dataset samples; ``images[i]`` is the decoded image of ``samples[i]``
        (None when it could not be read). Model backends only look at the pixels."""
        out: list[SegmentOutput] = [SegmentFailure("the image could not be read")] * len(samples)
        ok = [i for i, im in enumerate(images) if im is not None]
        for start in range(0, len(ok), max(1, self.batch_size)):
            idx = ok[start : start + max(1, self.batch_size)]
            for i, result in zip(idx, self.segment_batch([images[i] for i in idx]), strict=True):
                out[i] = result
        return out

    def close(self) -> None:
        """Release native resources (model sessions); the segmenter is unusable after."""

    def __enter__(self) -> Segmenter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


SegmenterFactory = Callable[..., Segmenter]
_REGISTRY: dict[str, SegmenterFactory] = {}


def register_segmenter(name: str, factory: SegmenterFactory) -> None:
    """Make ``name`` (and ``name:<arg>``) available to :func:`make_segmenter`.

    The factory is called as ``factory(arg, schema=..., device=..., batch_size=...)``
    where ``arg`` is the text after the colon (None when there is none).
    """
    _REGISTRY[name] = factory


def available_segmenters() -> tuple[str, ...]:
    _ensure_builtin()
    return tuple(sorted(_REGISTRY))


def make_segmenter(
    spec: str,
    *,
    schema: Schema,
    device: str = "auto",
    batch_size: int = 8,
) -> Segmenter:
    """Build a segmenter from its spec: ``masks``, ``segformer:<dir-or-id>`` or
    ``mediapipe-face``.

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
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
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
