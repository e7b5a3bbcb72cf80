"""The counterfactual part-swap probe: what does a model rely on, part by part?

For a part P, pairs (base, donor) of images of ``DATA`` are drawn at random, the donor
preferably having another value of P's attribute than the base. Only P is swapped
(:func:`biasaudit.rebalance.recombine.swap_part`: aligned, filled, blended, occlusion
order kept), and the quality gate (:func:`biasaudit.rebalance.gate.check_sample`) keeps
the pair only when the new image really carries the donor's value (re-measured with the
scan's statistics). The model scores base and swapped image; a **flip** is a change of
the predicted label (threshold 0.5), the **delta** the change in P(positive).

A part's attribute is its colour name as the scan names it, or ``none`` where the part is
absent or too small to have a colour. Results per part: flip rate and mean |delta| over
all kept pairs, and per (from → to) value flip rate and mean signed delta, each with a
95 % percentile bootstrap CI over pairs. ``--all-parts`` ranks every part by flip rate.

Models: a run folder of ``biasaudit evaluate`` (its config says the input size), or a
user's TorchScript classifier taking a float tensor N×3×H×W (``input_size``; values in
[0, 1] with ``normalize="unit"``, or ImageNet-standardised with ``"imagenet"``) and
returning one logit per image (N or N×1: sigmoid) or two (N×2: softmax, column 1 is the
positive class).

>>> result = run_probe(model="eval/runs/original-erm-s0", data="test/", target="hair")  # doctest: +SKIP
>>> result.parts[0]["flip_rate"]  # doctest: +SKIP
0.41
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from biasaudit import __version__
from biasaudit.core.errors import BiasauditError, ValidationError
from biasaudit.core.io import write_json_atomic
from biasaudit.core.progress import progress

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
NO_VALUE = "none"


@dataclass(frozen=True)
class ProbeResult:
    """What :func:`run_probe` measured; ``parts`` as in the probe file (highest flip rate first)."""

    model: str
    data: str
    n_pairs: int
    parts: list[dict]
    out: Path | None = None
    rejected: dict[str, dict[str, int]] = field(default_factory=dict)
    seconds: float = 0.0

    def to_dict(self) -> dict:
        return {"biasaudit_version": __version__, "model": self.model, "data": self.data,
                "n_pairs": self.n_pairs, "parts": self.parts, "rejected": self.rejected}

    @property
    def table(self) -> str:
        return format_probe(self.parts)


# ------------------------------------------------------------------------------- models


def run_model(folder: str | Path, *, device: str = "cpu") -> Callable[[list[np.ndarray]], np.ndarray]:
    """P(positive) for full-size RGB images, with a model ``biasaudit evaluate`` trained
    (resized exactly as it was trained)."""
    import torch

    from biasaudit.evaluate.models import load_classifier

    model, config = load_classifier(folder, device=device)
    size = int(config["size"])

    def predict(images: list[np.ndarray]) -> np.ndarray:
        x = torch.from_numpy(_resize_all(images, size)).permute(0, 3, 1, 2).float().to(device)
        with torch.no_grad():
            return torch.sigmoid(model(x)).cpu().numpy().astype(np.float64)

    return predict


def torchscript_model(path: str | Path, *, input_size: int = 224, normalize: str = "unit",
                      device: str = "cpu") -> Callable[[list[np.ndarray]], np.ndarray]:
    """P(positive) for full-size RGB images with a user's TorchScript classifier."""
    import torch

    path = Path(path)
    if normalize not in ("unit", "imagenet"):
        raise ValidationError(f"--normalize {normalize}: expected unit or imagenet.")
    if not path.is_file():
        raise ValidationError(f"--torchscript {path}: no such file. Give a model saved with torch.jit.save.")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # TorchScript is what users ship today
            model = torch.jit.load(str(path), map_location=device)
    except (RuntimeError, ValueError, OSError, AttributeError) as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ValidationError(
            f"--torchscript {path}: is not a TorchScript model (torch.jit.load: {reason[:160]}). "
            f"Export one with torch.jit.script(model).save(FILE) or torch.jit.trace(model, example).save(FILE)."
        ) from None
    model.eval()
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)

    def predict(images: list[np.ndarray]) -> np.ndarray:
        x = torch.from_numpy(_resize_all(images, input_size)).permute(0, 3, 1, 2).float() / 255.0
        if normalize == "imagenet":
            x = (x - mean) / std
        with torch.no_grad():
            out = model(x.to(device))
        if isinstance(out, (tuple, list)):
            out = out[0]
        out = out.float().cpu()
        if out.ndim == 2 and out.shape[1] == 2:
            return torch.softmax(out, dim=1)[:, 1].numpy().astype(np.float64)
        if out.ndim == 2 and out.shape[1] == 1:
            out = out[:, 0]
        if out.ndim != 1 or out.shape[0] != len(images):
            raise ValidationError(
                f"--torchscript {path}: returned shape {tuple(out.shape)} for {len(images)} images; expected "
                f"one logit per image (N or N×1) or two (N×2)."
            )
        return torch.sigmoid(out).numpy().astype(np.float64)

    return predict


def _resize_all(images: Sequence[np.ndarray], size: int) -> np.ndarray:
    import cv2

    out = np.empty((len(images), size, size, 3), np.uint8)
    for i, img in enumerate(images):
        interp = cv2.INTER_AREA if max(img.shape[:2]) > size else cv2.INTER_LINEAR
        out[i] = cv2.resize(img, (size, size), interpolation=interp)
    return out


# ------------------------------------------------------------------------------ figures


def bootstrap_ci(values: np.ndarray, *, n_boot: int = 1000, seed: int = 0, level: float = 0.95) -> list[float]:
    """Percentile bootstrap CI of the mean of ``values``.

    >>> bootstrap_ci(np.array([1.0, 1.0, 1.0]))
    [1.0, 1.0]
    """
    values = np.asarray(values, dtype=np.float64)
    if len(values) == 0:
        return [float("nan"), float("nan")]
    rng = np.random.default_rng(seed)
    means = values[rng.integers(0, len(values), size=(n_boot, len(values)))].mean(axis=1)
    lo, hi = np.quantile(means, [(1 - level) / 2, 1 - (1 - level) / 2])
    return [float(lo), float(hi)]


def part_figures(part: str, frm: Sequence[str], to: Sequence[str], p_base: np.ndarray, p_swap: np.ndarray,
                 *, n_boot: int = 1000, seed: int = 0) -> dict:
    """The probe record of one part from its kept pairs (see the module docstring).

    >>> r = part_figures("hair", ["a", "a"], ["b", "b"], np.array([0.2, 0.7]), np.array([0.8, 0.6]))
    >>> r["flip_rate"], r["by_value"][0]["from"], r["by_value"][0]["n"]
    (0.5, 'a', 2)
    """
    p_base, p_swap = np.asarray(p_base, np.float64), np.asarray(p_swap, np.float64)
    flips = ((p_base >= 0.5) != (p_swap >= 0.5)).astype(np.float64)
    delta = p_swap - p_base
    frm, to = np.asarray(frm, dtype=object), np.asarray(to, dtype=object)
    record = {"part": part, "n_pairs": int(len(flips)),
              "flip_rate": float(flips.mean()) if len(flips) else None,
              "flip_rate_ci": _none_nan(bootstrap_ci(flips, n_boot=n_boot, seed=seed)),
              "mean_abs_delta": float(np.abs(delta).mean()) if len(flips) else None,
              "mean_abs_delta_ci": _none_nan(bootstrap_ci(np.abs(delta), n_boot=n_boot, seed=seed)),
              "by_value": []}
    pairs = sorted({(a, b) for a, b in zip(frm, to, strict=True)})
    for a, b in pairs:
        sel = (frm == a) & (to == b)
        record["by_value"].append({
            "from": str(a), "to": str(b), "n": int(sel.sum()),
            "flip_rate": float(flips[sel].mean()),
            "flip_rate_ci": bootstrap_ci(flips[sel], n_boot=n_boot, seed=seed),
            "mean_delta": float(delta[sel].mean()),
            "mean_delta_ci": bootstrap_ci(delta[sel], n_boot=n_boot, seed=seed),
        })
    record["by_value"].sort(key=lambda r: (-r["n"], r["from"], r["to"]))
    return record


def _none_nan(ci: list[float]) -> list[float] | None:
    return None if any(np.isnan(ci)) else ci


def format_probe(parts: Sequence[dict], *, top_values: int = 3) -> str:
    """The table ``biasaudit probe`` prints: one line per part, then its main value swaps."""
    lines = [f"{'part':<12} {'pairs':>5}  {'flip rate':>9}  {'95% CI':>15}  {'mean |Δp|':>9}"]
    for r in parts:
        if not r["n_pairs"]:
            lines.append(f"{r['part']:<12} {0:>5}  {'—':>9}  {'(no valid pair)':>15}")
            continue
        lo, hi = r["flip_rate_ci"]
        lines.append(f"{r['part']:<12} {r['n_pairs']:>5}  {r['flip_rate']:>9.1%}  "
                     f"{f'[{lo:.1%}, {hi:.1%}]':>15}  {r['mean_abs_delta']:>9.3f}")
        for v in r["by_value"][:top_values]:
            lines.append(f"  {v['from']} → {v['to']}: n={v['n']}, flips {v['flip_rate']:.1%}, "
                         f"mean Δp {v['mean_delta']:+.3f}")
    return "\n".join(lines)


# -------------------------------------------------------------------------------- probe


def run_probe(*, model: str | Path | None = None, torchscript: str | Path | None = None,
              data: str | Path, target: str | None = None, all_parts: bool = False, pairs: int = 200,
              out: str | Path | None = None, input_size: int = 224, normalize: str = "unit",
              device: str = "auto", segmenter: str = "auto", seed: int = 0, n_boot: int = 1000,
              max_images: int = 2000, log: Callable[[str], None] | None = None) -> ProbeResult:
    """Probe a model with counterfactual part swaps on ``data`` (see the module docstring)."""
    from biasaudit.evaluate.images import load_image_set
    from biasaudit.evaluate.training import resolve_device

    say = log or (lambda msg: None)
    start = time.perf_counter()
    if (model is None) == (torchscript is None):
        raise ValidationError("Give exactly one of --model EVAL/runs/<run> or --torchscript FILE.")
    if not all_parts and not target:
        raise ValidationError("Give --target PART (e.g. --target hair), or --all-parts to rank every part.")
    if pairs < 1:
        raise ValidationError(f"--pairs must be >= 1; got {pairs}.")
    if input_size < 8:
        raise ValidationError(f"--input-size must be >= 8 pixels; got {input_size}.")
    dev = str(resolve_device(device))
    predict = (run_model(model, device=dev) if model is not None
               else torchscript_model(torchscript, input_size=input_size, normalize=normalize, device=dev))
    say(f"reading {data} (full size, with part maps)")
    pool = load_image_set(data, size=8, where=f"--data {data}", with_parts=True, segmenter=segmenter,
                          device=dev, desc="decode", keep_full=True, limit=max_images, seed=seed)
    schema = pool.part_schema  # the segmenter's schema: the dataset's own for its masks
    present_parts = set(pool.segments.loc[pool.segments["present"], "part"].astype(str))
    if all_parts:
        parts = [p for p in schema.part_names if p in present_parts]
    else:
        if target not in schema.part_names:
            raise ValidationError(
                f"--target {target}: not a part of {data}'s schema '{schema.name}'. Expected one of: "
                f"{', '.join(schema.part_names)}."
            )
        parts = [target]
    values = _part_values(pool)
    records, rejected = [], {}
    for part in parts:
        say(f"swapping {part}")
        record, rej = _probe_part(part, pool, schema, values[part] if part in values else None, predict,
                                  pairs=pairs, seed=seed, n_boot=n_boot)
        records.append(record)
        rejected[part] = rej
    records.sort(key=lambda r: (-(r["flip_rate"] if r["flip_rate"] is not None else -1.0), r["part"]))
    result = ProbeResult(model=str(model if model is not None else torchscript), data=str(data),
                         n_pairs=int(sum(r["n_pairs"] for r in records)), parts=records,
                         out=Path(out) if out else None, rejected=rejected,
                         seconds=time.perf_counter() - start)
    if out:
        write_json_atomic(out, result.to_dict())
    return result


def _part_values(pool) -> dict[str, np.ndarray]:
    """part → per-image value (colour name, or ``none``), in ``pool.ids`` order."""
    from biasaudit.audit.attributes import mask_attributes

    attrs = mask_attributes(pool.segments)
    out = {}
    for part, rows in attrs.groupby("node"):
        colour = rows.set_index("image")["colour"].reindex(list(pool.ids)).fillna("")
        presence = rows.set_index("image")["presence"].reindex(list(pool.ids)).fillna("absent")
        # a present part too small for a colour name is "present"; an absent one "none"
        named = np.where(colour != "", colour, np.where(presence == "present", "present", NO_VALUE))
        out[str(part)] = named.astype(object)
    return out


def _probe_part(part: str, pool, schema, values: np.ndarray | None, predict, *, pairs: int, seed: int,
                n_boot: int) -> tuple[dict, dict[str, int]]:
    from biasaudit.rebalance.gate import check_sample
    from biasaudit.rebalance.recombine import RecombineError, swap_part

    rng = np.random.default_rng([seed, sum(map(ord, part))])
    n = len(pool.ids)
    part_id = schema.id_of(part)
    if values is None:
        values = np.full(n, NO_VALUE, dtype=object)
    rejected = {"recombine_failed": 0, "area_out_of_range": 0, "wrong_value": 0, "no_part": 0}
    frm: list[str] = []
    to: list[str] = []
    bases: list[int] = []
    swapped: list[np.ndarray] = []
    attempts = 0
    # the bar counts kept pairs; rejected attempts do not move it
    bar_iter = progress(range(pairs), desc=f"probe {part}", total=pairs, unit="pair")
    while len(swapped) < pairs and attempts < 4 * pairs:
        attempts += 1
        b = int(rng.integers(n))
        other = np.flatnonzero(values != values[b])
        if len(other) == 0:
            other = np.delete(np.arange(n), b)
        if len(other) == 0:
            break
        d = int(other[rng.integers(len(other))])
        if values[b] == NO_VALUE and values[d] == NO_VALUE:
            rejected["no_part"] += 1
            continue
        try:
            swap = swap_part(pool.full[b], pool.maps[b], pool.full[d], pool.maps[d], part_ids=[part_id],
                             schema=schema, seed=seed + attempts)
        except RecombineError:
            rejected["recombine_failed"] += 1
            continue
        if swap.action == "none":
            rejected["no_part"] += 1
            continue
        want = values[d]
        attribute, expected = ("presence", "absent") if want == NO_VALUE else (
            ("presence", "present") if want == "present" else ("colour", want))
        verdict = check_sample(swap.image, swap.mask, schema=schema, part=part, attribute=attribute,
                               expected_value=expected)
        if not verdict.ok:
            rejected[verdict.reason] = rejected.get(verdict.reason, 0) + 1
            continue
        frm.append(str(values[b]))
        to.append(str(want))
        bases.append(b)
        swapped.append(swap.image)
        next(bar_iter, None)
    p_base_all = _predict_batched(predict, [pool.full[b] for b in bases])
    p_swap = _predict_batched(predict, swapped)
    return part_figures(part, frm, to, p_base_all, p_swap, n_boot=n_boot, seed=seed), rejected


def _predict_batched(predict, images: list[np.ndarray], batch: int = 128) -> np.ndarray:
    if not images:
        return np.zeros(0)
    try:
        return np.concatenate([predict(images[i : i + batch]) for i in range(0, len(images), batch)])
    except BiasauditError:
        raise
    except RuntimeError as exc:
        raise ValidationError(
            f"the model failed on a batch of {min(batch, len(images))} images "
            f"({str(exc).strip().splitlines()[0][:160]}); check --input-size and --normalize."
        ) from None
