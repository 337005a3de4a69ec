# One-command setup: every target builds .venv first, from the pinned constraints.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Test files run in parallel worker processes (pytest-xdist; one file stays in one worker, so its
# module-scoped stacks are shared as before). TEST_WORKERS=0 runs everything in this process.
TEST_WORKERS ?= 3

.PHONY: run test lint bench clean

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -c constraints.txt -e '.[dev]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/atlas up

test: $(STAMP)
	$(BIN)/python -m pytest -q --durations=20 -n $(TEST_WORKERS) --dist loadfile

LINT_PATHS := $(wildcard atlas exporters tests bench tools)
lint: $(STAMP)
	$(BIN)/ruff check $(LINT_PATHS)
	$(BIN)/ruff format --check $(LINT_PATHS)
	$(BIN)/mypy atlas $(if $(wildcard exporters/*.py),exporters)

bench: $(STAMP)
	@for b in bench/*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done
	@# The same engine and ingest figures on PostgreSQL (issue 18): a throwaway cluster, or
	@# ATLAS_BENCH_POSTGRES_URL (wiped). bench/pg/ holds their modules, so the loop above skips them.
	@for b in engine ingest; do echo "== bench/$$b.py --backend postgres"; $(BIN)/python bench/$$b.py --backend postgres || exit 1; done

# var/ is kept: `make run` keeps its database there, and `config secrets keygen` its key (without
# which the environment's secrets file cannot be read). Remove it by hand to start afresh.
clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
	@if [ -d var ]; then echo "kept var/ (the database and any secrets key): rm -rf var to start afresh"; fi
