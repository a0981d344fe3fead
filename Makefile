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

# Most tests wait (on fakes, registries, serving processes and images starting; the batch tests
# on their Spark JVMs): they run on two workers, each Spark module, the image tests and the MLflow
# tests on one of them (--dist loadgroup keeps an xdist_group in one process). The server's
# timing-sensitive tests and the CLI's run alone first, with the tests that start moto's S3
# (moto's backends are per process, and the SageMaker fake holds one for its whole session).
PARALLEL_TESTS := tests/deployers tests/batch tests/plugins tests/model_format \
	tests/cli/test_registry_cli.py tests/examples/test_readme_registry.py
ALONE_TESTS := tests/model_format/test_remote_sources.py
# Everything else (tests/test_layout.py fails when a folder of tests/ is in neither list).
SERIAL_TESTS := tests/cli tests/serving tests/examples tests/test_offline.py \
	tests/test_storage_servers.py tests/test_layout.py $(ALONE_TESTS)

test: lint $(VENV)/azurite/.installed
	$(PY) -m pytest $(addprefix --ignore=,$(PARALLEL_TESTS)) $(SERIAL_TESTS)
	$(PY) -m pytest -n 2 --dist loadgroup $(PARALLEL_TESTS) $(addprefix --ignore=,$(ALONE_TESTS))
