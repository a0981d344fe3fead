"""Any package reference to a verified local package: the one package-source layer.

A path is itself. A storage URI (``s3://``, ``gs://``, ``abfs://``/``az://``, ``hdfs://``,
``webhdfs://``, ``https://``) is downloaded through fsspec; an MLflow URI (``models:/…``,
``runs:/…``) is resolved through MLflow's client and packed; an OCI reference (``oci://…``) is
pulled from its registry (:mod:`modelport.model_format.remote.oci`). Either way the result goes to
the package cache (:mod:`modelport.model_format.remote.cache`), verified before it is used, and is
reused while the object's ETag or version, the registry's version, or the manifest digest a tag
resolves to stays the same.

Every command that takes a package, and :func:`modelport.load` and :func:`modelport.verify`,
go through :func:`locate`.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from modelport.errors import MissingDependencyError, PackageError, SignatureError
from modelport.model_format.archive import write_archive
from modelport.model_format.limits import DEFAULT_LIMITS, ArchiveLimits
from modelport.model_format.manifest import MANIFEST_NAME, parse
from modelport.model_format.package import Package, Provenance, VerifyReport
from modelport.model_format.package import load as load_path
from modelport.model_format.package import verify as verify_path
from modelport.model_format.remote import oci, registry, storage
from modelport.model_format.remote.cache import CacheEntry, PackageCache
from modelport.model_format.remote.uri import Kind, Reference, parse_reference
from modelport.model_format.signing import (
    SignatureInfo,
    TrustPolicy,
    describe,
    enforce,
    read_signature,
)


def locate(
    ref: str | os.PathLike[str],
    *,
    storage_options: Mapping[str, Any] | None = None,
    allow_code: bool = False,
    cache: PackageCache | None = None,
    limits: ArchiveLimits = DEFAULT_LIMITS,
) -> Path:
    """The local package ``ref`` names: a path as it is, a URI fetched into the cache.

    Args:
        ref: a package path, a storage URI, an MLflow URI or an ``oci://`` reference.
        storage_options: options for the storage backend (``endpoint_url``, ``anon``,
            ``account_name`` …; ``insecure`` and ``timeout`` for ``oci://``), after those of
            ``$MODELPORT_STORAGE_OPTIONS``.
        allow_code: let packing an MLflow model read pickles (as ``pack --allow-code``).
        cache: the cache to use; default ``$MODELPORT_HOME/cache``.
        limits: the most a downloaded package may be.

    Raises:
        SourceNotFound: nothing is there (a missing object; an unknown model, version,
            alias or run; an unknown repository, tag or manifest).
        SourceError: no credentials, access denied, the store or registry unreachable.
        MissingDependencyError: the backend's extra is not installed (the hint names it).
        PackageError: what is there is not an intact package.
        UsageError: an unknown scheme, a malformed MLflow URI, bad storage options.
    """
    parsed = parse_reference(ref)
    if parsed.kind is Kind.PATH:
        return Path(parsed.text)
    return fetch(
        parsed, storage_options=storage_options, allow_code=allow_code, cache=cache, limits=limits
    ).path


def fetch(
    ref: Reference,
    *,
    storage_options: Mapping[str, Any] | None = None,
    allow_code: bool = False,
    cache: PackageCache | None = None,
    limits: ArchiveLimits = DEFAULT_LIMITS,
) -> CacheEntry:
    """Fetch a storage, MLflow or OCI reference into the cache (or find it there).

    See :func:`locate`.
    """
    cache = cache if cache is not None else PackageCache()
    if ref.kind is Kind.OCI:
        return oci.fetch_oci(ref, storage_options=storage_options, cache=cache, limits=limits)
    if ref.kind is Kind.MLFLOW:
        return fetch_version(
            registry.resolve(ref.text), allow_code=allow_code, cache=cache, limits=limits
        )
    fs, path = storage.filesystem(ref, storage.storage_options(ref, storage_options))
    obj = storage.describe(fs, path, ref.text)
    # A store that says nothing of versions (no ETag, no modification time) is fetched anew.
    key = f"{ref.text}\n{obj.version or uuid.uuid4().hex}"
    hit = cache.get(key)
    if hit is not None:
        return hit
    with cache.staging() as stage:
        out = stage / "package.mport"
        if obj.is_dir:
            _download_directory(fs, obj, stage / "package", out, limits)
        else:
            with out.open("wb") as dest:
                storage.download(fs, path, dest, uri=ref.text, size=obj.size, limits=limits)
        fetched = dt.datetime.now(dt.timezone.utc).isoformat()
        return cache.add(key, ref.text, out, metadata={"fetched_at": fetched}, limits=limits)


def fetch_version(
    found: registry.RegistryVersion,
    *,
    allow_code: bool = False,
    cache: PackageCache | None = None,
    limits: ArchiveLimits = DEFAULT_LIMITS,
) -> CacheEntry:
    """The package of one registry version already resolved: cached, or packed anew.

    A follower fetches exactly the version it resolved, even if the alias moves meanwhile.
    """
    cache = cache if cache is not None else PackageCache()
    hit = cache.get(found.key)
    if hit is not None:
        return hit
    with cache.staging() as stage:
        out = stage / "package.mport"
        registry.download_package(found, stage, out, allow_code=allow_code)
        return cache.add(found.key, found.uri, out, metadata=found.metadata(), limits=limits)


def _download_directory(
    fs: Any, obj: storage.RemoteObject, dest: Path, out: Path, limits: ArchiveLimits
) -> None:
    """A remote package directory: its manifest, then each file it lists, as one archive.

    Files the manifest does not list are not fetched (a local directory would report them).
    """
    base = obj.path.rstrip("/")
    dest.mkdir()
    with storage.translated(obj.uri, "reading"), fs.open(f"{base}/{MANIFEST_NAME}", "rb") as fh:
        data = fh.read(limits.max_manifest_bytes + 1)
    limits.check_manifest_size(f"{obj.uri}/{MANIFEST_NAME}", len(data))
    manifest = parse(data, f"{obj.uri}/{MANIFEST_NAME}")
    (dest / MANIFEST_NAME).write_bytes(data)
    budget = limits.max_expanded_bytes
    for rel in sorted(manifest.files):  # validated relative paths: nothing escapes dest
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        uri = f"{obj.uri.rstrip('/')}/{rel}"
        with target.open("wb") as fh:
            budget -= storage.download(
                fs, f"{base}/{rel}", fh, uri=uri, size=None, limits=_left(limits, budget)
            )
    write_archive(dest, manifest, out)


def _left(limits: ArchiveLimits, budget: int) -> ArchiveLimits:
    """``limits`` with only ``budget`` bytes of expansion left."""
    if budget <= 0:
        raise PackageError("the package directory is larger than max_expanded_mb allows")
    return dataclasses.replace(limits, max_expanded_mb=budget / (1 << 20))


def load(
    ref: str | os.PathLike[str],
    *,
    allow_code: bool = False,
    threads: int | None = None,
    expected_digest: str | None = None,
    limits: ArchiveLimits = DEFAULT_LIMITS,
    storage_options: Mapping[str, Any] | None = None,
    trust: TrustPolicy | None = None,
    doing: str = "load",
    source: str | None = None,
) -> Package:
    """Load a package from a path, a storage, MLflow or OCI URI, verifying every file first.

    Args:
        ref: a package path or URI (see :func:`locate`).
        allow_code: allow a package that runs code it carries.
        threads: ONNX Runtime's intra-op threads (default: its own choice).
        expected_digest: refuse any package whose digest is not this one.
        limits: the most reading the package may cost.
        storage_options: options of the storage backend (see :func:`locate`).
        trust: the signature policy; default ``$MODELPORT_TRUST`` / ``$MODELPORT_TRUSTED_KEYS``
            (:meth:`TrustPolicy.from_env`). Under ``require`` an unsigned package, or one whose
            signature does not verify against a trusted key, is refused.
        doing: what the refusal says is refused (``refusing to <doing>: …``).
        source: the reference to record in :attr:`Package.provenance` (default ``ref``).

    Raises:
        TrustRefused: the policy refuses the package (exit 4).
    """
    path = locate(ref, storage_options=storage_options, allow_code=allow_code, limits=limits)
    policy = trust if trust is not None else TrustPolicy.from_env(os.environ)
    verified = enforce(path, policy, doing=doing)
    package = load_path(
        path,
        allow_code=allow_code,
        threads=threads,
        expected_digest=expected_digest,
        limits=limits,
    )
    package.provenance = provenance(
        path, source=source or os.fspath(ref), verified=verified, limits=limits
    )
    return package


def provenance(
    path: Path,
    *,
    source: str | None = None,
    verified: SignatureInfo | None = None,
    limits: ArchiveLimits = DEFAULT_LIMITS,
) -> Provenance:
    """Where the local package ``path`` came from and who signed it.

    A package in the cache says which OCI digest (and source) it was fetched by; a signature
    it carries gives the signer's fingerprint, marked verified when ``verified`` (what
    :func:`~modelport.model_format.signing.enforce` returned) says so.
    """
    entry = PackageCache().entry_for(path)
    metadata = entry.metadata if entry is not None else {}
    fingerprint = None
    if verified is not None:
        fingerprint = verified.fingerprint
    else:
        bundle = read_signature(path, limits=limits)
        if bundle is not None:
            try:
                fingerprint = describe(bundle).fingerprint
            except (SignatureError, MissingDependencyError):
                fingerprint = None  # unreadable here: verify --key says why
    return Provenance(
        source=source or (entry.source if entry is not None else str(path)),
        oci_digest=metadata.get("oci_digest"),
        signature_fingerprint=fingerprint,
        signature_verified=verified is not None,
    )


def verify(
    ref: str | os.PathLike[str],
    *,
    expected_digest: str | None = None,
    limits: ArchiveLimits = DEFAULT_LIMITS,
    storage_options: Mapping[str, Any] | None = None,
) -> VerifyReport:
    """Check every file of a package (a path or any URI) against its manifest.

    The arguments are :func:`~modelport.model_format.package.verify`'s, and
    ``storage_options`` for a storage URI (see :func:`locate`).
    """
    path = locate(ref, storage_options=storage_options, limits=limits)
    return verify_path(path, expected_digest=expected_digest, limits=limits)
