"""``biasaudit synth faces``: generate a SynthFaces dataset (native layout) with a planted bias."""

from __future__ import annotations

from pathlib import Path

import click

from biasaudit.core.errors import ValidationError


def _parse_all(parser, values, param_hint: str):
    try:
        return tuple(parser(v) for v in values)
    except ValidationError as exc:
        raise click.BadParameter(str(exc), param_hint=param_hint) from None


@click.group("synth")
def synth() -> None:
    """Generate synthetic datasets with known, planted biases."""


@synth.command("faces")
@click.option("--n", "n", type=int, required=True, help="Number of portraits.")
@click.option("--seed", type=int, default=0, show_default=True, help="Random seed (same seed, same bytes).")
@click.option("--out", "out", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Output folder (new or empty).")
@click.option("--size", type=int, default=128, show_default=True, help="Image side in pixels (>= 64).")
@click.option("--plant", "plants", multiple=True, metavar="LABEL:ATTR=P",
              help="P(ATTR=1 | LABEL=1) = P and P(ATTR=1 | LABEL=0) = 1 - P, e.g. Smiling:Blond_Hair=0.9. Repeatable.")
@click.option("--rare", "rares", multiple=True, metavar="ATTR=P",
              help="Set the marginal P(ATTR=1), e.g. Gray_Hair=0.02. Repeatable.")
@click.option("--balanced", is_flag=True, help="Make every planted (label, attribute) cell equally frequent.")
@click.option("--workers", type=int, default=1, show_default=True, help="Processes (output is identical).")
@click.option("--overwrite", is_flag=True, help="Replace a SynthFaces dataset already in --out.")
def faces(n: int, seed: int, out: Path, size: int, plants: tuple[str, ...], rares: tuple[str, ...],
          balanced: bool, workers: int, overwrite: bool) -> None:
    """Procedural face portraits with exact celebamask-hq masks and CelebA-style attributes.

    Writes DIR/images/*.png, DIR/masks/*.png (class ids), DIR/labels.csv (0/1 columns),
    DIR/schema.json and DIR/synth.json (the parameters).

    \b
    Attributes (for --plant and --rare):
      hair colour, one-hot: Blond_Hair Black_Hair Brown_Hair Red_Hair Gray_Hair
      cloth colour, one-hot: Red_Cloth Blue_Cloth Green_Cloth Black_Cloth White_Cloth Yellow_Cloth
      binary: Male Smiling Eyeglasses Wearing_Hat Wearing_Earrings Wearing_Necklace Young

    \b
    Examples:
      biasaudit synth faces --n 2000 --seed 0 --out faces/ --plant Smiling:Blond_Hair=0.9
      biasaudit synth faces --n 1000 --seed 1 --out test/ --plant Smiling:Blond_Hair=0.9 --balanced
    """
    import pandas as pd

    from biasaudit.data.synth.faces import (
        SynthFacesConfig,
        parse_plant,
        parse_rare,
        write_synthfaces,
    )

    config = SynthFacesConfig(
        n=n, seed=seed, size=size,
        plants=_parse_all(parse_plant, plants, "--plant"),
        rares=_parse_all(parse_rare, rares, "--rare"),
        balanced=balanced,
    )
    folder = write_synthfaces(out, config, workers=workers, overwrite=overwrite)
    click.echo(f"Wrote {config.n} portraits ({config.size} px) to {folder}")
    if config.plants:
        table = pd.read_csv(folder / "labels.csv")
        for plant in config.plants:
            on = table.loc[table[plant.label] == 1, plant.attribute].mean()
            off = table.loc[table[plant.label] == 0, plant.attribute].mean()
            click.echo(f"  {plant.spec}: P({plant.attribute}=1 | {plant.label}=1) = {on:.3f}, "
                       f"| {plant.label}=0) = {off:.3f}")
