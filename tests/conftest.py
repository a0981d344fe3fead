"""Fixtures shared by every test package: tiny real models and a private temporary directory.

Everything here builds real artefacts (an ONNX graph made with ``onnx.helper``, a Python model
file, fitted scikit-learn estimators); nothing of modelport's own is mocked.
"""

from __future__ import annotations

import ipaddress
import os
import socket
import tempfile
import textwrap
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest

if TYPE_CHECKING:
    import onnx


# --- one module, one worker -----------------------------------------------------------------------
@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Under ``-n N --dist loadgroup``, keep each module's tests on one worker.

    Module and session fixtures (servers, fitted models, Spark sessions) are then set up once,
    not once per worker. A module that names its own group (``xdist_group``: the image tests
    share one, for one podman build at a time) keeps it.
    """
    for item in items:
        if item.get_closest_marker("xdist_group") is None:
            item.add_marker(pytest.mark.xdist_group(item.nodeid.split("::", 1)[0]))


# --- no request ever leaves 127.0.0.1 ------------------------------------------------------------
# Set before any test module imports a client library (this conftest is imported first), and
# inherited by every process the tests start: credential chains never probe cloud metadata
# addresses, telemetry never phones home, and loopback never goes through a proxy.
_LOOPBACK = "127.0.0.1,localhost,::1"
os.environ.update(
    {
        "AWS_EC2_METADATA_DISABLED": "true",  # boto3 would probe 169.254.169.254
        "NO_GCE_CHECK": "true",  # google-auth would probe the GCE metadata server (it wants "true")
        "GCE_METADATA_HOST": "127.0.0.1:9",
        "GCE_METADATA_IP": "127.0.0.1:9",
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "DO_NOT_TRACK": "true",
    }
)
for _name in ("NO_PROXY", "no_proxy"):
    os.environ[_name] = ",".join(filter(None, (os.environ.get(_name, ""), _LOOPBACK)))

_connect = socket.socket.connect
_connect_ex = socket.socket.connect_ex


def _check_loopback(address: Any) -> None:
    """Refuse a TCP connection to anything but this machine (Unix sockets pass)."""
    if not isinstance(address, tuple):
        return
    host = str(address[0]).split("%", 1)[0]
    if host == "localhost":
        return
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        raise OSError(f"tests may not connect to {host!r}: only 127.0.0.1") from None
    if not (ip.is_loopback or ip.is_unspecified):
        raise OSError(f"tests may not connect to {host}: only 127.0.0.1")


def _guarded_connect(self: socket.socket, address: Any) -> None:
    _check_loopback(address)
    _connect(self, address)


def _guarded_connect_ex(self: socket.socket, address: Any) -> int:
    _check_loopback(address)
    return _connect_ex(self, address)


socket.socket.connect = _guarded_connect  # type: ignore[method-assign]
socket.socket.connect_ex = _guarded_connect_ex  # type: ignore[method-assign]

# --- ONNX models built by hand ----------------------------------------------------------------

#: Weights of the tiny model: y = x @ TINY_WEIGHTS, x float32[N, 3] -> y float32[N, 2].
TINY_WEIGHTS = np.arange(6, dtype=np.float32).reshape(3, 2)


def _model(nodes: list[Any], name: str, inputs: list[Any], outputs: list[Any], inits=()) -> Any:
    from onnx import checker, helper

    graph = helper.make_graph(nodes, name, inputs, outputs, list(inits))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    checker.check_model(model)
    return model


def make_tiny_onnx(graph_name: str = "tiny") -> onnx.ModelProto:
    """A MatMul model: input ``x`` float32[N, 3], output ``y`` float32[N, 2]."""
    from onnx import TensorProto, helper, numpy_helper

    return _model(
        [helper.make_node("MatMul", ["x", "W"], ["y"])],
        graph_name,
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 2])],
        [numpy_helper.from_array(TINY_WEIGHTS, "W")],
    )


def make_two_input_onnx() -> onnx.ModelProto:
    """``a`` float32[N, 2] and ``b`` int64[N, 1] -> ``total`` float32[N, 1] = sum(a) + b."""
    from onnx import TensorProto, helper, numpy_helper

    return _model(
        [
            helper.make_node("ReduceSum", ["a", "axes"], ["sum_a"], keepdims=1),
            helper.make_node("Cast", ["b"], ["b_float"], to=TensorProto.FLOAT),
            helper.make_node("Add", ["sum_a", "b_float"], ["total"]),
        ],
        "two_inputs",
        [
            helper.make_tensor_value_info("a", TensorProto.FLOAT, ["N", 2]),
            helper.make_tensor_value_info("b", TensorProto.INT64, ["N", 1]),
        ],
        [helper.make_tensor_value_info("total", TensorProto.FLOAT, ["N", 1])],
        [numpy_helper.from_array(np.array([1], dtype=np.int64), "axes")],
    )


def make_string_onnx() -> onnx.ModelProto:
    """``text`` string[N] -> ``same`` string[N] (Identity): a model with a string input."""
    from onnx import TensorProto, helper

    return _model(
        [helper.make_node("Identity", ["text"], ["same"])],
        "strings",
        [helper.make_tensor_value_info("text", TensorProto.STRING, ["N"])],
        [helper.make_tensor_value_info("same", TensorProto.STRING, ["N"])],
    )


@pytest.fixture(scope="session")
def onnx_graphs() -> dict[str, Callable[[], onnx.ModelProto]]:
    """The hand-made graphs above by name, for session fixtures (each call makes a new one)."""
    return {"tiny": make_tiny_onnx, "two_inputs": make_two_input_onnx, "strings": make_string_onnx}


@pytest.fixture
def tiny_onnx() -> onnx.ModelProto:
    """A fresh tiny MatMul ONNX model: ``x`` float32[N, 3] -> ``y`` = x @ TINY_WEIGHTS."""
    return make_tiny_onnx()


@pytest.fixture
def tiny_weights() -> np.ndarray:
    """The weights of the tiny model (float32[3, 2])."""
    return TINY_WEIGHTS.copy()


@pytest.fixture
def two_input_onnx() -> onnx.ModelProto:
    """``a`` float32[N, 2], ``b`` int64[N, 1] -> ``total`` float32[N, 1] = sum(a) + b."""
    return make_two_input_onnx()


@pytest.fixture
def string_onnx() -> onnx.ModelProto:
    """``text`` string[N] -> ``same`` string[N]."""
    return make_string_onnx()


@pytest.fixture
def tiny_onnx_file(tmp_path: Path) -> Path:
    """The tiny ONNX model written to ``tmp_path/models/tiny.onnx``."""
    path = tmp_path / "models" / "tiny.onnx"
    path.parent.mkdir()
    path.write_bytes(make_tiny_onnx().SerializeToString())
    return path


@pytest.fixture
def tiny_example() -> np.ndarray:
    """Two rows for the tiny model."""
    return np.array([[1.0, 2.0, 3.0], [-1.0, 0.5, 4.0]], dtype=np.float32)


@pytest.fixture
def pack_tiny(tmp_path: Path, tiny_example: np.ndarray) -> Callable[..., Any]:
    """``pack_tiny(target, **options)``: pack the tiny model to ``tmp_path/target``, loaded."""
    import modelport

    def pack(target: str = "tiny.mport", /, **kwargs: Any) -> Any:
        kwargs.setdefault("example", tiny_example)
        return modelport.pack(make_tiny_onnx(), tmp_path / target, **kwargs)

    return pack


# --- a python-flavor model file ---------------------------------------------------------------

PYTHON_MODEL_SOURCE = '''
"""A python-flavor model: y = x * factor, factor read from an artifact at load time."""

import os
from pathlib import Path

import numpy as np

# Importing this file is "running the package's code": leave a trace when asked to.
_marker = os.environ.get("MODELPORT_TEST_IMPORT_MARKER")
if _marker:
    Path(_marker).write_text("imported")


class Scaler:
    def load(self, path):
        factor_file = Path(path) / "artifacts" / "factor.txt"
        self.factor = float(factor_file.read_text()) if factor_file.exists() else 2.0

    def predict(self, inputs):
        x = np.asarray(inputs["x"], dtype=np.float64)
        if (x < -1000).any():
            raise ValueError("SECRET-MODEL-INTERNALS")
        return {"y": x * self.factor}
'''


@dataclass(frozen=True)
class PythonModel:
    """A python-flavor model source file and an artifact it reads."""

    source: Path
    artifact: Path
    example: dict[str, np.ndarray]


@pytest.fixture
def python_model(tmp_path: Path) -> PythonModel:
    """A Python file with one model class (``Scaler``) and a ``factor.txt`` artifact (3.0)."""
    src = tmp_path / "pysrc"
    src.mkdir()
    source = src / "scaler_model.py"
    source.write_text(textwrap.dedent(PYTHON_MODEL_SOURCE))
    artifact = src / "factor.txt"
    artifact.write_text("3.0")
    return PythonModel(source, artifact, {"x": np.array([[1.0, 2.0], [3.0, 4.0]])})


# --- scikit-learn -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Dataset:
    """A train/held-out split: X float64 features, y labels or targets."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray


def _split(x: np.ndarray, y: np.ndarray, n_train: int) -> Dataset:
    return Dataset(x[:n_train], y[:n_train], x[n_train:], y[n_train:])


@pytest.fixture(scope="session")
def binary_data() -> Dataset:
    """120 rows, 4 features, 2 classes (80 to train, 40 held out)."""
    from sklearn.datasets import make_classification

    x, y = make_classification(
        n_samples=120, n_features=4, n_informative=3, n_redundant=0, random_state=0
    )
    return _split(x, y, 80)


@pytest.fixture(scope="session")
def multiclass_data() -> Dataset:
    """150 rows, 5 features, 3 classes (100 to train, 50 held out)."""
    from sklearn.datasets import make_classification

    x, y = make_classification(
        n_samples=150,
        n_features=5,
        n_informative=4,
        n_redundant=0,
        n_classes=3,
        random_state=1,
    )
    return _split(x, y, 100)


@pytest.fixture(scope="session")
def regression_data() -> Dataset:
    """120 rows, 4 features, a continuous target."""
    from sklearn.datasets import make_regression

    x, y = make_regression(n_samples=120, n_features=4, noise=0.1, random_state=2)
    return _split(x, y, 80)


def fit_quietly(estimator: Any, x: Any, y: Any) -> Any:
    """Fit ``estimator`` with sklearn's convergence warnings silenced (warnings are errors)."""
    from sklearn.exceptions import ConvergenceWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return estimator.fit(x, y)


@dataclass(frozen=True)
class Fitted:
    """A fitted estimator and the data it was fitted on."""

    estimator: Any
    data: Dataset


#: Name -> (estimator factory, dataset fixture name). Small models so that tests stay fast.
def _estimators() -> dict[str, tuple[Callable[[], Any], str]]:
    from sklearn.ensemble import (
        GradientBoostingClassifier,
        RandomForestClassifier,
        RandomForestRegressor,
    )
    from sklearn.linear_model import LinearRegression, LogisticRegression
    from sklearn.neural_network import MLPClassifier
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    return {
        "logistic_regression": (lambda: LogisticRegression(max_iter=500), "binary_data"),
        "random_forest": (
            lambda: RandomForestClassifier(n_estimators=10, max_depth=5, random_state=0),
            "multiclass_data",
        ),
        "gradient_boosting": (
            lambda: GradientBoostingClassifier(n_estimators=15, max_depth=2, random_state=0),
            "binary_data",
        ),
        "mlp": (
            lambda: MLPClassifier(hidden_layer_sizes=(8,), max_iter=300, random_state=0),
            "multiclass_data",
        ),
        "scaled_logistic_pipeline": (
            lambda: Pipeline(
                [("scale", StandardScaler()), ("clf", LogisticRegression(max_iter=500))]
            ),
            "multiclass_data",
        ),
        "linear_regression": (LinearRegression, "regression_data"),
        "random_forest_regressor": (
            lambda: RandomForestRegressor(n_estimators=10, max_depth=5, random_state=0),
            "regression_data",
        ),
    }


@pytest.fixture(scope="session")
def fitted(request: pytest.FixtureRequest) -> Callable[[str], Fitted]:
    """``fitted(name)``: a fitted estimator (see ``_estimators``), fitted once per session."""
    cache: dict[str, Fitted] = {}

    def get(name: str) -> Fitted:
        if name not in cache:
            factory, data_fixture = _estimators()[name]
            data: Dataset = request.getfixturevalue(data_fixture)
            cache[name] = Fitted(fit_quietly(factory(), data.x_train, data.y_train), data)
        return cache[name]

    return get


@dataclass(frozen=True)
class TableModel:
    """A ColumnTransformer pipeline fitted on a DataFrame with numeric and string columns."""

    pipeline: Any
    train: Any  # pandas.DataFrame
    test: Any  # pandas.DataFrame
    y_train: np.ndarray


@pytest.fixture(scope="session")
def table_model() -> TableModel:
    """StandardScaler on ``age`` (float) and ``visits`` (int), OneHotEncoder on ``color``."""
    import pandas as pd
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    rng = np.random.default_rng(3)
    n = 90
    frame = pd.DataFrame(
        {
            "age": rng.normal(40.0, 12.0, n),
            "visits": rng.integers(0, 20, n),
            "color": rng.choice(["red", "green", "blue"], n),
        }
    )
    y = ((frame["age"] > 40) ^ (frame["color"] == "red")).to_numpy().astype(np.int64)
    pipeline = Pipeline(
        [
            (
                "columns",
                ColumnTransformer(
                    [
                        ("num", StandardScaler(), ["age", "visits"]),
                        ("cat", OneHotEncoder(handle_unknown="ignore"), ["color"]),
                    ]
                ),
            ),
            ("clf", LogisticRegression(max_iter=500)),
        ]
    )
    train, test = frame.iloc[:60].reset_index(drop=True), frame.iloc[60:].reset_index(drop=True)
    fit_quietly(pipeline, train, y[:60])
    return TableModel(pipeline, train, test, y[:60])


# --- temporary directories --------------------------------------------------------------------


@pytest.fixture
def private_tempdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point :func:`tempfile.gettempdir` at an empty private directory for the test.

    modelport extracts archives into ``modelport-*`` directories there; a private one lets a test
    see exactly what it left behind, whatever else runs on the machine.
    """
    root = tmp_path / "systemp"
    root.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(root))
    assert tempfile.gettempdir() == str(root)
    return root


@pytest.fixture
def temp_leftovers() -> Callable[[], list[str]]:
    """A function listing the ``modelport-*`` entries in the current temporary directory."""

    def listing() -> list[str]:
        return sorted(p.name for p in Path(tempfile.gettempdir()).glob("modelport-*"))

    return listing


# --- an MLflow tracking server and registry ---------------------------------------------------


@pytest.fixture(scope="session")
def mlflow_registry(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """One real ``mlflow server`` (SQLite, proxied artifacts) for the session: it takes ~10 s
    to start. Tests register models under names of their own and point MLflow's client at it
    with ``monkeypatch.setenv`` over ``.env``."""
    from storage_servers import mlflow_server

    with mlflow_server(tmp_path_factory.mktemp("mlflow")) as server:
        yield server


@pytest.fixture(scope="session")
def tiny_versions(
    tmp_path_factory: pytest.TempPathFactory, onnx_graphs: dict[str, Callable[[], Any]]
) -> dict[str, Path]:
    """The tiny model packed as version ``1`` and ``2`` (archives) and version 1 as ``dir``."""
    import modelport

    root = tmp_path_factory.mktemp("tiny-versions")
    example = np.array([[1.0, 2.0, 3.0]], dtype=np.float32)
    out = {}
    for version, target in (("1", "tiny-1.mport"), ("2", "tiny-2.mport"), ("1", "tiny-dir")):
        key = "dir" if target == "tiny-dir" else version
        out[key] = root / target
        modelport.pack(onnx_graphs["tiny"](), out[key], version=version, example=example).close()
    return out
