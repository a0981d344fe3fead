"""The Flask application: every protocol's routes around one :class:`ModelService`.

| routes | protocol |
|---|---|
| ``GET /ping``, ``POST /invocations`` | SageMaker (and MLflow's scoring formats, CSV) |
| ``/v2/...`` | Open Inference Protocol (KServe V2), JSON and binary tensor data |
| ``$AIP_HEALTH_ROUTE``, ``$AIP_PREDICT_ROUTE`` | Vertex AI |
| ``GET /``, ``POST /score`` | Azure ML |
| ``GET /metrics``, ``GET /openapi.json`` | Prometheus, OpenAPI 3 |

Errors are always ``{"error": "<message>"}`` (the V2 error shape) with the right status; the
message never contains a traceback or anything from the request's data.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
from flask import Flask, Response, request
from werkzeug.exceptions import HTTPException, MethodNotAllowed
from werkzeug.http import HTTP_STATUS_CODES

from modelport import __version__
from modelport.errors import (
    InputError,
    ModelError,
    ModelportError,
    NotReady,
    Overloaded,
    quote_name,
    quote_names,
)
from modelport.model_format.payload import IGNORED_KEYS, instances_to_inputs, parse_payload
from modelport.model_format.signature import Signature
from modelport.serving import codec
from modelport.serving.config import ServeConfig
from modelport.serving.metrics import UNMATCHED_ROUTE, Layout, WorkerMetrics, render
from modelport.serving.openapi import document
from modelport.serving.service import ModelService

log = logging.getLogger("modelport.serving")

ROUTE_KEY = "modelport.route"
JSON = "application/json"
CSV = "text/csv"
OCTET = "application/octet-stream"
PROMETHEUS = "text/plain; version=0.0.4; charset=utf-8"
_HTTP_KINDS = {
    400: "bad_input",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    413: "too_large",
    415: "unsupported_media_type",
    503: "overloaded",
}
_JSON_TYPES = frozenset({"", JSON, "text/json"})


class HttpError(Exception):
    """An error answer: status, metric type and a message that names no request data."""

    def __init__(self, status: int, kind: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.kind = kind
        self.message = message


def answer_for(exc: Exception, method: str, path: str) -> tuple[int, str, str]:
    """The status, metric type and message of an error answer.

    Model failures and unexpected errors are logged with their cause here; the answer itself
    says only that something failed, since a cause may quote the request's data. Client errors
    are not logged: a flood of them must cost the log nothing.
    """
    if isinstance(exc, HttpError):
        return exc.status, exc.kind, exc.message
    if isinstance(exc, InputError):
        return 400, "bad_input", str(exc)
    if isinstance(exc, NotReady):
        return 503, "not_ready", str(exc)
    if isinstance(exc, Overloaded):
        return 503, "overloaded", str(exc)
    if isinstance(exc, ModelError):
        # The path is the client's: a bounded part of it is enough to find the route.
        log.error("%.16s %.200s: %s", method, path, exc, exc_info=exc)
        return 500, "model_failure", "the model failed while predicting; see the server log"
    log.error("%.16s %.200s: unexpected error", method, path, exc_info=exc)
    return 500, "internal", "internal server error; see the server log"


def _mimetype(environ: Mapping[str, Any]) -> str:
    return str(environ.get("CONTENT_TYPE", "")).split(";", 1)[0].strip().lower()


def _is_json(mimetype: str) -> bool:
    return mimetype in _JSON_TYPES or mimetype.endswith("+json")


def _check_encoding(environ: Mapping[str, Any]) -> None:
    encoding = str(environ.get("HTTP_CONTENT_ENCODING", "")).strip().lower()
    if encoding and encoding != "identity":
        raise HttpError(415, "unsupported_media_type", "Content-Encoding is not supported")


def _check_parameters(body: Any) -> Any:
    """``params`` (MLflow) and ``parameters`` (Vertex AI) are accepted and unused, but typed."""
    if isinstance(body, Mapping):
        for key in IGNORED_KEYS:
            if key in body and not isinstance(body[key], Mapping):
                raise InputError(f"{key!r} must be a JSON object")
    return body


def _json_response(value: Any, status: int = 200) -> Response:
    return Response(codec.dumps(value), status=status, mimetype=JSON)


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


#: Every built-in route: (rule, endpoint, methods). Vertex AI's routes come from the config.
ROUTES: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("/ping", "ping", ("GET",)),
    ("/invocations", "invocations", ("POST",)),
    ("/", "live", ("GET",)),
    ("/score", "score", ("POST",)),
    ("/v2", "v2_server", ("GET",)),
    ("/v2/health/live", "v2_live", ("GET",)),
    ("/v2/health/ready", "v2_ready", ("GET",)),
    ("/v2/models/<model_name>", "v2_model", ("GET",)),
    ("/v2/models/<model_name>/ready", "v2_model_ready", ("GET",)),
    ("/v2/models/<model_name>/infer", "v2_infer", ("POST",)),
    ("/v2/models/<model_name>/versions/<model_version>", "v2_model", ("GET",)),
    ("/v2/models/<model_name>/versions/<model_version>/ready", "v2_model_ready", ("GET",)),
    ("/v2/models/<model_name>/versions/<model_version>/infer", "v2_infer", ("POST",)),
    ("/metrics", "metrics", ("GET",)),
    ("/openapi.json", "openapi", ("GET",)),
)


def _vertex_routes(config: ServeConfig) -> list[tuple[str, str, tuple[str, ...]]]:
    routes: list[tuple[str, str, tuple[str, ...]]] = []
    if config.health_route:
        routes.append((config.health_route, "vertex_health", ("GET",)))
    if config.predict_route:
        routes.append((config.predict_route, "vertex_predict", ("POST",)))
    return routes


def route_templates(config: ServeConfig) -> list[str]:
    """Every route the application serves, as Flask rule strings (the metrics' route labels)."""
    routes = [rule for rule, _, _ in ROUTES]
    routes += [rule for rule, _, _ in _vertex_routes(config) if rule not in routes]
    return routes


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
        The Flask application; ``app.extensions["modelport"]`` is its :class:`ModelService`.
    """
    configure_logging()
    layout = Layout(route_templates(config), config.max_batch_size)
    metrics = WorkerMetrics(metrics_dir, layout)
    service = ModelService(
        config,
        package_dir,
        metrics,
        on_ready=lambda seconds: metrics.set_ready(True, seconds),
    )
    signature = service.signature
    model_name, model_version = service.name, service.version
    max_body = config.max_body_bytes
    platform = (
        "onnxruntime_onnx"
        if not service.manifest.flavor.runs_code
        else f"modelport_{service.manifest.flavor.name}"
    )

    app = Flask("modelport.serving")
    app.config["MAX_CONTENT_LENGTH"] = max_body
    app.extensions["modelport"] = service
    app.extensions["modelport.metrics"] = metrics
    openapi_body = codec.dumps(
        document(
            name=model_name,
            version=model_version,
            signature=signature,
            health_route=config.health_route,
            predict_route=config.predict_route,
        )
    )

    def too_large() -> HttpError:
        return HttpError(413, "too_large", f"the body is larger than {max_body} bytes")

    def read_body() -> bytes:
        environ = request.environ
        _check_encoding(environ)
        length = request.content_length
        if length is not None:
            # Refused before a byte of it is read.
            if length > max_body:
                raise too_large()
            return request.get_data(cache=False)
        # A chunked body has no length. Werkzeug's limit would cut it short silently (a cut CSV
        # is still valid CSV), so read up to one byte past the limit and refuse what is larger.
        stream = environ["wsgi.input"]
        parts: list[bytes] = []
        size = 0
        while size <= max_body:
            part = stream.read(min(65536, max_body + 1 - size))
            if not part:
                break
            parts.append(part)
            size += len(part)
        if size > max_body:
            raise too_large()
        return b"".join(parts)

    def decode_json(raw: bytes, to_inputs: Callable[[Any, Signature], Any]) -> Any:
        """Turn a JSON body into inputs with ``to_inputs(body, signature)``."""
        inputs = to_inputs(_check_parameters(codec.loads(raw)), signature)
        return codec.refuse_lossy_json(inputs, signature, codec.mentions_booleans(raw))

    def json_inputs(to_inputs: Callable[[Any, Signature], Any]) -> Any:
        """Read a JSON body and turn it into inputs with ``to_inputs(body, signature)``."""
        return decode_json(read_body(), to_inputs)

    def check_json(environ: Mapping[str, Any]) -> None:
        if not _is_json(_mimetype(environ)):
            raise HttpError(415, "unsupported_media_type", "Content-Type must be application/json")

    # --- SageMaker and MLflow -------------------------------------------------------------------

    def ping() -> Response:
        service.check_ready()
        return Response(b"", status=200, mimetype="text/plain")

    def invocations() -> Response:
        environ = request.environ
        accept = environ.get("HTTP_ACCEPT")
        as_csv = False
        if accept and accept not in ("*/*", JSON):
            best = request.accept_mimetypes.best_match((JSON, CSV))
            if best is None:
                raise HttpError(
                    406, "not_acceptable", "Accept must allow application/json or text/csv"
                )
            as_csv = best == CSV
        mimetype = _mimetype(environ)
        if mimetype == CSV:
            outputs = service.predict(lambda: codec.parse_csv(read_body(), signature))
        elif _is_json(mimetype):
            outputs = service.predict(lambda: json_inputs(parse_payload))
        else:
            raise HttpError(
                415, "unsupported_media_type", "Content-Type must be application/json or text/csv"
            )
        if as_csv:
            return Response(codec.format_csv(outputs), status=200, mimetype=CSV)
        return Response(codec.dumps(codec.predictions(outputs)), status=200, mimetype=JSON)

    # --- Azure ML -------------------------------------------------------------------------------

    def live() -> Response:
        return _json_response({"status": "Healthy"})

    def azure_inputs(body: Any, signature: Signature) -> Any:
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

    def score() -> Response:
        check_json(request.environ)
        outputs = service.predict(lambda: json_inputs(azure_inputs))
        return Response(codec.dumps(codec.predictions(outputs)), status=200, mimetype=JSON)

    # --- Vertex AI ------------------------------------------------------------------------------

    def vertex_inputs(body: Any, signature: Signature) -> Any:
        if not isinstance(body, Mapping) or "instances" not in body:
            raise InputError("the body must be an object with 'instances' (and 'parameters')")
        if any(k not in ("instances", "parameters") for k in body):
            raise InputError("the body may only have the keys 'instances' and 'parameters'")
        return instances_to_inputs(body["instances"], signature)

    def vertex_predict() -> Response:
        check_json(request.environ)
        outputs = service.predict(lambda: json_inputs(vertex_inputs))
        answer = {"predictions": codec.row_predictions(outputs)}
        return Response(codec.dumps(answer), status=200, mimetype=JSON)

    # --- Open Inference Protocol (KServe V2) ----------------------------------------------------

    def check_model(model_name_: str, model_version_: str | None) -> None:
        if model_name_ != model_name:
            raise HttpError(
                404,
                "not_found",
                f"unknown model {quote_name(model_name_)}; this server serves {model_name!r}",
            )
        if model_version_ is not None and model_version_ != model_version:
            raise HttpError(
                404,
                "not_found",
                f"unknown version of model {model_name!r}; this server serves {model_version!r}",
            )

    def v2_server() -> Response:
        return _json_response(
            {"name": "modelport", "version": __version__, "extensions": ["binary_tensor_data"]}
        )

    def v2_live() -> Response:
        return _json_response({"live": True})

    def v2_ready() -> Response:
        service.check_ready()
        return _json_response({"ready": True})

    def v2_model(model_name: str, model_version: str | None = None) -> Response:
        check_model(model_name, model_version)
        return _json_response(
            {
                "name": service.name,
                "versions": [service.version],
                "platform": platform,
                "inputs": codec.tensor_metadata(signature.inputs),
                "outputs": codec.tensor_metadata(signature.outputs),
            }
        )

    def v2_model_ready(model_name: str, model_version: str | None = None) -> Response:
        check_model(model_name, model_version)
        service.check_ready()
        return _json_response({"name": service.name, "ready": True})

    def v2_infer(model_name: str, model_version: str | None = None) -> Response:
        check_model(model_name, model_version)
        environ = request.environ
        mimetype = _mimetype(environ)
        if not (_is_json(mimetype) or mimetype == OCTET):
            raise HttpError(
                415,
                "unsupported_media_type",
                "Content-Type must be application/json or application/octet-stream",
            )
        header = environ.get("HTTP_INFERENCE_HEADER_CONTENT_LENGTH")
        header_length: int | None = None
        if header is not None:
            try:
                header_length = int(header)
            except ValueError:
                raise InputError(f"{codec.BINARY_HEADER} must be an integer") from None
        parsed: list[codec.V2Request] = []

        def inputs() -> dict[str, np.ndarray]:
            v2 = codec.parse_v2(read_body(), header_length, signature.input_names)
            unknown = [n for n in v2.outputs if n not in signature.output_names]
            if unknown:
                raise InputError(
                    f"unknown output(s) {quote_names(unknown)}; the model's outputs "
                    f"are {', '.join(map(repr, signature.output_names))}"
                )
            parsed.append(v2)
            return v2.inputs

        outputs = service.predict(inputs)
        body, json_length = codec.format_v2(service.name, service.version, parsed[0], outputs)
        if json_length is None:
            return Response(body, status=200, mimetype=JSON)
        response = Response(body, status=200, mimetype=OCTET)
        response.headers[codec.BINARY_HEADER] = str(json_length)
        return response

    # --- metrics and the API description --------------------------------------------------------

    def metrics_route() -> Response:
        return Response(render(metrics_dir, layout), status=200, content_type=PROMETHEUS)

    def openapi() -> Response:
        return Response(openapi_body, status=200, mimetype=JSON)

    # --- wiring ---------------------------------------------------------------------------------

    views: dict[str, Callable[..., Response]] = {
        "ping": ping,
        "invocations": invocations,
        "live": live,
        "score": score,
        "v2_server": v2_server,
        "v2_live": v2_live,
        "v2_ready": v2_ready,
        "v2_model": v2_model,
        "v2_model_ready": v2_model_ready,
        "v2_infer": v2_infer,
        "metrics": metrics_route,
        "openapi": openapi,
        "vertex_health": ping,
        "vertex_predict": vertex_predict,
    }
    # Vertex AI's routes come first and replace a built-in route of the same path.
    vertex = _vertex_routes(config)
    taken = {rule for rule, _, _ in vertex}
    for rule, endpoint, methods in [*vertex, *(r for r in ROUTES if r[0] not in taken)]:
        # A rule with /versions/ is its own endpoint (Flask needs one rule per endpoint name).
        name = f"{endpoint}_v" if "/versions/" in rule else endpoint
        app.add_url_rule(rule, name, views[endpoint], methods=list(methods))

    @app.before_request
    def _label() -> None:
        rule = request.url_rule
        if rule is not None:
            request.environ[ROUTE_KEY] = rule.rule

    def error(status: int, kind: str, message: str) -> Response:
        metrics.count_error(kind)
        return _json_response({"error": message}, status)

    @app.errorhandler(ModelportError)
    @app.errorhandler(HttpError)
    def _known_error(exc: Exception) -> Response:
        return error(*answer_for(exc, request.method, request.path))

    @app.errorhandler(HTTPException)
    def _werkzeug_error(exc: HTTPException) -> Response:
        status = exc.code or 500
        messages = {
            400: "bad request",
            404: "no such route",
            405: f"method {quote_name(request.method)} is not allowed here",
            413: f"the body is larger than {max_body} bytes",
        }
        response = error(
            status,
            _HTTP_KINDS.get(status, "internal"),
            messages.get(status, exc.name.lower()),
        )
        if isinstance(exc, MethodNotAllowed) and exc.valid_methods:
            response.headers["Allow"] = ", ".join(exc.valid_methods)
        return response

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception) -> Response:
        return error(*answer_for(exc, request.method, request.path))

    def fast_invocations(
        environ: dict[str, Any], start_response: Callable[..., Any]
    ) -> list[bytes] | None:
        """``POST /invocations`` with a JSON body and a JSON answer, without Flask's machinery.

        The hottest route of every SageMaker and MLflow client; Flask's request context, routing
        and response object cost as much CPU as the prediction itself. Anything unusual (CSV,
        content negotiation, an encoding, no Content-Length, a body over the limit) returns None
        and goes through Flask, which answers it exactly as before.
        """
        accept = environ.get("HTTP_ACCEPT")
        if accept is not None and accept not in ("*/*", JSON):
            return None
        if "HTTP_CONTENT_ENCODING" in environ or not _is_json(_mimetype(environ)):
            return None
        try:
            length = int(environ.get("CONTENT_LENGTH") or -1)
        except ValueError:
            return None
        if not 0 <= length <= max_body:
            return None
        environ[ROUTE_KEY] = "/invocations"
        stream = environ["wsgi.input"]

        def inputs() -> Any:
            return decode_json(stream.read(length), parse_payload)

        try:
            body = codec.dumps(codec.predictions(service.predict(inputs)))
            status = "200 OK"
        except Exception as exc:
            code, kind, message = answer_for(exc, "POST", "/invocations")
            metrics.count_error(kind)
            body = codec.dumps({"error": message})
            status = f"{code} {HTTP_STATUS_CODES[code].upper()}"
        start_response(status, [("Content-Type", JSON), ("Content-Length", str(len(body)))])
        return [body]

    flask_wsgi = app.wsgi_app
    # Vertex AI's predict route may be /invocations; then Flask routes it to the Vertex view.
    fast_path = "/invocations" if config.predict_route != "/invocations" else None

    def wsgi(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        started = time.perf_counter()
        statuses: list[str] = []

        def start(status: str, headers: Any, exc_info: Any = None) -> Any:
            statuses.append(status)
            return start_response(status, headers, exc_info)

        metrics.add_in_flight(1)
        try:
            result: Iterable[bytes] | None = None
            if environ["PATH_INFO"] == fast_path and environ["REQUEST_METHOD"] == "POST":
                result = fast_invocations(environ, start)
            if result is None:
                result = flask_wsgi(environ, start)
        finally:
            metrics.add_in_flight(-1)
        status = int(statuses[-1][:3]) if statuses else 500
        metrics.observe_request(
            environ.get(ROUTE_KEY, UNMATCHED_ROUTE), status, time.perf_counter() - started
        )
        return result

    app.wsgi_app = wsgi  # type: ignore[method-assign]
    if start:
        service.start(on_load_failure or _log_failure)
    return app


def _log_failure(exc: BaseException) -> None:
    log.error("loading the model failed: %s", exc, exc_info=exc)
