"""Body formats of the server that the package format does not already cover.

- ``Content-Type`` parsing and ``Content-Encoding`` (gzip, deflate) undone under the body limit;
  CSV, ``.npy``, JSON Lines and Parquet bodies: :mod:`modelport.serving.bodies`, gathered here.
- Open Inference Protocol (KServe V2) tensors, in JSON and with the binary tensor data extension
  that Triton's clients use by default.
- Fast JSON answers: numeric output arrays go to orjson as they are, without ``tolist()``
  (:mod:`modelport.model_format.jsontext` reads and writes JSON for the server and the CLI).

Every decoded payload still goes through ``Signature.enforce``; messages name inputs, never data.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from modelport.errors import InputError, quote_name
from modelport.model_format.jsontext import dumps_answer, loads_with_booleans, plain
from modelport.model_format.payload import format_predictions, output_rows
from modelport.model_format.signature import (
    DTYPES,
    JsonBooleans,
    TensorSpec,
    convert,
    dtype_name,
    json_value_loss,
)
from modelport.serving.bodies.csvtable import format_csv, parse_csv
from modelport.serving.bodies.encoding import decompress, media_type
from modelport.serving.bodies.jsonlines import JSONLINES_TYPES, format_jsonlines, parse_jsonlines
from modelport.serving.bodies.npy import format_npy, parse_npy, read_npy
from modelport.serving.bodies.parquet import PARQUET_TYPES, parse_parquet

__all__ = [
    "BINARY_HEADER",
    "DTYPE_TO_V2",
    "JSONLINES_TYPES",
    "MAX_DIMS",
    "PARQUET_TYPES",
    "V2_TO_DTYPE",
    "V2Request",
    "decompress",
    "format_csv",
    "format_jsonlines",
    "format_npy",
    "format_v2",
    "jsonable",
    "media_type",
    "parse_csv",
    "parse_jsonlines",
    "parse_npy",
    "parse_parquet",
    "parse_v2",
    "predictions",
    "read_npy",
    "row_predictions",
    "tensor_metadata",
    "v2_datatype",
]

# --- JSON ---------------------------------------------------------------------------------------


def jsonable(array: np.ndarray) -> Any:
    """An output array in the form orjson writes fastest (the array itself when it can)."""
    if array.dtype.kind in "biuf" and array.dtype.isnative and array.flags.c_contiguous:
        return array
    return plain(array)


def predictions(outputs: Mapping[str, np.ndarray]) -> dict[str, Any]:
    """MLflow-style answer (see :func:`format_predictions`), numeric arrays left to orjson."""
    return format_predictions(outputs, jsonable)


def row_predictions(outputs: Mapping[str, np.ndarray]) -> list[Any]:
    """Vertex AI style: one prediction per row; with several outputs, each an object by name."""
    rows = output_rows(outputs)
    if rows is None:
        # Outputs without one row each cannot be split per row: answer them whole.
        return [{name: plain(a) for name, a in outputs.items()}]
    return rows


# --- Open Inference Protocol (KServe V2) --------------------------------------------------------

#: V2 datatype -> signature dtype name. (BF16 has no numpy dtype and no ONNX Runtime CPU use.)
V2_TO_DTYPE: dict[str, str] = {
    "BOOL": "bool",
    "UINT8": "uint8",
    "UINT16": "uint16",
    "UINT32": "uint32",
    "UINT64": "uint64",
    "INT8": "int8",
    "INT16": "int16",
    "INT32": "int32",
    "INT64": "int64",
    "FP16": "float16",
    "FP32": "float32",
    "FP64": "float64",
    "BYTES": "string",
}
DTYPE_TO_V2: dict[str, str] = {v: k for k, v in V2_TO_DTYPE.items()}
BINARY_HEADER = "Inference-Header-Content-Length"
#: The most dimensions a V2 tensor may have (numpy 1's limit; numpy 2 allows 64).
MAX_DIMS = 32


def v2_datatype(array: np.ndarray) -> str:
    """The V2 datatype of an output array (text is ``BYTES``)."""
    try:
        return DTYPE_TO_V2[dtype_name(array.dtype)]  # text ("string") maps to BYTES
    except InputError:
        raise InputError(
            f"the model produced an output of dtype {array.dtype}, which V2 cannot carry"
        ) from None


@dataclass(frozen=True)
class V2Request:
    """A decoded V2 inference request.

    Attributes:
        id: the request id to echo, if the client sent one.
        inputs: input name -> array (typed as the client declared it).
        outputs: names of the requested outputs, in order (empty: all of them).
        binary_outputs: names of outputs to return as binary tensor data.
        all_binary: every output goes back as binary data (``binary_data_output``).
    """

    id: str | None
    inputs: dict[str, np.ndarray]
    outputs: tuple[str, ...]
    binary_outputs: frozenset[str]
    all_binary: bool


def _object(value: Any, what: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise InputError(f"{what} must be a JSON object")
    return value


def _parameters(entry: Mapping[str, Any], what: str) -> Mapping[str, Any]:
    params = entry.get("parameters", {})
    if params is None:
        return {}
    return _object(params, f"{what}.parameters")


def _shape(value: Any, name: str, most: int) -> tuple[int, ...]:
    """A V2 tensor's shape, refused if no tensor of it fits in ``most`` bytes (the body's size).

    numpy cannot even make an empty array whose other dimensions multiply past its index
    range (``[0, 2**62, 2**62]``), and no value of a tensor takes less than a byte of the body.
    """
    if not isinstance(value, list) or not all(
        isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in value
    ):
        raise InputError(
            f"input {quote_name(name)}: 'shape' must be a list of non-negative integers"
        )
    if len(value) > MAX_DIMS:
        raise InputError(f"input {quote_name(name)}: 'shape' has more than {MAX_DIMS} dimensions")
    if math.prod(d for d in value if d) > most:
        raise InputError(
            f"input {quote_name(name)}: 'shape' has more values than the request body could hold"
        )
    return tuple(value)


def _from_json(
    data: Any, name: str, dtype: str, shape: tuple[int, ...], booleans: JsonBooleans
) -> np.ndarray:
    count = math.prod(shape)
    lost = json_value_loss(data, dtype, booleans)
    if lost is not None:
        raise InputError(f"input {quote_name(name)} is declared {DTYPE_TO_V2[dtype]}, got {lost}")
    try:
        array = np.asarray(data, dtype=object if dtype == "string" else None)
    except (ValueError, TypeError):
        raise InputError(
            f"input {quote_name(name)}: 'data' is not a flat or rectangular list"
        ) from None
    if array.size != count:
        raise InputError(
            f"input {quote_name(name)}: shape {list(shape)} needs {count} value(s), "
            f"'data' has {array.size}"
        )
    np_dtype = DTYPES[dtype]
    # numpy reads [0, 2**64 - 1] as float64 (losing the big value); the declared datatype says
    # what the integers are, so read them as that when they all are integers.
    if (
        array.dtype.kind == "f"
        and np_dtype.kind in "iu"
        and all(isinstance(v, int) and not isinstance(v, bool) for v in _leaves(data))
    ):
        try:
            array = np.array(_flatten(data), dtype=np_dtype)
        except OverflowError:
            raise InputError(
                f"input {quote_name(name)} expects {dtype}, got values outside the range of {dtype}"
            ) from None
    return array.reshape(shape)


def _leaves(data: Any) -> Iterable[Any]:
    if isinstance(data, list):
        for item in data:
            yield from _leaves(item)
    else:
        yield data


def _flatten(data: Any) -> list[Any]:
    return list(_leaves(data))


def _from_binary(raw: bytes, name: str, dtype: str, shape: tuple[int, ...]) -> np.ndarray:
    count = math.prod(shape)
    if dtype == "string":
        values: list[str] = []
        offset = 0
        while offset < len(raw):
            if offset + 4 > len(raw):
                raise InputError(f"input {quote_name(name)}: truncated BYTES element")
            (length,) = struct.unpack_from("<I", raw, offset)
            offset += 4
            if offset + length > len(raw):
                raise InputError(f"input {quote_name(name)}: truncated BYTES element")
            try:
                values.append(raw[offset : offset + length].decode("utf-8"))
            except UnicodeDecodeError:
                raise InputError(
                    f"input {quote_name(name)}: BYTES elements must be UTF-8 text"
                ) from None
            offset += length
        if len(values) != count:
            raise InputError(
                f"input {quote_name(name)}: shape {list(shape)} needs {count} value(s), "
                f"the binary data has {len(values)}"
            )
        array = np.empty(count, dtype=object)
        array[:] = values
        return array.reshape(shape)
    item = DTYPES[dtype].newbyteorder("<")
    if len(raw) != count * item.itemsize:
        raise InputError(
            f"input {quote_name(name)}: shape {list(shape)} of {DTYPE_TO_V2[dtype]} needs "
            f"{count * item.itemsize} byte(s), the binary data has {len(raw)}"
        )
    return np.frombuffer(raw, dtype=item).astype(DTYPES[dtype]).reshape(shape)


def parse_v2(body: bytes, header_length: int | None, input_names: Collection[str]) -> V2Request:
    """Decode a V2 inference request, in JSON or with binary tensor data.

    Args:
        body: the whole request body.
        header_length: the ``Inference-Header-Content-Length`` header: the JSON part's size when
            binary tensor data follows it.
        input_names: the model's inputs; a tensor of another name is left for the signature's
            enforcement to refuse, as every route's are.

    Raises:
        InputError: malformed request, unknown datatype, data that does not fit its shape or
            datatype (converted losslessly, as everywhere else).
    """
    if header_length is not None and not 0 < header_length <= len(body):
        raise InputError(f"{BINARY_HEADER} must be between 1 and the body's length")
    head = body if header_length is None else body[:header_length]
    binary = memoryview(body)[header_length:] if header_length is not None else memoryview(b"")
    decoded, booleans = loads_with_booleans(head)
    request = _object(decoded, "the request")
    request_id = request.get("id")
    if request_id is not None and not isinstance(request_id, str):
        raise InputError("'id' must be a string")
    params = _parameters(request, "the request")
    raw_inputs = request.get("inputs")
    if not isinstance(raw_inputs, list) or not raw_inputs:
        raise InputError("'inputs' must be a non-empty list of tensors")
    inputs: dict[str, np.ndarray] = {}
    offset = 0
    for index, entry in enumerate(raw_inputs):
        tensor = _object(entry, f"inputs[{index}]")
        name = tensor.get("name")
        if not isinstance(name, str):
            raise InputError(f"inputs[{index}]: 'name' must be a string")
        if name in inputs:
            raise InputError(f"input {quote_name(name)} appears more than once")
        datatype = tensor.get("datatype")
        dtype = V2_TO_DTYPE.get(datatype) if isinstance(datatype, str) else None
        if dtype is None:
            raise InputError(
                f"input {quote_name(name)}: 'datatype' must be one of {', '.join(V2_TO_DTYPE)}"
            )
        shape = _shape(tensor.get("shape"), name, len(body))
        size = _parameters(tensor, f"input {quote_name(name)}").get("binary_data_size")
        if size is not None:
            if not isinstance(size, int) or isinstance(size, bool) or size < 0:
                raise InputError(
                    f"input {quote_name(name)}: binary_data_size must be a non-negative integer"
                )
            if offset + size > len(binary):
                raise InputError(
                    f"input {quote_name(name)}: binary_data_size runs past the body's end"
                )
            array = _from_binary(bytes(binary[offset : offset + size]), name, dtype, shape)
            offset += size
        elif "data" in tensor:
            array = _from_json(tensor["data"], name, dtype, shape, booleans)
        else:
            raise InputError(f"input {quote_name(name)}: no 'data' and no binary_data_size")
        # Converted to the datatype the client declared; messages name the input, which is one
        # of the model's own.
        inputs[name] = (
            convert(array, TensorSpec(name, dtype, shape)) if name in input_names else array
        )
    if offset != len(binary):
        raise InputError("the binary tensor data is longer than the inputs' binary_data_size")

    requested: list[str] = []
    binary_outputs: set[str] = set()
    raw_outputs = request.get("outputs")
    if raw_outputs is not None:
        if not isinstance(raw_outputs, list):
            raise InputError("'outputs' must be a list")
        for index, entry in enumerate(raw_outputs):
            out = _object(entry, f"outputs[{index}]")
            name = out.get("name")
            if not isinstance(name, str):
                raise InputError(f"outputs[{index}]: 'name' must be a string")
            out_params = _parameters(out, f"output {quote_name(name)}")
            if out_params.get("classification"):
                raise InputError("the classification extension is not supported")
            if out_params.get("binary_data") is True:
                binary_outputs.add(name)
            if name not in requested:
                requested.append(name)
    return V2Request(
        id=request_id,
        inputs=inputs,
        outputs=tuple(requested),
        binary_outputs=frozenset(binary_outputs),
        all_binary=params.get("binary_data_output") is True,
    )


def _binary_bytes(array: np.ndarray) -> bytes:
    if array.dtype.kind in "OSU":
        parts = []
        for value in array.ravel().tolist():
            data = value if isinstance(value, bytes) else str(value).encode()
            parts.append(struct.pack("<I", len(data)))
            parts.append(data)
        return b"".join(parts)
    return np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<")).tobytes()


def format_v2(
    model_name: str,
    model_version: str,
    request: V2Request,
    outputs: Mapping[str, np.ndarray],
) -> tuple[bytes, int | None]:
    """Encode a V2 inference answer.

    Returns:
        The body and, when binary tensor data follows the JSON, the JSON part's length (for the
        ``Inference-Header-Content-Length`` header).
    """
    names: Iterable[str] = request.outputs or outputs.keys()
    entries: list[dict[str, Any]] = []
    blobs: list[bytes] = []
    for name in names:
        array = outputs[name]
        entry: dict[str, Any] = {
            "name": name,
            "datatype": v2_datatype(array),
            "shape": list(array.shape),
        }
        if request.all_binary or name in request.binary_outputs:
            blob = _binary_bytes(array)
            entry["parameters"] = {"binary_data_size": len(blob)}
            blobs.append(blob)
        else:
            flat = array.reshape(-1)
            entry["data"] = jsonable(np.ascontiguousarray(flat)) if flat.size else []
        entries.append(entry)
    answer: dict[str, Any] = {"model_name": model_name, "model_version": model_version}
    if request.id is not None:
        answer["id"] = request.id
    answer["outputs"] = entries
    head = dumps_answer(answer, outputs)
    if not blobs:
        return head, None
    return head + b"".join(blobs), len(head)


def tensor_metadata(specs: Sequence[TensorSpec]) -> list[dict[str, Any]]:
    """V2 model metadata entries for a signature's inputs or outputs."""
    return [
        {"name": s.name, "datatype": DTYPE_TO_V2[s.dtype], "shape": list(s.shape)} for s in specs
    ]
