"""The local target's stable endpoint: a small HTTP reverse proxy in front of ``modelport serve``.

Why a proxy: an update must switch from the old server to the new one without failing a request.
Clients keep connections open (keep-alive), and a connection to a server that is stopping breaks,
so the switch cannot happen at the TCP level (re-pointing a port, or ``SO_REUSEPORT``, strands
requests on the old server's connections and accept queue). This proxy owns the stable port and
the client connections, and picks the server *per request*: after the switch every new request
goes to the new server, even on an old connection, while the old server drains the requests it
already has.

The current server's port is in an *upstream file* (JSON ``{"port": N}``), replaced atomically by
the deployer. The proxy checks the file's identity (inode, mtime, size) on every request, which
costs one ``stat``, so no signal or control channel is needed and a switch takes effect at once.

Robustness: a request that cannot reach its server before any byte of a response came back
(connection refused, or a kept-alive connection the server had closed) is retried on a fresh
connection, re-reading the upstream file first; the request never reached the model, so a retry
is safe. If no server answers, the proxy replies 503 (so health probes see "not ready"), never a
hang. It exits on SIGTERM, and by itself once its upstream file is gone (its deployment was
removed), so it cannot outlive its deployment for long.

Run as ``python -m modelport.deployers.local.proxy --port P --upstream FILE --ready FILE``; it
writes ``{"pid": ..., "port": ...}`` (or ``{"error": ...}``) to the ready file once listening.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import signal
import socket
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from modelport.deployers.kit.state import write_json_atomic

#: Headers that describe one hop, not the message (RFC 9110 section 7.6.1).
HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "content-length",
        "host",
        "expect",
    }
)
#: How long to keep retrying a request no server accepts before answering 503.
UNREACHABLE_BUDGET_S = 1.0
MAX_ATTEMPTS = 200
BACKEND_TIMEOUT_S = 300.0
MAX_BODY = 1 << 30


class Upstream:
    """The current server port, re-read whenever the upstream file is replaced."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._key: tuple[int, int, int] | None = None
        self._port = 0
        self._lock = threading.Lock()

    def port(self) -> int:
        """The port to send the next request to (0 when the file is gone or unreadable)."""
        try:
            st = os.stat(self.path)
        except OSError:
            return 0
        key = (st.st_ino, st.st_mtime_ns, st.st_size)
        if key != self._key:
            with self._lock:
                try:
                    port = int(json.loads(self.path.read_text("utf-8"))["port"])
                except (OSError, ValueError, KeyError, TypeError):
                    return self._port
                self._port, self._key = port, key
        return self._port


class _Unreachable(Exception):
    """No server accepted the request; it never reached the model."""


class ProxyServer(ThreadingHTTPServer):
    """A threading HTTP server that counts requests in flight (for a graceful stop)."""

    daemon_threads = True
    request_queue_size = 256

    def __init__(self, address: tuple[str, int], upstream: Upstream) -> None:
        self.upstream = upstream
        self.in_flight = 0
        self.count_lock = threading.Lock()
        host = address[0]
        if ":" in host:
            self.address_family = socket.AF_INET6
        super().__init__(address, ProxyHandler)


class ProxyHandler(BaseHTTPRequestHandler):
    """Forward each request to the server the upstream file names at that moment."""

    protocol_version = "HTTP/1.1"
    server_version = "modelport-local-proxy"
    server: ProxyServer

    # One kept-alive connection per server port, per client connection (handler thread).
    def setup(self) -> None:
        """Set up the client connection, with no server connection yet."""
        super().setup()
        self._backends: dict[int, http.client.HTTPConnection] = {}

    def finish(self) -> None:
        """Close the client connection and this thread's server connections."""
        with contextlib.suppress(OSError):
            super().finish()
        for conn in self._backends.values():
            conn.close()

    def log_message(self, format: str, *args: Any) -> None:
        """Per-request lines would drown the log; errors still go to :meth:`log_error`."""

    def log_error(self, format: str, *args: Any) -> None:
        """Write errors to stderr (the proxy's log file)."""
        sys.stderr.write(f"proxy: {format % args}\n")

    def do_GET(self) -> None:
        """Forward a GET."""
        self._forward()

    do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = do_GET

    def _read_body(self) -> bytes | None:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks: list[bytes] = []
            total = 0
            while True:
                size = int(self.rfile.readline(65537).split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    return b"".join(chunks)
                total += size
                if total > MAX_BODY:
                    raise ValueError("body too large")
                chunks.append(self.rfile.read(size))
                self.rfile.readline(3)
        length = self.headers.get("Content-Length")
        if length is None:
            return None
        n = int(length)
        if n < 0 or n > MAX_BODY:
            raise ValueError("bad Content-Length")
        return self.rfile.read(n)

    def _forward(self) -> None:
        with self.server.count_lock:
            self.server.in_flight += 1
        try:
            try:
                body = self._read_body()
            except ValueError:
                self._reply(400, {"error": "malformed request body"})
                self.close_connection = True
                return
            try:
                status, reason, headers, data = self._exchange(body)
            except _Unreachable:
                self._reply(
                    503, {"error": "the model server is not accepting requests (not ready)"}
                )
                return
            except TimeoutError:
                self._reply(504, {"error": "the model server did not answer in time"})
                return
            self.send_response_only(status, reason)
            for name, value in headers:
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)
        finally:
            with self.server.count_lock:
                self.server.in_flight -= 1

    def _exchange(self, body: bytes | None) -> tuple[int, str, list[tuple[str, str]], bytes]:
        deadline = time.monotonic() + UNREACHABLE_BUDGET_S
        for _attempt in range(MAX_ATTEMPTS):
            port = self.server.upstream.port()
            if port:
                for stale in [p for p in self._backends if p != port]:
                    self._drop(stale)
                conn = self._backends.get(port)
                reused = conn is not None
                if conn is None:
                    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=BACKEND_TIMEOUT_S)
                    self._backends[port] = conn
                try:
                    response = self._send(conn, body)
                except TimeoutError:
                    self._drop(port)
                    raise
                except (ConnectionError, http.client.BadStatusLine):
                    # Refused, reset, or a kept-alive connection the server had closed, all
                    # before a status line came back: the request did not reach the model.
                    self._drop(port)
                    if reused:
                        continue  # retry at once on a fresh connection
                else:
                    return self._receive(port, response)
            if time.monotonic() >= deadline:
                break
            time.sleep(0.01)
        raise _Unreachable

    def _drop(self, port: int) -> None:
        conn = self._backends.pop(port, None)
        if conn is not None:
            conn.close()

    def _send(
        self, conn: http.client.HTTPConnection, body: bytes | None
    ) -> http.client.HTTPResponse:
        conn.putrequest(self.command, self.path, skip_host=True, skip_accept_encoding=True)
        for name, value in self.headers.items():
            if name.lower() not in HOP_BY_HOP:
                conn.putheader(name, value)
        conn.putheader("Host", self.headers.get("Host", "localhost"))
        conn.putheader("X-Forwarded-For", self.client_address[0])
        if body is not None or self.command in ("POST", "PUT", "PATCH"):
            conn.putheader("Content-Length", str(len(body or b"")))
        conn.endheaders(body)
        return conn.getresponse()

    def _receive(
        self, port: int, response: http.client.HTTPResponse
    ) -> tuple[int, str, list[tuple[str, str]], bytes]:
        try:
            data = response.read()
        except (ConnectionError, http.client.IncompleteRead):
            # The server died while answering: the request reached it, so do not retry.
            self._drop(port)
            return (
                502,
                "Bad Gateway",
                [("Content-Type", "application/json")],
                b'{"error": "the model server failed mid-response"}',
            )
        if response.will_close:
            self._drop(port)
        headers = [(k, v) for k, v in response.getheaders() if k.lower() not in HOP_BY_HOP]
        return response.status, response.reason, headers, data

    def _reply(self, status: int, payload: dict[str, str]) -> None:
        data = json.dumps(payload).encode()
        self.send_response_only(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        if status == 503:
            self.send_header("Retry-After", "1")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)


def _watch(server: ProxyServer, upstream: Path, stop: threading.Event) -> None:
    """Stop the proxy once its upstream file has been gone for a second.

    The deployer replaces the file atomically (it never goes missing while the deployment
    exists), so its absence means the deployment was removed behind our back.
    """
    missing_since: float | None = None
    while not stop.wait(0.25):
        if upstream.exists():
            missing_since = None
        elif missing_since is None:
            missing_since = time.monotonic()
        elif time.monotonic() - missing_since > 1.0:
            sys.stderr.write("proxy: upstream file removed; exiting\n")
            stop.set()
            server.shutdown()
            return


def main(argv: list[str] | None = None) -> int:
    """Run the proxy until SIGTERM (or until its upstream file disappears)."""
    parser = argparse.ArgumentParser(prog="modelport-local-proxy")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--upstream", type=Path, required=True)
    parser.add_argument("--ready", type=Path, required=True)
    args = parser.parse_args(argv)

    try:
        server = ProxyServer((args.host, args.port), Upstream(args.upstream))
    except OSError as exc:
        reason = exc.strerror or str(exc)
        write_json_atomic(
            args.ready,
            {"pid": os.getpid(), "error": f"cannot listen on {args.host}:{args.port}: {reason}"},
        )
        return 1
    stop = threading.Event()

    def on_term(signum: int, frame: Any) -> None:
        if not stop.is_set():
            stop.set()
            # shutdown() waits for serve_forever, which runs in this very thread: use another.
            threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    threading.Thread(target=_watch, args=(server, args.upstream, stop), daemon=True).start()
    write_json_atomic(args.ready, {"pid": os.getpid(), "port": server.server_address[1]})
    sys.stderr.write(f"proxy: listening on {args.host}:{server.server_address[1]}\n")
    sys.stderr.flush()
    server.serve_forever(poll_interval=0.05)
    server.server_close()
    # Let requests in flight finish (bounded); idle keep-alive threads are daemons.
    deadline = time.monotonic() + 10.0
    while server.in_flight and time.monotonic() < deadline:
        time.sleep(0.02)
    sys.stderr.write("proxy: stopped\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
