"""The record shapes every benchmark of ``python -m reports.bench`` returns: plain dicts, so
they go straight into ``reports/benchmarks.json``.

- a *figure* is a measured quantity over several runs: its values, median, min and max,
  the number of items each run processed (``n``) and the number of runs (``repeat``);
- a *ratio* divides two figures' medians measured in the same run of the runner;
- a *fact* is a result that is not a timing (a pass count, a rate, a quality score).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable


def summary(values: Iterable[float]) -> dict:
    """Median, min and max of ``values`` (NaN-free), with the values themselves.

    >>> summary([3.0, 1.0, 2.0])["median"]
    2.0
    """
    vals = [float(v) for v in values]
    if not vals:
        raise ValueError("summary() needs at least one value; the benchmark produced none")
    return {"median": statistics.median(vals), "min": min(vals), "max": max(vals), "values": vals}


def figure(name: str, values: Iterable[float], *, unit: str, n: int | None, command: str | None = None,
           note: str | None = None) -> dict:
    """One measured quantity over ``len(values)`` runs, each run over ``n`` items.

    >>> f = figure("segment", [10.0, 12.0, 11.0], unit="images/s", n=300)
    >>> (f["repeat"], f["median"], f["min"], f["max"])
    (3, 11.0, 10.0, 12.0)
    """
    s = summary(values)
    out = {"name": name, "unit": unit, "n": n, "repeat": len(s["values"]), **s}
    if command:
        out["command"] = command
    if note:
        out["note"] = note
    return out


def ratio(name: str, numerator: dict, denominator: dict, *, note: str | None = None) -> dict:
    """``numerator``'s median over ``denominator``'s median (two figures of the same run).

    >>> a = figure("a", [4.0], unit="s", n=1)
    >>> b = figure("b", [2.0], unit="s", n=1)
    >>> ratio("a / b", a, b)["value"]
    2.0
    """
    den = denominator["median"]
    value = numerator["median"] / den if den else math.nan
    out = {"name": name, "value": value, "numerator": numerator["name"], "denominator": denominator["name"]}
    if note:
        out["note"] = note
    return out


def fact(name: str, value, *, n: int | None = None, note: str | None = None) -> dict:
    """A result that is not a timing: ``value`` is a number, a string or a bool.

    >>> fact("null scans with a false alarm", "0/20", n=20)["value"]
    '0/20'
    """
    out = {"name": name, "value": value, "n": n}
    if note:
        out["note"] = note
    return out


def fmt(value) -> str:
    """A number short enough for a table cell: 3 significant digits, thousands grouped.

    >>> [fmt(x) for x in (1234.5, 12.345, 0.012345, None, True, "x")]
    ['1,234', '12.3', '0.0123', '–', 'yes', 'x']
    """
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if not math.isfinite(value):
            return "–"
        if abs(value) >= 100:
            return f"{value:,.0f}"
        return f"{value:.3g}"
    return str(value)
