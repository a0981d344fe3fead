"""Packing directories really written by MLflow (mlflow-skinny), for each supported flavor."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression

import modelport
from modelport.errors import CodeExecutionRefused, PackError

mlflow = pytest.importorskip("mlflow")


@pytest.fixture(scope="module")
def iris() -> tuple[pd.DataFrame, pd.Series]:
    return load_iris(return_X_y=True, as_frame=True)


@pytest.fixture(scope="module")
def fitted(iris: tuple[pd.DataFrame, pd.Series]) -> LogisticRegression:
    x, y = iris
    return LogisticRegression(max_iter=1000).fit(x, y)


@pytest.fixture(scope="module")
def mlflow_dirs(
    tmp_path_factory: pytest.TempPathFactory,
    iris: tuple[pd.DataFrame, pd.Series],
    fitted: LogisticRegression,
) -> dict[str, Path]:
    from skl2onnx import to_onnx

    x, _ = iris
    root = tmp_path_factory.mktemp("mlflow")
    dirs = {name: root / name for name in ("skops", "cloudpickle", "onnx", "pyfunc", "noexample")}

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # MLflow's own type-hint and environment chatter
        import mlflow.onnx
        import mlflow.pyfunc
        import mlflow.sklearn

        class RowSum(mlflow.pyfunc.PythonModel):
            def predict(self, context, model_input, params=None):
                return model_input.sum(axis=1)

        mlflow.sklearn.save_model(fitted, dirs["skops"], input_example=x.head(5))
        mlflow.sklearn.save_model(
            fitted,
            dirs["cloudpickle"],
            input_example=x.head(5).to_numpy(),
            serialization_format="cloudpickle",
        )
        mlflow.sklearn.save_model(fitted, dirs["noexample"])
        onnx_model = to_onnx(fitted, x.head(5).to_numpy().astype(np.float32))  # with ZipMap
        mlflow.onnx.save_model(
            onnx_model, dirs["onnx"], input_example=x.head(5).to_numpy().astype(np.float32)
        )
        mlflow.pyfunc.save_model(dirs["pyfunc"], python_model=RowSum(), input_example=x.head(5))
    return dirs


def test_sklearn_skops_keeps_columns_signature_and_example(
    mlflow_dirs: dict[str, Path],
    iris: tuple[pd.DataFrame, pd.Series],
    fitted: LogisticRegression,
    tmp_path: Path,
) -> None:
    x, _ = iris
    package = modelport.pack(mlflow_dirs["skops"], tmp_path / "skops.mport")
    assert package.manifest.flavor.name == "onnx"
    assert package.signature.input_names == tuple(x.columns)
    assert package.signature.output_names == ("label", "probabilities")
    assert package.manifest.metadata["mlflow.version"] == mlflow.__version__
    example = package.example()
    assert example is not None
    assert example["sepal length (cm)"].shape == (5, 1)
    rows = x.tail(10)
    out = package.predict({c: rows[c].to_numpy().reshape(-1, 1) for c in rows.columns})
    np.testing.assert_array_equal(out["label"], fitted.predict(rows))
    np.testing.assert_allclose(out["probabilities"], fitted.predict_proba(rows), atol=1e-4)
    package.close()


def test_sklearn_pickle_needs_allow_code(
    mlflow_dirs: dict[str, Path],
    iris: tuple[pd.DataFrame, pd.Series],
    fitted: LogisticRegression,
    tmp_path: Path,
) -> None:
    with pytest.raises(CodeExecutionRefused, match="cloudpickle"):
        modelport.pack(mlflow_dirs["cloudpickle"], tmp_path / "refused.mport")
    assert not (tmp_path / "refused.mport").exists()

    package = modelport.pack(mlflow_dirs["cloudpickle"], tmp_path / "cp.mport", allow_code=True)
    # A pickle is read only at pack time: the package itself is plain ONNX and safe to load.
    assert package.manifest.flavor.name == "onnx"
    assert package.signature.inputs[0].shape == (-1, 4)
    x, _ = iris
    loaded = modelport.load(tmp_path / "cp.mport")
    out = loaded.predict(x.to_numpy()[:7])
    np.testing.assert_array_equal(out["label"], fitted.predict(x.head(7)))
    loaded.close()
    package.close()


def test_onnx_flavor_with_zipmap_becomes_plain_tensors(
    mlflow_dirs: dict[str, Path],
    iris: tuple[pd.DataFrame, pd.Series],
    fitted: LogisticRegression,
    tmp_path: Path,
) -> None:
    package = modelport.pack(mlflow_dirs["onnx"], tmp_path / "onnx.mport")
    outputs = {s.name: s for s in package.signature.outputs}
    assert outputs["output_probability"].dtype == "float32"
    x, _ = iris
    out = package.predict(x.to_numpy()[:6])
    assert isinstance(out["output_probability"], np.ndarray)
    np.testing.assert_allclose(
        out["output_probability"], fitted.predict_proba(x.head(6)), atol=1e-4
    )
    assert package.example() is not None
    package.close()


def test_pyfunc_becomes_python_flavor_behind_allow_code(
    mlflow_dirs: dict[str, Path], iris: tuple[pd.DataFrame, pd.Series], tmp_path: Path
) -> None:
    with pytest.raises(CodeExecutionRefused):
        modelport.pack(mlflow_dirs["pyfunc"], tmp_path / "py.mport")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        package = modelport.pack(mlflow_dirs["pyfunc"], tmp_path / "py.mport", allow_code=True)
    assert package.manifest.flavor.name == "python"
    assert any(r.startswith("mlflow") for r in package.manifest.requirements)
    x, _ = iris
    assert package.signature.input_names == tuple(x.columns)
    assert all(s.dtype == "float64" for s in package.signature.inputs)
    with pytest.raises(CodeExecutionRefused):
        modelport.load(tmp_path / "py.mport")
    rows = x.head(4)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        loaded = modelport.load(tmp_path / "py.mport", allow_code=True)
        out = loaded.predict({c: rows[c].to_numpy() for c in rows.columns})
    np.testing.assert_allclose(out["predictions"], rows.sum(axis=1).to_numpy())
    loaded.close()
    package.close()


def test_sklearn_without_example_asks_for_one(mlflow_dirs: dict[str, Path], tmp_path: Path) -> None:
    with pytest.raises(PackError, match="--example"):
        modelport.pack(mlflow_dirs["noexample"], tmp_path / "x.mport")


def test_broken_mlmodel_is_a_pack_error(tmp_path: Path) -> None:
    source = tmp_path / "broken"
    source.mkdir()
    (source / "MLmodel").write_text("artifact_path: model\n")
    with pytest.raises(PackError, match="flavors"):
        modelport.pack(source, tmp_path / "x.mport")
    (source / "MLmodel").write_text("flavors: {keras: {}}\n")
    with pytest.raises(PackError, match="not supported"):
        modelport.pack(source, tmp_path / "x.mport")
