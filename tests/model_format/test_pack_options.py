"""Option validation in pack(): bad options are PackErrors (exit 1), never invalid packages."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

import modelport
from modelport.errors import PackError


@pytest.fixture(scope="module")
def model() -> tuple[LogisticRegression, np.ndarray]:
    x = np.random.default_rng(1).normal(size=(40, 3)).astype(np.float32)
    return LogisticRegression().fit(x, (x[:, 0] > 0).astype(int)), x


@pytest.mark.parametrize("metadata", [{"a": 1}, {1: "a"}, {"a": None}])
def test_metadata_must_be_strings(
    model: tuple[LogisticRegression, np.ndarray], tmp_path: Path, metadata: dict[object, object]
) -> None:
    estimator, x = model
    with pytest.raises(PackError, match="metadata"):
        modelport.pack(estimator, tmp_path / "m.mport", example=x, metadata=metadata)  # type: ignore[arg-type]
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("tolerance", [float("inf"), float("nan"), -1.0])
def test_tolerance_must_be_finite_and_not_negative(
    model: tuple[LogisticRegression, np.ndarray], tmp_path: Path, tolerance: float
) -> None:
    estimator, x = model
    with pytest.raises(PackError, match="tolerance"):
        modelport.pack(estimator, tmp_path / "m.mport", example=x, tolerance=tolerance)
    assert list(tmp_path.iterdir()) == []
