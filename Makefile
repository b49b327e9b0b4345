# make demo: generate the default project into build/demo and serve it on http://127.0.0.1:8000
# make test: everything CI runs (.ci/run calls it)
# make bench: the fan-out benchmark against Node.js socket.io (benchmarks/README.md)
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEMO_DIR := build/demo
BENCH_DIR := build/bench
BENCH_VENV := $(BENCH_DIR)/venv
# e.g. make bench BENCH_ARGS=--quick (see benchmarks/README.md)
BENCH_ARGS ?=
JS_TESTS := tests/js

.PHONY: demo test lint bench clean js-deps

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
	test -x $(BENCH_VENV)/bin/python || $(PYTHON) -m venv $(BENCH_VENV)
	$(BENCH_VENV)/bin/python -m pip install --quiet --upgrade pip
	cd $(BENCH_DIR)/transom_app && ../venv/bin/python -m pip install --quiet -e '.[dev]' 'matplotlib>=3.8'
	npm ci --prefix benchmarks --no-audit --no-fund
	$(BENCH_VENV)/bin/python benchmarks/run.py --project $(BENCH_DIR)/transom_app \
		--log-dir $(BENCH_DIR)/logs $(BENCH_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check hooks tests benchmarks

# The real JS clients of the template tests (socket.io-client, playwright-core): npm ci
# when node_modules is missing or package-lock.json is newer. No browser is downloaded.
js-deps: $(JS_TESTS)/node_modules/.package-lock.json
$(JS_TESTS)/node_modules/.package-lock.json: $(JS_TESTS)/package-lock.json
	npm ci --prefix $(JS_TESTS) --no-audit --no-fund

test: lint js-deps
	$(BIN)/python -m pytest -n 2 --dist loadgroup tests

clean:
	rm -rf $(VENV) build .pytest_cache
