"""``association``: is a part-level attribute independent of a label or sensitive column?

For every (node, attribute, target): a test of independence on the images where the
attribute is defined (colour, size and shape only where the part is present), values
seen in fewer than ``support_floor`` images left out (their rarity is the
under-representation finder's subject). The test is chi-square where every expected
count is at least 5, else Fisher's exact test (2×2) or a seeded Monte Carlo permutation
p-value (``stats.association_test``): label and sensitive columns are not filtered, so
a 1%-class label makes sparse tables. Effect size Cramér's V with a
bootstrap interval (computed for tests with p < alpha only: BH cannot make the others
discoveries). The finding names the attribute value whose cell departs most from
independence, and lists the deficit cells ("Smiling=0 & blond: 48 seen, 412 expected").
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from biasaudit.audit import stats
from biasaudit.audit.attributes import plain_strings
from biasaudit.audit.finders.base import Finder
from biasaudit.audit.findings import Finding
from biasaudit.audit.inputs import (
    ATTRIBUTE_TITLES,
    DISCOVERED_ATTRIBUTES,
    MASK_ATTRIBUTES,
    AuditInputs,
)


class AssociationFinder(Finder):
    kind = "association"

    def __init__(self, *, attributes: tuple[str, ...] = MASK_ATTRIBUTES + DISCOVERED_ATTRIBUTES,
                 max_cells: int = 6) -> None:
        self.attributes = attributes
        self.max_cells = max_cells

    def find(self, inputs: AuditInputs) -> list[Finding]:
        out: list[Finding] = []
        table = inputs.attributes
        for node, rows in table.groupby("node", sort=True):
            rows = plain_strings(rows).set_index("image")  # one node's rows: strings are cheap here
            for attribute in self.attributes:
                if attribute not in rows.columns:
                    continue
                values = rows[attribute]
                values = values[values.notna() & (values.astype(str) != "")].astype(str)
                for target in inputs.targets:
                    finding = self._test(inputs, str(node), attribute, values, target.column)
                    if finding is not None:
                        out.append(finding)
        return out

    def _test(self, inputs: AuditInputs, node: str, attribute: str, values: pd.Series,
              column: str) -> Finding | None:
        labels = inputs.labels[column].reindex(values.index)
        keep = labels.notna()
        values, labels = values[keep], labels[keep].astype(str)
        if len(values) == 0:
            return None
        counts = values.value_counts()
        supported = counts[counts >= inputs.support_floor(len(values))].index
        mask = values.isin(supported)
        per_image = values[mask]
        values, labels = values[mask].to_numpy(), labels[mask].to_numpy()
        if len(np.unique(values)) < 2 or len(np.unique(labels)) < 2:
            return None
        table = stats.contingency(values, labels)
        obs = table.to_numpy(dtype=float)
        chi2, p, dof, test = stats.association_test(obs, seed=inputs.seed)
        v = stats.cramers_v(obs)
        expected = stats.expected_counts(obs)
        resid = stats.adjusted_residuals(obs)
        # the named value: the cell that departs most from independence upwards
        i, j = np.unravel_index(np.argmax(resid), resid.shape)
        value, label_value = str(table.index[i]), str(table.columns[j])
        title = ATTRIBUTE_TITLES.get(attribute, attribute)
        n_value = obs[i].sum()
        share = obs[i, j] / n_value if n_value else 0.0
        base = obs[:, j].sum() / obs.sum()
        cells = []
        order = np.argsort(resid, axis=None)
        for flat in order[: self.max_cells]:
            r, c = np.unravel_index(flat, resid.shape)
            if resid[r, c] >= -2:
                break
            cells.append({
                "value": str(table.index[r]), "label": f"{column}={table.columns[c]}",
                "observed": int(obs[r, c]), "expected": round(float(expected[r, c]), 1),
                "std_residual": round(float(resid[r, c]), 2),
            })
        evidence = {
            "test": test, "chi2": round(chi2, 3), "dof": dof, "n": int(obs.sum()),
            "cramers_v": round(v, 4),
            "table": {str(k): {str(c): int(x) for c, x in row.items()}
                      for k, row in table.iterrows()},
            "cells": cells,
        }
        if p < stats.ALPHA:
            lo, hi = stats.bootstrap_cramers_v(values, labels, n_boot=inputs.n_boot, seed=inputs.seed)
            evidence["cramers_v_ci95"] = [round(lo, 4), round(hi, 4)]
        summary = (
            f"{node} {title} '{value}' co-occurs with {column}={label_value} in "
            f"{share:.0%} of its {int(n_value)} images (expected {base:.0%})"
        )
        if cells:
            c0 = cells[0]
            summary += f"; {c0['label']} & {c0['value']}: {c0['observed']} seen, {c0['expected']:.0f} expected"
        return Finding(
            kind="association", segment=node, attribute=f"{node} {title}: {value}",
            label=column, effect=v, p_value=p, summary=summary + ".",
            evidence={**evidence, "attribute_kind": attribute, "value": value},
            values=per_image if p < stats.ALPHA else None,  # q >= p: only these can be flagged
        )
