"""Signature enforcement, the one path for every input: lossless or an error, never an echo."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from modelport.errors import InputError
from modelport.model_format.signature import (
    DTYPES,
    ONNX_TYPES,
    Signature,
    TensorSpec,
    convert,
    dtype_name,
)

SECRET_NUMBER = 123456.789
SECRET_TEXT = "SECRET-VALUE"


def sig(*inputs: TensorSpec) -> Signature:
    return Signature(tuple(inputs), (TensorSpec("out", "float32", (-1,)),))


def one(dtype: str, shape: tuple[int, ...] = (-1,), name: str = "x") -> Signature:
    return sig(TensorSpec(name, dtype, shape))


def enforce_error(signature: Signature, inputs: Any) -> str:
    with pytest.raises(InputError) as excinfo:
        signature.enforce(inputs)
    return str(excinfo.value)


# --- lossless conversions ---------------------------------------------------------------------


@pytest.mark.parametrize("dtype", ["float16", "float32", "float64"])
def test_ints_become_floats(dtype: str) -> None:
    out = one(dtype).enforce([1, 2, -3])["x"]
    assert out.dtype == np.dtype(dtype)
    assert out.tolist() == [1.0, 2.0, -3.0]


@pytest.mark.parametrize("dtype", ["int8", "int16", "int32", "int64", "uint8", "uint64"])
def test_whole_floats_become_ints(dtype: str) -> None:
    out = one(dtype).enforce([2.0, 0.0, 7.0])["x"]
    assert out.dtype == np.dtype(dtype)
    assert out.tolist() == [2, 0, 7]


@pytest.mark.parametrize("dtype", ["int32", "int64", "uint8"])
@pytest.mark.parametrize("value", [1.5, -0.25, 2.0000001, 1e-300])
def test_fractional_floats_never_become_ints(dtype: str, value: float) -> None:
    message = enforce_error(one(dtype), [1.0, value])
    assert "'x'" in message
    assert dtype in message
    assert "fractional" in message


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
def test_nan_and_inf_never_become_ints(bad: float) -> None:
    message = enforce_error(one("int64"), [1.0, bad])
    assert "'x'" in message
    assert "NaN or infinite" in message


@pytest.mark.parametrize(
    ("dtype", "values"),
    [
        ("int32", [2**40]),
        ("int32", [-(2**31) - 1]),
        ("int8", [128]),
        ("uint8", [-1]),
        ("uint8", [256]),
        ("uint32", [2**32]),
        ("int16", np.array([40000], dtype=np.int64)),
        ("int64", np.array([2**63], dtype=np.uint64)),
        ("int32", [2.0**31]),
        # Floats at 2**63 compare equal to int64's max once rounded; they must not wrap around.
        ("int64", [2.0**63]),
        ("int64", np.array([2.0**63], dtype=np.float32)),
        ("int32", np.array([2.0**31], dtype=np.float32)),
        ("uint64", [2.0**64]),
        ("uint64", [-1.0]),
        ("float16", [70000]),
        ("float16", [-1e6]),
        ("float16", [1e5]),
        ("float32", [1e300]),
        ("float32", np.array([-1e39])),
    ],
)
def test_out_of_range_values_are_errors(dtype: str, values: Any) -> None:
    message = enforce_error(one(dtype), values)
    assert "'x'" in message
    assert f"outside the range of {dtype}" in message


@pytest.mark.parametrize(
    ("dtype", "values"),
    [
        ("int32", [2**31 - 1, -(2**31)]),
        ("int64", [2**63 - 1, -(2**63)]),
        ("int64", [2.0**63 - 1024, -(2.0**63)]),
        ("uint64", [2**64 - 1]),
        ("uint8", [0.0, 255.0]),
        ("float16", [65504, -65504]),
    ],
)
def test_values_at_the_limits_are_kept_exactly(dtype: str, values: list[Any]) -> None:
    out = one(dtype).enforce(values)["x"]
    assert out.dtype == np.dtype(dtype)
    assert [int(v) for v in out.tolist()] == [int(v) for v in values]


def test_nan_and_inf_stay_in_float_inputs() -> None:
    out = one("float32").enforce([float("nan"), float("inf"), 1.0])["x"]
    assert np.isnan(out[0])
    assert np.isposinf(out[1])


def test_float64_to_float32_rounds_but_keeps_the_dtype() -> None:
    out = one("float32").enforce(np.array([0.1, 1 / 3]))["x"]
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, np.array([0.1, 1 / 3], dtype=np.float32))


@pytest.mark.parametrize("dtype", ["float32", "int64", "bool"])
@pytest.mark.parametrize(
    "values", [["abc", "def"], ["1.5"], np.array([b"1"]), np.array(["2"], dtype=object)]
)
def test_strings_never_become_numbers(dtype: str, values: Any) -> None:
    message = enforce_error(one(dtype), values)
    assert "'x'" in message
    assert dtype in message


@pytest.mark.parametrize("dtype", ["float32", "int64", "string", "bool"])
@pytest.mark.parametrize("values", [[None], [1, None], [[1.0], [None]], [{"a": 1}]])
def test_null_and_mixed_values_are_errors(dtype: str, values: Any) -> None:
    message = enforce_error(one(dtype, (-1,) if np.ndim(values) == 1 else (-1, 1)), values)
    assert "'x'" in message


def test_python_ints_too_large_for_any_dtype_are_errors() -> None:
    assert "'x'" in enforce_error(one("int64"), [2**70])
    assert "'x'" in enforce_error(one("float64"), [2**70, 1])


# --- booleans ---------------------------------------------------------------------------------


def test_bools_to_bool_inputs() -> None:
    out = one("bool").enforce([True, False])["x"]
    assert out.dtype == np.bool_
    assert out.tolist() == [True, False]


def test_zero_and_one_become_bools() -> None:
    out = one("bool").enforce([0, 1, 1])["x"]
    assert out.dtype == np.bool_
    assert out.tolist() == [False, True, True]


@pytest.mark.parametrize("values", [[0, 2], [-1], [1.0, 0.0], [0.5]])
def test_other_numbers_never_become_bools(values: list[Any]) -> None:
    message = enforce_error(one("bool"), values)
    assert "'x'" in message
    assert "bool" in message


@pytest.mark.parametrize("dtype", ["float32", "float64", "int32", "int64", "uint8"])
def test_bools_never_become_numbers(dtype: str) -> None:
    message = enforce_error(one(dtype), [True, False])
    assert "'x'" in message
    assert "boolean" in message


# --- strings ----------------------------------------------------------------------------------


def test_strings_to_string_inputs_are_object_arrays_of_str() -> None:
    out = one("string", (-1, 2)).enforce([["a", "b"], ["c", "ü€"]])["x"]
    assert out.dtype == np.dtype(object)
    assert out.shape == (2, 2)
    assert all(type(v) is str for v in out.flat)
    assert out.tolist() == [["a", "b"], ["c", "ü€"]]


def test_object_arrays_of_str_pass_through() -> None:
    array = np.array(["a", "b"], dtype=object)
    out = one("string").enforce(array)["x"]
    assert out.dtype == np.dtype(object)
    assert out.tolist() == ["a", "b"]


@pytest.mark.parametrize(
    "values",
    [[1, 2], [1.5], [True], np.array([b"raw"]), np.array(["a", 3], dtype=object), ["a", None]],
)
def test_non_strings_never_become_strings(values: Any) -> None:
    message = enforce_error(one("string"), values)
    assert "'x'" in message
    assert "string" in message


# --- names, ranks and dimensions --------------------------------------------------------------


def test_missing_input_is_named() -> None:
    signature = sig(TensorSpec("a", "float32", (-1,)), TensorSpec("b", "int64", (-1,)))
    message = enforce_error(signature, {"a": [1.0]})
    assert "missing input(s) 'b'" in message


def test_unknown_input_is_named_with_the_real_ones() -> None:
    message = enforce_error(one("float32"), {"x": [1.0], "y_typo": [2.0]})
    assert "unknown input(s) 'y_typo'" in message
    assert "'x'" in message


@pytest.mark.parametrize(
    ("shape", "value", "fragments"),
    [
        ((-1, 3), [1.0, 2.0, 3.0], ["'x'", "2 dimension(s)", "float32[-1, 3]", "got 1"]),
        ((-1,), [[1.0]], ["'x'", "1 dimension(s)", "float32[-1]", "got 2"]),
        ((), [1.0], ["'x'", "0 dimension(s)", "float32[]"]),
        ((-1, 3), [[1.0, 2.0]], ["'x'", "size 3 on dimension 1", "float32[-1, 3]", "[1, 2]"]),
        ((2, -1), [[1.0], [2.0], [3.0]], ["'x'", "size 2 on dimension 0", "float32[2, -1]"]),
        ((-1, 2, 2), np.zeros((1, 2, 3)), ["'x'", "size 2 on dimension 2", "float32[-1, 2, 2]"]),
    ],
)
def test_wrong_rank_or_dimension_names_input_and_expected_shape(
    shape: tuple[int, ...], value: Any, fragments: list[str]
) -> None:
    message = enforce_error(one("float32", shape), value)
    for fragment in fragments:
        assert fragment in message


def test_variable_dimensions_accept_any_size() -> None:
    signature = one("float32", (-1, -1))
    for rows, cols in [(0, 3), (1, 1), (5, 7)]:
        assert signature.enforce(np.zeros((rows, cols)))["x"].shape == (rows, cols)


@pytest.mark.parametrize("dtype", sorted(DTYPES))
def test_an_empty_batch_takes_any_dtype(dtype: str) -> None:
    out = one(dtype).enforce([])["x"]
    assert out.shape == (0,)
    assert out.dtype == DTYPES[dtype]


def test_scalar_input() -> None:
    out = one("int64", ()).enforce(5)["x"]
    assert out.shape == ()
    assert out.dtype == np.int64
    assert int(out) == 5


def test_several_problems_are_reported_together() -> None:
    signature = sig(
        TensorSpec("a", "float32", (-1, 2)),
        TensorSpec("b", "int64", (-1,)),
        TensorSpec("c", "string", (-1,)),
        TensorSpec("d", "bool", (-1,)),
    )
    message = enforce_error(
        signature, {"a": [[1.0, 2.0, 3.0]], "b": [1.5], "c": ["ok"], "zzz": [1]}
    )
    assert "missing input(s) 'd'" in message
    assert "unknown input(s) 'zzz'" in message
    assert "input 'a' expects size 2 on dimension 1" in message
    assert "input 'b' expects int64" in message
    assert "'c'" not in message.split("the model's inputs are")[0]


def test_rows_must_agree_across_inputs() -> None:
    signature = sig(TensorSpec("a", "float32", (-1, 2)), TensorSpec("b", "int64", (-1,)))
    message = enforce_error(signature, {"a": np.zeros((2, 2)), "b": [1, 2, 3]})
    assert "different numbers of rows" in message
    assert "'a': 2" in message
    assert "'b': 3" in message
    assert signature.enforce({"a": np.zeros((3, 2)), "b": [1, 2, 3]})["b"].shape == (3,)


def test_fixed_first_dimension_is_not_a_row_count() -> None:
    signature = sig(TensorSpec("a", "float32", (-1, 2)), TensorSpec("table", "float32", (4,)))
    out = signature.enforce({"a": np.zeros((2, 2)), "table": [1, 2, 3, 4]})
    assert out["table"].shape == (4,)


@pytest.mark.parametrize(
    "value",
    [[[1.0, 2.0], [3.0]], [[1.0, [2.0]], [3.0, 4.0]], [["a", "b"], ["c"]], [[[1.0]], [1.0]]],
)
def test_ragged_nested_lists_are_input_errors(value: Any) -> None:
    dtype = "string" if isinstance(value[0][0], str) else "float32"
    message = enforce_error(one(dtype, (-1, 2)), value)
    assert "'x'" in message
    assert "rectangular" in message


def test_single_array_for_a_single_input_model() -> None:
    out = one("float32", (-1, 2)).enforce([[1, 2]])
    assert list(out) == ["x"]
    assert out["x"].dtype == np.float32


def test_single_array_for_a_multi_input_model_is_an_error() -> None:
    signature = sig(TensorSpec("a", "float32", (-1,)), TensorSpec("b", "float32", (-1,)))
    message = enforce_error(signature, [1.0, 2.0])
    assert "2 inputs" in message
    assert "'a'" in message
    assert "'b'" in message


def test_inputs_come_back_in_signature_order_and_nothing_else() -> None:
    signature = sig(TensorSpec("b", "int64", (-1,)), TensorSpec("a", "float32", (-1,)))
    out = signature.enforce({"a": [1.0], "b": [2]})
    assert list(out) == ["b", "a"]


def test_enforce_does_not_modify_the_callers_array() -> None:
    array = np.array([[1.5, 2.5]])
    one("float32", (-1, 2)).enforce(array)
    assert array.dtype == np.float64
    assert array.tolist() == [[1.5, 2.5]]


# --- errors never echo the data ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("signature", "inputs"),
    [
        (one("int64"), [SECRET_NUMBER]),
        (one("int32"), [SECRET_NUMBER * 1e10]),
        (one("float32"), [SECRET_TEXT]),
        (one("bool"), [SECRET_NUMBER]),
        (one("string"), [SECRET_NUMBER]),
        (one("float32", (-1, 3)), [[SECRET_NUMBER, 1.0]]),
        (one("float32", (-1, 3)), [SECRET_NUMBER]),
        (one("float32", (-1, 2)), [[SECRET_NUMBER, 1.0], [SECRET_NUMBER]]),
        (one("int64"), [SECRET_TEXT, None]),
        (one("float32"), {"x": [1.0], "other": [SECRET_NUMBER, SECRET_TEXT]}),
        (
            sig(TensorSpec("a", "float32", (-1,)), TensorSpec("b", "float32", (-1,))),
            [SECRET_NUMBER],
        ),
        (
            sig(TensorSpec("a", "float32", (-1,)), TensorSpec("b", "float32", (-1,))),
            {"a": [SECRET_NUMBER], "b": [SECRET_NUMBER, 2.0]},
        ),
    ],
)
def test_errors_never_echo_the_data(signature: Signature, inputs: Any) -> None:
    message = enforce_error(signature, inputs)
    for leak in ("123456", "1234567", SECRET_TEXT, "SECRET"):
        assert leak not in message


# --- properties -------------------------------------------------------------------------------

NUMERIC = ["float32", "float64", "int32", "int64", "uint8", "bool"]


@settings(max_examples=80, deadline=None)
@given(
    dtype=st.sampled_from(NUMERIC),
    shape=hnp.array_shapes(min_dims=1, max_dims=3, min_side=0, max_side=4),
    data=st.data(),
)
def test_matching_arrays_come_back_equal(dtype: str, shape: tuple[int, ...], data: Any) -> None:
    array = data.draw(hnp.arrays(np.dtype(dtype), shape))
    spec_shape = (-1, *shape[1:])
    signature = one(dtype, spec_shape)
    out = signature.enforce(array)["x"]
    assert out.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(out, array)
    # The same values as nested lists (JSON's form) give the same array ([] loses inner dims).
    if 0 not in shape[:-1]:
        from_lists = signature.enforce(array.tolist())["x"]
        assert from_lists.dtype == np.dtype(dtype)
        np.testing.assert_array_equal(from_lists, array)


@settings(max_examples=100, deadline=None)
@given(
    dtype=st.sampled_from(["int8", "int32", "int64", "uint8", "uint32", "uint64"]),
    values=st.lists(
        st.floats(allow_nan=True, allow_infinity=True, width=64)
        | st.integers(-(2**64), 2**64).map(float),
        min_size=1,
        max_size=5,
    ),
)
@example(dtype="int64", values=[2.0**63])
@example(dtype="int64", values=[-(2.0**63) - 2048])
@example(dtype="uint64", values=[2.0**64])
@example(dtype="int32", values=[2147483648.0])
def test_floats_to_ints_are_exact_or_refused(dtype: str, values: list[float]) -> None:
    info = np.iinfo(np.dtype(dtype))
    lossless = all(
        math.isfinite(v) and v == int(v) and info.min <= int(v) <= info.max for v in values
    )
    signature = one(dtype)
    array = np.array(values, dtype=np.float64)
    if not lossless:
        with pytest.raises(InputError, match="'x'"):
            signature.enforce(array)
        return
    out = signature.enforce(array)["x"]
    assert out.dtype == np.dtype(dtype)
    assert [int(v) for v in out.tolist()] == [int(v) for v in values]


@settings(max_examples=60, deadline=None)
@given(
    dtype=st.sampled_from(["float16", "float32", "float64"]),
    values=st.lists(
        st.integers(-(2**63), 2**63 - 1) | st.integers(-70000, 70000), min_size=1, max_size=5
    ),
)
def test_ints_to_floats_are_finite_or_refused(dtype: str, values: list[int]) -> None:
    array = np.array(values, dtype=np.int64)
    if any(abs(v) > float(np.finfo(np.dtype(dtype)).max) for v in values):
        with pytest.raises(InputError, match="outside the range of float16"):
            one(dtype).enforce(array)
        assert dtype == "float16"
        return
    out = one(dtype).enforce(array)["x"]
    assert out.dtype == np.dtype(dtype)
    assert np.isfinite(out).all()
    np.testing.assert_array_equal(out, array.astype(dtype))


@settings(max_examples=60, deadline=None)
@given(
    rows=st.integers(1, 5),
    width=st.integers(1, 4),
    data=st.data(),
)
def test_float32_matrix_from_any_float64_values(rows: int, width: int, data: Any) -> None:
    array = data.draw(
        hnp.arrays(
            np.float64,
            (rows, width),
            elements=st.floats(-1e30, 1e30, allow_nan=False),
        )
    )
    out = one("float32", (-1, width)).enforce(array.tolist())["x"]
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, array.astype(np.float32))


# --- the pieces -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("dtype", "name"),
    [
        (np.float32, "float32"),
        (np.float64, "float64"),
        (np.int64, "int64"),
        (np.uint8, "uint8"),
        (np.bool_, "bool"),
        ("<U5", "string"),
        ("S3", "string"),
        (object, "string"),
    ],
)
def test_dtype_name(dtype: Any, name: str) -> None:
    assert dtype_name(dtype) == name


@pytest.mark.parametrize("dtype", [np.complex64, "datetime64[s]", np.float128])
def test_unsupported_dtype_names_are_input_errors(dtype: Any) -> None:
    with pytest.raises(InputError, match="unsupported dtype"):
        dtype_name(dtype)


def test_onnx_types_map_to_signature_dtypes() -> None:
    assert set(ONNX_TYPES.values()) == set(DTYPES)
    assert ONNX_TYPES["tensor(float)"] == "float32"
    assert ONNX_TYPES["tensor(double)"] == "float64"


def test_spec_and_signature_helpers() -> None:
    spec = TensorSpec("x", "float32", (-1, 3))
    assert spec.describe() == "float32[-1, 3]"
    assert spec.to_dict() == {"name": "x", "dtype": "float32", "shape": [-1, 3]}
    signature = Signature((spec,), (TensorSpec("y", "int64", (-1,)),))
    assert signature.input_names == ("x",)
    assert signature.output_names == ("y",)
    assert signature.input("x") is spec
    with pytest.raises(InputError, match="unknown input 'nope'"):
        signature.input("nope")
    assert signature.to_dict() == {
        "inputs": [{"name": "x", "dtype": "float32", "shape": [-1, 3]}],
        "outputs": [{"name": "y", "dtype": "int64", "shape": [-1]}],
    }


def test_convert_checks_one_value() -> None:
    spec = TensorSpec("x", "int32", (-1,))
    assert convert([1, 2], spec).dtype == np.int32
    with pytest.raises(InputError, match="'x'"):
        convert([1.5], spec)


@pytest.mark.parametrize(
    ("dtype", "value", "want"),
    [
        # How float32's and float16's maxima print; read as float64 they are a hair above it.
        ("float32", 3.4028235e38, float(np.finfo(np.float32).max)),
        ("float32", -3.4028235e38, -float(np.finfo(np.float32).max)),
        ("float16", 65504.0, 65504.0),
        ("float16", 65519, 65504.0),
    ],
)
def test_values_that_round_to_the_largest_finite_one_are_in_range(
    dtype: str, value: float, want: float
) -> None:
    (array,) = one(dtype).enforce([value]).values()
    assert array.tolist() == [want]
