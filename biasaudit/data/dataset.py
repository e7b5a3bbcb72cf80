"""The dataset object model shared by every stage.

A *layout* (native folder, CelebAMask-HQ, LIP, ADE20K, Clothing Co-Parsing) is read by
an adapter into a :class:`Dataset`: a sequence of :class:`Sample` (one per image, with a
:class:`MaskRef` saying where its part labels live), a label table, and the problems
found while reading the layout. Validation turns a ``Dataset`` into a manifest table.

The samples are kept as a :class:`SampleList`: a few bytes of path text per image in one
buffer, each :class:`Sample` built again when it is read, so a dataset of millions of
images does not hold millions of ``Path`` objects while it is validated and segmented.

Images are always joined on ``image`` (the id: the image's path relative to the
layout's image root, POSIX separators), never on row position.
"""

from __future__ import annotations

import hashlib
from array import array
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, overload

import numpy as np
import pandas as pd

from biasaudit.core.schema import Schema

MaskKind = Literal["label_map", "part_masks"]
MaskEncoding = Literal["index", "ade20k_rgb"]


@dataclass(frozen=True)
class MaskRef:
    """Where one image's part labels are stored.

    - ``kind="label_map"``: one image file whose pixel values are class ids
      (``encoding="index"``), or ADE20K full-format RGB (``encoding="ade20k_rgb"``,
      class = R/10*256 + G, remapped to the schema through ``value_map``).
    - ``kind="part_masks"``: one binary image per part (CelebAMask-HQ), as
      ``(class_id, path)`` pairs; later pairs paint over earlier ones.
    ``value_map`` maps raw pixel values to schema ids (unlisted values → 0) when the
    stored ids are not the schema's own.
    ``scale`` is the stored size relative to the image when a layout is known to keep
    its masks at another resolution (CelebAMask-HQ: 512 masks for 1024 images → 0.5);
    :func:`biasaudit.data.read_mask` upsamples such masks to the image's size.
    """

    kind: MaskKind
    path: Path | None = None
    parts: tuple[tuple[int, Path], ...] = ()
    encoding: MaskEncoding = "index"
    value_map: tuple[tuple[int, int], ...] = ()
    scale: float = 1.0


@dataclass(frozen=True)
class Sample:
    """One image of a dataset."""

    image_id: str
    image_path: Path
    mask: MaskRef | None = None


#: separates the fields of one stored sample (no path or image id can hold a NUL)
_SEP = "\x00"
_SEP_BYTES = _SEP.encode()


def _id_hash(image_id: str) -> int:
    """64 bits of BLAKE2b of an id: the same in every process (``hash()`` is salted)."""
    digest = hashlib.blake2b(image_id.encode("utf-8", "surrogatepass"), digest_size=8).digest()
    return int.from_bytes(digest, "little")


class SampleList(Sequence[Sample]):
    """The samples of a dataset, stored compactly and read back as equal :class:`Sample`
    objects, in order.

    Each sample is one UTF-8 record in a single buffer (its id and its file paths,
    relative to ``root`` where they are under it) plus an 8-byte offset; what many
    samples share (the mask's kind, encoding, value map, scale and part ids) is kept
    once. Iterating builds one ``Sample`` at a time, so a pass over a million images
    holds one, not a million. A sample that is not in the usual shape (paths that are
    not ``Path`` objects) is kept as it is.

    >>> from pathlib import Path
    >>> samples = SampleList([Sample("a.png", Path("D/images/a.png"))], root=Path("D"))
    >>> samples[0] == Sample("a.png", Path("D/images/a.png")), len(samples)
    (True, 1)
    """

    __slots__ = ("_blob", "_ends", "_kept", "_prefix", "_shapes", "_shape_of", "_id_index")

    def __init__(self, samples: Iterable[Sample] = (), *, root: str | Path = "") -> None:
        self._prefix = str(Path(root)) + "/" if str(root) else ""
        self._blob = bytearray()
        self._ends = array("Q")
        self._kept: dict[int, Sample] = {}
        # mask shapes: (kind, has path, part ids, encoding, value_map, scale) or None (no mask)
        self._shapes: list[tuple | None] = []
        self._shape_of: dict[tuple | None, int] = {}
        self._id_index: tuple[np.ndarray, np.ndarray] | None = None
        for sample in samples:
            self.append(sample)

    def append(self, sample: Sample) -> None:
        """Store one more sample (the adapters build their lists this way)."""
        self._id_index = None
        record = self._encode(sample)
        if record is None:
            self._kept[len(self._ends)] = sample
            record = b""
        self._blob += record
        self._ends.append(len(self._blob))

    def _path(self, path) -> str | None:
        if type(path) is not type(Path()):
            return None
        text = str(path)
        if _SEP in text:
            return None
        return "r" + text[len(self._prefix):] if self._prefix and text.startswith(self._prefix) else "a" + text

    def _encode(self, sample: Sample) -> bytes | None:
        if type(sample) is not Sample or not isinstance(sample.image_id, str) or _SEP in sample.image_id:
            return None
        fields = [sample.image_id, self._path(sample.image_path)]
        ref = sample.mask
        if ref is None:
            shape = None
        else:
            if type(ref) is not MaskRef:
                return None
            shape = (ref.kind, ref.path is not None, tuple(c for c, _ in ref.parts), ref.encoding,
                     ref.value_map, ref.scale)
            if ref.path is not None:
                fields.append(self._path(ref.path))
            fields.extend(self._path(p) for _, p in ref.parts)
        if any(f is None for f in fields):
            return None
        try:
            key = self._shape_of.get(shape)
        except TypeError:  # an unhashable value map
            return None
        if key is None:
            key = self._shape_of[shape] = len(self._shapes)
            self._shapes.append(shape)
        fields.insert(1, str(key))
        # surrogatepass: any str (even one holding lone surrogates) comes back unchanged
        return _SEP.join(fields).encode("utf-8", "surrogatepass")

    def _decode(self, k: int) -> Sample:
        kept = self._kept.get(k)
        if kept is not None:
            return kept
        lo = self._ends[k - 1] if k else 0
        fields = self._blob[lo : self._ends[k]].decode("utf-8", "surrogatepass").split(_SEP)
        image_id, key, image_path, *paths = fields
        shape = self._shapes[int(key)]
        mask = None
        if shape is not None:
            kind, has_path, part_ids, encoding, value_map, scale = shape
            path = self._unpath(paths.pop(0)) if has_path else None
            parts = tuple(zip(part_ids, map(self._unpath, paths), strict=True))
            mask = MaskRef(kind=kind, path=path, parts=parts, encoding=encoding, value_map=value_map, scale=scale)
        return Sample(image_id=image_id, image_path=self._unpath(image_path), mask=mask)

    def position(self, image_id: str) -> int | None:
        """The index of the first sample with ``image_id`` (None when there is none).

        Looked up in a table of 64-bit hashes of every id, sorted, built on the first call
        (16 bytes per image; rebuilt after an ``append``): a lookup is a binary search, so
        reading every image of a workspace by id (HEML's embedding, ``explain``) is
        O(n log n), not a scan of the whole list per image.
        """
        if not isinstance(image_id, str):
            return None
        if self._id_index is None:
            self._id_index = self._build_id_index()
        hashes, order = self._id_index
        h = np.uint64(_id_hash(image_id))
        lo, hi = np.searchsorted(hashes, h, side="left"), np.searchsorted(hashes, h, side="right")
        for k in order[lo:hi]:  # in index order (a stable sort): the first match is the first sample
            if self._record_id(int(k)) == image_id:
                return int(k)
        return None

    def _record_id(self, k: int) -> str:
        kept = self._kept.get(k)
        if kept is not None:
            return kept.image_id
        lo = self._ends[k - 1] if k else 0
        record = self._blob[lo : self._ends[k]]
        return record[: record.find(_SEP_BYTES)].decode("utf-8", "surrogatepass")

    def _build_id_index(self) -> tuple[np.ndarray, np.ndarray]:
        ids = (self._record_id(k) for k in range(len(self)))
        hashes = np.fromiter((_id_hash(i) if isinstance(i, str) else 0 for i in ids), dtype=np.uint64,
                             count=len(self))
        order = np.argsort(hashes, kind="stable")
        return hashes[order], order

    def _unpath(self, text: str) -> Path:
        return Path(self._prefix + text[1:] if text[0] == "r" else text[1:])

    def __len__(self) -> int:
        return len(self._ends)

    @overload
    def __getitem__(self, k: int) -> Sample: ...
    @overload
    def __getitem__(self, k: slice) -> list[Sample]: ...
    def __getitem__(self, k):
        if isinstance(k, slice):
            return [self._decode(i) for i in range(*k.indices(len(self)))]
        n = len(self)
        if not -n <= k < n:
            raise IndexError(f"sample {k} of {n}")
        return self._decode(k % n)

    def __iter__(self) -> Iterator[Sample]:
        for k in range(len(self)):
            yield self._decode(k)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Sequence) or isinstance(other, str):
            return NotImplemented
        return len(self) == len(other) and all(a == b for a, b in zip(self, other, strict=True))

    __hash__ = None  # type: ignore[assignment]  (mutable, like a list)

    def __repr__(self) -> str:
        return f"SampleList({len(self)} samples)"


@dataclass(frozen=True)
class Problem:
    """Something wrong with one input, found before or during validation.

    ``image_id`` is the image it concerns (or the labels.csv entry as written);
    ``path`` is the offending file; ``message`` is a sentence saying what was expected,
    what was found and how to fix it.
    """

    image_id: str
    path: str
    message: str
    fatal: bool = True  # False: the image is still usable (e.g. it has no labels.csv row)


@dataclass
class Dataset:
    """A dataset as read by its layout adapter (nothing decoded or validated yet).

    ``samples`` may be given as any sequence of :class:`Sample`; it is kept as a
    :class:`SampleList`. ``schema`` is None only for a native dataset without masks and
    without schema.json (nothing needs one until a segmenter is chosen). ``labels`` is indexed by image id
    (plus entries of label rows whose image is missing, as written). ``declared_sizes``
    holds (width, height) a layout's metadata states per image; validation warns when
    the file disagrees.
    """

    root: Path
    layout: str
    schema: Schema | None
    samples: Sequence[Sample]
    labels: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(index=pd.Index([], name="image")))
    problems: list[Problem] = field(default_factory=list)
    masks_expected: bool = False
    declared_sizes: dict[str, tuple[int, int]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.samples, SampleList):
            self.samples = SampleList(self.samples, root=self.root)

    @property
    def n_images(self) -> int:
        return len(self.samples)

    def sample(self, image_id: str) -> Sample:
        k = self.samples.position(image_id)
        if k is None:
            raise KeyError(image_id)
        return self.samples[k]
