"""Input and output files shared by the commands that predict."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from modelport.errors import InputError, UsageError


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
