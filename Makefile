# Tablehouse: `make run` serves on the embedded SQLite database; `make test` runs every test.
SHELL := /bin/bash
UV_VERSION := 0.13.8
# uv from PATH if there is one, else a private copy in its own venv under the repo: installing
# it never touches the system interpreter, and pip in a venv has no reason to warn about root.
UV_BOOTSTRAP := .uv-bootstrap
UV := $(shell command -v uv 2>/dev/null || echo $(UV_BOOTSTRAP)/bin/uv)
# Two environments in one .venv: serving needs the runtime dependencies only; tests, lint and
# fuzz also need the dev group. The dev set contains the runtime set, so a dev sync satisfies
# both stamps, and a runtime sync is --inexact: `make run` after `make test` keeps the dev tools
# instead of uninstalling them (and `make test` after `make run` only adds the dev group).
RUNTIME_STAMP := .venv/.synced-runtime
DEV_STAMP := .venv/.synced-dev
PYTEST_ARGS ?=
# pytest-xdist workers: one per core by default; TEST_WORKERS=0 runs in this process. Each
# worker has databases, chDB path and temp files of its own (tests/conftest.py). loadgroup
# hands out one test at a time (a group marked xdist_group stays on one worker).
TEST_WORKERS ?= auto

.PHONY: help venv run migrate test test-floors fuzz lint fmt clean

help:
	@echo "make run    install the runtime dependencies, migrate, serve on http://127.0.0.1:8000"
	@echo "make test   install the dev tools too and run every test (SQLite and PostgreSQL);"
	@echo "            PYTEST_ARGS='tests/test_x.py -x' runs only those; TEST_WORKERS=N (default:"
	@echo "            auto, one per core) sets how many processes run them, 0 for none"
	@echo "make test-floors"
	@echo "            the fast tests on the lowest versions pyproject.toml allows, in"
	@echo "            .venv-floors (uv.lock and .venv untouched): a floor that lies fails"
	@echo "make fuzz   the schemathesis run with a bigger budget (FUZZ_EXAMPLES, default 500)"
	@echo "make lint   ruff format check, ruff check, mypy --strict, import contracts"
	@echo "make fmt    format and autofix"
	@echo "make venv   the environment with the dev tools, without running anything"

$(UV_BOOTSTRAP)/bin/uv:
	@python3 -m venv $(UV_BOOTSTRAP) || { echo "error: 'python3 -m venv' failed; install uv" \
		"(https://docs.astral.sh/uv/) or your system's python3-venv package" >&2; exit 1; }
	$(UV_BOOTSTRAP)/bin/python -m pip install --quiet --disable-pip-version-check "uv==$(UV_VERSION)"

$(RUNTIME_STAMP): pyproject.toml uv.lock | $(UV)
	$(UV) sync --locked --no-dev --inexact
	@touch $@

$(DEV_STAMP): pyproject.toml uv.lock | $(UV)
	$(UV) sync --locked
	@touch $@ $(RUNTIME_STAMP)

venv: $(DEV_STAMP)

migrate: $(RUNTIME_STAMP)
	$(UV) run --no-sync tablehouse db init

run: migrate
	$(UV) run --no-sync tablehouse serve

# Bytecode caches on for the run, whatever the shell says: the suite starts a Python process
# for every CLI command and server it tests (hundreds), and one that compiles every module
# from source costs 1.4 s of CPU instead of 0.6 s.
test: $(DEV_STAMP)
	env -u PYTHONDONTWRITEBYTECODE $(UV) run --no-sync pytest --numprocesses=$(TEST_WORKERS) \
		--dist=loadgroup $(PYTEST_ARGS)

# The floors: every direct dependency (runtime and dev) at the lowest version its specifier in
# pyproject.toml allows, everything else at the newest that fits (uv's lowest-direct). Resolved
# with `uv pip` into a separate environment and a requirements file inside it, so uv.lock and
# .venv are never touched (`uv sync --resolution lowest-direct` would re-lock uv.lock). `pip
# sync` makes the environment exactly that list, so a run after a floor moved keeps nothing
# of the last one. The fast tests only: the slow ones start processes and exercise the same
# libraries through the same code.
FLOORS_ENV := .venv-floors
FLOORS_PYTEST_ARGS ?= -m "not slow"
test-floors: | $(UV)
	$(UV) venv --quiet --allow-existing $(FLOORS_ENV)
	$(UV) pip compile --quiet --python $(FLOORS_ENV)/bin/python --group dev \
		--resolution lowest-direct pyproject.toml -o $(FLOORS_ENV)/requirements.txt
	$(UV) pip sync --quiet --python $(FLOORS_ENV)/bin/python $(FLOORS_ENV)/requirements.txt
	$(UV) pip install --quiet --python $(FLOORS_ENV)/bin/python --no-deps --editable .
	@echo "floors:" $$(awk '/^[a-z0-9]/ {p = $$1} /via tablehouse|#   tablehouse/ {print p}' \
		$(FLOORS_ENV)/requirements.txt)
	env -u PYTHONDONTWRITEBYTECODE $(FLOORS_ENV)/bin/python -m pytest -p no:cacheprovider \
		--numprocesses=$(TEST_WORKERS) --dist=loadgroup $(FLOORS_PYTEST_ARGS)

FUZZ_EXAMPLES ?= 500
fuzz: $(DEV_STAMP)
	FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) $(UV) run --no-sync pytest tests/api/test_fuzz.py

lint: $(DEV_STAMP)
	$(UV) run --no-sync ruff format --check .
	$(UV) run --no-sync ruff check .
	$(UV) run --no-sync mypy
	$(UV) run --no-sync lint-imports

fmt: $(DEV_STAMP)
	$(UV) run --no-sync ruff format .
	$(UV) run --no-sync ruff check --fix .

clean:
	rm -rf .venv $(FLOORS_ENV) $(UV_BOOTSTRAP) .pytest_cache .mypy_cache .ruff_cache
