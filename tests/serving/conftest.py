"""Fixtures for the server's tests: real packages, and real ``modelport serve`` processes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from clients.models import TablePackage, table_package
from serving_support import DTYPES, TRICKY_MODEL, Server, start_server

import modelport


@pytest.fixture(scope="session")
def packages(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Real packages: a scikit-learn classifier, an all-dtypes ONNX model, a python model."""
    from onnx import TensorProto, helper
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    root = tmp_path_factory.mktemp("packages")
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 4)).astype(np.float32)
    y = (x[:, 0] > 0).astype(int) + (x[:, 1] > 0.5).astype(int)
    classifier = make_pipeline(StandardScaler(), LogisticRegression()).fit(x, y)
    modelport.pack(classifier, root / "iris.mport", name="iris", version="3", example=x[:20])

    onnx_types = {
        "bool": TensorProto.BOOL,
        "int8": TensorProto.INT8,
        "int16": TensorProto.INT16,
        "int32": TensorProto.INT32,
        "int64": TensorProto.INT64,
        "uint8": TensorProto.UINT8,
        "uint16": TensorProto.UINT16,
        "uint32": TensorProto.UINT32,
        "uint64": TensorProto.UINT64,
        "float16": TensorProto.FLOAT16,
        "float32": TensorProto.FLOAT,
        "float64": TensorProto.DOUBLE,
        "string": TensorProto.STRING,
    }
    graph = helper.make_graph(
        [helper.make_node("Identity", [f"x_{d}"], [f"y_{d}"]) for d in DTYPES],
        "dtypes",
        [helper.make_tensor_value_info(f"x_{d}", onnx_types[d], ["n", 2]) for d in DTYPES],
        [helper.make_tensor_value_info(f"y_{d}", onnx_types[d], ["n", 2]) for d in DTYPES],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    modelport.pack(model, root / "dtypes", name="dtypes")

    # Row sums over a variable width: requests of different widths must never be merged.
    sums = helper.make_graph(
        [helper.make_node("ReduceSum", ["x", "axes"], ["s"], keepdims=0)],
        "sums",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", "w"])],
        [helper.make_tensor_value_info("s", TensorProto.FLOAT, ["n"])],
        initializer=[helper.make_tensor("axes", TensorProto.INT64, [1], [1])],
    )
    sums_model = helper.make_model(sums, opset_imports=[helper.make_opsetid("", 17)])
    sums_model.ir_version = 8
    modelport.pack(sums_model, root / "sums.mport", name="sums")

    code = root / "tricky.py"
    code.write_text(TRICKY_MODEL)
    modelport.pack(code, root / "tricky.mport", name="tricky", example={"x": np.ones((2, 3))})
    return {
        "iris": root / "iris.mport",
        "dtypes": root / "dtypes",
        "sums": root / "sums.mport",
        "tricky": root / "tricky.mport",
        "iris_x": _save(root / "iris_x.npy", x),
    }


def _save(path: Path, array: np.ndarray) -> Path:
    np.save(path, array)
    return path


@pytest.fixture(scope="module")
def iris_server(
    packages: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    """The classifier, served with two workers and Vertex AI's route variables set."""
    server = start_server(
        packages["iris"],
        ["--workers", "2", "--max-body-mb", "0.5"],
        env={"AIP_HEALTH_ROUTE": "/vertex/health", "AIP_PREDICT_ROUTE": "/vertex/predict"},
        log_dir=tmp_path_factory.mktemp("iris-log"),
    )
    yield server
    assert server.stop() == 0, server.log()


@pytest.fixture(scope="module")
def dtypes_server(
    packages: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    server = start_server(
        packages["dtypes"], ["--workers", "1"], log_dir=tmp_path_factory.mktemp("dtypes-log")
    )
    yield server
    assert server.stop() == 0, server.log()


@pytest.fixture(scope="module")
def iris_x(packages: dict[str, Path]) -> np.ndarray:
    return np.load(packages["iris_x"])


@pytest.fixture(scope="session")
def table(tmp_path_factory: pytest.TempPathFactory) -> TablePackage:
    """A pipeline fitted on a DataFrame (a number and a text column, each a [-1, 1] input)."""
    return table_package(tmp_path_factory)


@pytest.fixture(scope="module")
def table_server(table: TablePackage, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    server = start_server(
        table.path, ["--workers", "1"], log_dir=tmp_path_factory.mktemp("table-log")
    )
    yield server
    assert server.stop() == 0, server.log()


@pytest.fixture(scope="module")
def table_mlflow_server(
    table: TablePackage, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    """The table model answering as MLflow's scoring server does (labels only)."""
    server = start_server(
        table.path,
        ["--workers", "1", "--answer", "mlflow"],
        log_dir=tmp_path_factory.mktemp("table-mlflow-log"),
    )
    yield server
    assert server.stop() == 0, server.log()
