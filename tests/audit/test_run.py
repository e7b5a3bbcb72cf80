"""The audit on generated segment tables: planted bias found, control quiet, rare value named.

No images: tables are drawn directly, so the statistics can be reasoned about exactly.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from biasaudit.audit import AuditInputs, Target, build_attributes, run_audit
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
                         seed=seed, n_boot=50)
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


# ---- issue 8 ------------------------------------------------------------------------------
def test_sparse_tables_get_an_exact_or_monte_carlo_test():
    from biasaudit.audit.stats import association_test, chi_square

    # an expected count below 5: chi-square says p < 0.01, Fisher's exact test does not
    table = np.array([[1, 7], [60, 40]])
    assert chi_square(table)[1] < 0.01
    _, p, _, test = association_test(table)
    assert test == "Fisher exact" and p > 0.02
    # a sparse 2×3 table: a seeded Monte Carlo p-value, the same on every run
    sparse = np.array([[3, 0, 0], [40, 50, 45]])
    a, b = association_test(sparse, seed=1), association_test(sparse, seed=1)
    assert a == b and a[3].startswith("Monte Carlo")
    # a dense table keeps the chi-square test
    assert association_test(np.array([[40, 10], [10, 40]]))[3] == "chi-square"


@pytest.mark.slow
def test_sparse_label_null_rejects_near_the_nominal_rate():
    # issue 8: a 3-class label with a 1% class at n = 300 gave p < 0.01 in 2.3% of chi-square tests
    from biasaudit.audit.stats import association_test

    rng = np.random.default_rng(0)
    rejected = 0
    for i in range(300):
        label = rng.choice(3, 300, p=[0.495, 0.495, 0.01])
        value = rng.choice(3, 300)
        table = pd.crosstab(value, label).to_numpy()
        rejected += table.shape[1] > 1 and association_test(table, seed=i)[1] < 0.01
    assert rejected / 300 <= 0.02


def _table_inputs(n=2000, seed=0, **kw):
    segments, labels = make_tables(n=n, seed=seed, plant=kw.pop("plant", None))
    attrs, _ = build_attributes(segments)
    return AuditInputs(attributes=attrs, labels=labels, targets=[Target("Smiling")],
                       causal=frozenset({"mouth"}), seed=seed, n_boot=20, **kw), segments, labels


def test_every_rare_value_is_tested_and_even_share_rarity_ranks_after_label_biases():
    segments, labels = make_tables(n=2000, seed=2, plant=0.9)
    gray = segments.index[(segments["part"] == "hair")][:10]  # 10 of 2000 images: 0.5%, below the old floor
    segments.loc[gray, "colour"] = "white"
    attrs, _ = build_attributes(segments)
    result = run_audit(AuditInputs(attributes=attrs, labels=labels, targets=[Target("Smiling")],
                                   causal=frozenset({"mouth"}), n_boot=20))
    rare = [f for f in result.flagged if f.kind == "under_representation" and "white" in f.attribute]
    assert rare and rare[0].evidence["observed"] == 10 and rare[0].evidence["basis"] == "even share"
    assert rare[0].evidence["test"].startswith("exact binomial")
    # the planted label bias leads; even-share rarity is ranked after every label finding
    assert result.findings[0].kind == "association" and "blond" in result.findings[0].attribute
    groups = [f.group for f in result.findings]
    assert groups == sorted(groups) and rare[0].group == 1


def test_reference_shares_are_tested_and_an_unseen_value_is_a_finding():
    inputs, _, _ = _table_inputs(seed=4, reference={("hair", "colour"): {"green": 0.05, "blond": 0.2}})
    result = run_audit(inputs)
    by_value = {f.evidence["value"]: f for f in result.findings if f.kind == "under_representation"
                and f.evidence.get("basis") == "reference"}
    assert by_value["green"].evidence["observed"] == 0 and by_value["green"].flagged
    assert by_value["green"].group == 0  # a user's reference ranks with the label biases
    assert "blond" not in by_value or not by_value["blond"].flagged  # blond is at its share


def test_presence_and_colour_are_never_routed_size_and_shape_are_with_a_reason():
    segments, labels = make_tables(n=1500, seed=5)
    rng = np.random.default_rng(5)
    hair = segments["part"] == "hair"
    smiling = labels["Smiling"].to_numpy()
    # plant hair presence AND hair size on Smiling; declare hair occluded by the causal mouth
    absent = rng.random(len(smiling)) < np.where(smiling == 1, 0.4, 0.05)
    segments.loc[hair, "present"] = ~absent
    segments.loc[hair, "area_frac"] = np.where(smiling == 1, 0.3, 0.1) + rng.uniform(0, 0.05, len(smiling))
    attrs, _ = build_attributes(segments)
    occluded = {"hair": "the causal part mouth borders it along 40% of its outline in 90% of images"}
    result = run_audit(AuditInputs(attributes=attrs, labels=labels, targets=[Target("Smiling")],
                                   causal=frozenset({"mouth"}), confounded=occluded, n_boot=20))
    kinds = {f.evidence["attribute_kind"] for f in result.flagged if f.segment == "hair"}
    assert "presence" in kinds  # presence is never routed by contact
    size = [f for f in result.expected if f.segment == "hair" and f.evidence["attribute_kind"] == "size"]
    assert size and "borders it" in size[0].expected_reason
    assert size[0].to_record()["routed_because"] == size[0].expected_reason
    # every finding names the schema parts it covers
    assert all(f.parts == (f.segment,) for f in result.findings + result.expected)


def test_a_proxy_is_listed_under_the_bias_it_re_describes():
    segments, labels = make_tables(n=2000, seed=6, plant=0.9)
    hair = segments[segments["part"] == "hair"]
    brows = hair.assign(part="l_brow", area_frac=0.02)  # brows tinted like the hair: a proxy
    result = run_audit(AuditInputs(attributes=build_attributes(pd.concat([segments, brows]))[0], labels=labels,
                                   targets=[Target("Smiling")], causal=frozenset({"mouth"}), n_boot=20))
    top = result.findings[0]
    assert top.segment == "hair" and "blond" in top.attribute
    assert not any(f.segment == "l_brow" and f.label == "Smiling" for f in result.findings)
    proxies = top.evidence["proxies"]
    assert proxies[0]["segment"] == "l_brow" and proxies[0]["proxy_of"] == "a proxy of hair colour 'blond'"
    assert proxies[0]["held_fixed"]["conditional_cramers_v"] < 0.1


def test_an_independent_second_bias_is_not_a_proxy():
    segments, labels = make_tables(n=2000, seed=7, plant=0.9)
    rng = np.random.default_rng(7)
    smiling = labels["Smiling"].to_numpy()
    ear = segments["part"] == "l_ear"
    # ear colour follows Smiling on its own, not through the hair
    segments.loc[ear, "colour"] = np.where(rng.random(len(smiling)) < np.where(smiling == 1, 0.9, 0.1),
                                           "red", "beige")
    result = run_audit(AuditInputs(attributes=build_attributes(segments)[0], labels=labels,
                                   targets=[Target("Smiling")], causal=frozenset({"mouth"}), n_boot=20))
    flagged = {f.segment for f in result.flagged}
    assert {"hair", "l_ear"} <= flagged


def test_embedding_of_an_occluded_part_is_expected_but_colour_is_still_tested():
    segments, labels = make_tables(n=600, seed=8, plant=0.9)
    y = labels["Smiling"].to_numpy()
    rng = np.random.default_rng(8)
    # the hair embedding sees the mouth's outline (declared occluding): it predicts Smiling
    emb = pd.DataFrame(rng.normal(size=(len(y), 8)) + 2.0 * y[:, None], index=labels.index)
    attrs, _ = build_attributes(segments)
    occluded = {"hair": "the causal part mouth borders it along 40% of its outline in 90% of images"}
    result = run_audit(AuditInputs(attributes=attrs, labels=labels, targets=[Target("Smiling")],
                                   embeddings={"hair": emb}, causal=frozenset({"mouth"}), confounded=occluded,
                                   n_boot=20))
    shortcut = [f for f in result.expected if f.kind == "shortcut" and f.segment == "hair"]
    assert shortcut and "outline" in shortcut[0].expected_reason
    assert result.flagged[0].segment == "hair" and "blond" in result.flagged[0].attribute
