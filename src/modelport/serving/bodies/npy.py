"""``application/x-npy`` bodies: one numpy ``.npy`` array in and out, never a pickle.

What SageMaker's NumpySerializer sends and its NumpyDeserializer reads.

The header is read here, not by ``np.load``: its shape is checked against the bytes the body
holds before anything is made of it, so a tiny body cannot ask for a huge array, and the data is
read as a view of the body (then copied native and contiguous: at most its size again).
"""

from __future__ import annotations

import ast
import io
import math
import re
import struct
from collections.abc import Mapping
from typing import Any

import numpy as np

from modelport.errors import InputError, NotAcceptable, quote_name
from modelport.model_format.jsontext import as_text
from modelport.model_format.payload import Payload, column_inputs
from modelport.model_format.signature import Signature

_MAGIC = b"\x93NUMPY"
#: The longest header read (numpy's own default ``max_header_size``): literal_eval's input.
MAX_HEADER = 10_000
#: numpy 2's limit on dimensions.
MAX_DIMS = 64
_KEYS = frozenset({"descr", "fortran_order", "shape"})
#: The header ``np.save`` writes for a plain dtype, read without literal_eval (15 of the 19 us a
#: 1-row body cost); any other header (a structured dtype, another spacing) takes literal_eval.
_PLAIN_HEADER = re.compile(
    rb"\{'descr': '([<>|=]?[A-Za-z][0-9]{0,4})', 'fortran_order': (True|False), "
    rb"'shape': \(((?:[0-9]{1,18}, )*[0-9]{1,18},?|)\), \} *\n"
)


def _header(body: bytes) -> tuple[dict[str, Any], int]:
    """The header's dictionary, and where the data starts.

    Versions 1.0 and 2.0 (latin-1 headers of a 2- and a 4-byte length) and 3.0 (UTF-8) are read.
    """
    if not body.startswith(_MAGIC) or len(body) < 10:
        raise InputError("the body is not a .npy array (no NUMPY magic string)")
    major, minor = body[6], body[7]
    if (major, minor) == (1, 0):
        (length,) = struct.unpack_from("<H", body, 8)
        start = 10
    elif (major, minor) in ((2, 0), (3, 0)) and len(body) >= 12:
        (length,) = struct.unpack_from("<I", body, 8)
        start = 12
    else:
        raise InputError("the .npy body has a format version this server does not read")
    if length > MAX_HEADER:
        raise InputError(f"the .npy body's header is longer than {MAX_HEADER} bytes")
    if start + length > len(body):
        raise InputError("the .npy body is truncated (it ends inside its header)")
    end = start + length
    raw = body[start:end]
    plain = _PLAIN_HEADER.fullmatch(raw)
    if plain is not None:
        descr, fortran, shape = plain.groups()
        dims = tuple(int(d) for d in shape.split(b",") if d.strip())
        return {"descr": descr.decode(), "fortran_order": fortran == b"True", "shape": dims}, end
    try:
        text = raw.decode("utf-8" if major == 3 else "latin-1")
        header = ast.literal_eval(text)
    except (UnicodeDecodeError, SyntaxError, ValueError, TypeError, MemoryError, RecursionError):
        raise InputError("the .npy body's header is not a valid .npy header") from None
    if not isinstance(header, dict) or set(header) != _KEYS:
        raise InputError("the .npy body's header is not a valid .npy header")
    return header, end


def _dtype(descr: Any) -> np.dtype[Any]:
    try:
        dtype: np.dtype[Any] = np.lib.format.descr_to_dtype(descr)
    except (TypeError, ValueError, KeyError, IndexError, AttributeError, OverflowError):
        raise InputError("the .npy body's dtype is not one numpy reads") from None
    if dtype.hasobject:
        raise InputError(
            "the .npy body holds Python objects (a pickle), which this server never reads; "
            "send numbers, booleans or text ('U') arrays"
        )
    if dtype.itemsize == 0:
        raise InputError("the .npy body's dtype has no size")
    return dtype


def _native(array: np.ndarray) -> np.ndarray:
    """A copy of ``array`` of its own: C order, the machine's byte order, booleans 0 or 1.

    (The array read is a read-only view of the body, in the body's order.)
    """
    if array.dtype.kind == "b":
        # (into an array of its own: a 0-d comparison would give a numpy scalar)
        out = np.empty(array.shape, dtype=np.bool_)
        np.not_equal(array.view(np.uint8), 0, out=out)
        return out
    return np.array(array, dtype=array.dtype.newbyteorder("="), order="C")


def read_npy(body: bytes) -> np.ndarray:
    """Read a ``.npy`` body into an array (C order, native byte order), refusing pickles.

    Raises:
        InputError: not a ``.npy`` array, an object dtype, a header whose shape needs another
            number of bytes than the body holds, or more than :data:`MAX_DIMS` dimensions.
    """
    header, start = _header(body)
    shape, fortran = header["shape"], header["fortran_order"]
    if (
        not isinstance(shape, tuple)
        or not all(type(d) is int and d >= 0 for d in shape)
        or type(fortran) is not bool
    ):
        raise InputError("the .npy body's header is not a valid .npy header")
    if len(shape) > MAX_DIMS:
        raise InputError(f"the .npy array has more than {MAX_DIMS} dimensions")
    dtype = _dtype(header["descr"])
    count = math.prod(shape)
    data = len(body) - start
    if count * dtype.itemsize != data:
        # Checked before a byte is read: no header makes a large array out of a small body.
        raise InputError(
            f"the .npy header's shape and dtype do not fit the {data} bytes of data the body holds"
        )
    try:
        flat = np.frombuffer(body, dtype=dtype, count=count, offset=start)
        # Fortran order: the data of the transposed shape, transposed back.
        array = flat.reshape(shape[::-1]).transpose() if fortran else flat.reshape(shape)
    except (ValueError, TypeError, OverflowError, MemoryError):
        raise InputError("the .npy array's shape cannot be made") from None
    if dtype.names is None:
        return _native(array)
    return array


def _field(array: np.ndarray, name: str) -> np.ndarray:
    column = array[name]
    if column.dtype.names is not None:
        raise InputError(
            f"the .npy field {quote_name(name)} is itself structured; "
            "each field must be one input's values"
        )
    return _native(column)


def parse_npy(body: bytes, signature: Signature, *, strict: bool = False) -> Payload:
    """Read a ``.npy`` body into the model's inputs.

    A plain array is the tensor of a single-input model. A structured array with a field per
    input is a table, by field name (as ``dataframe_split``): a field may hold one value per row
    or a sub-array per row (``('x', '<f4', (4,))``).

    Args:
        body: the request body.
        signature: the model's.
        strict: fields that feed no input are an error instead of ignored.

    Raises:
        InputError: see :func:`read_npy`; a plain array for a multi-input model; a nested
            structured field.
    """
    array = read_npy(body)
    names = array.dtype.names
    if names is None:
        if len(signature.inputs) != 1:
            raise InputError(
                f"the model has {len(signature.inputs)} inputs "
                f"({', '.join(map(repr, signature.input_names))}): send a structured .npy array "
                "with a field per input, or JSON"
            )
        return Payload({signature.inputs[0].name: array})
    return column_inputs(list(names), [_field(array, n) for n in names], signature, strict=strict)


def _savable(array: np.ndarray) -> np.ndarray:
    """An output as ``np.save`` writes it without pickling: text as a unicode array."""
    if array.dtype.kind != "O":
        return array
    text = [as_text(v) for v in array.ravel().tolist()]
    if not text:
        return np.empty(array.shape, dtype="<U1")
    return np.array(text, dtype=str).reshape(array.shape)


def format_npy(outputs: Mapping[str, np.ndarray]) -> bytes:
    """A ``.npy`` answer: the one output's array, or one structured array of every output.

    With several outputs, the array has one record per row and a field per output, holding the
    output's values of that row (a sub-array for a wider output): ``answer['label']`` is the
    labels.

    Raises:
        NotAcceptable: several outputs without one row count in common (no array holds them).
    """
    arrays = {name: _savable(np.asarray(a)) for name, a in outputs.items()}
    if len(arrays) == 1:
        (array,) = arrays.values()
    else:
        rows = {a.shape[0] if a.ndim else -1 for a in arrays.values()}
        if len(rows) != 1 or -1 in rows:
            raise NotAcceptable(
                "the outputs have different numbers of rows, which one .npy array cannot hold; "
                "ask for application/json"
            )
        (count,) = rows
        dtype = np.dtype([(name, a.dtype, a.shape[1:]) for name, a in arrays.items()])
        array = np.empty(count, dtype=dtype)
        for name, a in arrays.items():
            array[name] = a
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()
