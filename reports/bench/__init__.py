"""Benchmark scripts (each also runs on its own: ``python reports/bench/bench_<name>.py``) and
the runner that runs them all: ``python -m reports.bench`` (see ``runner.py``)."""
