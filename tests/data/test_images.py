"""read_image / read_mask on tiny generated files, checked against values worked out by hand."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from biasaudit.core.schema import Schema, get_schema
from biasaudit.data import (
    ImageReadError,
    MaskReadError,
    MaskRef,
    Sample,
    decode_image,
    image_size,
    read_image,
    read_mask,
)
from biasaudit.data.testing import (
    ade20k_rgb,
    exif_rotated_jpeg,
    gradient,
    label_map,
    png_with_declared_size,
)


def _save(path: Path, img: Image.Image, **kw) -> Path:
    img.save(path, **kw)
    return path


def test_rgb_png_round_trips_exactly(tmp_path):
    arr = gradient(7, 5)
    out = read_image(_save(tmp_path / "a.png", Image.fromarray(arr)))
    assert out.dtype == np.uint8 and out.shape == (5, 7, 3)
    np.testing.assert_array_equal(out, arr)


def test_exif_orientation_6_rotates_clockwise(tmp_path):
    path = tmp_path / "r.jpg"
    path.write_bytes(exif_rotated_jpeg(40, 20))
    decoded = decode_image(path)
    # Stored 40 wide × 20 high; displayed 90° clockwise: 20 wide × 40 high.
    assert decoded.rgb.shape == (40, 20, 3)
    assert decoded.notes == ("EXIF orientation 6 applied",)
    # The red stored top-left block (10×5) is now at the top-right.
    top_right = decoded.rgb[2, 18].astype(int)
    top_left = decoded.rgb[2, 2].astype(int)
    assert top_right[0] > 200 and top_right[1] < 60 and top_right[2] < 60
    assert np.all(np.abs(top_left - 128) < 12)
    assert image_size(path) == (20, 40)


def test_cmyk_jpeg_converts_back_to_its_colours(tmp_path):
    arr = np.zeros((8, 8, 3), np.uint8)
    arr[:, :4] = (255, 0, 0)
    arr[:, 4:] = (0, 0, 255)
    path = _save(tmp_path / "c.jpg", Image.fromarray(arr).convert("CMYK"), quality=100)
    assert Image.open(path).mode == "CMYK"
    decoded = decode_image(path)
    assert "CMYK converted to RGB" in decoded.notes
    assert np.abs(decoded.rgb[4, 1].astype(int) - (255, 0, 0)).max() < 12
    assert np.abs(decoded.rgb[4, 6].astype(int) - (0, 0, 255)).max() < 12


def test_palette_png_gives_palette_colours(tmp_path):
    img = Image.new("P", (4, 2))
    img.putpalette([0, 0, 0, 10, 200, 30] + [0] * (254 * 3))
    img.putdata([0, 1, 1, 0, 1, 0, 0, 1])
    out = read_image(_save(tmp_path / "p.png", img))
    assert tuple(out[0, 1]) == (10, 200, 30)
    assert tuple(out[0, 0]) == (0, 0, 0)


def test_la_is_composited_on_white(tmp_path):
    gray = Image.new("L", (2, 1), 100)
    alpha = Image.new("L", (2, 1))
    alpha.putdata([255, 0])
    out = decode_image(_save(tmp_path / "la.png", Image.merge("LA", (gray, alpha))))
    assert tuple(out.rgb[0, 0]) == (100, 100, 100)  # opaque: its own grey
    assert tuple(out.rgb[0, 1]) == (255, 255, 255)  # transparent: the white behind it
    assert any("composited on white" in n for n in out.notes)


def test_rgba_half_transparent_blends_with_white(tmp_path):
    img = Image.new("RGBA", (1, 1), (0, 0, 0, 128))
    out = read_image(_save(tmp_path / "rgba.png", img))
    # 0 * 128/255 + 255 * 127/255 = 127
    assert abs(int(out[0, 0, 0]) - 127) <= 1


def test_16bit_grayscale_is_rescaled_not_clipped(tmp_path):
    values = np.array([[0, 257 * 100, 65535]], dtype=np.uint16)
    path = _save(tmp_path / "d.png", Image.fromarray(values))
    assert Image.open(path).mode == "I;16"
    out = decode_image(path)
    np.testing.assert_array_equal(out.rgb[0, :, 0], [0, 100, 255])
    assert "16-bit grayscale scaled to 8 bits" in out.notes


@pytest.mark.parametrize(
    "content, phrase",
    [
        (b"", r"empty \(0 bytes\)"),
        (b"just some text", "not readable as an image"),
    ],
)
def test_unreadable_files_raise_image_read_error(tmp_path, content, phrase):
    path = tmp_path / "bad.jpg"
    path.write_bytes(content)
    with pytest.raises(ImageReadError, match=phrase) as info:
        read_image(path)
    assert isinstance(info.value, ValueError)
    assert str(path) in str(info.value)


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_truncated_files_are_caught_by_full_decode(tmp_path, fmt):
    noise = np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(noise).save(buf, format=fmt)
    path = tmp_path / f"t.{fmt.lower()}"
    path.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    with pytest.raises(ImageReadError, match="truncated"):
        read_image(path)


def test_decompression_bomb_is_refused_before_decoding(tmp_path):
    path = tmp_path / "bomb.png"
    path.write_bytes(png_with_declared_size(100_000, 100_000))
    with pytest.raises(ImageReadError, match="decompression bomb") as info:
        read_image(path)
    assert "10,000,000,000 pixels" in str(info.value)


def test_max_pixels_is_configurable(tmp_path):
    path = _save(tmp_path / "small.png", Image.fromarray(gradient(10, 10)))
    assert read_image(path).shape == (10, 10, 3)
    with pytest.raises(ImageReadError, match="100 pixels, more than the limit of 99"):
        read_image(path, max_pixels=99)


def test_missing_file_names_it(tmp_path):
    with pytest.raises(ImageReadError, match="not found"):
        read_image(tmp_path / "nope.png")


# --- masks -------------------------------------------------------------------------------

CELEBA = get_schema("celebamask-hq")


def _sample(tmp_path, mask: np.ndarray | None = None, *, size=(6, 4), ref=None) -> Sample:
    img = _save(tmp_path / "img.png", Image.fromarray(gradient(*size)))
    if ref is None:
        ref = MaskRef(kind="label_map", path=_save(tmp_path / "mask.png", Image.fromarray(mask)))
    return Sample("img.png", img, ref)


def test_index_mask_round_trips(tmp_path):
    mask = label_map(6, 4, (0, 1, 13))
    out = read_mask(_sample(tmp_path, mask), CELEBA)
    assert out.dtype == np.uint8
    np.testing.assert_array_equal(out, mask)


def test_palette_mask_uses_indices_not_colours(tmp_path):
    img = Image.fromarray(label_map(6, 4, (0, 13)), mode="L").convert("P")
    img.putpalette([0, 0, 0] * 13 + [255, 0, 0] + [0, 0, 0] * 242)
    ref = MaskRef(kind="label_map", path=_save(tmp_path / "m.png", img))
    out = read_mask(_sample(tmp_path, ref=ref), CELEBA)
    assert set(np.unique(out)) == {0, 13}


def test_mask_values_outside_schema_are_named(tmp_path):
    mask = label_map(6, 4, (0, 200))
    with pytest.raises(MaskReadError, match=r"values 200 \(12 px\).*celebamask-hq"):
        read_mask(_sample(tmp_path, mask), CELEBA)


def test_mask_of_other_size_is_refused(tmp_path):
    with pytest.raises(MaskReadError, match="is 3×3 but its image .* is 6×4"):
        read_mask(_sample(tmp_path, label_map(3, 3)), CELEBA)


def test_colour_mask_is_refused_but_grey_rgb_is_accepted(tmp_path):
    colour = np.zeros((4, 6, 3), np.uint8)
    colour[..., 0] = 1
    with pytest.raises(MaskReadError, match="colour"):
        read_mask(_sample(tmp_path, colour), CELEBA)
    grey = np.repeat(label_map(6, 4, (0, 2))[..., None], 3, axis=2)
    np.testing.assert_array_equal(read_mask(_sample(tmp_path, grey), CELEBA), label_map(6, 4, (0, 2)))


def test_part_masks_paint_in_order_and_upsample_by_scale(tmp_path):
    img = _save(tmp_path / "face.jpg", Image.fromarray(gradient(8, 8)), quality=95)
    skin = np.zeros((4, 4), np.uint8)
    skin[1:, :] = 255
    hair = np.zeros((4, 4), np.uint8)
    hair[:2, :] = 255
    ref = MaskRef(kind="part_masks", scale=0.5, parts=(
        (1, _save(tmp_path / "skin.png", Image.fromarray(skin))),
        (13, _save(tmp_path / "hair.png", Image.fromarray(hair))),
    ))
    out = read_mask(Sample("face.jpg", img, ref), CELEBA)
    assert out.shape == (8, 8)
    # Rows 0-3 hair (hair painted last wins over skin in row 1 of the 4×4), rows 4-7 skin.
    np.testing.assert_array_equal(out[:, 0], [13, 13, 13, 13, 1, 1, 1, 1])


def test_ade20k_rgb_mask_is_decoded_and_remapped(tmp_path):
    idx = np.array([[0, 2855, 401, 118]], dtype=np.int64).repeat(2, axis=0)
    seg = _save(tmp_path / "x_seg.png", Image.fromarray(ade20k_rgb(idx)))
    ref = MaskRef(kind="label_map", path=seg, encoding="ade20k_rgb",
                  value_map=((2855, 5), (401, 21), (118, 0)))
    out = read_mask(_sample(tmp_path, size=(4, 2), ref=ref), get_schema("ade20k-150"))
    np.testing.assert_array_equal(out[0], [0, 5, 21, 0])


def test_schema_with_ids_above_255_gives_uint16(tmp_path):
    schema = Schema(name="wide", classes={0: "background", 300: "thing"})
    mask = np.zeros((4, 6), np.uint16)
    mask[2:] = 300
    out = read_mask(_sample(tmp_path, mask), schema)
    assert out.dtype == np.uint16
    assert int(out[3, 0]) == 300 and int(out[0, 0]) == 0


def test_sample_without_mask_raises(tmp_path):
    sample = Sample("img.png", _save(tmp_path / "img.png", Image.fromarray(gradient(2, 2))))
    with pytest.raises(MaskReadError, match="has no mask"):
        read_mask(sample, CELEBA)


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_corrupted_files_only_ever_raise_image_read_error(tmp_path):
    """Byte-flipped and cut JPEG/PNG/BMP/WebP/GIF files: decoded or refused, never a crash."""
    import random

    rng = random.Random(0)
    arr = np.random.default_rng(0).integers(0, 255, (24, 24, 3), dtype=np.uint8)
    seeds = {"exif.jpg": exif_rotated_jpeg(40, 20)}
    for fmt in ("PNG", "JPEG", "BMP", "WEBP", "GIF"):
        buf = io.BytesIO()
        Image.fromarray(arr).save(buf, format=fmt)
        seeds[f"x.{fmt.lower()}"] = buf.getvalue()
    outcomes = {"decoded": 0, "refused": 0}
    for _ in range(400):
        name = rng.choice(sorted(seeds))
        data = bytearray(seeds[name])
        for _ in range(rng.randint(1, 8)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        if rng.random() < 0.3:
            data = data[: rng.randrange(len(data))]
        path = tmp_path / name
        path.write_bytes(bytes(data))
        try:
            rgb = read_image(path)
            assert rgb.dtype == np.uint8 and rgb.ndim == 3 and rgb.shape[2] == 3
            outcomes["decoded"] += 1
        except ImageReadError as exc:
            assert str(exc).startswith(str(path))
            outcomes["refused"] += 1
    assert outcomes["decoded"] > 0 and outcomes["refused"] > 0
