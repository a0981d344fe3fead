"""A tiny fake of Vertex AI's front (``{location}-aiplatform.googleapis.com``) on 127.0.0.1.

It answers the two calls the Vertex SDK makes for ``aiplatform.Endpoint(name).predict(...)`` over
REST: ``GET /v1/{endpoint}`` (the SDK reads the endpoint resource) and
``POST /v1/{endpoint}:predict``, whose body it forwards as is to the model container's
``$AIP_PREDICT_ROUTE`` (a real ``modelport serve``), as Vertex does. The container's answer comes
back with ``deployedModelId`` added; an error answer is passed through with its status and body,
so the SDK parses the container's own Google-style error. Anything else is a Google-style 404.

Every request is recorded (method, path, headers, body) so a test can check what the SDK sent.
"""

from __future__ import annotations

import http.client
import json
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

DEPLOYED_MODEL_ID = "4242"


@dataclass(frozen=True)
class Container:
    """Where the front sends an endpoint's predictions: a model server and its predict route."""

    url: str  # http://127.0.0.1:PORT
    predict_route: str  # the container's $AIP_PREDICT_ROUTE


@dataclass(frozen=True)
class Seen:
    """One request the fake received."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes


def _google_error(status: int, message: str, code_name: str) -> bytes:
    return json.dumps({"error": {"code": status, "message": message, "status": code_name}}).encode()


def forward(container: Container, body: bytes) -> tuple[int, bytes, str]:
    """POST ``body`` to the container's predict route: (status, body, Content-Type)."""
    parts = urlsplit(container.url)
    conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=30)
    try:
        conn.request(
            "POST",
            container.predict_route,
            body=body,
            headers={"Content-Type": "application/json"},
        )
        resp = conn.getresponse()
        return resp.status, resp.read(), resp.getheader("Content-Type") or "application/json"
    finally:
        conn.close()


@dataclass
class VertexFront:
    """The fake front, serving ``endpoints`` (``projects/p/locations/l/endpoints/123`` -> its
    container)."""

    endpoints: Mapping[str, Container]
    seen: list[Seen] = field(default_factory=list)
    _server: ThreadingHTTPServer | None = field(default=None, repr=False)
    _thread: threading.Thread | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> VertexFront:
        front = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass  # quiet: a test asserts on `seen` instead

            def _record(self) -> bytes:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                headers = {k.lower(): v for k, v in self.headers.items()}
                front.seen.append(Seen(self.command, self.path, headers, body))
                return body

            def _send(self, status: int, body: bytes, content_type: str) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _not_found(self) -> None:
                body = _google_error(404, "not faked here", "NOT_FOUND")
                self._send(404, body, "application/json")

            def do_GET(self) -> None:
                self._record()
                name = urlsplit(self.path).path.removeprefix("/v1/")
                if name not in front.endpoints:
                    self._not_found()
                    return
                resource = {
                    "name": name,
                    "displayName": "modelport-under-test",
                    "deployedModels": [{"id": DEPLOYED_MODEL_ID, "model": name + "-model"}],
                    "trafficSplit": {DEPLOYED_MODEL_ID: 100},
                }
                self._send(200, json.dumps(resource).encode(), "application/json")

            def do_POST(self) -> None:
                body = self._record()
                path = urlsplit(self.path).path.removeprefix("/v1/")
                name, _, verb = path.rpartition(":")
                if verb != "predict" or name not in front.endpoints:
                    self._not_found()
                    return
                status, answer, content_type = forward(front.endpoints[name], body)
                if status == 200:
                    value = json.loads(answer)
                    value["deployedModelId"] = DEPLOYED_MODEL_ID
                    answer = json.dumps(value).encode()
                self._send(status, answer, content_type)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(10)
            self._thread = None
