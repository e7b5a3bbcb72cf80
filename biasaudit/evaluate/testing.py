"""A classifier with a known reliance, for the probe's tests: TorchScript models that users
ship must be probed like evaluate's own runs, and a planted reliance must be found."""

from __future__ import annotations

from pathlib import Path

import torch


class BlondDetector(torch.nn.Module):
    """Logit high when the top 40 % of the picture holds many light-warm (blond) pixels."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        top = x[:, :, : int(x.shape[2] * 0.4)]
        r, g, b = top[:, 0], top[:, 1], top[:, 2]
        blond = ((r > 0.7) & (g > 0.6) & (r - b > 0.2)).float().mean(dim=(1, 2))
        return (blond - 0.04) * 200.0


def save_blond_detector(path: str | Path) -> Path:
    """Script :class:`BlondDetector` and save it as a TorchScript file at ``path``."""
    torch.jit.script(BlondDetector()).save(str(path))
    return Path(path)
