"""A pack source: scikit-learn estimators, converted to the ``onnx`` flavor and checked.

The packer converts with skl2onnx, runs the estimator and the converted model on the example, and
records the largest absolute difference per output. Above the tolerance, packing fails and names
the output. Classifiers give ``label`` and ``probabilities`` as plain tensors (no ZipMap).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from modelport.errors import ConversionMismatchError, MissingDependencyError, PackError
from modelport.model_format.examples import example_columns, is_payload
from modelport.model_format.flavors.base import PackRequest, PackSource, Staged
from modelport.model_format.flavors.onnx import make_session, stage_onnx
from modelport.model_format.signature import dtype_name

#: skl2onnx's name for a regressor's output, and the name modelport gives it.
RENAMED_OUTPUTS = {"variable": "prediction"}
#: Internal name of the feature matrix when a numeric table's columns are joined in the graph.
MATRIX_INPUT = "modelport_features"


@dataclass(frozen=True)
class Converted:
    """A converted estimator: ONNX bytes, example inputs as fed to ONNX, and the parity report."""

    onnx_bytes: bytes
    example: dict[str, np.ndarray]
    settings: dict[str, Any]


def is_sklearn_estimator(obj: Any) -> bool:
    """True for a fitted-or-not scikit-learn estimator (checked without importing sklearn)."""
    return any(c.__module__.startswith("sklearn.") for c in type(obj).__mro__) and hasattr(
        obj, "predict"
    )


def _require() -> tuple[Any, Any, Any]:
    try:
        import onnx
        import skl2onnx
        import sklearn
    except ImportError as exc:
        raise MissingDependencyError(
            "packing a scikit-learn model", "sklearn", exc.name or "skl2onnx"
        ) from None
    return sklearn, skl2onnx, onnx


def _onnx_dtype(array: np.ndarray) -> np.dtype[Any]:
    kind = array.dtype.kind
    if kind == "f":
        return np.dtype(np.float32)
    if kind in "iu":
        return np.dtype(np.int64)
    if kind == "b":
        return np.dtype(np.bool_)
    if kind in "UO":
        return np.dtype(object)
    raise PackError(f"example column of dtype {array.dtype} cannot be converted to ONNX")


def _initial_types(columns: Mapping[str, np.ndarray], table: bool) -> list[tuple[str, Any]]:
    from skl2onnx.common.data_types import (
        BooleanTensorType,
        FloatTensorType,
        Int64TensorType,
        StringTensorType,
    )

    by_dtype = {
        "float32": FloatTensorType,
        "int64": Int64TensorType,
        "bool": BooleanTensorType,
        "string": StringTensorType,
    }
    types = []
    for name, values in columns.items():
        onnx_dtype = dtype_name(_onnx_dtype(values))
        if table:
            shape: list[int | None] = [None, 1]
        else:
            if values.ndim != 2:
                raise PackError(
                    f"example input {name!r} must be 2-D (rows x features), got {values.ndim}-D"
                )
            shape = [None, int(values.shape[1])]
        types.append((name, by_dtype[onnx_dtype](shape)))
    return types


def convert(estimator: Any, example: Any, tolerance: float) -> Converted:
    """Convert a fitted estimator to ONNX and check it against the original on ``example``.

    Raises:
        PackError: no example, or skl2onnx cannot convert the estimator.
        ConversionMismatchError: an output differs by more than ``tolerance``.
    """
    sklearn, skl2onnx, _ = _require()
    if example is None:
        raise PackError(
            "packing a scikit-learn model needs an example input: it sets the input types and "
            "checks the converted model against the original"
        )
    columns, table = example_columns(example)
    model = _to_onnx(skl2onnx, estimator, columns, table)
    _rename_outputs(model)
    onnx_bytes = model.SerializeToString()

    # Feed both sides the same values: the example as the ONNX model receives it.
    fed = {
        n: (v.astype(_onnx_dtype(v)).reshape(-1, 1) if table else v.astype(_onnx_dtype(v)))
        for n, v in columns.items()
    }
    sk_input = _sklearn_input(estimator, example, fed, table)
    expected = _sklearn_outputs(estimator, sk_input)

    session = make_session(onnx_bytes, threads=1)
    names = [o.name for o in session.get_outputs()]
    got = dict(zip(names, session.run(names, fed), strict=True))
    diffs: dict[str, float] = {}
    for name, want in expected.items():
        if name in got:
            diffs[name] = _max_abs_diff(want, got[name])
    failed = {n: d for n, d in diffs.items() if not d <= tolerance}
    if failed:
        detail = ", ".join(f"{n!r}: {d:.3g}" for n, d in failed.items())
        raise ConversionMismatchError(
            f"the ONNX conversion of {type(estimator).__name__} disagrees with the original on the "
            f"example beyond the tolerance {tolerance:g} (max abs difference {detail}); pass a "
            "larger tolerance only if that difference is acceptable"
        )
    settings = {
        "converted_from": {
            "library": f"scikit-learn=={sklearn.__version__}",
            "converter": f"skl2onnx=={skl2onnx.__version__}",
            "estimator": f"{type(estimator).__module__}.{type(estimator).__qualname__}",
            "rows_checked": int(next(iter(fed.values())).shape[0]),
            "tolerance": tolerance,
            "max_abs_diff": diffs,
        }
    }
    return Converted(onnx_bytes, fed, settings)


def _to_onnx(skl2onnx: Any, estimator: Any, columns: Mapping[str, np.ndarray], table: bool) -> Any:
    # Classifiers: plain label and probability tensors, not ZipMap dictionaries per row.
    options = {"zipmap": False} if hasattr(estimator, "predict_proba") else None
    try:
        model = skl2onnx.to_onnx(
            estimator, initial_types=_initial_types(columns, table), options=options
        )
        return _restore_input_names(model, list(columns))
    except Exception as exc:
        first_error = exc
    numeric = all(v.dtype.kind in "iuf" for v in columns.values())
    if table and numeric:
        # An estimator fitted on a numeric table takes one matrix; keep one named input per
        # column anyway (so names are enforced) by joining the columns in front of the model.
        width = len(columns)
        matrix = {MATRIX_INPUT: np.zeros((1, width), dtype=np.float32)}
        try:
            inner = skl2onnx.to_onnx(
                estimator, initial_types=_initial_types(matrix, False), options=options
            )
        except Exception as exc:
            raise PackError(
                f"skl2onnx could not convert {type(estimator).__name__}: {exc}"
            ) from None
        return _join_columns(inner, columns)
    raise PackError(
        f"skl2onnx could not convert {type(estimator).__name__}: {first_error}"
    ) from None


def _restore_input_names(model: Any, names: list[str]) -> Any:
    # skl2onnx turns column names into identifiers ("mean radius" -> "mean_radius"); clients
    # send the real column names, so give the graph inputs those back.
    graph = model.graph
    if len(graph.input) != len(names):
        raise PackError("skl2onnx produced a different number of inputs than the example has")
    renames = {i.name: n for i, n in zip(graph.input, names, strict=True) if i.name != n}
    if not renames:
        return model
    for value in graph.input:
        value.name = renames.get(value.name, value.name)
    for node in graph.node:
        node.input[:] = [renames.get(n, n) for n in node.input]
    return model


def _join_columns(model: Any, columns: Mapping[str, np.ndarray]) -> Any:
    from onnx import TensorProto, helper

    graph = model.graph
    nodes = []
    joined = []
    new_inputs = []
    for i, (name, values) in enumerate(columns.items()):
        is_float = values.dtype.kind == "f"
        elem = TensorProto.FLOAT if is_float else TensorProto.INT64
        new_inputs.append(helper.make_tensor_value_info(name, elem, [None, 1]))
        if is_float:
            joined.append(name)
        else:
            cast = f"{MATRIX_INPUT}_cast_{i}"
            nodes.append(helper.make_node("Cast", [name], [cast], to=TensorProto.FLOAT))
            joined.append(cast)
    nodes.append(helper.make_node("Concat", joined, [MATRIX_INPUT], axis=1))
    old_nodes = list(graph.node)
    del graph.node[:]
    graph.node.extend(nodes + old_nodes)
    del graph.input[:]
    graph.input.extend(new_inputs)
    return model


def _rename_outputs(model: Any) -> None:
    graph_outputs = {o.name for o in model.graph.output}
    taken = graph_outputs | {i.name for i in model.graph.input}
    taken |= {name for node in model.graph.node for name in (*node.input, *node.output)}
    for old, new in RENAMED_OUTPUTS.items():
        if old not in graph_outputs or new in taken:
            continue
        for node in model.graph.node:
            node.input[:] = [new if n == old else n for n in node.input]
            node.output[:] = [new if n == old else n for n in node.output]
        for output in model.graph.output:
            if output.name == old:
                output.name = new


def _sklearn_input(estimator: Any, example: Any, fed: Mapping[str, np.ndarray], table: bool) -> Any:
    if table:
        frame = example.copy()
        for name, values in fed.items():
            frame[name] = values.reshape(-1)
        return frame
    if isinstance(example, Mapping):
        raise PackError(
            "a scikit-learn example must be an array (rows x features) or a pandas DataFrame"
        )
    names = getattr(estimator, "feature_names_in_", None)
    if names is not None:
        # Fitted on a table but given an array: name the columns as in training, as callers of
        # the converted model implicitly do.
        import pandas as pd

        return pd.DataFrame(fed["input"], columns=list(names))
    return fed["input"]


def _sklearn_outputs(estimator: Any, x: Any) -> dict[str, np.ndarray]:
    outputs = {
        "label" if hasattr(estimator, "predict_proba") else "prediction": estimator.predict(x)
    }
    if hasattr(estimator, "predict_proba"):
        outputs["probabilities"] = estimator.predict_proba(x)
    return {k: np.asarray(v) for k, v in outputs.items()}


def _max_abs_diff(want: np.ndarray, got: np.ndarray) -> float:
    if want.size != got.size:
        return float("inf")
    want, got = want.reshape(-1), got.reshape(-1)
    if want.dtype.kind in "UOS" or got.dtype.kind in "UOS":
        # Labels that are strings: any disagreement counts as a difference of 1.
        return float(any(str(a) != str(b) for a, b in zip(want, got, strict=True)))
    if want.size == 0:
        return 0.0
    return float(np.max(np.abs(want.astype(np.float64) - got.astype(np.float64))))


def stage_sklearn(estimator: Any, example: Any, tolerance: float) -> Staged:
    """Convert a scikit-learn estimator to ONNX and stage it with its parity report."""
    if is_payload(example):
        raise PackError(
            "a scikit-learn example must be an array or a DataFrame, not a JSON file: the "
            "input types come from it"
        )
    converted = convert(estimator, example, tolerance)
    return stage_onnx(
        converted.onnx_bytes,
        None,
        default_name=type(estimator).__name__.lower(),
        settings=converted.settings,
        checked_example=converted.example,
    )


def _stage(model: Any, request: PackRequest) -> Staged:
    return stage_sklearn(model, request.example, request.tolerance)


#: A scikit-learn estimator or pipeline object.
SKLEARN = PackSource("sklearn", is_sklearn_estimator, _stage)
