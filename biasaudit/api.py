"""The Python API: one function per stage, keyword-only options, dataclass results.

The same functions the CLI commands call, for notebooks::

    import biasaudit

    biasaudit.synth_faces("faces/", n=1000, plant="Smiling:Blond_Hair=0.9")
    scan = biasaudit.scan("faces/", out="ws/", labels="Smiling", causal="mouth,u_lip,l_lip")
    scan.findings[0].summary

They are bound on the package (``biasaudit.scan``, ``biasaudit.rebalance``, ...); each
returns the stage's frozen dataclass (``ScanResult``, ``RebalanceResult``,
``EvaluateResult``, ``ProbeResult``, :class:`ReportResult`).

>>> import biasaudit
>>> callable(biasaudit.rebalance) and callable(biasaudit.report)
True
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any


def _names(value: str | Sequence[str] | None) -> tuple[str, ...]:
    """``"mouth,u_lip"`` or ``["mouth", "u_lip"]`` → ``("mouth", "u_lip")``."""
    if value is None:
        return ()
    if isinstance(value, str):
        value = [value]
    return tuple(p.strip() for v in value for p in str(v).split(",") if p.strip())


def synth_faces(out: str | Path, *, n: int, seed: int = 0, plant: str | Sequence[str] = (),
                rare: str | Sequence[str] = (), balanced: bool = False, size: int = 128,
                overwrite: bool = False) -> Path:
    """Generate SynthFaces (``biasaudit synth faces``) into ``out``; returns the folder.

    ``plant``: ``"Smiling:Blond_Hair=0.9"`` (or several); ``balanced``: every planted
    (label, attribute) cell equally frequent, for an unbiased test set.
    """
    from biasaudit.data.synth.faces import SynthFacesConfig, write_synthfaces

    plants = (plant,) if isinstance(plant, str) else tuple(plant)
    rares = (rare,) if isinstance(rare, str) else tuple(rare)
    config = SynthFacesConfig(n=n, seed=seed, size=size, plants=plants, rares=rares, balanced=balanced)
    return Path(write_synthfaces(out, config, overwrite=overwrite))


def scan(data: str | Path, *, out: str | Path, labels: str | Sequence[str] = (),
         sensitive: str | Sequence[str] = (), causal: str | Sequence[str] = (), heml: bool = True,
         segmenter: str = "auto", schema: str | None = None, layout: str = "auto", recipe: str | None = None,
         device: str = "auto", seed: int = 0, epochs_scale: float | None = None, log=None, **options: Any):
    """Audit ``data`` into workspace ``out`` (``biasaudit scan``); returns a ``ScanResult``.

    ``labels``/``sensitive``/``causal`` take one name, a comma-separated string or a list;
    ``epochs_scale`` None trains HEML for the scan's default share of the recipe's epochs
    (:data:`biasaudit.audit.scan.SCAN_EPOCHS_SCALE`).
    """
    from biasaudit.audit.scan import run_scan

    return run_scan(data, out, labels=_names(labels), sensitive=_names(sensitive), causal=_names(causal),
                    segmenter=segmenter, schema=schema, layout=layout, recipe=recipe, device=device, seed=seed,
                    heml=heml, epochs_scale=epochs_scale, log=log, **options)


def rebalance(workspace: str | Path, *, target: str, out: str | Path, label: str | None = None,
              attribute: str | None = None, strategy: str = "decorrelate", method: str = "recombine",
              budget: int | None = None, seed: int = 0, overwrite: bool = False, **options: Any):
    """Repair the dataset behind ``workspace`` into ``out`` (``biasaudit rebalance``); returns a
    ``RebalanceResult`` (``out``, ``plan``, ``generated``, ``rejected``, ``before``, ``after``)."""
    from biasaudit.rebalance.api import run_rebalance

    return run_rebalance(workspace, target=target, out=out, label=label, attribute=attribute, strategy=strategy,
                         method=method, budget=budget, seed=seed, overwrite=overwrite, **options)


def evaluate(*, train: Mapping[str, str | Path], test: str | Path, label: str, sensitive: str,
             out: str | Path, baselines: Sequence[str] = ("erm",), seeds: int = 3, epochs: int | None = None,
             size: int = 64, backbone: str = "small-cnn", device: str = "auto", **options: Any):
    """Train a classifier per training set (and baseline) and score fairness on ``test``
    (``biasaudit evaluate``); returns an ``EvaluateResult``."""
    from biasaudit.evaluate.api import run_evaluate

    return run_evaluate(train=dict(train), test=test, label=label, sensitive=sensitive, out=out,
                        baselines=tuple(baselines), seeds=seeds, epochs=epochs, size=size, backbone=backbone,
                        device=device, **options)


def probe(*, data: str | Path, model: str | Path | None = None, torchscript: str | Path | None = None,
          target: str | None = None, all_parts: bool = False, out: str | Path | None = None, **options: Any):
    """Swap one part at a time between test images and count prediction flips
    (``biasaudit probe``); returns a ``ProbeResult``."""
    from biasaudit.evaluate.probe import run_probe

    return run_probe(model=model, torchscript=torchscript, data=data, target=target, all_parts=all_parts,
                     out=out, **options)


@dataclass(frozen=True)
class ReportResult:
    """Where the report was written, and how big it is."""

    path: Path
    n_bytes: int
    sections: tuple[str, ...]


def report(workspace: str | Path, *, rebalance: str | Path | None = None, eval: str | Path | None = None,
           probe: str | Path | None = None, out: str | Path | None = None) -> ReportResult:
    """Write the self-contained HTML report of ``workspace`` (``biasaudit report``)."""
    from biasaudit.report import SECTIONS, write_report

    path = write_report(workspace, rebalance=rebalance, eval=eval, probe=probe, out=out)
    return ReportResult(path=path, n_bytes=path.stat().st_size, sections=tuple(s for s, _ in SECTIONS))
