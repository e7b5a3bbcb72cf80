"""check_sample re-measures a part as the scan does and names why a sample fails."""

from __future__ import annotations

import numpy as np
import pytest

from biasaudit.core.errors import ValidationError
from biasaudit.core.schema import Schema
from biasaudit.rebalance import GateVerdict, check_sample
from biasaudit.rebalance.gate import EmbeddingGate, measure

SCHEMA = Schema("toy", {0: "background", 1: "hair", 2: "hat"})


def _sample(rows: int, colour=(220, 190, 130), cols: int = 16):
    image = np.zeros((16, 16, 3), np.uint8)
    mask = np.zeros((16, 16), np.uint8)
    image[:rows, :cols] = colour
    mask[:rows, :cols] = 1
    return image, mask


def _check(sample, **kw):
    return check_sample(*sample, schema=SCHEMA, part="hair", **kw)


def test_colour_and_presence_values():
    blond, black = _sample(8), _sample(8, colour=(20, 18, 16))
    assert _check(blond, attribute="colour", expected_value="blond") == GateVerdict(True, "")
    assert _check(black, attribute="colour", expected_value="blond") == GateVerdict(False, "wrong_value")
    assert _check(blond, attribute="presence", expected_value="present").ok
    assert _check(_sample(0), attribute="presence", expected_value="absent").ok
    assert _check(_sample(0), attribute="colour", expected_value="blond").reason == "wrong_value"


def test_area_range_is_checked_before_the_value():
    assert _check(_sample(8), attribute="colour", expected_value="blond", area_range=(0.1, 0.4)).reason == \
        "area_out_of_range"
    assert _check(_sample(4), attribute="colour", expected_value="blond", area_range=(0.1, 0.4)).ok
    # an absent part has no area to check: removal samples pass on their value alone
    assert _check(_sample(0), attribute="presence", expected_value="absent", area_range=(0.1, 0.4)).ok


def test_size_and_shape_use_the_real_tertile_cut_points():
    assert measure(*_sample(2), schema=SCHEMA, part="hair", attribute="size", thresholds=(0.2, 0.4))[0] == "small"
    assert measure(*_sample(4), schema=SCHEMA, part="hair", attribute="size", thresholds=(0.2, 0.4))[0] == "medium"
    assert measure(*_sample(16), schema=SCHEMA, part="hair", attribute="size", thresholds=(0.2, 0.4))[0] == "large"
    assert _check(_sample(16, cols=4), attribute="shape", expected_value="narrow", thresholds=(0.5, 2.0)).ok
    with pytest.raises(ValidationError, match="thresholds"):
        _check(_sample(2), attribute="size", expected_value="small")
    with pytest.raises(ValidationError, match="cannot be re-measured"):
        _check(_sample(2), attribute="cluster_name", expected_value="x")
    with pytest.raises(ValidationError, match="not in schema"):
        check_sample(*_sample(2), schema=SCHEMA, part="beard", attribute="colour", expected_value="x")


def test_embedding_gate_wants_the_intended_values_centroid_nearest():
    gate = EmbeddingGate(embed=lambda image, mask: np.array([float(mask.sum()), 1.0]),
                         centroids={"small": np.array([4.0, 1.0]), "large": np.array([40.0, 1.0])})
    assert gate.check(*_sample(1), "small").ok  # 16 pixels: nearer 4 than 40
    assert gate.check(*_sample(1), "large") == GateVerdict(False, "embedding_mismatch")
    assert gate.check(*_sample(1), "unknown").ok  # no centroid for it: nothing to compare with
