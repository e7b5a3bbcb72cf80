"""biasaudit: audit image datasets for part-level bias and repair them.

The package is split into one sub-package per stage; imports flow one way
(``cli → report → evaluate → rebalance → audit → heml → segment → data → core``).
One function per stage is bound here for notebooks (see :mod:`biasaudit.api`):
``biasaudit.scan``, ``rebalance``, ``evaluate``, ``probe``, ``report`` (and ``synth_faces``).
"""

import sys
import types
from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("biasaudit")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"

from biasaudit.api import ReportResult, evaluate, probe, rebalance, report, scan, synth_faces  # noqa: E402

_STAGE_FUNCTIONS = frozenset({"evaluate", "rebalance", "report"})


class _Package(types.ModuleType):
    """`rebalance`, `evaluate` and `report` are also sub-package names, and the import
    system sets ``biasaudit.<name>`` to the sub-package the first time it (or any module in
    it, e.g. ``biasaudit.rebalance.recombine``) is imported. That would replace the API
    function bound above, so such a rebinding is ignored: the sub-packages stay reachable
    through ``sys.modules`` and ``from biasaudit.rebalance import ...``. Importing every
    stage here instead would cost each CLI call the import of torch, pandas and scipy."""

    def __setattr__(self, name, value):
        if name in _STAGE_FUNCTIONS and isinstance(value, types.ModuleType):
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package

__all__ = ["ReportResult", "__version__", "evaluate", "probe", "rebalance", "report", "scan", "synth_faces"]
