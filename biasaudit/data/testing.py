"""Tiny generated dataset folders for tests: one holding every kind of bad input, and one
small copy of each public layout the adapters read. Images are a few dozen pixels, so
every folder is written in milliseconds.

>>> expected = write_bad_inputs(tmp_path / "bad")  # doctest: +SKIP
>>> expected.errors["images/empty.jpg"]  # doctest: +SKIP
'empty (0 bytes)'
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from biasaudit.core.schema import get_schema

NFD_NAME = "ﬁ名 e\u0301.png"  # ligature, CJK, a space and a decomposed accent
NON_UTF8_NAME = b"caf\xe9.png"


@dataclass(frozen=True)
class BadInputs:
    """What validating the bad-input folder must report: path → a phrase of the reason."""

    root: Path
    errors: dict[str, str] = field(default_factory=dict)
    warnings: dict[str, str] = field(default_factory=dict)
    ok: tuple[str, ...] = ()


def tree_hashes(root: str | Path) -> dict[bytes, str]:
    """sha256 of every file under ``root``, walking bytes paths so that non-UTF-8 names
    count too: equal before and after a command means the command wrote nothing there."""
    out = {}
    for dirpath, _, files in os.walk(os.fsencode(root)):
        for name in files:
            path = os.path.join(dirpath, name)
            with open(path, "rb") as fh:
                out[path] = hashlib.sha256(fh.read()).hexdigest()
    return out


def gradient(width: int, height: int, *, seed: int = 0) -> np.ndarray:
    """A smooth RGB test picture (JPEG keeps its colours close, unlike noise)."""
    rng = np.random.default_rng(seed)
    base = rng.integers(40, 200, size=3)
    yy, xx = np.mgrid[0:height, 0:width]
    img = np.stack([base[0] + xx * 50 // max(width, 1), base[1] + yy * 50 // max(height, 1),
                    np.full_like(xx, base[2])], axis=2)
    return img.clip(0, 255).astype(np.uint8)


def label_map(width: int, height: int, values: tuple[int, ...] = (0, 1, 13)) -> np.ndarray:
    """Horizontal bands of the given class ids."""
    rows = np.arange(height) * len(values) // height
    return np.repeat(np.asarray(values, dtype=np.uint8)[rows][:, None], width, axis=1)


def _png_bytes(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def png_with_declared_size(width: int, height: int) -> bytes:
    """A valid 1×1 PNG whose IHDR then claims ``width``×``height`` (CRC fixed up)."""
    data = bytearray(_png_bytes(Image.new("RGB", (1, 1), (255, 0, 0))))
    # Signature (8) + chunk length (4) + b"IHDR" (4): width and height follow.
    struct.pack_into(">II", data, 16, width, height)
    crc = zlib.crc32(bytes(data[12:29])) & 0xFFFFFFFF
    struct.pack_into(">I", data, 29, crc)
    return bytes(data)


def exif_rotated_jpeg(width: int, height: int) -> bytes:
    """A ``width``×``height`` JPEG stored with EXIF orientation 6, red in its stored
    top-left corner, which must appear at the top-right once displayed (90° clockwise)."""
    arr = np.full((height, width, 3), 128, np.uint8)
    arr[: height // 4, : width // 4] = (255, 0, 0)
    img = Image.fromarray(arr)
    exif = Image.Exif()
    exif[0x0112] = 6
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=95, exif=exif.tobytes())
    return buf.getvalue()


def write_bad_inputs(root: str | Path) -> BadInputs:
    """A native-layout folder (schema celebamask-hq) holding every bad input the
    validator must report, two good images, and the expected report."""
    root = Path(root)
    images, masks = root / "images", root / "masks"
    images.mkdir(parents=True)
    masks.mkdir()
    (root / "schema.json").write_text(json.dumps(get_schema("celebamask-hq").to_dict()), "utf-8")
    w, h = 32, 24
    errors: dict[str, str] = {}
    warnings: dict[str, str] = {}

    def save(name: str, img: Image.Image, fmt: str, *, mask: np.ndarray | None = "auto", **kw) -> None:
        img.save(images / name, format=fmt, **kw)
        if isinstance(mask, str):
            mask = label_map(*img.size)
        if mask is not None:
            Image.fromarray(mask).save((masks / name).with_suffix(".png"))

    rgb = Image.fromarray(gradient(w, h))
    save("good_1.png", rgb, "PNG")
    save("good_2.jpg", Image.fromarray(gradient(w, h, seed=1)), "JPEG", quality=95)

    (images / "empty.jpg").write_bytes(b"")
    errors["images/empty.jpg"] = "empty (0 bytes)"
    (images / "text.png").write_text("hello, I am a text file\n", "utf-8")
    errors["images/text.png"] = "not readable as an image"
    noise = np.random.default_rng(3).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    jpeg = io.BytesIO()
    # Noise makes the entropy-coded data long, so the cut lands in the pixels, not the header.
    Image.fromarray(noise).save(jpeg, format="JPEG", quality=95)
    (images / "truncated_jpeg.jpg").write_bytes(jpeg.getvalue()[: len(jpeg.getvalue()) // 2])
    errors["images/truncated_jpeg.jpg"] = "truncated"
    png = _png_bytes(Image.fromarray(noise))
    (images / "truncated_png.png").write_bytes(png[: len(png) // 2])
    errors["images/truncated_png.png"] = "truncated"
    (images / "bomb.png").write_bytes(png_with_declared_size(100_000, 100_000))
    errors["images/bomb.png"] = "decompression bomb"
    for name in ("empty.jpg", "text.png", "truncated_jpeg.jpg", "truncated_png.png", "bomb.png"):
        Image.fromarray(label_map(w, h)).save((masks / name).with_suffix(".png"))

    save("cmyk.jpg", rgb.convert("CMYK"), "JPEG", quality=95)
    warnings["images/cmyk.jpg"] = "CMYK converted to RGB"
    save("palette.png", rgb.convert("P", palette=Image.Palette.ADAPTIVE, colors=16), "PNG")
    warnings["images/palette.png"] = "palette image converted to RGB"
    la = Image.merge("LA", (rgb.convert("L"), Image.new("L", (w, h), 255)))
    save("la.png", la, "PNG")
    warnings["images/la.png"] = "LA transparency composited on white"
    deep = Image.fromarray(np.asarray(rgb.convert("L"), dtype=np.uint16) * 257)
    save("deep16.png", deep, "PNG")
    warnings["images/deep16.png"] = "16-bit grayscale scaled to 8 bits"
    (images / "rotated.jpg").write_bytes(exif_rotated_jpeg(40, 20))
    Image.fromarray(label_map(20, 40)).save(masks / "rotated.png")
    warnings["images/rotated.jpg"] = "EXIF orientation 6 applied"

    save("wrong_size.png", rgb, "PNG", mask=label_map(10, 10))
    errors["images/wrong_size.png"] = "is 10×10 but its image"
    save("bad_values.png", rgb, "PNG", mask=label_map(w, h, (0, 200)))
    errors["images/bad_values.png"] = "values 200"
    save("no_mask.png", rgb, "PNG", mask=None)
    errors["images/no_mask.png"] = "has no mask"
    save("unlisted.png", rgb, "PNG")
    warnings["images/unlisted.png"] = "no row in labels.csv"
    save("dup.png", rgb, "PNG")
    errors["images/dup.png"] = "lists this image 2 times"
    save(NFD_NAME, rgb, "PNG")
    warnings[f"images/{NFD_NAME}"] = "not in Unicode NFC form"
    non_utf8 = os.fsencode(images) + b"/" + NON_UTF8_NAME
    try:
        with open(non_utf8, "wb") as fh:
            rgb.save(fh, format="PNG")
        errors["images/caf\\xe9.png"] = "not valid UTF-8"
    except OSError:
        pass  # filesystems that enforce UTF-8 names (APFS) cannot hold this case at all
    (images / "notes.txt").write_text("not an image\n", "utf-8")
    errors["images/notes.txt"] = "not an image file"

    listed = ["good_1.png", "good_2.jpg", "empty.jpg", "text.png", "truncated_jpeg.jpg", "truncated_png.png",
              "bomb.png", "cmyk.jpg", "palette.png", "la.png", "deep16.png", "rotated.jpg",
              "wrong_size.png", "bad_values.png", "no_mask.png", "dup.png", "dup.png",
              "missing.jpg", "../../etc/passwd", "ﬁ名 é.png"]
    lines = ["image,smiling"] + [f"{name},{i % 2}" for i, name in enumerate(listed)]
    (root / "labels.csv").write_text("\n".join(lines) + "\n", "utf-8")
    errors["missing.jpg"] = "no such image exists"
    errors["../../etc/passwd"] = "outside the image folder"
    ok = ("good_1.png", "good_2.jpg", "cmyk.jpg", "palette.png", "la.png", "deep16.png",
          "rotated.jpg", "unlisted.png", NFD_NAME)
    return BadInputs(root=root, errors=errors, warnings=warnings, ok=ok)


def write_celebamask_hq(root: str | Path, *, n: int = 3, size: int = 32) -> Path:
    """CelebAMask-HQ's official layout: images at ``size``, part masks at ``size // 2``."""
    base = Path(root) / "CelebAMask-HQ"
    (base / "CelebA-HQ-img").mkdir(parents=True)
    names = ["Smiling", "Male"]
    rows = [str(n), " ".join(names)]
    for i in range(n):
        Image.fromarray(gradient(size, size, seed=i)).save(base / "CelebA-HQ-img" / f"{i}.jpg", quality=95)
        folder = base / "CelebAMask-HQ-mask-anno" / str(i // 2000)
        folder.mkdir(parents=True, exist_ok=True)
        half = size // 2
        skin = np.zeros((half, half), np.uint8)
        skin[half // 4:, :] = 255
        hair = np.zeros((half, half), np.uint8)
        hair[: half // 2, :] = 255  # overlaps skin: hair is painted later and must win
        Image.fromarray(skin).save(folder / f"{i:05d}_skin.png")
        if i % 2 == 0:
            Image.fromarray(hair).save(folder / f"{i:05d}_hair.png")
        rows.append(f"{i}.jpg  {1 if i % 2 else -1} {1 if i == 0 else -1}")
    (base / "CelebAMask-HQ-attribute-anno.txt").write_text("\n".join(rows) + "\n", "utf-8")
    return base


def write_lip(root: str | Path, *, size: tuple[int, int] = (20, 30)) -> Path:
    """LIP's official layout, unpacked one level deep as the archives do."""
    root = Path(root)
    w, h = size
    for split, count in (("train", 2), ("val", 1)):
        img_dir = root / "TrainVal_images" / "TrainVal_images" / f"{split}_images"
        ann_dir = root / "TrainVal_parsing_annotations" / "TrainVal_parsing_annotations" / f"{split}_segmentations"
        img_dir.mkdir(parents=True)
        ann_dir.mkdir(parents=True)
        for i in range(count):
            name = f"{i}_{split}"
            Image.fromarray(gradient(w, h, seed=i)).save(img_dir / f"{name}.jpg", quality=95)
            Image.fromarray(label_map(w, h, (0, 2, 5, 9))).save(ann_dir / f"{name}.png")
    return root


def write_sceneparse150(root: str | Path, *, size: tuple[int, int] = (24, 16)) -> Path:
    """SceneParse150 (ADEChallengeData2016): images/, annotations/, sceneCategories.txt."""
    base = Path(root) / "ADEChallengeData2016"
    w, h = size
    scenes = []
    for split, prefix in (("training", "ADE_train"), ("validation", "ADE_val")):
        (base / "images" / split).mkdir(parents=True)
        (base / "annotations" / split).mkdir(parents=True)
        for i in range(1, 3):
            name = f"{prefix}_{i:08d}"
            Image.fromarray(gradient(w, h, seed=i)).save(base / "images" / split / f"{name}.jpg", quality=95)
            Image.fromarray(label_map(w, h, (0, 3, 150))).save(base / "annotations" / split / f"{name}.png")
            scenes.append(f"{name} street" if i == 1 else f"{name} bedroom")
    (base / "sceneCategories.txt").write_text("\n".join(scenes) + "\n", "utf-8")
    return base


def ade20k_rgb(class_index: np.ndarray) -> np.ndarray:
    """Encode full-ADE20K class indices as a ``*_seg.png`` (R/10*256 + G; B = instance)."""
    out = np.zeros((*class_index.shape, 3), np.uint8)
    out[..., 0] = (class_index // 256) * 10
    out[..., 1] = class_index % 256
    out[..., 2] = 1
    return out


def write_ade20k_full(root: str | Path, *, size: tuple[int, int] = (24, 16)) -> Path:
    """Full ADE20K (2021_17_01): one image whose _seg.png holds car (401), tree (2855),
    a name outside the 150 ("banner", 118) and background, plus its JSON."""
    folder = Path(root) / "ADE20K_2021_17_01" / "images" / "ADE" / "training" / "urban" / "street"
    folder.mkdir(parents=True)
    w, h = size
    name = "ADE_train_00000001"
    Image.fromarray(gradient(w, h)).save(folder / f"{name}.jpg", quality=95)
    idx = np.zeros((h, w), np.int64)
    idx[: h // 4] = 2855
    idx[h // 4: h // 2] = 401
    idx[h // 2: 3 * h // 4] = 118
    Image.fromarray(ade20k_rgb(idx)).save(folder / f"{name}_seg.png")
    Image.fromarray(ade20k_rgb(np.zeros((h, w), np.int64))).save(folder / f"{name}_parts_1.png")
    objects = [
        {"id": 0, "name": "tree", "name_ndx": 2855, "parts": {"part_level": 0}},
        {"id": 1, "name": "car, auto, automobile, machine, motorcar", "name_ndx": 401, "parts": {"part_level": 0}},
        {"id": 2, "name": "banner, streamer", "name_ndx": 118, "parts": {"part_level": 0}},
        {"id": 3, "name": "wheel", "name_ndx": 3000, "parts": {"part_level": 1}},
    ]
    meta = {"annotation": {"filename": f"{name}.jpg", "scene": ["outdoor", "urban", "street"], "object": objects}}
    (folder / f"{name}.json").write_text(json.dumps(meta), "utf-8")
    (folder / name).mkdir()
    Image.fromarray(np.zeros((h, w), np.uint8)).save(folder / name / f"instance_000_{name}.png")
    return Path(root)


def write_ccp(root: str | Path, *, n: int = 3, size: tuple[int, int] = (22, 34)) -> Path:
    """Clothing Co-Parsing as kept in ../shared/data/real/ccp, with ``n`` photos."""
    root = Path(root)
    (root / "photos").mkdir(parents=True)
    (root / "labels_png").mkdir()
    schema = get_schema("ccp")
    w, h = size
    rows = ["image,width,height,labels_present"]
    hair, skin, hat = schema.id_of("hair"), schema.id_of("skin"), schema.id_of("hat")
    for i in range(1, n + 1):
        values = (0, hair, skin, hat) if i == 1 else (0, hair, skin)
        Image.fromarray(gradient(w, h, seed=i)).save(root / "photos" / f"{i:04d}.jpg", quality=95)
        Image.fromarray(label_map(w, h, values)).save(root / "labels_png" / f"{i:04d}.png")
        present = sorted(schema.name_of(v) for v in values if v)
        rows.append(f"{i:04d},{w},{h},{';'.join(present)}")
    (root / "present_labels.csv").write_text("\n".join(rows) + "\n", "utf-8")
    ids = ["id,name"] + [f"{i},{'null' if i == 0 else n}" for i, n in schema.classes.items()]
    (root / "label_list.csv").write_text("\n".join(ids) + "\n", "utf-8")
    return root
