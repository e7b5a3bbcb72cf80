from __future__ import annotations

import numpy as np
import pandas as pd

from biasaudit.audit import build_attributes, mask_attributes, node_confounding, overlap_confounding
from biasaudit.audit.attributes import choose_k


def _segments(n=120, seed=0):
    rng = np.random.default_rng(seed)
    colour = np.where(np.arange(n) % 2 == 0, "blond", "black")
    return pd.DataFrame({
        "image": [f"{i:03d}" for i in range(n)], "part": "hair",
        "present": np.arange(n) % 10 != 9, "area_frac": rng.uniform(0.05, 0.3, n), "colour": colour,
        "bbox_x0": 0, "bbox_y0": 0, "bbox_x1": rng.integers(10, 60, n), "bbox_y1": 30,
    }), colour


def test_mask_attributes_presence_and_tertiles():
    seg, _ = _segments()
    attrs = mask_attributes(seg)
    absent = attrs[attrs["presence"] == "absent"]
    # an absent part has no colour, size or shape: nothing to say about it
    assert len(absent) == 12 and (absent[["colour", "size", "shape"]] == "").all().all()
    sizes = attrs.loc[attrs["presence"] == "present", "size"].value_counts()
    assert set(sizes.index) == {"small", "medium", "large"} and sizes.max() - sizes.min() <= 1


def test_clusters_found_and_named_after_members_colour():
    seg, colour = _segments()
    rng = np.random.default_rng(1)
    centre = np.where((colour == "blond")[:, None], 3.0, -3.0)
    emb = pd.DataFrame(centre + rng.normal(size=(len(colour), 8)), index=seg["image"])
    emb.loc[~seg["present"].to_numpy()] = np.nan  # absent parts are not embedded
    table, clusters = build_attributes(seg, {"hair": emb}, {"hair": ("hair",)}, seed=0)
    assert len(clusters) == 2
    assert sorted(c.name for c in clusters) == ["black hair", "blond hair"]
    hair = table[(table["node"] == "hair") & (table["presence"] == "present")]
    # every member's cluster name agrees with its own colour
    assert (hair["cluster_name"] == hair["colour"] + " hair").all()
    assert all(len(c.exemplars) == 6 for c in clusters)


def test_choose_k_prefers_true_number_of_blobs():
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(loc=c, scale=0.1, size=(40, 2)) for c in ((0, 0), (5, 5), (0, 5))])
    k, scores = choose_k(x, k_range=(2, 6))
    assert k == 3 and max(scores, key=scores.get) == 3


def test_overlap_confounding_only_for_overlapping_parts():
    seg = pd.DataFrame({
        "image": ["a"] * 3 + ["b"] * 3, "part": ["hair", "hat", "cloth"] * 2, "present": True,
        "bbox_x0": [0, 0, 0] * 2, "bbox_y0": [0, 0, 90] * 2, "bbox_x1": [100, 100, 100] * 2,
        "bbox_y1": [50, 20, 128] * 2,
    })
    parts = overlap_confounding(seg, {"hat"})
    assert set(parts) == {"hair"}
    nodes = node_confounding({"hair+hat": ("hair", "hat"), "cloth": ("cloth",)}, parts)
    assert "hair+hat" in nodes and "cloth" not in nodes
