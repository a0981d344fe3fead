"""The serving benchmark is not a test, but its script must keep working: --help and --dry-run."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "serve_bench.py"


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_help_describes_the_comparison() -> None:
    result = run("--help")
    assert result.returncode == 0, result.stderr
    for word in ("--rounds", "--dry-run", "mlflow", "MLServer", "wrk", "taskset"):
        assert word in result.stdout


def test_dry_run_prints_the_plan_and_runs_nothing(tmp_path: Path) -> None:
    result = run(
        "--dry-run",
        "--rounds",
        "2",
        "--mlflow-venv",
        str(tmp_path / "none"),
        "--servers",
        "modelport,mlflow",
    )
    assert result.returncode == 0, result.stderr
    assert "plan: 2 round(s) x 2 server(s)" in result.stdout
    assert "MISSING" in result.stdout  # the mlflow venv given does not exist


def test_unknown_server_is_a_usage_error() -> None:
    result = run("--dry-run", "--servers", "modelport,torchserve")
    assert result.returncode == 2
    assert "torchserve" in result.stderr
