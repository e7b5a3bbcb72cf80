"""Exceptions a user can cause.

They subclass builtins (as scikit-learn's ``NotFittedError`` does) so that ordinary
``except ValueError`` clauses keep working. Every message names the input, what was
expected, what was found and how to fix it; the CLI shows it without a traceback.
"""

from __future__ import annotations


class BiasauditError(Exception):
    """Base class for every error biasaudit raises on purpose."""


class DatasetError(BiasauditError, ValueError):
    """The dataset as a whole cannot be used (empty folder, unknown layout, no usable image)."""


class ValidationError(BiasauditError, ValueError):
    """An argument or configuration value is out of its allowed range."""


class NotFittedError(BiasauditError, ValueError, AttributeError):
    """A fitted object was used before ``fit``."""


class MissingExtraError(BiasauditError, ImportError):
    """An optional dependency is not installed."""


def require(module: str, *, extra: str, purpose: str):
    """Import ``module`` or raise :class:`MissingExtraError` naming the extra to install.

    >>> np = require("numpy", extra="core", purpose="arrays")
    """
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingExtraError(
            f"{purpose} needs the optional package '{module}', which is not installed. "
            f"Install it with: pip install 'biasaudit[{extra}]'"
        ) from exc
