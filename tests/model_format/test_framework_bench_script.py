"""``benchmarks/framework_bench.py`` runs to its table (one framework, one run: a smoke test)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "framework_bench.py"


def test_the_framework_benchmark_prints_modelport_beside_mlflow() -> None:
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--runs", "1", "--frameworks", "catboost"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    (row,) = [line for line in done.stdout.splitlines() if line.startswith("| catboost |")]
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert len(cells) == 8
    assert all(float(c.replace(",", "")) > 0 for c in cells[1:7])
    assert cells[7].startswith("label 0, probabilities ")


def test_an_unknown_framework_is_a_usage_error() -> None:
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--frameworks", "sklearn"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 2
    assert "unknown frameworks: sklearn" in done.stderr
