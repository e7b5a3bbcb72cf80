"""``masks``: the dataset's own label maps (native ``masks/`` or an adapter's), mapped to
the schema by the dataset layer's ``read_mask``.

>>> from biasaudit.core.schema import get_schema
>>> MasksSegmenter(schema=get_schema("ccp")).needs_images
False
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from biasaudit.core.errors import BiasauditError, ValidationError
from biasaudit.core.schema import Schema
from biasaudit.segment.base import Segmenter, SegmentFailure, SegmentOutput, register_segmenter


class MasksSegmenter(Segmenter):
    """Reads each sample's stored mask; a missing or unreadable mask is a per-image failure."""

    name = "masks"
    needs_images = False

    def __init__(self, *, schema: Schema, batch_size: int = 64) -> None:
        self.schema = schema
        self.batch_size = batch_size

    def segment_batch(self, images: Sequence[np.ndarray], prepared=None) -> list[SegmentOutput]:
        raise ValidationError(
            "The 'masks' segmenter reads the dataset's stored label maps, so it cannot "
            "segment bare images; use segment_samples(samples, images), or choose "
            "--segmenter segformer:<dir> / mediapipe-face for images without masks."
        )

    def prepare(self, sample, image) -> SegmentOutput:
        """The sample's label map (or why it cannot be used): reading it is all there is to do,
        so the pipeline's decoding workers do it."""
        from biasaudit.data import read_mask

        if sample.mask is None:
            return SegmentFailure(
                f"image '{sample.image_id}' has no mask; the 'masks' segmenter needs one per "
                f"image (add masks/{sample.image_id.rsplit('.', 1)[0]}.png or choose a model "
                f"segmenter)."
            )
        try:
            label_map = np.asarray(read_mask(sample, self.schema))
        except BiasauditError as exc:
            return SegmentFailure(str(exc))
        if image is not None and label_map.shape[:2] != image.shape[:2]:
            return SegmentFailure(
                f"the mask of '{sample.image_id}' is {label_map.shape[1]}×{label_map.shape[0]} "
                f"but the image is {image.shape[1]}×{image.shape[0]}; masks must match their image."
            )
        return label_map

    def segment_samples(self, samples, images, prepared=None) -> list[SegmentOutput]:
        if prepared is None:
            prepared = [None] * len(samples)
        return [ready if ready is not None else self.prepare(sample, image)
                for sample, image, ready in zip(samples, images, prepared, strict=True)]


def _make_masks(arg, *, schema: Schema, device: str = "auto", batch_size: int | None = None) -> MasksSegmenter:
    if arg:
        raise ValidationError(f"--segmenter masks takes no argument; got 'masks:{arg}'.")
    return MasksSegmenter(schema=schema, batch_size=batch_size or 8)


register_segmenter("masks", _make_masks)
