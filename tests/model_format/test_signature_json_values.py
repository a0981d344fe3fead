"""Values numpy would convert silently are refused on every path: API, CLI and server alike."""

from __future__ import annotations

import pytest

from modelport.errors import InputError
from modelport.model_format.signature import Signature, TensorSpec

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


def test_a_caller_that_checked_may_skip_the_walk() -> None:
    # The server searches the raw body for true/false and skips the walk when there are none.
    NUMBERS.check_json_values({"x": [1.0, 2.0]}, may_hold_booleans=False)
    arrays = NUMBERS.enforce({"x": [1.0, 2.0]}, values_checked=True)
    assert arrays["x"].dtype.name == "float32"
    # And the walk really is skipped: what it would refuse goes through unchecked.
    NUMBERS.check_json_values({"x": [True, 0.5]}, may_hold_booleans=False)
    assert NUMBERS.enforce({"x": [True, 0.5]}, values_checked=True)["x"].tolist() == [1.0, 0.5]
