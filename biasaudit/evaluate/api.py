"""``run_evaluate``: train a classifier per training set, seed and baseline, score each on
one test set with fairlearn, and write ``EVAL/``.

Files written (atomically):

- ``EVAL/runs/<train>-<method>-s<seed>/model.safetensors`` + ``config.json`` (the model,
  never pickle) and ``predictions.parquet`` (``image, y_true, y_pred, score,
  sensitive``; ``y_true`` / ``y_pred`` are 0/1 with 1 = the positive label value), so
  every figure can be recomputed with pandas and fairlearn alone;
- ``EVAL/metrics.json``: ``runs`` (one record per run: ``train``, ``method``, ``seed``,
  ``run`` (its folder), ``seconds`` (training + scoring; None when reused), accuracy,
  worst-group accuracy, demographic parity and equalized odds differences, ``by_group``),
  ``summary`` (one row per (train, method): mean and std over seeds) and ``settings``.

A run folder whose ``config.json`` holds the same run key (data, label, sensitive,
recipe, method, seed, backbone, size) and that has its predictions is reused, so a
killed evaluation re-run with the same arguments continues where it stopped.

>>> result = run_evaluate(train={"original": "faces/"}, test="test/", label="Smiling",
...                       sensitive="Blond_Hair", out="eval/")  # doctest: +SKIP
>>> result.summary[0]["worst_group_accuracy_mean"]  # doctest: +SKIP
0.31
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd

from biasaudit import __version__
from biasaudit.core.errors import ValidationError
from biasaudit.core.io import write_json_atomic, write_parquet_atomic
from biasaudit.evaluate.fairness import check_groups, format_summary, score_predictions, summarize
from biasaudit.evaluate.images import ImageSet, label_vector, load_image_set
from biasaudit.evaluate.models import CONFIG_FILE, DEFAULT_POOL, save_classifier
from biasaudit.evaluate.sensitive import check_part, parse_sensitive, sensitive_values
from biasaudit.evaluate.training import (
    METHODS,
    Recipe,
    predict_scores,
    resolve_device,
    train_classifier,
)

PREDICTIONS_FILE = "predictions.parquet"
METRICS_FILE = "metrics.json"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


@dataclass(frozen=True)
class EvaluateResult:
    """What :func:`run_evaluate` wrote: ``runs`` and ``summary`` as in metrics.json."""

    out: Path
    runs: list[dict]
    summary: list[dict]
    settings: dict
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def table(self) -> str:
        return format_summary(self.summary)


def run_evaluate(*, train: Mapping[str, str | Path], test: str | Path, label: str, sensitive: str,
                 out: str | Path, baselines: Sequence[str] = ("erm",), seeds: int = 3,
                 epochs: int | None = None, size: int = 64, backbone: str = "small-cnn",
                 device: str = "auto", segmenter: str = "auto",
                 log: Callable[[str], None] | None = None) -> EvaluateResult:
    """Train, score and write ``out`` (see the module docstring).

    Every training set gets an ``erm`` classifier per seed; the first one also gets each
    method in ``baselines`` (oversample, reweight, subsample, groupdro), trained with its
    true (label × sensitive) groups. ``epochs=None`` takes the recipe's default.
    """
    say = log or (lambda msg: None)
    train = dict(train)
    _check_args(train, test, out, baselines, seeds, size)
    recipe = Recipe() if epochs is None else replace(Recipe(), epochs=int(epochs))
    if recipe.epochs < 1:
        raise ValidationError(f"--epochs must be >= 1; got {recipe.epochs}.")
    spec = parse_sensitive(sensitive)
    dev = resolve_device(device)
    out = Path(out)
    seconds: dict[str, float] = {}

    t0 = time.perf_counter()
    say(f"decoding the test set {test} at {size} px")
    test_set = load_image_set(test, size=size, label=label, where=f"--test {test}", with_parts=spec.is_part,
                              segmenter=segmenter, device=str(dev), desc="decode test")
    if spec.is_part:
        check_part(spec, _schema_of(test_set), where=f"--test {test}")
    y_test, positive = label_vector(test_set, label, where=f"--test {test}")
    s_test = sensitive_values(test_set, spec, where=f"--test {test}")
    check_groups(y_test, s_test, where=f"--test {test}")
    seconds["decode_test"] = time.perf_counter() - t0

    methods = ["erm"] + [m for m in baselines if m != "erm"]
    settings = {
        "label": label, "positive": _plain(positive), "sensitive": str(spec), "test": str(test),
        "train": {k: str(v) for k, v in train.items()}, "epochs": recipe.epochs, "size": size,
        "backbone": backbone, "seeds": seeds, "baselines": list(methods), "recipe": recipe.to_dict(),
        "device": dev.type,
    }
    # every training set is read (and checked) before the first model trains: a bad
    # second set fails in seconds, not after the first set's runs
    sets = []
    for k, (name, folder) in enumerate(train.items()):
        t0 = time.perf_counter()
        where = f"--train {name}={folder}"
        say(f"decoding training set '{name}' ({folder})")
        needs_groups = k == 0 and len(methods) > 1
        train_set = load_image_set(folder, size=size, label=label, where=where,
                                   with_parts=needs_groups and spec.is_part, segmenter=segmenter,
                                   device=str(dev), desc=f"decode {name}")
        y_train, _ = label_vector(train_set, label, positive=positive, where=where)
        if len(np.unique(y_train)) < 2:
            raise ValidationError(
                f"{where}: every image has the same '{label}' value; a classifier "
                f"needs both values ({_plain(positive)} and another)."
            )
        groups = None
        if needs_groups:
            if spec.is_part:
                check_part(spec, _schema_of(train_set), where=where)
            groups = np.char.add(np.char.add(y_train.astype(str), "|"),
                                 sensitive_values(train_set, spec, where=where))
        sets.append((name, folder, train_set, y_train, groups, methods if k == 0 else ["erm"]))
        seconds[f"decode_{name}"] = time.perf_counter() - t0

    runs: list[dict] = []
    seconds["train"] = 0.0
    # seed by seed, so a stopped evaluation holds whole seeds for every method
    for seed in range(seeds):
        for name, folder, train_set, y_train, groups, set_methods in sets:
            for method in set_methods:
                run_name = f"{name}-{method}-s{seed}"
                folder_out = out / "runs" / run_name
                key = {"train": str(Path(folder).resolve()), "test": str(Path(test).resolve()), "label": label,
                       "sensitive": str(spec), "method": method, "seed": seed, "size": size,
                       "backbone": backbone, "recipe": recipe.to_dict(), "n_train": len(train_set),
                       "pool": DEFAULT_POOL}
                t0 = time.perf_counter()
                predictions = _reuse(folder_out, key)
                trained = predictions is None
                if trained:
                    say(f"training {run_name}")
                    model = train_classifier(train_set.images, y_train, method=method, groups=groups,
                                             recipe=recipe, backbone=backbone, seed=seed, device=dev,
                                             desc=run_name)
                    scores = predict_scores(model, test_set.images, batch=recipe.predict_batch, device=dev)
                    predictions = pd.DataFrame({
                        "image": list(test_set.ids), "y_true": y_test, "y_pred": (scores >= 0.5).astype(np.int64),
                        "score": scores, "sensitive": s_test,
                    })
                    config = {"biasaudit_version": __version__, "run": run_name, "key": key,
                              "label": label, "positive": _plain(positive), "size": size,
                              "input": "uint8-range float N×3×S×S, RGB, images squashed to S×S",
                              "output": "one logit per image; sigmoid = P(label == positive)"}
                    save_classifier(model, folder_out, config)
                    # written last: a run folder with predictions is a finished run
                    write_parquet_atomic(folder_out / PREDICTIONS_FILE, predictions)
                spent = time.perf_counter() - t0
                seconds["train"] += spent
                runs.append({"train": name, "method": method, "seed": seed, "run": f"runs/{run_name}",
                             "seconds": round(spent, 2) if trained else None,
                             **score_predictions(predictions)})
                _write_metrics(out, runs, settings)
    summary = summarize(runs)
    _write_metrics(out, runs, settings)
    return EvaluateResult(out=out, runs=runs, summary=summary, settings=settings, seconds=seconds)


def _write_metrics(out: Path, runs: list[dict], settings: dict) -> None:
    write_json_atomic(out / METRICS_FILE, {"biasaudit_version": __version__, "runs": runs,
                                           "summary": summarize(runs), "settings": settings})


def _reuse(folder: Path, key: dict) -> pd.DataFrame | None:
    """The predictions of a finished run with the same key, else None (retrain)."""
    cfg, pred = folder / CONFIG_FILE, folder / PREDICTIONS_FILE
    if not (cfg.is_file() and pred.is_file()):
        return None
    try:
        if json.loads(cfg.read_text("utf-8")).get("key") != json.loads(json.dumps(key)):
            return None
        return pd.read_parquet(pred)
    except (OSError, ValueError):
        return None  # a damaged leftover is retrained, never trusted


def _schema_of(image_set: ImageSet):
    return image_set.dataset.schema


def _plain(value):
    return value.item() if isinstance(value, np.generic) else value


def _check_args(train: dict, test, out, baselines: Sequence[str], seeds: int, size: int) -> None:
    if not train:
        raise ValidationError("Give at least one training set: --train NAME=DIR (e.g. --train original=faces/).")
    for name in train:
        if not _NAME.match(name):
            raise ValidationError(
                f"--train {name}=...: the name must be letters, digits, '_', '-' or '.', starting with a "
                f"letter or digit (it names the run folders), e.g. --train original=faces/."
            )
    unknown = [b for b in baselines if b not in METHODS]
    if unknown:
        raise ValidationError(f"--baselines {','.join(unknown)}: unknown; expected any of {','.join(METHODS)}.")
    if seeds < 1:
        raise ValidationError(f"--seeds must be >= 1; got {seeds}.")
    if size < 16:
        raise ValidationError(f"--size must be >= 16 pixels; got {size}.")
    out_r = Path(out).resolve()
    for where, folder in [*((f"--train {k}", v) for k, v in train.items()), ("--test", test)]:
        data = Path(folder).resolve()
        if out_r == data or data in out_r.parents:
            raise ValidationError(
                f"--out {out} is inside {where} {folder}; the input folder is never written to. "
                f"Choose an output folder outside it."
            )
