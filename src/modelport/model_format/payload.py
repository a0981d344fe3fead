"""Request payload formats shared by the CLI and every HTTP route.

A payload is turned into ``{input name: array-like}`` here and then goes through the one
enforcement path, :meth:`~modelport.model_format.signature.Signature.enforce`. Accepted JSON bodies:

- ``{"inputs": {name: tensor, ...}}`` or ``{"inputs": tensor}`` for a single-input model;
- ``{"instances": [row, ...]}``, a row being a value for a single-input model or an object of
  input name to value;
- MLflow's ``{"dataframe_split": {"columns": [...], "data": [[...], ...]}}`` and
  ``{"dataframe_records": [{column: value}, ...]}``.

A table (``dataframe_*``, CSV) feeds a single-input model as its matrix of values and a multi-input
model column by column, by name, as MLflow does.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np

from modelport.errors import InputError, quote_name, quote_names
from modelport.model_format.jsontext import plain
from modelport.model_format.signature import Signature, TensorSpec

PAYLOAD_KEYS = ("inputs", "instances", "dataframe_split", "dataframe_records")
#: Keys that may come with the data and are not inputs (MLflow ``params``, Vertex ``parameters``).
IGNORED_KEYS = ("params", "parameters")
#: The output a classifier's labels are in (the sklearn source's name; MLflow answers only it).
LABEL_OUTPUT = "label"


class Payload(NamedTuple):
    """A request's inputs, and what reading it found besides.

    A named tuple, not a frozen dataclass: made on every request, and made in half the time.

    Attributes:
        inputs: ``{input name: array-like}``, or one array-like for a single-input model.
        ignored: columns of a table that feed no input (MLflow ignores them too).
        outputs: the outputs the request asked for (``params.outputs``); empty: the default.
    """

    inputs: Any
    ignored: tuple[str, ...] = ()
    outputs: tuple[str, ...] = ()


def parse_payload(body: Any, signature: Signature) -> Any:
    """The inputs of a decoded JSON body in any accepted format (see :func:`read_payload`)."""
    return read_payload(body, signature).inputs


def read_payload(body: Any, signature: Signature, *, strict: bool = False) -> Payload:
    """Read a decoded JSON body in any accepted format.

    A bare JSON array is the tensor of a single-input model, and a list of rows (each an object
    of input name to value, as ``instances``) for a model with named inputs.

    Args:
        body: the decoded JSON.
        signature: the model's.
        strict: a table's columns that feed no input are an error instead of ignored.

    Raises:
        InputError: the body is not one of the accepted formats.
    """
    if type(body) is dict and len(body) == 1 and "inputs" in body:
        return Payload(_inputs(body["inputs"], signature))  # the common case, first
    if type(body) is list:
        if len(signature.inputs) == 1 and not (body and isinstance(body[0], Mapping)):
            return Payload({signature.inputs[0].name: body})
        return Payload(instances_to_inputs(body, signature))
    if not isinstance(body, Mapping):
        raise InputError(
            "the body must be a JSON array, or an object with one of the keys "
            + ", ".join(PAYLOAD_KEYS)
        )
    present = [k for k in PAYLOAD_KEYS if k in body]
    unknown = sorted(str(k) for k in body if k not in PAYLOAD_KEYS and k not in IGNORED_KEYS)
    if len(present) != 1 or unknown:
        found = quote_names(present + unknown) or "none"
        raise InputError(
            f"the body must have exactly one of the keys {', '.join(PAYLOAD_KEYS)} (found {found})"
        )
    outputs = requested_outputs(body.get("params"), signature, "params") if "params" in body else ()
    if "parameters" in body and not isinstance(body["parameters"], Mapping):
        raise InputError("'parameters' must be a JSON object")
    key = present[0]
    value = body[key]
    if key == "inputs":
        return Payload(_inputs(value, signature), (), outputs)
    if key == "instances":
        return Payload(instances_to_inputs(value, signature), (), outputs)
    if key == "dataframe_split":
        if not isinstance(value, Mapping) or not isinstance(value.get("columns"), list):
            raise InputError("dataframe_split must be an object with 'columns' and 'data'")
        data = value.get("data")
        if not isinstance(data, list) or not all(isinstance(r, list) for r in data):
            raise InputError("dataframe_split.data must be a list of rows (lists)")
        table = table_inputs([str(c) for c in value["columns"]], data, signature, strict=strict)
    else:
        table = _records(value, signature, strict)
    return table._replace(outputs=outputs)


def requested_outputs(params: Any, signature: Signature, where: str) -> tuple[str, ...]:
    """The outputs ``params.outputs`` asks for (in its order), or () when it asks for none.

    Raises:
        InputError: ``params`` is not an object, or ``outputs`` is not a list of output names.
    """
    if params is None:
        return ()
    if not isinstance(params, Mapping):
        raise InputError(f"{where!r} must be a JSON object")
    wanted = params.get("outputs")
    if wanted is None:
        return ()
    if not isinstance(wanted, list) or not all(isinstance(n, str) for n in wanted) or not wanted:
        raise InputError(f"{where}.outputs must be a non-empty list of output names")
    check_outputs(wanted, signature)
    return tuple(dict.fromkeys(wanted))


def check_outputs(names: Sequence[str], signature: Signature) -> None:
    """Refuse output names the model does not have (``params.outputs``, V2's ``outputs``).

    Raises:
        InputError: naming the unknown outputs and listing the model's.
    """
    unknown = [n for n in names if n not in signature.output_names]
    if unknown:
        raise InputError(
            f"unknown output(s) {quote_names(unknown)}; the model's outputs are "
            f"{', '.join(map(repr, signature.output_names))}"
        )


def _inputs(value: Any, signature: Signature) -> Any:
    if isinstance(value, Mapping):
        return dict(value)
    if type(value) is list and value and isinstance(value[0], Mapping):
        return instances_to_inputs(value, signature)  # rows, as MLflow reads them
    if len(signature.inputs) != 1:
        raise InputError(
            f"'inputs' must be an object of input name to value: the model has "
            f"{len(signature.inputs)} inputs"
        )
    return {signature.inputs[0].name: value}


def instances_to_inputs(instances: Any, signature: Signature) -> dict[str, Any]:
    """Stack rows (``instances``) into one batch per input.

    A row is an object of input name to value, or, for a single-input model, the value itself.
    An object of input name to column is taken as it is (MLflow takes it too).
    """
    if isinstance(instances, Mapping):
        return dict(instances)  # columns by input name, as MLflow reads them
    if not isinstance(instances, list):
        raise InputError("'instances' must be a list of rows, or an object of columns")
    if instances and all(isinstance(r, Mapping) for r in instances):
        names = list(dict.fromkeys(k for r in instances for k in r))
        for name in names:
            if any(name not in r for r in instances):
                raise InputError(f"instances: input {quote_name(name)} is missing from some rows")
        return {name: [r[name] for r in instances] for name in names}
    if any(isinstance(r, Mapping) for r in instances):
        raise InputError("instances: mix of objects and plain values; use one form for all rows")
    if len(signature.inputs) != 1:
        raise InputError(
            f"instances: the model has {len(signature.inputs)} inputs, so each row must be an "
            "object of input name to value"
        )
    return {signature.inputs[0].name: instances}


def _records(records: Any, signature: Signature, strict: bool) -> Payload:
    if not isinstance(records, list) or not all(isinstance(r, Mapping) for r in records):
        raise InputError("dataframe_records must be a list of objects (one per row)")
    columns = list(dict.fromkeys(str(k) for r in records for k in r))
    rows = []
    for r in records:
        missing = [c for c in columns if c not in r]
        if missing:
            raise InputError(
                f"dataframe_records: column {quote_name(missing[0])} is missing from some rows"
            )
        rows.append([r[c] for c in columns])
    return table_inputs(columns, rows, signature, strict=strict)


def table_inputs(
    columns: Sequence[str],
    rows: Sequence[Sequence[Any]],
    signature: Signature,
    *,
    strict: bool = False,
    index: Sequence[str] = (),
) -> Payload:
    """Feed a table given as rows to the model (see :func:`column_inputs`)."""
    width = len(columns)
    if any(len(r) != width for r in rows):
        raise InputError(f"table rows must each have {width} value(s), one per column")
    if as_matrix(columns, signature):
        matrix = Payload({signature.inputs[0].name: _matrix_of_rows(rows, signature)})
        return _with_ignored(matrix, index, (), signature, strict)
    values = [[r[i] for r in rows] for i in range(width)]
    return column_inputs(columns, values, signature, strict=strict, index=index)


def column_inputs(
    columns: Sequence[str],
    values: Sequence[Any],
    signature: Signature,
    *,
    strict: bool = False,
    index: Sequence[str] = (),
) -> Payload:
    """Feed a table given as columns (lists or arrays) to the model, as MLflow does.

    A single-input model takes the whole table as its matrix, unless its input is one column
    the table names. Otherwise each input takes the column of its name; columns that feed no
    input are ignored (and listed), or refused with ``strict``. When an input is missing, the
    other columns are left in, so enforcement names both the missing inputs and the unknown
    columns.

    Args:
        columns: the columns' names.
        values: each column's values.
        signature: the model's.
        strict: columns that feed no input are an error instead of ignored.
        index: the table's index columns (pandas' ``index``), already left out of ``columns``:
            never an input, listed first among the ignored ones (refused with ``strict``).

    Raises:
        InputError: a column appears twice, or ``strict`` and a column feeds no input.
    """
    if len(set(columns)) != len(columns):
        repeated = [c for c in dict.fromkeys(columns) if columns.count(c) > 1]
        raise InputError(f"column(s) {quote_names(repeated)} appear more than once")
    if as_matrix(columns, signature):
        spec = signature.inputs[0]
        if len(values) == 1 and len(spec.shape) == 1:
            matrix = Payload({spec.name: values[0]})
        elif values and all(isinstance(v, np.ndarray) for v in values):
            matrix = Payload({spec.name: np.column_stack(values)})
        else:
            matrix = Payload({spec.name: [list(r) for r in zip(*values, strict=True)]})
        return _with_ignored(matrix, index, (), signature, strict)
    names = signature.input_names
    table = dict(zip(columns, values, strict=True))
    extra = [c for c in columns if c not in names]
    if not extra or any(n not in table for n in names):
        return _with_ignored(Payload(table), index, (), signature, strict)
    return _with_ignored(Payload({n: table[n] for n in names}), index, extra, signature, strict)


def _with_ignored(
    payload: Payload,
    index: Sequence[str],
    extra: Sequence[str],
    signature: Signature,
    strict: bool,
) -> Payload:
    """``payload`` with the columns that feed no input listed, or refused with ``strict``."""
    ignored = (*index, *extra)
    if not ignored:
        return payload
    if strict:
        what = f"; {quote_names(index)} the table's index" if index else ""
        raise InputError(
            f"column(s) {quote_names(ignored)} feed no input of the model (strict inputs{what}); "
            f"its inputs are {', '.join(map(repr, signature.input_names))}"
        )
    return payload._replace(ignored=ignored)


def as_matrix(columns: Sequence[str], signature: Signature) -> bool:
    """Whether a table is a single input's matrix (not that input's column by name)."""
    if len(signature.inputs) != 1:
        return False
    spec = signature.inputs[0]
    return not (is_column(spec) and spec.name in columns)


def _matrix_of_rows(rows: Sequence[Sequence[Any]], signature: Signature) -> Any:
    if len(signature.inputs[0].shape) == 1 and all(len(r) == 1 for r in rows):
        return [r[0] for r in rows]  # one column for a one-dimensional input
    return [list(r) for r in rows]


def is_column(spec: TensorSpec) -> bool:
    """Whether an input is one column of a table: ``[-1]`` or ``[-1, 1]``."""
    shape = spec.shape
    return len(shape) == 1 or (len(shape) == 2 and shape[1] == 1)


def is_dataframe(value: Any) -> bool:
    """Whether ``value`` is a pandas DataFrame (pandas itself is never imported for the test)."""
    return (
        type(value).__name__ == "DataFrame"
        and hasattr(value, "columns")
        and hasattr(value, "dtypes")
    )


def dataframe_columns(frame: Any) -> dict[str, np.ndarray]:
    """A pandas DataFrame's columns by name (as text), each as a numpy array."""
    return {str(c): frame[c].to_numpy() for c in frame.columns}


def python_inputs(value: Any, signature: Signature) -> Any:
    """What the Python API takes, read as the wire's bodies are.

    A pandas DataFrame is a table (as ``dataframe_split``), a list of mappings is rows (as
    ``instances``), a mapping is inputs by name (columns of a ``[-1, 1]`` input included), and
    anything else is the tensor of a single-input model.
    """
    if is_dataframe(value):
        columns = dataframe_columns(value)
        return column_inputs(list(columns), list(columns.values()), signature).inputs
    if isinstance(value, Mapping):
        return value
    if type(value) is list and value and all(isinstance(r, Mapping) for r in value):
        return instances_to_inputs(value, signature)
    return value


def answer_outputs(
    outputs: Mapping[str, np.ndarray], requested: Sequence[str] = (), mode: str = "full"
) -> Mapping[str, np.ndarray]:
    """The outputs an answer holds: those asked for, else every one (``full``) or MLflow's.

    In ``mlflow`` mode a classifier answers its labels only, and an ``[n, 1]`` output is a
    flat list of ``n``, as MLflow's scoring server answers an sklearn model.
    """
    if not requested and mode != "mlflow":
        return outputs  # the common case: every output, as the model gives it
    if requested:
        outputs = {name: outputs[name] for name in requested}
    elif mode == "mlflow" and LABEL_OUTPUT in outputs:
        outputs = {LABEL_OUTPUT: outputs[LABEL_OUTPUT]}
    if mode == "mlflow":
        outputs = {
            n: a.reshape(-1) if a.ndim == 2 and a.shape[1] == 1 else a for n, a in outputs.items()
        }
    return outputs


def output_rows(outputs: Mapping[str, np.ndarray]) -> list[Any] | None:
    """One prediction per row, as plain values (None when the outputs share no row count).

    With one output, a row's prediction is its value; with several, an object of output name
    to value.
    """
    if len(outputs) == 1:
        (array,) = outputs.values()
        value = plain(np.asarray(array))
        return value if isinstance(value, list) else [value]
    columns = {name: plain(np.asarray(a)) for name, a in outputs.items()}
    counts = {len(v) if isinstance(v, list) else -1 for v in columns.values()}
    if len(counts) != 1 or -1 in counts:
        return None
    names = list(columns)
    return [dict(zip(names, values, strict=True)) for values in zip(*columns.values(), strict=True)]


def format_predictions(
    outputs: Mapping[str, np.ndarray], encode: Callable[[np.ndarray], Any] = plain
) -> dict[str, Any]:
    """MLflow-style response: one output as a list, several as ``{name: list}`` (columnar).

    ``encode`` turns one output array into something the JSON encoder takes; the server passes
    one that hands numeric arrays to orjson as they are.
    """
    if len(outputs) == 1:
        (array,) = outputs.values()
        return {"predictions": encode(array)}
    return {"predictions": {name: encode(a) for name, a in outputs.items()}}
