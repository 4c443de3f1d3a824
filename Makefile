# darkroom: `make serve` starts the service on the embedded default; `make test` runs every test,
# on SQLite with local files, then on PostgreSQL 15 with images in S3 (Ceph's radosgw): both
# installed with apt when missing and we are root.
# Both create the virtual environment (.venv) first; they need only python3 and make.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
ARGS ?=

.PHONY: serve test lint format check bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

serve: $(STAMP)
	$(BIN)/darkroom serve $(ARGS)

# Both passes run at once (scripts/test-passes); the target fails if either failed. The deploy
# tests' tools (podman, helm, ...) are installed like the servers, so a missing one is a failure.
test: $(STAMP)
	scripts/ensure-postgres
	scripts/ensure-ceph
	scripts/ensure-chromium
	VENV=$(VENV) scripts/ensure-deploy-tools
	DARKROOM_TEST_DEPLOY=require PYTHON=$(BIN)/python scripts/test-passes $(ARGS)

lint: $(STAMP)
	$(BIN)/ruff format --check src tests benchmarks
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/mypy
	$(BIN)/lint-imports

format: $(STAMP)
	$(BIN)/ruff format src tests benchmarks
	$(BIN)/ruff check --fix src tests benchmarks

check: lint test

bench: $(STAMP)
	$(BIN)/python benchmarks/preview_render.py
	$(BIN)/python benchmarks/api_overhead.py
	$(BIN)/python benchmarks/wait_overhead.py
	$(BIN)/python benchmarks/gpu_pipeline.py --device cpu
	$(BIN)/python benchmarks/cluster.py
	$(BIN)/python benchmarks/storage.py
	$(BIN)/python benchmarks/upstream.py
	$(BIN)/python benchmarks/secrets_at_rest.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
