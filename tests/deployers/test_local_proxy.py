"""The local target's proxy, run as its own process in front of small HTTP servers in this test.

The backends are plain ``http.server`` servers that say which one answered, so each test sees
exactly where the proxy sent a request.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from modelport.deployers.kit.state import write_json_atomic
from modelport.deployers.local.proxy import UNREACHABLE_BUDGET_S
from process_helpers import wait_for


class Backend:
    """An HTTP/1.1 server answering every request with JSON describing it and who answered."""

    def __init__(self, label: str, idle_timeout: float | None = None) -> None:
        backend = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            timeout = idle_timeout  # closes idle kept-alive connections, silently

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length).decode() if length else ""
                backend.requests += 1
                data = json.dumps(
                    {
                        "backend": label,
                        "method": self.command,
                        "path": self.path,
                        "body": body,
                        "x_test": self.headers.get("X-Test"),
                        "forwarded_for": self.headers.get("X-Forwarded-For"),
                        "transfer_encoding": self.headers.get("Transfer-Encoding"),
                    }
                ).encode()
                self.send_response(201 if self.command == "PUT" else 200)
                self.send_header("Content-Type", "application/json")
                self.send_header("X-Backend", label)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PUT = _answer

        class Server(ThreadingHTTPServer):
            def shutdown_request(self, request: Any) -> None:
                super().shutdown_request(request)
                backend.closed += 1

        self.requests = 0
        #: connections this backend has closed (after ``idle_timeout``, or when a client left)
        self.closed = 0
        self.server = Server(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def backends() -> Iterator[Callable[..., Backend]]:
    made: list[Backend] = []

    def make(label: str, **kwargs: Any) -> Backend:
        made.append(Backend(label, **kwargs))
        return made[-1]

    yield make
    for b in made:
        b.close()


class Proxy:
    """The proxy as a child process (``python -m modelport.deployers.local.proxy``)."""

    def __init__(self, directory: Path, upstream_port: int | None, port: int = 0) -> None:
        self.upstream = directory / "upstream.json"
        self.ready = directory / "ready.json"
        if upstream_port is not None:
            self.point_to(upstream_port)
        self.log = open(directory / "proxy.log", "wb")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "modelport.deployers.local.proxy",
                "--port",
                str(port),
                "--upstream",
                str(self.upstream),
                "--ready",
                str(self.ready),
            ],
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 30
        while not self.ready.exists():
            assert self.process.poll() is None or self.ready.exists(), "the proxy exited"
            assert time.monotonic() < deadline
            time.sleep(0.01)
        self.info = json.loads(self.ready.read_text())
        self.port = self.info.get("port")

    def point_to(self, port: int) -> None:
        write_json_atomic(self.upstream, {"port": port})

    def connect(self) -> http.client.HTTPConnection:
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        code = self.process.wait(timeout=15)
        self.log.close()
        return code


@pytest.fixture
def proxy(tmp_path: Path) -> Iterator[Callable[..., Proxy]]:
    made: list[Proxy] = []

    def make(upstream_port: int | None, port: int = 0) -> Proxy:
        made.append(Proxy(tmp_path, upstream_port, port))
        return made[-1]

    yield make
    for p in made:
        p.stop()


def _get(conn: http.client.HTTPConnection, path: str = "/x") -> tuple[int, dict[str, Any]]:
    conn.request("GET", path)
    response = conn.getresponse()
    return response.status, json.loads(response.read())


def test_forwards_method_path_body_and_headers(
    backends: Callable[..., Backend], proxy: Callable[..., Proxy]
) -> None:
    blue = backends("blue")
    p = proxy(blue.port)
    conn = p.connect()
    conn.request("PUT", "/a/b?q=1", b'{"k": 1}', {"X-Test": "yes", "Content-Type": "text/json"})
    response = conn.getresponse()
    data = json.loads(response.read())
    assert response.status == 201
    assert response.getheader("X-Backend") == "blue"
    assert data["method"] == "PUT"
    assert data["path"] == "/a/b?q=1"
    assert data["body"] == '{"k": 1}'
    assert data["x_test"] == "yes"
    assert data["forwarded_for"] == "127.0.0.1"
    conn.close()


def test_chunked_request_bodies_are_forwarded_whole(
    backends: Callable[..., Backend], proxy: Callable[..., Proxy]
) -> None:
    p = proxy(backends("blue").port)
    with socket.create_connection(("127.0.0.1", p.port), timeout=10) as s:
        s.sendall(
            b"POST /chunky HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
            b"Connection: close\r\n\r\n4\r\nabcd\r\n3;ext=1\r\nefg\r\n0\r\n\r\n"
        )
        raw = b""
        while chunk := s.recv(65536):
            raw += chunk
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200")
    data = json.loads(body)
    assert data["body"] == "abcdefg"
    assert data["transfer_encoding"] is None  # re-framed with a Content-Length


def test_switch_applies_to_the_next_request_on_the_same_connection(
    backends: Callable[..., Backend], proxy: Callable[..., Proxy]
) -> None:
    blue, green = backends("blue"), backends("green")
    p = proxy(blue.port)
    conn = p.connect()
    assert _get(conn)[1]["backend"] == "blue"
    p.point_to(green.port)
    assert _get(conn)[1]["backend"] == "green"  # same client connection, new server
    assert _get(conn)[1]["backend"] == "green"
    p.point_to(blue.port)
    assert _get(conn)[1]["backend"] == "blue"
    conn.close()


def test_a_server_closing_an_idle_connection_costs_no_request(
    backends: Callable[..., Backend], proxy: Callable[..., Proxy]
) -> None:
    # The backend drops kept-alive connections after 0.2 s idle without saying so; the proxy's
    # next request on its pooled connection fails before any answer and must be retried.
    blue = backends("blue", idle_timeout=0.2)
    p = proxy(blue.port)
    conn = p.connect()
    for answered in range(1, 5):
        status, data = _get(conn)
        assert (status, data["backend"]) == (200, "blue")
        wait_for(lambda n=answered: blue.closed >= n, "the backend to drop the idle connection")
    assert blue.requests == 4
    conn.close()


def test_no_server_listening_is_a_prompt_503(
    backends: Callable[..., Backend], proxy: Callable[..., Proxy]
) -> None:
    gone = backends("gone")
    port = gone.port
    gone.close()
    p = proxy(port)
    conn = p.connect()
    started = time.monotonic()
    conn.request("GET", "/ping")
    response = conn.getresponse()
    assert response.status == 503
    assert response.getheader("Retry-After") == "1"
    assert "not accepting" in json.loads(response.read())["error"]
    # Prompt: the proxy's retry budget and some slack, not the backend timeout.
    assert time.monotonic() - started < UNREACHABLE_BUDGET_S + 4
    # The same connection still works once a server is there again.
    p.point_to(backends("back").port)
    assert _get(conn)[1]["backend"] == "back"
    conn.close()


def test_requests_to_a_closed_server_are_retried_on_the_new_one(
    backends: Callable[..., Backend], proxy: Callable[..., Proxy]
) -> None:
    blue, green = backends("blue"), backends("green")
    p = proxy(blue.port)
    conn = p.connect()
    assert _get(conn)[1]["backend"] == "blue"
    conn.close()
    blue.close()  # new connections are refused; the switch comes while the proxy retries
    timer = threading.Timer(0.3, p.point_to, args=(green.port,))
    timer.start()
    conn = p.connect()
    status, data = _get(conn)
    timer.join()
    assert (status, data["backend"]) == (200, "green")
    conn.close()


def test_a_taken_port_is_reported_in_the_ready_file(
    backends: Callable[..., Backend], proxy: Callable[..., Proxy]
) -> None:
    blue = backends("blue")
    p = proxy(None, port=blue.port)  # the backend already listens there
    assert "error" in p.info
    assert f"cannot listen on 127.0.0.1:{blue.port}" in p.info["error"]
    assert p.process.wait(timeout=15) == 1


def test_sigterm_stops_it(backends: Callable[..., Backend], proxy: Callable[..., Proxy]) -> None:
    p = proxy(backends("blue").port)
    assert p.stop() == 0
    assert "proxy: stopped" in (p.upstream.parent / "proxy.log").read_text()


def test_it_exits_when_its_upstream_file_is_removed(
    backends: Callable[..., Backend], proxy: Callable[..., Proxy]
) -> None:
    p = proxy(backends("blue").port)
    os.unlink(p.upstream)
    assert p.process.wait(timeout=15) == 0
    assert "upstream file removed" in (p.upstream.parent / "proxy.log").read_text()
