"""``biasaudit validate DATA``: check every file of a dataset and list what is wrong."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from biasaudit.data import LAYOUTS, Manifest, open_dataset, validate_dataset
from biasaudit.data.images import display_path


def summary(manifest: Manifest) -> dict:
    """The numbers ``validate`` prints, as a plain dict (also the ``--json`` output)."""
    table = manifest.table
    err = table[table["status"] == "error"]
    rows = set(table["image"])
    notes = [p for p in manifest.problems if p.image_id not in rows]
    warn = table[table["warning"] != ""]
    return {
        "dataset": manifest.dataset_root,
        "layout": manifest.layout,
        "schema": manifest.schema_name,
        "images": manifest.n_images,
        "ok": manifest.n_ok,
        "errors": manifest.n_errors,
        "warnings": manifest.n_warnings,
        "masks": int(table["has_mask"].sum()),
        "label_columns": manifest.label_columns,
        "usable": manifest.is_usable,
        "error_list": [{"image": i, "path": p, "error": e} for i, p, e in zip(err["image"], err["path"], err["error"], strict=True)],
        "note_list": [{"path": p.path, "note": p.message} for p in notes],
        "warning_list": [{"image": i, "path": p, "warning": w} for i, p, w in zip(warn["image"], warn["path"], warn["warning"], strict=True)],
    }


def _echo(text: str) -> None:
    # File names can hold any character; a terminal that cannot show one gets an escape
    # instead of a UnicodeEncodeError traceback.
    encoding = getattr(sys.stdout, "encoding", None) or "utf-8"
    click.echo(text.encode(encoding, errors="backslashreplace").decode(encoding))


def _print_text(info: dict) -> None:
    labels = info["label_columns"]
    shown_labels = ", ".join(labels[:8]) + (f", … ({len(labels)} in all)" if len(labels) > 8 else "")
    rows = [
        ("images", info["images"]),
        ("ok", info["ok"]),
        ("errors", info["errors"]),
        ("warnings", info["warnings"]),
        ("masks", info["masks"]),
        ("label columns", f"{len(labels)}" + (f" ({shown_labels})" if labels else "")),
    ]
    schema = info["schema"] or "none"
    _echo(f"Dataset {info['dataset']}  (layout {info['layout']}, schema {schema})")
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        _echo(f"  {key:<{width}}  {value}")
    if info["error_list"]:
        _echo(f"\nErrors ({len(info['error_list'])}):")
        for e in info["error_list"]:
            _echo(f"  {e['path']}: {e['error']}")
    if info["warning_list"]:
        _echo(f"\nWarnings ({len(info['warning_list'])}):")
        for w in info["warning_list"]:
            _echo(f"  {w['path']}: {w['warning']}")
    if info["note_list"]:
        _echo(f"\nNotes ({len(info['note_list'])}):")
        for n in info["note_list"]:
            _echo(f"  {n['path']}: {n['note']}")


def _inside(path: Path, folder: Path) -> bool:
    path, folder = path.resolve(), folder.resolve()
    return path == folder or folder in path.parents


@click.command("validate")
@click.argument("data", type=click.Path(path_type=Path))
@click.option("--layout", type=click.Choice(["auto", *LAYOUTS]), default="auto", show_default=True,
              help="Dataset layout; auto detects it from the folder names.")
@click.option("--schema", default=None, metavar="NAME|PATH",
              help="Mask schema: celebamask-hq, lip, ade20k-150, ccp or a schema.json path.")
@click.option("--manifest", "manifest_path", type=click.Path(path_type=Path), default=None,
              metavar="OUT.parquet", help="Also write the manifest table here (never inside DATA).")
@click.option("--workers", type=click.IntRange(min=1), default=None,
              help="Decoding threads (default: CPU count, at most 8).")
@click.option("--max-pixels", type=click.IntRange(min=1), default=None,
              help="Refuse images declaring more pixels than this (default 89,478,485, as PIL).")
@click.option("--json", "as_json", is_flag=True, help="Print the summary and problem lists as JSON.")
def validate(data: Path, layout: str, schema: str | None, manifest_path: Path | None,
             workers: int | None, max_pixels: int | None, as_json: bool) -> None:
    """Check every image, mask and label row of DATA; list each problem as FILE: REASON.

    Exits 0 when at least one image is usable (problems are listed), 1 when none is.
    DATA is only read, never written.
    """
    if manifest_path is not None and data.exists() and _inside(manifest_path, data):
        raise click.BadParameter(
            f"{display_path(manifest_path)} is inside DATA; the input folder is never written to. "
            f"Choose a path outside {display_path(data)}.",
            param_hint="--manifest",
        )
    dataset = open_dataset(data, layout=layout, schema=schema)
    manifest = validate_dataset(dataset, workers=workers, max_pixels=max_pixels)
    if manifest_path is not None:
        manifest.save(manifest_path)
    info = summary(manifest)
    if as_json:
        _echo(json.dumps(info, indent=2, ensure_ascii=False))
    else:
        _print_text(info)
    if not manifest.is_usable:
        reason = "it holds no image files" if manifest.n_images == 0 else (
            f"none of its {manifest.n_images} entries is a readable image (see the errors above)"
        )
        raise click.ClickException(f"{display_path(data)} is not usable: {reason}. Fix the listed files and run validate again.")
