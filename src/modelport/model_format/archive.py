"""The ``.mport`` archive: a reproducible gzip-compressed tar of a package directory.

Writing is deterministic: the manifest first, then files in sorted order, fixed timestamps, owners
and modes, and a gzip header with no name or time, so the same package gives byte-identical
archives. Extraction refuses path traversal, absolute paths, links, devices and any file the
manifest does not list, and never writes outside its destination.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import tarfile
import tempfile
import zlib
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import BinaryIO

from modelport.errors import IntegrityError, PackageError, UnsafeArchiveError
from modelport.model_format.manifest import MANIFEST_NAME, Manifest, is_safe_relative_path, parse

ARCHIVE_SUFFIX = ".mport"
#: 1980-01-01T00:00:00Z, the earliest time ZIP can store; tools that treat 0 as "unset" accept it.
FIXED_MTIME = 315532800
CHUNK = 1 << 20


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

    The archive holds the manifest and exactly the files it lists.
    """
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
        os.chmod(tmp_name, 0o644)
        os.replace(tmp_name, out)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise


def _add(tar: tarfile.TarFile, name: str, size: int, content: BinaryIO) -> None:
    info = tarfile.TarInfo(name)
    info.size = size
    info.mtime = FIXED_MTIME
    info.mode = 0o644
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    tar.addfile(info, content)


def _open(path: Path) -> tarfile.TarFile:
    try:
        return tarfile.open(path, mode="r:gz")
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise PackageError(f"{path}: not a modelport archive ({exc})") from None


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
    if not member.isfile():
        raise UnsafeArchiveError(f"archive entry {name!r} is not a regular file; refusing it")
    if not is_safe_relative_path(name):
        raise UnsafeArchiveError(f"archive entry {name!r} is not a clean relative path")


def _members(tar: tarfile.TarFile, path: Path) -> dict[str, tarfile.TarInfo]:
    members: dict[str, tarfile.TarInfo] = {}
    try:
        entries = tar.getmembers()
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise PackageError(f"{path}: damaged archive ({exc})") from None
    # tarfile stops at the end-of-archive blocks, before the gzip trailer: read on to the end so
    # gzip checks its CRC and length, and a corrupted or truncated archive fails here.
    try:
        while tar.fileobj is not None and tar.fileobj.read(CHUNK):
            pass
    except (OSError, EOFError, zlib.error) as exc:
        raise PackageError(f"{path}: damaged archive ({exc})") from None
    for member in entries:
        _check_member(member)
        if member.name in members:
            raise UnsafeArchiveError(f"archive entry {member.name!r} appears twice")
        members[member.name] = member
    if MANIFEST_NAME not in members:
        raise PackageError(f"{path}: no {MANIFEST_NAME} in the archive; is it a modelport package?")
    return members


def read_archive_manifest(path: Path) -> Manifest:
    """Read and validate the manifest of an archive without extracting anything else."""
    with _open(path) as tar:
        members = _members(tar, path)
        return parse(_read(tar, members[MANIFEST_NAME]), f"{path}:{MANIFEST_NAME}")


def _read(tar: tarfile.TarFile, member: tarfile.TarInfo) -> bytes:
    fh = tar.extractfile(member)
    assert fh is not None  # regular files always have a stream
    return fh.read()


def archive_problems(path: Path) -> tuple[Manifest, list[str]]:
    """Check an archive against its manifest without extracting it.

    Returns:
        The manifest and a list of problems: files missing, altered or not listed.
    """
    with _open(path) as tar:
        members = _members(tar, path)
        manifest = parse(_read(tar, members[MANIFEST_NAME]), f"{path}:{MANIFEST_NAME}")
        actual: dict[str, str] = {}
        for name, member in members.items():
            if name == MANIFEST_NAME:
                continue
            fh = tar.extractfile(member)
            assert fh is not None
            h = hashlib.sha256()
            while chunk := fh.read(CHUNK):
                h.update(chunk)
            actual[name] = "sha256:" + h.hexdigest()
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


def extract_archive(path: Path, dest: Path) -> Manifest:
    """Extract a verified archive into the empty directory ``dest``.

    Every entry is checked before anything is written; a file the manifest does not list, or whose
    digest differs, fails the extraction with every problem named.

    Raises:
        UnsafeArchiveError: an entry is a link, a device, or a path outside the package.
        IntegrityError: files missing, altered or not listed.
    """
    manifest, problems = archive_problems(path)
    if problems:
        raise IntegrityError(problems)
    with _open(path) as tar:
        members = _members(tar, path)
        for name in sorted(manifest.files):
            target = dest.joinpath(*name.split("/"))
            target.parent.mkdir(parents=True, exist_ok=True)
            fh = tar.extractfile(members[name])
            assert fh is not None
            # O_EXCL | O_NOFOLLOW: never follow or overwrite anything already there.
            fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
            with os.fdopen(fd, "wb") as out:
                while chunk := fh.read(CHUNK):
                    out.write(chunk)
    (dest / MANIFEST_NAME).write_bytes(manifest.to_json())
    # The archive was checked while streaming; check what landed on disk too (cheap, and it is
    # what the model will actually be loaded from).
    landed = directory_problems(dest, manifest)
    if landed:
        raise IntegrityError(landed)
    return manifest


def directory_problems(root: Path, manifest: Manifest) -> list[str]:
    """Check a package directory against its manifest: missing, altered, extra and linked files."""
    actual: dict[str, str] = {}
    problems: list[str] = []
    for rel in _walk(root, problems):
        actual[rel] = file_digest(root / rel)
    return problems + compare_digests(manifest.files, actual)


def _walk(root: Path, problems: list[str]) -> Iterable[str]:
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        base = Path(dirpath)
        for d in list(dirnames):
            if (base / d).is_symlink():
                problems.append(f"symbolic link: {(base / d).relative_to(root).as_posix()}")
                dirnames.remove(d)
        for f in filenames:
            p = base / f
            rel = p.relative_to(root).as_posix()
            if rel == MANIFEST_NAME:
                continue
            if p.is_symlink():
                problems.append(f"symbolic link: {rel}")
            elif not p.is_file():
                problems.append(f"not a regular file: {rel}")
            else:
                yield rel
