# make demo: generate the default project into build/demo and serve it on http://127.0.0.1:8000
# make test: everything CI runs (.ci/run calls it)
# make bench: the fan-out benchmark against Node.js socket.io (benchmarks/README.md)
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEMO_DIR := build/demo
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

lint: $(STAMP)
	$(BIN)/ruff check hooks tests

# The real JS clients of the template tests (socket.io-client, playwright-core): npm ci
# when node_modules is missing or package-lock.json is newer. No browser is downloaded.
js-deps: $(JS_TESTS)/node_modules/.package-lock.json
$(JS_TESTS)/node_modules/.package-lock.json: $(JS_TESTS)/package-lock.json
	npm ci --prefix $(JS_TESTS) --no-audit --no-fund

test: lint js-deps
	$(BIN)/python -m pytest tests

clean:
	rm -rf $(VENV) build .pytest_cache
