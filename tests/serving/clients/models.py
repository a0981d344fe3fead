"""Packages the client tests serve, and what the package itself predicts for given rows.

- the *table* model: a scikit-learn Pipeline (ColumnTransformer: StandardScaler on ``num``,
  OneHotEncoder on ``cat``; LogisticRegression) fitted on a pandas DataFrame and packed from a
  DataFrame example, so its inputs are ``num`` float32[-1, 1] and ``cat`` string[-1, 1];
- the *numeric* model is the session's ``iris`` package (``tests/serving/conftest.py``): one input
  ``input`` float32[-1, 4], outputs ``label`` int64[-1] and ``probabilities`` float32[-1, 3].
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

import modelport

TABLE_COLUMNS = ("num", "cat")
CATEGORIES = ("a", "b", "c")


def table_frame(n: int, seed: int = 0) -> pd.DataFrame:
    """``n`` rows of the table model's columns: ``num`` float64, ``cat`` one of a/b/c."""
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            # Rounded so that a value survives any text form (CSV, JSON) exactly.
            "num": np.round(rng.normal(0.0, 1.5, n), 3),
            "cat": rng.choice(list(CATEGORIES), n),
        }
    )


def fit_table_pipeline(frame: pd.DataFrame, classes: tuple[Any, Any] = (0, 1)) -> Any:
    """The table model, fitted on ``frame`` (labels from both columns, so both matter).

    ``classes``: the two class labels (ints by default; strings make string labels).
    """
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    y = np.where((frame["num"] > 0) ^ (frame["cat"] == "a"), classes[1], classes[0])
    pipeline = Pipeline(
        [
            (
                "columns",
                ColumnTransformer(
                    [
                        ("num", StandardScaler(), ["num"]),
                        ("cat", OneHotEncoder(handle_unknown="ignore"), ["cat"]),
                    ]
                ),
            ),
            ("clf", LogisticRegression(max_iter=500)),
        ]
    )
    return pipeline.fit(frame, y)


@dataclass(frozen=True)
class TablePackage:
    """The packed table model: the archive, and the frame it was trained on."""

    path: Path
    train: pd.DataFrame


def table_package(tmp_path_factory: pytest.TempPathFactory) -> TablePackage:
    """The table model packed once per session (kept under the session's base temp dir)."""
    root = tmp_path_factory.getbasetemp() / "clients-table"
    path = root / "table.mport"
    train = table_frame(120, seed=1)
    if not path.exists():
        root.mkdir(exist_ok=True)
        modelport.pack(fit_table_pipeline(train), path, name="table", example=train.head(10))
    return TablePackage(path, train)


def table_columns(frame: pd.DataFrame) -> dict[str, np.ndarray]:
    """The table model's inputs for ``frame``, as the signature declares them ([-1, 1] each)."""
    return {
        "num": frame["num"].to_numpy(dtype=np.float32).reshape(-1, 1),
        "cat": frame["cat"].to_numpy(dtype=object).reshape(-1, 1),
    }


def predict(path: Path, inputs: Any) -> dict[str, np.ndarray]:
    """What the package predicts in-process for ``inputs`` (a fresh load, then closed)."""
    from modelport.model_format.package import load

    package = load(path)
    try:
        return dict(package.predict(inputs))
    finally:
        package.close()
