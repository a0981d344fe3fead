"""A bounded loopback soak: no request lost, and the worker's memory does not grow."""

from __future__ import annotations

import http.client
import json
import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from serving_support import Server, request, start_server

from process_helpers import wait_for

SOAK_S = 12.0
CLIENTS = 8
#: Answers every client has had before the worker counts as warm (its RSS is measured then).
WARMUP_ANSWERS = 25
#: The worker's RSS may not grow by more than this between the end of warm-up and the end.
RSS_GROWTH_BOUND_KB = 12 * 1024


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def served(server: Server) -> float:
    text = request(server.url + "/metrics").body.decode()
    match = re.search(
        r'^modelport_requests_total\{route="/invocations",status="200"\} (\S+)$', text, re.M
    )
    return float(match.group(1)) if match else 0.0


@pytest.fixture
def server(packages: dict[str, Path], tmp_path: Path) -> Iterator[Server]:
    server = start_server(packages["iris"], ["--workers", "1"], log_dir=tmp_path)
    yield server
    assert server.stop() == 0
    # Workers exit cleanly after load (ONNX Runtime used to crash at interpreter exit).
    assert "was sent" not in server.log(), server.log()


def test_soak(server: Server, iris_x: np.ndarray) -> None:
    (worker,) = server.worker_pids()
    port = int(server.url.rsplit(":", 1)[1])
    bodies = [
        json.dumps({"inputs": iris_x[i : i + 1 + i % 5].tolist()}).encode() for i in range(50)
    ]
    sent = [0] * CLIENTS
    failures: list[str] = []
    stop = threading.Event()
    rss: dict[str, int] = {}

    def client(n: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        try:
            i = n
            while not stop.is_set():
                body = bodies[i % len(bodies)]
                conn.request("POST", "/invocations", body, {"Content-Type": "application/json"})
                resp = conn.getresponse()
                payload = resp.read()
                if resp.status != 200:
                    failures.append(f"{resp.status}: {payload[:200]!r}")
                    return
                rows = len(json.loads(payload)["predictions"]["label"])
                if rows != 1 + (i % len(bodies)) % 5:
                    failures.append("wrong number of rows")
                    return
                sent[n] += 1
                i += CLIENTS
        except OSError as exc:
            failures.append(f"{type(exc).__name__}: {exc}")
        finally:
            conn.close()

    before = served(server)
    threads = [threading.Thread(target=client, args=(n,)) for n in range(CLIENTS)]
    for t in threads:
        t.start()
    wait_for(
        lambda: bool(failures) or min(sent) >= WARMUP_ANSWERS,
        f"every client to have {WARMUP_ANSWERS} answers (warm-up)",
        timeout=60,
        log=server.log,
    )
    assert not failures, failures[:5]
    rss["warm"] = rss_kb(worker)
    time.sleep(SOAK_S)  # the soak itself: a fixed length of load, not a wait for an event
    rss["end"] = rss_kb(worker)
    stop.set()
    for t in threads:
        t.join(60)
    assert not failures, failures[:5]
    total = sum(sent)
    assert total > 500, f"only {total} requests (warm-up and {SOAK_S:g} s of soak)"
    # The server answered exactly what the clients sent: nothing lost, nothing doubled.
    assert served(server) - before == total
    growth = rss["end"] - rss["warm"]
    assert growth < RSS_GROWTH_BOUND_KB, f"RSS grew by {growth} kB over {total} requests"
    assert server.worker_pids() == [worker], "the worker was restarted during the soak"
