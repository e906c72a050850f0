# Zooscope: two commands on a fresh machine.
#   make run   - install into .venv (if needed) and start the dashboard on ./zoo-store
#   make test  - install into .venv (if needed), lint, and run the whole test suite, then the numeric
#                tests again on portable CPU kernels (make test-portable)
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
# Tests whose tolerances depend on floating-point arithmetic. `make test` runs them a second time
# on the most portable kernels (MKL's SSE4.2 code path, ATen without vectorisation): sums are then
# ordered differently than on this CPU's AVX2/AVX-512 kernels, so a tolerance that holds on one
# CPU only fails here too, not first on someone else's machine.
NUMERIC_TESTS ?= tests/probes tests/train tests/nets tests/phases/test_sweep_probe.py \
	tests/jobs/test_connectivity_probes.py tests/jobs/test_landscape_probes.py \
	tests/jobs/test_rashomon_probes.py tests/jobs/test_representation_probes.py
PORTABLE_CPU ?= MKL_ENABLE_INSTRUCTIONS=SSE4_2 ATEN_CPU_CAPABILITY=default

.PHONY: install run lint test test-portable test-fast browser-deps bench clean

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install -q $(TORCH_SPEC)
	$(PY) -m pip install -q -e ".[test,export,ray,hf]"
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

test: install lint browser-deps
	$(PY) -m pytest -q -ra $(PYTEST_ARGS)
	$(MAKE) --no-print-directory test-portable

# PYTEST_ARGS come last, so their -m or -k win; when they name test paths, those replace
# NUMERIC_TESTS. Exit code 5 (nothing selected, e.g. -k matched no numeric test) is no failure.
test-portable: install
	$(PORTABLE_CPU) $(PY) -m pytest -q -ra -m "not slow and not browser" \
	  $(if $(filter tests%,$(PYTEST_ARGS)),,$(NUMERIC_TESTS)) $(PYTEST_ARGS); \
	  rc=$$?; [ $$rc -eq 0 ] || [ $$rc -eq 5 ]

test-fast: install
	$(PY) -m pytest -q -m "not slow and not browser" $(PYTEST_ARGS)

bench: install
	$(PY) -m pip install -q -e ".[bench]"
	for b in bench/*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

clean:
	rm -rf $(VENV) .pytest_cache
