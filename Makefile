# darkroom: `make serve` starts the service on the embedded default; `make test` runs every test.
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

test: $(STAMP)
	$(BIN)/python -m pytest $(ARGS)

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

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
