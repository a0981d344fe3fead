"""``modelport batch``: score a file with a package, on this machine or on Spark."""

from __future__ import annotations

import re
import sys
import time
from pathlib import Path
from typing import Any

import click

from modelport.cli._io import (
    emit_json,
    end_at_once,
    existing,
    key_values,
    package_arg,
    storage_option,
)
from modelport.errors import (
    EnvironmentProblem,
    InputError,
    ModelError,
    ModelportError,
    PackageError,
    UsageError,
)

#: How often a progress line is written when stderr is not a terminal (a log), in seconds.
LOG_EVERY = 5.0


def _names(value: str | None) -> list[str] | None:
    if value is None:
        return None
    names = [n.strip() for n in value.split(",") if n.strip()]
    if not names:
        raise UsageError("a list of names must name at least one")
    return names


class _ProgressLine:
    """Rows written and rows/s on stderr: redrawn on a terminal, a line now and then in a log."""

    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet
        self.tty = sys.stderr.isatty()
        self.started = time.perf_counter()
        self.shown = 0.0

    def __call__(self, rows: int, total: int | None) -> None:
        if self.quiet:
            return
        now = time.perf_counter()
        first = self.shown == 0.0
        if not first and now - self.shown < (0.2 if self.tty else LOG_EVERY):
            return
        self.shown = now
        elapsed = max(now - self.started, 1e-9)
        done = f"{rows:,} rows" if total is None else f"{rows:,} / {total:,} rows"
        if total:
            done += f" ({100 * rows / total:.0f}%)"
        line = f"scoring: {done}, {rows / elapsed:,.0f} rows/s"
        if self.tty:
            click.echo(f"\r{line}\x1b[K", err=True, nl=False)
        else:
            click.echo(line, err=True)

    def end(self) -> None:
        if self.tty and self.shown and not self.quiet:
            click.echo("", err=True)


@click.command()
@click.argument("ref", metavar="PACKAGE")
@click.option(
    "-i",
    "--input",
    "input_path",
    required=True,
    type=click.Path(path_type=Path),
    help="The file to score: Parquet (a file or directory), CSV or JSON lines.",
)
@click.option(
    "-o",
    "--output",
    "output_path",
    required=True,
    type=click.Path(path_type=Path),
    help="Where to write the rows with their predictions (written whole, or not at all).",
)
@click.option(
    "--format",
    "output_format",
    type=click.Choice(["parquet", "csv", "jsonl"]),
    help="The output's format. Default: from its name, else the input's.",
)
@click.option(
    "--input-format",
    type=click.Choice(["parquet", "csv", "jsonl"]),
    help="The input's format. Default: from its name (a directory: Parquet).",
)
@click.option(
    "--engine",
    type=click.Choice(["local", "spark"]),
    help="local: this machine, every core (the default); spark: a Spark session "
    "(the default when --spark-master is given).",
)
@click.option(
    "--spark-master",
    help="Spark's master: local[N], local-cluster[...], spark://HOST:PORT, or sc://HOST:PORT "
    "(Spark Connect). Default: local[*].",
)
@click.option(
    "--conf",
    "confs",
    multiple=True,
    metavar="KEY=VALUE",
    help="A Spark setting for the session (repeatable).",
)
@click.option("--outputs", help="The outputs to add, comma-separated. Default: all of them.")
@click.option("--prefix", default="", help="Put before each output's name to name its column.")
@click.option(
    "--columns", help="The columns that feed the model, comma-separated, when not all of them do."
)
@click.option(
    "--on-null",
    type=click.Choice(["error", "skip", "nan"]),
    default="error",
    show_default=True,
    help="A null in a feeding column: an error; skip (the row gets null outputs); nan (float "
    "inputs).",
)
@click.option(
    "--batch-size",
    type=click.IntRange(min=1),
    default=None,
    help="Rows scored at a time. Default: 65536 (local), Spark's 10000 (spark).",
)
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    default=None,
    help="Scoring threads (local). Default: one per CPU.",
)
@click.option("--force", is_flag=True, help="Replace the output if it exists.")
@click.option("--allow-code", is_flag=True, help="Allow packages that run code they carry.")
@click.option("-q", "--quiet", is_flag=True, help="No progress lines.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@storage_option
def batch(
    ref: str,
    input_path: Path,
    output_path: Path,
    output_format: str | None,
    input_format: str | None,
    engine: str | None,
    spark_master: str | None,
    confs: tuple[str, ...],
    outputs: str | None,
    prefix: str,
    columns: str | None,
    on_null: str,
    batch_size: int | None,
    workers: int | None,
    force: bool,
    allow_code: bool,
    quiet: bool,
    storage_options: tuple[str, ...],
    as_json: bool,
) -> None:
    """Score a file with PACKAGE: every row kept, a column added per output."""
    package = package_arg(ref, storage_options, allow_code=allow_code)
    existing(input_path)
    chosen = engine or ("spark" if spark_master or confs else "local")
    if chosen == "local" and (spark_master or confs):
        raise UsageError("--spark-master and --conf are for --engine spark")
    if chosen == "spark" and workers is not None:
        raise UsageError("--workers is for --engine local (Spark runs a task per core)")
    options: dict[str, Any] = {
        "input_format": input_format,
        "output_format": output_format,
        "outputs": _names(outputs),
        "prefix": prefix,
        "columns": _names(columns),
        "on_null": on_null,
        "overwrite": force,
        "allow_code": allow_code,
    }
    if chosen == "local":
        from modelport.batch.local import DEFAULT_BATCH_SIZE, is_stream, score_file

        line = _ProgressLine(quiet or as_json)
        try:
            report = score_file(
                package,
                input_path,
                output_path,
                batch_size=batch_size or DEFAULT_BATCH_SIZE,
                workers=workers,
                progress=line,
                **options,
            )
        except (KeyboardInterrupt, ModelportError):
            line.end()
            if is_stream(input_path):
                # Arrow's reading threads may wait on the pipe forever: the process would not
                # exit until it moves. The output is removed and the package closed already.
                end_at_once()
            raise
        line.end()
    else:
        settings = key_values(confs, "--conf")
        report = _spark_batch(
            package, input_path, output_path, spark_master, settings, batch_size, options
        )
    if as_json:
        emit_json(report.to_dict())
    else:
        click.echo(
            f"scored {report.rows:,} rows in {report.seconds:.2f} s "
            f"({report.rows_per_second:,.0f} rows/s) -> {report.output}",
            err=True,
        )


def _spark_batch(
    package: Path,
    input_path: Path,
    output_path: Path,
    master: str | None,
    confs: dict[str, str],
    batch_size: int | None,
    options: dict[str, Any],
) -> Any:
    from modelport.batch.spark import score_path

    if batch_size is not None:
        confs.setdefault("spark.sql.execution.arrow.maxRecordsPerBatch", str(batch_size))
    try:
        return score_path(package, input_path, output_path, master, confs, **options)
    except ModelportError:
        raise
    except Exception as exc:
        raise _from_spark(exc) from exc


#: What a modelport error raised in a Spark task looks like in the driver's exception.
_TASK_ERROR = re.compile(r"modelport\.errors\.(\w+): ([^\n]+)")
_KINDS: dict[str, type[ModelportError]] = {
    "InputError": InputError,
    "ModelError": ModelError,
    "PackageError": PackageError,
    "IntegrityError": PackageError,
    "DigestMismatch": PackageError,
}


def _from_spark(exc: Exception) -> ModelportError:
    """A Spark failure as modelport's error: a task's own message, not the JVM's traceback."""
    found = _TASK_ERROR.findall(str(exc))
    if found:
        kind, message = found[-1]
        return _KINDS.get(kind, InputError)(f"a Spark task failed: {message}")
    text = " ".join(str(exc).split())[:500]
    return EnvironmentProblem(f"Spark failed: {type(exc).__name__}: {text}")
