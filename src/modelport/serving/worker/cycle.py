"""The request cycle: one request answered by the WSGI application, on a pool thread.

It builds the WSGI environment (PEP 3333), runs the application with a ``start_response``,
and turns what it returned into the bytes of the answer (status line, headers with Date and
Connection, body), which go out through the connection's send buffer. Requests the worker
refuses itself are answered here too, with :mod:`modelport.serving.answers`, in the error shape
of the protocol the request's path speaks (the application says which).
"""

from __future__ import annotations

import io
import sys
import time
from collections.abc import Callable
from email.utils import formatdate
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote_to_bytes

from modelport.serving.answers import (
    Protocol,
    error_body,
    error_headers,
    protocol_finder,
    status_line,
)
from modelport.serving.worker.request import Refused, Request

if TYPE_CHECKING:
    from modelport.serving.worker.connection import Connection
    from modelport.serving.worker.loop import ModelportWorker

_NO_BODY_STATUSES = frozenset({204, 304})
_HOP_BY_HOP = frozenset({b"connection", b"keep-alive", b"transfer-encoding", b"upgrade"})


def _http_date() -> bytes:
    return formatdate(usegmt=True).encode("ascii")


class RequestCycle:
    """Answers requests with a worker's WSGI application; one per worker, shared by its pool.

    It holds nothing of any one request (that is the :class:`Request`), so pool threads share
    it without locks; the cached Date value may be written by two threads at once, harmlessly.
    """

    def __init__(self, worker: ModelportWorker) -> None:
        self.worker = worker
        self.wsgi: Callable[..., Any] = worker.wsgi
        #: the protocol of a path (the shape of the worker's own error answers)
        self.protocol_of = protocol_finder(worker.wsgi)
        self.log = worker.log
        self.release = worker.budget.release
        #: the worker keeps connections alive at all (gunicorn's ``keepalive`` > 0)
        self.keepalive: bool = worker.cfg.keepalive > 0
        self.multiprocess: bool = worker.cfg.workers > 1
        self.date = b""
        self.date_second = -1

    def answer(self, connection: Connection, request: Request) -> bool:
        """Answer one request. Returns whether the connection stays open.

        Raises:
            OSError: the client went away, or did not take the answer in time.
        """
        keep = request.keep_alive and not request.close_after and self.keepalive
        if request.refused is None:
            try:
                code, status, headers, body = self.call_application(connection, request)
            except BaseException:  # even SystemExit from a model: answer, keep the thread
                path = request.target.partition(b"?")[0][:200].decode("latin-1")
                self.log.exception("Error handling %s %s", request.method, path)
                request.refused = Refused(500, "internal server error; see the server log")
        if request.refused is not None:
            code = request.refused.status
            status = status_line(code)
            body = error_body(self.refusal_protocol(request), code, request.refused.message)
            headers = error_headers(code, body)
            keep = False
        if request.reserved:
            # Answered: its body is no longer needed (freed before the client can see it).
            self.release((request,))
        no_body = request.method == "HEAD" or code in _NO_BODY_STATUSES or code < 200
        # Decided after the application ran: a worker told to stop meanwhile closes.
        keep = keep and self.worker.alive
        head = self.head(status, headers, keep)
        connection.send(head if no_body else head + body)
        return keep

    def refusal_protocol(self, request: Request) -> Protocol:
        """The protocol of a refused request's path; PLAIN when none was read (or garbage)."""
        target = request.target
        if target[:1] != b"/" and b"://" not in target:
            return Protocol.PLAIN
        return self.protocol_of(split_target(target)[0].decode("latin-1"))

    def call_application(
        self, connection: Connection, request: Request
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

    def environ(self, connection: Connection, request: Request) -> dict[str, Any]:
        """The WSGI environment of a request (PEP 3333)."""
        path, query = split_target(request.target)
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
            "wsgi.multiprocess": self.multiprocess,
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


def split_target(target: bytes) -> tuple[bytes, bytes]:
    """A request target's path (percent-decoded) and query, as WSGI's PATH_INFO and QUERY_STRING.

    The absolute form (``http://host/path``) keeps its path only; a fragment is dropped.
    """
    if target[:1] != b"/" and target != b"*":
        try:
            target = b"/" + target.split(b"://", 1)[1].split(b"/", 1)[1]
        except IndexError:
            target = b"/"
    path, _, query = target.partition(b"?")
    path = path.partition(b"#")[0]
    if b"%" in path:
        path = unquote_to_bytes(path)
    return path, query


def _cgi_name(name: bytes) -> str:
    upper = name.decode("latin-1").upper().replace("-", "_")
    key = upper if upper in ("CONTENT_TYPE", "CONTENT_LENGTH") else "HTTP_" + upper
    if len(_CGI_NAMES) < 1024:
        _CGI_NAMES[name] = key
    return key


_CGI_NAMES: dict[bytes, str] = {}
