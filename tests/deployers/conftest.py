"""Fixtures for the deployer tests: test packages, a private MODELPORT_HOME, orphan checks.

Every local deployment a test makes lives under its own temporary home. After each test, any
process whose command line mentions that home is reported and killed, so a bug can never leave
servers running (and the test that leaked them fails).
"""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from modelport.deployers.local import LocalConfig, LocalDeployer
from modelport.plugins.testing import make_test_package
from process_helpers import reap_children, wait_no_processes


@pytest.fixture(scope="session")
def package_paths(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Two archives of ``Y = X * scale``: ``v1`` (scale 1) and ``v2`` (scale 2)."""
    root = tmp_path_factory.mktemp("packages")
    return {
        "v1": make_test_package(root / "v1.mport", scale=1.0, version="1"),
        "v2": make_test_package(root / "v2.mport", scale=2.0, version="2"),
    }


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A private MODELPORT_HOME; fails the test if a process under it outlives the test."""
    path = tmp_path / "home"
    monkeypatch.setenv("MODELPORT_HOME", str(path))
    yield path
    leaked = wait_no_processes(str(path), timeout=5.0)
    for pid in leaked:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    reap_children()
    assert not leaked, f"processes left running under {path}: {leaked}"


@pytest.fixture
def local(home: Path) -> Iterator[LocalDeployer]:
    """A local deployer under the private home; deletes whatever the test left deployed."""
    # One worker per server: the tests start many servers on a 2-core machine.
    deployer = LocalDeployer(LocalConfig(home=home, workers=1, startup_timeout=60, stop_timeout=10))
    yield deployer
    for deployment in deployer.list():
        deployer.delete(deployment.name)
    if deployer.root.exists():  # a deployment whose state is unreadable is not listed
        for directory in deployer.root.iterdir():
            if directory.is_dir():
                deployer.delete(directory.name)
