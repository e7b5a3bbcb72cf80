"""Fairness scoring with fairlearn's ``MetricFrame``, used directly.

One run's predictions (``y_true``, ``y_pred`` as 0/1, ``sensitive`` as text) become:

- ``accuracy`` (overall), ``demographic_parity_difference`` and
  ``equalized_odds_difference`` (fairlearn's functions, by the sensitive attribute);
- ``by_group``: accuracy, selection rate, TPR, FPR and count per sensitive value (key
  ``"<value>"``) and per (label × sensitive) cell (key ``"<label>|<value>"``), from two
  MetricFrames; a TPR (FPR) is ``None`` for a group with no positive (negative) images,
  where fairlearn returns 0 for an undefined rate;
- ``worst_group_accuracy``: the smallest accuracy over the (label × sensitive) cells.

>>> import pandas as pd
>>> p = pd.DataFrame({"y_true": [0, 0, 1, 1], "y_pred": [0, 1, 1, 1],
...                   "sensitive": ["a", "b", "a", "b"]})
>>> score_predictions(p)["worst_group_accuracy"]
0.0
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd

from biasaudit.core.errors import ValidationError

#: the per-group metrics, as fairlearn names the functions
GROUP_METRICS = ("accuracy", "selection_rate", "tpr", "fpr", "count")
#: the scalar figures of a run that the summary averages over seeds
RUN_FIGURES = ("accuracy", "worst_group_accuracy", "demographic_parity_difference",
               "equalized_odds_difference")


def _metric_functions() -> dict:
    from fairlearn.metrics import count, false_positive_rate, selection_rate, true_positive_rate
    from sklearn.metrics import accuracy_score

    return {"accuracy": accuracy_score, "selection_rate": selection_rate,
            "tpr": true_positive_rate, "fpr": false_positive_rate, "count": count}


def cell_key(label, value) -> str:
    """The ``by_group`` key of a (label × sensitive) cell.

    >>> cell_key(1, "blond")
    '1|blond'
    """
    return f"{label}|{value}"


def check_groups(y_true: Sequence, sensitive: Sequence, *, where: str = "the test set") -> None:
    """Raise when a (label × sensitive) cell of the observed values is empty: worst-group
    accuracy is undefined then.

    >>> check_groups([0, 1, 0, 1], ["a", "a", "b", "b"])
    """
    frame = pd.DataFrame({"y": np.asarray(y_true), "s": np.asarray(sensitive).astype(str)})
    counts = pd.crosstab(frame["y"], frame["s"])
    empty = [cell_key(y, s) for y in counts.index for s in counts.columns if counts.loc[y, s] == 0]
    if len(counts.index) < 2:
        raise ValidationError(
            f"{where} has only label value {counts.index[0] if len(counts.index) else '(none)'}; "
            f"fairness needs both label values. Use a test set with both."
        )
    if empty:
        raise ValidationError(
            f"{where} has no image in the (label|sensitive) group(s) {', '.join(empty)}, so "
            f"worst-group accuracy is undefined. Use a test set with every label × sensitive "
            f"combination (e.g. `biasaudit synth faces ... --balanced`) or another --sensitive."
        )


def _plain(value):
    if value is None:
        return None
    value = float(value)
    return None if math.isnan(value) else value


def score_predictions(predictions: pd.DataFrame) -> dict:
    """The figures of one run from its predictions table (see the module docstring)."""
    from fairlearn.metrics import (
        MetricFrame,
        demographic_parity_difference,
        equalized_odds_difference,
    )

    y_true = predictions["y_true"].astype(int).to_numpy()
    y_pred = predictions["y_pred"].astype(int).to_numpy()
    sensitive = predictions["sensitive"].astype(str).rename("sensitive").reset_index(drop=True)
    metrics = _metric_functions()
    by_value = MetricFrame(metrics=metrics, y_true=y_true, y_pred=y_pred, sensitive_features=sensitive)
    cells = pd.DataFrame({"label": y_true.astype(str), "sensitive": sensitive})
    by_cell = MetricFrame(metrics=metrics, y_true=y_true, y_pred=y_pred, sensitive_features=cells)
    positives = pd.Series(y_true == 1).groupby(sensitive).sum()
    negatives = pd.Series(y_true == 0).groupby(sensitive).sum()

    by_group: dict[str, dict] = {}
    for value, row in by_value.by_group.iterrows():
        by_group[str(value)] = _group_record(row, has_pos=positives[value] > 0, has_neg=negatives[value] > 0)
    for (label, value), row in by_cell.by_group.iterrows():
        by_group[cell_key(label, value)] = _group_record(row, has_pos=label == "1", has_neg=label == "0")
    return {
        "accuracy": float(by_value.overall["accuracy"]),
        "worst_group_accuracy": float(by_cell.group_min()["accuracy"]),
        "demographic_parity_difference": float(
            demographic_parity_difference(y_true, y_pred, sensitive_features=sensitive)),
        "equalized_odds_difference": float(
            equalized_odds_difference(y_true, y_pred, sensitive_features=sensitive)),
        "by_group": by_group,
    }


def _group_record(row: pd.Series, *, has_pos: bool, has_neg: bool) -> dict:
    return {
        "accuracy": _plain(row["accuracy"]),
        "selection_rate": _plain(row["selection_rate"]),
        "tpr": _plain(row["tpr"]) if has_pos else None,
        "fpr": _plain(row["fpr"]) if has_neg else None,
        "count": int(row["count"]),
    }


def summarize(runs: Sequence[dict]) -> list[dict]:
    """One row per (train, method): ``n_seeds`` and mean / std (ddof=1; 0 for one seed) of
    every figure in :data:`RUN_FIGURES`, in the order the runs first appear.

    >>> summarize([{"train": "a", "method": "erm", "accuracy": 0.8, "worst_group_accuracy": 0.5,
    ...   "demographic_parity_difference": 0.1, "equalized_odds_difference": 0.2}])[0]["accuracy_mean"]
    0.8
    """
    order: dict[tuple[str, str], list[dict]] = {}
    for run in runs:
        order.setdefault((run["train"], run["method"]), []).append(run)
    rows = []
    for (train, method), group in order.items():
        row: dict = {"train": train, "method": method, "n_seeds": len(group)}
        for fig in RUN_FIGURES:
            values = np.array([r[fig] for r in group], dtype=np.float64)
            row[f"{fig}_mean"] = float(values.mean())
            row[f"{fig}_std"] = float(values.std(ddof=1)) if len(values) > 1 else 0.0
        rows.append(row)
    return rows


def format_summary(summary: Sequence[dict]) -> str:
    """The comparison table printed by ``biasaudit evaluate`` (mean ± std over seeds)."""
    head = (f"{'train':<14} {'method':<11} {'seeds':>5}  {'accuracy':>15}  {'worst-group acc':>15}  "
            f"{'DP diff':>13}  {'EO diff':>13}")
    lines = [head, "-" * len(head)]
    def cell(r: dict, fig: str, pct: bool = True) -> str:
        m, s = r[f"{fig}_mean"], r[f"{fig}_std"]
        return f"{m:7.1%} ± {s:5.1%}" if pct else f"{m:5.3f} ± {s:5.3f}"

    for r in summary:
        lines.append(f"{r['train']:<14} {r['method']:<11} {r['n_seeds']:>5}  {cell(r, 'accuracy'):>15}  "
                     f"{cell(r, 'worst_group_accuracy'):>15}  {cell(r, 'demographic_parity_difference', False):>13}  "
                     f"{cell(r, 'equalized_odds_difference', False):>13}")
    return "\n".join(lines)
