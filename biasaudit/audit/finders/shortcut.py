"""``shortcut``: does a node's embedding alone predict the label?

A linear probe (ridge regression of the label on the standardized embedding, images
where the part is present), scored by out-of-fold ROC AUC with stratified k-fold
cross-validation. Its p-value is a label-permutation test (as
``sklearn.model_selection.permutation_test_score``, same folds and seed): the whole
cross-validation is re-run on ``n_permutations`` shuffles of the label, and p is the
share of shuffled AUCs at or above the observed one. Pooling out-of-fold scores of five
models into one Mann–Whitney test (what this finder did before) is not a valid test:
the folds' models differ, so its p-values were not calibrated for BH.

Because a ridge probe's out-of-fold scores are linear in the label, all permutations are
scored with one matrix product per fold: 200 permutations cost about what five logistic
fits did, and a default HEML scan of 2,000 images stays fast (reports/benchmarks.md).
Beyond the permutations' resolution (no shuffle reaching the observed AUC) the p-value
is the normal tail of the permutation null (its mean and spread), so a strong shortcut
can still pass BH across hundreds of tests; otherwise it is never below the empirical
share.

The effect is the Gini coefficient 2·AUC − 1. The whole-image (root) embedding's AUC is
reported beside it, so a reader sees how much of the whole image's predictive power this
one part carries. Binary targets only (a multi-class column is skipped).

The effect entering severity is ``SHORTCUT_WEIGHT`` × Gini. A probe says that a part's
appearance predicts the label but not what in it does; when a named attribute (hair colour
'blond') carries the same signal, the named finding must lead the ranking, and an
embedding also re-describes what neighbouring parts share (eyebrows tinted like the hair).
At 3/4 weight an embedding outranks a named association only when it predicts clearly
better (Gini 0.8 against V 0.6); on a balanced 2×2 table Gini equals Cramér's V, so both
effects are on one scale before the weight.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats as sstats

from biasaudit.audit.finders.base import Finder
from biasaudit.audit.findings import Finding
from biasaudit.audit.inputs import AuditInputs
from biasaudit.audit.stats import ALPHA

SHORTCUT_WEIGHT = 0.75


def _auc_columns(scores: np.ndarray, y: np.ndarray) -> np.ndarray:
    """ROC AUC of every column of ``scores`` (n, m) against the matching column of 0/1 ``y``.

    Ordinal ranks (one sort per column, rows contiguous): out-of-fold scores are continuous,
    so ties, which average ranks would split, have probability zero.
    """
    order = np.argsort(np.ascontiguousarray(scores.T), axis=1)
    ranks = np.empty_like(order, dtype=np.float64)
    np.put_along_axis(ranks, order, np.arange(1, scores.shape[0] + 1, dtype=np.float64)[None, :], axis=1)
    ranks = ranks.T
    n1 = y.sum(axis=0)
    n0 = len(y) - n1
    return ((ranks * y).sum(axis=0) - n1 * (n1 + 1) / 2) / (n1 * n0)


def probe_scores(x: np.ndarray, y: np.ndarray, *, folds: int = 5, seed: int = 0,
                 n_permutations: int = 200, ridge: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Out-of-fold ridge-probe scores for ``y`` (n,) and for ``n_permutations`` shuffles
    of it: returns (scores (n, 1 + P), labels (n, 1 + P)), column 0 the real labels."""
    from sklearn.model_selection import StratifiedKFold

    rng = np.random.default_rng(seed)
    ys = np.column_stack([y] + [rng.permutation(y) for _ in range(n_permutations)]).astype(np.float64)
    k = int(min(folds, np.bincount(y).min()))
    scores = np.zeros_like(ys)
    cv = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed)
    x = np.asarray(x, dtype=np.float64)
    for train, test in cv.split(x, y):
        mu, sd = x[train].mean(0), x[train].std(0) + 1e-6
        xt, xs = (x[train] - mu) / sd, (x[test] - mu) / sd
        gram = xt.T @ xt + ridge * len(train) * np.eye(x.shape[1])
        coef = np.linalg.solve(gram, xt.T @ (ys[train] - ys[train].mean(0)))
        scores[test] = xs @ coef
    return scores, ys


def probe_auc(x: np.ndarray, y: np.ndarray, *, folds: int = 5, seed: int = 0,
              n_permutations: int = 200) -> tuple[float, float]:
    """(out-of-fold AUC, permutation p-value) of a linear probe from ``x`` to binary ``y``.

    >>> rng = np.random.default_rng(0); y = np.repeat([0, 1], 50)
    >>> auc, p = probe_auc(rng.normal(size=(100, 4)) + y[:, None], y)
    >>> auc > 0.8 and p < 1e-4
    True
    >>> auc, p = probe_auc(rng.normal(size=(100, 4)), y)
    >>> p > 0.01
    True
    """
    if int(min(folds, np.bincount(y).min())) < 2:
        return 0.5, 1.0
    scores, ys = probe_scores(x, y, folds=folds, seed=seed, n_permutations=n_permutations)
    aucs = _auc_columns(scores, ys)
    return float(aucs[0]), permutation_p(aucs[0], aucs[1:])


def permutation_p(observed: float, null: np.ndarray) -> float:
    """Share of the null at or above ``observed``; beyond the null's resolution, its normal
    tail (never below the empirical share, never 0)."""
    hits = int((null >= observed - 1e-12).sum())
    sd = float(null.std())
    tail = float(sstats.norm.sf(observed, loc=float(null.mean()), scale=sd)) if sd > 0 else 1.0
    if hits:
        return float(max(hits / len(null), tail))
    return float(max(min(tail, 1.0 / (1 + len(null))), 1e-300))


class ShortcutFinder(Finder):
    kind = "shortcut"

    def __init__(self, *, folds: int = 5, max_images: int = 4000, n_permutations: int = 200) -> None:
        self.folds = folds
        self.max_images = max_images
        self.n_permutations = n_permutations

    def find(self, inputs: AuditInputs) -> list[Finding]:
        out: list[Finding] = []
        root_auc: dict[str, float] = {}
        for target in inputs.targets:
            y_all = inputs.labels[target.column]
            if y_all.dropna().nunique() != 2:
                continue
            aucs = {}
            for node in sorted(inputs.embeddings):
                emb = inputs.embeddings[node]
                aucs[node] = self._probe(emb, y_all, inputs.seed)
            if inputs.root in aucs:
                root_auc[target.column] = aucs[inputs.root][0]
            for node, (auc, p, n, values) in aucs.items():
                if n == 0:
                    continue
                whole = root_auc.get(target.column)
                summary = (f"the {node} embedding alone predicts {target.column} with AUC {auc:.2f}"
                           + (f" (whole image: {whole:.2f})" if whole is not None else "")
                           + f", cross-validated on {n} images.")
                out.append(Finding(
                    kind="shortcut", segment=node, attribute=f"{node} appearance (embedding)",
                    label=target.column, effect=SHORTCUT_WEIGHT * max(0.0, 2 * auc - 1), p_value=p,
                    summary=summary,
                    evidence={"auc": round(auc, 4), "whole_image_auc": None if whole is None else round(whole, 4),
                              "n": n, "probe": f"ridge probe, {self.folds}-fold stratified CV",
                              "test": f"label permutation ({self.n_permutations} permutations)",
                              "attribute_kind": "embedding"},
                    values=values if p < ALPHA else None,  # q >= p: only these can be flagged
                ))
        return out

    def _probe(self, emb: pd.DataFrame, y_all: pd.Series, seed: int):
        """(AUC, p, n, per-image score half) of one node's probe; n = 0 when not probed."""
        y = y_all.reindex(emb.index)
        keep = y.notna() & emb.notna().all(axis=1)
        x, y = emb[keep].to_numpy(dtype=np.float32), y[keep]
        if len(y) > self.max_images:  # the probe's cost grows with n; a sample answers as well
            idx = np.random.default_rng(seed).choice(len(y), self.max_images, replace=False)
            x, y = x[np.sort(idx)], y.iloc[np.sort(idx)]
        codes = pd.factorize(y.astype(str), sort=True)[0]
        # a part seen only with one label value (a hat only on Wearing_Hat=1) cannot be probed
        if len(codes) < 10 or len(np.unique(codes)) < 2 or np.bincount(codes).min() < 2:
            return 0.5, 1.0, 0, None
        scores, ys = probe_scores(x, codes, folds=self.folds, seed=seed, n_permutations=self.n_permutations)
        aucs = _auc_columns(scores, ys)
        # the probe's verdict per image (which half of the out-of-fold scores it falls in), so
        # the audit can ask whether this shortcut is only a named attribute seen again
        half = np.where(scores[:, 0] > np.median(scores[:, 0]), "high score", "low score")
        values = pd.Series(half, index=y.index.astype(str))
        return float(aucs[0]), permutation_p(float(aucs[0]), aucs[1:]), len(codes), values
