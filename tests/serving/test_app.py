"""The many error cases, fast: the real Flask application through Flask's test client."""

from __future__ import annotations

import io
import json
import logging
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from flask import Flask
from flask.testing import FlaskClient
from serving_support import error_message, protocol_of

from modelport.errors import ModelNotFound
from modelport.serving.app import create_app
from modelport.serving.config import ServeConfig
from modelport.serving.metrics import zero_gauges
from modelport.serving.server import prepared_package


@contextmanager
def make_app(package: Path, tmp_path: Path, load: bool = True, **settings: Any) -> Iterator[Flask]:
    config = ServeConfig(package=package, **settings)
    metrics_dir = tmp_path / "metrics"
    metrics_dir.mkdir(exist_ok=True)
    with prepared_package(config) as package_dir:
        app = create_app(config, package_dir, metrics_dir, start=False)
        if load:
            app.extensions["modelport"].load()
        yield app
        app.extensions["modelport.metrics"].close()


@pytest.fixture
def iris_app(packages: dict[str, Path], tmp_path: Path) -> Iterator[Flask]:
    with make_app(packages["iris"], tmp_path, max_body_bytes=2048) as app:
        yield app


@pytest.fixture
def client(iris_app: Flask) -> FlaskClient:
    return iris_app.test_client()


def error_of(resp: Any, status: int) -> str:
    """The message of an error answer, in the error shape of the request path's protocol."""
    assert resp.status_code == status, resp.data
    assert resp.mimetype == "application/json"
    return error_message(resp.data, protocol_of(resp.request.path), status)


def post(client: FlaskClient, path: str, value: Any, **kwargs: Any) -> Any:
    return client.post(path, data=json.dumps(value), content_type="application/json", **kwargs)


ROW = [0.1, 0.2, 0.3, 0.4]


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ({"inputs": [[1.5, 2, 3]]}, "dimension 1"),
        ({"inputs": [1, 2, 3, 4]}, "dimension"),
        ({"inputs": [[None, 1, 2, 3]]}, "null"),
        ({"inputs": [[True, False, True, False]]}, "boolean"),
        ({"inputs": [[1, 2, 3], [1, 2]]}, "rectangular"),
        ({"inputs": []}, "input"),
        ({"inputs": [[1e300, 1, 2, 3]]}, "range"),
        ({"inputs": {"input": [ROW], "other": [ROW]}}, "'other'"),
        ({"inputs": {}}, "missing"),
        ({"instances": "nope"}, "instances"),
        ({"dataframe_split": {"columns": ["a"], "data": [[1, 2]]}}, "value(s)"),
        ({"dataframe_records": [{"a": 1}, {"b": 2}]}, "missing"),
        ({"inputs": [ROW], "instances": [ROW]}, "exactly one"),
        ([1, 2, 3], "dimension"),  # a bare array is the tensor of a one-input model
        ("text", "JSON array, or an object"),
    ],
)
def test_bad_input_is_400_and_names_the_problem(
    client: FlaskClient, body: Any, needle: str
) -> None:
    assert needle in error_of(post(client, "/invocations", body), 400)


def test_zero_rows_are_refused(client: FlaskClient) -> None:
    body = {"inputs": [{"name": "input", "shape": [0, 4], "datatype": "FP32", "data": []}]}
    assert "empty" in error_of(post(client, "/v2/models/iris/infer", body), 400)


def test_malformed_json_and_empty_body(client: FlaskClient) -> None:
    resp = client.post("/invocations", data=b'{"inputs": [1,', content_type="application/json")
    assert "malformed JSON" in error_of(resp, 400)
    resp = client.post("/invocations", data=b"", content_type="application/json")
    assert "empty" in error_of(resp, 400)
    resp = client.post("/invocations", data=b"\xff\xfe", content_type="application/json")
    error_of(resp, 400)


def test_missing_content_type_is_read_as_json(client: FlaskClient) -> None:
    resp = client.post("/invocations", data=json.dumps({"inputs": [ROW]}))
    assert resp.status_code == 200


@pytest.mark.parametrize("path", ["/invocations", "/score", "/v2/models/iris/infer"])
def test_unsupported_content_type_and_encoding_are_415(client: FlaskClient, path: str) -> None:
    error_of(client.post(path, data=b"<x/>", content_type="application/xml"), 415)
    resp = client.post(
        path,
        data=json.dumps({"inputs": [ROW]}),
        content_type="application/json",
        headers={"Content-Encoding": "br"},  # gzip and deflate are read; others are not
    )
    error_of(resp, 415)


def test_body_over_limit_is_413(client: FlaskClient) -> None:
    resp = post(client, "/invocations", {"inputs": [ROW] * 200})
    assert "larger than 2048" in error_of(resp, 413)


@pytest.mark.parametrize("path", ["/invocations", "/score", "/v2/models/iris/infer"])
def test_body_without_length_over_limit_is_413(iris_app: Flask, path: str) -> None:
    # A chunked body has no Content-Length (the WSGI server de-chunks it): the limit holds while
    # reading. The environ is built by hand because Flask's test client always sets a length.
    body = json.dumps({"inputs": [ROW] * 200}).encode()
    environ = {
        "REQUEST_METHOD": "POST",
        "PATH_INFO": path,
        "SERVER_NAME": "localhost",
        "SERVER_PORT": "80",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "CONTENT_TYPE": "application/json",
        "wsgi.input": io.BytesIO(body),
        "wsgi.input_terminated": True,
        "wsgi.url_scheme": "http",
        "wsgi.errors": io.StringIO(),
        "wsgi.multithread": True,
        "wsgi.multiprocess": False,
        "wsgi.run_once": False,
    }
    statuses: list[str] = []
    answer = b"".join(iris_app(environ, lambda status, headers, *_: statuses.append(status)))
    assert statuses[0].startswith("413"), answer
    assert "larger than 2048" in error_message(answer, protocol_of(path), 413)


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ("a,b,c,d\n", "at least one row"),
        ("", "at least one row"),
        ("a,b,c,d\n1,2,3\n", "value(s)"),
        ("a,b,c,d\n1,x,3,4\n", "expected numbers"),
        ("a,b,c,d\n1,2,3,4.5.6\n", "expected numbers"),
    ],
)
def test_bad_csv_is_400(client: FlaskClient, body: str, needle: str) -> None:
    # a,b,c,d names no input of the iris model: header=present says it is a header.
    resp = client.post("/invocations", data=body.encode(), content_type="text/csv; header=present")
    message = error_of(resp, 400)
    assert needle in message
    assert "4.5.6" not in message


def test_not_ready_answers_503_everywhere_it_should(
    packages: dict[str, Path], tmp_path: Path
) -> None:
    with make_app(packages["iris"], tmp_path, load=False, timeout_s=0.05) as app:
        client = app.test_client()
        _check_not_ready(app, client)


def _check_not_ready(app: Flask, client: FlaskClient) -> None:
    assert "not ready" in error_of(client.get("/ping"), 503)
    error_of(client.get("/v2/health/ready"), 503)
    error_of(client.get("/v2/models/iris/ready"), 503)
    error_of(post(client, "/invocations", {"inputs": [ROW]}), 503)
    assert client.get("/v2/health/live").status_code == 200
    assert client.get("/").status_code == 200
    # Metadata and the API description do not need the model.
    assert client.get("/v2/models/iris").status_code == 200
    assert client.get("/openapi.json").status_code == 200
    app.extensions["modelport"].load()
    assert client.get("/ping").status_code == 200
    assert post(client, "/invocations", {"inputs": [ROW]}).status_code == 200


#: A second worker of the same server, in its own process: its metrics file says it is ready.
_READY_WORKER = """
import json, os, sys
from pathlib import Path
from modelport.serving.metrics import Layout, WorkerMetrics
metrics = WorkerMetrics(Path(sys.argv[1]), Layout(json.loads(sys.argv[2]), int(sys.argv[3])))
metrics.set_ready(True, 0.5)
print(os.getpid())
"""


def test_with_several_workers_health_waits_for_every_worker(
    packages: dict[str, Path], tmp_path: Path
) -> None:
    # A worker accepts connections while its model loads: were a ready worker to say 200, the
    # next probe could land on the other one and get 503.
    with make_app(packages["iris"], tmp_path, workers=2) as app:
        client = app.test_client()
        assert "ready in 1 of 2 workers" in error_of(client.get("/ping"), 503)
        error_of(client.get("/v2/health/ready"), 503)
        error_of(client.get("/v2/models/iris/ready"), 503)
        # A request that lands here is answered: this worker's own model is ready.
        assert post(client, "/invocations", {"inputs": [ROW]}).status_code == 200
        layout = app.extensions["modelport.metrics"].layout
        other = subprocess.run(
            [
                sys.executable,
                "-c",
                _READY_WORKER,
                str(tmp_path / "metrics"),
                json.dumps(layout.routes[:-1]),
                str(app.extensions["modelport"].config.max_batch_size),
            ],
            capture_output=True,
            text=True,
            check=True,
        )
        for path in ("/ping", "/v2/health/ready", "/v2/models/iris/ready"):
            assert client.get(path).status_code == 200, path
        # Once every worker was ready, another's restart (the master zeroes its gauges) leaves
        # this worker answering for itself.
        zero_gauges(tmp_path / "metrics", int(other.stdout))
        assert client.get("/ping").status_code == 200


def test_model_failure_is_500_generic_and_logged(
    packages: dict[str, Path], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with (
        make_app(packages["tricky"], tmp_path, allow_code=True) as app,
        caplog.at_level(logging.ERROR, logger="modelport.serving"),
    ):
        client = app.test_client()
        resp = post(client, "/invocations", {"inputs": [[-1.0, 2.0, 3.0]]})
        ok = post(client, "/invocations", {"inputs": [[1.0, 2.0, 3.0]]})
    message = error_of(resp, 500)
    assert "secret-detail-42" not in message
    assert "negative" not in message
    assert "secret-detail-42" in caplog.text  # the cause is in the log
    # The server stays up and answers the next request.
    assert json.loads(ok.data) == {"predictions": [[2.0, 4.0, 6.0]]}


def test_v2_binary_tensor_data_errors(client: FlaskClient) -> None:
    header = json.dumps(
        {
            "inputs": [
                {
                    "name": "input",
                    "shape": [1, 4],
                    "datatype": "FP32",
                    "parameters": {"binary_data_size": 16},
                }
            ]
        }
    ).encode()
    good = np.arange(4, dtype="<f4").tobytes()

    def infer(body: bytes, length: str) -> Any:
        return client.post(
            "/v2/models/iris/infer",
            data=body,
            content_type="application/octet-stream",
            headers={"Inference-Header-Content-Length": length},
        )

    ok = infer(header + good, str(len(header)))
    assert ok.status_code == 200, ok.data
    assert "binary_data_size" in error_of(infer(header + good[:8], str(len(header))), 400)
    assert "longer" in error_of(infer(header + good + b"xx", str(len(header))), 400)
    error_of(infer(header + good, "abc"), 400)
    error_of(infer(header + good, str(len(header) + 100)), 400)


def test_v2_binary_output_layout(client: FlaskClient) -> None:
    body = {
        "inputs": [{"name": "input", "shape": [2, 4], "datatype": "FP32", "data": ROW * 2}],
        "outputs": [{"name": "label", "parameters": {"binary_data": True}}],
    }
    resp = post(client, "/v2/models/iris/infer", body)
    assert resp.status_code == 200
    length = int(resp.headers["Inference-Header-Content-Length"])
    head = json.loads(resp.data[:length])
    assert head["outputs"][0]["parameters"] == {"binary_data_size": 16}
    labels = np.frombuffer(resp.data[length:], dtype="<i8")
    plain = post(client, "/v2/models/iris/infer", {"inputs": body["inputs"]})
    assert labels.tolist() == json.loads(plain.data)["outputs"][0]["data"]


def test_vertex_predict_route_may_take_over_invocations(
    packages: dict[str, Path], tmp_path: Path
) -> None:
    with make_app(packages["iris"], tmp_path, predict_route="/invocations") as app:
        resp = post(app.test_client(), "/invocations", {"instances": [ROW, ROW]})
        assert resp.status_code == 200
        predictions = json.loads(resp.data)["predictions"]
        # Vertex AI's shape: one object per row, not MLflow's columnar answer.
        assert isinstance(predictions, list)
        assert set(predictions[0]) == {"label", "probabilities"}


def test_a_view_is_a_method_called_with_an_environ(iris_app: Flask) -> None:
    endpoints = iris_app.extensions["modelport.endpoints"]
    body = json.dumps({"inputs": [ROW]}).encode()
    environ = {
        "CONTENT_TYPE": "application/json",
        "CONTENT_LENGTH": str(len(body)),
        "wsgi.input": io.BytesIO(body),
    }
    answer = endpoints.invocations(environ)
    assert (answer.status, answer.content_type) == (200, "application/json")
    assert set(json.loads(answer.body)["predictions"]) == {"label", "probabilities"}
    with pytest.raises(ModelNotFound) as raised:
        endpoints.v2_model({}, "other")
    answer = endpoints.error(raised.value, "GET", "/v2/models/other")
    assert answer.status == 404
    assert json.loads(answer.body) == {"error": str(raised.value)}
