"""The workspace folder (DESIGN.md §3): where every stage reads and writes.

>>> ws = Workspace("out")
>>> ws.segments.name
'segments.parquet'
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Workspace:
    root: Path

    def __init__(self, root: str | Path) -> None:
        object.__setattr__(self, "root", Path(root))

    @property
    def config(self) -> Path:
        return self.root / "config.json"

    @property
    def manifest(self) -> Path:
        return self.root / "manifest.parquet"

    @property
    def masks_dir(self) -> Path:
        return self.root / "masks"

    @property
    def segments(self) -> Path:
        """A folder of ``part-00000.parquet`` … shards (one file in older workspaces);
        read it with ``biasaudit.segment.segment_table`` or ``pd.read_parquet``."""
        return self.root / "segments.parquet"

    @property
    def models_dir(self) -> Path:
        return self.root / "models"

    @property
    def embeddings_dir(self) -> Path:
        return self.root / "embeddings"

    @property
    def attributes(self) -> Path:
        return self.root / "attributes.parquet"

    @property
    def findings(self) -> Path:
        return self.root / "findings.json"

    @property
    def report(self) -> Path:
        return self.root / "report.html"

    def model_dir(self, node: str) -> Path:
        return self.models_dir / node_dirname(node)

    def embedding_path(self, node: str) -> Path:
        return self.embeddings_dir / f"{node_dirname(node)}.npy"

    def ensure(self) -> Workspace:
        self.root.mkdir(parents=True, exist_ok=True)
        return self


def node_dirname(node: str) -> str:
    """A node name (``hair`` or ``l_eye+r_eye``) as a safe folder/file name."""
    return "".join(c if (c.isalnum() or c in "_-+.") else "_" for c in node)
