"""The ``inpaint`` method: a diffusers inpainting pipeline repaints the target region.

The geometry comes from part recombination (:func:`~biasaudit.rebalance.swap_part` gives
the new label map: where the part will be and what the removed part leaves); the
pipeline then repaints every pixel whose label changed plus the part itself, dilated by
3 % of the image side, from a prompt built from the attribute value and the part name
("a photo of a person with blond hair"). Outside that region the base is kept exactly.
The mask stays the recombined one: the model is asked to paint the part there, and the
quality gate re-measures the result and rejects samples where it did not.

``diffusers`` is imported here only. The pipeline runs on a GPU when present (bf16 where
the GPU supports it, else float16) and in float32 on the CPU.

>>> prompt_for("hair", "colour", "blond")
'a photo of a person with blond hair'
>>> prompt_for("eye_g", "presence", "present")
'a photo of a person wearing glasses'
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np

from biasaudit.core.errors import BiasauditError

#: how a schema part reads in a prompt
PART_WORDS = {"eye_g": "glasses", "ear_r": "earrings", "neck_l": "a necklace", "u_lip": "upper lip",
              "l_lip": "lower lip", "l_eye": "eyes", "r_eye": "eyes", "l_brow": "eyebrows", "r_brow": "eyebrows",
              "hat": "a hat", "sunglasses": "sunglasses", "glasses": "glasses", "earrings": "earrings"}


class InpaintModelError(BiasauditError, ValueError):
    """--model is not a usable diffusers inpainting pipeline."""


def prompt_for(part: str, kind: str, value: str) -> str:
    """The inpainting prompt for giving ``part`` the attribute ``value``."""
    noun = PART_WORDS.get(part, part.replace("_", " "))
    if kind == "presence":
        bare = noun.removeprefix("a ").removeprefix("an ")
        return f"a photo of a person wearing {noun}" if value == "present" else f"a photo of a person without {bare}"
    return f"a photo of a person with {value} {noun.removeprefix('a ')}"


def check_model_folder(model: str | Path) -> None:
    """A cheap check before anything heavy is imported: a local --model must be a saved
    inpainting pipeline (a name that is not a folder is taken as a hub id)."""
    path = Path(model)
    if not path.exists():
        return
    index = path / "model_index.json"
    if not index.is_file():
        raise InpaintModelError(
            f"--model {model}: no model_index.json, so it is not a diffusers pipeline folder. Give the "
            f"folder that save_pretrained wrote (with model_index.json, unet/, vae/, text_encoder/ …)."
        )
    name = json.loads(index.read_text("utf-8")).get("_class_name", "")
    if "Inpaint" not in name:
        raise InpaintModelError(
            f"--model {model}: model_index.json names '{name}', not an inpainting pipeline. Give an "
            f"inpainting pipeline (e.g. StableDiffusionInpaintPipeline, whose UNet takes 9 channels)."
        )


class InpaintGenerator:
    """Callable ``(image, region, prompt, seed) -> image`` around a diffusers inpainting pipeline."""

    def __init__(self, model: str | Path, *, device: str = "auto", steps: int = 20, guidance: float = 7.5) -> None:
        import torch

        from biasaudit.core.errors import require

        require("diffusers", extra="dev", purpose="--method inpaint")
        from diffusers import AutoPipelineForInpainting

        check_model_folder(model)
        cuda = device in ("auto", "cuda") and torch.cuda.is_available()
        if device == "cuda" and not cuda:
            raise InpaintModelError("--device cuda: no CUDA GPU is available; use --device cpu or auto.")
        dtype = torch.float32
        if cuda:
            dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        from biasaudit.core.progress import progress_enabled

        if not progress_enabled():  # loader bars of diffusers / transformers, too
            import diffusers.utils.logging as diffusers_logging
            import transformers.utils.logging as transformers_logging

            diffusers_logging.disable_progress_bar()
            transformers_logging.disable_progress_bar()
        try:
            with warnings.catch_warnings():
                # newer diffusers renamed torch_dtype to dtype; the old name works on every version
                warnings.simplefilter("ignore", FutureWarning)
                pipe = AutoPipelineForInpainting.from_pretrained(str(model), torch_dtype=dtype)
        except Exception as exc:  # noqa: BLE001 - any loader failure is the same user error
            raise InpaintModelError(
                f"--model {model}: could not load a diffusers inpainting pipeline ({type(exc).__name__}: "
                f"{str(exc).splitlines()[0][:200]}). Give a local pipeline folder, or a hub id with network access."
            ) from None
        self.device = "cuda" if cuda else "cpu"
        self.pipe = pipe.to(self.device)
        self.pipe.set_progress_bar_config(disable=True)
        self.steps = steps
        self.guidance = guidance

    def __call__(self, image: np.ndarray, region: np.ndarray, prompt: str, *, seed: int = 0) -> np.ndarray:
        import cv2
        import torch
        from PIL import Image

        h, w = region.shape
        # the pipeline works in multiples of 8 (its VAE downsamples by 8)
        ph, pw = max(64, int(round(h / 8)) * 8), max(64, int(round(w / 8)) * 8)
        src = Image.fromarray(np.ascontiguousarray(image)).resize((pw, ph), Image.BICUBIC)
        msk = Image.fromarray(region.astype(np.uint8) * 255).resize((pw, ph), Image.NEAREST)
        generator = torch.Generator(device=self.device).manual_seed(int(seed))
        out = self.pipe(prompt=prompt, image=src, mask_image=msk, height=ph, width=pw,
                        num_inference_steps=self.steps, guidance_scale=self.guidance, generator=generator,
                        output_type="np").images[0]
        painted = np.clip(np.rint(np.asarray(out, dtype=np.float32) * 255), 0, 255).astype(np.uint8)
        if painted.shape[:2] != (h, w):
            painted = cv2.resize(painted, (w, h), interpolation=cv2.INTER_AREA)
        alpha = cv2.GaussianBlur(region.astype(np.float32), (0, 0), max(0.6, 0.006 * min(h, w)))
        alpha = np.where(region, 1.0, np.minimum(alpha, 0.49))[..., None]
        return np.clip(np.rint(image * (1 - alpha) + painted * alpha), 0, 255).astype(np.uint8)
