"""The dataset layer: read a dataset folder in place, decode its images and masks the same
way everywhere, and validate every file into a manifest.

>>> from biasaudit.data import open_dataset, validate_dataset  # doctest: +SKIP
>>> manifest = validate_dataset(open_dataset("DATA"))  # doctest: +SKIP
>>> manifest.is_usable  # doctest: +SKIP
True
"""

from biasaudit.data.adapters import LAYOUTS, detect_layout, open_dataset
from biasaudit.data.dataset import Dataset, MaskRef, Problem, Sample
from biasaudit.data.images import (
    IMAGE_EXTENSIONS,
    MAX_PIXELS,
    DecodedImage,
    ImageReadError,
    MaskReadError,
    decode_image,
    image_size,
    read_image,
    read_label_map,
    read_mask,
)
from biasaudit.data.validate import BASE_COLUMNS, Manifest, validate_dataset

__all__ = [
    "BASE_COLUMNS",
    "IMAGE_EXTENSIONS",
    "LAYOUTS",
    "MAX_PIXELS",
    "Dataset",
    "DecodedImage",
    "ImageReadError",
    "Manifest",
    "MaskReadError",
    "MaskRef",
    "Problem",
    "Sample",
    "decode_image",
    "detect_layout",
    "image_size",
    "open_dataset",
    "read_image",
    "read_label_map",
    "read_mask",
    "validate_dataset",
]
