"""Packages in OCI registries: push and pull ``oci://HOST[:PORT]/REPO[:TAG][@sha256:HEX]``.

A package is stored as a CNCF ModelPack artifact (github.com/modelpack/model-spec): an OCI image
manifest with ``artifactType`` ``application/vnd.cncf.model.manifest.v1+json``, a ModelPack config
(``application/vnd.cncf.model.config.v1+json``: name, version, creation time, format, parameter
count, the layers' digests) and one uncompressed (``.raw``) layer per file, whose blob is the file's
exact bytes, so that a layer's digest *is* the manifest's ``sha256:`` of that file. The modelport
manifest itself is a layer too (``modelport.json``, the bytes a package holds) and a manifest
annotation (``dev.modelport.manifest``: the canonical JSON whose sha256 is the package digest,
beside ``dev.modelport.package.digest``). Every layer has ``org.cncf.model.filepath`` and
``org.opencontainers.image.title`` (its path in the package: ``oras pull`` writes it there) and
``org.cncf.model.file.metadata+json`` (mode 0644, owner 0, the package's creation time, or the
archive's fixed 1980 time when it has none).

Which layer media type a file gets (its role in ModelPack's terms)::

    modelport.json                         weight.config  (how to load the weights)
    the input example (manifest.example)   dataset        (data that goes with the model)
    README*, LICENSE*, NOTICE*, *.md, *.rst doc
    *.py (a python flavor's code)          code
    *.json, *.yaml, *.toml, *.txt, *.cfg … weight.config  (tokenizer-like settings files)
    anything else (the .onnx model, its
    external data, python artifacts)       weight

Pushing is reproducible: the same package gives byte-identical blobs, config and manifest (sorted
keys, fixed order, no wall-clock time), so a second push finds every blob present and uploads
nothing, and the manifest digest is the same. A signature (an OpenSSF Model Signing sigstore
bundle) goes along as an OCI 1.1 referrer of the model manifest; on a registry without the
referrers API (distribution 2.8) the spec's fallback, the ``sha256-<hex>`` tag holding an image
index of referrers, is kept up to date.

Pulling resolves a tag with one request, and a ``@sha256:`` reference already in the package cache
with none. Every layer is streamed to disk with a running sha256 and refused, naming its file, when
its digest or size is not the manifest's; paths are checked before anything is written, sizes
against the :class:`~modelport.model_format.limits.ArchiveLimits`. The package goes to the cache
as an archive (with the newest signature referrer as ``model.sig``), or nothing does. A ModelPack
artifact another tool made (no ``modelport.json`` layer) is read when its one weight layer is an
ONNX model: it is packed as ``modelport pack model.onnx`` would, its signature inferred.

HTTP is the standard library's (no extra needed), with a timeout on every request; a redirect to
another host (object storage, for blobs) never carries the registry's credentials. Credentials:
:mod:`modelport.model_format.remote.oci_auth`.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import http.client
import json
import os
import re
import socket
import ssl
import urllib.parse
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from modelport import __version__
from modelport.errors import (
    IntegrityError,
    PackageError,
    PackError,
    SourceError,
    SourceNotFound,
    UsageError,
)
from modelport.model_format.archive import CHUNK, FIXED_MTIME, MAX_SIGNATURE_BYTES, write_archive
from modelport.model_format.limits import DEFAULT_LIMITS, ArchiveLimits, human_bytes, over_limit
from modelport.model_format.manifest import (
    MANIFEST_NAME,
    NAME_PATTERN,
    SIGNATURE_NAME,
    Manifest,
    canonical_json,
    parse,
)
from modelport.model_format.package import open_package
from modelport.model_format.paths import is_safe_relative_path
from modelport.model_format.remote.cache import CacheEntry, PackageCache
from modelport.model_format.remote.oci_auth import (
    Challenge,
    Lookup,
    basic_header,
    find_credential,
    parse_challenges,
)
from modelport.model_format.remote.storage import Progress, environment_options
from modelport.model_format.remote.uri import (
    OCI_SCHEME,
    OCI_SHAPE,
    Kind,
    OciReference,
    Reference,
    parse_reference,
)

# --- media types and annotations ------------------------------------------------------------

MANIFEST_MEDIA_TYPE = "application/vnd.oci.image.manifest.v1+json"
INDEX_MEDIA_TYPE = "application/vnd.oci.image.index.v1+json"
DOCKER_MANIFEST_MEDIA_TYPE = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST_MEDIA_TYPE = "application/vnd.docker.distribution.manifest.list.v2+json"
IMAGE_CONFIG_MEDIA_TYPE = "application/vnd.oci.image.config.v1+json"

MODEL_ARTIFACT_TYPE = "application/vnd.cncf.model.manifest.v1+json"
MODEL_CONFIG_MEDIA_TYPE = "application/vnd.cncf.model.config.v1+json"
WEIGHT_MEDIA_TYPE = "application/vnd.cncf.model.weight.v1.raw"
WEIGHT_CONFIG_MEDIA_TYPE = "application/vnd.cncf.model.weight.config.v1.raw"
DOC_MEDIA_TYPE = "application/vnd.cncf.model.doc.v1.raw"
CODE_MEDIA_TYPE = "application/vnd.cncf.model.code.v1.raw"
DATASET_MEDIA_TYPE = "application/vnd.cncf.model.dataset.v1.raw"
#: The layer media types read: uncompressed files (ModelPack's ``.raw`` kinds).
RAW_MEDIA_TYPES = frozenset(
    {
        WEIGHT_MEDIA_TYPE,
        WEIGHT_CONFIG_MEDIA_TYPE,
        DOC_MEDIA_TYPE,
        CODE_MEDIA_TYPE,
        DATASET_MEDIA_TYPE,
    }
)

SIGSTORE_BUNDLE_TYPE = "application/vnd.dev.sigstore.bundle.v0.3+json"
EMPTY_MEDIA_TYPE = "application/vnd.oci.empty.v1+json"
EMPTY_BLOB = b"{}"

FILEPATH_ANNOTATION = "org.cncf.model.filepath"
FILE_METADATA_ANNOTATION = "org.cncf.model.file.metadata+json"
TITLE_ANNOTATION = "org.opencontainers.image.title"
CREATED_ANNOTATION = "org.opencontainers.image.created"
VERSION_ANNOTATION = "org.opencontainers.image.version"
#: The canonical manifest JSON (its sha256 is the package digest).
MANIFEST_ANNOTATION = "dev.modelport.manifest"
PACKAGE_DIGEST_ANNOTATION = "dev.modelport.package.digest"
#: On a signature referrer: the sha256 of the bundle, so the same signature is pushed once.
SIGNATURE_DIGEST_ANNOTATION = "dev.modelport.signature.digest"

#: Seconds each request may wait on the network (connect, each read and write).
DEFAULT_TIMEOUT_S = 60.0
#: The largest manifest or index read (distribution's own limit is 4 MiB).
MAX_OCI_MANIFEST_BYTES = 4 << 20
#: The largest config blob read.
MAX_SMALL_BLOB_BYTES = 4 << 20
_MAX_REDIRECTS = 5
_MANIFEST_ACCEPT = ", ".join(
    (MANIFEST_MEDIA_TYPE, INDEX_MEDIA_TYPE, DOCKER_MANIFEST_MEDIA_TYPE, DOCKER_LIST_MEDIA_TYPE)
)
_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}\Z")
_DOC_NAMES = ("README", "LICENSE", "LICENCE", "NOTICE", "COPYING", "AUTHORS", "CHANGELOG")
_DOC_SUFFIXES = frozenset({".md", ".rst"})
_CONFIG_SUFFIXES = frozenset({".json", ".yaml", ".yml", ".toml", ".txt", ".cfg", ".ini"})
#: ModelPack's paramSize prefixes, largest first.
_SCALES = (("Q", 10**15), ("T", 10**12), ("B", 10**9), ("M", 10**6), ("K", 10**3))


# --- the artifact of a package --------------------------------------------------------------


@dataclass(frozen=True)
class Blob:
    """One blob of an artifact and where its bytes are.

    Attributes:
        media_type: the descriptor's media type.
        digest: ``sha256:<hex>`` of its bytes.
        size: its size in bytes.
        source: the file that holds it, or the bytes themselves.
    """

    media_type: str
    digest: str
    size: int
    source: Path | bytes = field(repr=False)

    def descriptor(self) -> dict[str, Any]:
        """The OCI descriptor of the blob (without annotations)."""
        return {"mediaType": self.media_type, "digest": self.digest, "size": self.size}


@dataclass(frozen=True)
class Artifact:
    """A package as a ModelPack artifact, ready to push.

    Attributes:
        manifest: the OCI image manifest, as JSON values.
        manifest_bytes: the manifest as pushed (sorted keys, no whitespace).
        config: the ModelPack config, as JSON values.
        blobs: the config blob, then each distinct layer blob, in layer order.
    """

    manifest: Mapping[str, Any]
    manifest_bytes: bytes = field(repr=False)
    config: Mapping[str, Any]
    blobs: tuple[Blob, ...]

    @property
    def digest(self) -> str:
        """The manifest digest: what the artifact is pulled by."""
        return _sha256(self.manifest_bytes)


def layer_media_type(path: str, manifest: Manifest) -> str:
    """The ModelPack media type of the package file ``path`` (the table in the module notes)."""
    if path == MANIFEST_NAME:
        return WEIGHT_CONFIG_MEDIA_TYPE
    if path == manifest.example:
        return DATASET_MEDIA_TYPE
    name = path.rsplit("/", 1)[-1]
    suffix = os.path.splitext(name)[1].lower()
    if suffix in _DOC_SUFFIXES or name.upper().startswith(_DOC_NAMES):
        return DOC_MEDIA_TYPE
    if suffix == ".py":
        return CODE_MEDIA_TYPE
    if suffix in _CONFIG_SUFFIXES:
        return WEIGHT_CONFIG_MEDIA_TYPE
    return WEIGHT_MEDIA_TYPE


def model_artifact(directory: Path, manifest: Manifest) -> Artifact:
    """The ModelPack artifact of a verified package directory (nothing is uploaded).

    Deterministic: the same package gives the same bytes, whatever the clock or the disk say.
    """
    created = manifest.created_at
    mtime = _rfc3339(created) if created else _epoch_rfc3339(FIXED_MTIME)
    manifest_json = manifest.to_json()
    files: list[tuple[str, Path | bytes, str, int]] = [
        (MANIFEST_NAME, manifest_json, _sha256(manifest_json), len(manifest_json))
    ]
    for rel in sorted(manifest.files):
        path = directory / rel
        files.append((rel, path, manifest.files[rel], path.stat().st_size))
    layers: list[dict[str, Any]] = []
    blobs: dict[str, Blob] = {}
    for rel, source, digest, size in files:
        blob = Blob(layer_media_type(rel, manifest), digest, size, source)
        metadata = {
            "name": rel.rsplit("/", 1)[-1],
            "mode": 0o644,
            "uid": 0,
            "gid": 0,
            "size": size,
            "mtime": mtime,
            "typeflag": ord(b"0"),  # a regular file, as tar says it
        }
        annotations = {
            FILEPATH_ANNOTATION: rel,
            FILE_METADATA_ANNOTATION: json.dumps(metadata, separators=(",", ":")),
            TITLE_ANNOTATION: rel,
        }
        layers.append({**blob.descriptor(), "annotations": annotations})
        blobs.setdefault(digest, blob)
    config = _model_config(directory, manifest, [layer["digest"] for layer in layers])
    config_bytes = _json_bytes(config)
    config_blob = Blob(
        MODEL_CONFIG_MEDIA_TYPE, _sha256(config_bytes), len(config_bytes), config_bytes
    )
    annotations = {
        MANIFEST_ANNOTATION: canonical_json(manifest.to_dict()).decode("utf-8"),
        PACKAGE_DIGEST_ANNOTATION: manifest.digest,
        TITLE_ANNOTATION: manifest.name,
        VERSION_ANNOTATION: manifest.version,
    }
    if created:
        annotations[CREATED_ANNOTATION] = _rfc3339(created)
    oci_manifest = {
        "schemaVersion": 2,
        "mediaType": MANIFEST_MEDIA_TYPE,
        "artifactType": MODEL_ARTIFACT_TYPE,
        "config": config_blob.descriptor(),
        "layers": layers,
        "annotations": annotations,
    }
    return Artifact(
        manifest=oci_manifest,
        manifest_bytes=_json_bytes(oci_manifest),
        config=config,
        blobs=(config_blob, *blobs.values()),
    )


def _model_config(directory: Path, manifest: Manifest, diff_ids: list[str]) -> dict[str, Any]:
    """The ModelPack config: what the manifest knows of the model, and the layers' digests."""
    descriptor: dict[str, Any] = {"name": manifest.name, "version": manifest.version}
    if manifest.created_at:
        descriptor["createdAt"] = _rfc3339(manifest.created_at)
    metadata = manifest.metadata
    authors = _listed(metadata.get("authors") or metadata.get("author"))
    if authors:
        descriptor["authors"] = authors
    licenses = _listed(metadata.get("licenses") or metadata.get("license"))
    if licenses:
        descriptor["licenses"] = licenses
    if metadata.get("description"):
        descriptor["description"] = metadata["description"]
    settings: dict[str, Any] = {"format": manifest.flavor.name}
    if manifest.flavor.name == "onnx":
        count = _onnx_parameters(directory / str(manifest.flavor.settings.get("model", "")))
        size = _param_size(count) if count is not None else None
        if size is not None:
            settings["paramSize"] = size
    return {
        "descriptor": descriptor,
        "config": settings,
        "modelfs": {"type": "layers", "diffIds": diff_ids},
    }


def _listed(text: str | None) -> list[str]:
    """A metadata value that may list several items, comma-separated."""
    return [item.strip() for item in (text or "").split(",") if item.strip()]


def _onnx_parameters(model: Path) -> int | None:
    """The elements of an ONNX model's initializers, if the ``onnx`` package is importable.

    External data is not read: the shapes are in the graph.
    """
    try:
        import onnx
    except ImportError:
        return None
    try:
        proto = onnx.load(str(model), load_external_data=False)
    except Exception:  # a model the runtime reads but onnx cannot: no count, not an error
        return None
    total = 0
    for tensor in proto.graph.initializer:
        count = 1
        for dim in tensor.dims:
            count *= int(dim)
        total += count
    return total


def _param_size(count: int) -> str | None:
    """A parameter count as ModelPack writes it (``6.7B``, ``262.1K``); None under a thousand.

    The format's smallest unit is a thousand, so a smaller count has no honest value.
    """
    for letter, scale in _SCALES:
        if count >= scale:
            return f"{count / scale:.1f}".removesuffix(".0") + letter
    return None


def _rfc3339(text: str) -> str:
    """An ISO 8601 time as RFC 3339 in UTC with a ``Z`` (what ModelPack and OCI expect)."""
    value = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.timezone.utc)
    return value.astimezone(dt.timezone.utc).isoformat().replace("+00:00", "Z")


def _epoch_rfc3339(seconds: int) -> str:
    return _rfc3339(dt.datetime.fromtimestamp(seconds, dt.timezone.utc).isoformat())


def _json_bytes(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def _sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


# --- HTTP -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Body:
    """A request body that can be sent again (after a stale connection): bytes or a file."""

    source: Path | bytes | None

    @property
    def size(self) -> int:
        if self.source is None:
            return 0
        if isinstance(self.source, bytes):
            return len(self.source)
        return self.source.stat().st_size

    @contextlib.contextmanager
    def opened(self) -> Iterator[Any]:
        if isinstance(self.source, Path):
            with self.source.open("rb") as fh:  # streamed, never read into memory
                yield fh
        else:
            yield self.source


class _Http:
    """Keep-alive connections to a registry and whatever it redirects to, with timeouts.

    Network failures become :class:`SourceError` with a hint: refused, unreachable, timed out,
    TLS to a plain-HTTP registry (use ``insecure``), an untrusted certificate.
    """

    def __init__(self, registry: str, *, insecure: bool, timeout: float) -> None:
        self.registry = registry
        self.scheme = "http" if insecure else "https"
        self.base = f"{self.scheme}://{registry}"
        self.timeout = timeout
        self._tls: ssl.SSLContext | None = None  # made on first use: loading CAs takes ~30 ms
        self._pool: dict[tuple[str, str], http.client.HTTPConnection] = {}
        self._last: dict[tuple[str, str], http.client.HTTPResponse] = {}

    def close(self) -> None:
        for conn in self._pool.values():
            conn.close()
        self._pool.clear()

    def drop(self, url: str) -> None:
        """Close the connection ``url`` went over (its response was not read to the end)."""
        parts = urllib.parse.urlsplit(url)
        conn = self._pool.pop((parts.scheme, parts.netloc), None)
        if conn is not None:
            conn.close()

    def _connection(self, scheme: str, netloc: str) -> tuple[http.client.HTTPConnection, bool]:
        key = (scheme, netloc)
        conn = self._pool.get(key)
        last = self._last.get(key)
        if conn is not None and last is not None and not last.isclosed():
            # The previous answer was not read to its end: this connection cannot carry another.
            self._pool.pop(key).close()
            conn = None
        if conn is not None:
            return conn, True
        if scheme == "https":
            if self._tls is None:
                self._tls = ssl.create_default_context()
            conn = http.client.HTTPSConnection(
                netloc, timeout=self.timeout, context=self._tls, blocksize=CHUNK
            )
        elif scheme == "http":
            conn = http.client.HTTPConnection(netloc, timeout=self.timeout, blocksize=CHUNK)
        else:
            raise SourceError(f"{self.registry} pointed modelport to {scheme}://{netloc}")
        self._pool[key] = conn
        return conn, False

    def send(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str],
        body: _Body,
        *,
        authorization: str | None,
    ) -> tuple[str, http.client.HTTPResponse]:
        """Send one request, following redirects of GET and HEAD; the final URL and response.

        ``authorization`` goes only to the registry's own host: a redirect elsewhere (object
        storage) is followed without it.
        """
        for _ in range(_MAX_REDIRECTS + 1):
            parts = urllib.parse.urlsplit(url)
            sent = dict(headers)
            sent["User-Agent"] = f"modelport/{__version__}"
            if authorization and parts.netloc == self.registry and parts.scheme == self.scheme:
                sent["Authorization"] = authorization
            response = self._once(method, url, parts, sent, body)
            if response.status in (301, 302, 303, 307, 308) and method in ("GET", "HEAD"):
                location = response.getheader("Location")
                response.read(64 << 10)
                if not location:
                    raise SourceError(f"{self.registry} redirected {url} to nowhere")
                url = urllib.parse.urljoin(url, location)
                continue
            return url, response
        raise SourceError(f"{self.registry}: more than {_MAX_REDIRECTS} redirects for {url}")

    def _once(
        self,
        method: str,
        url: str,
        parts: urllib.parse.SplitResult,
        headers: dict[str, str],
        body: _Body,
    ) -> http.client.HTTPResponse:
        target = parts.path + (f"?{parts.query}" if parts.query else "")
        for attempt in (1, 2):
            conn, reused = self._connection(parts.scheme, parts.netloc)
            try:
                with body.opened() as content:
                    if body.source is not None:
                        headers["Content-Length"] = str(body.size)
                    conn.request(method, target, body=content, headers=headers)
                response = conn.getresponse()
                self._last[(parts.scheme, parts.netloc)] = response
                return response
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError) as exc:
                self.drop(url)
                if reused and attempt == 1:
                    continue  # the server closed an idle keep-alive connection: once more
                raise self.network_error(exc, parts.netloc) from None
            except (OSError, http.client.HTTPException) as exc:
                self.drop(url)
                raise self.network_error(exc, parts.netloc) from None
        raise AssertionError("unreachable")  # pragma: no cover

    def network_error(self, exc: BaseException, netloc: str) -> SourceError:
        text = " ".join(str(exc).split())[:200] or type(exc).__name__
        insecure = "use --insecure (--storage-option insecure=true; insecure=True in Python)"
        if isinstance(exc, ssl.SSLCertVerificationError):
            return SourceError(
                f"the TLS certificate of {netloc} is not trusted ({text})",
                hint="add its CA to SSL_CERT_FILE; for a registry without TLS, " + insecure,
            )
        if isinstance(exc, ssl.SSLError):
            return SourceError(
                f"cannot speak TLS (HTTPS) to {netloc} ({text})",
                hint=f"the registry may speak plain HTTP: {insecure}",
            )
        if isinstance(exc, (socket.timeout, TimeoutError)):
            return SourceError(
                f"{netloc} did not answer within {self.timeout:g} s",
                hint="check the registry and the network (--storage-option timeout=SECONDS)",
            )
        if isinstance(exc, ConnectionRefusedError):
            return SourceError(
                f"cannot reach the registry {netloc}: connection refused",
                hint="check the host and port, and that the registry is running",
            )
        return SourceError(
            f"cannot talk to the registry {netloc} ({type(exc).__name__}: {text})",
            hint="check the host and port, and the network",
        )


def _error_detail(response: http.client.HTTPResponse) -> str:
    """The registry's error codes and messages (``{"errors": [{code, message}]}``), short."""
    data = response.read(64 << 10)
    try:
        errors = json.loads(data)["errors"]
        text = "; ".join(
            f"{e.get('code', '')}: {e.get('message', '')}".strip(": ") for e in errors[:3]
        )
    except (ValueError, KeyError, TypeError, AttributeError):
        text = data.decode("utf-8", "replace")
    return " ".join(text.split())[:300]


# --- the registry ---------------------------------------------------------------------------


class Registry:
    """One repository of one registry, as a client: authentication, blobs, manifests, referrers.

    Args:
        target: the repository (its tag and digest are not used here).
        insecure: plain HTTP instead of HTTPS.
        timeout: seconds each request may wait on the network.
        push: ask for push rights as well as pull (a token's scope).
        environ: where credential files are found (``REGISTRY_AUTH_FILE`` …).
    """

    def __init__(
        self,
        target: OciReference,
        *,
        insecure: bool = False,
        timeout: float = DEFAULT_TIMEOUT_S,
        push: bool = False,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        self.target = target
        self.repository = target.repository
        self._http = _Http(target.registry, insecure=insecure, timeout=timeout)
        self._scope = f"repository:{target.repository}:{'pull,push' if push else 'pull'}"
        self._environ = environ if environ is not None else os.environ
        self._lookup: Lookup | None = None
        self._authorization: str | None = None  # Basic, or the Bearer token of our scope
        self._tokens: dict[str, str] = {}

    def __enter__(self) -> Registry:
        return self

    def __exit__(self, *exc: object) -> None:
        self._http.close()

    @property
    def name(self) -> str:
        """``HOST[:PORT]/REPO``, for messages."""
        return f"{self.target.registry}/{self.repository}"

    def _url(self, path: str) -> str:
        return f"{self._http.base}/v2/{self.repository}/{path}"

    # --- requests and authentication ----------------------------------------------------------

    def request(
        self,
        method: str,
        url: str,
        *,
        what: str,
        ok: tuple[int, ...] = (200,),
        headers: Mapping[str, str] | None = None,
        body: Path | bytes | None = None,
        missing_hint: str | None = None,
    ) -> tuple[str, http.client.HTTPResponse]:
        """Send a request (authenticating when challenged); the response of a status in ``ok``.

        The caller reads the response to its end (or drops the connection).

        Raises:
            SourceNotFound: 404 (``missing_hint`` is the hint).
            SourceError: refused credentials (401, 403), a registry failure (5xx), anything
                else not in ``ok``.
        """
        payload = _Body(body)
        for attempt in (1, 2):
            final, response = self._http.send(
                method, url, headers or {}, payload, authorization=self._authorization
            )
            if response.status in ok:
                return final, response
            if response.status == 401 and attempt == 1:
                challenges = parse_challenges(response.getheader("WWW-Authenticate") or "")
                response.read()
                self._authenticate(challenges, what)
                continue
            raise self._status_error(response, method, what, missing_hint)
        raise AssertionError("unreachable")  # pragma: no cover

    def _read(self, method: str, url: str, *, what: str, cap: int, **kwargs: Any) -> bytes:
        """A request's whole answer, at most ``cap`` bytes."""
        final, response = self.request(method, url, what=what, **kwargs)
        data = response.read(cap + 1)
        if len(data) > cap:
            self._http.drop(final)
            raise PackageError(f"{what} is larger than {human_bytes(cap)}; refusing to read it")
        return data

    def _status_error(
        self,
        response: http.client.HTTPResponse,
        method: str,
        what: str,
        missing_hint: str | None,
    ) -> SourceError:
        status = response.status
        detail = _error_detail(response)
        said = f" ({detail})" if detail else ""
        doing = "writing" if method in ("PUT", "POST", "PATCH", "DELETE") else "reading"
        if status == 404:
            return SourceNotFound(
                f"{doing} {what}: not found{said}",
                hint=missing_hint or f"check the repository and tag in {self.name}",
            )
        if status in (401, 403):
            return SourceError(
                f"{doing} {what}: {self.target.registry} refused access (HTTP {status}){said}",
                hint=self.lookup().hint(self.target.registry),
            )
        if status == 400 and "HTTPS" in detail:
            return SourceError(
                f"{self.target.registry} speaks HTTPS, not plain HTTP{said}",
                hint="leave out --insecure (insecure=false)",
            )
        if status >= 500:
            return SourceError(f"{doing} {what}: the registry failed (HTTP {status}){said}")
        return SourceError(f"{doing} {what}: the registry answered HTTP {status}{said}")

    def lookup(self) -> Lookup:
        """The credential for this registry (looked up once, on the first challenge)."""
        if self._lookup is None:
            self._lookup = find_credential(self.target.registry, self._environ)
        return self._lookup

    def _authenticate(self, challenges: list[Challenge], what: str) -> None:
        """Answer a 401: a Bearer token of our scope from the realm, or Basic credentials."""
        registry = self.target.registry
        lookup = self.lookup()
        credential = lookup.credential
        bearer = next((c for c in challenges if c.scheme == "bearer"), None)
        if bearer is not None:
            self._authorization = "Bearer " + self._token(bearer, lookup, what)
            return
        if any(c.scheme == "basic" for c in challenges):
            if credential is None or not (credential.username or credential.password):
                raise SourceError(
                    f"reading {what}: {registry} asks for a user name and password, and none "
                    "were found",
                    hint=lookup.hint(registry),
                )
            if self._authorization is not None:  # these very credentials were refused
                raise SourceError(
                    f"reading {what}: {registry} refused the credentials from {credential.source}",
                    hint=lookup.hint(registry),
                )
            self._authorization = basic_header(credential)
            return
        schemes = ", ".join(c.scheme for c in challenges) or "none"
        raise SourceError(
            f"reading {what}: {registry} asks for authentication modelport does not speak "
            f"({schemes}; Basic and Bearer are read)"
        )

    def _token(self, challenge: Challenge, lookup: Lookup, what: str) -> str:
        """A Bearer token for our scope (and the challenge's) from the challenge's realm."""
        scopes = [self._scope]
        asked = challenge.params.get("scope")
        if asked and asked not in scopes:
            scopes.append(asked)
        key = " ".join(scopes)
        if key in self._tokens and self._authorization != "Bearer " + self._tokens[key]:
            return self._tokens[key]
        realm = challenge.params.get("realm", "")
        if urllib.parse.urlsplit(realm).scheme not in ("http", "https"):
            raise SourceError(f"{self.target.registry} named no token server (realm {realm!r})")
        service = challenge.params.get("service")
        credential = lookup.credential
        form: list[tuple[str, str]] = [("service", service)] if service else []
        headers: dict[str, str] = {"Accept": "application/json"}
        authorization = None
        if credential is not None and credential.identity_token:
            # An OAuth2 refresh token: POST it, as docker does (a password never goes in a URL).
            body: bytes | None = urllib.parse.urlencode(
                [
                    *form,
                    ("scope", " ".join(scopes)),
                    ("grant_type", "refresh_token"),
                    ("refresh_token", credential.identity_token),
                    ("client_id", "modelport"),
                ]
            ).encode()
            headers["Content-Type"] = "application/x-www-form-urlencoded"
            method, url = "POST", realm
        else:
            body = None
            query = urllib.parse.urlencode([*form, *(("scope", s) for s in scopes)])
            method, url = "GET", realm + ("&" if "?" in realm else "?") + query
            if credential is not None and (credential.username or credential.password):
                authorization = basic_header(credential)
        realm_http = _Http(
            urllib.parse.urlsplit(realm).netloc,
            insecure=urllib.parse.urlsplit(realm).scheme == "http",
            timeout=self._http.timeout,
        )
        try:
            _, response = realm_http.send(
                method, url, headers, _Body(body), authorization=authorization
            )
            data = response.read(MAX_SMALL_BLOB_BYTES)
        finally:
            realm_http.close()
        if response.status in (401, 403):
            who = f"the credentials from {credential.source}" if credential else "anonymous access"
            raise SourceError(
                f"reading {what}: the token server of {self.target.registry} refused {who} "
                f"(HTTP {response.status})",
                hint=lookup.hint(self.target.registry),
            )
        if response.status != 200:
            raise SourceError(
                f"reading {what}: the token server of {self.target.registry} answered HTTP "
                f"{response.status}"
            )
        try:
            answer = json.loads(data)
            token = answer.get("token") or answer.get("access_token")
        except (ValueError, AttributeError):
            token = None
        if not isinstance(token, str) or not token:
            raise SourceError(f"the token server of {self.target.registry} gave no token")
        self._tokens[key] = token
        return token

    # --- blobs --------------------------------------------------------------------------------

    def has_blob(self, digest: str) -> bool:
        """Whether the repository holds the blob ``digest``."""
        _, response = self.request(
            "HEAD", self._url(f"blobs/{digest}"), what=f"blob {digest}", ok=(200, 404)
        )
        response.read()
        return response.status == 200

    def upload_blob(self, blob: Blob, what: str) -> None:
        """Upload one blob: POST an upload session, then one monolithic PUT of its bytes.

        Raises:
            SourceError: the registry refused it, or stored other bytes than were sent.
        """
        final, response = self.request(
            "POST", self._url("blobs/uploads/"), what=what, ok=(202,), body=b""
        )
        response.read()
        location = response.getheader("Location")
        if not location:
            raise SourceError(f"writing {what}: the registry gave no upload location")
        url = urllib.parse.urljoin(final, location)
        url += ("&" if "?" in url else "?") + "digest=" + urllib.parse.quote(blob.digest, safe="")
        _, response = self.request(
            "PUT",
            url,
            what=what,
            ok=(201,),
            headers={"Content-Type": "application/octet-stream"},
            body=blob.source,
        )
        response.read()
        _check_stored(response, blob.digest, what)

    def download_blob(self, digest: str, size: int, dest: Any, *, what: str) -> str:
        """Stream the blob into ``dest`` (a binary file), at most ``size`` bytes.

        Returns:
            ``sha256:<hex>`` of what came (the caller compares it with ``digest``).

        Raises:
            IntegrityError: more or fewer than ``size`` bytes came.
        """
        final, response = self.request(
            "GET",
            self._url(f"blobs/{digest}"),
            what=what,
            missing_hint=f"the blob {digest} is missing from {self.name}",
        )
        h = hashlib.sha256()
        done = 0
        while True:
            try:
                chunk = response.read(CHUNK)
            except (OSError, http.client.HTTPException) as exc:
                self._http.drop(final)
                netloc = urllib.parse.urlsplit(final).netloc
                raise self._http.network_error(exc, netloc) from None
            if not chunk:
                break
            done += len(chunk)
            if done > size:
                self._http.drop(final)
                raise IntegrityError(
                    [f"{what}: the registry sent more than the layer's {size:,} bytes"]
                )
            h.update(chunk)
            dest.write(chunk)
        if done != size:
            raise IntegrityError(
                [f"{what}: the registry sent {done:,} bytes, not the layer's {size:,}"]
            )
        return "sha256:" + h.hexdigest()

    def read_blob(self, digest: str, size: int, *, what: str, cap: int) -> bytes:
        """A small blob (a config, a signature), checked against its digest and size."""
        if size > cap:
            raise PackageError(f"{what} is {human_bytes(size)}, over {human_bytes(cap)}")
        data = self._read("GET", self._url(f"blobs/{digest}"), what=what, cap=cap)
        found = _sha256(data)
        if found != digest or len(data) != size:
            raise IntegrityError([f"{what}: expected {digest}, found {found}"])
        return data

    # --- manifests ----------------------------------------------------------------------------

    def resolve(self, tag: str) -> str:
        """The digest of the manifest a tag points to (one HEAD request).

        Raises:
            SourceNotFound: no such repository or tag.
        """
        what = f"{self.name}:{tag}"
        _, response = self.request(
            "HEAD",
            self._url(f"manifests/{tag}"),
            what=what,
            headers={"Accept": _MANIFEST_ACCEPT},
            missing_hint=f"check the repository and tag; no manifest is tagged {tag!r} in "
            f"{self.name}",
        )
        response.read()
        digest = (response.getheader("Docker-Content-Digest") or "").strip().lower()
        if _DIGEST.match(digest):
            return digest
        # A registry that does not say (none of the common ones): the manifest's own bytes.
        data = self._read(
            "GET",
            self._url(f"manifests/{tag}"),
            what=what,
            cap=MAX_OCI_MANIFEST_BYTES,
            headers={"Accept": _MANIFEST_ACCEPT},
        )
        return _sha256(data)

    def manifest(self, digest: str, *, what: str) -> bytes:
        """The manifest (or index) ``digest``, its bytes checked against the digest."""
        data = self._read(
            "GET",
            self._url(f"manifests/{digest}"),
            what=what,
            cap=MAX_OCI_MANIFEST_BYTES,
            headers={"Accept": _MANIFEST_ACCEPT},
            missing_hint=f"no manifest {digest} in {self.name}",
        )
        found = _sha256(data)
        if found != digest:
            raise IntegrityError([f"{what}: the registry sent a manifest with digest {found}"])
        return data

    def put_manifest(
        self, reference: str, data: bytes, media_type: str, *, what: str
    ) -> http.client.HTTPResponse:
        """PUT a manifest under a tag or its digest; the response (its headers are read)."""
        _, response = self.request(
            "PUT",
            self._url(f"manifests/{reference}"),
            what=what,
            ok=(201,),
            headers={"Content-Type": media_type},
            body=data,
        )
        response.read()
        _check_stored(response, _sha256(data), what)
        return response

    def referrers(self, digest: str) -> list[dict[str, Any]]:
        """The descriptors of the manifests whose ``subject`` is ``digest``.

        The referrers API first; where the registry has none (404), the fallback tag
        ``sha256-<hex>`` and the index it holds.
        """
        what = f"the referrers of {self.name}@{digest}"
        final, response = self.request(
            "GET",
            self._url(f"referrers/{digest}"),
            what=what,
            ok=(200, 400, 404, 405),
            headers={"Accept": INDEX_MEDIA_TYPE},
        )
        if response.status == 200:
            data = response.read(MAX_OCI_MANIFEST_BYTES + 1)
            index = _json_object(data, what) if len(data) <= MAX_OCI_MANIFEST_BYTES else None
            if index is not None and index.get("mediaType", INDEX_MEDIA_TYPE) == INDEX_MEDIA_TYPE:
                return _index_entries(index, what)
            if index is None:
                self._http.drop(final)
        else:
            response.read()
        index = self.fallback_index(digest)
        return _index_entries(index, what) if index is not None else []

    def fallback_index(self, digest: str) -> dict[str, Any] | None:
        """The image index under the referrers tag schema's tag of ``digest``, or None."""
        tag = digest.replace(":", "-")
        what = f"{self.name}:{tag} (the referrers of {digest})"
        _, response = self.request(
            "GET",
            self._url(f"manifests/{tag}"),
            what=what,
            ok=(200, 404),
            headers={"Accept": INDEX_MEDIA_TYPE},
        )
        data = response.read(MAX_OCI_MANIFEST_BYTES)
        if response.status == 404:
            return None
        return _json_object(data, what)


def _check_stored(response: http.client.HTTPResponse, digest: str, what: str) -> None:
    """Refuse a registry that says it stored other bytes than the ones sent."""
    stored = (response.getheader("Docker-Content-Digest") or "").strip().lower()
    if stored and stored != digest:
        raise SourceError(f"writing {what}: the registry stored {stored}, not {digest}")


def _json_object(data: bytes, what: str) -> dict[str, Any]:
    try:
        value = json.loads(data)
    except ValueError:
        raise PackageError(f"{what} is not JSON") from None
    if not isinstance(value, dict):
        raise PackageError(f"{what} is not a JSON object")
    return value


def _index_entries(index: Mapping[str, Any], what: str) -> list[dict[str, Any]]:
    entries = index.get("manifests", [])
    if not isinstance(entries, list):
        raise PackageError(f"{what}: 'manifests' is not a list")
    return [e for e in entries if isinstance(e, dict) and isinstance(e.get("digest"), str)]


# --- push -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class PushResult:
    """What :func:`push` did.

    Attributes:
        reference: where the artifact is now, ``HOST[:PORT]/REPO:TAG``.
        digest: the manifest digest (``sha256:…``): pull ``oci://HOST/REPO@DIGEST``.
        package_digest: the package's own digest.
        manifest: the OCI manifest pushed, as JSON values.
        signature_digest: the manifest digest of the signature referrer, or None.
        uploaded_blobs: blobs uploaded (config and layers; the signature's not counted).
        skipped_blobs: blobs the registry already held.
        uploaded_bytes: bytes uploaded.
        skipped_bytes: bytes not uploaded because the registry held them.
    """

    reference: str
    digest: str
    package_digest: str
    manifest: Mapping[str, Any]
    signature_digest: str | None = None
    uploaded_blobs: int = 0
    skipped_blobs: int = 0
    uploaded_bytes: int = 0
    skipped_bytes: int = 0

    def to_dict(self) -> dict[str, Any]:
        """The result as JSON values (``modelport push --json``)."""
        return {
            "reference": self.reference,
            "digest": self.digest,
            "package_digest": self.package_digest,
            "signature_digest": self.signature_digest,
            "uploaded_blobs": self.uploaded_blobs,
            "skipped_blobs": self.skipped_blobs,
            "uploaded_bytes": self.uploaded_bytes,
            "skipped_bytes": self.skipped_bytes,
            "manifest": dict(self.manifest),
        }


def oci_reference(ref: str | Reference) -> OciReference:
    """An ``oci://`` reference taken apart.

    Raises:
        UsageError: not an ``oci://`` reference, or a malformed one.
    """
    parsed = ref if isinstance(ref, Reference) else parse_reference(ref)
    if parsed.kind is not Kind.OCI:
        raise UsageError(f"{parsed.text}: not an oci:// reference", hint=f"write {OCI_SHAPE}")
    return parsed.oci


def push(
    package: str | os.PathLike[str],
    ref: str | Reference,
    *,
    signature: bytes | None = None,
    insecure: bool = False,
    timeout: float = DEFAULT_TIMEOUT_S,
    limits: ArchiveLimits = DEFAULT_LIMITS,
) -> PushResult:
    """Push a package (directory or archive) to ``oci://HOST[:PORT]/REPO[:TAG]``, verified first.

    Blobs the repository holds already are not uploaded again; the tag (``latest`` if none is
    given) is set last, so a failed push leaves no tag pointing at a partial artifact.

    Args:
        package: the package directory or ``.mport`` archive.
        ref: the target, ``oci://HOST[:PORT]/REPO[:TAG]`` (no digest: a push makes one).
        signature: the package's OpenSSF Model Signing bundle (sigstore bundle JSON), pushed as
            a referrer of the artifact; the same bundle is pushed once.
        insecure: plain HTTP instead of HTTPS.
        timeout: seconds each request may wait on the network.
        limits: what reading the package may cost.

    Raises:
        PackageError: the package is invalid or tampered with (nothing is pushed).
        SourceError: no credentials, access denied, the registry unreachable or failing.
        UsageError: ``ref`` is not an ``oci://`` reference of a tag.
    """
    target = oci_reference(ref)
    if target.digest is not None:
        raise UsageError(
            f"{target}: push to a tag, not a digest (the push gives the digest)",
            hint=f"write oci://{target.registry}/{target.repository}:TAG",
        )
    tag = target.tag or "latest"
    with (
        open_package(Path(package), limits=limits) as opened,
        Registry(target, insecure=insecure, timeout=timeout, push=True) as registry,
    ):
        artifact = model_artifact(opened.directory, opened.manifest)
        uploaded = skipped = uploaded_bytes = skipped_bytes = 0
        for blob in artifact.blobs:
            what = f"blob {blob.digest} of {registry.name}"
            if registry.has_blob(blob.digest):
                skipped += 1
                skipped_bytes += blob.size
                continue
            registry.upload_blob(blob, what)
            uploaded += 1
            uploaded_bytes += blob.size
        registry.put_manifest(
            tag, artifact.manifest_bytes, MANIFEST_MEDIA_TYPE, what=f"{registry.name}:{tag}"
        )
        subject = {
            "mediaType": MANIFEST_MEDIA_TYPE,
            "digest": artifact.digest,
            "size": len(artifact.manifest_bytes),
        }
        signature_digest = (
            _push_signature(registry, subject, signature) if signature is not None else None
        )
    return PushResult(
        reference=f"{target.registry}/{target.repository}:{tag}",
        digest=artifact.digest,
        package_digest=opened.manifest.digest,
        manifest=artifact.manifest,
        signature_digest=signature_digest,
        uploaded_blobs=uploaded,
        skipped_blobs=skipped,
        uploaded_bytes=uploaded_bytes,
        skipped_bytes=skipped_bytes,
    )


def _push_signature(registry: Registry, subject: Mapping[str, Any], bundle: bytes) -> str:
    """Push a sigstore bundle as a referrer of ``subject``; its manifest digest.

    The same bundle already referring to the subject is not pushed again. Where the registry
    does not take referrers itself (no ``OCI-Subject`` in its answer), the referrers tag
    schema's index is read, added to and written back.
    """
    bundle_digest = _sha256(bundle)
    for entry in registry.referrers(subject["digest"]):
        annotations = entry.get("annotations") or {}
        if (
            entry.get("artifactType") == SIGSTORE_BUNDLE_TYPE
            and annotations.get(SIGNATURE_DIGEST_ANNOTATION) == bundle_digest
        ):
            return str(entry["digest"])
    created = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
    annotations = {
        CREATED_ANNOTATION: created.isoformat().replace("+00:00", "Z"),
        SIGNATURE_DIGEST_ANNOTATION: bundle_digest,
    }
    empty = Blob(EMPTY_MEDIA_TYPE, _sha256(EMPTY_BLOB), len(EMPTY_BLOB), EMPTY_BLOB)
    layer = Blob(SIGSTORE_BUNDLE_TYPE, bundle_digest, len(bundle), bundle)
    manifest = {
        "schemaVersion": 2,
        "mediaType": MANIFEST_MEDIA_TYPE,
        "artifactType": SIGSTORE_BUNDLE_TYPE,
        "config": empty.descriptor(),
        "layers": [layer.descriptor()],
        "subject": dict(subject),
        "annotations": annotations,
    }
    data = _json_bytes(manifest)
    digest = _sha256(data)
    for blob in (empty, layer):
        what = f"the signature's blob {blob.digest} in {registry.name}"
        if not registry.has_blob(blob.digest):
            registry.upload_blob(blob, what)
    response = registry.put_manifest(
        digest, data, MANIFEST_MEDIA_TYPE, what=f"the signature {registry.name}@{digest}"
    )
    if response.getheader("OCI-Subject"):
        return digest  # the registry keeps the referrers itself
    tag = str(subject["digest"]).replace(":", "-")
    index = registry.fallback_index(str(subject["digest"])) or {
        "schemaVersion": 2,
        "mediaType": INDEX_MEDIA_TYPE,
        "manifests": [],
    }
    entries = _index_entries(index, f"{registry.name}:{tag}")
    if not any(e["digest"] == digest for e in entries):
        entry = {
            "mediaType": MANIFEST_MEDIA_TYPE,
            "digest": digest,
            "size": len(data),
            "artifactType": SIGSTORE_BUNDLE_TYPE,
            "annotations": annotations,
        }
        index = {**index, "manifests": [*entries, entry]}
        registry.put_manifest(
            tag, _json_bytes(index), INDEX_MEDIA_TYPE, what=f"{registry.name}:{tag}"
        )
    return digest


# --- pull -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class OciOptions:
    """The storage options of ``oci://`` references.

    Attributes:
        insecure: plain HTTP instead of HTTPS.
        timeout: seconds each request may wait on the network.
    """

    insecure: bool = False
    timeout: float = DEFAULT_TIMEOUT_S


def oci_options(
    given: Mapping[str, Any] | None = None, environ: Mapping[str, str] = os.environ
) -> OciOptions:
    """The options of an ``oci://`` pull, ``given`` after ``$MODELPORT_STORAGE_OPTIONS``'s.

    The variable's ``oci`` entry is read; a later key wins.

    Raises:
        UsageError: an unknown option, or a value of the wrong kind.
    """
    options = environment_options((OCI_SCHEME,), environ)
    options.update(given or {})
    unknown = sorted(set(options) - {"insecure", "timeout"})
    if unknown:
        raise UsageError(
            f"unknown storage option(s) for oci://: {', '.join(unknown)}",
            hint="oci:// takes insecure=true (plain HTTP) and timeout=SECONDS",
        )
    insecure = options.get("insecure", False)
    if isinstance(insecure, str) and insecure.lower() in ("true", "false", "1", "0"):
        insecure = insecure.lower() in ("true", "1")
    if not isinstance(insecure, bool):
        raise UsageError(f"storage option insecure must be true or false, got {insecure!r}")
    timeout = options.get("timeout", DEFAULT_TIMEOUT_S)
    if isinstance(timeout, str):
        with contextlib.suppress(ValueError):
            timeout = float(timeout)
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout > 0:
        raise UsageError(f"storage option timeout must be a number of seconds, got {timeout!r}")
    return OciOptions(insecure=insecure, timeout=float(timeout))


def cache_key(target: OciReference, digest: str) -> str:
    """The package cache's key of one artifact: its registry, repository and manifest digest."""
    return f"oci://{target.pinned(digest)}"


@dataclass(frozen=True)
class _Layer:
    """A layer of a pulled manifest, checked: its file, media type, digest and size."""

    path: str
    media_type: str
    digest: str
    size: int


def fetch_oci(
    ref: Reference,
    *,
    storage_options: Mapping[str, Any] | None = None,
    cache: PackageCache | None = None,
    limits: ArchiveLimits = DEFAULT_LIMITS,
) -> CacheEntry:
    """Pull an ``oci://`` reference into the package cache, or find it there.

    A reference pinned by digest that is cached is served without any request; a tag costs
    one request to resolve when its artifact is cached.

    Args:
        ref: the ``oci://`` reference.
        storage_options: ``insecure`` (plain HTTP) and ``timeout`` (seconds), after the
            ``oci`` entry of ``$MODELPORT_STORAGE_OPTIONS``.
        cache: the cache; default ``$MODELPORT_HOME/cache``.
        limits: the most the package may be.

    Raises:
        SourceNotFound: no such repository, tag, manifest or blob.
        SourceError: no credentials, access denied, the registry unreachable or failing, TLS to
            a plain-HTTP registry (the hint says to use ``insecure``).
        IntegrityError: a layer's bytes are not its digest or size (the message names the
            file); the manifest pinned is not the one sent. Nothing is added to the cache.
        PackageError: not a ModelPack artifact, an unsafe path, a foreign artifact that is not
            one ONNX model, over a limit.
        UsageError: a malformed reference or bad options.
    """
    target = oci_reference(ref)
    options = oci_options(storage_options)
    cache = cache if cache is not None else PackageCache()
    if target.digest is not None:
        hit = cache.get(cache_key(target, target.digest))
        if hit is not None:
            return hit  # content-addressed: no need to ask the registry anything
    with Registry(target, insecure=options.insecure, timeout=options.timeout) as registry:
        digest = target.digest or registry.resolve(target.tag or "latest")
        key = cache_key(target, digest)
        if target.digest is None:
            hit = cache.get(key)
            if hit is not None:
                return hit
        source = f"oci://{target.pinned(digest)}"
        manifest = _json_object(registry.manifest(digest, what=source), source)
        config = _check_manifest(manifest, source)
        layers = _layers(manifest, source, limits)
        with cache.staging() as stage:
            out = stage / "package.mport"
            metadata = {
                "oci_digest": digest,
                "oci_reference": target.pinned(digest),
            }
            if any(layer.path == MANIFEST_NAME for layer in layers):
                package = stage / "package"
                package.mkdir()
                model = _pull_package(registry, manifest, layers, package, source, limits)
                if SIGNATURE_NAME not in model.files:  # else that file is part of the package
                    signature = _pull_signature(registry, digest, package / SIGNATURE_NAME)
                    if signature is not None:
                        metadata["oci_signature_digest"] = signature
                write_archive(package, model, out)
                metadata["oci_artifact"] = "modelport"
            else:
                _pull_foreign(registry, target, config, layers, stage, out, source)
                metadata["oci_artifact"] = "modelpack"
            metadata["fetched_at"] = dt.datetime.now(dt.timezone.utc).isoformat()
            return cache.add(key, ref.text, out, metadata=metadata, limits=limits)


def _check_manifest(manifest: Mapping[str, Any], source: str) -> dict[str, Any]:
    """Refuse what is not a ModelPack artifact; the config's descriptor."""
    media_type = manifest.get("mediaType")
    if media_type in (INDEX_MEDIA_TYPE, DOCKER_LIST_MEDIA_TYPE):
        raise PackageError(
            f"{source} is an image index (several manifests, as a multi-platform image has), "
            "not a model artifact"
        )
    if media_type == DOCKER_MANIFEST_MEDIA_TYPE:
        raise PackageError(f"{source} is a container image (a Docker manifest), not a model")
    if media_type not in (MANIFEST_MEDIA_TYPE, None) or manifest.get("schemaVersion") != 2:
        raise PackageError(f"{source} is not an OCI image manifest (mediaType {media_type!r})")
    config = manifest.get("config")
    if not isinstance(config, dict):
        raise PackageError(f"{source}: the manifest has no config")
    artifact_type = manifest.get("artifactType")
    config_type = config.get("mediaType")
    if artifact_type not in (None, MODEL_ARTIFACT_TYPE):
        raise PackageError(
            f"{source} is an artifact of type {artifact_type!r}, not a ModelPack model "
            f"({MODEL_ARTIFACT_TYPE})"
        )
    if config_type != MODEL_CONFIG_MEDIA_TYPE:
        kind = "a container image" if config_type == IMAGE_CONFIG_MEDIA_TYPE else "not a model"
        raise PackageError(
            f"{source} is {kind}: its config is {config_type!r}, not a ModelPack model config "
            f"({MODEL_CONFIG_MEDIA_TYPE})"
        )
    return config


def _descriptor(value: Any, where: str) -> tuple[str, str, int, Mapping[str, Any]]:
    """A descriptor's media type, digest, size and annotations, checked."""
    if not isinstance(value, dict):
        raise PackageError(f"{where} is not a descriptor")
    media_type, digest, size = value.get("mediaType"), value.get("digest"), value.get("size")
    annotations = value.get("annotations") or {}
    if not isinstance(media_type, str) or not isinstance(annotations, dict):
        raise PackageError(f"{where}: no media type")
    if not isinstance(digest, str) or not _DIGEST.match(digest):
        raise PackageError(
            f"{where}: digest {str(digest)[:80]!r} is not sha256: and 64 hex digits (the only "
            "digest modelport reads)"
        )
    if isinstance(size, bool) or not isinstance(size, int) or size < 0:
        raise PackageError(f"{where}: size {size!r} is not a number of bytes")
    return media_type, digest, size, annotations


def _layers(manifest: Mapping[str, Any], source: str, limits: ArchiveLimits) -> list[_Layer]:
    """The manifest's layers, each a raw file with a safe path of its own, within ``limits``."""
    raw = manifest.get("layers")
    if not isinstance(raw, list) or not raw:
        raise PackageError(f"{source}: the manifest has no layers")
    if len(raw) > limits.max_entries:
        raise over_limit(
            f"{source}: the artifact has {len(raw):,} layers, more than {limits.max_entries:,}",
            "max_entries",
        )
    layers: list[_Layer] = []
    seen: set[str] = set()
    total = 0
    for i, value in enumerate(raw):
        media_type, digest, size, annotations = _descriptor(value, f"{source}: layer {i}")
        path = annotations.get(FILEPATH_ANNOTATION) or annotations.get(TITLE_ANNOTATION)
        if not isinstance(path, str) or not path:
            raise PackageError(
                f"{source}: layer {i} ({digest}) names no file (no {FILEPATH_ANNOTATION} or "
                f"{TITLE_ANNOTATION} annotation)"
            )
        if not is_safe_relative_path(path):
            raise PackageError(
                f"{source}: layer {i} has the unsafe path {path[:200]!r} (absolute, '..', or "
                "not a clean relative path); refusing the artifact"
            )
        if path in seen:
            raise PackageError(f"{source}: two layers are the file {path!r}; refusing it")
        if media_type not in RAW_MEDIA_TYPES:
            raise PackageError(
                f"{source}: the layer {path!r} is {media_type!r}; modelport reads uncompressed "
                "ModelPack layers (application/vnd.cncf.model.*.v1.raw)"
            )
        seen.add(path)
        total += size
        layers.append(_Layer(path, media_type, digest, size))
    if total > limits.max_expanded_bytes:
        raise over_limit(
            f"{source}: the artifact's layers are {human_bytes(total)}, over the "
            f"{limits.max_expanded_mb:g} MiB limit",
            "max_expanded_mb",
        )
    return layers


def _download(
    registry: Registry, layer: _Layer, dest: Path, source: str, progress: Progress | None = None
) -> None:
    """Stream one layer into the new file ``dest``; refuse it unless its digest is the layer's."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    # O_EXCL | O_NOFOLLOW: never write through anything already there.
    fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
    with os.fdopen(fd, "wb") as fh:
        found = registry.download_blob(
            layer.digest, layer.size, fh, what=f"{layer.path} (layer {layer.digest} of {source})"
        )
    if progress is not None:
        progress.advance(layer.size)
    if found != layer.digest:
        raise IntegrityError(
            [
                f"{layer.path}: the registry sent other bytes than the layer's (expected "
                f"{layer.digest}, found {found}) from {source}"
            ]
        )


def _pull_package(
    registry: Registry,
    manifest: Mapping[str, Any],
    layers: list[_Layer],
    dest: Path,
    source: str,
    limits: ArchiveLimits,
) -> Manifest:
    """Download a modelport artifact: its manifest layer, then each file, all checked."""
    (manifest_layer,) = [layer for layer in layers if layer.path == MANIFEST_NAME]
    limits.check_manifest_size(f"{source}:{MANIFEST_NAME}", manifest_layer.size)
    data = registry.read_blob(
        manifest_layer.digest,
        manifest_layer.size,
        what=f"{MANIFEST_NAME} (layer {manifest_layer.digest} of {source})",
        cap=limits.max_manifest_bytes,
    )
    model = parse(data, f"{source}:{MANIFEST_NAME}")
    annotations = manifest.get("annotations") or {}
    said = annotations.get(PACKAGE_DIGEST_ANNOTATION) if isinstance(annotations, dict) else None
    if said is not None and said != model.digest:
        raise IntegrityError(
            [
                f"{MANIFEST_NAME}: the artifact says package {said}, its manifest layer is "
                f"package {model.digest}"
            ]
        )
    files = {layer.path: layer for layer in layers if layer.path != MANIFEST_NAME}
    problems = []
    for rel in sorted(set(model.files) | set(files)):
        if rel not in files:
            problems.append(f"missing file: {rel} (no layer of {source} holds it)")
        elif rel not in model.files:
            problems.append(f"extra file (not listed in the manifest): {rel}")
        elif files[rel].digest != model.files[rel]:
            problems.append(
                f"altered file: {rel} (the manifest lists {model.files[rel]}, the layer is "
                f"{files[rel].digest})"
            )
    if problems:
        raise IntegrityError(problems)
    progress = Progress(source, sum(layer.size for layer in files.values()))
    try:
        for rel in sorted(files):
            _download(registry, files[rel], dest.joinpath(*rel.split("/")), source, progress)
    finally:
        progress.close()
    return model


def _pull_signature(registry: Registry, digest: str, dest: Path) -> str | None:
    """Write the newest sigstore-bundle referrer of ``digest`` to ``dest``; its digest or None."""
    found = [e for e in registry.referrers(digest) if e.get("artifactType") == SIGSTORE_BUNDLE_TYPE]
    if not found:
        return None

    def created(entry: Mapping[str, Any]) -> tuple[str, str]:
        annotations = entry.get("annotations") or {}
        stamp = annotations.get(CREATED_ANNOTATION) if isinstance(annotations, dict) else None
        try:
            when = _rfc3339(stamp) if isinstance(stamp, str) else ""
        except ValueError:
            when = ""
        return when, str(entry["digest"])

    newest = max(found, key=created)
    sig_digest = str(newest["digest"])
    source = f"the signature {registry.name}@{sig_digest}"
    if not _DIGEST.match(sig_digest):
        raise PackageError(f"{source}: not a sha256 digest")
    manifest = _json_object(registry.manifest(sig_digest, what=source), source)
    subject = manifest.get("subject")
    if not isinstance(subject, dict) or subject.get("digest") != digest:
        raise PackageError(f"{source} does not refer to {digest}")
    layers = manifest.get("layers")
    bundles = [
        _descriptor(layer, f"{source}: a layer")
        for layer in (layers if isinstance(layers, list) else [])
        if isinstance(layer, dict) and layer.get("mediaType") == SIGSTORE_BUNDLE_TYPE
    ]
    if len(bundles) != 1:
        raise PackageError(f"{source} holds {len(bundles)} sigstore bundles, not one")
    _, bundle_digest, size, _ = bundles[0]
    data = registry.read_blob(
        bundle_digest, size, what=f"{SIGNATURE_NAME} ({source})", cap=MAX_SIGNATURE_BYTES
    )
    dest.write_bytes(data)
    return sig_digest


def _pull_foreign(
    registry: Registry,
    target: OciReference,
    config_descriptor: Mapping[str, Any],
    layers: list[_Layer],
    stage: Path,
    out: Path,
    source: str,
) -> None:
    """Pack a ModelPack artifact another tool made, when its one weight is an ONNX model."""
    weights = [layer for layer in layers if layer.media_type == WEIGHT_MEDIA_TYPE]
    onnx = [layer for layer in weights if layer.path.lower().endswith(".onnx")]
    if len(weights) != 1 or len(onnx) != 1:
        shown = ", ".join(layer.path for layer in weights[:5]) or "none"
        raise PackageError(
            f"{source} is a ModelPack artifact without {MANIFEST_NAME}, which modelport reads "
            f"when its one weight layer is an ONNX model (.onnx); it has {len(weights)} weight "
            f"layer(s): {shown}",
            hint="pack the model with 'modelport pack' and push the package",
        )
    _, digest, size, _ = _descriptor(config_descriptor, f"{source}: the config")
    config = _json_object(
        registry.read_blob(digest, size, what=f"the config of {source}", cap=MAX_SMALL_BLOB_BYTES),
        f"the config of {source}",
    )
    descriptor = config.get("descriptor")
    descriptor = descriptor if isinstance(descriptor, dict) else {}
    name = descriptor.get("name")
    if not isinstance(name, str) or not NAME_PATTERN.match(name):
        cleaned = re.sub(r"[^A-Za-z0-9._-]+", "-", str(name or "")).strip("-._")[:128]
        name = cleaned or target.repository.rsplit("/", 1)[-1]
    version = descriptor.get("version")
    if not isinstance(version, str) or not version:
        version = target.tag or "1"
    created = descriptor.get("createdAt")
    model = stage / "foreign" / "model.onnx"
    _download(registry, onnx[0], model, source)

    from modelport.model_format.pack import pack  # numpy, ONNX Runtime: only for this

    try:
        pack(
            model,
            out,
            name=name,
            version=version,
            created_at=created if isinstance(created, str) and created else None,
        ).close()
    except PackError as exc:
        raise PackageError(
            f"{source}: its ONNX model {onnx[0].path} cannot be packed: {exc}"
        ) from None
