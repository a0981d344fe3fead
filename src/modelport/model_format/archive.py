"""The ``.mport`` archive: a reproducible gzip-compressed tar of a package directory.

Writing is deterministic: the manifest first, then files in sorted order, fixed timestamps, owners
and modes, and a gzip header with no name or time, so the same package gives byte-identical
archives.

A signed package also carries its OpenSSF Model Signing bundle as the member ``model.sig``
(:data:`~modelport.model_format.manifest.SIGNATURE_NAME`), after the files. The manifest does not
list it (a signature cannot be inside what it signs), so signing leaves the package digest as it
was. It is the one unlisted name a package may hold, and only as a regular file of at most
:data:`MAX_SIGNATURE_BYTES`.

Reading is one streaming pass, the manifest first. Every later entry is checked from its header,
before its bytes are read or decompressed: links, devices, sparse files, traversal, absolute
paths, duplicates, files the manifest does not list, too many entries, and sizes beyond the
:class:`~modelport.model_format.limits.ArchiveLimits` are refused there. The decompressed stream
itself never goes past the limits either (tar headers and whatever follows the last entry are
read through the same bound), so a gzip bomb costs at most what the limits allow. Extraction
never writes outside its destination.
"""

from __future__ import annotations

import contextlib
import errno
import gzip
import hashlib
import io
import os
import stat
import tarfile
import tempfile
import zlib
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import IO, BinaryIO, TypeVar

from modelport.errors import (
    ArchiveLimitError,
    EnvironmentProblem,
    IntegrityError,
    PackageError,
    UnsafeArchiveError,
)
from modelport.model_format.limits import (
    DEFAULT_LIMITS,
    RATIO_EXEMPT_BYTES,
    ArchiveLimits,
    human_bytes,
    over_limit,
)
from modelport.model_format.manifest import MANIFEST_NAME, SIGNATURE_NAME, Manifest, parse
from modelport.model_format.paths import is_safe_relative_path

ARCHIVE_SUFFIX = ".mport"
#: 1980-01-01T00:00:00Z, the earliest time ZIP can store; tools that treat 0 as "unset" accept it.
FIXED_MTIME = 315532800
CHUNK = 1 << 20
#: The most one entry's headers (pax records, a GNU long name, a sparse map) may take.
_HEADER_BYTES = CHUNK
#: The most that may follow the last entry (tar pads its end to a 10 KiB record).
_TRAILING_BYTES = CHUNK
#: An unlisted entry larger than this ends the pass at its header: skipping it would mean
#: decompressing it, and the package is refused anyway.
_UNLISTED_SKIP_BYTES = CHUNK
#: The most a package's signature may take. A bundle signed with a key is about 2 KiB, one with
#: a certificate chain a few KiB more; anything near this is not a signature.
MAX_SIGNATURE_BYTES = CHUNK
_DISK_FULL = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})
_NOT_WRITABLE = frozenset({errno.EACCES, errno.EPERM, errno.EROFS})
_T = TypeVar("_T")


def file_digest(path: Path) -> str:
    """Return ``sha256:<hex>`` of a file's bytes, read in chunks."""
    h = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(CHUNK):
            h.update(chunk)
    return "sha256:" + h.hexdigest()


def is_archive(path: str | os.PathLike[str]) -> bool:
    """True when ``path`` names an archive file rather than a package directory."""
    p = Path(path)
    return p.is_file() or (not p.exists() and p.suffix == ARCHIVE_SUFFIX)


def write_archive(package_dir: Path, manifest: Manifest, out: Path) -> None:
    """Write ``package_dir`` as a reproducible archive at ``out``, atomically.

    The archive holds the manifest and exactly the files it lists, then the package's signature
    (``package_dir/model.sig``) when there is one.

    Raises:
        PackageError: ``model.sig`` is a link, not a regular file, or over
            :data:`MAX_SIGNATURE_BYTES`.
    """
    signature = _signature_file(package_dir, manifest)
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent)
    try:
        with (
            os.fdopen(fd, "wb") as raw,
            gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=6) as gz,
            tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as tar,
        ):
            data = manifest.to_json()
            _add(tar, MANIFEST_NAME, len(data), io.BytesIO(data))
            for rel in sorted(manifest.files):
                path = package_dir / rel
                with path.open("rb") as fh:  # streamed: a large model is never held in memory
                    _add(tar, rel, os.fstat(fh.fileno()).st_size, fh)
            if signature is not None:  # last: the entries before it are the package itself
                _add(tar, SIGNATURE_NAME, len(signature), io.BytesIO(signature))
        os.chmod(tmp_name, 0o644)
        os.replace(tmp_name, out)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise


def carries_signature(manifest: Manifest) -> bool:
    """Whether a package of this manifest may carry ``model.sig`` as its signature.

    Not when the manifest lists a file of that name: that file is part of the package.
    """
    return SIGNATURE_NAME not in manifest.files


def _signature_file(package_dir: Path, manifest: Manifest) -> bytes | None:
    """The bytes of ``package_dir/model.sig``, the package's signature, if it has one.

    Raises:
        PackageError: it is a link, not a regular file, or over :data:`MAX_SIGNATURE_BYTES`.
    """
    if not carries_signature(manifest):
        return None
    return read_signature_file(package_dir / SIGNATURE_NAME)


def read_signature_file(path: Path) -> bytes | None:
    """The bytes of the signature file at ``path``, or None when there is none.

    Raises:
        PackageError: it is a link, not a regular file, unreadable, or over
            :data:`MAX_SIGNATURE_BYTES`.
    """
    try:
        # O_NOFOLLOW: a link could name any file on the machine.
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except FileNotFoundError:
        return None
    except OSError as exc:
        if path.is_symlink():
            raise PackageError(f"{path} is a symbolic link; a signature must be a file") from None
        raise PackageError(f"{path}: cannot read the signature ({exc.strerror})") from None
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        os.close(fd)
        raise PackageError(f"{path} is not a regular file; a signature must be one")
    with os.fdopen(fd, "rb") as fh:
        check_signature_size(path, info.st_size)
        data = fh.read(MAX_SIGNATURE_BYTES + 1)  # it may grow while read
    check_signature_size(path, len(data))
    return data


def check_signature_size(source: object, size: int) -> None:
    """Refuse a signature of ``size`` bytes, over :data:`MAX_SIGNATURE_BYTES`, before reading it.

    Raises:
        ArchiveLimitError: it is too large.
    """
    if size > MAX_SIGNATURE_BYTES:
        raise ArchiveLimitError(
            f"{source}: the signature is {human_bytes(size)}, over the "
            f"{human_bytes(MAX_SIGNATURE_BYTES)} a signature may take; it is not one"
        )


def _add(tar: tarfile.TarFile, name: str, size: int, content: BinaryIO) -> None:
    info = tarfile.TarInfo(name)
    info.size = size
    info.mtime = FIXED_MTIME
    info.mode = 0o644
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    tar.addfile(info, content)


def _write_error(exc: OSError, doing: str) -> EnvironmentProblem | None:
    """The environment problem behind a failed write, if it is one (else None: re-raise it)."""
    if exc.errno in _DISK_FULL:
        return EnvironmentProblem(
            f"disk full while {doing} ({exc.strerror})",
            hint="free space there, or set TMPDIR to a directory with room for the package",
        )
    if exc.errno in _NOT_WRITABLE:
        return EnvironmentProblem(
            f"cannot write while {doing} ({exc.strerror})",
            hint="set TMPDIR to a writable directory",
        )
    return None


class _Inflated:
    """An archive's decompressed tar stream, which never goes past what the limits allow.

    This is the backstop behind the header checks: tar headers themselves (pax records, long
    names, sparse maps, all read into memory by :mod:`tarfile`) and whatever follows the last
    entry are read through it too. Decompression errors become :class:`PackageError`.
    """

    def __init__(self, path: Path, raw: BinaryIO, limits: ArchiveLimits) -> None:
        self._path = path
        self._limits = limits
        self._gz = gzip.GzipFile(fileobj=raw, mode="rb")
        self.archive_bytes = os.fstat(raw.fileno()).st_size
        self.cap, self._cap_limit = limits.expansion_cap(self.archive_bytes)
        # Past the last entry's data come the end-of-archive blocks and padding.
        self._bound = self.cap + _TRAILING_BYTES
        self._header_bytes: int | None = None

    @contextlib.contextmanager
    def header(self) -> Iterator[None]:
        """Count what is read meanwhile as one entry's headers, at most ``_HEADER_BYTES``."""
        self._header_bytes = 0
        try:
            yield
        finally:
            self._header_bytes = None

    def too_large(self, what: str, end: int) -> ArchiveLimitError:
        """The error for ``what`` taking the expanded archive to ``end`` bytes, past the cap."""
        if self._cap_limit == "max_ratio":
            return over_limit(
                f"{self._path}: {what} would expand the {human_bytes(self.archive_bytes)} archive "
                f"to {human_bytes(end)}, {end / max(1, self.archive_bytes):,.0f} times its size; "
                f"past {human_bytes(RATIO_EXEMPT_BYTES)} at most {self._limits.max_ratio:g} times "
                "is allowed",
                "max_ratio",
            )
        return over_limit(
            f"{self._path}: {what} would expand the archive to {human_bytes(end)}, over the "
            f"{self._limits.max_expanded_mb:g} MiB limit",
            "max_expanded_mb",
        )

    def _inflate(self, step: Callable[[], _T]) -> _T:
        started = self._gz.tell() > 0
        try:
            return step()
        except (OSError, EOFError, zlib.error) as exc:
            what = "damaged archive" if started else "not a modelport archive"
            raise PackageError(f"{self._path}: {what} ({exc})") from None

    def read(self, size: int = -1, /) -> bytes:
        """Read at most ``size`` bytes (all there is, up to the bound, for a negative size)."""
        pos = self._gz.tell()
        room = self._bound + 1 - pos
        size = room if size < 0 else min(size, room)
        if self._header_bytes is not None:
            self._header_bytes += size
            if self._header_bytes > _HEADER_BYTES:
                raise UnsafeArchiveError(
                    f"{self._path}: a tar header near byte {pos:,} is over "
                    f"{human_bytes(_HEADER_BYTES)} (pax records, a long name or a sparse map); "
                    "refusing it"
                )
        data = self._inflate(lambda: self._gz.read(size))
        if pos + len(data) > self._bound:
            raise self.too_large("its tar headers or trailing data", pos + len(data))
        return data

    def seek(self, pos: int, /) -> int:
        """Move to ``pos`` (forward moves decompress what they pass)."""
        if pos > self._bound:
            raise self.too_large("an entry", pos)
        return self._inflate(lambda: self._gz.seek(pos))

    def tell(self) -> int:
        """The position in the decompressed stream."""
        return self._gz.tell()

    def seekable(self) -> bool:
        """True: :mod:`tarfile` seeks forward over what it skips."""
        return True

    def readable(self) -> bool:
        """True."""
        return True

    def write(self, data: bytes, /) -> int:
        """Never: archives are read through this stream."""
        raise io.UnsupportedOperation("write")

    def close(self) -> None:
        """Close the decompressor (not the file under it)."""
        self._gz.close()

    def finish(self) -> None:
        """Read on to the end, so gzip checks its CRC and length: a damaged archive fails here."""
        # tarfile stops at the end-of-archive blocks, before the gzip trailer.
        end = self.tell()
        while self.read(CHUNK):
            if self.tell() - end > _TRAILING_BYTES:
                raise PackageError(
                    f"{self._path}: damaged archive (more than {human_bytes(_TRAILING_BYTES)} "
                    "of data after its last entry)"
                )


class _Archive:
    """One pass over an archive: the manifest, then every other entry, checked from its header."""

    def __init__(
        self, path: Path, tar: tarfile.TarFile, stream: _Inflated, limits: ArchiveLimits
    ) -> None:
        self._path = path
        self._tar = tar
        self._stream = stream
        self._limits = limits

    def _next(self) -> tarfile.TarInfo | None:
        with self._stream.header():
            try:
                return self._tar.next()
            except (tarfile.TarError, OSError, EOFError, zlib.error) as exc:
                raise PackageError(f"{self._path}: damaged archive ({exc})") from None

    def _check_size(self, member: tarfile.TarInfo) -> None:
        if member.size < 0:
            raise UnsafeArchiveError(f"archive entry {member.name!r} has a negative size")
        end = member.offset_data + member.size
        if end > self._stream.cap:
            what = f"archive entry {member.name!r} ({human_bytes(member.size)})"
            raise self._stream.too_large(what, end)

    def read_manifest(self) -> Manifest:
        """Read and validate the first entry, which must be the manifest.

        Raises:
            PackageError: no manifest first, an invalid one, or one over the limit.
        """
        first = self._next()
        if first is None:
            raise PackageError(
                f"{self._path}: no {MANIFEST_NAME} in the archive; is it a modelport package?"
            )
        _check_member(first)
        if first.name != MANIFEST_NAME:
            raise PackageError(
                f"{self._path}: the archive does not start with {MANIFEST_NAME} (its first entry "
                f"is {first.name!r}); is it a modelport package?"
            )
        source = f"{self._path}:{MANIFEST_NAME}"
        self._limits.check_manifest_size(source, first.size)
        self._check_size(first)
        return parse(b"".join(self.chunks(first)), source)

    def members(self) -> Iterator[tarfile.TarInfo]:
        """Every entry after the manifest, each checked from its header; then the gzip trailer.

        Raises:
            UnsafeArchiveError: an entry is unsafe (link, device, sparse, traversal) or repeated.
            ArchiveLimitError: too many entries, or one that would expand the archive too far.
        """
        seen = {MANIFEST_NAME}
        while (member := self._next()) is not None:
            if len(seen) >= self._limits.max_entries:
                raise over_limit(
                    f"{self._path}: the archive holds more than {self._limits.max_entries:,} "
                    "entries",
                    "max_entries",
                )
            _check_member(member)
            if member.name in seen:
                raise UnsafeArchiveError(f"archive entry {member.name!r} appears twice")
            seen.add(member.name)
            self._check_size(member)
            yield member
        self._stream.finish()

    def open(self, member: tarfile.TarInfo) -> IO[bytes]:
        """The stream of a checked entry."""
        fh = self._tar.extractfile(member)
        assert fh is not None  # regular files always have a stream
        return fh

    def chunks(self, member: tarfile.TarInfo) -> Iterator[bytes]:
        """The bytes of a checked entry, in chunks."""
        fh = self.open(member)
        try:
            while chunk := fh.read(CHUNK):
                yield chunk
        except tarfile.TarError as exc:
            raise PackageError(f"{self._path}: damaged archive ({exc})") from None


@contextlib.contextmanager
def _reading(path: Path, limits: ArchiveLimits) -> Iterator[_Archive]:
    try:
        raw = path.open("rb")
    except OSError as exc:
        raise PackageError(f"{path}: cannot read the archive ({exc.strerror})") from None
    with raw:
        stream = _Inflated(path, raw, limits)
        try:
            with stream.header():  # tarfile reads the first header as it opens
                tar = tarfile.TarFile(fileobj=stream, mode="r")
        except (tarfile.TarError, OSError, EOFError, zlib.error) as exc:
            raise PackageError(f"{path}: not a modelport archive ({exc})") from None
        with tar, contextlib.closing(stream):
            yield _Archive(path, tar, stream, limits)


def _check_member(member: tarfile.TarInfo) -> None:
    name = member.name
    if name.startswith("/") or (len(name) > 1 and name[1] == ":"):
        raise UnsafeArchiveError(f"archive entry {name!r} has an absolute path; refusing it")
    if ".." in name.split("/"):
        raise UnsafeArchiveError(f"archive entry {name!r} points outside the package; refusing it")
    if member.issym() or member.islnk():
        raise UnsafeArchiveError(f"archive entry {name!r} is a link; refusing it")
    if member.isdev() or member.isfifo():
        raise UnsafeArchiveError(f"archive entry {name!r} is a device or pipe; refusing it")
    if member.issparse():
        # Its holes read as zeros: a few bytes of archive could stand for a terabyte.
        raise UnsafeArchiveError(f"archive entry {name!r} is a sparse file; refusing it")
    if not member.isfile():
        raise UnsafeArchiveError(f"archive entry {name!r} is not a regular file; refusing it")
    if not is_safe_relative_path(name):
        raise UnsafeArchiveError(f"archive entry {name!r} is not a clean relative path")


def read_archive_manifest(path: Path, limits: ArchiveLimits = DEFAULT_LIMITS) -> Manifest:
    """Read and validate the manifest of an archive without extracting anything else.

    Every entry's header and the gzip trailer are checked too.

    Raises:
        PackageError: not an archive, damaged, unsafe, over a limit, or an invalid manifest.
    """
    with _reading(path, limits) as archive:
        manifest = archive.read_manifest()
        for _ in archive.members():
            pass
    return manifest


@contextlib.contextmanager
def open_member(
    path: Path, name: str, limits: ArchiveLimits = DEFAULT_LIMITS
) -> Iterator[tuple[IO[bytes], int]]:
    """Open one file of an archive, read under the same checks and limits as every other pass.

    Yields:
        The file's stream and size; the entries after it are not read.

    Raises:
        PackageError: not an archive, damaged, unsafe, over a limit, or no such file.
    """
    with _reading(path, limits) as archive:
        archive.read_manifest()
        for member in archive.members():
            if member.name == name:
                yield archive.open(member), member.size
                return
    raise PackageError(f"{path}: no {name} in the archive")


def read_signature_member(path: Path, limits: ArchiveLimits = DEFAULT_LIMITS) -> bytes | None:
    """The signature an archive carries (its ``model.sig`` member), or None when unsigned.

    Every entry's header is checked on the way, as in every other pass; the files' bytes are
    not hashed.

    Raises:
        PackageError: not an archive, damaged, unsafe, over a limit, or a signature over
            :data:`MAX_SIGNATURE_BYTES`.
    """
    with _reading(path, limits) as archive:
        manifest = archive.read_manifest()
        if not carries_signature(manifest):
            return None
        for member in archive.members():
            if member.name == SIGNATURE_NAME:
                check_signature_size(f"{path}:{SIGNATURE_NAME}", member.size)
                return b"".join(archive.chunks(member))
    return None


def archive_problems(
    path: Path, limits: ArchiveLimits = DEFAULT_LIMITS
) -> tuple[Manifest, list[str]]:
    """Check an archive against its manifest without extracting it.

    An entry the manifest does not list is reported from its header and never hashed; one
    larger than 1 MiB ends the check there (the entries after it are not read). The package's
    signature (``model.sig``) is the one unlisted entry that is not a problem.

    Returns:
        The manifest and a list of problems: files missing, altered or not listed.

    Raises:
        PackageError: not an archive, damaged, unsafe, over a limit, or an invalid manifest.
        ArchiveLimitError: its signature is over :data:`MAX_SIGNATURE_BYTES`.
    """
    with _reading(path, limits) as archive:
        manifest = archive.read_manifest()
        signed = carries_signature(manifest)
        actual: dict[str, str] = {}
        for member in archive.members():
            if signed and member.name == SIGNATURE_NAME:
                check_signature_size(f"{path}:{SIGNATURE_NAME}", member.size)
                continue  # not part of the package: the signature module reads it
            if member.name in manifest.files:
                h = hashlib.sha256()
                for chunk in archive.chunks(member):
                    h.update(chunk)
                actual[member.name] = "sha256:" + h.hexdigest()
                continue
            actual[member.name] = ""  # unlisted: its bytes are never read
            if member.size > _UNLISTED_SKIP_BYTES:
                seen = {rel: d for rel, d in manifest.files.items() if rel in actual}
                return manifest, [
                    *compare_digests(seen, actual),
                    f"not checked: the entries after {member.name}, an unlisted file of "
                    f"{human_bytes(member.size)}",
                ]
    return manifest, compare_digests(manifest.files, actual)


def compare_digests(want: Mapping[str, str], actual: Mapping[str, str]) -> list[str]:
    """List every file that is missing, altered or not listed, in path order."""
    problems: list[str] = []
    for rel in sorted(set(want) | set(actual)):
        if rel not in actual:
            problems.append(f"missing file: {rel}")
        elif rel not in want:
            problems.append(f"extra file (not listed in the manifest): {rel}")
        elif want[rel] != actual[rel]:
            problems.append(f"altered file: {rel} (expected {want[rel]}, found {actual[rel]})")
    return problems


def extract_archive(path: Path, dest: Path, limits: ArchiveLimits = DEFAULT_LIMITS) -> Manifest:
    """Extract a verified archive into the empty directory ``dest``.

    Every entry is checked before anything is written; a file the manifest does not list, or whose
    digest differs, fails the extraction with every problem named. The package's signature
    (``model.sig``) is extracted too, where a signed directory keeps it. On failure ``dest`` may
    hold some files: the caller removes it.

    Raises:
        UnsafeArchiveError: an entry is a link, a device, sparse, or a path outside the package.
        ArchiveLimitError: the archive goes over one of ``limits``.
        IntegrityError: files missing, altered or not listed.
        EnvironmentProblem: ``dest`` is not writable, or the disk is full.
    """
    manifest, problems = archive_problems(path, limits)
    if problems:
        raise IntegrityError(problems)
    try:
        with _reading(path, limits) as archive:
            archive.read_manifest()
            # In archive order: one forward pass, whatever order a hostile archive chose.
            for member in archive.members():
                if member.name == SIGNATURE_NAME and carries_signature(manifest):
                    check_signature_size(f"{path}:{SIGNATURE_NAME}", member.size)
                elif member.name not in manifest.files:  # the archive changed since the check
                    raise IntegrityError(
                        [f"extra file (not listed in the manifest): {member.name}"]
                    )
                target = dest.joinpath(*member.name.split("/"))
                target.parent.mkdir(parents=True, exist_ok=True)
                # O_EXCL | O_NOFOLLOW: never follow or overwrite anything already there.
                fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
                with os.fdopen(fd, "wb") as out:
                    for chunk in archive.chunks(member):
                        out.write(chunk)
        (dest / MANIFEST_NAME).write_bytes(manifest.to_json())
    except OSError as exc:
        problem = _write_error(exc, f"extracting {path} into {dest}")
        if problem is None:
            raise
        raise problem from None
    # The archive was checked while streaming; check what landed on disk too (cheap, and it is
    # what the model will actually be loaded from).
    landed = directory_problems(dest, manifest)
    if landed:
        raise IntegrityError(landed)
    return manifest


def directory_problems(
    root: Path, manifest: Manifest, *, known: Mapping[str, str] | None = None
) -> list[str]:
    """Check a package directory against its manifest: missing, altered, extra and linked files.

    The package's signature (``model.sig``) is not an extra file; it must be a regular file of
    at most :data:`MAX_SIGNATURE_BYTES` (its contents are the signature module's to check).

    Args:
        root: the package directory.
        manifest: its manifest.
        known: sha256 digests (bare hex) of files just checked some other way (a signature's
            verification hashed them), by relative path: those files are not hashed again.
    """
    actual: dict[str, str] = {}
    problems: list[str] = []
    skip = SIGNATURE_NAME if carries_signature(manifest) else None
    known = known or {}
    for rel in _walk(root, problems, skip):
        actual[rel] = f"sha256:{known[rel]}" if rel in known else file_digest(root / rel)
    if skip is not None:
        problems += _signature_problems(root / skip)
    return problems + compare_digests(manifest.files, actual)


def _signature_problems(path: Path) -> list[str]:
    """What is wrong with a package directory's ``model.sig`` as a file (nothing if absent)."""
    try:
        read_signature_file(path)
    except PackageError as exc:
        return [str(exc)]
    return []


def _walk(root: Path, problems: list[str], skip: str | None = None) -> Iterable[str]:
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        base = Path(dirpath)
        for d in list(dirnames):
            if (base / d).is_symlink():
                problems.append(f"symbolic link: {(base / d).relative_to(root).as_posix()}")
                dirnames.remove(d)
        for f in filenames:
            p = base / f
            rel = p.relative_to(root).as_posix()
            if rel in (MANIFEST_NAME, skip):
                continue
            if p.is_symlink():
                problems.append(f"symbolic link: {rel}")
            elif not p.is_file():
                problems.append(f"not a regular file: {rel}")
            else:
                yield rel
