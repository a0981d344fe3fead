"""Packages from storage and the registry: time to a first prediction, and a follower's reaction.

1. ``modelport serve REF --workers 1`` until its first ``POST /invocations`` answers 200, for a
   local path (the anchor), an ``s3://`` URI with an empty cache (download, verify, cache) and the
   same URI cached (one HEAD to the store, the object's hash checked). The store is moto's S3
   server on 127.0.0.1, so the network costs nothing: what is left is modelport's own work.
2. A local deployment following ``models:/NAME@champion`` on a real ``mlflow server``: the alias
   is moved back and forth between two versions while a client posts non-stop, and each move is
   timed until the client's answers come from the new version. Once with MLflow's webhook (the
   follower polls every 10 minutes, so the webhook is what wakes it), once polling every
   ``--poll`` seconds with no webhook.

The servers are the tests' own (``tests/storage_servers.py``). Figures: median (min-max).

    .venv/bin/python benchmarks/sources_bench.py [--rounds 5] [--moves 4] [--trees 200]
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))

from cloud_bench import summary  # noqa: E402

MODELPORT = str(Path(sys.executable).parent / "modelport")
SECRET = "bench-secret"


def _model(path: Path, trees: int, scale: float = 1.0) -> Path:
    """A RandomForest on 20,000 noisy rows (deep trees: a package of some MB), packed.

    ``scale`` scales its inputs: another version that answers differently.
    """
    import numpy as np
    from sklearn.datasets import make_classification
    from sklearn.ensemble import RandomForestClassifier

    import modelport

    x, y = make_classification(
        n_samples=20_000, n_features=30, n_informative=10, flip_y=0.2, random_state=0
    )
    x = x.astype(np.float32) * np.float32(scale)
    model = RandomForestClassifier(n_estimators=trees, random_state=0, n_jobs=-1).fit(x, y)
    modelport.pack(model, path, example=x[:3]).close()
    return path


def _first_prediction(ref: str, env: dict[str, str], body: bytes) -> float:
    """Seconds from starting ``modelport serve ref`` to its first 200 on /invocations."""
    started = time.perf_counter()
    proc = subprocess.Popen(
        [MODELPORT, "serve", ref, "--port", "0", "--workers", "1"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert proc.stderr is not None
    try:
        port = None
        for line in proc.stderr:
            found = re.search(r"http://127\.0\.0\.1:(\d+)", line)
            if found:
                port = int(found.group(1))
                break
        if port is None:
            raise RuntimeError(f"modelport serve {ref} exited with {proc.wait()}")
        while True:
            with contextlib.suppress(OSError, http.client.HTTPException):
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
                conn.request("POST", "/invocations", body, {"Content-Type": "application/json"})
                if conn.getresponse().status == 200:
                    return time.perf_counter() - started
                conn.close()
            if time.perf_counter() - started > 120:
                raise RuntimeError(f"no prediction from {ref} in 120 s")
            time.sleep(0.005)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
        proc.stderr.close()


def bench_serve(rounds: int, trees: int, work: Path) -> dict[str, list[float]]:
    from storage_servers import s3_server

    package = _model(work / "rf.mport", trees)
    body = json.dumps({"inputs": _example(package)}).encode()
    samples: dict[str, list[float]] = {}
    with s3_server() as s3:
        s3.make_bucket("models")
        import boto3

        boto3.client("s3", **s3.boto3_kwargs()).upload_file(str(package), "models", "rf.mport")
        uri = "s3://models/rf.mport"
        base = {**os.environ, "MODELPORT_STORAGE_OPTIONS": json.dumps({"s3": s3.storage_options})}
        size = package.stat().st_size
        print(f"package: RandomForest, {trees} trees, {size / 1e6:.2f} MB archive\n")
        for i in range(rounds):
            home = work / f"home-{i}"
            env = {**base, "MODELPORT_HOME": str(home)}
            samples.setdefault("serve a local path", []).append(
                _first_prediction(str(package), env, body)
            )
            samples.setdefault("serve s3:// cold (empty cache)", []).append(
                _first_prediction(uri, env, body)
            )
            samples.setdefault("serve s3:// cached", []).append(_first_prediction(uri, env, body))
    return samples


def _example(package: Path) -> Any:
    import modelport

    with modelport.load(package) as loaded:
        example = loaded.example()
        assert example is not None
        return next(iter(example.values())).tolist()


class _Client:
    """One client posting non-stop; remembers its last answer and counts failures."""

    def __init__(self, port: int, body: bytes) -> None:
        self.port, self.body = port, body
        self.last: str | None = None
        self.failures = 0
        self.sent = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        while not self.stop.is_set():
            try:
                conn.request(
                    "POST", "/invocations", self.body, {"Content-Type": "application/json"}
                )
                response = conn.getresponse()
                data = response.read()
                if response.status == 200:
                    self.last = data.decode()
                else:
                    self.failures += 1
            except (OSError, http.client.HTTPException):
                self.failures += 1
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
            self.sent += 1


@contextlib.contextmanager
def _follower(args: list[str], env: dict[str, str]) -> Iterator[list[dict[str, Any]]]:
    proc = subprocess.Popen(
        [MODELPORT, *args, "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=env,
    )
    events: list[dict[str, Any]] = []
    assert proc.stdout is not None
    reader = threading.Thread(
        target=lambda: events.extend(json.loads(x) for x in proc.stdout if x.strip()),  # type: ignore[union-attr]
        daemon=True,
    )
    reader.start()
    try:
        yield events
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
        reader.join(timeout=10)
        proc.stdout.close()


def _wait(condition: Any, what: str, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(0.01)


def bench_follow(moves: int, poll: float, trees: int, work: Path) -> dict[str, list[float]]:
    from mlflow import MlflowClient
    from mlflow.entities.webhook import WebhookEvent

    import modelport
    from modelport.deployers.local import LocalConfig, LocalDeployer
    from storage_servers import free_port, mlflow_server, register_version

    samples: dict[str, list[float]] = {}
    failures = 0
    with mlflow_server(work / "mlflow") as registry:
        env = {
            **os.environ,
            **registry.env,
            "MODELPORT_HOME": str(work / "follow-home"),
            "MODELPORT_WEBHOOK_SECRET": SECRET,
        }
        os.environ.update(registry.env)
        client = MlflowClient(registry.tracking_uri, registry.tracking_uri)
        versions = []
        for scale in (1.0, 1.5):
            directory = work / f"v{scale}"
            modelport.pack(_model(work / f"v{scale}.mport", trees, scale), directory).close()
            versions.append(register_version(client, "bench", directory))
        client.set_registered_model_alias("bench", "champion", versions[0])
        body = json.dumps({"inputs": _example(work / "v1.0.mport")}).encode()
        local = LocalDeployer(LocalConfig(home=work / "follow-home", workers=1))
        port = free_port()
        webhook = client.create_webhook(
            name="bench",
            url=f"http://127.0.0.1:{port}/",
            events=[WebhookEvent("model_version_alias", "created")],
            secret=SECRET,
        )
        uri = "models:/bench@champion"
        deploy = ["deploy", uri, "-t", "local", "-n", "bench", "-C", "workers=1"]
        webhook_mode = ["--poll-interval", "600", "--webhook-port", str(port)]
        modes = [
            ("alias moved -> served (webhook)", webhook_mode),
            (f"alias moved -> served (poll {poll:g} s)", ["--poll-interval", str(poll)]),
        ]
        try:
            for index, (label, options) in enumerate(modes):
                args = (
                    [*deploy, "--follow", *options]
                    if index == 0
                    else ["deployments", "follow", uri, "-t", "local", "-n", "bench", *options]
                )
                with _follower(args, env) as events:
                    _wait(lambda: any(e.get("kind") == "unchanged" for e in events), "following")
                    endpoint = local.get("bench").endpoint
                    assert endpoint is not None
                    user = _Client(int(endpoint.rsplit(":", 1)[1]), body)
                    user.thread.start()
                    _wait(lambda: user.last is not None, "a first answer")  # noqa: B023
                    current = 0
                    for _ in range(moves):
                        before = user.last
                        current = 1 - current
                        started = time.perf_counter()
                        client.set_registered_model_alias("bench", "champion", versions[current])
                        _wait(lambda: user.last != before, "the new version's answer")  # noqa: B023
                        samples.setdefault(label, []).append(time.perf_counter() - started)
                    user.stop.set()
                    user.thread.join(timeout=30)
                    failures += user.failures
        finally:
            client.delete_webhook(webhook.webhook_id)
            for deployment in local.list():
                local.delete(deployment.name)
    print(f"follower: {failures} failed requests while the alias moved")
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--rounds", type=int, default=5, help="serve runs per row")
    parser.add_argument(
        "--moves", type=int, default=4, help="alias moves per follower mode (even: it ends on v1)"
    )
    parser.add_argument("--poll", type=float, default=2.0, help="the polling mode's interval")
    parser.add_argument("--trees", type=int, default=50, help="the RandomForest's trees")
    parser.add_argument("--skip-follow", action="store_true", help="only the serve rows")
    args = parser.parse_args()
    if args.moves % 2:
        parser.error("--moves must be even")
    with tempfile.TemporaryDirectory(prefix="sources-bench-") as tmp:
        work = Path(tmp)
        samples = bench_serve(args.rounds, args.trees, work)
        if not args.skip_follow:
            samples.update(bench_follow(args.moves, args.poll, args.trees, work))
    width = max(len(k) for k in samples)
    print(f"\n{'':<{width}}  {'median (min-max)':>24}")
    for label, values in samples.items():
        print(f"{label:<{width}}  {summary(values):>24}")


if __name__ == "__main__":
    main()
