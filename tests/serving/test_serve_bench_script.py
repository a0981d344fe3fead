"""The serving benchmark is not a test, but its script must keep working: --help and --dry-run."""

from __future__ import annotations

import json
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


def test_a_baseline_server_needs_a_checkout(tmp_path: Path) -> None:
    result = run("--dry-run", "--servers", "modelport,modelport-baseline")
    assert result.returncode == 2
    assert "--baseline" in result.stderr
    result = run("--dry-run", "--servers", "modelport-baseline", "--baseline", str(tmp_path))
    assert result.returncode == 2
    assert "no src/modelport" in result.stderr
    checkout = Path(__file__).resolve().parents[2]
    result = run(
        "--dry-run", "--servers", "modelport,modelport-baseline", "--baseline", str(checkout)
    )
    assert result.returncode == 0, result.stderr
    assert "plan: 3 round(s) x 2 server(s)" in result.stdout


def test_the_open_loop_client_sends_on_schedule_and_reads_every_answer(
    packages: dict[str, Path], tmp_path: Path
) -> None:
    from serving_support import start_server

    body = tmp_path / "body.json"
    body.write_text('{"inputs": [[0.1, 0.2, 0.3, 0.4]]}')
    bad = tmp_path / "bad.json"
    bad.write_text('{"inputs": [[0.1]]}')
    server = start_server(packages["iris"], ["--workers", "1"], log_dir=tmp_path)
    try:
        script = SCRIPT.with_name("open_loop.py")
        runs = {}
        for name, path in (("good", body), ("bad", bad)):
            out = subprocess.run(
                [sys.executable, str(script), server.url + "/invocations", str(path), "200", "1",
                 "--connections", "4"],
                capture_output=True, text=True, timeout=60, check=True,
            ).stdout  # fmt: skip
            runs[name] = json.loads(out)
    finally:
        assert server.stop() == 0, server.log()
    good, refused = runs["good"], runs["bad"]
    assert (good["sent"], good["answered"], good["errors"]) == (200, 200, 0)
    assert 0 < good["p50_ms"] <= good["p99_ms"] <= good["p99.9_ms"] <= good["max_ms"]
    # Answers that are not 2xx are errors, not latencies.
    assert (refused["sent"], refused["answered"], refused["errors"]) == (200, 0, 200)
