# Tablehouse: `make run` serves on the embedded SQLite database; `make test` runs every test.
SHELL := /bin/bash
UV_VERSION := 0.13.8
UV := $(shell command -v uv 2>/dev/null || echo python3 -m uv)
VENV_STAMP := .venv/.synced

.PHONY: help venv run migrate test fuzz lint fmt clean

help:
	@echo "make run    create the environment, migrate, serve on http://127.0.0.1:8000"
	@echo "make test   create the environment and run every test (SQLite and PostgreSQL)"
	@echo "make fuzz   the schemathesis run with a bigger budget (FUZZ_EXAMPLES, default 500)"
	@echo "make lint   ruff format check, ruff check, mypy --strict, import contracts"
	@echo "make fmt    format and autofix"

$(VENV_STAMP): pyproject.toml uv.lock
	@$(UV) --version >/dev/null 2>&1 || python3 -m pip install --quiet "uv==$(UV_VERSION)"
	$(UV) sync --locked
	@touch $@

venv: $(VENV_STAMP)

migrate: venv
	$(UV) run --no-sync tablehouse db init

run: migrate
	$(UV) run --no-sync tablehouse serve

test: venv
	$(UV) run --no-sync pytest

FUZZ_EXAMPLES ?= 500
fuzz: venv
	FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) $(UV) run --no-sync pytest tests/test_api_fuzz.py

lint: venv
	$(UV) run --no-sync ruff format --check .
	$(UV) run --no-sync ruff check .
	$(UV) run --no-sync mypy
	$(UV) run --no-sync lint-imports

fmt: venv
	$(UV) run --no-sync ruff format .
	$(UV) run --no-sync ruff check --fix .

clean:
	rm -rf .venv .pytest_cache .mypy_cache .ruff_cache
