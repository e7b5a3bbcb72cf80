"""``run_scan``: dataset folder → findings, every stage writing the workspace.

validate → segment → statistics (``segment_dataset``) → HEML (train, or reuse the models
already in ``WS/models``) → embeddings → attributes → findings. Each stage leaves its
files behind atomically, so a killed scan re-run with the same arguments continues: the
segmentation reuses its cache and rows, HEML is reused when ``WS/models`` holds a model
trained with the same settings, and the cheap stages after it are recomputed.

HEML is trained self-supervised here (``supervision="self"``): the embeddings that the
audit clusters and probes must not have seen the labels they are tested against.

``--label``, ``--sensitive``, ``--causal`` and ``--reference`` are checked against the
dataset's label columns and schema before anything is segmented. A scan in which no
label test ran (one label value, every image failed) raises :class:`NothingTestedError`
saying why, after writing ``findings.json`` with ``"tested": false``: an audit that
tested nothing must not read as a clean bill of health.

>>> result = run_scan("DATA", "WS", labels=["Smiling"], causal=["mouth"])  # doctest: +SKIP
>>> result.findings[0].attribute  # doctest: +SKIP
'hair colour: blond'
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from biasaudit import __version__
from biasaudit.audit.attributes import build_attributes, plain_strings
from biasaudit.audit.confounding import node_confounding, occlusion_confounding, workspace_occlusion
from biasaudit.audit.findings import Finding, findings_document
from biasaudit.audit.inputs import AuditInputs, Target
from biasaudit.audit.reference import check_reference_parts, load_reference
from biasaudit.audit.run import run_audit
from biasaudit.core.engine import make_engine, use_engine
from biasaudit.core.errors import DatasetError, ValidationError
from biasaudit.core.io import (
    kill_point,
    release_freed_memory,
    write_json_atomic,
    write_parquet_chunked_atomic,
)
from biasaudit.core.workspace import Workspace
from biasaudit.data import BASE_COLUMNS

#: The scan's HEML trains for this share of each node's recipe epochs. A self-supervised
#: epoch shows every image twice (two augmented views) where a label epoch of
#: ``biasaudit heml`` shows it once, so at 0.5 a node sees as many views as the recipe
#: gives a label fit. Measured on three datasets of 2,000 images (reports/benchmarks.md,
#: HEML v2, session 8): the ridge-probe AUCs of every node for every label moved no more
#: from 1.0 to 0.5 than from one seed to another at 1.0, every planted bias of the
#: acceptance cases was still found, and the default scan went from about 150 s to about
#: 110 s on 2 cores.
SCAN_EPOCHS_SCALE = 0.5


@dataclass(frozen=True)
class ScanSettings:
    """What a scan was asked to do; stored in ``WS/config.json`` under ``scan``."""

    labels: tuple[str, ...] = ()
    sensitive: tuple[str, ...] = ()
    causal: tuple[str, ...] = ()
    segmenter: str = "auto"
    schema: str | None = None
    layout: str = "auto"
    recipe: str | None = None
    device: str = "auto"
    seed: int = 0
    heml: bool = True
    heml_size: int = 128
    epochs_scale: float = SCAN_EPOCHS_SCALE
    heml_max_images: int | None = 2000
    concurrent: bool = False
    embedder: str | None = None
    k_range: tuple[int, int] = (2, 8)
    n_boot: int = 200
    reference: str | None = None

    def heml_key(self) -> dict[str, Any]:
        """The settings a trained HEML depends on: reuse it only when these match."""
        return {"recipe": self.recipe, "seed": self.seed, "heml_size": self.heml_size,
                "epochs_scale": self.epochs_scale, "concurrent": self.concurrent, "supervision": "self",
                "max_train_images": self.heml_max_images,
                **({"embedder": self.embedder} if self.embedder else {})}


#: the stages of a scan, in order; ``on_stage`` is called with each name once it is done
STAGES = ("segment", "heml", "attributes", "findings")


class NothingTestedError(DatasetError):
    """The scan ran but no statistical test could be made: its message says why;
    ``failures`` lists the (image, reason) pairs of the images that could not be used."""

    def __init__(self, message: str, failures: tuple[tuple[str, str], ...] = ()) -> None:
        super().__init__(message)
        self.failures = failures


@dataclass(frozen=True)
class ScanResult:
    workspace: Path
    findings: list[Finding]
    expected: list[Finding]
    n_images: int
    n_errors: int
    n_tests: int
    seconds: dict[str, float] = field(default_factory=dict)
    #: (image, reason) of every image that could not be used
    failures: tuple[tuple[str, str], ...] = ()

    @property
    def flagged(self) -> list[Finding]:
        return [f for f in self.findings if f.flagged]


def run_scan(data: str | Path, out: str | Path, *, labels: Sequence[str] = (),
             sensitive: Sequence[str] = (), causal: Sequence[str] = (), segmenter: str = "auto",
             schema: str | None = None, layout: str = "auto", recipe: str | None = None,
             device: str = "auto", seed: int = 0, heml: bool = True, heml_size: int = 128,
             epochs_scale: float | None = None, concurrent: bool = False, reference: str | Path | None = None,
             log=None, on_stage=None, embedder: str | None = None, engine: str = "local",
             address: str | None = None, heml_max_images: int | None = 2000) -> ScanResult:
    """Scan ``data`` into workspace ``out`` and return the ranked findings.

    ``engine="ray"`` runs validation, segmentation, statistics and HEML's tree levels on
    Ray (``address``: an existing cluster; None: a local instance); the workspace files
    and findings are those of the default ``local`` engine, so neither is stored in them.

    ``on_stage(name)`` is called after each of :data:`STAGES` (a hook: progress, or a test
    stopping the scan at a known point to check that a re-run resumes).

    ``epochs_scale`` multiplies every HEML node's recipe epochs; None:
    :data:`SCAN_EPOCHS_SCALE`.
    """
    from biasaudit.segment import segment_dataset

    settings = ScanSettings(
        labels=tuple(labels), sensitive=tuple(sensitive), causal=tuple(causal), segmenter=segmenter,
        schema=schema, layout=layout, recipe=recipe, device=device, seed=seed, heml=heml,
        heml_size=heml_size, epochs_scale=SCAN_EPOCHS_SCALE if epochs_scale is None else float(epochs_scale),
        concurrent=concurrent, embedder=embedder,
        heml_max_images=heml_max_images,
        reference=None if reference is None else str(reference),
    )
    say = log or (lambda msg: None)
    stage_done = on_stage or (lambda name: None)
    ws = Workspace(out)
    chosen = make_engine(engine, address=address)
    seconds: dict[str, float] = {}
    ref = load_reference(reference) if reference is not None else {}
    _check_before_segmenting(data, settings, ref)

    t0 = time.perf_counter()
    say("segmenting")
    seg = segment_dataset(data, out, segmenter=segmenter, schema=schema, layout=layout, device=device,
                          engine=chosen)
    seconds["segment"] = time.perf_counter() - t0
    import pyarrow.parquet as pq

    # the audit reads a manifest row's image, status, error and target labels; its path,
    # hash, sizes and other label columns stay on disk (hundreds of MB at 10^6 images)
    columns = pq.read_schema(ws.manifest).names
    wanted = {"image", "status", "error", *settings.labels, *settings.sensitive}
    manifest = pd.read_parquet(ws.manifest, columns=[c for c in columns if c in wanted])
    ok = manifest[manifest["status"] == "ok"]
    failures = _failures(manifest)
    targets = _targets(settings, columns)
    _check_causal(settings.causal, seg.schema.part_names)
    check_reference_parts(ref, seg.schema.part_names)
    release_freed_memory()  # what validation and segmentation freed, before the audit's tables
    segments = _audit_segments(ws, ok["image"])
    stage_done("segment")

    embeddings: Mapping[str, pd.DataFrame] = {}
    node_parts: dict[str, tuple[str, ...]] = {}
    root = None
    if heml and len(ok):
        t0 = time.perf_counter()
        say("training HEML (self-supervised)")
        with use_engine(chosen):
            embeddings, node_parts, root = _heml_embeddings(ws, ok["image"].tolist(), settings, seg.schema.name)
        seconds["heml"] = time.perf_counter() - t0
    stage_done("heml")
    release_freed_memory()  # HEML's training arrays

    t0 = time.perf_counter()
    say("attributes and findings")
    attributes, clusters = build_attributes(segments, embeddings, node_parts, k_range=settings.k_range,
                                            seed=seed)
    write_parquet_chunked_atomic(ws.attributes, attributes, prepare=plain_strings)
    release_freed_memory()  # the attributes' intermediate tables
    kill_point("audit")
    stage_done("attributes")
    causal_set = frozenset(settings.causal)
    contacts, hidden = workspace_occlusion(ws.root, ok["image"].astype(str).tolist(), seg.schema, causal_set,
                                           seed=seed)
    part_reasons = occlusion_confounding(contacts, causal_set, segments=segments)
    all_parts = {p: (p,) for p in seg.schema.part_names}
    inputs = AuditInputs(
        attributes=attributes, labels=ok.set_index("image")[[t.column for t in targets]],
        targets=targets, embeddings=embeddings, node_parts={**all_parts, **node_parts},
        causal=causal_set, confounded=node_confounding({**all_parts, **node_parts}, part_reasons),
        hidden=node_confounding({**all_parts, **node_parts}, hidden),
        reference=ref, root=root, seed=seed, n_boot=settings.n_boot,
        colours=segments.rename(columns={"part": "node"})[["image", "node", "lab_l", "lab_a", "lab_b"]],
    )
    result = run_audit(inputs)
    n_errors = int((manifest["status"] != "ok").sum())
    settings_doc = {**asdict(settings), "n_tests": result.n_tests, "n_label_tests": result.n_label_tests,
                    "n_rejected": result.n_rejected, "n_label_rejected": result.n_label_rejected,
                    "clusters": [asdict(c) for c in clusters]}
    doc = findings_document(result.findings, result.expected, version=__version__,
                            n_images=len(manifest), n_errors=n_errors, settings=settings_doc)
    # rarity alone is no audit of the labels asked about: without one label test, say so
    untested = _why_nothing_tested(ok, targets, failures) if result.n_label_tests == 0 else ""
    doc["tested"] = not untested
    if untested:
        doc["not_tested_because"] = untested
    write_json_atomic(ws.findings, doc)
    seconds["audit"] = time.perf_counter() - t0
    _update_config(ws, settings)
    stage_done("findings")
    if untested:
        raise NothingTestedError(f"Nothing was tested against the labels, so this scan says nothing about "
                                 f"bias: {untested}",
                                 failures)
    return ScanResult(workspace=ws.root, findings=result.findings, expected=result.expected,
                      n_images=len(manifest), n_errors=n_errors, n_tests=result.n_tests, seconds=seconds,
                      failures=failures)


def _check_before_segmenting(data, settings: ScanSettings, reference: dict) -> None:
    """Check the options against the dataset's label columns and schema before the slow part."""
    from biasaudit.data import open_dataset

    if not settings.labels and not settings.sensitive:
        raise ValidationError(
            "scan needs at least one --label or --sensitive column to test part attributes against; "
            "e.g. --label Smiling.")
    dataset = open_dataset(data, layout=settings.layout, schema=_schema_for(settings))
    columns = [str(c) for c in dataset.labels.columns]
    _targets(settings, ["image", *columns])
    schema = _schema_for(settings)
    parts = (schema or dataset.schema).part_names if (schema or dataset.schema) is not None else None
    if parts is not None:
        _check_causal(settings.causal, parts)
        check_reference_parts(reference, parts)


def _schema_for(settings: ScanSettings):
    from biasaudit.core.schema import load_schema

    if settings.segmenter == "mediapipe-face":
        return load_schema("celebamask-hq")
    return load_schema(settings.schema) if settings.schema is not None else None


def _failures(manifest: pd.DataFrame) -> tuple[tuple[str, str], ...]:
    bad = manifest[manifest["status"] != "ok"]
    out = []
    for rec in bad.itertuples():
        error = rec.error
        if not isinstance(error, str):  # the manifest stores a list of reasons
            error = "; ".join(str(e) for e in (list(error) if error is not None else []))
        out.append((str(rec.image), error or "unusable"))
    return tuple(out)


def _why_nothing_tested(ok: pd.DataFrame, targets: list[Target], failures) -> str:
    if len(ok) == 0:
        first = "; ".join(f"{i}: {e}" for i, e in failures[:3])
        return (f"no image could be used (all {len(failures)} failed: {first}"
                f"{' …' if len(failures) > 3 else ''}). Fix the images listed in manifest.parquet.")
    reasons = []
    for t in targets:
        values = ok[t.column].dropna().astype(str).unique() if t.column in ok else []
        option = "--label" if t.role == "label" else "--sensitive"
        if len(values) < 2:
            seen = f"only '{values[0]}'" if len(values) else "no value"
            reasons.append(f"{option} {t.column} has {seen} among the {len(ok)} usable images, so "
                           f"nothing can differ between its groups")
    if reasons:
        return "; ".join(reasons) + ". Choose a column with at least two values."
    return ("no part attribute took two values on the usable images (every part absent, or alike "
            "everywhere). Check the segmentation with `biasaudit segment`.")


def _targets(settings: ScanSettings, columns: Sequence[str]) -> list[Target]:
    """The --label / --sensitive targets, each checked against the manifest's ``columns``."""
    targets = [Target(c, "label") for c in settings.labels] + [Target(c, "sensitive") for c in settings.sensitive]
    available = [c for c in columns if c not in BASE_COLUMNS]
    for t in targets:
        if t.column not in columns:
            option = "--label" if t.role == "label" else "--sensitive"
            raise ValidationError(
                f"{option} {t.column}: no such column in the dataset's labels. Expected one of: "
                f"{', '.join(available) or '(the dataset has no label columns; add labels.csv)'}."
            )
    return targets


def _check_causal(causal: Sequence[str], parts: Sequence[str]) -> None:
    unknown = [c for c in causal if c not in parts]
    if unknown:
        raise ValidationError(
            f"--causal {','.join(unknown)}: not part(s) of the dataset's schema. Expected names "
            f"from: {', '.join(parts)}."
        )


def _heml_embeddings(ws: Workspace, image_ids: list[str], settings: ScanSettings, schema: str):
    """Train (or reuse) a self-supervised HEML and return per-node embeddings.

    A model already in ``WS/models`` is reused when it was trained by a scan with the same
    settings on the same images (``scan-key.json``, written after the model and before
    the embeddings): a re-run after a kill during training retrains, a re-run after a kill
    later does not.
    """
    from biasaudit.heml import HEML
    from biasaudit.heml.workspace import embed_workspace, fit_heml_workspace

    key_path = ws.models_dir / "scan-key.json"
    key = {**settings.heml_key(), "images": image_ids, "schema": schema}
    if not (key_path.is_file() and json.loads(key_path.read_text("utf-8")) == key):
        key_path.unlink(missing_ok=True)
        fit_heml_workspace(ws.root, supervision="self", recipe=settings.recipe,
                           image_size=settings.heml_size, device=settings.device,
                           seed=settings.seed, epochs_scale=settings.epochs_scale,
                           max_train_images=settings.heml_max_images,
                           concurrent=settings.concurrent, embedder=settings.embedder, embed=False)
        write_json_atomic(key_path, key)
    # fresh or reused, the embeddings come from the saved model into float16 files, streamed:
    # a resumed scan audits exactly the numbers an uninterrupted one does
    model = HEML.load(ws.models_dir, device=settings.device)
    emb = embed_workspace(ws.root, model, image_ids, image_size=settings.heml_size)
    tree = model.tree_
    node_parts = {name: tuple(node.parts) for name, node in tree.nodes.items()}
    return NodeEmbeddings(emb, pd.Index(image_ids, name="image")), node_parts, tree.root


class NodeEmbeddings(Mapping):
    """node → DataFrame of its embeddings (float32, indexed by image id; an absent part's
    row is NaN), built from the memory-mapped float16 file when asked for and not kept, so
    the audit holds one node's embeddings at a time instead of every node's.

    >>> e = NodeEmbeddings({"mouth": np.array([[1, 2], [0, 0]], np.float16)}, pd.Index(["a", "b"]))
    >>> list(e), bool(e["mouth"].loc["b"].isna().all())
    (['mouth'], True)
    """

    def __init__(self, arrays: Mapping[str, np.ndarray], index: pd.Index) -> None:
        self._arrays, self._index = arrays, index

    def __getitem__(self, node: str) -> pd.DataFrame:
        arr = np.asarray(self._arrays[node], dtype=np.float32)
        frame = pd.DataFrame(arr, index=self._index)
        frame.loc[~np.any(arr != 0, axis=1)] = np.nan  # HEML embeds an absent part as all zeros
        return frame

    def __iter__(self):
        return iter(self._arrays)

    def __len__(self) -> int:
        return len(self._arrays)


#: the segment columns the audit reads; the others (hashes, pixel counts) stay on disk
AUDIT_SEGMENT_COLUMNS = ["image", "part", "present", "area_frac", "bbox_x0", "bbox_y0", "bbox_x1", "bbox_y1",
                         "lab_l", "lab_a", "lab_b", "colour"]


#: segment columns held as categories in the audit (a few distinct strings, repeated per row)
CATEGORY_COLUMNS = ("image", "part", "colour")


def _audit_segments(ws: Workspace, images: pd.Series) -> pd.DataFrame:
    """The usable images' segment rows, read shard by shard and only the columns the audit
    needs: the whole file, hashes included, is never in memory at once."""
    from pandas.api.types import union_categoricals

    from biasaudit.segment.pipeline import iter_segment_parts

    keep = set(images.astype(str))
    frames = []
    for part in iter_segment_parts(ws.root, columns=AUDIT_SEGMENT_COLUMNS):
        part = part[part["image"].isin(keep)]
        if len(part):
            # the repeated strings become small integer codes as each shard arrives
            frames.append(part.astype({c: "category" for c in CATEGORY_COLUMNS}))
    if not frames:
        from biasaudit.segment.stats import segments_frame

        return segments_frame()[AUDIT_SEGMENT_COLUMNS]
    out = pd.concat([f.drop(columns=list(CATEGORY_COLUMNS)) for f in frames], ignore_index=True)
    for c in CATEGORY_COLUMNS:  # sorted categories: sorting by code is sorting by name
        out[c] = union_categoricals([f[c] for f in frames], sort_categories=True)
    return out[AUDIT_SEGMENT_COLUMNS]


def _update_config(ws: Workspace, settings: ScanSettings) -> None:
    config = json.loads(ws.config.read_text("utf-8")) if ws.config.is_file() else {}
    config["biasaudit_version"] = __version__
    config["scan"] = asdict(settings)
    write_json_atomic(ws.config, config)
