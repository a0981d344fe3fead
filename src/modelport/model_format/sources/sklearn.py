"""A pack source: scikit-learn estimators, converted to the ``onnx`` flavor and checked.

The packer converts with skl2onnx, runs the estimator and the converted model on the example, and
records the largest absolute difference per output (:mod:`.parity`). Above the tolerance, packing
fails and names the output and row. Classifiers give ``label`` and ``probabilities`` as plain
tensors (no ZipMap). The scikit-learn estimators of XGBoost, LightGBM and CatBoost, alone or in a
pipeline, convert here too, through converters :mod:`.boosting` registers with skl2onnx.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from modelport.errors import MissingDependencyError, PackError
from modelport.model_format.examples import example_columns, is_payload
from modelport.model_format.flavors.base import PackRequest, PackSource, Staged
from modelport.model_format.signature import dtype_name
from modelport.model_format.sources.boosting import (
    framework_of,
    is_tree_estimator,
    models_in,
    register_converters,
    tree_opsets,
    unnamed_features,
)
from modelport.model_format.sources.onnx_edits import MATRIX_INPUT, join_columns, rename_outputs
from modelport.model_format.sources.parity import Conversion, qualified_name, stage_conversion


def is_sklearn_estimator(obj: Any) -> bool:
    """True for a fitted-or-not scikit-learn estimator (checked without importing sklearn)."""
    return any(c.__module__.startswith("sklearn.") for c in type(obj).__mro__) and hasattr(
        obj, "predict"
    )


def _require(estimator: Any) -> tuple[Any, Any, Any]:
    try:
        import onnx
        import skl2onnx
        import sklearn
    except ImportError as exc:
        framework = framework_of(estimator)
        what = f"a {framework} model" if framework else "a scikit-learn model"
        raise MissingDependencyError(
            f"packing {what}", framework or "sklearn", exc.name or "skl2onnx"
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


def convert(estimator: Any, example: Any) -> Conversion:
    """Convert a fitted estimator to ONNX and run the original on the example as ONNX gets it.

    Estimators of xgboost, lightgbm and catboost, alone or inside a pipeline, convert through
    their converters registered with skl2onnx (:mod:`.boosting`).

    Raises:
        PackError: no example, or skl2onnx cannot convert the estimator.
    """
    sklearn, skl2onnx, _ = _require(estimator)
    if example is None:
        raise PackError(
            f"packing a {type(estimator).__name__} needs an example input: it sets the input "
            "types and checks the converted model against the original"
        )
    frameworks = register_converters(estimator)
    columns, table = example_columns(example)
    with unnamed_features(estimator):
        opsets = tree_opsets() if frameworks else None
        model = _to_onnx(skl2onnx, estimator, columns, table, opsets)
    rename_outputs(model)

    # Feed both sides the same values: the example as the ONNX model receives it.
    fed = {
        n: (v.astype(_onnx_dtype(v)).reshape(-1, 1) if table else v.astype(_onnx_dtype(v)))
        for n, v in columns.items()
    }
    sk_input = _sklearn_input(estimator, example, fed, table)
    converters = [f"skl2onnx=={skl2onnx.__version__}", *frameworks.values()]
    libraries = [f"scikit-learn=={sklearn.__version__}", *frameworks]
    return Conversion(
        onnx_bytes=model.SerializeToString(),
        fed=fed,
        expected=_sklearn_outputs(estimator, sk_input),
        library=", ".join(dict.fromkeys(libraries)),
        converter=", ".join(dict.fromkeys(converters)),
        model_class=qualified_name(estimator),
        trees=bool(frameworks) or _has_trees(estimator),
    )


def _has_trees(estimator: Any) -> bool:
    # sklearn.tree and sklearn.ensemble: thresholds again (see .parity's THRESHOLD_HINT).
    modules = (type(step).__module__ for step in models_in(estimator))
    return any(m.startswith(("sklearn.tree", "sklearn.ensemble")) for m in modules)


def _to_onnx(
    skl2onnx: Any,
    estimator: Any,
    columns: Mapping[str, np.ndarray],
    table: bool,
    target_opset: dict[str, int] | None,
) -> Any:
    # Classifiers: plain label and probability tensors, not ZipMap dictionaries per row.
    options = {"zipmap": False} if hasattr(estimator, "predict_proba") else None
    try:
        model = skl2onnx.to_onnx(
            estimator,
            initial_types=_initial_types(columns, table),
            options=options,
            target_opset=target_opset,
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
                estimator,
                initial_types=_initial_types(matrix, False),
                options=options,
                target_opset=target_opset,
            )
        except Exception as exc:
            raise PackError(
                f"skl2onnx could not convert {type(estimator).__name__}: {exc}"
            ) from None
        return join_columns(inner, columns)
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


def stage_sklearn(estimator: Any, example: Any, tolerance: float) -> Staged:
    """Convert a scikit-learn estimator to ONNX and stage it with its parity report."""
    if is_payload(example):
        raise PackError(
            "a scikit-learn example must be an array or a DataFrame, not a JSON file: the "
            "input types come from it"
        )
    return stage_conversion(
        convert(estimator, example), tolerance, default_name=type(estimator).__name__.lower()
    )


def _stage(model: Any, request: PackRequest) -> Staged:
    return stage_sklearn(model, request.example, request.tolerance)


def _accepts(model: Any) -> bool:
    return is_sklearn_estimator(model) or is_tree_estimator(model)


#: A scikit-learn estimator or pipeline object, or an XGBoost, LightGBM or CatBoost estimator.
SKLEARN = PackSource("sklearn", _accepts, _stage)
