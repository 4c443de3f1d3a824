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

# Both runs happen whatever the first gave; the target fails if either failed.
test: $(STAMP)
	scripts/ensure-postgres
	scripts/ensure-ceph
	scripts/ensure-chromium
	@status=0; \
	echo "== the test suite on SQLite, images in the data directory (the embedded default)"; \
	DARKROOM_TEST_DATABASE=sqlite DARKROOM_TEST_STORAGE=local \
		$(BIN)/python -m pytest $(ARGS) || status=1; \
	echo "== the test suite on PostgreSQL, images in S3 (radosgw): a cluster's set-up"; \
	DARKROOM_TEST_DATABASE=postgres DARKROOM_TEST_STORAGE=s3 \
		$(BIN)/python -m pytest $(ARGS) || status=1; \
	exit $$status

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
