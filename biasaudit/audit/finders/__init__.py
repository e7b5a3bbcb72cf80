"""One finder per finding kind, each in its own module, all producing :class:`Finding`s.

The registry key is the finding kind (also the CLI choice, kebab-cased)."""

from __future__ import annotations

from biasaudit.audit.finders.association import AssociationFinder
from biasaudit.audit.finders.base import Finder
from biasaudit.audit.finders.shortcut import ShortcutFinder
from biasaudit.audit.finders.under_representation import UnderRepresentationFinder

FINDERS: dict[str, type[Finder]] = {
    "under_representation": UnderRepresentationFinder,
    "association": AssociationFinder,
    "shortcut": ShortcutFinder,
}

__all__ = ["FINDERS", "AssociationFinder", "Finder", "ShortcutFinder", "UnderRepresentationFinder"]
