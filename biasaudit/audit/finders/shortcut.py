"""``shortcut``: does a node's embedding alone predict the label?

A logistic-regression probe on the node's embedding (images where the part is present),
scored by out-of-fold ROC AUC with stratified k-fold cross-validation; the p-value is the
Mann–Whitney U test of the out-of-fold scores (AUC = U / (n₁n₂)). The effect is the Gini
coefficient 2·AUC − 1. The whole-image (root) embedding's AUC is reported beside it, so a
reader sees how much of the whole image's predictive power this one part carries.
Binary targets only (a multi-class column is skipped).

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

SHORTCUT_WEIGHT = 0.75


def probe_auc(x: np.ndarray, y: np.ndarray, *, folds: int = 5, seed: int = 0) -> tuple[float, float]:
    """(out-of-fold AUC, Mann–Whitney p-value) of a linear probe from ``x`` to binary ``y``.

    >>> rng = np.random.default_rng(0); y = np.repeat([0, 1], 50)
    >>> auc, p = probe_auc(rng.normal(size=(100, 4)) + y[:, None], y)
    >>> auc > 0.8 and p < 1e-6
    True
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    k = int(min(folds, np.bincount(y).min()))
    if k < 2:
        return 0.5, 1.0
    probe = make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=500))
    cv = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed)
    scores = cross_val_predict(probe, x, y, cv=cv, method="decision_function")
    pos, neg = scores[y == 1], scores[y == 0]
    u = sstats.mannwhitneyu(pos, neg, alternative="greater")
    return float(u.statistic / (len(pos) * len(neg))), float(u.pvalue)


class ShortcutFinder(Finder):
    kind = "shortcut"

    def __init__(self, *, folds: int = 5, max_images: int = 4000) -> None:
        self.folds = folds
        self.max_images = max_images

    def find(self, inputs: AuditInputs) -> list[Finding]:
        out: list[Finding] = []
        root_auc: dict[str, float] = {}
        for target in inputs.targets:
            y_all = inputs.labels[target.column]
            if y_all.dropna().nunique() != 2:
                continue
            aucs = {}
            for node, emb in sorted(inputs.embeddings.items()):
                aucs[node] = self._probe(emb, y_all, inputs.seed)
            if inputs.root in aucs:
                root_auc[target.column] = aucs[inputs.root][0]
            for node, (auc, p, n) in aucs.items():
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
                              "n": n, "probe": f"logistic regression, {self.folds}-fold stratified CV",
                              "attribute_kind": "embedding"},
                ))
        return out

    def _probe(self, emb: pd.DataFrame, y_all: pd.Series, seed: int) -> tuple[float, float, int]:
        y = y_all.reindex(emb.index)
        keep = y.notna() & emb.notna().all(axis=1)
        x, y = emb[keep].to_numpy(dtype=np.float32), y[keep]
        if len(y) > self.max_images:  # the probe's cost grows with n; a sample answers as well
            idx = np.random.default_rng(seed).choice(len(y), self.max_images, replace=False)
            x, y = x[np.sort(idx)], y.iloc[np.sort(idx)]
        codes = pd.factorize(y.astype(str), sort=True)[0]
        # a part seen only with one label value (a hat only on Wearing_Hat=1) cannot be probed
        if len(codes) < 10 or len(np.unique(codes)) < 2 or np.bincount(codes).min() < 2:
            return 0.5, 1.0, 0
        auc, p = probe_auc(x, codes, folds=self.folds, seed=seed)
        return auc, p, len(codes)
