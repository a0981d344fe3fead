"""Batch scoring on one machine: a Parquet, CSV or JSON lines file in, the same rows scored out.

The input is streamed in Arrow batches (pyarrow, the ``batch`` extra) by a reader thread,
scored by one thread per core (each call to ONNX Runtime on one thread, the package loaded once),
and written in order. The schema is checked against the signature before a row is scored, and
the output is written under a temporary name beside its destination and renamed when complete:
a failure or an interrupt leaves no output, whole or partial.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import queue
import shutil
import stat
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from modelport.batch.arrow import Scorer, arrow_column, is_list, output_type, pyarrow
from modelport.batch.plan import Plan, element_column, make_plan, one_value_per_row
from modelport.errors import InputError, NoSuchFile, UsageError, quote_name
from modelport.model_format.flavors.onnx import usable_cpus
from modelport.model_format.locate import load
from modelport.model_format.package import Package
from modelport.model_format.signature import DTYPES, Signature

#: The file formats, and the name endings that tell them.
FORMATS = ("parquet", "csv", "jsonl")
_SUFFIXES = {
    ".parquet": "parquet",
    ".pq": "parquet",
    ".parq": "parquet",
    ".csv": "csv",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "jsonl",
}
#: Rows per batch unless told: large enough that per-batch costs vanish, small enough to stream.
DEFAULT_BATCH_SIZE = 65_536
#: Bytes a CSV or JSON reader parses at a time.
_BLOCK_SIZE = 8 << 20
#: Progress is the rows written so far, and the rows there are (None when unknown).
Progress = Callable[[int, "int | None"], None]


def file_format(path: Path, given: str | None = None) -> str:
    """The format of ``path``: ``given``, or what its name ends with (a directory: Parquet).

    Raises:
        UsageError: an unknown format, or a name that tells none.
    """
    if given is not None:
        if given not in FORMATS:
            raise UsageError(f"unknown format {given!r}; the formats are {', '.join(FORMATS)}")
        return given
    found = _SUFFIXES.get(path.suffix.lower())
    if found is None and path.is_dir():
        found = "parquet"
    if found is None:
        raise UsageError(
            f"cannot tell the format of {path} from its name; name it (one of {', '.join(FORMATS)})"
        )
    return found


def formats(
    source: Path, destination: Path, input_format: str | None, output_format: str | None
) -> tuple[str, str]:
    """The input's format and the output's: as given, else by their names.

    An output whose name tells no format takes the input's.

    Raises:
        UsageError: an unknown format, or an input whose name tells none.
    """
    in_format = file_format(source, input_format)
    named = _SUFFIXES.get(destination.suffix.lower())
    return in_format, file_format(destination, output_format or named or in_format)


@dataclass(frozen=True)
class BatchReport:
    """What a batch run did.

    Attributes:
        output: the file written.
        format: its format.
        rows: the rows scored (and written).
        seconds: the wall time, reading and writing included.
        workers: the scoring threads.
        outputs: the output columns appended.
    """

    output: Path
    format: str
    rows: int
    seconds: float
    workers: int
    outputs: tuple[str, ...]

    @property
    def rows_per_second(self) -> float:
        """Rows scored per second of wall time."""
        return self.rows / self.seconds if self.seconds > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        """The report as JSON-ready values."""
        return {
            "output": str(self.output),
            "format": self.format,
            "rows": self.rows,
            "seconds": round(self.seconds, 3),
            "rows_per_second": round(self.rows_per_second, 1),
            "workers": self.workers,
            "outputs": list(self.outputs),
        }


def check_output(output: Path, *, overwrite: bool) -> None:
    """Refuse an output that exists (unless ``overwrite``) or whose directory does not.

    Raises:
        UsageError: either.
    """
    if (output.exists() or output.is_symlink()) and not overwrite:
        raise UsageError(f"{output} already exists; choose another output, or replace it (--force)")
    if not output.parent.is_dir():
        raise UsageError(f"{output.parent} is not a directory: the output cannot be written there")


def temporary_sibling(output: Path) -> Path:
    """A new, unused name beside ``output`` to write it under until it is complete."""
    fd, name = tempfile.mkstemp(
        prefix=f".{output.name}.", suffix=".modelport-tmp", dir=output.parent
    )
    os.close(fd)
    os.unlink(name)
    return Path(name)


def commit(tmp: Path, output: Path) -> None:
    """Put the complete ``tmp`` in ``output``'s place (a file, or Spark's directory).

    A file over a file is replaced in one step; where either is a directory, what was there
    goes first (a rename cannot put one over the other).
    """
    if output.exists() and (tmp.is_dir() or output.is_dir()):
        remove(output)
    os.replace(tmp, output)


def remove(path: Path) -> None:
    """Remove a temporary output, file or directory, if it is there."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def score_file(
    package: str | os.PathLike[str] | Package,
    input: str | os.PathLike[str],
    output: str | os.PathLike[str],
    *,
    input_format: str | None = None,
    output_format: str | None = None,
    outputs: str | Sequence[str] | None = None,
    prefix: str = "",
    columns: Sequence[str] | None = None,
    on_null: str = "error",
    batch_size: int = DEFAULT_BATCH_SIZE,
    workers: int | None = None,
    overwrite: bool = False,
    allow_code: bool = False,
    progress: Progress | None = None,
) -> BatchReport:
    """Score a file on this machine, every input column kept and one column added per output.

    Columns feed the model as in :func:`modelport.batch.score`. A CSV or JSON lines input's
    columns named as inputs are read as the inputs' types. In a CSV output an array column
    (such as ``probabilities``) becomes one column per element: ``probabilities_0``, ….

    Args:
        package: the package (a directory or ``.mport`` archive, a storage or MLflow URI, or a
            loaded one).
        input: the file (a Parquet directory too).
        output: the file to write.
        input_format: ``parquet``, ``csv`` or ``jsonl``; default: from the input's name.
        output_format: the same for the output; default: from its name, else the input's.
        outputs: the outputs to add (a name or names); all of them when None.
        prefix: put before each output's name to make its column's name.
        columns: the columns that feed the model, when not all of them do.
        on_null: ``error``, ``skip`` (rows with a null feature get null outputs) or ``nan``.
        batch_size: the most rows scored at a time.
        workers: scoring threads; default: one per CPU this process may use.
        overwrite: replace ``output`` if it exists.
        allow_code: allow a package that runs code it carries.
        progress: called after each batch is written with the rows so far and in all.

    Raises:
        NoSuchFile: there is no input.
        UsageError: bad options, an output that exists, or an unknown format.
        InputError: the input cannot be read or cannot feed the model (before anything is
            written), or a batch holds values the model refuses (and nothing is left written).
        PackageError: the package is invalid.
    """
    started = time.perf_counter()
    source, destination = Path(input), Path(output)
    if not source.exists():
        raise NoSuchFile(f"no such file: {source}")
    if batch_size < 1:
        raise UsageError(f"the batch size must be at least 1, not {batch_size}")
    threads = workers or usable_cpus()
    if threads < 1:
        raise UsageError(f"workers must be at least 1, not {threads}")
    in_format, out_format = formats(source, destination, input_format, output_format)
    check_output(destination, overwrite=overwrite)
    with contextlib.ExitStack() as stack:
        # Arrow's Ctrl-C handling cancels only a read that makes progress (never one blocked
        # on a pipe) and keeps the signal from Python: Python's own stops the run instead.
        pyarrow().enable_signal_handlers(False)
        stack.callback(pyarrow().enable_signal_handlers, True)
        if isinstance(package, Package):
            loaded = package
        else:
            loaded = load(package, threads=1, allow_code=allow_code)
            stack.callback(loaded.close)  # its extracted copy goes now, not at exit
        reader = stack.enter_context(
            contextlib.closing(_open(source, in_format, loaded.signature, batch_size))
        )
        return _score_file(
            reader,
            loaded,
            destination,
            out_format,
            threads,
            started,
            progress,
            columns=columns,
            outputs=outputs,
            prefix=prefix,
            on_null=on_null,
        )


def _score_file(
    reader: _Reader,
    loaded: Package,
    destination: Path,
    out_format: str,
    threads: int,
    started: float,
    progress: Progress | None,
    *,
    columns: Sequence[str] | None,
    outputs: str | Sequence[str] | None,
    prefix: str,
    on_null: str,
) -> BatchReport:
    plan = make_plan(
        [arrow_column(f) for f in reader.schema],
        loaded.signature,
        columns=columns,
        outputs=outputs,
        prefix=prefix,
        on_null=on_null,
    )
    scorer = Scorer(loaded, plan)
    tmp = temporary_sibling(destination)
    rows = 0
    try:
        with _writer(tmp, out_format, plan) as write:
            for batch in _scored(scorer, _read_ahead(reader, threads * 2), threads):
                write(batch)
                rows += batch.num_rows
                if progress is not None:
                    progress(rows, reader.rows)
            if rows == 0:  # no rows: still a file with every column, outputs included
                write(_empty(reader.schema, plan))
        commit(tmp, destination)
    except BaseException:
        remove(tmp)
        raise
    seconds = time.perf_counter() - started
    columns_added = tuple(o.column for o in plan.outputs)
    return BatchReport(destination, out_format, rows, seconds, threads, columns_added)


# --- reading --------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Reader:
    schema: Any
    rows: int | None
    batches: Iterator[Any]
    handle: Any = None  # the file a text reader reads
    reading: threading.Event = field(default_factory=threading.Event)

    def close(self) -> None:
        # Once reading started, the reading thread closes the file (closing a file another
        # thread reads from would wait for that read, which may never end on a pipe).
        if self.handle is not None and not self.reading.is_set():
            self.handle.close()


def _unreadable(path: Path, fmt: str, exc: BaseException) -> InputError:
    text = " ".join(str(exc).split())[:500]
    return InputError(f"{path} cannot be read as {fmt}: {text}")


def _open(path: Path, fmt: str, signature: Signature, batch_size: int) -> _Reader:
    pa = pyarrow()
    handle = None
    try:
        if fmt == "parquet" and not path.is_dir():
            # One file: ParquetFile imports in a tenth of the time pyarrow.dataset takes.
            file = importlib.import_module("pyarrow.parquet").ParquetFile(path)
            batches = file.iter_batches(batch_size=batch_size, use_threads=False)
            return _Reader(
                file.schema_arrow, file.metadata.num_rows, _read(path, fmt, batches, batch_size)
            )
        if fmt == "parquet":
            dataset = importlib.import_module("pyarrow.dataset").dataset(path, format="parquet")
            batches = dataset.to_batches(batch_size=batch_size, use_threads=False)
            return _Reader(
                dataset.schema, dataset.count_rows(), _read(path, fmt, batches, batch_size)
            )
        types = _input_types(signature)
        # Read through a Python file, which never seeks: a pipe (a FIFO) is an input too.
        handle = open(path, "rb")  # noqa: SIM115 - closed with the reader
        if fmt == "csv":
            csv = importlib.import_module("pyarrow.csv")
            stream = csv.open_csv(
                handle,
                read_options=csv.ReadOptions(block_size=_BLOCK_SIZE),
                convert_options=csv.ConvertOptions(column_types=types),
            )
        else:
            pj = importlib.import_module("pyarrow.json")
            stream = pj.open_json(
                handle,
                read_options=pj.ReadOptions(block_size=_BLOCK_SIZE),
                parse_options=pj.ParseOptions(
                    explicit_schema=pa.schema(list(types.items())),
                    unexpected_field_behavior="infer",
                ),
            )
    except (pa.ArrowException, OSError, ValueError) as exc:
        if handle is not None:
            handle.close()
        raise _unreadable(path, fmt, exc) from None
    return _Reader(stream.schema, None, _read(path, fmt, stream, batch_size), handle)


def _input_types(signature: Signature) -> dict[str, Any]:
    """The types a text file's input columns are read as: what each input takes, widest kind.

    Floats are read as float64 and integers as int64, so that the signature, not the parser,
    decides whether a value fits (and says so, naming the input).
    """
    pa = pyarrow()
    widest = {"f": pa.float64(), "i": pa.int64(), "u": pa.int64(), "b": pa.bool_()}
    return {
        spec.name: widest.get(DTYPES[spec.dtype].kind, pa.string())
        for spec in signature.inputs
        if one_value_per_row(spec)
    }


def _read(path: Path, fmt: str, batches: Iterator[Any], batch_size: int) -> Iterator[Any]:
    """``batches`` at most ``batch_size`` rows each; a file damaged half-way said as such.

    (Text readers give blocks of bytes, not of rows; Arrow's errors name no file.)
    """
    pa = pyarrow()
    try:
        for batch in batches:
            for start in range(0, batch.num_rows, batch_size):
                yield batch.slice(start, batch_size)
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise _unreadable(path, fmt, exc) from None


_DONE = object()
#: How often a waiting caller wakes: a signal delivered to another thread (Ctrl-C lands on any)
#: is only handled when the main thread runs Python again.
_WAKE = 0.2


def _read_ahead(reader: _Reader, depth: int) -> Iterator[Any]:
    """Read in a thread of its own, ``depth`` batches ahead.

    The caller's thread only waits on a queue, so it can always be interrupted (Ctrl-C), even
    while the reader is blocked on a slow file or a pipe.
    """
    ahead: queue.Queue[Any] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def offer(item: Any) -> bool:
        while not stop.is_set():
            with contextlib.suppress(queue.Full):
                ahead.put(item, timeout=_WAKE)
                return True
        return False

    def read() -> None:
        try:
            for batch in reader.batches:
                if not offer(batch):
                    return
            offer(_DONE)
        except BaseException as exc:
            offer(exc)
        finally:
            if reader.handle is not None:
                reader.handle.close()

    reader.reading.set()
    threading.Thread(target=read, name="modelport-batch-reader", daemon=True).start()
    try:
        while True:
            try:
                item = ahead.get(timeout=_WAKE)
            except queue.Empty:
                continue
            if item is _DONE:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()


def is_stream(path: Path) -> bool:
    """Whether ``path`` is a pipe or device rather than a file: its reads can wait forever.

    Arrow reads ahead in threads of its own, and a process does not exit while one of them
    waits: a command that stops reading such an input ends without waiting for them.
    """
    try:
        mode = path.stat().st_mode
    except OSError:
        return False
    return not (stat.S_ISREG(mode) or stat.S_ISDIR(mode))


def _scored(scorer: Scorer, batches: Iterator[Any], threads: int) -> Iterator[Any]:
    """Score batches on ``threads`` threads, giving them back in their order."""
    if threads == 1:
        yield from map(scorer.append, batches)
        return
    pool = ThreadPoolExecutor(threads, thread_name_prefix="modelport-batch")
    pending: deque[Future[Any]] = deque()
    try:
        for batch in batches:
            pending.append(pool.submit(scorer.append, batch))
            if len(pending) >= threads * 2:
                yield _result(pending.popleft())
        while pending:
            yield _result(pending.popleft())
    finally:
        pool.shutdown(wait=False, cancel_futures=True)


def _result(future: Future[Any]) -> Any:
    while True:
        try:
            return future.result(timeout=_WAKE)
        except FutureTimeout:
            continue


# --- writing --------------------------------------------------------------------------------


@contextlib.contextmanager
def _writer(path: Path, fmt: str, plan: Plan) -> Iterator[Callable[[Any], None]]:
    """``write(batch)`` for the format; everything is flushed and closed on leaving."""
    pa = pyarrow()
    # A CSV output's array columns are as wide as the signature says, else their first array.
    widths = {o.column: o.width for o in plan.outputs if o.width is not None and o.width > 0}
    state: dict[str, Any] = {}  # the format's writer, made for the first batch's schema
    with open(path, "wb") as sink:

        def write(batch: Any) -> None:
            if fmt == "csv":
                batch = _flat_lists(pa, batch, widths)
            if fmt == "jsonl":
                lines = (
                    json.dumps(row, ensure_ascii=False, default=str) for row in batch.to_pylist()
                )
                sink.write("".join(f"{line}\n" for line in lines).encode("utf-8"))
                return
            if "writer" not in state:
                if fmt == "parquet":
                    pq = importlib.import_module("pyarrow.parquet")
                    state["writer"] = pq.ParquetWriter(
                        sink, batch.schema, use_dictionary=_dictionary_columns(pa, batch.schema)
                    )
                else:
                    csv = importlib.import_module("pyarrow.csv")
                    state["writer"] = csv.CSVWriter(sink, batch.schema)
            try:
                state["writer"].write_batch(batch)
            except (pa.ArrowException, ValueError) as exc:
                text = " ".join(str(exc).split())[:300]
                raise InputError(f"the output cannot be written as {fmt}: {text}") from None

        try:
            yield write
        finally:
            if "writer" in state:
                state["writer"].close()


def _dictionary_columns(pa: Any, schema: Any) -> list[str]:
    """The columns worth dictionary-encoding: not floats, which rarely repeat.

    Trying a dictionary for each float column and falling back costs more than the rest of the
    write (5x the time for 20 random float64 columns) and gives a larger file.
    """

    def floats(kind: Any) -> bool:
        if is_list(kind):
            return floats(kind.value_type)
        return bool(pa.types.is_floating(kind))

    return [f.name for f in schema if not floats(f.type)]


def _empty(schema: Any, plan: Plan) -> Any:
    pa = pyarrow()
    fields = [*schema, *(pa.field(o.column, output_type(o)) for o in plan.outputs)]
    return pa.RecordBatch.from_pylist([], schema=pa.schema(fields))


def _flat_lists(pa: Any, batch: Any, widths: dict[str, int]) -> Any:
    """A batch for CSV: each list column as one column per element (``name_0``, ``name_1``…)."""
    if not any(is_list(f.type) for f in batch.schema):
        return batch
    pc = importlib.import_module("pyarrow.compute")
    arrays, names = [], []
    for column_field, column in zip(batch.schema, batch.columns, strict=True):
        if not is_list(column_field.type):
            arrays.append(column)
            names.append(column_field.name)
            continue
        lengths = pc.list_value_length(column).drop_null()
        found = {int(n) for n in pc.unique(lengths).to_pylist()}
        width = widths.setdefault(column_field.name, max(found) if found else 0)
        if found - {width}:
            raise InputError(
                f"column {quote_name(column_field.name)} holds arrays of several lengths; CSV "
                "cannot hold them (write Parquet or JSON lines)"
            )
        for i in range(width):
            arrays.append(pc.list_element(column, i))
            names.append(element_column(column_field.name, i))
    return pa.RecordBatch.from_arrays(arrays, names=names)
