"""Build contexts of serving images: a Dockerfile, the package, pinned requirements, the wheel.

:func:`write_context` writes everything ``docker build`` (or ``buildah``/``podman build``) needs
to make a serving image of one package, and nothing here needs docker-py or a daemon::

    DIR/
      Dockerfile        multi-stage: a build stage makes a venv, the final stage copies it
      requirements.txt  every runtime requirement, pinned: modelport's, and for a package that
                        runs its own code (python flavor) the package's first
      wheels/           modelport itself, as a wheel of the modelport running here
      entrypoint.py     verifies the package, then runs the server (accepts `serve`)
      package/          the package, as a directory (an archive is extracted, safely)
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from packaging.utils import canonicalize_name

from modelport import __version__
from modelport.errors import IntegrityError, UsageError
from modelport.image.dockerfile import (
    TRUSTED_KEYS_CONTEXT,
    default_base_image,
    image_labels,
    image_reference,
    render_dockerfile,
    runtime_stages,
)
from modelport.image.requirements import RUNTIME_EXTRAS, pinned_requirements
from modelport.image.wheel import build_modelport_wheel

if TYPE_CHECKING:
    from modelport.model_format.manifest import Manifest
    from modelport.model_format.package import Package


@dataclass(frozen=True)
class BuildContext:
    """A written build context.

    Attributes:
        directory: the context directory (pass it to ``docker build``).
        dockerfile: the Dockerfile in it.
        base_image: the base image the Dockerfile starts from.
        package_name: the package's name.
        package_version: the package's version.
        package_digest: the package's digest (``sha256:...``).
        default_tag: a sensible image reference, ``<name>:<version>`` made valid for Docker.
        labels: the labels the Dockerfile gives the image.
        requirements: the pinned requirements the image installs.
        runtime_stages: the Dockerfile's package-independent stages (:func:`runtime_stages`):
            what a runtime image shared by packages is built from.
        trust: the signature policy the image enforces at every start (``off``, ``warn``,
            ``require``), its keys in the context's ``trusted-keys/``.
    """

    directory: Path
    dockerfile: Path
    base_image: str
    package_name: str
    package_version: str
    package_digest: str
    default_tag: str
    labels: Mapping[str, str] = field(default_factory=dict)
    requirements: tuple[str, ...] = ()
    runtime_stages: str = ""
    trust: str = "off"


# --- the context --------------------------------------------------------------------------------


def _copy_package(source: Path, manifest: Manifest, dest: Path) -> None:
    """Copy a package directory's manifest, files and signature (nothing else) to ``dest``."""
    from modelport.model_format.manifest import MANIFEST_NAME, SIGNATURE_NAME

    shutil.copyfile(source / MANIFEST_NAME, dest / MANIFEST_NAME)
    if (source / SIGNATURE_NAME).is_file():  # the image checks it at every start
        shutil.copyfile(source / SIGNATURE_NAME, dest / SIGNATURE_NAME)
    for rel in sorted(manifest.files):
        target = dest.joinpath(*rel.split("/"))
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source.joinpath(*rel.split("/")), target)


def _stage_package(package: str | os.PathLike[str] | Package, dest: Path) -> Manifest:
    """Put a verified copy of the package, as a directory, at ``dest``."""
    from modelport.model_format.archive import directory_problems
    from modelport.model_format.package import Package, open_package

    dest.mkdir(parents=True)
    if isinstance(package, Package):
        _copy_package(package.root, package.manifest, dest)
        manifest = package.manifest
    else:
        # Building an image runs none of the package's code: any flavor opens. An archive is
        # extracted straight into the context (no temporary copy), and the extraction already
        # checked what landed there.
        with open_package(package, extract_into=dest) as opened:
            manifest = opened.manifest
            if opened.extracted:
                return manifest
            _copy_package(opened.directory, manifest, dest)
    # What lands in the context is what the image gets: check the copy, not only the source.
    problems = directory_problems(dest, manifest)
    if problems:
        raise IntegrityError(problems)
    return manifest


def _stage_trusted_keys(dest: Path) -> str:
    """The trust policy of the build's environment, with its keys copied to ``dest``.

    An image is built under the policy its builder runs with (``deploy --trust``, or
    ``MODELPORT_TRUST``): it enforces the same one at every start, with the same keys.

    Returns:
        The policy's mode (``off`` copies nothing).
    """
    from modelport.model_format.signing import TrustPolicy, trusted_key_files

    policy = TrustPolicy.from_env(os.environ)
    mode = str(getattr(policy.mode, "value", policy.mode))
    if mode == "off":
        return mode
    dest.mkdir()
    for i, key in enumerate(trusted_key_files(policy.keys)):
        shutil.copyfile(key, dest / f"{i:02d}-{key.name}")
    return mode


def write_context(
    package: str | os.PathLike[str] | Package,
    out: str | os.PathLike[str],
    *,
    base_image: str | None = None,
    index_url: str | None = None,
    pip_cert: str | os.PathLike[str] | None = None,
) -> BuildContext:
    """Write the build context of a package's serving image into the directory ``out``.

    Args:
        package: a package directory or ``.mport`` archive, or a loaded package.
        out: the context directory; created if missing, and must be empty if it exists.
        base_image: the image to build on; default ``python:<major.minor>-slim`` of the Python
            that packed the package. Any image with ``python3`` and its ``venv`` module works.
        index_url: the Python package index the build installs from; default pip's (PyPI).
        pip_cert: a CA bundle (PEM) for pip to trust while the build installs packages, for an
            index reached through a TLS-inspecting proxy; copied into the context as
            ``pip-ca.pem`` and used by the build stage only.

    Raises:
        PackageError: the package is unreadable or fails verification.
        UsageError: ``out`` exists and is not an empty directory.
    """
    directory = Path(out)
    if directory.exists() and (not directory.is_dir() or any(directory.iterdir())):
        raise UsageError(f"{directory} exists and is not an empty directory")
    created = not directory.exists()
    directory.mkdir(parents=True, exist_ok=True)
    try:
        manifest = _stage_package(package, directory / "package")
        base = base_image or default_base_image(manifest.python)
        # An onnx package's requirements are informative: what it installs is the runtime's
        # choice, never the package's. One that runs its code gets its own (plain names from
        # the index, validated with the manifest); its image is the opt-in to run that code.
        # An image that checks signatures at every start needs what checks them.
        trust = _stage_trusted_keys(directory / TRUSTED_KEYS_CONTEXT)
        extras = (*RUNTIME_EXTRAS, "signing") if trust != "off" else RUNTIME_EXTRAS
        requirements = pinned_requirements(
            manifest.requirements if manifest.flavor.runs_code else (), extras
        )
        wheel = build_modelport_wheel(directory / "wheels")
        keep = {canonicalize_name(r.split("==")[0]) for r in requirements}
        remove = [d for d in ("pip", "setuptools") if d not in keep]
        # Nothing package-specific but the requirements themselves: packages that need the same
        # runtime share the build stage's layers.
        (directory / "requirements.txt").write_text(
            f"# The runtime of a modelport {__version__} serving image: the package's own pinned\n"
            "# requirements (only a package that runs its own code has them here), then\n"
            "# modelport's server and everything it needs, pinned to the versions installed\n"
            "# where this build context was written.\n" + "".join(f"{r}\n" for r in requirements),
            encoding="utf-8",
        )
        cert_name = None
        if pip_cert is not None:
            cert_name = "pip-ca.pem"
            try:
                shutil.copyfile(pip_cert, directory / cert_name)
            except OSError as exc:
                raise UsageError(f"cannot read the CA bundle {pip_cert}: {exc}") from None
        shutil.copyfile(Path(__file__).with_name("entrypoint.py"), directory / "entrypoint.py")
        runtime = runtime_stages(
            base_image=base,
            wheel_name=wheel.name,
            index_url=index_url,
            pip_cert=cert_name,
            remove_from_venv=remove,
        )
        dockerfile = directory / "Dockerfile"
        dockerfile.write_text(
            render_dockerfile(manifest, runtime, base, trust=trust), encoding="utf-8"
        )
        (directory / ".dockerignore").write_text("**/__pycache__\n**/*.pyc\n", encoding="utf-8")
    except BaseException:
        # Leave things as they were: no directory if we made it, else an empty one.
        if created:
            shutil.rmtree(directory, ignore_errors=True)
        else:
            for child in directory.iterdir():
                if child.is_dir() and not child.is_symlink():
                    shutil.rmtree(child, ignore_errors=True)
                else:
                    child.unlink(missing_ok=True)
        raise
    return BuildContext(
        directory=directory,
        dockerfile=dockerfile,
        base_image=base,
        package_name=manifest.name,
        package_version=manifest.version,
        package_digest=manifest.digest,
        default_tag=image_reference(manifest.name, manifest.version),
        labels=image_labels(manifest, base),
        requirements=tuple(requirements),
        runtime_stages=runtime,
        trust=trust,
    )
