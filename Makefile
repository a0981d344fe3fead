# Two entry points for a newcomer: `make demo` and `make test`. Both install what they need.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: install demo test lint

# The demo's own install: modelport with scikit-learn conversion, and pandas for the example's
# data frame (examples/sklearn_quickstart needs nothing else).
$(VENV)/.demo-installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[sklearn]' 'pandas>=2'
	touch $@

# Everything: every extra and the developer tools (tests, ruff, mypy). It covers the demo too.
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[all]' --group dev
	touch $@ $(VENV)/.demo-installed

# Azurite (Azure Storage's emulator, from npm) for the abfs:// tests, kept beside the venv's
# packages: tests/storage_servers.py runs its blob service on 127.0.0.1. Needs Node.js and npm.
AZURITE_VERSION := 3.35.0
$(VENV)/azurite/.installed:
	npm install --prefix $(VENV)/azurite --no-audit --no-fund azurite@$(AZURITE_VERSION)
	touch $@

install: $(VENV)/.installed

demo: $(VENV)/.demo-installed
	$(PY) examples/sklearn_quickstart/quickstart.py

lint: install
	$(PY) -m ruff check src tests examples benchmarks
	$(PY) -m ruff format --check src tests examples benchmarks
	$(PY) -m mypy

# The cloud targets' tests mostly wait (on their fakes, on serving processes starting), and the
# batch tests on their Spark JVMs: they run on two workers, each Spark module on one of them
# (--dist loadgroup keeps a module's session in one process). Everything else, timing-sensitive
# server tests and the image tests (which must not share podman with another build) included,
# runs alone first.
PARALLEL_TESTS := tests/deployers/sagemaker tests/deployers/azureml tests/deployers/vertex tests/batch

test: lint $(VENV)/azurite/.installed
	$(PY) -m pytest $(addprefix --ignore=,$(PARALLEL_TESTS))
	$(PY) -m pytest -n 2 --dist loadgroup $(PARALLEL_TESTS)
