"""``python -m reports.bench``: run every benchmark; see ``reports/bench/runner.py``."""

import sys

from reports.bench.runner import main

if __name__ == "__main__":
    sys.exit(main())
