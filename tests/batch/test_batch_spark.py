"""score(df, package) and spark_udf on a real local[2] Spark: parity, every column type, errors.

One session for the module (8-15 s to start). Every schema error is asserted to be raised by the
call itself, before Spark runs a job (the status tracker's job count does not move).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from spark_support import classic_session

import modelport
from modelport.batch import score, spark_udf
from modelport.errors import CodeExecutionRefused, InputError, PackageError, UsageError

pytestmark = pytest.mark.xdist_group("batch-spark")

FEATURES = ["f0", "f1", "f2", "f3"]


@pytest.fixture(scope="module")
def spark(spark_work: Path) -> Iterator[Any]:
    session = classic_session("local[2]")
    yield session
    session.stop()


@pytest.fixture(scope="module")
def rows(spark: Any, packages: Any) -> Any:
    table = pd.DataFrame(packages.x.copy(), columns=FEATURES)
    table.insert(0, "id", np.arange(len(table)))
    return spark.createDataFrame(table).repartition(3)


def jobs(spark: Any) -> int:
    return len(spark.sparkContext.statusTracker().getJobIdsForGroup())


def by_id(df: Any) -> pd.DataFrame:
    return df.toPandas().sort_values("id").reset_index(drop=True)


def test_score_keeps_every_column_and_equals_package_predict(
    spark: Any, rows: Any, packages: Any
) -> None:
    scored = score(rows, packages.lr, columns=FEATURES)
    assert scored.columns == ["id", *FEATURES, "label", "probabilities"]
    assert [f.dataType.simpleString() for f in scored.schema.fields[-2:]] == [
        "bigint",
        "array<float>",
    ]
    got = by_id(scored)
    want = modelport.load(packages.lr).predict(packages.x)
    np.testing.assert_array_equal(got["label"].to_numpy(), want["label"])
    np.testing.assert_array_equal(np.stack(got["probabilities"]), want["probabilities"])
    np.testing.assert_array_equal(got[FEATURES].to_numpy(), packages.x)


def test_spark_udf_in_its_forms(spark: Any, rows: Any, packages: Any) -> None:
    from pyspark.sql import functions as F

    want = modelport.load(packages.lr).predict(packages.x)
    label = spark_udf(spark, packages.lr, outputs="label")
    assert label.return_type == "bigint"
    both = spark_udf(spark, packages.lr_dir)
    assert both.return_type == "struct<`label`: bigint, `probabilities`: array<float>>"
    got = by_id(
        rows.withColumn("a", label(*FEATURES))
        .withColumn("b", label(F.struct(*FEATURES)))
        .withColumn("c", both(*[F.col(c) for c in FEATURES]))
        .withColumn("d", label(F.array(*FEATURES)))
    )
    for column in ("a", "b", "d"):
        np.testing.assert_array_equal(got[column].to_numpy(), want["label"])
    np.testing.assert_array_equal([r["label"] for r in got["c"]], want["label"])
    np.testing.assert_array_equal(np.stack([r["probabilities"] for r in got["c"]]),
                                  want["probabilities"])  # fmt: skip


def test_result_type_casts_without_loss_or_is_refused(spark: Any, rows: Any, packages: Any) -> None:
    want = modelport.load(packages.lr).predict(packages.x)
    as_double = spark_udf(spark, packages.lr, outputs="label", result_type="double")
    picked = spark_udf(spark, packages.lr, result_type="struct<probabilities: array<double>>")
    got = by_id(rows.withColumn("a", as_double(*FEATURES)).withColumn("b", picked(*FEATURES)))
    assert got["a"].dtype == np.float64
    np.testing.assert_array_equal(got["a"].to_numpy(), want["label"].astype(float))
    np.testing.assert_allclose(np.stack([r["probabilities"] for r in got["b"]]),
                               want["probabilities"])  # fmt: skip
    with pytest.raises(UsageError, match=r"output .probabilities. .* cannot become int"):
        spark_udf(spark, packages.lr, outputs="probabilities", result_type="array<int>")
    with pytest.raises(UsageError, match="holds one output, and the model has 2"):
        spark_udf(spark, packages.lr, result_type="double")
    with pytest.raises(UsageError, match=r"unknown output.s. .proba."):
        spark_udf(spark, packages.lr, result_type="struct<proba: double>")


def test_string_labels_and_a_mixed_type_table(spark: Any, packages: Any) -> None:
    labels = spark_udf(spark, packages.string_labels, outputs="label")
    assert labels.return_type == "string"
    frame = spark.createDataFrame(pd.DataFrame(packages.x[:20].copy(), columns=FEATURES))
    got = frame.select(labels(*FEATURES).alias("label")).toPandas()["label"].tolist()
    assert got == modelport.load(packages.string_labels).predict(packages.x[:20])["label"].tolist()

    test = packages.table.test  # age float64, visits int64, color str: each an input by name
    people = spark.createDataFrame(test.assign(id=np.arange(len(test))))
    want = modelport.load(packages.table_package).predict(test)
    scored = by_id(score(people, packages.table_package, prefix="p_"))
    assert scored["p_label"].tolist() == want["label"].tolist()
    by_name = people.withColumn("l", spark_udf(spark, packages.table_package, outputs="label")())
    assert by_id(by_name)["l"].tolist() == want["label"].tolist()


def test_array_and_vector_columns_feed_a_matrix_input(spark: Any, rows: Any, packages: Any) -> None:
    from pyspark.ml.functions import array_to_vector
    from pyspark.sql import functions as F

    want = modelport.load(packages.lr).predict(packages.x)["label"]
    arrays = rows.select("id", F.array(*FEATURES).alias("features"))
    vectors = arrays.select("id", array_to_vector("features").alias("v"))
    for frame, column in ((arrays, "features"), (vectors, "v")):
        got = by_id(score(frame, packages.lr, columns=[column], outputs="label"))
        np.testing.assert_array_equal(got["label"].to_numpy(), want)
        udf = spark_udf(spark, packages.lr, outputs="label")
        np.testing.assert_array_equal(by_id(frame.withColumn("p", udf(column)))["p"], want)


def test_two_inputs_by_name(spark: Any, packages: Any) -> None:
    frame = spark.createDataFrame(
        [(0, [1.0, 2.0], 10), (1, [3.0, 4.0], 20)], "id long, a array<double>, b int"
    )
    got = by_id(score(frame, packages.two_inputs))
    assert got["total"].tolist() == [13.0, 27.0]


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda r: r.drop("id", "f2"), "input 'input' (float32[-1, 4]) takes 4 columns"),
        (lambda r: r.withColumn("f1", r["f1"].cast("string")), "column 'f1' is string"),
        (lambda r: r.withColumn("f1", r["f1"].cast("boolean")), "column 'f1' is bool"),
        (lambda r: r.withColumn("f1", r["f1"].cast("decimal(10,2)")), "column 'f1' is decimal"),
        (lambda r: r.withColumnRenamed("f3", "label"), "are already columns of the table"),
    ],
)
def test_schema_errors_are_raised_on_the_driver_before_any_job(
    spark: Any, rows: Any, packages: Any, make: Any, message: str
) -> None:
    frame = make(rows)
    frame.schema  # noqa: B018 - analysed before counting jobs
    columns = [c for c in frame.columns if c != "id"]
    before = jobs(spark)
    with pytest.raises(InputError, match=message.replace("(", r"\(").replace(")", r"\)")
                       .replace("[", r"\[").replace("]", r"\]")):  # fmt: skip
        score(frame, packages.lr, columns=columns if "takes" not in message else None)
    assert jobs(spark) == before


def test_lossy_casts_and_null_policies_are_refused_on_the_driver(spark: Any, packages: Any) -> None:
    frame = spark.createDataFrame([([1.0, 2.0], 1.0)], "a array<double>, b double")
    before = jobs(spark)
    with pytest.raises(InputError, match="column 'b' is float64; input 'b' expects int64; floats"):
        score(frame, packages.two_inputs)
    ints = spark.createDataFrame([([1.0, 2.0], 1)], "a array<double>, b long")
    with pytest.raises(InputError, match="on_null='nan' needs float inputs; input 'b' is int64"):
        score(ints, packages.two_inputs, on_null="nan")
    assert jobs(spark) == before


def test_nulls_are_an_error_skipped_or_nan(spark: Any, packages: Any) -> None:
    x = packages.x[:6].copy()
    table = pd.DataFrame(x, columns=FEATURES).assign(id=np.arange(6))
    table.loc[2, "f1"] = None
    frame = spark.createDataFrame(table)
    with pytest.raises(Exception, match=r"column\(s\) 'f1' hold null values"):
        score(frame, packages.lr, columns=FEATURES).collect()
    skipped = by_id(score(frame, packages.lr, columns=FEATURES, on_null="skip"))
    assert pd.isna(skipped.loc[2, "label"]) and skipped["probabilities"][2] is None
    kept = [0, 1, 3, 4, 5]
    want = modelport.load(packages.lr).predict(x[kept])["label"]
    np.testing.assert_array_equal(skipped.loc[kept, "label"].to_numpy(), want)
    assert by_id(score(frame, packages.lr, columns=FEATURES, on_null="nan"))["label"].notna().all()


def test_a_udf_given_the_wrong_columns_fails_its_task_with_the_same_message(
    spark: Any, rows: Any, packages: Any
) -> None:
    udf = spark_udf(spark, packages.lr, outputs="label")
    with pytest.raises(Exception, match=r"input 'input' \(float32\[-1, 4\]\) takes 4 columns"):
        rows.withColumn("p", udf("f0", "f1", "f2")).collect()


def test_bad_packages_are_refused_on_the_driver(
    spark: Any, rows: Any, packages: Any, tmp_path: Path, python_model: Any
) -> None:
    damaged = tmp_path / "damaged"
    modelport.pack(packages.lr, damaged)
    (damaged / "model.onnx").write_bytes(b"\0" + (damaged / "model.onnx").read_bytes()[1:])
    with pytest.raises(PackageError, match=r"model\.onnx"):
        score(rows, damaged, columns=FEATURES)
    code = modelport.pack(python_model.source, tmp_path / "code.mport",
                          example=python_model.example, artifacts=[python_model.artifact],
                          allow_code=True)  # fmt: skip
    with pytest.raises(CodeExecutionRefused):
        spark_udf(spark, code.path)
    with pytest.raises(UsageError, match="on_null must be one of"):
        spark_udf(spark, packages.lr, on_null="zero")


def test_the_readme_spark_block_runs_as_written(spark: Any, packages: Any) -> None:
    """README's Python block for Spark, with its package and DataFrame named for it."""
    readme = Path(__file__).resolve().parents[2] / "README.md"
    blocks = re.findall(r"```python\n(.*?)```", readme.read_text("utf-8"), flags=re.DOTALL)
    (block,) = [b for b in blocks if "modelport.batch" in b]
    test = packages.table.test  # columns age, visits, color: the block's names
    namespace: dict[str, Any] = {"spark": spark, "df": spark.createDataFrame(test)}
    exec(block.replace('"churn.mport"', repr(str(packages.table_package))), namespace)
    want = modelport.load(packages.table_package).predict(test)["label"].tolist()
    scored = namespace["scored"].toPandas()
    assert list(scored.columns) == [*test.columns, "label", "probabilities"]
    assert scored["label"].tolist() == want
    assert namespace["labelled"].toPandas()["churn"].tolist() == want
