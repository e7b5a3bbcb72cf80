"""``biasaudit heml DATA --out WS --label COL``: label-supervised HEML with a per-node table."""

from __future__ import annotations

import math
from pathlib import Path

import click


@click.command("heml")
@click.argument("data", type=click.Path(path_type=Path))
@click.option("--out", "out", type=click.Path(path_type=Path), required=True, metavar="WS",
              help="Workspace folder (created; never inside DATA). Segmentation already there is reused.")
@click.option("--label", required=True, metavar="COL", help="Label column the metric is learned on (e.g. Smiling).")
@click.option("--embedder", type=click.Choice(["recipe", "mlp", "dgml"]), default="recipe", show_default=True,
              help="Node embedder: the recipe's choice, an MLP over pooled features, or DGML attentive "
                   "grouping (learnable queries; its attention maps show where similarity comes from).")
@click.option("--recipe", default=None, metavar="FILE",
              help="Segment tree recipe (YAML); default: the schema's recipe in recipes/.")
@click.option("--segmenter", default="auto", show_default=True,
              metavar="auto|masks|segformer:<dir-or-id>|mediapipe-face", help="Where part maps come from.")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True,
              help="Where HEML trains (auto: a GPU when present).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the split and the initial weights.")
@click.option("--epochs-scale", type=click.FloatRange(min=0.05), default=1.0, show_default=True,
              help="Multiply every node's epochs (GPU users turn it up).")
@click.option("--max-train-images", type=click.IntRange(min=0), default=2000, show_default=True, metavar="N",
              help="Train on a fixed sample of at most N images (stratified by --label), so memory does not "
                   "grow with the dataset; every image is still embedded. 0: train on all.")
@click.option("--baseline", is_flag=True,
              help="Also train one whole-image model on the same compute budget, for comparison.")
def heml(data: Path, out: Path, label: str, embedder: str, recipe: str | None, segmenter: str, device: str,
         seed: int, epochs_scale: float, max_train_images: int, baseline: bool) -> None:
    """Train HEML on DATA's label COL and print each node's retrieval quality.

    \b
    Writes WS/models/<node>/ (weights, config.json, metrics.json with P@1 and MAP@R on a
    held-out split and the chance level), WS/models/tree.json and WS/embeddings/.
    `biasaudit explain A B --workspace WS` then shows where two images differ.
    P@1 counts ties: neighbours a float32 similarity cannot tell apart share the hit, so
    a node whose embedding carries no label reads its chance level.
    A part only some images have (a hat) is scored on the test images that have it; its
    'P@1 all' also counts the others, as one tied group, on its parent's rows.

    \b
    Examples:
      biasaudit heml faces/ --out WS --label Smiling
      biasaudit heml faces/ --out WS --label Smiling --embedder dgml
      biasaudit explain 000001.png 000002.png --workspace WS --out tree.png
    """
    from biasaudit.core.threads import configure_threads

    configure_threads()  # before torch loads: OpenMP must not spin on a shared CPU
    from biasaudit.heml.workspace import train_label_heml

    model = train_label_heml(data, out, label=label, embedder=None if embedder == "recipe" else embedder,
                             recipe=recipe, device=device, seed=seed, segmenter=segmenter,
                             epochs_scale=epochs_scale, baseline=baseline,
                             max_train_images=_max_images(max_train_images),
                             log=lambda msg: click.echo(f"· {msg}", err=True))
    click.echo(format_node_table(model))
    click.echo(f"\nModels: {Path(out) / 'models'} (tree.json, <node>/metrics.json)")


def format_node_table(model) -> str:
    """Per node, root first then depth-first: P@1, MAP@R, chance, images and epochs; for a
    part only some images have, also P@1 over every test image (its parent's rows)."""
    tree = model.tree_
    header = f"{'node':<24} {'embedder':<8} {'P@1':>6} {'MAP@R':>6} {'chance':>6} {'train':>6} {'test':>5} {'res':>4}"
    lines: list[str] = []

    def num(value) -> str:
        return "   –  " if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:6.3f}"

    def row(name: str, depth: int) -> None:
        m = model.metrics_[name]
        every = ""
        if "precision_at_1_all_images" in m:
            every = f"  {num(m['precision_at_1_all_images'])} {num(m.get('chance_p_at_1_all_images'))}"
        lines.append(f"{'  ' * depth + name:<24} {tree.nodes[name].options.embedder:<8} "
                     f"{num(m.get('precision_at_1'))} {num(m.get('map_at_r'))} {num(m.get('chance_p_at_1'))} "
                     f"{m.get('n_train', 0):>6} {m.get('n_test', 0):>5} {m.get('resolution', 0):>4}{every}")
        for child in tree.nodes[name].children:
            row(child, depth + 1)

    row(tree.root, 0)
    base = getattr(model, "baseline_metrics_", None)
    if base:
        lines.append(f"{'whole-image baseline':<24} {'':<8} {num(base.get('precision_at_1'))} "
                     f"{num(base.get('map_at_r'))} {num(base.get('chance_p_at_1'))} "
                     f"{base.get('n_train', 0):>6} {base.get('n_test', 0):>5} {base.get('resolution', 0):>4}")
    if not any("precision_at_1_all_images" in m for m in model.metrics_.values()):
        return "\n".join([header, *lines])
    # a part only some images have is scored among them, at their chance level; its parent on every image
    return "\n".join([f"{header} {'P@1 all':>7} {'chance':>6}", *lines, "",
                      "P@1 all: a part only some images have is scored on the test images that have it; "
                      "'P@1 all' counts the others too,",
                      "as one tied group, so it is scored on its parent's rows and at its parent's chance level."])


def _max_images(value: int) -> int | None:
    """``--max-train-images``: 0 means every image (HEML's None)."""
    return None if value == 0 else value
