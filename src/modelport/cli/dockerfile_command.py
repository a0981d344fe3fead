"""``modelport dockerfile``: write a Docker build context for a package (no Docker needed)."""

from __future__ import annotations

import os
import shlex
from pathlib import Path

import click

from modelport.cli._io import storage_option


@click.command(context_settings={"max_content_width": 100})
@click.argument("ref", metavar="PACKAGE")
@click.option(
    "-o",
    "--output",
    "output",
    required=True,
    type=click.Path(path_type=Path, file_okay=False),
    help="Directory to write the build context to (created; must be empty if it exists).",
)
@click.option(
    "--base-image",
    help="Image to build on (needs python3 and its venv module). "
    "[default: python:<major.minor of the packing Python>-slim]",
)
@click.option(
    "--index-url",
    help="Python package index the build installs from (pip --index-url). [default: PyPI]",
)
@click.option(
    "--pip-cert",
    type=click.Path(path_type=Path, dir_okay=False, exists=True),
    envvar="PIP_CERT",
    help="CA bundle pip trusts during the build, for an index behind a TLS-inspecting proxy "
    "(build stage only, never in the image). [default: $PIP_CERT]",
)
@storage_option
def dockerfile(
    ref: str,
    output: Path,
    base_image: str | None,
    index_url: str | None,
    pip_cert: Path | None,
    storage_options: tuple[str, ...],
) -> None:
    """Write a Docker build context for PACKAGE: Dockerfile, package, pinned requirements.

    The image serves PACKAGE with `modelport serve` on port 8080 (SageMaker, Vertex AI, Azure ML
    and KServe V2 routes), runs as a non-root user, and verifies the package at build time and at
    every start. Build it with docker, podman or buildah.
    """
    from modelport.cli._io import package_arg
    from modelport.image import write_context

    package = package_arg(ref, storage_options)
    context = write_context(
        package,
        output,
        base_image=base_image,
        index_url=index_url,
        pip_cert=pip_cert,
    )
    click.echo(f"Wrote the build context for {context.package_name} {context.package_version}")
    click.echo(f"  ({context.package_digest}) to {context.directory}")
    click.echo(f"  base image: {context.base_image}")
    click.echo(f"  requirements: {len(context.requirements)} pinned")
    where = shlex.quote(os.fspath(context.directory))
    click.echo(f"Build it with: docker build -t {context.default_tag} {where}")
