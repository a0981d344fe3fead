"""Every protocol answers errors in its own shape, so each client raises its proper exception.

MLflow/SageMaker routes answer ``{"error_code", "message"}``, the Open Inference Protocol's and
every other path ``{"error"}``, Vertex AI's routes Google's ``{"error": {"code", "message",
"status"}}`` and Azure ML's ``{"message"}``: whether the application refused the request or the
worker did (malformed HTTP, limits). No error message quotes the request's data, and each error
body is what the server's own OpenAPI document says it is.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from flask import Flask
from serving_support import (
    VERTEX_ROUTES,
    Response,
    Server,
    error_message,
    protocol_of,
    request,
)
from test_app import make_app
from test_worker import Client

import modelport

#: A value that appears in request data only: no error body may ever contain it.
MARKER = "SECRET-CELL-42"
JSON = {"Content-Type": "application/json"}
HEALTH, PREDICT = VERTEX_ROUTES
V2_INFER = "/v2/models/iris/infer"
ROW = [0.1, 0.2, 0.3, 0.4]
#: Over the test server's 0.5 MB body limit.
TOO_LARGE = b'{"inputs": [' + b"1," * 300_000 + b"1]}"


@dataclass(frozen=True)
class Case:
    """One bad request, the status it gets, and the protocol whose shape answers it."""

    name: str
    method: str
    path: str
    status: int
    body: bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)
    #: the OpenAPI path template, where it differs from the path
    template: str | None = None

    @property
    def protocol(self) -> str:
        return protocol_of(self.path)


def _json_cases(
    route: str, family: str, bad_value: bytes, template: str | None = None
) -> list[Case]:
    """The body refusals every JSON prediction route has."""
    return [
        Case(
            f"{family} malformed JSON",
            "POST",
            route,
            400,
            b'{"x": ["' + MARKER.encode(),
            JSON,
            template,
        ),
        Case(f"{family} bad value", "POST", route, 400, bad_value, JSON, template),
        Case(
            f"{family} 415 type",
            "POST",
            route,
            415,
            b"<x/>",
            {"Content-Type": "application/xml"},
            template,
        ),
        Case(
            f"{family} 415 encoding",
            "POST",
            route,
            415,
            json.dumps({"inputs": [ROW]}).encode(),
            {**JSON, "Content-Encoding": "br"},
            template,
        ),
        Case(f"{family} 413", "POST", route, 413, TOO_LARGE, JSON, template),
        Case(f"{family} wrong method", "GET", route, 405, template=template),
    ]


def _v2_tensor(value: Any) -> bytes:
    tensor = {"name": "input", "datatype": "FP32", "shape": [1, 4], "data": [value, 1, 2, 3]}
    return json.dumps({"inputs": [tensor]}).encode()


CASES = [
    # MLflow and SageMaker
    *_json_cases("/invocations", "mlflow", json.dumps({"inputs": [[MARKER, 1, 2, 3]]}).encode()),
    Case(
        "mlflow bad CSV cell",
        "POST",
        "/invocations",
        400,
        f"1,2,3,4\n1,{MARKER},3,4\n".encode(),
        {"Content-Type": "text/csv"},
    ),
    Case(
        "mlflow 406",
        "POST",
        "/invocations",
        406,
        json.dumps({"inputs": [ROW]}).encode(),
        {**JSON, "Accept": "image/png"},
    ),
    Case("mlflow ping wrong method", "POST", "/ping", 405, b"", JSON),
    Case("mlflow health wrong method", "POST", "/health", 405, b"", JSON),
    Case("mlflow version wrong method", "DELETE", "/version", 405),
    # the Open Inference Protocol
    *_json_cases(V2_INFER, "v2", _v2_tensor(MARKER), "/v2/models/{model_name}/infer"),
    Case("v2 unknown model", "GET", "/v2/models/nope", 404, template="/v2/models/{model_name}"),
    Case("v2 unknown route", "GET", "/v2/models/iris/nope", 404),
    Case("v2 unknown top route", "GET", "/v2/nope", 404),
    Case("v2 ready wrong method", "POST", "/v2/health/ready", 405, b"", JSON),
    # Vertex AI
    *_json_cases(PREDICT, "vertex", json.dumps({"instances": [[MARKER, 1, 2, 3]]}).encode()),
    Case(
        "vertex bad keys",
        "POST",
        PREDICT,
        400,
        json.dumps({"instances": [ROW], "other": MARKER}).encode(),
        JSON,
    ),
    Case("vertex health wrong method", "POST", HEALTH, 405, b"", JSON),
    # Azure ML
    *_json_cases("/score", "azure", json.dumps({"input_data": [[MARKER, 1, 2, 3]]}).encode()),
    Case("azure live wrong method", "POST", "/", 405, b"", JSON),
    # everything else
    Case("plain unknown path", "GET", "/no/such/route", 404),
    Case("plain unknown path under a route", "POST", "/invocations/more", 404, b"{}", JSON),
    Case("plain metrics wrong method", "POST", "/metrics", 405, b"", JSON),
    Case("plain openapi wrong method", "PUT", "/openapi.json", 405, b"", JSON),
]


@pytest.fixture(scope="module")
def answers(iris_server: Server) -> dict[str, Response]:
    return {
        case.name: request(iris_server.url + case.path, case.method, case.body, case.headers)
        for case in CASES
    }


@pytest.fixture(scope="module")
def openapi(iris_server: Server) -> dict[str, Any]:
    document = request(iris_server.url + "/openapi.json").json()
    assert isinstance(document, dict)
    return document


def _check_documented(openapi: dict[str, Any], case: Case, body: bytes) -> None:
    """The error body is valid against what /openapi.json says that route answers."""
    operation = openapi["paths"].get(case.template or case.path, {}).get(case.method.lower())
    if operation is None or str(case.status) not in operation["responses"]:
        return  # a method or path the document has no operation for (405, unknown paths)
    schema = operation["responses"][str(case.status)]["content"]["application/json"]["schema"]
    jsonschema.validate(json.loads(body), schema)


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_each_route_answers_errors_in_its_protocols_shape(
    answers: dict[str, Response], openapi: dict[str, Any], case: Case
) -> None:
    resp = answers[case.name]
    assert resp.status == case.status, (case, resp.body[:300])
    assert resp.headers["content-type"] == "application/json", case
    assert int(resp.headers["content-length"]) == len(resp.body)
    error_message(resp.body, case.protocol, case.status)
    assert MARKER.encode() not in resp.body, resp.body
    _check_documented(openapi, case, resp.body)


def test_a_method_not_allowed_names_the_allowed_ones(answers: dict[str, Response]) -> None:
    assert "POST" in answers["mlflow wrong method"].headers["allow"].split(", ")
    assert "GET" in answers["vertex health wrong method"].headers["allow"].split(", ")


def test_the_shapes_are_the_protocols_own(answers: dict[str, Response]) -> None:
    # Spelled out once, as each client reads them.
    mlflow = answers["mlflow 415 type"].json()
    assert mlflow == {"error_code": "BAD_REQUEST", "message": mlflow["message"]}
    vertex = answers["vertex 413"].json()["error"]
    assert (vertex["code"], vertex["status"]) == (413, "INVALID_ARGUMENT")
    assert answers["vertex wrong method"].json()["error"]["status"] == "UNIMPLEMENTED"
    assert set(answers["azure bad value"].json()) == {"message"}
    assert answers["v2 unknown model"].json()["error"].startswith("unknown model")
    assert answers["plain unknown path"].json() == {"error": "no such route"}


# --- what the worker refuses itself --------------------------------------------------------------

MANY_FIELDS = b"".join(b"X-H%d: v\r\n" % i for i in range(101))
WORKER_PATHS = [
    ("/invocations", "mlflow"),
    ("/ping", "mlflow"),
    ("/score", "azure"),
    ("/", "azure"),
    (PREDICT, "vertex"),
    (HEALTH, "vertex"),
    (V2_INFER, "v2"),
    ("/metrics", "plain"),
    ("/no/such/route", "plain"),
    (f"/score?q={MARKER}", "azure"),  # the query is not the path
    ("http://example.test/invocations", "mlflow"),  # absolute form
    ("/invocation%73", "mlflow"),  # percent-encoded, as the application would route it
]


def _raw(server: Server, data: bytes) -> Response:
    client = Client(server)
    try:
        client.send(data)
        answer = client.read_answer()
        assert answer.headers["connection"] == "close"
        return answer
    finally:
        client.close()


@pytest.mark.parametrize(("target", "protocol"), WORKER_PATHS, ids=[p for p, _ in WORKER_PATHS])
def test_the_workers_own_refusals_use_the_paths_protocol(
    iris_server: Server, target: str, protocol: str
) -> None:
    head = f"POST {target} HTTP/1.1\r\nHost: t\r\n".encode()
    too_many = _raw(iris_server, head + MANY_FIELDS + b"\r\n")
    assert too_many.status == 431
    assert "too many header fields" in error_message(too_many.body, protocol, 431)
    no_host = _raw(iris_server, f"GET {target} HTTP/1.1\r\n\r\n".encode())
    assert no_host.status == 400
    assert "Host" in error_message(no_host.body, protocol, 400)
    assert MARKER.encode() not in too_many.body + no_host.body


def test_garbage_without_a_path_gets_the_plain_shape(iris_server: Server) -> None:
    for raw in (b"NOT HTTP AT ALL\r\n\r\n", b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"):
        answer = _raw(iris_server, raw)
        assert answer.status == 400
        assert "malformed HTTP request" in error_message(answer.body, "plain", 400)


# --- MLflow's /version and /health ---------------------------------------------------------------


def test_version_is_the_modelport_version_as_text(iris_server: Server) -> None:
    resp = request(iris_server.url + "/version")
    assert resp.status == 200
    assert resp.headers["content-type"] == "text/plain; charset=utf-8"
    assert resp.body.decode() == modelport.__version__


def test_health_answers_as_ping(iris_server: Server) -> None:
    health = request(iris_server.url + "/health")
    ping = request(iris_server.url + "/ping")
    assert (health.status, health.body) == (ping.status, ping.body) == (200, b"")
    assert health.headers["content-type"] == ping.headers["content-type"]


def test_openapi_describes_version_health_and_every_error_shape(openapi: dict[str, Any]) -> None:
    paths = openapi["paths"]
    assert {"/version", "/health"} <= set(paths)
    version = paths["/version"]["get"]["responses"]["200"]["content"]
    assert set(version) == {"text/plain"}

    def error(path: str, method: str, status: int) -> dict[str, Any]:
        schema = paths[path][method]["responses"][str(status)]["content"]["application/json"]
        return dict(schema["schema"])

    assert error("/invocations", "post", 413)["required"] == ["error_code", "message"]
    assert error("/health", "get", 503)["properties"]["error_code"]["enum"] == [
        "TEMPORARILY_UNAVAILABLE"
    ]
    assert error("/score", "post", 400)["required"] == ["message"]
    vertex = error(PREDICT, "post", 400)["properties"]["error"]
    assert vertex["properties"]["status"]["enum"] == ["INVALID_ARGUMENT"]
    assert error(V2_INFER.replace("iris", "{model_name}"), "post", 400)["required"] == ["error"]
    assert "Retry-After" in paths["/ping"]["get"]["responses"]["503"]["headers"]


def test_openapi_describes_every_invocations_body_type(openapi: dict[str, Any]) -> None:
    operation = openapi["paths"]["/invocations"]["post"]
    requests = operation["requestBody"]["content"]
    assert set(requests) == {
        "application/json",
        "text/csv",
        "application/x-npy",
        "application/jsonlines",
        "application/vnd.apache.parquet",
    }
    assert requests["application/x-npy"]["schema"] == {"type": "string", "format": "binary"}
    answers = operation["responses"]["200"]["content"]
    assert set(answers) == {
        "application/json",
        "text/csv",
        "application/x-npy",
        "application/jsonlines",
    }
    body = requests["application/json"]["schema"]
    # A bare JSON array (the tensor of this one-input model), or an MLflow object.
    jsonschema.validate([ROW, ROW], body)
    jsonschema.validate({"inputs": [ROW], "params": {"outputs": ["label"]}}, body)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"inputs": [ROW], "params": {"outputs": ["nope"]}}, body)


# --- 500 and 503, through the application ---------------------------------------------------------

SERVER_ERROR_ROUTES = [
    ("/invocations", json.dumps({"inputs": [[-1.0, 2.0, 3.0]]})),
    ("/score", json.dumps({"input_data": [[-1.0, 2.0, 3.0]]})),
    (PREDICT, json.dumps({"instances": [[-1.0, 2.0, 3.0]]})),
    (
        "/v2/models/tricky/infer",
        json.dumps(
            {"inputs": [{"name": "x", "datatype": "FP64", "shape": [1, 3], "data": [-1, 2, 3]}]}
        ),
    ),
]


@pytest.fixture
def tricky_app(packages: dict[str, Path], tmp_path: Path) -> Iterator[Flask]:
    with make_app(packages["tricky"], tmp_path, allow_code=True, predict_route=PREDICT) as app:
        yield app


@pytest.mark.parametrize(
    ("path", "body"), SERVER_ERROR_ROUTES, ids=[p for p, _ in SERVER_ERROR_ROUTES]
)
def test_a_model_failure_is_a_500_in_the_routes_shape(
    tricky_app: Flask, path: str, body: str
) -> None:
    resp = tricky_app.test_client().post(path, data=body, content_type="application/json")
    assert resp.status_code == 500, resp.data
    message = error_message(resp.data, protocol_of(path), 500)
    assert "secret-detail-42" not in message  # the model's own message stays in the log


NOT_READY_ROUTES = [
    ("GET", "/ping"),
    ("GET", "/health"),
    ("POST", "/invocations"),
    ("POST", "/score"),
    ("GET", HEALTH),
    ("POST", PREDICT),
    ("GET", "/v2/health/ready"),
    ("GET", "/v2/models/iris/ready"),
]


def test_not_ready_is_a_503_in_each_routes_shape_with_retry_after(
    packages: dict[str, Path], tmp_path: Path
) -> None:
    routes = {"health_route": HEALTH, "predict_route": PREDICT}
    with make_app(packages["iris"], tmp_path, load=False, timeout_s=0.05, **routes) as app:
        client = app.test_client()
        bodies = {"/invocations": {"inputs": [ROW]}, "/score": {"inputs": [ROW]}}
        bodies[PREDICT] = {"instances": [ROW]}
        for method, path in NOT_READY_ROUTES:
            data = json.dumps(bodies[path]) if path in bodies else None
            resp = client.open(path, method=method, data=data, content_type="application/json")
            assert resp.status_code == 503, (path, resp.data)
            assert resp.headers["Retry-After"] == "1", path
            assert "not ready" in error_message(resp.data, protocol_of(path), 503), path
        # /version needs no model.
        version = client.get("/version")
        assert (version.status_code, version.data) == (200, modelport.__version__.encode())
