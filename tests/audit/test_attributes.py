from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from biasaudit.audit import (
    build_attributes,
    mask_attributes,
    mask_contacts,
    node_confounding,
    occlusion_confounding,
)
from biasaudit.audit.attributes import choose_k, name_clusters
from biasaudit.core.schema import Schema


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


def test_embeddings_are_read_one_node_at_a_time():
    """A scan's embeddings come as a lazy mapping (one DataFrame built per access, from a
    memory map): clustering must not hold every node's frame at once."""
    import gc
    import weakref
    from collections.abc import Mapping

    seg, colour = _segments()
    nodes = [f"n{i}" for i in range(4)]
    alive: list[weakref.ref] = []
    most = 0

    class Lazy(Mapping):
        def __getitem__(self, node):
            nonlocal most
            gc.collect()
            most = max(most, sum(r() is not None for r in alive) + 1)
            frame = pd.DataFrame(np.random.default_rng(len(alive)).normal(size=(len(colour), 4)), index=seg["image"])
            alive.append(weakref.ref(frame))
            return frame

        def __iter__(self):
            return iter(nodes)

        def __len__(self):
            return len(nodes)

    build_attributes(seg.assign(part="n0"), Lazy(), {n: ("hair",) for n in nodes}, k_range=(2, 3), seed=0)
    assert len(alive) == len(nodes) and most <= 2


def test_choose_k_prefers_true_number_of_blobs():
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(loc=c, scale=0.1, size=(40, 2)) for c in ((0, 0), (5, 5), (0, 5))])
    k, scores = choose_k(x, k_range=(2, 6))
    assert k == 3 and max(scores, key=scores.get) == 3


SCHEMA = Schema("toy", {0: "background", 1: "skin", 2: "hair", 3: "hat", 4: "mouth", 5: "cloth"})


def _portrait() -> np.ndarray:
    """Long hair framing a face: the hair's box contains the mouth's box, yet only skin
    touches the mouth; a hat sits on the hair; cloth below, touching nothing causal."""
    lm = np.zeros((64, 64), np.uint8)
    lm[8:56, 8:56] = 2  # long hair: its box holds the whole face
    lm[16:48, 18:46] = 1  # the face (skin) inside the hair
    lm[38:42, 26:38] = 4  # the mouth, surrounded by skin
    lm[2:12, 10:54] = 3  # a hat over the hair's top
    lm[58:64, 10:54] = 5
    return lm


@pytest.mark.parametrize("causal, routed", [
    ({"hat"}, {"hair"}),  # the hat touches the hair: its geometry follows the hat
    ({"mouth"}, {"skin"}),  # the skin surrounds the mouth
    ({"hat", "mouth"}, {"hair", "skin"}),
])
def test_occlusion_follows_pixel_contact_not_boxes(causal, routed):
    lm = _portrait()
    contacts = pd.concat([mask_contacts(lm, SCHEMA, causal=causal, image_id=f"{i}") for i in range(3)])
    parts = occlusion_confounding(contacts, causal)
    # hair's box contains the mouth's box, but no hair pixel touches the mouth: not routed
    assert set(parts) == routed
    assert "cloth" not in parts
    nodes = node_confounding({"hair+hat": ("hair", "hat"), "cloth": ("cloth",)}, parts)
    assert ("hair+hat" in nodes) == ("hair" in routed) and "cloth" not in nodes


def test_occlusion_needs_contact_in_enough_images():
    lm = _portrait()
    apart = lm.copy()
    apart[apart == 3] = 0
    apart[0:2, 10:54] = 3  # a hat floating above the hair, two rows away
    frames = [mask_contacts(lm if i == 0 else apart, SCHEMA, causal={"hat"}, image_id=str(i)) for i in range(10)]
    contacts = pd.concat(frames)
    assert occlusion_confounding(contacts, {"hat"}) == {}  # 1 image in 10 < MIN_SHARE
    assert set(occlusion_confounding(contacts, {"hat"}, min_share=0.1)) == {"hair"}


def test_cluster_names_are_words_never_numbers():
    same = {"colour": "black", "presence": 1.0}
    names = name_clusters({0: {**same, "z": {"lightness": 1.1, "area": 0.1}},
                           1: {**same, "z": {"lightness": -1.0, "area": 0.0}},
                           2: {**same, "z": {"lightness": 0.0, "area": 1.5}},
                           3: {"colour": "", "presence": 0.2, "z": {}}}, "brows")
    assert names == {0: "light brows", 1: "dark brows", 2: "large brows", 3: "mostly no brows"}
    # clusters that differ only by degree are compared, not numbered
    alike = name_clusters({c: {**same, "z": {"lightness": 0.1 * c}} for c in range(3)}, "hair")
    assert sorted(alike.values()) == ["darkest black hair", "lightest black hair", "mid-tone black hair"]
    assert not any("#" in n or "group" in n for n in alike.values())
