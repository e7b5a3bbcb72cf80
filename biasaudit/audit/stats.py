"""The statistics behind every finding, in one place so their choices are visible.

- Association: Pearson chi-square on the attribute × label contingency table (no Yates
  correction, so 2×2 and larger tables are treated alike), effect size Cramér's V,
  adjusted standardized residuals per cell (|r| > 2 ≈ a cell far from independence).
- Multiple testing: Benjamini–Hochberg over every test of a scan.
- Uncertainty: percentile bootstrap confidence intervals over images.
- Severity: effect × confidence, both in [0, 1]; see :func:`severity`.

>>> import numpy as np
>>> t = contingency(np.array(["a", "a", "b", "b"]), np.array([1, 1, 0, 0]))
>>> round(cramers_v(t.values), 3)
1.0
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from scipy import stats as sstats

#: a test is a discovery when its BH q-value is below this (issue 5: q < 0.01)
ALPHA = 0.01
#: effect scale: an effect of EFFECT_SCALE gives 63% of full effect, 2× gives 86%
EFFECT_SCALE = 0.25
#: severity at or above which a finding is "flagged"
FLAG_THRESHOLD = 0.5


def contingency(values: np.ndarray, labels: np.ndarray) -> pd.DataFrame:
    """Counts of attribute value (rows) × label value (columns)."""
    return pd.crosstab(pd.Series(values, name="value"), pd.Series(labels, name="label"))


def chi_square(table: np.ndarray) -> tuple[float, float, int]:
    """(chi2, p-value, degrees of freedom) of an r×c table without continuity correction."""
    table = np.asarray(table, dtype=float)
    if table.shape[0] < 2 or table.shape[1] < 2 or table.sum() == 0:
        return 0.0, 1.0, 0
    res = sstats.chi2_contingency(table, correction=False)
    return float(res.statistic), float(res.pvalue), int(res.dof)


def cramers_v(table: np.ndarray) -> float:
    """Cramér's V = sqrt(chi2 / (n · (min(r, c) − 1))), 0 (independent) to 1 (determined)."""
    table = np.asarray(table, dtype=float)
    n = table.sum()
    k = min(table.shape) - 1
    if n == 0 or k < 1:
        return 0.0
    # the statistic by hand (what chi_square computes, without scipy's per-call overhead of
    # about a millisecond, which dominated the bootstrap's hundreds of resamples)
    exp = expected_counts(table)
    with np.errstate(divide="ignore", invalid="ignore"):
        chi2 = float(np.where(exp > 0, (table - exp) ** 2 / exp, 0.0).sum())
    return float(min(1.0, math.sqrt(chi2 / (n * k))))


def expected_counts(table: np.ndarray) -> np.ndarray:
    table = np.asarray(table, dtype=float)
    n = table.sum()
    return np.outer(table.sum(1), table.sum(0)) / n if n else np.zeros_like(table)


def adjusted_residuals(table: np.ndarray) -> np.ndarray:
    """Adjusted standardized residuals (O − E) / sqrt(E · (1 − row share) · (1 − column share))."""
    table = np.asarray(table, dtype=float)
    n = table.sum()
    exp = expected_counts(table)
    row = table.sum(1, keepdims=True) / n
    col = table.sum(0, keepdims=True) / n
    denom = np.sqrt(exp * (1 - row) * (1 - col))
    with np.errstate(divide="ignore", invalid="ignore"):
        res = np.where(denom > 0, (table - exp) / denom, 0.0)
    return res


def benjamini_hochberg(p_values: np.ndarray) -> np.ndarray:
    """BH-adjusted q-values (same order as the input)."""
    p = np.asarray(p_values, dtype=float)
    if p.size == 0:
        return p
    return sstats.false_discovery_control(np.clip(p, 0, 1), method="bh")


def bootstrap_cramers_v(
    values: np.ndarray, labels: np.ndarray, *, n_boot: int = 200, seed: int = 0, level: float = 0.95,
) -> tuple[float, float]:
    """Percentile bootstrap interval of Cramér's V, resampling images with replacement.

    Tables are counted with one ``bincount`` per resample (codes, not pandas), so a few
    hundred resamples of thousands of images cost milliseconds.
    """
    v_codes, v_uniq = pd.factorize(np.asarray(values), sort=True)
    l_codes, l_uniq = pd.factorize(np.asarray(labels), sort=True)
    shape = (len(v_uniq), len(l_uniq))
    flat = v_codes * shape[1] + l_codes
    rng = np.random.default_rng(seed)
    n = len(flat)
    stats_ = np.empty(n_boot)
    for b in range(n_boot):
        table = np.bincount(flat[rng.integers(0, n, n)], minlength=shape[0] * shape[1]).reshape(shape)
        table = table[table.sum(1) > 0][:, table.sum(0) > 0]
        stats_[b] = cramers_v(table)
    lo, hi = np.quantile(stats_, [(1 - level) / 2, 1 - (1 - level) / 2])
    return float(lo), float(hi)


def effect_score(effect: float) -> float:
    """Map an effect in [0, 1] (Cramér's V, Gini = 2·AUC − 1, shortfall) onto [0, 1).

    1 − exp(−effect / EFFECT_SCALE): V = 0.1 → 0.33, 0.2 → 0.55, 0.3 → 0.70, 0.5 → 0.86,
    0.8 → 0.96. Monotone, so ranking by severity ranks by effect among confident findings.
    """
    return float(1.0 - math.exp(-max(0.0, effect) / EFFECT_SCALE))


def confidence_score(q_value: float, *, alpha: float = ALPHA) -> float:
    """0 when q ≥ alpha (not a discovery); rises with −log10(q) to 1 at q = alpha²."""
    if not (q_value < alpha):
        return 0.0
    q = max(q_value, 1e-300)
    return float(min(1.0, 0.5 + 0.5 * (math.log10(alpha) - math.log10(q)) / -math.log10(alpha)))


def severity(effect: float, q_value: float, *, alpha: float = ALPHA) -> float:
    """severity = effect_score(effect) × confidence_score(q); flagged when >= 0.5.

    >>> severity(0.8, 1e-30) > 0.9, severity(0.8, 0.5)
    (True, 0.0)
    """
    return round(effect_score(effect) * confidence_score(q_value, alpha=alpha), 4)
