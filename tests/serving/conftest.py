"""Fixtures for the server's tests: real packages, and real ``modelport serve`` processes.

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
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import numpy as np
import pytest

import modelport

DTYPES = (
    "bool int8 int16 int32 int64 uint8 uint16 uint32 uint64 float16 float32 float64 string".split()
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


@pytest.fixture(scope="session")
def packages(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Real packages: a scikit-learn classifier, an all-dtypes ONNX model, a python model."""
    from onnx import TensorProto, helper
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    root = tmp_path_factory.mktemp("packages")
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 4)).astype(np.float32)
    y = (x[:, 0] > 0).astype(int) + (x[:, 1] > 0.5).astype(int)
    classifier = make_pipeline(StandardScaler(), LogisticRegression()).fit(x, y)
    modelport.pack(classifier, root / "iris.mport", name="iris", version="3", example=x[:20])

    onnx_types = {
        "bool": TensorProto.BOOL,
        "int8": TensorProto.INT8,
        "int16": TensorProto.INT16,
        "int32": TensorProto.INT32,
        "int64": TensorProto.INT64,
        "uint8": TensorProto.UINT8,
        "uint16": TensorProto.UINT16,
        "uint32": TensorProto.UINT32,
        "uint64": TensorProto.UINT64,
        "float16": TensorProto.FLOAT16,
        "float32": TensorProto.FLOAT,
        "float64": TensorProto.DOUBLE,
        "string": TensorProto.STRING,
    }
    graph = helper.make_graph(
        [helper.make_node("Identity", [f"x_{d}"], [f"y_{d}"]) for d in DTYPES],
        "dtypes",
        [helper.make_tensor_value_info(f"x_{d}", onnx_types[d], ["n", 2]) for d in DTYPES],
        [helper.make_tensor_value_info(f"y_{d}", onnx_types[d], ["n", 2]) for d in DTYPES],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    modelport.pack(model, root / "dtypes", name="dtypes")

    # Row sums over a variable width: requests of different widths must never be merged.
    sums = helper.make_graph(
        [helper.make_node("ReduceSum", ["x", "axes"], ["s"], keepdims=0)],
        "sums",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", "w"])],
        [helper.make_tensor_value_info("s", TensorProto.FLOAT, ["n"])],
        initializer=[helper.make_tensor("axes", TensorProto.INT64, [1], [1])],
    )
    sums_model = helper.make_model(sums, opset_imports=[helper.make_opsetid("", 17)])
    sums_model.ir_version = 8
    modelport.pack(sums_model, root / "sums.mport", name="sums")

    code = root / "tricky.py"
    code.write_text(TRICKY_MODEL)
    modelport.pack(code, root / "tricky.mport", name="tricky", example={"x": np.ones((2, 3))})
    return {
        "iris": root / "iris.mport",
        "dtypes": root / "dtypes",
        "sums": root / "sums.mport",
        "tricky": root / "tricky.mport",
        "iris_x": _save(root / "iris_x.npy", x),
    }


def _save(path: Path, array: np.ndarray) -> Path:
    np.save(path, array)
    return path


@pytest.fixture(scope="module")
def iris_server(
    packages: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    """The classifier, served with two workers and Vertex AI's route variables set."""
    server = start_server(
        packages["iris"],
        ["--workers", "2", "--max-body-mb", "0.5"],
        env={"AIP_HEALTH_ROUTE": "/vertex/health", "AIP_PREDICT_ROUTE": "/vertex/predict"},
        log_dir=tmp_path_factory.mktemp("iris-log"),
    )
    yield server
    assert server.stop() == 0, server.log()


@pytest.fixture(scope="module")
def dtypes_server(
    packages: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    server = start_server(
        packages["dtypes"], ["--workers", "1"], log_dir=tmp_path_factory.mktemp("dtypes-log")
    )
    yield server
    assert server.stop() == 0, server.log()


@pytest.fixture(scope="module")
def iris_x(packages: dict[str, Path]) -> np.ndarray:
    return np.load(packages["iris_x"])
