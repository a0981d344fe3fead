"""Fixtures for batch scoring: packages of every shape batch scoring meets, and Spark's setting.

The packages are real (scikit-learn estimators converted at pack time, and hand-made ONNX
graphs); Spark is pyspark's own, on this machine's JVM, bound to 127.0.0.1.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from spark_support import spark_environment

import modelport


@dataclass(frozen=True)
class Packages:
    """Packages packed once per session, each as an archive (and ``lr_dir`` as a directory)."""

    lr: Path  # LogisticRegression: input float32[-1, 4]; label int64, probabilities float32[-1, 2]
    lr_dir: Path  # the same package as a directory
    string_labels: Path  # LogisticRegression with "no"/"yes" labels: label string
    two_inputs: Path  # a float32[-1, 2] and b int64[-1, 1] -> total float32[-1, 1]
    strings: Path  # text string[-1] -> same string[-1]
    table_package: Path  # ColumnTransformer pipeline: age float32, visits int64, color string
    x: np.ndarray  # rows to score with lr (float64, 4 features)
    table: Any  # TableModel: its pipeline and DataFrames


@pytest.fixture(scope="session")
def packages(
    tmp_path_factory: pytest.TempPathFactory,
    fitted: Callable[[str], Any],
    onnx_graphs: dict[str, Callable[[], Any]],
    table_model: Any,
) -> Packages:
    from sklearn.linear_model import LogisticRegression

    root = tmp_path_factory.mktemp("batch-packages")
    lr = fitted("logistic_regression")
    data = lr.data
    modelport.pack(lr.estimator, root / "lr.mport", example=data.x_train[:5])
    modelport.pack(root / "lr.mport", root / "lr_dir")
    labels = np.array(["no", "yes"])[data.y_train]
    named = LogisticRegression(max_iter=500).fit(data.x_train, labels)
    modelport.pack(named, root / "labels.mport", example=data.x_train[:5])
    modelport.pack(onnx_graphs["two_inputs"](), root / "two.mport")
    modelport.pack(onnx_graphs["strings"](), root / "strings.mport")
    modelport.pack(table_model.pipeline, root / "table.mport", example=table_model.train.head(15))
    x = np.vstack([data.x_train, data.x_test])
    x.setflags(write=False)  # shared by every test
    return Packages(
        root / "lr.mport",
        root / "lr_dir",
        root / "labels.mport",
        root / "two.mport",
        root / "strings.mport",
        root / "table.mport",
        x,
        table_model,
    )


@pytest.fixture(scope="module")
def spark_work(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Spark's scratch and worker directories for a module, its environment set meanwhile.

    What the module's sessions set in the environment (pyspark's Spark Connect marks) is undone
    after it too: modules share a process under pytest-xdist.
    """
    work = tmp_path_factory.mktemp("spark-work")
    # pyspark marks a process that made a Spark Connect session, and every later session of
    # it would be remote: the marks go with the module.
    marks = ("SPARK_CONNECT_MODE_ENABLED", "SPARK_REMOTE")
    saved = {k: os.environ.get(k) for k in (*spark_environment(work), *marks)}
    os.environ.update(spark_environment(work))
    yield work
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
