"""How the application reads and answers each wire form: negotiation, columns, answer modes.

The real Flask application through Flask's test client, on real packages; the real clients'
own tests (SageMaker's serializers, MLflow's client, the Vertex SDK, tritonclient) are in
``test_clients_*.py``.
"""

from __future__ import annotations

import gzip
import io
import json
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from flask import Flask
from flask.testing import FlaskClient
from test_app import make_app

import modelport
from modelport.errors import NotAcceptable
from modelport.model_format.package import load
from modelport.serving.app import IGNORED_HEADER, negotiate

ROWS = [[0.1, 0.2, 0.3, 0.4], [1.5, -0.5, 0.25, 2.0], [-1.0, 0.0, 1.0, 0.5]]


@pytest.fixture(scope="module")
def frame_package(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A pipeline fitted on a DataFrame: one [-1, 1] input per column, a number and a text."""
    pd = pytest.importorskip("pandas")
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    rng = np.random.default_rng(3)
    frame = pd.DataFrame(
        {
            "age": rng.normal(40, 10, 200),
            "plan": rng.choice(["basic", "pro", "team"], 200),
        }
    )
    labels = ((frame["age"] > 40) ^ (frame["plan"] == "pro")).astype(int)
    columns = ColumnTransformer(
        [("num", StandardScaler(), ["age"]), ("cat", OneHotEncoder(), ["plan"])]
    )
    pipeline = make_pipeline(columns, LogisticRegression()).fit(frame, labels)
    out = tmp_path_factory.mktemp("frame") / "churn.mport"
    modelport.pack(pipeline, out, name="churn", example=frame.head(5))
    return out


@pytest.fixture
def iris(packages: dict[str, Path], tmp_path: Path) -> Iterator[Flask]:
    with make_app(packages["iris"], tmp_path, predict_route="/vertex/predict") as app:
        yield app


@pytest.fixture
def churn(frame_package: Path, tmp_path: Path) -> Iterator[Flask]:
    with make_app(frame_package, tmp_path) as app:
        yield app


def expected(package: Path, inputs: Any) -> dict[str, np.ndarray]:
    with load(package) as loaded:
        return loaded.predict(inputs)


def post(client: FlaskClient, path: str, body: bytes | str, content_type: str, **kw: Any) -> Any:
    return client.post(path, data=body, content_type=content_type, **kw)


# --- negotiation ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("accept", "answer"),
    [
        (None, ("application/json", {})),
        ("*/*", ("application/json", {})),
        ("text/csv", ("text/csv", {})),
        ("text/csv; header=present", ("text/csv", {"header": "present"})),
        ("text/*", ("text/csv", {})),
        ("application/x-npy", ("application/x-npy", {})),
        ("application/jsonl", ("application/jsonl", {})),
        ("application/json; charset=utf-8", ("application/json", {"charset": "utf-8"})),
        ("text/html, text/csv;q=0.5, application/json;q=0.9", ("application/json", {})),
        ("application/x-npy;q=0, text/csv", ("text/csv", {})),
        # Equally wanted: the server's order, JSON first (SageMaker's pandas Predictor).
        ("text/csv, application/json", ("application/json", {})),
    ],
)
def test_negotiate_picks_the_best_type_the_server_writes(
    accept: str | None, answer: tuple[str, dict[str, str]]
) -> None:
    assert negotiate(accept) == answer


@pytest.mark.parametrize("accept", ["text/html", "image/*", "application/x-npy;q=0"])
def test_negotiate_refuses_what_it_cannot_write(accept: str) -> None:
    with pytest.raises(NotAcceptable):
        negotiate(accept)


# --- answer types: exactly the type asked for ------------------------------------------------


def test_each_answer_type_is_labelled_as_asked(iris: Flask, packages: dict[str, Path]) -> None:
    client = iris.test_client()
    want = expected(packages["iris"], np.array(ROWS, np.float32))
    body = json.dumps({"inputs": ROWS})
    for accept in ("text/csv", "application/x-npy", "application/jsonlines", "application/jsonl"):
        resp = post(client, "/invocations", body, "application/json", headers={"Accept": accept})
        assert resp.status_code == 200, resp.data
        assert resp.headers["Content-Type"] == accept
    resp = post(client, "/invocations", body, "application/json", headers={"Accept": "text/csv"})
    rows = resp.data.decode().splitlines()
    assert len(rows) == len(ROWS)  # no header unless asked
    assert [int(r.split(",")[0]) for r in rows] == want["label"].tolist()
    resp = post(
        client,
        "/invocations",
        body,
        "application/json",
        headers={"Accept": "text/csv; header=present"},
    )
    assert resp.headers["Content-Type"] == "text/csv; header=present"
    assert resp.data.decode().splitlines()[0].startswith("label,probabilities_0")


def test_a_csv_request_with_a_header_gets_one_back(churn: Flask) -> None:
    client = churn.test_client()
    with_header = "age,plan\n30,pro\n50,basic\n"
    resp = post(client, "/invocations", with_header, "text/csv", headers={"Accept": "text/csv"})
    assert resp.status_code == 200, resp.data
    assert resp.data.decode().splitlines()[0].startswith("label")
    headerless = "30,pro\n50,basic\n"
    resp = post(client, "/invocations", headerless, "text/csv", headers={"Accept": "text/csv"})
    assert resp.status_code == 200, resp.data
    assert len(resp.data.decode().splitlines()) == 2


# --- columns, ignored and strict ----------------------------------------------------------------


def test_one_value_per_column_in_every_body_form(churn: Flask, frame_package: Path) -> None:
    client = churn.test_client()
    want = expected(frame_package, {"age": [30.0, 55.0], "plan": ["pro", "team"]})["label"]
    records = [{"age": 30.0, "plan": "pro"}, {"age": 55.0, "plan": "team"}]
    bodies = [
        {"instances": records},
        records,
        {"inputs": {"age": [30.0, 55.0], "plan": ["pro", "team"]}},
        {"dataframe_records": records},
        {"dataframe_split": {"columns": ["age", "plan"], "data": [[30.0, "pro"], [55, "team"]]}},
    ]
    for body in bodies:
        resp = post(client, "/invocations", json.dumps(body), "application/json")
        assert resp.status_code == 200, (body, resp.data)
        assert resp.json["predictions"]["label"] == want.tolist(), body
    azure = {"input_data": {"age": [30.0, 55.0], "plan": ["pro", "team"]}}
    resp = post(client, "/score", json.dumps(azure), "application/json")
    assert resp.status_code == 200, resp.data
    assert resp.json["label"] == want.tolist()  # Azure answers the predictions themselves


def test_extra_columns_are_ignored_and_named(churn: Flask, frame_package: Path) -> None:
    client = churn.test_client()
    # What df.to_csv() writes: the index column first, and here one column the model ignores.
    body = ",customer,age,plan\n0,a-1,30,pro\n1,b-2,55,team\n"
    resp = post(client, "/invocations", body, "text/csv")
    assert resp.status_code == 200, resp.data
    assert resp.headers[IGNORED_HEADER] == "index,customer"
    want = expected(frame_package, {"age": [30.0, 55.0], "plan": ["pro", "team"]})["label"]
    assert resp.json["predictions"]["label"] == want.tolist()
    split = {"dataframe_split": {"columns": ["note", "age", "plan"], "data": [["x", 1.0, "pro"]]}}
    resp = post(client, "/invocations", json.dumps(split), "application/json")
    assert resp.status_code == 200, resp.data
    assert resp.headers[IGNORED_HEADER] == "note"


def test_strict_inputs_refuse_extra_columns(frame_package: Path, tmp_path: Path) -> None:
    with make_app(frame_package, tmp_path, strict_inputs=True) as app:
        client = app.test_client()
        split = {"dataframe_split": {"columns": ["note", "age", "plan"], "data": [["x", 1, "pro"]]}}
        resp = post(client, "/invocations", json.dumps(split), "application/json")
        assert resp.status_code == 400
        assert "'note'" in resp.json["message"] and "strict" in resp.json["message"]
        assert IGNORED_HEADER not in resp.headers


# --- answer modes and requested outputs ---------------------------------------------------------


def test_mlflow_answers_hold_the_labels_only(packages: dict[str, Path], tmp_path: Path) -> None:
    want = expected(packages["iris"], np.array(ROWS, np.float32))
    with make_app(packages["iris"], tmp_path, answer="mlflow") as app:
        resp = post(app.test_client(), "/invocations", json.dumps(ROWS), "application/json")
        assert resp.status_code == 200, resp.data
        assert resp.json == {"predictions": want["label"].tolist()}
        resp = post(
            app.test_client(),
            "/invocations",
            json.dumps({"inputs": ROWS, "params": {"outputs": ["probabilities"]}}),
            "application/json",
        )
        np.testing.assert_allclose(resp.json["predictions"], want["probabilities"], rtol=1e-6)


def test_requested_outputs_on_every_json_route(iris: Flask, packages: dict[str, Path]) -> None:
    client = iris.test_client()
    want = expected(packages["iris"], np.array(ROWS, np.float32))
    body = {"inputs": ROWS, "params": {"outputs": ["label"]}}
    resp = post(client, "/invocations", json.dumps(body), "application/json")
    assert resp.json == {"predictions": want["label"].tolist()}
    resp = post(client, "/score", json.dumps({"input_data": ROWS, **body}), "application/json")
    assert resp.status_code == 400  # with input_data, 'inputs' is not allowed
    resp = post(
        client,
        "/score",
        json.dumps({"input_data": ROWS, "params": {"outputs": ["label"]}}),
        "application/json",
    )
    assert resp.json == want["label"].tolist()
    vertex = {"instances": ROWS, "parameters": {"outputs": ["label"]}}
    resp = post(client, "/vertex/predict", json.dumps(vertex), "application/json")
    assert resp.json == {"predictions": want["label"].tolist()}
    resp = post(
        client,
        "/vertex/predict",
        json.dumps({"instances": ROWS, "parameters": {"outputs": ["nope"]}}),
        "application/json",
    )
    assert resp.status_code == 400
    assert resp.json["error"]["status"] == "INVALID_ARGUMENT"


# --- non-finite numbers and compressed bodies ---------------------------------------------------


def test_nan_tokens_in_and_out(packages: dict[str, Path], tmp_path: Path) -> None:
    with make_app(packages["sums"], tmp_path) as app:
        client = app.test_client()
        body = '{"inputs": [[NaN, 1.0], [Infinity, 1.0], [-Infinity, 0], [0.5, 0.4]]}'
        resp = post(client, "/invocations", body, "application/json")
        assert resp.status_code == 200, resp.data
        # Python's json (and so MLflow's client) writes and reads these tokens; float32 0.9 is
        # printed in its shortest form, as `modelport predict` prints it.
        assert resp.data == b'{"predictions":[NaN,Infinity,-Infinity,0.9]}'
        resp = post(client, "/invocations", '{"inputs": [[1, 2]]}', "application/json")
        assert resp.data == b'{"predictions":[3.0]}'


def test_every_post_route_takes_compressed_bodies(iris: Flask, packages: dict[str, Path]) -> None:
    client = iris.test_client()
    want = expected(packages["iris"], np.array(ROWS, np.float32))["label"].tolist()
    raw = json.dumps({"instances": ROWS}).encode()
    for coding, data in (("gzip", gzip.compress(raw)), ("deflate", zlib.compress(raw))):
        headers = {"Content-Encoding": coding}
        resp = post(client, "/invocations", data, "application/json", headers=headers)
        assert resp.json["predictions"]["label"] == want, coding
        resp = post(client, "/vertex/predict", data, "application/json", headers=headers)
        assert [p["label"] for p in resp.json["predictions"]] == want, coding
        azure = json.dumps({"input_data": ROWS}).encode()
        packed = gzip.compress(azure) if coding == "gzip" else zlib.compress(azure)
        resp = post(client, "/score", packed, "application/json", headers=headers)
        assert resp.json["label"] == want, coding
    resp = post(client, "/invocations", raw, "application/json", headers={"Content-Encoding": "br"})
    assert resp.status_code == 415


def test_npy_in_and_out(iris: Flask, packages: dict[str, Path]) -> None:
    client = iris.test_client()
    array = np.array(ROWS, np.float32)
    buffer = io.BytesIO()
    np.save(buffer, array)
    resp = post(
        client,
        "/invocations",
        buffer.getvalue(),
        "application/x-npy",
        headers={"Accept": "application/x-npy"},
    )
    assert resp.status_code == 200, resp.data
    answer = np.load(io.BytesIO(resp.data), allow_pickle=False)
    want = expected(packages["iris"], array)
    assert answer["label"].tolist() == want["label"].tolist()
    np.testing.assert_allclose(answer["probabilities"], want["probabilities"], rtol=1e-6)
