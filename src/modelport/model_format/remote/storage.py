"""Storage URIs through fsspec: options, what an object is, download, upload, and errors.

Each backend keeps its own credential chain (boto3's for s3fs, google-auth's for gcsfs,
azure-identity's or a key for adlfs, Kerberos or a user name for WebHDFS); modelport adds only
the options the user gives. fsspec and the backend are imported on first use.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import sys
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from modelport.errors import (
    MissingDependencyError,
    ModelportError,
    SourceError,
    SourceNotFound,
    UsageError,
)
from modelport.model_format.limits import DEFAULT_LIMITS, ArchiveLimits, human_bytes, over_limit
from modelport.model_format.remote.uri import BACKENDS, Kind, Reference

#: JSON object of storage options per scheme: ``{"s3": {"endpoint_url": "…"}, "gs": {…}}``.
STORAGE_OPTIONS_ENV = "MODELPORT_STORAGE_OPTIONS"

CHUNK = 1 << 20

#: What an object's metadata may say about its version, by backend: any change in one of them
#: is a new object (s3fs: VersionId, ETag; gcsfs: generation, md5Hash; adlfs: etag,
#: last_modified; WebHDFS: modificationTime; HTTP: ETag, Last-Modified).
_VERSION_FIELDS = (
    "VersionId",
    "version_id",
    "generation",
    "ETag",
    "etag",
    "md5Hash",
    "content_md5",
    "Content-MD5",
    "Digest",
    "LastModified",
    "last_modified",
    "Last-Modified",
    "modificationTime",
    "mtime",
    "updated",
)

#: Where each backend looks for credentials, for the hint of an error that lacks them.
_CREDENTIAL_HINTS = {
    "s3": "s3fs uses boto3's chain (AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, AWS_PROFILE, "
    "~/.aws, an instance role), or --storage-option key=... --storage-option secret=...; "
    "anon=true reads a public bucket",
    "gcs": "gcsfs uses google-auth (GOOGLE_APPLICATION_CREDENTIALS, gcloud's login, the "
    "metadata server), or --storage-option token=PATH; token=anon reads a public bucket",
    "abfs": "adlfs takes --storage-option account_name=... with account_key=..., sas_token=... "
    "or connection_string=... (or AZURE_STORAGE_CONNECTION_STRING); anon=false uses "
    "azure-identity's DefaultAzureCredential",
    "hdfs": "give the HDFS user with --storage-option user=NAME (kerb_ticket=PATH for Kerberos)",
    "webhdfs": "give the HDFS user with --storage-option user=NAME, or kerberos=true",
    "https": '--storage-option headers=\'{"Authorization": "..."}\' sends a header',
    "http": '--storage-option headers=\'{"Authorization": "..."}\' sends a header',
}


def option_value(text: str) -> Any:
    """A ``--storage-option`` value: JSON when it reads as JSON, else the text itself.

    ``true``, ``8020`` and ``{…}`` are JSON; ``http://127.0.0.1:9000`` is text.
    """
    try:
        return json.loads(text)
    except ValueError:
        return text


def storage_options(
    ref: Reference,
    given: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] = os.environ,
) -> dict[str, Any]:
    """The fsspec options for ``ref``: the environment's for its scheme, then ``given``.

    A later key wins.
    The variable holds a JSON object keyed by scheme (``s3``, ``gs``, ``az``, …) or by fsspec
    protocol (``gcs``, ``abfs``); each value is the options object for that backend.

    Raises:
        UsageError: the variable is not such an object.
    """
    options = environment_options((ref.backend.protocol, ref.scheme), environ)
    options.update(given or {})
    return options


def environment_options(keys: Sequence[str], environ: Mapping[str, str]) -> dict[str, Any]:
    """The options ``$MODELPORT_STORAGE_OPTIONS`` gives the entries ``keys`` (a later key wins).

    Raises:
        UsageError: the variable is not a JSON object of objects.
    """
    options: dict[str, Any] = {}
    text = environ.get(STORAGE_OPTIONS_ENV, "").strip()
    if not text:
        return options
    try:
        table = json.loads(text)
    except ValueError as exc:
        raise UsageError(f"{STORAGE_OPTIONS_ENV} is not JSON ({exc})") from None
    if not isinstance(table, dict) or not all(isinstance(v, dict) for v in table.values()):
        raise UsageError(
            f"{STORAGE_OPTIONS_ENV} must be a JSON object of objects keyed by scheme",
            hint='for example {"s3": {"endpoint_url": "http://127.0.0.1:9000"}}',
        )
    for key in dict.fromkeys(keys):
        options.update(table.get(key, {}))
    return options


def filesystem(ref: Reference, options: Mapping[str, Any]) -> tuple[Any, str]:
    """The fsspec filesystem of a storage URI and the object's path in it.

    Raises:
        MissingDependencyError: the backend's extra is not installed (the hint names it).
        UsageError: the backend refuses the options (an unknown one, a wrong type).
    """
    assert ref.kind is Kind.STORAGE
    backend = ref.backend
    for module in ("fsspec", backend.module):
        if importlib.util.find_spec(module) is None:
            raise MissingDependencyError(f"reading {ref.scheme}:// URIs", backend.extra, module)
    from fsspec.core import url_to_fs  # type: ignore[import-untyped]

    url = ref.text
    if ref.scheme != backend.protocol and ref.scheme in ("s3a", "gs"):
        url = backend.protocol + url[len(ref.scheme) :]
    try:
        fs, path = url_to_fs(url, **options)
        return fs, str(path)
    except ImportError as exc:  # a backend's own optional dependency
        raise MissingDependencyError(
            f"reading {ref.scheme}:// URIs", backend.extra, exc.name or backend.module
        ) from None
    except (TypeError, ValueError) as exc:
        raise UsageError(f"{ref.text}: the {backend.protocol} storage options: {exc}") from None


@dataclass(frozen=True)
class RemoteObject:
    """What a storage URI names, as its store describes it.

    Attributes:
        uri: the URI.
        path: the object's path in its filesystem.
        is_dir: a package directory (its manifest's metadata is the version), not an archive.
        size: the archive's size in bytes (None for a directory).
        version: what the store says of the object's version (ETag, generation, modification
            time …), as canonical JSON; empty when it says nothing that changes with the content.
    """

    uri: str
    path: str
    is_dir: bool
    size: int | None
    version: str


def describe(fs: Any, path: str, uri: str) -> RemoteObject:
    """Ask the store what ``uri`` is: an archive or a package directory, and its version.

    Raises:
        SourceNotFound: nothing is there.
        SourceError: it is a directory but not a package, or the store refused (see
            :func:`translate`).
    """
    with translated(uri, "reading"):
        info = fs.info(path)
    if info.get("type") != "directory":
        return RemoteObject(uri, path, False, _size(info), _version(info))
    manifest = path.rstrip("/") + "/modelport.json"
    try:
        with translated(uri, "reading"):
            info = fs.info(manifest)
    except SourceNotFound:
        with translated(uri, "reading"):
            mlflow = fs.exists(path.rstrip("/") + "/MLmodel")
        raise SourceError(
            f"{uri} is {'an MLflow model directory' if mlflow else 'a directory'}, "
            "not a modelport package (no modelport.json)",
            hint="pack it with 'modelport pack' and upload the .mport, or use a models:/ or "
            "runs:/ URI, which modelport packs itself"
            if mlflow
            else "name a .mport archive or a package directory",
        ) from None
    return RemoteObject(uri, path, True, None, _version(info))


def _size(info: Mapping[str, Any]) -> int | None:
    size = info.get("size")
    return int(size) if isinstance(size, (int, float)) else None


def _version(info: Mapping[str, Any]) -> str:
    found = {k: str(info[k]) for k in _VERSION_FIELDS if info.get(k) not in (None, "")}
    if not found:
        return ""
    found["size"] = str(info.get("size"))
    return json.dumps(found, sort_keys=True)


class Progress:
    """A one-line download progress on a terminal's stderr; silent elsewhere."""

    def __init__(self, what: str, total: int | None, stream: IO[str] | None = None) -> None:
        self._stream = stream if stream is not None else sys.stderr
        self._on = self._stream.isatty()
        self._what = what
        self._total = total
        self._done = 0
        self._shown = 0.0

    def advance(self, n: int) -> None:
        """Count ``n`` more bytes; redraw at most ten times a second."""
        self._done += n
        now = time.monotonic()
        if self._on and now - self._shown >= 0.1:
            self._shown = now
            of = f" of {human_bytes(self._total)}" if self._total else ""
            self._stream.write(f"\rDownloading {self._what}: {human_bytes(self._done)}{of}")
            self._stream.flush()

    def close(self) -> None:
        """End the line, if one was drawn."""
        if self._on and self._shown:
            self._stream.write("\n")
            self._stream.flush()


def download(
    fs: Any,
    path: str,
    dest: IO[bytes],
    *,
    uri: str,
    size: int | None,
    limits: ArchiveLimits = DEFAULT_LIMITS,
) -> int:
    """Copy one object into ``dest``, at most ``limits.max_expanded_mb`` of it.

    Returns:
        The bytes copied.

    Raises:
        SourceError: the store failed, the object ended short of its size, or it is too large.
        ArchiveLimitError: see above.
    """
    cap = limits.max_expanded_bytes
    progress = Progress(uri, size)
    done = 0
    try:
        with translated(uri, "reading"), fs.open(path, "rb", block_size=CHUNK) as src:
            while chunk := src.read(CHUNK):
                done += len(chunk)
                if done > cap:
                    raise over_limit(
                        f"{uri} is larger than {human_bytes(cap)}, the most a package may be",
                        "max_expanded_mb",
                    )
                dest.write(chunk)
                progress.advance(len(chunk))
    finally:
        progress.close()
    if size is not None and done != size:
        raise SourceError(f"reading {uri} ended after {done} of its {size} bytes")
    return done


def upload(local: Path, ref: Reference, options: Mapping[str, Any], *, overwrite: bool) -> None:
    """Write the file ``local`` to the storage URI so that readers never see part of it.

    An object store's single upload is all or nothing; elsewhere (HDFS) the file goes to a
    hidden name beside the target, then is renamed.

    Raises:
        UsageError: the URI exists and ``overwrite`` is false.
        SourceError: the store refused.
    """
    fs, path = filesystem(ref, options)
    uri = ref.text
    with translated(uri, "writing"):
        exists = fs.exists(path)
    if exists and not overwrite:
        raise UsageError(f"{uri} exists", hint="pass --force (overwrite=True) to replace it")
    with translated(uri, "writing"):
        if ref.backend.atomic_put:
            fs.put_file(str(local), path)
            return
        parent, _, name = path.rstrip("/").rpartition("/")
        tmp = f"{parent}/.{name}.{uuid.uuid4().hex}.part"
        try:
            fs.put_file(str(local), tmp)
            if exists:
                fs.rm(path)
            fs.mv(tmp, path)
        except BaseException:
            with contextlib.suppress(Exception):
                fs.rm(tmp)
            raise


def _chain(exc: BaseException) -> Iterator[BaseException]:
    """``exc`` and every exception it was raised from."""
    seen: BaseException | None = exc
    for _ in range(20):
        if seen is None:
            return
        yield seen
        seen = seen.__cause__ or seen.__context__


def _names(exc: BaseException) -> set[str]:
    """The class names of ``exc`` and of what it was raised from, and its HTTP statuses.

    A status is named ``HTTP401`` …: azure-core's HttpResponseError carries ``status_code``.
    """
    names: set[str] = set()
    for seen in _chain(exc):
        names.update(c.__name__ for c in type(seen).__mro__)
        status = getattr(seen, "status_code", None)
        if isinstance(status, int):
            names.add(f"HTTP{status}")
    return names


_NO_CREDENTIALS = {
    "NoCredentialsError",
    "PartialCredentialsError",
    "DefaultCredentialsError",
    "CredentialUnavailableError",
    "RefreshError",
}
_DENIED = {
    "PermissionError",
    "ClientAuthenticationError",
    "Forbidden",
    "AccessDenied",
    "HTTP401",
    "HTTP403",
}
_MISSING = {
    "FileNotFoundError",
    "ResourceNotFoundError",
    "NotFound",
    "NoSuchKey",
    "NoSuchBucket",
    "HTTP404",
}
_UNREACHABLE = {
    "ConnectionError",
    "ClientConnectorError",
    "EndpointConnectionError",
    "ConnectTimeoutError",
    "ServerTimeoutError",
    "TimeoutError",
    "ServiceRequestError",
}


def translate(exc: BaseException, uri: str, doing: str = "reading") -> ModelportError:
    """A store's exception as a modelport error that says what was tried.

    Read by class name, so that no backend is imported to tell its errors apart: no
    credentials, access denied, nothing there, store unreachable, else the store's message.
    """
    if isinstance(exc, ModelportError):
        return exc
    scheme = uri.partition(":")[0].lower()
    names = _names(exc)
    text = " ".join(str(exc).split())[:300] or type(exc).__name__
    if names & _NO_CREDENTIALS:
        return SourceError(
            f"{doing} {uri}: no credentials were found ({text})",
            hint=_credential_hint(scheme),
        )
    if names & _DENIED:
        return SourceError(
            f"{doing} {uri}: access denied ({text})",
            hint="check that these credentials may read (or write) this object: "
            + _credential_hint(scheme),
        )
    if names & _MISSING:
        return SourceNotFound(f"{doing} {uri}: no such object", hint="check the bucket and path")
    if names & _UNREACHABLE:
        return SourceError(
            f"{doing} {uri}: cannot reach the store ({text})",
            hint="check the endpoint (--storage-option endpoint_url=...) and the network",
        )
    return SourceError(f"{doing} {uri} failed: {type(exc).__name__}: {text}")


def _credential_hint(scheme: str) -> str:
    """Where the backend of ``scheme`` looks for credentials (keyed by fsspec protocol)."""
    backend = BACKENDS.get(scheme)
    return _CREDENTIAL_HINTS.get(backend.protocol if backend else scheme, "")


@contextlib.contextmanager
def translated(uri: str, doing: str) -> Iterator[None]:
    """Turn what a store raises inside the block into :func:`translate`'s error."""
    try:
        yield
    except ModelportError:
        raise
    except Exception as exc:
        raise translate(exc, uri, doing) from exc
