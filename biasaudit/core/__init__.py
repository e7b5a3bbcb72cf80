"""Data objects, errors, configuration helpers and schemas shared by every stage."""

from biasaudit.core.errors import (
    BiasauditError,
    DatasetError,
    MissingExtraError,
    NotFittedError,
    ValidationError,
)
from biasaudit.core.schema import BUILTIN_SCHEMAS, Schema, get_schema, load_schema

__all__ = [
    "BUILTIN_SCHEMAS",
    "BiasauditError",
    "DatasetError",
    "MissingExtraError",
    "NotFittedError",
    "Schema",
    "ValidationError",
    "get_schema",
    "load_schema",
]
