"""biasaudit: audit image datasets for part-level bias and repair them.

The package is split into one sub-package per stage; imports flow one way
(``cli → report → evaluate → rebalance → audit → heml → segment → data → core``).
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("biasaudit")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]
