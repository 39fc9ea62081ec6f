# AlphaPulse: `make demo` sets up and runs the main job; `make test` runs the whole test suite (as CI does);
# `make test-fast` runs the tier without PostgreSQL, Chromium, Dagster deployments and slow tests.
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
export DAGSTER_HOME := $(CURDIR)

FAST_TIER = not slow and not postgres and not browser and not e2e

.PHONY: setup demo lint test test-fast bench ui clean

$(BIN)/alphapulse: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[dev]"
	@touch $@

setup: $(BIN)/alphapulse

demo: setup
	$(BIN)/alphapulse demo

# Lint and format check (configured in pyproject.toml); `ruff format .` and `ruff check --fix .` repair most.
lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# `make test` runs the suite on two processes (pytest-xdist): one runs the whole end-to-end tier (one xdist group,
# conftest.py), the other the rest meanwhile, a module at a time. The groups are handed out in collection order,
# not largest first, so the e2e tier (collected first, and the longest by far) starts at once.
# `make test XDIST=` runs it in one process.
XDIST ?= -n 2 --dist loadgroup --no-loadscope-reorder

# pytest exits 5 when it collected no test: say so, and fail.
test: setup
	@$(BIN)/python -m pytest $(XDIST) $(PYTEST_ARGS); rc=$$?; \
	  if [ $$rc -eq 5 ]; then echo "make test: pytest collected no tests" >&2; fi; exit $$rc

test-fast: setup
	@$(BIN)/python -m pytest -m "$(FAST_TIER)" $(XDIST) $(PYTEST_ARGS); rc=$$?; \
	  if [ $$rc -eq 5 ]; then echo "make test-fast: pytest collected no tests" >&2; fi; exit $$rc

# The quick benchmarks, as recorded in bench/README.md (the 50-symbol and one-year runs are listed there).
bench: setup
	$(BIN)/python bench/bench_ingestion.py --repeat 7
	$(BIN)/python bench/bench_resource_sensor.py --ticks 100 --rounds 5
	$(BIN)/python bench/bench_breaker_sensor.py --repeat 15
	$(BIN)/python bench/bench_cadences.py --symbols 5 --repeat 7 --worker-start
	$(BIN)/python bench/bench_predict.py --calls 300

ui: setup
	$(BIN)/dagster dev -h 127.0.0.1 -p 3000

clean:
	rm -rf .alphapulse
