"""``modelport deploy | deployments | targets`` through ``modelport.cli.main.main``, the exit-code
boundary, with the real local target (real processes, real HTTP on 127.0.0.1)."""

from __future__ import annotations

import contextlib
import io
import json
import os
import signal
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from modelport.cli.main import main
from modelport.deployers.kit.waiting import wait_until
from modelport.plugins.testing import make_test_package
from process_helpers import wait_no_processes


@pytest.fixture(scope="module")
def packages(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("cli-packages")
    return {
        "v1": make_test_package(root / "v1.mport", scale=1.0, version="1"),
        "v2": make_test_package(root / "v2.mport", scale=2.0, version="2"),
    }


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A private MODELPORT_HOME; whatever a test deployed is deleted, and nothing may leak."""
    path = tmp_path / "home"
    monkeypatch.setenv("MODELPORT_HOME", str(path))
    monkeypatch.setenv("MODELPORT_LOCAL_WORKERS", "1")  # many servers on few cores
    yield path
    root = path / "deployments" / "local"
    if root.exists():
        for directory in root.iterdir():
            if directory.is_dir():
                main(["deployments", "delete", "-t", "local", "-n", directory.name])
    leaked = wait_no_processes(str(path), timeout=5)
    for pid in leaked:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    assert not leaked, f"processes left running: {leaked}"


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def ok(capsys: pytest.CaptureFixture[str], *args: str) -> str:
    """Run a command that must succeed (its stderr is the failure message); returns stdout."""
    code, out, err = run(capsys, *args)
    assert code == 0, err
    return out


def run_json(capsys: pytest.CaptureFixture[str], *args: str) -> Any:
    return json.loads(ok(capsys, *args, "--json"))


def get_until(
    capsys: pytest.CaptureFixture[str], name: str, done: Callable[[dict[str, Any]], bool]
) -> dict[str, Any]:
    """``deployments get --json`` until ``done`` holds for its record (or a minute passes)."""
    seen: list[dict[str, Any]] = []

    def look() -> bool:
        seen.append(run_json(capsys, "deployments", "get", "-t", "local", "-n", name))
        return done(seen[-1])

    wait_until(look, what=f"deployment {name!r}", timeout_s=60, max_interval_s=0.1)
    return seen[-1]


# --- the whole life of a deployment ---------------------------------------------------------


def test_deploy_query_update_and_delete(
    home: Path, packages: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(capsys, "deploy", str(packages["v1"]), "-t", "local", "-n", "web")
    assert code == 0, err
    assert out.splitlines()[0] == "Deployment web on local: ready"
    assert "  endpoint: http://127.0.0.1:" in out

    code, out, _ = run(capsys, "deployments", "list", "--target", "local")
    assert code == 0
    header, row = out.splitlines()
    assert header.split() == ["NAME", "STATUS", "ENDPOINT", "PACKAGE", "UPDATED"]
    assert row.split()[:2] == ["web", "ready"]

    got = run_json(capsys, "deployments", "get", "-t", "local", "-n", "web")
    assert got["status"] == "ready"
    assert got["details"]["package_version"] == "1"
    created = got["created_at"]

    body = tmp_path / "in.json"
    body.write_text(json.dumps({"inputs": {"X": [[1.0, 2.0]]}}))
    out_file = tmp_path / "out.json"
    code, out, err = run(
        capsys,
        "deployments",
        "predict",
        "-t",
        "local",
        "-n",
        "web",
        "-i",
        str(body),
        "-o",
        str(out_file),
    )
    assert (code, out) == (0, ""), err
    assert json.loads(out_file.read_text()) == {"predictions": [[1.0, 2.0]]}

    code, out, _ = run(capsys, "deployments", "logs", "-t", "local", "-n", "web", "--tail", "3")
    assert code == 0 and len(out.splitlines()) == 3

    updated = run_json(
        capsys, "deployments", "update", str(packages["v2"]), "-t", "local", "-n", "web"
    )
    assert updated["details"]["package_version"] == "2"
    assert updated["created_at"] == created
    assert updated["endpoint"] == got["endpoint"]
    again = run_json(
        capsys, "deployments", "update", str(packages["v2"]), "-t", "local", "-n", "web"
    )
    assert again["updated_at"] == updated["updated_at"]

    code, out, _ = run(
        capsys, "deployments", "predict", "-t", "local", "-n", "web", "-i", str(body)
    )
    assert json.loads(out) == {"predictions": [[2.0, 4.0]]}

    code, out, _ = run(capsys, "deployments", "delete", "-t", "local", "-n", "web")
    assert (code, out.strip()) == (0, "Deleted deployment web on local (if it existed).")
    code, _, err = run(capsys, "deployments", "get", "-t", "local", "-n", "web")
    assert code == 1
    assert "no deployment named 'web' on target 'local'" in err
    assert run_json(capsys, "deployments", "delete", "-t", "local", "-n", "web") == {
        "deleted": "web",
        "target": "local",
    }
    assert run_json(capsys, "deployments", "list", "-t", "local") == []


def test_predict_reads_stdin(
    home: Path,
    packages: dict[str, Path],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ok(capsys, "deploy", str(packages["v1"]), "-t", "local", "-n", "stdin")
    monkeypatch.setattr("sys.stdin", io.StringIO('{"instances": [[3, 4]]}'))
    code, out, err = run(capsys, "deployments", "predict", "-t", "local", "-n", "stdin", "-i", "-")
    assert code == 0, err
    assert json.loads(out) == {"predictions": [[3.0, 4.0]]}


def test_no_wait_returns_before_ready(
    home: Path, packages: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    started = run_json(
        capsys, "deploy", str(packages["v1"]), "-t", "local", "-n", "later", "--no-wait"
    )
    assert started["status"] == "starting"
    get_until(capsys, "later", lambda got: got["status"] == "ready")


def test_deploying_an_existing_name_exits_1(
    home: Path, packages: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    ok(capsys, "deploy", str(packages["v1"]), "-t", "local", "-n", "twice")
    code, _, err = run(capsys, "deploy", str(packages["v2"]), "-t", "local", "-n", "twice")
    assert code == 1
    assert "a deployment named 'twice' already exists on target 'local'" in err


def test_the_local_uri_names_the_state_directory(
    home: Path, packages: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    elsewhere = tmp_path / "elsewhere"
    target = f"local:{elsewhere}"
    ok(capsys, "deploy", str(packages["v1"]), "-t", target, "-n", "uri")
    assert (elsewhere / "deployments" / "local" / "uri" / "state.json").is_file()
    assert run_json(capsys, "deployments", "list", "-t", "local") == []  # not in MODELPORT_HOME
    assert [d["name"] for d in run_json(capsys, "deployments", "list", "-t", target)] == ["uri"]
    ok(capsys, "deployments", "delete", "-t", target, "-n", "uri")
    assert not (elsewhere / "deployments" / "local" / "uri").exists()


# --- dry run --------------------------------------------------------------------------------


def test_dry_run_prints_the_plan_and_touches_nothing(
    home: Path, packages: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(
        capsys,
        "deploy",
        str(packages["v1"]),
        "-t",
        "local",
        "-n",
        "plan",
        "--dry-run",
        "-C",
        "port=8123",
    )
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].startswith("Dry run: deploying contract-model 1 (sha256:")
    assert lines[0].endswith("to local as 'plan' would:")
    assert "  4. start-proxy [process] start the endpoint proxy on 127.0.0.1:8123" in lines
    assert lines[-1] == "Nothing was created."
    plan = run_json(capsys, "deploy", str(packages["v1"]), "-t", "local", "-n", "plan", "--dry-run")
    assert plan["dry_run"] is True
    assert [(a["step"], a["kind"]) for a in plan["actions"]] == [
        ("make-directory", "directory"),
        ("copy-package", "file"),
        ("start-server", "process"),
        ("start-proxy", "process"),
        ("wait-ready", "wait"),
    ]
    assert not home.exists()


def test_config_sources_rank_file_env_cli(
    home: Path,
    packages: dict[str, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def step(*args: str, name: str) -> dict[str, Any]:
        plan = run_json(
            capsys, "deploy", str(packages["v1"]), "-t", "local", "-n", "p", "--dry-run", *args
        )
        found: dict[str, Any] = next(a for a in plan["actions"] if a["step"] == name)
        return found

    def proxy_port(*args: str) -> str:
        command: list[str] = step(*args, name="start-proxy")["details"]["command"]
        return command[command.index("--port") + 1]

    toml = tmp_path / "local.toml"
    toml.write_text("port = 1111\nworkers = 2\n")
    assert proxy_port("--config-file", str(toml)) == "1111"
    monkeypatch.setenv("MODELPORT_LOCAL_PORT", "2222")
    assert proxy_port("--config-file", str(toml)) == "2222"
    assert proxy_port("--config-file", str(toml), "-C", "port=3333") == "3333"
    js = tmp_path / "local.json"
    js.write_text(json.dumps({"serve_args": ["--max-batch-size", "8"]}))
    command = step("--config-file", str(js), name="start-server")["details"]["command"]
    assert command[-2:] == ["--max-batch-size", "8"]


# --- exit codes -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["-C", "port=eighty"], "port (from -C): expected an integer, got 'eighty'"),
        (["-C", "prot=80"], "unknown key 'prot' (from -C); did you mean 'port'?"),
        (["-C", "workers=0"], "workers must be at least 1"),
        (["-C", "portnumber"], "-C 'portnumber': expected key=value"),
        (["-C", "serve_args=--x"], "serve_args (from -C): expected a JSON array"),
        (["-t", ":x"], "no target name before ':'"),
    ],
)
def test_bad_options_exit_2(
    home: Path,
    packages: dict[str, Path],
    capsys: pytest.CaptureFixture[str],
    options: list[str],
    message: str,
) -> None:
    args = ["deploy", str(packages["v1"]), "-n", "x", "--dry-run", "-t", "local", *options]
    code, _, err = run(capsys, *args)
    assert code == 2
    assert message in err


def test_bad_config_files_and_env_exit_2(
    home: Path,
    packages: dict[str, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    base = ["deploy", str(packages["v1"]), "-t", "local", "-n", "x", "--dry-run"]
    bad = tmp_path / "bad.toml"
    bad.write_text("port = \n")
    code, _, err = run(capsys, *base, "--config-file", str(bad))
    assert (code, "is not valid TOML" in err) == (2, True)
    unknown = tmp_path / "unknown.json"
    unknown.write_text('{"hots": "0.0.0.0"}')
    code, _, err = run(capsys, *base, "--config-file", str(unknown))
    assert code == 2
    assert f"unknown key 'hots' (from config file {unknown}); did you mean 'host'?" in err
    monkeypatch.setenv("MODELPORT_LOCAL_STARTUP_TIMEOUT", "soon")
    code, _, err = run(capsys, *base)
    assert code == 2
    assert "startup_timeout (from environment variable MODELPORT_LOCAL_STARTUP_TIMEOUT)" in err


def test_missing_options_are_usage_errors(
    packages: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run(capsys, "deploy", str(packages["v1"]), "-t", "local")
    assert code == 2 and "Missing option '-n' / '--name'" in err
    code, _, err = run(capsys, "deployments", "get", "-n", "x")
    assert code == 2 and "Missing option '-t' / '--target'" in err


def test_target_problems_exit_3(
    packages: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run(capsys, "deploy", str(packages["v1"]), "-t", "nosuch", "-n", "x")
    assert code == 3
    assert "unknown target 'nosuch'" in err
    code, _, err = run(capsys, "deployments", "list", "-t", "lcoal")
    assert code == 3
    assert "did you mean 'local'?" in err
    code, _, err = run(capsys, "targets", "help", "nosuch")
    assert code == 3


def test_invalid_packages_exit_4(
    home: Path, tmp_path: Path, packages: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    code, _, err = run(capsys, "deploy", str(empty), "-t", "local", "-n", "x", "--dry-run")
    assert code == 4 and "is it a modelport package?" in err
    tampered = tmp_path / "tampered.mport"
    data = bytearray(packages["v1"].read_bytes())
    data[len(data) // 2] ^= 0xFF
    tampered.write_bytes(bytes(data))
    code, _, _ = run(capsys, "deploy", str(tampered), "-t", "local", "-n", "x")
    assert code == 4
    assert not (home / "deployments" / "local" / "x").exists()


def test_deployment_errors_exit_1(
    home: Path, packages: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run(
        capsys, "deployments", "update", str(packages["v1"]), "-t", "local", "-n", "ghost"
    )
    assert code == 1 and "no deployment named 'ghost'" in err
    code, _, err = run(capsys, "deployments", "logs", "-t", "local", "-n", "ghost")
    assert code == 1
    body = tmp_path / "in.json"
    body.write_text('{"inputs": {"X": [[1.0, 2.0]]}}')
    code, _, err = run(
        capsys, "deployments", "predict", "-t", "local", "-n", "ghost", "-i", str(body)
    )
    assert code == 1
    # A server that refuses the input: the server's message, exit 1.
    ok(capsys, "deploy", str(packages["v1"]), "-t", "local", "-n", "strict")
    body.write_text('{"inputs": {"nope": [[1.0]]}}')
    code, _, err = run(
        capsys, "deployments", "predict", "-t", "local", "-n", "strict", "-i", str(body)
    )
    assert code == 1 and "nope" in err
    body.write_text("not json")
    code, _, err = run(
        capsys, "deployments", "predict", "-t", "local", "-n", "strict", "-i", str(body)
    )
    assert code == 1 and "malformed JSON body" in err
    body.write_text("[1, 2]")
    code, _, err = run(
        capsys, "deployments", "predict", "-t", "local", "-n", "strict", "-i", str(body)
    )
    assert code == 1 and "must be a JSON object" in err
    code, _, err = run(
        capsys,
        "deployments",
        "predict",
        "-t",
        "local",
        "-n",
        "strict",
        "-i",
        str(tmp_path / "none.json"),
    )
    assert code == 1 and f"no such file: {tmp_path / 'none.json'}" in err
    code, _, err = run(capsys, "deploy", str(packages["v1"]), "-t", "local", "-n", "Bad_Name")
    assert code == 2 and "invalid deployment name 'Bad_Name'" in err


# --- targets --------------------------------------------------------------------------------


def test_targets_lists_local(capsys: pytest.CaptureFixture[str]) -> None:
    targets = {t["name"]: t for t in run_json(capsys, "targets")}
    assert targets["local"]["status"] == "ok"
    assert targets["local"]["distribution"] == "modelport"
    code, out, _ = run(capsys, "targets")
    assert code == 0 and "local" in out


def test_targets_help_describes_every_option(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "targets", "help", "local")
    assert code == 0
    assert out.startswith("Target local  (modelport ")
    for option in (
        "home",
        "host",
        "port",
        "workers",
        "serve_args",
        "startup_timeout",
        "stop_timeout",
    ):
        assert f"  {option}  [" in out
        assert f"env: MODELPORT_LOCAL_{option.upper()}" in out
    assert "port  [int]  default: 0" in out
    assert "Port of the stable endpoint; 0 picks a free one." in out
    assert "1. --config-file FILE.toml|FILE.json" in out
    assert "4. -C key=value on the command line" in out
    described = run_json(capsys, "targets", "help", "local")
    assert described["options"]["startup_timeout"]["type"] == "float"
    assert described["options"]["workers"]["default"] == "none"
    assert described["logs"] is True


# --- long verbs, traffic, errors ------------------------------------------------------------


def test_update_without_waiting_finishes_in_the_background(
    home: Path, packages: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    ok(capsys, "deploy", str(packages["v1"]), "-t", "local", "-n", "later")
    started = run_json(
        capsys,
        "deployments",
        "update",
        str(packages["v2"]),
        "-t",
        "local",
        "-n",
        "later",
        "--no-wait",
    )
    assert started["status"] == "updating"
    assert started["details"]["update_job"]["status"] == "running"
    got = get_until(
        capsys,
        "later",
        lambda got: got["status"] == "ready" and got["details"]["package_version"] == "2",
    )
    assert got["details"]["update_job"]["status"] == "succeeded"


def test_a_failed_background_update_is_reported_and_the_old_version_serves(
    home: Path,
    packages: dict[str, Path],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ok(capsys, "deploy", str(packages["v1"]), "-t", "local", "-n", "bg")
    # The background job inherits the environment: its switch step fails.
    monkeypatch.setenv("MODELPORT_FAILPOINTS", "local.update.switch")
    args = ["deployments", "update", str(packages["v2"]), "-t", "local", "-n", "bg", "--no-wait"]
    run_json(capsys, *args)
    monkeypatch.delenv("MODELPORT_FAILPOINTS")
    job = get_until(capsys, "bg", lambda got: got["details"]["update_job"]["status"] != "running")
    assert job["status"] == "ready" and job["details"]["package_version"] == "1"
    assert "failpoint local.update.switch triggered" in job["details"]["update_job"]["error"]


def test_promote_and_rollback_exit_2_on_a_target_without_traffic_splitting(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for verb in ("promote", "rollback"):
        code, _, err = run(capsys, "deployments", verb, "-t", "local", "-n", "x")
        assert code == 2
        assert "target 'local' does not split traffic between versions" in err
        assert "  hint: " in err


def test_errors_come_with_a_hint_and_as_json(
    home: Path, packages: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    ok(capsys, "deploy", str(packages["v1"]), "-t", "local", "-n", "twice")
    code, out, err = run(
        capsys, "deploy", str(packages["v1"]), "-t", "local", "-n", "twice", "--json"
    )
    assert code == 1
    assert err.splitlines() == [
        "Error: a deployment named 'twice' already exists on target 'local'",
        "  hint: use 'modelport deployments update' to change its package",
    ]
    assert json.loads(out)["error"] == {
        "type": "DeploymentExists",
        "message": "a deployment named 'twice' already exists on target 'local'",
        "hint": "use 'modelport deployments update' to change its package",
        "reference": None,
        "exit_code": 1,
    }
