"""``Package.predict`` takes what the wire takes: a DataFrame, columns, records, an array.

Real packages: a scikit-learn pipeline fitted on a DataFrame of numeric and string columns
(packed from a DataFrame example, so each column is a ``[-1, 1]`` input), and a single-input
numeric model. Whatever form the rows come in, the predictions are scikit-learn's own.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

import modelport
from modelport.errors import InputError

pd = pytest.importorskip("pandas")


def churn_frame(n: int, seed: int) -> Any:
    """``n`` rows of a churn-like table: an int, a float and a string column."""
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "tenure": rng.integers(0, 72, n),
            # Rounded, so that float32 (what ONNX takes) holds the very values sklearn sees.
            "monthly": np.round(rng.uniform(10, 120, n), 2),
            "plan": rng.choice(["basic", "plus", "pro"], n),
        }
    )


def churn_pipeline(frame: Any) -> Any:
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    y = ((frame["tenure"] < 24) ^ (frame["plan"] == "pro")).to_numpy().astype(np.int64)
    columns = ColumnTransformer(
        [
            ("numbers", StandardScaler(), ["tenure", "monthly"]),
            ("plan", OneHotEncoder(handle_unknown="ignore"), ["plan"]),
        ]
    )
    return make_pipeline(columns, LogisticRegression(max_iter=500)).fit(frame, y)


@pytest.fixture(scope="module")
def churn(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Any, Any, Any]]:
    """The fitted pipeline, its package (packed from a DataFrame), and rows it never saw."""
    train, test = churn_frame(200, seed=1), churn_frame(7, seed=2)
    pipeline = churn_pipeline(train)
    path = tmp_path_factory.mktemp("api") / "churn.mport"
    package = modelport.pack(pipeline, path, name="churn", example=train.head(20))
    try:
        yield pipeline, package, test
    finally:
        package.close()


def assert_sklearn_s(outputs: dict[str, np.ndarray], pipeline: Any, rows: Any) -> None:
    np.testing.assert_array_equal(outputs["label"], pipeline.predict(rows))
    np.testing.assert_allclose(outputs["probabilities"], pipeline.predict_proba(rows), atol=1e-5)


def test_the_package_takes_one_input_per_column(churn: tuple[Any, Any, Any]) -> None:
    _, package, _ = churn
    shapes = {s.name: (s.dtype, s.shape) for s in package.signature.inputs}
    assert shapes == {
        "tenure": ("int64", (-1, 1)),
        "monthly": ("float32", (-1, 1)),
        "plan": ("string", (-1, 1)),
    }


@pytest.mark.parametrize(
    "form",
    ["dataframe", "records", "columns", "columns-as-arrays", "one-record"],
)
def test_a_dataframe_pipeline_takes_rows_in_every_form(
    churn: tuple[Any, Any, Any], form: str
) -> None:
    pipeline, package, rows = churn
    if form == "one-record":
        rows = rows.head(1)
    value = {
        "dataframe": rows,
        "records": rows.to_dict("records"),
        "one-record": rows.to_dict("records"),
        "columns": rows.to_dict("list"),
        "columns-as-arrays": {c: rows[c].to_numpy() for c in rows.columns},
    }[form]
    assert_sklearn_s(package.predict(value), pipeline, rows)


def test_a_reloaded_package_predicts_the_same(churn: tuple[Any, Any, Any]) -> None:
    pipeline, package, rows = churn
    with modelport.load(package.path) as loaded:
        assert_sklearn_s(loaded.predict(rows), pipeline, rows)


def test_columns_in_another_order_and_extra_columns(churn: tuple[Any, Any, Any]) -> None:
    pipeline, package, rows = churn
    shuffled = rows[["plan", "monthly", "tenure"]]
    assert_sklearn_s(package.predict(shuffled), pipeline, rows)
    # A column that feeds no input is ignored, as MLflow (and the server) ignore it.
    assert_sklearn_s(package.predict(rows.assign(customer_id=range(len(rows)))), pipeline, rows)


def test_what_the_signature_refuses_is_refused_naming_the_input(
    churn: tuple[Any, Any, Any],
) -> None:
    _, package, rows = churn
    with pytest.raises(InputError, match=r"missing input.*'plan'"):
        package.predict(rows.drop(columns=["plan"]))
    lossy = rows.assign(tenure=rows["tenure"] + 0.5)  # 1.5 is never silently an int
    with pytest.raises(InputError, match="tenure") as refused:
        package.predict(lossy.to_dict("records"))
    assert str(lossy["tenure"].iloc[0]) not in str(refused.value)
    with pytest.raises(InputError, match="3 inputs"):
        package.predict([[1, 2.0, "basic"]])  # a tensor, for a model of named inputs


@pytest.fixture(scope="module")
def numeric(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Any, Any, np.ndarray]]:
    """A single-input model (``float32[-1, 4]``) fitted on an array, and rows for it."""
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(0)
    x = rng.normal(size=(150, 4)).astype(np.float32)
    y = (x[:, 0] - x[:, 2] > 0).astype(np.int64)
    model = LogisticRegression().fit(x, y)
    path = tmp_path_factory.mktemp("api") / "numeric.mport"
    package = modelport.pack(model, path, name="numeric", example=x[:10])
    try:
        yield model, package, x[:6]
    finally:
        package.close()


@pytest.mark.parametrize("form", ["array", "nested-list", "by-name", "dataframe", "records"])
def test_a_single_input_model_takes_its_tensor_in_every_form(
    numeric: tuple[Any, Any, np.ndarray], form: str
) -> None:
    model, package, x = numeric
    (name,) = package.signature.input_names
    frame = pd.DataFrame(x, columns=["a", "b", "c", "d"])
    value = {
        "array": x,
        "nested-list": x.tolist(),
        "by-name": {name: x},
        # A table feeds a single-input model as its matrix, whatever its columns are named.
        "dataframe": frame,
        "records": [{name: row} for row in x.tolist()],
    }[form]
    outputs = package.predict(value)
    np.testing.assert_array_equal(outputs["label"], model.predict(x))
    np.testing.assert_allclose(outputs["probabilities"], model.predict_proba(x), atol=1e-5)


def test_the_python_api_and_the_wire_read_rows_alike(churn: tuple[Any, Any, Any]) -> None:
    """``predict(df.to_dict("records"))`` is what ``{"instances": ...}`` means on the wire."""
    from modelport.model_format.payload import parse_payload

    _, package, rows = churn
    records = rows.to_dict("records")
    by_api = package.predict(records)
    by_wire = package.predict(parse_payload({"instances": records}, package.signature))
    for name, value in by_api.items():
        np.testing.assert_array_equal(value, by_wire[name])
