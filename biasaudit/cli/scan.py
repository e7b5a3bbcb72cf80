"""``biasaudit scan DATA --out WS``: the whole audit, from a dataset folder to findings."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from biasaudit.cli._options import engine_options
from biasaudit.data import LAYOUTS

if TYPE_CHECKING:
    from biasaudit.core.engine import Engine


def _split_parts(ctx, param, value: tuple[str, ...]) -> tuple[str, ...]:
    # --causal accepts "mouth,u_lip,l_lip" and repeated options alike
    return tuple(p.strip() for v in value for p in v.split(",") if p.strip())


@click.command("scan")
@click.argument("data", type=click.Path(path_type=Path))
@click.option("--out", "out", type=click.Path(path_type=Path), required=True, metavar="WS",
              help="Workspace folder (created; never inside DATA). Re-running continues there.")
@click.option("--label", "labels", multiple=True, metavar="COL",
              help="Label column to test every part attribute against (repeatable).")
@click.option("--sensitive", multiple=True, metavar="COL",
              help="Sensitive column (e.g. Male) to test attributes against (repeatable).")
@click.option("--causal", multiple=True, callback=_split_parts, metavar="PART,...",
              help="Parts that legitimately show the label (e.g. mouth,u_lip,l_lip for Smiling): "
                   "their findings are reported as expected evidence, not bias.")
@click.option("--segmenter", default="auto", show_default=True,
              metavar="auto|masks|segformer:<dir-or-id>|mediapipe-face", help="Where part maps come from.")
@click.option("--schema", default=None, metavar="NAME|PATH", help="Part schema (default: the dataset's).")
@click.option("--layout", type=click.Choice(["auto", *LAYOUTS]), default="auto", show_default=True)
@click.option("--recipe", default=None, metavar="FILE",
              help="HEML segment tree recipe (YAML); default: the schema's recipe in recipes/.")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True,
              help="Where HEML and model segmenters run (auto: a GPU when present).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed: a fixed seed gives identical findings.")
@click.option("--heml/--no-heml", default=True, show_default=True,
              help="Train HEML embeddings (appearance clusters, shortcut probes); --no-heml audits mask "
                   "statistics only, in seconds.")
# the same number as biasaudit.audit.scan.SCAN_EPOCHS_SCALE (a test checks it); importing
# the audit here would slow every command's --help
@click.option("--epochs-scale", type=click.FloatRange(min=0.05), default=0.5, show_default=True,
              help="Multiply every HEML node's recipe epochs. A self-supervised epoch shows each image "
                   "twice, so 0.5 trains a node on as many views as the recipe's epochs do under "
                   "`biasaudit heml`; raise it on a GPU.")
@click.option("--heml-max-images", type=click.IntRange(min=0), default=2000, show_default=True, metavar="N",
              help="HEML trains on a fixed sample of at most N images, so memory does not grow with the "
                   "dataset; every image is still embedded and audited. 0: train on all.")
@click.option("--concurrent", is_flag=True,
              help="Train all HEML nodes of a tree level at once (stacked parameters); sequential "
                   "is faster on CPUs, see reports/benchmarks.md.")
@click.option("--embedder", type=click.Choice(["recipe", "mlp", "dgml"]), default="recipe", show_default=True,
              help="HEML node embedder: the recipe's, an MLP, or DGML attentive grouping (attention maps).")
@click.option("--reference", type=click.Path(path_type=Path, dir_okay=False), default=None, metavar="FILE",
              help="Expected shares of attribute values (CSV attribute,value,share or JSON), e.g. "
                   "'hair colour,gray,0.05': under-representation is judged against them instead of "
                   "an even share, and a listed value seen in no image is a finding too.")
@engine_options
@click.option("--top", type=click.IntRange(min=1), default=10, show_default=True,
              help="How many findings to print.")
@click.option("--report/--no-report", "report", default=True, show_default=True,
              help="Write or refresh the HTML report WS/report.html and print its path.")
def scan(data: Path, out: Path, labels: tuple[str, ...], sensitive: tuple[str, ...],
         causal: tuple[str, ...], segmenter: str, schema: str | None, layout: str, recipe: str | None,
         device: str, seed: int, heml: bool, epochs_scale: float, heml_max_images: int, concurrent: bool,
         embedder: str,
         reference: Path | None, engine: Engine, top: int, report: bool) -> None:
    """Audit DATA for part-level bias and write the findings to WS.

    \b
    Runs validate → segment → statistics → HEML → embeddings → attributes → findings,
    writing WS/manifest.parquet, segments.parquet, models/, embeddings/,
    attributes.parquet and findings.json. Severity >= 0.5 means flagged (!).

    \b
    How findings are ranked:
      1. label biases (an attribute or embedding that goes with --label/--sensitive)
         and shortfalls against your --reference shares, by severity;
      2. then values rare against the default even share (every dataset has naturally
         rare values, e.g. white hair; these say "rare here" and never outrank a bias).
    A finding that vanishes once a higher-ranked one is held fixed is listed under it
    as a proxy. Findings on --causal parts, and the size/shape of parts a causal part
    occludes, are expected evidence (findings.json, with routed_because).
    Exit status 1 when nothing could be tested (the reason is printed).

    \b
    Examples:
      biasaudit scan DATA --out WS --label Smiling --causal mouth,u_lip,l_lip
      biasaudit scan DATA --out WS --label Eyeglasses --causal eye_g --sensitive Male
      biasaudit scan DATA --out WS --label Smiling --reference shares.csv
      biasaudit scan DATA --out WS --label Smiling --engine ray --address HEAD:6379
    """
    from biasaudit.audit.scan import NothingTestedError, run_scan

    try:
        result = run_scan(data, out, labels=labels, sensitive=sensitive, causal=causal,
                          segmenter=segmenter, schema=schema, layout=layout, recipe=recipe,
                          device=device, seed=seed, heml=heml, epochs_scale=epochs_scale,
                          concurrent=concurrent, reference=reference,
                          heml_max_images=None if heml_max_images == 0 else heml_max_images,
                          embedder=None if embedder == "recipe" else embedder, engine=engine,
                          log=lambda msg: click.echo(f"· {msg}", err=True))
    except NothingTestedError as exc:
        if exc.failures:
            click.echo(format_failures(exc.failures, out=out))
        raise click.ClickException(str(exc)) from exc
    if result.failures:
        click.echo(format_failures(result.failures, out=out) + "\n")
    click.echo(format_findings(result.findings, top=top))
    flagged = len(result.flagged)
    click.echo(
        f"\n{result.n_images} images ({result.n_errors} with errors), {result.n_tests} tests, "
        f"{len(result.findings)} findings ({flagged} flagged), {len(result.expected)} expected "
        f"evidence on causal parts. Details: {Path(out) / 'findings.json'}"
    )
    if report:
        from biasaudit.report import refresh_report

        click.echo(f"Report: {refresh_report(workspace=out)}")


def format_failures(failures, *, out, limit: int = 10) -> str:
    """The images that could not be used, with their reasons (as ``segment`` lists them)."""
    lines = [f"{len(failures)} image(s) could not be used (all are in {Path(out) / 'manifest.parquet'}):"]
    lines += [f"  {image}: {reason}" for image, reason in failures[:limit]]
    if len(failures) > limit:
        lines.append(f"  … and {len(failures) - limit} more")
    return "\n".join(lines)


def format_findings(findings, *, top: int = 10) -> str:
    """A plain-text table of the top findings (rank, severity, kind, segment, summary);
    a node that is not one schema part shows the parts it covers, and proxies follow
    the finding they re-describe."""
    if not findings:
        return "No finding passed the false-discovery control (q < 0.01)."
    lines = [f"{'rank':>4}  {'sev':>4}  {'':1} {'kind':<20} {'segment':<14} summary"]
    group = 0
    for f in findings[:top]:
        if f.group != group:
            group = f.group
            lines.append("      -- values rare against an even share (not label biases) --")
        mark = "!" if f.flagged else " "
        lines.append(f"{f.rank:>4}  {f.severity:>4.2f}  {mark} {f.kind:<20} {f.segment:<14} {f.summary}")
        if f.parts and tuple(f.parts) != (f.segment,):
            lines.append(f"{'':34}parts: {', '.join(f.parts)}")
        for proxy in f.evidence.get("proxies", []):
            lines.append(f"{'':34}{proxy['proxy_of']}: {proxy['attribute']} (sev {proxy['severity']:.2f})")
    if len(findings) > top:
        lines.append(f"… {len(findings) - top} more in findings.json")
    return "\n".join(lines)
