"""The plan: how many samples each (attribute value × label value) cell needs.

- ``decorrelate`` makes the attribute independent of the label while keeping the label's
  own proportions: with N_l the images of label l and s_a = max over l of the share of
  value a within label l, every cell is raised to t[a, l] = ceil(s_a · N_l). That is the
  smallest independent table that only adds images and keeps the label balance.
- ``equalize`` makes every value equally common within each label: t[a, l] = max over a
  of n[a, l].
- ``budget`` caps the new samples; when it binds, each cell gets its share of the budget
  in proportion to its need (largest remainders).

Synthetic samples must not become a shortcut themselves, so ``decorrelate`` also *edits*
real images of every cell (base and donor from the same cell, the real image replaced by
its edited version) until each cell is synthetic in the same proportion ρ = the largest
synthetic share any cell needs: then ``origin`` is independent of the label and of the
attribute.

>>> import pandas as pd
>>> counts = pd.DataFrame({"0": [10, 90], "1": [90, 10]}, index=["blond", "dark"])
>>> plan = make_plan(counts, strategy="decorrelate")
>>> [(c.attribute_value, c.label_value, c.n_target, c.n_new) for c in plan.cells]
[('blond', '0', 90, 80), ('blond', '1', 90, 0), ('dark', '0', 90, 0), ('dark', '1', 90, 80)]
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

from biasaudit.core.errors import ValidationError

STRATEGIES = ("decorrelate", "equalize")


@dataclass(frozen=True)
class Cell:
    attribute_value: str
    label_value: str
    n_before: int
    n_target: int
    n_new: int
    n_edited: int = 0


@dataclass(frozen=True)
class Plan:
    cells: tuple[Cell, ...]
    strategy: str
    budget: int | None
    budget_binds: bool

    @property
    def n_new_total(self) -> int:
        return sum(c.n_new for c in self.cells)

    @property
    def n_edited_total(self) -> int:
        return sum(c.n_edited for c in self.cells)

    def to_dict(self) -> dict:
        return {"cells": [asdict(c) for c in self.cells], "n_new_total": self.n_new_total,
                "n_edited_total": self.n_edited_total, "budget_binds": self.budget_binds}

    def table(self) -> str:
        """The plan as a text table (printed before generating)."""
        lines = [f"{'value':<16} {'label':<8} {'before':>7} {'target':>7} {'new':>6} {'edited':>7}"]
        for c in self.cells:
            lines.append(f"{c.attribute_value:<16} {c.label_value:<8} {c.n_before:>7d} {c.n_target:>7d} "
                         f"{c.n_new:>6d} {c.n_edited:>7d}")
        lines.append(f"{'total':<25} {sum(c.n_before for c in self.cells):>7d} "
                     f"{sum(c.n_target for c in self.cells):>7d} {self.n_new_total:>6d} {self.n_edited_total:>7d}")
        if self.budget_binds:
            lines.append(f"--budget {self.budget} binds: cells get new samples in proportion to their need.")
        return "\n".join(lines)


def make_plan(counts: pd.DataFrame, *, strategy: str = "decorrelate", budget: int | None = None) -> Plan:
    """A plan from ``counts`` (attribute values as rows, label values as columns)."""
    if strategy not in STRATEGIES:
        raise ValidationError(f"--strategy {strategy}: expected one of {', '.join(STRATEGIES)}.")
    if budget is not None and budget < 0:
        raise ValidationError(f"--budget must be >= 0; got {budget}.")
    n = counts.to_numpy(dtype=float)
    if n.size == 0 or n.sum() == 0:
        raise ValidationError("nothing to plan: no image carries a value of the attribute.")
    if strategy == "decorrelate":
        group = n.sum(axis=0, keepdims=True)
        share = np.divide(n, group, out=np.zeros_like(n), where=group > 0)
        target = np.ceil(share.max(axis=1, keepdims=True) * group - 1e-9)
    else:
        target = np.repeat(n.max(axis=0, keepdims=True), n.shape[0], axis=0)
    target = np.maximum(target, n)
    need = (target - n).astype(int)
    binds = budget is not None and need.sum() > budget
    new = _apportion(need, budget) if binds else need
    total = n + new
    edited = np.zeros_like(need)
    if strategy == "decorrelate" and new.sum() > 0:
        rho = float(np.max(np.divide(new, total, out=np.zeros_like(total), where=total > 0)))
        synthetic = np.rint(rho * total)
        edited = np.clip(synthetic - new, 0, n).astype(int)
    cells = []
    for i, value in enumerate(counts.index):
        for j, label in enumerate(counts.columns):
            cells.append(Cell(str(value), str(label), int(n[i, j]), int(total[i, j]), int(new[i, j]),
                              int(edited[i, j])))
    return Plan(tuple(cells), strategy, budget, bool(binds))


def _apportion(need: np.ndarray, budget: int) -> np.ndarray:
    """Split ``budget`` over cells in proportion to ``need`` (largest remainders, never above need)."""
    total = need.sum()
    exact = need * (budget / total)
    out = np.floor(exact).astype(int)
    left = budget - int(out.sum())
    order = np.argsort(-(exact - out), axis=None, kind="stable")
    for k in order[:left]:
        out.flat[k] += 1
    return np.minimum(out, need)


def cramers_v_of(counts: pd.DataFrame) -> float:
    from biasaudit.audit.stats import cramers_v

    return cramers_v(counts.to_numpy()) if counts.size else 0.0


def chi_square_of(counts: pd.DataFrame) -> tuple[float, float]:
    from biasaudit.audit.stats import chi_square

    chi2, p, _ = chi_square(counts.to_numpy())
    return (chi2, p) if math.isfinite(chi2) else (0.0, 1.0)
