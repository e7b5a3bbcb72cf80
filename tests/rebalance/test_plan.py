"""Plans by hand: decorrelate, equalize, the budget, and edits that make origin independent."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from biasaudit.audit.stats import chi_square, cramers_v
from biasaudit.core.errors import ValidationError
from biasaudit.rebalance.plan import make_plan


def _counts(rows, index=("blond", "dark"), columns=("0", "1")):
    return pd.DataFrame(rows, index=list(index), columns=list(columns))


def _table(plan, field):
    values = sorted({c.attribute_value for c in plan.cells})
    labels = sorted({c.label_value for c in plan.cells})
    out = np.zeros((len(values), len(labels)))
    for c in plan.cells:
        out[values.index(c.attribute_value), labels.index(c.label_value)] = getattr(c, field)
    return out


def test_decorrelate_by_hand():
    # label 0: 10 blond / 90 dark; label 1: 60 blond / 40 dark → s_blond = .6, s_dark = .9
    plan = make_plan(_counts([[10, 60], [90, 40]]))
    assert _table(plan, "n_target").tolist() == [[60, 60], [90, 90]]
    assert _table(plan, "n_new").tolist() == [[50, 0], [0, 50]]
    assert cramers_v(_table(plan, "n_target")) == pytest.approx(0.0)
    assert plan.n_new_total == 100 and not plan.budget_binds


def test_decorrelate_edits_make_origin_independent():
    plan = make_plan(_counts([[10, 90], [90, 10]]))
    total = _table(plan, "n_target")
    synthetic = _table(plan, "n_new") + _table(plan, "n_edited")
    share = synthetic / total
    assert share.max() - share.min() < 0.02  # every cell synthetic in the same proportion
    origin = np.stack([synthetic.ravel(), (total - synthetic).ravel()])
    assert chi_square(origin)[1] > 0.5
    assert (_table(plan, "n_edited") <= _table(plan, "n_before")).all()


def test_equalize_by_hand_adds_no_edits():
    plan = make_plan(_counts([[10, 60], [90, 40]]), strategy="equalize")
    assert _table(plan, "n_target").tolist() == [[90, 60], [90, 60]]
    assert plan.n_edited_total == 0


def test_budget_binds_and_fills_cells_in_proportion():
    plan = make_plan(_counts([[10, 60], [90, 20]]), strategy="decorrelate", budget=30)
    new = _table(plan, "n_new")
    assert plan.budget_binds and new.sum() == 30
    # needs were 50 (blond, 0) and 70 (dark, 1): 30 split 12.5 / 17.5 → 12 or 13 / 17 or 18
    assert sorted(new[new > 0].tolist()) in ([12, 18], [13, 17])
    assert "binds" in plan.table()
    assert not make_plan(_counts([[10, 60], [90, 20]]), budget=10_000).budget_binds


def test_bad_arguments():
    with pytest.raises(ValidationError, match="strategy"):
        make_plan(_counts([[1, 2], [3, 4]]), strategy="shuffle")
    with pytest.raises(ValidationError, match="budget"):
        make_plan(_counts([[1, 2], [3, 4]]), budget=-1)
