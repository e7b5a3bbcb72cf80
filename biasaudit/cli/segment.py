"""``biasaudit segment DATA --out WS``: validate, segment (cached) and describe every part."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from biasaudit.cli._options import engine_options
from biasaudit.data import LAYOUTS

if TYPE_CHECKING:
    from biasaudit.core.engine import Engine


@click.command("segment")
@click.argument("data", type=click.Path(path_type=Path))
@click.option("--out", "out", type=click.Path(path_type=Path), required=True, metavar="WS",
              help="Workspace folder (created; never inside DATA).")
@click.option("--segmenter", default="auto", show_default=True,
              metavar="auto|masks|segformer:<dir-or-id>|mediapipe-face",
              help="Where part maps come from: the dataset's masks, a SegFormer-style model "
                   "directory (or hub id), or MediaPipe's offline face parser.")
@click.option("--schema", default=None, metavar="NAME|PATH",
              help="Part schema: celebamask-hq, lip, ade20k-150, ccp or a schema.json path "
                   "(default: the dataset's).")
@click.option("--layout", type=click.Choice(["auto", *LAYOUTS]), default="auto", show_default=True,
              help="Dataset layout; auto detects it from the folder names.")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True,
              help="Where model segmenters run (auto: a GPU when present).")
@click.option("--batch-size", type=click.IntRange(min=1), default=None,
              help="Images per model forward pass (default: 8 on a CPU, 64 on a GPU).")
@engine_options
@click.option("--revalidate", is_flag=True,
              help="Decode and hash every image again, even files unchanged since the last run.")
def segment(data: Path, out: Path, segmenter: str, schema: str | None, layout: str, device: str,
            batch_size: int | None, engine: Engine, revalidate: bool) -> None:
    """Turn every image of DATA into a part map and per-part statistics in WS.

    \b
    Writes WS/manifest.parquet, WS/segments.parquet (one row per image and part:
    present, area_frac, bbox, CIELAB colour and its name), WS/masks/ (label maps made
    by a model, cached by image hash) and WS/config.json. A re-run only decodes images
    whose files changed (size or modification time) since the last run in WS.
    WS/timings.json says where the time went (decoding vs the model, images/s).

    \b
    Examples:
      biasaudit segment DATA --out WS
      biasaudit segment photos/ --out WS --segmenter mediapipe-face
      biasaudit segment photos/ --out WS --segmenter segformer:models/face-parsing --schema celebamask-hq
      biasaudit segment DATA --out WS --engine ray --address HEAD:6379
    """
    from biasaudit.segment import segment_dataset

    result = segment_dataset(data, out, segmenter=segmenter, schema=schema, layout=layout,
                             device=device, batch_size=batch_size, revalidate=revalidate, engine=engine)
    click.echo(result.summary())
    if result.n_ok == 0:
        raise click.ClickException(
            f"No image of {data} could be segmented; see the errors above and in {out / 'manifest.parquet'}."
        )
