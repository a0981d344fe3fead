"""The SageMaker benchmark script runs and prints its table (one round, process hosts)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[3] / "benchmarks" / "sagemaker_bench.py"


def test_the_benchmark_runs_one_round(tmp_path: Path) -> None:
    out = tmp_path / "samples.json"
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--rounds", "1", "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    for verb in ("deploy --dry-run", "create", "update", "delete"):
        assert any(line.startswith(verb) for line in done.stdout.splitlines()), done.stdout
    found = json.loads(out.read_text())
    assert all(len(v) == 1 and v[0] > 0 for v in found["samples"].values())
    assert found["calls"]["create (real-time, until InService)"][0] >= 6
