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

# Three runs. First, alone: the server's own tests, which assert how a loaded server treats a
# normal client (floods, soaks, limits), and the docker target's, whose builds and deletes lost
# podman images and build containers under load beside other tests (measured twice in CI; alone
# they always passed). Then everything but the clouds, then the three cloud targets, each on two
# pytest-xdist workers with each module kept on one worker (tests/conftest.py groups by module,
# so module and session fixtures are set up once). The other image tests share one group, so one
# of them builds with podman at a time.
SERIAL_TESTS := tests/serving tests/deployers/test_docker_target.py
CLOUD_TESTS := tests/deployers/sagemaker tests/deployers/azureml tests/deployers/vertex

test: lint $(VENV)/azurite/.installed
	$(PY) -m pytest $(SERIAL_TESTS)
	$(PY) -m pytest -n 2 --dist loadgroup $(addprefix --ignore=,$(SERIAL_TESTS) $(CLOUD_TESTS))
	$(PY) -m pytest -n 2 --dist loadgroup $(CLOUD_TESTS)
