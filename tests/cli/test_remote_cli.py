"""The commands with tiny_versions in storage: pack writes there, every command reads from there.

Real clients against real local servers (see ``storage_servers``): s3fs and moto's S3, gcsfs and
the GCS emulator, adlfs and Azurite, fsspec's WebHDFS client and a WebHDFS server.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cli_serving import start

from storage_servers import Store, all_stores

MODELPORT = str(Path(sys.executable).parent / "modelport")


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Store]]:
    with all_stores(tmp_path_factory.mktemp("stores")) as stores:
        yield stores


def _run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [MODELPORT, *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=120,
        check=False,
    )


def test_pack_writes_to_storage_and_every_command_reads_it(
    servers: dict[str, Store], tmp_path: Path, onnx_graphs: Any
) -> None:
    import onnx

    s3, gs, az = servers["s3"], servers["gs"], servers["az"]
    env = {
        **gs.server.env,
        "MODELPORT_HOME": str(tmp_path / "cli-home"),
        # Every store's options from the environment (pack copies between two of them) ...
        "MODELPORT_STORAGE_OPTIONS": json.dumps({k: dict(v.options) for k, v in servers.items()}),
    }
    # ... and, for one store at a time, from --storage-option instead.
    alone = {**env, "MODELPORT_STORAGE_OPTIONS": ""}
    model = tmp_path / "tiny.onnx"
    onnx.save(onnx_graphs["tiny"](), model)
    (tmp_path / "x.json").write_text('{"inputs": [[1, 2, 3]]}')
    example = ["--example", str(tmp_path / "x.json")]
    target = f"{s3.base}/cli/tiny.mport"
    packed = _run("pack", str(model), "-o", target, *example, "--json", env=env)
    assert packed.returncode == 0, packed.stderr
    assert json.loads(packed.stdout)["path"] == target
    again = _run("pack", str(model), "-o", target, *example, env=env)
    assert again.returncode == 2
    assert f"{target} exists" in again.stderr
    assert _run("pack", str(model), "-o", target, *example, "--force", env=env).returncode == 0

    verified = _run("verify", target, env=env)
    assert verified.returncode == 0, verified.stderr
    assert f"OK: {target}" in verified.stdout

    # The same package copied to GCS and Azure, read by inspect and predict.
    for other in (gs, az):
        uri = f"{other.base}/cli/tiny.mport"
        copied = _run("pack", target, "-o", uri, env=env)
        assert copied.returncode == 0, copied.stderr
        shown = _run("inspect", uri, "--json", *other.flags(), env=alone)
        assert shown.returncode == 0, shown.stderr
        assert json.loads(shown.stdout)["manifest"]["name"] == "tiny"
        predicted = _run("predict", uri, "-i", str(tmp_path / "x.json"), *other.flags(), env=alone)
        assert predicted.returncode == 0, predicted.stderr
        assert json.loads(predicted.stdout) == {"predictions": [[16.0, 22.0]]}

    listed = _run("cache", "list", "--json", env=env)
    sources = {e["source"] for e in json.loads(listed.stdout)}
    assert sources == {target, f"{gs.base}/cli/tiny.mport", f"{az.base}/cli/tiny.mport"}
    assert "SOURCE" in _run("cache", "list", env=env).stdout
    cleared = _run("cache", "clear", "--json", env=env)
    assert json.loads(cleared.stdout)["removed"] == 1  # the same bytes: one object
    assert json.loads(_run("cache", "list", "--json", env=env).stdout) == []


def test_pack_to_hdfs_writes_a_hidden_file_then_renames_it(
    servers: dict[str, Store], tiny_versions: dict[str, Path], tmp_path: Path
) -> None:
    hdfs = servers["webhdfs"]
    uri = f"{hdfs.base}/packed/tiny.mport"
    hdfs.server.requests.clear()
    result = _run("pack", str(tiny_versions["1"]), "-o", uri, *hdfs.flags())
    assert result.returncode == 0, result.stderr
    ops = [(r.op, r.path) for r in hdfs.server.requests]
    creates = [p for op, p in ops if op == "CREATE"]
    assert creates
    assert all(p.rsplit("/", 1)[1].startswith(".tiny.mport.") for p in creates)
    assert ("RENAME", creates[0]) in ops
    assert (hdfs.server.root / "models" / "packed" / "tiny.mport").read_bytes() == tiny_versions[
        "1"
    ].read_bytes()
    assert sorted(p.name for p in (hdfs.server.root / "models" / "packed").iterdir()) == [
        "tiny.mport"
    ]


def test_errors_of_the_commands(servers: dict[str, Store], tmp_path: Path) -> None:
    s3 = servers["s3"]
    env = {"MODELPORT_HOME": str(tmp_path / "h")}
    missing = _run("inspect", f"{s3.base}/none.mport", *s3.flags(), env=env)
    assert missing.returncode == 1
    assert f"Error: reading {s3.base}/none.mport: no such object" in missing.stderr
    assert "Traceback" not in missing.stderr
    unknown = _run("verify", "ftp://host/x.mport", env=env)
    assert unknown.returncode == 2
    assert "cannot read ftp:// URIs" in unknown.stderr
    stray = _run("verify", str(tmp_path / "x.mport"), "--storage-option", "a=b", env=env)
    assert stray.returncode == 2
    assert "--storage-option is for a package given as a storage URI" in stray.stderr
    bad = _run("inspect", f"{s3.base}/x.mport", "--storage-option", "no-equals", env=env)
    assert bad.returncode == 2


def test_a_missing_extra_names_the_install(servers: dict[str, Store], tmp_path: Path) -> None:
    # s3fs as a broken install: importing it fails as a missing dependency of its own would.
    shadow = tmp_path / "shadow" / "s3fs"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text("raise ImportError('No module named s3fs', name='s3fs')\n")
    env = {"PYTHONPATH": str(shadow.parent), "MODELPORT_HOME": str(tmp_path / "h")}
    result = _run("inspect", "s3://models/x.mport", env=env)
    assert result.returncode == 1
    assert "pip install 'modelport[s3]'" in result.stderr


def test_serve_from_s3(servers: dict[str, Store], tiny_versions: dict[str, Path], tmp_path: Path):
    s3 = servers["s3"]
    uri = s3.put(tiny_versions["2"], "serve/tiny.mport")
    env = {"MODELPORT_HOME": str(tmp_path / "h"), **_env_options(s3)}
    served = start(uri, log_dir=tmp_path, env=env)
    try:
        answer = served.post(
            "/invocations", b'{"inputs": [[1, 0, 0]]}', {"Content-Type": "application/json"}
        )
        assert answer.status == 200
        assert json.loads(answer.body) == {"predictions": [[0.0, 1.0]]}
    finally:
        assert served.stop() == 0


def _env_options(store: Store) -> dict[str, str]:
    return {"MODELPORT_STORAGE_OPTIONS": json.dumps({store.name: dict(store.options)})}
