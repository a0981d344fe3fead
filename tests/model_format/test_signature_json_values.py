"""Values numpy would convert silently are refused on every path: API, CLI and server alike."""

from __future__ import annotations

import pytest

from modelport.errors import InputError
from modelport.model_format.signature import (
    JsonBooleans,
    Signature,
    TensorSpec,
    json_value_loss,
)

NUMBERS = Signature((TensorSpec("x", "float32", (-1,)),), ())
TEXT = Signature((TensorSpec("s", "string", (-1,)),), ())
FLAGS = Signature((TensorSpec("b", "bool", (-1,)),), ())


def test_booleans_among_numbers_are_refused() -> None:
    with pytest.raises(InputError, match="got booleans"):
        NUMBERS.enforce({"x": [False, 0.5]})
    with pytest.raises(InputError, match="got booleans"):
        NUMBERS.enforce([[True], [2.0]][0])


def test_numbers_in_a_string_input_are_refused() -> None:
    with pytest.raises(InputError, match="expects string"):
        TEXT.enforce({"s": ["a", 1]})


def test_plain_values_still_pass() -> None:
    assert NUMBERS.enforce({"x": [1, 2.5]})["x"].tolist() == [1.0, 2.5]
    assert TEXT.enforce({"s": ["a", "b"]})["s"].tolist() == ["a", "b"]
    assert FLAGS.enforce({"b": [True, False]})["b"].tolist() == [True, False]


def test_a_caller_that_knows_there_are_no_booleans_may_skip_the_walk() -> None:
    # The server searches the raw body for true/false and skips the walk when there are none.
    body = b'{"x": [1.0, 2.0]}'
    assert JsonBooleans.in_text(body) is JsonBooleans.ABSENT
    arrays = NUMBERS.enforce({"x": [1.0, 2.0]}, JsonBooleans.in_text(body))
    assert arrays["x"].dtype.name == "float32"
    assert JsonBooleans.in_text(b'{"x": [true, 0.5]}') is JsonBooleans.POSSIBLE
    # And the walk really is skipped: what it would refuse goes through unchecked.
    assert NUMBERS.enforce({"x": [True, 0.5]}, JsonBooleans.ABSENT)["x"].tolist() == [1.0, 0.5]


def test_the_rule_is_one_function() -> None:
    # The V2 decoder and Signature.enforce word their messages; the rule itself is here.
    assert json_value_loss([1, [True]], "float32") == "booleans"
    assert json_value_loss([1, [True]], "float32", JsonBooleans.ABSENT) is None
    assert json_value_loss(["a", 1], "string") == "other values"
    assert json_value_loss([True], "bool") is None
