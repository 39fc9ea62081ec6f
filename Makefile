# AlphaPulse: `make demo` sets up and runs the main job; `make test` runs the whole test suite.
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
export DAGSTER_HOME := $(CURDIR)

.PHONY: setup demo test bench ui clean

$(BIN)/alphapulse: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[dev]"
	@touch $@

setup: $(BIN)/alphapulse

demo: setup
	$(BIN)/alphapulse demo

test: setup
	$(BIN)/python -m pytest

bench: setup
	$(BIN)/python bench/run_all.py

ui: setup
	$(BIN)/dagster dev -h 127.0.0.1 -p 3000

clean:
	rm -rf .alphapulse
