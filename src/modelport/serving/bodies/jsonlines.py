"""``application/jsonlines`` bodies: one JSON value per line, one row per line, in and out.

Also named ``application/jsonl`` and ``application/x-jsonlines``.

Lines are read by :func:`modelport.model_format.jsontext.loads`, so a line is read exactly as a
JSON body is (``NaN`` and ``Infinity`` tokens included); the body as a whole is bounded by
:func:`~modelport.model_format.jsontext.check_json_size` first, each line counting as a value,
so many tiny lines cost no more than the same rows in one JSON array.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import numpy as np

from modelport.errors import InputError, NotAcceptable
from modelport.model_format.jsontext import check_json_size, dumps, finite, loads
from modelport.model_format.payload import output_rows

#: The media types of JSON Lines: SageMaker's name first.
JSONLINES_TYPES = ("application/jsonlines", "application/jsonl", "application/x-jsonlines")
_BOM = b"\xef\xbb\xbf"
_WHERE = re.compile(r"^malformed JSON body \(line 1, column (\d+)\)$")


def parse_jsonlines(body: bytes) -> list[Any]:
    """The rows of a JSON Lines body: one decoded JSON value per line.

    Blank lines are skipped; lines may end with CRLF; a UTF-8 BOM may start the body.

    Raises:
        InputError: a line is not JSON (the message gives its line number, never its text), the
            body has no rows, or it is too large or too deep as a whole.
    """
    if body.startswith(_BOM):
        body = body[len(_BOM) :]
    # JSON text holds no raw line break (a string's is escaped): each line break ends a row,
    # and as a comma it counts the rows as the elements of one array would be counted.
    check_json_size(body.replace(b"\n", b","))
    rows: list[Any] = []
    for number, line in enumerate(body.split(b"\n"), start=1):
        if not line.strip():
            continue
        try:
            rows.append(loads(line))
        except InputError as exc:
            where = _WHERE.match(str(exc))
            what = f"malformed JSON (column {where.group(1)})" if where else str(exc)
            raise InputError(f"line {number} of the JSON Lines body: {what}") from None
    if not rows:
        raise InputError("the JSON Lines body has no rows; send one JSON value per line")
    return rows


def format_jsonlines(outputs: Mapping[str, np.ndarray]) -> bytes:
    """A JSON Lines answer: one line per row, each ending with a line break.

    With one output, a line is the output's value for the row; with several, an object of
    output name to value. Non-finite floats are written as JSON answers write them
    (``NaN``, ``Infinity``).

    Raises:
        NotAcceptable: several outputs without one row count in common.
    """
    allow_nan = not finite(outputs)
    rows = output_rows(outputs)
    if rows is None:
        raise NotAcceptable(
            "the outputs have different numbers of rows, which JSON Lines cannot hold "
            "one per line; ask for application/json"
        )
    return b"".join(dumps(row, allow_nan=allow_nan) + b"\n" for row in rows)
