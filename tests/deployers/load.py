"""Client threads posting to a deployment's endpoint non-stop, for updates under load.

Imported by module name (``from load import Load``): ``tests/deployers`` is on ``sys.path``.
"""

from __future__ import annotations

import http.client
import json
import threading
import time
from collections import Counter
from typing import Any

#: What the local target's tests post (a ``Y = scale * X`` package).
PAYLOAD = {"inputs": {"X": [[1.0, 2.0]]}}


def _post(conn: http.client.HTTPConnection, body: bytes) -> tuple[int, bytes]:
    conn.request("POST", "/invocations", body, {"Content-Type": "application/json"})
    response = conn.getresponse()
    return response.status, response.read()


class Load:
    """Client threads posting to the endpoint non-stop; every answer is checked and counted.

    Half of the threads keep one connection alive across requests (the hard case for a switch:
    the connection outlives the server that first answered on it), half open one per request.
    """

    def __init__(self, endpoint: str, threads: int = 4, payload: Any = None) -> None:
        self.body = json.dumps(PAYLOAD if payload is None else payload).encode()
        self.port = int(endpoint.rsplit(":", 1)[1])
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.sent = 0
        self.failures: list[str] = []
        self.answers: Counter[str] = Counter()
        self.last: dict[int, str] = {}
        self.threads = [
            threading.Thread(target=self._run, args=(i, i % 2 == 0), daemon=True)
            for i in range(threads)
        ]

    def _run(self, index: int, keep_alive: bool) -> None:
        body = self.body
        conn = None
        while not self.stop.is_set():
            try:
                if conn is None:
                    conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
                status, data = _post(conn, body)
                if status == 200:
                    outcome = str(json.loads(data)["predictions"])
                else:
                    outcome = f"HTTP {status}: {data[:200]!r}"
            except (OSError, http.client.HTTPException) as exc:
                status, outcome = 0, f"{type(exc).__name__}: {exc}"
                conn = None
            if not keep_alive and conn is not None:
                conn.close()
                conn = None
            with self.lock:
                self.sent += 1
                if status == 200:
                    self.answers[outcome] += 1
                    self.last[index] = outcome
                else:
                    self.failures.append(outcome)
        if conn is not None:
            conn.close()

    def __enter__(self) -> Load:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(timeout=60)
        assert not any(t.is_alive() for t in self.threads)

    def wait_for(self, count: int, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        start = self.sent
        while self.sent - start < count:
            assert time.monotonic() < deadline, f"only {self.sent - start} requests in {timeout} s"
            time.sleep(0.01)
