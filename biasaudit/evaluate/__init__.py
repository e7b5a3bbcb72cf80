"""Evaluate a repair: retrain on each training set and on strong group baselines, score
fairness with fairlearn on a test set, and probe what a model relies on by swapping one
part at a time.

>>> from biasaudit.evaluate import run_evaluate, run_probe
>>> r = run_evaluate(train={"original": "faces/", "rebalanced": "new/"}, test="test/",
...                  label="Smiling", sensitive="Blond_Hair", out="eval/")  # doctest: +SKIP
>>> print(r.table)  # doctest: +SKIP
"""

from biasaudit.evaluate.api import EvaluateResult, run_evaluate
from biasaudit.evaluate.fairness import check_groups, format_summary, score_predictions, summarize
from biasaudit.evaluate.models import build_classifier, load_classifier, save_classifier
from biasaudit.evaluate.probe import ProbeResult, run_probe
from biasaudit.evaluate.sensitive import SensitiveSpec, parse_sensitive
from biasaudit.evaluate.training import METHODS, Recipe, train_classifier

__all__ = [
    "METHODS",
    "EvaluateResult",
    "ProbeResult",
    "Recipe",
    "SensitiveSpec",
    "build_classifier",
    "check_groups",
    "format_summary",
    "load_classifier",
    "parse_sensitive",
    "run_evaluate",
    "run_probe",
    "save_classifier",
    "score_predictions",
    "summarize",
    "train_classifier",
]
