"""``biasaudit explain IMG_A IMG_B --workspace WS``: the HEML metric tree of two images."""

from __future__ import annotations

import json
from pathlib import Path

import click


@click.command("explain")
@click.argument("image_a", metavar="IMG_A")
@click.argument("image_b", metavar="IMG_B")
@click.option("--workspace", "workspace", type=click.Path(path_type=Path, file_okay=False), required=True,
              metavar="WS", help="A workspace whose models/ holds a trained HEML (after `biasaudit scan`).")
@click.option("--json", "as_json", is_flag=True, help="Print the tree as JSON instead of text.")
@click.option("--out", "out", type=click.Path(path_type=Path, dir_okay=False), default=None,
              metavar="PNG", help="Also draw the tree (both crops per node, distance above) to this PNG.")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True,
              help="Where the node models run.")
def explain(image_a: str, image_b: str, workspace: Path, as_json: bool, out: Path | None, device: str) -> None:
    """Show how far apart IMG_A and IMG_B are at every node of the segment tree.

    IMG_A and IMG_B are image ids of WS (the `image` column of WS/manifest.parquet).
    Distances are pytorch-metric-learning's SNR distance between the two node embeddings:
    0 = the same, about 2 = unrelated; a node whose parts one image lacks shows `absent`.

    \b
    Examples:
      biasaudit explain 00001.png 00002.png --workspace WS
      biasaudit explain 00001.png 00002.png --workspace WS --json --out tree.png
    """
    from biasaudit.heml.metric_tree import render_metric_tree
    from biasaudit.heml.workspace import explain_workspace

    tree = explain_workspace(workspace, image_a, image_b, device=device)
    if as_json:
        click.echo(json.dumps(tree.to_dict(), indent=2))
    else:
        by_name = {n.node: n for n in tree.nodes}

        def show(name: str, depth: int) -> None:
            node = by_name[name]
            if node.snr_distance is not None:
                value = f"{node.snr_distance:.3f}"
            else:
                missing = [label for label, ok in (("A", node.present_a), ("B", node.present_b)) if not ok]
                value = f"absent in {' and '.join(missing)}"
            click.echo(f"{'  ' * depth}{name}: {value}")
            for child in node.children:
                show(child, depth + 1)

        click.echo(f"SNR distance between {image_a} and {image_b} (0 = same):")
        show(tree.root, 1)
    if out is not None:
        render_metric_tree(tree, out, title=f"{image_a} vs {image_b}")
        if not as_json:
            click.echo(f"Wrote {out}")
