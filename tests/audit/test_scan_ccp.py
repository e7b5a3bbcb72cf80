"""Issue 5 on real photos: Clothing Co-Parsing (``../shared/data/real/ccp``, 350 photos).

In the full set sunglasses go with a dress about as often as without one (36 of 98
dresses, 69 of 252 others: 37 % vs 27 %). A subset of 150 that keeps every
dress-and-sunglasses photo and few of the mixed cells makes P(sunglasses | dress) = 36/50
= 72 % against 10/100 = 10 % (φ ≈ 0.63): scanning it with ``--label dress --causal dress``
must flag ``sunglasses``; a random subset of the same size must not.

Subsets are folders in the native layout under tmp_path whose ``images/`` and ``masks/``
entries are hard links to the CCP photos and label maps, or copies where the temporary
folder is on another file system (nothing is copied into the repo), with ``labels.csv``
from the CCP adapter's ``present_labels.csv`` columns. Not symlinks: a dataset's symlink
out of DATA is never followed (issue 8), it is a manifest error.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from biasaudit.core.schema import get_schema
from biasaudit.data import open_dataset

pytestmark = pytest.mark.real_data

M = 150
# (dress, sunglasses) → how many photos of that cell the biased subset takes
BIASED_CELLS = {(1, 1): 36, (1, 0): 14, (0, 1): 10, (0, 0): 90}


@pytest.fixture(scope="module")
def ccp_labels(ccp_dir) -> pd.DataFrame:
    labels = open_dataset(ccp_dir).labels
    assert len(labels) == 350 and {"dress", "sunglasses"} <= set(labels.columns)
    assert set(np.unique(labels[["dress", "sunglasses"]])) <= {0, 1}
    return labels


def write_subset(ccp_dir: Path, labels: pd.DataFrame, ids: list[str], out: Path) -> Path:
    """A native-layout dataset of ``ids`` whose files are hard links into ``ccp_dir`` (or copies)."""
    (out / "images").mkdir(parents=True)
    (out / "masks").mkdir()
    for image_id in ids:
        stem = Path(image_id).stem
        _link(ccp_dir / "photos" / image_id, out / "images" / image_id)
        _link(ccp_dir / "labels_png" / f"{stem}.png", out / "masks" / f"{stem}.png")
    labels.loc[ids].rename_axis("image").reset_index().to_csv(out / "labels.csv", index=False)
    (out / "schema.json").write_text(json.dumps(get_schema("ccp").to_dict()), "utf-8")
    return out


def _link(source: Path, target: Path) -> None:
    try:
        os.link(source.resolve(), target)
    except OSError:  # another file system: a copy (the photos are small)
        shutil.copyfile(source, target)


def biased_ids(labels: pd.DataFrame, *, seed: int = 0) -> list[str]:
    rng = np.random.default_rng(seed)
    ids = []
    for (dress, sun), k in BIASED_CELLS.items():
        cell = labels.index[(labels["dress"] == dress) & (labels["sunglasses"] == sun)].tolist()
        ids += sorted(rng.choice(cell, k, replace=False).tolist())
    return sorted(ids)


def random_ids(labels: pd.DataFrame, *, seed: int = 0) -> list[str]:
    return sorted(np.random.default_rng(seed).choice(labels.index.to_numpy(), M, replace=False).tolist())


def _scan(data: Path, ws: Path, *, heml: bool = False):
    from biasaudit.audit.scan import run_scan

    return run_scan(data, ws, labels=["dress"], causal=["dress"], seed=0, heml=heml, device="cpu")


def _sunglasses(findings, *, flagged: bool):
    return [f for f in findings if f.segment == "sunglasses" and f.label == "dress"
            and (f.flagged or not flagged)]


def test_biased_subset_is_what_the_test_claims(ccp_labels):
    sub = ccp_labels.loc[biased_ids(ccp_labels)]
    assert len(sub) == M
    on = sub.loc[sub.dress == 1, "sunglasses"].mean()
    off = sub.loc[sub.dress == 0, "sunglasses"].mean()
    assert (on, off) == (pytest.approx(0.72), pytest.approx(0.10))
    full_on = ccp_labels.loc[ccp_labels.dress == 1, "sunglasses"].mean()
    full_off = ccp_labels.loc[ccp_labels.dress == 0, "sunglasses"].mean()
    assert on - off > 4 * (full_on - full_off)  # "far more than in the full set"


def test_scan_flags_sunglasses_on_the_biased_subset_only(ccp_dir, ccp_labels, tmp_path):
    from biasaudit.data.testing import tree_hashes

    biased = write_subset(ccp_dir, ccp_labels, biased_ids(ccp_labels), tmp_path / "biased")
    before = tree_hashes(biased)
    result = _scan(biased, tmp_path / "ws-biased")
    assert result.n_images == M and result.n_errors == 0
    hits = _sunglasses(result.findings, flagged=True)
    assert hits, [f"{f.segment} {f.attribute} {f.severity}" for f in result.flagged]
    kinds = [hits[0].evidence.get("attribute_kind")] + [r["attribute"] for r in hits[0].evidence.get("related", [])]
    assert "presence" in " ".join(str(k) for k in kinds)
    # the declared causal part is expected evidence, not a finding
    assert not any(f.segment == "dress" for f in result.findings)

    random = write_subset(ccp_dir, ccp_labels, random_ids(ccp_labels), tmp_path / "random")
    control = _scan(random, tmp_path / "ws-random")
    assert control.n_images == M
    assert _sunglasses(control.findings, flagged=True) == []
    # the input folders were only read
    assert sorted(p.name for p in biased.iterdir()) == ["images", "labels.csv", "masks", "schema.json"]
    assert tree_hashes(biased) == before


@pytest.mark.slow
def test_scan_with_heml_flags_sunglasses_on_the_biased_subset(ccp_dir, ccp_labels, tmp_path):
    biased = write_subset(ccp_dir, ccp_labels, biased_ids(ccp_labels), tmp_path / "biased")
    result = _scan(biased, tmp_path / "ws", heml=True)
    assert _sunglasses(result.findings, flagged=True)
