"""The bundled example, run once per session as ``make demo`` runs it (from the repository's
root, writing ``build/quickstart/``), here in a temporary directory standing for that root."""

from __future__ import annotations

import subprocess
import sys

import pytest
from examples_support import QUICKSTART, Quickstart


@pytest.fixture(scope="session")
def quickstart(tmp_path_factory: pytest.TempPathFactory) -> Quickstart:
    cwd = tmp_path_factory.mktemp("demo")
    result = subprocess.run(
        [sys.executable, str(QUICKSTART)],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return Quickstart(cwd, result)
