"""What the tests' hand-written HTTP fakes share (Azure's ARM, Vertex's REST, WebHDFS).

Imported by module name (``from http_fakes import read_body``): ``tests`` is on ``sys.path``.
"""

from __future__ import annotations

import http.server


def read_body(handler: http.server.BaseHTTPRequestHandler) -> bytes:
    """A request's body: by ``Content-Length``, or chunk by chunk (``Transfer-Encoding:
    chunked``, what requests and azure-core send for a streamed upload)."""
    if "chunked" in (handler.headers.get("Transfer-Encoding") or "").lower():
        chunks = []
        while True:
            size = int(handler.rfile.readline().split(b";")[0].strip() or b"0", 16)
            if size == 0:
                while handler.rfile.readline() not in (b"\r\n", b"\n", b""):
                    pass
                return b"".join(chunks)
            chunks.append(handler.rfile.read(size))
            handler.rfile.readline()
    length = int(handler.headers.get("Content-Length") or 0)
    return handler.rfile.read(length) if length else b""
