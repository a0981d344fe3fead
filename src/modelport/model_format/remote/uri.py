"""Package references told apart by their text alone: a path, a storage, MLflow or OCI URI.

Nothing is imported here: the loader asks :func:`is_remote` on every call.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from enum import Enum

from modelport.errors import UsageError


@dataclass(frozen=True)
class Backend:
    """One storage scheme: the fsspec protocol that reads it and the extra that installs it.

    Attributes:
        protocol: fsspec's name for the filesystem (``s3``, ``gcs``, ``abfs``, …).
        extra: the modelport extra that brings it (``pip install 'modelport[EXTRA]'``).
        module: the Python module the backend needs (checked before fsspec is asked).
        atomic_put: a single upload is all or nothing (object stores); otherwise a file is
            written under a temporary name and renamed.
    """

    protocol: str
    extra: str
    module: str
    atomic_put: bool = True


#: Storage schemes, as users write them, to the backend that reads them.
BACKENDS: dict[str, Backend] = {
    "s3": Backend("s3", "s3", "s3fs"),
    "s3a": Backend("s3", "s3", "s3fs"),  # Spark's name for the same store
    "gs": Backend("gcs", "gcs", "gcsfs"),
    "gcs": Backend("gcs", "gcs", "gcsfs"),
    "abfs": Backend("abfs", "azure-storage", "adlfs"),
    "abfss": Backend("abfs", "azure-storage", "adlfs"),
    "az": Backend("abfs", "azure-storage", "adlfs"),
    "hdfs": Backend("hdfs", "hdfs", "pyarrow", atomic_put=False),
    "webhdfs": Backend("webhdfs", "hdfs", "requests", atomic_put=False),
    "https": Backend("https", "http", "aiohttp"),
    "http": Backend("http", "http", "aiohttp"),
}

#: MLflow's URI schemes: the model registry and a run's artifacts.
MLFLOW_SCHEMES = ("models", "runs")

#: The scheme of a package in an OCI registry: ``oci://HOST[:PORT]/REPO[:TAG][@sha256:HEX]``.
OCI_SCHEME = "oci"
#: What an ``oci://`` reference looks like, for error messages.
OCI_SHAPE = "oci://HOST[:PORT]/REPO[:TAG][@sha256:HEX]"

_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*):(//)?")


class Kind(Enum):
    """What a reference names."""

    PATH = "path"
    STORAGE = "storage"
    MLFLOW = "mlflow"
    OCI = "oci"


@dataclass(frozen=True)
class Reference:
    """A package reference, classified.

    Attributes:
        text: the reference as given (a ``file://`` URI becomes its path).
        kind: a local path, a storage URI or an MLflow URI.
        scheme: the URI's scheme, lower case (empty for a path).
    """

    text: str
    kind: Kind
    scheme: str = ""

    @property
    def backend(self) -> Backend:
        """The storage backend of a storage URI."""
        return BACKENDS[self.scheme]

    @property
    def oci(self) -> OciReference:
        """The registry, repository, tag and digest of an ``oci://`` reference."""
        return parse_oci(self.text)


# The grammar of the distribution spec's references (and of docker's ``reference`` package):
# a host is DNS labels, an IPv4 address or a bracketed IPv6 one, with an optional port; a
# repository is lowercase path components joined by ".", "_", "__" or dashes.
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
_HOST = rf"(?:\[[0-9A-Fa-f:.]+\]|{_LABEL}(?:\.{_LABEL})*)"
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_OCI = re.compile(
    rf"^oci://(?P<registry>{_HOST}(?::[0-9]{{1,5}})?)"
    rf"/(?P<repository>{_COMPONENT}(?:/{_COMPONENT})*)"
    r"(?::(?P<tag>[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}))?"
    r"(?:@(?P<digest>sha256:[0-9a-f]{64}))?\Z",
    re.IGNORECASE,
)
_REPOSITORY = re.compile(rf"^{_COMPONENT}(?:/{_COMPONENT})*\Z")


@dataclass(frozen=True)
class OciReference:
    """An ``oci://`` reference, taken apart.

    Attributes:
        registry: ``HOST[:PORT]``, as written (the key of credential files).
        repository: the repository's path in the registry (lowercase).
        tag: the tag, or None (``latest`` when there is no digest either).
        digest: the manifest digest it is pinned to (``sha256:…``), or None.
    """

    registry: str
    repository: str
    tag: str | None = None
    digest: str | None = None

    @property
    def reference(self) -> str:
        """What the manifest is asked for by: the digest when pinned, else the tag."""
        return self.digest or self.tag or "latest"

    def pinned(self, digest: str) -> str:
        """``HOST/REPO@DIGEST``: where one manifest lives, whatever its tags."""
        return f"{self.registry}/{self.repository}@{digest}"

    def __str__(self) -> str:
        text = f"{self.registry}/{self.repository}"
        if self.tag is not None or self.digest is None:
            text += f":{self.tag or 'latest'}"
        if self.digest is not None:
            text += f"@{self.digest}"
        return text


def parse_oci(text: str) -> OciReference:
    """Take an ``oci://HOST[:PORT]/REPO[:TAG][@sha256:HEX]`` reference apart.

    Raises:
        UsageError: it is not of that shape (the message says which part is wrong).
    """
    match = _OCI.match(text)
    if match is None:
        raise UsageError(
            f"{text}: not an OCI reference ({_oci_problem(text)})", hint=f"write {OCI_SHAPE}"
        )
    repository = match.group("repository")
    if repository != repository.lower():
        raise UsageError(
            f"{text}: a repository name is lowercase",
            hint=f"write {text.replace(repository, repository.lower())}",
        )
    return OciReference(
        registry=match.group("registry"),
        repository=repository,
        tag=match.group("tag"),
        digest=(match.group("digest") or "").lower() or None,
    )


def _oci_problem(text: str) -> str:
    """What is wrong with a reference :data:`_OCI` refuses, as far as can be told."""
    rest = text[len("oci://") :] if text[:6].lower() == "oci://" else text
    host, slash, path = rest.partition("/")
    if not host or not re.match(rf"^{_HOST}(?::[0-9]{{1,5}})?\Z", host):
        return f"{host!r} is not a host[:port]" if host else "no registry host"
    if not slash or not path:
        return "no repository after the host"
    path, at, digest = path.partition("@")
    if at and not re.match(r"^sha256:[0-9a-fA-F]{64}\Z", digest):
        return "the digest must be sha256: and 64 hex digits"
    name, colon, tag = path.rpartition(":") if ":" in path.rsplit("/", 1)[-1] else (path, "", "")
    if not _REPOSITORY.match(name.lower()):
        return f"{name!r} is not a repository name (lowercase letters, digits, '.', '_', '-', '/')"
    if colon:
        return f"{tag!r} is not a tag (letters, digits, '_', '.', '-'; at most 128)"
    return "unexpected characters"


def parse_reference(ref: str | os.PathLike[str]) -> Reference:
    """Classify a package reference.

    A :class:`os.PathLike` is always a path (``Path`` would have folded ``s3://`` into
    ``s3:/`` anyway). A string is a URI when it starts with a known scheme: ``s3://``,
    ``gs://``, ``abfs://``, ``az://``, ``hdfs://``, ``webhdfs://``, ``https://``, ``http://``,
    ``models:/``, ``runs:/`` or ``oci://``; ``file://`` is a path.

    Raises:
        UsageError: ``scheme://`` with a scheme modelport does not read, or an ``oci://``
            reference of the wrong shape.
    """
    if not isinstance(ref, str):
        return Reference(os.fspath(ref), Kind.PATH)
    match = _SCHEME.match(ref)
    if match is None:
        return Reference(ref, Kind.PATH)
    scheme = match.group(1).lower()
    if scheme == "file" and match.group(2):
        return Reference(ref[len("file://") :], Kind.PATH)
    if scheme in MLFLOW_SCHEMES:
        return Reference(ref, Kind.MLFLOW, scheme)
    if scheme in BACKENDS and match.group(2):
        return Reference(ref, Kind.STORAGE, scheme)
    if scheme == OCI_SCHEME and match.group(2):
        parsed = Reference(ref, Kind.OCI, scheme)
        parsed.oci  # noqa: B018 - a malformed reference is refused here, before any command runs
        return parsed
    if match.group(2):
        known = ", ".join(f"{s}://" for s in BACKENDS)
        raise UsageError(
            f"{ref}: modelport cannot read {scheme}:// URIs",
            hint=f"use a path, {known}, {OCI_SHAPE}, models:/NAME@ALIAS or runs:/RUN/PATH",
        )
    return Reference(ref, Kind.PATH)  # "name:with-colon" is a file name


def is_remote(ref: str | os.PathLike[str]) -> bool:
    """True when ``ref`` is a storage, MLflow or OCI URI rather than a local path."""
    return isinstance(ref, str) and parse_reference(ref).kind is not Kind.PATH
