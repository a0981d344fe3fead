"""Helpers for the server's tests: plain HTTP over loopback, and real ``modelport serve`` processes.

Every server binds 127.0.0.1 on an ephemeral port (``--port 0``) and announces its URL on stderr.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

DTYPES = tuple(
    "bool int8 int16 int32 int64 uint8 uint16 uint32 uint64 float16 float32 float64 string".split()  # noqa: SIM905
)
START_TIMEOUT_S = 60.0

# A python-flavor model whose behaviour the tests steer through the input values.
TRICKY_MODEL = """
import time

import numpy as np


class Model:
    def load(self, path):
        self.calls = 0

    def predict(self, inputs):
        x = inputs["x"]
        if (x < 0).any():
            raise ValueError("negative values are not allowed (secret-detail-42)")
        if (x == 777).any():
            raise SystemExit("the model called exit")
        if (x >= 1000).any():
            time.sleep(float(x.max()) / 1000.0)
        return {"y": x * 2}
"""


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def request(
    url: str,
    method: str = "GET",
    body: bytes | str | None = None,
    headers: Mapping[str, str] | None = None,
    timeout: float = 30.0,
) -> Response:
    """One HTTP request over a fresh loopback connection."""
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
    try:
        data = body.encode() if isinstance(body, str) else body
        path = parts.path + (f"?{parts.query}" if parts.query else "")
        conn.request(method, path or "/", body=data, headers=dict(headers or {}))
        resp = conn.getresponse()
        payload = resp.read()
        return Response(resp.status, {k.lower(): v for k, v in resp.getheaders()}, payload)
    finally:
        conn.close()


def post_json(url: str, value: Any, headers: Mapping[str, str] | None = None) -> Response:
    return request(
        url,
        "POST",
        json.dumps(value),
        {"Content-Type": "application/json", **(headers or {})},
    )


@dataclass
class Server:
    """A running ``modelport serve`` process."""

    proc: subprocess.Popen[bytes]
    url: str
    log_path: Path
    _log: Any = field(repr=False, default=None)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def worker_pids(self) -> list[int]:
        children = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children")
        try:
            return [int(p) for p in children.read_text().split()]
        except FileNotFoundError:
            return []

    def stop(self, timeout: float = 30.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        if self._log is not None:
            self._log.close()
            self._log = None
        return int(self.proc.returncode)


def gauge(server: Server, name: str) -> float:
    """A gauge of ``GET /metrics`` (summed over workers), e.g. ``modelport_requests_in_flight``.

    The in-flight gauge counts the ``/metrics`` request that reads it: 2 means one other request
    is being handled.
    """
    text = request(server.url + "/metrics").body.decode()
    match = re.search(rf"^{re.escape(name)} (\S+)$", text, re.MULTILINE)
    if match is None:
        raise AssertionError(f"no {name} in /metrics:\n{text}")
    return float(match.group(1))


def port_of(url: str) -> int:
    port = urlsplit(url).port
    assert port is not None, url
    return port


def _tcp_sockets() -> list[tuple[int, int, str, int]]:
    """This network namespace's IPv4 TCP sockets: (local port, remote port, state, unread bytes)."""
    sockets = []
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local, remote, state, queues = fields[1], fields[2], fields[3], fields[4]
        local_port, remote_port = int(local.split(":")[1], 16), int(remote.split(":")[1], 16)
        sockets.append((local_port, remote_port, state, int(queues.split(":")[1], 16)))
    return sockets


def listening(port: int) -> bool:
    """Whether a socket listens on TCP ``port`` (a socket state, from ``/proc/net/tcp``)."""
    return any(local == port and state == "0A" for local, _, state, _ in _tcp_sockets())


def unread_by_server(server_port: int, client_port: int) -> int | None:
    """Bytes the client on ``client_port`` sent that the server has not read yet.

    None while the kernel holds no server-side socket of that connection.
    """
    for local, remote, state, rx_queue in _tcp_sockets():
        if local == server_port and remote == client_port and state != "0A":
            return rx_queue
    return None


def wait_ready(url: str, proc: subprocess.Popen[bytes], timeout: float = START_TIMEOUT_S) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"server exited early with {proc.returncode}")
        try:
            if request(url + "/ping", timeout=5).status == 200:
                return
        except OSError:
            pass
        time.sleep(0.05)
    raise AssertionError("server did not become ready")


def start_server(
    package: Path,
    args: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
    log_dir: Path | None = None,
    ready: bool = True,
) -> Server:
    """Start ``modelport serve PACKAGE --port 0`` and wait for its URL (and readiness)."""
    log_dir = log_dir or package.parent
    log_path = log_dir / f"serve-{time.monotonic_ns()}.log"
    log = log_path.open("wb")
    full_env = {**os.environ, **(env or {})}
    full_env.pop("MODELPORT_HOST", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "modelport.cli.main", "serve", str(package), "--port", "0", *args],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=full_env,
    )
    server = Server(proc, "", log_path, log)
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        match = re.search(r"at (http://127\.0\.0\.1:\d+)", server.log())
        if match:
            server.url = match.group(1)
            break
        if proc.poll() is not None:
            server.stop()
            raise AssertionError(f"server exited with {proc.returncode}:\n{server.log()}")
        time.sleep(0.02)
    else:
        server.stop()
        raise AssertionError(f"server did not announce its URL:\n{server.log()}")
    if ready:
        try:
            wait_ready(server.url, proc)
        except AssertionError:
            server.stop()
            raise
    return server


# --- error answers, each protocol in its own shape -----------------------------------------------

#: MLflow's error_code of each status (the wire contract; written out here, not imported).
MLFLOW_CODES = {
    400: "BAD_REQUEST",
    404: "ENDPOINT_NOT_FOUND",
    405: "BAD_REQUEST",
    406: "BAD_REQUEST",
    408: "BAD_REQUEST",
    413: "REQUEST_LIMIT_EXCEEDED",
    414: "REQUEST_LIMIT_EXCEEDED",
    415: "BAD_REQUEST",
    431: "REQUEST_LIMIT_EXCEEDED",
    500: "INTERNAL_ERROR",
    503: "TEMPORARILY_UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}
#: Google's google.rpc.Code name of each status, as Vertex AI's errors carry it.
GOOGLE_CODES = {
    400: "INVALID_ARGUMENT",
    404: "NOT_FOUND",
    405: "UNIMPLEMENTED",
    406: "INVALID_ARGUMENT",
    408: "DEADLINE_EXCEEDED",
    413: "INVALID_ARGUMENT",
    414: "INVALID_ARGUMENT",
    415: "INVALID_ARGUMENT",
    431: "INVALID_ARGUMENT",
    500: "INTERNAL",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}
#: Vertex AI's routes of the test servers (AIP_HEALTH_ROUTE, AIP_PREDICT_ROUTE).
VERTEX_ROUTES = ("/vertex/health", "/vertex/predict")


def protocol_of(path: str, vertex: Sequence[str] = VERTEX_ROUTES) -> str:
    """The protocol whose error shape answers ``path``: mlflow, v2, vertex, azure or plain."""
    path = path.partition("?")[0]
    if path in vertex:
        return "vertex"
    if path in ("/invocations", "/ping", "/health", "/version"):
        return "mlflow"
    if path in ("/", "/score"):
        return "azure"
    if path == "/v2" or path.startswith("/v2/"):
        return "v2"
    return "plain"


def error_message(body: bytes | str | Any, protocol: str, status: int) -> str:
    """The message of an error answer, asserting the body is exactly ``protocol``'s shape.

    Shapes: mlflow ``{"error_code", "message"}``; vertex ``{"error": {"code", "message",
    "status"}}``; azure ``{"message"}``; v2 and plain ``{"error"}``.
    """
    value = json.loads(body) if isinstance(body, bytes | str) else body
    assert isinstance(value, dict), value
    if protocol == "mlflow":
        assert set(value) == {"error_code", "message"}, value
        assert value["error_code"] == MLFLOW_CODES[status], (status, value)
        message = value["message"]
    elif protocol == "vertex":
        assert set(value) == {"error"}, value
        error = value["error"]
        assert isinstance(error, dict) and set(error) == {"code", "message", "status"}, value
        assert error["code"] == status and type(error["code"]) is int, (status, value)
        assert error["status"] == GOOGLE_CODES[status], (status, value)
        message = error["message"]
    elif protocol == "azure":
        assert set(value) == {"message"}, value
        message = value["message"]
    else:
        assert protocol in ("v2", "plain"), protocol
        assert set(value) == {"error"}, value
        message = value["error"]
    assert isinstance(message, str) and message, value
    assert "Traceback" not in message
    return message
