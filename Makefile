# Zooscope: two commands on a fresh machine.
#   make run   - install into .venv (if needed) and start the dashboard on ./zoo-store
#   make test  - install into .venv (if needed), lint, and run the whole test suite
#   make lint  - ruff (lint + import order) and import-linter (the layering contracts in pyproject.toml)
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# A CPU build by default: a CPU machine never pulls the CUDA wheels.
# GPU machines: make run TORCH_SPEC="torch==2.13.0 --index-url <your CUDA wheel index>"
TORCH_SPEC ?= torch==2.13.0
STORE ?= zoo-store
PORT ?= 8501
PYTEST_ARGS ?=

.PHONY: install run lint test test-fast browser-deps bench clean

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install -q $(TORCH_SPEC)
	$(PY) -m pip install -q -e ".[test,export,ray]"
	touch $@

install: $(VENV)/.installed

# Debian's Chromium for the real-browser tests and PNG export (never a browser download).
browser-deps:
	@test -x /usr/bin/chromium || { \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq chromium >/dev/null; }

run: install
	ZOOSCOPE_STORE=$${ZOOSCOPE_STORE:-$(STORE)} $(VENV)/bin/zooscope serve --port $(PORT)

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/lint-imports

test: install browser-deps
	$(PY) -m pytest -q -ra $(PYTEST_ARGS)

test-fast: install
	$(PY) -m pytest -q -m "not slow and not browser" $(PYTEST_ARGS)

bench: install
	$(PY) -m pip install -q -e ".[bench]"
	for b in bench/*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

clean:
	rm -rf $(VENV) .pytest_cache
