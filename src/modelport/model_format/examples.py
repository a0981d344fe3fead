"""Input examples at pack time: any accepted form into arrays that fit a model's signature.

An example is an array, a mapping of input name to array, a pandas DataFrame (one input per
column), or a JSON file read by :func:`read_example_file` (``{"inputs": ...}`` or an MLflow
scoring format), carried as ``{"__payload__": body}`` until the signature is known.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from modelport.errors import InputError, PackError
from modelport.model_format.payload import (
    column_inputs,
    dataframe_columns,
    is_dataframe,
    parse_payload,
)
from modelport.model_format.signature import Signature, TensorSpec

#: The key under which an example read from a JSON file waits for the signature.
PAYLOAD_KEY = "__payload__"


def read_example_file(path: Path) -> dict[str, Any]:
    """Read an example JSON file: ``{"inputs": ...}`` or another accepted payload format."""
    try:
        body = json.loads(path.read_text("utf-8"))
    except FileNotFoundError:
        raise PackError(f"example file {path} does not exist") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise PackError(f"example file {path} is not valid JSON ({exc})") from None
    return {PAYLOAD_KEY: body}


def is_payload(example: Any) -> bool:
    """True for an example read from a JSON file (its inputs are not parsed yet)."""
    return isinstance(example, Mapping) and PAYLOAD_KEY in example


def example_columns(example: Any) -> tuple[dict[str, np.ndarray], bool]:
    """Split an example into named arrays; True when it is a table (one input per column)."""
    if is_dataframe(example):
        return dataframe_columns(example), True
    if isinstance(example, Mapping):
        return {str(k): np.asarray(v) for k, v in example.items()}, False
    return {"input": np.asarray(example)}, False


def resolve_example(example: Any, signature: Signature) -> dict[str, np.ndarray] | None:
    """Turn any accepted example form into enforced arrays for ``signature``.

    Raises:
        PackError: the example does not fit the model (the message names the input).
    """
    if example is None:
        return None
    try:
        return _example_arrays(example, signature)
    except InputError as exc:
        raise PackError(f"the example does not fit the model: {exc}") from None


def _example_arrays(example: Any, signature: Signature) -> dict[str, np.ndarray]:
    if is_payload(example):
        example = parse_payload(example[PAYLOAD_KEY], signature)
    if not isinstance(example, Mapping) and not is_dataframe(example):
        return _enforce_refined(signature, example)
    columns, table = example_columns(example)
    if table:
        values = [c.tolist() for c in columns.values()]
        return _enforce_refined(signature, column_inputs(list(columns), values, signature).inputs)
    return _enforce_refined(signature, columns)


def _enforce_refined(signature: Signature, inputs: Any) -> dict[str, np.ndarray]:
    """Enforce ``inputs`` after taking the rank of inputs the graph leaves unknown from them."""
    if isinstance(inputs, Mapping):
        named = dict(inputs)
    else:
        named = {signature.inputs[0].name: inputs} if len(signature.inputs) == 1 else {}
    arrays: dict[str, np.ndarray] = {}
    for name, value in named.items():
        try:
            arrays[str(name)] = np.asarray(value)
        except (ValueError, TypeError):
            continue  # ragged: enforcement names the input
    return refine(signature, arrays).enforce(inputs)


def refine(signature: Signature, example: Mapping[str, np.ndarray]) -> Signature:
    """Fill in inputs whose rank the graph leaves unknown from the example (rows stay -1)."""
    refined = []
    for spec in signature.inputs:
        if not spec.shape and spec.name in example and example[spec.name].ndim > 0:
            shape = (-1, *example[spec.name].shape[1:])
            refined.append(TensorSpec(spec.name, spec.dtype, shape))
        else:
            refined.append(spec)
    return Signature(tuple(refined), signature.outputs)
