"""The README's "Registries and signatures" block, run as written.

The registry is CI's Debian ``docker-registry`` on 127.0.0.1:5000 (``.ci/setup-containers.sh``;
the test skips, or fails under ``MODELPORT_REQUIRE_CONTAINERS=1``, without it). The quickstart's
output is copied first: signing rewrites the archive, which other tests share.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from examples_support import Quickstart, readme_blocks

from modelport.deployers.kit.http import http
from process_helpers import wait_for
from storage_servers import free_port

BIN = Path(sys.executable).parent
REGISTRY = "127.0.0.1:5000"


def _answers(url: str) -> bool:
    try:
        return http("GET", url, timeout=2.0)[0] == 200
    except OSError:
        return False


@pytest.mark.slow
def test_the_readme_registry_block_runs_as_written(quickstart: Quickstart, tmp_path: Path) -> None:
    if not _answers(f"http://{REGISTRY}/v2/"):
        if os.environ.get("MODELPORT_REQUIRE_CONTAINERS") == "1":
            pytest.fail(f"no registry at {REGISTRY} (.ci/setup-containers.sh starts one)")
        pytest.skip(f"no registry at {REGISTRY}; run `source .ci/setup-containers.sh`")
    (block,) = [b for b in readme_blocks("bash") if "modelport push" in b]
    lines = [x.strip() for x in block.splitlines() if x.strip() and not x.startswith("pip ")]
    *setup, serve_line = lines
    cwd = tmp_path / "root"
    shutil.copytree(quickstart.out_dir, cwd / "build" / "quickstart")
    env = {"MODELPORT_HOME": str(tmp_path / "home"), "PATH": f"{BIN}:/usr/bin:/bin"}
    for line in setup:
        argv = shlex.split(line)
        done = subprocess.run(
            argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=120, check=False
        )
        assert done.returncode == 0, f"{line}\n{done.stdout}{done.stderr}"
        if argv[:2] == ["modelport", "push"]:
            pushed = done.stdout.strip().splitlines()[-1]
            assert pushed.startswith("sha256:") and len(pushed) == 71, done.stdout

    argv = shlex.split(serve_line)
    assert argv[:2] == ["modelport", "serve"]
    port = free_port()
    log = tmp_path / "serve.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [str(BIN / "modelport"), *argv[1:], "--port", str(port), "--workers", "1"],
            cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        url = f"http://127.0.0.1:{port}"
        wait_for(
            lambda: proc.poll() is not None or _answers(f"{url}/ping"),
            "the served registry package to answer /ping",
            timeout=120,
            log=log.read_text,
        )
        assert proc.poll() is None, log.read_text()
        body = (cwd / "build" / "quickstart" / "request.json").read_bytes()
        status, answer = http(
            "POST", f"{url}/invocations", body, 30.0, {"Content-Type": "application/json"}
        )
        assert status == 200, answer
        assert len(json.loads(answer)["predictions"]["label"]) == 3
        assert "signature verified" in log.read_text() or "signed by" in log.read_text()
    finally:
        proc.terminate()
        assert proc.wait(30) == 0, log.read_text()
