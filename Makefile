# tierline — two commands on a fresh machine: `make run` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PYTEST_WORKERS ?= 2
# Python may keep compiled modules (__pycache__, ignored by git) whatever the shell says: every test
# process, and every `tierline` a test starts, then imports instead of compiling (seconds per run).
unexport PYTHONDONTWRITEBYTECODE

.PHONY: run test test-fast soak lint typecheck fmt install clean bench image image-test release-queries

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@echo "installing tierline and its development tools into $(VENV) ..."
	@$(BIN)/python -m pip install --quiet --upgrade pip
	@# (setuptools' advice about editable installs is not for us: no warnings from the build.)
	@PYTHONWARNINGS=ignore $(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP)

## Serve on http://127.0.0.1:8000 with the embedded SQLite database and the in-process worker.
run: $(STAMP)
	@$(BIN)/tierline migrate
	@$(BIN)/tierline serve

## The whole suite: lint, types, import contracts, tests on SQLite and PostgreSQL.
test: $(STAMP) lint typecheck
	@$(BIN)/lint-imports --no-cache
	@$(BIN)/python -m pytest -n $(PYTEST_WORKERS) --dist loadgroup -q

## The rules, the API and the worker on SQLite, without anything that starts or kills a process
## (servers, workers, the CLI, the browser): a quick loop while changing code (< 1 minute).
test-fast: $(STAMP)
	@TIERLINE_TEST_DATABASES=sqlite $(BIN)/python -m pytest -n $(PYTEST_WORKERS) -q -m "not slow"

## The container image from the Dockerfile, built with buildah as root; when python:3.11-slim
## cannot be pulled, on a stand-in base made from Debian packages (docs/operations.md).
IMAGE ?= tierline:latest
image:
	@$(PYTHON) .ci/image.py build --tag $(IMAGE)

## Build the image, then run it: migrate, serve as the unprivileged user, a signed webhook drained
## by a worker container, SIGTERM, production without secrets, contents, fly.toml (tests/image).
image-test: $(STAMP) image
	@TIERLINE_IMAGE=$(IMAGE) $(BIN)/python -m pytest tests/image -n 0 -q --durations=5

## Record the SQL of the release going to production, which later migrations must keep working
## (tests/service/test_migrations_rolling.py; docs/operations.md). Needs PostgreSQL.
release-queries: $(STAMP)
	@$(BIN)/python -m tests.service.release_queries

## Longer reliability runs: workers killed 20 times over 5,000 deliveries, the database outage,
## hostile payloads, and slow or oversized clients at full size against a real `tierline serve`
## (8 x 40 MB unfinished headers, 80 half-sent 5 MB bodies, 80 idle connections).
soak: $(STAMP)
	@TIERLINE_SOAK_ROUNDS=20 TIERLINE_SOAK_DELIVERIES=5000 $(BIN)/python -m pytest -q -p no:cacheprovider \
		tests/webhooks/test_worker_processes.py::TestKilledWorker tests/webhooks/test_outage.py \
		tests/webhooks/test_hostile.py
	@TIERLINE_SOAK_FULL=1 $(BIN)/python -m pytest -q -p no:cacheprovider -n 0 tests/service/test_client_limits.py

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

## Benchmarks (bench/README.md; figures in docs/benchmarks.md). They need PostgreSQL at
## BENCH_DATABASE_URL (default postgresql://127.0.0.1:5432/tierline_bench) and, for HTTP, wrk.
WRK_INSTALL = command -v wrk >/dev/null 2>&1 || { echo "installing wrk with apt-get ..."; apt-get update -qq && apt-get install -y -qq wrk; }
## pgbench comes with PostgreSQL's client tools (on PATH), or sits in a server's bin directory.
PGBENCH_INSTALL = command -v pgbench >/dev/null 2>&1 || ls /usr/lib/postgresql/*/bin/pgbench >/dev/null 2>&1 || \
	{ echo "installing pgbench (postgresql-client) with apt-get ..."; apt-get update -qq && apt-get install -y -qq postgresql-client; }

.PHONY: bench-seed bench-stats bench-api bench-profile bench-writeback

## Issues 8 and 18: intake throughput and latency (wrk) against pgbench inserting the same inbox row
## at the same concurrency (and a Python insert loop), worker throughput (< 5 min).
bench: $(STAMP)
	@$(WRK_INSTALL)
	@$(PGBENCH_INSTALL)
	@$(BIN)/python bench/intake_bench.py

## Seed (or reuse) the 100,000-customer, 1,000,000-order database.
bench-seed: $(STAMP)
	@$(BIN)/python bench/seed.py

## Issue 4: stats.read against a hand-written aggregate; full tier recalculation.
bench-stats: bench-seed
	@$(BIN)/python bench/stats_bench.py

## Issue 5: POST /api/orders/enrich and GET /api/customers over HTTP, and their SQL.
bench-api: bench-seed
	@$(WRK_INSTALL)
	@$(BIN)/python bench/api_bench.py

## Where the worker spends its time (py-spy and pyinstrument, measuring tools only).
bench-profile: $(STAMP)
	@$(BIN)/python -m pip install --quiet py-spy pyinstrument
	@$(BIN)/python bench/worker_profile.py

# Issue 17: write back 10,000 customers against the stand-in Shopify (needs ../shared).
bench-writeback: $(STAMP)
	@$(BIN)/python bench/writeback_bench.py
