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

import logging
import sys
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
from flask import Flask, Response, request
from werkzeug.datastructures import MIMEAccept
from werkzeug.exceptions import HTTPException, MethodNotAllowed
from werkzeug.http import parse_accept_header
from werkzeug.wsgi import get_content_length

from modelport import __version__
from modelport.errors import (
    BodyTooLarge,
    InputError,
    ModelNotFound,
    ModelportError,
    NotAcceptable,
    Overloaded,
    UnsupportedMediaType,
    quote_name,
    quote_names,
)
from modelport.model_format import jsontext
from modelport.model_format.payload import IGNORED_KEYS, instances_to_inputs, parse_payload
from modelport.model_format.signature import JsonBooleans, Signature
from modelport.serving import codec
from modelport.serving.answers import ENDPOINTS_EXTENSION, Protocol, error_body, wsgi_status
from modelport.serving.config import ServeConfig
from modelport.serving.metrics import UNMATCHED_ROUTE, Layout, WorkerMetrics, render
from modelport.serving.openapi import document
from modelport.serving.service import ModelService

log = logging.getLogger("modelport.serving")

ROUTE_KEY = "modelport.route"
JSON = "application/json"
CSV = "text/csv"
OCTET = "application/octet-stream"
CSV_TYPE = "text/csv; charset=utf-8"
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


def _mimetype(environ: Environ) -> str:
    return str(environ.get("CONTENT_TYPE", "")).split(";", 1)[0].strip().lower()


def _is_json(mimetype: str) -> bool:
    return mimetype in _JSON_TYPES or mimetype.endswith("+json")


def _check_encoding(environ: Environ) -> None:
    encoding = str(environ.get("HTTP_CONTENT_ENCODING", "")).strip().lower()
    if encoding and encoding != "identity":
        raise UnsupportedMediaType("Content-Encoding is not supported")


def _require_json(environ: Environ) -> None:
    if not _is_json(_mimetype(environ)):
        raise UnsupportedMediaType("Content-Type must be application/json")


def _check_parameters(body: Any) -> Any:
    """``params`` (MLflow) and ``parameters`` (Vertex AI) are accepted and unused, but typed."""
    if isinstance(body, Mapping):
        for key in IGNORED_KEYS:
            if key in body and not isinstance(body[key], Mapping):
                raise InputError(f"{key!r} must be a JSON object")
    return body


def _json(value: Any) -> Answer:
    return Answer(jsontext.dumps(value))


def _predictions(value: Any, outputs: Mapping[str, np.ndarray]) -> Answer:
    """A JSON answer holding ``outputs``: non-finite floats as NaN/Infinity tokens, as the CLI."""
    return Answer(jsontext.dumps(value, allow_nan=not jsontext.finite(outputs)))


def azure_inputs(body: Any, signature: Signature) -> Any:
    """Azure ML's ``{"input_data": ...}`` (a table or tensors), else any MLflow format."""
    if not isinstance(body, Mapping) or "input_data" not in body:
        return parse_payload(body, signature)
    unknown = sorted(str(k) for k in body if k not in ("input_data", "params"))
    if unknown:
        raise InputError("with 'input_data', the only other key allowed is 'params'")
    data = body["input_data"]
    if isinstance(data, Mapping) and "columns" in data and "data" in data:
        table = {k: v for k, v in data.items() if k != "index"}
        return parse_payload({"dataframe_split": table}, signature)
    return parse_payload({"inputs": data}, signature)


def vertex_inputs(body: Any, signature: Signature) -> Any:
    """Vertex AI's ``{"instances": [...], "parameters": {...}}``."""
    if not isinstance(body, Mapping) or "instances" not in body:
        raise InputError("the body must be an object with 'instances' (and 'parameters')")
    if any(k not in ("instances", "parameters") for k in body):
        raise InputError("the body may only have the keys 'instances' and 'parameters'")
    return instances_to_inputs(body["instances"], signature)


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
        #: what a 413 says, whether this server's check or Flask's refused the body
        self._too_large_message = f"the body is larger than {self.max_body} bytes"
        #: the protocol of each route without variables (Vertex AI's included), for errors
        self._protocols = {r.rule: r.protocol for r in routes(config) if "<" not in r.rule}
        self._metrics_dir = metrics_dir
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
        """The request body, refused over ``max_body_bytes`` or with a Content-Encoding."""
        _check_encoding(environ)
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
            return bytes(stream.read(length))
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

    def json_inputs(
        self, environ: Environ, to_inputs: Callable[[Any, Signature], Any]
    ) -> tuple[Any, JsonBooleans]:
        """Read a JSON body into inputs with ``to_inputs(body, signature)`` (for ``predict``)."""
        raw = self.read_body(environ)
        inputs = to_inputs(_check_parameters(jsontext.loads(raw)), self.signature)
        return inputs, JsonBooleans.in_text(raw)

    def _csv_inputs(self, environ: Environ) -> tuple[Any, JsonBooleans]:
        # CSV cells are read by their input's dtype: booleans only ever feed boolean inputs.
        return codec.parse_csv(self.read_body(environ), self.signature), JsonBooleans.ABSENT

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

    def ping(self, environ: Environ) -> Answer:
        """``GET /ping``, ``GET /health`` and Vertex AI's health route: 200 once ready."""
        self.service.check_ready()
        return Answer(b"", TEXT_TYPE)

    def version(self, environ: Environ) -> Answer:
        """``GET /version``: modelport's version as text, as MLflow's server answers its own."""
        return Answer(_VERSION_TEXT, TEXT_TYPE)

    def invocations(self, environ: Environ) -> Answer:
        """``POST /invocations``: any MLflow scoring format or CSV in, JSON or CSV out."""
        accept = environ.get("HTTP_ACCEPT")
        as_csv = False
        if accept and accept not in ("*/*", JSON):
            best = parse_accept_header(accept, MIMEAccept).best_match((JSON, CSV))
            if best is None:
                raise NotAcceptable("Accept must allow application/json or text/csv")
            as_csv = best == CSV
        mimetype = _mimetype(environ)
        if mimetype == CSV:
            outputs = self.service.predict(lambda: self._csv_inputs(environ))
        elif _is_json(mimetype):
            outputs = self.service.predict(lambda: self.json_inputs(environ, parse_payload))
        else:
            raise UnsupportedMediaType("Content-Type must be application/json or text/csv")
        if as_csv:
            return Answer(codec.format_csv(outputs), CSV_TYPE)
        return _predictions(codec.predictions(outputs), outputs)

    # --- Azure ML -------------------------------------------------------------------------------

    def live(self, environ: Environ) -> Answer:
        """``GET /``: Azure ML's liveness."""
        return _json({"status": "Healthy"})

    def score(self, environ: Environ) -> Answer:
        """``POST /score``: Azure ML's ``input_data`` or any MLflow format."""
        _require_json(environ)
        outputs = self.service.predict(lambda: self.json_inputs(environ, azure_inputs))
        return _predictions(codec.predictions(outputs), outputs)

    # --- Vertex AI ------------------------------------------------------------------------------

    def vertex_predict(self, environ: Environ) -> Answer:
        """Vertex AI's predict route: ``instances`` in, one prediction per row out."""
        _require_json(environ)
        outputs = self.service.predict(lambda: self.json_inputs(environ, vertex_inputs))
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
        self.service.check_ready()
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
        self.service.check_ready()
        return _json({"name": self.service.name, "ready": True})

    def v2_infer(
        self, environ: Environ, model_name: str, model_version: str | None = None
    ) -> Answer:
        """``POST /v2/models/{name}[/versions/{v}]/infer``: JSON or binary tensor data."""
        self._check_model(model_name, model_version)
        mimetype = _mimetype(environ)
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
            unknown = [n for n in v2.outputs if n not in signature.output_names]
            if unknown:
                raise InputError(
                    f"unknown output(s) {quote_names(unknown)}; the model's outputs "
                    f"are {', '.join(map(repr, signature.output_names))}"
                )
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
        return Answer(error_body(protocol, kind.http_status, message), status=kind.http_status)

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
