"""What the CLI says when the path or the port is wrong: the error, its hint and its exit code.

- A path that does not exist is exit 1, ``no such file: PATH``, for every command that takes a
  package (and for ``pack``'s source and example, ``predict -i``): nothing was read, so it is no
  "invalid package" (exit 4).
- A bare model (an ``.onnx`` file, an MLflow model directory) given where a package goes is an
  invalid package (exit 4) whose hint says to ``modelport pack`` it first.
- ``modelport serve`` on a port already in use fails at once, naming the port (exit 1), instead
  of gunicorn's five seconds of retries. ``--fd`` serves on an inherited listening socket, and
  names a descriptor that is not one.
"""

from __future__ import annotations

import json
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from cli_serving import MODELPORT, request, start

from bodies_corpus import SINGLE_WEIGHTS, corpus_models
from modelport.cli.main import main
from process_helpers import serve_refusal

#: Every command taking a package, with what else it needs (PKG: the package, IN: an input file).
PACKAGE_COMMANDS = {
    "inspect": ["inspect", "PKG"],
    "verify": ["verify", "PKG"],
    "predict": ["predict", "PKG", "-i", "IN"],
    "serve": ["serve", "PKG", "--port", "0"],
    "deploy": ["deploy", "PKG", "-t", "local", "-n", "demo"],
    "deployments-update": ["deployments", "update", "PKG", "-t", "local", "-n", "demo"],
    "dockerfile": ["dockerfile", "PKG", "-o", "OUT"],
}


@pytest.fixture(autouse=True)
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private MODELPORT_HOME: nothing here may touch a real one."""
    monkeypatch.setenv("MODELPORT_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


@pytest.fixture(scope="module")
def package(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A package of one input (``x`` float32[N, 3] -> ``y`` = x @ SINGLE_WEIGHTS)."""
    return corpus_models(tmp_path_factory.mktemp("messages"))["single"].path


@pytest.fixture
def inputs(tmp_path: Path) -> Path:
    path = tmp_path / "in.json"
    path.write_text(json.dumps({"inputs": [[1.0, 2.0, 3.0]]}))
    return path


def args_for(command: str, package: Path | str, inputs: Path | str, out: Path) -> list[str]:
    names = {"PKG": str(package), "IN": str(inputs), "OUT": str(out)}
    return [names.get(a, a) for a in PACKAGE_COMMANDS[command]]


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    """The CLI in-process: its exit status, and what it wrote to stderr (a ``serve`` here must
    refuse, so it gets a deadline)."""
    code = serve_refusal(list(args)) if args[0] == "serve" else main(list(args))
    return code, capsys.readouterr().err


# --- a path that does not exist -------------------------------------------------------------------


@pytest.mark.parametrize("command", sorted(PACKAGE_COMMANDS))
def test_a_missing_package_is_exit_1_no_such_file(
    command: str, tmp_path: Path, inputs: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "absent.mport"
    code, err = cli(capsys, *args_for(command, missing, inputs, tmp_path / "context"))
    assert code == 1, err
    assert f"Error: no such file: {missing}\n" in err
    assert "invalid" not in err and "Traceback" not in err
    assert not (tmp_path / "context").exists()


def test_a_missing_input_or_source_is_exit_1_no_such_file(
    package: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "absent.json"
    for args in (
        ["predict", str(package), "-i", str(missing)],
        ["deployments", "predict", "-t", "local", "-n", "demo", "-i", str(missing)],
        ["pack", str(tmp_path / "absent.onnx"), "-o", str(tmp_path / "out.mport")],
        ["pack", str(package), "-o", str(tmp_path / "out.mport"), "--example", str(missing)],
    ):
        code, err = cli(capsys, *args)
        assert code == 1, (args, err)
        assert "Error: no such file: " in err and "absent." in err, args
    assert not (tmp_path / "out.mport").exists()


def test_the_console_script_says_the_same(tmp_path: Path) -> None:
    missing = tmp_path / "absent.mport"
    result = subprocess.run(
        [MODELPORT, "serve", str(missing)], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 1
    assert result.stderr == f"Error: no such file: {missing}\n"


def test_json_output_names_the_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["verify", str(tmp_path / "absent.mport"), "--json"])
    out = json.loads(capsys.readouterr().out)
    assert code == 1
    assert out["error"]["type"] == "NoSuchFile"
    assert out["error"]["exit_code"] == 1


# --- a model that was not packed ------------------------------------------------------------------


@pytest.fixture
def bare_models(tmp_path: Path, tiny_onnx: Any) -> dict[str, Path]:
    onnx_file = tmp_path / "model.onnx"
    onnx_file.write_bytes(tiny_onnx.SerializeToString())
    mlflow_dir = tmp_path / "mlflow-model"
    mlflow_dir.mkdir()
    (mlflow_dir / "MLmodel").write_text("flavors: {}\n")
    return {"onnx": onnx_file, "mlflow": mlflow_dir}


@pytest.mark.parametrize("command", sorted(PACKAGE_COMMANDS))
@pytest.mark.parametrize("kind", ["onnx", "mlflow"])
def test_a_bare_model_is_exit_4_with_a_hint_to_pack_it(
    command: str,
    kind: str,
    bare_models: dict[str, Path],
    inputs: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    model = bare_models[kind]
    code, err = cli(capsys, *args_for(command, model, inputs, tmp_path / "context"))
    assert code == 4, err
    what = "an ONNX model" if kind == "onnx" else "an MLflow model directory"
    assert f"Error: {model} is {what}, not a modelport package\n" in err
    assert "  hint: pack it first" in err
    assert f"modelport pack {model} -o " in err
    assert "Traceback" not in err


def test_the_hint_s_pack_command_works(
    bare_models: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    onnx_file = bare_models["onnx"]
    _, err = cli(capsys, "verify", str(onnx_file))
    command = err.split("then use the package: ", 1)[1].strip().split()
    assert command[:2] == ["modelport", "pack"]
    assert main(command[1:]) == 0
    assert main(["verify", str(onnx_file.with_suffix(".mport"))]) == 0


def test_an_archive_named_onnx_is_still_read_as_an_archive(
    package: Path, tmp_path: Path, inputs: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    misnamed = tmp_path / "package.onnx"
    misnamed.write_bytes(package.read_bytes())
    assert cli(capsys, "verify", str(misnamed))[0] == 0
    assert main(["predict", str(misnamed), "-i", str(inputs)]) == 0


# --- a port already in use ----------------------------------------------------------------------


@pytest.fixture
def taken_port() -> Iterator[int]:
    """A port something else listens on."""
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        yield int(holder.getsockname()[1])


@pytest.mark.parametrize("mode", [[], ["--dev"]])
def test_serve_on_a_port_in_use_fails_at_once_naming_it(
    package: Path, taken_port: int, mode: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    started = time.monotonic()
    code, err = cli(capsys, "serve", str(package), "--port", str(taken_port), *mode)
    assert time.monotonic() - started < 1.0
    assert code == 1
    assert f"Error: port {taken_port} is already in use (cannot listen on 127.0.0.1:" in err
    assert "hint: stop what listens there, or pick another port with --port" in err


def test_a_second_server_on_a_served_port_fails_and_the_first_serves_on(
    package: Path, tmp_path: Path
) -> None:
    first = start(package, log_dir=tmp_path)
    try:
        port = int(first.url.rsplit(":", 1)[1])
        started = time.monotonic()
        second = subprocess.run(
            [MODELPORT, "serve", str(package), "--port", str(port)],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        # The interpreter's own start included: well under gunicorn's 5 s of retries.
        assert time.monotonic() - started < 4.0
        assert second.returncode == 1
        assert f"port {port} is already in use" in second.stderr
        assert "Traceback" not in second.stderr and "gunicorn" not in second.stderr
        answer = request(
            first.url + "/invocations",
            "POST",
            b"[[1, 2, 3]]",
            {"Content-Type": "application/json"},
        )
        assert answer.status == 200
        expected = np.array([[1, 2, 3]], np.float32) @ SINGLE_WEIGHTS
        assert json.loads(answer.body) == {"predictions": expected.tolist()}
    finally:
        assert first.stop() == 0, first.log()


@pytest.mark.parametrize("mode", [[], ["--dev"]])
def test_serve_on_an_inherited_socket_serves_on_its_port(
    package: Path, tmp_path: Path, mode: list[str]
) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        server = start(
            package, ["--fd", str(sock.fileno()), *mode], log_dir=tmp_path, pass_fds=[sock.fileno()]
        )
    try:
        assert server.url == f"http://127.0.0.1:{port}"  # --port 0 was ignored for the socket
        answer = server.post("/invocations", b"[[1, 2, 3]]", {"Content-Type": "application/json"})
        expected = np.array([[1, 2, 3]], np.float32) @ SINGLE_WEIGHTS
        assert json.loads(answer.body) == {"predictions": expected.tolist()}
    finally:
        assert server.stop() == 0, server.log()


def test_an_fd_that_is_not_a_listening_socket_is_named(
    package: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with (tmp_path / "file").open("w") as file, socket.socket() as idle:
        for fd, why in [
            (file.fileno(), "Socket operation on non-socket"),
            (idle.fileno(), "is not a listening TCP socket"),
        ]:
            code, err = cli(capsys, "serve", str(package), "--fd", str(fd))
            assert code == 1
            assert f"file descriptor {fd}" in err and why in err
            assert "hint: --fd names a listening socket this process inherited" in err
            assert "Traceback" not in err
        idle.bind(("127.0.0.1", 0))  # still open: a refusal closes nothing it was given
        file.write("still open")


def test_a_host_that_is_not_this_machine_s_is_named(
    package: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # 192.0.2.0/24 is TEST-NET-1: never an address of this machine.
    code, err = cli(capsys, "serve", str(package), "--host", "192.0.2.1", "--port", "0")
    assert code == 1
    assert "cannot listen on 192.0.2.1:0: 192.0.2.1 is not an address of this machine" in err
