"""Scoring Arrow batches: the one code path every engine runs, on Spark executors or one machine.

A batch's feeding columns become the model's inputs (through the signature's enforcement, as on
every other path), its nulls are handled as the :class:`~modelport.batch.plan.Plan` says, and
the outputs come back as Arrow arrays of the planned types. Spark hands its executors Arrow
batches (``mapInArrow``, Arrow UDFs), and the local engine reads files as Arrow batches, so both
score exactly the same way. pyarrow (the ``batch`` or ``spark`` extra) is imported here only.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from modelport.batch.plan import ARRAY, VECTOR, Column, Feed, Output, Plan
from modelport.errors import InputError, MissingDependencyError, quote_name
from modelport.model_format.package import Package
from modelport.model_format.signature import DTYPES


def pyarrow() -> Any:
    """The ``pyarrow`` module, or an error saying which extra brings it."""
    try:
        return importlib.import_module("pyarrow")
    except ImportError:
        raise MissingDependencyError("batch scoring", "batch", "pyarrow") from None


#: The signature's dtype names of Arrow's types (by ``str(type)``).
_ARROW_NAMES = {
    "bool": "bool",
    "int8": "int8",
    "int16": "int16",
    "int32": "int32",
    "int64": "int64",
    "uint8": "uint8",
    "uint16": "uint16",
    "uint32": "uint32",
    "uint64": "uint64",
    "halffloat": "float16",
    "float": "float32",
    "double": "float64",
    "string": "string",
    "large_string": "string",
    "string_view": "string",
}


def arrow_type(dtype: str) -> Any:
    """The Arrow type of a signature dtype name."""
    pa = pyarrow()
    return pa.string() if dtype == "string" else pa.from_numpy_dtype(DTYPES[dtype])


def _kind(arrow: Any) -> str:
    pa = pyarrow()
    if pa.types.is_dictionary(arrow):
        arrow = arrow.value_type
    return _ARROW_NAMES.get(str(arrow), str(arrow))


def is_list(arrow: Any) -> bool:
    """Whether an Arrow type holds an array per row: a list or a large list."""
    pa = pyarrow()
    return bool(pa.types.is_list(arrow) or pa.types.is_large_list(arrow))


def is_vector(arrow: Any) -> bool:
    """Whether an Arrow type is how Spark sends an ML vector: its ``VectorUDT`` struct."""
    pa = pyarrow()
    return pa.types.is_struct(arrow) and {arrow.field(i).name for i in range(arrow.num_fields)} == {
        "type",
        "size",
        "indices",
        "values",
    }


def arrow_column(field: Any) -> Column:
    """Describe an Arrow field (of a file's schema, or of a UDF's struct) as a plan's column."""
    pa = pyarrow()
    kind = field.type
    if is_vector(kind):
        return Column(field.name, VECTOR, nullable=field.nullable)
    if is_list(kind) or pa.types.is_fixed_size_list(kind):
        return Column(field.name, ARRAY, _kind(kind.value_type), field.nullable)
    return Column(field.name, _kind(kind), nullable=field.nullable)


def output_type(output: Output) -> Any:
    """The Arrow type of an output's column: its dtype, or a list of it."""
    pa = pyarrow()
    element = arrow_type(output.dtype)
    return element if output.width is None else pa.list_(element)


class Scorer:
    """Scores Arrow batches with a loaded package, as a plan says.

    Args:
        package: the loaded package (loaded once per process; see :mod:`modelport.batch.worker`).
        plan: how the batches' columns feed it.
    """

    def __init__(self, package: Package, plan: Plan) -> None:
        self.package = package
        self.plan = plan
        self._pa = pyarrow()
        self._pc = importlib.import_module("pyarrow.compute")
        self._types = [output_type(o) for o in plan.outputs]

    def score(self, columns: Mapping[str, Any], rows: int) -> list[Any]:
        """Score one batch.

        Args:
            columns: the batch's columns by name (Arrow arrays or chunked arrays); those the
                plan feeds the model must be there.
            rows: the batch's row count.

        Returns:
            One Arrow array per planned output, ``rows`` long (null where a row was skipped).

        Raises:
            InputError: a null where the plan refuses them, a value the signature refuses, or an
                array of the wrong length; the message names the column.
            ModelError: the model failed.
        """
        pa, pc = self._pa, self._pc
        feeding = {name: _combined(pa, columns[name]) for name in self.plan.columns}
        keep = None
        if self.plan.nullable:
            nulls = [name for name in self.plan.nullable if _has_nulls(pa, feeding[name])]
            if nulls:
                if self.plan.on_null == "error":
                    raise InputError(
                        f"column(s) {', '.join(map(quote_name, nulls))} hold null values; "
                        "score them with on_null='skip' (their rows get null outputs) or "
                        "on_null='nan' (float inputs)"
                    )
                if self.plan.on_null == "nan":
                    feeding = {n: _nan_filled(pa, pc, a) for n, a in feeding.items()}
                else:
                    keep = _valid_rows(pa, pc, [feeding[n] for n in nulls], rows)
                    feeding = {n: a.filter(keep) for n, a in feeding.items()}
        scored = len(feeding[self.plan.columns[0]]) if feeding else rows
        inputs = {feed.input.name: self._input(feed, feeding, scored) for feed in self.plan.feeds}
        results = self.package.predict_arrays(self.package.signature.enforce(inputs))
        arrays = [
            _to_arrow(pa, results[o.name], o, t, scored)
            for o, t in zip(self.plan.outputs, self._types, strict=True)
        ]
        if keep is not None:
            arrays = [_spread(pa, array, keep) for array in arrays]
        return arrays

    def _input(self, feed: Feed, feeding: Mapping[str, Any], rows: int) -> np.ndarray:
        if feed.layout == "column":
            return _numpy(feeding[feed.columns[0]])
        if feed.layout == "matrix":
            return np.column_stack([_numpy(feeding[c]) for c in feed.columns])
        return _matrix(self._pa, self._pc, feed, feeding[feed.columns[0]], rows)

    def append(self, batch: Any) -> Any:
        """A record batch with the planned outputs' columns appended."""
        arrays = self.score(
            {name: batch.column(name) for name in self.plan.columns}, batch.num_rows
        )
        return self._pa.RecordBatch.from_arrays(
            [*batch.columns, *arrays],
            names=[*batch.schema.names, *(o.column for o in self.plan.outputs)],
        )


def _combined(pa: Any, array: Any) -> Any:
    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks()
    if pa.types.is_dictionary(array.type):
        array = array.dictionary_decode()
    return array


def _has_nulls(pa: Any, array: Any) -> bool:
    if array.null_count:
        return True
    if is_list(array.type):
        return bool(array.flatten().null_count)
    return False


def _nan_filled(pa: Any, pc: Any, array: Any) -> Any:
    if is_list(array.type):
        if array.null_count:
            raise InputError("on_null='nan' fills values, not whole arrays: an array is null")
        values = pc.fill_null(array.values.cast(pa.float64()), float("nan"))
        return type(array).from_arrays(array.offsets, values)
    if not array.null_count:
        return array
    return pc.fill_null(array.cast(pa.float64()), float("nan"))


def _valid_rows(pa: Any, pc: Any, arrays: Sequence[Any], rows: int) -> Any:
    valid = np.ones(rows, dtype=bool)
    for array in arrays:
        valid &= ~np.asarray(array.is_null())
        if is_list(array.type):
            inner = array.flatten().is_null()
            if pc.any(inner).as_py():
                # A row whose array holds a null is skipped too.
                parents = pc.list_parent_indices(array)
                bad = np.asarray(parents)[np.asarray(inner)]
                valid[bad] = False
    return pa.array(valid)


def _numpy(array: Any) -> np.ndarray:
    """One column as numpy: zero-copy where Arrow allows, text as an object array of ``str``."""
    values: np.ndarray = array.to_numpy(zero_copy_only=False)
    return values


def _matrix(pa: Any, pc: Any, feed: Feed, array: Any, rows: int) -> np.ndarray:
    """An array or ML vector column as a ``[rows, k]`` matrix."""
    name = quote_name(feed.columns[0])
    if is_vector(array.type):
        return _dense(pa, pc, feed, array, rows)
    lengths = np.asarray(pc.list_value_length(array).fill_null(0))
    width = feed.input.shape[1]
    found = set(np.unique(lengths).tolist())
    if len(found) > 1 or (width != -1 and found and found != {width}):
        want = f"{width} values" if width != -1 else "arrays of one length"
        raise InputError(
            f"column {name} feeds input {feed.input.name!r} ({feed.input.describe()}): every "
            f"array must hold {want}; found lengths {sorted(found)[:5]}"
        )
    size = found.pop() if found else max(width, 0)
    flat = array.flatten() if array.offset or len(array) != rows else array.values
    return _numpy(flat).reshape(rows, size)


def _dense(pa: Any, pc: Any, feed: Feed, array: Any, rows: int) -> np.ndarray:
    """Spark ML vectors (``type`` 1 dense, 0 sparse with ``size`` and ``indices``) as a matrix."""
    kinds = np.asarray(array.field("type"))
    values = array.field("values")
    if rows and bool((kinds == 1).all()):
        return _matrix(pa, pc, feed, values, rows)
    sizes = np.asarray(array.field("size").fill_null(0))
    dense_rows = kinds == 1
    width = feed.input.shape[1]
    if width == -1:
        lengths = np.asarray(pc.list_value_length(values).fill_null(0))
        width = int(max(sizes.max(initial=0), lengths.max(initial=0)))
    matrix = np.zeros((rows, width), dtype=np.float64)
    indices = array.field("indices")
    for row in range(rows):
        row_values = np.asarray(values[row].values)
        if dense_rows[row]:
            if len(row_values) != width:
                raise InputError(
                    f"column {quote_name(feed.columns[0])} feeds input {feed.input.name!r} "
                    f"({feed.input.describe()}): a vector holds {len(row_values)} values"
                )
            matrix[row] = row_values
        else:
            if sizes[row] != width:
                raise InputError(
                    f"column {quote_name(feed.columns[0])} feeds input {feed.input.name!r} "
                    f"({feed.input.describe()}): a sparse vector has size {sizes[row]}"
                )
            matrix[row, np.asarray(indices[row].values)] = row_values
    return matrix


def _to_arrow(pa: Any, values: np.ndarray, output: Output, kind: Any, rows: int) -> Any:
    """One output as an Arrow array of its planned type."""
    values = np.asarray(values)
    if output.dtype != "string":
        values = values.astype(DTYPES[output.dtype], copy=False)  # uint8 -> int16, float16 -> ...
    if output.width is None:
        flat = values.reshape(-1)
        if len(flat) != rows:
            raise InputError(
                f"output {output.name!r} gave {len(flat)} values for {rows} rows; "
                "it cannot be one value per row"
            )
        return pa.array(_plain_strings(flat) if output.dtype == "string" else flat, type=kind)
    matrix = values.reshape(rows, -1) if rows else values.reshape(0, max(output.width, 0))
    width = matrix.shape[1]
    flat = matrix.reshape(-1)
    element = pa.array(
        _plain_strings(flat) if output.dtype == "string" else flat, type=kind.value_type
    )
    offsets = pa.array(np.arange(rows + 1, dtype=np.int32) * width)
    return pa.ListArray.from_arrays(offsets, element, type=kind)


def _plain_strings(values: np.ndarray) -> list[Any]:
    return [v if isinstance(v, str) or v is None else str(v) for v in values.tolist()]


def _spread(pa: Any, array: Any, keep: Any) -> Any:
    """Scored rows back in their places, with nulls for the rows that were skipped."""
    kept = np.asarray(keep)
    positions = np.cumsum(kept) - 1
    return array.take(pa.array(positions, mask=~kept))
