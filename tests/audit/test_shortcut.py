from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from biasaudit.audit import AuditInputs, Target
from biasaudit.audit.finders.shortcut import SHORTCUT_WEIGHT, ShortcutFinder


def _inputs(emb: dict[str, pd.DataFrame], y: np.ndarray) -> AuditInputs:
    ids = [f"{i:04d}" for i in range(len(y))]
    return AuditInputs(attributes=pd.DataFrame(columns=["image", "node"]),
                       labels=pd.DataFrame({"Wearing_Hat": y}, index=pd.Index(ids, name="image")),
                       targets=[Target("Wearing_Hat")], embeddings=emb, root="image")


def test_probe_effect_is_weighted_gini_and_a_one_label_part_is_skipped():
    rng = np.random.default_rng(0)
    n = 400
    y = np.repeat([0, 1], n // 2)
    ids = pd.Index([f"{i:04d}" for i in range(n)], name="image")
    image = pd.DataFrame(rng.normal(size=(n, 8)) + 3 * y[:, None], index=ids)
    # a hat is only ever seen on images labelled Wearing_Hat=1: nothing to contrast it with
    hat = pd.DataFrame(rng.normal(size=(n, 8)), index=ids)
    hat[y == 0] = np.nan
    found = ShortcutFinder().find(_inputs({"image": image, "hat": hat}, y))
    assert [f.segment for f in found] == ["image"]
    auc = found[0].evidence["auc"]
    assert auc > 0.95
    assert found[0].effect == pytest.approx(SHORTCUT_WEIGHT * (2 * auc - 1), abs=1e-3)
