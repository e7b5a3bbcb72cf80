"""``biasaudit probe``: counterfactual part swaps — how often does a model's prediction
flip when only one part changes?"""

from __future__ import annotations

from pathlib import Path

import click


@click.command("probe")
@click.option("--model", "model", type=click.Path(path_type=Path), default=None, metavar="EVAL/runs/<run>",
              help="A run folder written by `biasaudit evaluate`.")
@click.option("--torchscript", type=click.Path(path_type=Path), default=None, metavar="FILE",
              help="Your own classifier saved with torch.jit.save: float N×3×H×W in, one logit per image "
                   "(N or N×1) or two (N×2, column 1 positive) out.")
@click.option("--data", type=click.Path(path_type=Path), required=True, metavar="DIR",
              help="Images with part maps (e.g. the balanced test set) to draw pairs from.")
@click.option("--target", default=None, metavar="PART", help="The part to swap (e.g. hair).")
@click.option("--all-parts", is_flag=True, help="Swap every part in turn and rank parts by flip rate.")
@click.option("--pairs", type=click.IntRange(min=1), default=200, show_default=True, metavar="N",
              help="Kept (gate-passing) pairs per part.")
@click.option("--out", "out", type=click.Path(path_type=Path), default=None, metavar="FILE",
              help="Write the results as JSON.")
@click.option("--input-size", type=click.IntRange(min=8), default=224, show_default=True, metavar="PX",
              help="--torchscript only: images are resized to PX × PX.")
@click.option("--normalize", type=click.Choice(["unit", "imagenet"]), default="unit", show_default=True,
              help="--torchscript only: unit = RGB in [0, 1]; imagenet = (x - mean) / std with ImageNet statistics.")
@click.option("--segmenter", default="auto", show_default=True, metavar="auto|masks|mediapipe-face|segformer:DIR",
              help="Where part maps come from (auto: the dataset's masks).")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True)
@click.option("--seed", type=int, default=0, show_default=True, help="Seed for pairs and bootstrap.")
def probe(model: Path | None, torchscript: Path | None, data: Path, target: str | None, all_parts: bool,
          pairs: int, out: Path | None, input_size: int, normalize: str, segmenter: str, device: str,
          seed: int) -> None:
    """Measure a model's reliance on a part by swapping only that part between images.

    \b
    Pairs of images from DATA get the target part swapped (rebalance's recombine
    generator; the quality gate keeps a pair only when the new image carries the donor's
    value). Reports how often the predicted label flips and the mean change in the
    predicted probability, overall and per (from → to) value, with 95% bootstrap CIs.

    \b
    Examples:
      biasaudit probe --model eval/runs/original-erm-s0 --data test/ --target hair
      biasaudit probe --model eval/runs/original-erm-s0 --data test/ --all-parts --out probe.json
      biasaudit probe --torchscript clf.pt --input-size 224 --normalize imagenet --data test/ --target hair
    """
    from biasaudit.evaluate.probe import run_probe

    result = run_probe(model=model, torchscript=torchscript, data=data, target=target, all_parts=all_parts,
                       pairs=pairs, out=out, input_size=input_size, normalize=normalize, device=device,
                       segmenter=segmenter, seed=seed, log=lambda msg: click.echo(f"· {msg}", err=True))
    click.echo(result.table)
    if out:
        click.echo(f"\nDetails: {out}")
