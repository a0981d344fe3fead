"""XGBoost, LightGBM and CatBoost converted to ONNX at pack time, alone and inside pipelines.

Real frameworks, real converters (onnxmltools, CatBoost's own export, skl2onnx for pipelines).
Every package must answer as the original does on rows it was not trained on: labels equal,
probabilities and predictions within the tolerance, for one row and for many.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import modelport
from modelport.errors import ConversionMismatchError, PackError

TOLERANCE = 1e-4
FRAMEWORKS = ["xgboost", "lightgbm", "catboost"]
TASKS = ["binary", "multiclass", "regression"]
DATA = {"binary": "binary_data", "multiclass": "multiclass_data", "regression": "regression_data"}


def make_model(framework: str, task: str) -> Any:
    """A small model of ``framework`` for ``task`` (few trees: the tests stay fast)."""
    if framework == "xgboost":
        import xgboost

        cls = xgboost.XGBRegressor if task == "regression" else xgboost.XGBClassifier
        return cls(n_estimators=12, max_depth=3, random_state=0)
    if framework == "lightgbm":
        import lightgbm

        cls = lightgbm.LGBMRegressor if task == "regression" else lightgbm.LGBMClassifier
        return cls(n_estimators=12, num_leaves=8, min_child_samples=5, verbose=-1)
    import catboost

    cls = catboost.CatBoostRegressor if task == "regression" else catboost.CatBoostClassifier
    return cls(iterations=12, depth=3, verbose=False, allow_writing_files=False, random_seed=0)


def pipeline_of(model: Any) -> Any:
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    return Pipeline([("scale", StandardScaler()), ("model", model)])


def assert_answers_as_original(package: Any, original: Any, x: np.ndarray, task: str) -> None:
    """On one row and on every held-out row, the package answers as the original."""
    for rows in (x[:1], x):
        got = package.predict(rows.astype(np.float32))
        fed = rows.astype(np.float32).astype(np.float64)  # both sides see the same values
        if task == "regression":
            want = np.asarray(original.predict(fed)).reshape(-1)
            np.testing.assert_allclose(got["prediction"].reshape(-1), want, atol=TOLERANCE)
        else:
            labels = np.asarray(original.predict(fed)).reshape(-1)
            np.testing.assert_array_equal(got["label"], labels)
            np.testing.assert_allclose(
                got["probabilities"], original.predict_proba(fed), atol=TOLERANCE
            )


def assert_record(package: Any, framework: str, task: str, rows: int) -> None:
    record = package.manifest.flavor.settings["converted_from"]
    assert f"{framework}==" in record["library"]
    expected_converter = "its own ONNX export" if framework == "catboost" else "onnxmltools=="
    assert expected_converter in record["converter"]
    assert "skl2onnx==" in record["converter"]
    assert record["opset"][""] == 15
    assert record["opset"]["ai.onnx.ml"] in (2, 3)
    assert record["rows_checked"] == rows
    assert record["tolerance"] == TOLERANCE
    outputs = {"prediction"} if task == "regression" else {"label", "probabilities"}
    assert set(record["max_abs_diff"]) == outputs
    assert all(0.0 <= d <= TOLERANCE for d in record["max_abs_diff"].values())
    assert record.get("labels_equal") is (None if task == "regression" else True)


@pytest.mark.parametrize("in_pipeline", [False, True], ids=["alone", "pipeline"])
@pytest.mark.parametrize("task", TASKS)
@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_estimator_packs_and_answers_as_the_original(
    framework: str,
    task: str,
    in_pipeline: bool,
    request: pytest.FixtureRequest,
    tmp_path: Path,
) -> None:
    data = request.getfixturevalue(DATA[task])
    model = make_model(framework, task)
    original = pipeline_of(model) if in_pipeline else model
    original.fit(data.x_train, data.y_train)

    # Parity is checked on held-out rows: a training row can lie exactly on a split.
    package = modelport.pack(original, tmp_path / "model.mport", example=data.x_test[:20])
    try:
        assert_record(package, framework, task, rows=20)
        assert package.manifest.requirements  # numpy and onnxruntime only: no framework
        assert not any(framework in r for r in package.manifest.requirements)
        assert_answers_as_original(package, original, data.x_test, task)
        spec = package.manifest.signature.inputs[0]
        assert (spec.name, spec.shape) == ("input", (-1, data.x_test.shape[1]))
    finally:
        package.close()


def train_booster(framework: str, task: str, data: Any) -> Any:
    objective = {
        "xgboost": {"binary": "binary:logistic", "multiclass": "multi:softprob"},
        "lightgbm": {"binary": "binary", "multiclass": "multiclass"},
    }[framework].get(task, "regression" if framework == "lightgbm" else "reg:squarederror")
    params: dict[str, Any] = {"objective": objective}
    if task == "multiclass":
        params["num_class"] = 3
    if framework == "xgboost":
        import xgboost

        return xgboost.train(params, xgboost.DMatrix(data.x_train, data.y_train), 8)
    import lightgbm

    params.update(verbose=-1, num_leaves=8, min_data_in_leaf=5)
    return lightgbm.train(params, lightgbm.Dataset(data.x_train, data.y_train), 8)


def booster_predict(framework: str, booster: Any, x: np.ndarray) -> np.ndarray:
    if framework == "xgboost":
        import xgboost

        return np.asarray(booster.predict(xgboost.DMatrix(x)))
    return np.asarray(booster.predict(x))


@pytest.mark.parametrize("task", TASKS)
@pytest.mark.parametrize("framework", ["xgboost", "lightgbm"])
def test_raw_booster_packs_with_its_feature_count(
    framework: str, task: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    data = request.getfixturevalue(DATA[task])
    booster = train_booster(framework, task, data)
    package = modelport.pack(booster, tmp_path / "booster", example=data.x_test[:20])
    try:
        record = package.manifest.flavor.settings["converted_from"]
        assert record["converter"].startswith("onnxmltools==")
        assert record["opset"].get("", 15) <= 15  # a graph of trees alone needs no ONNX ops
        assert record["opset"]["ai.onnx.ml"] in (1, 2, 3)
        assert record["estimator"].endswith(".Booster")
        x = data.x_test.astype(np.float32)
        raw = booster_predict(framework, booster, x.astype(np.float64))
        got = package.predict(x)
        if task == "regression":
            np.testing.assert_allclose(got["prediction"].reshape(-1), raw, atol=TOLERANCE)
        else:
            probabilities = raw if raw.ndim == 2 else np.column_stack([1 - raw, raw])
            np.testing.assert_allclose(got["probabilities"], probabilities, atol=TOLERANCE)
            np.testing.assert_array_equal(got["label"], probabilities.argmax(axis=1))
            assert record["labels_equal"] is True
        assert package.manifest.signature.inputs[0].shape == (-1, x.shape[1])
        assert package.manifest.signature.outputs[0].shape[0] == -1  # any number of rows
    finally:
        package.close()


def test_booster_example_of_another_width_is_refused(binary_data: Any, tmp_path: Path) -> None:
    booster = train_booster("xgboost", "binary", binary_data)
    with pytest.raises(PackError, match="trained on 4 features"):
        modelport.pack(booster, tmp_path / "b", example=binary_data.x_test[:, :3])
    assert list(tmp_path.iterdir()) == []


def test_a_dataframe_fitted_model_takes_its_columns_by_name(
    binary_data: Any, tmp_path: Path
) -> None:
    import pandas as pd
    import xgboost

    columns = ["age", "income", "tenure", "visits"]
    train = pd.DataFrame(binary_data.x_train, columns=columns)
    test = pd.DataFrame(binary_data.x_test, columns=columns)
    model = xgboost.XGBClassifier(n_estimators=8, max_depth=3).fit(train, binary_data.y_train)
    package = modelport.pack(model, tmp_path / "frame", example=test.head(10))
    try:
        assert [s.name for s in package.manifest.signature.inputs] == columns
        got = package.predict(test.astype(np.float32))
        np.testing.assert_array_equal(got["label"], model.predict(test.astype(np.float32)))
    finally:
        package.close()


def test_a_row_on_a_split_threshold_fails_the_pack_naming_the_row(tmp_path: Path) -> None:
    # load_diabetes' features take few distinct values, so its training rows lie on XGBoost's
    # split thresholds; the ONNX scaler's float32 arithmetic moves some across one.
    import xgboost
    from sklearn.datasets import load_diabetes

    x, y = load_diabetes(return_X_y=True)
    model = pipeline_of(xgboost.XGBRegressor(n_estimators=10, random_state=0)).fit(x, y)
    with pytest.raises(ConversionMismatchError) as caught:
        modelport.pack(model, tmp_path / "ties", example=x[:40])
    message = str(caught.value)
    assert "'prediction' max abs difference" in message
    assert "at example row " in message
    assert "threshold" in message and "float32" in message
    assert list(tmp_path.iterdir()) == []


def test_a_differing_label_fails_whatever_the_tolerance(
    multiclass_data: Any, tmp_path: Path
) -> None:
    import lightgbm

    # No row on a class boundary is needed: an original that changes one label is.
    class Relabelled(lightgbm.LGBMClassifier):  # type: ignore[misc]
        def predict(self, x: Any, **kwargs: Any) -> Any:
            labels = super().predict(x, **kwargs)
            labels[3] = (labels[3] + 1) % 3
            return labels

    relabelled = Relabelled(n_estimators=5, verbose=-1).fit(
        multiclass_data.x_train, multiclass_data.y_train
    )
    with pytest.raises(ConversionMismatchError, match=r"'label' differs at example row 3"):
        modelport.pack(relabelled, tmp_path / "r", example=multiclass_data.x_test[:10], tolerance=5)


MISSING = """
import sys
sys.modules[{module!r}] = None  # as if it were not installed
import joblib, numpy as np, modelport
from modelport.errors import MissingDependencyError
try:
    modelport.pack(joblib.load({saved!r}), {out!r}, example=np.zeros((2, 4)))
except MissingDependencyError as exc:
    print(exc, exc.hint, sep="\\n")
    sys.exit(1)
"""


@pytest.mark.parametrize(
    ("framework", "module"),
    [("xgboost", "onnxmltools"), ("lightgbm", "onnxmltools"), ("catboost", "skl2onnx")],
)
def test_a_missing_converter_names_the_extra_to_install(
    framework: str, module: str, binary_data: Any, tmp_path: Path
) -> None:
    import joblib

    model = make_model(framework, "binary").fit(binary_data.x_train, binary_data.y_train)
    saved = tmp_path / "model.joblib"
    joblib.dump(model, saved)
    code = MISSING.format(module=module, saved=str(saved), out=str(tmp_path / "out"))
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 1, done.stderr
    assert f"pip install 'modelport[{framework}]'" in done.stdout
    assert f"{module!r}" in done.stdout
    assert not (tmp_path / "out").exists()


def test_a_booster_takes_dataframe_columns_by_its_own_names(
    binary_data: Any, tmp_path: Path
) -> None:
    import pandas as pd
    import xgboost

    names = ["a", "b", "c", "d"]
    train = pd.DataFrame(binary_data.x_train, columns=names)
    train["d"] = (train["d"] > 0).astype(np.int64)  # an integer column
    booster = xgboost.train(
        {"objective": "binary:logistic"}, xgboost.DMatrix(train, binary_data.y_train), 8
    )
    test = pd.DataFrame(binary_data.x_test, columns=names)
    test["d"] = (test["d"] > 0).astype(np.int64)
    # Given in another order, the columns are still matched by name.
    package = modelport.pack(booster, tmp_path / "named", example=test[["d", "c", "b", "a"]])
    try:
        assert [s.name for s in package.manifest.signature.inputs] == names
        assert package.manifest.signature.inputs[3].dtype == "int64"
        want = booster.predict(xgboost.DMatrix(test.astype({"a": np.float32})))
        got = package.predict(test)["probabilities"][:, 1]
        np.testing.assert_allclose(got, want, atol=TOLERANCE)
    finally:
        package.close()
    renamed = test.rename(columns={"a": "alpha"})
    with pytest.raises(PackError, match=r"trained on the columns \['a', 'b', 'c', 'd'\]"):
        modelport.pack(booster, tmp_path / "renamed", example=renamed)


@pytest.mark.parametrize(
    ("framework", "params", "message"),
    [
        ("xgboost", {"objective": "binary:logitraw"}, "objective 'binary:logitraw'"),
        ("xgboost", {"objective": "multi:softmax", "num_class": 2}, "objective 'multi:softmax'"),
        ("xgboost", {"booster": "gblinear"}, "booster is 'gblinear'"),
        ("lightgbm", {"objective": "multiclassova", "num_class": 2}, "'multiclassova'"),
    ],
)
def test_objectives_the_converter_would_change_are_refused_by_name(
    framework: str, params: dict[str, Any], message: str, binary_data: Any, tmp_path: Path
) -> None:
    if framework == "xgboost":
        import xgboost

        booster = xgboost.train(
            params, xgboost.DMatrix(binary_data.x_train, binary_data.y_train), 4
        )
    else:
        import lightgbm

        data = lightgbm.Dataset(binary_data.x_train, binary_data.y_train)
        booster = lightgbm.train({**params, "verbose": -1}, data, 4)
    with pytest.raises(PackError, match=message):
        modelport.pack(booster, tmp_path / "refused", example=binary_data.x_test[:5])
    assert list(tmp_path.iterdir()) == []


def test_catboost_models_its_export_would_change_are_refused(
    binary_data: Any, regression_data: Any, tmp_path: Path
) -> None:
    import catboost

    quiet = {"iterations": 4, "verbose": False, "allow_writing_files": False}
    numbered = catboost.CatBoostClassifier(**quiet).fit(
        binary_data.x_train,
        binary_data.y_train * 2 + 5,  # labels 5 and 7
    )
    with pytest.raises(PackError, match=r"numbers the classes 0, 1, \.\.\.; .* \[5, 7\]"):
        modelport.pack(numbered, tmp_path / "numbered", example=binary_data.x_test[:5])
    counts = catboost.CatBoostRegressor(loss_function="Poisson", **quiet).fit(
        regression_data.x_train, np.abs(regression_data.y_train).round()
    )
    with pytest.raises(PackError, match="the loss 'Poisson' answers the raw margin"):
        modelport.pack(counts, tmp_path / "counts", example=regression_data.x_test[:5])


def test_boolean_labels_compare_as_the_numbers_onnx_gives(binary_data: Any, tmp_path: Path) -> None:
    from sklearn.linear_model import LogisticRegression

    model = LogisticRegression().fit(binary_data.x_train, binary_data.y_train == 1)
    package = modelport.pack(model, tmp_path / "bools", example=binary_data.x_test[:10])
    try:
        assert package.manifest.flavor.settings["converted_from"]["max_abs_diff"]["label"] == 0
    finally:
        package.close()


def test_an_example_with_nan_is_refused_clearly(binary_data: Any, tmp_path: Path) -> None:
    import xgboost

    model = xgboost.XGBClassifier(n_estimators=4).fit(binary_data.x_train, binary_data.y_train)
    example = binary_data.x_test[:5].copy()
    example[0, 0] = np.nan  # XGBoost takes it as a missing value; the example file cannot
    with pytest.raises(PackError, match="NaN or infinite values"):
        modelport.pack(model, tmp_path / "nan", example=example)
    assert list(tmp_path.iterdir()) == []
