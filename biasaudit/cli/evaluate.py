"""``biasaudit evaluate``: retrain on each training set (and the group baselines), score
fairness on one test set with fairlearn, print the comparison table."""

from __future__ import annotations

from pathlib import Path

import click


def _train_pairs(ctx, param, values: tuple[str, ...]) -> dict[str, str]:
    pairs: dict[str, str] = {}
    for value in values:
        name, sep, folder = value.partition("=")
        if not sep or not name.strip() or not folder.strip():
            raise click.BadParameter(f"'{value}': expected NAME=DIR, e.g. original=faces/.", param_hint="--train")
        if name.strip() in pairs:
            raise click.BadParameter(f"the name '{name}' is given twice; names must be unique.", param_hint="--train")
        pairs[name.strip()] = folder.strip()
    return pairs


def _baselines(ctx, param, value: str) -> tuple[str, ...]:
    return tuple(b.strip() for b in value.split(",") if b.strip())


@click.command("evaluate")
@click.option("--train", "train", multiple=True, required=True, callback=_train_pairs, metavar="NAME=DIR",
              help="A training set (repeatable, e.g. --train original=faces/ --train rebalanced=new/). "
                   "The baselines run on the first.")
@click.option("--test", "test", type=click.Path(path_type=Path), required=True, metavar="DIR",
              help="The test set every model is scored on (ideally balanced).")
@click.option("--label", required=True, metavar="COL", help="The binary label column to predict.")
@click.option("--sensitive", required=True, metavar="COL|part:PART",
              help="The group attribute: a label column (e.g. Blond_Hair) or part:PART[:ATTRIBUTE] "
                   "measured from the part maps with the scan's names (part:hair = hair colour).")
@click.option("--out", "out", type=click.Path(path_type=Path), required=True, metavar="EVAL",
              help="Output folder: metrics.json and runs/<name>-<method>-s<seed>/.")
@click.option("--baselines", default="erm", show_default=True, callback=_baselines,
              metavar="erm,oversample,reweight,subsample,groupdro",
              help="Methods trained on the first training set with its true (label × sensitive) groups.")
@click.option("--seeds", type=click.IntRange(min=1), default=3, show_default=True,
              help="Seeds per (training set, method); figures are mean ± std over them.")
@click.option("--epochs", type=click.IntRange(min=1), default=None,
              help="Passes over each training set (default: the recipe's 20).")
@click.option("--size", type=click.IntRange(min=16), default=64, show_default=True, metavar="PX",
              help="Images are resized once to PX × PX.")
@click.option("--backbone", default="small-cnn", show_default=True, metavar="small-cnn|efficientnet-lite0|DIR",
              help="small-cnn (from scratch), efficientnet-lite0 (ImageNet weights from the `pretrained` "
                   "extra) or a local transformers/timm backbone (DIR, hf:DIR, timm:NAME@FILE); fine-tuned.")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True)
@click.option("--segmenter", default="auto", show_default=True, metavar="auto|masks|mediapipe-face|segformer:DIR",
              help="Where part maps for --sensitive part:... come from (auto: the dataset's masks).")
@click.option("--report/--no-report", "report", default=True, show_default=True,
              help="Refresh the scan's HTML report (adding the fairness section) and print its path.")
@click.option("--workspace", "workspace", type=click.Path(path_type=Path, file_okay=False), default=None,
              metavar="WS", help="The scan workspace whose report to refresh (default: the one named in a "
                                 "rebalanced training folder's rebalance.json).")
def evaluate(train: dict[str, str], test: Path, label: str, sensitive: str, out: Path,
             baselines: tuple[str, ...], seeds: int, epochs: int | None, size: int, backbone: str,
             device: str, segmenter: str, report: bool, workspace: Path | None) -> None:
    """Prove a repair worked: retrain, score fairness, compare with baselines.

    \b
    Trains a classifier for --label on every training set and seed (recipe: small CNN at
    64 px, AdamW with weight decay 2.0 + cosine decay, flip + crop, last epoch scored — no group
    labels for model selection), plus the --baselines on the first training set, and
    scores each on --test with fairlearn: accuracy, worst-group accuracy over
    (label × sensitive) groups, selection rate, TPR/FPR per group, demographic parity and
    equalized odds differences. Writes EVAL/metrics.json and, per run,
    EVAL/runs/<name>-<method>-s<seed>/ (model.safetensors, config.json, predictions.parquet).

    \b
    Example:
      biasaudit evaluate --train original=faces/ --train rebalanced=new/ --test test/ \\
        --label Smiling --sensitive Blond_Hair --out eval/ \\
        --baselines erm,oversample,reweight,subsample,groupdro --seeds 3
    """
    from biasaudit.evaluate.api import run_evaluate

    result = run_evaluate(train=train, test=test, label=label, sensitive=sensitive, out=out,
                          baselines=baselines, seeds=seeds, epochs=epochs, size=size, backbone=backbone,
                          device=device, segmenter=segmenter,
                          log=lambda msg: click.echo(f"· {msg}", err=True))
    click.echo(result.table)
    click.echo(f"\n{len(result.runs)} runs, scored by {result.settings['sensitive']} "
               f"(worst group over label × sensitive). Details: {Path(out) / 'metrics.json'}")
    if report:
        from biasaudit.report import refresh_report

        path = refresh_report(workspace=workspace, eval=out)
        click.echo(f"Report: {path}" if path is not None else
                   f"No report: no scan workspace is known for these training folders; run "
                   f"`biasaudit report WS --eval {out}` (or pass --workspace WS).")
