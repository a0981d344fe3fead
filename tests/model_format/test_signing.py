"""Signing and verifying packages with OpenSSF Model Signing, and the trust policy.

Everything runs for real: the ``model_signing`` library signs and verifies, its reference CLI
(``model_signing sign|verify``) runs in subprocesses for the interop cases, and the keys and
certificates are made here with ``cryptography``.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import logging
import os
import shutil
import subprocess
import sys
import tarfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

import modelport
from modelport.errors import (
    ArchiveLimitError,
    IntegrityError,
    MissingDependencyError,
    PackageError,
    SignatureError,
    TrustRefused,
    UsageError,
)
from modelport.model_format.archive import (
    MAX_SIGNATURE_BYTES,
    archive_problems,
    extract_archive,
    read_signature_member,
    write_archive,
)
from modelport.model_format.manifest import MANIFEST_NAME, SIGNATURE_NAME, parse
from modelport.model_format.signing import (
    KEYS_ENV,
    TRUST_ENV,
    TrustPolicy,
    describe,
    enforce,
    key_fingerprint,
    read_signature,
    sign,
    trusted_key_files,
    verify_signature,
)

BIN = Path(sys.executable).parent
MODEL_SIGNING = BIN / "model_signing"
PASSWORD = "correct horse"
#: The reference CLI initialises OpenTelemetry when it is installed: keep it inert and quiet.
CLI_ENV = {
    **os.environ,
    "OTEL_SDK_DISABLED": "true",
    "OTEL_PYTHON_CONFIGURATOR": "none",
    "OTEL_PYTHON_DISTRO": "none",
    "OTEL_TRACES_EXPORTER": "none",
    "OTEL_PYTHON_DISABLED_INSTRUMENTATIONS": "*",
}


# --- keys, certificates, packages ------------------------------------------------------------


@dataclass(frozen=True)
class Keys:
    """PEM files made for this module (``*.pem`` private, ``*.pub`` public)."""

    root: Path

    def __getattr__(self, name: str) -> Path:
        return self.root / name.replace("_", ".")


def _private_pem(key: object, password: bytes | None = None) -> bytes:
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(password)
        if password
        else serialization.NoEncryption()
    )
    return key.private_bytes(  # type: ignore[attr-defined, no-any-return]
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
    )


def _public_pem(key: object) -> bytes:
    return key.public_key().public_bytes(  # type: ignore[attr-defined, no-any-return]
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _certificate(
    subject: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: tuple[str, ec.EllipticCurvePrivateKey] | None = None,
    *,
    ca: bool,
    since: dt.timedelta,
) -> x509.Certificate:
    now = dt.datetime.now(dt.timezone.utc)
    issuer_name, issuer_key = issuer if issuer else (subject, key)
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
        .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer_name)]))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - since)
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=not ca,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=ca,
                crl_sign=ca,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
    )
    return builder.sign(issuer_key, hashes.SHA256())


def _cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Keys:
    """EC P-256 and P-384 keys, an encrypted key, an RSA key, a CA with a leaf, another CA."""
    root = tmp_path_factory.mktemp("keys")
    made = {
        "p256": ec.generate_private_key(ec.SECP256R1()),
        "p384": ec.generate_private_key(ec.SECP384R1()),
        "other": ec.generate_private_key(ec.SECP256R1()),
        "enc": ec.generate_private_key(ec.SECP256R1()),
        "leaf": ec.generate_private_key(ec.SECP256R1()),
    }
    for name, key in made.items():
        (root / f"{name}.pem").write_bytes(_private_pem(key))
        (root / f"{name}.pub").write_bytes(_public_pem(key))
    (root / "enc.pem").write_bytes(_private_pem(made["enc"], PASSWORD.encode()))
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    (root / "rsa.pem").write_bytes(_private_pem(rsa_key))
    (root / "rsa.pub").write_bytes(_public_pem(rsa_key))

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = _certificate("modelport test CA", ca_key, ca=True, since=dt.timedelta(days=2))
    leaf = _certificate(
        "release signer",
        made["leaf"],
        ("modelport test CA", ca_key),
        ca=False,
        since=dt.timedelta(days=1),
    )
    stranger_key = ec.generate_private_key(ec.SECP256R1())
    stranger = _certificate("another CA", stranger_key, ca=True, since=dt.timedelta(days=2))
    (root / "ca.crt").write_bytes(_cert_pem(ca))
    (root / "leaf.crt").write_bytes(_cert_pem(leaf))
    (root / "stranger.crt").write_bytes(_cert_pem(stranger))
    trusted = root / "trusted"  # a directory of trusted keys, as MODELPORT_TRUSTED_KEYS takes
    trusted.mkdir()
    shutil.copy(root / "p256.pub", trusted / "00-release.pub")
    shutil.copy(root / "ca.crt", trusted / "01-ca.crt")
    return Keys(root)


@pytest.fixture(scope="module")
def packages(
    tmp_path_factory: pytest.TempPathFactory,
    onnx_graphs: dict[str, Callable[[], onnx.ModelProto]],
) -> Path:
    """Unsigned packages, never modified (tests copy them): ``tiny``, ``other``, ``tiny.mport``."""
    root = tmp_path_factory.mktemp("packages")
    example = np.array([[1.0, 2.0, 3.0]], dtype=np.float32)
    modelport.pack(onnx_graphs["tiny"](), root / "tiny", example=example).close()
    modelport.pack(onnx_graphs["tiny"](), root / "tiny.mport", example=example).close()
    modelport.pack(onnx_graphs["two_inputs"](), root / "other").close()
    return root


@pytest.fixture
def pkg(packages: Path, tmp_path: Path) -> Path:
    """A fresh copy of the tiny package directory."""
    return Path(shutil.copytree(packages / "tiny", tmp_path / "tiny"))


@pytest.fixture
def archive(packages: Path, tmp_path: Path) -> Path:
    """A fresh copy of the tiny package archive."""
    return Path(shutil.copy(packages / "tiny.mport", tmp_path / "tiny.mport"))


def _fingerprint(public_pem: Path) -> str:
    key = serialization.load_pem_public_key(public_pem.read_bytes())
    assert isinstance(key, ec.EllipticCurvePublicKey)
    return key_fingerprint(key)


def _cli(*commands: tuple[str | Path, ...]) -> list[subprocess.CompletedProcess[str]]:
    """Run ``model_signing`` once per command, all at once (each start takes a second or two)."""
    started = [
        (
            command,
            subprocess.Popen(
                [str(MODEL_SIGNING), *map(str, command)],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                env=CLI_ENV,
            ),
        )
        for command in commands
    ]
    done = []
    for command, process in started:
        stdout, stderr = process.communicate(timeout=120)
        done.append(subprocess.CompletedProcess(command, process.returncode, stdout, stderr))
    return done


def _rewrite_manifest(root: Path, **metadata: str) -> str:
    """Change the manifest's metadata (a consistent package, with another digest)."""
    raw = parse((root / MANIFEST_NAME).read_bytes()).to_dict()
    raw["metadata"] = {**raw["metadata"], **metadata}
    manifest = parse(json.dumps(raw).encode())
    (root / MANIFEST_NAME).write_bytes(manifest.to_json())
    return manifest.digest


# --- sign and verify -------------------------------------------------------------------------


def test_a_signed_directory_verifies_and_keeps_its_digest(pkg: Path, keys: Keys) -> None:
    digest = modelport.verify(pkg).manifest.digest
    signed = sign(pkg, key=keys.p256_pem)

    assert signed.kind == "key"
    assert signed.fingerprint == _fingerprint(keys.p256_pub)
    assert not signed.verified
    assert signed.source == str(pkg / SIGNATURE_NAME)
    bundle = (pkg / SIGNATURE_NAME).read_bytes()
    hint = json.loads(bundle)["verificationMaterial"]["publicKey"]["hint"]
    assert signed.fingerprint == f"sha256:{hint}"
    assert describe(bundle) == describe(read_signature(pkg) or b"")

    report = modelport.verify(pkg)
    assert report.ok
    assert report.manifest.digest == digest
    info = verify_signature(pkg, [keys.p256_pub])
    assert (info.kind, info.fingerprint, info.verified) == ("key", signed.fingerprint, True)
    assert info.trusted_by == str(keys.p256_pub)
    # A directory of trusted keys, as MODELPORT_TRUSTED_KEYS names one.
    assert verify_signature(pkg, [keys.trusted]).trusted_by == str(keys.trusted / "00-release.pub")


def test_the_signature_covers_the_manifest_and_every_file(pkg: Path, keys: Keys) -> None:
    sign(pkg, key=keys.p256_pem)
    envelope = json.loads((pkg / SIGNATURE_NAME).read_bytes())["dsseEnvelope"]
    statement = json.loads(base64.b64decode(envelope["payload"]))
    resources = {r["name"]: r["digest"] for r in statement["predicate"]["resources"]}
    manifest = parse((pkg / MANIFEST_NAME).read_bytes())
    assert resources == {
        MANIFEST_NAME: hashlib.sha256((pkg / MANIFEST_NAME).read_bytes()).hexdigest(),
        **{rel: digest.removeprefix("sha256:") for rel, digest in manifest.files.items()},
    }
    assert SIGNATURE_NAME in statement["predicate"]["serialization"]["ignore_paths"]


def test_a_signed_archive_verifies_keeps_its_digest_and_stays_reproducible(
    archive: Path, keys: Keys, tmp_path: Path, private_tempdir: Path
) -> None:
    digest = modelport.verify(archive).manifest.digest
    signed = sign(archive, key=keys.p256_pem)
    assert signed.source == f"{archive}:{SIGNATURE_NAME}"

    with tarfile.open(archive) as tar:
        assert tar.getnames()[-1] == SIGNATURE_NAME
    manifest, problems = archive_problems(archive)
    assert (manifest.digest, problems) == (digest, [])
    assert modelport.verify(archive).ok
    assert verify_signature(archive, [keys.p256_pub]).verified

    # The same package with the same signature bytes is the same archive, to the byte.
    dest = tmp_path / "extracted"
    dest.mkdir()
    extract_archive(archive, dest)
    assert (dest / SIGNATURE_NAME).read_bytes() == read_signature_member(archive)
    write_archive(dest, manifest, tmp_path / "again.mport")
    assert (tmp_path / "again.mport").read_bytes() == archive.read_bytes()
    assert list(private_tempdir.iterdir()) == []  # every temporary directory was removed


def test_re_signing_replaces_the_signature(archive: Path, pkg: Path, keys: Keys) -> None:
    for package in (pkg, archive):
        sign(package, key=keys.p256_pem)
        sign(package, key=keys.p384_pem)
        assert verify_signature(package, [keys.p384_pub]).fingerprint == _fingerprint(keys.p384_pub)
        with pytest.raises(SignatureError, match="not trusted"):
            verify_signature(package, [keys.p256_pub])
    with tarfile.open(archive) as tar:
        assert tar.getnames().count(SIGNATURE_NAME) == 1


def test_a_signature_written_elsewhere_is_found_when_named(
    archive: Path, pkg: Path, keys: Keys, tmp_path: Path
) -> None:
    before = archive.read_bytes()
    sign(archive, key=keys.p256_pem, out=tmp_path / "detached.sig")
    assert archive.read_bytes() == before  # the archive is left as it was
    with pytest.raises(SignatureError, match=r"is not signed \(no model\.sig member\)"):
        verify_signature(archive, [keys.p256_pub])
    info = verify_signature(archive, [keys.p256_pub], signature=tmp_path / "detached.sig")
    assert info.source == str(tmp_path / "detached.sig")

    sign(pkg, key=keys.p256_pem, out=tmp_path / "beside.sig")
    assert not (pkg / SIGNATURE_NAME).exists()
    assert verify_signature(pkg, [keys.p256_pub], signature=tmp_path / "beside.sig").verified
    with pytest.raises(SignatureError, match="no such signature file"):
        verify_signature(pkg, [keys.p256_pub], signature=tmp_path / "missing.sig")


def test_a_damaged_package_is_not_signed(pkg: Path, archive: Path, keys: Keys) -> None:
    (pkg / "model.onnx").write_bytes(b"not the model")
    with pytest.raises(IntegrityError, match=r"altered file: model\.onnx"):
        sign(pkg, key=keys.p256_pem)
    assert not (pkg / SIGNATURE_NAME).exists()

    data = bytearray(archive.read_bytes())
    data[len(data) // 2] ^= 0xFF
    archive.write_bytes(bytes(data))
    with pytest.raises(PackageError):
        sign(archive, key=keys.p256_pem)
    assert archive.read_bytes() == bytes(data)


def test_an_encrypted_key_and_the_wrong_kinds_of_key(pkg: Path, keys: Keys) -> None:
    assert sign(pkg, key=keys.enc_pem, password=PASSWORD).fingerprint == _fingerprint(keys.enc_pub)
    assert verify_signature(pkg, [keys.enc_pub]).verified
    with pytest.raises(UsageError, match="is encrypted") as encrypted:
        sign(pkg, key=keys.enc_pem)
    assert encrypted.value.hint == "give its password (--password-env VAR)"
    with pytest.raises(UsageError, match="wrong password"):
        sign(pkg, key=keys.enc_pem, password="wrong")
    with pytest.raises(UsageError, match="is an RSA key; OpenSSF Model Signing takes EC keys only"):
        sign(pkg, key=keys.rsa_pem)
    with pytest.raises(UsageError, match="is not a PEM private key"):
        sign(pkg, key=keys.p256_pub)
    with pytest.raises(UsageError, match="no such file"):
        sign(pkg, key=keys.root / "absent.pem")
    assert verify_signature(pkg, [keys.enc_pub]).verified  # the failures left it as it was


def test_a_certificate_chain_signs_and_a_trusted_ca_verifies(
    pkg: Path, archive: Path, keys: Keys
) -> None:
    leaf_der = x509.load_pem_x509_certificate(keys.leaf_crt.read_bytes()).public_bytes(
        serialization.Encoding.DER
    )
    for package in (pkg, archive):
        signed = sign(package, key=keys.leaf_pem, certificate=keys.leaf_crt, chain=[keys.ca_crt])
        assert signed.kind == "certificate"
        assert signed.fingerprint == "sha256:" + hashlib.sha256(leaf_der).hexdigest()
        assert signed.subject == "CN=release signer"
        assert signed.issuer == "CN=modelport test CA"
        info = verify_signature(package, [keys.ca_crt])
        assert (info.verified, info.trusted_by) == (True, str(keys.ca_crt))
        assert verify_signature(package, [keys.trusted]).verified

        with pytest.raises(SignatureError, match="does not chain to a trusted certificate"):
            verify_signature(package, [keys.stranger_crt])
        with pytest.raises(SignatureError, match="no CA certificate is trusted"):
            verify_signature(package, [keys.p256_pub])

    with pytest.raises(UsageError, match="is not the signing key's certificate"):
        sign(pkg, key=keys.p256_pem, certificate=keys.leaf_crt)


# --- interop with the reference CLI, both ways -----------------------------------------------


def test_model_signing_verifies_what_modelport_signed(
    pkg: Path, archive: Path, keys: Keys, tmp_path: Path
) -> None:
    sign(pkg, key=keys.p256_pem)
    sign(archive, key=keys.p384_pem)
    extracted, altered = tmp_path / "extracted", tmp_path / "altered"
    for dest in (extracted, altered):
        dest.mkdir()
        extract_archive(archive, dest)
    (altered / "example.json").write_text("{}")  # the CLI refuses a changed file too

    ok_dir, ok_archive, refused = _cli(
        ("verify", "key", pkg, "--signature", pkg / SIGNATURE_NAME, "--public_key", keys.p256_pub),
        (
            "verify",
            "key",
            extracted,
            "--signature",
            extracted / SIGNATURE_NAME,
            "--public_key",
            keys.p384_pub,
        ),
        (
            "verify",
            "key",
            altered,
            "--signature",
            altered / SIGNATURE_NAME,
            "--public_key",
            keys.p384_pub,
        ),
    )
    for done in (ok_dir, ok_archive):
        assert (done.returncode, done.stdout.strip()) == (0, "Verification succeeded"), done.stderr
    assert refused.returncode == 1
    assert "Verification failed with error: Signature mismatch" in refused.stderr
    assert "Hash mismatch for \\'example.json\\'" in refused.stderr


def test_modelport_verifies_what_model_signing_signed(
    pkg: Path, packages: Path, keys: Keys, tmp_path: Path
) -> None:
    beside = Path(shutil.copytree(packages / "tiny", tmp_path / "beside"))
    sibling = tmp_path / "beside.sig"
    certified = Path(shutil.copytree(packages / "tiny", tmp_path / "certified"))
    runs = _cli(
        ("sign", "key", pkg, "--private_key", keys.p256_pem, "--signature", pkg / SIGNATURE_NAME),
        ("sign", "key", beside, "--private_key", keys.p384_pem, "--signature", sibling),
        (
            "sign",
            "certificate",
            certified,
            "--private_key",
            keys.leaf_pem,
            "--signing_certificate",
            keys.leaf_crt,
            "--certificate_chain",
            keys.ca_crt,
            "--signature",
            certified / SIGNATURE_NAME,
        ),
    )
    for done in runs:
        assert done.returncode == 0, done.stderr

    info = verify_signature(pkg, [keys.p256_pub])  # inside, as model.sig
    assert (info.source, info.fingerprint) == (
        str(pkg / SIGNATURE_NAME),
        _fingerprint(keys.p256_pub),
    )
    assert modelport.verify(pkg).ok  # its model.sig is the package's signature, not an extra file

    info = verify_signature(beside, [keys.p384_pub])  # beside, as DIR.sig
    assert info.source == str(sibling)
    assert read_signature(beside) == sibling.read_bytes()

    info = verify_signature(certified, [keys.ca_crt])
    assert (info.kind, info.subject, info.verified) == ("certificate", "CN=release signer", True)


# --- what is refused, and why ----------------------------------------------------------------


def test_unsigned(pkg: Path, archive: Path, keys: Keys) -> None:
    with pytest.raises(SignatureError, match=r"is not signed \(no model\.sig in it, no tiny\.sig"):
        verify_signature(pkg, [keys.p256_pub])
    with pytest.raises(SignatureError, match="is not signed") as unsigned:
        verify_signature(archive, [keys.p256_pub])
    assert unsigned.value.hint == "sign it with: modelport sign PACKAGE --key KEY.pem"
    assert read_signature(pkg) is None
    assert read_signature(archive) is None


def test_a_file_altered_after_signing(pkg: Path, keys: Keys) -> None:
    sign(pkg, key=keys.p256_pem)
    (pkg / "example.json").write_text('{"inputs": {"x": [[0, 0, 0]]}}')
    with pytest.raises(
        SignatureError, match=r"files changed after signing: example\.json \(altered\)"
    ):
        verify_signature(pkg, [keys.p256_pub])


def test_a_manifest_edited_and_re_digested_after_signing(pkg: Path, keys: Keys) -> None:
    sign(pkg, key=keys.p256_pem)
    _rewrite_manifest(pkg, owner="mallory")
    assert modelport.verify(pkg).ok  # a consistent package: only the signature can tell
    with pytest.raises(SignatureError, match="the signature is over another manifest"):
        verify_signature(pkg, [keys.p256_pub])


def test_a_signature_by_an_untrusted_key_names_its_fingerprint(pkg: Path, keys: Keys) -> None:
    sign(pkg, key=keys.other_pem)
    fingerprint = _fingerprint(keys.other_pub)
    with pytest.raises(SignatureError, match=f"signed by key {fingerprint}, which is not trusted"):
        verify_signature(pkg, [keys.p256_pub, keys.trusted])


def test_a_signature_copied_from_another_package(
    pkg: Path, packages: Path, keys: Keys, tmp_path: Path
) -> None:
    other = Path(shutil.copytree(packages / "other", tmp_path / "other"))
    sign(other, key=keys.p256_pem)
    shutil.copy(other / SIGNATURE_NAME, pkg / SIGNATURE_NAME)
    with pytest.raises(SignatureError, match="the signature is over another package") as copied:
        verify_signature(pkg, [keys.p256_pub])
    assert "modelport.json (altered)" in str(copied.value)
    assert "model.onnx (altered)" in str(copied.value)


def test_an_extra_unlisted_file_is_refused(pkg: Path, keys: Keys) -> None:
    sign(pkg, key=keys.p256_pem)
    (pkg / "notes.txt").write_text("added after signing")
    with pytest.raises(SignatureError, match=r"notes\.txt \(not signed\)"):
        verify_signature(pkg, [keys.p256_pub])
    assert modelport.verify(pkg).problems == ("extra file (not listed in the manifest): notes.txt",)


def test_a_bundle_altered_after_signing(pkg: Path, keys: Keys) -> None:
    sign(pkg, key=keys.p256_pem)
    bundle = json.loads((pkg / SIGNATURE_NAME).read_bytes())
    statement = json.loads(base64.b64decode(bundle["dsseEnvelope"]["payload"]))
    statement["predicate"]["resources"][0]["digest"] = "0" * 64
    bundle["dsseEnvelope"]["payload"] = base64.b64encode(json.dumps(statement).encode()).decode()
    (pkg / SIGNATURE_NAME).write_text(json.dumps(bundle))
    with pytest.raises(SignatureError, match="does not verify with the trusted key"):
        verify_signature(pkg, [keys.p256_pub])


def test_a_signature_that_leaves_the_manifest_out(pkg: Path, keys: Keys) -> None:
    from model_signing import hashing, signing

    config = signing.Config().use_elliptic_key_signer(private_key=keys.p256_pem)
    config.set_hashing_config(
        hashing.Config().set_ignored_paths(paths=[MANIFEST_NAME, SIGNATURE_NAME])
    )
    config.sign(pkg, pkg / SIGNATURE_NAME)
    with pytest.raises(SignatureError, match=r"does not cover modelport\.json"):
        verify_signature(pkg, [keys.p256_pub])


@pytest.mark.parametrize(
    ("content", "error", "match"),
    [
        (b"\x00\xff garbage", SignatureError, "not a sigstore bundle: not JSON"),
        (b'["a list"]', SignatureError, "not a JSON object"),
        (b'{"mediaType": "text/plain"}', SignatureError, "mediaType 'text/plain'"),
        (b"{" + b" " * MAX_SIGNATURE_BYTES + b"}", ArchiveLimitError, "a signature may take"),
    ],
)
def test_a_model_sig_that_is_not_a_signature(
    pkg: Path,
    archive: Path,
    keys: Keys,
    tmp_path: Path,
    content: bytes,
    error: type[Exception],
    match: str,
) -> None:
    (pkg / SIGNATURE_NAME).write_bytes(content)
    with pytest.raises(error, match=match):
        verify_signature(pkg, [keys.p256_pub])
    with pytest.raises(TrustRefused, match=f"refusing to serve it: .*{match}"):
        enforce(pkg, TrustPolicy("require", (keys.p256_pub,)), doing="serve it")


def test_a_keyless_bundle_is_recognised_and_refused(pkg: Path, keys: Keys) -> None:
    # A keyless bundle's shape: a Fulcio certificate naming an identity, and a Rekor entry.
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.timezone.utc)
    fulcio = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([]))
        .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sigstore-intermediate")]))
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now + dt.timedelta(minutes=10))
        .add_extension(x509.SubjectAlternativeName([x509.RFC822Name("dev@example.com")]), True)
        .sign(key, hashes.SHA256())
    )
    der = fulcio.public_bytes(serialization.Encoding.DER)
    bundle = {
        "mediaType": "application/vnd.dev.sigstore.bundle.v0.3+json",
        "verificationMaterial": {
            "certificate": {"rawBytes": base64.b64encode(der).decode()},
            "tlogEntries": [{"logIndex": "1"}],
        },
        "dsseEnvelope": {"payload": "", "payloadType": "application/vnd.in-toto+json"},
    }
    data = json.dumps(bundle).encode()
    info = describe(data)
    assert (info.kind, info.subject) == ("sigstore", "dev@example.com")
    assert info.fingerprint == "sha256:" + hashlib.sha256(der).hexdigest()

    (pkg / SIGNATURE_NAME).write_bytes(data)
    with pytest.raises(SignatureError, match=r"signed keylessly \(Sigstore: dev@example\.com\)"):
        verify_signature(pkg, [keys.p256_pub])


def test_what_trusted_files_may_hold(pkg: Path, keys: Keys, tmp_path: Path) -> None:
    sign(pkg, key=keys.p256_pem)
    with pytest.raises(UsageError, match="holds a private key; trust its public key instead"):
        verify_signature(pkg, [keys.p256_pem])
    with pytest.raises(UsageError, match="is an RSA key; OpenSSF Model Signing takes EC keys only"):
        verify_signature(pkg, [keys.rsa_pub])
    (tmp_path / "notes.txt").write_text("not a key")
    with pytest.raises(UsageError, match="holds no PEM block"):
        verify_signature(pkg, [tmp_path / "notes.txt"])
    with pytest.raises(UsageError, match="no such file or directory"):
        verify_signature(pkg, [tmp_path / "absent.pub"])
    with pytest.raises(SignatureError, match="no key is trusted"):
        verify_signature(pkg, [])
    assert trusted_key_files([keys.trusted, keys.p384_pub]) == [
        keys.trusted / "00-release.pub",
        keys.trusted / "01-ca.crt",
        keys.p384_pub,
    ]


def test_a_missing_extra_names_what_to_install(
    pkg: Path, keys: Keys, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "model_signing", None)  # as if not installed
    with pytest.raises(MissingDependencyError) as missing:
        sign(pkg, key=keys.p256_pem)
    assert missing.value.hint == "install it with: pip install 'modelport[signing]'"


def test_importing_the_module_imports_no_signing_library() -> None:
    code = (
        "import sys, modelport.model_format.signing\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'model_signing', 'cryptography',"
        " 'OpenSSL'}))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert done.stdout.strip() == "[]"


# --- the policy ------------------------------------------------------------------------------


def test_the_policy_from_the_environment_and_flags(keys: Keys) -> None:
    assert TrustPolicy.from_env({}) == TrustPolicy("off", ())
    both = f"{keys.p256_pub}{os.pathsep}{keys.trusted}"
    env = {TRUST_ENV: " Require ", KEYS_ENV: both}
    assert TrustPolicy.from_env(env) == TrustPolicy("require", (keys.p256_pub, keys.trusted))
    flagged = TrustPolicy.from_env(env, trust="warn", trusted_keys=[keys.p384_pub])
    assert flagged == TrustPolicy("warn", (keys.p384_pub,))

    with pytest.raises(UsageError, match=r"MODELPORT_TRUST='maybe': expected one of off, warn"):
        TrustPolicy.from_env({TRUST_ENV: "maybe"})
    with pytest.raises(UsageError, match=r"--trust='yes'"):
        TrustPolicy.from_env({}, trust="yes")
    with pytest.raises(
        UsageError, match="MODELPORT_TRUST=require needs trusted keys: set MODELPORT_TRUSTED_KEYS"
    ):
        TrustPolicy.from_env({TRUST_ENV: "require"})
    with pytest.raises(UsageError, match=r"MODELPORT_TRUSTED_KEYS: .*absent\.pub: no such file"):
        TrustPolicy.from_env({TRUST_ENV: "warn", KEYS_ENV: str(keys.root / "absent.pub")})
    with pytest.raises(UsageError, match="is not one of off, warn, require"):
        TrustPolicy("strict", ())  # type: ignore[arg-type]


def test_off_reads_nothing(tmp_path: Path) -> None:
    assert enforce(tmp_path / "no such package", TrustPolicy("off", ()), doing="serve it") is None


def test_warn_logs_and_goes_on(pkg: Path, keys: Keys, caplog: pytest.LogCaptureFixture) -> None:
    policy = TrustPolicy("warn", (keys.p256_pub,))
    with caplog.at_level(logging.WARNING, logger="modelport.trust"):
        assert enforce(pkg, policy, doing="serve it") is None
    assert [r.name for r in caplog.records] == ["modelport.trust"]
    assert "would refuse to serve it" in caplog.text
    assert "is not signed" in caplog.text

    caplog.clear()
    sign(pkg, key=keys.p256_pem)
    with caplog.at_level(logging.WARNING, logger="modelport.trust"):
        info = enforce(pkg, policy, doing="serve it")
    assert info is not None
    assert info.verified
    assert caplog.records == []


def test_require_refuses_what_does_not_verify(pkg: Path, archive: Path, keys: Keys) -> None:
    policy = TrustPolicy("require", (keys.trusted,))
    with pytest.raises(TrustRefused, match=r"^refusing to serve it: .* is not signed") as refused:
        enforce(pkg, policy, doing="serve it")
    assert refused.value.exit_code == 4

    sign(archive, key=keys.other_pem)
    with pytest.raises(TrustRefused, match=r"refusing to deploy it: .*which is not trusted"):
        enforce(archive, policy, doing="deploy it")

    sign(archive, key=keys.p256_pem)
    info = enforce(archive, policy, doing="deploy it")
    assert info is not None
    assert (info.verified, info.trusted_by) == (True, str(keys.trusted / "00-release.pub"))

    sign(pkg, key=keys.p256_pem)
    (pkg / "model.onnx").write_bytes(b"swapped")
    with pytest.raises(TrustRefused, match=r"refusing to serve it: .*model\.onnx \(altered\)"):
        enforce(pkg, policy, doing="serve it")
