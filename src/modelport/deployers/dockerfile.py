"""Docker build contexts for serving images: a Dockerfile, the package, pinned requirements.

:func:`write_context` writes everything ``docker build`` (or ``buildah``/``podman build``) needs
to make a serving image of one package, and nothing here needs docker-py or a daemon::

    DIR/
      Dockerfile        multi-stage: a build stage makes a venv, the final stage copies it
      requirements.txt  every runtime requirement, pinned (the package's, then modelport's)
      wheels/           modelport itself, as a wheel of the modelport running here
      entrypoint.py     verifies the package, then runs `modelport serve` (accepts `serve`)
      package/          the package, as a directory (an archive is extracted, safely)

The image (see :func:`render_dockerfile`): the runtime only, in a venv made with
``python3 -m venv`` (so the same Dockerfile works on ``python:*-slim`` and on a plain Debian with
``python3`` and ``python3-venv``); a non-root user; ``EXPOSE 8080``; a ``HEALTHCHECK`` on the
ready route; an exec-form ``ENTRYPOINT``; the SageMaker ``accept-bind-to-port`` label; OCI labels
with the package's name, version and digest; the package verified at build time and at start.
The only thing a build downloads is Python packages, from the index given (``--index-url``).
"""

from __future__ import annotations

import base64
import hashlib
import importlib.metadata
import io
import json
import os
import re
import shutil
import sys
import zipfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from modelport.errors import IntegrityError, PackageError, UsageError

if TYPE_CHECKING:
    from modelport.model_format.manifest import Manifest
    from modelport.model_format.package import Package

#: Where things live inside the image.
VENV = "/opt/venv"
APP_DIR = "/opt/modelport"
PACKAGE_DIR = f"{APP_DIR}/package"
ENTRYPOINT = f"{APP_DIR}/entrypoint.py"
#: The user the server runs as (a fixed UID, so platforms that check for non-root can see it).
USER_NAME = "modelport"
USER_ID = 10001
CONTAINER_PORT = 8080

#: Image labels every modelport image carries (besides the OCI ones).
LABEL_DIGEST = "dev.modelport.package.digest"
LABEL_NAME = "dev.modelport.package.name"
LABEL_VERSION = "dev.modelport.package.version"
LABEL_FLAVOR = "dev.modelport.package.flavor"
LABEL_MODELPORT = "dev.modelport.version"
LABEL_SAGEMAKER_PORT = "com.amazonaws.sagemaker.capabilities.accept-bind-to-port"

#: Extras of modelport the image installs: the server.
RUNTIME_EXTRAS = ("serve",)
#: Fixed zip timestamps: the same modelport gives the same wheel, so builds hit the layer cache.
_ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)


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


# --- names --------------------------------------------------------------------------------------


def default_base_image(python_version: str | None = None) -> str:
    """The official slim Python image for the packing Python's ``major.minor``.

    Args:
        python_version: e.g. ``"3.11.7"`` (a manifest's ``python``); None or empty means the
            Python running this code.
    """
    match = re.match(r"^(\d+)\.(\d+)", python_version or "")
    if match:
        return f"python:{match.group(1)}.{match.group(2)}-slim"
    return f"python:{sys.version_info.major}.{sys.version_info.minor}-slim"


def image_reference(name: str, version: str) -> str:
    """``<name>:<version>`` turned into a valid Docker image reference.

    Repository names allow lowercase letters, digits and ``._-`` separators; tags allow
    ``[A-Za-z0-9_.-]`` up to 128 characters and cannot start with ``.`` or ``-``.
    """
    repo = re.sub(r"[^a-z0-9._-]+", "-", name.lower())
    repo = re.sub(r"[._-]{2,}", "-", repo).strip("._-") or "model"
    tag = re.sub(r"[^A-Za-z0-9_.-]+", "-", version).lstrip(".-")[:128] or "latest"
    return f"modelport/{repo}:{tag}"


# --- requirements -------------------------------------------------------------------------------


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _installed_version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def pinned_requirements(
    package_requirements: Sequence[str], extras: Iterable[str] = RUNTIME_EXTRAS
) -> list[str]:
    """Every requirement the image installs, pinned, one ``name==version`` per distribution.

    The package's own pinned requirements come first and win. Then modelport's runtime (its core
    dependencies and ``extras``) and everything those need, walked through the metadata of what is
    installed here and pinned to the installed versions, so an image built today and one built
    next month get the same libraries. A distribution the package pins to a version other than the
    one installed here is a leaf of the walk: pip resolves what that version needs.

    Raises:
        PackageError: a package requirement is not a valid requirement string.
    """
    from packaging.requirements import InvalidRequirement, Requirement

    pins: dict[str, str] = {}  # canonical name -> requirement line
    queue: list[tuple[str, frozenset[str]]] = []  # (distribution, extras) whose deps to walk
    for text in package_requirements:
        try:
            req = Requirement(text)
        except InvalidRequirement as exc:
            raise PackageError(f"invalid requirement in the package: {text!r} ({exc})") from None
        if req.marker is not None and not req.marker.evaluate():
            continue
        name = _canonical(req.name)
        pins.setdefault(name, text.split(";")[0].strip())
        local = _installed_version(req.name)
        if local is not None and req.specifier.contains(local, prereleases=True):
            queue.append((req.name, frozenset(req.extras)))

    queue.append(("modelport", frozenset(extras)))
    walked: set[tuple[str, frozenset[str]]] = set()
    while queue:
        dist_name, dist_extras = queue.pop()
        if (_canonical(dist_name), dist_extras) in walked:
            continue
        walked.add((_canonical(dist_name), dist_extras))
        try:
            requires = importlib.metadata.distribution(dist_name).requires or []
        except importlib.metadata.PackageNotFoundError:
            continue
        for text in requires:
            req = Requirement(text)
            if req.marker is not None and not any(
                req.marker.evaluate({"extra": e}) for e in (dist_extras or {""})
            ):
                continue
            name = _canonical(req.name)
            if name == "modelport":  # modelport[serve] inside another extra: walk it as well
                queue.append(("modelport", frozenset(req.extras)))
                continue
            local = _installed_version(req.name)
            if name not in pins:
                pins[name] = f"{name}=={local}" if local else str(req).split(";")[0].strip()
            elif not pins[name].endswith(f"=={local}"):
                continue  # pinned by the package to another version: pip resolves its needs
            if local is not None:
                queue.append((req.name, frozenset(req.extras)))
    pins.pop("modelport", None)  # installed from the wheel in the context
    return [pins[name] for name in sorted(pins)]


# --- the modelport wheel ------------------------------------------------------------------------


def _record_hash(data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"sha256={digest}"


def build_modelport_wheel(dest: Path) -> Path:
    """Write a wheel of the modelport running here (editable or not) into ``dest``.

    The image must run the same modelport that made the context, which may be a source checkout
    that no index has. Its files and metadata are all installed here, so this zips them the way
    ``pip wheel`` would (pure Python, ``py3-none-any``), deterministically, without setuptools,
    a build backend or network access.

    Returns:
        The wheel's path.
    """
    import modelport

    dist = importlib.metadata.distribution("modelport")
    version = dist.version
    root = Path(modelport.__file__).resolve().parent
    files: list[tuple[str, bytes]] = []
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root)
        if (
            not path.is_file()
            or "__pycache__" in rel.parts
            or path.suffix in (".pyc", ".pyo")
            or any(part.startswith(".") for part in rel.parts)
        ):
            continue
        files.append((f"modelport/{rel.as_posix()}", path.read_bytes()))

    info = f"modelport-{version}.dist-info"
    metadata = (
        dist.read_text("METADATA")
        or f"Metadata-Version: 2.1\nName: modelport\nVersion: {version}\n"
    )
    files.append((f"{info}/METADATA", metadata.encode()))
    entry_points = dist.read_text("entry_points.txt")
    if entry_points:
        files.append((f"{info}/entry_points.txt", entry_points.encode()))
    wheel_meta = (
        "Wheel-Version: 1.0\nGenerator: modelport\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
    )
    files.append((f"{info}/WHEEL", wheel_meta.encode()))
    files.append((f"{info}/top_level.txt", b"modelport\n"))
    record = "".join(f"{name},{_record_hash(data)},{len(data)}\n" for name, data in files)
    record += f"{info}/RECORD,,\n"
    files.append((f"{info}/RECORD", record.encode()))

    dest.mkdir(parents=True, exist_ok=True)
    wheel = dest / f"modelport-{version}-py3-none-any.whl"
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in files:
            entry = zipfile.ZipInfo(name, date_time=_ZIP_EPOCH)
            entry.external_attr = 0o644 << 16
            entry.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(entry, data)
    wheel.write_bytes(buffer.getvalue())
    return wheel


# --- the Dockerfile -----------------------------------------------------------------------------


def _json_list(items: Sequence[str]) -> str:
    return json.dumps(list(items))


def _label_lines(labels: Mapping[str, str]) -> str:
    body = " \\\n      ".join(f"{key}={json.dumps(value)}" for key, value in labels.items())
    return f"LABEL {body}"


def image_labels(manifest: Manifest, base_image: str) -> dict[str, str]:
    """The labels of a package's image: OCI, SageMaker and modelport's own."""
    from modelport import __version__

    return {
        "org.opencontainers.image.title": manifest.name,
        "org.opencontainers.image.version": manifest.version,
        "org.opencontainers.image.description": (
            f"modelport serving image for {manifest.name} {manifest.version}"
        ),
        "org.opencontainers.image.base.name": base_image,
        LABEL_NAME: manifest.name,
        LABEL_VERSION: manifest.version,
        LABEL_DIGEST: manifest.digest,
        LABEL_FLAVOR: manifest.flavor.name,
        LABEL_MODELPORT: __version__,
        LABEL_SAGEMAKER_PORT: "true",
    }


def runtime_stages(
    *,
    base_image: str,
    wheel_name: str,
    index_url: str | None = None,
    pip_cert: str | None = None,
    remove_from_venv: Sequence[str] = ("pip",),
) -> str:
    """The package-independent stages: ``build`` (the venv) and ``runtime`` (the image base).

    Every package served by the same modelport, requirements and base image shares them, so the
    layer cache (or the deployer's runtime image) makes them a one-time cost.

    Args:
        base_image: the image both stages start from; it needs ``python3`` with ``venv``.
        wheel_name: modelport's wheel, under ``wheels/`` in the context.
        index_url: the Python package index to install from (pip's ``--index-url``); None for
            pip's default. ``--build-arg PIP_INDEX_URL=...`` overrides it at build time.
        pip_cert: a CA bundle in the context that pip trusts (for an index behind a
            TLS-inspecting proxy); used in the build stage only, never in the image.
        remove_from_venv: distributions uninstalled from the venv once everything is in (the
            installer itself is not part of the runtime).
    """
    pip = [f"{VENV}/bin/python", "-m", "pip"]
    install = [*pip, "install", "--no-cache-dir", "--disable-pip-version-check"]
    env_lines = [
        f"PATH={VENV}/bin:$PATH",
        "PYTHONUNBUFFERED=1",
        "PYTHONDONTWRITEBYTECODE=1",
        "MODELPORT_HOST=0.0.0.0",
        f"MODELPORT_PACKAGE={PACKAGE_DIR}",
    ]
    cert = (
        "# The CA bundle pip trusts for the index; it stays in this stage, out of the image.\n"
        f"COPY {pip_cert} /tmp/modelport/{pip_cert}\n"
        f"ENV PIP_CERT=/tmp/modelport/{pip_cert}\n"
        if pip_cert
        else ""
    )
    uninstall = (
        f"RUN {_json_list([*pip, 'uninstall', '--yes', *remove_from_venv])}\n"
        if remove_from_venv
        else ""
    )
    healthcheck = [f"{VENV}/bin/python", ENTRYPOINT, "healthcheck"]
    return f"""\
ARG BASE_IMAGE={base_image}

# --- build: a venv with the runtime only (pinned), then modelport itself -----------------------
FROM ${{BASE_IMAGE}} AS build
# pip reads PIP_INDEX_URL: the only place this build downloads from.
ARG PIP_INDEX_URL={index_url or "https://pypi.org/simple"}
{cert}\
# A venv, never the system Python: works on python:*-slim and on Debian's python3 + python3-venv.
RUN ["python3", "-m", "venv", "{VENV}"]
COPY requirements.txt /tmp/modelport/requirements.txt
RUN {_json_list([*install, "--requirement", "/tmp/modelport/requirements.txt"])}
COPY wheels/ /tmp/modelport/wheels/
RUN {_json_list([*install, "--no-deps", "--no-index", f"/tmp/modelport/wheels/{wheel_name}"])}
{uninstall}\

# --- runtime: the venv, the entrypoint and a non-root user; the same for every package ---------
FROM ${{BASE_IMAGE}} AS runtime
RUN groupadd --system --gid {USER_ID} {USER_NAME} \\
 && useradd --no-log-init --system --uid {USER_ID} --gid {USER_ID} --home-dir {APP_DIR} \\
      --no-create-home --shell /usr/sbin/nologin {USER_NAME}
COPY --from=build {VENV} {VENV}
ENV {" ".join(env_lines)}
COPY entrypoint.py {ENTRYPOINT}
LABEL {LABEL_SAGEMAKER_PORT}="true"
USER {USER_ID}:{USER_ID}
WORKDIR {APP_DIR}
EXPOSE {CONTAINER_PORT}
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \\
  CMD {_json_list(healthcheck)}
ENTRYPOINT {_json_list([f"{VENV}/bin/python", ENTRYPOINT])}
CMD ["serve"]
"""


def package_stage(manifest: Manifest, *, from_image: str, base_image: str) -> str:
    """The last stage: the package on top of the runtime, verified, and the image's labels.

    Args:
        manifest: the package's manifest (name, version, digest, flavor).
        from_image: what it starts from: ``runtime`` (the stage) or a runtime image.
        base_image: the base image, named in a label.
    """
    env = [f"MODELPORT_PACKAGE_DIGEST={manifest.digest}"]
    if manifest.flavor.name != "onnx":
        # A python-flavor package runs the code it carries; building its image is the opt-in.
        env.append("MODELPORT_ALLOW_CODE=1")
    return f"""\
# --- the package: copied read-only (owned by root), verified as the server's user --------------
FROM {from_image}
# The digest the package must have; the entrypoint checks it (and every file) at each start.
ENV {" ".join(env)}
COPY package/ {PACKAGE_DIR}/
RUN {_json_list([f"{VENV}/bin/python", ENTRYPOINT, "verify"])}
{_label_lines(image_labels(manifest, base_image))}
"""


def _header(manifest: Manifest) -> str:
    return (
        f"# Serving image for the modelport package {manifest.name} {manifest.version}\n"
        f"# ({manifest.digest}),\n"
        "# written by `modelport dockerfile`. Build: "
        f"docker build -t {image_reference(manifest.name, manifest.version)} .\n"
    )


def render_dockerfile(
    manifest: Manifest,
    *,
    base_image: str,
    wheel_name: str,
    index_url: str | None = None,
    pip_cert: str | None = None,
    remove_from_venv: Sequence[str] = ("pip",),
) -> str:
    """The Dockerfile of a package's serving image: :func:`runtime_stages` + :func:`package_stage`.

    Args are those of :func:`runtime_stages`, plus the package's ``manifest``.
    """
    runtime = runtime_stages(
        base_image=base_image,
        wheel_name=wheel_name,
        index_url=index_url,
        pip_cert=pip_cert,
        remove_from_venv=remove_from_venv,
    )
    return _compose(manifest, runtime, base_image)


def _compose(manifest: Manifest, runtime: str, base_image: str) -> str:
    final = package_stage(manifest, from_image="runtime", base_image=base_image)
    return f"{_header(manifest)}{runtime}\n{final}"


# --- the context --------------------------------------------------------------------------------


def _copy_package(source: Path, manifest: Manifest, dest: Path) -> None:
    """Copy a package directory's manifest and listed files (nothing else) into ``dest``."""
    from modelport.model_format.manifest import MANIFEST_NAME

    dest.mkdir(parents=True)
    shutil.copyfile(source / MANIFEST_NAME, dest / MANIFEST_NAME)
    for rel in sorted(manifest.files):
        target = dest.joinpath(*rel.split("/"))
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source.joinpath(*rel.split("/")), target)


def _stage_package(package: str | os.PathLike[str] | Package, dest: Path) -> Manifest:
    """Put a verified copy of the package, as a directory, at ``dest``."""
    from modelport.model_format.archive import directory_problems, extract_archive
    from modelport.model_format.package import Package, verify

    if isinstance(package, Package):
        _copy_package(package.root, package.manifest, dest)
        manifest = package.manifest
    else:
        path = Path(package)
        report = verify(path)  # raises PackageError when unreadable
        if not report.ok:
            raise IntegrityError(report.problems)
        if path.is_dir():
            _copy_package(path, report.manifest, dest)
        else:
            dest.mkdir(parents=True)
            extract_archive(path, dest)
        manifest = report.manifest
    # What lands in the context is what the image gets: check the copy, not only the source.
    problems = directory_problems(dest, manifest)
    if problems:
        raise IntegrityError(problems)
    return manifest


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
        requirements = pinned_requirements(manifest.requirements)
        wheel = build_modelport_wheel(directory / "wheels")
        keep = {_canonical(r.split("==")[0]) for r in requirements}
        remove = [d for d in ("pip", "setuptools") if d not in keep]
        from modelport import __version__

        # Nothing package-specific but the requirements themselves: packages that need the same
        # runtime share the build stage's layers.
        (directory / "requirements.txt").write_text(
            f"# The runtime of a modelport {__version__} serving image: the package's own pinned\n"
            "# requirements, then modelport's server and everything it needs, pinned to the\n"
            "# versions installed where this build context was written.\n"
            + "".join(f"{r}\n" for r in requirements),
            encoding="utf-8",
        )
        cert_name = None
        if pip_cert is not None:
            cert_name = "pip-ca.pem"
            try:
                shutil.copyfile(pip_cert, directory / cert_name)
            except OSError as exc:
                raise UsageError(f"cannot read the CA bundle {pip_cert}: {exc}") from None
        source = Path(__file__).with_name("image_entrypoint.py")
        shutil.copyfile(source, directory / "entrypoint.py")
        runtime = runtime_stages(
            base_image=base,
            wheel_name=wheel.name,
            index_url=index_url,
            pip_cert=cert_name,
            remove_from_venv=remove,
        )
        dockerfile = directory / "Dockerfile"
        dockerfile.write_text(_compose(manifest, runtime, base), encoding="utf-8")
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
    )
