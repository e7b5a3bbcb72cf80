"""Label-map schemas: which pixel value means which part.

A schema maps integer class ids (pixel values in a label map) to part names.
Four are built in (``celebamask-hq``, ``lip``, ``ade20k-150``, ``ccp``); a dataset's
``schema.json`` (``{"name": ..., "classes": {"0": "background", ...}}``) overrides them.

>>> get_schema("celebamask-hq").id_of("hair")
13
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from types import MappingProxyType

from biasaudit.core.errors import ValidationError

BUILTIN_SCHEMAS = ("celebamask-hq", "lip", "ade20k-150", "ccp")


@dataclass(frozen=True)
class Schema:
    """Class ids ↔ part names for one label-map convention.

    ``classes`` maps id → name; ``aliases`` maps a name to other names that mean the
    same thing (used when matching a segmentation model's ``id2label``).
    """

    name: str
    classes: Mapping[int, str]
    aliases: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    description: str = ""

    def __post_init__(self) -> None:
        names = list(self.classes.values())
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValidationError(
                f"Schema '{self.name}' names {dup} more than once; each part name must be unique."
            )
        if any(i < 0 for i in self.classes):
            raise ValidationError(f"Schema '{self.name}' has a negative class id; ids must be >= 0.")
        object.__setattr__(self, "classes", MappingProxyType(dict(sorted(self.classes.items()))))
        object.__setattr__(self, "aliases", MappingProxyType(dict(self.aliases)))

    @property
    def ids(self) -> tuple[int, ...]:
        return tuple(self.classes)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self.classes.values())

    @property
    def max_id(self) -> int:
        return max(self.classes)

    @property
    def part_names(self) -> tuple[str, ...]:
        """Every name but the background (id 0)."""
        return tuple(n for i, n in self.classes.items() if i != 0)

    def id_of(self, name: str) -> int:
        """The class id of ``name``; raises naming the valid choices."""
        for i, n in self.classes.items():
            if n == name:
                return i
        raise ValidationError(
            f"Part '{name}' is not in schema '{self.name}'. Expected one of: "
            f"{', '.join(self.names)}."
        )

    def name_of(self, class_id: int) -> str:
        try:
            return self.classes[int(class_id)]
        except KeyError:
            raise ValidationError(
                f"Class id {class_id} is not in schema '{self.name}' (ids 0..{self.max_id})."
            ) from None

    def to_dict(self) -> dict:
        out = {
            "name": self.name,
            "classes": {str(i): n for i, n in self.classes.items()},
        }
        if self.description:
            out["description"] = self.description
        if self.aliases:
            out["aliases"] = {k: list(v) for k, v in self.aliases.items()}
        return out

    @classmethod
    def from_dict(cls, data: Mapping, *, source: str = "schema") -> Schema:
        if not isinstance(data, Mapping) or not isinstance(data.get("classes"), Mapping):
            raise ValidationError(
                f"{source} must be a JSON object with a 'classes' object mapping ids to names, "
                f'e.g. {{"name": "mine", "classes": {{"0": "background", "1": "skin"}}}}.'
            )
        classes: dict[int, str] = {}
        for key, name in data["classes"].items():
            try:
                class_id = int(key)
            except (TypeError, ValueError):
                raise ValidationError(
                    f"{source}: class id {key!r} is not an integer; keys of 'classes' must be "
                    f"pixel values such as \"0\", \"1\"."
                ) from None
            if not isinstance(name, str) or not name.strip():
                raise ValidationError(f"{source}: class {key} has no name; give it a non-empty string.")
            classes[class_id] = name.strip()
        aliases = {k: tuple(v) for k, v in (data.get("aliases") or {}).items()}
        return cls(
            name=str(data.get("name") or source),
            classes=classes,
            aliases=aliases,
            description=str(data.get("description", "")),
        )


def get_schema(name: str) -> Schema:
    """A built-in schema by name (``celebamask-hq``, ``lip``, ``ade20k-150``, ``ccp``)."""
    if name not in BUILTIN_SCHEMAS:
        raise ValidationError(
            f"Unknown schema '{name}'. Expected one of {', '.join(BUILTIN_SCHEMAS)}, "
            f"or a path to a schema.json file."
        )
    text = resources.files("biasaudit.core").joinpath("schemas", f"{name}.json").read_text("utf-8")
    return Schema.from_dict(json.loads(text), source=f"built-in schema '{name}'")


def load_schema(name_or_path: str | Path) -> Schema:
    """A built-in schema by name, or one read from a ``schema.json`` path."""
    if isinstance(name_or_path, str) and name_or_path in BUILTIN_SCHEMAS:
        return get_schema(name_or_path)
    path = Path(name_or_path)
    if not path.is_file():
        raise ValidationError(
            f"Schema '{name_or_path}' is neither a built-in schema ({', '.join(BUILTIN_SCHEMAS)}) "
            f"nor an existing schema.json file."
        )
    try:
        data = json.loads(path.read_text("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValidationError(f"{path} is not valid UTF-8 JSON ({exc}); fix or remove it.") from None
    return Schema.from_dict(data, source=str(path))
