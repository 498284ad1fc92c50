# The README's two commands: `make demo` (set up, run the main job) and `make test` (set up, run the tests).
VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin

.PHONY: setup demo test lint bench site clean

setup: $(VENV)/.installed
	@bash scripts/install-system-deps.sh

$(VENV)/.installed: pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q -e '.[dev,ray]'
	@touch $@

demo: setup
	$(BIN)/actbench run --method adaptive --dataset fashion-mnist --preset quick
	$(BIN)/actbench site --results results --out site

test: setup
	$(BIN)/ruff check actbench tests benchmarks
	$(BIN)/pytest -q -ra

lint: setup
	$(BIN)/ruff check actbench tests benchmarks

bench: setup
	$(BIN)/actbench bench

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache test-artifacts
