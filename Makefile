# Convenience targets; the README's commands are the source of truth.
.PHONY: install test lint slow bench

install:
	pip install torch==2.13.0 -e ".[dev,face,pretrained]"

test:
	python -m pytest

slow:
	python -m pytest -m slow

lint:
	ruff check biasaudit tests reports/bench

bench:
	for f in reports/bench/bench_*.py; do python $$f || exit 1; done
