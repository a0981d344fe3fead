"""The server's own gunicorn worker, over raw sockets: HTTP/1.1 framing, limits, concurrency.

The routes themselves are tested in test_http.py; here the bytes on the wire are the subject:
keep-alive, pipelining (past the read-ahead bound), HTTP/1.0, malformed requests and limits,
``Expect: 100-continue``, HEAD, slow and vanishing clients, and stopping with idle connections.
"""

from __future__ import annotations

import json
import select
import socket
import struct
import threading
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import BinaryIO

import pytest
from serving_support import (
    Response,
    Server,
    error_message,
    gauge,
    port_of,
    post_json,
    request,
    start_server,
    unread_by_server,
)

from modelport.serving.config import MAX_GRACEFUL_S
from process_helpers import wait_for


class Client:
    """One raw TCP connection to the server."""

    def __init__(self, server: Server, timeout: float = 30.0) -> None:
        host, port = server.url.rsplit("/", 1)[1].split(":")
        self.sock = socket.create_connection((host, int(port)), timeout=timeout)
        self.reader: BinaryIO = self.sock.makefile("rb")

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def send_until_refused(self, parts: Iterable[bytes]) -> None:
        """Send every part, stopping quietly if the server answers and closes meanwhile."""
        try:
            for part in parts:
                self.sock.sendall(part)
        except (BrokenPipeError, ConnectionResetError):
            pass

    def read_answer(self, head_request: bool = False) -> Response:
        status_line = self.reader.readline()
        assert status_line.startswith(b"HTTP/1.1 "), status_line
        headers: dict[str, str] = {}
        while True:
            line = self.reader.readline()
            assert line, "connection closed inside the headers"
            if line == b"\r\n":
                break
            name, _, value = line.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
        length = int(headers.get("content-length", "0"))
        body = b"" if head_request else self.reader.read(length)
        return Response(int(status_line.split()[1]), headers, body)

    def closed_by_server(self) -> bool:
        """True when the server closed its side (the next read is the end of the stream)."""
        return self.reader.read(1) == b""

    def close(self) -> None:
        self.reader.close()
        self.sock.close()


def invocation(rows: list[list[float]], extra: str = "") -> bytes:
    body = json.dumps({"inputs": rows}).encode()
    return (
        f"POST /invocations HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n{extra}\r\n"
    ).encode() + body


@pytest.fixture(scope="module")
def server(packages: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """The classifier on one worker, with a 0.5 MB body limit."""
    served = start_server(
        packages["iris"],
        ["--workers", "1", "--max-body-mb", "0.5"],
        log_dir=tmp_path_factory.mktemp("worker-log"),
    )
    yield served
    assert served.stop() == 0, served.log()
    assert "Traceback" not in served.log()


@pytest.fixture
def client(server: Server) -> Iterator[Client]:
    opened = Client(server)
    yield opened
    opened.close()


def test_keep_alive_answers_many_requests_on_one_connection(client: Client) -> None:
    for i in range(5):
        client.send(invocation([[0.1 * i, 0.2, 0.3, 0.4]]))
        answer = client.read_answer()
        assert answer.status == 200, answer.body
        assert answer.headers["connection"] == "keep-alive"
        assert answer.headers["content-type"] == "application/json"
        assert "date" in answer.headers
        assert set(answer.json()["predictions"]) == {"label", "probabilities"}


def test_pipelined_requests_are_answered_in_order_past_the_read_ahead_bound(
    client: Client, server: Server
) -> None:
    # More requests than the worker reads ahead on one connection (it pauses reading, then
    # resumes), mixing routes, statuses and inputs so any reordering shows.
    rows = [[float(i), -float(i), 0.5, 0.25] for i in range(40)]
    expected = [
        post_json(server.url + "/invocations", {"inputs": [row]}).json()["predictions"]
        for row in rows
    ]
    requests = []
    for row in rows:
        requests.append(invocation([row]))
        requests.append(b"GET /nope HTTP/1.1\r\nHost: t\r\n\r\n")
    client.send(b"".join(requests))
    for i, row in enumerate(rows):
        answer = client.read_answer()
        assert answer.status == 200, (i, row, answer.body)
        assert answer.json()["predictions"] == expected[i]
        missing = client.read_answer()
        assert missing.status == 404
        assert missing.json() == {"error": "no such route"}


def test_http_1_0_and_connection_close_end_the_connection_after_the_answer(
    server: Server,
) -> None:
    for raw in (
        b"GET /ping HTTP/1.0\r\n\r\n",
        b"GET /ping HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    ):
        client = Client(server)
        try:
            client.send(raw)
            answer = client.read_answer()
            assert answer.status == 200
            assert answer.headers["connection"] == "close"
            assert client.closed_by_server()
        finally:
            client.close()
    # HTTP/1.0 with keep-alive asked for keeps the connection.
    client = Client(server)
    try:
        for _ in range(2):
            client.send(b"GET /ping HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
            answer = client.read_answer()
            assert answer.status == 200
            assert answer.headers["connection"] == "keep-alive"
    finally:
        client.close()


@pytest.mark.parametrize(
    ("raw", "status", "words", "protocol"),
    [
        (b"NOT HTTP AT ALL\r\n\r\n", 400, "malformed HTTP request", "plain"),
        (
            b"GET /ping HTTP/1.1\r\nHost: t\r\nContent-Length: x\r\n\r\n",
            400,
            "malformed",
            "mlflow",
        ),
        (b"GET /" + b"a" * 5000 + b" HTTP/1.1\r\nHost: t\r\n\r\n", 414, "too long", "plain"),
        (
            b"GET /ping HTTP/1.1\r\n" + b"".join(b"X-H%d: v\r\n" % i for i in range(101)) + b"\r\n",
            431,
            "too many header fields",
            "mlflow",
        ),
        (
            b"GET /ping HTTP/1.1\r\nX-Big: " + b"v" * 9000 + b"\r\n\r\n",
            431,
            "too large",
            "mlflow",
        ),
    ],
    ids=["garbage", "bad-length", "long-target", "many-fields", "big-field"],
)
def test_malformed_or_oversized_requests_get_a_json_error_then_close(
    server: Server, raw: bytes, status: int, words: str, protocol: str
) -> None:
    # The worker answers these itself, in the error shape of the path's protocol (when known).
    client = Client(server)
    try:
        client.send(raw)
        answer = client.read_answer()
        assert answer.status == status
        assert answer.headers["connection"] == "close"
        assert words in error_message(answer.body, protocol, status)
        assert client.closed_by_server()
    finally:
        client.close()
    assert request(server.url + "/ping").status == 200  # the worker is unharmed


def test_a_head_that_never_ends_is_refused_early(client: Client) -> None:
    # One header field arriving forever: refused once the head passes 64 KiB, not buffered.
    client.send(b"GET /ping HTTP/1.1\r\nHost: t\r\nX-Endless: ")
    client.send_until_refused(b"v" * 65536 for _ in range(64))  # 4 MiB at most
    answer = client.read_answer()
    assert answer.status == 431
    assert "too large" in error_message(answer.body, "mlflow", 431)


def test_pipelined_100_continue_never_lands_before_an_earlier_answer(client: Client) -> None:
    body = json.dumps({"inputs": [[0.1, 0.2, 0.3, 0.4]]}).encode()
    client.send(
        invocation([[0.5, 0.5, 0.5, 0.5]])
        + b"POST /invocations HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
        b"Expect: 100-continue\r\nContent-Length: %d\r\n\r\n" % len(body)
    )
    assert client.read_answer().status == 200  # the first answer, not "100 Continue"
    client.send(body)
    assert client.read_answer().status == 200


def test_chunked_trailer_fields_are_not_headers(client: Client) -> None:
    body = json.dumps({"inputs": [[0.1, 0.2, 0.3, 0.4]]}).encode()
    client.send(
        b"POST /invocations HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n%x\r\n%s\r\n0\r\n"
        b"Content-Type: text/plain\r\n\r\n" % (len(body), body)
    )
    answer = client.read_answer()  # a trailer taken as the Content-Type would give 415
    assert answer.status == 200, answer.body


def test_an_upgrade_request_is_answered_then_the_connection_closes(client: Client) -> None:
    client.send(b"GET /ping HTTP/1.1\r\nHost: t\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n")
    answer = client.read_answer()
    assert answer.status == 200
    assert answer.headers["connection"] == "close"
    assert client.closed_by_server()


def test_expect_100_continue(client: Client) -> None:
    body = json.dumps({"inputs": [[0.1, 0.2, 0.3, 0.4]]}).encode()
    client.send(
        b"POST /invocations HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
        b"Expect: 100-continue\r\nContent-Length: %d\r\n\r\n" % len(body)
    )
    assert client.reader.readline() == b"HTTP/1.1 100 Continue\r\n"
    assert client.reader.readline() == b"\r\n"
    client.send(body)
    assert client.read_answer().status == 200


def test_a_body_over_the_limit_is_refused_without_100_continue_and_without_reading_it(
    client: Client,
) -> None:
    client.send(
        b"POST /invocations HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
        b"Expect: 100-continue\r\nContent-Length: 600000\r\n\r\n"
    )
    answer = client.read_answer()  # a 100 Continue here would fail the status-line check
    assert answer.status == 413
    assert "larger than" in error_message(answer.body, "mlflow", 413)
    assert answer.headers["connection"] == "close"
    assert client.closed_by_server()


def test_a_chunked_body_over_the_limit_is_413(client: Client) -> None:
    client.send(
        b"POST /invocations HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n"
    )
    chunk = b"1," * 50_000
    # 800 kB in all, past the 0.5 MB limit
    client.send_until_refused(b"%x\r\n%s\r\n" % (len(chunk), chunk) for _ in range(8))
    answer = client.read_answer()
    assert answer.status == 413
    assert "larger than" in error_message(answer.body, "mlflow", 413)


def test_head_has_headers_only_and_the_connection_stays_usable(client: Client) -> None:
    client.send(b"HEAD /openapi.json HTTP/1.1\r\nHost: t\r\n\r\n")
    head = client.read_answer(head_request=True)
    assert head.status == 200
    assert int(head.headers["content-length"]) > 100
    client.send(b"GET /openapi.json HTTP/1.1\r\nHost: t\r\n\r\n")
    full = client.read_answer()
    assert full.status == 200 and len(full.body) == int(head.headers["content-length"])


def test_the_path_is_percent_decoded_and_the_query_ignored(client: Client) -> None:
    client.send(b"GET /p%69ng?x=1 HTTP/1.1\r\nHost: t\r\n\r\n")
    assert client.read_answer().status == 200
    client.send(b"GET http://example.com/ping HTTP/1.1\r\nHost: t\r\n\r\n")  # absolute form
    assert client.read_answer().status == 200


def test_a_slow_or_vanishing_client_holds_up_nobody(server: Server) -> None:
    worker = server.worker_pids()
    slow = Client(server)
    try:
        whole = invocation([[0.1, 0.2, 0.3, 0.4]])
        slow.send(whole[:40])  # half a request line and headers
        for _ in range(5):
            started = time.monotonic()
            assert post_json(server.url + "/invocations", {"inputs": [[1, 2, 3, 4]]}).status == 200
            # Held up by the slow client, an answer would wait for its 10 s head timeout.
            assert time.monotonic() - started < 5
        slow.send(whole[40:])
        assert slow.read_answer().status == 200
    finally:
        slow.close()
    # A client that resets its connection in the middle of a request.
    gone = Client(server)
    gone.send(invocation([[0.1, 0.2, 0.3, 0.4]])[:-5])
    gone.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    gone.close()
    assert request(server.url + "/ping").status == 200
    assert server.worker_pids() == worker


def test_a_long_prediction_does_not_hold_up_other_connections(
    packages: dict[str, Path], tmp_path: Path
) -> None:
    served = start_server(packages["tricky"], ["--allow-code", "--workers", "1"], log_dir=tmp_path)
    try:
        answers: list[int] = []
        slow_took: list[float] = []

        def slow() -> None:
            # The model sleeps 2 s on this input.
            started = time.monotonic()
            answers.append(
                post_json(served.url + "/invocations", {"inputs": [[2000.0, 1, 1]]}).status
            )
            slow_took.append(time.monotonic() - started)

        thread = threading.Thread(target=slow)
        thread.start()
        wait_for(
            lambda: gauge(served, "modelport_requests_in_flight") >= 2,
            "the slow request to be in flight (beside the /metrics request asking)",
            log=served.log,
        )
        took = []
        for route in ("/ping", "/openapi.json", "/metrics", "/v2/health/live"):
            started = time.monotonic()
            assert request(served.url + route).status == 200
            took.append(time.monotonic() - started)
        assert thread.is_alive()  # still predicting: the answers above did not wait for it
        thread.join(30)
        assert answers == [200]
        # Each answer took less than half the slow one's time: none queued behind it.
        assert max(took) < slow_took[0] / 2, (took, slow_took)
        # A model that raises SystemExit: a 500 like any model failure; the worker carries on.
        failed = post_json(served.url + "/invocations", {"inputs": [[777.0, 1, 1]]})
        assert failed.status == 500
        assert "Traceback" not in failed.body.decode()
        for _ in range(20):  # more requests than pool threads: none was lost
            answer = post_json(served.url + "/invocations", {"inputs": [[1.0, 2, 3]]})
            assert answer.status == 200
            assert answer.json() == {"predictions": [[2.0, 4.0, 6.0]]}
    finally:
        assert served.stop() == 0, served.log()


def test_stopping_does_not_wait_for_idle_kept_alive_connections(
    packages: dict[str, Path], tmp_path: Path
) -> None:
    served = start_server(packages["iris"], ["--workers", "1"], log_dir=tmp_path)
    idle = Client(served)
    stalled = Client(served)
    try:
        idle.send(invocation([[0.1, 0.2, 0.3, 0.4]]))
        assert idle.read_answer().status == 200
        stalled.send(invocation([[0.1, 0.2, 0.3, 0.4]])[:-10])  # a request that stops arriving
        server_port, stalled_port = port_of(served.url), stalled.sock.getsockname()[1]
        wait_for(
            lambda: unread_by_server(server_port, stalled_port) == 0,
            "the worker to read the stalled request's first bytes",
            log=served.log,
        )
        started = time.monotonic()
        assert served.stop() == 0, served.log()
        # Waiting for those connections, it would stop only at the graceful timeout (25 s).
        assert time.monotonic() - started < MAX_GRACEFUL_S / 2
        assert idle.closed_by_server()
        assert stalled.closed_by_server()
    finally:
        idle.close()
        stalled.close()


@pytest.mark.parametrize(
    ("raw", "words"),
    [
        (b"GET /ping HTTP/1.1\r\n\r\n", "no Host header"),
        (b"GET /ping HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", "more than one Host"),
        (b"GET /ping HTTP/1.1\r\nHost: a b/c\r\n\r\n", "not a valid host"),
        (b"GET /ping HTTP/1.1\r\nHost: a:80x\r\n\r\n", "not a valid host"),
    ],
    ids=["missing", "two", "bad-chars", "bad-port"],
)
def test_an_http_1_1_request_needs_exactly_one_valid_host(
    server: Server, raw: bytes, words: str
) -> None:
    client = Client(server)
    try:
        client.send(raw)
        answer = client.read_answer()
        assert answer.status == 400
        assert words in error_message(answer.body, "mlflow", 400)
        assert answer.headers["connection"] == "close"
        assert client.closed_by_server()
    finally:
        client.close()
    for host in (b"t", b"127.0.0.1:8080", b"[::1]:80", b"my-host.example:"):
        ok = Client(server)
        try:
            ok.send(b"GET /ping HTTP/1.1\r\nHost: " + host + b"\r\n\r\n")
            assert ok.read_answer().status == 200, host
        finally:
            ok.close()


def _expect_continue_head(length: int) -> bytes:
    return (
        f"POST /invocations HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
        f"Content-Length: {length}\r\nExpect: 100-continue\r\n\r\n"
    ).encode()


def test_buffered_request_bytes_have_a_worker_budget(
    packages: dict[str, Path], tmp_path: Path
) -> None:
    served = start_server(
        packages["iris"],
        ["--workers", "1", "--max-body-mb", "1", "--max-buffered-mb", "2"],
        log_dir=tmp_path,
    )
    body = json.dumps({"inputs": [[0.1, 0.2, 0.3, 0.4]]}).encode()
    body += b" " * (900_000 - len(body))  # whitespace is valid JSON: a 900 kB request
    clients: list[Client] = []
    try:
        for _ in range(2):  # two bodies under way: 1.8 MB of the 2 MiB budget
            held = Client(served)
            clients.append(held)
            held.send(_expect_continue_head(len(body)) + body[:1000])
            assert held.reader.readline() == b"HTTP/1.1 100 Continue\r\n"  # reserved now
            assert held.reader.readline() == b"\r\n"
        third = Client(served)
        clients.append(third)
        third.send(_expect_continue_head(len(body)))
        refused = third.read_answer()
        assert refused.status == 503
        assert refused.headers["retry-after"] == "1"
        assert "busy" in error_message(refused.body, "mlflow", 503)
        assert third.closed_by_server()
        # Small requests are never refused for the budget.
        assert post_json(served.url + "/invocations", {"inputs": [[1, 2, 3, 4]]}).status == 200
        for held in clients[:2]:
            held.send(body[1000:])
            assert held.read_answer().status == 200
        # Answered: the budget is free again.
        again = Client(served)
        clients.append(again)
        again.send(_expect_continue_head(len(body)))
        assert again.reader.readline() == b"HTTP/1.1 100 Continue\r\n"
        again.reader.readline()
        again.send(body)
        assert again.read_answer().status == 200
    finally:
        for opened in clients:
            opened.close()
        assert served.stop() == 0, served.log()


def test_at_the_connection_limit_the_oldest_idle_connection_makes_room(
    packages: dict[str, Path], tmp_path: Path
) -> None:
    served = start_server(
        packages["iris"], ["--workers", "1", "--max-connections", "4"], log_dir=tmp_path
    )
    clients: list[Client] = []
    try:
        for _ in range(4):  # four kept-alive connections, idle after one answer each
            idle = Client(served)
            clients.append(idle)
            idle.send(b"GET /ping HTTP/1.1\r\nHost: t\r\n\r\n")
            assert idle.read_answer().headers["connection"] == "keep-alive"
        newcomer = Client(served)
        clients.append(newcomer)
        newcomer.send(invocation([[0.1, 0.2, 0.3, 0.4]]))
        assert newcomer.read_answer().status == 200
        # Older idle connections made room: the oldest the worker had done with. (A pool thread
        # that has sent an answer may not have handed its connection back yet; one it still
        # holds, such as the readiness probe's, counts against the limit but is not idle.)
        older = [c.sock for c in clients[:3]]
        readable, _, _ = select.select(older, [], [], 10.0)
        assert readable, "no idle connection was closed to make room"
        for client in clients[:3]:
            if client.sock in readable:
                assert client.closed_by_server()
        clients[3].send(b"GET /ping HTTP/1.1\r\nHost: t\r\n\r\n")  # the newest idle stayed
        assert clients[3].read_answer().status == 200
    finally:
        for opened in clients:
            opened.close()
        assert served.stop() == 0, served.log()
