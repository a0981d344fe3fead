"""The batch benchmark is not a test, but its script must keep working: a tiny run prints both
tables with a positive figure for every method, and --dry-run starts nothing."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.xdist_group("batch-bench")

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "batch_bench.py"
SPARK_METHODS = (
    "modelport score",
    "modelport spark_udf",
    "mlflow spark_udf",
    "mlflow spark_udf (ORT defaults)",
    "no-model pass (pandas)",
    "no-model pass (arrow)",
)
LOCAL_METHODS = ("modelport batch --engine local", "pandas + ORT loop")


def run(
    *args: str, timeout: float = 120, scratch: Path | None = None
) -> subprocess.CompletedProcess[str]:
    # Everything on 127.0.0.1: Spark binds the loopback, MLflow sends no telemetry.
    env = {
        **os.environ,
        "SPARK_LOCAL_IP": "127.0.0.1",
        "PYSPARK_PYTHON": sys.executable,
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "DO_NOT_TRACK": "true",
    }
    if scratch is not None:
        env["SPARK_LOCAL_DIRS"] = str(scratch)  # Spark's scratch files in the test's directory
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env=env,
    )


def rows_of(stdout: str) -> dict[str, list[str]]:
    """The tables' rows by 'model method', each row's cells."""
    found = {}
    for line in stdout.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("| lr |"):
            found[f"{cells[0]} {cells[1]}"] = cells
    return found


def test_a_tiny_run_prints_every_method(tmp_path: Path) -> None:
    pytest.importorskip("pyspark")
    if shutil.which("java") is None:
        pytest.skip("Spark needs java")
    with_mlflow = importlib.util.find_spec("mlflow") is not None
    spark_methods = [m for m in SPARK_METHODS if with_mlflow or not m.startswith("mlflow")]
    out = tmp_path / "bench.json"
    # fmt: off
    done = run("--rows", "5000", "--rounds", "1", "--models", "lr",
               "--workdir", str(tmp_path / "work"), "--json", str(out),
               *([] if with_mlflow else ["--skip-mlflow"]), scratch=tmp_path)
    # fmt: on
    assert done.returncode == 0, done.stderr[-3000:]
    rows = rows_of(done.stdout)
    assert sorted(rows) == sorted(f"lr {m}" for m in (*spark_methods, *LOCAL_METHODS)), done.stdout
    for name, cells in rows.items():
        assert float(cells[2].replace(",", "")) > 0, (name, cells)
    # Each method's ratio to itself is 1.
    if with_mlflow:
        assert rows["lr mlflow spark_udf"][4] == "1.00"
    assert rows["lr no-model pass (pandas)"][5] == "1.00"
    assert rows["lr no-model pass (arrow)"][6] == "1.00"
    assert rows["lr pandas + ORT loop"][5] == "1.00"
    assert "Spark session start (getOrCreate): " in done.stdout
    assert "first job (modelport score" in done.stdout
    assert "goal, lr, modelport score: " in done.stdout
    found = json.loads(out.read_text())
    assert found["session_start_s"] > 0 and found["first_job_s"]["lr"] > 0
    assert set(found["seconds"]["lr"]) == {*spark_methods, *LOCAL_METHODS}
    assert all(len(v) == 1 and v[0] > 0 for v in found["seconds"]["lr"].values())
    assert set(found["process_seconds"]["lr"]) == set(LOCAL_METHODS)
    assert set(found["warmup_s"]["lr"]) == set(spark_methods)


def test_dry_run_prints_the_plan_and_starts_nothing() -> None:
    done = run("--dry-run", "--rounds", "2", "--models", "lr", "--skip-mlflow", timeout=60)
    assert done.returncode in (0, 1), done.stderr  # 1: something is MISSING (listed)
    assert "plan: 1,000,000 rows x 20 features, models lr" in done.stdout
    assert "2 round(s) x 1 model(s) x 6 method(s): 12 timed runs" in done.stdout
    assert "mlflow" not in done.stdout.split("spark methods:")[1].split("\n")[0]


def test_an_unknown_model_is_a_usage_error() -> None:
    done = run("--dry-run", "--models", "lr,xgboost", timeout=60)
    assert done.returncode == 2
    assert "--models" in done.stderr


def test_help_names_the_methods() -> None:
    done = run("--help", timeout=60)
    assert done.returncode == 0, done.stderr
    for word in ("--rows", "--rounds", "--skip-mlflow", "--dry-run", "noop", "mapInArrow"):
        assert word in done.stdout
    # --loop runs the plain loop's own process: not an option for people.
    assert not any(line.lstrip().startswith("--loop") for line in done.stdout.splitlines())
