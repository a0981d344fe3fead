"""``text/csv`` bodies: a table in (RFC 4180, with or without a header row), rows out.

What the first row of a body is, when the client does not say (``text/csv; header=present`` or
``header=absent``, RFC 4180's parameter):

- a header, when its cells name every input of the model (a leading empty cell is pandas' index
  column: ``df.to_csv()`` writes ``,a,b``);
- otherwise data, when its cells are values of the inputs they feed: for a model whose one input
  is a matrix (no column names to recognise), every cell a value of its dtype; for named inputs,
  one column per input, in the signature's order;
- anything else is ambiguous (``a,b,c,d`` for a matrix): a 400 saying how to tell, never a
  guess. The number of rows read is always the number of data rows sent.

Cells are converted by the dtype of the input they feed: integers stay integers, floats floats,
an empty cell is NaN for a float input (as pandas reads it) and refused for others.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from modelport.errors import InputError, NotAcceptable, quote_name
from modelport.model_format.jsontext import as_text
from modelport.model_format.payload import (
    Payload,
    as_matrix,
    column_inputs,
    is_column,
    table_inputs,
)
from modelport.model_format.signature import Signature, TensorSpec

#: The name an ignored leading index column (pandas', with an empty header cell) is listed by.
INDEX_COLUMN = "index"
_TRUE = frozenset({"true", "1", "t", "yes"})
_FALSE = frozenset({"false", "0", "f", "no"})
_NAN = math.nan


class _NotValue(ValueError):
    """A cell is not a value of its column's dtype (``empty``: because it is empty)."""

    def __init__(self, empty: bool = False) -> None:
        super().__init__()
        self.empty = empty


# --- one cell -------------------------------------------------------------------------------


def _float(cell: str) -> float:
    try:
        value = float(cell)
    except ValueError:
        if cell.strip():
            raise _NotValue from None
        return _NAN  # an empty cell: pandas' missing value
    # float() also reads "1_000" and digits of other scripts; pandas does not.
    if "_" in cell or not cell.isascii():
        raise _NotValue
    return value


def _integer(cell: str) -> int | float:
    text = cell.strip()
    if not text:
        raise _NotValue(empty=True)
    if not text.isascii() or "_" in text:
        raise _NotValue
    try:
        return int(text)
    except ValueError:
        pass
    try:
        # "3.0" and "1e3" are integers written as floats: enforcement keeps them when lossless.
        return float(text)
    except ValueError:
        raise _NotValue from None


def _boolean(cell: str) -> bool:
    text = cell.strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise _NotValue(empty=not text)


def _text(cell: str) -> str:
    return cell


_Converter = Callable[[str], Any]


def _converter(dtype: str) -> _Converter:
    if dtype == "string":
        return _text
    if dtype == "bool":
        return _boolean
    if dtype.startswith("float"):
        return _float
    return _integer


_EXPECTED = {"string": "text", "bool": "booleans (true/false or 1/0)"}


def _cell_error(column: str, spec: TensorSpec, empty: bool) -> InputError:
    """A message for a cell of ``column`` (the client's name, or its place) feeding ``spec``."""
    if empty:
        return InputError(
            f"CSV column {column}: an empty cell, and input {spec.name!r} is {spec.dtype} "
            "(only float inputs take missing values)"
        )
    if spec.dtype.startswith("float"):
        expected = "numbers"
    elif spec.dtype in _EXPECTED:
        expected = _EXPECTED[spec.dtype]
    else:
        expected = "integers"
    return InputError(f"CSV column {column}: expected {expected}")


# --- reading --------------------------------------------------------------------------------


def _rows(body: bytes) -> list[list[str]]:
    try:
        text = body.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise InputError("the CSV body must be UTF-8 text") from None
    try:
        return [row for row in csv.reader(io.StringIO(text, newline=""), strict=True) if row]
    except csv.Error as exc:
        raise InputError(f"malformed CSV body ({type(exc).__name__})") from None


def _names(signature: Signature) -> str:
    return ", ".join(repr(n) for n in signature.input_names)


def _ambiguous(signature: Signature) -> InputError:
    return InputError(
        "the CSV body's first row is neither a header naming the model's inputs "
        f"({_names(signature)}) nor a row of values; send 'Content-Type: text/csv; "
        "header=present' if it is a header, or header=absent"
    )


def _column_count_error(signature: Signature, width: int) -> InputError:
    count = len(signature.inputs)
    return InputError(
        f"a CSV body without a header row needs {count} column(s), the model's inputs in order "
        f"({_names(signature)}); its rows have {width}. Send a header row naming the inputs "
        "('Content-Type: text/csv; header=present') to give the columns in another order"
    )


def _is_value(cell: str, convert: _Converter) -> bool:
    try:
        convert(cell)
    except _NotValue:
        return False
    return True


def _is_header(
    first: Sequence[str], signature: Signature, matrix: bool, header: bool | None
) -> bool:
    """Whether the first row is a header row (see the module's rules).

    Raises:
        InputError: it is neither a header nor data, or it is data of the wrong width.
    """
    if header is not None:
        return header
    cells = {c.strip() for c in first}
    if all(name in cells for name in signature.input_names):
        return True
    inputs = signature.inputs
    if matrix:
        convert = _converter(inputs[0].dtype)
        if len(first) > 1 and [c.strip() for c in first] == [str(j) for j in range(len(first))]:
            # pandas names an array's columns 0, 1, ...: df.to_csv(index=False) of a matrix
            # writes that header, which also reads as a row of numbers. Neither guess is safe.
            raise InputError(
                "the CSV body's first row is 0, 1, 2, ... (pandas' default column names, or "
                "data?); send 'Content-Type: text/csv; header=present' if it is a header, or "
                "header=absent"
            )
        if all(_is_value(cell, convert) for cell in first):
            return False
    elif len(first) == len(inputs):
        if all(_is_value(c, _converter(s.dtype)) for c, s in zip(first, inputs, strict=True)):
            return False
    else:
        # Data of the wrong width, or a header that does not name the inputs: values say which.
        converters = [_converter(dtype) for dtype in dict.fromkeys(s.dtype for s in inputs)]
        if all(any(_is_value(cell, c) for c in converters) for cell in first):
            raise _column_count_error(signature, len(first))
    raise _ambiguous(signature)


def _convert_rows(
    rows: list[list[str]], convert: _Converter, labels: Sequence[str], spec: TensorSpec
) -> list[list[Any]]:
    """Every cell of a matrix model's table, by the one input's dtype."""
    try:
        return [[convert(c) for c in row] for row in rows]
    except _NotValue:
        pass
    for row in rows:  # the error path: find the cell to name its column
        for j, cell in enumerate(row):
            try:
                convert(cell)
            except _NotValue as exc:
                raise _cell_error(labels[j], spec, exc.empty) from None
    raise AssertionError("unreachable")  # pragma: no cover


def _convert_column(
    cells: Sequence[str], convert: _Converter, label: str, spec: TensorSpec
) -> list[Any]:
    try:
        return [convert(c) for c in cells]
    except _NotValue as exc:
        raise _cell_error(label, spec, exc.empty) from None


def parse_csv(
    body: bytes, signature: Signature, *, header: bool | None = None, strict: bool = False
) -> tuple[Payload, bool]:
    """Read a CSV body into the model's inputs, as ``dataframe_split`` reads a table.

    A single-input model takes the table as its matrix (unless its input is one column the
    header names); a multi-input model takes columns by name, or, without a header row, in the
    signature's order. Columns that feed no input, and a leading index column (listed as
    ``index``), are ignored and listed in :attr:`Payload.ignored`, or refused with ``strict``.

    Args:
        body: the request body (UTF-8, a BOM allowed).
        signature: the model's.
        header: the media type's ``header`` parameter: True for ``present``, False for
            ``absent``, None when not given (the first row then says; see the module).
        strict: columns that feed no input are an error instead of ignored.

    Returns:
        The payload, and whether the body had a header row.

    Raises:
        InputError: not UTF-8, malformed, no rows of values, ragged rows, a first row that is
            neither a header nor data, a headerless body of the wrong width, or a cell that is
            not a value of its input's dtype. Messages name columns, never cells.
    """
    table = _rows(body)
    if not table:
        raise InputError("the CSV body is empty; it needs at least one row of values")
    inputs = signature.inputs
    first = table[0]
    matrix = len(inputs) == 1 and not is_column(inputs[0])
    has_header = _is_header(first, signature, matrix, header)
    index = has_header and len(first) > 1 and not first[0].strip()
    rows = table[1:] if has_header else table
    if not rows:
        raise InputError(
            "the CSV body has a header row but no rows of values; it needs at least one row"
        )
    width = len(first)
    if any(len(r) != width for r in rows):
        per = "one per header column" if has_header else "as the first row has"
        raise InputError(f"CSV rows must each have {width} value(s), {per}")
    if index:
        rows = [r[1:] for r in rows]
        first = first[1:]
    if has_header:
        columns = [c.strip() for c in first]
        labels = [quote_name(c) for c in columns]
    elif matrix:
        columns = [str(j) for j in range(width)]
        labels = [str(j + 1) for j in range(width)]
    else:
        if width != len(inputs):
            raise _column_count_error(signature, width)
        columns = list(signature.input_names)
        labels = [repr(c) for c in columns]
    index_columns = (INDEX_COLUMN,) if index else ()
    if as_matrix(columns, signature):
        # The table is the one input's matrix: every cell by its dtype.
        spec = inputs[0]
        values = _convert_rows(rows, _converter(spec.dtype), labels, spec)
        payload = table_inputs(columns, values, signature, strict=strict, index=index_columns)
    else:
        specs: Mapping[str, TensorSpec] = {s.name: s for s in inputs}
        data: list[Any] = []
        for j, cells in enumerate(zip(*rows, strict=True)):
            spec_j = specs.get(columns[j])
            if spec_j is None:
                data.append(list(cells))  # feeds no input: left as text
            else:
                data.append(_convert_column(cells, _converter(spec_j.dtype), labels[j], spec_j))
        payload = column_inputs(columns, data, signature, strict=strict, index=index_columns)
    return payload, has_header


# --- writing --------------------------------------------------------------------------------


def _cells(array: np.ndarray) -> tuple[int, list[list[Any]]]:
    """One output's width and its rows of cells, values the csv module writes as wanted.

    Floats are written in their shortest form (float32 0.9 as ``0.9``), NaN as ``nan`` and
    infinities as ``inf``/``-inf`` (what numpy and pandas read back), booleans ``true``/``false``.
    """
    if array.ndim == 0:
        array = array.reshape(1)
    flat = array.reshape(array.shape[0], math.prod(array.shape[1:]))
    kind = flat.dtype.kind
    if kind == "b":
        cells: list[list[Any]] = np.where(flat, "true", "false").tolist()
    elif kind in "OSU":
        cells = [[as_text(v) for v in row] for row in flat.tolist()]
    elif kind == "f" and flat.dtype.itemsize < 8:
        # float32 widened is 0.8999999761581421; its own shortest form is 0.9.
        cells = flat.astype(str).tolist()
    else:
        # The csv module writes a float with repr(): the shortest form, nan, inf.
        cells = flat.tolist()
    return flat.shape[1], cells


def format_csv(outputs: Mapping[str, np.ndarray], *, header: bool) -> bytes:
    """A CSV answer: one row per input row, the outputs side by side.

    A one-dimensional output is one column named after it; a wider one is flattened into
    columns ``name_0``, ``name_1``, … (a scalar output is one row).

    Args:
        outputs: output name -> array.
        header: write a header row of the columns' names first.

    Raises:
        NotAcceptable: the outputs do not have the same number of rows (no table holds them).
    """
    names: list[str] = []
    columns: list[list[list[Any]]] = []
    for name, value in outputs.items():
        array = np.asarray(value)
        width, cells = _cells(array)
        names.extend([name] if array.ndim <= 1 else [f"{name}_{i}" for i in range(width)])
        columns.append(cells)
    if len({len(c) for c in columns}) > 1:
        raise NotAcceptable(
            "the outputs have different numbers of rows, which one CSV table cannot hold; "
            "ask for application/json"
        )
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    if header:
        writer.writerow(names)
    if len(columns) == 1:
        writer.writerows(columns[0])
    else:
        rows = zip(*columns, strict=True)
        writer.writerows([cell for part in parts for cell in part] for parts in rows)
    return buffer.getvalue().encode()
