"""The framework examples (``examples/frameworks/``) run as a user runs them, each to the end.

Each trains a tiny model on data scikit-learn ships (or that it generates), packs it, reloads
the package and checks its answers on held-out rows against the original; it exits non-zero if
any differ. Here each must also leave a package that verifies.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import modelport

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "frameworks"
SCRIPTS = {
    "xgboost_pipeline.py": "wine-xgboost",
    "lightgbm_booster.py": "regression-lightgbm",
    "catboost_classifier.py": "breast-cancer-catboost",
    "pytorch_cnn.py": "digits-cnn",
}


def test_every_example_script_is_listed() -> None:
    assert sorted(p.name for p in EXAMPLES.glob("*.py") if p.name != "report.py") == sorted(SCRIPTS)


@pytest.mark.parametrize("script", sorted(SCRIPTS))
def test_the_example_runs_and_its_package_verifies(script: str, tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / script), str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "DIFFERS" not in done.stdout
    assert "Warning" not in done.stderr, done.stderr
    metrics = json.loads(done.stdout.splitlines()[-1].removeprefix("metrics "))
    assert metrics["name"] == SCRIPTS[script]
    package = tmp_path / f"{SCRIPTS[script]}.mport"
    assert metrics["size_bytes"] == package.stat().st_size
    assert modelport.verify(package).ok
