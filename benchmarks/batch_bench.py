"""Batch scoring throughput: modelport on Spark beside MLflow's spark_udf and the no-model limit.

Usage:
    python benchmarks/batch_bench.py [--rows 1000000] [--rounds 3] [--models lr,rf]
        [--rf-depth 10] [--partitions 4] [--all-outputs] [--skip-mlflow] [--skip-local]
        [--workdir DIR] [--json results.json] [--dry-run]

One run, one Spark session (``local[2]``, no UI, everything on 127.0.0.1). The rows (N x 20
float64 features f0..f19, normal) are written once to a Parquet file with pyarrow; Spark reads
it, spreads it over ``--partitions`` partitions, ``.cache()``s it and materialises it with
``.count()`` before anything is timed. Two models are trained on synthetic data and packed by
modelport (skl2onnx converts them in ``pack``): a LogisticRegression and a 100-tree
RandomForest (``max_depth`` ``--rf-depth``, ``random_state`` 0). Every Spark method scores the
same cached DataFrame into Spark's ``noop`` sink (the whole computation, nothing written); the
time is the scored frame's making on the driver (``score()``; ``spark_udf()`` and
``withColumn``) plus the job, and rows/s is N / those seconds.

Spark table (per model):

- ``modelport score``: ``score(df, pkg, columns=[f0..f19], outputs="label")`` (``mapInArrow``);
  with ``--all-outputs`` also ``modelport score (all outputs)``: label and probabilities.
- ``modelport spark_udf``: ``df.withColumn("p", spark_udf(spark, pkg, outputs="label")(*cols))``
  (an iterator Arrow UDF).
- ``mlflow spark_udf``: ``mlflow.pyfunc.spark_udf(spark, path, env_manager="local",
  result_type="double")`` called with the 20 columns, on the very model.onnx modelport packed,
  saved with ``mlflow.onnx.save_model``: its ``label`` output only (MLflow's ONNX flavor makes a
  DataFrame of one flattened column per output, and a [N, 2] probabilities output cannot be
  one), a signature of 20 named double columns (the columns map by name; the flavor feeds
  ``DataFrame.values``, cast to float32, as the [N, 20] input), ONNX Runtime on the CPU with one
  thread, as modelport's (Spark runs one task per core). ``result_type="long"`` finds no column
  with numpy 2.x: ONNX Runtime's int64 arrays have the ``longlong`` dtype, which MLflow's
  ``select_dtypes([..., int])`` does not match; so the label comes back as a double.
- ``no-model pass (pandas)``: ``mapInPandas`` appending a constant label column: the Arrow round
  trip through pandas with no model, the limit of any pandas UDF (MLflow's is one).
- ``no-model pass (arrow)``: the same with ``mapInArrow``: the limit of an Arrow path (modelport's
  ``score`` is one).

One-machine table (per model, in the same rounds), each run a fresh process scoring the Parquet
file into another: ``modelport batch --engine local --outputs label --force --json``, against a
plain loop (this script with ``--loop``): ``ParquetFile.iter_batches(65536)``, ``to_pandas()``,
the 20 columns stacked to float32, ``InferenceSession.run`` (ONNX Runtime's default threads), the
label appended, written with ``ParquetWriter``. Both are timed whole (interpreter start and
imports included) and by their own clocks.

Rounds interleave the methods (the order rotates each round); the tables show medians. Before
round 1 each model's first job is timed (modelport ``score`` on the full DataFrame: the package
shipped, verified and loaded by each Python worker), then every Spark method runs once on a
small frame (the warm-up), its labels checked against ONNX Runtime's own. The session's start
(``getOrCreate``) and the caching are timed too. Nothing here is part of the test suite.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.metadata
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

FEATURES = 20
COLUMNS = [f"f{i}" for i in range(FEATURES)]
MODELS = ("lr", "rf")
MASTER = "local[2]"
#: Rows per batch of the plain loop (``modelport batch``'s default too).
LOCAL_BATCH = 65_536
#: Rows of the warm-up frame, whose labels are checked (fewer when --rows is smaller).
WARMUP_ROWS = 20_000
TRAIN_ROWS = 20_000

SCORE = "modelport score"
SCORE_ALL = "modelport score (all outputs)"
UDF = "modelport spark_udf"
MLFLOW = "mlflow spark_udf"
#: MLflow as shipped: ONNX Runtime's default threads (all cores) in every task.
MLFLOW_DEFAULT = "mlflow spark_udf (ORT defaults)"
NOOP_PANDAS = "no-model pass (pandas)"
NOOP_ARROW = "no-model pass (arrow)"
CLI = "modelport batch --engine local"
LOOP = "pandas + ORT loop"
SPARK_METHODS = (SCORE, SCORE_ALL, UDF, MLFLOW, MLFLOW_DEFAULT, NOOP_PANDAS, NOOP_ARROW)
LOCAL_METHODS = (CLI, LOOP)


@dataclass
class Results:
    rows: int
    rounds: int
    rf_depth: int
    partitions: int
    versions: dict[str, str] = field(default_factory=dict)
    #: model -> method -> seconds per round: a Spark method's making and job; a local
    #: method's own timing (``modelport batch``'s report, the loop's clock).
    seconds: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    #: model -> Spark method -> seconds per round making the scored frame (part of ``seconds``).
    making_seconds: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    #: model -> local method -> the whole process's seconds per round.
    process_seconds: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    session_start_s: float = 0.0
    cache_s: float = 0.0
    #: model -> the first modelport job: package shipped, verified and loaded, full frame.
    first_job_s: dict[str, float] = field(default_factory=dict)
    #: model -> method -> the warm-up run (small frame, labels collected and checked).
    warmup_s: dict[str, dict[str, float]] = field(default_factory=dict)
    total_s: float = 0.0
    notes: list[str] = field(default_factory=list)


def add(table: dict[str, dict[str, list[float]]], model: str, method: str, value: float) -> None:
    table.setdefault(model, {}).setdefault(method, []).append(value)


def timed(action: Callable[[], Any]) -> tuple[float, Any]:
    """Seconds ``action()`` took, and what it returned."""
    start = time.perf_counter()
    result = action()
    return time.perf_counter() - start, result


def log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def rotated(items: list[str], round_: int) -> list[str]:
    shift = round_ % len(items)
    return items[shift:] + items[:shift]


# --- data and models ----------------------------------------------------------------------------


def features(rows: int, seed: int) -> Any:
    import numpy as np

    return np.random.default_rng(seed).normal(size=(rows, FEATURES))


def write_parquet(path: Path, rows: int) -> None:
    """The scored rows: ``rows`` x 20 float64 columns, in row groups of 131,072 rows."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    x = features(rows, seed=1)
    pq.write_table(
        pa.table({name: x[:, i] for i, name in enumerate(COLUMNS)}), path, row_group_size=131_072
    )


def build_models(
    workdir: Path, models: list[str], rf_depth: int, with_mlflow: bool
) -> dict[str, dict[str, Path]]:
    """Train and pack each model; keep its model.onnx (the loop's) and its MLflow model."""
    import numpy as np
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import LogisticRegression

    import modelport

    x = features(TRAIN_ROWS, seed=0)
    noise = np.random.default_rng(0).normal(scale=0.5, size=len(x))
    y = ((x[:, :5].sum(axis=1) + x[:, 5] * x[:, 6] + noise) > 0).astype(np.int64)
    estimators = {
        "lr": lambda: LogisticRegression(max_iter=500),
        "rf": lambda: RandomForestClassifier(n_estimators=100, max_depth=rf_depth, random_state=0),
    }
    paths: dict[str, dict[str, Path]] = {}
    for name in models:
        estimator = estimators[name]().fit(x, y)
        package = workdir / f"{name}.mport"
        onnx_path = workdir / f"{name}.onnx"
        with modelport.pack(estimator, package, example=x[:5], overwrite=True) as packed:
            shutil.copyfile(packed.root / "model.onnx", onnx_path)
        paths[name] = {"package": package, "onnx": onnx_path}
        if with_mlflow:
            paths[name]["mlflow"] = save_mlflow(onnx_path, workdir / f"mlflow-{name}")
            paths[name]["mlflow-default"] = save_mlflow(
                onnx_path, workdir / f"mlflow-default-{name}", one_thread=False
            )
    return paths


def save_mlflow(onnx_path: Path, target: Path, *, one_thread: bool = True) -> Path:
    """The ONNX model as an MLflow model: its label output only, 20 named double columns in.

    ``one_thread``: ONNX Runtime on one thread per task, as modelport's; else MLflow's defaults.
    """
    import mlflow.onnx
    import onnx
    from mlflow.models import ModelSignature
    from mlflow.types.schema import ColSpec, Schema

    model = onnx.load(str(onnx_path))
    kept = [o for o in model.graph.output if o.name == "label"]
    del model.graph.output[:]
    model.graph.output.extend(kept)
    signature = ModelSignature(
        inputs=Schema([ColSpec("double", name) for name in COLUMNS]),
        outputs=Schema([ColSpec("long", "label")]),
    )
    shutil.rmtree(target, ignore_errors=True)
    threads = {"intra_op_num_threads": 1, "inter_op_num_threads": 1} if one_thread else None
    mlflow.onnx.save_model(
        model,
        str(target),
        signature=signature,
        onnx_execution_providers=["CPUExecutionProvider"],
        onnx_session_options=threads,
    )
    return target


def onnx_labels(onnx_path: Path, x: Any) -> Any:
    import numpy as np
    import onnxruntime as ort

    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return session.run(["label"], {name: np.ascontiguousarray(x, dtype=np.float32)})[0]


# --- Spark --------------------------------------------------------------------------------------


def start_spark() -> tuple[float, Any]:
    """The session, and how long ``getOrCreate`` took (the JVM's start included)."""
    os.environ["SPARK_LOCAL_IP"] = "127.0.0.1"
    os.environ["PYSPARK_PYTHON"] = sys.executable
    from pyspark.sql import SparkSession

    builder = (
        SparkSession.builder.master(MASTER)
        .appName("modelport batch bench")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.driver.host", "127.0.0.1")
        .config("spark.driver.bindAddress", "127.0.0.1")
        .config("spark.driver.memory", "3g")
        # The warm-up frame's making and checking only; no timed method goes through pandas
        # conversion on the driver.
        .config("spark.sql.execution.arrow.pyspark.enabled", "true")
    )
    seconds, spark = timed(builder.getOrCreate)
    spark.sparkContext.setLogLevel("ERROR")
    return seconds, spark


def noop(df: Any) -> None:
    df.write.format("noop").mode("overwrite").save()


def _pandas_pass(frames: Iterator[Any]) -> Iterator[Any]:
    for frame in frames:
        yield frame.assign(label=0)


def _arrow_pass(batches: Iterator[Any]) -> Iterator[Any]:
    import numpy as np
    import pyarrow as pa

    for batch in batches:
        constant = pa.array(np.zeros(batch.num_rows, dtype=np.int64))
        yield pa.RecordBatch.from_arrays(
            [*batch.columns, constant], names=[*batch.schema.names, "label"]
        )


def spark_methods(spark: Any, paths: dict[str, Path], chosen: list[str]) -> dict[str, Any]:
    """One model's Spark methods, each making its scored frame (its UDF too) from a DataFrame."""
    from pyspark.sql import types as T

    from modelport.batch import score, spark_udf

    package = str(paths["package"])

    def with_label(df: Any) -> Any:
        return T.StructType([*df.schema.fields, T.StructField("label", T.LongType(), False)])

    def mlflow_udf(df: Any, model: str = "mlflow") -> Any:
        import mlflow.pyfunc

        udf = mlflow.pyfunc.spark_udf(
            spark, str(paths[model]), env_manager="local", result_type="double"
        )
        return df.withColumn("p", udf(*COLUMNS))

    methods: dict[str, Callable[[Any], Any]] = {
        SCORE: lambda df: score(df, package, columns=COLUMNS, outputs="label"),
        SCORE_ALL: lambda df: score(df, package, columns=COLUMNS),
        UDF: lambda df: df.withColumn("p", spark_udf(spark, package, outputs="label")(*COLUMNS)),
        MLFLOW: mlflow_udf,
        MLFLOW_DEFAULT: lambda df: mlflow_udf(df, "mlflow-default"),
        NOOP_PANDAS: lambda df: df.mapInPandas(_pandas_pass, with_label(df)),
        NOOP_ARROW: lambda df: df.mapInArrow(_arrow_pass, with_label(df)),
    }
    return {name: methods[name] for name in chosen}


#: The column holding the label, for the methods that score.
LABEL_COLUMN = {SCORE: "label", SCORE_ALL: "label", UDF: "p", MLFLOW: "p", MLFLOW_DEFAULT: "p"}


def warm_up(method: str, frame: Any, expected: Any) -> None:
    """Run a method once on the small frame; the labels it scored must be ONNX Runtime's."""
    import numpy as np

    column = LABEL_COLUMN.get(method)
    if column is None:
        noop(frame)
        return
    got = frame.select(column).toPandas()[column].to_numpy()
    differ = len(expected) if len(got) != len(expected) else int(np.sum(got != expected))
    if differ:
        raise SystemExit(f"{method}: {differ} of {len(expected)} labels differ from ONNX Runtime's")


def timed_job(make: Callable[[Any], Any], df: Any) -> tuple[float, float]:
    """Seconds making the scored frame, and seconds in all (the making and the noop job)."""
    started = time.perf_counter()
    scored = make(df)
    made = time.perf_counter() - started
    noop(scored)
    return made, time.perf_counter() - started


# --- one machine --------------------------------------------------------------------------------


def cli_command(package: Path, source: Path, out: Path) -> list[str]:
    """``modelport batch --engine local``, the label only, its report as JSON."""
    return [str(Path(sys.executable).with_name("modelport")), "batch", str(package),
            "-i", str(source), "-o", str(out), "--engine", "local",
            "--columns", ",".join(COLUMNS), "--outputs", "label", "--force", "--json"]  # fmt: skip


def loop_command(onnx_path: Path, source: Path, out: Path) -> list[str]:
    """This script in a fresh process, running :func:`run_loop` (``--loop``)."""
    script = str(Path(__file__).resolve())
    return [sys.executable, script, "--loop", str(onnx_path), str(source), str(out)]


def run_process(command: list[str]) -> tuple[float, float, int]:
    """One scoring process: the seconds it reports, the whole process's, and its rows."""
    wall, done = timed(
        lambda: subprocess.run(command, capture_output=True, text=True, check=False, timeout=900)
    )
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command[:2])} failed ({done.returncode}):\n{done.stderr}")
    found = json.loads(done.stdout)
    return float(found["seconds"]), wall, int(found["rows"])


def run_loop(onnx_path: Path, source: Path, out: Path) -> int:
    """The plain loop: read in batches, stack to float32, run, append the label, write.

    ONNX Runtime and pyarrow are imported here, inside the loop's own timing, as ``modelport
    batch`` imports them inside its report's.
    """
    import numpy as np
    import onnxruntime as ort
    import pyarrow as pa
    import pyarrow.parquet as pq

    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    rows = 0
    writer = None
    try:
        for batch in pq.ParquetFile(source).iter_batches(LOCAL_BATCH):
            frame = batch.to_pandas()
            x = np.column_stack([frame[c].to_numpy(np.float32) for c in COLUMNS])
            frame["label"] = session.run(["label"], {name: x})[0]
            table = pa.Table.from_pandas(frame, preserve_index=False)
            if writer is None:
                writer = pq.ParquetWriter(out, table.schema)
            writer.write_table(table)
            rows += len(frame)
    finally:
        if writer is not None:
            writer.close()
    return rows


def loop_main(paths: list[str]) -> int:
    """``--loop ONNX IN OUT``: run the loop and print its rows and seconds as JSON."""
    import numpy  # noqa: F401  (before the clock starts, as modelport's CLI imports it)
    import pandas  # noqa: F401

    seconds, rows = timed(lambda: run_loop(*map(Path, paths)))
    print(json.dumps({"rows": rows, "seconds": seconds}))
    return 0


# --- the run ------------------------------------------------------------------------------------


def chosen_methods(args: argparse.Namespace) -> tuple[list[str], list[str]]:
    spark = [m for m in SPARK_METHODS if m != SCORE_ALL or args.all_outputs]
    if args.skip_mlflow:
        spark.remove(MLFLOW)
        spark.remove(MLFLOW_DEFAULT)
    return spark, [] if args.skip_local else list(LOCAL_METHODS)


def run(args: argparse.Namespace, results: Results, workdir: Path) -> None:
    import pandas as pd

    from modelport.batch import score

    started = time.perf_counter()
    spark_chosen, local_chosen = chosen_methods(args)
    log(f"work directory: {workdir}")
    source = workdir / "rows.parquet"
    seconds, _ = timed(lambda: write_parquet(source, args.rows))
    log(f"wrote {args.rows:,} rows to {source} in {seconds:.1f} s")
    seconds, paths = timed(
        lambda: build_models(workdir, args.models, args.rf_depth, MLFLOW in spark_chosen)
    )
    log(f"trained and packed {', '.join(args.models)} in {seconds:.1f} s")
    warm_x = features(min(WARMUP_ROWS, args.rows), seed=2)

    results.session_start_s, spark = start_spark()
    log(f"Spark session started in {results.session_start_s:.1f} s")
    try:
        df = spark.read.parquet(str(source)).repartition(args.partitions).cache()
        results.cache_s, count = timed(df.count)
        assert count == args.rows, count
        log(f"cached {count:,} rows in {args.partitions} partitions in {results.cache_s:.1f} s")
        warm_df = spark.createDataFrame(pd.DataFrame(warm_x, columns=COLUMNS))

        methods: dict[str, dict[str, Callable[[Any], Any]]] = {}
        for model in args.models:
            package = str(paths[model]["package"])
            first, _ = timed(lambda p=package: noop(score(df, p, columns=COLUMNS, outputs="label")))
            results.first_job_s[model] = first
            log(f"{model}: first job (modelport score, package shipped and loaded) {first:.1f} s")
            methods[model] = spark_methods(spark, paths[model], spark_chosen)
            expected = onnx_labels(paths[model]["onnx"], warm_x)
            for method, make in methods[model].items():
                seconds, _ = timed(lambda mk=make, m=method, e=expected: warm_up(m, mk(warm_df), e))
                results.warmup_s.setdefault(model, {})[method] = seconds
                checked = ", labels checked" if method in LABEL_COLUMN else ""
                log(f"{model}: warm-up {method}: {seconds:.1f} s{checked}")
        log(f"set up in {time.perf_counter() - started:.0f} s; timing {args.rounds} round(s)")

        for round_ in range(args.rounds):
            for model in args.models:
                for method in rotated([*spark_chosen, *local_chosen], round_):
                    if method in LOCAL_METHODS:
                        out = workdir / f"out-{model}.parquet"
                        command = (
                            cli_command(paths[model]["package"], source, out)
                            if method == CLI
                            else loop_command(paths[model]["onnx"], source, out)
                        )
                        seconds, wall, rows = run_process(command)
                        assert rows == args.rows, (method, rows)
                        add(results.process_seconds, model, method, wall)
                    else:
                        made, seconds = timed_job(methods[model][method], df)
                        add(results.making_seconds, model, method, made)
                    add(results.seconds, model, method, seconds)
                    log(
                        f"round {round_ + 1}: {model} {method}: {seconds:.2f} s "
                        f"({args.rows / seconds:,.0f} rows/s)"
                    )
        df.unpersist()
    finally:
        spark.stop()
    results.total_s = time.perf_counter() - started


# --- the report ---------------------------------------------------------------------------------


def rates(rows: int, seconds: list[float]) -> list[float]:
    return [rows / s for s in seconds]


def median_rate(
    results: Results,
    model: str,
    method: str,
    table: dict[str, dict[str, list[float]]] | None = None,
) -> float | None:
    found = (results.seconds if table is None else table).get(model, {}).get(method)
    return statistics.median(rates(results.rows, found)) if found else None


def ratio(value: float | None, base: float | None) -> str:
    return f"{value / base:.2f}" if value and base else "-"


def spread(rows: int, seconds: list[float]) -> str:
    values = rates(rows, seconds)
    return f"{statistics.median(values):,.0f} | {min(values):,.0f}-{max(values):,.0f}"


def report(results: Results, args: argparse.Namespace) -> str:
    spark_chosen, local_chosen = chosen_methods(args)
    first = ", ".join(f"{m} {s:.2f} s" for m, s in results.first_job_s.items())
    lines = [
        f"Batch scoring: {results.rows:,} rows x {FEATURES} float64 features, "
        f"{results.rounds} interleaved round(s), rows/s medians (min-max). Spark {MASTER}, "
        f"{results.partitions} partitions, the rows cached; noop sink. Models: "
        f"LogisticRegression; RandomForest, 100 trees, max_depth {results.rf_depth}.",
        "versions: " + ", ".join(f"{k} {v}" for k, v in results.versions.items()),
        f"Spark session start (getOrCreate): {results.session_start_s:.2f} s; caching the rows: "
        f"{results.cache_s:.2f} s; first job (modelport score, the package shipped and loaded "
        f"by each worker): {first}",
        "making s: the median seconds making the scored frame on the driver (score(); "
        "spark_udf() and withColumn), part of the time rows/s is from.",
        "",
        "| model | method | rows/s | min-max | ÷ mlflow | ÷ no-model (pandas) "
        "| ÷ no-model (arrow) | making s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for model in args.models:
        bases = [median_rate(results, model, m) for m in (MLFLOW, NOOP_PANDAS, NOOP_ARROW)]
        for method in spark_chosen:
            found = results.seconds.get(model, {}).get(method)
            if found:
                rate = median_rate(results, model, method)
                making = statistics.median(results.making_seconds[model][method])
                lines.append(
                    f"| {model} | {method} | {spread(results.rows, found)} | "
                    + " | ".join(ratio(rate, base) for base in bases)
                    + f" | {making:.2f} |"
                )
    lines.extend(goals(results, args))
    if local_chosen:
        lines += [
            "",
            f"One machine ({os.cpu_count()} cores): the same rows, Parquet file to Parquet file, "
            "each run a fresh process. rows/s of the whole process (interpreter start and "
            "imports included), and by its own clock (modelport: its report; the loop: its "
            "timer, ONNX Runtime's and pyarrow's imports included).",
            "",
            "| model | method | rows/s | min-max | own clock rows/s | ÷ loop "
            "| own clock ÷ loop's |",
            "|---|---|---|---|---|---|---|",
        ]
        for model in args.models:
            whole = results.process_seconds.get(model, {})
            loop_whole = median_rate(results, model, LOOP, results.process_seconds)
            loop_own = median_rate(results, model, LOOP)
            for method in local_chosen:
                if method in whole:
                    rate = median_rate(results, model, method, results.process_seconds)
                    own = median_rate(results, model, method)
                    lines.append(
                        f"| {model} | {method} | {spread(results.rows, whole[method])} "
                        f"| {own or 0:,.0f} | {ratio(rate, loop_whole)} | {ratio(own, loop_own)} |"
                    )
    lines.append("")
    lines.append(f"total: {results.total_s:.0f} s")
    lines.extend(f"note: {n}" for n in results.notes)
    return "\n".join(lines)


def goals(results: Results, args: argparse.Namespace) -> list[str]:
    """The issue's goals: modelport >= 1.5x MLflow's rows/s; >= 85 % of the no-model pass (lr)."""
    lines = []
    for model in args.models:
        mlflow = median_rate(results, model, MLFLOW)
        shipped = median_rate(results, model, MLFLOW_DEFAULT)
        passes = [("pandas", median_rate(results, model, NOOP_PANDAS))]
        passes.append(("arrow", median_rate(results, model, NOOP_ARROW)))
        for method in (SCORE, UDF):
            rate = median_rate(results, model, method)
            if rate is None:
                continue
            parts = []
            for name, base in (("mlflow", mlflow), ("mlflow as shipped", shipped)):
                if base:
                    met = "met" if rate >= 1.5 * base else "NOT met"
                    parts.append(f"{rate / base:.2f}x {name} (>= 1.5x: {met})")
            for name, base in passes if model == "lr" else []:
                if base:
                    met = "met" if rate >= 0.85 * base else "NOT met"
                    parts.append(f"{100 * rate / base:.0f} % of no-model ({name}) (>= 85 %: {met})")
            if parts:
                lines.append(f"goal, {model}, {method}: " + "; ".join(parts))
    return ["", *lines] if lines else []


def versions() -> dict[str, str]:
    found = {"python": platform.python_version()}
    for name in ("modelport", "pyspark", "mlflow-skinny", "onnxruntime", "pyarrow", "pandas",
                 "numpy", "scikit-learn", "skl2onnx"):  # fmt: skip
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return found


def dry_run(args: argparse.Namespace) -> int:
    """Check the imports and tools, print the plan; start nothing."""
    spark_chosen, local_chosen = chosen_methods(args)
    modules = ["numpy", "pandas", "pyarrow.parquet", "sklearn", "skl2onnx", "onnx", "onnxruntime",
               "pyspark.sql", "modelport.batch.spark", "modelport.batch.local"]  # fmt: skip
    if MLFLOW in spark_chosen:
        modules += ["mlflow.onnx", "mlflow.pyfunc"]
    missing = 0
    for module in modules:
        try:
            importlib.import_module(module)
            print(f"{module}: ok")
        except ImportError as exc:
            missing += 1
            print(f"{module}: MISSING ({exc})")
    tools = {"java": shutil.which("java")}
    if local_chosen:
        cli = Path(sys.executable).with_name("modelport")
        tools["modelport CLI"] = str(cli) if cli.exists() else None
    for name, found in tools.items():
        print(f"{name}: {found or 'MISSING'}")
        missing += found is None
    runs = args.rounds * len(args.models) * (len(spark_chosen) + len(local_chosen))
    print(
        f"plan: {args.rows:,} rows x {FEATURES} features, models {','.join(args.models)} "
        f"(RandomForest: 100 trees, max_depth {args.rf_depth}), Spark {MASTER} with "
        f"{args.partitions} partitions; {args.rounds} round(s) x {len(args.models)} model(s) x "
        f"{len(spark_chosen) + len(local_chosen)} method(s): {runs} timed runs"
    )
    print("spark methods: " + ", ".join(spark_chosen))
    print("one-machine methods: " + (", ".join(local_chosen) or "none"))
    return 1 if missing else 0


def _names(text: str) -> list[str]:
    return [x for x in text.split(",") if x]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0] if __doc__ else None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=textwrap.dedent(__doc__ or "").split("\n\n", 1)[-1],
    )
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows scored (default 1M)")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (default 3)")
    parser.add_argument(
        "--models", type=_names, default=list(MODELS), help="subset of lr,rf (default both)"
    )
    parser.add_argument("--rf-depth", type=int, default=10, help="the forest's max_depth (10)")
    parser.add_argument(
        "--partitions", type=int, default=4, help="partitions of the cached DataFrame (4)"
    )
    parser.add_argument(
        "--all-outputs", action="store_true", help="also time modelport score with every output"
    )
    parser.add_argument("--skip-mlflow", action="store_true", help="leave MLflow's spark_udf out")
    parser.add_argument("--skip-local", action="store_true", help="leave the one-machine table out")
    parser.add_argument("--workdir", help="keep the rows, models and outputs here")
    parser.add_argument("--json", help="also write every sample to this file")
    parser.add_argument(
        "--dry-run", action="store_true", help="check the imports and print the plan; run nothing"
    )
    # The plain loop's own process: --loop ONNX IN OUT (run by the benchmark itself).
    parser.add_argument("--loop", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.loop:
        return loop_main(args.loop)
    if not args.models or set(args.models) - set(MODELS):
        parser.error(f"--models: choose from {', '.join(MODELS)}")
    if args.rows < 1000 or args.rounds < 1 or args.partitions < 1:
        parser.error("--rows must be at least 1000, --rounds and --partitions at least 1")
    if args.dry_run:
        return dry_run(args)
    # Nothing leaves this machine: no telemetry; MLflow's tracking in the work directory.
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("DO_NOT_TRACK", "true")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="batch-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("MLFLOW_TRACKING_URI", (workdir / "mlruns").as_uri())
    results = Results(args.rows, args.rounds, args.rf_depth, args.partitions, versions())
    try:
        run(args, results, workdir)
    finally:
        if not args.workdir:
            shutil.rmtree(workdir, ignore_errors=True)
    print(report(results, args))
    if args.json:
        Path(args.json).write_text(json.dumps(asdict(results), indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
