"""Input and output shared by the commands: JSON results, prediction inputs and outputs."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from modelport.errors import InputError, UsageError

#: Whether this run printed a JSON result (then a failure does not print a second document).
_printed: set[str] = set()


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


def read_json_input(path: Path) -> Any:
    """Read a JSON request from ``path`` (``-`` for stdin).

    Raises:
        UsageError: the file cannot be read (exit 2).
        InputError: it is not JSON (exit 1); the message gives the position, not the text.
    """
    try:
        text = sys.stdin.read() if str(path) == "-" else path.read_text("utf-8")
    except FileNotFoundError:
        raise UsageError(f"input file {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read input {path}: {exc}") from None
    try:
        return json.loads(text)
    except ValueError as exc:
        raise InputError(f"input is not valid JSON: {exc}") from None


def write_output(text: str, path: Path | None) -> None:
    """Print ``text``, or write it to ``path`` atomically (never a half-written file)."""
    if path is None:
        click.echo(text)
        return
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text + "\n", "utf-8")
    tmp.replace(path)
