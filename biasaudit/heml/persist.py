"""Saving and loading a fitted HEML: safetensors + JSON only (never pickle).

Layout under the models folder (``WS/models`` in a workspace)::

    heml.json                 estimator parameters, classes, biasaudit version
    tree.json                 the segment tree as a recipe mapping, plus ``nodes``: every
                              node with its parts, children, parent and options
    <node>/model.safetensors  trained weights ("model.*") and loss parameters ("loss.*")
    <node>/config.json        parts, children, options, trunk, sizes, loss history
    <node>/metrics.json       {"precision_at_1", "map_at_r", "n_train", "n_test", ...}
    _baseline/...             the whole-image baseline, when trained

A frozen pretrained trunk (EfficientNet-Lite0, hf:, timm:) is not copied into every
node: its spec is stored and it is reloaded from its package or folder.

>>> heml.save("WS/models"); HEML.load("WS/models")   # doctest: +SKIP
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from biasaudit.core.errors import ValidationError
from biasaudit.core.io import atomic_path, write_json_atomic
from biasaudit.core.workspace import node_dirname

FORMAT_VERSION = 2
#: Versions :func:`load_heml` reads (1: before parents could read their children).
READABLE_VERSIONS = (1, 2)


def clean_json(obj: Any) -> Any:
    """NaN/inf → None, tuples → lists: strict JSON that any reader accepts."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {str(k): clean_json(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [clean_json(v) for v in obj]
    return obj


def _save_node(folder: Path, model, loss, config: dict, metrics: dict) -> None:
    from safetensors.torch import save_file

    tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in model.trainable().state_dict().items()}
    if loss is not None:
        tensors.update({f"loss.{k}": v.detach().cpu().contiguous() for k, v in loss.state_dict().items()})
    folder.mkdir(parents=True, exist_ok=True)
    with atomic_path(folder / "model.safetensors") as tmp:
        save_file(tensors, str(tmp), metadata={"format": "biasaudit-heml-node", "version": str(FORMAT_VERSION)})
    write_json_atomic(folder / "config.json", clean_json(config))
    write_json_atomic(folder / "metrics.json", clean_json(metrics))


def save_heml(heml, path: str | Path) -> Path:
    """Write a fitted :class:`HEML` to ``path`` (see module doc); returns ``path``."""
    from dataclasses import asdict

    from biasaudit import __version__

    path = Path(path)
    params = heml.get_params()
    params["tree"] = "tree.json"
    params["loss"] = params["loss"] if isinstance(params["loss"], str) else type(params["loss"]).__name__
    params["miner"] = params["miner"] if params["miner"] in ("default", None) else type(params["miner"]).__name__
    params["loss_params"] = dict(params["loss_params"] or {})
    params["background"] = list(params["background"])
    for name, node in heml.tree_.nodes.items():
        model = heml.models_[name]
        config = {
            "node": name, "parts": list(node.parts), "children": list(node.children),
            "options": asdict(node.options), "trunk": model.trunk_spec,
            "trunk_trainable": model.trunk_trainable, "embedding_dim": model.embedding_dim,
            "hidden_dim": int(heml.hidden_dim), "loss": params["loss"],
            "embedder": model.embedder_kind, "groups": int(heml.groups), "n_children": model.n_children,
            "dgml_features": model.dgml_features,
            "attention_prior": getattr(model, "attention_prior", None),
            "supervision": heml.supervision, "loss_history": heml.history_.get(name, []),
        }
        _save_node(path / node_dirname(name), model, heml.losses_.get(name), config, heml.metrics_[name])
    if hasattr(heml, "baseline_model_"):
        model = heml.baseline_model_
        _save_node(path / "_baseline", model, None,
                   {"node": "_baseline", "trunk": model.trunk_spec, "trunk_trainable": model.trunk_trainable,
                    "embedding_dim": model.embedding_dim, "hidden_dim": int(heml.hidden_dim),
                    "embedder": model.embedder_kind, "groups": int(heml.groups),
                    "input": "whole image, unmasked"},
                   heml.baseline_metrics_)
    write_json_atomic(path / "tree.json", {**heml.tree_.to_dict(), "nodes": heml.tree_.node_table()})
    write_json_atomic(path / "heml.json", clean_json({
        "format_version": FORMAT_VERSION, "biasaudit_version": __version__, "params": params,
        "classes": [str(c) for c in heml.classes_], "nodes": list(heml.tree_.nodes),
        # how many images the nodes trained on (at most params["max_train_images"])
        "n_train_images": int(len(heml.train_images_)) if hasattr(heml, "train_images_") else None,
    }))
    return path


def load_heml(path: str | Path, *, device: str = "auto"):
    """Read a HEML written by :func:`save_heml`; ready for ``embed`` and ``explain``."""
    import numpy as np
    from safetensors.torch import load_file

    from biasaudit.heml.estimator import HEML
    from biasaudit.heml.losses import LOSSES, build_loss
    from biasaudit.heml.training import resolve_device
    from biasaudit.heml.tree import load_recipe
    from biasaudit.heml.trunks import build_node_model

    path = Path(path)
    meta_path = path / "heml.json"
    if not meta_path.is_file():
        raise ValidationError(
            f"{meta_path} not found: {path} does not hold trained HEML models. Train them first "
            f"(fit_heml_workspace / HEML.fit + save)."
        )
    meta = json.loads(meta_path.read_text("utf-8"))
    if meta.get("format_version") not in READABLE_VERSIONS:
        raise ValidationError(
            f"{meta_path} has format_version {meta.get('format_version')!r}; this biasaudit reads "
            f"{FORMAT_VERSION}. Re-train the models with this version."
        )
    tree = load_recipe(json.loads((path / "tree.json").read_text("utf-8")))
    params = dict(meta["params"])
    params["tree"] = tree
    params["device"] = device
    params["background"] = tuple(params["background"])
    if params["loss"] not in LOSSES:
        params["loss"] = "triplet-margin"  # a custom loss instance cannot be rebuilt from JSON
    if params["miner"] not in ("default", None):
        params["miner"] = "default"
    heml = HEML(**params)
    setup = resolve_device(device)
    heml.tree_ = tree
    heml.classes_ = np.asarray(meta["classes"])
    heml.models_, heml.losses_, heml.metrics_, heml.history_ = {}, {}, {}, {}
    heml.device_ = str(setup.device)
    frozen_trunks: dict = {}
    for name in tree.nodes:
        folder = path / node_dirname(name)
        config = json.loads((folder / "config.json").read_text("utf-8"))
        tensors = load_file(str(folder / "model.safetensors"))
        model = build_node_model(config["trunk"], embedding_dim=config["embedding_dim"],
                                 hidden_dim=config["hidden_dim"], frozen_trunks=frozen_trunks,
                                 embedder=config.get("embedder", "mlp"), groups=config.get("groups", 4),
                                 n_children=config.get("n_children", 0),
                                 # DGML nodes saved before the local map attend over the last one
                                 dgml_features=config.get("dgml_features", "last"))
        if config.get("attention_prior"):  # a DGML parent's prior (biasaudit.heml.dgml)
            model.set_attention_prior(config["attention_prior"])
        model.trainable().load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
        heml.models_[name] = model.to(setup.device).eval()
        loss_state = {k[5:]: v for k, v in tensors.items() if k.startswith("loss.")}
        if loss_state:
            bundle = build_loss(params["loss"], num_classes=max(len(heml.classes_), 1),
                                embedding_dim=config["embedding_dim"], params=params["loss_params"])
            bundle.loss.load_state_dict(loss_state)
            heml.losses_[name] = bundle.loss
        heml.metrics_[name] = json.loads((folder / "metrics.json").read_text("utf-8"))
        heml.history_[name] = config.get("loss_history", [])
    return heml
