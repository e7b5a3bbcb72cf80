"""``segformer:<dir-or-id>``: a transformers semantic-segmentation model (SegFormer or any
``AutoModelForSemanticSegmentation``) whose ``id2label`` is mapped onto the schema by
name (:mod:`biasaudit.segment.labels`).

The directory must hold what ``save_pretrained`` writes for the model *and* its image
processor (``config.json``, weights, ``preprocessor_config.json``). A value that is not
an existing directory is tried as a Hugging Face Hub id (needs a network or a filled
cache); either way a failure is reported as our own error naming the value.

>>> # seg = SegformerSegmenter.from_pretrained("models/face-parsing",
>>> #                                          schema=get_schema("celebamask-hq"))
>>> # label_maps = seg.segment_batch([rgb_image])
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from biasaudit.core.errors import ValidationError
from biasaudit.core.schema import Schema
from biasaudit.segment.base import (
    Segmenter,
    SegmentFailure,
    SegmentOutput,
    default_batch_size,
    register_segmenter,
    resolve_device,
)
from biasaudit.segment.labels import LabelMapping, map_labels_by_name

# Upsampling (classes × H × W) float logits to full resolution is the memory peak;
# above this many elements we take the argmax at model resolution and resize the ids.
_MAX_LOGIT_ELEMENTS = 64_000_000


class SegformerSegmenter(Segmenter):
    """Batched inference of a semantic-segmentation model, output in ``schema`` ids."""

    name = "segformer"

    def __init__(self, model, processor, *, schema: Schema, source: str, device: str = "cpu",
                 batch_size: int = 8, fingerprint_extra: str = "") -> None:
        self.model = model
        self.processor = processor
        self.schema = schema
        self.source = source
        self.device = device
        self.batch_size = batch_size
        self._fingerprint_extra = fingerprint_extra
        id2label = getattr(model.config, "id2label", None) or {}
        self.mapping: LabelMapping = map_labels_by_name(id2label, schema)
        if not any(schema_name != schema.classes.get(0) for schema_name in self.mapping.matched.values()):
            raise ValidationError(
                f"None of the labels of model '{source}' ({', '.join(list(id2label.values())[:8])}"
                f"{', …' if len(id2label) > 8 else ''}) match a part of schema '{schema.name}' "
                f"({', '.join(schema.part_names[:8])}, …). Choose the schema the model was trained "
                f"for with --schema, or a model whose labels use the schema's names."
            )
        self._lut = self.mapping.lut.astype(np.uint16 if schema.max_id > 255 else np.uint8)

    @classmethod
    def from_pretrained(cls, source: str | Path, *, schema: Schema, device: str = "auto",
                        batch_size: int | None = None) -> SegformerSegmenter:
        """Load model + image processor from a local directory (or a hub id); ``batch_size``
        None: :func:`~biasaudit.segment.base.default_batch_size` of the device (large on a GPU)."""
        import torch
        from transformers import AutoImageProcessor, AutoModelForSemanticSegmentation

        source = str(source)
        path = Path(source).expanduser()
        is_dir = path.is_dir()
        if not is_dir and _looks_like_path(source):
            raise ValidationError(
                f"--segmenter segformer:{source}: the directory {path} does not exist. Give a "
                f"folder written by save_pretrained (config.json, model weights, "
                f"preprocessor_config.json) or a Hugging Face model id."
            )
        if is_dir:
            missing = [f for f in ("config.json", "preprocessor_config.json") if not (path / f).is_file()]
            if missing:
                raise ValidationError(
                    f"--segmenter segformer:{source}: {path} has no {' or '.join(missing)}. Save both "
                    f"the model and its image processor there (model.save_pretrained(dir); "
                    f"processor.save_pretrained(dir))."
                )
        where = str(path) if is_dir else source
        try:
            processor = AutoImageProcessor.from_pretrained(where)
            # safetensors only: a pickled pytorch_model.bin can run code when loaded
            model = AutoModelForSemanticSegmentation.from_pretrained(where, use_safetensors=True)
        except (OSError, ValueError, KeyError) as exc:
            hint = ("" if is_dir else
                    " It is not a local directory, so it was tried as a Hugging Face Hub id"
                    + (" with HF_HUB_OFFLINE=1 (no network)" if os.environ.get("HF_HUB_OFFLINE") == "1" else "")
                    + "; give a local folder written by save_pretrained instead.")
            raise ValidationError(
                f"--segmenter segformer:{source}: could not load a semantic-segmentation model "
                f"and image processor ({type(exc).__name__}: {str(exc).splitlines()[0][:300]}).{hint}"
            ) from None
        resolved = resolve_device(device)
        model.eval().to(resolved)
        if resolved.startswith("cuda"):
            # NHWC convolutions (patch embeddings, decode head) suit the tensor cores
            model.to(memory_format=torch.channels_last)
        return cls(model, processor, schema=schema, source=source, device=resolved,
                   batch_size=batch_size or default_batch_size(resolved),
                   fingerprint_extra=_files_fingerprint(path) if is_dir else source)

    @property
    def fingerprint(self) -> str:
        return f"segformer|{self.schema.name}|{self._fingerprint_extra}"

    def prepare(self, sample, image: np.ndarray) -> np.ndarray:
        """The image processor's output for one image (3×h×w float32: resized, rescaled,
        normalised), made in a decoding worker; the processor treats the images of a batch
        one by one, so this is exactly the row a whole-batch call gives."""
        return self.processor(images=[image], return_tensors="np")["pixel_values"][0]

    def segment_batch(self, images: Sequence[np.ndarray], prepared: Sequence[np.ndarray] | None = None
                      ) -> list[SegmentOutput]:
        import torch
        import torch.nn.functional as F

        if not images:
            return []
        if prepared is None or any(p is None for p in prepared):
            pixel_values = self.processor(images=list(images), return_tensors="pt")["pixel_values"]
        else:
            pixel_values = torch.from_numpy(np.stack(prepared))
        use_amp = self.device.startswith("cuda")
        if use_amp:
            # page-locked memory: the copy runs by DMA, overlapped with the host's next work
            pixel_values = pixel_values.pin_memory().to(self.device, non_blocking=True)
            pixel_values = pixel_values.contiguous(memory_format=torch.channels_last)
        else:
            pixel_values = pixel_values.to(self.device)
        amp_dtype = torch.bfloat16 if use_amp and torch.cuda.is_bf16_supported() else torch.float16
        with torch.inference_mode(), torch.autocast(
            device_type="cuda" if use_amp else "cpu", dtype=amp_dtype, enabled=use_amp
        ):
            logits = self.model(pixel_values=pixel_values).logits
        logits = logits.float()
        finite = torch.isfinite(logits).flatten(1).all(dim=1).tolist()
        lut = torch.as_tensor(self._lut.astype(np.int64), device=logits.device)
        out: list[SegmentOutput] = []
        for i, image in enumerate(images):
            h, w = image.shape[:2]
            if not finite[i]:
                out.append(SegmentFailure(f"model '{self.source}' returned non-finite scores"))
                continue
            if logits.shape[1] * h * w <= _MAX_LOGIT_ELEMENTS:
                up = F.interpolate(logits[i : i + 1], size=(h, w), mode="bilinear", align_corners=False)
                # argmax and the id translation stay on the device; only the small map moves
                ids = lut[up.argmax(dim=1)[0]].to(torch.int32).cpu().numpy()
                out.append(ids.astype(self._lut.dtype))
            else:
                import cv2

                low = lut[logits[i].argmax(dim=0)].to(torch.int32).cpu().numpy().astype(np.uint16)
                out.append(cv2.resize(low, (w, h), interpolation=cv2.INTER_NEAREST).astype(self._lut.dtype))
        return out


def _looks_like_path(value: str) -> bool:
    # Hub ids are "name" or "org/name"; anything else is meant as a folder.
    if value.startswith(("/", ".", "~")) or "\\" in value or value.count("/") > 1:
        return True
    return Path(value).expanduser().exists()


def _files_fingerprint(path: Path) -> str:
    digest = hashlib.sha256(str(path.resolve()).encode())
    for f in sorted(path.iterdir()):
        if f.is_file():
            st = f.stat()
            digest.update(f"{f.name}:{st.st_size}:{st.st_mtime_ns}".encode())
    cfg = path / "config.json"
    if cfg.is_file():
        digest.update(json.dumps(json.loads(cfg.read_text("utf-8")), sort_keys=True).encode())
    return digest.hexdigest()[:16]


def _make_segformer(arg, *, schema: Schema, device: str = "auto",
                    batch_size: int | None = None) -> SegformerSegmenter:
    if not arg:
        raise ValidationError(
            "--segmenter segformer needs a model: segformer:<local dir> or segformer:<model id>, "
            "e.g. segformer:models/face-parsing."
        )
    return SegformerSegmenter.from_pretrained(arg, schema=schema, device=device, batch_size=batch_size)


register_segmenter("segformer", _make_segformer)
