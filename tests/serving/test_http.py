"""Every route and protocol, over real HTTP against a real ``modelport serve`` (gunicorn)."""

from __future__ import annotations

import http.client
import json
from pathlib import Path

import numpy as np
import pytest
from serving_support import DTYPES, Server, error_message, gauge, post_json, request

import modelport
from process_helpers import wait_for


@pytest.fixture(scope="module")
def iris(packages: dict[str, Path]) -> modelport.Package:
    return modelport.load(packages["iris"])


def expected(iris: modelport.Package, rows: np.ndarray) -> dict[str, np.ndarray]:
    return iris.predict(rows)


# --- SageMaker ----------------------------------------------------------------------------------


def test_ping_is_200_with_an_empty_body(iris_server: Server) -> None:
    resp = request(iris_server.url + "/ping")
    assert resp.status == 200
    assert resp.body == b""


@pytest.mark.parametrize(
    "payload",
    [
        "inputs",
        "inputs_named",
        "instances",
        "dataframe_split",
        "dataframe_records",
    ],
)
def test_invocations_accepts_every_mlflow_format(
    iris_server: Server, iris: modelport.Package, iris_x: np.ndarray, payload: str
) -> None:
    rows = iris_x[:3]
    columns = ["a", "b", "c", "d"]
    body = {
        "inputs": {"inputs": rows.tolist()},
        "inputs_named": {"inputs": {"input": rows.tolist()}},
        "instances": {"instances": rows.tolist()},
        "dataframe_split": {"dataframe_split": {"columns": columns, "data": rows.tolist()}},
        "dataframe_records": {
            "dataframe_records": [dict(zip(columns, r, strict=True)) for r in rows.tolist()]
        },
    }[payload]
    resp = post_json(iris_server.url + "/invocations", body)
    assert resp.status == 200, resp.body
    assert resp.headers["content-type"] == "application/json"
    predictions = resp.json()["predictions"]
    want = expected(iris, rows)
    assert predictions["label"] == want["label"].tolist()
    np.testing.assert_array_equal(
        np.asarray(predictions["probabilities"], dtype=np.float32), want["probabilities"]
    )


def test_invocations_csv_in_and_out(
    iris_server: Server, iris: modelport.Package, iris_x: np.ndarray
) -> None:
    rows = iris_x[:4]
    csv_body = "a,b,c,d\n" + "\n".join(",".join(repr(float(v)) for v in r) for r in rows)
    resp = request(
        iris_server.url + "/invocations",
        "POST",
        csv_body,
        {"Content-Type": "text/csv; header=present", "Accept": "text/csv"},
    )
    assert resp.status == 200, resp.body
    # A CSV request with a header row gets one back, labelled exactly as asked.
    assert resp.headers["content-type"] == "text/csv"
    lines = resp.body.decode().strip().split("\n")
    assert lines[0] == "label,probabilities_0,probabilities_1,probabilities_2"
    want = expected(iris, rows)
    got = np.array([[float(c) for c in line.split(",")] for line in lines[1:]])
    np.testing.assert_array_equal(got[:, 0], want["label"])
    np.testing.assert_array_equal(got[:, 1:].astype(np.float32), want["probabilities"])


def test_invocations_csv_in_json_out(iris_server: Server, iris_x: np.ndarray) -> None:
    csv_body = "a,b,c,d\n1,2,3,4\n"
    resp = request(
        iris_server.url + "/invocations",
        "POST",
        csv_body,
        {
            "Content-Type": "text/csv; charset=utf-8; header=present",
            "Accept": "application/json, text/csv;q=0.5",
        },
    )
    assert resp.status == 200, resp.body
    assert len(resp.json()["predictions"]["label"]) == 1


def test_invocations_refuses_unacceptable_accept_and_unknown_content_type(
    iris_server: Server,
) -> None:
    resp = post_json(
        iris_server.url + "/invocations", {"inputs": [[1, 2, 3, 4]]}, {"Accept": "image/png"}
    )
    assert resp.status == 406
    error_message(resp.body, "mlflow", 406)
    resp = request(
        iris_server.url + "/invocations", "POST", "x=1", {"Content-Type": "application/x-www-form"}
    )
    assert resp.status == 415
    assert resp.headers["content-type"] == "application/json"
    error_message(resp.body, "mlflow", 415)


def test_bad_inputs_get_400_naming_the_problem_without_echoing_data(iris_server: Server) -> None:
    url = iris_server.url + "/invocations"
    secret = 987654.125
    cases = {
        "malformed": request(url, "POST", '{"inputs": [[1,2', {"Content-Type": "application/json"}),
        "shape": post_json(url, {"inputs": [[secret, 2, 3]]}),
        "unknown": post_json(url, {"inputs": {"nope": [[secret, 1, 2, 3]]}}),
        "strings": post_json(url, {"inputs": [["abc-secret", 1, 2, 3]]}),
        "format": post_json(url, {"rows": [[secret]]}),
    }
    messages = {}
    for name, resp in cases.items():
        assert resp.status == 400, name
        messages[name] = message = error_message(resp.body, "mlflow", 400)
        assert "987654" not in message and "secret" not in message, name
    assert "malformed JSON" in messages["malformed"]
    assert "'input'" in messages["shape"]
    assert "'nope'" in messages["unknown"]


def test_body_over_the_limit_is_413_before_it_is_read(iris_server: Server) -> None:
    # The server's limit is 0.5 MB; the Content-Length alone decides.
    big = b"[" + b"1," * 400_000 + b"1]"
    resp = request(
        iris_server.url + "/invocations", "POST", big, {"Content-Type": "application/json"}
    )
    assert resp.status == 413
    assert "larger than" in error_message(resp.body, "mlflow", 413)


def test_chunked_body_is_read_whole(iris_server: Server, iris_x: np.ndarray) -> None:
    port = int(iris_server.url.rsplit(":", 1)[1])
    rows = iris_x[:50].tolist()
    text = json.dumps({"inputs": rows}).encode()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        chunks = iter([text[i : i + 100] for i in range(0, len(text), 100)])
        conn.request(
            "POST",
            "/invocations",
            body=chunks,
            headers={"Content-Type": "application/json"},
            encode_chunked=True,
        )
        resp = conn.getresponse()
        answer = json.loads(resp.read())
    finally:
        conn.close()
    assert resp.status == 200, answer
    assert len(answer["predictions"]["label"]) == 50


def test_unknown_route_and_method(iris_server: Server) -> None:
    resp = request(iris_server.url + "/no/such/route")
    assert resp.status == 404
    assert resp.json() == {"error": "no such route"}
    resp = request(iris_server.url + "/invocations")
    assert resp.status == 405
    assert "POST" in resp.headers["allow"]
    assert "'GET'" in error_message(resp.body, "mlflow", 405)


# --- Open Inference Protocol (KServe V2) --------------------------------------------------------


def test_v2_health_and_metadata(iris_server: Server) -> None:
    url = iris_server.url
    assert request(url + "/v2/health/live").json() == {"live": True}
    assert request(url + "/v2/health/ready").json() == {"ready": True}
    server = request(url + "/v2").json()
    assert server["name"] == "modelport"
    assert "binary_tensor_data" in server["extensions"]
    for path in ("/v2/models/iris", "/v2/models/iris/versions/3"):
        meta = request(url + path).json()
        assert meta == {
            "name": "iris",
            "versions": ["3"],
            "platform": "onnxruntime_onnx",
            "inputs": [{"name": "input", "datatype": "FP32", "shape": [-1, 4]}],
            "outputs": [
                {"name": "label", "datatype": "INT64", "shape": [-1]},
                {"name": "probabilities", "datatype": "FP32", "shape": [-1, 3]},
            ],
        }
    assert request(url + "/v2/models/iris/ready").json() == {"name": "iris", "ready": True}
    assert request(url + "/v2/models/iris/versions/3/ready").status == 200
    for path in ("/v2/models/other", "/v2/models/other/ready", "/v2/models/iris/versions/9"):
        resp = request(url + path)
        assert resp.status == 404, path
        assert set(resp.json()) == {"error"}


@pytest.mark.parametrize("path", ["/v2/models/iris/infer", "/v2/models/iris/versions/3/infer"])
def test_v2_infer_json(
    iris_server: Server, iris: modelport.Package, iris_x: np.ndarray, path: str
) -> None:
    rows = iris_x[:2]
    body = {
        "id": "req-17",
        "inputs": [
            {
                "name": "input",
                "shape": [2, 4],
                "datatype": "FP32",
                "data": rows.ravel().tolist(),
            }
        ],
        "outputs": [{"name": "probabilities"}],
    }
    resp = post_json(iris_server.url + path, body)
    assert resp.status == 200, resp.body
    answer = resp.json()
    assert answer["model_name"] == "iris"
    assert answer["model_version"] == "3"
    assert answer["id"] == "req-17"
    assert [o["name"] for o in answer["outputs"]] == ["probabilities"]
    (out,) = answer["outputs"]
    assert out["datatype"] == "FP32"
    assert out["shape"] == [2, 3]
    np.testing.assert_array_equal(
        np.asarray(out["data"], dtype=np.float32).reshape(2, 3),
        expected(iris, rows)["probabilities"],
    )


def test_v2_errors_use_the_v2_shape(iris_server: Server) -> None:
    url = iris_server.url + "/v2/models/iris/infer"
    tensor = {"name": "input", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]}
    cases = [
        (post_json(iris_server.url + "/v2/models/nope/infer", {"inputs": [tensor]}), 404),
        (post_json(url, {"inputs": [{**tensor, "shape": [1, 5]}]}), 400),
        (post_json(url, {"inputs": [{**tensor, "datatype": "BF16"}]}), 400),
        (post_json(url, {"inputs": [tensor], "outputs": [{"name": "nope"}]}), 400),
        (post_json(url, {"inputs": []}), 400),
        (request(url, "POST", "{", {"Content-Type": "application/json"}), 400),
        (request(url, "POST", "a,b", {"Content-Type": "text/csv"}), 415),
    ]
    for resp, status in cases:
        assert resp.status == status, resp.body
        assert set(resp.json()) == {"error"}


def test_v2_every_datatype_round_trips_in_json(dtypes_server: Server) -> None:
    values = {
        "bool": [True, False, False, True],
        "int8": [-128, 127, 0, 1],
        "int16": [-32768, 32767, 0, 1],
        "int32": [-(2**31), 2**31 - 1, 0, 1],
        "int64": [-(2**63), 2**63 - 1, 0, 1],
        "uint8": [0, 255, 1, 2],
        "uint16": [0, 65535, 1, 2],
        "uint32": [0, 2**32 - 1, 1, 2],
        "uint64": [0, 2**64 - 1, 1, 2],
        "float16": [0.5, -2.0, 65504.0, 0.25],
        "float32": [0.1, -1.5, 3.25, 1e30],
        "float64": [0.1, -1.5, 1e300, 2.0],
        "string": ["a", "héllo", "", "z z"],
    }
    datatypes = {
        "bool": "BOOL",
        "float16": "FP16",
        "float32": "FP32",
        "float64": "FP64",
        "string": "BYTES",
    }
    inputs = [
        {
            "name": f"x_{d}",
            "shape": [2, 2],
            "datatype": datatypes.get(d, d.upper()),
            "data": values[d],
        }
        for d in DTYPES
    ]
    resp = post_json(dtypes_server.url + "/v2/models/dtypes/infer", {"inputs": inputs})
    assert resp.status == 200, resp.body
    outputs = {o["name"]: o for o in resp.json()["outputs"]}
    for d in DTYPES:
        out = outputs[f"y_{d}"]
        assert out["datatype"] == datatypes.get(d, d.upper())
        assert out["shape"] == [2, 2]
        if d == "float32":
            np.testing.assert_array_equal(
                np.asarray(out["data"], np.float32), np.asarray(values[d], np.float32)
            )
        else:
            assert out["data"] == values[d], d


def test_v2_refuses_lossy_conversion(dtypes_server: Server) -> None:
    inputs = [
        {"name": "x_int64", "shape": [1, 2], "datatype": "INT64", "data": [1.5, 2]},
    ]
    resp = post_json(dtypes_server.url + "/v2/models/dtypes/infer", {"inputs": inputs})
    assert resp.status == 400
    assert "x_int64" in resp.json()["error"]
    assert "fractional" in resp.json()["error"]


def test_tritonclient_works_unchanged(dtypes_server: Server, iris_server: Server) -> None:
    import tritonclient.http as tritonclient_http  # a declared test dependency: fail if missing

    host = iris_server.url.removeprefix("http://")
    client = tritonclient_http.InferenceServerClient(host)
    try:
        assert client.is_server_live()
        assert client.is_server_ready()
        assert client.is_model_ready("iris")
        assert client.get_model_metadata("iris")["inputs"][0]["name"] == "input"
        x = np.arange(8, dtype=np.float32).reshape(2, 4)
        tensor = tritonclient_http.InferInput("input", [2, 4], "FP32")
        tensor.set_data_from_numpy(x)  # binary tensor data, the client's default
        result = client.infer("iris", [tensor], request_id="abc")
        assert result.get_response()["id"] == "abc"
        assert result.as_numpy("label").shape == (2,)
        assert result.as_numpy("probabilities").dtype == np.float32
        # JSON in, one requested output as JSON.
        tensor.set_data_from_numpy(x, binary_data=False)
        out = tritonclient_http.InferRequestedOutput("label", binary_data=False)
        result = client.infer("iris", [tensor], outputs=[out], model_version="3")
        assert result.as_numpy("probabilities") is None
        assert result.as_numpy("label").tolist() == result.get_response()["outputs"][0]["data"]
    finally:
        client.close()

    client = tritonclient_http.InferenceServerClient(dtypes_server.url.removeprefix("http://"))
    try:
        arrays = {
            d: np.array([["a", "é"], ["", "z"]], dtype=object)
            if d == "string"
            else np.array([[0, 1], [1, 0]]).astype(d)
            for d in DTYPES
        }
        tensors = []
        for d, a in arrays.items():
            datatype = {"bool": "BOOL", "float16": "FP16", "float32": "FP32"}.get(
                d, {"float64": "FP64", "string": "BYTES"}.get(d, d.upper())
            )
            t = tritonclient_http.InferInput(f"x_{d}", list(a.shape), datatype)
            t.set_data_from_numpy(a)
            tensors.append(t)
        result = client.infer("dtypes", tensors)
        for d, a in arrays.items():
            got = result.as_numpy(f"y_{d}")
            if d == "string":
                assert [v.decode() for v in got.ravel()] == list(a.ravel())
            else:
                assert got.dtype == a.dtype, d
                np.testing.assert_array_equal(got, a)
    finally:
        client.close()


# --- Vertex AI ----------------------------------------------------------------------------------


def test_vertex_routes_from_the_environment(
    iris_server: Server, iris: modelport.Package, iris_x: np.ndarray
) -> None:
    assert request(iris_server.url + "/vertex/health").status == 200
    rows = iris_x[:3]
    resp = post_json(
        iris_server.url + "/vertex/predict",
        {"instances": rows.tolist(), "parameters": {"anything": 1}},
    )
    assert resp.status == 200, resp.body
    predictions = resp.json()["predictions"]
    want = expected(iris, rows)
    assert len(predictions) == 3
    for i, p in enumerate(predictions):
        assert set(p) == {"label", "probabilities"}
        assert p["label"] == int(want["label"][i])
        np.testing.assert_array_equal(
            np.asarray(p["probabilities"], np.float32), want["probabilities"][i]
        )
    bad = post_json(iris_server.url + "/vertex/predict", {"inputs": rows.tolist()})
    assert bad.status == 400


def test_no_vertex_route_without_the_variables(dtypes_server: Server) -> None:
    assert request(dtypes_server.url + "/vertex/predict", "POST", "{}").status == 404


# --- Azure ML -----------------------------------------------------------------------------------


def test_azure_liveness_and_score(
    iris_server: Server, iris: modelport.Package, iris_x: np.ndarray
) -> None:
    assert request(iris_server.url + "/").status == 200
    rows = iris_x[:2]
    want = expected(iris, rows)["label"].tolist()
    bodies = [
        {"input_data": {"columns": ["a", "b", "c", "d"], "index": [0, 1], "data": rows.tolist()}},
        {"input_data": rows.tolist()},
        {"input_data": {"input": rows.tolist()}},
        {"inputs": rows.tolist()},
    ]
    for body in bodies:
        resp = post_json(iris_server.url + "/score", body)
        assert resp.status == 200, (body, resp.body)
        # Azure ML's MLflow scoring script answers the predictions alone, without a wrapper.
        assert resp.json()["label"] == want


# --- metrics and OpenAPI ------------------------------------------------------------------------


def test_metrics_add_up_every_worker(iris_server: Server) -> None:
    wait_for(
        lambda: gauge(iris_server, "modelport_workers_ready") == 2,
        "the second worker to be ready",
        log=iris_server.log,
    )
    before = _counter(request(iris_server.url + "/metrics").body.decode(), "/v2/health/live")
    for _ in range(10):
        request(iris_server.url + "/v2/health/live")
    text = request(iris_server.url + "/metrics").body.decode()
    assert _counter(text, "/v2/health/live") == before + 10
    assert "# TYPE modelport_request_duration_seconds histogram" in text
    assert 'modelport_errors_total{type="bad_input"}' in text
    assert "modelport_batch_rows_bucket" in text
    assert "modelport_queue_depth " in text
    assert "modelport_workers_ready 2" in text
    load = [ln for ln in text.splitlines() if ln.startswith("modelport_model_load_seconds ")]
    assert 0 < float(load[0].split()[1]) < 30


def _counter(text: str, route: str) -> float:
    prefix = f'modelport_requests_total{{route="{route}",status="200"}} '
    for line in text.splitlines():
        if line.startswith(prefix):
            return float(line[len(prefix) :])
    return 0.0


def test_openapi_describes_the_model(iris_server: Server) -> None:
    doc = request(iris_server.url + "/openapi.json").json()
    assert doc["openapi"].startswith("3.")
    assert {"/ping", "/invocations", "/score", "/v2/models/{model_name}/infer"} <= set(doc["paths"])
    assert "/vertex/predict" in doc["paths"]
    body = doc["paths"]["/invocations"]["post"]["requestBody"]["content"]["application/json"]
    inputs = body["schema"]["oneOf"][0]["properties"]["inputs"]["oneOf"][0]
    assert inputs["items"] == {
        "type": "array",
        "items": {
            "type": "number",
            # The largest numbers that read as a finite float32 (up to half a step past its
            # maximum, 3.4028234663852886e38, rounds down to it).
            "minimum": -3.4028235677973362e38,
            "maximum": 3.4028235677973362e38,
        },
        "minItems": 4,
        "maxItems": 4,
    }
    json.dumps(doc)
