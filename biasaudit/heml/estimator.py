"""HEML: bottom-up metric learning over a segment tree (DESIGN.md §5), scikit-learn style.

``fit`` trains one node model per tree node, leaves first. Each parent starts from the
weighted average of its two children's weights (``init_weights``: ``equal``, ``area`` =
the children's mean part area, or ``p_at_1`` = their validation Precision@1) and is then
fine-tuned on its own input. Every node is scored (P@1, MAP@R) on one held-out split
shared by all nodes.

Parents read their children (``parent_inputs="children"``, the default for label
supervision): a parent's embedding is a learned linear map of [its own pixels'
embedding, child 1's embedding, child 2's embedding], started as the weighted sum of the
blocks (own ``OWN_SHARE``, children the rest by ``fusion_init``). Averaging weights alone
let a parent start from a blend dominated by large label-free parts and 3 epochs at 32 px
could not find a 20 px mouth again (root P@1 at chance, reports/benchmarks.md); reading
the children's embeddings carries their signal to the root by construction, and the
fine-tuning decides how much each child and the node's own pixels count.

Under label supervision a share of the training split (``VAL_SHARE``) is held out of
every node's training as validation rows. The tree is built on them, never on the test
split: children's skill for a parent's start, and what a parent keeps (``HEML._validate``):
the fine-tuned parent where two or more children carry the label, else one child's
embedding carried forward unchanged, unless another candidate retrieves significantly
better, so a parent does not drop what a child measures, nor change what it measures
on noise. A validation image is scored by its nearest neighbour among the other
validation rows and among the node's training rows, averaged
(:func:`~biasaudit.heml.quality.validation_hits`). A child whose part some images lack
is read as its parent sees it, over every validation image, so a part whose presence
tells the label (``hat`` for Wearing_Hat) counts as carrying it
(:func:`~biasaudit.heml.parents.as_parent_reads_it`). A parent's own pixels' pathway also
learns the metric (:mod:`biasaudit.heml.parents`), so each node keeps a model of its own
segment.

>>> heml = HEML(tree=my_tree, loss="triplet-margin")          # doctest: +SKIP
>>> heml.fit(images, label_maps, y=smiling)                  # doctest: +SKIP
>>> heml.metrics_["mouth"]["precision_at_1"]                  # doctest: +SKIP
0.97
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from biasaudit.core.engine import current_engine
from biasaudit.core.errors import NotFittedError, ValidationError
from biasaudit.core.io import kill_point
from biasaudit.core.threads import keep_freed_heap
from biasaudit.heml.inputs import NodeInputs, check_arrays, node_inputs, whole_image_inputs
from biasaudit.heml.levels import LevelPlan, check_n_jobs, fit_in_workers, plan_level
from biasaudit.heml.losses import LOSSES, LossBundle, build_loss
from biasaudit.heml.quality import retrieval_metrics
from biasaudit.heml.training import (
    DeviceSetup,
    Stopwatch,
    resolve_device,
    run_batched,
    to_device,
    train_modules,
)
from biasaudit.heml.tree import SegmentTree, load_recipe
from biasaudit.heml.trunks import NodeModel, average_state_dicts, build_node_model

SUPERVISIONS = ("label", "self")
INIT_WEIGHTS = ("auto", "skill", "equal", "area", "p_at_1")
FUSION_INITS = ("skill", "area", "equal")
PARENT_INPUTS = ("auto", "children", "pixels")
BASELINE = "_baseline"
#: Share of a parent's starting embedding given to its own pixels (the children split the
#: rest by ``fusion_init``): enough for its own pathway to receive gradient from the
#: first step, small enough that the start measures what the children measured.
OWN_SHARE = 0.25
#: Share of the training split held out as validation rows under label supervision (see
#: ``HEML._validate``); below ``MIN_VAL_ROWS`` rows no validation split is made.
VAL_SHARE = 0.15
MIN_VAL_ROWS = 8


@dataclass(frozen=True)
class HEMLConfig:
    """Every HEML option with its default (``HEML(**asdict(config))`` builds the estimator).

    - ``tree``: a :class:`SegmentTree`, a built-in schema name or a recipe path/mapping.
    - ``trunk``: force one trunk spec on every node (None: each node's recipe value).
    - ``loss``: one of ``LOSSES`` or a pml loss instance; ``miner``: ``"default"``
      (TripletMarginMiner for triplet-margin), None or a pml miner instance.
    - ``supervision``: ``label`` (metric learning on ``y``) or ``self`` (two augmented
      views of each node input are positives, NTXent via pml's SelfSupervisedLoss).
    - ``init_weights``: how a parent averages its children's weights: ``skill`` (each
      child's validation P@1 above chance; ``area`` when no child has any), ``equal``,
      ``area`` (mean part area), ``p_at_1`` (validation P@1), or ``auto``: ``skill`` for
      label supervision, ``area`` for ``self``. By area, a parent's pixels start as a model
      of its largest child (the skin, the hair), whatever carries the label; by skill they
      start from the children that learned it, and a DGML parent's queries look where
      theirs looked.
    - ``embedder``: force ``mlp`` or ``dgml`` on every node (None: each node's recipe
      value); ``groups``: DGML's number of groups (learnable queries).
    - ``parent_inputs``: ``children`` (a parent also reads its children's embeddings),
      ``pixels`` (its own pixels only, the paper's literal reading) or ``auto``
      (``children`` for label supervision; ``pixels`` for ``self``, where two views of
      one image share their children's embeddings and the task would become trivial).
    - ``fusion_init``: how a parent's fusion weighs its children at the start: ``skill``
      (each child's validation P@1 above chance; equal when none has any), ``area`` (the
      ``init_weights`` of the weight average) or ``equal``. A concatenation's similarity
      scales with the square of the weights, so ``area`` lets a mouth of 1 % of the pixels
      count 10⁻⁴ as much as the hair: the start would be at chance for a mouth label.
    - ``concurrent``: train all nodes of one tree level at once (stacked parameters).
    - ``device``: ``auto`` (CUDA with bf16 autocast and channels_last when present) | ``cpu`` | ``cuda``.
    - ``epochs_scale`` / ``resolution_scale``: multiply every node's recipe epochs /
      input resolution (the recipes are sized for a 2-core CPU; GPU users turn them up).
    - ``augment``: also augment label-supervised batches (``self`` always augments).
    - ``background``: RGB that replaces pixels outside a node's parts.
    - ``baseline``: also train one whole-image model with the same compute budget.
    - ``max_train_images``: train on at most this many images, a deterministic sample
      (:func:`train_sample`, stratified by the label under ``label`` supervision), so
      training memory does not grow with the dataset; every image is still embedded.
      None: train on all.
    - ``n_jobs``: worker processes that train the nodes of one tree level side by side on
      the CPU (:mod:`biasaudit.heml.levels`). None: one per CPU when the fit has at least
      256 images; -1: one per CPU; 1: every node in this process.
    """

    tree: Any = "celebamask-hq"
    trunk: str | None = None
    embedder: str | None = None
    groups: int = 4
    parent_inputs: str = "auto"
    fusion_init: str = "skill"
    loss: Any = "triplet-margin"
    miner: Any = "default"
    loss_params: Mapping[str, Any] | None = None
    supervision: str = "label"
    embedding_dim: int = 128
    hidden_dim: int = 256
    init_weights: str = "auto"
    concurrent: bool = False
    device: str = "auto"
    batch_size: int = 64
    lr: float = 1e-3
    loss_lr: float = 1e-2
    test_size: float = 0.3
    epochs_scale: float = 1.0
    resolution_scale: float = 1.0
    augment: bool | None = None
    background: tuple[int, int, int] = (0, 0, 0)
    baseline: bool = False
    seed: int = 0
    max_train_images: int | None = 2000
    n_jobs: int | None = None


class HEML:
    """Hierarchical explainable metric learning over a segment tree.

    Parameters are those of :class:`HEMLConfig` (keyword-only). Fitted state:
    ``tree_``, ``models_`` (node → :class:`NodeModel`), ``losses_`` (node → loss module,
    holding proxies where the loss has them), ``metrics_`` (node → dict), ``classes_``,
    ``history_`` (node → loss per epoch), ``train_images_`` (the rows of the given images
    trained on, see ``max_train_images``), ``split_`` (``train``/``test`` row indices into
    ``train_images_``) and, with ``baseline=True``, ``baseline_model_`` and
    ``baseline_metrics_``.

    >>> heml = HEML(tree="celebamask-hq", supervision="self", device="cpu")
    >>> heml.get_params()["supervision"]
    'self'
    """

    def __init__(self, **params: Any) -> None:
        unknown = sorted(set(params) - set(HEMLConfig.__dataclass_fields__))
        if unknown:
            raise ValidationError(
                f"HEML got unknown parameter(s) {unknown}; expected some of "
                f"{', '.join(HEMLConfig.__dataclass_fields__)}."
            )
        for name, field in HEMLConfig.__dataclass_fields__.items():
            setattr(self, name, params.get(name, field.default))

    def get_params(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in HEMLConfig.__dataclass_fields__}

    def set_params(self, **params: Any) -> HEML:
        unknown = sorted(set(params) - set(HEMLConfig.__dataclass_fields__))
        if unknown:
            raise ValidationError(f"HEML got unknown parameter(s) {unknown}.")
        for name, value in params.items():
            setattr(self, name, value)
        return self

    def config(self) -> HEMLConfig:
        return HEMLConfig(**self.get_params())

    # ------------------------------------------------------------------ fit
    def fit(self, images: np.ndarray, label_maps: np.ndarray, y: Any = None) -> HEML:
        """Train every node bottom-up on ``images`` (N×H×W×3 uint8) with ``label_maps``
        (N×H×W class ids) and, for ``supervision="label"``, labels ``y`` (length N; rows
        whose label is missing are ignored). With N above ``max_train_images`` only a
        sample of the images is trained on (crops are built for those only); callers that
        load images from disk load just :func:`train_sample`'s rows. Returns ``self``."""
        images, label_maps = check_arrays(images, label_maps)
        self._check_params()
        self.train_images_ = train_sample(len(images), y=y if self.supervision == "label" else None,
                                          max_images=self.max_train_images, seed=self.seed)
        if len(self.train_images_) < len(images):
            images, label_maps = images[self.train_images_], label_maps[self.train_images_]
            y = _take(y, self.train_images_)
        tree = self.tree if isinstance(self.tree, SegmentTree) else load_recipe(self.tree)
        if self.trunk is not None:
            tree = tree.with_options(trunk=self.trunk)
        if self.embedder is not None:
            tree = tree.with_options(embedder=self.embedder)
        if self.concurrent and any(n.options.embedder == "dgml" for n in tree.nodes.values()):
            raise ValidationError(
                "concurrent=True stacks a level's models, but DGML's diversity loss needs each node's "
                "own forward pass; train DGML nodes one at a time (drop --concurrent)."
            )
        if float(self.resolution_scale) != 1.0:
            tree = tree.scaled_resolution(float(self.resolution_scale))
        setup = resolve_device(self.device)
        keep_freed_heap()  # every training step frees what the next allocates (biasaudit.core.threads)
        n = len(images)
        y_codes, usable, classes = self._encode_labels(y, n)
        train_idx, test_idx = self._split(y_codes, usable)
        self.tree_ = tree
        self.classes_ = classes
        self.split_ = {"train": train_idx, "test": test_idx}
        self.models_: dict[str, NodeModel] = {}
        self.losses_: dict[str, nn.Module] = {}
        self.metrics_: dict[str, dict[str, Any]] = {}
        self.history_: dict[str, list[float]] = {}
        self.area_: dict[str, float] = {}
        self._frozen_trunks: dict[str, nn.Module] = {}
        self._all_emb: dict[str, torch.Tensor] = {}
        self.device_ = str(setup.device)
        train_mask = np.zeros(n, bool)
        train_mask[train_idx] = True
        test_mask = np.zeros(n, bool)
        test_mask[test_idx] = True

        ray_levels = None
        if current_engine().is_ray:  # `use_engine("ray")`: a level's nodes train as parallel Ray tasks
            from biasaudit.heml.ray_engine import RayLevels

            ray_levels = RayLevels(self, images, label_maps, y_codes, train_mask, test_mask)
        fit_args = (images, label_maps, y_codes, train_mask, test_mask, setup)
        levels = []  # (groups, plan), bottom-up
        for level in tree.levels():
            groups = [[name] for name in level]
            if self.concurrent:
                keyed: dict[tuple, list[str]] = {}
                for name in level:
                    o = tree.nodes[name].options
                    keyed.setdefault((o.trunk, o.resolution, o.epochs), []).append(name)
                groups = list(keyed.values())
            levels.append((groups, self._level_plan(len(groups), n)))
        steps = [(group, plan) for groups, plan in levels for group in groups]
        if ray_levels is None and any(plan.workers > 1 for _, plan in levels):
            fit_in_workers(self, steps, fit_args, on_group=lambda _g: kill_point("heml-node"))
        else:
            for groups, plan in levels:
                if ray_levels is not None and len(groups) > 1:
                    ray_levels.fit(groups, threads=plan.threads)
                    continue
                for group in groups:
                    self._fit_group(group, *fit_args)
                    kill_point("heml-node")  # a test stops a scan here to check that it resumes
        if self.baseline:
            self._fit_baseline(images, y_codes, train_mask, test_mask, setup)
        del self._all_emb
        return self

    def _level_plan(self, n_groups: int, n_images: int) -> LevelPlan:
        """Worker processes for a level of ``n_groups`` (:mod:`biasaudit.heml.levels`)."""
        return plan_level(n_groups=n_groups, n_images=n_images, n_jobs=self.n_jobs,
                          threads=torch.get_num_threads(), device=torch.device(self.device_).type)

    def reads_children(self) -> bool:
        """Whether parents read their children's embeddings (see ``parent_inputs``)."""
        if self.parent_inputs == "auto":
            return self.supervision == "label"
        return self.parent_inputs == "children"

    def _check_params(self) -> None:
        if self.supervision not in SUPERVISIONS:
            raise ValidationError(
                f"The 'supervision' parameter must be one of {SUPERVISIONS}. Got {self.supervision!r} instead."
            )
        if self.init_weights not in INIT_WEIGHTS:
            raise ValidationError(
                f"The 'init_weights' parameter must be one of {INIT_WEIGHTS}. Got {self.init_weights!r} instead."
            )
        if isinstance(self.loss, str) and self.loss not in LOSSES:
            raise ValidationError(f"The 'loss' parameter must be one of {LOSSES}. Got {self.loss!r} instead.")
        if self.fusion_init not in FUSION_INITS:
            raise ValidationError(
                f"The 'fusion_init' parameter must be one of {FUSION_INITS}. Got {self.fusion_init!r} instead."
            )
        if self.parent_inputs not in PARENT_INPUTS:
            raise ValidationError(
                f"The 'parent_inputs' parameter must be one of {PARENT_INPUTS}. Got {self.parent_inputs!r} instead."
            )
        if self.embedder is not None and self.embedder not in ("mlp", "dgml"):
            raise ValidationError(f"The 'embedder' parameter must be 'mlp' or 'dgml'. Got {self.embedder!r} instead.")
        if not 0.0 < float(self.test_size) < 1.0:
            raise ValidationError(f"The 'test_size' parameter must be in (0, 1). Got {self.test_size!r} instead.")
        if int(self.embedding_dim) < 2 or int(self.batch_size) < 2:
            raise ValidationError("The 'embedding_dim' and 'batch_size' parameters must be ints >= 2.")
        _check_max_images(self.max_train_images)
        check_n_jobs(self.n_jobs)

    def _encode_labels(self, y: Any, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if self.supervision == "self":
            return np.zeros(n, np.int64), np.ones(n, bool), np.array([])  # labels unused
        if y is None:
            raise ValidationError(
                "supervision='label' needs labels: pass y (one label per image), or use "
                "supervision='self' to learn without labels."
            )
        import pandas as pd

        values = pd.Series(np.asarray(y, dtype=object) if not isinstance(y, pd.Series) else y.to_numpy())
        if len(values) != n:
            raise ValidationError(f"y has {len(values)} labels for {n} images; give exactly one per image.")
        usable = values.notna().to_numpy()
        classes, codes = np.unique(values[usable].astype(str), return_inverse=True)
        y_codes = np.full(n, -1, np.int64)
        y_codes[usable] = codes
        if len(classes) < 2:
            raise ValidationError(
                f"y has {len(classes)} distinct label value(s); metric learning on a label needs at least 2."
            )
        return y_codes, usable, classes

    def _split(self, y_codes: np.ndarray, usable: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        from sklearn.model_selection import train_test_split

        idx = np.flatnonzero(usable)
        if len(idx) < 4:
            raise ValidationError(f"HEML needs at least 4 usable images to hold some out; got {len(idx)}.")
        strat = y_codes[idx] if self.supervision == "label" and np.bincount(y_codes[idx]).min() >= 2 else None
        train, test = train_test_split(idx, test_size=float(self.test_size), random_state=self.seed, stratify=strat)
        return np.sort(train), np.sort(test)

    def _fit_group(self, group: list[str], images, label_maps, y_codes, train_mask, test_mask,
                   setup: DeviceSetup) -> None:
        tree: SegmentTree = self.tree_
        self_sup = self.supervision == "self"
        prepared = []
        for name in group:
            node = tree.nodes[name]
            opts = node.options
            inp = node_inputs(images, label_maps, tree.part_ids(name), resolution=opts.resolution,
                              margin=opts.margin, background=tuple(self.background))
            train_rows = np.flatnonzero(inp.present & train_mask & ~self._validation_mask(train_mask, y_codes))
            self.area_[name] = float(inp.area_frac[train_rows].mean()) if len(train_rows) else 0.0
            node_seed = self.seed * 1000 + list(tree.nodes).index(name)
            # One shared random initialisation for every node (as in model soups): weights
            # that start aligned stay comparable, so a parent's average of its children is a
            # meaningful starting point rather than a blend of permuted units.
            n_children = len(node.children) if self.reads_children() else 0
            model = build_node_model(opts.trunk, embedding_dim=int(self.embedding_dim),
                                     hidden_dim=int(self.hidden_dim), seed=self.seed,
                                     frozen_trunks=self._frozen_trunks, embedder=opts.embedder,
                                     groups=int(self.groups), n_children=n_children).to(setup.device)
            if setup.channels_last:
                model = model.to(memory_format=torch.channels_last)
            bundle = build_loss(self.loss, num_classes=max(len(self.classes_), 1),
                                embedding_dim=int(self.embedding_dim), miner=self.miner,
                                self_supervised=self_sup, params=dict(self.loss_params or {}))
            bundle.loss.to(setup.device)
            init = self._init_from_children(name, model, bundle)
            self._attach_prior(name, model, label_maps)
            prepared.append((name, opts, inp, train_rows, model, bundle, init, node_seed))

        trainable = [p[4].trainable() for p in prepared]
        frozen = not prepared[0][4].trunk_trainable
        epochs = max(0, round(prepared[0][1].epochs * float(self.epochs_scale)))
        with Stopwatch(setup) as clock:
            inputs, targets, ok = [], [], []
            for name, _opts, inp, rows, model, _bundle, _init, _seed in prepared:
                x = _nchw(inp.crops[rows])
                if frozen:
                    x = run_batched(model.features, x, setup)
                x = to_device(x, setup)
                if model.n_children:
                    x = (x, to_device(self._children_input(name)[rows], setup))
                inputs.append(x)
                targets.append(to_device(torch.as_tensor(y_codes[rows]), setup))
                enough = len(rows) >= 2 and (self_sup or len(np.unique(y_codes[rows])) >= 2)
                ok.append(enough)
            active = [j for j in range(len(prepared)) if ok[j]]
            history: list[list[float]] = [[] for _ in prepared]
            if active and epochs > 0:
                gen = torch.Generator().manual_seed(prepared[active[0]][7])
                hist = train_modules(
                    [trainable[j] for j in active],
                    [self._training_bundle(prepared[j][4], prepared[j][5], alone=len(active) == 1) for j in active],
                    [inputs[j] for j in active], [targets[j] for j in active],
                    normalize=frozen, epochs=epochs, batch_size=int(self.batch_size), lr=float(self.lr),
                    loss_lr=float(self.loss_lr), setup=setup, gen=gen, self_supervised=self_sup,
                    augment_inputs=bool(self.augment) if self.augment is not None else False,
                    progress_desc=f"HEML {'+'.join(group) if len(group) < 3 else f'{len(group)} nodes'}",
                )
                for j, h in zip(active, hist, strict=True):
                    history[j] = h
        share = clock.seconds / len(prepared)
        for j, (name, opts, inp, rows, model, bundle, init, node_seed) in enumerate(prepared):
            model.eval()
            test_rows = np.flatnonzero(inp.present & test_mask)
            kids = self._children_input(name) if model.n_children else None
            chosen = self._validate(name, model, inp, kids, y_codes, train_mask, setup)
            chosen.update(self._validate_all_images(model, inp, kids, y_codes, train_mask, setup))
            if self.reads_children():
                # every image's embedding, for the parent's input (absent rows stay zero)
                all_emb = torch.zeros(len(inp.present), model.embedding_dim)
                present = np.flatnonzero(inp.present)
                if len(present):
                    all_emb[present] = run_batched(model, _nchw(inp.crops[present]), setup,
                                                   extra=None if kids is None else kids[present])
                self._all_emb[name] = all_emb
            metrics = self._evaluate(model, inp.crops[test_rows], y_codes[test_rows], setup, node_seed,
                                     children=None if kids is None else kids[test_rows])
            absent_rows = np.flatnonzero(~inp.present & test_mask)
            if self.supervision == "label" and len(absent_rows):
                metrics.update(self._all_images_metrics(metrics, y_codes[test_rows], y_codes[absent_rows]))
            metrics.update(
                n_train=int(len(rows)), n_test=int(len(test_rows)), epochs=epochs if ok[j] else 0,
                resolution=opts.resolution, trunk=opts.trunk,
                train_seconds=round(share, 3), peak_gpu_mem_mb=clock.peak_gpu_mb,
                concurrent_group=list(group), init=init, **chosen,
            )
            # finished nodes wait on the CPU: a node's peak GPU memory is then its own, not
            # the sum of every model trained before it
            self.models_[name] = model.to("cpu")
            self.losses_[name] = bundle.loss.to("cpu")
            self.metrics_[name] = metrics
            self.history_[name] = history[j]
            self.__dict__.get("_prior_input", {}).pop(name, None)  # only the node being trained needs it

    def _init_from_children(self, name: str, model: NodeModel, bundle: LossBundle) -> dict[str, Any]:
        node = self.tree_.nodes[name]
        if node.is_leaf:
            return {"kind": "random"}
        kids = list(node.children)
        how = self.init_weights
        if how == "auto":
            how = "skill" if self.supervision == "label" else "area"
        if how == "skill":
            # what the children's weights learned from their pixels: presence is not in them
            weights = self._skills(kids, presence=False)
            if sum(weights) <= 0:  # no child has skill: nothing to favour
                how, weights = "area", [self.area_[c] for c in kids]
        elif how == "equal":
            weights = [1.0, 1.0]
        elif how == "area":
            weights = [self.area_[c] for c in kids]
        else:
            weights = [self._skill_inputs(c)[0] for c in kids]
        if not all(math.isfinite(w) for w in weights) or sum(weights) <= 0:
            weights = [1.0, 1.0]  # a child never trained (part absent everywhere): fall back
        child_models = [self.models_[c] for c in kids]
        if any(m.trunk_spec != model.trunk_spec for m in child_models):
            raise ValidationError(
                f"Node '{name}' uses trunk '{model.trunk_spec}' but its children use "
                f"{[m.trunk_spec for m in child_models]}; a parent starts from the average of its "
                f"children's weights, so give them one trunk in the recipe."
            )
        # trunk and embedder average; a child's own fusion layer has no counterpart
        own = model.trainable().state_dict()
        states = [m.trainable().state_dict() for m in child_models]
        common = [key for key in own if not key.startswith("fusion.")
                  and all(key in st and st[key].shape == own[key].shape for st in states)]
        averaged = average_state_dicts([{key: st[key] for key in common} for st in states], weights)
        model.trainable().load_state_dict(averaged, strict=False)
        fusion = None
        if model.n_children:
            fw = self._fusion_weights(kids, weights)
            fusion = [OWN_SHARE] + [(1.0 - OWN_SHARE) * w / sum(fw) for w in fw]
            model.init_fusion(fusion)
        loss_states = [self.losses_[c].state_dict() for c in kids]
        if bundle.has_parameters and all(s.keys() == bundle.loss.state_dict().keys() for s in loss_states):
            bundle.loss.load_state_dict(average_state_dicts(loss_states, weights))
        total = sum(weights)
        out = {"kind": "average", "children": kids, "weights": [w / total for w in weights],
               "by": how, "averaged_tensors": len(common)}
        if fusion is not None:
            out["fusion_start"] = {"own": fusion[0], **dict(zip(kids, fusion[1:], strict=True))}
        if model.embedder_kind == "dgml" and model.n_children and self.supervision == "label":
            leaves = self._prior_leaves(kids)
            if leaves:
                model.set_attention_prior(leaves)
                out["attention_prior"] = [[list(ids), w] for ids, w in leaves]
        return out

    def _prior_leaves(self, kids: list[str]) -> tuple:
        """A DGML parent's attention prior (:mod:`biasaudit.heml.dgml`): the leaves below it
        that carry the label, each child weighted by its validation skill where that skill
        is significant (:func:`~biasaudit.heml.parents.significant_skill`, as the parent
        reads it: :func:`~biasaudit.heml.parents.as_parent_reads_it`), its own share
        passed down its own prior (a leaf, or a child without one: its parts). Empty when
        no child carries the label."""
        from biasaudit.heml.dgml import combine_leaves
        from biasaudit.heml.parents import as_parent_reads_it, significant_skill

        weighted = []
        for child, skill in zip(kids, self._skills(kids, presence=True), strict=True):
            own = getattr(self.models_[child], "attention_prior", None) or ((self.tree_.part_ids(child), 1.0),)
            significant = significant_skill(as_parent_reads_it(self.metrics_.get(child, {})))
            weighted.append((skill if significant else 0.0, own))
        return combine_leaves(weighted)

    def _attach_prior(self, name: str, model: NodeModel, label_maps: np.ndarray) -> None:
        """Every image's attention prior for a DGML parent that has one, read after its
        children's embeddings by :meth:`_children_input` while the node trains (dropped once
        it is trained)."""
        from biasaudit.heml.dgml import prior_rows

        rows = prior_rows(self, label_maps, name, getattr(model, "attention_prior", None))
        # keyed by node: every node of a group is prepared before any is trained
        priors = self.__dict__.setdefault("_prior_input", {})
        if rows is None:
            priors.pop(name, None)
        else:
            priors[name] = rows

    def _fusion_weights(self, kids: list[str], average_weights: list[float]) -> list[float]:
        if self.fusion_init == "area":
            return list(average_weights)
        if self.fusion_init == "skill":
            skill = self._skills(kids, presence=True)
            if sum(skill) > 0:
                return skill
        return [1.0] * len(kids)

    def _skills(self, kids: list[str], *, presence: bool) -> list[float]:
        """Each node's validation P@1 above chance (0 when unknown); with ``presence``, as
        its parent reads it (:func:`~biasaudit.heml.parents.as_parent_reads_it`)."""
        out = []
        for c in kids:
            p, chance = self._skill_inputs(c, presence=presence)
            out.append(max(p - chance, 0.0) if math.isfinite(p) and math.isfinite(chance) else 0.0)
        return out

    def _skill_inputs(self, node: str, *, presence: bool = False) -> tuple[float, float]:
        """(P@1, chance) of a trained node as the tree may use them to build a parent: on the
        validation rows (label supervision; NaN, i.e. no skill, when the split was too
        small to hold any out), never the test split; with ``presence``, over every
        validation image where some lack the node's part (what its parent's input shows).
        Self-supervised fits (no labels to peek at) use their view-retrieval score."""
        from biasaudit.heml.parents import as_parent_reads_it

        m = self.metrics_.get(node, {})
        if presence:
            m = as_parent_reads_it(m)
        key = "val_" if self.supervision == "label" else ""
        return (m.get(f"{key}precision_at_1", float("nan")), m.get(f"{key}chance_p_at_1", float("nan")))

    def _validation_mask(self, train_mask: np.ndarray, y_codes: np.ndarray) -> np.ndarray:
        """Rows of the training split held out of every node's training (``VAL_SHARE``,
        stratified, seeded): parents are built and chosen on them, so no choice looks at
        the test split. A pure function of the split, so Ray tasks find the same rows.
        Empty for self supervision and for splits too small to choose on."""
        out = np.zeros(len(train_mask), bool)
        idx = np.flatnonzero(train_mask)
        k = round(len(idx) * VAL_SHARE)
        if self.supervision != "label" or k < MIN_VAL_ROWS or all(n.is_leaf for n in self.tree_.nodes.values()):
            return out
        counts = np.bincount(y_codes[idx])
        if (counts[counts > 0] < 2).any():
            return out
        from sklearn.model_selection import train_test_split

        _, val = train_test_split(idx, test_size=k, random_state=self.seed + 1, stratify=y_codes[idx])
        out[val] = True
        return out

    def _training_bundle(self, model: NodeModel, bundle: LossBundle, *, alone: bool) -> LossBundle:
        """The loss a node trains with: a label-supervised parent that reads its children
        also learns the metric on its own pixels (:class:`~biasaudit.heml.parents.OwnPathwayLoss`).
        Not for a level trained at once (``concurrent``): its stacked forward pass keeps no
        per-node state."""
        if not (model.n_children and alone and self.supervision == "label"):
            return bundle
        from biasaudit.heml.parents import OwnPathwayLoss

        model.keep_own = True
        return LossBundle(loss=OwnPathwayLoss(bundle.loss, bundle.miner, own=model.last_own_embedding),
                          miner=bundle.miner, has_parameters=bundle.has_parameters)

    def _validate(self, name: str, model: NodeModel, inp: NodeInputs, kids: torch.Tensor | None,
                  y_codes: np.ndarray, train_mask: np.ndarray, setup: DeviceSetup) -> dict[str, Any]:
        """A trained node's P@1 on the validation rows and, for a parent that reads its
        children, the choice of what it keeps. Candidates (own pixels weight 0 except the
        fine-tuned one):

        - ``pass-through:<child>``: the fusion set to one child's embedding;
        - ``children``: the children's skill-weighted combination;
        - ``fine-tuned``: the fusion as trained.

        The default depends on how many children carry the label: a child with significant
        validation skill (:func:`~biasaudit.heml.parents.significant_skill`; over every
        validation image for a part some lack, :meth:`_validate_all_images`) or with such a
        node below it (:meth:`_carries_label`; one parent's 210 validation rows can miss a
        weak signal its children showed: Wearing_Hat ``lower_face`` 0.788 on test looked
        like chance on validation, and ``face`` then carried ``eye_region`` forward at
        0.670). Two or more: the fine-tuned parent (the paper's node, the combination it
        learned). One: that child's pass-through. None: the pass-through of the child that
        retrieves best on validation (every candidate is at chance; copying a child keeps
        the parent's P@1 its child's instead of a fresh draw). Another candidate replaces
        the default only when it retrieves better on the same validation queries by a
        significant margin (:func:`~biasaudit.heml.parents.choose_parent`). A candidate
        that would leave some of the parent's images without an embedding (every child
        it reads absent there) is not considered.

        Each validation query scores the mean of its hit among the other validation rows
        and its hit against the rows the node trained on
        (:func:`~biasaudit.heml.quality.validation_hits`; both recorded). 210 validation
        rows alone ranked SynthFaces Wearing_Hat ``skin+ears`` (0.760 on test) below
        ``nose+mouth`` (0.685): 0.689 against 0.748; the mean gives 0.733 against 0.698."""
        from biasaudit.heml.parents import choose_parent, significant_skill
        from biasaudit.heml.quality import chance_p_at_1, nearest_hits, validation_hits

        model.keep_own = False  # training is over (see _training_bundle)
        val = self._validation_mask(train_mask, y_codes)
        rows = np.flatnonzero(inp.present & val)
        if len(rows) < 2 or len(np.unique(y_codes[rows])) < 2:
            return {}
        gallery = np.flatnonzero(inp.present & train_mask & ~val)  # the rows the node trained on
        both = np.concatenate([rows, gallery])
        sub = None if kids is None else kids[both]
        # the own pixels' embedding is the same for every candidate: one forward pass
        own = run_batched(model.own_embedding, _nchw(inp.crops[both]), setup, extra=sub)
        n, y_val, y_gallery = len(rows), y_codes[rows], y_codes[gallery]

        def embed() -> torch.Tensor:
            return run_batched(model.fuse, own, setup, extra=sub) if model.n_children else own

        def hits() -> np.ndarray:
            emb = embed()
            return validation_hits(emb[:n], y_val, emb[n:], y_gallery)

        def record(emb: torch.Tensor) -> dict[str, Any]:
            # validation_hits' two searches, run once each: their mean and each one are recorded
            among = nearest_hits(emb[:n], y_val)
            if not len(gallery):
                return {"val_precision_at_1": float(among.mean()), "val_precision_at_1_among_val": float(among.mean()),
                        "val_precision_at_1_to_train": float("nan")}
            to_train = nearest_hits(emb[:n], y_val, gallery=emb[n:], gallery_labels=y_gallery)
            return {"val_precision_at_1": float(((among + to_train) / 2.0).mean()),
                    "val_precision_at_1_among_val": float(among.mean()),
                    "val_precision_at_1_to_train": float(to_train.mean())}

        out: dict[str, Any] = {"n_val": int(n), "n_val_gallery": int(len(gallery)), **record(embed()),
                               "val_chance_p_at_1": chance_p_at_1(y_val)}
        if not model.n_children:
            return out

        kid_names = list(self.tree_.nodes[name].children)
        present = np.flatnonzero(inp.present)
        kid_present = np.stack([(self._all_emb[c][present].norm(dim=1) > 0).numpy() for c in kid_names])

        def covers(mix: list[float]) -> bool:  # every image of the parent keeps an embedding
            return bool(kid_present[[w > 0 for w in mix[1:]]].any(axis=0).all())

        def weighted(weights: list[float]) -> list[float]:
            return [0.0] + [w / sum(weights) for w in weights]

        saved = {k: v.clone() for k, v in model.fusion.state_dict().items()}
        mixes: dict[str, list[float] | None] = {"fine-tuned": None}
        combination = weighted(self._fusion_weights(kid_names, [self.area_[c] for c in kid_names]))
        mixes["children"] = combination
        for k, child in enumerate(kid_names):
            mixes[f"pass-through:{child}"] = [1.0 if j == k + 1 else 0.0 for j in range(len(kid_names) + 1)]
        mixes = {k: v for k, v in mixes.items() if v is None or covers(v)}
        scores: dict[str, np.ndarray] = {}
        for key, mix in mixes.items():
            if mix is None:
                model.fusion.load_state_dict(saved)
            else:
                model.init_fusion(mix)
            scores[key] = hits()
        skilled = [c for c in kid_names if self._carries_label(c, significant_skill)]
        if len(skilled) > 1:  # something to combine: the combination the parent learned
            default = "fine-tuned"
        elif skilled:
            default = f"pass-through:{skilled[0]}"
        else:  # nothing below carries the label: every candidate is at chance
            passes = [k for k in mixes if k.startswith("pass-through:")]
            default = max(passes, key=lambda k: scores[k].mean()) if passes else "fine-tuned"
        if default not in mixes:  # it would leave images without an embedding
            default = "fine-tuned"
        kept = choose_parent(scores, default)
        if mixes[kept] is None:
            model.fusion.load_state_dict(saved)
        else:
            model.init_fusion(mixes[kept])
        out.update(record(embed()))
        out["selected"] = {"kept": kept, "default": default, "skilled_children": skilled,
                           "val_p_at_1": {k: round(float(v.mean()), 4) for k, v in scores.items()},
                           "children_weights": dict(zip(kid_names, combination[1:], strict=True))}
        return out

    def _validate_all_images(self, model: NodeModel, inp: NodeInputs, kids: torch.Tensor | None,
                             y_codes: np.ndarray, train_mask: np.ndarray, setup: DeviceSetup) -> dict[str, Any]:
        """For a node whose part some validation images lack, its validation P@1 over every
        validation image (``val_precision_at_1_all_images``, with its chance level and row
        count): the images without the part one tied group, on both sides of
        :func:`~biasaudit.heml.quality.validation_hits`. Its parent reads it
        (:func:`~biasaudit.heml.parents.as_parent_reads_it`): the parent's input marks those
        images, so presence itself can carry the label. ``hat`` for Wearing_Hat is at chance
        1.0 among the images with a hat (every one has the label), so on its own rows it
        shows no skill, or none can be measured; over every image it separates the label."""
        from biasaudit.heml.quality import (
            chance_p_at_1,
            gallery_hits_all_images,
            hits_all_images,
            nearest_hits,
        )

        val = self._validation_mask(train_mask, y_codes)
        absent = np.flatnonzero(~inp.present & val)
        if self.supervision != "label" or not len(absent):
            return {}
        rows = np.flatnonzero(inp.present & val)
        fitted = train_mask & ~val
        gallery, gallery_absent = np.flatnonzero(inp.present & fitted), np.flatnonzero(~inp.present & fitted)
        y_rows, y_gallery = y_codes[rows], y_codes[gallery]
        among = to_train = np.zeros(len(rows))
        if len(rows):
            both = np.concatenate([rows, gallery])
            emb = run_batched(model, _nchw(inp.crops[both]), setup, extra=None if kids is None else kids[both])
            n = len(rows)
            among = nearest_hits(emb[:n], y_rows)
            if len(gallery):
                to_train = nearest_hits(emb[:n], y_rows, gallery=emb[n:], gallery_labels=y_gallery)
        hits = hits_all_images(among, y_rows, y_codes[absent])
        if len(gallery) + len(gallery_absent):
            hits = (hits + gallery_hits_all_images(to_train, y_rows, y_codes[absent], y_gallery,
                                                   y_codes[gallery_absent])) / 2.0
        every = np.concatenate([y_rows, y_codes[absent]])
        return {"val_precision_at_1_all_images": float(hits.mean()),
                "val_chance_p_at_1_all_images": chance_p_at_1(every), "n_val_all_images": int(len(every))}

    def _carries_label(self, name: str, significant) -> bool:
        """Whether ``name`` or a node below it has significant validation skill: a
        parent's validation P@1 alone can miss a weak signal its children hold (210 rows),
        but a parent that reads a child with skill carries that skill."""
        from biasaudit.heml.parents import as_parent_reads_it

        if significant(as_parent_reads_it(self.metrics_.get(name, {}))):
            return True
        return any(self._carries_label(c, significant) for c in self.tree_.nodes[name].children)

    def _children_input(self, name: str) -> torch.Tensor:
        """N × (D·n_children) children's embeddings of every image (zeros where absent),
        then a DGML parent's attention prior (N × r², :meth:`_attach_prior`) if it has one."""
        prior = getattr(self, "_prior_input", {}).get(name)
        return torch.cat([self._all_emb[c] for c in self.tree_.nodes[name].children]
                         + ([] if prior is None else [prior]), dim=1)

    def _evaluate(self, model: NodeModel, crops: np.ndarray, y_test: np.ndarray, setup: DeviceSetup,
                  seed: int, children: torch.Tensor | None = None) -> dict[str, Any]:
        if len(crops) < 2:
            return {"precision_at_1": float("nan"), "map_at_r": float("nan"), "chance_p_at_1": float("nan")}
        x = _nchw(crops)
        if self.supervision == "self":
            # no labels: each held-out input must retrieve another random view of itself
            from biasaudit.heml.training import augment

            gen = torch.Generator().manual_seed(seed + 7)
            views = []
            for _ in range(2):
                views.append(run_batched(lambda xb, *kid: model(augment(xb, gen), *kid), x, setup,
                                         extra=children))
            emb = torch.cat(views)
            labels = np.concatenate([np.arange(len(x))] * 2)
            return retrieval_metrics(emb, labels)
        emb = run_batched(model, x, setup, extra=children)
        return retrieval_metrics(emb, y_test)

    @staticmethod
    def _all_images_metrics(metrics: dict[str, Any], present: np.ndarray, absent: np.ndarray) -> dict[str, float]:
        """A subset node's P@1 and chance over every held-out image, its parent's rows
        (:func:`~biasaudit.heml.quality.precision_at_1_all_images`)."""
        from biasaudit.heml.quality import chance_p_at_1, precision_at_1_all_images

        every = np.concatenate([present, absent])
        return {"precision_at_1_all_images": precision_at_1_all_images(metrics["precision_at_1"], present, absent),
                "chance_p_at_1_all_images": chance_p_at_1(every), "n_test_all_images": int(len(every))}

    def _fit_baseline(self, images, y_codes, train_mask, test_mask, setup: DeviceSetup) -> None:
        """One whole-image model spending the tree's compute: epochs such that
        epochs·n_train·r_root² ≈ Σ_nodes epochs_k·n_k·r_k² (pixels seen in training)."""
        tree = self.tree_
        root_opts = tree.nodes[tree.root].options
        spent = sum(m["epochs"] * m["n_train"] * m["resolution"] ** 2 for m in self.metrics_.values())
        train_rows, test_rows = np.flatnonzero(train_mask), np.flatnonzero(test_mask)
        epochs = max(1, round(spent / (len(train_rows) * root_opts.resolution ** 2)))
        crops = whole_image_inputs(images, resolution=root_opts.resolution)
        model = build_node_model(root_opts.trunk, embedding_dim=int(self.embedding_dim),
                                 hidden_dim=int(self.hidden_dim), seed=self.seed,
                                 frozen_trunks=self._frozen_trunks, embedder=root_opts.embedder,
                                 groups=int(self.groups)).to(setup.device)
        if setup.channels_last:
            model = model.to(memory_format=torch.channels_last)
        bundle = build_loss(self.loss, num_classes=max(len(self.classes_), 1),
                            embedding_dim=int(self.embedding_dim), miner=self.miner,
                            self_supervised=self.supervision == "self", params=dict(self.loss_params or {}))
        bundle.loss.to(setup.device)
        with Stopwatch(setup) as clock:
            x = _nchw(crops[train_rows])
            if not model.trunk_trainable:
                x = run_batched(model.features, x, setup)
            train_modules([model.trainable()], [bundle], [to_device(x, setup)],
                          [to_device(torch.as_tensor(y_codes[train_rows]), setup)],
                          normalize=not model.trunk_trainable, epochs=epochs,
                          batch_size=int(self.batch_size), lr=float(self.lr), loss_lr=float(self.loss_lr),
                          setup=setup, gen=torch.Generator().manual_seed(self.seed),
                          self_supervised=self.supervision == "self", progress_desc="HEML baseline")
        metrics = self._evaluate(model, crops[test_rows], y_codes[test_rows], setup, self.seed)
        metrics.update(n_train=int(len(train_rows)), n_test=int(len(test_rows)), epochs=epochs,
                       resolution=root_opts.resolution, trunk=root_opts.trunk,
                       train_seconds=round(clock.seconds, 3), peak_gpu_mem_mb=clock.peak_gpu_mb)
        self.baseline_model_ = model
        self.baseline_metrics_ = metrics

    # ------------------------------------------------------------------ use
    def _check_fitted(self) -> None:
        if not hasattr(self, "models_"):
            raise NotFittedError(
                "This HEML instance is not fitted yet. Call 'fit' (or load a trained one with "
                "HEML.load) before using it."
            )

    def node_inputs(self, images: np.ndarray, label_maps: np.ndarray, node: str) -> NodeInputs:
        """The (masked, cropped, resized) inputs ``node`` sees for each image."""
        self._check_fitted()
        opts = self.tree_._node(node).options
        return node_inputs(images, label_maps, self.tree_.part_ids(node), resolution=opts.resolution,
                           margin=opts.margin, background=tuple(self.background))

    def embed(self, images: np.ndarray, label_maps: np.ndarray, *, nodes: list[str] | None = None,
              batch_size: int = 256) -> dict[str, np.ndarray]:
        """Per-node embeddings: node → N×D float32, rows of images lacking the node's parts
        all zero ("absent"; present rows have unit norm).

        >>> emb = heml.embed(images, label_maps)          # doctest: +SKIP
        >>> emb["hair"].shape                             # doctest: +SKIP
        (2000, 128)
        """
        self._check_fitted()
        images, label_maps = check_arrays(images, label_maps)
        wanted = list(nodes or self.tree_.nodes)
        # Images are embedded in blocks of ``batch_size``: a block's numbers depend only on its
        # own images, not on the call that embeds it or the engine that runs it (CPU kernels
        # round differently for different batch sizes), so every engine gives the same bits.
        if current_engine().is_ray and len(images) > batch_size:
            from biasaudit.heml.ray_engine import embed_on_ray

            return embed_on_ray(self, images, label_maps, nodes=wanted, batch_size=batch_size)
        setup = resolve_device(self.device)
        needed = set()
        for name in wanted:
            needed |= self._needs(name)
        for name in needed:
            self.models_[name] = self.models_[name].to(setup.device).eval()
        try:
            blocks = [self._embed_block(images[lo : lo + batch_size], label_maps[lo : lo + batch_size], needed,
                                        setup, batch_size) for lo in range(0, len(images), batch_size)]
        finally:
            for name in needed:
                self.models_[name] = self.models_[name].to("cpu")
        return {name: np.concatenate([b[name] for b in blocks]) if blocks
                else np.zeros((0, self.models_[name].embedding_dim), np.float32) for name in wanted}

    def _embed_block(self, images: np.ndarray, label_maps: np.ndarray, needed: set[str], setup: DeviceSetup,
                     batch_size: int) -> dict[str, np.ndarray]:
        out: dict[str, np.ndarray] = {}
        for name in self.tree_.nodes:  # bottom-up: a parent may read its children's embeddings
            if name not in needed:
                continue
            inp = self.node_inputs(images, label_maps, name)
            model = self.models_[name]
            emb = np.zeros((len(images), model.embedding_dim), np.float32)
            rows = np.flatnonzero(inp.present)
            if len(rows):
                kids = None
                if getattr(model, "n_children", 0):
                    kids = torch.from_numpy(np.concatenate([out[c] for c in self.tree_.nodes[name].children], 1))[rows]
                    if getattr(model, "attention_prior", None):  # a DGML parent's prior, after its children
                        from biasaudit.heml.dgml import node_prior

                        kids = torch.cat([kids, node_prior(self, label_maps[rows], name)], dim=1)
                emb[rows] = run_batched(model, _nchw(inp.crops[rows]), setup, batch_size=batch_size,
                                        extra=kids).numpy()
            out[name] = emb
        return out

    def _needs(self, name: str) -> set[str]:
        """``name`` and every node whose embedding it reads (its descendants when fused)."""
        out = {name}
        if getattr(self.models_[name], "n_children", 0):
            for child in self.tree_.nodes[name].children:
                out |= self._needs(child)
        return out

    def transform(self, images: np.ndarray, label_maps: np.ndarray) -> np.ndarray:
        """All nodes' embeddings side by side (N × D·n_nodes, tree order)."""
        emb = self.embed(images, label_maps)
        return np.concatenate([emb[n] for n in self.tree_.nodes], axis=1)

    def save(self, path: str | Path) -> Path:
        """Write every node as safetensors + JSON under ``path`` (see :mod:`persist`)."""
        from biasaudit.heml.persist import save_heml

        self._check_fitted()
        return save_heml(self, path)

    @classmethod
    def load(cls, path: str | Path, *, device: str = "auto") -> HEML:
        """A fitted HEML read back from :meth:`save`'s folder."""
        from biasaudit.heml.persist import load_heml

        return load_heml(path, device=device)


def train_sample(n: int, *, y: Any = None, max_images: int | None = 2000, seed: int = 0) -> np.ndarray:
    """Sorted row indices of the images HEML trains on, out of ``n``.

    All rows when ``n <= max_images`` (or ``max_images`` is None), so small datasets train
    exactly as without a cap. Otherwise ``max_images`` rows drawn with ``seed``: among the
    rows whose label ``y`` is known, stratified by ``y`` (each label value keeps its share,
    largest remainders rounded up), or uniformly when ``y`` is None.

    >>> train_sample(5, max_images=10).tolist()
    [0, 1, 2, 3, 4]
    >>> s = train_sample(1000, y=["a"] * 900 + ["b"] * 100, max_images=100)
    >>> len(s), int((s >= 900).sum())
    (100, 10)
    """
    _check_max_images(max_images)
    if max_images is None or n <= max_images:
        return np.arange(n)
    rng = np.random.default_rng(seed)
    if y is None:
        return np.sort(rng.choice(n, int(max_images), replace=False))
    import pandas as pd

    values = pd.Series(np.asarray(y, dtype=object) if not isinstance(y, pd.Series) else y.to_numpy())
    if len(values) != n:
        raise ValidationError(f"y has {len(values)} labels for {n} images; give exactly one per image.")
    idx = np.flatnonzero(values.notna().to_numpy())
    if len(idx) <= max_images:
        return idx
    _, codes = np.unique(values.iloc[idx].astype(str).to_numpy(), return_inverse=True)
    counts = np.bincount(codes)
    quota = counts * (int(max_images) / len(idx))
    take = np.floor(quota).astype(int)
    # largest remainders first; ties to the earlier value, so the sample size is exact
    extra = np.argsort(-(quota - take), kind="stable")[: int(max_images) - int(take.sum())]
    take[extra] += 1
    picks = [rng.choice(idx[codes == c], take[c], replace=False) for c in range(len(counts)) if take[c]]
    return np.sort(np.concatenate(picks))


def _check_max_images(value: Any) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 4):
        raise ValidationError(
            f"The 'max_train_images' parameter must be an int >= 4 or None (train on all). Got {value!r} instead."
        )


def _take(y: Any, rows: np.ndarray) -> Any:
    """Rows ``rows`` of labels ``y`` (a Series, array or list; None stays None)."""
    if y is None:
        return None
    import pandas as pd

    if isinstance(y, pd.Series):
        return y.iloc[rows].reset_index(drop=True)
    return np.asarray(y, dtype=object)[rows]


def _nchw(crops: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(crops)).permute(0, 3, 1, 2).contiguous()
