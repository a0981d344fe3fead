"""The Azure ML benchmark script runs and prints its table (one round, process hosts)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[3] / "benchmarks" / "azureml_bench.py"
VERBS = ("deploy --dry-run", "create", "update", "canary update", "promote", "delete")


def test_the_benchmark_runs_one_round(tmp_path: Path) -> None:
    from docker_fixtures import REGISTRY_ENV, require_registry

    registry = os.environ.get(REGISTRY_ENV) or "127.0.0.1:5000"
    require_registry(registry)
    out = tmp_path / "samples.json"
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--rounds", "1", "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("azureml target against the offline Azure (async LROs), 1 round")
    for verb in VERBS:
        assert any(line.startswith(verb) for line in lines[2:]), done.stdout
    found = json.loads(out.read_text())
    assert found["lro"] == "async"
    assert set(found["samples"]) == set(found["arm_requests"]) == set(found["polls"])
    assert [k.split(" (")[0] for k in found["samples"]] == [
        "deploy --dry-run",
        "create",
        "update",
        "canary update",
        "promote",
        "delete",
    ]
    assert all(len(v) == 1 and v[0] > 0 for v in found["samples"].values())
    requests = {k.split(" (")[0]: v[0] for k, v in found["arm_requests"].items()}
    # A plan reads (the next generation); a create sends at least its four PUTs (environment,
    # endpoint, deployment, traffic).
    assert requests["deploy --dry-run"] >= 1
    assert requests["create"] >= 4
    assert requests["delete"] >= 1
