"""Fairness figures against values computed by hand, and the empty-group error."""

from __future__ import annotations

import pandas as pd
import pytest

from biasaudit.core.errors import ValidationError
from biasaudit.evaluate.fairness import check_groups, format_summary, score_predictions, summarize


@pytest.fixture
def predictions() -> pd.DataFrame:
    # groups: 0|a (2 images, 1 right), 0|b (2, 2 right), 1|a (2, 2 right), 1|b (2, 0 right)
    return pd.DataFrame({
        "y_true": [0, 0, 0, 0, 1, 1, 1, 1],
        "y_pred": [0, 1, 0, 0, 1, 1, 0, 0],
        "sensitive": ["a", "a", "b", "b", "a", "a", "b", "b"],
    })


def test_scores_match_hand_computed_values(predictions):
    s = score_predictions(predictions)
    assert s["accuracy"] == pytest.approx(5 / 8)
    assert s["worst_group_accuracy"] == 0.0
    # selection rate: a 3/4, b 0/4 → DP difference 0.75
    assert s["demographic_parity_difference"] == pytest.approx(0.75)
    # TPR a 1, b 0 (diff 1); FPR a 1/2, b 0 (diff 0.5) → EO difference = max = 1
    assert s["equalized_odds_difference"] == pytest.approx(1.0)
    g = s["by_group"]
    assert g["a"] == {"accuracy": 0.75, "selection_rate": 0.75, "tpr": 1.0, "fpr": 0.5, "count": 4}
    assert g["b"]["selection_rate"] == 0.0 and g["b"]["count"] == 4
    assert g["0|a"]["accuracy"] == 0.5 and g["1|b"]["accuracy"] == 0.0
    # a cell holds one label only: the rate its label leaves undefined is None, not fairlearn's 0
    assert g["0|a"]["tpr"] is None and g["0|a"]["fpr"] == 0.5
    assert g["1|b"]["fpr"] is None and g["1|b"]["tpr"] == 0.0


def test_empty_group_is_named_and_explained():
    with pytest.raises(ValidationError, match=r"1\|b.*worst-group accuracy is undefined"):
        check_groups([0, 0, 1, 1], ["a", "b", "a", "a"], where="--test T")


def test_single_label_test_set_is_refused():
    with pytest.raises(ValidationError, match="only label value 1"):
        check_groups([1, 1], ["a", "b"])


def test_summary_mean_and_sample_std():
    runs = [{"train": "t", "method": "erm", "accuracy": a, "worst_group_accuracy": a / 2,
             "demographic_parity_difference": 0.1, "equalized_odds_difference": 0.2} for a in (0.6, 0.8, 1.0)]
    runs.append({**runs[0], "method": "reweight"})
    rows = summarize(runs)
    assert [(r["method"], r["n_seeds"]) for r in rows] == [("erm", 3), ("reweight", 1)]
    assert rows[0]["accuracy_mean"] == pytest.approx(0.8)
    assert rows[0]["accuracy_std"] == pytest.approx(0.2)  # ddof=1
    assert rows[1]["accuracy_std"] == 0.0
    table = format_summary(rows)
    assert "80.0% ± 20.0%" in table and "reweight" in table
