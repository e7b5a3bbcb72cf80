"""Stage outputs the report reads, written exactly in the shapes of notes/interfaces.md
(rebalance.json, EVAL/metrics.json, the probe file), so the report's sections can be
tested before and apart from the stages that write them."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd

from biasaudit.data.synth.faces import SynthFacesConfig, write_synthfaces


def write_rebalance(new: Path, data: Path, *, n_samples: int = 4, label_value: str = "0") -> Path:
    """A NEW folder with rebalance.json and a few 'synthesized' images (copies of originals)."""
    (new / "images" / "synthetic").mkdir(parents=True, exist_ok=True)
    (new / "masks" / "synthetic").mkdir(parents=True, exist_ok=True)
    originals = sorted((data / "images").iterdir())
    samples = []
    for k in range(n_samples):
        base, donor = originals[2 * k], originals[2 * k + 1]
        name = f"synthetic/{k:05d}.png"
        shutil.copy(base, new / "images" / name)
        shutil.copy(data / "masks" / base.name, new / "masks" / name)
        samples.append({"image": name, "base": base.name, "donor": donor.name, "attribute_value": "blond",
                        "label_value": label_value, "kind": "new"})
    shutil.copy(data / "schema.json", new / "schema.json")
    doc = {
        "biasaudit_version": "0.1.0", "workspace": "WS", "source": str(data), "out": str(new),
        "settings": {"target": "hair", "label": "Smiling", "attribute": "hair colour", "attribute_kind": "colour",
                     "strategy": "decorrelate", "method": "recombine", "budget": None, "seed": 0},
        "plan": {"cells": [{"attribute_value": "blond", "label_value": "0", "n_before": 15, "n_target": 70,
                            "n_new": 55, "n_edited": 0},
                           {"attribute_value": "black", "label_value": "1", "n_before": 4, "n_target": 25,
                            "n_new": 21, "n_edited": 0}],
                 "n_new_total": 76, "n_edited_total": 0, "budget_binds": False},
        "generated": 76, "edited": 0,
        "rejected": {"area_out_of_range": 3, "wrong_value": 2, "embedding_mismatch": 0, "recombine_failed": 1},
        "before": {"cramers_v": 0.8, "p_value": 1e-30,
                   "cells": [{"attribute_value": "blond", "label_value": "0", "count": 15},
                             {"attribute_value": "blond", "label_value": "1", "count": 131},
                             {"attribute_value": "black", "label_value": "0", "count": 47},
                             {"attribute_value": "black", "label_value": "1", "count": 4}]},
        "after": {"cramers_v": 0.05, "p_value": 0.3,
                  "cells": [{"attribute_value": "blond", "label_value": "0", "count": 70},
                            {"attribute_value": "blond", "label_value": "1", "count": 131},
                            {"attribute_value": "black", "label_value": "0", "count": 47},
                            {"attribute_value": "black", "label_value": "1", "count": 25}],
                  "origin_vs_label": {"chi2": 0.1, "p_value": 0.7},
                  "origin_vs_attribute": {"chi2": 0.2, "p_value": 0.6}},
        "samples": samples,
    }
    (new / "rebalance.json").write_text(json.dumps(doc), "utf-8")
    return new


def write_eval(folder: Path) -> Path:
    """EVAL/metrics.json: two training sets with erm, one baseline, two seeds."""
    folder.mkdir(parents=True, exist_ok=True)
    runs, summary = [], []
    for train, method, base in (("original", "erm", 0.62), ("original", "reweight", 0.7),
                                ("rebalanced", "erm", 0.86)):
        accs = []
        for seed in (0, 1):
            wga = base + 0.02 * seed
            accs.append(wga)
            runs.append({"train": train, "method": method, "seed": seed, "accuracy": 0.9,
                         "worst_group_accuracy": wga, "demographic_parity_difference": 0.3,
                         "equalized_odds_difference": 0.25,
                         "by_group": {"0": {"accuracy": wga, "selection_rate": 0.4, "tpr": 0.8, "fpr": 0.1,
                                            "count": 100},
                                      "1": {"accuracy": 0.95, "selection_rate": 0.6, "tpr": 0.9, "fpr": 0.2,
                                            "count": 100},
                                      "1|0": {"accuracy": wga, "selection_rate": 0.4, "tpr": 0.8, "fpr": 0.1,
                                              "count": 50}}})
        summary.append({"train": train, "method": method, "n_seeds": 2, "accuracy_mean": 0.9, "accuracy_std": 0.01,
                        "worst_group_accuracy_mean": float(np.mean(accs)),
                        "worst_group_accuracy_std": float(np.std(accs, ddof=1)),
                        "demographic_parity_difference_mean": 0.3, "demographic_parity_difference_std": 0.02,
                        "equalized_odds_difference_mean": 0.25, "equalized_odds_difference_std": 0.03})
    doc = {"runs": runs, "summary": summary,
           "settings": {"label": "Smiling", "sensitive": "Blond_Hair", "test": "TEST",
                        "train": {"original": "DATA", "rebalanced": "NEW"}, "epochs": 2, "size": 64,
                        "backbone": "small-cnn", "seeds": 2}}
    (folder / "metrics.json").write_text(json.dumps(doc), "utf-8")
    return folder


def write_probe(path: Path) -> Path:
    doc = {"biasaudit_version": "0.1.0", "model": "EVAL/runs/original-erm-0", "data": "TEST", "n_pairs": 200,
           "parts": [{"part": "hair", "n_pairs": 200, "flip_rate": 0.4, "flip_rate_ci": [0.33, 0.47],
                      "mean_abs_delta": 0.3, "mean_abs_delta_ci": [0.25, 0.35],
                      "by_value": [{"from": "brown", "to": "blond", "n": 50, "flip_rate": 0.6,
                                    "flip_rate_ci": [0.45, 0.73], "mean_delta": 0.4, "mean_delta_ci": [0.3, 0.5]}]},
                     {"part": "mouth", "n_pairs": 200, "flip_rate": 0.25, "flip_rate_ci": [0.19, 0.31],
                      "mean_abs_delta": 0.2, "mean_abs_delta_ci": [0.15, 0.25], "by_value": []}]}
    path.write_text(json.dumps(doc), "utf-8")
    return path


def write_heml_outputs(ws: Path, *, seed: int = 0) -> None:
    """A small trained-looking HEML in WS/models + WS/embeddings (tree, metrics, embeddings),
    so the HEML section can be tested without minutes of training."""
    tree = {"name": "image", "children": [
        {"name": "hair", "parts": ["hair"]},
        {"name": "face", "children": [{"name": "mouth", "parts": ["mouth", "u_lip", "l_lip"]},
                                      {"name": "eyes", "parts": ["l_eye", "r_eye"]}]}]}
    models = ws / "models"
    models.mkdir(parents=True, exist_ok=True)
    (models / "tree.json").write_text(json.dumps({"schema": {"name": "celebamask-hq"}, "tree": tree}), "utf-8")
    ids = pd.read_parquet(ws / "manifest.parquet")["image"].astype(str).tolist()
    rng = np.random.default_rng(seed)
    (ws / "embeddings").mkdir(exist_ok=True)
    pd.DataFrame({"image": ids}).to_parquet(ws / "embeddings" / "index.parquet", index=False)
    for k, node in enumerate(("image", "hair", "face", "mouth", "eyes")):
        (models / node).mkdir(exist_ok=True)
        (models / node / "metrics.json").write_text(json.dumps(
            {"precision_at_1": 0.5 + 0.05 * k, "map_at_r": 0.3 + 0.05 * k, "chance_p_at_1": 0.01,
             "n_test": 60}), "utf-8")
        emb = rng.normal(size=(len(ids), 8)).astype(np.float16)
        np.save(ws / "embeddings" / f"{node}.npy", emb)


def make_dataset(out: Path, *, n: int = 200, seed: int = 0, balanced: bool = False) -> Path:
    config = SynthFacesConfig(n=n, seed=seed, plants=("Smiling:Blond_Hair=0.9",), balanced=balanced)
    return Path(write_synthfaces(out, config))
