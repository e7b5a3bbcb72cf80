"""``biasaudit report WS``: the self-contained HTML bias report of a workspace."""

from __future__ import annotations

from pathlib import Path

import click


@click.command("report")
@click.argument("workspace", metavar="WS", type=click.Path(path_type=Path, file_okay=False))
@click.option("--rebalance", "rebalance", type=click.Path(path_type=Path), default=None, metavar="NEW",
              help="A folder written by `biasaudit rebalance` (adds the Repair section).")
@click.option("--eval", "eval_dir", type=click.Path(path_type=Path), default=None, metavar="EVAL",
              help="A folder written by `biasaudit evaluate` (adds the Fairness section).")
@click.option("--probe", "probe", type=click.Path(path_type=Path, dir_okay=False), default=None, metavar="FILE",
              help="The JSON file written by `biasaudit probe --out FILE` (adds the Model reliance section).")
@click.option("--out", "out", type=click.Path(path_type=Path, dir_okay=False), default=None, metavar="FILE",
              help="Where to write the report.  [default: WS/report.html]")
def report(workspace: Path, rebalance: Path | None, eval_dir: Path | None, probe: Path | None,
           out: Path | None) -> None:
    """Write one self-contained HTML report of a scanned workspace WS.

    \b
    Sections: verdict, ranked findings with evidence and exemplars, expected evidence,
    dataset, HEML trees, repair, fairness, model reliance, reproduce. No network and no
    JavaScript are needed to read it; print it to PDF for a document.

    \b
    Examples:
      biasaudit report ws/
      biasaudit report ws/ --rebalance new/ --eval eval/ --probe probe.json --out report.html
    """
    from biasaudit.report import write_report

    path = write_report(workspace, rebalance=rebalance, eval=eval_dir, probe=probe, out=out)
    click.echo(f"Report: {path}")
