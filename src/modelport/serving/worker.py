"""The gunicorn worker ``modelport serve`` runs: one thread reads requests, a pool answers them.

gunicorn's threaded worker (gthread) spent ~170 µs of CPU per request of its own: a pure-Python
parser, a future and two thread hand-offs per request, and every kept-alive connection taken
out of and put back into its poller between requests. For a 1-row request that was more than
the model and all of modelport's request handling together. This worker keeps gunicorn's
master (binding, supervision and replacement of workers, SIGTERM draining, SIGHUP reloads,
heartbeats) and replaces only the request loop:

- The main thread accepts, reads and parses with httptools (llhttp, Node.js's parser). A
  kept-alive connection stays registered with the selector for its whole life.
- A complete request goes through one queue to a pool of ``threads`` threads. The thread that
  answers it writes the response itself, then goes on with the next request already read from
  the same connection (pipelining) without going back through the main thread.
- Requests on different connections run concurrently, so the dynamic batcher merges them.
- Writes never block a pool thread: what a client does not take at once waits in the
  connection (at most ``MAX_UNSENT_BYTES`` before its next request is answered) and the main
  thread sends it as the client reads, so clients that never read hold no thread.
- Only the main thread closes a socket; a pool thread that is done with a connection shuts
  its sending side, and the main thread closes it when the client has closed too (or after a
  short linger), so a client always reads the whole answer, even one refusing a body it has
  not finished sending.
- Every client costs a bounded share of the worker: deadlines for a head and a minimum body
  rate (408), a connection limit at which the oldest idle connections make room, a bound on
  requests read ahead per connection, and a budget of buffered request bytes (503).
"""

from __future__ import annotations

import contextlib
import errno
import io
import json
import os
import queue
import re
import selectors
import socket
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from email.utils import formatdate
from typing import Any
from urllib.parse import unquote_to_bytes

import httptools
from gunicorn.workers.base import Worker  # type: ignore[import-untyped]

#: How long a connection whose answer said "close" is kept for the client to close it first.
LINGER_S = 2.0
#: How long a stopping worker keeps idle kept-alive connections, for requests already on the way.
STOP_LINGER_S = 1.0
#: Complete requests read ahead on one connection (pipelining) before reading from it pauses.
MAX_PIPELINED = 32
#: The largest request head (request line and header fields) read; larger ones get 431.
#: Checked per read, so up to one read more is buffered before the refusal.
MAX_HEAD_BYTES = 64 * 1024
#: A request head must arrive whole within this many seconds of its first byte (else 408).
HEAD_TIMEOUT_S = 10.0
#: A request body must arrive within this grace period plus one second per ``MIN_BODY_RATE``
#: bytes received (else 408): a client trickling its body cannot hold a connection for long.
BODY_GRACE_S = 10.0
MIN_BODY_RATE = 8 * 1024
#: Answers not yet taken by the client, per connection, past which no further pipelined request
#: on it is answered until the client reads: a client that never reads costs no pool thread.
MAX_UNSENT_BYTES = 64 * 1024
#: The longest a client may leave an answer untaken (no byte of it read) before it is dropped.
SEND_TIMEOUT_S = 30.0
#: Request bytes a worker buffers at most, over all its connections (beyond: 503, Retry-After),
#: unless :meth:`ModelportWorker.configured` sets another budget.
MIN_BUFFERED_BUDGET = 64 * 1024 * 1024
#: Bodies up to this size are never refused for the budget: a flood of large bodies must not
#: shut out small requests (the connection limit bounds what small ones buffer).
SMALL_BODY_BYTES = 64 * 1024
#: When a worker is at its connection limit, it closes this fraction of its idle connections
#: (the oldest first) at once, so a flood of new ones does not cost a scan per accept.
_EVICT_FRACTION = 16
_RECV_SIZE = 65536
_OUT_OF_RESOURCES = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})

_NO_BODY_STATUSES = frozenset({204, 304})
_HOP_BY_HOP = frozenset({b"connection", b"keep-alive", b"transfer-encoding", b"upgrade"})
_REASONS = {
    400: "Bad Request",
    408: "Request Timeout",
    413: "Request Entity Too Large",
    414: "URI Too Long",
    431: "Request Header Fields Too Large",
    500: "Internal Server Error",
    501: "Not Implemented",
    503: "Service Unavailable",
}
#: RFC 9110's Host value: uri-host [ ":" port ], where uri-host is an IP literal or a reg-name.
_VALID_HOST = re.compile(rb"(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9\-._~!$&'()*+,;=%]*)(?::[0-9]*)?")


class _Refused(Exception):
    """A request the worker answers itself (malformed or over a limit), then closes."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class _Request:
    """One parsed request. Mutable while httptools fills it in, then only read."""

    __slots__ = (
        "body",
        "close_after",
        "content_length",
        "expect_continue",
        "headers",
        "keep_alive",
        "method",
        "refused",
        "reserved",
        "size",
        "target",
        "version",
    )

    def __init__(self) -> None:
        self.method = "GET"
        self.target = b""
        self.version = "1.1"
        self.headers: list[tuple[bytes, bytes]] = []
        self.body: list[bytes] = []
        self.size = 0
        self.keep_alive = True
        #: the connection closes after this answer (its body was not read, or input is unusable)
        self.close_after = False
        #: answered by the worker itself, without the application
        self.refused: _Refused | None = None
        self.expect_continue = False
        self.content_length: int | None = None
        #: bytes of the worker's buffer budget this request holds until it is answered
        self.reserved = 0


class _Connection:
    """One client connection; also the httptools parser's callback object."""

    __slots__ = (
        "after_flush",
        "body_started",
        "broken",
        "busy",
        "client",
        "closing_deadline",
        "current",
        "discarding",
        "eof",
        "events",
        "fields",
        "flushing",
        "head_bytes",
        "head_started",
        "in_head",
        "last_active",
        "lock",
        "out",
        "parser",
        "paused",
        "reading",
        "ready",
        "server",
        "sock",
        "worker",
        "write_progress",
        "writing",
    )

    def __init__(
        self, worker: ModelportWorker, sock: socket.socket, client: Any, server: Any
    ) -> None:
        self.worker = worker
        self.sock = sock
        self.client = client
        self.server = server
        self.parser = httptools.HttpRequestParser(self)
        self.lock = threading.Lock()
        #: complete requests not yet answered, in order
        self.ready: deque[_Request] = deque()
        #: the request httptools is filling in
        self.current: _Request | None = None
        #: a pool thread owns the connection's answers
        self.busy = False
        #: the client closed (or reset) its side: answer what is ready, then close
        self.eof = False
        #: the selector events the connection is registered for (main thread only)
        self.events = 0
        #: the main thread wants its input reported (main thread only)
        self.reading = True
        #: the main thread wants to know when it can write (main thread only)
        self.writing = False
        #: answer bytes the client has not taken yet, sent by the main thread as it can
        self.out = bytearray()
        #: the main thread has been told that ``out`` holds bytes
        self.flushing = False
        #: what the main thread does once ``out`` is sent: "finish" or "close"
        self.after_flush: str | None = None
        #: sending failed: the client is gone
        self.broken = False
        #: the last time the client took answer bytes (or since ``out`` holds any)
        self.write_progress = 0.0
        #: reading paused: too many pipelined requests wait
        self.paused = False
        #: the input is unusable (a refused request, an upgrade): drop whatever else arrives
        self.discarding = False
        #: set once the last answer went out; the main thread closes at the latest by then
        self.closing_deadline: float | None = None
        self.last_active = time.monotonic()
        self.fields = 0
        #: between a request's first byte and the end of its header fields
        self.in_head = False
        #: bytes read while ``in_head`` (httptools buffers a field until its line ends)
        self.head_bytes = 0
        #: when the current request's head, and then its body, began to arrive
        self.head_started = self.body_started = self.last_active

    # --- httptools callbacks (main thread) -------------------------------------------------------

    def on_message_begin(self) -> None:
        if self.discarding:
            return
        self.current = _Request()
        self.fields = 0
        self.in_head = True
        self.head_bytes = 0
        self.head_started = self.last_active

    def on_url(self, url: bytes) -> None:
        if self.current is None:
            return
        self.current.target += url
        if len(self.current.target) > self.worker.limit_line:
            raise self.refuse(414, "the request target is too long")

    def on_header(self, name: bytes, value: bytes) -> None:
        request = self.current
        if request is None or not self.in_head:
            return  # a chunked body's trailer fields are not headers: never seen by the app
        self.fields += 1
        if self.fields > self.worker.limit_fields:
            raise self.refuse(431, "too many header fields")
        if len(name) + len(value) + 2 > self.worker.limit_field_size:
            raise self.refuse(431, "a header field is too large")
        request.headers.append((name, value))

    def on_headers_complete(self) -> None:
        self.in_head = False
        request = self.current
        if request is None:
            return
        parser = self.parser
        request.method = parser.get_method().decode("ascii")
        request.version = parser.get_http_version()
        request.keep_alive = parser.should_keep_alive()
        self.body_started = self.last_active
        underscores = False
        hosts = 0
        host = b""
        for name, value in request.headers:
            lower = name.lower()
            if lower == b"content-length":
                # llhttp has checked it is a number, and the only one.
                request.content_length = int(value)
            elif lower == b"host":
                hosts += 1
                host = value
            elif lower == b"expect" and value.lower() == b"100-continue":
                request.expect_continue = request.version == "1.1"
            underscores = underscores or b"_" in name
        # RFC 9112 3.2: one valid Host field (required from HTTP/1.1 on), else 400.
        if hosts > 1:
            raise self.refuse(400, "the request has more than one Host header")
        if hosts == 0 and request.version != "1.0":
            raise self.refuse(400, "the request has no Host header (HTTP/1.1 requires one)")
        if hosts and _VALID_HOST.fullmatch(host) is None:
            raise self.refuse(400, "the Host header is not a valid host[:port]")
        if underscores:
            # "X_Forwarded_For" would land on the same CGI name as "X-Forwarded-For": drop it.
            request.headers = [(n, v) for n, v in request.headers if b"_" not in n]
        worker = self.worker
        length = request.content_length
        if length is not None and length > worker.max_body:
            # The application refuses it from the length alone: answer now, never read the body.
            self._finish_early(request)
        elif length and length > SMALL_BODY_BYTES and not worker.reserve(request, length):
            # Never read: the worker holds as many request bytes as it may.
            self.refuse(503, "the server is busy with other large requests; retry shortly")
            self._finish_early(request)
        elif request.expect_continue:
            worker.send_continue(self)
        if parser.should_upgrade():
            # Protocol upgrades are not served: answer the request, then close.
            request.close_after = True

    def on_body(self, body: bytes) -> None:
        request = self.current
        if request is None:
            return
        request.body.append(body)
        request.size += len(body)
        if request.size > self.worker.max_body:
            # A chunked body past the limit: the application sees one byte too many and says 413.
            self._finish_early(request)
        elif (
            request.content_length is None
            and request.size > SMALL_BODY_BYTES
            and not self.worker.reserve(request, len(body))
        ):
            self.refuse(503, "the server is busy with other large requests; retry shortly")
            self._finish_early(request)

    def on_message_complete(self) -> None:
        request = self.current
        if request is None:
            return
        self.current = None
        self.ready.append(request)

    # --- helpers ---------------------------------------------------------------------------------

    def refuse(self, status: int, message: str) -> _Refused:
        refused = _Refused(status, message)
        if self.current is not None:
            self.current.refused = refused
            with contextlib.suppress(httptools.HttpParserError):
                # Known once the request line is read; a refused HEAD gets no body either.
                self.current.method = self.parser.get_method().decode("ascii")
        return refused

    def _finish_early(self, request: _Request) -> None:
        request.close_after = True
        self.current = None
        self.discarding = True
        self.ready.append(request)


def _http_date() -> bytes:
    return formatdate(usegmt=True).encode("ascii")


class ModelportWorker(Worker):  # type: ignore[misc]
    """A gunicorn worker: a selector thread parses, ``threads`` pool threads answer.

    gunicorn settings it honours: ``threads``, ``keepalive``, ``worker_connections`` (the
    connections one worker holds; at the limit the oldest idle ones are closed first),
    ``graceful_timeout``, ``max_requests``, ``limit_request_line``, ``limit_request_fields``,
    ``limit_request_field_size``. The request body limit is :attr:`max_body` and the budget of
    buffered request bytes :attr:`max_buffered`; build a worker class with others with
    :meth:`configured`.

    A hostile client costs a bounded share: a head must arrive within ``HEAD_TIMEOUT_S`` and a
    body at ``MIN_BODY_RATE`` (else 408); a client that does not read its answers holds no pool
    thread (the main thread sends what they cannot take at once) and at most
    ``MAX_UNSENT_BYTES`` of answers plus ``MAX_PIPELINED`` requests read ahead.
    """

    #: Bodies larger than this are not read: the application answers 413 from the length.
    max_body: int = sys.maxsize
    #: Request bytes buffered at most over all connections; requests beyond it get 503.
    max_buffered: int = sys.maxsize

    @classmethod
    def configured(cls, max_body: int, max_buffered: int | None = None) -> type[ModelportWorker]:
        """This worker class with other limits.

        Args:
            max_body: the request body limit in bytes.
            max_buffered: the budget of buffered request bytes; default: four bodies at the
                limit, and at least ``MIN_BUFFERED_BUDGET``.
        """
        budget = max_buffered or max(4 * max_body, MIN_BUFFERED_BUDGET)
        attrs = {"max_body": max_body, "max_buffered": max(budget, max_body)}
        return type(cls.__name__, (cls,), attrs)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.connections: set[_Connection] = set()
        self.jobs: queue.SimpleQueue[_Connection | None] = queue.SimpleQueue()
        self.resumed: queue.SimpleQueue[_Connection] = queue.SimpleQueue()
        #: connections whose answers wait for the client: the main thread sends the rest
        self.unsent: queue.SimpleQueue[_Connection] = queue.SimpleQueue()
        #: connections a pool thread is done with, for the main thread to close
        self.closing: queue.SimpleQueue[_Connection] = queue.SimpleQueue()
        self.selector: selectors.BaseSelector | None = None
        self.limit_line = self.cfg.limit_request_line or 1 << 20
        self.limit_fields = self.cfg.limit_request_fields or 1 << 16
        self.limit_field_size = self.cfg.limit_request_field_size or 1 << 20
        self.accepting = False
        self.accept_paused_until = 0.0
        self.handled = 0
        self.date = b""
        self.date_second = -1
        self.threads: list[threading.Thread] = []
        #: request bytes held (reserved at the head for a known length), under ``buffer_lock``
        self.buffered = 0
        self.buffer_lock = threading.Lock()

    # --- the buffer budget (main thread reserves, whoever drops a request releases) -------------

    def reserve(self, request: _Request, size: int) -> bool:
        """Count ``size`` more bytes for ``request``; False (nothing counted) past the budget."""
        with self.buffer_lock:
            if self.buffered + size > self.max_buffered:
                return False
            self.buffered += size
        request.reserved += size
        return True

    def release(self, requests: Iterable[_Request | None]) -> None:
        """Give back the bytes that requests held (each once)."""
        total = 0
        for request in requests:
            if request is not None and request.reserved:
                total += request.reserved
                request.reserved = 0
        if total:
            with self.buffer_lock:
                self.buffered -= total

    # --- the main thread -------------------------------------------------------------------------

    def run(self) -> None:
        """The main loop: accept, read, parse, dispatch, send what waits; close idle connections."""
        self.selector = selectors.DefaultSelector()
        self.selector.register(self.PIPE[0], selectors.EVENT_READ, None)
        for listener in self.sockets:
            listener.setblocking(False)
        self.set_accepting(True)
        for index in range(max(1, self.cfg.threads)):
            thread = threading.Thread(
                target=self.answer_loop, name=f"modelport-request-{index}", daemon=True
            )
            thread.start()
            self.threads.append(thread)
        stopping_since: float | None = None
        last_beat = last_sweep = 0.0
        try:
            while True:
                now = time.monotonic()
                if now - last_beat >= 1.0:
                    self.notify()
                    last_beat = now
                    if self.ppid != os.getppid():
                        self.log.info("Parent changed, shutting down: %s", self)
                        self.alive = False
                if not self.alive and stopping_since is None:
                    stopping_since = now
                    self.set_accepting(False)
                    for listener in self.sockets:
                        listener.close()
                if stopping_since is not None and (
                    not self.connections or now - stopping_since > self.cfg.graceful_timeout
                ):
                    break
                if (
                    not self.accepting
                    and stopping_since is None
                    and now >= self.accept_paused_until
                ):
                    self.set_accepting(True)
                if now - last_sweep >= 0.5 or stopping_since is not None:
                    self.sweep(now, stopping_since)
                    last_sweep = now
                for key, events in self.selector.select(0.5 if stopping_since is None else 0.1):
                    data = key.data
                    if data is None:
                        self.drain_wakeups()
                    elif isinstance(data, _Connection):
                        if events & selectors.EVENT_WRITE:
                            self.on_writable(data)
                        if events & selectors.EVENT_READ and data in self.connections:
                            self.on_readable(data)
                    else:
                        self.accept(key.fileobj)  # type: ignore[arg-type]
        finally:
            for _ in self.threads:
                self.jobs.put(None)
            for connection in list(self.connections):
                self.close(connection)

    def set_accepting(self, accepting: bool) -> None:
        """Watch the listening sockets for new connections, or stop watching them."""
        assert self.selector is not None
        if accepting == self.accepting or (accepting and not self.alive):
            return
        for listener in self.sockets:
            if accepting:
                self.selector.register(listener, selectors.EVENT_READ, "listener")
            else:
                self.selector.unregister(listener)
        self.accepting = accepting

    def accept(self, listener: socket.socket) -> None:
        """Accept the connections waiting on a listening socket, up to the connection limit.

        At the limit, the oldest idle connections (kept alive between requests, or with a head
        that is still arriving) make room; with none idle, accepting pauses until one closes.
        """
        assert self.selector is not None
        for _ in range(64):
            if len(self.connections) >= self.cfg.worker_connections and not self.evict_idle():
                self.set_accepting(False)  # the main loop resumes shortly
                self.accept_paused_until = time.monotonic() + 0.1
                return
            try:
                sock, client = listener.accept()
            except OSError as exc:
                if exc.errno in _OUT_OF_RESOURCES:
                    # Out of file descriptors or memory: keep serving open connections, and
                    # try again shortly rather than spinning (or dying) on the listener.
                    self.log.warning("cannot accept connections for now: %s", exc)
                    self.set_accepting(False)
                    self.accept_paused_until = time.monotonic() + 0.5
                elif exc.errno not in (errno.EAGAIN, errno.ECONNABORTED, errno.EWOULDBLOCK):
                    raise
                return
            sock.setblocking(False)
            if sock.family in (socket.AF_INET, socket.AF_INET6):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            connection = _Connection(self, sock, client, listener.getsockname())
            self.connections.add(connection)
            self.update(connection)

    def evict_idle(self) -> bool:
        """Close the oldest idle connections to make room for new ones. False: none is idle."""
        idle = []
        for connection in self.connections:
            if connection.busy or connection.ready or connection.out:
                continue
            current = connection.current
            if current is None:
                idle.append((connection.last_active, id(connection), connection))
            elif connection.in_head:
                idle.append((connection.head_started, id(connection), connection))
        if not idle:
            return False
        idle.sort()
        for _, _, connection in idle[: max(1, len(self.connections) // _EVICT_FRACTION)]:
            self.close(connection)
        return True

    def drain_wakeups(self) -> None:
        """Empty the wake-up pipe; take over answers to send, connections to close or resume."""
        try:
            while os.read(self.PIPE[0], 4096):
                pass
        except OSError:
            pass
        while True:
            try:
                connection = self.unsent.get_nowait()
            except queue.Empty:
                break
            if connection in self.connections and not connection.writing:
                connection.writing = True
                self.on_writable(connection)  # most often the client has read meanwhile
        while True:
            try:
                connection = self.closing.get_nowait()
            except queue.Empty:
                break
            self.close(connection)
        while True:
            try:
                connection = self.resumed.get_nowait()
            except queue.Empty:
                return
            if connection in self.connections and connection.paused:
                connection.paused = False
                self.watch(connection)
                self.feed(connection, b"")  # dispatch what the pause held back

    def update(self, connection: _Connection) -> None:
        """Register the connection with the selector for the events the main thread wants."""
        assert self.selector is not None
        want = (selectors.EVENT_READ if connection.reading else 0) | (
            selectors.EVENT_WRITE if connection.writing else 0
        )
        have = connection.events
        if want == have:
            return
        if not have:
            self.selector.register(connection.sock, want, connection)
        elif not want:
            self.selector.unregister(connection.sock)
        else:
            self.selector.modify(connection.sock, want, connection)
        connection.events = want

    def watch(self, connection: _Connection) -> None:
        """Have the selector report the connection's input."""
        connection.reading = True
        self.update(connection)

    def unwatch(self, connection: _Connection) -> None:
        """Stop the selector reporting the connection's input."""
        connection.reading = False
        self.update(connection)

    def on_readable(self, connection: _Connection) -> None:
        """Read what a client sent: parse it, or notice that the client closed."""
        try:
            data = connection.sock.recv(_RECV_SIZE)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        connection.last_active = time.monotonic()
        if not data:
            with connection.lock:
                if connection.busy or connection.out:
                    # The answers already due go out first (by the pool thread, or the
                    # main thread as the client takes them); then the connection closes.
                    connection.eof = True
                    if not connection.busy:
                        connection.after_flush = "close"
                    self.unwatch(connection)
                    return
            self.close(connection)
            return
        if connection.discarding or connection.closing_deadline is not None:
            return  # the rest of a refused request, or input after an upgrade or a "close"
        self.feed(connection, data)

    def on_writable(self, connection: _Connection) -> None:
        """Send answer bytes the client could not take earlier; when all went, carry on."""
        with connection.lock:
            out = connection.out
            try:
                sent = connection.sock.send(out) if out else 0
            except (BlockingIOError, InterruptedError):
                sent = 0
            except OSError:
                connection.broken = True  # the pool thread, if busy, sees it on its next send
                out.clear()
                sent = 0
            if sent:
                del out[:sent]
                connection.write_progress = time.monotonic()
            if out:
                self.update(connection)
                return
            connection.writing = False
            connection.flushing = False
            action, connection.after_flush = connection.after_flush, None
            busy = connection.busy
        self.update(connection)
        gone = connection.broken and not busy
        if gone or (action == "close" and not (connection.ready and connection.eof)):
            self.close(connection)
        elif action == "finish":
            self.linger(connection)
        else:
            self.feed(connection, b"")  # answer what waited for the client to read

    def feed(self, connection: _Connection, data: bytes) -> None:
        """Parse what arrived and hand complete requests to the pool."""
        if data:
            try:
                connection.parser.feed_data(data)
                if connection.in_head:
                    connection.head_bytes += len(data)
                    if connection.head_bytes > MAX_HEAD_BYTES:
                        raise httptools.HttpParserError(
                            connection.refuse(431, "the request head is too large")
                        )
            except httptools.HttpParserUpgrade:
                # The upgrade request itself is in `ready`, marked to close the connection.
                connection.discarding = True
            except httptools.HttpParserError as exc:
                request = connection.current or _Request()
                refused = request.refused or _Refused(400, f"malformed HTTP request ({exc})")
                self.refuse_current(connection, request, refused)
        if not connection.ready:
            return
        with connection.lock:
            waiting = connection.busy or len(connection.out) > MAX_UNSENT_BYTES
            if waiting:
                # Answering goes on when the pool thread is done, or the client has read.
                if len(connection.ready) >= MAX_PIPELINED:
                    connection.paused = True
                    self.unwatch(connection)
                return
            connection.busy = True
        self.jobs.put(connection)

    def refuse_current(self, connection: _Connection, request: _Request, refused: _Refused) -> None:
        """Answer the request being read with ``refused``, then close; drop further input."""
        request.refused = refused
        request.close_after = True
        connection.current = None
        connection.in_head = False
        connection.discarding = True
        connection.ready.append(request)

    def send_continue(self, connection: _Connection) -> None:
        """Answer ``Expect: 100-continue`` so the client sends the body.

        Only while no answer is due on the connection: the line must not land before or inside
        an earlier request's answer. Otherwise it is left out, which RFC 9110 allows (clients
        send the body after a short wait).
        """
        with connection.lock:
            if connection.busy or connection.ready or connection.out:
                return
            # A failure here shows when the answer is written.
            with contextlib.suppress(OSError):
                connection.sock.send(b"HTTP/1.1 100 Continue\r\n\r\n")

    def sweep(self, now: float, stopping_since: float | None) -> None:
        """Close connections that lingered, idled or stalled too long; time out slow requests."""
        keepalive = self.cfg.keepalive
        for connection in list(self.connections):
            if connection.busy:
                continue
            if connection.out:
                if now - connection.write_progress > SEND_TIMEOUT_S:
                    self.close(connection)  # the client has not read anything for too long
                continue
            if connection.ready:
                continue
            deadline = connection.closing_deadline
            if deadline is not None:
                if now >= deadline:
                    self.close(connection)
                continue
            current = connection.current
            if current is not None and not connection.discarding:
                if connection.in_head:
                    late = now - connection.head_started > HEAD_TIMEOUT_S
                    what = f"the request head did not arrive within {HEAD_TIMEOUT_S:g} s"
                else:
                    allowed = BODY_GRACE_S + current.size / MIN_BODY_RATE
                    late = now - connection.body_started > allowed
                    what = f"the request body arrived slower than {MIN_BODY_RATE} bytes/s"
                if late:
                    self.refuse_current(connection, current, _Refused(408, what))
                    self.feed(connection, b"")
                    continue
            idle = now - connection.last_active
            if idle > keepalive or (
                # Stopping: an idle connection, or a request that stopped arriving, waits a
                # moment for bytes already on the way; a request still arriving may finish.
                stopping_since is not None
                and now - max(stopping_since, connection.last_active) >= STOP_LINGER_S
            ):
                self.close(connection)

    def close(self, connection: _Connection) -> None:
        """Forget a connection and close its socket (the main thread only)."""
        if connection not in self.connections:
            return
        connection.reading = connection.writing = False
        self.update(connection)
        self.connections.discard(connection)
        with connection.lock:
            held = [connection.current, *connection.ready]
            connection.ready.clear()
            connection.current = None
        self.release(held)
        with contextlib.suppress(OSError):
            connection.sock.close()

    def linger(self, connection: _Connection) -> None:
        """Stop sending, and drop the client's input until it closes, for at most ``LINGER_S``."""
        connection.closing_deadline = time.monotonic() + LINGER_S
        with contextlib.suppress(OSError):
            connection.sock.shutdown(socket.SHUT_WR)

    def wake(self) -> None:
        """Wake the main thread from its selector wait."""
        # A full pipe means the main thread is about to wake anyway.
        with contextlib.suppress(OSError):
            os.write(self.PIPE[1], b"\0")

    # --- pool threads ----------------------------------------------------------------------------

    def answer_loop(self) -> None:
        """Take a connection with ready requests and answer them in order."""
        while True:
            connection = self.jobs.get()
            if connection is None:
                return
            try:
                self.serve(connection)
            except BaseException:
                # Never lose a pool thread (or leave a connection busy forever) to a bug.
                self.log.exception("Error answering on a connection; closing it")
                with connection.lock:
                    dropped = list(connection.ready)
                    connection.ready.clear()
                    connection.busy = False
                    eof = connection.eof
                self.release(dropped)
                self.finish(connection, eof)

    def serve(self, connection: _Connection) -> None:
        """Answer every ready request of a connection, in order, then give it back.

        It stops early while the client leaves more than ``MAX_UNSENT_BYTES`` of answers
        untaken; the main thread hands the connection back once the client has read them. While
        other connections wait for a pool thread, it answers one request at a time and then
        queues the connection behind them, so a pipelining client cannot starve the others.
        """
        while True:
            with connection.lock:
                if not connection.ready or len(connection.out) > MAX_UNSENT_BYTES:
                    connection.busy = False
                    # Idle from now on: a long request does not count against the keep-alive.
                    connection.last_active = time.monotonic()
                    eof, paused = connection.eof, connection.paused
                    if eof and connection.out:
                        connection.after_flush = "close"
                        eof = False  # closed by the main thread once the client has it all
                    break
                request = connection.ready.popleft()
            try:
                keep = self.answer(connection, request)
            except OSError:
                keep = False  # the client went away
            finally:
                if request.reserved:
                    self.release((request,))
            self.count_request()
            if keep and connection.ready and not self.jobs.empty():
                self.jobs.put(connection)  # still busy: whichever thread takes it goes on
                return
            if not keep:
                with connection.lock:
                    dropped = list(connection.ready)
                    connection.ready.clear()
                    connection.busy = False
                    eof = connection.eof
                self.release(dropped)
                self.finish(connection, eof)
                return
        if eof:
            self.closing.put(connection)  # the main thread saw the end and stopped watching
            self.wake()
        elif paused:
            self.resumed.put(connection)
            self.wake()

    def finish(self, connection: _Connection, eof: bool) -> None:
        """After the last answer on a connection: stop sending; close it or let it linger.

        Closing a socket with unread input makes the kernel send a reset, which can destroy
        the answer before the client reads it; so unless the client has closed already, the
        main thread drops its input until it closes, for at most ``LINGER_S``. Answer bytes
        the client has not taken yet go first.
        """
        connection.discarding = True
        with connection.lock:
            if connection.out and not connection.broken:
                connection.after_flush = "close" if eof else "finish"
                return
        if eof or connection.broken:
            self.closing.put(connection)
            self.wake()
            return
        self.linger(connection)

    def count_request(self) -> None:
        """Count an answered request; past ``max_requests`` the worker stops (and is replaced)."""
        self.handled += 1
        if self.handled >= self.max_requests and self.alive:
            self.log.info("Autorestarting worker after current request.")
            self.alive = False
            self.wake()

    def answer(self, connection: _Connection, request: _Request) -> bool:
        """Answer one request. Returns whether the connection stays open.

        Raises:
            OSError: the client went away, or did not take the answer in time.
        """
        keep = request.keep_alive and not request.close_after and self.cfg.keepalive > 0
        if request.refused is None:
            try:
                code, status, headers, body = self.call_application(connection, request)
            except BaseException:  # even SystemExit from a model: answer, keep the thread
                path = request.target.partition(b"?")[0][:200].decode("latin-1")
                self.log.exception("Error handling %s %s", request.method, path)
                request.refused = _Refused(500, "internal server error; see the server log")
        if request.refused is not None:
            code = request.refused.status
            status, body = self.refusal(request.refused)
            headers = [
                (b"Content-Type", b"application/json"),
                (b"Content-Length", str(len(body)).encode("ascii")),
            ]
            if code == 503:
                headers.append((b"Retry-After", b"1"))
            keep = False
        if request.reserved:
            # Answered: its body is no longer needed (freed before the client can see it).
            self.release((request,))
        no_body = request.method == "HEAD" or code in _NO_BODY_STATUSES or code < 200
        # Decided after the application ran: a worker told to stop meanwhile closes.
        head = self.head(status, headers, keep and self.alive)
        self.send(connection, head if no_body else head + body)
        return keep and self.alive

    def call_application(
        self, connection: _Connection, request: _Request
    ) -> tuple[int, bytes, list[tuple[bytes, bytes]], bytes]:
        """Run the WSGI application: its status code and line, headers and body.

        Content-Length is added where the application left it out and the answer has a body.
        """
        started: list[Any] = []

        def start_response(
            status: str, headers: list[tuple[str, str]], exc_info: Any = None
        ) -> Callable[[bytes], None]:
            # Nothing is sent before the application returns, so an error page may always
            # replace what was started (PEP 3333).
            started[:] = [status, headers]
            return written.append

        written: list[bytes] = []
        result = self.wsgi(self.environ(connection, request), start_response)
        try:
            if isinstance(result, list) and len(result) == 1 and not written:
                body = result[0]
            else:
                written.extend(result)
                body = b"".join(written)
        finally:
            close = getattr(result, "close", None)
            if close is not None:
                close()
        if not started:
            raise RuntimeError("the application did not call start_response")
        status, app_headers = started
        code = int(status[:3])
        headers: list[tuple[bytes, bytes]] = []
        has_length = False
        for name, value in app_headers:
            key = name.encode("latin-1")
            lower = key.lower()
            if lower in _HOP_BY_HOP:
                continue  # the worker alone decides how the connection goes on
            has_length = has_length or lower == b"content-length"
            headers.append((key, value.encode("latin-1")))
        if not has_length and code not in _NO_BODY_STATUSES and code >= 200:
            headers.append((b"Content-Length", str(len(body)).encode("ascii")))
        return code, status.encode("latin-1"), headers, body

    def refusal(self, refused: _Refused) -> tuple[bytes, bytes]:
        """The status line and JSON body of an answer the worker gives itself."""
        reason = _REASONS.get(refused.status, "Error")
        body = json.dumps({"error": refused.message}).encode()
        return f"{refused.status} {reason}".encode("ascii"), body

    def head(self, status: bytes, headers: list[tuple[bytes, bytes]], keep: bool) -> bytes:
        """The status line and headers of an answer, with Date and Connection added."""
        second = int(time.time())
        if second != self.date_second:
            self.date = _http_date()
            self.date_second = second
        parts = [b"HTTP/1.1 ", status, b"\r\n"]
        for name, value in headers:
            parts += (name, b": ", value, b"\r\n")
        parts += (b"Date: ", self.date, b"\r\n")
        parts.append(b"Connection: keep-alive\r\n\r\n" if keep else b"Connection: close\r\n\r\n")
        return b"".join(parts)

    def send(self, connection: _Connection, data: bytes) -> None:
        """Send ``data``, or as much as the client takes now; the main thread sends the rest.

        Raises:
            OSError: the client is gone.
        """
        with connection.lock:
            if connection.broken:
                raise ConnectionResetError("the client is gone")
            if not connection.out:
                try:
                    sent = connection.sock.send(data)
                except (BlockingIOError, InterruptedError):
                    sent = 0
                if sent == len(data):
                    return
                data = data[sent:]
                connection.write_progress = time.monotonic()
            connection.out += data
            if connection.flushing:
                return
            connection.flushing = True
        self.unsent.put(connection)
        self.wake()

    def environ(self, connection: _Connection, request: _Request) -> dict[str, Any]:
        """The WSGI environment of a request (PEP 3333)."""
        target = request.target
        if target[:1] != b"/" and target != b"*":
            # absolute-form ("http://host/path"): keep the path only
            try:
                target = b"/" + target.split(b"://", 1)[1].split(b"/", 1)[1]
            except IndexError:
                target = b"/"
        path, _, query = target.partition(b"?")
        path = path.partition(b"#")[0]
        if b"%" in path:
            path = unquote_to_bytes(path)
        server = connection.server
        client = connection.client
        environ: dict[str, Any] = {
            "REQUEST_METHOD": request.method,
            "SCRIPT_NAME": "",
            "PATH_INFO": path.decode("latin-1"),
            "QUERY_STRING": query.decode("latin-1"),
            "RAW_URI": request.target.decode("latin-1"),
            "REQUEST_URI": request.target.decode("latin-1"),
            "SERVER_PROTOCOL": f"HTTP/{request.version}",
            "SERVER_NAME": str(server[0]) if isinstance(server, tuple) else "localhost",
            "SERVER_PORT": str(server[1]) if isinstance(server, tuple) else "",
            "REMOTE_ADDR": str(client[0]) if isinstance(client, tuple) else "",
            "REMOTE_PORT": str(client[1]) if isinstance(client, tuple) else "",
            "wsgi.version": (1, 0),
            "wsgi.url_scheme": "http",
            "wsgi.input": io.BytesIO(b"".join(request.body) if request.body else b""),
            "wsgi.input_terminated": True,
            "wsgi.errors": sys.stderr,
            "wsgi.multithread": True,
            "wsgi.multiprocess": self.cfg.workers > 1,
            "wsgi.run_once": False,
        }
        if request.content_length is not None:
            environ["CONTENT_LENGTH"] = str(request.content_length)
        for name, value in request.headers:
            key = _CGI_NAMES.get(name)
            if key is None:
                key = _cgi_name(name)
            text = value.decode("latin-1")
            if key in environ and key.startswith("HTTP_"):
                environ[key] += "," + text
            elif key != "CONTENT_LENGTH":
                environ[key] = text
        return environ


def _cgi_name(name: bytes) -> str:
    upper = name.decode("latin-1").upper().replace("-", "_")
    key = upper if upper in ("CONTENT_TYPE", "CONTENT_LENGTH") else "HTTP_" + upper
    if len(_CGI_NAMES) < 1024:
        _CGI_NAMES[name] = key
    return key


_CGI_NAMES: dict[bytes, str] = {}
