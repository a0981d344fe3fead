"""JSON request bodies and answers: one reader and one writer for the server and the CLI.

``modelport predict`` and every HTTP route read a JSON body with :func:`loads` and write an
answer with :func:`dumps`, so both accept exactly the same bodies and print the same numbers:

- ``NaN``, ``Infinity`` and ``-Infinity`` (what Python's ``json.dumps`` writes, and so MLflow's
  client) are read as floats; the signature refuses them for integer inputs.
- an answer holding a non-finite float writes the same tokens, not ``null``;
- a float32 output prints in its shortest float32 form (``0.9``, not ``0.8999999761581421``).

orjson (the ``serve`` extra) does the work where it is installed; the standard library reads and
writes the same values without it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import numpy as np

from modelport.errors import InputError
from modelport.model_format.signature import JsonBooleans

try:
    import orjson
except ImportError:  # the core install: packing and predicting in-process
    orjson = None  # type: ignore[assignment]

# orjson reads an integer literal beyond 64 bits as the nearest float. Every such float is out of
# range for every integer dtype (so enforcement refuses it) except one: literals just below -2**63
# round to exactly -2**63. Those all start with these digits; a body holding them (rare) is read
# by the standard library, which keeps integers exact.
_INT64_EDGE = b"922337203685477"


#: The deepest a JSON body may nest arrays and objects: a tensor of numpy's 64 dimensions fits
#: only without its protocol's wrapping, and no recursive walk of the decoded body comes near
#: Python's recursion limit.
MAX_JSON_DEPTH = 64
#: The most values a JSON body may hold (each number, string, true/false/null, array and
#: object; an empty array or object counts twice). Decoded, a value costs at most ~100 bytes
#: (an empty list with its slot), so this bounds what one body costs a worker's memory.
MAX_JSON_VALUES = 2_000_000

#: What numbers and the space between tokens are made of. Without them a body is its skeleton:
#: brackets, braces, commas, colons, quotes, backslashes, the words true, false and null, and
#: what else its strings hold. No escape starts with one of them (a backslash is followed by a
#: quote, a backslash, a slash or a letter other than E), so quotes pair up in the skeleton
#: exactly as in the body, and a 100-row numeric body's skeleton is a twentieth of it.
_NUMBER_AND_SPACE = b"0123456789+-.E \t\r\n"
#: Every byte but the ones that give a JSON text its structure: quotes, brackets, commas.
_NOT_STRUCTURE = bytes(sorted(set(range(256)) - set(b'"[]{},')))
_AS_SQUARE = bytes.maketrans(b"{}", b"[]")


def _skeleton(body: bytes) -> bytes:
    """The body without its numbers and space (see ``_NUMBER_AND_SPACE``): one C-speed pass."""
    return body.translate(None, _NUMBER_AND_SPACE)


def _structure(skeleton: bytes) -> bytes:
    """The brackets and commas outside strings, in order (C-speed byte operations)."""
    if b"\\" in skeleton:
        # Escaped backslashes first, left to right as JSON pairs them; then what is left of an
        # escaped quote is no string's end.
        skeleton = skeleton.replace(b"\\\\", b"").replace(b'\\"', b"")
    # Between the 2k-th and the next quote is a string's inside.
    return b"".join(skeleton.translate(None, _NOT_STRUCTURE).split(b'"')[::2])


def check_json_size(
    body: bytes, max_depth: int = MAX_JSON_DEPTH, max_values: int = MAX_JSON_VALUES
) -> None:
    """Refuse a JSON body that nests too deep or holds too many values, before decoding it.

    Decoded JSON costs far more memory than its text (an empty list is 56 bytes for ``[],``) and
    deep nesting breaks recursive walks, so both are bounded on the raw bytes, read through the
    body's skeleton (``_NUMBER_AND_SPACE``). Most bodies pass on two counts (a body holds no
    more values than bytes, and nests no deeper than it has brackets); others get one
    string-aware scan of C-speed byte operations.

    Raises:
        InputError: naming the limit that was passed.
    """
    _check_size(_skeleton(body), len(body), max_depth, max_values)


def _check_size(skeleton: bytes, length: int, max_depth: int, max_values: int) -> None:
    """:func:`check_json_size` on the skeleton of a body of ``length`` bytes."""
    if length <= max_values and skeleton.count(b"[") + skeleton.count(b"{") <= max_depth:
        return
    structure = _structure(skeleton)
    # Arrays and objects nest alike: every bracket becomes [ or ].
    brackets = structure.translate(_AS_SQUARE, b",")
    opens = brackets.count(b"[")
    # Each value but the body itself is an element of an array or object: at most one more than
    # the commas inside it.
    if 1 + opens + len(structure) - len(brackets) > max_values:
        raise InputError(f"the JSON body has more than {max_values} values (the limit)")
    if opens <= max_depth:
        return
    # Each round takes away the innermost pairs; what is left after max_depth rounds nests deeper.
    for _ in range(max_depth):
        shorter = brackets.replace(b"[]", b"")
        if len(shorter) == len(brackets):
            return
        brackets = shorter
    if b"[]" in brackets:
        raise InputError(f"the JSON body nests deeper than {max_depth} levels (the limit)")


_NON_FINITE = (b"NaN", b"Infinity")


def loads(body: bytes) -> Any:
    """Decode a JSON body, after :func:`check_json_size`.

    A body that may hold an integer literal just below int64's range, or a ``NaN``/``Infinity``
    token, is read by the standard library: it keeps integers exact (see ``_INT64_EDGE``) and
    reads the tokens as floats.

    Raises:
        InputError: the body is not valid JSON (the message gives the position, not the text),
            or it is too deep or too large (:func:`check_json_size`).
    """
    return _decode(body, _skeleton(body))


def loads_with_booleans(body: bytes) -> tuple[Any, JsonBooleans]:
    """Decode a JSON body as :func:`loads` does, and say whether its values may hold booleans.

    Both come from one pass over the body: ``true`` and ``false`` outlive the skeleton whole, so
    :meth:`JsonBooleans.in_text` reads them there (a string that held them only costs the walk).

    Raises:
        InputError: as :func:`loads`.
    """
    skeleton = _skeleton(body)
    return _decode(body, skeleton), JsonBooleans.in_text(skeleton)


def _decode(body: bytes, skeleton: bytes) -> Any:
    if not body:
        raise InputError("the request body is empty; expected JSON")
    _check_size(skeleton, len(body), MAX_JSON_DEPTH, MAX_JSON_VALUES)
    try:
        if orjson is not None and _INT64_EDGE not in body:
            try:
                return orjson.loads(body)
            except orjson.JSONDecodeError:
                if not any(token in body for token in _NON_FINITE):
                    raise
        value = json.loads(body)
    except json.JSONDecodeError as exc:  # orjson's error derives from it
        raise InputError(f"malformed JSON body (line {exc.lineno}, column {exc.colno})") from None
    except (ValueError, RecursionError):
        raise InputError("malformed JSON body") from None
    if b"\\u" in skeleton:
        # The standard library lets a lone surrogate escape through (orjson refuses it); no
        # answer or message could be encoded with it.
        try:
            json.dumps(value, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError:
            raise InputError("malformed JSON body (a string holds a lone surrogate)") from None
    return value


def finite(outputs: Mapping[str, np.ndarray]) -> bool:
    """Whether no float output holds NaN or an infinity (then the fast writer may write it)."""
    return all(a.dtype.kind != "f" or bool(np.isfinite(a).all()) for a in outputs.values())


def plain(array: np.ndarray) -> Any:
    """An array as plain JSON values: text as ``str``, narrow floats in their shortest form."""
    if array.dtype.kind in ("U", "S", "O"):
        if not array.size:
            return []
        return np.vectorize(as_text, otypes=[object])(array).tolist()
    if array.dtype.kind == "f" and array.dtype.itemsize < 8:
        # float32 0.9 widened is 0.8999999761581421; its own shortest repr, read as a float64,
        # prints as 0.9 again.
        return array.astype(str).astype(np.float64).tolist()
    return array.tolist()


def as_text(value: Any) -> str:
    """A text value of an array (bytes decoded as UTF-8), as answers write it."""
    return value.decode() if isinstance(value, bytes) else str(value)


def _default(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return plain(value)
    if isinstance(value, np.generic):
        return plain(np.asarray(value))
    raise TypeError(f"{type(value).__name__} is not JSON")


def dumps(value: Any, *, allow_nan: bool = False) -> bytes:
    """Encode an answer; numpy arrays and scalars are written natively.

    Args:
        value: the answer (dicts, lists, numbers, text, numpy arrays and scalars).
        allow_nan: the answer may hold non-finite floats (:func:`finite` says): they are written
            as ``NaN``/``Infinity``/``-Infinity`` by the standard library, which orjson cannot.
    """
    if orjson is not None and not allow_nan:
        return orjson.dumps(value, option=orjson.OPT_SERIALIZE_NUMPY)
    return json.dumps(value, default=_default, separators=(",", ":"), ensure_ascii=False).encode()


def dumps_answer(value: Any, outputs: Mapping[str, np.ndarray]) -> bytes:
    """Encode an answer holding ``outputs``: non-finite floats among them as tokens.

    orjson writes NaN and infinities as ``null``; only an answer where it wrote one, and whose
    outputs are not all finite, is written again by the standard library (:func:`dumps`).
    """
    if orjson is not None:
        body: bytes = orjson.dumps(value, option=orjson.OPT_SERIALIZE_NUMPY)
        if b"null" not in body or finite(outputs):
            return body
    return dumps(value, allow_nan=True)
