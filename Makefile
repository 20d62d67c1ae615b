# The README's commands. `make demo` and `make serve` need nothing but Python 3.11+;
# `make test` also starts Redis and PostgreSQL when they are not running.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: install demo serve test lint typecheck check services test-tools bench clean

$(BIN)/notifier: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

install: $(BIN)/notifier

demo: install
	$(BIN)/notifier demo

serve: install
	$(BIN)/notifier serve

services:
	scripts/ensure-services

test-tools:
	scripts/ensure-test-tools

# Two xdist workers: one runs the real-time process tests in turn, the other everything else.
test: install services test-tools
	$(BIN)/pytest -q -n 2 --dist loadgroup

# Measurements, not tests: each prints its figures against its target and a baseline.
bench: install services
	$(BIN)/python benchmarks/run_all.py

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

typecheck: install
	$(BIN)/mypy notifier tests

check: lint typecheck test

clean:
	rm -rf $(VENV) notifier.db notifier.db-* outbox.txt .pytest_cache .mypy_cache .ruff_cache
