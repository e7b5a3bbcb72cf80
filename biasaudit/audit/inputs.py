"""What the finders read: one object holding the tables of a scan, joined on ``image``."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

#: attribute columns of attributes.parquet, in the order findings mention them
MASK_ATTRIBUTES = ("colour", "presence", "size", "shape")
DISCOVERED_ATTRIBUTES = ("cluster_name",)
#: attributes whose value follows from a part's geometry; where a causal part occludes a part
#: (a hat hides hair), these follow the causal part and so the label (``confounding``).
#: Presence and colour are not among them: occlusion changes neither.
GEOMETRIC_ATTRIBUTES = ("size", "shape")
#: attributes read from a node's embedding: they see the part's outline, so on an occluded
#: part they follow the causal part too (its colour and presence are still tested by name)
EMBEDDING_ATTRIBUTES = ("cluster_name", "embedding")

ATTRIBUTE_TITLES = {
    "colour": "colour",
    "presence": "presence",
    "size": "size",
    "shape": "shape",
    "cluster_name": "appearance cluster",
}


@dataclass(frozen=True)
class Target:
    """A column the audit tests attributes against: a ``label`` or a ``sensitive`` column."""

    column: str
    role: str = "label"  # "label" | "sensitive"


@dataclass
class AuditInputs:
    """Everything a finder may look at.

    - ``attributes``: one row per (image, node): ``image``, ``node``, and the attribute
      columns of :data:`MASK_ATTRIBUTES` / :data:`DISCOVERED_ATTRIBUTES` (empty string or
      NaN where not applicable, e.g. the colour of an absent part).
    - ``labels``: indexed by image id, one column per target.
    - ``embeddings``: node → DataFrame indexed by image id (rows of an absent part are NaN).
    - ``node_parts``: node → the schema parts it covers (a leaf part maps to itself).
    - ``causal``: parts declared causal for the labels (``--causal``).
    - ``confounded``: node → why a causal part occludes it (pixel contact, see
      ``confounding``): its size and shape findings are expected evidence.
    - ``hidden``: node → why its absence is a causal part hiding it (``hidden_presence``):
      its presence findings are expected evidence.
    - ``reference``: (node, attribute) → {value: expected share} for under-representation.
    - ``colours``: optional per (image, node) median CIELAB colour of a mask part
      (columns ``image, node, lab_l, lab_a, lab_b``); under-representation uses it to tell
      a distinct colour group from the tail of a continuum (see that finder).
    """

    attributes: pd.DataFrame
    labels: pd.DataFrame
    targets: list[Target]
    embeddings: Mapping[str, pd.DataFrame] = field(default_factory=dict)
    node_parts: dict[str, tuple[str, ...]] = field(default_factory=dict)
    causal: frozenset[str] = frozenset()
    confounded: dict[str, str] = field(default_factory=dict)
    hidden: dict[str, str] = field(default_factory=dict)
    reference: dict[tuple[str, str], dict[str, float]] = field(default_factory=dict)
    colours: pd.DataFrame | None = None
    root: str | None = None
    seed: int = 0
    n_boot: int = 200
    min_support_frac: float = 0.01
    min_support: int = 5

    def parts_of(self, node: str) -> tuple[str, ...]:
        return self.node_parts.get(node, tuple(node.split("+")))

    def causal_reason(self, node: str) -> str:
        """Why findings on ``node`` are expected evidence ("" when they are not)."""
        hit = sorted(set(self.parts_of(node)) & self.causal)
        if hit:
            return f"covers the causal part(s) {', '.join(hit)}"
        return ""

    def support_floor(self, n: int) -> int:
        """Fewest images a value needs to be tested; rarer values are noise, not groups."""
        return max(self.min_support, int(np.ceil(self.min_support_frac * n)))

    def label_values(self, column: str) -> pd.Series:
        return self.labels[column]
