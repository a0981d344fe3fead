"""Azure ML's MLflow-style bodies on ``POST /score`` (no SDK: Azure's clients post JSON as is).

Azure ML's MLflow scoring script takes ``{"input_data": …}`` in pandas' ``split`` orient
(``columns``/``index``/``data``), as a dict of columns, or as a plain list (a tensor), with optional
``params``, and answers the bare predictions: a list for one output, an object of lists for
several. Errors are ``{"message": "…"}``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from clients.models import TablePackage, predict, table_columns, table_frame
from serving_support import Server, post_json, request

SECRET = 987654.125


def table_body(form: str, n: int, seed: int) -> tuple[dict[str, Any], Any]:
    """(an Azure body of ``n`` rows in ``form``, the frame it holds)."""
    frame = table_frame(n, seed=seed)
    input_data: Any = {
        "split": {
            "columns": list(frame.columns),
            "index": list(range(n)),
            "data": frame.to_numpy().tolist(),
        },
        "split-no-index": {"columns": list(frame.columns), "data": frame.to_numpy().tolist()},
        "columns": {c: frame[c].tolist() for c in frame.columns},
    }[form]
    return {"input_data": input_data}, frame


def assert_bare_predictions(answer: Any, want: dict[str, np.ndarray]) -> None:
    assert isinstance(answer, dict) and set(answer) == {"label", "probabilities"}, answer
    assert answer["label"] == want["label"].tolist()
    np.testing.assert_array_equal(
        np.asarray(answer["probabilities"], np.float32), want["probabilities"]
    )


def test_liveness(table_server: Server) -> None:
    assert request(table_server.url + "/").status == 200


@pytest.mark.parametrize("form", ["split", "split-no-index", "columns"])
def test_dataframe_model_input_data(table_server: Server, table: TablePackage, form: str) -> None:
    body, frame = table_body(form, 7, seed=41)
    resp = post_json(table_server.url + "/score", body)
    assert resp.status == 200, resp.body
    assert_bare_predictions(resp.json(), predict(table.path, table_columns(frame)))


def test_one_row_as_one_value_per_column(table_server: Server, table: TablePackage) -> None:
    resp = post_json(table_server.url + "/score", {"input_data": {"num": 0.5, "cat": "c"}})
    assert resp.status == 200, resp.body
    frame = table_frame(1)
    frame.loc[0, ["num", "cat"]] = [0.5, "c"]
    assert_bare_predictions(resp.json(), predict(table.path, table_columns(frame)))


def test_numeric_model_plain_list(
    iris_server: Server, packages: dict[str, Path], iris_x: np.ndarray
) -> None:
    rows = iris_x[:4]
    resp = post_json(iris_server.url + "/score", {"input_data": rows.tolist()})
    assert resp.status == 200, resp.body
    assert_bare_predictions(resp.json(), predict(packages["iris"], rows))


def test_params_outputs_gives_a_bare_list(table_server: Server, table: TablePackage) -> None:
    body, frame = table_body("split", 5, seed=42)
    resp = post_json(table_server.url + "/score", {**body, "params": {"outputs": ["label"]}})
    assert resp.status == 200, resp.body
    assert resp.json() == predict(table.path, table_columns(frame))["label"].tolist()


def test_mlflow_answer_is_the_labels(table_mlflow_server: Server, table: TablePackage) -> None:
    body, frame = table_body("columns", 6, seed=43)
    resp = post_json(table_mlflow_server.url + "/score", body)
    assert resp.status == 200, resp.body
    assert resp.json() == predict(table.path, table_columns(frame))["label"].tolist()


@pytest.mark.parametrize(
    "body",
    [
        {"input_data": {"columns": ["num"], "data": [[SECRET]]}},  # a missing column
        {"input_data": {"num": ["secret-cell"], "cat": ["a"]}},  # text in a float column
        {"input_data": {"num": [SECRET, 1.0], "cat": ["a"]}},  # columns of different lengths
        {
            "input_data": {"columns": ["num", "cat"], "data": [[SECRET, "a"]]},
            "params": {"outputs": ["nope"]},
        },
        {"rows": [[SECRET]]},  # not an Azure body
    ],
    ids=["missing-column", "text-in-float", "ragged", "unknown-output", "no-input-data"],
)
def test_errors_are_azure_shaped_and_quote_nothing(table_server: Server, body: Any) -> None:
    resp = post_json(table_server.url + "/score", body)
    assert resp.status == 400, resp.body
    answer = resp.json()
    assert set(answer) == {"message"}, answer
    assert "987654" not in answer["message"]
    assert "secret-cell" not in answer["message"]
