"""Batch scoring on Apache Spark: :func:`spark_udf` and :func:`score`, classic or Spark Connect.

The driver verifies the package, ships it to the executors once per session (``addFile``, or a
Spark Connect artifact) and checks the DataFrame's schema against the signature before a job
starts. Each executor's Python worker verifies the package against the driver's digest and loads
it once (:mod:`modelport.batch.worker`), with one ONNX Runtime thread (Spark runs one task per
core), and scores Arrow batches (:class:`~modelport.batch.arrow.Scorer`): ``mapInArrow`` for
:func:`score`, an iterator Arrow UDF for :func:`spark_udf`. The batch size is Spark's
``spark.sql.execution.arrow.maxRecordsPerBatch`` (10,000 rows unless set).
"""

from __future__ import annotations

import atexit
import functools
import importlib
import os
import shutil
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from modelport.batch import worker
from modelport.batch.arrow import Scorer, arrow_column, is_vector, pyarrow
from modelport.batch.local import (
    BatchReport,
    check_output,
    commit,
    formats,
    remove,
    temporary_sibling,
)
from modelport.batch.plan import (
    ARRAY,
    VECTOR,
    Column,
    Output,
    Plan,
    check_on_null,
    element_column,
    feeds_losslessly,
    make_plan,
    plan_outputs,
)
from modelport.errors import InputError, MissingDependencyError, UsageError
from modelport.model_format.archive import is_archive, write_archive
from modelport.model_format.locate import locate
from modelport.model_format.package import Package, open_package
from modelport.model_format.paths import make_temp_dir
from modelport.model_format.signature import Signature

PackageSource = str | os.PathLike[str] | Package

#: Spark's SQL type names for the dtypes outputs are written in.
SPARK_TYPES = {
    "bool": "boolean",
    "int8": "tinyint",
    "int16": "smallint",
    "int32": "int",
    "int64": "bigint",
    "float32": "float",
    "float64": "double",
    "string": "string",
}
#: And back, for reading a DataFrame's schema (``DataType.typeName()``).
_DTYPES = {
    "boolean": "bool",
    "byte": "int8",
    "short": "int16",
    "integer": "int32",
    "long": "int64",
    "float": "float32",
    "double": "float64",
    "string": "string",
    "varchar": "string",
    "char": "string",
}


def _pyspark(module: str = "pyspark") -> Any:
    try:
        return importlib.import_module(module)
    except ImportError:
        raise MissingDependencyError("scoring on Spark", "spark", "pyspark") from None


def is_connect(spark: Any) -> bool:
    """Whether ``spark`` (a session or DataFrame) is Spark Connect's (``sc://``), not classic."""
    return type(spark).__module__.startswith("pyspark.sql.connect")


# --- shipping the package -----------------------------------------------------------------------


@dataclass(frozen=True)
class Shipped:
    """A package verified on the driver and made available to a session's executors.

    Attributes:
        digest: the package digest every executor checks it against.
        file_name: its name among the session's files (``SparkFiles.get``).
        signature: its signature.
        allow_code: whether it may run code it carries.
    """

    digest: str
    file_name: str
    signature: Signature
    allow_code: bool


_ship_lock = threading.Lock()
_staging: list[Path] = []
_shipped: set[tuple[str, str]] = set()
# Archives verified in this process, by what tells them unchanged: verifying a large model
# takes a while, and every score() or spark_udf() call ships its package.
_verified: dict[tuple[str, int, int, int, int], Shipped] = {}


def _staging_dir() -> Path:
    if not _staging:
        directory = make_temp_dir("modelport-batch-")
        atexit.register(shutil.rmtree, directory, ignore_errors=True)
        _staging.append(directory)
    return _staging[0]


def _session_key(spark: Any) -> str:
    if is_connect(spark):
        return f"connect:{spark.session_id}"
    return f"classic:{spark.sparkContext.applicationId}"


def ship(spark: Any, package: PackageSource, *, allow_code: bool = False) -> Shipped:
    """Verify ``package`` and add it to ``spark``'s files, once per session and package.

    A package directory is shipped as its archive (one file, the same digest). The staged copy
    lives in a private temporary directory until this process ends. An archive is verified
    once while it stays the same file (path, inode, size and time); a directory every time.
    Executors verify what they receive against the digest either way.

    Raises:
        PackageError: the package is missing, invalid or tampered with.
        CodeExecutionRefused: it runs code and ``allow_code`` is not set.
    """
    # A URI is fetched here, on the driver, into the package cache: executors get the file.
    source = (
        package.path if isinstance(package, Package) else locate(package, allow_code=allow_code)
    )
    with _ship_lock:
        known = _archive_identity(source)
        shipped = _verified.get(known) if known is not None else None
        if shipped is None or shipped.allow_code != allow_code:
            shipped = _stage(source, allow_code)
            if known is not None:
                _verified[known] = shipped
        key = (_session_key(spark), shipped.digest)
        if key not in _shipped:
            staged = str(_staging_dir() / shipped.file_name)
            if is_connect(spark):
                spark.addArtifacts(staged, file=True)
            else:
                spark.sparkContext.addFile(staged)
            _shipped.add(key)
    return shipped


def _archive_identity(source: Path) -> tuple[str, int, int, int, int] | None:
    """What tells an archive unchanged since it was verified (a directory: nothing does)."""
    try:
        info = source.stat()
    except OSError:
        return None  # open_package says what is wrong
    if not is_archive(source) or source.is_dir():
        return None
    return (str(source.resolve()), info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns)


def _stage(source: Path, allow_code: bool) -> Shipped:
    """Verify the package and put its archive in the staging directory, named by its digest."""
    with open_package(source, allow_code=allow_code) as opened:
        manifest = opened.manifest
        file_name = f"modelport-{manifest.digest.removeprefix('sha256:')[:32]}.mport"
        staged = _staging_dir() / file_name
        if not staged.exists():
            if opened.extracted:
                tmp = staged.with_name(f".{file_name}.tmp")
                shutil.copyfile(source, tmp)
                tmp.replace(staged)
            else:
                write_archive(opened.directory, manifest, staged)
    return Shipped(manifest.digest, file_name, manifest.signature, allow_code)


def _locate(file_name: str) -> str:
    from pyspark import SparkFiles

    return SparkFiles.get(file_name)


def _package(shipped: Shipped) -> Package:
    """On an executor: the shipped package, verified and loaded once per Python worker."""
    return worker.package(
        shipped.digest, functools.partial(_locate, shipped.file_name), allow_code=shipped.allow_code
    )


# --- schemas --------------------------------------------------------------------------------


def spark_column(field: Any) -> Column:
    """Describe a Spark ``StructField`` as a plan's column."""
    kind = field.dataType
    if type(kind).__name__ == "VectorUDT":
        return Column(field.name, VECTOR, nullable=field.nullable)
    if kind.typeName() == "array":
        element = kind.elementType
        name = _DTYPES.get(element.typeName(), element.simpleString())
        return Column(field.name, ARRAY, name, field.nullable)
    return Column(
        field.name, _DTYPES.get(kind.typeName(), kind.simpleString()), None, field.nullable
    )


def spark_type(output: Output) -> str:
    """An output's Spark SQL type, such as ``double`` or ``array<float>``."""
    name = SPARK_TYPES[output.dtype]
    return name if output.width is None else f"array<{name}>"


def _quoted(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"


# --- score(df, package) ---------------------------------------------------------------------


def score(
    df: Any,
    package: PackageSource,
    *,
    outputs: str | Sequence[str] | None = None,
    prefix: str = "",
    columns: Sequence[str] | None = None,
    on_null: str = "error",
    allow_code: bool = False,
) -> Any:
    """Score a Spark DataFrame: every column kept, one column appended per output.

    Inputs take the columns of their names; a model with one ``[-1, k]`` input also takes the
    ``k`` feature columns (all of them, or ``columns``) in order, or one array or vector column.
    The schema is checked here, on the driver, before any job runs.

    Args:
        df: a classic or Spark Connect DataFrame.
        package: the package: a directory or ``.mport`` archive, a storage or MLflow URI (see
            :func:`modelport.locate`), or a loaded :class:`Package`.
        outputs: the outputs to append (a name or names); all of them when None.
        prefix: put before each output's name to make its column's name.
        columns: the columns that feed the model, when not all of them do.
        on_null: ``error`` (the default), ``skip`` (rows with a null feature get null
            outputs) or ``nan`` (nulls become NaN; float inputs only).
        allow_code: allow a package that runs code it carries (``python`` flavor).

    Returns:
        A DataFrame (lazy, as every Spark transformation).

    Raises:
        InputError: the DataFrame cannot feed the model; the message names each column.
        UsageError: an unknown output or null policy.
        PackageError: the package is invalid.
    """
    _pyspark()
    shipped = ship(df.sparkSession, package, allow_code=allow_code)
    scored, _ = _score(
        df, shipped, outputs=outputs, prefix=prefix, columns=columns, on_null=on_null
    )
    return scored


def _score(
    df: Any,
    shipped: Shipped,
    *,
    outputs: str | Sequence[str] | None,
    prefix: str,
    columns: Sequence[str] | None,
    on_null: str,
) -> tuple[Any, Plan]:
    types = importlib.import_module("pyspark.sql.types")
    schema = df.schema
    plan = make_plan(
        [spark_column(f) for f in schema.fields],
        shipped.signature,
        columns=columns,
        outputs=outputs,
        prefix=prefix,
        on_null=on_null,
    )
    fields = [*schema.fields]
    for output in plan.outputs:
        fields.append(
            types.StructField(output.column, types.DataType.fromDDL(spark_type(output)), True)
        )
    scored = df.mapInArrow(functools.partial(_map_batches, shipped, plan), types.StructType(fields))
    return scored, plan


def _map_batches(shipped: Shipped, plan: Plan, batches: Iterator[Any]) -> Iterator[Any]:
    """On an executor: each record batch with the outputs appended."""
    scorer = Scorer(_package(shipped), plan)
    for batch in batches:
        yield scorer.append(batch)


# --- spark_udf(spark, package) --------------------------------------------------------------


class ModelUDF:
    """A package as a Spark column function: ``df.withColumn("p", udf("a", "b"))``.

    Made by :func:`spark_udf`. Called with columns (names or ``Column`` expressions), or one
    ``struct(...)``, or nothing (the columns named as the model's inputs), it gives a
    ``Column``.

    Attributes:
        digest: the package's digest.
        return_type: the column's Spark SQL type (DDL).
    """

    def __init__(
        self,
        shipped: Shipped,
        outputs: tuple[Output, ...],
        return_type: str,
        cast: Any,
        on_null: str,
    ) -> None:
        self.digest = shipped.digest
        self.return_type = return_type
        self._inputs = shipped.signature.input_names
        functions = _pyspark("pyspark.sql.functions")
        self._udf = functions.arrow_udf(
            _iterator_udf(
                functools.partial(
                    _udf_batches, shipped, outputs, cast, on_null, return_type.startswith("struct<")
                )
            ),
            return_type,
        )

    def __call__(self, *columns: Any) -> Any:
        """The model's outputs for these columns, as one ``Column``.

        A column's type is not known until Spark runs the UDF: the columns are checked
        against the signature on each task's first batch, with the messages of
        :func:`score`, which checks on the driver.
        """
        functions = _pyspark("pyspark.sql.functions")
        return self._udf(functions.struct(*(columns or self._inputs)))


def _udf_plan(
    table: Sequence[Column], signature: Signature, outputs: tuple[Output, ...], on_null: str
) -> Plan:
    return make_plan(
        table,
        signature,
        columns=[c.name for c in table],
        outputs=[o.name for o in outputs],
        on_null=on_null,
        keep=False,
    )


def _iterator_udf(score: Callable[[Iterator[Any]], Iterator[Any]]) -> Any:
    """``score`` as the function an iterator Arrow UDF takes: Spark reads its type hints."""
    pa = pyarrow()

    def score_batches(batches: Iterator[Any]) -> Iterator[Any]:
        return score(batches)

    # Real types, not the strings ``from __future__ import annotations`` leaves.
    arrays = Iterator[pa.Array]  # type: ignore[name-defined]
    score_batches.__annotations__ = {"batches": arrays, "return": arrays}
    return score_batches


def _udf_batches(
    shipped: Shipped,
    outputs: tuple[Output, ...],
    cast: Any,
    on_null: str,
    as_struct: bool,
    batches: Iterator[Any],
) -> Iterator[Any]:
    """On an executor: each batch of the packed columns (a struct array) scored."""
    pa = pyarrow()
    scorer: Scorer | None = None
    for packed in batches:
        fields = list(packed.type)
        values = packed
        if (
            len(fields) == 1
            and pa.types.is_struct(fields[0].type)
            and not is_vector(fields[0].type)
        ):
            # udf(struct(a, b)) is udf(a, b).
            values, fields = packed.flatten()[0], list(fields[0].type)
        if scorer is None:
            plan = _udf_plan([arrow_column(f) for f in fields], shipped.signature, outputs, on_null)
            scorer = Scorer(_package(shipped), plan)
        columns = dict(zip([f.name for f in fields], values.flatten(), strict=True))
        arrays = scorer.score(columns, len(packed))
        if not as_struct:
            yield arrays[0] if cast is None else arrays[0].cast(cast)
        else:
            result = pa.StructArray.from_arrays(arrays, names=[o.name for o in outputs])
            yield result if cast is None else result.cast(cast)


def spark_udf(
    spark: Any,
    package: PackageSource,
    *,
    outputs: str | Sequence[str] | None = None,
    result_type: Any = None,
    on_null: str = "error",
    allow_code: bool = False,
) -> ModelUDF:
    """A package as a Spark column function, like MLflow's ``spark_udf``, on Arrow batches.

    ``df.withColumn("p", udf("a", "b"))`` (or ``udf(struct(...))``, or ``udf()`` for the
    columns named as the model's inputs). Columns feed inputs as in :func:`score`. The column
    holds the one output asked for, or a struct of several (each output's type: a value, or an
    array such as ``array<float>`` for probabilities).

    Args:
        spark: a classic or Spark Connect session.
        package: the package: a directory or ``.mport`` archive, a storage or MLflow URI (see
            :func:`modelport.locate`), or a loaded :class:`Package`.
        outputs: the output, or outputs (a struct), the column holds; all of them when None.
        result_type: a Spark type (or DDL string) to give the column instead; for a struct,
            its fields name the outputs. Its values must hold the outputs' without loss.
        on_null: ``error``, ``skip`` (null outputs) or ``nan`` (float inputs only).
        allow_code: allow a package that runs code it carries (``python`` flavor).

    Raises:
        UsageError: an unknown output, a ``result_type`` that cannot hold them, or an unknown
            null policy.
        PackageError: the package is invalid.
    """
    _pyspark()
    types = importlib.import_module("pyspark.sql.types")
    shipped = ship(spark, package, allow_code=allow_code)
    check_on_null(on_null)
    cast = None
    if result_type is None:
        chosen = plan_outputs(shipped.signature, outputs)
        return_type = _return_type(chosen)
    else:
        wanted = (
            types.DataType.fromDDL(result_type) if isinstance(result_type, str) else result_type
        )
        chosen, return_type = _result_type(shipped.signature, outputs, wanted)
        cast = importlib.import_module("pyspark.sql.pandas.types").to_arrow_type(wanted)
    return ModelUDF(shipped, tuple(chosen), return_type, cast, on_null)


def _return_type(outputs: Sequence[Output]) -> str:
    if len(outputs) == 1:
        return spark_type(outputs[0])
    return "struct<" + ", ".join(f"{_quoted(o.name)}: {spark_type(o)}" for o in outputs) + ">"


def _result_type(
    signature: Signature, outputs: str | Sequence[str] | None, wanted: Any
) -> tuple[list[Output], str]:
    """The outputs a ``result_type`` holds, checked to hold them without loss."""
    if wanted.typeName() == "struct":
        names = [f.name for f in wanted.fields]
        if (
            outputs is not None
            and list([outputs] if isinstance(outputs, str) else outputs) != names
        ):
            raise UsageError("result_type's fields must be the outputs asked for, in order")
        chosen = plan_outputs(signature, names)
        targets = [f.dataType for f in wanted.fields]
    else:
        chosen = plan_outputs(signature, outputs)
        if len(chosen) != 1:
            raise UsageError(
                f"result_type {wanted.simpleString()} holds one output, and the model has "
                f"{len(chosen)}; choose one with outputs=, or give a struct type"
            )
        targets = [wanted]
    for output, target in zip(chosen, targets, strict=True):
        problem = _cast_problem(output, target)
        if problem:
            raise UsageError(
                f"result_type: output {output.name!r} ({spark_type(output)}) {problem}"
            )
    return chosen, wanted.simpleString()


def _cast_problem(output: Output, target: Any) -> str | None:
    if output.width is not None:
        if target.typeName() != "array":
            return f"is an array per row, not {target.simpleString()}"
        target = target.elementType
    elif target.typeName() == "array":
        return f"is one value per row, not {target.simpleString()}"
    name = _DTYPES.get(target.typeName())
    if name == "string" or (name is not None and feeds_losslessly(output.dtype, name)):
        return None
    return f"cannot become {target.simpleString()} without loss"


# --- modelport batch --engine spark ---------------------------------------------------------


def session(master: str | None, confs: Mapping[str, str]) -> Any:
    """A Spark session for ``modelport batch``: ``sc://`` is Spark Connect, anything else classic.

    Args:
        master: ``local[N]``, ``local-cluster[...]``, ``spark://…``, ``sc://…``; default:
            ``SPARK_REMOTE`` when set, else ``local[*]``.
        confs: Spark settings.
    """
    sql = _pyspark("pyspark.sql")
    builder = sql.SparkSession.builder.appName("modelport batch")
    if master is None and os.environ.get("SPARK_REMOTE"):
        builder = builder.remote(os.environ["SPARK_REMOTE"])
    elif master is not None and master.startswith("sc://"):
        builder = builder.remote(master)
    else:
        # A classic master was asked for: pyspark would still go remote if this process (or
        # the one that started it) ever made a Spark Connect session, which these mark.
        for name in ("SPARK_CONNECT_MODE_ENABLED", "SPARK_REMOTE"):
            os.environ.pop(name, None)
        builder = builder.master(master or "local[*]")
    for key, value in confs.items():
        builder = builder.config(key, value)
    return builder.getOrCreate()


def score_path(
    package: PackageSource,
    input: str | os.PathLike[str],
    output: str | os.PathLike[str],
    master: str | None = None,
    confs: Mapping[str, str] | None = None,
    *,
    input_format: str | None = None,
    output_format: str | None = None,
    outputs: str | Sequence[str] | None = None,
    prefix: str = "",
    columns: Sequence[str] | None = None,
    on_null: str = "error",
    overwrite: bool = False,
    allow_code: bool = False,
) -> BatchReport:
    """Score a file with Spark, writing Spark's output directory whole or not at all.

    The input is read by Spark (CSV with a header, its types inferred; JSON lines; Parquet).
    The output is written under a temporary name beside ``output`` and renamed when the job
    has succeeded, so ``output`` must be a path this machine shares with the executors (on
    Spark Connect: with the server). Options are :func:`score`'s and
    :func:`~modelport.batch.local.score_file`'s.

    Raises:
        the errors of :func:`score`, and whatever Spark raises when a task fails.
    """
    started = time.perf_counter()
    source, destination = Path(input), Path(output)
    in_format, out_format = formats(source, destination, input_format, output_format)
    check_output(destination, overwrite=overwrite)
    spark = session(master, confs or {})
    tmp = temporary_sibling(destination)
    try:
        shipped = ship(spark, package, allow_code=allow_code)
        df = _read(spark, source, in_format)
        scored, plan = _score(
            df, shipped, outputs=outputs, prefix=prefix, columns=columns, on_null=on_null
        )
        _write(scored, plan, tmp, out_format)
        commit(tmp, destination)
        rows = _read(spark, destination, out_format).count()
    except BaseException:
        remove(tmp)
        raise
    finally:
        spark.stop()
    return BatchReport(
        destination,
        out_format,
        rows,
        time.perf_counter() - started,
        0,
        tuple(o.column for o in plan.outputs),
    )


def _read(spark: Any, path: Path, fmt: str) -> Any:
    reader = spark.read
    if fmt == "csv":
        return reader.option("header", "true").option("inferSchema", "true").csv(str(path))
    if fmt == "jsonl":
        return reader.json(str(path))
    return reader.parquet(str(path))


def _write(df: Any, plan: Plan, path: Path, fmt: str) -> None:
    if fmt == "parquet":
        df.write.parquet(str(path))
        return
    if fmt == "jsonl":
        df.write.json(str(path))
        return
    # CSV holds no arrays: an array output becomes a column per element.
    functions = _pyspark("pyspark.sql.functions")
    selected = []
    arrays = {o.column: o for o in plan.outputs if o.width is not None}
    for name in df.columns:
        output = arrays.get(name)
        if output is None:
            selected.append(functions.col(_quoted(name)))
            continue
        width = output.width or 0  # -1: no fixed length
        if width < 1:
            raise InputError(
                f"output {output.name!r} is an array of no fixed length; CSV cannot hold it "
                "(write Parquet or JSON lines)"
            )
        column = functions.col(_quoted(name))
        selected.extend(column[i].alias(element_column(name, i)) for i in range(width))
    df.select(*selected).write.option("header", "true").csv(str(path))
