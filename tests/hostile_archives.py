"""Hostile ``.mport`` archives, crafted byte by byte: gzip bombs, sparse members, huge headers.

A tar stream is given as parts: bytes, and :class:`Zeros` for runs of zero bytes that are never
held in memory. A run is compressed once per MiB and repeated (after a full flush a deflate block
does not depend on what came before it), so an archive that expands to gigabytes takes
milliseconds to build.
"""

from __future__ import annotations

import functools
import io
import struct
import tarfile
import zlib
from collections.abc import Sequence
from dataclasses import dataclass

BLOCK = tarfile.BLOCKSIZE
MIB = 1 << 20
GIB = 1 << 30
TIB = 1 << 40
_ZEROS = bytes(MIB)


@dataclass(frozen=True)
class Zeros:
    """``count`` zero bytes of the tar stream."""

    count: int


Part = bytes | Zeros


@functools.cache
def _deflated_zeros(count: int) -> bytes:
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    return compressor.compress(bytes(count)) + compressor.flush(zlib.Z_FULL_FLUSH)


def gzip_parts(parts: Sequence[Part], *, checksum: bool = True) -> bytes:
    """Gzip a tar stream given as parts.

    Args:
        parts: the stream, in order.
        checksum: compute the trailer's CRC (about 0.4 s per GiB of zeros); without it the
            trailer is wrong, so a reader that gets to the end calls the archive damaged.
    """
    out = [b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"]  # deflate, no name, no time
    crc = size = 0
    for part in parts:
        if isinstance(part, Zeros):
            whole, rest = divmod(part.count, MIB)
            out.append(_deflated_zeros(MIB) * whole)
            if rest:
                out.append(_deflated_zeros(rest))
            if checksum:
                for _ in range(whole):
                    crc = zlib.crc32(_ZEROS, crc)
                crc = zlib.crc32(bytes(rest), crc)
            size += part.count
        else:
            compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
            out.append(compressor.compress(part) + compressor.flush(zlib.Z_FULL_FLUSH))
            crc = zlib.crc32(part, crc)
            size += len(part)
    out.append(zlib.compressobj(9, zlib.DEFLATED, -15).flush())  # an empty final block
    out.append(struct.pack("<II", crc & 0xFFFFFFFF, size & 0xFFFFFFFF))
    return b"".join(out)


def padding(size: int) -> bytes:
    """The zeros that pad ``size`` bytes of entry data to a whole tar block."""
    return bytes(-size % BLOCK)


def header(name: str, size: int, pax: dict[str, str] | None = None) -> bytes:
    """The header (with its pax header, if any) of a regular file of ``size`` bytes."""
    info = tarfile.TarInfo(name)
    info.size = size
    info.mode = 0o644
    if pax:
        info.pax_headers = pax
    return info.tobuf(tarfile.PAX_FORMAT)


def entry(name: str, data: bytes) -> bytes:
    """A whole regular-file entry: header, data, padding."""
    return header(name, len(data)) + data + padding(len(data))


def huge_entry(name: str, size: int) -> list[Part]:
    """A regular-file entry of ``size`` zero bytes."""
    return [header(name, size), Zeros(size + len(padding(size)))]


END = bytes(2 * BLOCK)  # the end-of-archive marker


def gnu_sparse_entry(name: str, realsize: int) -> bytes:
    """An old-GNU sparse entry (type ``S``): one data byte at the end of ``realsize`` bytes."""
    info = tarfile.TarInfo(name)
    info.type = tarfile.GNUTYPE_SPARSE
    info.size = 1  # the bytes stored: the holes are not
    info.mode = 0o644
    buf = bytearray(info.tobuf(tarfile.GNU_FORMAT))
    buf[386:398] = tarfile.itn(realsize - 1, 12, tarfile.GNU_FORMAT)  # first region: offset
    buf[398:410] = tarfile.itn(1, 12, tarfile.GNU_FORMAT)  # and length
    buf[482] = 0  # no extension blocks
    buf[483:495] = tarfile.itn(realsize, 12, tarfile.GNU_FORMAT)
    buf[148:156] = b" " * 8
    buf[148:155] = b"%06o\0" % sum(buf[:BLOCK])
    return bytes(buf) + b"x" + padding(1)


def pax_sparse_entry(name: str, realsize: int, version: str) -> bytes:
    """A GNU sparse entry in pax form, ``version`` 0.1 (map in a record) or 1.0 (map in data)."""
    if version == "0.1":
        pax = {
            "GNU.sparse.name": name,
            "GNU.sparse.size": str(realsize),
            "GNU.sparse.map": f"{realsize - 1},1",
        }
        return header(f"GNUSparseFile.0/{name}", 1, pax) + b"x" + padding(1)
    pax = {
        "GNU.sparse.major": "1",
        "GNU.sparse.minor": "0",
        "GNU.sparse.name": name,
        "GNU.sparse.realsize": str(realsize),
    }
    data = f"1\n{realsize - 1}\n1\n".encode().ljust(BLOCK, b"\0") + b"x"
    return header(f"GNUSparseFile.0/{name}", len(data), pax) + data + padding(len(data))


def pax_bomb(size: int) -> list[Part]:
    """A pax extended header of ``size`` bytes (tarfile reads one whole into memory)."""
    info = tarfile.TarInfo("././@PaxHeader")
    info.type = tarfile.XHDTYPE
    info.size = size
    return [info.tobuf(tarfile.USTAR_FORMAT), Zeros(size + len(padding(size)))]


def many_entries(count: int) -> bytes:
    """``count`` empty files ``f0``, ``f1``, ... (headers only)."""
    out = io.BytesIO()
    for i in range(count):
        out.write(header(f"f{i}", 0))
    return out.getvalue()
