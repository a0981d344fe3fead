"""A deployment that follows an MLflow registry alias, end to end with real processes.

A real ``mlflow server`` (the session's) holds three versions of a model; ``modelport deploy
models:/NAME@champion -t local --follow`` serves the alias's version and listens for MLflow's
webhooks, which the server itself delivers (HMAC-signed) when the alias moves. Clients post to
the deployment all along: none may fail.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import http.client
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
import uuid
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import numpy as np
import pytest
from load import Load

from modelport.deployers.follow import Follower, WebhookReceiver, check_followable
from modelport.deployers.local import LocalConfig, LocalDeployer
from modelport.errors import UsageError
from process_helpers import wait_for
from storage_servers import MlflowServer, free_port, register_version

# One worker holds the session's `mlflow server` (when these tests run on several workers).
pytestmark = pytest.mark.xdist_group("mlflow")


MODELPORT = str(Path(sys.executable).parent / "modelport")
MODEL = "follow-churn"
SECRET = "follow-secret"
PAYLOAD = {"inputs": [[1.0, 0.0, 0.0]]}
V1, V2 = str([[0.0, 1.0]]), str([[0.0, 2.0]])


def _scaled(model: Any, factor: float) -> Any:
    from onnx import numpy_helper

    for init in model.graph.initializer:
        scaled = (numpy_helper.to_array(init) * np.float32(factor)).astype(np.float32)
        init.CopyFrom(numpy_helper.from_array(scaled, init.name))
    return model


def _fails_on_one_row() -> Any:
    """y = reshape(x, [2, 3]) @ W: declared [-1, 3] -> [-1, 2], but only two rows work."""
    from onnx import TensorProto, helper, numpy_helper

    weights = numpy_helper.from_array(np.arange(6, dtype=np.float32).reshape(3, 2), "w")
    shape = numpy_helper.from_array(np.array([2, 3], dtype=np.int64), "shape")
    graph = helper.make_graph(
        [
            helper.make_node("Reshape", ["x", "shape"], ["r"]),
            helper.make_node("MatMul", ["r", "w"], ["y"]),
        ],
        "fails-on-one-row",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 2])],
        [weights, shape],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)


@pytest.fixture(scope="module")
def versions(
    mlflow_registry: MlflowServer, tmp_path_factory: pytest.TempPathFactory, onnx_graphs: Any
) -> dict[str, str]:
    """Versions 1 (answers V1), 2 (V2) and 3 (its example fails); champion -> 1."""
    import mlflow.onnx
    from mlflow import MlflowClient

    root = tmp_path_factory.mktemp("follow-models")
    example = np.array([[1.0, 2.0, 3.0]], np.float32)
    models = {
        "1": _scaled(onnx_graphs["tiny"](), 1.0),
        "2": _scaled(onnx_graphs["tiny"](), 2.0),
        "3": _fails_on_one_row(),
    }
    client = MlflowClient(mlflow_registry.tracking_uri, mlflow_registry.tracking_uri)
    registered = {}
    for key, model in models.items():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # MLflow's chatter; version 3 fails its inference
            mlflow.onnx.save_model(model, root / key, input_example=example)
        registered[key] = register_version(client, MODEL, root / key)
    client.set_registered_model_alias(MODEL, "champion", registered["1"])
    return registered


class Events:
    """The follower's JSON lines, read as they come, waited for with a deadline."""

    def __init__(self, stream: IO[str]) -> None:
        self.seen: list[dict[str, Any]] = []
        self._queue: queue.Queue[dict[str, Any]] = queue.Queue()
        self._thread = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self._thread.start()

    def _read(self, stream: IO[str]) -> None:
        for line in stream:
            if line.strip():
                self._queue.put(json.loads(line))

    def next(self, kind: str, timeout: float = 60.0, **fields: Any) -> dict[str, Any]:
        """The next event of ``kind`` (with ``fields``); the ones before it are kept in seen."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            assert left > 0, f"no {kind} event {fields} in {timeout} s; saw {self.seen}"
            try:
                event = self._queue.get(timeout=left)
            except queue.Empty:
                continue
            self.seen.append(event)
            if event.get("kind") == kind and all(event.get(k) == v for k, v in fields.items()):
                return event


def _sign(
    body: bytes, secret: str = SECRET, delivery: str | None = None, stamp: int | None = None
) -> dict[str, str]:
    delivery = delivery or str(uuid.uuid4())
    stamp = str(int(time.time()) if stamp is None else stamp)
    mac = hmac.new(secret.encode(), f"{delivery}.{stamp}.".encode() + body, hashlib.sha256)
    return {
        "Content-Type": "application/json",
        "X-MLflow-Delivery-Id": delivery,
        "X-MLflow-Timestamp": stamp,
        "X-MLflow-Signature": "v1," + base64.b64encode(mac.digest()).decode(),
    }


def _post(port: int, body: bytes, headers: dict[str, str]) -> tuple[int, dict[str, Any]]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("POST", "/", body, headers)
        response = conn.getresponse()
        return response.status, json.loads(response.read())
    finally:
        conn.close()


@pytest.fixture
def env(
    mlflow_registry: MlflowServer, home: Path, monkeypatch: pytest.MonkeyPatch
) -> dict[str, str]:
    for key, value in mlflow_registry.env.items():
        monkeypatch.setenv(key, value)
    return {**os.environ, "MODELPORT_WEBHOOK_SECRET": SECRET}


@pytest.fixture
def follower_processes() -> Iterator[list[subprocess.Popen[str]]]:
    started: list[subprocess.Popen[str]] = []
    yield started
    for proc in started:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=30)
        if proc.stdout is not None:
            proc.stdout.close()


def _follow_process(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[str]:
    """The CLI with ``--json``: events on stdout (read by :class:`Events`), stderr to ``log``."""
    with log.open("ab") as stderr:
        return subprocess.Popen(
            [MODELPORT, *args, "--json"], stdout=subprocess.PIPE, stderr=stderr, text=True, env=env
        )


def test_the_deployment_follows_the_alias(
    versions: dict[str, str],
    env: dict[str, str],
    home: Path,
    follower_processes: list[subprocess.Popen[str]],
) -> None:
    from mlflow import MlflowClient
    from mlflow.entities.webhook import WebhookEvent

    client = MlflowClient()
    port = free_port()
    local = LocalDeployer(LocalConfig(home=home, workers=1, startup_timeout=60, stop_timeout=10))
    uri = f"models:/{MODEL}@champion"
    deploy = _follow_process(
        [
            "deploy",
            uri,
            "-t",
            "local",
            "-n",
            "churn",
            "-C",
            "workers=1",
            "--follow",
            "--poll-interval",
            "600",
            "--webhook-port",
            str(port),
        ],
        env,
        home.parent / "deploy.log",
    )
    follower_processes.append(deploy)
    assert deploy.stdout is not None
    events = Events(deploy.stdout)
    webhook = None
    try:
        created = events.next("created", timeout=120)
        endpoint = created["deployment"]["endpoint"]
        events.next("following")
        events.next("unchanged", version=versions["1"])  # what was just deployed
        webhook = client.create_webhook(
            name="follow-test",
            url=f"http://127.0.0.1:{port}/",
            events=[WebhookEvent("model_version_alias", "created")],
            secret=SECRET,
        )
        with Load(endpoint, payload=PAYLOAD) as load:
            load.wait_for(100)
            # The alias moves: MLflow's webhook wakes the follower (the poll is 10 minutes).
            moved = time.monotonic()
            client.set_registered_model_alias(MODEL, "champion", versions["2"])
            events.next("webhook", version=versions["2"])
            deployed = events.next("deployed", version=versions["2"], timeout=120)
            wait_for(lambda: set(load.last.values()) == {V2}, "every client to get version 2")
            latency = time.monotonic() - moved
            load.wait_for(100)
            # A version whose example fails is not deployed; version 2 keeps serving.
            client.set_registered_model_alias(MODEL, "champion", versions["3"])
            rejected = events.next("rejected", version=versions["3"], timeout=120)
            load.wait_for(100)
        print(
            f"\nalias moved -> every client on the new version: {latency:.2f} s; "
            f"{load.sent} requests, {len(load.failures)} failed"
        )
        assert load.failures == [], load.failures[:5]
        assert set(load.answers) == {V1, V2}
        assert set(load.last.values()) == {V2}
        assert "example" in rejected["message"] or "cannot be packed" in rejected["message"]
        assert local.get("churn").package_digest == deployed["digest"]

        # A delivery without the secret is refused, and says so.
        body = json.dumps(
            {
                "entity": "model_version_alias",
                "action": "created",
                "data": {"name": MODEL, "alias": "champion", "version": "1"},
            }
        ).encode()
        status, answer = _post(port, body, _sign(body, secret="wrong"))
        assert (status, answer) == (401, {"error": "bad signature"})
        events.next("webhook-refused", message="bad signature")
        replayed = _sign(body)
        assert _post(port, body, replayed)[0] == 200
        assert _post(port, body, replayed)[0] == 409  # the same delivery twice
        assert _post(port, body, {"Content-Type": "application/json"})[0] == 401

        # One follower per deployment.
        second = subprocess.run(
            [MODELPORT, "deployments", "follow", uri, "-t", "local", "-n", "churn"],
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
            check=False,
        )
        assert second.returncode == 1
        assert "is already followed (by pid" in second.stderr

        # SIGTERM stops it promptly; the deployment keeps serving.
        deploy.send_signal(signal.SIGTERM)
        assert deploy.wait(timeout=30) == 0
        events.next("stopped")
        before = local.get("churn")

        # Restarted on an alias back at version 2: nothing is redeployed.
        client.set_registered_model_alias(MODEL, "champion", versions["2"])
        again = _follow_process(
            ["deployments", "follow", uri, "-t", "local", "-n", "churn", "--poll-interval", "600"],
            env,
            home.parent / "follow.log",
        )
        follower_processes.append(again)
        assert again.stdout is not None
        restarted = Events(again.stdout)
        restarted.next("following")
        restarted.next("unchanged", version=versions["2"], timeout=120)
        again.send_signal(signal.SIGTERM)
        assert again.wait(timeout=30) == 0
        after = local.get("churn")
        assert (after.package_digest, after.updated_at) == (
            before.package_digest,
            before.updated_at,
        )
    finally:
        if webhook is not None:
            client.delete_webhook(webhook.webhook_id)
        client.set_registered_model_alias(MODEL, "champion", versions["1"])
        for deployment in local.list():
            local.delete(deployment.name)


def test_only_moving_references_can_be_followed() -> None:
    assert check_followable("models:/churn@champion") == ("churn", "champion")
    assert check_followable("models:/churn/latest") == ("churn", None)
    for fixed in ("models:/churn/3", "s3://b/k.mport", "runs:/abc/model", "x.mport"):
        with pytest.raises(UsageError, match="only a registry alias"):
            check_followable(fixed)


def test_a_webhook_endpoint_needs_a_secret() -> None:
    with pytest.raises(UsageError, match="needs the webhook's secret") as info:
        WebhookReceiver("", lambda *a: None, lambda reason: None)
    assert "MODELPORT_WEBHOOK_SECRET" in (info.value.hint or "")


def test_webhook_deliveries_are_checked_before_they_are_believed() -> None:
    moved: list[tuple[str, str, str]] = []
    refused: list[str] = []
    receiver = WebhookReceiver(SECRET, lambda *a: moved.append(a), refused.append)
    receiver.start()
    port = receiver.address[1]
    try:
        event = {
            "entity": "model_version_alias",
            "action": "created",
            "data": {"name": "m", "alias": "a", "version": "4"},
        }
        body = json.dumps(event).encode()
        assert _post(port, body, _sign(body)) == (200, {"accepted": True})
        assert moved == [("m", "a", "4")]
        other = json.dumps({**event, "entity": "model_version", "action": "created"}).encode()
        assert _post(port, other, _sign(other))[1]["accepted"] is False
        stale = _sign(body, stamp=int(time.time()) - 3600)
        status, answer = _post(port, body, stale)
        assert status == 401
        assert "a replay?" in answer["error"]
        junk = b"not json"
        assert _post(port, junk, _sign(junk))[0] == 400
        assert _post(port, b"x" * 70_000, _sign(b"x" * 70_000))[0] == 413
        assert len(moved) == 1
        assert len(refused) == 3
    finally:
        receiver.close()


def test_a_follower_of_a_missing_deployment_is_an_error(
    versions: dict[str, str], env: dict[str, str], home: Path
) -> None:
    result = subprocess.run(
        [
            MODELPORT,
            "deployments",
            "follow",
            f"models:/{MODEL}@champion",
            "-t",
            "local",
            "-n",
            "nobody",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert result.returncode == 1
    assert "nobody" in result.stderr
    assert "Traceback" not in result.stderr


def test_the_follower_reports_an_unknown_alias_and_keeps_going(
    versions: dict[str, str], env: dict[str, str], home: Path
) -> None:
    local = LocalDeployer(LocalConfig(home=home, workers=1))
    seen: list[Any] = []
    follower = Follower(local, "never-created", f"models:/{MODEL}@nobody", report=seen.append)
    event = follower.check()
    assert event.kind == "registry-error"
    assert "has no alias 'nobody'" in event.message
