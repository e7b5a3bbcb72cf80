"""Measured figures of biasaudit: ``benchmarks.md`` (prose plus a generated block),
``benchmarks.json`` and the scripts that produce them (``reports/bench/``).

Not part of the installed package: run from a checkout, e.g. ``python -m reports.bench``.
"""
