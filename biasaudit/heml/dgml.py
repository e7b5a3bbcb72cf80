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

**A parent's attention starts from its children (the default for DGML parents under label
supervision).** HEML initialises a parent from its children; for DGML that includes where
they found the label. A parent gets a per-position *prior* π over its input: each child's
validation skill (P@1 − chance, counted only where significant, as the fusion start uses
it) is passed down that child's own prior to the leaves below it, and every leaf's weight
is spread over that leaf's pixels in the parent's crop (:func:`combine_leaves`,
:func:`attention_prior`). The logits become qᵍ·kₚ/√d_k + βᵍ·log(1 + P·πₚ), with one
learnable strength βᵍ per group starting at ``PRIOR_STRENGTH`` = 1. π is an input per
position, computed from the image's part map like the crop itself, so it permutes with
the positions and the embedding stays invariant to a permutation of them (tested). A
parent no child of which carries the label gets no prior; leaves, MLP nodes and
self-supervised trees are unchanged. The prior travels after the children's embeddings in
the parent's ``children`` input (:meth:`~biasaudit.heml.trunks.NodeModel.set_attention_prior`).

Why, measured (SynthFaces 2000 × 128, ``label:Smiling``, CPU defaults, 600 test faces;
ratio = attention mass on mouth + lips / their share of the node's own pixels, mean of
the groups; ``reports/benchmarks.md``, HEML v2, session 6). Without the prior the parent
reads its children's embeddings, so nothing makes its own pixels find the 17-pixel mouth:
seeds 0 / 1 / 2, face 1.03× / 0.25× / 0.54×, root 0.65× / 0.22× / 0.68×. With it: face
6.12× / 6.01× / 6.72× (best group 13.8–15.4×), root 15.8× / 14.3× / 18.3×; root P@1
0.995 / 0.988 / 0.993 against 0.997 / 0.985 / 0.993 without (0–2 of 600 test images
either way). The face's groups then retrieve the smile on their own (own P@1 − chance
0.05–0.31 per group, against 0.00–0.21 without). What is given and what is learned:
with β forced to 0 the same queries put 0.79× on the mouth at the face, and the prior's
bias alone (queries at 0) 6.6–7.9×; β moved less than 0.05 from 1 in
training. So the prior places the attention and the parent's own pathway learns the
label where it looks; the queries do not find the 17-pixel mouth by themselves at this
budget (the ablation figures of :func:`attention_on_region`). Independent generator
(``tests/audit/independent_faces.py``, seed 0): face 3.50×, root 12.7×, root P@1 1.000.
Measured before and not chosen: doubling every epoch (root ≥ 3× in 4 of 5 seeds, the
face in 1 of 5, twice the training time).

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
#: Starting strength β of a parent's attention prior (learnable, one per group; see the
#: module doc): logits + β·log(1 + P·πₚ). At 1, a group whose query is still neutral
#: attends in proportion to (1 + P·πₚ).
PRIOR_STRENGTH = 1.0


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
        # β per group, only once enable_prior() is called (a parent with an attention prior):
        # leaves and models saved before priors existed keep exactly their parameters
        self.register_parameter("prior_strength", None)
        self._last_groups: torch.Tensor | None = None

    def enable_prior(self, strength: float = PRIOR_STRENGTH) -> None:
        """Give every group a learnable prior strength β (see the module doc)."""
        self.prior_strength = nn.Parameter(torch.full((self.groups,), float(strength),
                                                      device=self.queries.device))

    def attention(self, fmap: torch.Tensor, prior: torch.Tensor | None = None) -> torch.Tensor:
        """B×G×P attention of every group over the P = H·W positions (rows sum to 1).
        ``prior``: B×P, each row a distribution over the positions (or all zeros: none),
        used only once :meth:`enable_prior` was called."""
        keys = self.keys(fmap).flatten(2)                               # B×k×P
        logits = torch.einsum("gk,bkp->bgp", self.queries, keys) / math.sqrt(self.key_dim)
        if self.prior_strength is not None and prior is not None:
            # per position, like the keys: permuting the positions permutes the bias with them
            bias = torch.log1p(prior.to(logits.dtype).clamp_min(0) * prior.shape[-1])
            logits = logits + self.prior_strength.to(logits.dtype)[None, :, None] * bias[:, None, :]
        return logits.softmax(dim=-1)

    def group_features(self, fmap: torch.Tensor, prior: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(B×G×d group features, B×G×P attention)."""
        attn = self.attention(fmap, prior)
        values = self.values(fmap).flatten(2)                           # B×d×P
        return torch.einsum("bgp,bdp->bgd", attn, values), attn

    def forward(self, fmap: torch.Tensor, prior: torch.Tensor | None = None) -> torch.Tensor:
        groups, _ = self.group_features(fmap, prior)
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


def combine_leaves(children: list[tuple[float, tuple]]) -> tuple[tuple[tuple[int, ...], float], ...]:
    """A parent's prior over its leaves from its children's: ``children`` holds, per child,
    (its weight, its own leaves as ((part ids, weight), ...)). Each child's leaf weights are
    scaled by the child's share of the weights; children at weight 0 drop out. Empty when
    every weight is 0 (no child carries the label: no prior).

    >>> combine_leaves([(0.5, (((10,), 1.0),)), (0.0, (((4,), 1.0),))])
    (((10,), 1.0),)
    >>> combine_leaves([(1.0, (((10,), 0.5), ((1,), 0.5))), (1.0, (((4,), 1.0),))])
    (((1,), 0.25), ((4,), 0.5), ((10,), 0.25))
    """
    total = float(sum(max(w, 0.0) for w, _ in children))
    out: dict[tuple[int, ...], float] = {}
    if total <= 0 or not math.isfinite(total):
        return ()
    for w, leaves in children:
        if w <= 0:
            continue
        inner = float(sum(lw for _, lw in leaves)) or 1.0
        for ids, lw in leaves:
            key = tuple(sorted(int(i) for i in ids))
            out[key] = out.get(key, 0.0) + (w / total) * (lw / inner)
    return tuple(sorted((k, round(v, 6)) for k, v in out.items() if v > 0))


def attention_prior(label_maps: np.ndarray, node_part_ids: tuple[int, ...], leaves, *, resolution: int,
                    margin: float = 0.1) -> np.ndarray:
    """Where a parent's label-carrying descendants lie in its input: N×r×r float32, each
    image's map π = Σ_leaf w_leaf · mask_leaf / |mask_leaf| (every leaf's weight spread over
    its own pixels in the node's crop, so a 17-pixel mouth with half the weight gets 18×
    the density of a 300-pixel cheek with the other half), renormalised over the leaves
    present in the image; all zeros where none is. ``leaves``: ((part ids, weight), ...).

    >>> maps = np.zeros((1, 8, 8), np.int64); maps[0, :, :] = 1; maps[0, 6:, 2:4] = 10
    >>> p = attention_prior(maps, (1, 10), (((10,), 1.0),), resolution=8, margin=0.0)
    >>> float(p.sum()), float(p[0, 7, 2])
    (1.0, 0.25)
    """
    from biasaudit.heml.inputs import node_inputs

    label_maps = np.asarray(label_maps)
    out = np.zeros((len(label_maps), resolution, resolution), np.float32)
    leaves = [(tuple(ids), float(w)) for ids, w in leaves if w > 0]
    top = int(label_maps.max(initial=0))
    # three leaves per crop pass, one per colour channel (the masks of region_masks), and
    # 256 images at a time, so the painted copy stays small whatever the image size
    for lo in range(0, len(leaves), 3):
        batch = leaves[lo : lo + 3]
        table = np.zeros((max(top, *(max(ids) for ids, _ in batch)) + 1, 3), np.uint8)
        for c, (ids, _) in enumerate(batch):
            table[list(ids), c] = 255
        for r0 in range(0, len(label_maps), 256):
            block = label_maps[r0 : r0 + 256]
            paint = table[np.clip(block, 0, None)]  # a lookup per pixel (class ids are small and >= 0)
            crops = node_inputs(paint, block, tuple(node_part_ids), resolution=resolution, margin=margin).crops
            for c, (_, w) in enumerate(batch):
                m = (crops[..., c] >= 128).astype(np.float32)
                out[r0 : r0 + 256] += np.float32(w) * m / np.maximum(m.sum(axis=(1, 2), keepdims=True), 1.0)
    total = out.sum(axis=(1, 2), keepdims=True)
    return np.divide(out, total, out=np.zeros_like(out), where=total > 0)


def node_prior(heml, label_maps: np.ndarray, node: str) -> torch.Tensor | None:
    """The attention prior of ``node`` for each image (N × r² float32, flattened
    :func:`attention_prior` of its stored leaves), or None when the node has none."""
    leaves = getattr(heml.models_.get(node), "attention_prior", None) if hasattr(heml, "models_") else None
    return prior_rows(heml, label_maps, node, leaves)


def prior_rows(heml, label_maps: np.ndarray, node: str, leaves) -> torch.Tensor | None:
    """:func:`attention_prior` of ``leaves`` in ``node``'s crops, N × r² (None: no leaves)."""
    if not leaves:
        return None
    tree = heml.tree_
    opts = tree.nodes[node].options
    prior = attention_prior(label_maps, tree.part_ids(node), leaves, resolution=opts.resolution, margin=opts.margin)
    return torch.from_numpy(prior.reshape(len(prior), -1))


def pool_prior(prior: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """A B × r² prior over a node's pixels → B × (H·W) over a feature map's positions
    (each position gets the mass of the pixels it covers; rows keep summing to 1)."""
    b, n = prior.shape
    side = math.isqrt(n)
    if side * side != n:
        raise ValidationError(f"An attention prior must cover a square input; got {n} values per image.")
    pooled = F.adaptive_avg_pool2d(prior.float().view(b, 1, side, side), tuple(size)).flatten(1)
    total = pooled.sum(dim=1, keepdim=True)
    return torch.where(total > 0, pooled / total.clamp_min(1e-12), torch.zeros_like(pooled))


@torch.no_grad()
def attention_maps(model, crops: np.ndarray, prior: torch.Tensor | np.ndarray | None = None) -> np.ndarray:
    """Each DGML group's attention over each input, upsampled to the crop: N×G×r×r float32,
    every map summing to 1 over its pixels. ``model`` is a node model whose embedder is DGML;
    ``crops`` are its N×r×r×3 uint8 inputs; ``prior`` (N × r², :func:`node_prior`) is the
    node's attention prior, for a parent that has one (without it, such a parent's maps
    show its queries alone: the prior's strength set to 0).

    >>> maps = attention_maps(heml.models_["face"], crops, node_prior(heml, label_maps, "face"))  # doctest: +SKIP
    >>> maps.shape                                              # doctest: +SKIP
    (2, 4, 32, 32)
    """
    if getattr(model, "embedder_kind", "mlp") != "dgml":
        raise ValidationError("attention_maps needs a node trained with embedder 'dgml'.")
    model = model.eval()
    device = next(model.parameters()).device
    x = torch.from_numpy(np.ascontiguousarray(crops)).permute(0, 3, 1, 2).float().to(device)
    fmap = model.features(x)
    h, w = fmap.shape[-2:]
    pooled = None
    if prior is not None:
        pooled = pool_prior(torch.as_tensor(np.asarray(prior, np.float32)).reshape(len(x), -1), (h, w)).to(device)
    attn = model.embedder.attention(fmap, pooled).float()
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

    For a parent with an attention prior, the same figures with the prior's strength set
    to 0 (the queries alone) are under ``without_prior``, the attention of the prior's bias
    alone at the learned strengths (queries set to 0: what is given) under ``prior_alone``,
    with the prior map's own mass on the region (``prior_mass``) and the learned
    strengths β (``prior_strength``).

    >>> attention_on_region(heml, images[test], maps[test], "face", ("mouth", "u_lip", "l_lip"),
    ...                     y=smiling[test])["ratio_node"]["label_weighted"]   # doctest: +SKIP
    3.4
    """
    from biasaudit.heml.inputs import region_masks

    tree = heml.tree_
    opts = tree.nodes[node].options
    inp = heml.node_inputs(images, label_maps, node)
    region_ids = tuple(tree.schema.id_of(p) for p in region)
    node_ids = tree.part_ids(node)
    inside = region_masks(label_maps, node_ids, region_ids, resolution=opts.resolution, margin=opts.margin)
    own = region_masks(label_maps, node_ids, node_ids, resolution=opts.resolution, margin=opts.margin)
    rows = np.flatnonzero(inp.present & inside.any(axis=(1, 2)))
    model = heml.models_[node]
    prior = node_prior(heml, label_maps[rows], node)
    share_node = float((inside[rows].sum((1, 2)) / np.maximum(own[rows].sum((1, 2)), 1)).mean())
    share_crop = float(inside[rows].mean((1, 2)).mean())
    out = _region_figures(model, inp.crops[rows], inside[rows], prior, None if y is None else np.asarray(y)[rows])
    out.update(node=node, region=list(region), n=int(len(rows)), share_node=share_node, share_crop=share_crop)
    if prior is not None:
        strength = model.embedder.prior_strength
        out["prior_strength"] = [round(float(v), 4) for v in strength.detach()]
        out["prior_mass"] = float((prior.numpy().reshape(inside[rows].shape) * inside[rows]).sum((1, 2)).mean())
        saved = strength.detach().clone()
        with torch.no_grad():
            strength.zero_()
        try:
            off = _region_figures(model, inp.crops[rows], inside[rows], prior, None if y is None else np.asarray(y)[rows])
        finally:
            with torch.no_grad():
                strength.copy_(saved)
        off["ratio_node"] = {k: v / share_node for k, v in off["mass"].items()}
        off["ratio_crop"] = {k: v / share_crop for k, v in off["mass"].items()}
        out["without_prior"] = off
        # the prior's bias alone at the learned strengths (queries at 0): what is given
        queries = model.embedder.queries
        saved = queries.detach().clone()
        with torch.no_grad():
            queries.zero_()
        try:
            alone = attention_mass(attention_maps(model, inp.crops[rows], prior), inside[rows]).mean(0)
        finally:
            with torch.no_grad():
                queries.copy_(saved)
        out["prior_alone"] = {"mass_per_group": alone.round(4).tolist(),
                              "ratio_node": {"mean_of_groups": float(alone.mean()) / share_node,
                                             "best_group": float(alone.max()) / share_node}}
    out["ratio_node"] = {k: v / share_node for k, v in out["mass"].items()}
    out["ratio_crop"] = {k: v / share_crop for k, v in out["mass"].items()}
    return out


def _region_figures(model, crops: np.ndarray, inside: np.ndarray, prior: torch.Tensor | None,
                    labels: np.ndarray | None) -> dict:
    """Mass on ``inside`` per group, mean / best / label-weighted, and each group's skill."""
    from biasaudit.heml.quality import retrieval_metrics

    maps = attention_maps(model, crops, prior)
    mass = attention_mass(maps, inside)                                        # N×G
    per_group = mass.mean(0)
    out = {"mass_per_group": per_group.round(4).tolist()}
    ratios = {"mean_of_groups": float(per_group.mean()), "best_group": float(per_group.max())}
    if labels is not None:
        with torch.no_grad():
            x = torch.from_numpy(np.ascontiguousarray(crops)).permute(0, 3, 1, 2).float()
            feats = []
            for i in range(0, len(x), 256):
                fmap = model.features(x[i:i + 256])
                p = None if prior is None else pool_prior(prior[i:i + 256], fmap.shape[-2:])
                feats.append(model.embedder.group_features(fmap, p)[0])
            feats = torch.cat(feats)
        skill = []
        for g in range(feats.shape[1]):
            m = retrieval_metrics(F.normalize(feats[:, g], dim=1), labels)
            skill.append(max(m["precision_at_1"] - m["chance_p_at_1"], 0.0))
        out["group_skill"] = [round(s, 4) for s in skill]
        if sum(skill) > 0:
            ratios["label_weighted"] = float(np.dot(per_group, skill) / sum(skill))
    out["mass"] = ratios
    return out
