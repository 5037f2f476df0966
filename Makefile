# tierline — two commands on a fresh machine: `make run` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PYTEST_WORKERS ?= 2

.PHONY: run test lint typecheck fmt install clean bench

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@echo "installing tierline and its development tools into $(VENV) ..."
	@$(BIN)/python -m pip install --quiet --upgrade pip
	@$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP)

## Serve on http://127.0.0.1:8000 with the embedded SQLite database and the in-process worker.
run: $(STAMP)
	@$(BIN)/tierline migrate
	@$(BIN)/tierline serve

## The whole suite: lint, types, import contracts, tests on SQLite and PostgreSQL.
test: $(STAMP) lint typecheck
	@$(BIN)/lint-imports --no-cache
	@$(BIN)/python -m pytest -n $(PYTEST_WORKERS) -q

lint: $(STAMP)
	@$(BIN)/ruff check .
	@$(BIN)/ruff format --check .

typecheck: $(STAMP)
	@$(BIN)/mypy

fmt: $(STAMP)
	@$(BIN)/ruff format .
	@$(BIN)/ruff check --fix .

clean:
	rm -rf $(VENV) data .mypy_cache .ruff_cache .pytest_cache
