"""Signing packages with OpenSSF Model Signing, and the trust policy that checks them.

A signature is an OpenSSF Model Signing bundle (a sigstore bundle over an in-toto statement that
lists every file's digest), made by the ``model-signing`` library. It covers ``modelport.json``
and every file of the package, and records ``model.sig`` as an ignored path, so the reference
``model_signing verify key DIR --signature DIR/model.sig`` accepts a package modelport signed, and
modelport accepts one signed by ``model_signing sign``.

Where it lives: in a package directory as ``DIR/model.sig`` (a sibling ``DIR.sig`` is found
too); in an archive as the member ``model.sig`` after the files (see
:mod:`~modelport.model_format.archive`). The manifest never lists it, so signing does not change
the package digest.

Trust is a set of PEM files (or directories of them), each an EC public key or a CA certificate.
The policy (:class:`TrustPolicy`, from ``MODELPORT_TRUST`` and ``MODELPORT_TRUSTED_KEYS``) says
what :func:`enforce` does with a package that is unsigned or does not verify: nothing (``off``),
log a warning (``warn``) or refuse it (``require``).

``model_signing`` and ``cryptography`` are imported inside the functions that need them: the
``signing`` extra is optional, and importing modelport stays fast.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import json
import logging
import os
import re
import shutil
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any, Literal, cast, get_args

from modelport.errors import (
    MissingDependencyError,
    PackageError,
    SignatureError,
    TrustRefused,
    UsageError,
)
from modelport.model_format.archive import (
    MAX_SIGNATURE_BYTES,
    carries_signature,
    directory_problems,
    read_signature_file,
    read_signature_member,
    write_archive,
)
from modelport.model_format.limits import DEFAULT_LIMITS, ArchiveLimits, human_bytes
from modelport.model_format.manifest import MANIFEST_NAME, SIGNATURE_NAME, Manifest
from modelport.model_format.package import (
    check_package_path,
    extract_verified,
    local_path,
    open_package,
    read_manifest,
)
from modelport.model_format.paths import make_temp_dir

if TYPE_CHECKING:
    from cryptography import x509
    from cryptography.hazmat.primitives.asymmetric import ec

#: The environment variable of the policy's mode: ``off``, ``warn`` or ``require``.
TRUST_ENV = "MODELPORT_TRUST"
#: The environment variable of the trusted keys: PEM files or directories, ``os.pathsep``-separated.
KEYS_ENV = "MODELPORT_TRUSTED_KEYS"
TrustMode = Literal["off", "warn", "require"]
TRUST_MODES: tuple[TrustMode, ...] = get_args(TrustMode)
SignatureKind = Literal["key", "certificate", "sigstore"]
#: Beside a package directory ``DIR``, its signature may be ``DIR.sig``.
SIBLING_SUFFIX = ".sig"
#: The curves OpenSSF Model Signing signs with (what sigstore's specifications name).
EC_CURVES = ("secp256r1", "secp384r1", "secp521r1")
_BUNDLE_MEDIA_TYPE_PREFIX = "application/vnd.dev.sigstore.bundle"
_HINT_PATTERN = re.compile(r"^[0-9a-f]{64}\Z")
_PEM_BLOCK = re.compile(rb"-----BEGIN ([A-Z0-9 ]+)-----\r?\n.*?-----END \1-----", re.DOTALL)
_EXTRA = "signing"
_SIGN_HINT = "sign it with: modelport sign PACKAGE --key KEY.pem"

logger = logging.getLogger("modelport.trust")


@dataclass(frozen=True)
class SignatureInfo:
    """What a signature says of who signed a package, and whether that was checked.

    Attributes:
        kind: ``key`` (an EC key), ``certificate`` (a key with an X.509 certificate chain) or
            ``sigstore`` (keyless: a Fulcio certificate and a Rekor entry).
        fingerprint: ``sha256:<hex>``: for a key, the bundle's key hint (the sha256 of the
            public key's PEM SubjectPublicKeyInfo, as ``model_signing`` computes it); for a
            certificate, the sha256 of the signing (leaf) certificate. None for a key bundle of
            the older format, which names no key.
        subject: the signing certificate's subject (or, keyless, the identity it names).
        issuer: the signing certificate's issuer.
        verified: True when the signature was checked against a trusted key or certificate.
        trusted_by: the trusted PEM file that vouched for it, when verified and known.
        source: where the signature was read (a file, or ``ARCHIVE:model.sig``), when known.
    """

    kind: SignatureKind
    fingerprint: str | None
    subject: str | None = None
    issuer: str | None = None
    verified: bool = False
    trusted_by: str | None = None
    source: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """The signature's facts as JSON values (what ``inspect --json`` shows)."""
        return {
            "kind": self.kind,
            "fingerprint": self.fingerprint,
            "subject": self.subject,
            "issuer": self.issuer,
            "verified": self.verified,
            "trusted_by": self.trusted_by,
            "source": self.source,
        }


# --- the library, imported when needed -------------------------------------------------------


def _require_library(doing: str) -> None:
    """Fail with the extra to install when ``model_signing`` (or what it needs) is missing."""
    try:
        import model_signing  # noqa: F401
        import OpenSSL  # noqa: F401  # model_signing imports it for certificates, undeclared
    except ImportError as exc:
        module = "pyopenssl" if exc.name == "OpenSSL" else "model-signing"
        raise MissingDependencyError(doing, _EXTRA, module) from None


def _cryptography(doing: str) -> None:
    try:
        import cryptography  # noqa: F401
    except ImportError:
        raise MissingDependencyError(doing, _EXTRA, "cryptography") from None


# --- reading a signature ---------------------------------------------------------------------


def sibling_signature(directory: Path) -> Path:
    """``DIR.sig``, where a signature of the package directory ``DIR`` may lie beside it."""
    resolved = directory.resolve()
    return resolved.with_name(resolved.name + SIBLING_SUFFIX)


def _locate_signature(
    path: Path, signature: str | os.PathLike[str] | None, limits: ArchiveLimits
) -> tuple[bytes, str] | None:
    """The bundle's bytes and where they were read, or None when the package is unsigned."""
    if signature is not None:
        explicit = Path(signature)
        data = read_signature_file(explicit)
        if data is None:
            raise SignatureError(f"{explicit}: no such signature file")
        return data, str(explicit)
    check_package_path(path)
    if not path.is_dir():
        member = read_signature_member(path, limits)
        return None if member is None else (member, f"{path}:{SIGNATURE_NAME}")
    candidates = [sibling_signature(path)]
    if carries_signature(read_manifest(path, limits)):
        candidates.insert(0, path / SIGNATURE_NAME)
    for candidate in candidates:
        data = read_signature_file(candidate)
        if data is not None:
            return data, str(candidate)
    return None


def read_signature(
    path: str | os.PathLike[str],
    *,
    signature: str | os.PathLike[str] | None = None,
    limits: ArchiveLimits = DEFAULT_LIMITS,
) -> bytes | None:
    """The signature bundle of a package, as bytes, or None when it is not signed.

    Looked for in this order: ``signature`` when given; for a directory ``DIR``,
    ``DIR/model.sig`` then ``DIR.sig``; for an archive, its ``model.sig`` member.
    Nothing is verified here.

    Raises:
        SignatureError: ``signature`` was given and there is no such file.
        PackageError: the package cannot be read, or the signature is a link, not a regular
            file, or over 1 MiB.
    """
    found = _locate_signature(local_path(path), signature, limits)
    return None if found is None else found[0]


def _bundle(data: bytes) -> dict[str, Any]:
    """The bundle as JSON, checked to be a sigstore bundle (nothing about it verified)."""
    try:
        bundle = json.loads(data)
    except (UnicodeDecodeError, ValueError) as exc:
        raise SignatureError(f"the signature is not a sigstore bundle: not JSON ({exc})") from None
    if not isinstance(bundle, dict):
        raise SignatureError("the signature is not a sigstore bundle: not a JSON object")
    media_type = bundle.get("mediaType")
    if not isinstance(media_type, str) or not media_type.startswith(_BUNDLE_MEDIA_TYPE_PREFIX):
        raise SignatureError(
            f"the signature is not a sigstore bundle (mediaType {media_type!r}, expected "
            f"{_BUNDLE_MEDIA_TYPE_PREFIX}.…)"
        )
    material = bundle.get("verificationMaterial")
    if not isinstance(material, dict):
        raise SignatureError("the signature's bundle has no verificationMaterial")
    return bundle


def _leaf_der(material: Mapping[str, Any]) -> bytes | None:
    """The DER bytes of the bundle's signing certificate, if it has one."""
    chain = material.get("x509CertificateChain")
    if isinstance(chain, dict):
        certificates = chain.get("certificates")
        raw = certificates[0] if isinstance(certificates, list) and certificates else None
    else:
        raw = material.get("certificate")
    text = raw.get("rawBytes") if isinstance(raw, dict) else None
    if not isinstance(text, str):
        return None
    try:
        return base64.b64decode(text, validate=True)
    except binascii.Error:
        raise SignatureError("the signature's certificate is not valid base64") from None


def describe(bundle: bytes, *, source: str | None = None) -> SignatureInfo:
    """Say who signed, from a bundle's bytes, without verifying anything.

    Args:
        bundle: the signature (sigstore bundle JSON).
        source: where it was read, kept in the result.

    Raises:
        SignatureError: it is not a sigstore bundle, or its certificate cannot be read.
        MissingDependencyError: it holds a certificate and ``cryptography`` is not installed.
    """
    material = _bundle(bundle)["verificationMaterial"]
    tlog = material.get("tlogEntries")
    keyless = "certificate" in material or (isinstance(tlog, list) and bool(tlog))
    if not keyless and isinstance(material.get("publicKey"), dict):
        hint = material["publicKey"].get("hint")
        fingerprint = (
            f"sha256:{hint}" if isinstance(hint, str) and _HINT_PATTERN.match(hint) else None
        )
        return SignatureInfo("key", fingerprint, source=source)
    der = _leaf_der(material)
    if der is None:
        raise SignatureError("the signature's bundle names neither a public key nor a certificate")
    _cryptography("reading a signature's certificate")
    from cryptography import x509

    try:
        leaf = x509.load_der_x509_certificate(der)
    except ValueError as exc:
        raise SignatureError(f"the signature's certificate cannot be read ({exc})") from None
    kind: SignatureKind = "sigstore" if keyless else "certificate"
    return SignatureInfo(
        kind,
        "sha256:" + hashlib.sha256(der).hexdigest(),
        subject=_subject(leaf),
        issuer=leaf.issuer.rfc4514_string() or None,
        source=source,
    )


def _subject(certificate: x509.Certificate) -> str | None:
    """The certificate's subject; for a keyless (Fulcio) one, the identity its SAN names."""
    from cryptography import x509

    subject = certificate.subject.rfc4514_string()
    if subject:
        return subject
    try:
        names = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except (x509.ExtensionNotFound, ValueError):  # none, or one that cannot be read
        return None
    identities = [
        *names.get_values_for_type(x509.RFC822Name),
        *names.get_values_for_type(x509.UniformResourceIdentifier),
    ]
    return ", ".join(identities) or None


# --- keys and certificates -------------------------------------------------------------------


def _ec_only(what: str, key: object) -> ec.EllipticCurvePublicKey:
    """``key`` as an EC public key on a curve OpenSSF Model Signing takes, or a clear error."""
    from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa

    public = key.public_key() if isinstance(key, ec.EllipticCurvePrivateKey) else key
    if not isinstance(public, ec.EllipticCurvePublicKey):
        kinds = {
            "RSA": (rsa.RSAPrivateKey, rsa.RSAPublicKey),
            "DSA": (dsa.DSAPrivateKey, dsa.DSAPublicKey),
            "Ed25519": (ed25519.Ed25519PrivateKey, ed25519.Ed25519PublicKey),
            "Ed448": (ed448.Ed448PrivateKey, ed448.Ed448PublicKey),
        }
        kind = next((k for k, types in kinds.items() if isinstance(public, types)), "unsupported")
        article = "an" if kind[0] in "AEIOUR" else "a"
        raise UsageError(
            f"{what} is {article} {kind} key; OpenSSF Model Signing takes EC keys only "
            "(P-256, P-384 or P-521)",
            hint="make one with: openssl ecparam -name prime256v1 -genkey -noout | "
            "openssl pkcs8 -topk8 -nocrypt -out key.pem",
        )
    if public.curve.name not in EC_CURVES:
        raise UsageError(
            f"{what} is an EC key on {public.curve.name}; OpenSSF Model Signing takes P-256, "
            "P-384 or P-521 only"
        )
    return public


def key_fingerprint(key: ec.EllipticCurvePublicKey) -> str:
    """``sha256:<hex>`` of the key's PEM SubjectPublicKeyInfo: the hint a bundle carries."""
    from cryptography.hazmat.primitives import serialization

    pem = key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return "sha256:" + hashlib.sha256(pem).hexdigest()


def _read_pem(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise UsageError(f"{what} {path}: no such file") from None
    except IsADirectoryError:
        raise UsageError(f"{what} {path} is a directory, not a PEM file") from None
    except OSError as exc:
        raise UsageError(f"{what} {path}: cannot read it ({exc.strerror})") from None


def _private_key(path: Path, password: str | bytes | None) -> Any:
    """Load the signing key, with a clear error for every way it can be wrong."""
    from cryptography.hazmat.primitives import serialization

    data = _read_pem(path, "signing key")
    secret = password.encode() if isinstance(password, str) else password
    try:
        key = serialization.load_pem_private_key(data, secret)
    except TypeError as exc:  # cryptography says which of the two it is
        if secret is None:
            raise UsageError(
                f"signing key {path} is encrypted", hint="give its password (--password-env VAR)"
            ) from None
        raise UsageError(f"signing key {path} is not encrypted; give no password") from exc
    except ValueError as exc:
        if secret is not None and b"ENCRYPTED" in data:
            raise UsageError(f"signing key {path}: wrong password") from None
        raise UsageError(
            f"signing key {path} is not a PEM private key ({exc})",
            hint="give the private key (the public one is for verifying)",
        ) from None
    except Exception as exc:  # an unsupported algorithm, a damaged key
        raise UsageError(f"signing key {path} cannot be loaded ({exc})") from None
    _ec_only(f"signing key {path}", key)
    return key


@dataclass(frozen=True)
class TrustedKey:
    """A trusted EC public key: its PEM block and the file it came from."""

    pem: bytes
    source: Path


@dataclass(frozen=True)
class TrustStore:
    """Trusted EC public keys by fingerprint, and trusted CA certificates."""

    keys: Mapping[str, TrustedKey] = field(default_factory=dict)
    certificates: tuple[tuple[bytes, Path, Any], ...] = ()  # (PEM, file, x509.Certificate)
    files: tuple[Path, ...] = ()

    def describe(self) -> str:
        """What is trusted, for a message: how many keys and certificates, from where."""
        where = ", ".join(str(f) for f in self.files[:3])
        if len(self.files) > 3:
            where += f" and {len(self.files) - 3} more"
        return f"{len(self.keys)} key(s) and {len(self.certificates)} certificate(s) in {where}"


def trusted_key_files(paths: Sequence[str | os.PathLike[str]]) -> list[Path]:
    """The PEM files that ``paths`` name: each file itself, each directory's files (sorted).

    In a directory, every regular file whose name does not start with ``.`` counts.

    Raises:
        UsageError: a path does not exist, or a directory holds no file.
    """
    files: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            inside = sorted(p for p in path.iterdir() if p.is_file() and not p.name.startswith("."))
            if not inside:
                raise UsageError(f"trusted keys: directory {path} holds no PEM file")
            files.extend(inside)
        elif path.is_file():
            files.append(path)
        else:
            raise UsageError(f"trusted key {path}: no such file or directory")
    return files


def load_trust(paths: Sequence[str | os.PathLike[str]]) -> TrustStore:
    """Read the trusted keys and certificates that ``paths`` name (see :func:`trusted_key_files`).

    Raises:
        UsageError: a path is missing, a file holds no PEM block, a private key, a key that is
            not EC, or a block that cannot be read.
    """
    _cryptography("verifying signatures")
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    keys: dict[str, TrustedKey] = {}
    certificates: list[tuple[bytes, Path, Any]] = []
    files = trusted_key_files(paths)
    for path in files:
        blocks = list(_PEM_BLOCK.finditer(_read_pem(path, "trusted key")))
        if not blocks:
            raise UsageError(
                f"trusted key {path} holds no PEM block",
                hint="give EC public keys (BEGIN PUBLIC KEY) or CA certificates "
                "(BEGIN CERTIFICATE)",
            )
        for block in blocks:
            label, pem = block.group(1).decode(), block.group(0) + b"\n"
            try:
                if label == "PUBLIC KEY":
                    key = _ec_only(f"trusted key {path}", serialization.load_pem_public_key(pem))
                    keys.setdefault(key_fingerprint(key), TrustedKey(pem, path))
                elif label == "CERTIFICATE":
                    certificates.append((pem, path, x509.load_pem_x509_certificate(pem)))
                elif "PRIVATE KEY" in label:
                    raise UsageError(
                        f"trusted key {path} holds a private key; trust its public key instead",
                        hint="openssl ec -in KEY.pem -pubout -out KEY.pub",
                    )
                else:
                    raise UsageError(
                        f"trusted key {path}: a {label} block is neither a public key nor a "
                        "certificate"
                    )
            except ValueError as exc:
                raise UsageError(f"trusted key {path}: cannot read its {label} ({exc})") from None
    return TrustStore(keys, tuple(certificates), tuple(files))


# --- signing ---------------------------------------------------------------------------------


def _hashing_config() -> Any:
    """Every file but ``model.sig`` (and, as the CLI does, git's files: .git, .gitignore …)."""
    from model_signing import hashing

    return hashing.Config().set_ignored_paths(paths=[SIGNATURE_NAME])  # type: ignore[no-untyped-call]


@contextlib.contextmanager
def _private_dir(prefix: str) -> Iterator[Path]:
    path = make_temp_dir(prefix)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def _write_atomically(out: Path, data: bytes) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.chmod(tmp, 0o644)
        os.replace(tmp, out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def sign(
    path: str | os.PathLike[str],
    *,
    key: str | os.PathLike[str],
    certificate: str | os.PathLike[str] | None = None,
    chain: Sequence[str | os.PathLike[str]] = (),
    password: str | bytes | None = None,
    out: str | os.PathLike[str] | None = None,
) -> SignatureInfo:
    """Sign a package with OpenSSF Model Signing: ``modelport.json`` and every file.

    The package is verified first: a damaged one is not signed. A directory gets
    ``DIR/model.sig``; an archive is signed over its verified extraction and rewritten, in
    place and atomically, with the signature as its ``model.sig`` member (its package digest
    does not change). A signature already there is replaced.

    Args:
        path: the package directory or ``.mport`` archive.
        key: the EC private key (PEM; P-256, P-384 or P-521).
        certificate: the key's X.509 certificate (PEM), to sign with a certificate chain.
        chain: the certificates above ``certificate``, up to its root (PEM files).
        password: ``key``'s password, if it is encrypted.
        out: write the signature here instead of into the package.

    Returns:
        What the new signature says (not verified: nothing is trusted here).

    Raises:
        UsageError: a key or certificate is missing, unreadable, not EC, encrypted without a
            password (or with the wrong one), or the certificate is not the key's.
        PackageError: the package is damaged, or lists a file named ``model.sig`` (then give
            ``out``).
        MissingDependencyError: the ``signing`` extra is not installed.
    """
    p = local_path(path)
    _require_library("signing packages")
    from model_signing import signing as oms

    key_path = Path(key)
    private_key = _private_key(key_path, password)
    config = oms.Config()  # type: ignore[no-untyped-call]
    if certificate is None:
        if chain:
            raise UsageError("a certificate chain goes with a certificate (--certificate)")
        # The library hands the password to cryptography, which takes bytes (its str
        # annotation is wrong: a str fails there).
        secret = password.encode() if isinstance(password, str) else password
        config.use_elliptic_key_signer(private_key=key_path, password=cast("str | None", secret))
    else:
        if password is not None:
            # The library's certificate signer loads the key without a password.
            raise UsageError(
                "signing with a certificate takes an unencrypted key (model-signing cannot "
                "decrypt one there)",
                hint="decrypt a copy: openssl pkcs8 -in KEY.pem -out PLAIN.pem",
            )
        _check_certificate(Path(certificate), private_key, [Path(c) for c in chain])
        config.use_certificate_signer(
            private_key=key_path,
            signing_certificate=Path(certificate),
            certificate_chain=[Path(c) for c in chain],
        )
    config.set_hashing_config(_hashing_config())
    target = None if out is None else Path(out)
    check_package_path(p)
    if p.is_dir():
        with open_package(p) as opened:  # verified: a damaged package is not signed
            _check_can_carry(p, opened.manifest, target)
        bundle = _sign_directory(config, p)
        where = p / SIGNATURE_NAME if target is None else target
        _write_atomically(where, bundle)
        return describe(bundle, source=str(where))
    with _private_dir("modelport-sign-") as work:
        # Named as the archive is: the bundle records the model directory's name.
        root = work / _stem(p)
        root.mkdir()
        with open_package(p, extract_into=root) as opened:
            _check_can_carry(p, opened.manifest, target)
        (root / SIGNATURE_NAME).unlink(missing_ok=True)  # the signature it had, if any
        bundle = _sign_directory(config, root)
        if target is not None:
            _write_atomically(target, bundle)
            return describe(bundle, source=str(target))
        (root / SIGNATURE_NAME).write_bytes(bundle)
        write_archive(root, opened.manifest, p)  # atomic: a temporary file, then replace
    return describe(bundle, source=f"{p}:{SIGNATURE_NAME}")


def _stem(archive: Path) -> str:
    return archive.name.removesuffix(".mport") or "package"


def _check_can_carry(path: Path, manifest: Manifest, target: Path | None) -> None:
    if target is None and not carries_signature(manifest):
        raise PackageError(
            f"{path} lists a file named {SIGNATURE_NAME} of its own, so it cannot carry a "
            "signature",
            hint="write the signature beside it (--signature FILE)",
        )


def _sign_directory(config: Any, root: Path) -> bytes:
    """Sign ``root`` with ``config``; return the bundle (written outside ``root`` first)."""
    with _private_dir("modelport-sign-") as scratch:
        sig = scratch / "bundle.sig"
        try:
            config.sign(root, sig)
        except ValueError as exc:
            raise PackageError(f"{root}: cannot be signed ({exc})") from None
        data = sig.read_bytes()
    if len(data) > MAX_SIGNATURE_BYTES:  # a few KiB, unless a chain is absurd
        raise UsageError(
            f"the signature would be {human_bytes(len(data))}, over the "
            f"{human_bytes(MAX_SIGNATURE_BYTES)} a package carries"
        )
    return data


def _check_certificate(certificate: Path, private_key: Any, chain: Sequence[Path]) -> None:
    from cryptography import x509

    pem = _read_pem(certificate, "certificate")
    try:
        cert = x509.load_pem_x509_certificate(pem)
    except ValueError as exc:
        raise UsageError(f"certificate {certificate} cannot be read ({exc})") from None
    if cert.public_key() != private_key.public_key():
        raise UsageError(f"certificate {certificate} is not the signing key's certificate")
    for item in chain:
        try:
            if not x509.load_pem_x509_certificates(_read_pem(item, "chain certificate")):
                raise ValueError("no certificate in it")
        except ValueError as exc:
            raise UsageError(f"chain certificate {item} cannot be read ({exc})") from None


# --- verifying -------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Statement:
    """The parts of a bundle's in-toto statement that checking needs (not yet authenticated)."""

    serialization: Mapping[str, Any]
    resources: Mapping[str, str]  # name -> digest hex

    @property
    def sha256_files(self) -> bool:
        """True when the resources are whole files' sha256 digests, as the manifest's are."""
        return (
            self.serialization.get("method") == "files"
            and self.serialization.get("hash_type") == "sha256"
        )

    def covers(self, rel: str) -> bool:
        """Whether the file ``rel`` is a resource (whole, or in shards ``rel:start:end``)."""
        return rel in self.resources or any(
            name.rsplit(":", 2)[0] == rel for name in self.resources if ":" in name
        )


def _statement(bundle: Mapping[str, Any]) -> _Statement:
    try:
        envelope = bundle["dsseEnvelope"]
        payload = json.loads(base64.b64decode(envelope["payload"], validate=True))
        predicate = payload["predicate"]
        serialization = predicate["serialization"]
        if not isinstance(serialization, dict) or not isinstance(
            serialization.get("ignore_paths", []), list
        ):
            raise TypeError("serialization")
        # Named as the library names them (a path, normalised), the last of a name winning.
        resources = {
            str(PurePosixPath(r["name"])): str(r["digest"]) for r in predicate["resources"]
        }
    except (KeyError, TypeError, ValueError, binascii.Error) as exc:
        raise SignatureError(
            f"the signature's bundle holds no OpenSSF Model Signing statement ({exc!r})"
        ) from None
    return _Statement(serialization, resources)


def _verifier_hashing(statement: _Statement) -> Any:
    """The hashing the signer used, from its statement, with ``model.sig`` always ignored."""
    from model_signing import hashing

    args = statement.serialization
    config = hashing.Config()  # type: ignore[no-untyped-call]
    try:
        if args.get("method") == "shards":
            config.use_shard_serialization(
                hashing_algorithm=args["hash_type"], shard_size=int(args["shard_size"])
            )
        else:
            config.use_file_serialization(hashing_algorithm=args["hash_type"])
    except (KeyError, TypeError, ValueError, ImportError) as exc:
        raise SignatureError(
            f"the signature's hashing is not one modelport reads ({exc!r})"
        ) from None
    ignored = [str(p) for p in args.get("ignore_paths", [])]
    return config.set_ignored_paths(paths=[*ignored, SIGNATURE_NAME])


def _differences(root: Path, statement: _Statement, mismatch: str) -> str:
    """Which files differ from what was signed, as a sentence (hashes the package again).

    ``mismatch`` is the library's own message, said instead if hashing fails this time.
    """
    try:
        actual_manifest = _verifier_hashing(statement).hash(root)
    except (OSError, ValueError):  # the package changed meanwhile
        return mismatch
    actual = {rd.identifier: rd.digest.digest_hex for rd in actual_manifest.resource_descriptors()}
    signed = statement.resources
    shards = statement.serialization.get("method") == "shards"

    def file_of(name: str) -> str:
        return name.rsplit(":", 2)[0] if shards else name

    altered = sorted({file_of(n) for n in set(actual) & set(signed) if actual[n] != signed[n]})
    extra = sorted({file_of(n) for n in set(actual) - set(signed)})
    missing = sorted({file_of(n) for n in set(signed) - set(actual)})
    parts = [
        *(f"{rel} (altered)" for rel in altered),
        *(f"{rel} (not signed)" for rel in extra),
        *(f"{rel} (missing)" for rel in missing),
    ]
    listed = ", ".join(parts[:8]) + (f" and {len(parts) - 8} more" if len(parts) > 8 else "")
    if MANIFEST_NAME in altered and len(parts) == 1:
        return (
            f"the signature is over another manifest: {MANIFEST_NAME} is not the one signed "
            "(the manifest was edited after signing, or the signature is another package's)"
        )
    if MANIFEST_NAME in altered or MANIFEST_NAME in missing:
        return f"the signature is over another package: {listed} differ from what it signed"
    return f"files changed after signing: {listed}"


def _trusted_by(trust: TrustStore, material: Mapping[str, Any]) -> str | None:
    """The trusted file whose certificate issued the top of the bundle's chain, if one did."""
    from cryptography import x509

    chain = material.get("x509CertificateChain", {}).get("certificates", [])
    try:
        top = x509.load_der_x509_certificate(base64.b64decode(chain[-1]["rawBytes"]))
    except (LookupError, TypeError, ValueError):
        return None
    for _pem, source, cert in trust.certificates:
        if cert.subject == top.issuer or cert == top:
            return str(source)
    return None


def _check_with_library(
    root: Path, bundle: bytes, info: SignatureInfo, trust: TrustStore, statement: _Statement
) -> str | None:
    """Verify the bundle over ``root`` with model_signing; return the trusted file that vouched.

    Raises:
        SignatureError: not by a trusted key or certificate, or files differ from what was signed.
    """
    from model_signing import verifying

    with _private_dir("modelport-verify-") as work:
        sig = work / "bundle.sig"
        sig.write_bytes(bundle)
        if info.kind == "certificate":
            if not trust.certificates:
                raise SignatureError(
                    f"signed with certificate {info.subject or info.fingerprint}, and no CA "
                    f"certificate is trusted ({trust.describe()})",
                    hint=f"trust the CA that issued it (its PEM certificate in {KEYS_ENV}, "
                    "--trusted-key or --key)",
                )
            # Never an empty chain: the library would trust the system's CAs instead.
            anchors = work / "trusted.pem"
            anchors.write_bytes(b"".join(pem for pem, _source, _cert in trust.certificates))
            config = verifying.Config().use_certificate_verifier(certificate_chain=[anchors])  # type: ignore[no-untyped-call]
            _run_verifier(config, root, sig, info, trust, statement)
            return _trusted_by(trust, json.loads(bundle)["verificationMaterial"])
        if info.fingerprint is not None:
            if info.fingerprint not in trust.keys:
                raise SignatureError(
                    f"signed by key {info.fingerprint}, which is not trusted ({trust.describe()})",
                    hint=f"trust the signer's public key ({KEYS_ENV}, --trusted-key or --key)",
                )
            candidates = [trust.keys[info.fingerprint]]
        else:  # an older bundle names no key: each trusted key is tried
            candidates = list(trust.keys.values())
            if not candidates:
                raise SignatureError(f"signed by a key, and no key is trusted ({trust.describe()})")
        last: SignatureError | None = None
        for candidate in candidates:
            key_file = work / "key.pub"
            key_file.write_bytes(candidate.pem)
            config = verifying.Config().use_elliptic_key_verifier(public_key=key_file)  # type: ignore[no-untyped-call]
            try:
                _run_verifier(config, root, sig, info, trust, statement)
            except _WrongKey as exc:
                last = SignatureError(f"no trusted key verifies the signature ({exc})")
                continue
            return str(candidate.source)
        assert last is not None  # candidates is not empty
        raise last


class _WrongKey(SignatureError):
    """The key tried is not the one that signed."""


def _run_verifier(
    config: Any,
    root: Path,
    sig: Path,
    info: SignatureInfo,
    trust: TrustStore,
    statement: _Statement,
) -> None:
    """Run a configured model_signing verifier; its failures become :class:`SignatureError`."""
    from cryptography import exceptions as crypto_exceptions
    from OpenSSL import crypto

    config.set_hashing_config(_verifier_hashing(statement))
    try:
        config.verify(root, sig)
    except crypto_exceptions.InvalidSignature:
        raise _WrongKey(
            f"the signature does not verify with the trusted key {info.fingerprint}: the bundle "
            "was altered after signing, or another key made it"
        ) from None
    except crypto.X509StoreContextError as exc:
        raise SignatureError(
            f"certificate {info.subject or info.fingerprint} does not chain to a trusted "
            f"certificate ({exc}; {trust.describe()})"
        ) from None
    except ValueError as exc:
        text = str(exc)
        if text.startswith("Signature mismatch"):
            raise SignatureError(_differences(root, statement, text)) from None
        if text.startswith("Key mismatch"):
            raise _WrongKey(text.strip()) from None
        raise SignatureError(f"the signature does not verify: {text}") from None
    except (KeyError, TypeError, IndexError, binascii.Error) as exc:
        raise SignatureError(f"the signature's bundle is malformed ({exc!r})") from None


def verify_signature(
    path: str | os.PathLike[str],
    trusted: Sequence[str | os.PathLike[str]],
    *,
    signature: str | os.PathLike[str] | None = None,
    limits: ArchiveLimits = DEFAULT_LIMITS,
) -> SignatureInfo:
    """Check that a package is signed by a trusted key or certificate, and is what was signed.

    The bundle is verified by ``model_signing`` over the package's files (an archive's over
    its verified extraction), and must cover ``modelport.json``; the files are then checked
    against the manifest, so a package that verifies is exactly the one its signer signed.

    Args:
        path: the package directory or ``.mport`` archive.
        trusted: PEM files or directories of them: EC public keys, CA certificates.
        signature: the signature file, when it is not where :func:`read_signature` looks.
        limits: what reading an archive may cost.

    Returns:
        The signature's facts, ``verified=True``.

    Raises:
        SignatureError: unsigned; the bundle is unreadable or keyless (Sigstore, which needs
            an online trust root); signed by a key or certificate that is not trusted; files
            differ from what was signed (named); the signature is another package's.
        PackageError: the package is damaged (every file is checked against the manifest).
        UsageError: a trusted file is missing or holds something else than a public key or
            a certificate.
        MissingDependencyError: the ``signing`` extra is not installed.
    """
    p = local_path(path)
    found = _locate_signature(p, signature, limits)
    if found is None:
        if p.is_dir():
            where = f"no {SIGNATURE_NAME} in it, no {sibling_signature(p).name} beside it"
        else:
            where = f"no {SIGNATURE_NAME} member"
        raise SignatureError(f"{p} is not signed ({where})", hint=_SIGN_HINT)
    bundle, source = found
    info = describe(bundle, source=source)
    if info.kind == "sigstore":
        raise SignatureError(
            f"{p} is signed keylessly (Sigstore: {info.subject or info.fingerprint}); modelport "
            "verifies signatures made with keys and certificates, offline",
            hint="check it with `model_signing verify sigstore`, or sign with a key",
        )
    if not trusted:
        raise SignatureError(
            f"{p} is signed ({info.kind} {info.fingerprint}), and no key is trusted",
            hint=f"give the signer's public key ({KEYS_ENV}, --trusted-key or --key)",
        )
    trust = load_trust(trusted)
    statement = _statement(_bundle(bundle))
    if not statement.covers(MANIFEST_NAME):
        raise SignatureError(
            f"{p}: the signature does not cover {MANIFEST_NAME}, so it does not vouch for the "
            "package (it was made over another directory, or with the manifest ignored)"
        )
    _require_library("verifying signatures")
    with contextlib.ExitStack() as stack:
        if p.is_dir():
            root, manifest = p, None
        else:
            work = stack.enter_context(_private_dir("modelport-verify-"))
            root = work / _stem(p)
            root.mkdir()
            manifest = extract_verified(p, root, limits=limits)
        try:
            trusted_by = _check_with_library(root, bundle, info, trust, statement)
        except SignatureError as exc:
            raise SignatureError(f"{p}: {exc}", hint=exc.hint) from None
        if manifest is None:  # a directory: the files against the manifest, once more cheaply
            _check_directory(p, read_manifest(p, limits), statement)
    return SignatureInfo(
        info.kind,
        info.fingerprint,
        subject=info.subject,
        issuer=info.issuer,
        verified=True,
        trusted_by=trusted_by,
        source=source,
    )


def _check_directory(root: Path, manifest: Manifest, statement: _Statement) -> None:
    """Every file against the manifest; what the library just hashed is not hashed again.

    The library checked each signed file on disk against its signed digest, so for a whole-file
    sha256 signature those digests are the files' own.
    """
    from modelport.errors import IntegrityError

    known = dict(statement.resources) if statement.sha256_files else {}
    known.pop(MANIFEST_NAME, None)
    problems = directory_problems(root, manifest, known=known)
    if problems:
        raise IntegrityError(problems)


# --- the policy ------------------------------------------------------------------------------


@dataclass(frozen=True)
class TrustPolicy:
    """What to do with a package that is unsigned, or whose signature does not verify.

    Attributes:
        mode: ``off`` (nothing is checked), ``warn`` (log a warning and go on) or ``require``
            (refuse the package).
        keys: the trusted PEM files or directories (EC public keys, CA certificates).
    """

    mode: TrustMode = "off"
    keys: tuple[Path, ...] = ()

    def __post_init__(self) -> None:
        if self.mode not in TRUST_MODES:
            raise UsageError(f"trust mode {self.mode!r} is not one of {', '.join(TRUST_MODES)}")
        if self.mode == "require" and not self.keys:
            raise UsageError(
                f"{TRUST_ENV}=require needs trusted keys: set {KEYS_ENV} to PEM files or "
                f"directories ({os.pathsep!r}-separated), or pass --trusted-key"
            )

    @classmethod
    def from_env(
        cls,
        env: Mapping[str, str] | None = None,
        *,
        trust: str | None = None,
        trusted_keys: Sequence[str | os.PathLike[str]] = (),
    ) -> TrustPolicy:
        """The policy from ``MODELPORT_TRUST`` and ``MODELPORT_TRUSTED_KEYS``, flags first.

        Args:
            env: the environment (default ``os.environ``).
            trust: ``--trust``: overrides ``MODELPORT_TRUST``.
            trusted_keys: ``--trusted-key`` values: when any, they replace
                ``MODELPORT_TRUSTED_KEYS``.

        Raises:
            UsageError: an unknown mode; ``require`` without trusted keys; a trusted path that
                does not exist.
        """
        env = os.environ if env is None else env
        from_flag = trust is not None
        raw = trust if from_flag else env.get(TRUST_ENV, "")
        mode = (raw or "off").strip().lower()
        if mode not in TRUST_MODES:
            where = "--trust" if from_flag else TRUST_ENV
            raise UsageError(f"{where}={raw!r}: expected one of {', '.join(TRUST_MODES)}")
        if trusted_keys:
            keys, where = [Path(k) for k in trusted_keys], "--trusted-key"
        else:
            keys = [Path(k) for k in env.get(KEYS_ENV, "").split(os.pathsep) if k.strip()]
            where = KEYS_ENV
        for key in keys:
            if not key.exists():
                raise UsageError(f"{where}: {key}: no such file or directory")
        return cls(mode, tuple(keys))


def enforce(
    path: str | os.PathLike[str],
    policy: TrustPolicy,
    *,
    doing: str,
    signature: str | os.PathLike[str] | None = None,
    limits: ArchiveLimits = DEFAULT_LIMITS,
) -> SignatureInfo | None:
    """Apply the trust policy to a package before ``doing`` something with it.

    Args:
        path: the package directory or archive.
        policy: the policy.
        doing: what is about to happen, for the message (``"serve it"``).
        signature: the signature file, when it is not in or beside the package.
        limits: what reading an archive may cost.

    Returns:
        The verified signature's facts, or None: the policy is ``off`` (nothing is read), or
        ``warn`` and the package did not verify (a warning was logged on ``modelport.trust``).

    Raises:
        TrustRefused: ``require``, and the package is unsigned or does not verify
            (``refusing to <doing>: <why>``).
    """
    if policy.mode == "off":
        return None
    try:
        return verify_signature(path, policy.keys, signature=signature, limits=limits)
    except (PackageError, MissingDependencyError) as exc:
        if policy.mode == "require" and isinstance(exc, PackageError):
            raise TrustRefused(f"refusing to {doing}: {exc}", hint=exc.hint) from None
        if policy.mode == "require":
            raise
        logger.warning("%s=warn: would refuse to %s: %s", TRUST_ENV, doing, exc)
        return None
