"""The package cache: fetched packages, verified, named by their bytes, evicted LRU first.

Layout under ``$MODELPORT_HOME/cache``::

    objects/<sha256>.mport   verified archives, named by the sha256 of their bytes
    refs/<sha256>.json       what a source (a URI at one version) was fetched as: its object
    tmp/<pid>.<random>.part/ downloads under way; never read, removed when they end

A download is written under ``tmp/``, checked as an archive (every file against the manifest's
digest), then renamed into ``objects/``:
a reader sees a whole verified archive or nothing. A ref is written atomically after its
object. An object whose bytes no longer match its name is removed and fetched again.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import errno
import hashlib
import json
import os
import re
import shutil
import uuid
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from modelport.errors import EnvironmentProblem, IntegrityError, ModelportWarning, UsageError
from modelport.home import default_home, exclusive_lock, write_json_atomic
from modelport.model_format.archive import CHUNK, archive_problems
from modelport.model_format.limits import DEFAULT_LIMITS, ArchiveLimits

#: The most the cache may hold, in bytes or with a unit: ``500M``, ``20G``. Default 10 GiB.
CACHE_SIZE_ENV = "MODELPORT_CACHE_SIZE"
DEFAULT_CACHE_BYTES = 10 << 30

_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]?)(?:I?B)?\s*$", re.IGNORECASE)


def parse_size(text: str, what: str = CACHE_SIZE_ENV) -> int:
    """``10G``, ``512MiB``, ``1000000`` as bytes.

    Raises:
        UsageError: anything else.
    """
    match = _SIZE.match(text)
    if match is None:
        raise UsageError(f"{what}: {text!r} is not a size", hint="write it as 500M or 20G")
    return int(float(match.group(1)) * _UNITS[match.group(2).upper()])


@dataclass(frozen=True)
class CacheEntry:
    """One fetched source and the archive it gave.

    Attributes:
        key: the source at one version (a URI and its ETag, a registry version …).
        source: the reference as the user wrote it.
        digest: the package's digest.
        path: the verified archive.
        size: its size in bytes.
        fetched_at: when it was fetched (UTC, ISO 8601).
        last_used: when it was last handed out (seconds since the epoch).
        metadata: what the source said of it (registry name, version, alias, run).
    """

    key: str
    source: str
    digest: str
    path: Path
    size: int
    fetched_at: str
    last_used: float
    metadata: Mapping[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The entry as JSON values (``modelport cache list --json``)."""
        return {
            "source": self.source,
            "digest": self.digest,
            "path": str(self.path),
            "size_bytes": self.size,
            "fetched_at": self.fetched_at,
            "last_used": dt.datetime.fromtimestamp(self.last_used, dt.timezone.utc).isoformat(),
            "metadata": dict(self.metadata),
        }


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(CHUNK):
            h.update(chunk)
    return h.hexdigest()


def _key_name(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


class PackageCache:
    """The cache of packages fetched from storage URIs and MLflow (see the module's notes).

    Args:
        root: its directory; default ``$MODELPORT_HOME/cache``.
        max_bytes: the most its objects may take; default ``$MODELPORT_CACHE_SIZE`` or 10 GiB.
            The object just added always stays, even when it alone is larger.
    """

    def __init__(self, root: Path | None = None, max_bytes: int | None = None) -> None:
        self.root = root if root is not None else default_home() / "cache"
        if max_bytes is None:
            text = os.environ.get(CACHE_SIZE_ENV, "").strip()
            max_bytes = parse_size(text) if text else DEFAULT_CACHE_BYTES
        self.max_bytes = max_bytes
        self._objects = self.root / "objects"
        self._refs = self.root / "refs"
        self._tmp = self.root / "tmp"

    # --- reading -------------------------------------------------------------------------------

    def get(self, key: str) -> CacheEntry | None:
        """The entry fetched as ``key``, checked against its name, or None.

        A damaged object (its bytes no longer hash to its name) is removed with a warning, and
        None is returned: the caller fetches it again.
        """
        entry = self._read_ref(self._refs / f"{_key_name(key)}.json")
        if entry is None or entry.key != key:
            return None
        try:
            actual = _sha256(entry.path)
        except FileNotFoundError:
            return None  # evicted by another process; the ref goes with the next eviction
        if actual != entry.path.stem:
            warnings.warn(
                f"the cached copy of {entry.source} is damaged; fetching it again",
                ModelportWarning,
                stacklevel=2,
            )
            with self._locked():
                entry.path.unlink(missing_ok=True)
                self._drop_refs_to(entry.path.stem)
            return None
        now = dt.datetime.now(dt.timezone.utc).timestamp()
        with contextlib.suppress(OSError):
            os.utime(entry.path, (now, now))  # least recently used: by the object's mtime
        return dataclasses.replace(entry, last_used=now)

    def entries(self) -> list[CacheEntry]:
        """Every entry, most recently used first."""
        if not self._refs.is_dir():
            return []
        found = [e for p in self._refs.glob("*.json") if (e := self._read_ref(p)) is not None]
        return sorted(found, key=lambda e: e.last_used, reverse=True)

    def entry_for(self, path: Path) -> CacheEntry | None:
        """The most recently used entry whose object is ``path``, or None (not in the cache).

        The same bytes fetched from two sources are one object: the last one used says where
        it came from.
        """
        try:
            if not path.resolve().is_relative_to(self._objects.resolve()):
                return None
        except OSError:
            return None
        name = path.name
        return next((e for e in self.entries() if e.path.name == name), None)

    def _read_ref(self, path: Path) -> CacheEntry | None:
        try:
            raw = json.loads(path.read_text("utf-8"))
            obj = self._objects / f"{raw['object']}.mport"
            info = obj.stat()
            return CacheEntry(
                key=raw["key"],
                source=raw["source"],
                digest=raw["digest"],
                path=obj,
                size=info.st_size,
                fetched_at=raw["fetched_at"],
                last_used=info.st_mtime,
                metadata={str(k): str(v) for k, v in raw.get("metadata", {}).items()},
            )
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            return None  # a ref without its object, or not one of ours: not an entry

    # --- writing -------------------------------------------------------------------------------

    @contextlib.contextmanager
    def staging(self) -> Iterator[Path]:
        """A fresh private directory to download into, removed with what is left on leaving.

        :meth:`add` moves the archive out of it. Left-overs of dead processes go first.
        """
        self._tmp.mkdir(parents=True, exist_ok=True)
        self._clean_tmp()
        path = self._tmp / f"{os.getpid()}.{uuid.uuid4().hex}.part"
        self._write(path.mkdir)
        try:
            yield path
        finally:
            shutil.rmtree(path, ignore_errors=True)

    def add(
        self,
        key: str,
        source: str,
        archive: Path,
        *,
        metadata: Mapping[str, str] | None = None,
        limits: ArchiveLimits = DEFAULT_LIMITS,
    ) -> CacheEntry:
        """Verify ``archive`` (a file in a :meth:`staging` directory), move it in as ``key``.

        Raises:
            PackageError: it is not a package, or not an intact one (nothing is added).
        """
        # Every file against its digest, nothing unlisted, nothing unsafe: the download is whole.
        # What the files refer to (an ONNX model's external data) is checked at every open, so
        # it is not walked twice here (seconds for a large tree ensemble).
        manifest, problems = archive_problems(archive, limits)
        if problems:
            raise IntegrityError(problems)
        name = _sha256(archive)
        obj = self._objects / f"{name}.mport"
        with self._locked():
            self._objects.mkdir(parents=True, exist_ok=True)
            self._refs.mkdir(parents=True, exist_ok=True)
            self._write(lambda: os.replace(archive, obj))
            now = dt.datetime.now(dt.timezone.utc)
            ref = {
                "key": key,
                "source": source,
                "object": name,
                "digest": manifest.digest,
                "fetched_at": now.isoformat(),
                "metadata": dict(metadata or {}),
            }
            self._write(lambda: write_json_atomic(self._refs / f"{_key_name(key)}.json", ref))
            self._evict(keep=name)
        entry = self._read_ref(self._refs / f"{_key_name(key)}.json")
        assert entry is not None
        return entry

    def clear(self) -> tuple[int, int]:
        """Remove every entry (downloads under way in other processes finish on their own).

        Returns:
            The number of objects removed and the bytes they took.
        """
        count = size = 0
        with self._locked():
            for obj in list(self._objects.glob("*.mport")) if self._objects.is_dir() else []:
                size += obj.stat().st_size
                obj.unlink()
                count += 1
            shutil.rmtree(self._refs, ignore_errors=True)
        return count, size

    def _evict(self, keep: str) -> None:
        """Remove the least recently used objects (not ``keep``) until under ``max_bytes``."""
        objects = []
        for obj in self._objects.glob("*.mport"):
            with contextlib.suppress(FileNotFoundError):
                info = obj.stat()
                objects.append((info.st_mtime, info.st_size, obj))
        total = sum(size for _, size, _ in objects)
        for _, size, obj in sorted(objects, key=lambda o: o[0]):
            if total <= self.max_bytes:
                break
            if obj.stem == keep:
                continue
            obj.unlink(missing_ok=True)
            self._drop_refs_to(obj.stem)
            total -= size

    def _drop_refs_to(self, name: str) -> None:
        for ref in self._refs.glob("*.json"):
            with contextlib.suppress(OSError, ValueError):
                if json.loads(ref.read_text("utf-8")).get("object") == name:
                    ref.unlink()

    def _clean_tmp(self) -> None:
        for part in self._tmp.glob("*.part"):
            pid = part.name.split(".", 1)[0]
            if pid.isdigit() and not _alive(int(pid)):
                shutil.rmtree(part, ignore_errors=True)

    def _locked(self) -> contextlib.AbstractContextManager[None]:
        """The cache's lock: one process changes objects and refs at a time."""
        return exclusive_lock(self.root / "lock")

    def _write(self, step: Any) -> None:
        try:
            step()
        except OSError as exc:
            if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EACCES, errno.EROFS):
                raise EnvironmentProblem(
                    f"cannot write the package cache in {self.root} ({exc.strerror})",
                    hint=f"free some room, or point MODELPORT_HOME elsewhere ({CACHE_SIZE_ENV} "
                    "bounds the cache)",
                ) from None
            raise


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
