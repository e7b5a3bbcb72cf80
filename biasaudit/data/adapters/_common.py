"""What every layout adapter needs: listing files safely, naming them, reading label tables
and matching their rows to images without ever following a path out of the dataset."""

from __future__ import annotations

import dataclasses
import io
import os
import re
import unicodedata
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from biasaudit.core.errors import DatasetError
from biasaudit.core.schema import Schema, load_schema
from biasaudit.data.dataset import MaskRef, Problem, Sample, SampleList
from biasaudit.data.images import IMAGE_EXTENSIONS, display_path

# Columns the manifest owns; a label column with one of these names is renamed "label_<name>".
MANIFEST_COLUMNS = (
    "image", "path", "sha256", "width", "height", "status", "error", "warning", "has_mask",
)


def walk_files(folder: Path) -> list[Path]:
    """Every regular file under ``folder``, sorted, hidden files and folders skipped.

    Folder symlinks are not followed, so a link cannot pull files from outside the dataset.
    """
    return list(iter_files(folder))


def iter_files(folder: Path) -> Iterator[Path]:
    """:func:`walk_files` one file at a time (one folder's names held, not the tree's)."""
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            if not name.startswith("."):
                yield Path(dirpath) / name


def is_utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
        return True
    except UnicodeEncodeError:
        return False


def rel_posix(path: Path, base: Path) -> str:
    return path.relative_to(base).as_posix()


@dataclass(frozen=True)
class ScannedImages:
    samples: SampleList
    problems: list[Problem]


def scan_images(
    folder: Path, *, root: Path, id_base: Path | None = None, files: Iterable[Path] | None = None
) -> ScannedImages:
    """Samples for every image under ``folder`` (or in ``files``; no masks yet) plus a
    problem per file that cannot be one: wrong extension, or a name that is not UTF-8.
    The folder is walked as it is read and the samples are stored compactly
    (:class:`SampleList`): no list of every file is built."""
    id_base = id_base or folder
    samples = SampleList(root=root)
    problems: list[Problem] = []
    for path in iter_files(folder) if files is None else files:
        rel = display_path(rel_posix(path, id_base))
        shown = display_path(rel_posix(path, root))
        if path.suffix.lower() not in IMAGE_EXTENSIONS:
            problems.append(Problem(rel, shown, (
                f"is not an image file (extension '{path.suffix or 'none'}'); image folders may hold only "
                f"{', '.join(IMAGE_EXTENSIONS)} files. Move it out of the dataset."
            )))
            continue
        if not is_utf8(str(path.relative_to(id_base))):
            problems.append(Problem(rel, shown, (
                "its file name is not valid UTF-8, so it cannot be matched to label rows or stored in "
                "the manifest; rename it with UTF-8 characters (e.g. `convmv -f latin1 -t utf8`)."
            )))
            continue
        if any(unicodedata.category(c) == "Cc" for c in str(path.relative_to(id_base))):
            problems.append(Problem(rel, shown, (
                "its file name contains control characters (shown escaped), which break CSV rows and "
                "listings; rename it."
            )))
            continue
        samples.append(Sample(image_id=rel, image_path=path))
        if unicodedata.normalize("NFC", rel) != rel:
            problems.append(Problem(rel, shown, (
                "file name is not in Unicode NFC form (decomposed accents); label rows are matched "
                "on its NFC form"
            ), fatal=False))
    return ScannedImages(samples, problems)


def resolve_schema(schema, *, default: Schema | str | None, root: Path) -> Schema | None:
    """``schema`` as given (name, path, Schema), else the layout's default."""
    if isinstance(schema, Schema):
        return schema
    if schema is not None:
        return load_schema(schema)
    if isinstance(default, str):
        return load_schema(default)
    return default


def read_table_text(path: Path, *, root: Path) -> str:
    shown = display_path(rel_posix(path, root))
    data = path.read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DatasetError(
            f"{shown} is not UTF-8 (byte 0x{data[exc.start]:02x} at offset {exc.start}); "
            f"save it as UTF-8 (e.g. `iconv -f latin1 -t utf8`)."
        ) from None


def read_labels_csv(path: Path, *, root: Path, id_column: str = "image") -> pd.DataFrame:
    """labels.csv as a frame with the id column kept exactly as written (strings) and
    numeric columns parsed; ``_line`` holds each row's line number in the file."""
    shown = display_path(rel_posix(path, root))
    text = read_table_text(path, root=root)
    try:
        raw = pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False)
    except pd.errors.EmptyDataError:
        raise DatasetError(f"{shown} is empty; expected a header with an '{id_column}' column, or remove the file.") from None
    except pd.errors.ParserError as exc:
        raise DatasetError(f"{shown} is not a valid CSV ({exc}); fix the row it names.") from None
    if id_column not in raw.columns:
        raise DatasetError(
            f"{shown} has no '{id_column}' column (found: {', '.join(map(str, raw.columns)) or 'none'}); "
            f"its first column must be '{id_column}', the path of each image relative to images/."
        )
    frame = pd.DataFrame({id_column: raw[id_column].astype(object)})
    for col in raw.columns:
        if col == id_column:
            continue
        frame[col] = _parse_column(raw[col])
    frame["_line"] = range(2, len(frame) + 2)
    return frame


def _parse_column(col: pd.Series) -> pd.Series:
    cleaned = col.replace("", pd.NA)
    try:
        numeric = pd.to_numeric(cleaned)
    except (ValueError, TypeError):
        return col.astype(object)
    if numeric.notna().all() and (numeric == numeric.round()).all():
        return numeric.astype("int64")
    return numeric


_DRIVE = re.compile(r"^[A-Za-z]:")


def escapes_root(entry: str) -> bool:
    """True for entries that would leave the image folder (``../x``, ``/etc/passwd``, ``C:\\x``)."""
    norm = entry.replace("\\", "/")
    if norm.startswith("/") or _DRIVE.match(norm):
        return True
    return any(part == ".." for part in norm.split("/"))


def attach_labels(
    samples: list[Sample],
    table: pd.DataFrame,
    *,
    source: str,
    id_column: str = "image",
    key=None,
    missing_image_is_error: bool = True,
    missing_row_note: str | None = None,
) -> tuple[pd.DataFrame, list[Problem]]:
    """Match rows of a label table to samples; return labels indexed by image id and the
    problems found (rows naming missing images, traversal, duplicates, images without a row).

    ``key`` maps a sample to the string its rows use (default: the image id).
    With ``missing_image_is_error=False`` (official metadata files that cover the whole
    dataset, read against a partial copy) rows for absent images become one note instead
    of one error row each.
    """
    key = key or (lambda s: s.image_id)
    by_key: dict[str, str] = {}
    by_nfc: dict[str, str] = {}
    for s in samples:
        k = key(s)
        by_key[k] = s.image_id
        by_nfc.setdefault(unicodedata.normalize("NFC", k), s.image_id)
    problems: list[Problem] = []
    # label key → position of its row in `table`: the values are taken column by column at
    # the end, so no dict of values is built per row
    rows: dict[str, int] = {}
    first_line: dict[str, int] = {}
    dup_lines: dict[str, list[int]] = {}
    label_cols = [c for c in table.columns if c not in (id_column, "_line")]
    unmatched: list[str] = []
    for pos, (raw_entry, raw_line) in enumerate(zip(table[id_column], table["_line"], strict=True)):
        entry = str(raw_entry)
        line = int(raw_line)
        if escapes_root(entry):
            problems.append(Problem(entry, source, (
                f"line {line} names '{entry}', a path outside the image folder; ids must be paths "
                f"relative to the image folder. The file was not opened; fix or delete the row."
            )))
            rows.setdefault(entry, pos)
            continue
        image_id = by_key.get(entry) or by_nfc.get(unicodedata.normalize("NFC", entry))
        if image_id is None:
            if entry.strip() == "":
                problems.append(Problem(f"{source}:{line}", source, f"line {line} has an empty id; give the image's path or delete the row."))
                continue
            if not missing_image_is_error:
                unmatched.append(entry)
                continue
            hint = ""
            for prefix in ("images/", "./"):
                if entry.startswith(prefix) and entry[len(prefix):] in by_key:
                    hint = f" (did you mean '{entry[len(prefix):]}'? ids are relative to the image folder)"
            problems.append(Problem(entry, source, (
                f"line {line} names '{entry}' but no such image exists{hint}; add the image or delete the row."
            )))
            rows.setdefault(entry, pos)
            continue
        if image_id in first_line:
            dup_lines.setdefault(image_id, [first_line[image_id]]).append(line)
            continue
        first_line[image_id] = line
        rows[image_id] = pos
    for image_id, lines in dup_lines.items():
        problems.append(Problem(image_id, source, (
            f"{source} lists this image {len(lines)} times (lines {', '.join(map(str, lines))}); "
            f"ids must be unique, so its labels are ambiguous. Keep one row."
        )))
    for s in samples:
        if s.image_id not in first_line:
            problems.append(Problem(s.image_id, source, missing_row_note or f"no row in {source}", fatal=False))
    if unmatched:
        # Official metadata files cover the whole dataset; a partial copy is normal, so one note.
        shown = ", ".join(unmatched[:3]) + (" …" if len(unmatched) > 3 else "")
        problems.append(Problem(source, source, (
            f"lists {len(unmatched)} image{'s' if len(unmatched) != 1 else ''} that "
            f"{'are' if len(unmatched) != 1 else 'is'} not in this copy ({shown}); "
            f"{'their rows are' if len(unmatched) != 1 else 'its row is'} ignored"
        ), fatal=False))
    labels = _rows_frame(table, rows, label_cols)
    labels.index.name = "image"
    labels = labels.rename(columns={c: f"label_{c}" for c in label_cols if c in MANIFEST_COLUMNS})
    return labels, problems


def _rows_frame(table: pd.DataFrame, rows: dict[str, int], label_cols: list[str]) -> pd.DataFrame:
    """The rows at the positions in ``rows`` (indexed by its keys), typed as
    ``DataFrame.from_dict`` types the rows' values (Python scalars, as ``to_dict`` gives
    them), built one column at a time."""
    if not rows:
        return pd.DataFrame.from_dict({}, orient="index", columns=label_cols)
    positions = list(rows.values())
    data = {}
    for c in label_cols:
        values = table[c].tolist()
        data[c] = [values[k] for k in positions]
        del values
    return pd.DataFrame(data, index=list(rows.keys()), columns=label_cols)


def masks_for(
    samples: Iterable[Sample],
    mask_root: Path,
    *,
    root: Path,
    id_base: Path,
    suffix: str = ".png",
) -> tuple[dict[str, str], list[Problem]]:
    """Pair each sample with ``mask_root/<same relative path, suffix>``; report images
    without a mask and mask files without an image. Returns image id → mask path (as
    text: ``Path(text)`` is the file walked) and the problems."""
    def mask_name(s: Sample) -> str:
        return Path(s.image_path).relative_to(id_base).with_suffix(suffix).as_posix()

    wanted: dict[str, str] = {}  # mask name → the one image that claims it
    shared: dict[str, list[str]] = {}  # mask name → the images, when several claim it
    for s in samples:
        rel = mask_name(s)
        if rel in shared:
            shared[rel].append(s.image_id)
        elif rel in wanted:
            shared[rel] = [wanted.pop(rel), s.image_id]
        else:
            wanted[rel] = s.image_id
    found: dict[str, str] = {}
    problems: list[Problem] = []
    mask_dir = display_path(rel_posix(mask_root, root))
    if shared:
        # reported in the order of each name's first image
        first = [rel for rel in dict.fromkeys(mask_name(s) for s in samples) if rel in shared]
        for rel in first:
            ids = shared[rel]
            # images/a.jpg and images/a.png would share masks/a.png: neither can be trusted.
            for image_id in ids:
                others = ", ".join(i for i in ids if i != image_id)
                problems.append(Problem(image_id, image_id, (
                    f"shares its mask name {mask_dir}/{display_path(rel)} with {others}; images that differ "
                    f"only by extension cannot be told apart by their masks. Rename one of them."
                )))
    if mask_root.is_dir():
        for path in iter_files(mask_root):
            rel = rel_posix(path, mask_root)
            if rel in wanted:
                found[wanted[rel]] = str(path)
            else:
                shown = display_path(rel_posix(path, root))
                if rel in shared:
                    continue  # claimed by several images; reported above
                problems.append(Problem(shown, shown, (
                    "is a mask without an image (no image with the same relative path and an image "
                    "extension); add the image or remove the mask."
                )))
    for s in samples:
        if s.image_id not in found:
            rel = mask_name(s)
            if rel not in shared:
                problems.append(Problem(s.image_id, display_path(rel_posix(s.image_path, root)), (
                    f"has no mask: expected {mask_dir}/{display_path(rel)} because this dataset gives "
                    f"masks; add it or remove the image."
                )))
    return found, problems


def with_label_maps(
    samples: Sequence[Sample], mask_root: Path, *, root: Path, id_base: Path,
) -> tuple[SampleList, list[Problem]]:
    """``samples`` with a label-map :class:`MaskRef` wherever :func:`masks_for` found
    ``mask_root/<same relative path>.png``, and the problems it reported."""
    found, problems = masks_for(samples, mask_root, root=root, id_base=id_base)
    paired = SampleList((
        dataclasses.replace(s, mask=MaskRef(kind="label_map", path=Path(found[s.image_id])))
        if s.image_id in found else s
        for s in samples
    ), root=root)
    return paired, problems
