"""Reading images and label maps the same way everywhere, whatever their encoding.

Every image comes back as H×W×3 ``uint8`` RGB with its EXIF orientation applied, and
every label map as H×W schema ids at the image's (oriented) size. Anything that cannot
be read raises :class:`ImageReadError` or :class:`MaskReadError` with a sentence that
names the file, so validation can record it and carry on.

>>> rgb = read_image("images/0001.jpg")  # doctest: +SKIP
>>> rgb.shape, rgb.dtype  # doctest: +SKIP
((512, 512, 3), dtype('uint8'))
"""

from __future__ import annotations

import io
import os
import re
import struct
import unicodedata
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from biasaudit.core.errors import BiasauditError
from biasaudit.core.schema import Schema
from biasaudit.data.dataset import MaskRef, Sample

# PIL's own default (≈ 89.5 million pixels, a 9459×9459 image); larger declared sizes
# are treated as decompression bombs unless the caller raises the limit.
MAX_PIXELS = 89_478_485

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".bmp")

# What PIL's format plugins raise on malformed or hostile files (crafted headers reach
# struct/index arithmetic in some plugins); each becomes an ImageReadError for that file.
_DECODE_ERRORS = (
    OSError, SyntaxError, ValueError, EOFError, struct.error, IndexError, TypeError,
    ZeroDivisionError, MemoryError, Image.DecompressionBombError,
)

_EXIF_ORIENTATION = 0x0112
_TRANSPOSING_ORIENTATIONS = (5, 6, 7, 8)


class ImageReadError(BiasauditError, ValueError):
    """An image file cannot be decoded into RGB (empty, not an image, truncated, too large…)."""


class MaskReadError(BiasauditError, ValueError):
    """A label map cannot be read or does not fit its image or schema."""


@dataclass(frozen=True)
class DecodedImage:
    """An image decoded to RGB plus the notes a human should see about how it was read."""

    rgb: np.ndarray
    notes: tuple[str, ...] = ()

    @property
    def width(self) -> int:
        return int(self.rgb.shape[1])

    @property
    def height(self) -> int:
        return int(self.rgb.shape[0])


def display_path(path: str | Path) -> str:
    """``path`` as printable text: bytes that are not UTF-8 appear as ``\\xe9`` escapes.

    >>> display_path("caf\\udce9.png")
    'caf\\\\xe9.png'
    """
    text = str(path)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        # Linux hands undecodable name bytes to Python as lone surrogates; show the bytes.
        text = os.fsencode(text).decode("utf-8", errors="backslashreplace")
    if any(unicodedata.category(c) == "Cc" for c in text):
        # A newline in a file name would break the one-line-per-problem listing.
        text = "".join(c.encode("unicode_escape").decode("ascii") if unicodedata.category(c) == "Cc" else c for c in text)
    return text


def _open(path: Path, *, max_pixels: int | None, what: str = "an image") -> Image.Image:
    """Open ``path`` lazily (header only), turning every failure into ImageReadError."""
    name = display_path(path)
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise ImageReadError(f"{name}: file not found; it was listed but does not exist.") from None
    except OSError as exc:
        raise ImageReadError(f"{name}: cannot be read ({exc.strerror}); check its permissions.") from None
    if size == 0:
        raise ImageReadError(
            f"{name}: the file is empty (0 bytes); expected {what}. Re-copy it or remove it."
        )
    try:
        img = Image.open(path)
    except Image.DecompressionBombError as exc:
        found = re.search(r"\((\d+) pixels\)", str(exc))
        declared = f"{int(found.group(1)):,} pixels" if found else str(exc)
        raise ImageReadError(
            f"{name}: declares {declared}, far more than the limit of {max_pixels or MAX_PIXELS:,}; "
            f"this is a corrupt file or a decompression bomb. Remove it."
        ) from None
    except UnidentifiedImageError:
        with open(path, "rb") as fh:
            head = fh.read(12)
        raise ImageReadError(
            f"{name}: is not readable as {what} (its first bytes are {head!r}, which no image "
            f"format starts with); replace it with a valid JPEG/PNG or remove it."
        ) from None
    except _DECODE_ERRORS as exc:
        raise ImageReadError(f"{name}: {_decode_reason(exc)}; expected {what} that decodes completely. Re-copy it from the source or remove it.") from None
    w, h = img.size
    limit = MAX_PIXELS if max_pixels is None else max_pixels
    if w * h > limit:
        img.close()
        raise ImageReadError(
            f"{name}: declares {w}×{h} = {w * h:,} pixels, more than the limit of {limit:,}; "
            f"this is a corrupt file or a decompression bomb. Remove it, or raise max_pixels if it is genuine."
        )
    return img


def _load(img: Image.Image, path: Path, *, what: str = "an image") -> None:
    """Fully decode, so truncated files fail here rather than later in a training loop."""
    try:
        img.load()
    except _DECODE_ERRORS as exc:
        raise ImageReadError(
            f"{display_path(path)}: {_decode_reason(exc)}; expected {what} that decodes completely. Re-copy it from the source or remove it."
        ) from None


def _decode_reason(exc: BaseException) -> str:
    msg = str(exc) or type(exc).__name__
    if "truncated" in msg.lower() or isinstance(exc, EOFError) or "broken data stream" in msg:
        return f"is truncated or corrupt ({msg})"
    return f"cannot be decoded ({msg})"


def _to_rgb(img: Image.Image, path: Path) -> tuple[Image.Image | np.ndarray, list[str]]:
    """Convert any PIL mode to RGB the way a person would expect, noting what was done."""
    notes: list[str] = []
    mode = img.mode
    if mode == "RGB":
        return img, notes
    if mode == "CMYK":
        notes.append("CMYK converted to RGB")
        icc = img.info.get("icc_profile")
        if icc:
            from PIL import ImageCms

            try:
                src = ImageCms.ImageCmsProfile(io.BytesIO(icc))
                dst = ImageCms.createProfile("sRGB")
                return ImageCms.profileToProfile(img, src, dst, outputMode="RGB"), notes
            except (ImageCms.PyCMSError, OSError, ValueError):
                notes.append("its ICC profile is unreadable, used a plain CMYK conversion")
        return img.convert("RGB"), notes
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        # PIL's convert() clips 16-bit values at 255, which turns most photos white; rescale instead.
        arr = np.asarray(img, dtype=np.int64)
        if mode == "I" and arr.size and arr.max() <= 255 and arr.min() >= 0:
            gray = arr.astype(np.uint8)
        else:
            notes.append("16-bit grayscale scaled to 8 bits")
            gray = np.clip(np.rint(arr / 257.0), 0, 255).astype(np.uint8)
        return np.repeat(gray[:, :, None], 3, axis=2), notes
    if mode == "F":
        arr = np.asarray(img, dtype=np.float64)
        scale = 255.0 if arr.size and np.nanmax(arr) <= 1.0 else 1.0
        notes.append("floating-point image scaled to 8 bits")
        gray = np.clip(np.nan_to_num(arr * scale), 0, 255).astype(np.uint8)
        return np.repeat(gray[:, :, None], 3, axis=2), notes
    has_alpha = mode in ("RGBA", "LA", "La", "RGBa", "PA") or (
        mode in ("P", "L", "RGB") and "transparency" in img.info
    )
    if mode == "P":
        notes.append("palette image converted to RGB")
    if has_alpha:
        rgba = img.convert("RGBA")
        # Transparent pixels hold arbitrary colour; compositing on white shows what a viewer shows.
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        notes.append(f"{mode} transparency composited on white")
        return Image.alpha_composite(white, rgba).convert("RGB"), notes
    try:
        return img.convert("RGB"), notes
    except ValueError as exc:
        raise ImageReadError(
            f"{display_path(path)}: has pixel mode {mode}, which cannot be converted to RGB ({exc}); "
            f"save it as an 8-bit RGB JPEG or PNG."
        ) from None


def _orientation(img: Image.Image) -> int:
    try:
        value = img.getexif().get(_EXIF_ORIENTATION, 1)
        return int(value) if int(value) in range(1, 9) else 1
    except (OSError, ValueError, TypeError, SyntaxError):
        return 1


def decode_image(path: str | Path, *, max_pixels: int | None = None) -> DecodedImage:
    """Read ``path`` to RGB and return it with notes ("CMYK converted to RGB", …).

    >>> decode_image("photo.jpg").notes  # doctest: +SKIP
    ('EXIF orientation 6 applied',)
    """
    path = Path(path)
    img = opened = _open(path, max_pixels=max_pixels)
    try:
        _load(img, path)
        orientation = _orientation(img)
        notes: list[str] = []
        if orientation != 1:
            try:
                img = ImageOps.exif_transpose(img)
            except _DECODE_ERRORS as exc:
                raise ImageReadError(
                    f"{display_path(path)}: its EXIF orientation {orientation} cannot be applied ({exc}); "
                    f"re-save the image without EXIF."
                ) from None
            notes.append(f"EXIF orientation {orientation} applied")
        converted, more = _to_rgb(img, path)
        notes.extend(more)
        rgb = np.ascontiguousarray(np.asarray(converted, dtype=np.uint8))
    finally:
        opened.close()
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ImageReadError(f"{display_path(path)}: decoded to shape {rgb.shape}, expected H×W×3.")
    return DecodedImage(rgb=rgb, notes=tuple(notes))


def read_image(path: str | Path, *, max_pixels: int | None = None) -> np.ndarray:
    """Read an image as H×W×3 ``uint8`` RGB, EXIF orientation applied.

    CMYK (through its ICC profile when it has one), palette, LA/RGBA (composited on
    white) and 16-bit images are converted; files larger than ``max_pixels`` (default
    :data:`MAX_PIXELS`) are refused as decompression bombs. PIL's own hard limit
    (2 × ``PIL.Image.MAX_IMAGE_PIXELS``) still applies above that.

    >>> read_image("images/0001.jpg").shape  # doctest: +SKIP
    (512, 512, 3)
    """
    return decode_image(path, max_pixels=max_pixels).rgb


def image_size(path: str | Path, *, max_pixels: int | None = None) -> tuple[int, int]:
    """(width, height) after EXIF orientation, read from the header only.

    >>> image_size("images/portrait.jpg")  # doctest: +SKIP
    (480, 640)
    """
    path = Path(path)
    img = _open(path, max_pixels=max_pixels)
    try:
        w, h = img.size
        if _orientation(img) in _TRANSPOSING_ORIENTATIONS:
            w, h = h, w
    finally:
        img.close()
    return w, h


def _mask_error(path: Path | str, reason: str) -> MaskReadError:
    return MaskReadError(f"{display_path(path)}: {reason}")


def _open_mask_image(path: Path) -> Image.Image:
    """Open and fully decode a stored label map; decoding problems become MaskReadError."""
    try:
        img = _open(path, max_pixels=None, what="a label map")
        _load(img, path, what="a label map")
    except ImageReadError as exc:
        raise MaskReadError(str(exc)) from None
    return img


def read_label_map(path: str | Path) -> np.ndarray:
    """A label-map file (PNG of class ids) as an integer array, read with the same guards as
    a dataset's masks; raises :class:`MaskReadError` naming the file."""
    return _open_mask_array(Path(path))


def _open_mask_array(path: Path) -> np.ndarray:
    """A stored label map as an integer array, without any colour conversion."""
    img = _open_mask_image(path)
    try:
        mode = img.mode
        if mode in ("L", "P", "1", "I;16", "I;16B", "I;16L", "I", "I;16N"):
            # For palette masks the indices are the class ids; the palette is only for display.
            arr = np.asarray(img)
            return arr.astype(np.uint8) if arr.dtype == bool else arr
        if mode in ("RGB", "RGBA", "LA"):
            arr = np.asarray(img)
            chans = arr[..., :3] if mode != "LA" else arr[..., :1]
            if mode == "LA" or (np.array_equal(chans[..., 0], chans[..., 1]) and np.array_equal(chans[..., 0], chans[..., 2])):
                return np.ascontiguousarray(chans[..., 0])
            raise _mask_error(
                path,
                f"is a colour ({mode}) image; expected a single-channel label map whose pixel "
                f"values are class ids. Save it as 8-bit grayscale ('L') or palette ('P') PNG.",
            )
        raise _mask_error(path, f"has pixel mode {mode}; expected a single-channel 8- or 16-bit label map.")
    finally:
        img.close()


def _open_rgb_mask(path: Path) -> np.ndarray:
    img = _open_mask_image(path)
    try:
        if img.mode not in ("RGB", "RGBA"):
            raise _mask_error(path, f"has pixel mode {img.mode}; expected an ADE20K RGB *_seg.png.")
        arr = np.asarray(img)[..., :3].astype(np.int64)
    finally:
        img.close()
    # ADE20K full format: class = R/10*256 + G (utils_ade20k.py in CSAILVision/ADE20K).
    return arr[..., 0] // 10 * 256 + arr[..., 1]


def _apply_value_map(raw: np.ndarray, value_map: tuple[tuple[int, int], ...]) -> np.ndarray:
    """Raw values → schema ids through ``value_map``; values it does not list become 0."""
    if not value_map:
        return np.zeros(raw.shape, dtype=np.int32)
    keys = np.array([k for k, _ in value_map], dtype=np.int64)
    ids = np.array([v for _, v in value_map], dtype=np.int32)
    order = np.argsort(keys)
    keys, ids = keys[order], ids[order]
    # A binary search over the few listed values is far cheaper than np.unique's full sort.
    pos = np.clip(np.searchsorted(keys, raw), 0, len(keys) - 1)
    return np.where(keys[pos] == raw, ids[pos], 0).astype(np.int32)


def _read_raw(ref: MaskRef) -> tuple[np.ndarray, str]:
    """The label map as stored (schema ids, stored resolution) and a name for messages."""
    if ref.kind == "label_map":
        if ref.path is None:
            raise MaskReadError("A label_map MaskRef has no path; the adapter must give one.")
        raw = _open_rgb_mask(ref.path) if ref.encoding == "ade20k_rgb" else _open_mask_array(ref.path)
        if ref.value_map or ref.encoding == "ade20k_rgb":
            raw = _apply_value_map(raw, ref.value_map)
        return raw, display_path(ref.path)
    if ref.kind == "part_masks":
        if not ref.parts:
            raise MaskReadError("A part_masks MaskRef lists no parts; the adapter must give at least one.")
        out: np.ndarray | None = None
        first = ref.parts[0][1]
        for class_id, part_path in ref.parts:
            part = _open_mask_array(part_path)
            if out is None:
                out = np.zeros(part.shape, dtype=np.int32)
            elif part.shape != out.shape:
                raise _mask_error(
                    part_path,
                    f"is {part.shape[1]}×{part.shape[0]} but {display_path(first)} is "
                    f"{out.shape[1]}×{out.shape[0]}; every part mask of an image must have the same size.",
                )
            # Later parts paint over earlier ones (the CelebAMask-HQ reference order).
            out[part > 0] = class_id
        assert out is not None
        return out, display_path(first)
    raise MaskReadError(f"Unknown MaskRef kind {ref.kind!r}; expected 'label_map' or 'part_masks'.")


def _value_counts(arr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    if arr.dtype.kind == "i" and arr.size and arr.min() >= 0 and arr.max() < 65536:
        arr = arr.astype(np.uint8 if arr.max() < 256 else np.uint16)
    if arr.dtype == np.uint8 and arr.ndim == 2:
        # PIL's C histogram is ~5× faster than bincount and ~70× faster than np.unique.
        counts = np.asarray(Image.fromarray(arr).histogram(), dtype=np.int64)
        values = np.flatnonzero(counts)
        return values, counts[values]
    if arr.dtype.kind == "u" and arr.dtype.itemsize <= 2:
        counts = np.bincount(arr.ravel())
        values = np.flatnonzero(counts)
        return values, counts[values]
    return np.unique(arr, return_counts=True)


def _check_values(arr: np.ndarray, schema: Schema, name: str) -> None:
    values, counts = _value_counts(arr)
    known = set(schema.ids)
    bad = [(int(v), int(c)) for v, c in zip(values, counts, strict=True) if int(v) not in known]
    if bad:
        shown = ", ".join(f"{v} ({c} px)" for v, c in bad[:8]) + (" …" if len(bad) > 8 else "")
        raise _mask_error(
            name,
            f"has values {shown} that are not class ids of schema '{schema.name}' "
            f"(ids {min(known)}..{max(known)}); fix the mask or pass the right --schema.",
        )


def mask_array(
    sample: Sample, schema: Schema, *, image_size: tuple[int, int]
) -> np.ndarray:
    """Like :func:`read_mask`, with the image's (width, height) already known (saves
    re-opening the image when the caller has just decoded it).

    >>> mask_array(sample, schema, image_size=(512, 512)).shape  # doctest: +SKIP
    (512, 512)
    """
    ref = sample.mask
    if ref is None:
        raise MaskReadError(f"{sample.image_id}: has no mask; this dataset gives none for it.")
    raw, name = _read_raw(ref)
    _check_values(raw, schema, name)
    w, h = image_size
    mh, mw = raw.shape
    if (mw, mh) != (w, h):
        scaled = (round(w * ref.scale), round(h * ref.scale))
        if ref.scale == 1.0 or (mw, mh) != scaled:
            expected = f"{w}×{h}" if ref.scale == 1.0 else f"{w}×{h} or {scaled[0]}×{scaled[1]}"
            raise _mask_error(
                name,
                f"is {mw}×{mh} but its image {display_path(sample.image_path)} is {w}×{h}; "
                f"expected {expected}. Masks must match their image (after EXIF orientation).",
            )
    dtype = np.uint8 if schema.max_id <= 255 else np.uint16
    out = raw.astype(dtype, copy=False)
    if (mw, mh) != (w, h):
        # Layouts that store masks at a fixed fraction of the image size (CelebAMask-HQ: 512 for 1024).
        out = np.asarray(Image.fromarray(out).resize((w, h), Image.NEAREST))
    return out


def read_mask(sample: Sample, schema: Schema) -> np.ndarray:
    """The sample's label map as H×W schema ids at its image's size.

    Works for every MaskRef kind and encoding: index PNGs, per-part binary masks
    (CelebAMask-HQ) and ADE20K RGB ``*_seg.png``. The result is ``uint8`` (``uint16``
    when the schema has ids above 255). Masks a layout stores at a documented smaller
    scale (``MaskRef.scale``) are upsampled with nearest neighbour. Raises
    :class:`MaskReadError` naming the file when it is unreadable, of the wrong size,
    or holds values that are not schema ids.

    >>> read_mask(dataset.samples[0], dataset.schema).shape  # doctest: +SKIP
    (512, 512)
    """
    try:
        size = image_size(sample.image_path)
    except ImageReadError as exc:
        raise MaskReadError(f"cannot check the mask of {sample.image_id}: {exc}") from None
    return mask_array(sample, schema, image_size=size)
