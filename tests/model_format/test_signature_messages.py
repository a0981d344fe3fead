"""Error messages of the rare object-array path say what was wrong, without the values."""

from __future__ import annotations

import pytest

from modelport.errors import InputError
from modelport.model_format.signature import Signature, TensorSpec

SIG = Signature((TensorSpec("x", "int64", (-1,)),), ())


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ([1, None], "null values"),
        ([2**70, 1], "too large for any integer type"),
        ([1, [2]], "not a rectangular array|mixed-type"),
    ],
)
def test_object_array_messages(value: list[object], message: str) -> None:
    with pytest.raises(InputError, match=message) as info:
        SIG.enforce({"x": value})
    assert "1180591620717411303424" not in str(info.value)
