"""swap_part on tiny drawn faces: actions, pixel-exact masks, fill, occlusion, alignment."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from biasaudit.core.errors import BiasauditError, ValidationError
from biasaudit.rebalance import PartSwap, RecombineError, swap_part
from biasaudit.rebalance.recombine import align_parts, fill_region, nearest_labels

sys.path.insert(0, str(Path(__file__).resolve().parent))
from toy import BLACK, BLOND, EYE_G, HAIR, HAT, L_EYE, SCHEMA, SKIN, face


def _swap(base, donor, part=HAIR, seed=0) -> PartSwap:
    return swap_part(*base, *donor, part_ids=[part], schema=SCHEMA, seed=seed)


def test_replace_moves_the_donors_colour_and_the_mask_is_pixel_exact():
    base, donor = face(hair=BLACK), face(hair=BLOND, hair_style="long")
    out = _swap(base, donor)
    assert out.action == "replace"
    assert out.image.shape == base[0].shape and out.mask.shape == base[1].shape
    hair = out.mask == HAIR
    # every pixel the mask calls hair shows blond hair (feathered edge within a few levels)
    inner = hair & np.roll(hair, 1, 0) & np.roll(hair, -1, 0) & np.roll(hair, 1, 1) & np.roll(hair, -1, 1)
    diff = np.abs(out.image[inner].astype(int) - BLOND)
    assert diff.mean() < 1.5 and diff.max() <= 12  # bilinear resampling touches the rim
    assert not np.any(np.all(out.image == BLACK, axis=-1))  # no black hair left anywhere
    # the long donor hair is pasted in full, under the face (skin and eyes stay in front)
    assert hair.sum() > (base[1] == HAIR).sum()
    assert np.array_equal(out.mask == L_EYE, base[1] == L_EYE)


def test_uncovered_base_part_is_relabelled_and_filled_from_its_surroundings():
    base = face(hair=BLACK, hair_style="long")
    donor = face(hair=BLOND)  # short hair leaves the base's long sides uncovered
    out = _swap(base, donor)
    was = (base[1] == HAIR) & (out.mask != HAIR)
    assert was.sum() > 50
    assert set(np.unique(out.mask[was])) <= {0, SKIN}
    bg = was & (out.mask == 0)
    # filled with the background's colour, not left black
    assert np.abs(out.image[bg].astype(int).mean(axis=0) - (60, 90, 140)).max() < 6


def test_add_remove_and_none():
    plain, hatted = face(), face(hat=True)
    add = _swap(plain, hatted, part=HAT)
    assert add.action == "add" and (add.mask == HAT).sum() == (hatted[1] == HAT).sum()
    remove = _swap(hatted, plain, part=HAT)
    assert remove.action == "remove" and not (remove.mask == HAT).any()
    assert not np.any(np.all(remove.image == (40, 140, 60), axis=-1))
    none = _swap(plain, plain, part=HAT)
    assert none.action == "none"
    assert np.array_equal(none.image, plain[0]) and np.array_equal(none.mask, plain[1])


def test_occlusion_order_hat_stays_over_new_hair_and_glasses_over_eyes():
    base = face(hair=BLACK, hat=True, glasses=True)
    donor = face(hair=BLOND, hair_style="long")
    out = _swap(base, donor)
    for part in (HAT, EYE_G):
        keep = base[1] == part
        assert np.array_equal(out.mask == part, keep)
        assert np.array_equal(out.image[keep], base[0][keep])


def test_donor_of_another_size_and_framing_is_aligned_to_the_base():
    base = face(64, hair=BLACK)
    donor = face(128, hair=BLOND, scale=1.3, shift=(10, -6))
    out = _swap(base, donor)
    ref = face(64, hair=BLOND)[1] == HAIR  # what a blond base of the same geometry would have
    got = out.mask == HAIR
    iou = (got & ref).sum() / (got | ref).sum()
    assert iou > 0.8, iou


def test_alignment_recovers_scale_and_shift():
    a = face(64, scale=1.0)[1]
    b = face(64, scale=1.5, shift=(5, 3))[1]
    m = align_parts(a, b, [HAIR], SCHEMA)
    assert m[0, 0] == pytest.approx(1.5, abs=0.06) and abs(m[1, 0]) < 1e-6


def test_same_seed_same_result_and_seed_changes_the_fill_grain():
    base, donor = face(hair=BLACK, hair_style="long"), face(hair=BLOND)
    a, b = _swap(base, donor, seed=3), _swap(base, donor, seed=3)
    assert np.array_equal(a.image, b.image) and np.array_equal(a.mask, b.mask)


def test_errors_name_the_problem():
    base = face()
    only_part = (np.zeros_like(base[0]), np.where(base[1] == HAIR, HAIR, 0).astype(np.uint8))
    with pytest.raises(RecombineError, match="reference region") as err:
        _swap(base, only_part)
    assert isinstance(err.value, BiasauditError)
    with pytest.raises(ValidationError, match="uint8 RGB"):
        swap_part(base[0][..., 0], base[1], *base, part_ids=[HAIR], schema=SCHEMA)
    with pytest.raises(ValidationError, match="background"):
        swap_part(*base, *base, part_ids=[0], schema=SCHEMA)


def test_part_landing_outside_the_base_is_refused():
    base = face(64)
    donor_img, donor_lab = face(64)
    # the donor's reference sits low, its hair at the very top: mapped onto the base it leaves the frame
    donor_lab = donor_lab.copy()
    donor_lab[:10] = np.where(donor_lab[:10] == 0, 0, donor_lab[:10])
    donor_lab[donor_lab == HAIR] = 0
    donor_lab[0:3, :] = HAIR
    skin = donor_lab == SKIN
    donor_lab[skin] = 0
    donor_lab[55:64, 20:44] = SKIN
    with pytest.raises(RecombineError, match="outside"):
        _swap(base, (donor_img, donor_lab))


def test_fill_region_uses_each_labels_own_colour():
    img = np.zeros((20, 20, 3), np.uint8)
    img[:, 10:] = 200
    lab = np.zeros((20, 20), np.uint8)
    lab[:, 10:] = 1
    region = np.zeros((20, 20), bool)
    region[5:15, 5:15] = True
    out = fill_region(img, region, lab)
    assert out[10, 7].max() == 0 and out[10, 12].min() == 200
    assert nearest_labels(lab, region).tolist() == lab.tolist()
