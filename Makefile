# The README's two commands: `make demo` (set up, run the main job) and `make test` (set up, run the tests).
VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin

.PHONY: setup demo test lint bench site clean

setup: $(VENV)/.installed
	@bash scripts/install-system-deps.sh

$(VENV)/.installed: pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q -e '.[dev,ray,tune]'
	@touch $@

# The demo works in demo/ (ignored by git), next to a copy of the committed study results, so the
# committed results/ and site/ stay as published and its run shows up beside the study's.
demo: setup
	@mkdir -p demo/results && cp -Rn results/. demo/results/
	$(BIN)/actbench run --method adaptive --dataset fashion-mnist --preset quick --out demo/results
	$(BIN)/actbench site --results demo/results --out demo/site

test: setup
	$(BIN)/ruff check actbench tests benchmarks scripts
	$(BIN)/pytest -q -ra

lint: setup
	$(BIN)/ruff check actbench tests benchmarks scripts

bench: setup
	$(BIN)/actbench bench

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache test-artifacts demo
