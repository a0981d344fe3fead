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
from typing import Any

import numpy as np

from modelport.errors import InputError, quote_name, quote_names
from modelport.model_format.jsontext import plain
from modelport.model_format.signature import Signature

PAYLOAD_KEYS = ("inputs", "instances", "dataframe_split", "dataframe_records")
#: Keys that may come with the data and are not inputs (MLflow ``params``, Vertex ``parameters``).
IGNORED_KEYS = ("params", "parameters")


def parse_payload(body: Any, signature: Signature) -> dict[str, Any]:
    """Turn a decoded JSON body in any accepted format into ``{input name: array-like}``.

    Raises:
        InputError: the body is not one of the accepted formats.
    """
    if not isinstance(body, Mapping):
        raise InputError(
            "the body must be a JSON object with one of the keys " + ", ".join(PAYLOAD_KEYS)
        )
    present = [k for k in PAYLOAD_KEYS if k in body]
    unknown = sorted(str(k) for k in body if k not in PAYLOAD_KEYS and k not in IGNORED_KEYS)
    if len(present) != 1 or unknown:
        found = quote_names(present + unknown) or "none"
        raise InputError(
            f"the body must have exactly one of the keys {', '.join(PAYLOAD_KEYS)} (found {found})"
        )
    key = present[0]
    value = body[key]
    if key == "inputs":
        return _inputs(value, signature)
    if key == "instances":
        return instances_to_inputs(value, signature)
    if key == "dataframe_split":
        if not isinstance(value, Mapping) or not isinstance(value.get("columns"), list):
            raise InputError("dataframe_split must be an object with 'columns' and 'data'")
        data = value.get("data")
        if not isinstance(data, list) or not all(isinstance(r, list) for r in data):
            raise InputError("dataframe_split.data must be a list of rows (lists)")
        return table_to_inputs([str(c) for c in value["columns"]], data, signature)
    return _records(value, signature)


def _inputs(value: Any, signature: Signature) -> dict[str, Any]:
    if isinstance(value, Mapping):
        return dict(value)
    if len(signature.inputs) != 1:
        raise InputError(
            f"'inputs' must be an object of input name to value: the model has "
            f"{len(signature.inputs)} inputs"
        )
    return {signature.inputs[0].name: value}


def instances_to_inputs(instances: Any, signature: Signature) -> dict[str, Any]:
    """Stack rows (``instances``) into one batch per input.

    A row is an object of input name to value, or, for a single-input model, the value itself.
    """
    if not isinstance(instances, list):
        raise InputError("'instances' must be a list of rows")
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


def _records(records: Any, signature: Signature) -> dict[str, Any]:
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
    return table_to_inputs(columns, rows, signature)


def table_to_inputs(
    columns: Sequence[str], rows: Sequence[Sequence[Any]], signature: Signature
) -> dict[str, Any]:
    """Feed a table to the model: as one matrix for a single input, else column by column."""
    width = len(columns)
    if any(len(r) != width for r in rows):
        raise InputError(f"table rows must each have {width} value(s), one per column")
    names = signature.input_names
    if len(names) == 1 and not (width == 1 and columns[0] == names[0] and _is_column(signature)):
        return {names[0]: [list(r) for r in rows]}
    specs = {s.name: s for s in signature.inputs}
    result: dict[str, Any] = {}
    for i, column in enumerate(columns):
        values = [r[i] for r in rows]
        spec = specs.get(column)
        # Unknown columns pass through so enforcement reports them by name.
        result[column] = (
            [[v] for v in values] if spec is not None and len(spec.shape) == 2 else values
        )
    return result


def _is_column(signature: Signature) -> bool:
    shape = signature.inputs[0].shape
    return len(shape) == 1 or (len(shape) == 2 and shape[1] == 1)


def to_jsonable(array: np.ndarray) -> Any:
    """Convert an output array to plain JSON values (see :func:`jsontext.plain`)."""
    return plain(array)


def format_predictions(
    outputs: Mapping[str, np.ndarray], encode: Callable[[np.ndarray], Any] = to_jsonable
) -> dict[str, Any]:
    """MLflow-style response: one output as a list, several as ``{name: list}`` (columnar).

    ``encode`` turns one output array into something the JSON encoder takes; the server passes
    one that hands numeric arrays to orjson as they are.
    """
    if len(outputs) == 1:
        (array,) = outputs.values()
        return {"predictions": encode(array)}
    return {"predictions": {name: encode(a) for name, a in outputs.items()}}
