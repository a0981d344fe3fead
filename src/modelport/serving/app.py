"""The Flask application: every protocol's routes around one :class:`ModelService`.

| routes | protocol |
|---|---|
| ``GET /ping``, ``POST /invocations`` | SageMaker (and MLflow's scoring formats, CSV) |
| ``GET /health``, ``GET /version`` | MLflow's scoring server (health as ``/ping``; version text) |
| ``/v2/...`` | Open Inference Protocol (KServe V2), JSON and binary tensor data |
| ``$AIP_HEALTH_ROUTE``, ``$AIP_PREDICT_ROUTE`` | Vertex AI |
| ``GET /``, ``POST /score`` | Azure ML |
| ``GET /metrics``, ``GET /openapi.json`` | Prometheus, OpenAPI 3 |

Every view is a method of :class:`Endpoints`, taking the WSGI environ (and the route's variables)
and returning an :class:`Answer`; :data:`ROUTES` says which route each serves. Flask routes every
request but ``POST /invocations``, which the application calls directly: Flask's per-request
machinery costs as much CPU as the prediction on SageMaker's and MLflow's hottest route.

Errors come in the shape of the route's protocol (each :class:`Route` says which; the shapes
are :func:`modelport.serving.answers.error_body`'s), with the status the error's class carries
(:mod:`modelport.errors`); the message never contains a traceback or anything from the request's
data.
"""

from __future__ import annotations

import csv
import io
import logging
import sys
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
from flask import Flask, Response, request
from werkzeug.exceptions import HTTPException, MethodNotAllowed
from werkzeug.wsgi import get_content_length

from modelport import __version__
from modelport.errors import (
    BodyTooLarge,
    InputError,
    ModelNotFound,
    ModelportError,
    NotAcceptable,
    NotReady,
    Overloaded,
    UnsupportedMediaType,
    quote_name,
)
from modelport.model_format import jsontext
from modelport.model_format.payload import (
    Payload,
    answer_outputs,
    check_outputs,
    instances_to_inputs,
    read_payload,
    requested_outputs,
)
from modelport.model_format.signature import JsonBooleans, Signature
from modelport.serving import codec
from modelport.serving.answers import (
    ENDPOINTS_EXTENSION,
    RETRY_AFTER,
    Protocol,
    error_body,
    wsgi_status,
)
from modelport.serving.config import ServeConfig
from modelport.serving.metrics import (
    UNMATCHED_ROUTE,
    Layout,
    WorkerMetrics,
    ready_workers,
    render,
)
from modelport.serving.openapi import document
from modelport.serving.service import ModelService

log = logging.getLogger("modelport.serving")

ROUTE_KEY = "modelport.route"
JSON = "application/json"
CSV = "text/csv"
NPY = "application/x-npy"
OCTET = "application/octet-stream"
#: What ``/invocations`` reads, by media type (JSON types aside): each reader in ``_reader``.
BODY_TYPES: dict[str, str] = {
    CSV: "csv",
    NPY: "npy",
    **dict.fromkeys(codec.JSONLINES_TYPES, "jsonlines"),
    **dict.fromkeys(codec.PARQUET_TYPES, "parquet"),  # x-parquet is MLflow's name for it
}
REQUEST_TYPES = (JSON, *BODY_TYPES)
#: What ``/invocations`` answers, as ``Accept`` asks (the JSON Lines aliases answer as asked).
ANSWER_TYPES = (JSON, CSV, NPY, *codec.JSONLINES_TYPES)
#: The response header naming a table's columns that fed no input (and were ignored).
IGNORED_HEADER = "Modelport-Ignored-Columns"
#: A Parquet body may expand this many times its size limit while read (columnar data
#: compresses well); past that it is refused before it is decoded.
_PARQUET_EXPANSION = 16
_NO_PARAMETERS: dict[str, str] = {}
_ABSENT = JsonBooleans.ABSENT
TEXT_TYPE = "text/plain; charset=utf-8"
PROMETHEUS = "text/plain; version=0.0.4; charset=utf-8"
#: The metrics' error type of an answer werkzeug raises (no route, wrong method, ...): the one
#: modelport's error class of that status carries.
_HTTP_ERROR_TYPES = {
    kind.http_status: kind.error_type
    for kind in (
        InputError,
        ModelNotFound,
        NotAcceptable,
        BodyTooLarge,
        UnsupportedMediaType,
        Overloaded,
    )
} | {405: "method_not_allowed"}
_JSON_TYPES = frozenset({"", JSON, "text/json"})
_VERSION_TEXT = __version__.encode()
#: Short names for the route table below.
MLFLOW, V2, VERTEX, AZURE = Protocol.MLFLOW, Protocol.V2, Protocol.VERTEX, Protocol.AZURE

#: The WSGI environ (PEP 3333: a dict).
Environ = dict[str, Any]


class Answer(NamedTuple):
    """What a view answers: the body, its exact ``Content-Type``, the status, extra headers.

    A named tuple, not a frozen dataclass: made on every request, and made in half the time.
    """

    body: bytes
    content_type: str = JSON
    status: int = 200
    headers: tuple[tuple[str, str], ...] = ()

    def wsgi_headers(self) -> list[tuple[str, str]]:
        """The headers as a WSGI application hands them on (Flask's order: type, length, ...)."""
        return [
            ("Content-Type", self.content_type),
            ("Content-Length", str(len(self.body))),
            *self.headers,
        ]

    def response(self) -> Response:
        """The answer as a Flask response (for the routes Flask dispatches)."""
        response = Response(
            self.body, status=wsgi_status(self.status), content_type=self.content_type
        )
        for name, value in self.headers:
            response.headers[name] = value
        return response


def _is_json(mimetype: str) -> bool:
    return mimetype in _JSON_TYPES or mimetype.endswith("+json")


def _content_type(environ: Environ) -> tuple[str, dict[str, str]]:
    value = environ.get("CONTENT_TYPE")
    if value == JSON:
        return JSON, _NO_PARAMETERS  # the common case, without parsing
    return codec.media_type(value)


def _require_json(environ: Environ) -> None:
    if not _is_json(_content_type(environ)[0]):
        raise UnsupportedMediaType("Content-Type must be application/json")


def negotiate(accept: str | None) -> tuple[str, dict[str, str]]:
    """The answer type an ``Accept`` header asks for on ``/invocations``, with its parameters.

    The highest-quality entry that names a type the server writes (or a wildcard for one)
    wins; among equals, the one first in :data:`ANSWER_TYPES`. Parameters other than ``q``
    are the client's (``text/csv; header=present``) and are kept.

    Raises:
        NotAcceptable: the header allows none of :data:`ANSWER_TYPES`.
    """
    if not accept or accept in ("*/*", JSON):
        return JSON, _NO_PARAMETERS
    best: tuple[str, dict[str, str]] | None = None
    best_q = 0.0
    for part in accept.split(","):
        mimetype, params = codec.media_type(part)
        try:
            q = float(params.pop("q", "1"))
        except ValueError:
            q = 0.0
        if mimetype in ANSWER_TYPES:
            offer = mimetype
        elif mimetype == "*/*":
            offer = JSON
        elif mimetype.endswith("/*"):
            prefix = mimetype[:-1]
            offer = next((t for t in ANSWER_TYPES if t.startswith(prefix)), "")
        else:
            offer = ""
        # Among equally wanted types, the server's order decides (JSON first): SageMaker's
        # Predictor sends "text/csv, application/json" for pandas, which reads JSON whole.
        if offer and (
            q > best_q
            or (best and q == best_q and ANSWER_TYPES.index(offer) < ANSWER_TYPES.index(best[0]))
        ):
            best, best_q = (offer, params), q
    if best is None:
        raise NotAcceptable(f"Accept must allow one of {', '.join(ANSWER_TYPES)}")
    return best


def _header_parameter(params: Mapping[str, str]) -> bool | None:
    """RFC 4180's ``header=present|absent`` parameter of a CSV media type."""
    value = params.get("header")
    if value is None:
        return None
    value = value.lower()
    if value not in ("present", "absent"):
        raise InputError("the text/csv 'header' parameter must be 'present' or 'absent'")
    return value == "present"


def _header_list(names: Iterable[str]) -> str:
    """Names as one header value: comma-separated, each quoted as a CSV cell where needed."""
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="").writerow(names)
    # A header value holds no line break or control character (the names are the client's).
    return "".join(c if c.isprintable() else "?" for c in buffer.getvalue())


def _json(value: Any) -> Answer:
    return Answer(jsontext.dumps(value))


def _predictions(value: Any, outputs: Mapping[str, np.ndarray]) -> Answer:
    """A JSON answer holding ``outputs``: non-finite floats as NaN/Infinity tokens, as the CLI."""
    return Answer(jsontext.dumps_answer(value, outputs))


def azure_inputs(body: Any, signature: Signature, *, strict: bool = False) -> Payload:
    """Azure ML's ``{"input_data": ...}`` (a table, tensors or columns), else any MLflow format."""
    if not isinstance(body, Mapping) or "input_data" not in body:
        return read_payload(body, signature, strict=strict)
    unknown = sorted(str(k) for k in body if k not in ("input_data", "params"))
    if unknown:
        raise InputError("with 'input_data', the only other key allowed is 'params'")
    data = body["input_data"]
    params = {"params": body["params"]} if "params" in body else {}
    if isinstance(data, Mapping) and "columns" in data and "data" in data:
        table = {k: v for k, v in data.items() if k != "index"}
        return read_payload({"dataframe_split": table, **params}, signature, strict=strict)
    return read_payload({"inputs": data, **params}, signature, strict=strict)


def vertex_inputs(body: Any, signature: Signature, *, strict: bool = False) -> Payload:
    """Vertex AI's ``{"instances": [...], "parameters": {...}}``."""
    if not isinstance(body, Mapping) or "instances" not in body:
        raise InputError("the body must be an object with 'instances' (and 'parameters')")
    if any(k not in ("instances", "parameters") for k in body):
        raise InputError("the body may only have the keys 'instances' and 'parameters'")
    outputs = requested_outputs(body.get("parameters"), signature, "parameters")
    return Payload(instances_to_inputs(body["instances"], signature), (), outputs)


def configure_logging() -> None:
    """Send modelport's server log to stderr (gunicorn's own log goes there too)."""
    logger = logging.getLogger("modelport")
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(
            logging.Formatter("[%(asctime)s] [%(process)d] [%(levelname)s] %(message)s")
        )
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)


class Endpoints:
    """Every view of the server, over one :class:`ModelService`.

    A view takes the request's WSGI environ (and its route's variables) and returns an
    :class:`Answer`, or raises; :meth:`error` turns what it raised into the error answer.

    Args:
        config: the server configuration.
        service: the process's model.
        metrics: this worker's metrics.
        metrics_dir: the directory shared by every worker's metrics file (``/metrics`` reads all).
    """

    def __init__(
        self,
        config: ServeConfig,
        service: ModelService,
        metrics: WorkerMetrics,
        metrics_dir: Path,
    ) -> None:
        self.service = service
        self.metrics = metrics
        self.signature = service.signature
        self.max_body = config.max_body_bytes
        self.answer = config.answer
        self.strict = config.strict_inputs
        self._read_json = self._json_reader(read_payload)
        self._read_azure = self._json_reader(azure_inputs)
        self._read_vertex = self._json_reader(vertex_inputs)
        #: what a 413 says, whether this server's check or Flask's refused the body
        self._too_large_message = f"the body is larger than {self.max_body} bytes"
        #: the protocol of each route without variables (Vertex AI's included), for errors
        self._protocols = {r.rule: r.protocol for r in routes(config) if "<" not in r.rule}
        self._metrics_dir = metrics_dir
        self._workers = config.workers
        #: every worker was once seen ready; from then on this worker's own readiness is enough
        self._all_ready = config.workers <= 1
        flavor = service.manifest.flavor
        self._platform = "onnxruntime_onnx" if not flavor.runs_code else f"modelport_{flavor.name}"
        self._openapi = jsontext.dumps(
            document(
                name=service.name,
                version=service.version,
                signature=service.signature,
                health_route=config.health_route,
                predict_route=config.predict_route,
            )
        )

    # --- reading a request ----------------------------------------------------------------------

    def read_body(self, environ: Environ) -> bytes:
        """The request body, decoded of its Content-Encoding; over ``max_body_bytes``, a 413.

        A compressed body's decoded size counts against the limit: a compression bomb is a 413,
        inflated no further than one byte past the limit.
        """
        raw = environ.get("CONTENT_LENGTH")
        if raw and raw.isascii() and raw.isdigit() and "HTTP_TRANSFER_ENCODING" not in environ:
            length: int | None = int(raw)  # the common case, five times faster than werkzeug's
        else:
            length = get_content_length(environ)
        stream = environ["wsgi.input"]
        if length is not None:
            # Refused before a byte of it is read. The worker hands on the whole body.
            if length > self.max_body:
                raise self._too_large()
            body = bytes(stream.read(length))
        else:
            body = self._read_chunked(stream)
        coding = environ.get("HTTP_CONTENT_ENCODING")
        if coding:
            return codec.decompress(body, coding, self.max_body)
        return body

    def _read_chunked(self, stream: Any) -> bytes:
        # A chunked body has no length: read up to one byte past the limit and refuse what is
        # larger (a body cut at the limit could still parse, as CSV does).
        parts: list[bytes] = []
        size = 0
        while size <= self.max_body:
            part = stream.read(min(65536, self.max_body + 1 - size))
            if not part:
                break
            parts.append(part)
            size += len(part)
        if size > self.max_body:
            raise self._too_large()
        return b"".join(parts)

    def _too_large(self) -> BodyTooLarge:
        return BodyTooLarge(self._too_large_message)

    def _predict(
        self, environ: Environ, read: Callable[[bytes], tuple[Payload, JsonBooleans]]
    ) -> tuple[Mapping[str, np.ndarray], Payload]:
        """Read the body with ``read`` once the model is ready, and predict.

        Returns:
            The outputs the answer holds (those asked for, in the server's answer mode), and
            the request's payload.
        """
        found: list[Payload] = []

        def parse() -> tuple[Any, JsonBooleans]:
            payload, booleans = read(self.read_body(environ))
            found.append(payload)
            return payload.inputs, booleans

        outputs = self.service.predict(parse)
        payload = found[0]
        return answer_outputs(outputs, payload.outputs, self.answer), payload

    def _json_reader(
        self, to_payload: Callable[..., Payload]
    ) -> Callable[[bytes], tuple[Payload, JsonBooleans]]:
        """A reader of JSON bodies with ``to_payload(body, signature, strict=...)``."""
        signature, strict = self.signature, self.strict

        def read(body: bytes) -> tuple[Payload, JsonBooleans]:
            value, booleans = jsontext.loads_with_booleans(body)
            return to_payload(value, signature, strict=strict), booleans

        return read

    def _reader(
        self, mimetype: str, params: Mapping[str, str], had_header: list[bool]
    ) -> Callable[[bytes], tuple[Payload, JsonBooleans]]:
        """How ``/invocations`` reads a body of ``mimetype`` into a payload.

        A CSV reader appends to ``had_header`` whether the body had a header row.
        """
        if _is_json(mimetype):
            return self._read_json
        signature, strict = self.signature, self.strict
        kind = BODY_TYPES.get(mimetype)
        # CSV, npy and Parquet values are typed by the body or by their input's dtype:
        # booleans only ever feed boolean inputs, so the JSON rule's walk is not needed.
        if kind == "csv":
            header = _header_parameter(params)

            def read_csv(body: bytes) -> tuple[Payload, JsonBooleans]:
                payload, header_row = codec.parse_csv(body, signature, header=header, strict=strict)
                had_header.append(header_row)
                return payload, _ABSENT

            return read_csv
        if kind == "npy":
            return lambda body: (codec.parse_npy(body, signature, strict=strict), _ABSENT)
        if kind == "jsonlines":
            return lambda body: (
                Payload(instances_to_inputs(codec.parse_jsonlines(body), signature)),
                JsonBooleans.in_text(body),
            )
        if kind == "parquet":
            limit = self.max_body * _PARQUET_EXPANSION
            return lambda body: (
                codec.parse_parquet(body, signature, strict=strict, limit=limit),
                _ABSENT,
            )
        raise UnsupportedMediaType(f"Content-Type must be one of {', '.join(REQUEST_TYPES)}")

    def _check_model(self, model_name: str, model_version: str | None) -> None:
        if model_name != self.service.name:
            raise ModelNotFound(
                f"unknown model {quote_name(model_name)}; this server serves {self.service.name!r}"
            )
        if model_version is not None and model_version != self.service.version:
            raise ModelNotFound(
                f"unknown version of model {self.service.name!r}; "
                f"this server serves {self.service.version!r}"
            )

    # --- SageMaker and MLflow -------------------------------------------------------------------

    def check_ready(self) -> None:
        """Raise :class:`NotReady` until this worker's model is ready, and every worker's was.

        A worker accepts connections while its model loads, so with several workers one that is
        ready must not say so while the next probe could still land on one that is not: a
        server's readiness would flap while it starts (a deployer that saw 200 would then see
        503). Once a worker has seen every worker ready it answers for itself alone, so another
        worker's restart does not make the whole server say 503.
        """
        self.service.check_ready()
        if self._all_ready:
            return
        ready = ready_workers(self._metrics_dir)
        if ready < self._workers:
            raise NotReady(f"the model is ready in {ready} of {self._workers} workers")
        self._all_ready = True

    def ping(self, environ: Environ) -> Answer:
        """``GET /ping``, ``GET /health`` and Vertex AI's health route: 200 once ready."""
        self.check_ready()
        return Answer(b"", TEXT_TYPE)

    def version(self, environ: Environ) -> Answer:
        """``GET /version``: modelport's version as text, as MLflow's server answers its own."""
        return Answer(_VERSION_TEXT, TEXT_TYPE)

    def invocations(self, environ: Environ) -> Answer:
        """``POST /invocations``: every body type SageMaker's and MLflow's clients send.

        JSON (MLflow's formats or a bare array), CSV, npy, JSON Lines or Parquet in; JSON, CSV,
        npy or JSON Lines out, as ``Accept`` asks, labelled with exactly the type asked for.
        """
        answer_type, answer_params = negotiate(environ.get("HTTP_ACCEPT"))
        mimetype, params = _content_type(environ)
        had_header: list[bool] = []
        outputs, payload = self._predict(environ, self._reader(mimetype, params, had_header))
        headers: tuple[tuple[str, str], ...] = ()
        if payload.ignored:
            headers = ((IGNORED_HEADER, _header_list(payload.ignored)),)
        if answer_type == JSON:
            body = jsontext.dumps_answer(codec.predictions(outputs), outputs)
            return Answer(body, JSON, 200, headers)
        if answer_type == CSV:
            header = _header_parameter(answer_params)
            if header is None:
                header = bool(had_header and had_header[0])
            body = codec.format_csv(outputs, header=header)
        elif answer_type == NPY:
            body = codec.format_npy(outputs)
        else:
            body = codec.format_jsonlines(outputs)
        kept = "".join(f"; {k}={v}" for k, v in answer_params.items())
        return Answer(body, answer_type + kept, headers=headers)

    # --- Azure ML -------------------------------------------------------------------------------

    def live(self, environ: Environ) -> Answer:
        """``GET /``: Azure ML's liveness."""
        return _json({"status": "Healthy"})

    def score(self, environ: Environ) -> Answer:
        """``POST /score``: Azure ML's ``input_data`` or any MLflow format."""
        _require_json(environ)
        outputs, _ = self._predict(environ, self._read_azure)
        # Azure ML's MLflow scoring answers the predictions themselves, without a wrapper.
        return _predictions(codec.predictions(outputs)["predictions"], outputs)

    # --- Vertex AI ------------------------------------------------------------------------------

    def vertex_predict(self, environ: Environ) -> Answer:
        """Vertex AI's predict route: ``instances`` in, one prediction per row out."""
        _require_json(environ)
        outputs, _ = self._predict(environ, self._read_vertex)
        return _predictions({"predictions": codec.row_predictions(outputs)}, outputs)

    # --- Open Inference Protocol (KServe V2) ----------------------------------------------------

    def v2_server(self, environ: Environ) -> Answer:
        """``GET /v2``: server metadata."""
        return _json(
            {"name": "modelport", "version": __version__, "extensions": ["binary_tensor_data"]}
        )

    def v2_live(self, environ: Environ) -> Answer:
        """``GET /v2/health/live``."""
        return _json({"live": True})

    def v2_ready(self, environ: Environ) -> Answer:
        """``GET /v2/health/ready``: 200 once the model is ready."""
        self.check_ready()
        return _json({"ready": True})

    def v2_model(
        self, environ: Environ, model_name: str, model_version: str | None = None
    ) -> Answer:
        """``GET /v2/models/{name}[/versions/{v}]``: the model's metadata."""
        self._check_model(model_name, model_version)
        return _json(
            {
                "name": self.service.name,
                "versions": [self.service.version],
                "platform": self._platform,
                "inputs": codec.tensor_metadata(self.signature.inputs),
                "outputs": codec.tensor_metadata(self.signature.outputs),
            }
        )

    def v2_model_ready(
        self, environ: Environ, model_name: str, model_version: str | None = None
    ) -> Answer:
        """``GET /v2/models/{name}[/versions/{v}]/ready``."""
        self._check_model(model_name, model_version)
        self.check_ready()
        return _json({"name": self.service.name, "ready": True})

    def v2_infer(
        self, environ: Environ, model_name: str, model_version: str | None = None
    ) -> Answer:
        """``POST /v2/models/{name}[/versions/{v}]/infer``: JSON or binary tensor data."""
        self._check_model(model_name, model_version)
        mimetype = _content_type(environ)[0]
        if not (_is_json(mimetype) or mimetype == OCTET):
            raise UnsupportedMediaType(
                "Content-Type must be application/json or application/octet-stream"
            )
        header = environ.get("HTTP_INFERENCE_HEADER_CONTENT_LENGTH")
        header_length: int | None = None
        if header is not None:
            try:
                header_length = int(header)
            except ValueError:
                raise InputError(f"{codec.BINARY_HEADER} must be an integer") from None
        signature = self.signature
        parsed: list[codec.V2Request] = []

        def inputs() -> tuple[dict[str, np.ndarray], JsonBooleans]:
            v2 = codec.parse_v2(self.read_body(environ), header_length, signature.input_names)
            check_outputs(v2.outputs, signature)
            parsed.append(v2)
            # Arrays already: parse_v2 applied the lossless-JSON rule to each tensor's data.
            return v2.inputs, JsonBooleans.ABSENT

        outputs = self.service.predict(inputs)
        service = self.service
        body, json_length = codec.format_v2(service.name, service.version, parsed[0], outputs)
        if json_length is None:
            return Answer(body)
        return Answer(body, OCTET, headers=((codec.BINARY_HEADER, str(json_length)),))

    # --- metrics and the API description --------------------------------------------------------

    def metrics_text(self, environ: Environ) -> Answer:
        """``GET /metrics``: every worker's metrics, in Prometheus' text format."""
        return Answer(render(self._metrics_dir, self.metrics.layout).encode(), PROMETHEUS)

    def openapi(self, environ: Environ) -> Answer:
        """``GET /openapi.json``: the OpenAPI 3 description, with the model's own inputs."""
        return Answer(self._openapi)

    # --- errors ---------------------------------------------------------------------------------

    def protocol_of(self, path: str) -> Protocol:
        """The protocol of the route serving ``path``, which decides its errors' shape.

        A path no route serves is :attr:`Protocol.PLAIN`, except under ``/v2/`` (V2's).
        """
        protocol = self._protocols.get(path)
        if protocol is not None:
            return protocol
        return Protocol.V2 if path.startswith("/v2/") else Protocol.PLAIN

    def error(self, exc: BaseException, method: str, path: str) -> Answer:
        """The answer to what a view (or Flask's routing) raised, counted in the metrics.

        The status, metric type and message come from the error's class; the body's shape is
        the protocol of ``path``'s route. A failure on the server's side is logged with its
        cause here and answered with a fixed message, since a cause may quote the request's
        data; client errors are not logged, so a flood of them costs the log nothing.
        """
        protocol = self.protocol_of(path)
        if isinstance(exc, HTTPException):
            return self._http_error(exc, method, protocol)
        known = isinstance(exc, ModelportError)
        kind = type(exc) if isinstance(exc, ModelportError) else ModelportError
        message = kind.http_message
        if message is None:
            message = str(exc)
        else:
            # The path is the client's: a bounded part of it is enough to find the route.
            cause = exc if known else "unexpected error"
            log.error("%.16s %.200s: %s", method, path, cause, exc_info=exc)
        self.metrics.count_error(kind.error_type)
        status = kind.http_status
        # Not ready or overloaded: a client may come back soon (as the worker's own 503 says).
        headers = (RETRY_AFTER,) if status == 503 else ()
        return Answer(error_body(protocol, status, message), status=status, headers=headers)

    def _http_error(self, exc: HTTPException, method: str, protocol: Protocol) -> Answer:
        status = exc.code or 500
        messages = {
            400: "bad request",
            404: "no such route",
            405: f"method {quote_name(method)} is not allowed here",
            413: self._too_large_message,
        }
        headers: tuple[tuple[str, str], ...] = ()
        if isinstance(exc, MethodNotAllowed) and exc.valid_methods:
            headers = (("Allow", ", ".join(exc.valid_methods)),)
        self.metrics.count_error(_HTTP_ERROR_TYPES.get(status, "internal"))
        body = error_body(protocol, status, messages.get(status, exc.name.lower()))
        return Answer(body, status=status, headers=headers)


@dataclass(frozen=True)
class Route:
    """One route: its Flask rule, the :class:`Endpoints` method serving it, its methods.

    ``name`` is Flask's endpoint name where a view serves more than one rule (Flask needs one
    name per rule); a rule with ``/versions/`` is named after its view with ``_v``.
    ``protocol`` is the protocol the route speaks: the shape of its error answers.
    """

    rule: str
    view: str
    methods: tuple[str, ...]
    name: str = ""
    protocol: Protocol = Protocol.PLAIN

    @property
    def endpoint(self) -> str:
        """Flask's endpoint name."""
        if self.name:
            return self.name
        return f"{self.view}_v" if "/versions/" in self.rule else self.view


#: Every built-in route. Vertex AI's routes come from the config (:func:`routes`).
ROUTES: tuple[Route, ...] = (
    Route("/ping", "ping", ("GET",), protocol=MLFLOW),
    Route("/health", "ping", ("GET",), "health", MLFLOW),
    Route("/version", "version", ("GET",), protocol=MLFLOW),
    Route("/invocations", "invocations", ("POST",), protocol=MLFLOW),
    Route("/", "live", ("GET",), protocol=AZURE),
    Route("/score", "score", ("POST",), protocol=AZURE),
    Route("/v2", "v2_server", ("GET",), protocol=V2),
    Route("/v2/health/live", "v2_live", ("GET",), protocol=V2),
    Route("/v2/health/ready", "v2_ready", ("GET",), protocol=V2),
    Route("/v2/models/<model_name>", "v2_model", ("GET",), protocol=V2),
    Route("/v2/models/<model_name>/ready", "v2_model_ready", ("GET",), protocol=V2),
    Route("/v2/models/<model_name>/infer", "v2_infer", ("POST",), protocol=V2),
    Route("/v2/models/<model_name>/versions/<model_version>", "v2_model", ("GET",), protocol=V2),
    Route(
        "/v2/models/<model_name>/versions/<model_version>/ready",
        "v2_model_ready",
        ("GET",),
        protocol=V2,
    ),
    Route(
        "/v2/models/<model_name>/versions/<model_version>/infer",
        "v2_infer",
        ("POST",),
        protocol=V2,
    ),
    Route("/metrics", "metrics_text", ("GET",)),
    Route("/openapi.json", "openapi", ("GET",)),
)
#: Views the application calls itself, without Flask, for a POST to their exact path.
DIRECT_VIEWS = frozenset({"invocations"})


def _vertex_routes(config: ServeConfig) -> list[Route]:
    routes: list[Route] = []
    if config.health_route:
        routes.append(Route(config.health_route, "ping", ("GET",), "vertex_health", VERTEX))
    if config.predict_route:
        routes.append(Route(config.predict_route, "vertex_predict", ("POST",), protocol=VERTEX))
    return routes


def routes(config: ServeConfig) -> list[Route]:
    """The routes of a server: Vertex AI's first, replacing a built-in route of the same path."""
    vertex = _vertex_routes(config)
    taken = {r.rule for r in vertex}
    return [*vertex, *(r for r in ROUTES if r.rule not in taken)]


def route_templates(config: ServeConfig) -> list[str]:
    """Every route the application serves, as Flask rule strings (the metrics' route labels)."""
    templates = [r.rule for r in ROUTES]
    templates += [r.rule for r in _vertex_routes(config) if r.rule not in templates]
    return templates


def _flask_view(view: Callable[..., Answer]) -> Callable[..., Response]:
    def flask_view(**args: str) -> Response:
        return view(request.environ, **args).response()

    return flask_view


def create_app(
    config: ServeConfig,
    package_dir: Path,
    metrics_dir: Path,
    *,
    start: bool = True,
    on_load_failure: Callable[[BaseException], None] | None = None,
) -> Flask:
    """Build the application for one process.

    Args:
        config: the server configuration.
        package_dir: the package directory (archives are extracted by the server beforehand).
        metrics_dir: the directory shared by every worker's metrics file.
        start: start loading the model in a background thread now. With False, call
            ``app.extensions["modelport"].load()`` (or ``.start()``) yourself.
        on_load_failure: called (in the loader thread) if loading fails; the default logs it.

    Returns:
        The Flask application; ``app.extensions["modelport"]`` is its :class:`ModelService`,
        ``app.extensions["modelport.endpoints"]`` its :class:`Endpoints`.
    """
    configure_logging()
    metrics = WorkerMetrics(metrics_dir, Layout(route_templates(config), config.max_batch_size))
    service = ModelService(
        config, package_dir, metrics, on_ready=lambda seconds: metrics.set_ready(True, seconds)
    )
    endpoints = Endpoints(config, service, metrics, metrics_dir)
    app = Flask("modelport.serving")
    app.config["MAX_CONTENT_LENGTH"] = config.max_body_bytes
    app.extensions.update(
        {"modelport": service, "modelport.metrics": metrics, ENDPOINTS_EXTENSION: endpoints}
    )
    direct: dict[str, Callable[[Environ], Answer]] = {}
    for route in routes(config):
        view = getattr(endpoints, route.view)
        app.add_url_rule(route.rule, route.endpoint, _flask_view(view), methods=list(route.methods))
        if route.view in DIRECT_VIEWS:
            direct[route.rule] = view

    @app.before_request
    def _label() -> None:
        if request.url_rule is not None:
            request.environ[ROUTE_KEY] = request.url_rule.rule

    @app.errorhandler(Exception)
    def _error(exc: Exception) -> Response:
        return endpoints.error(exc, request.method, request.path).response()

    app.wsgi_app = _wsgi(app.wsgi_app, endpoints, direct)  # type: ignore[method-assign]
    if start:
        service.start(on_load_failure or _log_failure)
    return app


def _wsgi(
    flask_wsgi: Callable[..., Iterable[bytes]],
    endpoints: Endpoints,
    direct: Mapping[str, Callable[[Environ], Answer]],
) -> Callable[..., Iterable[bytes]]:
    """The application around Flask's: direct views, the in-flight gauge and request metrics."""
    metrics = endpoints.metrics

    def wsgi(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        started = time.perf_counter()
        path = environ["PATH_INFO"]
        view = direct.get(path) if environ["REQUEST_METHOD"] == "POST" else None
        metrics.add_in_flight(1)
        try:
            if view is not None:
                environ[ROUTE_KEY] = path
                try:
                    answer = view(environ)
                except Exception as exc:
                    answer = endpoints.error(exc, "POST", path)
                status = answer.status
                start_response(wsgi_status(status), answer.wsgi_headers())
                result: Iterable[bytes] = [answer.body]
            else:
                statuses: list[str] = []

                def start(status: str, headers: Any, exc_info: Any = None) -> Any:
                    statuses.append(status)
                    return start_response(status, headers, exc_info)

                result = flask_wsgi(environ, start)
                status = int(statuses[-1][:3]) if statuses else 500
        finally:
            metrics.add_in_flight(-1)
        metrics.observe_request(
            environ.get(ROUTE_KEY, UNMATCHED_ROUTE), status, time.perf_counter() - started
        )
        return result

    return wsgi


def _log_failure(exc: BaseException) -> None:
    log.error("loading the model failed: %s", exc, exc_info=exc)
