"""MLflow's own scoring client and payload helpers against a real ``modelport serve``.

``ScoringServerClient.invoke`` posts ``dump_input_data(data)`` (``json.dumps``: NaN is written as
the ``NaN`` token) with ``Content-Type: application/json`` to ``/invocations``, and reads the
answer with ``PredictionsResponse.from_json`` (a JSON object with ``predictions``);
``get_version`` reads ``GET /version``'s text; ``wait_server_ready`` polls ``GET /ping``.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import requests
from clients.models import TABLE_COLUMNS, TablePackage, predict, table_columns, table_frame
from serving_support import Server, port_of, request

import modelport

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # MLflow's own type-hint chatter at import
    from mlflow.pyfunc.scoring_server.client import ScoringServerClient
    from mlflow.utils.proto_json_utils import dump_input_data

SECRET = 987654.125


def client_of(server: Server) -> Any:
    return ScoringServerClient("127.0.0.1", port_of(server.url))


def failure_body(exc: BaseException) -> dict[str, Any]:
    """The server's JSON answer, out of the text of the Exception ``invoke`` raises."""
    text = str(exc)
    marker = "response: "
    assert marker in text, text
    return dict(json.loads(text[text.index(marker) + len(marker) : text.rindex(")")]))


# --- ping, version, readiness -----------------------------------------------------------------


def test_ping_version_and_wait_server_ready(table_server: Server) -> None:
    client = client_of(table_server)
    client.wait_server_ready(timeout=30)
    client.ping()
    assert client.get_version() == modelport.__version__
    resp = request(table_server.url + "/version")
    assert resp.headers["content-type"].split(";")[0] == "text/plain"
    health = request(table_server.url + "/health")
    assert (health.status, health.body) == (200, b"")


# --- invoke with each kind of data dump_input_data writes --------------------------------------


def test_invoke_with_a_dataframe(table_server: Server, table: TablePackage) -> None:
    frame = table_frame(12, seed=21)
    answer = client_of(table_server).invoke(frame)  # {"dataframe_split": {index, columns, data}}
    want = predict(table.path, table_columns(frame))
    assert answer["predictions"]["label"] == want["label"].tolist()
    np.testing.assert_array_equal(
        np.asarray(answer["predictions"]["probabilities"], np.float32), want["probabilities"]
    )
    assert answer.get_predictions()["label"].tolist() == want["label"].tolist()


def test_invoke_with_a_numpy_array_and_a_list(
    iris_server: Server, packages: dict[str, Path], iris_x: np.ndarray
) -> None:
    rows = iris_x[:7]
    want = predict(packages["iris"], rows)
    client = client_of(iris_server)
    for data in (rows, rows.tolist()):  # {"inputs": [[...], ...]}
        answer = client.invoke(data)
        assert answer["predictions"]["label"] == want["label"].tolist()
        np.testing.assert_array_equal(
            np.asarray(answer["predictions"]["probabilities"], np.float32), want["probabilities"]
        )


def test_invoke_with_a_list_of_records(table_server: Server, table: TablePackage) -> None:
    # {"inputs": [{"num": 1.5, "cat": "a"}, ...]}: MLflow's server reads it as a DataFrame.
    frame = table_frame(5, seed=22)
    answer = client_of(table_server).invoke(frame.to_dict(orient="records"))
    assert (
        answer["predictions"]["label"]
        == predict(table.path, table_columns(frame))["label"].tolist()
    )


def test_dict_of_columns(table_server: Server, table: TablePackage) -> None:
    # dump_input_data(dict) is what invoke(dict) would send: {"inputs": {column: values}}.
    # MLflow 3.17's dump_input_data iterates the dict itself ("for k, v in data") and so raises
    # before sending anything: the body is built here as it would be, and posted as invoke does.
    frame = table_frame(6, seed=23)
    with pytest.raises(ValueError, match="unpack"):
        dump_input_data({c: frame[c].tolist() for c in TABLE_COLUMNS})
    body = json.dumps({"inputs": {c: frame[c].tolist() for c in TABLE_COLUMNS}})
    resp = requests.post(
        table_server.url + "/invocations",
        data=body,
        headers={"Content-Type": "application/json"},
        timeout=30,
    )
    assert resp.status_code == 200, resp.text
    want = predict(table.path, table_columns(frame))
    assert resp.json()["predictions"]["label"] == want["label"].tolist()
    # One value per column is one row, as a DataFrame of one row would be.
    one = json.dumps({"inputs": {"num": 0.25, "cat": "b"}})
    resp = requests.post(
        table_server.url + "/invocations",
        data=one,
        headers={"Content-Type": "application/json"},
        timeout=30,
    )
    assert resp.status_code == 200, resp.text
    assert len(resp.json()["predictions"]["label"]) == 1


def test_invoke_with_params(
    iris_server: Server, packages: dict[str, Path], iris_x: np.ndarray
) -> None:
    # params.outputs names the outputs; one output is answered as a list, as always.
    answer = client_of(iris_server).invoke(iris_x[:2], params={"outputs": ["label"]})
    assert answer["predictions"] == predict(packages["iris"], iris_x[:2])["label"].tolist()


# --- NaN, as json.dumps writes it --------------------------------------------------------------


def test_nan_in_a_float_column_is_answered(table_server: Server, table: TablePackage) -> None:
    frame = table_frame(4, seed=24)
    frame.loc[1, "num"] = np.nan
    body = dump_input_data(frame)
    assert "NaN" in body
    answer = client_of(table_server).invoke(frame)
    want = predict(table.path, table_columns(frame))
    assert answer["predictions"]["label"] == want["label"].tolist()
    np.testing.assert_array_equal(  # NaN where the package gives NaN
        np.asarray(answer["predictions"]["probabilities"], np.float32), want["probabilities"]
    )


def test_nan_in_a_numpy_array_is_answered(
    iris_server: Server, packages: dict[str, Path], iris_x: np.ndarray
) -> None:
    rows = iris_x[:3].copy()
    rows[0, 2] = np.nan
    rows[2, 0] = np.inf
    answer = client_of(iris_server).invoke(rows)
    assert len(answer["predictions"]["label"]) == 3
    want = predict(packages["iris"], rows)
    assert set(answer["predictions"]) == set(want)
    for name, array in want.items():
        np.testing.assert_array_equal(  # NaN where the package gives NaN
            np.asarray(answer["predictions"][name], array.dtype), array, err_msg=name
        )


# --- errors: MLflow's shape, parseable, never quoting the request ------------------------------


@pytest.mark.parametrize(
    "case",
    ["wrong-width", "text-in-a-float-column", "missing-column", "not-a-format"],
)
def test_errors_are_mlflow_shaped_and_quote_nothing(
    table_server: Server, iris_server: Server, case: str
) -> None:
    server, data = {
        "wrong-width": (iris_server, np.array([[SECRET, 2.0, 3.0]])),
        "text-in-a-float-column": (
            table_server,
            pd.DataFrame({"num": ["secret-cell-value"], "cat": ["a"]}),
        ),
        "missing-column": (table_server, pd.DataFrame({"num": [SECRET]})),
        "not-a-format": (table_server, '{"rows": [[987654.125]]}'),
    }[case]
    with pytest.raises(Exception, match="error_code") as excinfo:
        client_of(server).invoke(data)
    assert "error code 400" in str(excinfo.value)
    body = failure_body(excinfo.value)
    assert body["error_code"] == "BAD_REQUEST"
    assert isinstance(body["message"], str) and body["message"]
    assert "987654" not in body["message"]
    assert "secret-cell" not in body["message"]
    assert "Traceback" not in body["message"]


# --- --answer mlflow: what code written against MLflow's server reads --------------------------


def test_mlflow_answer_shape_reads_as_mlflow_does(
    table_mlflow_server: Server, table: TablePackage
) -> None:
    frame = table_frame(9, seed=25)
    answer = client_of(table_mlflow_server).invoke(frame)
    want = predict(table.path, table_columns(frame))["label"].tolist()
    assert dict(answer) == {"predictions": want}
    assert answer.get_predictions(predictions_format="ndarray").tolist() == want
    assert answer.get_predictions()[0].tolist() == want
