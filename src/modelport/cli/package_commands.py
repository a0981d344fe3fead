"""``modelport pack | inspect | verify | predict``: the package commands."""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from modelport.cli._io import (
    emit_json,
    existing,
    key_values,
    package_arg,
    storage_option,
    storage_options_arg,
)
from modelport.cli.serve_command import _click_option
from modelport.errors import IntegrityError, UsageError, quote_names
from modelport.model_format.limits import human_bytes
from modelport.serving.options import ARCHIVE_LIMIT_OPTIONS, SERVE_OPTIONS, archive_limits


def _size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


@click.command()
@click.argument("source_ref", metavar="SOURCE")
@click.option(
    "-o",
    "--output",
    "output_ref",
    required=True,
    metavar="OUTPUT",
    help="Where to write: a path ending in .mport gives an archive, anything else a directory; "
    "a storage URI ending in .mport (s3://, gs://, az://, webhdfs:// …) is uploaded whole or "
    "not at all.",
)
@click.option("--name", help="Package name (default: derived from the source).")
@click.option("--version", "version", help="Package version (default: 1).")
@click.option(
    "--example",
    type=click.Path(path_type=Path, dir_okay=False),
    help='Input example, JSON: {"inputs": ...} or an MLflow scoring format.',
)
@click.option(
    "-r", "--requirement", "requirements", multiple=True, help="Extra pinned requirement (repeat)."
)
@click.option("--metadata", multiple=True, metavar="KEY=VALUE", help="Metadata label (repeat).")
@click.option(
    "--tolerance",
    type=float,
    default=1e-4,
    show_default=True,
    help="Largest difference allowed between a converted model and the original.",
)
@click.option("--class", "model_class", help="For a .py source: the model class to use.")
@click.option(
    "--artifact",
    "artifacts",
    multiple=True,
    type=click.Path(path_type=Path, exists=True),
    help="For a .py source: a file or directory to carry under artifacts/ (repeat).",
)
@click.option(
    "--created-at", help="Time to record (ISO 8601, or 'now'). Default: none, for reproducibility."
)
@click.option("--force", is_flag=True, help="Replace the output if it exists.")
@click.option(
    "--allow-code",
    is_flag=True,
    help="Allow sources that run code when read (pickled or python_function MLflow models).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@storage_option
def pack(
    source_ref: str,
    output_ref: str,
    name: str | None,
    version: str | None,
    example: Path | None,
    requirements: tuple[str, ...],
    metadata: tuple[str, ...],
    tolerance: float,
    model_class: str | None,
    artifacts: tuple[Path, ...],
    created_at: str | None,
    force: bool,
    allow_code: bool,
    as_json: bool,
    storage_options: tuple[str, ...],
) -> None:
    """Pack SOURCE into a package at OUTPUT.

    SOURCE is an .onnx file, an MLflow model directory, a .py file with a model class (load and
    predict methods), a TorchScript .pt or torch.export .pt2 file (exported to ONNX and checked
    on --example; a .pt2 file's own example inputs serve without one), a package to rewrite as
    a directory or archive, an MLflow URI (models:/NAME@ALIAS, models:/NAME/VERSION,
    models:/NAME/latest, runs:/RUN/PATH), or a package's storage URI.
    """
    from modelport.model_format.paths import temp_dir
    from modelport.model_format.remote.uri import Kind, parse_reference

    source_ref_parsed = parse_reference(source_ref)
    source_kind = source_ref_parsed.kind
    target = parse_reference(output_ref)
    if target.kind is Kind.MLFLOW:
        raise UsageError(
            "pack writes files, not MLflow models",
            hint="write a .mport, then log it with mlflow.log_artifact",
        )
    if target.kind is Kind.STORAGE and not output_ref.endswith(".mport"):
        raise UsageError(f"{output_ref}: a package written to storage is a .mport archive")
    if source_kind is Kind.PATH and target.kind is Kind.PATH and storage_options:
        raise UsageError("--storage-option is for a SOURCE or OUTPUT given as a storage URI")
    if example is not None:
        existing(example)
    if source_kind is Kind.PATH:
        source = existing(Path(source_ref_parsed.text))
    else:
        source = package_arg(source_ref, storage_options, allow_code=allow_code)
    with contextlib.ExitStack() as stack:
        output = Path(target.text)
        if target.kind is Kind.STORAGE:
            output = (
                stack.enter_context(temp_dir("modelport-pack-")) / output_ref.rpartition("/")[2]
            )
        _pack_to(
            source,
            output,
            target,
            as_json=as_json,
            storage_options=storage_options,
            name=name,
            version=version,
            example=example,
            requirements=requirements,
            metadata=key_values(metadata, "--metadata"),
            tolerance=tolerance,
            created_at=created_at,
            model_class=model_class,
            artifacts=artifacts,
            overwrite=force,
            allow_code=allow_code,
        )


def _pack_to(
    source: Path,
    output: Path,
    target: Any,
    *,
    as_json: bool,
    storage_options: tuple[str, ...],
    **options: Any,
) -> None:
    """Pack, upload when OUTPUT is a storage URI, then say what was written."""
    from modelport.model_format.pack import pack as pack_model
    from modelport.model_format.remote.storage import storage_options as options_for
    from modelport.model_format.remote.storage import upload
    from modelport.model_format.remote.uri import Kind

    package = pack_model(source, output, **options)
    try:
        if target.kind is Kind.STORAGE:
            upload(
                output,
                target,
                options_for(target, storage_options_arg(storage_options)),
                overwrite=options["overwrite"],
            )
        m = package.manifest
        size = _size(output)
        summary = {
            "path": target.text,
            "name": m.name,
            "version": m.version,
            "flavor": m.flavor.name,
            "digest": package.digest,
            "size_bytes": size,
        }
        if as_json:
            emit_json(summary)
            return
        click.echo(f"Packed {m.name} {m.version} ({m.flavor.name}) -> {target.text}")
        click.echo(f"  digest: {package.digest}")
        click.echo(f"  size:   {human_bytes(size)}")
        conversion = m.flavor.settings.get("converted_from")
        if conversion:
            diffs = ", ".join(f"{k} {v:.2g}" for k, v in conversion["max_abs_diff"].items())
            labels = ", labels equal" if conversion.get("labels_equal") else ""
            click.echo(
                f"  parity: max abs difference {diffs} (tolerance {conversion['tolerance']:g})"
                f"{labels}"
            )
            if "converter" in conversion:
                click.echo(f"  converted by {conversion['converter']}")
    finally:
        package.close()


def _limit_options(func: Any) -> Any:
    """The limits on reading a package (serve's own table entries) as options of a command."""
    for option in reversed(ARCHIVE_LIMIT_OPTIONS):
        func = _click_option(option)(func)
    return func


def _serve_options(*names: str) -> Callable[[Any], Any]:
    """Options of ``modelport serve`` that mean the same to a command, from serve's own table.

    Without their environment variables: what a command does is what its arguments say.
    """
    table = {option.name: option for option in SERVE_OPTIONS}

    def decorate(func: Any) -> Any:
        for name in reversed(names):
            func = _click_option(dataclasses.replace(table[name], env=None))(func)
        return func

    return decorate


def _describe(manifest: Any) -> list[str]:
    lines = [
        f"name:       {manifest.name}",
        f"version:    {manifest.version}",
        f"flavor:     {manifest.flavor.name}",
        f"format:     {manifest.format_version}",
        f"digest:     {manifest.digest}",
        f"python:     {manifest.python or '-'}",
        f"created_at: {manifest.created_at or '-'}",
        "inputs:",
        *(f"  {s.name}: {s.describe()}" for s in manifest.signature.inputs),
        "outputs:",
        *(f"  {s.name}: {s.describe()}" for s in manifest.signature.outputs),
        "requirements:",
        *(f"  {r}" for r in manifest.requirements),
        f"files: {len(manifest.files)}",
        *(f"  {p}" for p in sorted(manifest.files)),
    ]
    if manifest.metadata:
        lines.append("metadata:")
        lines += [f"  {k}: {v}" for k, v in sorted(manifest.metadata.items())]
    return lines


@click.command()
@click.argument("ref", metavar="PACKAGE")
@click.option("--json", "as_json", is_flag=True, help="Print the manifest and digest as JSON.")
@storage_option
@_limit_options
def inspect(ref: str, as_json: bool, storage_options: tuple[str, ...], **limit_values: Any) -> None:
    """Show the manifest of PACKAGE (a directory or .mport archive) without loading the model.

    Use `modelport verify` to check the files against their digests.
    """
    from modelport.model_format.archive import read_archive_manifest
    from modelport.model_format.locate import provenance
    from modelport.model_format.package import read_manifest

    package = package_arg(ref, storage_options)
    limits = archive_limits(limit_values)
    if package.is_dir():
        manifest = read_manifest(package, limits)
    else:
        manifest = read_archive_manifest(package, limits)
    # Who signed it, as the signature says (not checked here: `verify --key` checks it).
    origin = provenance(package, source=ref, limits=limits)
    if as_json:
        emit_json(
            {
                "digest": manifest.digest,
                "signature_fingerprint": origin.signature_fingerprint,
                "oci_digest": origin.oci_digest,
                "manifest": manifest.to_dict(),
            }
        )
        return
    lines = _describe(manifest)
    at = lines.index(f"digest:     {manifest.digest}") + 1
    signed = origin.signature_fingerprint
    lines[at:at] = [
        f"signed by:  {signed} (not checked: modelport verify --key)"
        if signed
        else "signed by:  -",
        *([f"oci:        {origin.oci_digest}"] if origin.oci_digest else []),
    ]
    click.echo("\n".join(lines))


def _expect_digest_option(func: Any) -> Any:
    return click.option(
        "--expect-digest",
        "expect_digest",
        metavar="sha256:HEX",
        help="Accept only the package with this digest (what 'verify' prints); exit 4 otherwise.",
    )(func)


def _expected(expect_digest: str | None) -> str | None:
    """The flag's value checked and normalised (a malformed digest is a usage error, exit 2)."""
    from modelport.model_format.manifest import expected_digest

    return None if expect_digest is None else expected_digest(expect_digest, "--expect-digest")


@click.command()
@click.argument("ref", metavar="PACKAGE")
@_expect_digest_option
@click.option(
    "--key",
    "keys",
    multiple=True,
    type=click.Path(exists=True),
    help="Also check the package's signature against this public key or CA certificate (PEM; "
    "a file or a directory; repeat). Exit 4 when it is unsigned or does not verify.",
)
@click.option(
    "--signature",
    type=click.Path(path_type=Path, exists=True, dir_okay=False),
    help="The signature file, when it is not in the package (DIR/model.sig, DIR.sig, or the "
    "archive's member).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@storage_option
@_limit_options
def verify(
    ref: str,
    expect_digest: str | None,
    keys: tuple[str, ...],
    signature: Path | None,
    as_json: bool,
    storage_options: tuple[str, ...],
    **limit_values: Any,
) -> None:
    """Check every file of PACKAGE against its manifest, and with --key its signature.

    Exits 4 when any file is missing, altered, or not listed in the manifest, when the
    package's digest is not the one given with --expect-digest, or when --key is given and the
    package is unsigned or its signature is not by that key or does not match the files.
    """
    from modelport.errors import SignatureError
    from modelport.model_format.package import verify as verify_package
    from modelport.model_format.signing import verify_signature

    package = package_arg(ref, storage_options)
    limits = archive_limits(limit_values)
    report = verify_package(package, expected_digest=_expected(expect_digest), limits=limits)
    signed: dict[str, Any] | None = None
    problem = None
    if keys and report.ok:
        try:
            signed = verify_signature(
                package, [Path(k) for k in keys], signature=signature, limits=limits
            ).to_dict()
        except SignatureError as exc:
            problem = exc
    if as_json:
        emit_json(
            {
                "path": str(package),
                "source": ref,
                "ok": report.ok and problem is None,
                "digest": report.manifest.digest,
                "files": len(report.manifest.files),
                "problems": [*report.problems, *([str(problem)] if problem else [])],
                "signature": signed,
            }
        )
    elif report.ok and problem is None:  # a signature that fails is no "OK"
        click.echo(
            f"OK: {ref} ({report.manifest.name} {report.manifest.version}), "
            f"{len(report.manifest.files)} file(s) match their digests"
        )
        click.echo(f"  digest: {report.manifest.digest}")
        if signed is not None:
            click.echo(f"  signed by: {signed['fingerprint']} ({signed['kind']}, verified)")
    if not report.ok:
        raise IntegrityError(report.problems)
    if problem is not None:
        raise problem


@click.command()
@click.argument("ref", metavar="PACKAGE")
@click.option(
    "-i",
    "--input",
    "input_path",
    required=True,
    type=click.Path(path_type=Path, allow_dash=True),
    help="Input JSON ('-' for stdin), any body /invocations reads as JSON: {\"inputs\": ...}, "
    "instances, dataframe_split, dataframe_records, or a bare array.",
)
@click.option(
    "-o",
    "--output",
    "output_path",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Write predictions here instead of stdout.",
)
@click.option("--allow-code", is_flag=True, help="Allow packages that run code they carry.")
@_serve_options("answer", "strict_inputs")
@_expect_digest_option
@storage_option
@_limit_options
def predict(
    ref: str,
    input_path: Path,
    output_path: Path | None,
    allow_code: bool,
    answer: str,
    strict_inputs: bool,
    expect_digest: str | None,
    storage_options: tuple[str, ...],
    **limit_values: Any,
) -> None:
    """Predict with PACKAGE in-process and print {"predictions": ...} as JSON.

    INPUT is read as `modelport serve` reads a JSON body on /invocations (the same reader, the
    same formats, params.outputs included), and the answer is written as the server writes it.
    """
    from modelport.cli._io import read_json_input, write_output
    from modelport.model_format import jsontext
    from modelport.model_format.package import load
    from modelport.model_format.payload import answer_outputs, format_predictions, read_payload

    expected = _expected(expect_digest)
    package = package_arg(ref, storage_options, allow_code=allow_code)
    body = read_json_input(input_path)
    limits = archive_limits(limit_values)
    with load(package, allow_code=allow_code, expected_digest=expected, limits=limits) as loaded:
        payload = read_payload(body, loaded.signature, strict=strict_inputs)
        outputs = answer_outputs(loaded.predict(payload.inputs), payload.outputs, answer)
    if payload.ignored:
        # What the server names in its Modelport-Ignored-Columns header.
        click.echo(f"ignored column(s) {quote_names(payload.ignored)}", err=True)
    # The server's writer: the same numbers (float32 shortest, NaN as NaN) as an answer over HTTP.
    text = jsontext.dumps_answer(format_predictions(outputs), outputs)
    write_output(text.decode(), output_path)
