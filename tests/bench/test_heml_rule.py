"""`reports/bench/heml_rule.py` reads issue 12's per-node rule from `biasaudit heml`
workspaces: a parent of a part only some images have passes on the same rows while the raw
rule counts it as a miss, and a real loss fails every reading."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))  # `reports` lives beside the package, not inside it

from reports.bench.heml_rule import check_workspace, main, markdown  # noqa: E402


def _metrics(p: float, chance: float = 0.5, n: int = 600, **extra) -> dict:
    return {"precision_at_1": p, "chance_p_at_1": chance, "n_test": n, **extra}


def _workspace(root: Path, metrics: dict[str, dict]) -> Path:
    nodes = [
        {"name": "image", "children": ["head", "hat"], "parent": None},
        {"name": "head", "children": [], "parent": "image"},
        {"name": "hat", "children": [], "parent": "image"},
    ]
    (root / "models").mkdir(parents=True)
    (root / "models" / "tree.json").write_text(json.dumps({"nodes": nodes}))
    for name, m in metrics.items():
        (root / "models" / name).mkdir()
        (root / "models" / name / "metrics.json").write_text(json.dumps(m))
    return root


def test_a_subset_child_is_compared_on_its_parents_rows(tmp_path):
    # `hat` retrieves well among its 100 wearers, but over every image it is at chance
    ws = _workspace(tmp_path / "subset", {
        "image": _metrics(0.51), "head": _metrics(0.50),
        "hat": _metrics(0.70, n=100, precision_at_1_all_images=0.52),
    })
    r = check_workspace(ws)
    assert r.n_internal == 1 and r.root_p_at_1 == 0.51
    assert r.passed == {"raw": 0, "lift": 0, "same rows": 1, "restated": 0}
    assert "`image` 0.510" in r.misses[0] and "misses raw, lift, restated" in r.misses[0]


def test_a_real_loss_fails_every_reading_and_a_pass_none(tmp_path):
    lost = check_workspace(_workspace(tmp_path / "lost", {
        "image": _metrics(0.60), "head": _metrics(0.90), "hat": _metrics(0.50)}))
    assert lost.passed == {"raw": 0, "lift": 0, "same rows": 0, "restated": 0}
    kept = check_workspace(_workspace(tmp_path / "kept", {
        "image": _metrics(0.89), "head": _metrics(0.90), "hat": _metrics(0.50)}))
    assert kept.passed == {"raw": 1, "lift": 1, "same rows": 1, "restated": 1} and not kept.misses
    table = markdown([lost, kept])
    assert "| **all 2 internal nodes** | **1** | **1** | **1** | **1** | ≥ 0.600 |" in table


def test_a_folder_without_a_tree_is_named(tmp_path, capsys):
    with pytest.raises(SystemExit, match="expected a `biasaudit heml` workspace with models/tree.json"):
        main([str(tmp_path)])
