"""Package references told apart by their text alone: a path, a storage URI, an MLflow URI.

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

_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*):(//)?")


class Kind(Enum):
    """What a reference names."""

    PATH = "path"
    STORAGE = "storage"
    MLFLOW = "mlflow"


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


def parse_reference(ref: str | os.PathLike[str]) -> Reference:
    """Classify a package reference.

    A :class:`os.PathLike` is always a path (``Path`` would have folded ``s3://`` into
    ``s3:/`` anyway). A string is a URI when it starts with a known scheme: ``s3://``,
    ``gs://``, ``abfs://``, ``az://``, ``hdfs://``, ``webhdfs://``, ``https://``, ``http://``,
    ``models:/`` or ``runs:/``; ``file://`` is a path.

    Raises:
        UsageError: ``scheme://`` with a scheme modelport does not read.
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
    if match.group(2):
        known = ", ".join(f"{s}://" for s in BACKENDS)
        raise UsageError(
            f"{ref}: modelport cannot read {scheme}:// URIs",
            hint=f"use a path, {known}, models:/NAME@ALIAS or runs:/RUN/PATH",
        )
    return Reference(ref, Kind.PATH)  # "name:with-colon" is a file name


def is_remote(ref: str | os.PathLike[str]) -> bool:
    """True when ``ref`` is a storage or MLflow URI rather than a local path."""
    return isinstance(ref, str) and parse_reference(ref).kind is not Kind.PATH
