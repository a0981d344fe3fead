"""MLflow URIs (models:/NAME@ALIAS, /VERSION, /latest, runs:/RUN/PATH) through MLflow's own
client against a real ``mlflow server``: resolved, packed, recorded, cached, and refused."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import modelport
from modelport.errors import PackageError, SourceNotFound, UsageError
from modelport.model_format.remote.cache import PackageCache
from storage_servers import MlflowServer, register_version

# One worker holds the session's `mlflow server` (when these tests run on several workers).
pytestmark = pytest.mark.xdist_group("mlflow")


MODELPORT = str(Path(sys.executable).parent / "modelport")


def scaled(model: Any, factor: float) -> Any:
    """The tiny model (y = x @ W) with W scaled: versions that answer differently."""
    from onnx import numpy_helper

    for init in model.graph.initializer:
        scaled = numpy_helper.to_array(init) * np.float32(factor)
        init.CopyFrom(numpy_helper.from_array(scaled.astype(np.float32), init.name))
    return model


def mlflow_onnx_dir(root: Path, model: Any, factor: float) -> Path:
    """An MLflow model directory (onnx flavor, with an input example), as MLflow writes it."""
    import mlflow.onnx

    path = root / f"mlflow-x{factor:g}"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # MLflow's own environment chatter
        mlflow.onnx.save_model(
            scaled(model, factor), path, input_example=np.array([[1.0, 2.0, 3.0]], np.float32)
        )
    return path


@pytest.fixture(scope="module")
def model_dirs(tmp_path_factory: pytest.TempPathFactory, onnx_graphs: Any) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("mlflow-models")
    tiny = onnx_graphs["tiny"]
    return {"x1": mlflow_onnx_dir(root, tiny(), 1.0), "x2": mlflow_onnx_dir(root, tiny(), 2.0)}


@pytest.fixture
def registry(
    mlflow_registry: MlflowServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> MlflowServer:
    for key, value in mlflow_registry.env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("MODELPORT_HOME", str(tmp_path / "home"))
    return mlflow_registry


@pytest.fixture(scope="module")
def churn(mlflow_registry: MlflowServer, model_dirs: dict[str, Path]) -> dict[str, str]:
    """Registered model ``registry-churn``: version 1 (x1), 2 (x2); alias champion -> 1."""
    from mlflow import MlflowClient

    client = MlflowClient(mlflow_registry.tracking_uri, mlflow_registry.tracking_uri)
    v1 = register_version(client, "registry-churn", model_dirs["x1"])
    v2 = register_version(client, "registry-churn", model_dirs["x2"])
    client.set_registered_model_alias("registry-churn", "champion", v1)
    run = client.get_model_version("registry-churn", v1).run_id
    return {"v1": v1, "v2": v2, "run": run}


def predict(path: Path) -> list[list[float]]:
    with modelport.load(path) as package:
        return package.predict([[1.0, 0.0, 0.0]])["y"].tolist()


def test_each_form_of_models_uri(registry: MlflowServer, churn: dict[str, str]) -> None:
    alias = modelport.locate("models:/registry-churn@champion")
    pinned = modelport.locate(f"models:/registry-churn/{churn['v2']}")
    latest = modelport.locate("models:/registry-churn/latest")
    run = modelport.locate(f"runs:/{churn['run']}/model")
    assert predict(alias) == [[0.0, 1.0]]
    assert predict(pinned) == [[0.0, 2.0]]
    assert predict(latest) == [[0.0, 2.0]]
    assert predict(run) == [[0.0, 1.0]]
    with modelport.load("models:/registry-churn@champion") as package:
        assert (package.name, package.version) == ("registry-churn", churn["v1"])
        assert dict(package.manifest.metadata) == {
            "mlflow.model": "registry-churn",
            "mlflow.version": churn["v1"],
            "mlflow.alias": "champion",
            "mlflow.run_id": churn["run"],
            "mlflow.source_flavors": "onnx,python_function",  # what pack records itself
        }
        assert package.manifest.flavor.name == "onnx"
    with modelport.load(run) as package:
        assert package.manifest.metadata["mlflow.run_id"] == churn["run"]
        assert "mlflow.model" not in package.manifest.metadata


def test_an_unchanged_version_is_reused_and_a_moved_alias_is_not(
    registry: MlflowServer, churn: dict[str, str]
) -> None:
    from mlflow import MlflowClient

    first = modelport.locate("models:/registry-churn@champion")
    (entry,) = PackageCache().entries()
    assert modelport.locate("models:/registry-churn@champion") == first
    assert PackageCache().entries()[0].fetched_at == entry.fetched_at  # not fetched again
    client = MlflowClient()
    client.set_registered_model_alias("registry-churn", "champion", churn["v2"])
    try:
        moved = modelport.locate("models:/registry-churn@champion")
    finally:
        client.set_registered_model_alias("registry-churn", "champion", churn["v1"])
    assert moved != first
    assert predict(moved) == [[0.0, 2.0]]
    assert {e.metadata["mlflow.version"] for e in PackageCache().entries()} == {"1", "2"}


def test_a_run_artifact_that_is_a_package_is_taken_as_it_is(
    registry: MlflowServer, tmp_path: Path, pack_tiny: Callable[..., Any]
) -> None:
    from mlflow import MlflowClient

    pack_tiny("pkg", version="7").close()
    client = MlflowClient()
    run = client.create_run(experiment_id="0").info.run_id
    client.log_artifacts(run, str(tmp_path / "pkg"), "pkg")
    client.log_artifact(run, str(tmp_path / "pkg" / "modelport.json"), "not-a-model")
    got = modelport.verify(f"runs:/{run}/pkg")
    assert got.ok
    assert got.manifest.digest == modelport.verify(tmp_path / "pkg").manifest.digest
    with pytest.raises(PackageError, match="neither an MLflow model"):
        modelport.locate(f"runs:/{run}/not-a-model/modelport.json")


@pytest.mark.parametrize(
    ("uri", "message"),
    [
        ("models:/registry-nobody@champion", "has no registered model 'registry-nobody'"),
        ("models:/registry-churn@nobody", "registered model 'registry-churn' at .* has no alias"),
        ("models:/registry-churn/99", "has no version '99'"),
        ("models:/registry-nobody/latest", "has no registered model 'registry-nobody'"),
        ("runs:/0123456789abcdef0123456789abcdef/model", "has no run"),
    ],
)
def test_what_is_unknown_is_said(
    registry: MlflowServer, churn: dict[str, str], uri: str, message: str
) -> None:
    with pytest.raises(SourceNotFound, match=message) as info:
        modelport.locate(uri)
    assert registry.tracking_uri in str(info.value)
    assert PackageCache().entries() == []


@pytest.mark.parametrize("uri", ["models:/registry-churn", "models:/a/b/c", "runs:/only-a-run"])
def test_malformed_mlflow_uris(uri: str) -> None:
    with pytest.raises(UsageError, match="expected"):
        modelport.locate(uri)


def test_the_commands_take_models_uris(
    registry: MlflowServer, churn: dict[str, str], tmp_path: Path
) -> None:
    env = {**os.environ}
    shown = subprocess.run(
        [MODELPORT, "inspect", "models:/registry-churn@champion", "--json"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["manifest"]["metadata"]["mlflow.alias"] == "champion"
    packed = subprocess.run(
        [
            MODELPORT,
            "pack",
            f"models:/registry-churn/{churn['v2']}",
            "-o",
            str(tmp_path / "churn.mport"),
            "--json",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert packed.returncode == 0, packed.stderr
    assert json.loads(packed.stdout)["version"] == churn["v2"]
    unknown = subprocess.run(
        [MODELPORT, "predict", "models:/registry-churn@nobody", "-i", "-"],
        input='{"inputs": [[1, 2, 3]]}',
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert unknown.returncode == 1
    assert "has no alias 'nobody'" in unknown.stderr
    assert "set_registered_model_alias" in unknown.stderr
    assert "Traceback" not in unknown.stderr
