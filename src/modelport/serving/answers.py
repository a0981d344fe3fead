"""The server's error answers and status lines, built in one place.

Each protocol the server speaks answers an error in its own shape, so that every client raises
its proper exception instead of failing to read the body (:func:`error_body`):

- MLflow and SageMaker (``/invocations``, ``/ping``, ``/health``, ``/version``):
  ``{"error_code": "BAD_REQUEST", "message": "..."}``, MLflow's error codes;
- the Open Inference Protocol (``/v2...``): ``{"error": "..."}``;
- Vertex AI (``$AIP_PREDICT_ROUTE``, ``$AIP_HEALTH_ROUTE``): Google's
  ``{"error": {"code": 400, "message": "...", "status": "INVALID_ARGUMENT"}}``;
- Azure ML (``/``, ``/score``): ``{"message": "..."}``;
- anything else (``/metrics``, ``/openapi.json``, paths no route serves): ``{"error": "..."}``.

Every status line comes from :class:`http.HTTPStatus`. The worker (answers it gives itself:
malformed requests, limits, timeouts) and the application build their error answers here; the
worker learns which protocol a path speaks from the application (:func:`protocol_finder`).
"""

from __future__ import annotations

from collections.abc import Callable
from enum import Enum
from http import HTTPStatus

import orjson

#: The key of ``app.extensions`` under which a modelport application keeps its
#: :class:`~modelport.serving.app.Endpoints` (whose ``protocol_of`` maps a path to its protocol).
ENDPOINTS_EXTENSION = "modelport.endpoints"


class Protocol(Enum):
    """The protocol a route speaks, which decides the shape of its error answers."""

    #: MLflow's scoring server and SageMaker's container contract.
    MLFLOW = "mlflow"
    #: The Open Inference Protocol (KServe V2).
    V2 = "v2"
    #: Vertex AI's custom-container contract (Google's error shape).
    VERTEX = "vertex"
    #: Azure ML's inference server.
    AZURE = "azure"
    #: Everything else: ``/metrics``, ``/openapi.json``, paths no route serves.
    PLAIN = "plain"


#: MLflow's ``error_code`` of a status (mlflow.protos.databricks_pb2.ErrorCode names).
_MLFLOW_CODES: dict[int, str] = {
    400: "BAD_REQUEST",
    404: "ENDPOINT_NOT_FOUND",
    405: "BAD_REQUEST",
    406: "BAD_REQUEST",
    408: "BAD_REQUEST",
    413: "REQUEST_LIMIT_EXCEEDED",
    414: "REQUEST_LIMIT_EXCEEDED",
    415: "BAD_REQUEST",
    431: "REQUEST_LIMIT_EXCEEDED",
    500: "INTERNAL_ERROR",
    503: "TEMPORARILY_UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}
#: The google.rpc.Code name of a status, as Google's APIs answer it.
_GOOGLE_CODES: dict[int, str] = {
    400: "INVALID_ARGUMENT",
    404: "NOT_FOUND",
    405: "UNIMPLEMENTED",
    406: "INVALID_ARGUMENT",
    408: "DEADLINE_EXCEEDED",
    413: "INVALID_ARGUMENT",
    414: "INVALID_ARGUMENT",
    415: "INVALID_ARGUMENT",
    431: "INVALID_ARGUMENT",
    500: "INTERNAL",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}

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


def mlflow_error_code(status: int) -> str:
    """MLflow's ``error_code`` for an HTTP status (``BAD_REQUEST``, ``INTERNAL_ERROR``, ...)."""
    code = _MLFLOW_CODES.get(status)
    if code is None:
        code = "INTERNAL_ERROR" if status >= 500 else "BAD_REQUEST"
    return code


def google_status(status: int) -> str:
    """The google.rpc.Code name for an HTTP status (``INVALID_ARGUMENT``, ``UNAVAILABLE``, ...)."""
    code = _GOOGLE_CODES.get(status)
    if code is None:
        code = "INTERNAL" if status >= 500 else "INVALID_ARGUMENT" if status >= 400 else "UNKNOWN"
    return code


def error_body(protocol: Protocol, status: int, message: str) -> bytes:
    """The JSON body of an error answer with ``status`` and ``message``, in ``protocol``'s shape.

    Args:
        protocol: the protocol of the route the request was for.
        status: the answer's HTTP status.
        message: what went wrong; never anything of the request's data.
    """
    if protocol is Protocol.MLFLOW:
        value: object = {"error_code": mlflow_error_code(status), "message": message}
    elif protocol is Protocol.VERTEX:
        value = {"error": {"code": status, "message": message, "status": google_status(status)}}
    elif protocol is Protocol.AZURE:
        value = {"message": message}
    else:
        value = {"error": message}
    return orjson.dumps(value)


#: What a 503 adds: try again in a second (every overloaded or not-ready answer says so).
RETRY_AFTER = ("Retry-After", "1")


def error_headers(code: int, body: bytes) -> list[tuple[bytes, bytes]]:
    """The headers of an error answer with ``body``: JSON, its length, and a retry hint on 503."""
    headers = [
        (b"Content-Type", b"application/json"),
        (b"Content-Length", str(len(body)).encode("ascii")),
    ]
    if code == HTTPStatus.SERVICE_UNAVAILABLE:
        headers.append((RETRY_AFTER[0].encode(), RETRY_AFTER[1].encode()))
    return headers


def _plain(path: str) -> Protocol:
    return Protocol.PLAIN


def protocol_finder(app: object) -> Callable[[str], Protocol]:
    """How a WSGI application maps a request path to its :class:`Protocol`.

    A modelport application knows (its routes, Vertex AI's from the configuration included);
    for any other application every path is :attr:`Protocol.PLAIN`.
    """
    extensions = getattr(app, "extensions", None)
    endpoints = extensions.get(ENDPOINTS_EXTENSION) if isinstance(extensions, dict) else None
    protocol_of = getattr(endpoints, "protocol_of", None)
    return protocol_of if callable(protocol_of) else _plain
