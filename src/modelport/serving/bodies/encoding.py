"""Media types and content codings: what a body is, and how to undo its compression.

:func:`media_type` splits a ``Content-Type`` (or one ``Accept`` entry) into its type and
parameters. :func:`decompress` undoes a ``Content-Encoding`` under a size limit: a compressed
body is inflated incrementally and never past one byte more than the limit, so a compression bomb
costs the limit, not its expanded size.
"""

from __future__ import annotations

import zlib

from modelport.errors import BodyTooLarge, InputError, UnsupportedMediaType, quote_name

#: The content codings :func:`decompress` undoes, in the order messages list them.
CODINGS = ("gzip", "x-gzip", "deflate", "identity")
_GZIP_MAGIC = b"\x1f\x8b"
_GZIP_WBITS = 16 + zlib.MAX_WBITS
_ZLIB_WBITS = zlib.MAX_WBITS
_RAW_WBITS = -zlib.MAX_WBITS


def media_type(value: str | None) -> tuple[str, dict[str, str]]:
    r"""Split a ``Content-Type`` value, or one entry of ``Accept``, into its parts.

    Args:
        value: e.g. ``'text/csv; Header="present"'``; None or empty for a missing header.

    Returns:
        The lowercased type (``""`` when there is none) and the parameters: names lowercased,
        values unquoted (``\"`` unescaped) and otherwise as sent. A new dict on every call: the
        caller may change it. A parameter without ``=`` is dropped.
    """
    if not value:
        return "", {}
    if ";" not in value:
        return value.strip().lower(), {}
    mimetype, _, rest = value.partition(";")
    params: dict[str, str] = {}
    if '"' not in rest:
        for part in rest.split(";"):
            name, equals, text = part.partition("=")
            if equals:
                params[name.strip().lower()] = text.strip()
        return mimetype.strip().lower(), params
    for name, text in _quoted_parameters(rest):
        params[name] = text
    return mimetype.strip().lower(), params


def _quoted_parameters(text: str) -> list[tuple[str, str]]:
    """``name=value`` pairs separated by ``;``, where a value may be an RFC 9110 quoted-string."""
    pairs: list[tuple[str, str]] = []
    i, end = 0, len(text)
    while i < end:
        semicolon = text.find(";", i)
        equals = text.find("=", i)
        if equals < 0 or 0 <= semicolon < equals:
            # No value before the next parameter: drop this one.
            if semicolon < 0:
                break
            i = semicolon + 1
            continue
        name = text[i:equals].strip().lower()
        i = equals + 1
        while i < end and text[i] in " \t":
            i += 1
        if i < end and text[i] == '"':
            chars: list[str] = []
            i += 1
            while i < end and text[i] != '"':
                if text[i] == "\\" and i + 1 < end:
                    i += 1
                chars.append(text[i])
                i += 1
            value = "".join(chars)
            # Past the closing quote, up to the next parameter.
            semicolon = text.find(";", i)
            i = end if semicolon < 0 else semicolon + 1
        else:
            semicolon = text.find(";", i)
            stop = end if semicolon < 0 else semicolon
            value = text[i:stop].strip()
            i = stop + 1
        if name:
            pairs.append((name, value))
    return pairs


def decompress(body: bytes, coding: str, limit: int) -> bytes:
    """Undo a ``Content-Encoding``: ``gzip``/``x-gzip``, ``deflate``, ``identity``.

    A list (``gzip, deflate``: gzip applied first) is undone right to left; names are
    case-insensitive. ``deflate`` is a zlib stream, or a raw deflate stream as some clients
    send. Concatenated gzip members are one body (as ``gzip -d`` reads them), zero padding after
    the last one is skipped. Every stage inflates at most ``limit + 1`` bytes.

    Args:
        body: the body as received.
        coding: the ``Content-Encoding`` header's value.
        limit: the most bytes the decoded body (and each stage of it) may have.

    Returns:
        The decoded body. An empty body stays empty (there is nothing to decode).

    Raises:
        BodyTooLarge: the decoded body is larger than ``limit`` bytes.
        InputError: the data is corrupt or truncated, or has trailing bytes after it.
        UnsupportedMediaType: a coding other than :data:`CODINGS`.
    """
    names = [name.strip().lower() for name in coding.split(",")]
    for name in names:
        if name and name not in CODINGS:
            raise UnsupportedMediaType(
                f"Content-Encoding {quote_name(name)} is not supported; "
                f"supported: {', '.join(CODINGS)}"
            )
    for name in reversed(names):
        if not body:
            break
        if name in ("gzip", "x-gzip"):
            body = _gunzip(body, limit)
        elif name == "deflate":
            body = _inflate_deflate(body, limit)
        # identity, or an empty entry of the list: nothing to undo
    return body


def _too_large(limit: int) -> BodyTooLarge:
    return BodyTooLarge(f"the decompressed body is larger than {limit} bytes")


def _inflate(data: bytes, wbits: int, room: int, limit: int) -> tuple[bytes, bytes]:
    """One compressed stream's data, at most ``room`` bytes of it, and what follows the stream.

    Raises:
        zlib.error: the data is corrupt.
        BodyTooLarge: the stream holds more than ``room`` bytes.
        InputError: the stream ends before its end (truncated).
    """
    inflater = zlib.decompressobj(wbits)
    # One call: it stops at room + 1 bytes, so a larger stream is refused without inflating
    # further; a smaller one is whole, since the call stops early only at that bound.
    out = inflater.decompress(data, room + 1)
    if len(out) > room:
        raise _too_large(limit)
    if not inflater.eof:
        raise InputError("truncated")
    return out, inflater.unused_data


def _gunzip(body: bytes, limit: int) -> bytes:
    parts: list[bytes] = []
    size = 0
    data = body
    while True:
        try:
            out, data = _inflate(data, _GZIP_WBITS, limit - size, limit)
        except (zlib.error, InputError):
            raise InputError("the gzip-encoded body is corrupt or truncated") from None
        parts.append(out)
        size += len(out)
        # What gzip itself reads after a member: zero padding, or another member.
        data = data.lstrip(b"\x00")
        if not data:
            break
        if not data.startswith(_GZIP_MAGIC):
            raise InputError("the gzip-encoded body has data after its end that is not gzip")
    return parts[0] if len(parts) == 1 else b"".join(parts)


def _looks_like_zlib(body: bytes) -> bool:
    """RFC 1950's header: deflate with a window of at most 32 KiB, and a check that fits."""
    return (
        len(body) >= 2
        and body[0] & 0x0F == 8
        and body[0] >> 4 <= 7
        and (body[0] << 8 | body[1]) % 31 == 0
    )


def _inflate_deflate(body: bytes, limit: int) -> bytes:
    attempts = (_ZLIB_WBITS, _RAW_WBITS) if _looks_like_zlib(body) else (_RAW_WBITS,)
    for wbits in attempts:
        try:
            out, rest = _inflate(body, wbits, limit, limit)
        except (zlib.error, InputError):
            continue  # a raw stream can start with bytes that look like a zlib header
        if rest:
            raise InputError("the deflate-encoded body has data after its end")
        return out
    raise InputError("the deflate-encoded body is corrupt or truncated")
