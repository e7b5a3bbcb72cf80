"""``biasaudit explain IMG_A IMG_B --workspace WS``: the HEML metric tree of two images."""

from __future__ import annotations

import json
from pathlib import Path

import click


@click.command("explain")
@click.argument("image_a", metavar="IMG_A")
@click.argument("image_b", metavar="IMG_B")
@click.option("--workspace", "workspace", type=click.Path(path_type=Path, file_okay=False), required=True,
              metavar="WS", help="A workspace whose models/ holds a trained HEML (`biasaudit heml` or `scan`).")
@click.option("--mask", "masks", multiple=True, type=click.Path(path_type=Path, dir_okay=False), metavar="PNG",
              help="Label map of a new image, for a workspace segmented from the dataset's own masks; "
                   "one per new image, in the order the new images are given.")
@click.option("--json", "as_json", is_flag=True,
              help="Print the tree as JSON (with both whole-image distances and, for DGML nodes, "
                   "each group's attention map).")
@click.option("--out", "out", type=click.Path(path_type=Path, dir_okay=False), default=None,
              metavar="PNG", help="Also draw the tree (both crops per node, distance above; DGML "
                                  "nodes with each group's attention) to this PNG.")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True,
              help="Where the node models run.")
def explain(image_a: str, image_b: str, workspace: Path, masks: tuple[Path, ...], as_json: bool,
            out: Path | None, device: str) -> None:
    """Show how far apart IMG_A and IMG_B are at every node of the segment tree.

    IMG_A and IMG_B are image ids of WS (the `image` column of WS/manifest.parquet), paths
    to images of its dataset, or paths to new images (segmented with the workspace's
    segmenter; with a masks workspace give each new image's label map with --mask).
    Distances are pytorch-metric-learning's SNR distance between the two node embeddings:
    0 = the same, about 2 = unrelated; a node whose parts one image lacks shows `absent`.
    Two whole-image distances close the output: the root model's own embedding, and the
    metric tree's (node distances weighted by each node's held-out skill on its label).

    \b
    Examples:
      biasaudit explain 00001.png 00002.png --workspace WS
      biasaudit explain data/images/00001.png my_photo.jpg --workspace WS --out tree.png
      biasaudit explain 00001.png new.png --mask new_mask.png --workspace WS --json
    """
    from biasaudit.heml.workspace import explain_workspace, usable_images

    if out is not None:
        _refuse_inside_data(out, workspace)
    new: list[str] = []
    if masks:
        known = set(usable_images(workspace)["image"])
        new = [ref for ref in (image_a, image_b) if ref not in known and not _inside_dataset(ref, workspace)]
    if masks and len(masks) != len(new):
        raise click.UsageError(
            f"--mask was given {len(masks)} time(s) but {len(new)} of the images are new "
            f"({', '.join(new) or 'none'}); give one --mask per new image, in order."
        )
    given = dict(zip(new, masks, strict=False))
    tree = explain_workspace(workspace, image_a, image_b, device=device,
                             mask_a=given.get(image_a), mask_b=given.get(image_b))
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
            extra = "  (DGML: attention maps in --json / --out)" if name in tree.attention else ""
            click.echo(f"{'  ' * depth}{name}: {value}{extra}")
            for child in node.children:
                show(child, depth + 1)

        click.echo(f"SNR distance between {image_a} and {image_b} (0 = same):")
        show(tree.root, 1)
        click.echo(f"whole image, root embedding: {_fmt(tree.root_distance)}")
        click.echo(f"whole image, metric tree:    {_fmt(tree.tree_distance)}")
    if out is not None:
        from biasaudit.heml.metric_tree import render_metric_tree

        render_metric_tree(tree, out, title=f"{image_a} vs {image_b}")
        if not as_json:
            click.echo(f"Wrote {out}")


def _fmt(value: float | None) -> str:
    return "– (no node present in both)" if value is None else f"{value:.3f}"


def _data_root(workspace: Path) -> Path | None:
    config = Path(workspace) / "config.json"
    if not config.is_file():
        return None
    root = (json.loads(config.read_text("utf-8")).get("data") or {}).get("root")
    return Path(root).resolve() if root else None


def _inside_dataset(ref: str, workspace: Path) -> bool:
    root = _data_root(workspace)
    path = Path(ref)
    return bool(root) and path.is_file() and root in path.resolve().parents


def _refuse_inside_data(out: Path, workspace: Path) -> None:
    root = _data_root(workspace)
    target = out.resolve()
    if root is not None and (target == root or root in target.parents):
        raise click.UsageError(
            f"--out {out} is inside the dataset folder {root}; the input dataset is never written "
            f"to. Write the PNG elsewhere (e.g. --out tree.png)."
        )
