# orderstream: `make run` runs the service, `make test` runs the tests. Both create .venv on first use.
# With DATABASE_URL/REDIS_URL unset they start the embedded PostgreSQL and Redis (in .data/).

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint bench bench-rebuild chaos clean-data

$(STAMP): setup.py
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/orderstream run

test: $(STAMP)
	$(BIN)/orderstream services -- $(BIN)/pytest $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check src tests bench migrations wsgi.py setup.py gunicorn.conf.py
	$(BIN)/ruff format --check src tests bench migrations wsgi.py setup.py gunicorn.conf.py
	$(BIN)/mypy
	$(BIN)/lint-imports

bench: $(STAMP)
	$(BIN)/orderstream services -- $(BIN)/python bench/load.py $(BENCH_ARGS)

clean-data:
	rm -rf .data

chaos: $(STAMP)
	$(BIN)/orderstream services -- $(BIN)/python -m tests.chaos.run $(CHAOS_ARGS)

bench-rebuild: $(STAMP)
	$(BIN)/orderstream services -- $(BIN)/python bench/rebuild.py $(BENCH_ARGS)
