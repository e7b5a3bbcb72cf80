from __future__ import annotations

from biasaudit.audit.findings import Finding
from biasaudit.audit.inputs import AuditInputs


class Finder:
    """Base class: a finder implements :meth:`find` and returns candidate findings with raw
    p-values; the audit adjusts them for multiple testing and computes severity."""

    kind: str = ""

    def find(self, inputs: AuditInputs) -> list[Finding]:  # pragma: no cover - interface
        raise NotImplementedError
