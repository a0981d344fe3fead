"""Model signatures and the one code path that enforces them.

Every caller (the Python API, the CLI, every HTTP protocol) turns its payload into a mapping of
input name to array-like and hands it to :meth:`Signature.enforce`. Values are converted only when
nothing is lost: an int becomes a float, but 1.5 never becomes 1, ``"abc"`` never becomes a number
and NaN never becomes an int. Errors name the input and what was expected, never the values sent.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Any

import numpy as np
import numpy.typing as npt

from modelport.errors import InputError, quote_name, quote_names

#: Signature dtype name -> numpy dtype. ``string`` tensors are numpy object arrays of ``str``.
DTYPES: dict[str, np.dtype[Any]] = {
    "bool": np.dtype(np.bool_),
    "int8": np.dtype(np.int8),
    "int16": np.dtype(np.int16),
    "int32": np.dtype(np.int32),
    "int64": np.dtype(np.int64),
    "uint8": np.dtype(np.uint8),
    "uint16": np.dtype(np.uint16),
    "uint32": np.dtype(np.uint32),
    "uint64": np.dtype(np.uint64),
    "float16": np.dtype(np.float16),
    "float32": np.dtype(np.float32),
    "float64": np.dtype(np.float64),
    "string": np.dtype(object),
}

#: ONNX tensor type names, as ONNX Runtime reports them, -> signature dtype names.
ONNX_TYPES: dict[str, str] = {
    "tensor(bool)": "bool",
    "tensor(int8)": "int8",
    "tensor(int16)": "int16",
    "tensor(int32)": "int32",
    "tensor(int64)": "int64",
    "tensor(uint8)": "uint8",
    "tensor(uint16)": "uint16",
    "tensor(uint32)": "uint32",
    "tensor(uint64)": "uint64",
    "tensor(float16)": "float16",
    "tensor(float)": "float32",
    "tensor(double)": "float64",
    "tensor(string)": "string",
}


@functools.cache
def largest_finite(dtype: npt.DTypeLike) -> float:
    """The largest number that reads as a finite value of a float ``dtype``.

    Up to half a step past the dtype's maximum rounds down to it (3.4028235e38 is how float32's
    maximum prints, a hair above it as a float64); the tie rounds up, to infinity.
    """
    largest = np.finfo(dtype).max
    step = float(largest) - float(np.nextafter(largest, largest.dtype.type(0)))
    return float(np.nextafter(float(largest) + step / 2, 0.0))


def dtype_name(dtype: npt.DTypeLike) -> str:
    """Return the signature dtype name of a numpy dtype (``<U``/``object`` arrays are ``string``).

    Raises:
        InputError: the numpy dtype has no signature equivalent.
    """
    dt = np.dtype(dtype)
    if dt.kind in ("U", "S", "O"):
        return "string"
    for name, candidate in DTYPES.items():
        if candidate == dt:
            return name
    raise InputError(f"unsupported dtype {dt}; supported: {', '.join(DTYPES)}")


class JsonBooleans(Enum):
    """Whether decoded JSON values may hold booleans (the walk for them costs a call per value)."""

    POSSIBLE = "possible"
    ABSENT = "absent"

    @staticmethod
    def in_text(text: bytes) -> JsonBooleans:
        """What the JSON ``text`` the values come from allows: a byte search, no parsing."""
        return _POSSIBLE if b"true" in text or b"false" in text else _ABSENT


# Looked up on every request: a module global is faster than an Enum member's attribute.
_POSSIBLE, _ABSENT = JsonBooleans.POSSIBLE, JsonBooleans.ABSENT


def json_value_loss(
    value: Any, dtype: str, booleans: JsonBooleans = JsonBooleans.POSSIBLE
) -> str | None:
    """The lossless-JSON rule: what numpy would change silently reading ``value`` as ``dtype``.

    numpy turns ``[false, 0.5]`` into ``[0.0, 0.5]`` and ``[1, "a"]`` into ``["1", "a"]``;
    neither is lossless. Every entry point refuses both through this one function.

    Args:
        value: decoded JSON (nested lists of plain values).
        dtype: the signature dtype name of the tensor it is for.
        booleans: :attr:`JsonBooleans.ABSENT` skips the walk for booleans.

    Returns:
        What was found, for a message ending "got ...": ``"other values"`` (not all text, for a
        string tensor) or ``"booleans"`` (for a numeric one); None when nothing would be lost.
    """
    if dtype == "string":
        return None if all_text(value) else "other values"
    if dtype != "bool" and booleans is _POSSIBLE and has_boolean(value):
        return "booleans"
    return None


@dataclass(frozen=True)
class TensorSpec:
    """One named input or output: its dtype name and shape (``-1`` marks a variable dimension)."""

    name: str
    dtype: str
    shape: tuple[int, ...]

    def to_dict(self) -> dict[str, Any]:
        """Return the manifest form of this spec."""
        return {"name": self.name, "dtype": self.dtype, "shape": list(self.shape)}

    def describe(self) -> str:
        """Return e.g. ``float32[-1, 4]`` for messages."""
        return f"{self.dtype}[{', '.join(str(d) for d in self.shape)}]"


@dataclass(frozen=True)
class Signature:
    """The named inputs and outputs of a model."""

    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]

    @property
    def input_names(self) -> tuple[str, ...]:
        """Names of the inputs, in order."""
        return tuple(s.name for s in self.inputs)

    @property
    def output_names(self) -> tuple[str, ...]:
        """Names of the outputs, in order."""
        return tuple(s.name for s in self.outputs)

    def input(self, name: str) -> TensorSpec:
        """Return the input spec called ``name``.

        Raises:
            InputError: no input has that name.
        """
        for spec in self.inputs:
            if spec.name == name:
                return spec
        raise InputError(
            f"unknown input {quote_name(name)}; the model's inputs are {_names(self.inputs)}"
        )

    def to_dict(self) -> dict[str, Any]:
        """Return the manifest form of the signature (nested JSON, never a string in a string)."""
        return {
            "inputs": [s.to_dict() for s in self.inputs],
            "outputs": [s.to_dict() for s in self.outputs],
        }

    def enforce(
        self, inputs: Any, booleans: JsonBooleans = JsonBooleans.POSSIBLE
    ) -> dict[str, np.ndarray]:
        """Check and convert inputs to exactly what the model takes.

        Args:
            inputs: a mapping of input name to array-like, or (for a model with a single input)
                one array-like.
            booleans: whether the values may hold booleans; a caller that read them from JSON
                text knows (:meth:`JsonBooleans.in_text`), and numeric requests then skip a walk.

        Returns:
            A dict of input name to a numpy array of the declared dtype.

        Raises:
            InputError: a value numpy would convert silently (:func:`json_value_loss`), or else
                listing every missing, unknown, mistyped or misshapen input at once.
        """
        self._refuse_lossy_values(inputs, booleans)
        if not isinstance(inputs, Mapping):
            if len(self.inputs) != 1:
                raise InputError(
                    f"the model has {len(self.inputs)} inputs ({_names(self.inputs)}); "
                    "pass a mapping of input name to value"
                )
            inputs = {self.inputs[0].name: inputs}
        problems: list[str] = []
        given = set(inputs)
        expected = set(self.input_names)
        missing = [n for n in self.input_names if n not in given]
        unknown = sorted(str(n) for n in given - expected)
        if missing:
            problems.append(f"missing input(s) {', '.join(map(repr, missing))}")
        if unknown:
            problems.append(
                f"unknown input(s) {quote_names(unknown)}; "
                f"the model's inputs are {_names(self.inputs)}"
            )
        converted: dict[str, np.ndarray] = {}
        for spec in self.inputs:
            if spec.name not in inputs:
                continue
            try:
                converted[spec.name] = convert(inputs[spec.name], spec)
            except InputError as exc:
                problems.append(str(exc))
        if not problems:
            problems.extend(_batch_problems(self.inputs, converted))
        if problems:
            raise InputError("; ".join(problems))
        return converted

    def _refuse_lossy_values(self, inputs: Any, booleans: JsonBooleans) -> None:
        if not isinstance(inputs, Mapping):
            if len(self.inputs) != 1:
                return  # enforce() reports the missing mapping
            inputs = {self.inputs[0].name: inputs}
        for spec in self.inputs:
            value = inputs.get(spec.name)
            # Scalars and arrays are left to convert(), which names their kind.
            if type(value) is list and (lost := json_value_loss(value, spec.dtype, booleans)):
                raise InputError(f"input {spec.name!r} expects {spec.dtype}, got {lost}")


def has_boolean(value: Any) -> bool:
    """Whether a nested list (decoded JSON) holds a boolean anywhere."""
    if type(value) is bool:
        return True
    if type(value) is list:
        return any(has_boolean(v) for v in value)
    return False


def all_text(value: Any) -> bool:
    """Whether a nested list (decoded JSON) holds only strings."""
    if type(value) is list:
        return all(all_text(v) for v in value)
    return isinstance(value, str)


def _names(specs: Sequence[TensorSpec]) -> str:
    return ", ".join(repr(s.name) for s in specs)


def _batch_problems(specs: Sequence[TensorSpec], arrays: Mapping[str, np.ndarray]) -> list[str]:
    # Inputs whose first dimension is variable are rows of one batch: their counts must agree.
    rows = {
        s.name: arrays[s.name].shape[0]
        for s in specs
        if s.shape and s.shape[0] == -1 and arrays[s.name].ndim > 0
    }
    if len(set(rows.values())) > 1:
        counts = ", ".join(f"{n!r}: {r}" for n, r in rows.items())
        return [f"inputs have different numbers of rows ({counts})"]
    return []


def _as_array(value: Any, spec: TensorSpec) -> np.ndarray:
    if isinstance(value, np.ndarray):
        return value
    try:
        return np.asarray(value)
    except (ValueError, TypeError):
        raise InputError(
            f"input {spec.name!r}: not a rectangular array (nested lists of unequal length); "
            f"expected {spec.describe()}"
        ) from None


def convert(value: Any, spec: TensorSpec) -> np.ndarray:
    """Convert one value to ``spec``'s dtype and check its shape, losslessly.

    Raises:
        InputError: naming the input and what was expected.
    """
    array = _as_array(value, spec)
    array = _convert_dtype(array, spec)
    if array.ndim < 2 and spec.shape == (-1, 1):
        # A DataFrame column's input ([-1, 1]) takes one value per row, or one value (one row),
        # as MLflow's server does: the same values, only shaped.
        array = array.reshape(-1, 1)
    _check_shape(array, spec)
    return array


def _convert_dtype(array: np.ndarray, spec: TensorSpec) -> np.ndarray:
    target = DTYPES[spec.dtype]
    kind = array.dtype.kind
    want = f"input {spec.name!r} expects {spec.dtype}"
    if array.size == 0:
        # Nothing to lose: an empty batch (JSON's [] is float64 to numpy) takes any dtype.
        return array.astype(target)

    if spec.dtype == "string":
        if kind == "U":
            return array.astype(object)
        if kind == "O" and all(isinstance(v, str) for v in array.flat):
            return array
        raise InputError(f"{want}, got {_kind_name(array)} values")

    if kind == "O":
        # Mixed or null values (None in JSON) never convert silently. Object arrays are the rare
        # error path, so looking at their elements costs nothing on the common path.
        items = list(array.flat)
        if any(v is None for v in items):
            raise InputError(f"{want}, got null values")
        if all(isinstance(v, int) and not isinstance(v, bool) for v in items):
            raise InputError(f"{want}, got integers too large for any integer type")
        raise InputError(f"{want}, got mixed-type values")
    if kind in ("U", "S"):
        raise InputError(f"{want}, got strings")

    if spec.dtype == "bool":
        if kind == "b":
            return array
        if kind in "iu" and bool(np.isin(array, (0, 1)).all()):
            return array.astype(np.bool_)
        raise InputError(f"{want}, got {_kind_name(array)} values")

    if kind == "b":
        raise InputError(f"{want}, got booleans")

    if target.kind == "f":
        if kind == "f" and array.dtype.itemsize > target.itemsize:
            # A value too large for the target (e.g. 1e300 -> float32) narrows to an infinity,
            # exactly past largest_finite(target): refused, never inf. Checking the narrowed
            # array costs one pass where masking the wide one cost four (the 1-row hot path).
            with np.errstate(over="ignore"):
                narrowed = array.astype(target)
            if not bool(np.isfinite(narrowed).all()) and bool(
                (np.isinf(narrowed) & np.isfinite(array)).any()
            ):
                raise InputError(f"{want}, got values outside the range of {spec.dtype}")
            return narrowed
        if kind in "iuf":
            if kind in "iu" and array.size and target.itemsize < 4:
                # Too large for the target (e.g. 70000 -> float16): never inf.
                values = array.astype(np.float64)
                if float(np.abs(values).max()) > largest_finite(target):
                    raise InputError(f"{want}, got values outside the range of {spec.dtype}")
            return array.astype(target, copy=False)
        raise InputError(f"{want}, got {_kind_name(array)} values")

    # Integer targets.
    info = np.iinfo(target)
    if kind == "f":
        if not bool(np.isfinite(array).all()):
            raise InputError(f"{want}, got NaN or infinite values")
        if not bool((array == np.floor(array)).all()):
            raise InputError(f"{want}, got values with a fractional part")
        # Compare in float64 against bounds floats hold exactly (min and max + 1 are powers of
        # two): comparing with info.max rounds it up (2**63 - 1 -> 2.0**63), letting 2.0**63
        # through to wrap around in astype.
        values = array.astype(np.float64)
        if array.size and (
            values.min() < float(info.min) or values.max() >= float(int(info.max) + 1)
        ):
            raise InputError(f"{want}, got values outside the range of {spec.dtype}")
        return array.astype(target, copy=False)
    if kind not in "iu":
        raise InputError(f"{want}, got {_kind_name(array)} values")
    if array.size and (array.min() < info.min or array.max() > info.max):
        raise InputError(f"{want}, got values outside the range of {spec.dtype}")
    return array.astype(target, copy=False)


def _kind_name(array: np.ndarray) -> str:
    return {
        "b": "boolean",
        "i": "integer",
        "u": "integer",
        "f": "floating-point",
        "U": "string",
        "S": "bytes",
        "O": "mixed",
    }.get(array.dtype.kind, str(array.dtype))


def _check_shape(array: np.ndarray, spec: TensorSpec) -> None:
    if array.ndim != len(spec.shape):
        raise InputError(
            f"input {spec.name!r} expects {len(spec.shape)} dimension(s) "
            f"({spec.describe()}), got {array.ndim} (shape {list(array.shape)})"
        )
    for axis, (want, got) in enumerate(zip(spec.shape, array.shape, strict=True)):
        if want not in (-1, got):
            raise InputError(
                f"input {spec.name!r} expects size {want} on dimension {axis} "
                f"({spec.describe()}), got shape {list(array.shape)}"
            )
