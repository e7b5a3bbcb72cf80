"""Rebalance: repair a dataset by synthesizing the missing part × label combinations.

A new dataset folder (native layout) holds the originals plus synthesized samples, made
by part recombination (:func:`swap_part`) or diffusion inpainting, each kept only when the
quality gate (:func:`check_sample`) re-measures the intended attribute value.

>>> from biasaudit.rebalance import run_rebalance
>>> result = run_rebalance("WS", target="hair", out="NEW")  # doctest: +SKIP
>>> print(result.summary())  # doctest: +SKIP
"""

from biasaudit.rebalance.api import RebalanceError, RebalanceResult, run_rebalance
from biasaudit.rebalance.gate import GateVerdict, check_sample
from biasaudit.rebalance.plan import Cell, Plan, make_plan
from biasaudit.rebalance.recombine import PartSwap, RecombineError, swap_part

__all__ = [
    "Cell",
    "GateVerdict",
    "PartSwap",
    "Plan",
    "RebalanceError",
    "RebalanceResult",
    "RecombineError",
    "check_sample",
    "make_plan",
    "run_rebalance",
    "swap_part",
]
