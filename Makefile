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

# The quick benchmarks, as recorded in bench/README.md (the 50-symbol and one-year runs are listed there).
bench: setup
	$(BIN)/python bench/bench_ingestion.py --repeat 7
	$(BIN)/python bench/bench_resource_sensor.py --ticks 100 --rounds 5
	$(BIN)/python bench/bench_breaker_sensor.py --repeat 15
	$(BIN)/python bench/bench_cadences.py --symbols 5 --repeat 7 --worker-start

ui: setup
	$(BIN)/dagster dev -h 127.0.0.1 -p 3000

clean:
	rm -rf .alphapulse
