"""The statistics behind every finding, in one place so their choices are visible.

- Association: Pearson chi-square on the attribute × label contingency table (no Yates
  correction, so 2×2 and larger tables are treated alike) where every expected count is
  at least :data:`MIN_EXPECTED`; on sparser tables the chi-square approximation is
  anti-conservative (about twice the nominal rate of p < 0.01 in simulation), so a 2×2
  table gets Fisher's exact test and a larger one a seeded Monte Carlo permutation
  p-value (:func:`association_test`). Effect size Cramér's V, adjusted standardized
  residuals per cell (|r| > 2 ≈ a cell far from independence).
- Proxies: the association of an attribute with a label *within* the strata of another
  attribute, by a permutation test that shuffles labels inside each stratum
  (:func:`stratified_association`).
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
#: a table with an expected count below this is tested exactly / by permutation
MIN_EXPECTED = 5.0
#: Monte Carlo permutations of a sparse table: a first round, and the most it may grow to
#: when the first round finds the observed statistic in the far tail
MC_PERMUTATIONS = (1000, 20000)
#: permuted label codes held at once (permutations × images): permutation tests run in
#: batches of this many cells, so their memory does not grow with the number of images.
#: Batches draw the same random numbers in the same order, so results do not depend on it.
PERMUTATION_CELLS = 500_000


def _batch_rows(n: int, most: int) -> int:
    """Permutations per batch for ``n`` images (at least one, at most ``most``)."""
    return max(1, min(most, PERMUTATION_CELLS // max(n, 1)))


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


def _codes_of(table: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-observation (row, column) codes that reproduce ``table``."""
    r, c = np.nonzero(table)
    counts = table[r, c].astype(int)
    return np.repeat(r, counts), np.repeat(c, counts)


def _chi2_batch(tables: np.ndarray, exp: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(exp > 0, (tables - exp) ** 2 / exp, 0.0).sum(axis=(-2, -1))


def permutation_chi2_p(table: np.ndarray, *, seed: int = 0,
                       n_perm: tuple[int, int] = MC_PERMUTATIONS) -> tuple[float, int]:
    """(Monte Carlo p-value, permutations used) of the chi-square statistic of ``table``.

    Labels are permuted against values (both margins stay fixed, as in Fisher's exact
    test); p = (1 + #{stat* >= stat}) / (1 + B). When 1 to 9 of the first ``n_perm[0]``
    permutations reach the observed statistic (p near the decision), the run grows to
    ``n_perm[1]``; when none reaches it, the p-value is the upper tail of a gamma
    distribution moment-matched to the permutation statistics, capped at 1 / (1 + B)
    (a strong finding on a sparse table must still survive BH across hundreds of tests,
    which 1 / (1 + B) alone could not).

    >>> p, b = permutation_chi2_p(np.array([[3, 0, 1], [0, 4, 0]]), seed=0)
    >>> 0.0 < p < 0.1, b
    (True, 1000)
    """
    table = np.asarray(table, dtype=float)
    shape = table.shape
    rows, cols = _codes_of(table)
    exp = expected_counts(table)
    observed = float(_chi2_batch(table, exp)) - 1e-9
    rng = np.random.default_rng(seed)
    stats_: list[np.ndarray] = []
    done, batch = 0, _batch_rows(len(cols), 500)
    cells = shape[0] * shape[1]
    while True:
        target = n_perm[0] if done < n_perm[0] else n_perm[1]
        while done < target:
            b = min(batch, target - done)
            perm = rng.permuted(np.broadcast_to(cols, (b, len(cols))), axis=1)
            flat = rows * shape[1] + perm + (np.arange(b) * cells)[:, None]
            tables = np.bincount(flat.ravel(), minlength=b * cells).reshape(b, *shape)
            stats_.append(_chi2_batch(tables, exp))
            done += b
        hits = int(sum((s >= observed).sum() for s in stats_))
        # settled: clearly not in the far tail (>= 10 hits), or beyond it (none: the gamma
        # tail below answers); only 1-9 hits, p near the decision, earn more permutations
        if hits >= 10 or hits == 0 or done >= n_perm[1]:
            break
    p = (1 + hits) / (1 + done)
    if hits == 0:
        null = np.concatenate(stats_)
        mean, var = float(null.mean()), float(null.var())
        if mean > 0 and var > 0:
            p = min(p, float(sstats.gamma.sf(observed, a=mean ** 2 / var, scale=var / mean)))
    return float(max(p, 1e-300)), done


def association_test(table: np.ndarray, *, seed: int = 0) -> tuple[float, float, int, str]:
    """(chi2, p-value, dof, test name) for an r×c table, choosing the test by its
    expected counts: chi-square when all are >= :data:`MIN_EXPECTED`, else Fisher's
    exact test (2×2) or a Monte Carlo permutation p-value (:func:`permutation_chi2_p`).

    >>> association_test(np.array([[40, 10], [10, 40]]))[3]
    'chi-square'
    >>> association_test(np.array([[4, 0], [0, 4]]))[3]
    'Fisher exact'
    """
    table = np.asarray(table, dtype=float)
    chi2, p, dof = chi_square(table)
    if dof == 0 or expected_counts(table).min() >= MIN_EXPECTED:
        return chi2, p, dof, "chi-square"
    if table.shape == (2, 2):
        return chi2, float(sstats.fisher_exact(table.astype(int)).pvalue), dof, "Fisher exact"
    p, b = permutation_chi2_p(table, seed=seed)
    return chi2, p, dof, f"Monte Carlo permutation ({b} permutations)"


def stratified_association(values: np.ndarray, labels: np.ndarray, strata: np.ndarray, *,
                           n_perm: int = 200, seed: int = 0) -> tuple[float, float]:
    """(conditional Cramér's V, permutation p-value) of values × labels within strata.

    The statistic is the sum over strata of each stratum's chi-square; labels are
    shuffled inside each stratum, so whatever the strata explain stays in every
    permutation. Beyond the permutations' resolution (none reaches the observed
    statistic) p is the tail of a gamma distribution moment-matched to the permutation
    statistics, as in :func:`permutation_chi2_p`. V = sqrt(stat / (n · (min(r, c) − 1))) on the same scale as Cramér's V:
    an attribute that only re-describes the strata (eyebrows tinted like the hair,
    strata = hair colour) has V near 0 and a large p.

    >>> rng = np.random.default_rng(0); hair = rng.integers(0, 2, 400)
    >>> label = (rng.random(400) < 0.1 + 0.8 * hair).astype(int)
    >>> brows = hair.copy()  # a proxy: determined by the hair
    >>> v, p = stratified_association(brows, label, hair)
    >>> v < 0.05 and p > 0.05
    True
    """
    v_codes, v_uniq = pd.factorize(np.asarray(values), sort=True)
    l_codes, l_uniq = pd.factorize(np.asarray(labels), sort=True)
    s_codes, _ = pd.factorize(np.asarray(strata), sort=True)
    n, r, c = len(v_codes), len(v_uniq), len(l_uniq)
    k = min(r, c) - 1
    if n == 0 or k < 1:
        return 0.0, 1.0
    n_strata = int(s_codes.max()) + 1
    cells = r * c

    def stat(lab: np.ndarray) -> np.ndarray:  # lab: (b, n) label codes
        b = lab.shape[0]
        flat = (s_codes * cells + v_codes * c)[None, :] + lab + (np.arange(b) * n_strata * cells)[:, None]
        t = np.bincount(flat.ravel(), minlength=b * n_strata * cells).reshape(b, n_strata, r, c)
        tot = t.sum(axis=(2, 3), keepdims=True).astype(float)
        with np.errstate(divide="ignore", invalid="ignore"):
            exp = np.where(tot > 0, t.sum(3, keepdims=True) * t.sum(2, keepdims=True) / tot, 0.0)
        return _chi2_batch(t, exp).sum(axis=1)

    observed = float(stat(l_codes[None, :])[0])
    rng = np.random.default_rng(seed)
    # a shuffle inside strata: sort by (stratum, random key) and hand out that stratum's labels
    order = np.argsort(s_codes, kind="stable")
    nulls = []
    step = _batch_rows(n, n_perm)
    for lo in range(0, n_perm, step):
        b = min(step, n_perm - lo)
        keys = s_codes[order][None, :] + rng.random((b, n))
        shuffled = np.empty((b, n), dtype=l_codes.dtype)
        shuffled[:, order] = l_codes[order][np.argsort(keys, axis=1)]
        nulls.append(stat(shuffled))
    null = np.concatenate(nulls)
    hits = int((null >= observed - 1e-9).sum())
    p = (1 + hits) / (1 + n_perm)
    if hits == 0:  # beyond the permutations' resolution: a moment-matched gamma tail
        mean, var = float(null.mean()), float(null.var())
        if mean > 0 and var > 0:
            p = min(p, float(sstats.gamma.sf(observed, a=mean ** 2 / var, scale=var / mean)))
    return float(min(1.0, math.sqrt(max(observed, 0.0) / (n * k)))), float(p)


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
