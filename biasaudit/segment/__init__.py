"""Segmentation stage: turn every image into a part map (label map in a schema), cached
in the workspace, and describe each part (presence, area, box, named colour).

>>> from biasaudit.segment import segment_dataset
>>> result = segment_dataset("DATA", "WS", segmenter="masks")  # doctest: +SKIP
>>> result.coverage().loc["hair", "frac_present"]  # doctest: +SKIP
0.98
"""

from biasaudit.segment.base import (
    Segmenter,
    SegmentFailure,
    available_segmenters,
    make_segmenter,
    register_segmenter,
    resolve_device,
)
from biasaudit.segment.cache import MaskCache
from biasaudit.segment.colour import COLOUR_RULES, HAIR_PARTS, colour_name_lab, robust_lab
from biasaudit.segment.labels import LabelMapping, map_labels_by_name
from biasaudit.segment.overlay import overlay_parts
from biasaudit.segment.pipeline import (
    SegmentationResult,
    load_part_map,
    load_segmentation,
    segment_dataset,
    segment_table,
)
from biasaudit.segment.stats import SEGMENT_COLUMNS, part_statistics

__all__ = [
    "COLOUR_RULES",
    "HAIR_PARTS",
    "SEGMENT_COLUMNS",
    "LabelMapping",
    "MaskCache",
    "SegmentFailure",
    "SegmentationResult",
    "Segmenter",
    "available_segmenters",
    "colour_name_lab",
    "load_part_map",
    "load_segmentation",
    "make_segmenter",
    "map_labels_by_name",
    "overlay_parts",
    "part_statistics",
    "register_segmenter",
    "resolve_device",
    "robust_lab",
    "segment_dataset",
    "segment_table",
]
