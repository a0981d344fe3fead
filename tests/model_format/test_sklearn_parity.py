"""scikit-learn estimators converted to ONNX at pack time: parity with the original, recorded."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import modelport
from modelport.errors import ConversionMismatchError, PackError
from modelport.model_format.payload import parse_payload
from modelport.model_format.signature import TensorSpec

CLASSIFIERS = ["logistic_regression", "random_forest", "gradient_boosting", "mlp"]
REGRESSORS = ["linear_regression", "random_forest_regressor"]
PIPELINES = ["scaled_logistic_pipeline"]
TOLERANCE = 1e-4


def f32(x: Any) -> np.ndarray:
    """What both sides see: ONNX takes float32, so sklearn is fed the same rounded values."""
    return np.asarray(x, dtype=np.float32)


def onnx_ops(package: Any) -> set[str]:
    import onnx

    model = onnx.load(str(Path(package.root) / package.manifest.flavor.settings["model"]))
    return {node.op_type for node in model.graph.node}


def assert_parity_report(package: Any, outputs: set[str], rows: int) -> None:
    report = package.manifest.flavor.settings["converted_from"]
    assert set(report["max_abs_diff"]) == outputs
    for name, diff in report["max_abs_diff"].items():
        assert 0.0 <= diff <= TOLERANCE, name
    assert report["tolerance"] == TOLERANCE
    assert report["rows_checked"] == rows
    assert report["library"].startswith("scikit-learn==")
    assert report["converter"].startswith("skl2onnx==")


@pytest.fixture
def pack_fitted(fitted: Callable[[str], Any], tmp_path: Path) -> Callable[..., tuple[Any, Any]]:
    """``pack_fitted(name, **options)``: the fitted estimator and its package (20 example rows)."""

    def pack(key: str, /, **options: Any) -> tuple[Any, Any]:
        model = fitted(key)
        options.setdefault("example", model.data.x_train[:20])
        package = modelport.pack(model.estimator, tmp_path / key, **options)
        return model, package

    return pack


@pytest.mark.parametrize("key", CLASSIFIERS + PIPELINES)
def test_classifier_parity(key: str, pack_fitted: Callable[..., tuple[Any, Any]]) -> None:
    model, package = pack_fitted(key)
    estimator, x_test = model.estimator, f32(model.data.x_test)
    n_classes = len(estimator.classes_)
    n_features = model.data.x_train.shape[1]

    assert package.signature.inputs == (TensorSpec("input", "float32", (-1, n_features)),)
    assert package.signature.output_names == ("label", "probabilities")
    assert package.signature.outputs[0].dtype == "int64"
    assert package.signature.outputs[1].dtype == "float32"
    assert package.signature.outputs[0].shape == (-1,)
    assert package.signature.outputs[1].shape == (-1, n_classes)
    assert "ZipMap" not in onnx_ops(package)
    assert_parity_report(package, {"label", "probabilities"}, rows=20)

    out = package.predict(model.data.x_test)  # float64 in, as a user would send it
    assert set(out) == {"label", "probabilities"}
    assert isinstance(out["label"], np.ndarray)
    assert out["probabilities"].shape == (len(x_test), n_classes)
    np.testing.assert_array_equal(out["label"], estimator.predict(x_test))
    np.testing.assert_allclose(out["probabilities"], estimator.predict_proba(x_test), atol=1e-4)


@pytest.mark.parametrize("key", REGRESSORS)
def test_regressor_parity(key: str, pack_fitted: Callable[..., tuple[Any, Any]]) -> None:
    model, package = pack_fitted(key)
    assert package.signature.output_names == ("prediction",)
    assert_parity_report(package, {"prediction"}, rows=20)
    x_test = f32(model.data.x_test)
    out = package.predict(model.data.x_test)["prediction"].reshape(-1)
    want = model.estimator.predict(x_test)
    # Targets are in the hundreds: compare relative to their scale (float32 arithmetic).
    np.testing.assert_allclose(out, want, rtol=1e-5, atol=1e-3)


def test_string_class_labels(fitted: Callable[[str], Any], tmp_path: Path) -> None:
    from sklearn.linear_model import LogisticRegression

    data = fitted("logistic_regression").data
    names = np.array(["cat", "dog"])
    estimator = LogisticRegression(max_iter=500).fit(data.x_train, names[data.y_train])
    package = modelport.pack(estimator, tmp_path / "strings", example=data.x_train[:10])
    assert package.signature.outputs[0].dtype == "string"
    out = package.predict(data.x_test)
    assert out["label"].tolist() == estimator.predict(f32(data.x_test)).tolist()
    assert package.manifest.flavor.settings["converted_from"]["max_abs_diff"]["label"] == 0.0


def test_column_transformer_on_a_dataframe(table_model: Any, tmp_path: Path) -> None:
    pipeline, train, test = table_model.pipeline, table_model.train, table_model.test
    package = modelport.pack(pipeline, tmp_path / "table.mport", example=train.head(15))
    try:
        assert package.signature.inputs == (
            TensorSpec("age", "float32", (-1, 1)),
            TensorSpec("visits", "int64", (-1, 1)),
            TensorSpec("color", "string", (-1, 1)),
        )
        assert package.signature.output_names == ("label", "probabilities")
        assert_parity_report(package, {"label", "probabilities"}, rows=15)

        # The same values through both: float32 ages, as the ONNX input declares.
        expected_frame = test.assign(age=test["age"].astype(np.float32))
        want_label = pipeline.predict(expected_frame)
        want_proba = pipeline.predict_proba(expected_frame)

        columns = {
            "age": test["age"].to_numpy().reshape(-1, 1),
            "visits": test["visits"].to_numpy().reshape(-1, 1),
            "color": test["color"].to_numpy().reshape(-1, 1),
        }
        out = package.predict(columns)
        np.testing.assert_array_equal(out["label"], want_label)
        np.testing.assert_allclose(out["probabilities"], want_proba, atol=1e-4)

        # MLflow's record format reaches the same inputs, column by column.
        records = test.to_dict(orient="records")
        via_payload = package.predict(
            parse_payload({"dataframe_records": records}, package.signature)
        )
        np.testing.assert_array_equal(via_payload["label"], want_label)
        np.testing.assert_allclose(via_payload["probabilities"], out["probabilities"], atol=1e-6)

        # A category never seen in training is handled as the pipeline says (ignored).
        unseen = package.predict({"age": [[40.0]], "visits": [[3]], "color": [["purple"]]})
        assert unseen["label"].shape == (1,)
    finally:
        package.close()


def test_conversion_beyond_tolerance_fails_naming_the_output(
    fitted: Callable[[str], Any], tmp_path: Path
) -> None:
    model = fitted("gradient_boosting")
    with pytest.raises(ConversionMismatchError) as excinfo:
        modelport.pack(
            model.estimator, tmp_path / "gb", example=model.data.x_train[:20], tolerance=1e-12
        )
    message = str(excinfo.value)
    assert "'probabilities'" in message
    assert "GradientBoostingClassifier" in message
    assert "1e-12" in message
    assert isinstance(excinfo.value, PackError)
    assert list(tmp_path.iterdir()) == []  # no package, no staging directory


def test_tolerance_is_configurable(pack_fitted: Callable[..., tuple[Any, Any]]) -> None:
    _, package = pack_fitted("gradient_boosting", tolerance=0.5)
    assert package.manifest.flavor.settings["converted_from"]["tolerance"] == 0.5


def test_sklearn_without_an_example_is_refused(
    fitted: Callable[[str], Any], tmp_path: Path
) -> None:
    with pytest.raises(PackError, match="example"):
        modelport.pack(fitted("logistic_regression").estimator, tmp_path / "lr")
    assert not (tmp_path / "lr").exists()


@pytest.mark.parametrize(
    "example",
    [np.zeros(4), np.zeros((2, 2, 2))],
    ids=["1-D", "3-D"],
)
def test_sklearn_example_must_be_a_matrix(
    example: np.ndarray, fitted: Callable[[str], Any], tmp_path: Path
) -> None:
    with pytest.raises(PackError):
        modelport.pack(fitted("logistic_regression").estimator, tmp_path / "lr", example=example)
    assert not (tmp_path / "lr").exists()


def test_sklearn_packing_is_reproducible(fitted: Callable[[str], Any], tmp_path: Path) -> None:
    model = fitted("random_forest")
    for target in ("a.mport", "b.mport"):
        modelport.pack(model.estimator, tmp_path / target, example=model.data.x_train[:10]).close()
    assert (tmp_path / "a.mport").read_bytes() == (tmp_path / "b.mport").read_bytes()


def test_converted_package_loads_without_sklearn_objects(
    pack_fitted: Callable[..., tuple[Any, Any]],
) -> None:
    # Safe by default: the package holds ONNX and JSON only, nothing to unpickle.
    _, package = pack_fitted("scaled_logistic_pipeline")
    assert package.manifest.flavor.name == "onnx"
    root = Path(package.root)
    for rel in package.manifest.files:
        assert not rel.endswith((".pkl", ".pickle", ".joblib", ".skops"))
    reloaded = modelport.load(root)
    assert reloaded.digest == package.digest
