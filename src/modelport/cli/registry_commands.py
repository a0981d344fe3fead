"""``modelport push``, ``pull`` and ``sign``: packages in OCI registries, and their signatures.

``push`` writes a package as a CNCF ModelPack artifact (:mod:`modelport.model_format.remote.oci`)
with its signature, if it has one, as an OCI 1.1 referrer; ``pull`` fetches one into the package
cache (every layer and file digest checked) and copies it out. Every other command takes the
same ``oci://`` reference directly. ``sign`` writes an OpenSSF Model Signing bundle
(:mod:`modelport.model_format.signing`).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import click

from modelport.cli._io import emit_json, package_arg
from modelport.errors import UsageError

_INSECURE_HELP = "Talk plain HTTP to the registry (a local or test registry without TLS)."


@click.command()
@click.argument("package_ref", metavar="PACKAGE")
@click.argument("reference", metavar="oci://HOST[:PORT]/REPO[:TAG]")
@click.option("--insecure", is_flag=True, help=_INSECURE_HELP)
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def push(package_ref: str, reference: str, insecure: bool, as_json: bool) -> None:
    """Push PACKAGE to an OCI registry as a ModelPack artifact; print its manifest digest.

    One layer per file, byte-identical on every push of the same package (a second push
    uploads nothing). A signed package's signature goes along as a referrer of the artifact.
    Credentials come from $REGISTRY_AUTH_FILE, containers' auth.json or the Docker config
    (~/.docker/config.json, its credential helpers), as container tools read them.
    """
    from modelport.model_format.remote.oci import push as push_package
    from modelport.model_format.remote.uri import Kind, parse_reference
    from modelport.model_format.signing import read_signature

    if parse_reference(reference).kind is not Kind.OCI:
        raise UsageError(f"{reference}: push writes to oci://HOST[:PORT]/REPO[:TAG]")
    path = package_arg(package_ref)
    result = push_package(path, reference, signature=read_signature(path), insecure=insecure)
    if as_json:
        emit_json(
            {
                "reference": result.reference,
                "digest": result.digest,
                "signature_digest": result.signature_digest,
                "manifest": result.manifest,
            }
        )
        return
    click.echo(f"Pushed {package_ref} -> {result.reference}")
    if result.signature_digest:
        click.echo(f"  signature: {result.signature_digest} (referrer)")
    click.echo(result.digest)


@click.command()
@click.argument("reference", metavar="oci://HOST[:PORT]/REPO[:TAG|@sha256:HEX]")
@click.option(
    "-o",
    "--output",
    "output",
    required=True,
    type=click.Path(path_type=Path),
    help="Where to write the package: a .mport archive, or else a directory.",
)
@click.option("--insecure", is_flag=True, help=_INSECURE_HELP)
@click.option("--force", is_flag=True, help="Replace the output if it exists.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def pull(reference: str, output: Path, insecure: bool, force: bool, as_json: bool) -> None:
    """Pull a package from an OCI registry into the cache, then write it to OUTPUT.

    Every layer's digest and every file's digest are checked; the same digest is not
    downloaded twice. A ModelPack artifact another tool made is accepted when its weight is an
    ONNX model (its signature is inferred, as `pack model.onnx` does).
    """
    from modelport.model_format.archive import extract_archive, read_archive_manifest
    from modelport.model_format.paths import make_temp_dir
    from modelport.model_format.remote.uri import Kind, parse_reference

    if parse_reference(reference).kind is not Kind.OCI:
        raise UsageError(f"{reference}: pull reads oci://HOST[:PORT]/REPO[:TAG|@sha256:HEX]")
    if output.exists() and not force:
        raise UsageError(f"{output} exists", hint="pass --force to replace it")
    options = ("insecure=true",) if insecure else ()
    cached = package_arg(reference, options)
    manifest = read_archive_manifest(cached)
    # Written beside the output and renamed into place: never a half-written package.
    output.parent.mkdir(parents=True, exist_ok=True)
    if output.name.endswith(".mport"):
        staged = output.with_name(f".{output.name}.tmp")
        shutil.copyfile(cached, staged)
    else:
        staged = make_temp_dir(f".{output.name}.", output.parent)
        try:
            extract_archive(cached, staged)
        except BaseException:
            shutil.rmtree(staged, ignore_errors=True)
            raise
    if output.is_dir() and not output.is_symlink():
        shutil.rmtree(output)
    elif output.exists() or output.is_symlink():
        output.unlink()
    staged.replace(output)
    oci = _oci_digest(cached)
    if as_json:
        emit_json(
            {
                "path": str(output),
                "reference": reference,
                "oci_digest": oci,
                "name": manifest.name,
                "version": manifest.version,
                "digest": manifest.digest,
            }
        )
        return
    click.echo(f"Pulled {reference} -> {output} ({manifest.name} {manifest.version})")
    click.echo(f"  digest:     {manifest.digest}")
    if oci:
        click.echo(f"  oci digest: {oci}")


def _oci_digest(path: Path) -> str | None:
    """The OCI manifest digest a cached package was pulled by."""
    from modelport.model_format.locate import provenance

    return provenance(path).oci_digest


@click.command()
@click.argument("package_ref", metavar="PACKAGE")
@click.option(
    "--key",
    required=True,
    type=click.Path(path_type=Path, exists=True, dir_okay=False),
    help="The EC private key (PEM) to sign with (P-256, P-384 or P-521).",
)
@click.option(
    "--certificate",
    type=click.Path(path_type=Path, exists=True, dir_okay=False),
    help="Sign as this certificate (of --key's public key) instead of a bare key.",
)
@click.option(
    "--chain",
    multiple=True,
    type=click.Path(path_type=Path, exists=True, dir_okay=False),
    help="A certificate of --certificate's chain, up to its root (repeat).",
)
@click.option(
    "--password-env",
    metavar="VAR",
    help="The environment variable holding --key's password, if it is encrypted.",
)
@click.option(
    "--signature",
    "signature_out",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Write the signature here instead of into the package (a directory's model.sig, "
    "an archive's member).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def sign(
    package_ref: str,
    key: Path,
    certificate: Path | None,
    chain: tuple[Path, ...],
    password_env: str | None,
    signature_out: Path | None,
    as_json: bool,
) -> None:
    """Sign PACKAGE (a directory or .mport archive) with OpenSSF Model Signing.

    The signature covers the manifest and every file. A directory gets DIR/model.sig (what
    `model_signing verify` reads with --signature DIR/model.sig); an archive gets it as a member,
    so its package digest does not change. Check it with `modelport verify PACKAGE --key PUB`.
    """
    import os

    from modelport.model_format.remote.uri import is_remote
    from modelport.model_format.signing import sign as sign_package

    if is_remote(package_ref):
        raise UsageError("sign writes into the package: give a local directory or .mport archive")
    if chain and certificate is None:
        raise UsageError("--chain goes with --certificate")
    password = None
    if password_env:
        password = os.environ.get(password_env)
        if password is None:
            raise UsageError(f"--password-env {password_env}: the variable is not set")
    path = package_arg(package_ref)
    info = sign_package(
        path, key=key, certificate=certificate, chain=chain, password=password, out=signature_out
    )
    if as_json:
        emit_json({"path": str(path), **info.to_dict()})
        return
    where = signature_out or path
    click.echo(f"Signed {package_ref} ({info.kind} {info.fingerprint}) -> {where}")
