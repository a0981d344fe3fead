"""Starting, stopping and surviving: real ``modelport serve`` processes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from serving_support import (
    Response,
    gauge,
    listening,
    port_of,
    post_json,
    request,
    start_server,
)

from modelport.errors import UsageError
from modelport.serving.config import MAX_GRACEFUL_S, resolve_host, resolve_port, vertex_route
from process_helpers import imports_after, wait_for


def modelport_cli(
    *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "modelport.cli.main", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **(env or {})},
        check=False,
    )


def test_sigterm_drains_in_flight_requests_then_exits_promptly(
    packages: dict[str, Path], tmp_path: Path
) -> None:
    server = start_server(packages["tricky"], ["--allow-code", "--workers", "1"], log_dir=tmp_path)
    answers: list[Response] = []
    answered_at: list[float] = []

    def slow() -> None:
        # The model sleeps 2 s on this input.
        answers.append(post_json(server.url + "/invocations", {"inputs": [[2000.0, 1, 1]]}))
        answered_at.append(time.monotonic())

    try:
        thread = threading.Thread(target=slow)
        thread.start()
        wait_for(
            lambda: gauge(server, "modelport_requests_in_flight") >= 2,
            "the slow request to be in flight (beside the /metrics request asking)",
            log=server.log,
        )
        server.proc.send_signal(signal.SIGTERM)
        port = port_of(server.url)
        wait_for(lambda: not listening(port), f"nothing to listen on port {port}", log=server.log)
        # Stopped accepting: a new request is not served.
        try:
            late: Response | None = request(server.url + "/ping", timeout=10)
        except OSError:  # refused, or reset when the worker exits
            late = None
        assert late is None, f"served after SIGTERM: {late}"
        thread.join(30)
        assert answers and answers[0].status == 200, answers
        assert answers[0].json() == {"predictions": [[4000.0, 2.0, 2.0]]}
        server.proc.wait(30)
        exited_at = time.monotonic()
        # Exited once drained, not at the end of the graceful timeout (25 s).
        assert exited_at - answered_at[0] < MAX_GRACEFUL_S / 2
        assert server.proc.returncode == 0, server.log()
        assert "Traceback" not in server.log()
        assert "was sent" not in server.log()  # no worker died of a signal
    finally:
        server.stop()


def test_ping_says_ready_once_every_worker_is(packages: dict[str, Path], tmp_path: Path) -> None:
    # Each worker loads its own model and accepts connections meanwhile; the first 200 must mean
    # that any probe from then on, on either worker, is a 200 too.
    server = start_server(packages["iris"], ["--workers", "2"], log_dir=tmp_path, ready=False)
    try:
        wait_for(
            lambda: request(server.url + "/ping").status == 200, "a 200 from /ping", log=server.log
        )
        assert gauge(server, "modelport_workers_ready") == 2
        assert [request(server.url + "/ping").status for _ in range(40)] == [200] * 40
    finally:
        assert server.stop() == 0


def test_a_dead_worker_is_replaced_and_the_server_keeps_answering(
    packages: dict[str, Path], tmp_path: Path
) -> None:
    server = start_server(packages["iris"], ["--workers", "2"], log_dir=tmp_path)
    try:
        wait_for(
            lambda: gauge(server, "modelport_workers_ready") == 2,
            "both workers to be ready",
            log=server.log,
        )
        before = server.worker_pids()
        assert len(before) == 2
        os.kill(before[0], signal.SIGKILL)
        for _ in range(20):
            resp = post_json(server.url + "/invocations", {"inputs": [[0.1, 0.2, 0.3, 0.4]]})
            assert resp.status == 200, resp.body

        def replaced() -> bool:
            after = server.worker_pids()
            ready = gauge(server, "modelport_workers_ready")
            return len(after) == 2 and before[0] not in after and ready == 2

        wait_for(replaced, f"the killed worker {before[0]} to be replaced", log=server.log)
        # The dead worker's gauges were cleared: two workers ready, not three.
        assert "modelport_workers_ready 2\n" in request(server.url + "/metrics").body.decode()
    finally:
        assert server.stop() == 0


def test_dev_server_with_package_and_port_from_the_environment(
    packages: dict[str, Path], tmp_path: Path
) -> None:
    log = (tmp_path / "dev.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "modelport.cli.main", "serve", "--dev"],
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, "MODELPORT_PACKAGE": str(packages["iris"]), "AIP_HTTP_PORT": "0"},
    )
    try:

        def announced() -> str:
            text = (tmp_path / "dev.log").read_text()
            assert proc.poll() is None, text
            urls = [w for w in text.split() if w.startswith("http://127.0.0.1:")]
            return urls[-1] if urls else ""

        wait_for(
            lambda: bool(announced()),
            "the development server to announce its URL",
            timeout=60,
            log=(tmp_path / "dev.log").read_text,
        )
        url = announced()
        assert request(url + "/ping").status == 200
        resp = post_json(url + "/invocations", {"inputs": [[0.1, 0.2, 0.3, 0.4]]})
        assert resp.status == 200
        assert "development server" in (tmp_path / "dev.log").read_text()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(15) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        log.close()


@pytest.mark.parametrize(
    ("args", "env", "code", "needle"),
    [
        (["serve", "missing.mport"], {}, 1, "no such file"),
        (["serve", "TRICKY"], {}, 1, "--allow-code"),
        (["serve", "IRIS"], {"SAGEMAKER_BIND_TO_PORT": "eighty"}, 2, "SAGEMAKER_BIND_TO_PORT"),
        (["serve", "IRIS", "--workers", "0"], {}, 2, "--workers"),
        (["serve", "IRIS"], {"AIP_PREDICT_ROUTE": "predict"}, 2, "AIP_PREDICT_ROUTE"),
    ],
)
def test_startup_errors_have_clear_messages_and_exit_codes(
    packages: dict[str, Path], args: list[str], env: dict[str, str], code: int, needle: str
) -> None:
    names = {"TRICKY": str(packages["tricky"]), "IRIS": str(packages["iris"])}
    result = modelport_cli(*[names.get(a, a) for a in args], env=env)
    assert result.returncode == code, result.stderr
    assert needle in result.stderr
    assert "Traceback" not in result.stderr


def test_tampered_package_is_refused(packages: dict[str, Path], tmp_path: Path) -> None:
    import shutil

    copy = tmp_path / "dtypes"
    shutil.copytree(packages["dtypes"], copy)
    (copy / "model.onnx").write_bytes(b"not a model")
    result = modelport_cli("serve", str(copy), "--port", "0")
    assert result.returncode == 4
    assert "model.onnx" in result.stderr


def test_help_does_not_import_the_web_stack() -> None:
    code = "from modelport.cli.main import main\nassert main(['serve', '--help']) == 0"
    check = imports_after(code, ("flask", "gunicorn", "orjson", "onnxruntime"))
    assert check.imported == set()
    assert "--max-batch-wait-ms" in check.stdout


def test_port_precedence() -> None:
    env = {"SAGEMAKER_BIND_TO_PORT": "9001", "AIP_HTTP_PORT": "9002"}
    assert resolve_port(9000, env) == 9000
    assert resolve_port(None, env) == 9001
    assert resolve_port(None, {"AIP_HTTP_PORT": "9002"}) == 9002
    assert resolve_port(None, {}) == 8080
    with pytest.raises(UsageError):
        resolve_port(None, {"AIP_HTTP_PORT": "70000"})


def test_host_and_vertex_routes() -> None:
    assert resolve_host(None, {}) == "127.0.0.1"
    assert resolve_host(None, {"MODELPORT_HOST": "0.0.0.0"}) == "0.0.0.0"
    assert resolve_host("::1", {"MODELPORT_HOST": "0.0.0.0"}) == "::1"
    env: dict[str, Any] = {"AIP_PREDICT_ROUTE": "/v1/endpoints/1/deployedModels/2:predict"}
    assert vertex_route("AIP_PREDICT_ROUTE", env) == env["AIP_PREDICT_ROUTE"]
    assert vertex_route("AIP_HEALTH_ROUTE", env) is None


def test_reload_replaces_workers_and_keeps_the_package(
    packages: dict[str, Path], tmp_path: Path
) -> None:
    # SIGHUP makes gunicorn start new workers and stop the old ones gracefully. Old workers
    # exiting must not take the master's extracted package or metrics directory with them.
    server = start_server(packages["iris"], ["--workers", "1"], log_dir=tmp_path)
    try:
        wait_for(lambda: len(server.worker_pids()) == 1, "one worker", log=server.log)
        (old,) = server.worker_pids()
        server.proc.send_signal(signal.SIGHUP)
        wait_for(
            lambda: server.worker_pids() not in ([], [old]) and old not in server.worker_pids(),
            f"a new worker in place of {old}",
            log=server.log,
        )
        wait_for(
            lambda: gauge(server, "modelport_workers_ready") == 1,
            "the new worker to be ready",
            log=server.log,
        )
        resp = post_json(server.url + "/invocations", {"inputs": [[0.1, 0.2, 0.3, 0.4]]})
        assert resp.status == 200, resp.body
        assert "was sent" not in server.log()
    finally:
        assert server.stop() == 0
