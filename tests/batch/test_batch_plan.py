"""The plan: every way a table's schema can fail to feed a signature, found before a row is read."""

from __future__ import annotations

import pytest

from modelport.batch.plan import ARRAY, VECTOR, Column, feeds_losslessly, make_plan, plan_outputs
from modelport.errors import InputError, UsageError
from modelport.model_format.signature import Signature, TensorSpec

MATRIX = Signature(
    (TensorSpec("input", "float32", (-1, 3)),),
    (TensorSpec("label", "int64", (-1,)), TensorSpec("probabilities", "float32", (-1, 2))),
)
NAMED = Signature(
    (
        TensorSpec("age", "float32", (-1, 1)),
        TensorSpec("visits", "int64", (-1, 1)),
        TensorSpec("color", "string", (-1, 1)),
    ),
    (TensorSpec("label", "string", (-1,)),),
)


def floats(*names: str, kind: str = "float64") -> list[Column]:
    return [Column(n, kind) for n in names]


def test_named_inputs_take_their_columns_and_other_columns_are_kept() -> None:
    table = [
        Column("id", "int64"),
        Column("age", "float64"),
        Column("visits", "int32"),
        Column("color", "string", nullable=False),
    ]
    plan = make_plan(table, NAMED)
    assert [(f.input.name, f.columns, f.layout) for f in plan.feeds] == [
        ("age", ("age",), "column"),
        ("visits", ("visits",), "column"),
        ("color", ("color",), "column"),
    ]
    assert plan.columns == ("age", "visits", "color")
    assert plan.nullable == ("age", "visits")  # color says it holds no nulls: never checked
    assert [(o.column, o.dtype, o.width) for o in plan.outputs] == [("label", "string", None)]


def test_a_matrix_input_takes_the_columns_in_order_or_one_array_or_vector() -> None:
    plan = make_plan(floats("a", "b", "c"), MATRIX)
    assert plan.feeds[0].columns == ("a", "b", "c") and plan.feeds[0].layout == "matrix"
    table = [Column("id", "int64"), Column("features", ARRAY, "float64")]
    plan = make_plan(table, MATRIX, columns=["features"])
    assert plan.feeds[0].layout == "array"
    plan = make_plan([Column("v", VECTOR)], MATRIX)
    assert plan.feeds[0].layout == "array"


def test_too_many_columns_for_a_matrix_input_name_them_all_and_the_way_out() -> None:
    with pytest.raises(InputError) as caught:
        make_plan(floats("id", "a", "b", "c"), MATRIX)
    message = str(caught.value)
    assert "input 'input' (float32[-1, 3]) takes 3 columns" in message
    assert "there are 4: 'id', 'a', 'b', 'c'" in message
    assert "name the columns that feed it (--columns, columns=)" in message


def test_a_missing_column_is_named_with_the_inputs_and_the_columns() -> None:
    with pytest.raises(InputError) as caught:
        make_plan([Column("age", "float64"), Column("colour", "string")], NAMED)
    message = str(caught.value)
    assert "no column(s) 'visits', 'color'" in message
    assert "'age' (float32[-1, 1])" in message and "the columns are 'age', 'colour'" in message


@pytest.mark.parametrize(
    ("kind", "want", "expected"),
    [
        ("string", "float32", "column 'age' is string; input 'age' expects float32"),
        ("bool", "float32", "column 'age' is bool; input 'age' expects float32"),
        ("float64", "int64", "floats would lose their fractional part"),
        ("int64", "int32", "some int64 values do not fit"),
        ("decimal(10,2)", "float32", "column 'age' is decimal(10,2)"),
        ("timestamp", "float32", "column 'age' is timestamp"),
    ],
)
def test_a_column_of_a_type_the_input_cannot_take_losslessly_is_refused(
    kind: str, want: str, expected: str
) -> None:
    signature = Signature((TensorSpec("age", want, (-1,)),), (TensorSpec("y", "float32", (-1,)),))
    with pytest.raises(InputError, match=expected.replace("(", r"\(").replace(")", r"\)")):
        make_plan([Column("age", kind)], signature)


def test_every_problem_is_reported_at_once() -> None:
    table = [Column("age", "string"), Column("visits", "float64"), Column("color", "int64")]
    with pytest.raises(InputError) as caught:
        make_plan(table, NAMED)
    message = str(caught.value)
    assert message.count("; ") >= 2
    for name in ("'age'", "'visits'", "'color'"):
        assert f"column {name}" in message


def test_lossless_conversions_are_allowed() -> None:
    assert feeds_losslessly("int32", "float32")  # as JSON numbers are
    assert feeds_losslessly("float64", "float32")  # values checked for range on the way
    assert feeds_losslessly("int32", "int64") and feeds_losslessly("uint16", "int32")
    assert not feeds_losslessly("uint64", "int64") and not feeds_losslessly("bool", "int64")
    assert not feeds_losslessly("string", "bool") and feeds_losslessly("string", "string")


def test_an_array_of_strings_cannot_feed_a_float_matrix() -> None:
    with pytest.raises(InputError, match=r"column 'f' is array<string>; input 'input' expects"):
        make_plan([Column("f", ARRAY, "string")], MATRIX)


def test_nan_for_nulls_needs_float_inputs() -> None:
    table = [Column("age", "float64"), Column("visits", "int64"), Column("color", "string")]
    with pytest.raises(InputError) as caught:
        make_plan(table, NAMED, on_null="nan")
    message = str(caught.value)
    assert "input 'visits' is int64" in message and "input 'color' is string" in message
    assert make_plan(table, NAMED, on_null="skip").on_null == "skip"
    with pytest.raises(UsageError, match="on_null must be one of 'error', 'skip', 'nan'"):
        make_plan(table, NAMED, on_null="drop")


def test_outputs_are_chosen_prefixed_and_must_not_shadow_a_column() -> None:
    table = floats("a", "b", "c")
    plan = make_plan(table, MATRIX, outputs="probabilities", prefix="p_")
    assert [(o.column, o.width) for o in plan.outputs] == [("p_probabilities", 2)]
    with pytest.raises(InputError, match=r"output column.s. 'label' are already columns"):
        make_plan([*table, Column("label", "int64")], MATRIX, columns=["a", "b", "c"])
    with pytest.raises(UsageError, match=r"unknown output.s. 'proba'; the model's outputs are"):
        plan_outputs(MATRIX, ["proba"])
    with pytest.raises(UsageError, match="twice"):
        plan_outputs(MATRIX, ["label", "label"])


def test_unwritable_outputs_are_refused_and_unsigned_ones_widen() -> None:
    signature = Signature(
        (TensorSpec("x", "float32", (-1, 2)),),
        (TensorSpec("cube", "float32", (-1, 2, 2)), TensorSpec("count", "uint8", (-1,))),
    )
    with pytest.raises(InputError, match=r"output 'cube' is float32\[-1, 2, 2\]"):
        plan_outputs(signature, None)
    assert plan_outputs(signature, "count")[0].dtype == "int16"


def test_explicit_columns_must_exist_and_feed_an_input() -> None:
    table = [
        Column("age", "float64"),
        Column("visits", "int64"),
        Column("color", "string"),
        Column("id", "int64"),
    ]
    with pytest.raises(InputError, match=r"no column.s. 'nope'"):
        make_plan(table, NAMED, columns=["nope"])
    with pytest.raises(InputError, match=r"column.s. 'id' feed no input"):
        make_plan(table, NAMED, columns=["age", "visits", "color", "id"])


def test_column_names_in_messages_are_quoted_safely() -> None:
    with pytest.raises(InputError) as caught:
        make_plan(
            [Column("<script>", "string")],
            Signature((TensorSpec("x", "float32", (-1,)),), (TensorSpec("y", "float32", (-1,)),)),
            columns=["<script>"],
        )
    assert "<script>" not in str(caught.value) and r"\x3cscript\x3e" in str(caught.value)
