"""Check issue 12's per-node rule over `biasaudit heml` workspaces.

Every internal node must retrieve its label at least as well as its best child, less 0.02
(P@1 on the held-out split, `WS/models/<node>/metrics.json`). The rule is read four ways,
because a child and its parent are not always scored on the same rows:

- raw: the issue's rule, parent P@1 ≥ best child P@1 − 0.02;
- lift: the same comparison on P@1 − chance;
- same rows: a child whose part only some images have (`eye_g`, `hat`) is scored on its
  parent's rows (`precision_at_1_all_images`: the images without the part as one tied group);
- restated: where a child's test skill is significant (one-sided 5 %, null s.d. 1.2 ×
  binomial), parent ≥ that child − 0.02; elsewhere, parent not significantly below chance.

    python -m biasaudit heml DATA --out WS1 --label Smiling --seed 0
    python reports/bench/heml_rule.py WS1 WS2 ...          # markdown: counts per run, then misses
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path

TOLERANCE = 0.02
RULES = ("raw", "lift", "same rows", "restated")
#: One-sided 5 % and the null s.d. widened by 1.2 for the ties and the split (session 8).
Z, WIDEN = 1.645, 1.2


@dataclass
class RunCheck:
    """One workspace: internal nodes passing each rule, the root's P@1, and the misses."""

    name: str
    n_internal: int = 0
    passed: dict[str, int] = field(default_factory=lambda: dict.fromkeys(RULES, 0))
    root_p_at_1: float = float("nan")
    misses: list[str] = field(default_factory=list)


def _significant(m: dict, *, below: bool = False) -> bool:
    p, c, n = m["precision_at_1"], m["chance_p_at_1"], m["n_test"]
    if not n or not (math.isfinite(p) and math.isfinite(c)):
        return False
    return ((c - p) if below else (p - c)) > Z * WIDEN * math.sqrt(c * (1 - c) / n)


def check_workspace(ws: str | Path) -> RunCheck:
    """The rule at every internal node of the label-supervised tree saved under ``ws``."""
    models = Path(ws) / "models"
    tree_file = models / "tree.json"
    if not tree_file.is_file():
        raise SystemExit(f"{ws}: expected a `biasaudit heml` workspace with models/tree.json; "
                         f"found none. Train one with `biasaudit heml DATA --out {ws} --label COL`.")
    nodes = json.loads(tree_file.read_text())["nodes"]
    m = {n["name"]: json.loads((models / n["name"] / "metrics.json").read_text()) for n in nodes}
    out = RunCheck(name=Path(ws).name)
    for node in nodes:
        if node["parent"] is None:
            out.root_p_at_1 = m[node["name"]]["precision_at_1"]
        kids = node["children"]
        if not kids:
            continue
        me = m[node["name"]]
        p, chance = me["precision_at_1"], me["chance_p_at_1"]
        best = max(kids, key=lambda k: m[k]["precision_at_1"])
        same = {k: m[k].get("precision_at_1_all_images", m[k]["precision_at_1"]) for k in kids}
        best_same = max(same, key=same.get)
        ok = {
            "raw": p >= m[best]["precision_at_1"] - TOLERANCE,
            "lift": p - chance >= max(m[k]["precision_at_1"] - m[k]["chance_p_at_1"] for k in kids) - TOLERANCE,
            "same rows": p >= same[best_same] - TOLERANCE,
            "restated": (all(p >= m[k]["precision_at_1"] - TOLERANCE for k in kids if _significant(m[k]))
                         and not _significant(me, below=True)),
        }
        out.n_internal += 1
        for rule, passed in ok.items():
            out.passed[rule] += passed
        if not all(ok.values()):
            failed = ", ".join(r for r, v in ok.items() if not v)
            out.misses.append(
                f"{out.name}: `{node['name']}` {p:.3f} (chance {chance:.3f}) against `{best}` "
                f"{m[best]['precision_at_1']:.3f} (chance {m[best]['chance_p_at_1']:.3f}, {m[best]['n_test']} rows); "
                f"same rows: `{best_same}` {same[best_same]:.3f}; misses {failed}")
    return out


def markdown(runs: list[RunCheck]) -> str:
    lines = ["| run | " + " | ".join(RULES) + " | root P@1 |", "| --- |" + " ---: |" * (len(RULES) + 1)]
    for r in runs:
        lines.append(f"| {r.name} | " + " | ".join(str(r.passed[k]) for k in RULES) + f" | {r.root_p_at_1:.3f} |")
    total = sum(r.n_internal for r in runs)
    lines.append(f"| **all {total} internal nodes** | "
                 + " | ".join(f"**{sum(r.passed[k] for r in runs)}**" for k in RULES)
                 + f" | ≥ {min(r.root_p_at_1 for r in runs):.3f} |")
    misses = [m for r in runs for m in r.misses]
    if misses:
        lines += ["", "Misses:", ""] + [f"- {m}" for m in misses]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("workspaces", nargs="+", help="workspaces written by `biasaudit heml`")
    args = ap.parse_args(argv)
    print(markdown([check_workspace(ws) for ws in args.workspaces]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
