"""``application/vnd.apache.parquet`` bodies (MLflow's ``application/x-parquet``): a table.

pyarrow reads them (the ``parquet`` extra), imported on the first such body only. What reading
a file may cost is checked on its footer before a page of it is decoded: columnar data
compresses (and run-length encodes) very well, so a small file can hold a huge table.
"""

from __future__ import annotations

import importlib
from typing import Any

import numpy as np

from modelport.errors import (
    BodyTooLarge,
    InputError,
    UnsupportedMediaType,
    quote_names,
)
from modelport.model_format.jsontext import MAX_JSON_VALUES
from modelport.model_format.payload import Payload, column_inputs
from modelport.model_format.signature import Signature

#: The media types of Parquet: the registered one, and MLflow's.
PARQUET_TYPES = ("application/vnd.apache.parquet", "application/x-parquet")
#: The most values (rows times columns) a Parquet body may hold: as many as a JSON body may.
MAX_PARQUET_VALUES = MAX_JSON_VALUES
_UNREADABLE = "the body is not a Parquet file this server can read"


def _pyarrow() -> tuple[Any, Any]:
    # Imported by name: pyarrow has no type information, and only this module touches it.
    try:
        pyarrow = importlib.import_module("pyarrow")
        parquet = importlib.import_module("pyarrow.parquet")
    except ImportError:
        raise UnsupportedMediaType(
            "reading application/vnd.apache.parquet bodies needs pyarrow, which this server "
            "does not have: pip install 'modelport[parquet]'"
        ) from None
    return pyarrow, parquet


def _index_columns(schema: Any) -> list[str]:
    """The stored columns of a pandas index (``df.to_parquet()`` writes a non-range index)."""
    try:
        metadata = schema.pandas_metadata
    except (ValueError, TypeError):  # pandas metadata that is not JSON: not pandas'
        return []
    if not isinstance(metadata, dict):
        return []
    found = metadata.get("index_columns")
    if not isinstance(found, list):
        return []
    # A RangeIndex is described, not stored: an object instead of a column name.
    return [c for c in found if isinstance(c, str) and c in schema.names]


def parse_parquet(
    body: bytes, signature: Signature, *, strict: bool = False, limit: int
) -> Payload:
    """Read a Parquet body into the model's inputs, as ``dataframe_split`` reads a table.

    Columns go to the inputs by name (a single-input model takes the table as its matrix); a
    pandas index stored as columns, and columns that feed no input, are ignored and listed, or
    refused with ``strict``. Numeric and boolean columns keep their types, text columns (and
    categorical ones of text) become text; nulls are NaN in float columns and refused by the
    signature elsewhere.

    Args:
        body: the request body.
        signature: the model's.
        strict: columns that feed no input are an error instead of ignored.
        limit: the most bytes the file's data may take uncompressed (its footer says).

    Raises:
        UnsupportedMediaType: pyarrow is not installed.
        BodyTooLarge: the data is larger than ``limit`` uncompressed, or holds more than
            :data:`MAX_PARQUET_VALUES` values.
        InputError: not a readable Parquet file, or a nested (list, struct, map) column.
    """
    pa, pq = _pyarrow()
    try:
        file = pq.ParquetFile(pa.BufferReader(body))
        metadata = file.metadata
        schema = file.schema_arrow
        uncompressed = sum(
            metadata.row_group(i).total_byte_size for i in range(metadata.num_row_groups)
        )
        rows, width = metadata.num_rows, metadata.num_columns
    except (pa.ArrowException, OSError, ValueError, TypeError, IndexError):
        raise InputError(_UNREADABLE) from None
    if rows < 0 or uncompressed < 0:
        raise InputError(_UNREADABLE)
    if uncompressed > limit:
        raise BodyTooLarge(f"the Parquet body's data is larger than {limit} bytes uncompressed")
    if rows * max(width, 1) > MAX_PARQUET_VALUES:
        raise BodyTooLarge(
            f"the Parquet body holds more than {MAX_PARQUET_VALUES} values (the limit)"
        )
    nested = [
        field.name
        for field in schema
        if pa.types.is_nested(field.type)
        or (pa.types.is_dictionary(field.type) and pa.types.is_nested(field.type.value_type))
    ]
    if nested:
        raise InputError(
            f"Parquet column(s) {quote_names(nested)} hold lists, structs or maps; "
            "each column must hold one value per row"
        )
    try:
        table = file.read(use_threads=False)
        columns = [str(name) for name in table.column_names]
        values = [_numpy(pa, column) for column in table.columns]
    except (pa.ArrowException, OSError, ValueError, TypeError):
        raise InputError(_UNREADABLE) from None
    index = _index_columns(schema)
    kept = [i for i, name in enumerate(columns) if name not in index]
    return column_inputs(
        [columns[i] for i in kept],
        [values[i] for i in kept],
        signature,
        strict=strict,
        index=index,
    )


def _numpy(pa: Any, column: Any) -> np.ndarray:
    """One column as a numpy array (text as an object array of ``str``)."""
    if pa.types.is_dictionary(column.type):
        # A pandas categorical: its values, not its codes.
        column = pa.chunked_array(
            [chunk.dictionary_decode() for chunk in column.chunks], type=column.type.value_type
        )
    array: np.ndarray = column.to_numpy()
    return array
