"""The files an ONNX model refers to: its tensors' external data, read from the protobuf itself.

An ONNX tensor may keep its bytes in another file (``data_location: EXTERNAL`` with an
``external_data`` entry ``location``), and ONNX Runtime reads whatever path that names, relative
to the model's directory or absolute, ``..`` included (1.17 to 1.23 do). A package must not be
able to make a prediction return ``/etc/passwd``, whatever the runtime's version, so modelport
reads the references itself, before any runtime sees the model: every location must be a clean
relative path inside the package, and a file the manifest lists.

The core install has no ``onnx`` package, so this is a minimal reader of the protobuf wire format
that walks only the messages that can hold a tensor (the graph's initializers and sparse
initializers, node attributes, the subgraphs of ``If``/``Loop``/``Scan`` at any depth, functions
and training graphs) and skips everything else without reading it into memory.
"""

from __future__ import annotations

import io
import posixpath
import re
from collections.abc import Collection
from dataclasses import dataclass
from typing import IO

from modelport.model_format.paths import is_safe_relative_path

#: For each message walked: field number -> the message it holds. Only what can reach a tensor.
_CHILDREN: dict[str, dict[int, str]] = {
    "model": {7: "graph", 20: "training", 25: "function"},
    "training": {1: "graph", 2: "graph"},
    "function": {7: "node", 11: "attribute"},
    "graph": {1: "node", 5: "tensor", 15: "sparse"},
    "node": {5: "attribute"},
    "attribute": {5: "tensor", 6: "graph", 10: "tensor", 11: "graph", 22: "sparse", 23: "sparse"},
    "sparse": {1: "tensor", 2: "tensor"},
}
_TENSOR_NAME, _TENSOR_EXTERNAL, _TENSOR_LOCATION = 8, 13, 14
_EXTERNAL = 1  # TensorProto.DataLocation.EXTERNAL
#: protobuf's own default recursion limit; deeper models are refused, not walked.
MAX_DEPTH = 100
#: Longest tensor name or external-data key/value read (a path longer than this is no path).
MAX_STRING = 4096
_SKIP_CHUNK = 1 << 20


class OnnxFormatError(ValueError):
    """The bytes are not a readable ONNX protobuf (truncated, malformed, nested too deep)."""


@dataclass(frozen=True)
class ExternalRef:
    """One tensor whose data lives outside the model file.

    Attributes:
        tensor: the tensor's name (may be empty).
        location: the ``location`` entry as written, or None when the tensor has none.
    """

    tensor: str
    location: str | None


class _Stream:
    """A forward-only reader of a binary stream of known size, counting its position."""

    def __init__(self, fh: IO[bytes], size: int) -> None:
        self._fh = fh
        self.pos = 0
        self.size = size

    def read(self, n: int, end: int) -> bytes:
        if self.pos + n > end:
            raise OnnxFormatError("truncated")
        data = self._fh.read(n)
        if len(data) != n:
            raise OnnxFormatError("truncated")
        self.pos += n
        return data

    def skip(self, n: int, end: int) -> None:
        if self.pos + n > end:
            raise OnnxFormatError("truncated")
        left = n
        while left:  # read and drop: the stream may not seek (an archive member)
            chunk = self._fh.read(min(left, _SKIP_CHUNK))
            if not chunk:
                raise OnnxFormatError("truncated")
            left -= len(chunk)
        self.pos += n

    def varint(self, end: int) -> int:
        value = shift = 0
        while True:
            byte = self.read(1, end)[0]
            value |= (byte & 0x7F) << shift
            if not byte & 0x80:
                return value
            shift += 7
            if shift >= 70:
                raise OnnxFormatError("a varint longer than 10 bytes")


def _skip(s: _Stream, wire: int, end: int, depth: int) -> None:
    """Skip one value of wire type ``wire`` (its tag already read)."""
    if wire == 0:
        s.varint(end)
    elif wire == 1:
        s.skip(8, end)
    elif wire == 2:
        s.skip(s.varint(end), end)
    elif wire == 5:
        s.skip(4, end)
    elif wire == 3:  # a group: skip fields up to its end-group tag
        if depth > MAX_DEPTH:
            raise OnnxFormatError("nested too deeply")
        while True:
            tag = s.varint(end)
            if tag & 7 == 4:
                return
            _skip(s, tag & 7, end, depth + 1)
    else:
        raise OnnxFormatError(f"wire type {wire}")


def _walk(s: _Stream, kind: str, end: int, depth: int, found: list[ExternalRef]) -> None:
    """Walk one message of type ``kind`` ending at ``end``, collecting external references."""
    if depth > MAX_DEPTH:
        raise OnnxFormatError("nested too deeply")
    children = _CHILDREN.get(kind, {})
    name = ""
    location: str | None = None
    external = False
    while s.pos < end:
        tag = s.varint(end)
        number, wire = tag >> 3, tag & 7
        if wire == 4:
            raise OnnxFormatError("an end-group tag outside a group")
        if kind == "tensor" and number == _TENSOR_LOCATION and wire == 0:
            external = s.varint(end) == _EXTERNAL
        elif kind == "tensor" and number == _TENSOR_NAME and wire == 2:
            name = _string(s, end)
        elif kind == "tensor" and number == _TENSOR_EXTERNAL and wire == 2:
            length = s.varint(end)
            key, value = _entry(s, s.pos + length, end)
            if key == "location":
                location = value
        elif number in children and wire == 2:
            length = s.varint(end)
            child_end = s.pos + length
            if child_end > end:
                raise OnnxFormatError("truncated")
            child = children[number]
            if child in _IN_MEMORY_KINDS and length <= MAX_IN_MEMORY:
                _walk_bytes(s.read(length, end), 0, length, child, depth + 1, found)
            else:
                _walk(s, child, child_end, depth + 1, found)
        else:
            _skip(s, wire, end, depth)
    if s.pos != end:
        raise OnnxFormatError("a field runs past the end of its message")
    if kind == "tensor" and (external or location is not None):
        found.append(ExternalRef(name, location))


#: Nodes (and the attributes in them) are walked in memory when at most this large: a tree
#: ensemble's node is megabytes of small repeated fields, which the stream reader would decode
#: one call per field (8 s for a 100-tree forest's 17 MB node, 0.7 s in memory). Larger ones (a
#: huge constant) stream, so one node never costs more memory than this.
MAX_IN_MEMORY = 256 << 20
_IN_MEMORY_KINDS = frozenset({"node", "function"})


_RUNS: dict[int, re.Pattern[bytes]] = {}


def _run(tag: int) -> re.Pattern[bytes]:
    """A pattern for a run of fields with the one-byte ``tag``, back to back.

    Each holds a varint, fixed64 or fixed32 value: how a repeated number field is written
    unpacked.
    """
    pattern = _RUNS.get(tag)
    if pattern is None:
        value = {0: rb"[\x80-\xff]{0,9}[\x00-\x7f]", 1: rb".{8}", 5: rb".{4}"}[tag & 7]
        pattern = _RUNS[tag] = re.compile(rb"(?:" + re.escape(bytes([tag])) + value + rb")+", re.S)
    return pattern


def _varint_at(data: bytes, i: int, end: int) -> tuple[int, int]:
    """The varint at ``data[i]`` and the index after it, none of it past ``end``."""
    value = shift = 0
    while True:
        if i >= end:
            raise OnnxFormatError("truncated")
        byte = data[i]
        i += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, i
        shift += 7
        if shift >= 70:
            raise OnnxFormatError("a varint longer than 10 bytes")


def _skip_group_at(data: bytes, i: int, end: int, depth: int) -> int:
    """The index after the group starting at ``data[i]`` (its start tag already read)."""
    if depth > MAX_DEPTH:
        raise OnnxFormatError("nested too deeply")
    while True:
        tag, i = _varint_at(data, i, end)
        if tag & 7 == 4:
            return i
        i = _skip_at(data, i, end, tag & 7, depth + 1)


def _skip_at(data: bytes, i: int, end: int, wire: int, depth: int) -> int:
    """The index after one value of wire type ``wire`` at ``data[i]``, its tag already read.

    :func:`_skip` for a message held in memory.
    """
    if wire == 0:
        _, i = _varint_at(data, i, end)
    elif wire == 1:
        i += 8
    elif wire == 2:
        length, i = _varint_at(data, i, end)
        i += length
    elif wire == 5:
        i += 4
    elif wire == 3:
        i = _skip_group_at(data, i, end, depth)
    else:
        raise OnnxFormatError(f"wire type {wire}")
    if i > end:
        raise OnnxFormatError("truncated")
    return i


def _walk_bytes(
    data: bytes, i: int, end: int, kind: str, depth: int, found: list[ExternalRef]
) -> None:
    """:func:`_walk` over a message held in memory, ``data[i:end]``, by the same rules.

    Read with index arithmetic, and a run of one repeated number field (a tree ensemble's
    thresholds, node ids …: unpacked in ONNX's proto2) is skipped by one regular expression.
    """
    if depth > MAX_DEPTH:
        raise OnnxFormatError("nested too deeply")
    children = _CHILDREN.get(kind, {})
    tensor = kind == "tensor"
    name = ""
    location: str | None = None
    external = False
    while i < end:
        byte = data[i]
        if byte < 0x80:
            if not tensor and byte & 7 in (0, 1, 5):
                run = _run(byte).match(data, i, end)
                if run is not None:
                    i = run.end()
                    continue
            tag, i = byte, i + 1
        else:
            tag, i = _varint_at(data, i, end)
        number, wire = tag >> 3, tag & 7
        if wire == 0:
            if i < end and data[i] < 0x80:
                value, i = data[i], i + 1
            else:
                value, i = _varint_at(data, i, end)
            if tensor and number == _TENSOR_LOCATION:
                external = value == _EXTERNAL
        elif wire == 2:
            if i < end and data[i] < 0x80:
                length, i = data[i], i + 1
            else:
                length, i = _varint_at(data, i, end)
            stop = i + length
            if stop > end:
                raise OnnxFormatError("truncated")
            if tensor and number == _TENSOR_NAME:
                name = _text_at(data, i, stop)
            elif tensor and number == _TENSOR_EXTERNAL:
                key, value_text = _entry_at(data, i, stop)
                if key == "location":
                    location = value_text
            elif number in children:
                _walk_bytes(data, i, stop, children[number], depth + 1, found)
            i = stop
        elif wire == 4:
            raise OnnxFormatError("an end-group tag outside a group")
        else:
            i = _skip_at(data, i, end, wire, depth)
    if i != end:
        raise OnnxFormatError("a field runs past the end of its message")
    if tensor and (external or location is not None):
        found.append(ExternalRef(name, location))


def _text_at(data: bytes, i: int, stop: int) -> str:
    if stop - i > MAX_STRING:
        raise OnnxFormatError(f"a string of {stop - i} bytes where a name or path belongs")
    return data[i:stop].decode("utf-8", errors="replace")


def _entry_at(data: bytes, i: int, stop: int) -> tuple[str, str]:
    """A StringStringEntryProto (``key``, ``value``) held in ``data[i:stop]``."""
    key = value = ""
    while i < stop:
        tag, i = _varint_at(data, i, stop)
        wire = tag & 7
        if tag in (1 << 3 | 2, 2 << 3 | 2):
            length, i = _varint_at(data, i, stop)
            if i + length > stop:
                raise OnnxFormatError("truncated")
            text = _text_at(data, i, i + length)
            i += length
            if tag >> 3 == 1:
                key = text
            else:
                value = text
        else:
            i = _skip_at(data, i, stop, wire, 0)
    if i != stop:
        raise OnnxFormatError("a field runs past the end of its message")
    return key, value


def _string(s: _Stream, end: int) -> str:
    length = s.varint(end)
    if length > MAX_STRING:
        raise OnnxFormatError(f"a string of {length} bytes where a name or path belongs")
    return s.read(length, end).decode("utf-8", errors="replace")


def _entry(s: _Stream, entry_end: int, end: int) -> tuple[str, str]:
    """Read a StringStringEntryProto (``key``, ``value``)."""
    if entry_end > end:
        raise OnnxFormatError("truncated")
    key = value = ""
    while s.pos < entry_end:
        tag = s.varint(entry_end)
        if tag == (1 << 3 | 2):
            key = _string(s, entry_end)
        elif tag == (2 << 3 | 2):
            value = _string(s, entry_end)
        else:
            _skip(s, tag & 7, entry_end, 0)
    if s.pos != entry_end:
        raise OnnxFormatError("a field runs past the end of its message")
    return key, value


def external_refs(fh: IO[bytes] | bytes, size: int | None = None) -> list[ExternalRef]:
    """Every tensor of an ONNX model that keeps its data outside the model file.

    Args:
        fh: the model's bytes, or a binary stream positioned at its start (read forward only).
        size: the stream's length in bytes (required for a stream).

    Raises:
        OnnxFormatError: the bytes are not a readable ONNX protobuf.
    """
    if isinstance(fh, bytes):
        stream: IO[bytes] = io.BytesIO(fh)
        size = len(fh)
    elif size is None:
        raise ValueError("size is required for a stream")
    else:
        stream = fh
    found: list[ExternalRef] = []
    _walk(_Stream(stream, size), "model", size, 0, found)
    return found


def external_data_problems(
    fh: IO[bytes], size: int, model_path: str, files: Collection[str]
) -> list[str]:
    """What is wrong with the external data of the package's model at ``model_path``.

    Args:
        fh: the model file, open for reading.
        size: its size in bytes.
        model_path: its path in the package (locations are relative to its directory).
        files: every path the manifest lists.

    Returns:
        One line per problem (a location outside the package, absolute, or not listed; a model
        modelport cannot read), empty when every reference stays inside the package.
    """
    try:
        refs = external_refs(fh, size)
    except OnnxFormatError as exc:
        return [f"{model_path}: not a readable ONNX model ({exc})"]
    problems: list[str] = []
    base = posixpath.dirname(model_path)
    seen: set[str | None] = set()
    for ref in refs:
        if ref.location in seen:  # one line per location, not per tensor
            continue
        seen.add(ref.location)
        tensor = f"tensor {ref.tensor[:64]!r}"
        if ref.location is None:
            problems.append(f"{model_path}: {tensor} has external data but no location")
        elif not is_safe_relative_path(ref.location):
            problems.append(
                f"{model_path}: {tensor} reads external data from {ref.location[:200]!r}, "
                "outside the package (only relative paths inside it are allowed)"
            )
        elif posixpath.join(base, ref.location) not in files:
            problems.append(
                f"{model_path}: {tensor} reads external data from {ref.location[:200]!r}, "
                "which the manifest does not list"
            )
    return problems
