"""The segment tree: which parts each HEML node sees, and how nodes merge (DESIGN.md §5).

Leaves are schema parts or small groups of parts; every internal node merges exactly two
children; the single root covers every part of the tree ("the whole image"). A recipe
(YAML or a mapping) gives the tree as nested nodes plus per-node training options::

    schema: celebamask-hq
    defaults: {resolution: 32, epochs: 6, margin: 0.1, trunk: small-cnn}
    tree:
      name: image
      children:
        - {name: eyes, parts: [l_eye, r_eye], resolution: 24}
        - hair                      # a leaf holding the single part "hair"

A leaf written as a string is a part name, or parts joined by ``+`` (``l_eye+r_eye``).
A node without ``name`` is called after its parts (leaf) or children (internal), joined
by ``+``. Options given on an internal node are inherited by nothing: each node takes
its own value or the recipe's ``defaults``.

>>> tree = default_tree("celebamask-hq")
>>> tree.nodes["mouth"].parts
('mouth', 'u_lip', 'l_lip')
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from types import MappingProxyType
from typing import Any

from biasaudit.core.errors import ValidationError
from biasaudit.core.schema import BUILTIN_SCHEMAS, Schema, get_schema, load_schema


def _find_recipes_dir() -> Path:
    """``recipes/`` of a source checkout (editable install), else the copy a wheel installs
    under ``<prefix>/share/biasaudit/recipes`` (pyproject's data-files)."""
    import sys

    candidates = [Path(__file__).resolve().parents[2] / "recipes",
                  Path(sys.prefix) / "share" / "biasaudit" / "recipes"]
    for path in candidates:
        if (path / "celebamask-hq.yaml").is_file():
            return path
    return candidates[0]


RECIPES_DIR = _find_recipes_dir()


@dataclass(frozen=True)
class NodeOptions:
    """Per-node training choices; every one can be set per node or in ``defaults``.

    - ``resolution``: side of the square node input in pixels. Small parts need fewer
      pixels; on a 2-core CPU a 4-layer CNN trains at ~1,900 img/s at 32 px, ~670 at
      48 px and ~370 at 64 px, so the default recipes keep leaves at 32 px.
    - ``epochs``: passes over the node's training images. Parents start from their
      children's averaged weights and are only fine-tuned, so they need fewer.
    - ``margin``: extra context around the node's bounding box, as a fraction of its side.
    - ``trunk``: ``small-cnn[:width]``, ``efficientnet-lite0[:finetune]``,
      ``hf:<local dir>`` or ``timm:<model name>@<weights file>`` (see ``trunks.py``).
    - ``embedder``: ``mlp`` (pooled features → MLP) or ``dgml`` (attentive grouping with
      learnable queries over the trunk's feature map; see ``dgml.py``).
    """

    resolution: int = 32
    epochs: int = 6
    margin: float = 0.1
    trunk: str = "small-cnn"
    embedder: str = "mlp"

    def __post_init__(self) -> None:
        if not isinstance(self.resolution, int) or not 8 <= self.resolution <= 1024:
            raise ValidationError(
                f"The 'resolution' option must be an int in [8, 1024]. Got {self.resolution!r} instead."
            )
        if not isinstance(self.epochs, int) or not 0 <= self.epochs <= 10_000:
            raise ValidationError(
                f"The 'epochs' option must be an int in [0, 10000]. Got {self.epochs!r} instead."
            )
        if not isinstance(self.margin, (int, float)) or not 0.0 <= float(self.margin) <= 2.0:
            raise ValidationError(
                f"The 'margin' option must be a number in [0, 2]. Got {self.margin!r} instead."
            )
        if not isinstance(self.trunk, str) or not self.trunk:
            raise ValidationError(f"The 'trunk' option must be a non-empty string. Got {self.trunk!r}.")
        if self.embedder not in ("mlp", "dgml"):
            raise ValidationError(f"The 'embedder' option must be 'mlp' or 'dgml'. Got {self.embedder!r} instead.")


_OPTION_NAMES = tuple(f.name for f in fields(NodeOptions))


@dataclass(frozen=True)
class TreeNode:
    """One node: its name, the schema parts it covers and its (zero or two) children."""

    name: str
    parts: tuple[str, ...]
    children: tuple[str, ...]
    options: NodeOptions

    @property
    def is_leaf(self) -> bool:
        return not self.children


@dataclass(frozen=True)
class SegmentTree:
    """A validated binary segment tree over one schema.

    ``nodes`` is ordered bottom-up (children before parents, the root last).
    """

    schema: Schema
    nodes: Mapping[str, TreeNode]
    root: str

    def __post_init__(self) -> None:
        object.__setattr__(self, "nodes", MappingProxyType(dict(self.nodes)))

    @property
    def leaves(self) -> tuple[str, ...]:
        return tuple(n for n, node in self.nodes.items() if node.is_leaf)

    def part_ids(self, node: str) -> tuple[int, ...]:
        """Schema class ids of the parts under ``node``."""
        return tuple(self.schema.id_of(p) for p in self._node(node).parts)

    def parent_of(self, node: str) -> str | None:
        for name, other in self.nodes.items():
            if node in other.children:
                return name
        return None

    def height(self, node: str) -> int:
        """0 for a leaf, else 1 + the taller child's height."""
        n = self._node(node)
        return 0 if n.is_leaf else 1 + max(self.height(c) for c in n.children)

    def levels(self) -> list[list[str]]:
        """Nodes grouped by height: every node's children sit in earlier groups, so one
        group can be trained at once after the previous ones."""
        out: dict[int, list[str]] = {}
        for name in self.nodes:
            out.setdefault(self.height(name), []).append(name)
        return [out[h] for h in sorted(out)]

    def with_options(self, **options: Any) -> SegmentTree:
        """The same tree with ``options`` (e.g. ``epochs=2``) forced on every node."""
        unknown = sorted(set(options) - set(_OPTION_NAMES))
        if unknown:
            raise ValidationError(f"Unknown node option(s) {unknown}; expected some of {list(_OPTION_NAMES)}.")
        nodes = {k: replace(v, options=replace(v.options, **options)) for k, v in self.nodes.items()}
        return SegmentTree(schema=self.schema, nodes=nodes, root=self.root)

    def scaled_resolution(self, factor: float) -> SegmentTree:
        """The same tree with every node's resolution multiplied by ``factor`` (min 8 px)."""
        if not factor > 0:
            raise ValidationError(f"The resolution scale must be > 0. Got {factor!r} instead.")
        nodes = {
            k: replace(v, options=replace(v.options, resolution=max(8, round(v.options.resolution * factor))))
            for k, v in self.nodes.items()
        }
        return SegmentTree(schema=self.schema, nodes=nodes, root=self.root)

    def to_dict(self) -> dict:
        """A recipe mapping that :func:`load_recipe` reads back to an equal tree."""

        def node_dict(name: str) -> dict:
            node = self.nodes[name]
            out: dict[str, Any] = {"name": name, **asdict(node.options)}
            if node.is_leaf:
                out["parts"] = list(node.parts)
            else:
                out["children"] = [node_dict(c) for c in node.children]
            return out

        return {"schema": self.schema.to_dict(), "tree": node_dict(self.root)}

    def node_table(self) -> list[dict]:
        """Every node with its parts, children, parent and options (bottom-up order)."""
        return [{"name": name, "parts": list(node.parts), "children": list(node.children),
                 "parent": self.parent_of(name), "height": self.height(name), **asdict(node.options)}
                for name, node in self.nodes.items()]

    def _node(self, node: str) -> TreeNode:
        try:
            return self.nodes[node]
        except KeyError:
            raise ValidationError(
                f"Node '{node}' is not in the segment tree. Expected one of: {', '.join(self.nodes)}."
            ) from None


def load_recipe(source: str | Path | Mapping, *, schema: Schema | str | None = None) -> SegmentTree:
    """Read and validate a segment-tree recipe (a YAML path, a built-in schema name, or a mapping).

    Validation: the tree is binary (0 or 2 children), every part belongs to the schema and
    appears at most once, node names are unique, and there is one root. Errors name the
    offending node.

    >>> load_recipe({"schema": "celebamask-hq", "tree": {"children": ["hair", "l_eye+r_eye"]}}).root
    'hair+l_eye+r_eye'
    """
    where = "recipe"
    if isinstance(source, str) and source in BUILTIN_SCHEMAS:
        return default_tree(source)
    if isinstance(source, (str, Path)):
        path = Path(source)
        where = str(path)
        if not path.is_file():
            raise ValidationError(
                f"Recipe '{source}' is neither a built-in schema ({', '.join(BUILTIN_SCHEMAS)}) nor a "
                f"YAML file; pass a path to a recipe such as recipes/celebamask-hq.yaml."
            )
        import yaml

        try:
            data = yaml.safe_load(path.read_text("utf-8"))
        except yaml.YAMLError as exc:
            raise ValidationError(f"{path} is not valid YAML ({exc}); fix the file.") from None
    else:
        data = source
    if not isinstance(data, Mapping) or "tree" not in data:
        raise ValidationError(
            f"{where} must be a mapping with a 'tree' key (and usually 'schema' and 'defaults'); "
            f"see recipes/celebamask-hq.yaml for an example."
        )
    schema_obj = _resolve_schema(schema if schema is not None else data.get("schema"), where)
    defaults = data.get("defaults") or {}
    if not isinstance(defaults, Mapping):
        raise ValidationError(f"{where}: 'defaults' must be a mapping of node options, got {defaults!r}.")
    base = _options(NodeOptions(), defaults, f"{where}: defaults")

    nodes: dict[str, TreeNode] = {}
    seen_parts: dict[str, str] = {}

    def build(spec: Any, path: str) -> str:
        if isinstance(spec, str):
            spec = {"parts": spec.split("+")}
        if not isinstance(spec, Mapping):
            raise ValidationError(f"{where}: node at {path} must be a part name or a mapping, got {spec!r}.")
        unknown = sorted(set(spec) - {"name", "parts", "children", *_OPTION_NAMES})
        label = f"node '{spec.get('name', path)}'"
        if unknown:
            raise ValidationError(
                f"{where}: {label} has unknown key(s) {unknown}; allowed: name, parts, children, "
                f"{', '.join(_OPTION_NAMES)}."
            )
        has_parts, has_children = "parts" in spec, "children" in spec
        if has_parts == has_children:
            raise ValidationError(
                f"{where}: {label} must have either 'parts' (a leaf) or 'children' (two nodes), not "
                f"{'both' if has_parts else 'neither'}."
            )
        options = _options(base, {k: v for k, v in spec.items() if k in _OPTION_NAMES}, f"{where}: {label}")
        if has_parts:
            parts = spec["parts"]
            parts = parts.split("+") if isinstance(parts, str) else list(parts)
            if not parts:
                raise ValidationError(f"{where}: leaf {label} lists no parts; give at least one.")
            for part in parts:
                if part not in schema_obj.part_names:
                    raise ValidationError(
                        f"{where}: leaf {label} names part '{part}', which is not a part of schema "
                        f"'{schema_obj.name}'. Expected one of: {', '.join(schema_obj.part_names)}."
                    )
                if part in seen_parts:
                    raise ValidationError(
                        f"{where}: part '{part}' appears in leaf {label} and again in leaf "
                        f"'{seen_parts[part]}'; every part may appear at most once in a tree."
                    )
            name = str(spec.get("name") or "+".join(parts))
            for part in parts:
                seen_parts[part] = name
            node = TreeNode(name=name, parts=tuple(parts), children=(), options=options)
        else:
            children = spec["children"]
            if not isinstance(children, (list, tuple)) or len(children) != 2:
                n = len(children) if isinstance(children, (list, tuple)) else type(children).__name__
                raise ValidationError(
                    f"{where}: {label} has {n} children; every internal node merges exactly two "
                    f"(nest a further node to merge more)."
                )
            kids = [build(c, f"{path}.children[{i}]") for i, c in enumerate(children)]
            name = str(spec.get("name") or "+".join(kids))
            parts = nodes[kids[0]].parts + nodes[kids[1]].parts
            node = TreeNode(name=name, parts=parts, children=tuple(kids), options=options)
        _check_name(node.name, where, label)
        if node.name in nodes:
            raise ValidationError(
                f"{where}: node name '{node.name}' is used twice; give one of them a different 'name'."
            )
        clash = [other for other in nodes if other.lower() == node.name.lower()]
        if clash:
            raise ValidationError(
                f"{where}: node names '{clash[0]}' and '{node.name}' differ only in letter case, so their "
                f"model folders would collide on case-insensitive file systems; rename one of them."
            )
        nodes[node.name] = node
        return node.name

    tree_spec = data["tree"]
    if isinstance(tree_spec, (list, tuple)):
        raise ValidationError(
            f"{where}: 'tree' is a list of {len(tree_spec)} nodes, but a tree has one root; "
            f"wrap them as {{children: [a, b]}} (nesting to keep it binary)."
        )
    root = build(tree_spec, "tree")
    return SegmentTree(schema=schema_obj, nodes=nodes, root=root)


_NAME_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_+-")


def _check_name(name: str, where: str, label: str) -> None:
    # node names become folder and file names (models/<node>/, embeddings/<node>.npy)
    bad = sorted({c for c in name if c not in _NAME_CHARS})
    if not name or bad or name.startswith("_"):
        why = f"contains {''.join(bad)!r}" if bad else ("is empty" if not name else "starts with '_' (reserved)")
        raise ValidationError(
            f"{where}: {label} has the name {name!r}, which {why}; node names may use only letters, "
            f"digits, '_', '+' and '-' (not first '_'). Give the node a 'name' such as 'upper_body'."
        )


def default_recipe_path(schema: str) -> Path:
    """Path of the shipped recipe for a built-in schema."""
    if schema not in BUILTIN_SCHEMAS:
        raise ValidationError(
            f"There is no default segment tree for schema '{schema}'. Expected one of "
            f"{', '.join(BUILTIN_SCHEMAS)}, or pass your own recipe YAML."
        )
    return RECIPES_DIR / f"{schema}.yaml"


def default_tree(schema: str) -> SegmentTree:
    """The default segment tree of a built-in schema (from ``recipes/<schema>.yaml``)."""
    return load_recipe(default_recipe_path(schema))


def _resolve_schema(value: Any, where: str) -> Schema:
    if isinstance(value, Schema):
        return value
    if isinstance(value, Mapping):
        return Schema.from_dict(value, source=f"{where}: schema")
    if isinstance(value, str):
        return get_schema(value) if value in BUILTIN_SCHEMAS else load_schema(value)
    raise ValidationError(
        f"{where}: no schema given; add 'schema: <name>' ({', '.join(BUILTIN_SCHEMAS)}) to the recipe."
    )


def _options(base: NodeOptions, given: Mapping, where: str) -> NodeOptions:
    unknown = sorted(set(given) - set(_OPTION_NAMES))
    if unknown:
        raise ValidationError(f"{where}: unknown option(s) {unknown}; allowed: {', '.join(_OPTION_NAMES)}.")
    try:
        return replace(base, **dict(given))
    except ValidationError as exc:
        raise ValidationError(f"{where}: {exc}") from None
