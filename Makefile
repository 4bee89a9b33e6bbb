# orderstream: `make run` runs the service, `make test` runs the tests, `make test-unit` the tests that need
# no server (seconds). Each creates .venv on first use, with the "embedded" extra: with DATABASE_URL/REDIS_URL
# unset, run and test start the embedded PostgreSQL and Redis (in .data/). A production install is
# `pip install .` in a virtualenv of its own, without the extra (README, "Installing for production").

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
BENCH_STAMP := $(VENV)/.installed-bench
# The AsyncAPI project's own tools, pinned in tools/asyncapi/package-lock.json (node and npm on the PATH):
# the parser that `make test` validates /asyncapi.json with, and the renderer vendored for /docs/asyncapi.
ASYNCAPI := tools/asyncapi
ASYNCAPI_STAMP := $(ASYNCAPI)/node_modules/.installed
ASYNCAPI_RENDERER := $(ASYNCAPI)/node_modules/@asyncapi/react-component
ASYNCAPI_STATIC := src/app/static/asyncapi

.PHONY: run test test-unit lint asyncapi-bundle bench bench-rebuild bench-projector bench-soak bench-ab bench-snapshots chaos clean-data

$(STAMP): setup.py
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev,embedded]'
	touch $(STAMP)

# The bench targets also need the "bench" extras (eventsourcing peer, matplotlib, psutil); `make test` does not.
$(BENCH_STAMP): $(STAMP)
	$(BIN)/pip install --quiet -e '.[dev,embedded,bench]'
	touch $(BENCH_STAMP)

# --ignore-scripts: no package needs a build step, and one (@scarf/scarf) would phone home
$(ASYNCAPI_STAMP): $(ASYNCAPI)/package.json $(ASYNCAPI)/package-lock.json
	cd $(ASYNCAPI) && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error
	touch $(ASYNCAPI_STAMP)

# Refresh the vendored renderer of /docs/asyncapi after changing its version in tools/asyncapi/package.json
# (`npm install` there updates the lock); tests/test_asyncapi.py checks the copy matches the locked package.
asyncapi-bundle: $(ASYNCAPI_STAMP)
	cp $(ASYNCAPI_RENDERER)/browser/standalone/index.js $(ASYNCAPI_RENDERER)/browser/standalone/index.js.LICENSE.txt \
		$(ASYNCAPI_RENDERER)/styles/default.min.css $(ASYNCAPI_RENDERER)/LICENSE $(ASYNCAPI_STATIC)/
	node -p '"@asyncapi/react-component " + require("./$(ASYNCAPI_RENDERER)/package.json").version' \
		> $(ASYNCAPI_STATIC)/VERSION

run: $(STAMP)
	$(BIN)/orderstream run

test: $(STAMP) $(ASYNCAPI_STAMP)
	$(BIN)/orderstream services -- $(BIN)/pytest $(PYTEST_ARGS)

# The unit layer (tests/unit): pure functions, no PostgreSQL, no Redis, no environment variables.
test-unit: $(STAMP)
	$(BIN)/pytest -q tests/unit $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check src tests bench migrations wsgi.py setup.py gunicorn.conf.py
	$(BIN)/ruff format --check src tests bench migrations wsgi.py setup.py gunicorn.conf.py
	$(BIN)/mypy
	$(BIN)/lint-imports

# Every figure of docs/performance.md but the 10-minute soak (bench-soak): load.py (HTTP, sweep, freshness),
# projector.py and rebuild.py write bench/results/*.json; report.py renders the page and its plot.
bench: $(BENCH_STAMP)
	$(BIN)/orderstream services -- $(BIN)/python bench/load.py $(BENCH_ARGS)
	$(BIN)/orderstream services -- $(BIN)/python bench/projector.py
	$(BIN)/orderstream services -- $(BIN)/python bench/rebuild.py
	$(BIN)/python bench/report.py

clean-data:
	rm -rf .data

chaos: $(STAMP)
	$(BIN)/orderstream services -- $(BIN)/python -m tests.chaos.run $(CHAOS_ARGS)

bench-rebuild: $(BENCH_STAMP)
	$(BIN)/orderstream services -- $(BIN)/python bench/rebuild.py $(BENCH_ARGS)
	$(BIN)/python bench/report.py

# Snapshots: a reservation on a SKU of 100,000 events against one on a new SKU; bench/results/snapshots.json
bench-snapshots: $(BENCH_STAMP)
	$(BIN)/orderstream services -- $(BIN)/python bench/snapshots.py $(BENCH_ARGS)

# Memory: steady load for --duration (default 600 s), RSS of every process; writes bench/results/soak.json
bench-soak: $(BENCH_STAMP)
	$(BIN)/orderstream services -- $(BIN)/python bench/soak.py $(SOAK_ARGS)
	$(BIN)/python bench/report.py

# A change's cost: the working tree against BASE (a git revision), POST and GET in one run; bench/results/ab.json
bench-ab: $(BENCH_STAMP)
	$(BIN)/orderstream services -- $(BIN)/python bench/ab.py --base $(BASE) $(BENCH_ARGS)

# Projection throughput: one projector against a bare XREADGROUP+upsert+XACK consumer; bench/results/projector.json
bench-projector: $(BENCH_STAMP)
	$(BIN)/orderstream services -- $(BIN)/python bench/projector.py $(BENCH_ARGS)
	$(BIN)/python bench/report.py
