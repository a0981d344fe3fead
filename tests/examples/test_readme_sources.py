"""The README's "Packages from anywhere" block, run as written against local servers.

Its bucket is moto's S3 (the endpoint comes from ``$MODELPORT_STORAGE_OPTIONS``, as a user's
would), its registry the session's real ``mlflow server``; only the webhook port is changed to a
free one.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from examples_support import Quickstart, readme_blocks

import modelport
from modelport.deployers.local import LocalConfig, LocalDeployer
from process_helpers import wait_for
from storage_servers import MlflowServer, free_port, register_version, s3_server

BIN = Path(sys.executable).parent


def test_the_readme_sources_block_runs_as_written(
    quickstart: Quickstart, mlflow_registry: MlflowServer, tmp_path: Path
) -> None:
    from mlflow import MlflowClient

    (block,) = [b for b in readme_blocks("bash") if "s3://" in b]
    lines = [x.strip() for x in block.splitlines() if x.strip().startswith("modelport ")]
    pack_line, predict_line, deploy_line = lines
    home = tmp_path / "home"
    with s3_server() as s3:
        s3.make_bucket("models")
        env = {
            **os.environ,
            **mlflow_registry.env,
            "MODELPORT_HOME": str(home),
            "MODELPORT_STORAGE_OPTIONS": json.dumps({"s3": dict(s3.storage_options)}),
            "MODELPORT_WEBHOOK_SECRET": "readme-secret",
        }

        def run(line: str) -> subprocess.CompletedProcess[str]:
            argv = shlex.split(line)
            return subprocess.run(
                [str(BIN / argv[0]), *argv[1:]], cwd=quickstart.cwd, env=env,
                capture_output=True, text=True, timeout=120, check=False,
            )  # fmt: skip

        packed = run(pack_line)
        assert packed.returncode == 0, packed.stderr
        predicted = run(predict_line)
        assert predicted.returncode == 0, predicted.stderr
        assert json.loads(predicted.stdout)["predictions"]["label"] == [0, 1, 1]

    # The registry holds the quickstart's package as version 1 of breast-cancer, at champion.
    directory = tmp_path / "breast-cancer"
    modelport.pack(quickstart.out_dir / "breast-cancer.mport", directory).close()
    client = MlflowClient(mlflow_registry.tracking_uri, mlflow_registry.tracking_uri)
    version = register_version(client, "breast-cancer", directory)
    client.set_registered_model_alias("breast-cancer", "champion", version)

    argv = shlex.split(deploy_line.replace("8765", str(free_port())))
    local = LocalDeployer(LocalConfig(home=home, workers=1))
    out: list[str] = []
    with (tmp_path / "deploy.err").open("w") as err:
        proc = subprocess.Popen(
            [str(BIN / argv[0]), *argv[1:]], cwd=quickstart.cwd, env=env, stdout=subprocess.PIPE,
            stderr=err, text=True,
        )  # fmt: skip
    assert proc.stdout is not None
    reader = threading.Thread(target=lambda: out.extend(proc.stdout), daemon=True)  # type: ignore[arg-type]
    reader.start()
    try:
        wait_for(
            lambda: any(f"unchanged: version {version}" in line for line in out),
            "the follower's first check",
            timeout=120,
            log=lambda: "".join(out) + (tmp_path / "deploy.err").read_text(),
        )
        assert any("following: following models:/breast-cancer@champion" in x for x in out)
        assert local.get("cancer").package_digest == modelport.verify(directory).manifest.digest
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)
        reader.join(timeout=10)
        proc.stdout.close()
        for deployment in local.list():
            local.delete(deployment.name)


@pytest.fixture(autouse=True)
def _no_leaked_servers(tmp_path: Path) -> object:
    yield None
    from process_helpers import wait_no_processes

    assert wait_no_processes(str(tmp_path / "home"), timeout=10.0) == []
