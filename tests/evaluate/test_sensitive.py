"""``--sensitive``: columns, and part attributes named exactly as the scan names them."""

from __future__ import annotations

import numpy as np
import pytest

from biasaudit.core.errors import DatasetError, ValidationError
from biasaudit.evaluate.images import load_image_set
from biasaudit.evaluate.sensitive import (
    SensitiveSpec,
    check_part,
    parse_sensitive,
    sensitive_values,
)


@pytest.fixture(scope="module")
def faces(tmp_path_factory):
    from biasaudit.data.synth.faces import SynthFacesConfig, parse_plant, write_synthfaces

    config = SynthFacesConfig(n=24, seed=3, size=64, plants=(parse_plant("Smiling:Blond_Hair=0.5"),))
    return write_synthfaces(tmp_path_factory.mktemp("sens") / "faces", config, workers=1)


def test_parse():
    assert parse_sensitive("Male") == SensitiveSpec(column="Male")
    assert parse_sensitive("part:hat:presence") == SensitiveSpec(part="hat", attribute="presence")
    assert str(parse_sensitive("part:hair")) == "part:hair"
    with pytest.raises(ValidationError, match="part:PART:ATTRIBUTE"):
        parse_sensitive("part:hair:smell")


def test_part_values_follow_the_scan_names(faces):
    s = load_image_set(faces, size=16, label="Smiling", with_parts=True)
    assert s.images.shape == (24, 3, 16, 16)
    hair = sensitive_values(s, parse_sensitive("part:hair"))
    blond = s.labels["Blond_Hair"].to_numpy() == 1
    # SynthFaces paints Blond_Hair faces blond: the measured names agree with the labels
    assert (hair[blond] == "blond").all() and not (hair[~blond] == "blond").any()
    hat = sensitive_values(s, parse_sensitive("part:hat:presence"))
    assert set(hat) <= {"present", "absent"}
    assert ((hat == "present") == (s.labels["Wearing_Hat"].to_numpy() == 1)).all()
    column = sensitive_values(s, parse_sensitive("Blond_Hair"))
    assert set(np.unique(column)) == {"0", "1"}


def test_unknown_part_and_missing_label(faces):
    s = load_image_set(faces, size=16)
    with pytest.raises(ValidationError, match="'wings' is not a part.*hair"):
        check_part(parse_sensitive("part:wings"), s.dataset.schema, where="--test T")
    with pytest.raises(DatasetError, match="no label column 'Happy'"):
        load_image_set(faces, size=16, label="Happy", where="--train a=DIR")
