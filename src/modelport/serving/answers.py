"""The server's error answers and status lines, built in one place.

Every protocol the server speaks answers an error the same way, ``{"error": "<message>"}`` (the
Open Inference Protocol's shape, which the other routes share), and every status line comes
from :class:`http.HTTPStatus`. The worker (answers it gives itself: malformed requests, limits,
timeouts), the application and every protocol build their error answers here.
"""

from __future__ import annotations

from http import HTTPStatus

import orjson

_STATUS_LINES: dict[int, bytes] = {
    status.value: f"{status.value} {status.phrase}".encode("ascii") for status in HTTPStatus
}

_WSGI_STATUSES: dict[int, str] = {
    code: line.decode("ascii") for code, line in _STATUS_LINES.items()
}


def status_line(code: int) -> bytes:
    """``b"404 Not Found"``: the status code and its reason phrase (RFC 9110)."""
    line = _STATUS_LINES.get(code)
    return line if line is not None else str(code).encode("ascii") + b" Unknown"


def wsgi_status(code: int) -> str:
    """``"404 Not Found"``: :func:`status_line` as the ``str`` a WSGI application hands on."""
    status = _WSGI_STATUSES.get(code)
    return status if status is not None else status_line(code).decode("ascii")


def error_body(message: str) -> bytes:
    """The JSON body of an error answer: ``{"error": message}``."""
    return orjson.dumps({"error": message})


def error_headers(code: int, body: bytes) -> list[tuple[bytes, bytes]]:
    """The headers of an error answer with ``body``: JSON, its length, and a retry hint on 503."""
    headers = [
        (b"Content-Type", b"application/json"),
        (b"Content-Length", str(len(body)).encode("ascii")),
    ]
    if code == HTTPStatus.SERVICE_UNAVAILABLE:
        headers.append((b"Retry-After", b"1"))
    return headers
