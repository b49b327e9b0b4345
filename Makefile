# make demo: generate the default project into build/demo and serve it on http://127.0.0.1:8000
# make test: everything CI runs (.ci/run calls it): the engine library's suite once,
#   then the template's (every answer combination baked, installed and tested)
# make bench: the fan-out benchmark against Node.js socket.io (benchmarks/README.md)
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEMO_DIR := build/demo
BENCH_DIR := build/bench
BENCH_VENV := $(BENCH_DIR)/venv
# The interpreter the benchmark runs the app (and its database process) on: one built
# like the python:3.11-slim image the generated Dockerfile deploys on (PGO + LTO), as
# Debian's python3.11 is; else $(PYTHON). Each result's first line names the one used.
BENCH_PYTHON ?= $(firstword $(wildcard /usr/bin/python3.11) $(PYTHON))
# e.g. make bench BENCH_ARGS=--quick (see benchmarks/README.md)
BENCH_ARGS ?=
JS_TESTS := tests/js
# The engine library (transom-socketio/), installed editable with its dev extra.
LIB_DIR := transom-socketio
LIB_VENV := build/lib-venv
LIB_STAMP := $(LIB_VENV)/.installed

.PHONY: demo test lint bench clean js-deps lib-test template-test

$(LIB_STAMP): $(LIB_DIR)/pyproject.toml
	test -x $(LIB_VENV)/bin/python || $(PYTHON) -m venv $(LIB_VENV)
	$(LIB_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(LIB_VENV)/bin/python -m pip install --quiet -e '$(LIB_DIR)[dev]'
	touch $(LIB_STAMP)

$(STAMP): requirements-dev.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements-dev.txt
	touch $(STAMP)

demo: $(STAMP)
	rm -rf $(DEMO_DIR)
	$(BIN)/cookiecutter --no-input --output-dir $(DEMO_DIR) .
	$(MAKE) -C $(DEMO_DIR)/transom_app run PYTHON=$(PYTHON)

bench: $(STAMP)
	rm -rf $(BENCH_DIR)/transom_app
	$(BIN)/cookiecutter --no-input --output-dir $(BENCH_DIR) .
	grep -qsxF '$(BENCH_PYTHON)' $(BENCH_VENV)/.made-with || { rm -rf $(BENCH_VENV) && $(BENCH_PYTHON) -m venv $(BENCH_VENV) && echo '$(BENCH_PYTHON)' > $(BENCH_VENV)/.made-with; }
	$(BENCH_VENV)/bin/python -m pip install --quiet --upgrade pip
	cd $(BENCH_DIR)/transom_app && ../venv/bin/python -m pip install --quiet --find-links wheels -e '.[dev]' 'matplotlib>=3.8'
	npm ci --prefix benchmarks --no-audit --no-fund
	$(BENCH_VENV)/bin/python benchmarks/run.py --project $(BENCH_DIR)/transom_app \
		--log-dir $(BENCH_DIR)/logs $(BENCH_ARGS)

lint: $(STAMP) $(LIB_STAMP)
	$(BIN)/ruff check hooks tests benchmarks
	cd $(LIB_DIR) && ../$(LIB_VENV)/bin/ruff check . && ../$(LIB_VENV)/bin/ruff format --check .
	cd $(LIB_DIR) && ../$(LIB_VENV)/bin/mypy

# The real JS clients of the template tests (socket.io-client, playwright-core): npm ci
# when node_modules is missing or package-lock.json is newer. No browser is downloaded.
js-deps: $(JS_TESTS)/node_modules/.package-lock.json
$(JS_TESTS)/node_modules/.package-lock.json: $(JS_TESTS)/package-lock.json
	npm ci --prefix $(JS_TESTS) --no-audit --no-fund

# The library's suite, once (its infrastructure tests no longer run per combination).
lib-test: $(LIB_STAMP)
	cd $(LIB_DIR) && ../$(LIB_VENV)/bin/python -m pytest -n 2 --dist loadgroup -p no:cacheprovider tests

template-test: $(STAMP) $(LIB_STAMP) js-deps
	$(BIN)/python -m pytest -n 2 --dist loadgroup tests

test: lint lib-test template-test

clean:
	rm -rf $(VENV) build .pytest_cache
