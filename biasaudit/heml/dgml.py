"""DGML attentive grouping: G learnable queries attend over a trunk's feature map.

(Xu et al., "Towards Improved and Interpretable Deep Metric Learning via Attentive
Grouping"; summary in ``../shared/papers/dgml-attentive-grouping-abstract.md``.)

For a feature map F (C×H×W) with positions p = 1..HW:

- keys kₚ = W_k fₚ and values vₚ = W_v fₚ (1×1 convolutions, shared by the groups);
- group g has a learnable query q_g; its attention aₚᵍ = softmax_p(q_g·kₚ / √d_k);
- its feature h_g = Σₚ aₚᵍ vₚ (an attention-weighted sum);
- the embedding is the concatenation [h_1, …, h_G] (L2-normalised by the node model).

Every operation is per position or a sum over positions, so the embedding is invariant
to any permutation of the spatial positions (the paper's proposition). Training adds the
diversity loss ``DIVERSITY_WEIGHT`` × mean over group pairs of cos²(h_i, h_j), which pushes
the groups' features towards orthogonal, so the groups attend to different regions.
:func:`attention_maps` returns aᵍ reshaped to H×W for explanations.

Where the attention can mean something (measured in ``reports/benchmarks.md``, HEML v2):

- F is the trunk's *local* map (small-cnn: second block, 16 × 16 positions of a 32 px
  input, 8 px receptive field). Over the last block (4 × 4, 38 px receptive field) or the
  third (8 × 8, 18 px) a position far from the mouth still carries it, and a face node's
  label-carrying groups looked at the background under the chin, not at the mouth.
- The node's own pixels must have to carry the label: a parent that reads its children
  also trains its own pathway on the metric loss (:mod:`biasaudit.heml.parents`), else
  its fused embedding meets the loss through its children and the attention never moves.
- The diversity loss sends groups to different places, so some groups look away from the
  label by design; :func:`attention_on_region` reports the mean of the groups, the best
  group, and the groups weighted by how well each one alone retrieves the label.

>>> import torch
>>> head = AttentiveGrouping(16, embedding_dim=8, groups=2)
>>> head(torch.randn(3, 16, 4, 4)).shape
torch.Size([3, 8])
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from biasaudit.core.errors import ValidationError

#: Weight of the diversity loss added to the metric loss. 0.1 keeps it an order of magnitude
#: below a triplet loss at its margin (0.05–0.5 early in training), so the groups separate
#: without the metric objective being traded away; the unit test shows they separate.
DIVERSITY_WEIGHT = 0.1
KEY_DIM = 32


class AttentiveGrouping(nn.Module):
    """G query vectors attending over the positions of a B×C×H×W map → B×(G·d) embedding."""

    def __init__(self, in_channels: int, *, embedding_dim: int = 128, groups: int = 4,
                 key_dim: int = KEY_DIM, diversity_weight: float = DIVERSITY_WEIGHT) -> None:
        super().__init__()
        if groups < 1 or embedding_dim % groups:
            raise ValidationError(
                f"DGML needs the embedding size ({embedding_dim}) to be a multiple of the number of "
                f"groups ({groups}); each group gets embedding_dim / groups dimensions."
            )
        self.groups = groups
        self.key_dim = key_dim
        self.diversity_weight = float(diversity_weight)
        self.keys = nn.Conv2d(in_channels, key_dim, 1)
        self.values = nn.Conv2d(in_channels, embedding_dim // groups, 1)
        self.queries = nn.Parameter(torch.randn(groups, key_dim))
        self._last_groups: torch.Tensor | None = None

    def attention(self, fmap: torch.Tensor) -> torch.Tensor:
        """B×G×P attention of every group over the P = H·W positions (rows sum to 1)."""
        keys = self.keys(fmap).flatten(2)                               # B×k×P
        logits = torch.einsum("gk,bkp->bgp", self.queries, keys) / math.sqrt(self.key_dim)
        return logits.softmax(dim=-1)

    def group_features(self, fmap: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B×G×d group features, B×G×P attention)."""
        attn = self.attention(fmap)
        values = self.values(fmap).flatten(2)                           # B×d×P
        return torch.einsum("bgp,bdp->bgd", attn, values), attn

    def forward(self, fmap: torch.Tensor) -> torch.Tensor:
        groups, _ = self.group_features(fmap)
        self._last_groups = groups if self.training else None
        return groups.flatten(1)

    def diversity_loss(self, groups: torch.Tensor) -> torch.Tensor:
        """Mean over group pairs (and the batch) of cos²(h_i, h_j); 0 for a single group."""
        if self.groups < 2:
            return groups.sum() * 0.0
        unit = F.normalize(groups, dim=-1)
        cos = unit @ unit.transpose(1, 2)                               # B×G×G
        off = ~torch.eye(self.groups, dtype=torch.bool, device=groups.device)
        return cos[:, off].pow(2).mean()

    def aux_loss(self) -> torch.Tensor | None:
        """``diversity_weight`` × the diversity loss of the last training forward pass."""
        if self._last_groups is None or self.diversity_weight == 0.0:
            return None
        loss = self.diversity_weight * self.diversity_loss(self._last_groups)
        self._last_groups = None
        return loss


@torch.no_grad()
def attention_maps(model, crops: np.ndarray) -> np.ndarray:
    """Each DGML group's attention over each input, upsampled to the crop: N×G×r×r float32,
    every map summing to 1 over its pixels. ``model`` is a node model whose embedder is DGML;
    ``crops`` are its N×r×r×3 uint8 inputs.

    >>> maps = attention_maps(heml.models_["face"], crops)      # doctest: +SKIP
    >>> maps.shape                                              # doctest: +SKIP
    (2, 4, 32, 32)
    """
    if getattr(model, "embedder_kind", "mlp") != "dgml":
        raise ValidationError("attention_maps needs a node trained with embedder 'dgml'.")
    model = model.eval()
    device = next(model.parameters()).device
    x = torch.from_numpy(np.ascontiguousarray(crops)).permute(0, 3, 1, 2).float().to(device)
    fmap = model.features(x)
    attn = model.embedder.attention(fmap).float()
    h, w = fmap.shape[-2:]
    maps = attn.reshape(len(x), -1, h, w)
    r = crops.shape[1]
    # nearest upsampling keeps each position's mass on exactly the pixels it covers
    up = F.interpolate(maps, size=(r, crops.shape[2]), mode="nearest")
    up = up / up.sum(dim=(2, 3), keepdim=True).clamp_min(1e-12)
    return up.cpu().numpy().astype(np.float32)


def attention_mass(maps: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """Share of each map's mass on ``masks`` (N×r×r bool): N×G values in [0, 1].

    >>> m = np.full((1, 1, 2, 2), 0.25, np.float32); k = np.array([[[True, False], [False, False]]])
    >>> attention_mass(m, k).round(2).tolist()
    [[0.25]]
    """
    masks = np.asarray(masks, bool)
    return (maps * masks[:, None]).sum(axis=(2, 3))


def attention_overlays(crop: np.ndarray, maps: np.ndarray, *, colour: tuple[int, int, int] = (255, 40, 0)) -> np.ndarray:
    """One strip for a node input: the crop, then the crop under each group's attention
    (brighter colour = more attention; each map scaled to its own maximum). ``crop`` r×r×3
    uint8, ``maps`` G×r×r (from :func:`attention_maps`); returns r × (G+1)·r × 3 uint8.
    The report draws DGML explanations with this function too.

    >>> attention_overlays(np.zeros((4, 4, 3), np.uint8), np.ones((2, 4, 4)) / 16).shape
    (4, 12, 3)
    """
    crop = np.asarray(crop, np.float32)
    tiles = [crop]
    tint = np.asarray(colour, np.float32)
    for m in np.asarray(maps, np.float32):
        w = (m / max(float(m.max()), 1e-12))[..., None]
        tiles.append(crop * (1.0 - 0.7 * w) * 0.6 + tint * 0.7 * w)
    return np.clip(np.concatenate(tiles, axis=1), 0, 255).astype(np.uint8)


def attention_on_region(heml, images: np.ndarray, label_maps: np.ndarray, node: str, region: tuple[str, ...],
                        y: np.ndarray | None = None) -> dict:
    """How much of a DGML node's attention falls on ``region`` (schema part names, e.g. the
    mouth and lips), against the region's share of the node's own pixels, over ``images``
    (the rows of a held-out split). Images where the region is absent are left out.

    Returns the region's mean share of the node's pixels (``share_node``) and of the crop
    (``share_crop``), the mean attention mass on it per group, and the ratio mass / share
    for the mean of the groups, for the best group and, given labels ``y``, for the groups
    weighted by how well each group alone retrieves the label (its held-out P@1 above
    chance): the diversity loss sends groups to different places, so the mean of the
    groups is diluted by groups that carry no label at all.

    >>> attention_on_region(heml, images[test], maps[test], "face", ("mouth", "u_lip", "l_lip"),
    ...                     y=smiling[test])["ratio_node"]["label_weighted"]   # doctest: +SKIP
    3.4
    """
    from biasaudit.heml.inputs import region_masks
    from biasaudit.heml.quality import retrieval_metrics

    tree = heml.tree_
    opts = tree.nodes[node].options
    inp = heml.node_inputs(images, label_maps, node)
    region_ids = tuple(tree.schema.id_of(p) for p in region)
    node_ids = tree.part_ids(node)
    inside = region_masks(label_maps, node_ids, region_ids, resolution=opts.resolution, margin=opts.margin)
    own = region_masks(label_maps, node_ids, node_ids, resolution=opts.resolution, margin=opts.margin)
    rows = np.flatnonzero(inp.present & inside.any(axis=(1, 2)))
    model = heml.models_[node]
    maps = attention_maps(model, inp.crops[rows])
    mass = attention_mass(maps, inside[rows])                                  # N×G
    share_node = float((inside[rows].sum((1, 2)) / np.maximum(own[rows].sum((1, 2)), 1)).mean())
    share_crop = float(inside[rows].mean((1, 2)).mean())
    per_group = mass.mean(0)
    out = {"node": node, "region": list(region), "n": int(len(rows)), "share_node": share_node,
           "share_crop": share_crop, "mass_per_group": per_group.round(4).tolist()}
    ratios = {"mean_of_groups": float(per_group.mean()), "best_group": float(per_group.max())}
    if y is not None:
        with torch.no_grad():
            x = torch.from_numpy(np.ascontiguousarray(inp.crops[rows])).permute(0, 3, 1, 2).float()
            feats = torch.cat([model.embedder.group_features(model.features(x[i:i + 256]))[0]
                               for i in range(0, len(x), 256)])
        labels = np.asarray(y)[rows]
        skill = []
        for g in range(feats.shape[1]):
            m = retrieval_metrics(F.normalize(feats[:, g], dim=1), labels)
            skill.append(max(m["precision_at_1"] - m["chance_p_at_1"], 0.0))
        out["group_skill"] = [round(s, 4) for s in skill]
        if sum(skill) > 0:
            ratios["label_weighted"] = float(np.dot(per_group, skill) / sum(skill))
    out["mass"] = ratios
    out["ratio_node"] = {k: v / share_node for k, v in ratios.items()}
    out["ratio_crop"] = {k: v / share_crop for k, v in ratios.items()}
    return out
