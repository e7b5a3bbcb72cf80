"""mediapipe-face on a real photograph that ships inside scikit-image (NASA's astronaut
portrait, 512×512, face roughly at x 180-270, y 50-170)."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("mediapipe")
skimage_data = pytest.importorskip("skimage.data")

from biasaudit.core.schema import get_schema  # noqa: E402
from biasaudit.segment import SegmentFailure, make_segmenter  # noqa: E402

FACE = get_schema("celebamask-hq")


@pytest.fixture(scope="module")
def parsed():
    image = skimage_data.astronaut()
    with make_segmenter("mediapipe-face", schema=FACE) as seg:
        label_map, no_face = seg.segment_batch([image, np.full((120, 160, 3), 127, np.uint8)])
    return image, label_map, no_face


def _centroid(lm, name):
    ys, xs = np.nonzero(lm == FACE.id_of(name))
    assert len(ys), f"{name} is empty"
    return xs.mean(), ys.mean(), len(ys)


def test_parts_land_where_a_person_would_put_them(parsed):
    _, lm, _ = parsed
    c = {n: _centroid(lm, n) for n in ("skin", "hair", "nose", "l_eye", "r_eye", "l_brow", "r_brow",
                                        "u_lip", "l_lip", "mouth", "neck", "cloth")}
    # the face is in the upper middle of the picture
    assert 180 < c["skin"][0] < 270 and 60 < c["skin"][1] < 170
    # top to bottom: hair, brows, eyes, nose, upper lip, mouth, lower lip, neck, cloth
    order = ["hair", "l_brow", "l_eye", "nose", "u_lip", "mouth", "l_lip", "neck", "cloth"]
    ys = [c[n][1] for n in order]
    assert ys == sorted(ys), dict(zip(order, ys, strict=True))
    assert c["r_brow"][1] < c["r_eye"][1] < c["nose"][1]
    # the person's left eye is on the image's right
    assert c["r_eye"][0] < c["nose"][0] < c["l_eye"][0]
    assert c["r_brow"][0] < c["l_brow"][0]
    # eyes are level and the nose is between them horizontally
    assert abs(c["l_eye"][1] - c["r_eye"][1]) < 10
    # sizes: skin is the biggest face part, eyes are small, the suit is most of the person
    assert c["skin"][2] > 10 * c["nose"][2] > 10 * c["l_eye"][2] / 3
    assert 50 < c["l_eye"][2] < 600 and c["cloth"][2] > c["skin"][2] > c["hair"][2] / 3


def test_hair_is_above_and_beside_the_face_not_on_it(parsed):
    _, lm, _ = parsed
    hair_y = np.nonzero(lm == FACE.id_of("hair"))[0]
    chin_y = np.nonzero(np.isin(lm, [FACE.id_of("skin"), FACE.id_of("l_lip")]))[0].max()
    assert np.mean(hair_y < chin_y) > 0.95


def test_no_face_is_a_failure_value_not_an_exception(parsed):
    _, _, no_face = parsed
    assert isinstance(no_face, SegmentFailure) and "no face" in no_face.message


def test_other_schema_is_refused():
    from biasaudit.core.errors import ValidationError

    with pytest.raises(ValidationError, match="celebamask-hq"):
        make_segmenter("mediapipe-face", schema=get_schema("lip"))


def test_synthfaces_parts_overlap_the_true_masks(tmp_path):
    # SynthFaces draws its own exact masks, so the parser can be scored: IoU per part,
    # and the eyes must not be swapped (the generator's l_eye is the person's left too).
    from biasaudit.data import open_dataset, read_image, read_mask
    from biasaudit.data.synth.faces import SynthFacesConfig, write_synthfaces

    ds = open_dataset(write_synthfaces(tmp_path / "faces", SynthFacesConfig(n=6, seed=2, size=256)))
    ious: dict[str, list[float]] = {n: [] for n in ("skin", "hair", "l_eye", "r_eye", "neck", "cloth")}
    swapped = []
    with make_segmenter("mediapipe-face", schema=FACE) as seg:
        for sample in ds.samples:
            pred = seg.segment_batch([read_image(sample.image_path)])[0]
            assert not isinstance(pred, SegmentFailure), pred
            truth = read_mask(sample, ds.schema)
            for name, values in ious.items():
                p, t = pred == FACE.id_of(name), truth == FACE.id_of(name)
                values.append((p & t).sum() / max((p | t).sum(), 1))
            p, t = pred == FACE.id_of("l_eye"), truth == FACE.id_of("r_eye")
            swapped.append((p & t).sum() / max((p | t).sum(), 1))
    mean = {n: float(np.mean(v)) for n, v in ious.items()}
    assert mean["skin"] > 0.6 and mean["hair"] > 0.45 and mean["cloth"] > 0.6 and mean["neck"] > 0.5, mean
    assert mean["l_eye"] > 0.25 and mean["r_eye"] > 0.25 and max(swapped) < 0.05, (mean, swapped)
