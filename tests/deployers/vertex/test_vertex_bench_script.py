"""The Vertex AI benchmark script runs and prints its table (one round, process hosts)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[3] / "benchmarks" / "vertex_bench.py"
VERBS = ("deploy --dry-run", "create", "update", "canary update", "promote", "delete")


def test_the_benchmark_runs_one_round(tmp_path: Path) -> None:
    from docker_fixtures import REGISTRY_ENV, require_registry

    registry = os.environ.get(REGISTRY_ENV) or "127.0.0.1:5000"
    require_registry(registry)
    out = tmp_path / "samples.json"
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--rounds", "1", "--pending-polls", "1", "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == (
        "vertex target against the offline Vertex (operations pending for 1 poll(s)), 1 round(s); "
        "medians (min-max)"
    )
    assert lines[1].split() == ["verb", "wall", "time", "API", "requests", "polls"]
    assert [line.split(" (")[0] for line in lines[2:]] == [
        "deploy --dry-run",
        "create",
        "update",
        "canary update",
        "promote",
        "delete",
    ], done.stdout
    found = json.loads(out.read_text())
    assert found["pending_polls"] == 1
    assert set(found["samples"]) == set(found["vertex_requests"]) == set(found["polls"])
    assert [k.split(" (")[0] for k in found["samples"]] == list(VERBS)
    assert all(len(v) == 1 and v[0] > 0 for v in found["samples"].values())
    requests = {k.split(" (")[0]: v[0] for k, v in found["vertex_requests"].items()}
    polls = {k.split(" (")[0]: v[0] for k, v in found["polls"].items()}
    # A plan only reads (the model's versions); a create sends at least its upload, endpoint
    # create and deployModel, each an operation polled once; a delete removes the endpoint and
    # the model (two operations).
    assert requests["deploy --dry-run"] >= 1 and polls["deploy --dry-run"] == 0
    assert requests["create"] >= 3 and polls["create"] == 3
    assert requests["delete"] >= 2 and polls["delete"] >= 2
    for verb in VERBS[1:]:
        assert polls[verb] >= 1, (verb, polls)
    # The table shows the same counts as the JSON.
    for line in lines[2:]:
        verb = line.split(" (")[0]
        assert line.split()[-2:] == [str(requests[verb]), str(polls[verb])], line
