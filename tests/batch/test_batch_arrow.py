"""The Arrow scoring path every engine runs: parity with Package.predict, nulls, arrays, vectors."""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa
import pytest

import modelport
from modelport.batch.arrow import Scorer, arrow_column
from modelport.batch.plan import make_plan
from modelport.errors import InputError


def scorer_for(package: Any, batch: pa.RecordBatch, **options: Any) -> Scorer:
    plan = make_plan([arrow_column(f) for f in batch.schema], package.signature, **options)
    return Scorer(package, plan)


def feature_batch(x: np.ndarray, **extra: Any) -> pa.RecordBatch:
    columns = {f"f{i}": pa.array(x[:, i]) for i in range(x.shape[1])}
    return pa.RecordBatch.from_pydict({**columns, **extra})


@pytest.fixture(scope="module")
def lr(packages: Any) -> Any:
    return modelport.load(packages.lr)


def test_scores_equal_package_predict_row_for_row(lr: Any, packages: Any) -> None:
    x = packages.x
    batch = feature_batch(x, id=pa.array(np.arange(len(x))))
    scorer = scorer_for(lr, batch, columns=["f0", "f1", "f2", "f3"])
    out = scorer.append(batch)
    want = lr.predict(x)
    assert out.schema.names == ["f0", "f1", "f2", "f3", "id", "label", "probabilities"]
    assert out.schema.field("label").type == pa.int64()
    assert out.schema.field("probabilities").type == pa.list_(pa.float32())
    np.testing.assert_array_equal(out.column("label").to_numpy(), want["label"])
    got = np.stack(out.column("probabilities").to_numpy(zero_copy_only=False))
    np.testing.assert_array_equal(got, want["probabilities"])


def test_a_null_is_an_error_naming_the_column_by_default(lr: Any, packages: Any) -> None:
    x = packages.x[:6]
    f2 = pa.array([*x[:3, 2], None, *x[4:, 2]], type=pa.float64())
    batch = feature_batch(x[:, :2], f2=f2, f3=pa.array(x[:, 3]))
    with pytest.raises(InputError, match=r"column\(s\) 'f2' hold null values; score them with"):
        scorer_for(lr, batch).append(batch)


def test_skipped_rows_get_null_outputs_and_the_others_their_predictions(
    lr: Any, packages: Any
) -> None:
    x = packages.x[:8]
    f0 = pa.array([None if i in (1, 6) else v for i, v in enumerate(x[:, 0])], type=pa.float64())
    batch = pa.RecordBatch.from_pydict(
        {"f0": f0, **{f"f{i}": pa.array(x[:, i]) for i in (1, 2, 3)}}
    )
    out = scorer_for(lr, batch, on_null="skip").append(batch)
    labels = out.column("label").to_pylist()
    probabilities = out.column("probabilities").to_pylist()
    assert labels[1] is None and labels[6] is None
    assert probabilities[1] is None and probabilities[6] is None
    kept = [i for i in range(8) if i not in (1, 6)]
    want = lr.predict(x[kept])
    assert [labels[i] for i in kept] == want["label"].tolist()
    np.testing.assert_allclose([probabilities[i] for i in kept], want["probabilities"])


def test_nan_policy_feeds_nulls_as_nan(lr: Any, packages: Any) -> None:
    x = packages.x[:4].copy()
    f3 = pa.array([x[0, 3], None, x[2, 3], x[3, 3]], type=pa.float64())
    batch = feature_batch(x[:, :3], f3=f3)
    out = scorer_for(lr, batch, on_null="nan").append(batch)
    x[1, 3] = np.nan
    want = lr.predict(x)
    got = np.stack(out.column("probabilities").to_numpy(zero_copy_only=False))
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want["probabilities"]))


def test_an_array_column_feeds_a_matrix_input(lr: Any, packages: Any) -> None:
    x = packages.x[:10]
    for features in (pa.array(list(x)), pa.FixedSizeListArray.from_arrays(x.reshape(-1), 4)):
        batch = pa.RecordBatch.from_pydict({"features": features})
        out = scorer_for(lr, batch).append(batch)
        assert out.column("label").to_pylist() == lr.predict(x)["label"].tolist()
    ragged = pa.RecordBatch.from_pydict({"features": pa.array([[1.0, 2.0, 3.0, 4.0], [1.0]])})
    with pytest.raises(InputError, match=r"column 'features' feeds input 'input' .* 4 values"):
        scorer_for(lr, ragged).append(ragged)


def vectors(rows: list[Any]) -> pa.StructArray:
    """Spark ML vectors as Spark sends them to Arrow: type 1 dense, 0 sparse."""
    kind = pa.struct(
        [
            ("type", pa.int8()),
            ("size", pa.int32()),
            ("indices", pa.list_(pa.int32())),
            ("values", pa.list_(pa.float64())),
        ]
    )
    return pa.array(rows, type=kind)


def test_spark_ml_vectors_dense_and_sparse_feed_a_matrix_input(lr: Any, packages: Any) -> None:
    x = packages.x[:3].copy()
    x[1] = [0.0, x[1, 1], 0.0, x[1, 3]]
    rows = [
        {"type": 1, "size": None, "indices": None, "values": list(x[0])},
        {"type": 0, "size": 4, "indices": [1, 3], "values": [x[1, 1], x[1, 3]]},
        {"type": 1, "size": None, "indices": None, "values": list(x[2])},
    ]
    batch = pa.RecordBatch.from_pydict({"v": vectors(rows)})
    out = scorer_for(lr, batch).append(batch)
    assert out.column("label").to_pylist() == lr.predict(x)["label"].tolist()
    dense = pa.RecordBatch.from_pydict({"v": vectors([rows[0], rows[2]])})
    assert scorer_for(lr, dense).append(dense).num_rows == 2


def test_string_labels_and_string_inputs(packages: Any) -> None:
    labels = modelport.load(packages.string_labels)
    x = packages.x[:5]
    batch = pa.RecordBatch.from_pydict({"features": pa.array(list(x))})
    out = scorer_for(labels, batch, outputs="label").append(batch)
    assert out.schema.field("label").type == pa.string()
    assert out.column("label").to_pylist() == labels.predict(x)["label"].tolist()
    strings = modelport.load(packages.strings)
    words = pa.RecordBatch.from_pydict({"text": pa.array(["a", "b", "é"]).dictionary_encode()})
    assert scorer_for(strings, words).append(words).column("same").to_pylist() == ["a", "b", "é"]


def test_named_inputs_of_several_layouts(packages: Any) -> None:
    two = modelport.load(packages.two_inputs)
    batch = pa.RecordBatch.from_pydict(
        {"a": pa.array([[1.0, 2.0], [3.0, 4.0]]), "b": pa.array([10, 20], type=pa.int32())}
    )
    out = scorer_for(two, batch).append(batch)
    assert out.schema.field("total").type == pa.float32()  # a [-1, 1] output: one value per row
    assert out.column("total").to_pylist() == [13.0, 27.0]


def test_a_value_the_signature_refuses_names_the_input(lr: Any) -> None:
    x = np.ones((2, 4))
    x[1, 2] = 1e300  # beyond float32: never silently infinite
    batch = feature_batch(x)
    with pytest.raises(InputError, match="input 'input' expects float32, got values outside"):
        scorer_for(lr, batch).append(batch)


def test_an_empty_batch_gives_empty_outputs(lr: Any) -> None:
    batch = feature_batch(np.zeros((0, 4)))
    out = scorer_for(lr, batch).append(batch)
    assert out.num_rows == 0 and out.schema.field("probabilities").type == pa.list_(pa.float32())
