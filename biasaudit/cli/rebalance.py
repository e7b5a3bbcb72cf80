"""``biasaudit rebalance WS --target PART --out NEW``: repair a flagged part-level bias by
synthesizing the missing part × label combinations into a new dataset folder."""

from __future__ import annotations

from pathlib import Path

import click


@click.command("rebalance")
@click.argument("workspace", metavar="WS", type=click.Path(path_type=Path))
@click.option("--target", required=True, metavar="PART",
              help="The part whose attribute is tied to the label (e.g. hair, hat, sunglasses).")
@click.option("--out", "out", required=True, type=click.Path(path_type=Path), metavar="NEW",
              help="New dataset folder (native layout); never inside DATA or WS.")
@click.option("--label", default=None, metavar="COL", help="Label column (default: the scan's only label).")
@click.option("--attribute", default=None, metavar="KIND",
              help="colour, presence, size, shape or cluster (default: the top flagged finding on PART).")
@click.option("--strategy", type=click.Choice(["decorrelate", "equalize"]), default="decorrelate",
              show_default=True,
              help="decorrelate: the attribute becomes independent of the label (and real images of every "
                   "cell are edited so that synthetic origin is, too); equalize: every value equally common "
                   "within each label.")
@click.option("--method", type=click.Choice(["recombine", "inpaint"]), default="recombine", show_default=True,
              help="recombine: paste a donor's part (CPU, no model); inpaint: a diffusers inpainting "
                   "pipeline repaints the part (needs --model).")
@click.option("--budget", type=click.IntRange(min=0), default=None, metavar="N",
              help="At most N new samples; cells are then filled in proportion to their need.")
@click.option("--model", default=None, metavar="DIR",
              help="Diffusers inpainting pipeline folder (or a hub id when you have a network), for --method inpaint.")
@click.option("--steps", type=click.IntRange(min=1), default=20, show_default=True,
              help="Denoising steps for --method inpaint.")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True,
              help="Where --method inpaint runs (auto: a GPU when present, bf16 where supported).")
@click.option("--tries", type=click.IntRange(min=1), default=5, show_default=True,
              help="Donors tried per sample before it is given up (each reject is counted by reason).")
@click.option("--companions", default="auto", show_default=True, metavar="auto|none|PART,...",
              help="Parts swapped from the same donor with PART. auto: for a colour attribute, every part "
                   "whose colour goes with PART's (Cramér's V >= 0.5; e.g. brows drawn in the hair colour), "
                   "so the model cannot keep the old shortcut through them.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed: the same seed gives the same NEW.")
@click.option("--overwrite", is_flag=True, help="Replace an existing NEW.")
@click.option("--force", is_flag=True, help="Rebalance even when the scan flagged nothing on PART.")
@click.option("--report/--no-report", "report", default=True, show_default=True,
              help="Refresh the HTML report WS/report.html (adding the repair) and print its path.")
def rebalance(workspace: Path, target: str, out: Path, label: str | None, attribute: str | None, strategy: str,
              method: str, budget: int | None, model: str | None, steps: int, device: str, tries: int,
              companions: str, seed: int, overwrite: bool, force: bool, report: bool) -> None:
    """Write NEW: the dataset scanned into WS plus synthesized samples, so that the flagged
    attribute of PART no longer predicts the label.

    \b
    NEW holds the originals (hard links), images/synthetic/ and masks/synthetic/,
    labels.csv with `origin` (real | synthetic) and provenance columns, schema.json and
    rebalance.json (plan, rejects by reason, before/after). A killed run re-run with the
    same arguments continues where it stopped and ends with the same NEW.

    \b
    Examples:
      biasaudit rebalance ws/ --target hair --out faces-rebalanced/
      biasaudit rebalance ws/ --target hat --label Eyeglasses --out new/ --budget 500
      biasaudit rebalance ws/ --target hair --out new/ --method inpaint --model ./sd-inpaint
    """
    from biasaudit.rebalance.api import run_rebalance

    result = run_rebalance(workspace, target=target, out=out, label=label, attribute=attribute,
                           strategy=strategy, method=method, budget=budget, model=model, seed=seed,
                           companions=companions,
                           overwrite=overwrite, force=force, max_tries=tries, device=device, steps=steps,
                           log=lambda msg: click.echo(msg, err=True))
    click.echo(result.summary())
    if report:
        from biasaudit.report import refresh_report

        click.echo(f"Report: {refresh_report(workspace=workspace, rebalance=result.out)}")
