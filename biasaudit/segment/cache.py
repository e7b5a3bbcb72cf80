"""The label-map cache under ``WS/masks/``: one PNG per image content hash, in one
folder per segmenter fingerprint, so a re-run or a resumed run never segments the same
pixels twice and two segmenters never read each other's maps.

>>> import numpy as np, tempfile
>>> cache = MaskCache(tempfile.mkdtemp(), fingerprint="segformer|celebamask-hq|abc")
>>> cache.put("0" * 64, np.eye(3, dtype=np.uint8))
>>> cache.get("0" * 64).tolist()
[[1, 0, 0], [0, 1, 0], [0, 0, 1]]
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import numpy as np

from biasaudit.core.io import write_bytes_atomic


def cache_dirname(fingerprint: str) -> str:
    """``"segformer|celebamask-hq|…"`` → ``"segformer-1a2b3c4d"`` (readable and unique)."""
    slug = re.sub(r"[^a-z0-9_-]+", "-", fingerprint.split("|", 1)[0].lower()).strip("-") or "segmenter"
    return f"{slug}-{hashlib.sha256(fingerprint.encode()).hexdigest()[:8]}"


class MaskCache:
    """PNG label maps keyed by image sha256 (8-bit, or 16-bit for schemas above 255 ids)."""

    def __init__(self, masks_root: str | Path, *, fingerprint: str) -> None:
        self.fingerprint = fingerprint
        self.folder = Path(masks_root) / cache_dirname(fingerprint)

    def path(self, sha256: str) -> Path:
        return self.folder / f"{sha256}.png"

    def get(self, sha256: str) -> np.ndarray | None:
        """The cached map, or None when absent or unreadable (then it is recomputed)."""
        import cv2

        path = self.path(sha256)
        if not sha256 or not path.is_file():
            return None
        arr = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        if arr is None or arr.ndim != 2:
            return None
        return arr

    def put(self, sha256: str, label_map: np.ndarray) -> None:
        import cv2

        arr = np.asarray(label_map)
        arr = arr.astype(np.uint8 if arr.max(initial=0) <= 255 else np.uint16, copy=False)
        ok, buf = cv2.imencode(".png", arr)
        if not ok:  # cv2 only fails here on unsupported dtypes, which the cast rules out
            raise RuntimeError(f"could not encode the label map of {sha256} as PNG")
        write_bytes_atomic(self.path(sha256), buf.tobytes())

    def __contains__(self, sha256: str) -> bool:
        return bool(sha256) and self.path(sha256).is_file()
