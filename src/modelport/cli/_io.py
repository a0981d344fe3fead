"""Input and output shared by the commands: JSON results, prediction inputs and outputs."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import click

from modelport.errors import NoSuchFile, UsageError


def key_values(pairs: tuple[str, ...], option: str) -> dict[str, str]:
    """``KEY=VALUE`` option values as a dict (a later key wins).

    Raises:
        UsageError: a value without ``=`` or without a key.
    """
    result: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise UsageError(f"{option} expects KEY=VALUE, got {pair!r}")
        result[key] = value
    return result


def existing(path: Path) -> Path:
    """``path``, checked to exist (``-``, stdin, always does).

    Raises:
        NoSuchFile: ``no such file: PATH``.
    """
    if str(path) != "-" and not path.exists():
        raise NoSuchFile(f"no such file: {path}")
    return path


def check_package_arg(path: Path) -> Path:
    """A package path, checked before any command reads it.

    Raises:
        NoSuchFile: it does not exist (exit 1).
        PackageError: it is a bare model (an ``.onnx`` file, an MLflow model directory), with a
            hint to ``modelport pack`` it first (exit 4).
    """
    from modelport.model_format.package import check_package_path

    check_package_path(existing(path))
    return path


#: ``--storage-option``: the options of the storage backend a package URI is read with.
storage_option = click.option(
    "--storage-option",
    "storage_options",
    multiple=True,
    metavar="KEY=VALUE",
    help="Option of the storage backend a package URI is read (or written) with, e.g. "
    "endpoint_url=http://127.0.0.1:9000 or anon=true; values that read as JSON are JSON. "
    "Also: $MODELPORT_STORAGE_OPTIONS, a JSON object keyed by scheme.",
)


def storage_options_arg(pairs: tuple[str, ...]) -> dict[str, Any]:
    """``--storage-option`` values as backend options (JSON where they read as JSON)."""
    from modelport.model_format.remote.storage import option_value

    return {k: option_value(v) for k, v in key_values(pairs, "--storage-option").items()}


def package_arg(
    ref: str, storage_options: tuple[str, ...] = (), *, allow_code: bool = False
) -> Path:
    """A package argument as a local package: a path checked, a URI fetched into the cache.

    Paths, storage URIs (``s3://``, ``gs://``, ``abfs://``, ``az://``, ``hdfs://``,
    ``webhdfs://``, ``https://``) and MLflow URIs (``models:/NAME@ALIAS``, ``/VERSION``,
    ``/latest``, ``runs:/RUN/PATH``), before any command reads them.

    Raises:
        NoSuchFile: a path that does not exist (exit 1).
        PackageError: a bare model, or what a URI names is not an intact package (exit 4).
        SourceError: the URI cannot be fetched (exit 1; the message says what was tried).
        UsageError: ``--storage-option`` without a storage URI, or malformed.
    """
    from modelport.model_format.remote.uri import Kind, parse_reference

    parsed = parse_reference(ref)
    if parsed.kind is Kind.PATH:
        if storage_options:
            raise UsageError("--storage-option is for a package given as a storage URI")
        return check_package_arg(Path(parsed.text))
    if parsed.kind is Kind.MLFLOW:
        if storage_options:
            raise UsageError("--storage-option is for storage URIs, not MLflow's")
        # The client's defaults retry a refused connection for minutes: a command says so now.
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "60")
        # MLflow's download bar is drawn on a terminal only, as modelport's own.
        tty = "true" if sys.stderr.isatty() else "false"
        os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", tty)
    from modelport.model_format.locate import locate

    return locate(ref, storage_options=storage_options_arg(storage_options), allow_code=allow_code)


#: Whether this run printed a JSON result (then a failure does not print a second document).
_printed: set[str] = set()


def print_table(rows: list[list[str]], header: list[str]) -> None:
    """Print rows under a header, each column as wide as its widest cell."""
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        click.echo("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())


def emit_json(data: Any) -> None:
    """Print a command's ``--json`` result."""
    click.echo(json.dumps(data, indent=2, ensure_ascii=False))
    _printed.add("json")


def printed_json(*, reset: bool = False) -> bool:
    """Whether :func:`emit_json` printed a result in this run; ``reset`` starts a new run."""
    printed = "json" in _printed
    if reset:
        _printed.clear()
    return printed


#: Whether this run asked to end the process once its outcome is said (:func:`end_at_once`).
_ending: set[str] = set()


def end_at_once() -> None:
    """Ask :func:`modelport.cli.main.main` to end the process once it has said the outcome.

    For a command that leaves a native thread it cannot stop (a read blocked on a pipe):
    the interpreter's exit would wait for that thread, maybe forever.
    """
    _ending.add("now")


def ending_at_once() -> bool:
    """Whether this run asked to end at once; asking answers once (the next run starts clear)."""
    asked = "now" in _ending
    _ending.clear()
    return asked


def read_json_input(path: Path) -> Any:
    """Read a JSON request from ``path`` (``-`` for stdin).

    Raises:
        NoSuchFile: there is no such file (exit 1).
        UsageError: the file cannot be read (exit 2).
        InputError: it is not JSON (exit 1); the message gives the position, not the text
            (:func:`modelport.model_format.jsontext.loads`, as the server).
    """
    from modelport.model_format import jsontext

    # The server's reader: the CLI and every route accept exactly the same bodies.
    return jsontext.loads(read_input(path))


def read_input(path: Path) -> bytes:
    """The bytes of ``path`` (``-`` for stdin).

    Raises:
        NoSuchFile: there is no such file (exit 1).
        UsageError: the file cannot be read (exit 2).
    """
    try:
        return _read_stdin() if str(path) == "-" else path.read_bytes()
    except FileNotFoundError:
        raise NoSuchFile(f"no such file: {path}") from None
    except OSError as exc:
        raise UsageError(f"cannot read input {path}: {exc}") from None


def _read_stdin() -> bytes:
    # A text stream without a binary one underneath (a test's StringIO) gives text.
    stream = getattr(sys.stdin, "buffer", None)
    return stream.read() if stream is not None else sys.stdin.read().encode("utf-8")


def write_output(text: str, path: Path | None) -> None:
    """Print ``text``, or write it to ``path`` atomically (never a half-written file)."""
    if path is None:
        click.echo(text)
        return
    write_bytes((text + "\n").encode("utf-8"), path)


def write_bytes(data: bytes, path: Path) -> None:
    """Write ``data`` to ``path`` atomically (never a half-written file)."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    tmp.replace(path)
