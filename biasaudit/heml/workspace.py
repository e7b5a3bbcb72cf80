"""HEML on a segmented workspace: train from ``WS/manifest.parquet`` + the segmentation,
write ``WS/models`` and ``WS/embeddings``, and explain two of its images.

Images and part maps are resized to ``image_size``² (area for pixels, nearest for part
ids), the same convention ``biasaudit scan`` uses, so every node sees one scale.

>>> heml = fit_heml_workspace("WS", supervision="label:Smiling")      # doctest: +SKIP
>>> explain_workspace("WS", "00001.png", "00002.png").to_dict()        # doctest: +SKIP
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from biasaudit.core.errors import DatasetError, ValidationError
from biasaudit.core.io import (
    atomic_path,
    release_freed_memory,
    write_json_atomic,
    write_parquet_atomic,
)
from biasaudit.core.workspace import Workspace
from biasaudit.data import BASE_COLUMNS

GLUE_FILE = "workspace.json"
#: images loaded, embedded and written at a time: what embedding holds in memory
EMBED_CHUNK = 1024


def parse_supervision(value: str) -> tuple[str, str | None]:
    """``"self"`` → ("self", None); ``"label:Smiling"`` → ("label", "Smiling").

    >>> parse_supervision("label:Smiling")
    ('label', 'Smiling')
    """
    if value == "self":
        return "self", None
    kind, _, column = value.partition(":")
    if kind == "label" and column:
        return "label", column
    raise ValidationError(
        f"--supervision must be 'self' or 'label:<column>' (e.g. label:Smiling); got {value!r}."
    )


def usable_images(ws_root: str | Path, *, columns: list[str] | None = None) -> pd.DataFrame:  # noqa: F821
    """Manifest rows with ``status == "ok"`` (the images HEML can use); ``columns``: read
    only these (``image`` and ``status`` always), the rest stay on disk."""
    import pandas as pd
    import pyarrow.parquet as pq

    ws = Workspace(ws_root)
    if not ws.manifest.is_file():
        raise DatasetError(
            f"{ws.manifest} does not exist; {ws.root} is not a segmented workspace. Run "
            f"`biasaudit segment DATA --out {ws.root}` (or `biasaudit scan`) first."
        )
    if columns is not None:
        names = set(pq.read_schema(ws.manifest).names)
        columns = list(dict.fromkeys(["image", "status", *(c for c in columns if c in names)]))
    table = pd.read_parquet(ws.manifest, columns=columns)
    return table[table["status"] == "ok"].reset_index(drop=True)


def load_arrays(ws_root: str | Path, image_ids: list[str], *, image_size: int = 128,
                workers: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """Images (N×S×S×3 uint8) and part maps (N×S×S uint16: a quarter of int64's memory)
    of ``image_ids``, resized to S = ``image_size``."""
    import cv2

    from biasaudit.core.progress import progress
    from biasaudit.segment import load_segmentation

    def one(image_id: str):
        rgb, parts = load_segmentation(ws_root, image_id)
        if rgb.shape[:2] != (image_size, image_size):
            rgb = cv2.resize(rgb, (image_size, image_size), interpolation=cv2.INTER_AREA)
        if parts.shape[:2] != (image_size, image_size):
            parts = cv2.resize(parts.astype(np.uint16), (image_size, image_size), interpolation=cv2.INTER_NEAREST)
        return rgb, parts

    images = np.empty((len(image_ids), image_size, image_size, 3), np.uint8)
    maps = np.empty((len(image_ids), image_size, image_size), np.uint16)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for i, (rgb, parts) in enumerate(progress(pool.map(one, image_ids), desc="loading parts",
                                                   total=len(image_ids))):
            images[i], maps[i] = rgb, parts
    return images, maps


def fit_heml_workspace(ws_root: str | Path, *, supervision: str = "self", recipe: Any = None,
                       image_size: int = 128, device: str = "auto", embed: bool = True, **params: Any):
    """Train HEML on the usable images of a segmented workspace and write its outputs.

    - ``supervision``: ``self`` or ``label:<manifest column>`` (rows without a label are
      left out of training and scoring, but still embedded);
    - only the images of :func:`~biasaudit.heml.estimator.train_sample` (at most
      ``max_train_images``, default 2,000) are loaded for training, so its memory does not
      grow with the dataset; every usable image is embedded, ``EMBED_CHUNK`` at a time;
    - ``recipe``: a segment-tree recipe (path, mapping or built-in schema name); default:
      the workspace schema's recipe in ``recipes/``;
    - ``params``: any further :class:`HEMLConfig` option (``loss``, ``concurrent``, ...).

    Writes ``WS/models/`` (see :mod:`biasaudit.heml.persist`) and, unless ``embed=False``,
    the embeddings (:func:`embed_workspace`).
    """
    import pyarrow.parquet as pq

    from biasaudit.core.threads import configure_threads
    from biasaudit.heml.estimator import HEML, train_sample

    configure_threads()
    ws = Workspace(ws_root)
    kind, column = parse_supervision(supervision)
    table = usable_images(ws.root, columns=[] if column is None else [column])
    if table.empty:
        raise DatasetError(f"{ws.manifest} has no image with status 'ok'; nothing to train HEML on.")
    y = None
    if column is not None:
        if column not in table.columns:
            extra = [c for c in pq.read_schema(ws.manifest).names if c not in BASE_COLUMNS]
            raise ValidationError(
                f"--supervision label:{column}: column '{column}' is not in {ws.manifest}. "
                f"Label columns there: {', '.join(extra) or '(none: add a labels.csv to the dataset)'}."
            )
        y = table[column]
    schema = _workspace_schema(ws)
    tree = recipe if recipe is not None else schema
    ids = table["image"].tolist()
    heml = HEML(tree=tree, supervision=kind, device=device, **params)
    heml._check_params()
    rows = train_sample(len(ids), y=y, max_images=heml.max_train_images, seed=heml.seed)
    images, maps = load_arrays(ws.root, [ids[i] for i in rows], image_size=image_size)
    heml.fit(images, maps, None if y is None else y.iloc[rows].reset_index(drop=True))
    del images, maps  # embedding streams every image in chunks
    release_freed_memory()  # the training arrays, and the steps' blocks a kept heap holds
    heml.save(ws.models_dir)
    write_json_atomic(ws.models_dir / GLUE_FILE, {"image_size": image_size, "supervision": supervision,
                                                  "n_images": len(ids), "n_train_images": len(rows),
                                                  "max_train_images": heml.max_train_images, "label": column})
    if embed:
        embed_workspace(ws.root, heml, ids, image_size=image_size)
    return heml


def embed_workspace(ws_root: str | Path, heml, image_ids: list[str], *, image_size: int = 128,
                    chunk: int = EMBED_CHUNK) -> dict[str, np.ndarray]:
    """Embed ``image_ids`` with a fitted ``heml``, ``chunk`` images at a time, into
    ``WS/embeddings/<node>.npy`` (float16, N×D, absent parts all zero, rows in the order of
    ``WS/embeddings/index.parquet``); returns node → the written array, memory-mapped.

    Each node's file is filled through a memory map and renamed into place when complete,
    so neither the images nor the embeddings are held whole, and a kill leaves only whole
    files (``kill_point("embeddings")`` after each). The next chunk is decoded (by the
    engine's ``decode_workers``) while this one is embedded; on the Ray engine every chunk
    goes through one Ray Data stage (:func:`~biasaudit.heml.ray_engine.embed_workspace_on_ray`).
    Where the time went is added to ``WS/timings.json`` under ``embed``.

    >>> emb = embed_workspace("WS", heml, ids)  # doctest: +SKIP
    >>> emb["hair"].shape  # doctest: +SKIP
    (2000, 128)
    """
    import time

    from biasaudit.core.engine import StageClock, current_engine, record_stage_timing
    from biasaudit.core.io import kill_point

    start = time.perf_counter()
    ws = Workspace(ws_root)
    ids = list(image_ids)
    if not ids:
        raise DatasetError(f"No image to embed in {ws.root}: the manifest has no image with status 'ok'.")
    engine = current_engine()
    clock = StageClock("embed", decode_workers=engine.workers, engine=engine.name)
    _write_index(ws, ids)
    for stale in ws.embeddings_dir.glob(".*.npy.part"):  # left by a killed run
        stale.unlink()
    nodes = list(heml.tree_.nodes)
    temps: dict[str, Path] = {}
    arrays: dict[str, np.ndarray] = {}
    try:
        for lo, emb in embedded_chunks(ws.root, heml, ids, image_size=image_size, chunk=chunk, clock=clock):
            t0 = time.perf_counter()
            for node in nodes:
                if node not in arrays:
                    temps[node] = ws.embeddings_dir / f".{ws.embedding_path(node).name}.part"
                    arrays[node] = np.lib.format.open_memmap(temps[node], mode="w+", dtype=np.float16,
                                                             shape=(len(ids), emb[node].shape[1]))
                arrays[node][lo : lo + len(emb[node])] = emb[node]
            clock.add("write_s", time.perf_counter() - t0)
        for node in nodes:
            arrays[node].flush()
            del arrays[node]
            temps.pop(node).replace(ws.embedding_path(node))
            kill_point("embeddings")
    finally:
        for tmp in temps.values():
            tmp.unlink(missing_ok=True)
    clock.wall_s = time.perf_counter() - start
    record_stage_timing(ws.root, clock)
    return read_embeddings(ws.root, None, nodes)  # rows are in the order of ids: the index just written


#: images per forward pass when embedding: the block size fixes the bits on a CPU (see
#: HEML.embed), so it is one number per device type, whatever the engine
EMBED_BATCH = {"cpu": 256, "cuda": 1024}


def embedded_chunks(ws_root: str | Path, heml, ids: list[str], *, image_size: int, chunk: int, clock=None):
    """(first row, node → embeddings) for ``ids`` in order, ``chunk`` images at a time.
    Locally, a loader thread decodes the next chunk (with the engine's ``decode_workers``)
    while this one is embedded; on the Ray engine, one Ray Data stage embeds them all.
    ``clock`` (a :class:`~biasaudit.core.engine.StageClock`): where the time went."""
    import time

    from biasaudit.core.engine import current_engine, decode_ahead
    from biasaudit.heml.training import resolve_device

    engine = current_engine()
    setup = resolve_device(heml.device)
    batch = EMBED_BATCH["cuda" if setup.is_cuda else "cpu"]
    if clock is not None:
        clock.device, clock.batch_size = str(setup.device), batch
    if engine.is_ray and len(ids) > batch:
        from biasaudit.heml.ray_engine import embed_workspace_on_ray

        for lo, emb in embed_workspace_on_ray(ws_root, heml, ids, image_size=image_size, chunk=chunk,
                                              batch_size=batch):
            if clock is not None:
                clock.n_images += len(next(iter(emb.values())))
            yield lo, emb
        return

    def load(lo: int):
        return load_arrays(ws_root, ids[lo : lo + chunk], image_size=image_size, workers=engine.workers)

    with ThreadPoolExecutor(max_workers=1) as loader:  # one chunk ahead: two in memory at most
        starts = range(0, len(ids), chunk)
        for lo, (images, maps) in zip(starts, decode_ahead(load, starts, pool=loader, ahead=1, clock=clock),
                                      strict=True):
            t0 = time.perf_counter()
            emb = heml.embed(images, maps, batch_size=batch)
            if clock is not None:
                clock.compute_s += time.perf_counter() - t0
                clock.n_images += len(images)
            del images, maps  # this chunk and the next one loading: two in memory, never three
            yield lo, emb


def read_embeddings(ws_root: str | Path, image_ids: list[str] | None, nodes: list[str]) -> dict[str, np.ndarray]:
    """node → float16 embeddings (N×D) of ``image_ids`` (joined on the index's image ids,
    never on row position; None: every row, memory-mapped, in the index's order).

    >>> read_embeddings("WS", None, ["hair"])["hair"].dtype  # doctest: +SKIP
    dtype('float16')
    """
    import pandas as pd

    ws = Workspace(ws_root)
    index_path = ws.embeddings_dir / "index.parquet"
    if not index_path.is_file():
        raise DatasetError(f"{index_path} does not exist; run `biasaudit scan` (with HEML) or `biasaudit heml` first.")
    index = pd.read_parquet(index_path)["image"].astype(str)
    out = {}
    for node in nodes:
        arr = np.load(ws.embedding_path(node), mmap_mode="r")
        if image_ids is not None:
            order = pd.Index(index).get_indexer(list(image_ids))
            if (order < 0).any():
                missing = [i for i, o in zip(image_ids, order, strict=True) if o < 0][:3]
                raise DatasetError(f"{index_path} has no embedding for {', '.join(missing)}; re-run `biasaudit scan`.")
            arr = arr[order]
        out[node] = arr
    return out


def _write_index(ws: Workspace, ids: list[str]) -> None:
    """Write ``index.parquet`` for ``ids``; node files written for another index are removed
    first, so no file is ever read against the wrong rows."""
    import pandas as pd

    index_path = ws.embeddings_dir / "index.parquet"
    ws.embeddings_dir.mkdir(parents=True, exist_ok=True)
    if index_path.is_file() and pd.read_parquet(index_path)["image"].astype(str).tolist() == ids:
        return
    for old in ws.embeddings_dir.glob("*.npy"):
        old.unlink()
    write_parquet_atomic(index_path, pd.DataFrame({"image": ids}))


def write_embeddings(ws_root: str | Path, image_ids: list[str], embeddings: dict[str, np.ndarray]) -> None:
    """``WS/embeddings/<node>.npy`` (float16) + ``index.parquet`` (row order = ``image_ids``)."""
    ws = Workspace(ws_root)
    _write_index(ws, list(image_ids))
    for node, arr in embeddings.items():
        with atomic_path(ws.embedding_path(node)) as tmp, open(tmp, "wb") as fh:
            np.save(fh, np.asarray(arr, dtype=np.float16))


def resolve_image(ws_root: str | Path, ref: str | Path, *, mask: str | Path | None = None,
                  image_size: int | None = None, device: str = "auto") -> tuple[np.ndarray, np.ndarray, str]:
    """(RGB, part map, how it was found) for what a user has at hand:

    - an image id of the workspace (the manifest's ``image`` column);
    - a path to an image of the workspace's dataset (``data/images/000001.png``);
    - a path to a new image: segmented on the fly with the workspace's segmenter, or, for a
      workspace segmented from the dataset's own masks, read together with ``mask`` (a
      single-channel label map of the same size).

    Both arrays are resized to ``image_size`` (default: the size the models were trained at).
    """
    import cv2

    ws = Workspace(ws_root)
    size = image_size or _trained_size(ws)
    known = set(usable_images(ws.root)["image"])
    image_id = _dataset_id(ws, ref, known)
    if image_id is not None:
        if mask is not None:
            raise ValidationError(
                f"--mask was given for '{ref}', which is an image of the workspace; its part map is "
                f"already there. Give --mask only for new images."
            )
        images, maps = load_arrays(ws.root, [image_id], image_size=size)
        return images[0], maps[0], image_id
    path = Path(ref)
    if not path.is_file():
        examples = ", ".join(sorted(known)[:3])
        raise ValidationError(
            f"'{ref}' is neither an image id of {ws.manifest} (e.g. {examples}) nor an image file; "
            f"give an id, a path inside the dataset, or a path to a new image."
        )
    from biasaudit.data import read_image

    try:
        rgb = read_image(path)
    except Exception as exc:  # the readers raise several types; the user needs the file and reason
        raise ValidationError(f"{path} could not be read as an image ({exc}); give a PNG/JPEG/WebP/BMP file.") from None
    config = json.loads(ws.config.read_text("utf-8"))
    seg_cfg = config.get("segment") or {}
    spec = seg_cfg.get("segmenter", "masks")
    if spec == "masks":
        if mask is None:
            raise ValidationError(
                f"{path} is a new image and {ws.root} was segmented from the dataset's own masks, so "
                f"there is no model to segment it; pass its label map with --mask (one per new image)."
            )
        from biasaudit.data import MaskReadError, read_label_map

        try:
            parts = read_label_map(mask)
        except MaskReadError as exc:
            raise ValidationError(f"--mask {mask}: {exc}; give a single-channel PNG of class ids.") from None
        if parts.shape != rgb.shape[:2]:
            raise ValidationError(
                f"--mask {mask} is {parts.shape[1]}×{parts.shape[0]} but {path} is "
                f"{rgb.shape[1]}×{rgb.shape[0]}; the label map must match its image."
            )
        how = f"{path} (mask {mask})"
    else:
        if mask is not None:
            raise ValidationError(
                f"--mask given, but {ws.root} segments new images with '{spec}'; drop --mask."
            )
        from biasaudit.core.schema import Schema
        from biasaudit.segment import make_segmenter
        from biasaudit.segment.base import SegmentFailure

        schema = Schema.from_dict(seg_cfg["schema_classes"], source=str(ws.config))
        with make_segmenter(spec, schema=schema, device=device) as seg:
            (parts,) = seg.segment_batch([rgb])
        if isinstance(parts, SegmentFailure):
            raise ValidationError(f"{path} could not be segmented with '{spec}': {parts.message}")
        how = f"{path} (segmented with {spec})"
    if rgb.shape[:2] != (size, size):
        rgb = cv2.resize(rgb, (size, size), interpolation=cv2.INTER_AREA)
    if parts.shape[:2] != (size, size):
        parts = cv2.resize(np.asarray(parts).astype(np.uint16), (size, size), interpolation=cv2.INTER_NEAREST)
    return rgb, np.asarray(parts).astype(np.int64), how


def _dataset_id(ws: Workspace, ref: str | Path, known: set[str]) -> str | None:
    """The workspace image id ``ref`` names (an id, or a path to one of the dataset's image
    files), else None. A path counts only when the dataset maps that id to that very file,
    so a mask file or a copy elsewhere is not mistaken for the image."""
    text = str(ref)
    if text in known:
        return text
    path = Path(ref)
    if not path.is_file():
        return None
    config = json.loads(ws.config.read_text("utf-8")) if ws.config.is_file() else {}
    data = config.get("data") or {}
    if not data.get("root"):
        return None
    full = path.resolve()
    try:
        rel_parts = full.relative_to(Path(data["root"]).resolve()).parts
    except ValueError:
        return None
    from biasaudit.core.schema import Schema
    from biasaudit.data import open_dataset

    dataset = open_dataset(data["root"], layout=data.get("layout", "auto"),
                           schema=Schema.from_dict(data["schema_classes"], source=str(ws.config)))
    for i in range(len(rel_parts)):
        candidate = "/".join(rel_parts[i:])
        if candidate in known:
            try:
                if Path(dataset.sample(candidate).image_path).resolve() == full:
                    return candidate
            except KeyError:
                continue
    return None


def explain_workspace(ws_root: str | Path, image_a: str, image_b: str, *, device: str = "auto",
                      mask_a: str | Path | None = None, mask_b: str | Path | None = None):
    """The metric tree of two images (ids, dataset paths or new images, see
    :func:`resolve_image`) with the HEML of a workspace whose ``WS/models`` holds one."""
    from biasaudit.heml.metric_tree import explain_pair
    from biasaudit.heml.persist import load_heml

    ws = Workspace(ws_root)
    heml = load_heml(ws.models_dir, device=device)
    size = _trained_size(ws)
    img_a, map_a, _ = resolve_image(ws.root, image_a, mask=mask_a, image_size=size, device=device)
    img_b, map_b, _ = resolve_image(ws.root, image_b, mask=mask_b, image_size=size, device=device)
    return explain_pair(heml, img_a, map_a, img_b, map_b)


def train_label_heml(data: str | Path, out: str | Path, *, label: str, embedder: str | None = None,
                     recipe: Any = None, device: str = "auto", seed: int = 0, segmenter: str = "auto",
                     log=None, **params: Any):
    """``biasaudit heml``: segment ``data`` into ``out`` (re-using what is there) and train
    a label-supervised HEML on column ``label``; writes ``out/models`` and ``out/embeddings``."""
    from biasaudit.segment import segment_dataset

    say = log or (lambda msg: None)
    say("segmenting")
    segment_dataset(data, out, segmenter=segmenter, device=device)
    say(f"training HEML on label:{label}")
    return fit_heml_workspace(out, supervision=f"label:{label}", recipe=recipe, device=device,
                              embedder=embedder, seed=seed, **params)


def _workspace_schema(ws: Workspace) -> str:
    from biasaudit.core.schema import BUILTIN_SCHEMAS, Schema

    if not ws.config.is_file():
        raise DatasetError(f"{ws.config} does not exist; run `biasaudit segment DATA --out {ws.root}` first.")
    config = json.loads(ws.config.read_text("utf-8"))
    classes = (config.get("segment") or {}).get("schema_classes") or (config.get("data") or {}).get("schema_classes")
    if not classes:
        raise DatasetError(f"{ws.config} names no schema; re-run `biasaudit segment`.")
    name = Schema.from_dict(classes, source=str(ws.config)).name
    if name not in BUILTIN_SCHEMAS:
        raise ValidationError(
            f"The workspace schema '{name}' has no default segment tree; pass --recipe with a "
            f"recipe YAML for it (see recipes/celebamask-hq.yaml)."
        )
    return name


def _trained_size(ws: Workspace) -> int:
    glue = ws.models_dir / GLUE_FILE
    if glue.is_file():
        return int(json.loads(glue.read_text("utf-8"))["image_size"])
    config = json.loads(ws.config.read_text("utf-8")) if ws.config.is_file() else {}
    return int((config.get("scan") or {}).get("heml_size", 128))  # models trained by `biasaudit scan`
