"""Build a package's serving image (with the shared runtime image), push it, remove it.

Every container target ships the same image (:mod:`modelport.image`) and builds it the same way,
on any Docker Engine API (:class:`~.engine.Engine`: Docker, or podman's service), in two builds:

1. the **runtime image** ``localhost/modelport-runtime:<key>``: the venv, the entrypoint and the
   non-root user. The key (:func:`runtime_key`) covers everything it is made of, so every package
   with the same requirements, modelport and base image shares it: built once, then reused;
2. the **package image** on top of it: the package, verified, and its labels.

Then :func:`push_image` pushes it (credentials from ``~/.docker/config.json`` like the docker
CLI, or given) and gives the digest clouds should deploy (:attr:`PushedImage.pinned`), and
:func:`remove_image` removes an image only when it is ours and no container uses it. Engine
failures are raised as modelport's errors through :data:`ENGINE_ERRORS`.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelport.deployers.kit.engine import Engine, EngineError, EngineUnreachable, split_reference
from modelport.deployers.kit.errors import Classified, ErrorMap, Kind, kind_for_status
from modelport.deployers.kit.progress import Progress
from modelport.errors import UsageError
from modelport.image.context import BuildContext, write_context
from modelport.image.dockerfile import package_stage
from modelport.image.entrypoint import EXPECT_DIGEST_ENV

if TYPE_CHECKING:
    from modelport.model_format.package import Package

__all__ = [
    "ALLOW_CODE_ENV",
    "ENGINE_ERRORS",
    "LABEL_RUNTIME",
    "PACKAGE_ENV_KEYS",
    "RUNTIME_REPOSITORY",
    "BuiltImage",
    "PushedImage",
    "RegistryAuth",
    "RuntimeContext",
    "RuntimeImage",
    "build_package_image",
    "build_runtime_image",
    "package_env",
    "pip_cert_or_env",
    "push_image",
    "registry_of",
    "remove_image",
    "runtime_context",
    "runtime_key",
    "split_reference",
]

RUNTIME_REPOSITORY = "localhost/modelport-runtime"
#: The label holding a runtime image's key.
LABEL_RUNTIME = "dev.modelport.runtime"
DOCKER_HUB = "docker.io"
#: The address the docker CLI stores Docker Hub's credentials under.
DOCKER_HUB_URL = "https://index.docker.io/v1/"
_HUB_ALIASES = {"docker.io", "index.docker.io", "registry-1.docker.io"}
_TOKEN_USERNAME = "<token>"


def _classify(exc: BaseException) -> Kind | Classified | None:
    if isinstance(exc, EngineUnreachable):
        return Classified(
            Kind.UNAVAILABLE, hint="start Docker (or `podman system service`), or set DOCKER_HOST"
        )
    if isinstance(exc, EngineError):
        return kind_for_status(exc.status) or Kind.OTHER
    return None


#: How the engine's errors become modelport's.
ENGINE_ERRORS = ErrorMap("container engine", classify=_classify)

#: The opt-in the image's entrypoint reads for a package that runs code (a serve option's
#: variable; the pinned digest is the entrypoint's EXPECT_DIGEST_ENV).
ALLOW_CODE_ENV = "MODELPORT_ALLOW_CODE"
PACKAGE_ENV_KEYS = (EXPECT_DIGEST_ENV, ALLOW_CODE_ENV)


def pip_cert_or_env(given: Path | None) -> Path | None:
    """The CA bundle pip trusts during a build: the one given, else ``$PIP_CERT``, else none."""
    if given is not None:
        return given
    found = os.environ.get("PIP_CERT")
    return Path(found) if found else None


def package_env(package: Package) -> dict[str, str]:
    """The container environment that pins a package a cloud mounts (it is not baked in).

    The container refuses any other package than ``package`` (``MODELPORT_EXPECT_DIGEST``); a
    package that runs code gets the opt-in its loading was (``MODELPORT_ALLOW_CODE``).
    """
    env = {EXPECT_DIGEST_ENV: package.digest}
    if package.manifest.flavor.runs_code:
        env[ALLOW_CODE_ENV] = "1"
    return env


# --- references and credentials -----------------------------------------------------------------


def registry_of(ref: str) -> str:
    """The registry an image reference points at: ``docker.io`` when it names none."""
    first, slash, _ = split_reference(ref)[0].partition("/")
    if not slash or ("." not in first and ":" not in first and first != "localhost"):
        return DOCKER_HUB
    return DOCKER_HUB if first in _HUB_ALIASES else first


def _hostname(address: str) -> str:
    """A registry address as the docker CLI compares them: no scheme, no path, Hub aliased."""
    host = address.removeprefix("https://").removeprefix("http://").split("/", 1)[0]
    return DOCKER_HUB if host in _HUB_ALIASES else host


@dataclass(frozen=True)
class RegistryAuth:
    """Credentials for one registry: a user and password, or an identity token.

    Attributes:
        registry: the registry's address (``host[:port]``).
        username: the user (with ``password``).
        password: the password or access token.
        identity_token: an OAuth identity token (instead of a user and password).
    """

    registry: str
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    identity_token: str | None = field(default=None, repr=False)

    def header(self) -> str:
        """The ``X-Registry-Auth`` header value (encoded as docker-py's ``encode_header``)."""
        fields = {
            "username": self.username,
            "password": self.password,
            "identitytoken": self.identity_token,
            "serveraddress": self.registry,
        }
        document = json.dumps({k: v for k, v in fields.items() if v is not None})
        return base64.urlsafe_b64encode(document.encode("ascii")).decode("ascii")

    @classmethod
    def from_docker_config(cls, registry: str, config: Path | None = None) -> RegistryAuth | None:
        """The docker CLI's credentials for ``registry``, if it has any.

        Reads ``config`` (default ``$DOCKER_CONFIG/config.json``, else
        ``~/.docker/config.json``): a credential helper (``credHelpers``, else ``credsStore``)
        first, then the ``auths`` entries.

        Raises:
            UsageError: the file is malformed, or a credential helper is missing or failed.
        """
        if config is None:
            directory = os.environ.get("DOCKER_CONFIG") or Path.home() / ".docker"
            config = Path(directory) / "config.json"
        try:
            document = json.loads(config.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            raise UsageError(f"cannot read the Docker config {config}: {exc}") from None
        if not isinstance(document, dict):
            raise UsageError(f"the Docker config {config} is not a JSON object")
        wanted = _hostname(registry)
        helpers = _section(document, "credHelpers", config)
        helper = next(
            (v for k, v in helpers.items() if _hostname(k) == wanted), None
        ) or document.get("credsStore")
        if helper:
            found = _from_helper(str(helper), DOCKER_HUB_URL if wanted == DOCKER_HUB else registry)
            if found is not None:
                username, secret = found
                if username == _TOKEN_USERNAME:
                    return cls(registry, identity_token=secret)
                return cls(registry, username=username, password=secret)
        auths = _section(document, "auths", config)
        for key, entry in auths.items():
            if _hostname(key) != wanted:
                continue
            if not isinstance(entry, dict):
                raise UsageError(f"the Docker config {config} has a bad entry for {key!r}")
            if entry.get("identitytoken"):
                return cls(registry, identity_token=str(entry["identitytoken"]))
            if entry.get("auth"):
                try:
                    user, password = base64.b64decode(entry["auth"]).decode().split(":", 1)
                except (binascii.Error, UnicodeDecodeError, TypeError, ValueError):
                    raise UsageError(
                        f"the Docker config {config} has an 'auth' for {key!r} that is not "
                        "base64 of user:password"
                    ) from None
                return cls(registry, username=user, password=password)
            if entry.get("username"):
                return cls(registry, username=entry["username"], password=entry.get("password"))
        return None


def _section(document: dict[str, Any], key: str, config: Path) -> dict[str, Any]:
    """A section of the Docker config that must be an object (empty when absent)."""
    section = document.get(key) or {}
    if not isinstance(section, dict):
        raise UsageError(f"the Docker config {config} has a {key!r} that is not an object")
    return section


def _from_helper(helper: str, server: str) -> tuple[str, str] | None:
    """(username, secret) from ``docker-credential-<helper> get``; None when it has none."""
    program = f"docker-credential-{helper}"
    path = shutil.which(program)
    if path is None:
        raise UsageError(
            f"the Docker config names the credential helper {program!r}, which is not on PATH"
        )
    try:
        result = subprocess.run(
            [path, "get"], input=server, capture_output=True, text=True, timeout=60, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise UsageError(f"the credential helper {program} failed: {exc}") from None
    if result.returncode != 0:
        said = (result.stdout or result.stderr).strip()
        if "credentials not found" in said.lower():
            return None
        raise UsageError(f"the credential helper {program} failed for {server}: {said}")
    try:
        data = json.loads(result.stdout)
        return str(data["Username"]), str(data["Secret"])
    except (ValueError, KeyError, TypeError):
        raise UsageError(f"the credential helper {program} gave no Username and Secret") from None


# --- building -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BuiltImage:
    """A package image, built.

    Attributes:
        id: the image's id (``sha256:...``).
        ref: the reference it was tagged with (``repository:tag``).
        runtime_ref: the runtime image it starts from.
        runtime_reused: whether that runtime image was there already (not built now).
        package_digest: the digest of the package in it.
        base_image: the base image under the runtime.
    """

    id: str
    ref: str
    runtime_ref: str
    runtime_reused: bool
    package_digest: str
    base_image: str


@dataclass(frozen=True)
class PushedImage:
    """An image pushed to its registry.

    Attributes:
        ref: the reference pushed (``registry/repository:tag``).
        digest: the manifest's digest the engine reported, if it did.
    """

    ref: str
    digest: str | None

    @property
    def pinned(self) -> str:
        """``repository@sha256:...``: what clouds should deploy (``ref`` without a digest)."""
        return f"{split_reference(self.ref)[0]}@{self.digest}" if self.digest else self.ref


def runtime_key(engine: Engine, context: BuildContext) -> str:
    """What the runtime image is made of: its stages, requirements, modelport, base image.

    A sha256 over the runtime stages, then (name, NUL, bytes of) ``requirements.txt``,
    ``entrypoint.py``, each wheel and ``pip-ca.pem``, then the base image's id (its name when
    the engine does not have it); the first 20 hex digits.
    """
    digest = hashlib.sha256(context.runtime_stages.encode())
    directory = context.directory
    files = [directory / "requirements.txt", directory / "entrypoint.py"]
    files += sorted((directory / "wheels").iterdir())
    if (directory / "pip-ca.pem").exists():
        files.append(directory / "pip-ca.pem")
    for path in files:
        digest.update(path.name.encode() + b"\0")
        with open(path, "rb") as f:
            while chunk := f.read(1 << 20):
                digest.update(chunk)
    with ENGINE_ERRORS.translating(f"inspecting the base image {context.base_image}"):
        base = engine.image(context.base_image)
    digest.update(str(base["Id"] if base else context.base_image).encode())
    return digest.hexdigest()[:20]


def _build(engine: Engine, what: str, progress: Progress, **kwargs: Any) -> str:
    """One build, its steps reported to ``progress``; returns the image id."""

    def on_output(line: str) -> None:
        step = line.strip()
        if "STEP " in step or step.startswith("Step "):
            progress(f"{what}: {step[:120]}")

    with ENGINE_ERRORS.translating(f"building the {what}"):
        return engine.build(on_output=on_output, **kwargs)


@dataclass(frozen=True)
class RuntimeImage:
    """A package's runtime image: everything but the package, shared by every package alike.

    Alike: the same requirements, modelport and base image.

    Attributes:
        ref: its local reference, ``localhost/modelport-runtime:<key>``.
        key: what it is made of (:func:`runtime_key`): the tag a registry copy carries too.
        base_image: the base image under it.
        reused: whether it was there already (not built now).
    """

    ref: str
    key: str
    base_image: str
    reused: bool


@dataclass(frozen=True)
class RuntimeContext:
    """A written build context and the key of the runtime image it builds.

    Attributes:
        context: the build context (package, requirements, wheel, entrypoint, Dockerfile).
        key: the runtime image's key (:func:`runtime_key`).
    """

    context: BuildContext
    key: str
    platform: str | None = None

    @property
    def ref(self) -> str:
        """The runtime image's local reference."""
        return f"{RUNTIME_REPOSITORY}:{self.key}"


@contextlib.contextmanager
def runtime_context(
    engine: Engine,
    package: Package,
    *,
    base_image: str | None = None,
    index_url: str | None = None,
    pip_cert: Path | None = None,
    platform: str | None = None,
    progress: Progress | None = None,
) -> Iterator[RuntimeContext]:
    """Write the package's build context in a temporary directory and compute its runtime key.

    The key says which runtime image the package needs before anything is built: a target
    that keeps runtime images in a registry asks it for the key and builds nothing when it is
    there. The directory is removed when the block ends. ``platform`` (``linux/arm64``) builds
    for another platform than the engine's, and is part of the key.

    Raises:
        PackageError: the package fails verification.
        DeploymentError: the engine cannot inspect the base image.
    """
    with tempfile.TemporaryDirectory(prefix="modelport-image-") as tmp:
        (progress or Progress())(f"writing the build context for {package.name} {package.version}")
        context = write_context(
            package,
            Path(tmp) / "context",
            base_image=base_image,
            index_url=index_url,
            pip_cert=pip_cert,
        )
        # Keyed on the package-independent stages only: packages that need the same runtime
        # share one runtime image.
        key = runtime_key(engine, context)
        if platform:
            key = hashlib.sha256(f"{key}\0{platform}".encode()).hexdigest()[:20]
        yield RuntimeContext(context, key, platform)


def build_runtime_image(
    engine: Engine, prepared: RuntimeContext, *, progress: Progress | None = None
) -> RuntimeImage:
    """The runtime image of ``prepared``: reused when the engine has it, else built.

    Raises:
        DeploymentError: the build failed, or the engine cannot be reached.
    """
    progress = progress or Progress()
    context = prepared.context
    with ENGINE_ERRORS.translating(f"inspecting the runtime image {prepared.ref}"):
        reused = engine.image(prepared.ref) is not None
    if reused:
        progress(f"reusing the runtime image {prepared.ref}")
    else:
        progress(f"building the runtime image {prepared.ref} on {context.base_image}")
        _build(
            engine,
            "runtime image",
            progress,
            context=context.directory,
            tag=prepared.ref,
            target="runtime",
            labels={LABEL_RUNTIME: prepared.key},
            platform=prepared.platform,
        )
    return RuntimeImage(prepared.ref, prepared.key, context.base_image, reused)


def build_package_image(
    engine: Engine,
    package: Package,
    *,
    ref: str,
    base_image: str | None = None,
    index_url: str | None = None,
    pip_cert: Path | None = None,
    labels: Mapping[str, str] | None = None,
    progress: Progress | None = None,
) -> BuiltImage:
    """Build the package's serving image as ``ref``, building the runtime image if missing.

    Args:
        engine: the engine to build on.
        package: the package to serve.
        ref: the image's reference, ``repository[:tag]`` (``latest`` when no tag).
        base_image: what to build on (needs ``python3`` and its ``venv``); default
            ``python:<major.minor>-slim`` of the Python that packed the package.
        index_url: the Python package index the runtime build installs from.
        pip_cert: a CA bundle pip trusts during the runtime build.
        labels: labels for the package image, on top of the package's own.
        progress: where the steps are reported.

    Raises:
        DeploymentError: a build failed (the message says which, with its last output lines),
            or the engine cannot be reached (:class:`~modelport.errors.TargetUnavailableError`).
        PackageError: the package fails verification.
    """
    progress = progress or Progress()
    if "@" in ref:
        raise UsageError(f"cannot build the image {ref}: a reference with a digest is not a tag")
    ref = ":".join(split_reference(ref))
    with runtime_context(
        engine,
        package,
        base_image=base_image,
        index_url=index_url,
        pip_cert=pip_cert,
        progress=progress,
    ) as prepared:
        runtime = build_runtime_image(engine, prepared, progress=progress)
        context = prepared.context
        # The same last stage as the context's Dockerfile, on the runtime image: the result is
        # what `docker build` of the context gives.
        dockerfile = context.directory / "Dockerfile.package"
        dockerfile.write_text(
            package_stage(
                package.manifest,
                from_image=runtime.ref,
                base_image=context.base_image,
                trust=context.trust,
            ),
            encoding="utf-8",
        )
        progress(f"building the image {ref}")
        image_id = _build(
            engine,
            "image",
            progress,
            context=context.directory,
            tag=ref,
            dockerfile=dockerfile.name,
            labels=labels,
        )
    return BuiltImage(
        id=image_id,
        ref=ref,
        runtime_ref=runtime.ref,
        runtime_reused=runtime.reused,
        package_digest=context.package_digest,
        base_image=context.base_image,
    )


# --- pushing and removing ------------------------------------------------------------------------


def push_image(
    engine: Engine,
    ref: str,
    *,
    auth: RegistryAuth | None = None,
    progress: Progress | None = None,
) -> PushedImage:
    """Push ``ref`` to its registry.

    Args:
        engine: the engine holding the image.
        ref: ``registry/repository[:tag]``.
        auth: the credentials; default the docker CLI's for the registry
            (:meth:`RegistryAuth.from_docker_config`), or none.
        progress: where the push is reported.

    Raises:
        DeploymentError: the push failed.
        UsageError: the Docker config is malformed or its credential helper failed.
    """
    if auth is None:
        auth = RegistryAuth.from_docker_config(registry_of(ref))
    (progress or Progress())(f"pushing {ref}")
    with ENGINE_ERRORS.translating(f"pushing {ref}"):
        digest = engine.push(ref, auth_header=auth.header() if auth else None)
    return PushedImage(ref=ref, digest=digest)


def remove_image(
    engine: Engine, image: str | None, *, labels: Mapping[str, str] | None = None
) -> bool:
    """Remove an image, with all its tags, when it is ours and unused; True when removed.

    Args:
        engine: the engine holding it.
        image: its id or reference; None does nothing.
        labels: labels it must have (``key: value``), else it is left alone.

    It stays when a container, in any state, still uses it.
    """
    if not image:
        return False
    with ENGINE_ERRORS.translating(f"removing the image {image}"):
        found = engine.image(image)
        if found is None:
            return False
        have = (found.get("Config") or {}).get("Labels") or found.get("Labels") or {}
        if any(have.get(key) != value for key, value in (labels or {}).items()):
            return False
        image_id = str(found["Id"])
        # podman 4 matches "ancestor" on the bare hex id only (Docker takes either); and a
        # forced removal on podman removes the containers too, so look at every container's
        # image as well.
        ancestor = {"ancestor": [image_id.removeprefix("sha256:")]}
        if engine.containers(all=True, filters=ancestor) or any(
            c.get("ImageID") == image_id for c in engine.containers(all=True)
        ):
            return False
        # force: it may carry several tags (ours and a registry's).
        return engine.remove_image(image_id, force=True)
