"""One client connection: its state, the httptools parser's callbacks, and its send buffer.

The main thread reads and parses (the callbacks below fill in :class:`Request` objects and
queue them in ``ready``); a pool thread answers through :meth:`Connection.send`, and what the
client does not take at once waits in ``out`` for the main thread's :meth:`Connection.flush`.
"""

from __future__ import annotations

import contextlib
import re
import socket
import threading
import time
from collections import deque
from typing import TYPE_CHECKING, Any

import httptools

from modelport.serving.worker.limits import LINGER_S, MAX_HEAD_BYTES, SMALL_BODY_BYTES
from modelport.serving.worker.request import Refused, Request

if TYPE_CHECKING:
    from modelport.serving.worker.loop import ModelportWorker

#: RFC 9110's Host value: uri-host [ ":" port ], where uri-host is an IP literal or a reg-name.
_VALID_HOST = re.compile(rb"(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9\-._~!$&'()*+,;=%]*)(?::[0-9]*)?")


class Connection:
    """One client connection; also the httptools parser's callback object.

    Fields marked "main thread only" are read and written by the worker's main thread alone;
    the others that both threads use are guarded by ``lock``.
    """

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
        self.ready: deque[Request] = deque()
        #: the request httptools is filling in
        self.current: Request | None = None
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
        #: answer bytes the client has not taken yet, sent by the main thread as it can; the
        #: main thread is told (through ``unsent``) each time it stops being empty
        self.out = bytearray()
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

    # --- reading (main thread) -------------------------------------------------------------------

    def parse(self, data: bytes) -> None:
        """Parse what arrived; complete requests land in ``ready`` (refusals too)."""
        try:
            self.parser.feed_data(data)
            if self.in_head:
                self.head_bytes += len(data)
                if self.head_bytes > MAX_HEAD_BYTES:
                    raise httptools.HttpParserError(
                        self.refuse(431, "the request head is too large")
                    )
        except httptools.HttpParserUpgrade:
            # The upgrade request itself is in `ready`, marked to close the connection.
            self.discarding = True
        except httptools.HttpParserError as exc:
            request = self.current or Request()
            refused = request.refused or Refused(400, f"malformed HTTP request ({exc})")
            self.refuse_current(request, refused)

    def refuse(self, status: int, message: str) -> Refused:
        """Mark the request being read as refused with ``status``; returns the refusal to raise."""
        refused = Refused(status, message)
        if self.current is not None:
            self.current.refused = refused
            with contextlib.suppress(httptools.HttpParserError):
                # Known once the request line is read; a refused HEAD gets no body either.
                self.current.method = self.parser.get_method().decode("ascii")
        return refused

    def refuse_current(self, request: Request, refused: Refused) -> None:
        """Answer the request being read with ``refused``, then close; drop further input."""
        request.refused = refused
        self.in_head = False
        self._finish_early(request)

    def _finish_early(self, request: Request) -> None:
        request.close_after = True
        self.current = None
        self.discarding = True
        self.ready.append(request)

    # --- httptools callbacks (main thread) -------------------------------------------------------

    def on_message_begin(self) -> None:
        """A request's first byte: start a new one (unless the input is being dropped)."""
        if self.discarding:
            return
        self.current = Request()
        self.fields = 0
        self.in_head = True
        self.head_bytes = 0
        self.head_started = self.last_active

    def on_url(self, url: bytes) -> None:
        """A piece of the request target (414 past ``limit_request_line``)."""
        if self.current is None:
            return
        self.current.target += url
        if len(self.current.target) > self.worker.limit_line:
            raise self.refuse(414, "the request target is too long")

    def on_header(self, name: bytes, value: bytes) -> None:
        """One header field (431 past the field count or size limits)."""
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
        """The head is in: check Host, take the length, decide whether the body is read."""
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
        elif length and length > SMALL_BODY_BYTES and not worker.budget.reserve(request, length):
            # Never read: the worker holds as many request bytes as it may.
            self.refuse(503, "the server is busy with other large requests; retry shortly")
            self._finish_early(request)
        elif request.expect_continue:
            self.send_continue()
        if parser.should_upgrade():
            # Protocol upgrades are not served: answer the request, then close.
            request.close_after = True

    def on_body(self, body: bytes) -> None:
        """A piece of the body (past ``max_body`` the rest is not read; the app says 413)."""
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
            and not self.worker.budget.reserve(request, len(body))
        ):
            self.refuse(503, "the server is busy with other large requests; retry shortly")
            self._finish_early(request)

    def on_message_complete(self) -> None:
        """The request is complete: queue it to be answered."""
        request = self.current
        if request is None:
            return
        self.current = None
        self.ready.append(request)

    # --- sending ---------------------------------------------------------------------------------

    def send_continue(self) -> None:
        """Answer ``Expect: 100-continue`` so the client sends the body (main thread).

        Only while no answer is due on the connection: the line must not land before or inside
        an earlier request's answer. Otherwise it is left out, which RFC 9110 allows (clients
        send the body after a short wait).
        """
        with self.lock:
            if self.busy or self.ready or self.out:
                return
            # A failure here shows when the answer is written.
            with contextlib.suppress(OSError):
                self.sock.send(b"HTTP/1.1 100 Continue\r\n\r\n")

    def send(self, data: bytes) -> None:
        """Send ``data``, or as much as the client takes now; the main thread sends the rest.

        Called by the pool thread answering; it never blocks on a slow client.

        Raises:
            OSError: the client is gone.
        """
        with self.lock:
            if self.broken:
                raise ConnectionResetError("the client is gone")
            if self.out:
                self.out += data  # the main thread, told already, sends it after the rest
                return
            try:
                sent = self.sock.send(data)
            except (BlockingIOError, InterruptedError):
                sent = 0
            if sent == len(data):
                return
            self.out += data[sent:]
            self.write_progress = time.monotonic()
        worker = self.worker
        worker.unsent.put(self)
        worker.wake()

    def flush(self) -> tuple[str | None, bool] | None:
        """Send what waits in ``out`` as far as the client takes it (main thread).

        Returns:
            None while bytes remain; once all went, what was to happen then (``after_flush``:
            "finish", "close" or None) and whether a pool thread still owns the connection.
        """
        with self.lock:
            out = self.out
            try:
                sent = self.sock.send(out) if out else 0
            except (BlockingIOError, InterruptedError):
                sent = 0
            except OSError:
                self.broken = True  # the pool thread, if busy, sees it on its next send
                out.clear()
                sent = 0
            if sent:
                del out[:sent]
                self.write_progress = time.monotonic()
            if out:
                return None
            self.writing = False
            action, self.after_flush = self.after_flush, None
            return action, self.busy

    def linger(self) -> None:
        """Stop sending, and drop the client's input until it closes, for at most ``LINGER_S``."""
        self.closing_deadline = time.monotonic() + LINGER_S
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_WR)
