from __future__ import annotations

import numpy as np

from biasaudit.core.schema import get_schema
from biasaudit.segment.labels import map_labels_by_name


def test_celebamask_face_parsing_labels_map_one_to_one():
    schema = get_schema("celebamask-hq")
    # The id2label of face-parsing models fine-tuned on CelebAMask-HQ uses the dataset's names.
    m = map_labels_by_name({i: n for i, n in schema.classes.items()}, schema)
    assert m.lut.tolist() == list(range(19)) and m.unmatched == ()


def test_celebamask_names_in_another_order_are_remapped():
    schema = get_schema("celebamask-hq")
    names = ["background", "hair", "skin", "cloth", "Left Eye", "right_eye", "eyeglasses", "upper lip", "teeth", "sky"]
    m = map_labels_by_name(dict(enumerate(names)), schema)
    ids = [schema.id_of(n) for n in ("background", "hair", "skin", "cloth", "l_eye", "r_eye", "eye_g", "u_lip", "mouth")]
    assert m.lut.tolist() == ids + [0]
    assert m.unmatched == ("sky",)


def test_ade20k_150_names_map_with_shift_by_one():
    schema = get_schema("ade20k-150")
    # HF ADE20K models: ids 0..149, names with spaces ("traffic light"); schema id 0 is "other".
    id2label = {i - 1: n.replace("_", " ") for i, n in schema.classes.items() if i > 0}
    m = map_labels_by_name(id2label, schema)
    assert m.lut.tolist() == list(range(1, 151)) and m.unmatched == ()


def test_ade20k_long_names_use_the_first_alternative():
    schema = get_schema("ade20k-150")
    id2label = {0: "wall", 1: "building, edifice", 12: "person;individual;someone", 138: "ashcan, trash can, garbage can"}
    m = map_labels_by_name(id2label, schema)
    assert [m.lut[k] for k in (0, 1, 12, 138)] == [1, 2, 13, 139]


def test_ade20k_model_on_a_face_schema_keeps_only_what_matches():
    m = map_labels_by_name({0: "wall", 1: "person", 2: "apparel"}, get_schema("celebamask-hq"))
    assert np.count_nonzero(m.lut) == 1 and m.matched == {2: "cloth"}
