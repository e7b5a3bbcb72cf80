"""The audit on generated segment tables: planted bias found, control quiet, rare value named.

No images: tables are drawn directly, so the statistics can be reasoned about exactly.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from biasaudit.audit import AuditInputs, Target, build_attributes, overlap_confounding, run_audit
from biasaudit.audit.stats import FLAG_THRESHOLD, cramers_v, severity

HAIR = ["blond", "black", "brown", "red", "gray"]


def make_tables(n=2000, seed=0, plant=None, gray_share=0.2):
    rng = np.random.default_rng(seed)
    smiling = rng.integers(0, 2, n)
    shares = np.array([(1 - gray_share) / 4] * 4 + [gray_share])
    hair = rng.choice(HAIR, n, p=shares)
    if plant is not None:
        # P(blond | S=1) = plant, P(blond | S=0) = 1 - plant; others drawn among the rest
        blond = rng.random(n) < np.where(smiling == 1, plant, 1 - plant)
        others = rng.choice(HAIR[1:], n)
        hair = np.where(blond, "blond", others)
    ids = [f"{i:05d}.png" for i in range(n)]
    rows = []
    for i, img in enumerate(ids):
        mouth_w = 30 if smiling[i] else 18  # the causal part: a smile is wider
        rows += [
            dict(image=img, part="hair", present=True, area_frac=rng.uniform(0.1, 0.3), colour=hair[i],
                 bbox_x0=10, bbox_y0=0, bbox_x1=110, bbox_y1=60),
            dict(image=img, part="mouth", present=True, area_frac=0.01 * (1 + smiling[i]) + rng.uniform(0, 0.002),
                 colour="red", bbox_x0=64 - mouth_w // 2, bbox_y0=90, bbox_x1=64 + mouth_w // 2, bbox_y1=100),
            dict(image=img, part="l_ear", present=True, area_frac=rng.uniform(0.01, 0.02), colour="beige",
                 bbox_x0=0, bbox_y0=50, bbox_x1=8, bbox_y1=70),
        ]
    segments = pd.DataFrame(rows)
    labels = pd.DataFrame({"Smiling": smiling}, index=pd.Index(ids, name="image"))
    return segments, labels


def audit(segments, labels, seed=0):
    attrs, _ = build_attributes(segments)
    causal = frozenset({"mouth"})
    inputs = AuditInputs(attributes=attrs, labels=labels, targets=[Target("Smiling")], causal=causal,
                         confounded=overlap_confounding(segments, causal), seed=seed, n_boot=50)
    return run_audit(inputs)


@pytest.mark.parametrize("p", [0.75, 0.9])
def test_planted_hair_colour_is_top_flagged_finding(p):
    result = audit(*make_tables(plant=p, seed=int(p * 100)))
    top = result.flagged[0]
    assert top.segment == "hair" and "blond" in top.attribute and top.kind == "association"
    # the effect the plant implies: phi = 2p - 1 for a balanced label
    assert top.evidence["cramers_v"] == pytest.approx(2 * p - 1, abs=0.05)
    lo, hi = top.evidence["cramers_v_ci95"]
    assert lo <= top.evidence["cramers_v"] <= hi
    # the mouth explains Smiling by construction: expected evidence, never a flagged bias
    assert all(f.segment != "mouth" for f in result.findings)
    assert any(f.segment == "mouth" for f in result.expected)


@pytest.mark.parametrize("seed", range(5))
def test_control_flags_nothing(seed):
    result = audit(*make_tables(seed=seed))
    assert result.flagged == []


def test_rare_value_is_under_represented():
    result = audit(*make_tables(gray_share=0.02, seed=3))
    rare = [f for f in result.flagged if f.kind == "under_representation"]
    assert rare and rare[0].segment == "hair" and "gray" in rare[0].attribute


def test_same_seed_same_findings():
    tables = make_tables(plant=0.9)
    a, b = audit(*tables, seed=1), audit(*tables, seed=1)
    assert [f.to_record() for f in a.findings] == [f.to_record() for f in b.findings]


def test_severity_formula_by_hand():
    # V = 0.8 at q = 1e-4 (= alpha²): effect 1 - exp(-0.8/0.25) = 0.9592, confidence 1
    assert severity(0.8, 1e-4) == pytest.approx(0.9592, abs=1e-4)
    # at q = alpha exactly it is not a discovery
    assert severity(0.8, 0.01) == 0.0
    # V = 0.2 at q = 1e-3: 0.5507 × 0.75
    assert severity(0.2, 1e-3) == pytest.approx(0.5507 * 0.75, abs=1e-3)
    assert FLAG_THRESHOLD == 0.5


def test_cramers_v_by_hand():
    # 2x2 [[40, 10], [10, 40]]: chi2 = 36, n = 100 → V = 0.6
    assert cramers_v(np.array([[40, 10], [10, 40]])) == pytest.approx(0.6)
