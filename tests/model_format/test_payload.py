"""Payload formats (``inputs``, ``instances``, MLflow's ``dataframe_*``) and response formatting."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from modelport.errors import InputError
from modelport.model_format.jsontext import plain
from modelport.model_format.payload import (
    Payload,
    answer_outputs,
    format_predictions,
    parse_payload,
    python_inputs,
    read_payload,
)
from modelport.model_format.signature import Signature, TensorSpec

SINGLE = Signature((TensorSpec("x", "float32", (-1, 3)),), (TensorSpec("y", "float32", (-1,)),))
MULTI = Signature(
    (
        TensorSpec("age", "float32", (-1, 1)),
        TensorSpec("color", "string", (-1, 1)),
        TensorSpec("visits", "int64", (-1,)),
    ),
    (TensorSpec("label", "int64", (-1,)),),
)
COLUMN = Signature((TensorSpec("x", "float64", (-1, 1)),), ())


def parse_error(body: Any, signature: Signature = SINGLE) -> str:
    with pytest.raises(InputError) as excinfo:
        parse_payload(body, signature)
    return str(excinfo.value)


# --- inputs -----------------------------------------------------------------------------------


def test_named_inputs() -> None:
    body = {"inputs": {"age": [[1.0]], "color": [["red"]], "visits": [3]}}
    assert parse_payload(body, MULTI) == body["inputs"]


def test_single_unnamed_input() -> None:
    assert parse_payload({"inputs": [[1, 2, 3]]}, SINGLE) == {"x": [[1, 2, 3]]}


def test_unnamed_input_for_a_multi_input_model_is_an_error() -> None:
    assert "3 inputs" in parse_error({"inputs": [[1.0]]}, MULTI)


def test_params_and_parameters_are_ignored() -> None:
    out = parse_payload({"inputs": [[1, 2, 3]], "params": {"k": 1}, "parameters": {}}, SINGLE)
    assert out == {"x": [[1, 2, 3]]}


@pytest.mark.parametrize(
    "body",
    [
        "inputs",
        None,
        {},
        {"data": [[1, 2, 3]]},
        {"inputs": [[1, 2, 3]], "instances": [[1, 2, 3]]},
        {"inputs": [[1, 2, 3]], "extra": 1},
    ],
)
def test_body_must_have_exactly_one_known_key(body: Any) -> None:
    message = parse_error(body)
    assert "inputs" in message
    assert "dataframe_split" in message


def test_unknown_keys_are_named() -> None:
    message = parse_error({"inputs": [[1, 2, 3]], "extra": 1})
    assert "'extra'" in message


# --- instances --------------------------------------------------------------------------------


def test_instances_of_plain_rows_for_a_single_input() -> None:
    rows = [[1, 2, 3], [4, 5, 6]]
    out = parse_payload({"instances": rows}, SINGLE)
    assert out == {"x": rows}
    assert SINGLE.enforce(out)["x"].shape == (2, 3)


def test_instances_of_objects_are_stacked_per_input() -> None:
    body = {
        "instances": [
            {"age": [30.0], "color": ["red"], "visits": 1},
            {"age": [41.5], "color": ["blue"], "visits": 7},
        ]
    }
    out = parse_payload(body, MULTI)
    assert out == {"age": [[30.0], [41.5]], "color": [["red"], ["blue"]], "visits": [1, 7]}
    arrays = MULTI.enforce(out)
    assert arrays["age"].dtype == np.float32
    assert arrays["color"].tolist() == [["red"], ["blue"]]
    assert arrays["visits"].tolist() == [1, 7]


def test_instances_missing_an_input_in_some_row() -> None:
    body = {"instances": [{"age": [1.0], "visits": 1}, {"age": [2.0]}]}
    assert "'visits'" in parse_error(body, MULTI)


def test_instances_mixing_objects_and_values() -> None:
    assert "mix" in parse_error({"instances": [{"x": [1, 2, 3]}, [1, 2, 3]]})


def test_plain_instances_for_a_multi_input_model() -> None:
    assert "3 inputs" in parse_error({"instances": [[1.0, "red", 3]]}, MULTI)


@pytest.mark.parametrize("value", ["rows", 3, None])
def test_instances_must_be_a_list(value: Any) -> None:
    assert "list" in parse_error({"instances": value})


# --- dataframe_split and dataframe_records ----------------------------------------------------


def test_dataframe_split_for_a_single_input_is_its_matrix() -> None:
    body = {"dataframe_split": {"columns": ["a", "b", "c"], "data": [[1, 2, 3], [4, 5, 6]]}}
    out = parse_payload(body, SINGLE)
    assert out == {"x": [[1, 2, 3], [4, 5, 6]]}
    np.testing.assert_array_equal(SINGLE.enforce(out)["x"], [[1, 2, 3], [4, 5, 6]])


def test_dataframe_split_for_several_inputs_goes_column_by_column() -> None:
    body = {
        "dataframe_split": {
            "columns": ["age", "color", "visits"],
            "data": [[30.5, "red", 2], [41.0, "blue", 0]],
        }
    }
    out = parse_payload(body, MULTI)
    # Each input gets its column; enforcement shapes a [-1, 1] input's column.
    assert out == {"age": [30.5, 41.0], "color": ["red", "blue"], "visits": [2, 0]}
    arrays = MULTI.enforce(out)
    assert arrays["age"].shape == (2, 1)
    assert arrays["color"].tolist() == [["red"], ["blue"]]
    assert arrays["visits"].dtype == np.int64


def test_dataframe_split_with_an_unknown_column_is_reported_by_enforcement() -> None:
    body = {"dataframe_split": {"columns": ["age", "colour"], "data": [[1.0, "red"]]}}
    out = parse_payload(body, MULTI)
    with pytest.raises(InputError) as excinfo:
        MULTI.enforce(out)
    message = str(excinfo.value)
    assert "unknown input(s) 'colour'" in message
    assert "missing input(s) 'color', 'visits'" in message


def test_one_column_named_like_a_column_input_feeds_it_directly() -> None:
    body = {"dataframe_split": {"columns": ["x"], "data": [[1.0], [2.0]]}}
    out = parse_payload(body, COLUMN)
    assert COLUMN.enforce(out)["x"].tolist() == [[1.0], [2.0]]


def test_dataframe_records_for_a_single_input_is_its_matrix() -> None:
    body = {"dataframe_records": [{"a": 1, "b": 2, "c": 3}, {"a": 4, "b": 5, "c": 6}]}
    out = parse_payload(body, SINGLE)
    assert out == {"x": [[1, 2, 3], [4, 5, 6]]}


def test_dataframe_records_for_several_inputs_by_column_name() -> None:
    body = {
        "dataframe_records": [
            {"visits": 2, "age": 30.5, "color": "red"},
            {"age": 41.0, "color": "blue", "visits": 0},
        ]
    }
    out = parse_payload(body, MULTI)
    assert out == {"age": [30.5, 41.0], "color": ["red", "blue"], "visits": [2, 0]}


def test_dataframe_records_missing_a_column_in_some_row() -> None:
    body = {"dataframe_records": [{"age": 1.0, "color": "SECRET-VALUE"}, {"age": 2.0}]}
    message = parse_error(body, MULTI)
    assert "'color'" in message
    assert "SECRET" not in message


@pytest.mark.parametrize(
    "value",
    [
        [[1, 2, 3]],
        {"columns": ["a"]},
        {"columns": "abc", "data": [[1]]},
        {"columns": ["a", "b", "c"], "data": [1, 2, 3]},
        {"columns": ["a", "b", "c"], "data": "rows"},
    ],
)
def test_malformed_dataframe_split(value: Any) -> None:
    assert "dataframe_split" in parse_error({"dataframe_split": value})


def test_dataframe_split_rows_of_the_wrong_width() -> None:
    body = {"dataframe_split": {"columns": ["a", "b", "c"], "data": [[1, 2, 3], [4, 5]]}}
    assert "3 value(s)" in parse_error(body)


@pytest.mark.parametrize("value", [{"a": 1}, [[1, 2, 3]], [{"a": 1}, 2], "records"])
def test_malformed_dataframe_records(value: Any) -> None:
    assert "dataframe_records" in parse_error({"dataframe_records": value})


def test_payload_errors_never_echo_the_data() -> None:
    bodies = [
        {"dataframe_split": {"columns": ["a"], "data": [["SECRET-VALUE"], ["SECRET", 1]]}},
        {"instances": [{"x": "SECRET-VALUE"}, "SECRET-VALUE"]},
        {"inputs": ["SECRET-VALUE"], "SECRET-KEY-IS-NAMED-BUT-VALUE-NOT": "SECRET-VALUE"},
    ]
    for body in bodies:
        message = parse_error(body)
        assert "SECRET-VALUE" not in message


# --- responses --------------------------------------------------------------------------------


def test_one_output_is_a_plain_list() -> None:
    out = format_predictions({"y": np.array([[1.5, 2.0]], dtype=np.float32)})
    assert out == {"predictions": [[1.5, 2.0]]}


def test_several_outputs_are_columnar() -> None:
    out = format_predictions(
        {"label": np.array([1, 0]), "probabilities": np.array([[0.25, 0.75], [0.5, 0.5]])}
    )
    assert out == {"predictions": {"label": [1, 0], "probabilities": [[0.25, 0.75], [0.5, 0.5]]}}
    assert type(out["predictions"]["label"][0]) is int


def test_string_outputs_stay_strings() -> None:
    assert format_predictions({"s": np.array(["a", "b"], dtype=object)}) == {
        "predictions": ["a", "b"]
    }
    assert plain(np.array([b"x", b"y"])) == ["x", "y"]
    assert plain(np.array([["u"]], dtype="<U1")) == [["u"]]
    assert plain(np.array([], dtype=object)) == []


def test_formatted_predictions_are_plain_json() -> None:
    import json

    out = format_predictions(
        {
            "a": np.array([1, 2], dtype=np.int64),
            "b": np.array([True, False]),
            "c": np.array([0.5], dtype=np.float16),
        }
    )
    assert json.loads(json.dumps(out)) == {
        "predictions": {"a": [1, 2], "b": [True, False], "c": [0.5]}
    }


# --- bare arrays, ignored columns, requested outputs, the Python API ----------------------------


def test_a_bare_array_is_the_tensor_of_a_single_input() -> None:
    assert read_payload([[1, 2, 3]], SINGLE) == Payload({"x": [[1, 2, 3]]})


def test_a_bare_array_of_objects_is_rows_for_named_inputs() -> None:
    rows = [{"age": 30.5, "color": "red", "visits": 2}, {"age": 1, "color": "b", "visits": 0}]
    out = read_payload(rows, MULTI).inputs
    arrays = MULTI.enforce(out)
    assert arrays["age"].tolist() == [[30.5], [1.0]]
    assert arrays["visits"].tolist() == [2, 0]


def test_a_bare_array_of_values_for_named_inputs_says_rows_must_be_objects() -> None:
    assert "object of input name" in parse_error([[1.0, "red", 3]], MULTI)


def test_one_value_per_column_in_every_form_is_the_same_batch() -> None:
    forms: list[Any] = [
        {"instances": [{"age": 30.5, "color": "red", "visits": 2}]},
        {"inputs": {"age": [30.5], "color": ["red"], "visits": [2]}},
        {"inputs": {"age": 30.5, "color": "red", "visits": [2]}},
        {"dataframe_split": {"columns": ["age", "color", "visits"], "data": [[30.5, "red", 2]]}},
        {"dataframe_records": [{"age": 30.5, "color": "red", "visits": 2}]},
        [{"age": 30.5, "color": "red", "visits": 2}],
    ]
    for body in forms:
        arrays = MULTI.enforce(parse_payload(body, MULTI))
        assert arrays["age"].tolist() == [[30.5]], body
        assert arrays["color"].tolist() == [["red"]], body
        assert arrays["visits"].tolist() == [2], body


def test_extra_table_columns_are_ignored_and_listed() -> None:
    body = {
        "dataframe_split": {
            "columns": ["id", "age", "color", "visits", "note"],
            "index": [7],
            "data": [[1, 30.5, "red", 2, "x"]],
        }
    }
    payload = read_payload(body, MULTI)
    assert payload.ignored == ("id", "note")
    assert set(payload.inputs) == {"age", "color", "visits"}
    with pytest.raises(InputError, match=r"'id', 'note' feed no input.*strict"):
        read_payload(body, MULTI, strict=True)


def test_a_missing_input_leaves_the_unknown_columns_for_enforcement() -> None:
    body = {"dataframe_records": [{"age": 1.0, "colour": "red", "visits": 1}]}
    payload = read_payload(body, MULTI, strict=True)
    assert payload.ignored == ()
    with pytest.raises(InputError, match=r"missing input.*'color'.*unknown input.*'colour'"):
        MULTI.enforce(payload.inputs)


def test_repeated_columns_are_an_error() -> None:
    body = {"dataframe_split": {"columns": ["age", "age"], "data": [[1.0, 2.0]]}}
    assert "'age' appear more than once" in parse_error(body, MULTI)


def test_params_outputs_names_the_outputs_to_answer() -> None:
    signature = Signature(
        SINGLE.inputs,
        (TensorSpec("label", "int64", (-1,)), TensorSpec("probabilities", "float32", (-1, 2))),
    )
    body = {"inputs": [[1, 2, 3]], "params": {"outputs": ["probabilities"]}}
    assert read_payload(body, signature).outputs == ("probabilities",)
    with pytest.raises(InputError, match=r"unknown output.*'nope'"):
        read_payload({"inputs": [[1, 2, 3]], "params": {"outputs": ["nope"]}}, signature)
    with pytest.raises(InputError, match=r"params\.outputs must be"):
        read_payload({"inputs": [[1, 2, 3]], "params": {"outputs": "label"}}, signature)


def test_mlflow_answers_hold_a_classifier_s_labels_and_flat_columns() -> None:
    outputs = {
        "label": np.array([1, 0]),
        "probabilities": np.array([[0.2, 0.8], [0.9, 0.1]], np.float32),
    }
    assert list(answer_outputs(outputs)) == ["label", "probabilities"]
    assert list(answer_outputs(outputs, mode="mlflow")) == ["label"]
    assert list(answer_outputs(outputs, ("probabilities",), "mlflow")) == ["probabilities"]
    column = answer_outputs({"prediction": np.array([[1.5], [2.5]])}, mode="mlflow")
    assert column["prediction"].shape == (2,)
    assert answer_outputs({"prediction": np.array([[1.5]])})["prediction"].shape == (1, 1)


def test_the_python_api_takes_a_dataframe_records_and_columns() -> None:
    pd = pytest.importorskip("pandas")
    frame = pd.DataFrame({"visits": [2, 0], "age": [30.5, 41.0], "color": ["red", "blue"]})
    expected = MULTI.enforce({"age": [30.5, 41.0], "color": ["red", "blue"], "visits": [2, 0]})
    for value in (frame, frame.to_dict(orient="records"), frame.to_dict(orient="list")):
        arrays = MULTI.enforce(python_inputs(value, MULTI))
        for name, array in expected.items():
            np.testing.assert_array_equal(arrays[name], array)
    matrix = pd.DataFrame([[1.0, 2.0, 3.0]], columns=["a", "b", "c"])
    assert SINGLE.enforce(python_inputs(matrix, SINGLE))["x"].tolist() == [[1.0, 2.0, 3.0]]
    assert python_inputs([[1, 2, 3]], SINGLE) == [[1, 2, 3]]


def test_mlflow_s_other_spellings_rows_in_inputs_and_columns_in_instances() -> None:
    rows = [{"age": 30.5, "color": "red", "visits": 2}]
    columns = {"age": [30.5], "color": ["red"], "visits": [2]}
    for body in ({"inputs": rows}, {"instances": columns}):
        arrays = MULTI.enforce(parse_payload(body, MULTI))
        assert arrays["color"].tolist() == [["red"]], body
