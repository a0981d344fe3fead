"""Signing keys for tests and benchmarks: a fresh EC key pair as PEM files."""

from __future__ import annotations

from pathlib import Path


def ec_key_pair(directory: Path, name: str) -> tuple[Path, Path]:
    """A new P-256 key pair: ``(private, public)`` PEM files.

    The public key is ``directory/NAME.pub``, alone in ``directory`` (a folder of trusted keys
    holds no private key); the private key is ``directory/private/NAME.pem``.
    """
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1())
    (directory / "private").mkdir(parents=True, exist_ok=True)
    private, public = directory / "private" / f"{name}.pem", directory / f"{name}.pub"
    private.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    public.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return private, public
