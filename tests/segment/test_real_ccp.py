"""The 350 real Clothing Co-Parsing photos (../shared/data/real/ccp; skipped when absent)."""

from __future__ import annotations

import pandas as pd
import pytest

from biasaudit.segment import segment_dataset

pytestmark = [pytest.mark.real_data, pytest.mark.slow]


def test_presence_agrees_with_the_datasets_tags_and_hair_colours_are_plausible(ccp_dir, tmp_path):
    result = segment_dataset(ccp_dir, tmp_path / "ws", segmenter="auto")
    assert result.segmenter == "masks" and result.n_ok == 350 and result.n_failed == 0
    seg = result.segments
    tags = pd.read_csv(ccp_dir / "present_labels.csv", dtype={"image": str})
    present = {row.image: set(str(row.labels_present).split(";")) for row in tags.itertuples()}
    stem = seg["image"].str.rsplit(".", n=1).str[0]
    expected = [part in present[s] for s, part in zip(stem, seg["part"], strict=True)]
    assert (seg["present"].to_numpy() == expected).all()  # every part, sunglasses and hat included
    hair = seg[(seg.part == "hair") & seg.present]["colour"].value_counts(normalize=True)
    # street-fashion photos: mostly dark hair, some blond, hardly any blue/green/purple
    assert hair.get("black", 0) + hair.get("brown", 0) > 0.7
    assert 0.03 < hair.get("blond", 0) < 0.2
    assert sum(hair.get(c, 0) for c in ("blue", "green", "purple", "yellow", "orange")) < 0.02
