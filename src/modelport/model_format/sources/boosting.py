"""A pack source: gradient-boosted trees from XGBoost, LightGBM and CatBoost, converted to ONNX.

Their scikit-learn estimators (``XGBClassifier``, ``LGBMRegressor``, ``CatBoostClassifier``, ...)
convert through skl2onnx, alone or as a step of a pipeline, once their converters are registered
with it (:func:`register_converters`): onnxmltools' for XGBoost and LightGBM, CatBoost's own ONNX
export for CatBoost. Raw boosters (``xgboost.Booster``, ``lightgbm.Booster``) convert through
onnxmltools directly. onnxmltools writes opset 15 at most, and the ``ai.onnx.ml`` tree operators
of version 3: :func:`tree_opsets` asks skl2onnx for exactly those whenever such a model is part
of what it converts.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np

from modelport.errors import MissingDependencyError, PackError
from modelport.model_format.examples import example_columns, is_payload
from modelport.model_format.flavors.base import PackRequest, PackSource, Staged
from modelport.model_format.sources.onnx_edits import (
    MATRIX_INPUT,
    join_columns,
    joined_feed,
    rename_outputs,
)
from modelport.model_format.sources.parity import Conversion, qualified_name, stage_conversion

#: The frameworks this source knows, by the top-level module of their classes.
FRAMEWORKS = ("xgboost", "lightgbm", "catboost")
#: The ONNX opsets onnxmltools' tree converters write (it refuses newer default opsets).
ONNX_OPSET = 15
ML_OPSET = 3
#: Converters registered with skl2onnx in this process, by estimator class.
_registered: set[type] = set()


def tree_opsets() -> dict[str, int]:
    """The opsets skl2onnx is asked for when a boosted-tree model is part of the conversion."""
    return {"": ONNX_OPSET, "ai.onnx.ml": ML_OPSET}


def framework_of(obj: Any) -> str | None:
    """``xgboost``, ``lightgbm`` or ``catboost`` for a model of theirs, else None (no imports)."""
    for cls in type(obj).__mro__:
        top = cls.__module__.split(".", 1)[0]
        if top in FRAMEWORKS:
            return top
    return None


def is_booster(obj: Any) -> bool:
    """True for a raw ``xgboost.Booster`` or ``lightgbm.Booster`` (not a scikit-learn wrapper)."""
    return framework_of(obj) in ("xgboost", "lightgbm") and type(obj).__name__ == "Booster"


def is_tree_estimator(obj: Any) -> bool:
    """True for a scikit-learn-style estimator of XGBoost, LightGBM or CatBoost."""
    return framework_of(obj) is not None and not is_booster(obj) and hasattr(obj, "predict")


def _missing(framework: str, module: str) -> MissingDependencyError:
    names = {"xgboost": "an XGBoost", "lightgbm": "a LightGBM", "catboost": "a CatBoost"}
    top = module.split(".", 1)[0]  # onnxmltools, not onnxmltools.convert
    return MissingDependencyError(f"packing {names[framework]} model", framework, top)


#: XGBoost objectives onnxmltools converts into something else than what ``predict`` answers
#: (a margin as a probability, a label as probabilities).
XGBOOST_REFUSED = ("binary:logitraw", "binary:hinge", "multi:softmax", "reg:logistic")
#: CatBoost losses whose ONNX export answers the raw margin, not the prediction.
CATBOOST_REFUSED = ("Poisson", "Tweedie", "LogLinQuantile", "MultiRMSE", "RMSEWithUncertainty")


def check_supported(model: Any, framework: str) -> None:
    """Refuse, by name, what the converters would turn into another model.

    Raises:
        PackError: an objective, loss or booster type the ONNX conversion does not reproduce.
    """
    problems = {
        "xgboost": _xgboost_problem,
        "lightgbm": _lightgbm_problem,
        "catboost": _catboost_problem,
    }
    problem = problems[framework](model)
    if problem:
        raise PackError(f"cannot convert this {type(model).__name__} to ONNX: {problem}")


def _xgboost_problem(model: Any) -> str | None:
    import json

    try:
        booster = model if is_booster(model) else model.get_booster()
        config = json.loads(booster.save_config())["learner"]
    except Exception:  # not fitted: the conversion says so itself
        return None
    objective = str(config["objective"]["name"])
    kind = str(config.get("gradient_booster", {}).get("name", "gbtree"))
    if kind != "gbtree":
        return f"its booster is {kind!r}; onnxmltools converts tree boosters ('gbtree') only"
    if objective in XGBOOST_REFUSED or (is_booster(model) and objective.startswith("rank:")):
        return (
            f"onnxmltools does not reproduce the objective {objective!r} (supported: "
            "binary:logistic, multi:softprob, the reg: and count: regressions; rankers as "
            "XGBRanker)"
        )
    alpha = str(config["objective"].get("quantile_loss_param", {}).get("quantile_alpha", ""))
    if "," in alpha:
        return "a model of several quantiles has several outputs per row, which onnxmltools drops"
    return None


def _lightgbm_problem(model: Any) -> str | None:
    try:
        booster = model if is_booster(model) else model.booster_
        text = booster.model_to_string(num_iteration=1)
    except Exception:  # not fitted: the conversion says so itself
        return None
    lines = text.splitlines()
    objective = next((x.split("=", 1)[1] for x in lines if x.startswith("objective=")), "")
    if objective.startswith("multiclassova"):
        return "onnxmltools converts 'multiclassova' as 'multiclass' (softmax); use multiclass"
    if "[boosting: rf]" in lines:
        return "onnxmltools does not average random-forest mode's trees ('boosting': 'rf')"
    return None


def _catboost_problem(model: Any) -> str | None:
    name = type(model).__name__
    if not any(
        c.__name__ in ("CatBoostClassifier", "CatBoostRegressor") for c in type(model).__mro__
    ):
        return f"pack a CatBoostClassifier or CatBoostRegressor, not a {name}"
    try:
        loss = str(model.get_all_params().get("loss_function", ""))
    except Exception:  # not fitted: the conversion says so itself
        return None
    if loss.split(":", 1)[0] in CATBOOST_REFUSED:
        return f"CatBoost's ONNX export of the loss {loss!r} answers the raw margin, not predict's"
    classes = np.asarray(getattr(model, "classes_", []))
    numbered = classes.dtype.kind in "iuf" and np.array_equal(classes, np.arange(len(classes)))
    if classes.size and classes.dtype.kind in "iuf" and not numbered:
        return (
            "CatBoost's ONNX export numbers the classes 0, 1, ...; this model's labels are "
            f"{classes.tolist()[:5]}: fit it on labels 0..K-1, or on strings"
        )
    return None


def _version(module: str) -> str:
    import importlib

    return str(getattr(importlib.import_module(module), "__version__", "unknown"))


def register_converters(estimator: Any) -> dict[str, str]:
    """Register with skl2onnx a converter for each boosted-tree model in ``estimator``.

    ``estimator`` is a model or a pipeline (its steps are searched through ``get_params``).

    Returns:
        ``{"xgboost==3.2.0": "onnxmltools==1.16.0", ...}``: each framework found, pinned, and the
        converter registered for it; empty when there is none.

    Raises:
        MissingDependencyError: the converter of a framework found is not installed.
    """
    found: dict[str, str] = {}
    for model in models_in(estimator):
        framework = framework_of(model)
        if framework is None or is_booster(model):
            continue
        check_supported(model, framework)
        converter = _register(type(model), framework)
        found[f"{framework}=={_version(framework)}"] = converter
    return found


def models_in(estimator: Any) -> list[Any]:
    """``estimator`` and every model inside it (the steps of a pipeline, searched deeply)."""
    try:
        nested = [v for v in estimator.get_params(deep=True).values() if hasattr(v, "predict")]
    except Exception:  # an estimator whose get_params fails is still converted alone
        nested = []
    return [estimator, *nested]


@contextmanager
def unnamed_features(estimator: Any) -> Iterator[None]:
    """Hide the feature names of every XGBoost booster in ``estimator`` while it converts.

    onnxmltools reads XGBoost's trees by feature index and refuses names other than ``f0``,
    ``f1``, ...; a model fitted on a DataFrame has the columns' names. They come back after.
    """
    boosters = []
    for model in models_in(estimator):
        if framework_of(model) != "xgboost":
            continue
        try:
            booster = model if is_booster(model) else model.get_booster()
        except Exception:  # not fitted: the conversion says so itself
            continue
        if booster.feature_names is not None:
            boosters.append((booster, booster.feature_names))
    try:
        for booster, _ in boosters:
            booster.feature_names = None
        yield
    finally:
        for booster, names in boosters:
            booster.feature_names = names


def _register(cls: type, framework: str) -> str:
    """Register a converter for ``cls``; returns the converter's pinned name."""
    try:
        from skl2onnx import update_registered_converter
        from skl2onnx.common.shape_calculator import (
            calculate_linear_classifier_output_shapes,
            calculate_linear_regressor_output_shapes,
        )
    except ImportError as exc:
        raise _missing(framework, exc.name or "skl2onnx") from None
    classifier = hasattr(cls, "predict_proba")
    shapes = (
        calculate_linear_classifier_output_shapes
        if classifier
        else calculate_linear_regressor_output_shapes
    )
    options = {"nocl": [True, False], "zipmap": [True, False, "columns"]} if classifier else None
    parser: Callable[..., Any] | None = None
    if framework == "catboost":
        convert, parser = _catboost_converter(classifier)
        converter = f"catboost=={_version('catboost')} (its own ONNX export)"
    else:
        convert = _onnxmltools_converter(framework)
        converter = f"onnxmltools=={_version('onnxmltools')}"
    if cls not in _registered:
        alias = f"{framework.capitalize()}{cls.__name__}"
        update_registered_converter(cls, alias, shapes, convert, parser=parser, options=options)
        _registered.add(cls)
    return converter


def _onnxmltools_converter(framework: str) -> Callable[..., Any]:
    try:
        if framework == "xgboost":
            from onnxmltools.convert.xgboost.operator_converters.XGBoost import convert_xgboost

            return convert_xgboost  # type: ignore[no-any-return]
        from onnxmltools.convert.lightgbm.operator_converters.LightGbm import convert_lightgbm

        return convert_lightgbm  # type: ignore[no-any-return]
    except ImportError as exc:
        raise _missing(framework, exc.name or "onnxmltools") from None


def _catboost_converter(classifier: bool) -> tuple[Callable[..., Any], Callable[..., Any] | None]:
    """skl2onnx's converter (and parser) wrapping CatBoost's own ONNX export of one model."""
    from onnx.helper import get_attribute_value

    def convert(scope: Any, operator: Any, container: Any) -> None:
        from catboost.utils import convert_to_onnx_object

        exported = convert_to_onnx_object(operator.raw_operator)
        domains = {d.domain: d.version for d in exported.opset_import}
        trees = [n for n in exported.graph.node if n.op_type.startswith("TreeEnsemble")]
        others = {n.op_type for n in exported.graph.node} - {"ZipMap"}
        if len(trees) != 1 or len(others) != 1 or exported.graph.initializer:
            raise PackError(
                "CatBoost exported a graph other than one tree ensemble "
                f"({', '.join(n.op_type for n in exported.graph.node)}); modelport cannot embed it"
            )
        node = trees[0]
        container.add_node(
            node.op_type,
            [operator.inputs[0].full_name],
            [o.full_name for o in operator.outputs],
            op_domain=node.domain,
            op_version=domains.get(node.domain),
            name=scope.get_unique_operator_name("CatBoost"),
            **{a.name: get_attribute_value(a) for a in node.attribute},
        )

    if not classifier:
        return convert, None

    def parse(scope: Any, model: Any, inputs: Any, custom_parsers: Any = None) -> Any:
        from skl2onnx._parse import _get_sklearn_operator_name
        from skl2onnx.common.data_types import Int64TensorType, guess_tensor_type

        operator = scope.declare_local_operator(_get_sklearn_operator_name(type(model)), model)
        operator.inputs = inputs
        # Plain tensors, never ZipMap: modelport serves tensors (pack asks zipmap=False).
        label = scope.declare_local_variable("label", Int64TensorType())
        probabilities = scope.declare_local_variable(
            "probabilities", guess_tensor_type(inputs[0].type)
        )
        operator.outputs.extend([label, probabilities])
        return operator.outputs

    return convert, parse


# --- raw boosters, through onnxmltools ------------------------------------------------------


def convert_booster(booster: Any, example: Any) -> Conversion:
    """Convert an ``xgboost.Booster`` or ``lightgbm.Booster`` and run it on the example.

    The booster's objective decides the outputs: ``label`` and ``probabilities`` for a
    classifier, ``prediction`` for anything else. The feature count is the booster's own.

    Raises:
        PackError: no example, an example of another width, or the conversion fails.
    """
    framework = str(framework_of(booster))
    try:
        import onnxmltools
        from onnxmltools.convert.common.data_types import FloatTensorType
    except ImportError as exc:
        raise _missing(framework, exc.name or "onnxmltools") from None
    if example is None or is_payload(example):
        raise PackError(
            f"packing a {framework} Booster needs an example array (rows x features) or "
            "DataFrame: it checks the converted model against the original"
        )
    check_supported(booster, framework)
    width = int(booster.num_features() if framework == "xgboost" else booster.num_feature())
    columns, table = example_columns(example)
    if table:
        columns = _in_booster_order(booster, framework, columns)
        matrix = np.column_stack([np.asarray(c, dtype=np.float32) for c in columns.values()])
    else:
        if len(columns) != 1:
            raise PackError(f"a {framework} Booster takes one input: give an array, not a mapping")
        matrix = np.asarray(next(iter(columns.values())), dtype=np.float32)
    if matrix.ndim != 2 or matrix.shape[1] != width:
        raise PackError(
            f"the {framework} Booster was trained on {width} features; the example has shape "
            f"{matrix.shape} (give rows x {width} features)"
        )
    input_name = MATRIX_INPUT if table else "input"
    initial = [(input_name, FloatTensorType([None, width]))]
    try:
        if framework == "xgboost":
            with unnamed_features(booster):
                model = onnxmltools.convert_xgboost(
                    booster, initial_types=initial, target_opset=ONNX_OPSET
                )
        else:
            model = onnxmltools.convert_lightgbm(
                booster, initial_types=initial, target_opset=ONNX_OPSET, zipmap=False
            )
    except Exception as exc:
        raise PackError(f"onnxmltools could not convert the {framework} Booster: {exc}") from None
    rename_outputs(model)
    _free_batch_dimension(model)
    if table:
        model = join_columns(model, columns)
        fed = joined_feed(columns)
    else:
        fed = {"input": matrix}
    outputs = [o.name for o in model.graph.output]
    return Conversion(
        onnx_bytes=model.SerializeToString(),
        fed=fed,
        expected=_booster_outputs(booster, framework, matrix, outputs),
        library=f"{framework}=={_version(framework)}",
        converter=f"onnxmltools=={onnxmltools.__version__}",
        model_class=qualified_name(booster),
        trees=True,
    )


def _in_booster_order(
    booster: Any, framework: str, columns: dict[str, np.ndarray]
) -> dict[str, np.ndarray]:
    """The example's columns in the order the booster was trained on, checked by name."""
    odd = [n for n, v in columns.items() if v.dtype.kind not in "iufb"]
    if odd:
        raise PackError(f"a {framework} Booster takes numbers; columns {odd} are not numeric")
    names = booster.feature_names if framework == "xgboost" else booster.feature_name()
    if framework == "lightgbm" and names == [f"Column_{i}" for i in range(len(names))]:
        names = None  # LightGBM's own names for a booster trained on an array
    if not names:
        return columns
    if set(names) != set(columns):
        raise PackError(
            f"the {framework} Booster was trained on the columns {list(names)}; the example has "
            f"{list(columns)}"
        )
    return {n: columns[n] for n in names}


def _booster_outputs(
    booster: Any, framework: str, matrix: np.ndarray, outputs: list[str]
) -> dict[str, np.ndarray]:
    if framework == "xgboost":
        import xgboost

        names = booster.feature_names  # a booster trained on a DataFrame checks them
        raw = np.asarray(
            booster.predict(xgboost.DMatrix(matrix.astype(np.float64), feature_names=names))
        )
    else:
        raw = np.asarray(booster.predict(matrix.astype(np.float64)))
    if "probabilities" not in outputs:
        return {"prediction": raw}
    # A binary objective answers the probability of class 1; ONNX gives both columns.
    probabilities = raw if raw.ndim == 2 else np.column_stack([1.0 - raw, raw])
    return {"label": probabilities.argmax(axis=1), "probabilities": probabilities}


def _free_batch_dimension(model: Any) -> None:
    # onnxmltools declares LightGBM's label as [1]; every output has one row per input row.
    for output in model.graph.output:
        dims = output.type.tensor_type.shape.dim
        if dims:
            dims[0].Clear()
            dims[0].dim_param = "N"


def _stage_booster(model: Any, request: PackRequest) -> Staged:
    return stage_conversion(
        convert_booster(model, request.example),
        request.tolerance,
        default_name=f"{framework_of(model)}-booster",
    )


#: A raw XGBoost or LightGBM booster (their scikit-learn estimators are the sklearn source's).
BOOSTERS = PackSource("booster", is_booster, _stage_booster)
