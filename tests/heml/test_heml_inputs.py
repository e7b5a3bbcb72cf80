from __future__ import annotations

import numpy as np
import pytest

from biasaudit.core.errors import ValidationError
from biasaudit.heml import node_inputs


def _one(h=10, w=10):
    img = np.zeros((1, h, w, 3), np.uint8)
    lm = np.zeros((1, h, w), np.int64)
    return img, lm


def test_crop_is_square_box_plus_margin_and_outside_pixels_become_background():
    img, lm = _one()
    img[0, :, :] = (200, 100, 50)  # every pixel coloured; only the part may survive
    lm[0, 2:4, 3:7] = 5  # 2×4 box → square side 4, margin 0.25 → ceil(4·1.5) = 6
    out = node_inputs(img, lm, (5,), resolution=6, margin=0.25, background=(1, 2, 3))
    crop = out.crops[0]
    # side 6 equals the resolution, so no resampling. Box centre (3, 5) → crop window
    # rows 0..5, cols 2..7, so the part (rows 2-3, cols 3-6) lands at rows 2-3, cols 1-4.
    expected = np.zeros((6, 6, 3), np.uint8)
    expected[:] = (1, 2, 3)
    expected[2:4, 1:5] = (200, 100, 50)
    np.testing.assert_array_equal(crop, expected)
    assert out.area_frac[0] == pytest.approx(8 / 100)


def test_crop_leaving_the_image_is_padded_with_background():
    img, lm = _one()
    img[0] = 90
    lm[0, 0:2, 0:2] = 7  # corner part, side 2, margin 0.5 → side 4 centred at (1, 1)
    out = node_inputs(img, lm, (7,), resolution=4, margin=0.5)
    # window rows/cols -1..2: row/col 0 is outside the image → background 0
    assert out.crops[0, 0].max() == 0 and out.crops[0, :, 0].max() == 0
    assert (out.crops[0, 1:3, 1:3] == 90).all()
    assert out.crops[0, 3, 3].max() == 0  # inside the image but not the part


def test_absent_parts_are_flagged_and_left_blank():
    img, lm = _one()
    img[0] = 255
    lm[0, 5:9, 5:9] = 2
    out = node_inputs(np.concatenate([img, img]), np.concatenate([lm, np.zeros_like(lm)]), (2,), resolution=8)
    assert out.present.tolist() == [True, False]
    assert out.crops[1].max() == 0 and out.area_frac[1] == 0.0
    assert out.crops[0].max() == 255


def test_several_parts_share_one_box():
    img, lm = _one(20, 20)
    lm[0, 2, 2] = 4
    lm[0, 9, 17] = 5  # box rows 2..9, cols 2..17 → side 16
    out = node_inputs(img, lm, (4, 5), resolution=8, margin=0.0)
    assert out.present[0] and out.area_frac[0] == pytest.approx(2 / 400)


def test_bad_arrays_are_rejected_with_shapes_in_the_message():
    img, lm = _one()
    with pytest.raises(ValidationError, match=r"N×H×W×3 uint8 array; got shape \(1, 10, 10, 3\) dtype float32"):
        node_inputs(img.astype(np.float32), lm, (1,), resolution=8)
    with pytest.raises(ValidationError, match="label_maps must be N×H×W matching images"):
        node_inputs(img, lm[:, :5], (1,), resolution=8)
