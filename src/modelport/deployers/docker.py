"""The ``docker`` target: build a serving image, run it as a container, manage it.

Everything goes through the Docker Engine API with docker-py (``DOCKER_HOST``), so the same code
drives Docker and podman's Docker-compatible service (``podman system service``).

``create`` writes the build context (:mod:`modelport.deployers.dockerfile`), then builds in two
steps: the **runtime image** (venv, entrypoint, non-root user: the same for every package served
by this modelport with these requirements and base image, tagged
``localhost/modelport-runtime:<key>`` and reused as a cache), then the **package image** on top of
it (the package, verified, and the labels). It optionally pushes the package image, runs it as the
container ``modelport-<name>`` with the server's port published on ``host:port`` (127.0.0.1 and
a free port by default), and waits until ``/ping`` answers 200.

Docker's own state is the only state: containers and images carry labels (deployment name,
package digest, creation and update times), so ``get``, ``list``, ``logs``, ``predict``,
``update`` and ``delete`` work from any machine that reaches the same engine.

- ``get`` reports the container's state and the server's readiness (probed over HTTP: podman
  without systemd never runs an image's HEALTHCHECK, so Docker's health status is a detail only).
- ``update`` builds the new image, starts it as ``modelport-<name>-next``, waits until it is ready,
  then removes the old container and image and renames the new one. With a fixed ``port`` the
  old container is stopped first (one host port cannot be published twice) and restarted if the
  new one fails. An unchanged package digest changes nothing.
- ``delete`` stops and removes the containers and the package images; the shared runtime image
  stays, like a base image.
- A failed ``create`` or ``update`` removes the containers and images it made, and says why,
  with the container's last log lines.
"""

from __future__ import annotations

import builtins
import contextlib
import hashlib
import os
import re
import socket
import tempfile
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelport.deployers._http import (
    PROBE_TIMEOUT_S,
    client_host,
    predict_over_http,
    probe_status,
)
from modelport.deployers.base import (
    Deployer,
    Deployment,
    DeploymentStatus,
    PlannedAction,
    utcnow,
)
from modelport.deployers.dockerfile import (
    CONTAINER_PORT,
    LABEL_DIGEST,
    BuildContext,
    image_reference,
    package_stage,
    write_context,
)
from modelport.errors import (
    DeploymentError,
    DeploymentExists,
    DeploymentNotFound,
    MissingDependencyError,
    UsageError,
)

if TYPE_CHECKING:
    from modelport.model_format.package import Package

#: Labels on containers and package images.
LABEL_TARGET = "dev.modelport.target"
LABEL_DEPLOYMENT = "dev.modelport.deployment"
LABEL_CREATED = "dev.modelport.created-at"
LABEL_UPDATED = "dev.modelport.updated-at"
LABEL_RUNTIME = "dev.modelport.runtime"
TARGET = "docker"
RUNTIME_REPOSITORY = "localhost/modelport-runtime"
READY_ROUTE = "/ping"
#: docker-py's per-read timeout: a build step may print nothing for minutes (pip installing).
API_TIMEOUT_S = 900
_PUSHED_DIGEST = re.compile(r"digest: (sha256:[0-9a-f]{64})")


@dataclass(frozen=True)
class DockerConfig:
    """Options of the ``docker`` target."""

    image: str | None = field(
        default=None,
        metadata={
            "help": "Image reference REPO[:TAG] to build (and push); default "
            "modelport/<package name>:<package version>. Include the registry to push, "
            "e.g. registry.example.com/team/model:1."
        },
    )
    base_image: str | None = field(
        default=None,
        metadata={
            "help": "Image to build on (needs python3 and its venv module); default "
            "python:<major.minor of the packing Python>-slim."
        },
    )
    push: bool = field(
        default=False,
        metadata={"help": "Push the image after building (credentials: ~/.docker/config.json)."},
    )
    host_ip: str = field(
        default="127.0.0.1",
        metadata={"help": "Host address the container's port is published on (0.0.0.0: all)."},
    )
    port: int = field(
        default=0,
        metadata={"help": "Host port to publish the server on; 0 picks a free one."},
    )
    index_url: str | None = field(
        default=None,
        metadata={"help": "Python package index the image build installs from (pip --index-url)."},
    )
    pip_cert: Path | None = field(
        default=None,
        metadata={
            "help": "CA bundle pip trusts during the build (an index behind a TLS-inspecting "
            "proxy); default $PIP_CERT. Used by the build stage only, never in the image."
        },
    )
    docker_host: str | None = field(
        default=None,
        metadata={
            "help": "Docker Engine API address, e.g. unix:///run/podman/podman.sock; "
            "default $DOCKER_HOST, else Docker's default socket."
        },
    )
    env: dict[str, str] = field(
        default_factory=dict,
        metadata={
            "help": 'Extra container environment, as a JSON object, e.g. {"MODELPORT_WORKERS": '
            '"2"}; SAGEMAKER_BIND_TO_PORT or AIP_HTTP_PORT also move the container port.'
        },
    )
    startup_timeout: float = field(
        default=180.0,
        metadata={"help": "Seconds a new container may take to answer /ping with 200."},
    )
    stop_timeout: int = field(
        default=10,
        metadata={"help": "Seconds a stopping container may drain before it is killed."},
    )

    def __post_init__(self) -> None:
        if not 0 <= self.port <= 65535:
            raise ValueError(f"port must be between 0 and 65535, got {self.port}")
        if self.startup_timeout <= 0:
            raise ValueError("startup_timeout must be positive")
        if self.stop_timeout < 0:
            raise ValueError("stop_timeout must not be negative")
        pip_cert: Any = self.pip_cert  # the Python API may pass a str
        if pip_cert is not None and not isinstance(pip_cert, Path):
            object.__setattr__(self, "pip_cert", Path(pip_cert))


# --- small helpers ------------------------------------------------------------------------------


def _check_unix_socket(path: str) -> None:
    """Connect to a unix socket once, closing it (docker-py leaks the socket of a failed connect).

    Raises:
        OSError: nothing listens there.
    """
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(PROBE_TIMEOUT_S)
        sock.connect(path)


def _parse_time(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        return None


def container_name(deployment: str, *, next_: bool = False) -> str:
    """The container of a deployment (``modelport-<name>``), or its successor during an update."""
    return f"modelport-{deployment}-next" if next_ else f"modelport-{deployment}"


def container_port(env: Mapping[str, str]) -> int:
    """The port the server listens on inside the container, given the container's environment."""
    from modelport.serving.config import resolve_port

    return resolve_port(None, env) if env else CONTAINER_PORT


def _hash_files(digest: Any, paths: Iterable[Path]) -> None:
    for path in paths:
        digest.update(path.name.encode() + b"\0")
        with open(path, "rb") as f:
            while chunk := f.read(1 << 20):
                digest.update(chunk)


class DockerDeployer(Deployer[DockerConfig]):
    """Build a serving image of the package and run it as a container (Docker or podman).

    Reaches the engine through the Docker Engine API (docker-py) at ``docker_host``
    (default ``$DOCKER_HOST``); podman's ``podman system service`` works the same as Docker.
    """

    name = TARGET
    config_class = DockerConfig

    def __init__(self, config: DockerConfig | None = None, **kwargs: Any) -> None:
        super().__init__(config, **kwargs)
        self._docker: Any = None

    # --- the engine -----------------------------------------------------------------------

    @property
    def client(self) -> Any:
        """The docker-py client (``docker.DockerClient``), connected on first use.

        Raises:
            MissingDependencyError: docker-py is not installed.
            DeploymentError: the engine does not answer.
        """
        if self._docker is None:
            try:
                import docker
            except ImportError:
                raise MissingDependencyError("the docker target", "docker", "docker") from None
            base_url = self.config.docker_host or os.environ.get("DOCKER_HOST") or None
            client = None
            try:
                if base_url and base_url.startswith("unix://"):
                    _check_unix_socket(base_url.removeprefix("unix://"))
                if base_url:
                    client = docker.DockerClient(base_url=base_url, timeout=API_TIMEOUT_S)
                else:
                    client = docker.from_env(timeout=API_TIMEOUT_S)
                client.ping()
            except Exception as exc:
                if client is not None:
                    client.close()
                where = base_url or "the default Docker socket"
                raise DeploymentError(
                    f"cannot reach the Docker Engine API at {where}: {exc}. Start Docker (or "
                    "`podman system service`) or set DOCKER_HOST / -C docker_host=..."
                ) from None
            self._docker = client
        return self._docker

    def _errors(self) -> tuple[type[BaseException], ...]:
        import docker.errors

        return (docker.errors.DockerException,)

    def _not_found(self) -> type[BaseException]:
        import docker.errors

        cls: type[BaseException] = docker.errors.NotFound
        return cls

    def _containers(self, name: str | None = None) -> builtins.list[Any]:
        labels = [f"{LABEL_TARGET}={TARGET}"]
        if name is not None:
            labels.append(f"{LABEL_DEPLOYMENT}={name}")
        return list(self.client.containers.list(all=True, filters={"label": labels}))

    def _container(self, name: str, *, next_: bool = False) -> Any | None:
        try:
            container = self.client.containers.get(container_name(name, next_=next_))
        except self._not_found():
            return None
        labels = container.labels or {}
        if labels.get(LABEL_TARGET) != TARGET or labels.get(LABEL_DEPLOYMENT) != name:
            return None  # a container of that name that modelport did not make
        return container

    # --- building -------------------------------------------------------------------------

    def _image_ref(self, package: Package) -> str:
        ref = self.config.image or image_reference(package.name, package.version)
        return ref if self._has_tag(ref) else f"{ref}:latest"

    @staticmethod
    def _has_tag(ref: str) -> bool:
        last = ref.rsplit("/", 1)[-1]
        return ":" in last or "@" in last

    @staticmethod
    def _split_ref(ref: str) -> tuple[str, str]:
        repository, _, tag = ref.rpartition(":")
        return repository, tag

    def _pip_cert(self) -> Path | None:
        if self.config.pip_cert is not None:
            return self.config.pip_cert
        env = os.environ.get("PIP_CERT")
        return Path(env) if env else None

    def _runtime_key(self, context: BuildContext) -> str:
        """What the runtime image depends on: its stages, requirements, modelport, base image."""
        digest = hashlib.sha256(context.runtime_stages.encode())
        directory = context.directory
        files = [directory / "requirements.txt", directory / "entrypoint.py"]
        files += sorted((directory / "wheels").iterdir())
        if (directory / "pip-ca.pem").exists():
            files.append(directory / "pip-ca.pem")
        _hash_files(digest, files)
        try:
            digest.update(str(self.client.images.get(context.base_image).id).encode())
        except self._not_found():
            digest.update(context.base_image.encode())
        return digest.hexdigest()[:20]

    def _build(self, what: str, **kwargs: Any) -> str:
        """Run one build through the API, reporting steps as progress; returns the image id.

        Raises:
            DeploymentError: the build failed (with the end of its log).
        """
        log: list[str] = []
        image_id: str | None = None
        try:
            for chunk in self.client.api.build(rm=True, forcerm=True, decode=True, **kwargs):
                if "stream" in chunk:
                    text = str(chunk["stream"])
                    log.extend(line for line in text.splitlines() if line.strip())
                    step = text.strip()
                    if "STEP " in step or step.startswith("Step "):
                        self.progress(f"{what}: {step.splitlines()[0][:120]}")
                if "aux" in chunk and isinstance(chunk["aux"], dict):
                    image_id = chunk["aux"].get("ID") or image_id
                if "error" in chunk or "errorDetail" in chunk:
                    detail = chunk.get("errorDetail") or {}
                    message = chunk.get("error") or detail.get("message") or "unknown error"
                    tail = "\n".join(f"  {line}" for line in log[-15:])
                    raise DeploymentError(f"building the {what} failed: {message}\n{tail}")
        except self._errors() as exc:
            raise DeploymentError(f"building the {what} failed: {exc}") from None
        if image_id is None:
            tag = kwargs.get("tag")
            if not tag:
                raise DeploymentError(f"building the {what} gave no image id")
            image_id = str(self.client.images.get(tag).id)
        return image_id

    def _build_image(self, name: str, package: Package) -> tuple[str, str]:
        """Build the package image (and the runtime image when missing): (image id, reference)."""
        ref = self._image_ref(package)
        with tempfile.TemporaryDirectory(prefix="modelport-docker-") as tmp:
            self.progress(f"writing the build context for {package.name} {package.version}")
            context = write_context(
                package,
                Path(tmp) / "context",
                base_image=self.config.base_image,
                index_url=self.config.index_url,
                pip_cert=self._pip_cert(),
            )
            # Keyed on the package-independent stages only: packages with the same requirements
            # share one runtime image.
            runtime_tag = f"{RUNTIME_REPOSITORY}:{self._runtime_key(context)}"
            try:
                self.client.images.get(runtime_tag)
                self.progress(f"reusing the runtime image {runtime_tag}")
            except self._not_found():
                self.progress(f"building the runtime image {runtime_tag} on {context.base_image}")
                self._build(
                    "runtime image",
                    path=str(context.directory),
                    target="runtime",
                    tag=runtime_tag,
                    labels={LABEL_RUNTIME: runtime_tag.rsplit(":", 1)[1]},
                )
            # The package image starts from the runtime image: the same last stage as the
            # Dockerfile's, so the result is what `docker build` of the context gives.
            package_dockerfile = context.directory / "Dockerfile.package"
            package_dockerfile.write_text(
                package_stage(
                    package.manifest, from_image=runtime_tag, base_image=context.base_image
                ),
                encoding="utf-8",
            )
            self.progress(f"building the image {ref}")
            image_id = self._build(
                "image",
                path=str(context.directory),
                dockerfile=package_dockerfile.name,
                tag=ref,
                labels={LABEL_TARGET: TARGET, LABEL_DEPLOYMENT: name},
            )
        return image_id, ref

    def _push(self, ref: str) -> str | None:
        """Push the image; returns the pushed digest when the engine reports one."""
        repository, tag = self._split_ref(ref)
        self.progress(f"pushing {ref}")
        pushed: str | None = None
        try:
            for chunk in self.client.api.push(repository, tag=tag, stream=True, decode=True):
                if "error" in chunk or "errorDetail" in chunk:
                    detail = chunk.get("errorDetail") or {}
                    message = chunk.get("error") or detail.get("message") or "unknown error"
                    raise DeploymentError(f"pushing {ref} failed: {message}")
                aux = chunk.get("aux")
                if isinstance(aux, dict) and aux.get("Digest"):
                    pushed = str(aux["Digest"])
                # podman reports the digest only in its status line, as `docker push` prints it.
                found = _PUSHED_DIGEST.search(str(chunk.get("status") or ""))
                if found and pushed is None:
                    pushed = found.group(1)
        except self._errors() as exc:
            raise DeploymentError(f"pushing {ref} failed: {exc}") from None
        return pushed

    def _remove_image(self, image_id: str | None, name: str) -> None:
        """Remove a package image built for ``name``, unless a container still uses it."""
        if not image_id:
            return
        try:
            image = self.client.images.get(image_id)
        except self._not_found():
            return
        if (image.labels or {}).get(LABEL_DEPLOYMENT) != name:
            return
        if self.client.containers.list(all=True, filters={"ancestor": image_id}):
            return
        with contextlib.suppress(self._not_found()):
            # force: the image may carry several tags (ours and a registry's); it is ours alone.
            self.client.images.remove(image_id, force=True)

    # --- running --------------------------------------------------------------------------

    def _run(
        self,
        name: str,
        package: Package,
        image_id: str,
        *,
        next_: bool,
        created_at: datetime,
        pushed: str | None,
        ref: str,
    ) -> Any:
        env = {str(k): str(v) for k, v in self.config.env.items()}
        port = container_port(env)
        labels = {
            LABEL_TARGET: TARGET,
            LABEL_DEPLOYMENT: name,
            LABEL_DIGEST: package.digest,
            LABEL_CREATED: created_at.isoformat(),
            LABEL_UPDATED: utcnow().isoformat(),
            "dev.modelport.image": ref,
        }
        if pushed:
            labels["dev.modelport.pushed"] = f"{ref}@{pushed}"
        self.progress(f"starting the container {container_name(name, next_=next_)}")
        try:
            return self.client.containers.run(
                image_id,
                detach=True,
                name=container_name(name, next_=next_),
                labels=labels,
                environment=env,
                ports={f"{port}/tcp": (self.config.host_ip, self.config.port or None)},
                stop_signal="SIGTERM",
            )
        except self._errors() as exc:
            # run() is create + start: a container that failed to start still exists.
            with contextlib.suppress(*self._errors()):
                self._remove_container(self._container(name, next_=next_))
            raise DeploymentError(f"starting the container for {name!r} failed: {exc}") from None

    @staticmethod
    def _host_port(container: Any) -> tuple[str, int] | None:
        ports = (container.attrs.get("NetworkSettings") or {}).get("Ports") or {}
        for bindings in ports.values():
            for binding in bindings or []:
                if binding.get("HostPort"):
                    return str(binding.get("HostIp") or ""), int(binding["HostPort"])
        return None

    def _endpoint(self, container: Any) -> str | None:
        bound = self._host_port(container)
        if bound is None:
            return None
        host = bound[0] or self.config.host_ip
        return f"http://{client_host(host)}:{bound[1]}"

    @staticmethod
    def _read_logs(container: Any, tail: int | None) -> builtins.list[str]:
        """The container's last ``tail`` log lines (all for None)."""
        raw = container.logs(tail="all" if tail is None else tail)
        text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
        if tail is not None and not text.strip():
            # podman 4.3 sometimes answers a tail of a short log with one empty line while the
            # whole log is there: read it all and cut here.
            raw = container.logs()
            text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
        lines = text.splitlines()
        return lines[-tail:] if tail else ([] if tail == 0 else lines)

    def _log_tail(self, container: Any, lines: int = 20) -> builtins.list[str]:
        try:
            return [line for line in self._read_logs(container, lines) if line.strip()]
        except self._errors():
            return []

    def _wait_ready(self, container: Any, what: str) -> None:
        """Wait until the container's server answers ``/ping`` with 200.

        Raises:
            DeploymentError: it exited or was not ready in time (with its last log lines).
        """
        deadline = time.monotonic() + self.config.startup_timeout
        self.progress(f"waiting for {what} to be ready")
        while True:
            container.reload()
            state = container.attrs.get("State") or {}
            if container.status in ("exited", "dead") or state.get("Status") in ("exited", "dead"):
                lines = self._log_tail(container)
                why = next(
                    (line for line in lines if "refusing to start" in line),
                    lines[-1] if lines else "no log",
                )
                raise DeploymentError(
                    f"{what} exited with status {state.get('ExitCode')} before it was ready: "
                    f"{why}\n" + "\n".join(f"  {line}" for line in lines[-15:])
                )
            endpoint = self._endpoint(container)
            if endpoint and probe_status(f"{endpoint}{READY_ROUTE}") == 200:
                return
            if time.monotonic() > deadline:
                lines = self._log_tail(container)
                raise DeploymentError(
                    f"{what} was not ready after {self.config.startup_timeout:g} s\n"
                    + "\n".join(f"  {line}" for line in lines[-15:])
                )
            time.sleep(0.1)

    def _remove_container(self, container: Any | None) -> str | None:
        """Stop (SIGTERM, then SIGKILL after ``stop_timeout``) and remove; returns its image id."""
        if container is None:
            return None
        image_id = (container.attrs or {}).get("Image")
        with contextlib.suppress(self._not_found()):
            container.reload()
            if container.status in ("running", "restarting", "paused"):
                container.stop(timeout=self.config.stop_timeout)
            container.remove(force=True)
        return str(image_id) if image_id else None

    # --- records --------------------------------------------------------------------------

    def _record(self, name: str, container: Any, *, updating: bool = False) -> Deployment:
        labels = container.labels or {}
        state = container.attrs.get("State") or {}
        endpoint = self._endpoint(container)
        ready = False
        if container.status == "running" and endpoint:
            ready = probe_status(f"{endpoint}{READY_ROUTE}") == 200
        if container.status in ("exited", "dead"):
            status = DeploymentStatus.FAILED
        elif ready:
            status = DeploymentStatus.UPDATING if updating else DeploymentStatus.READY
        elif container.status in ("created", "running", "restarting"):
            status = DeploymentStatus.STARTING
        else:
            status = DeploymentStatus.UNKNOWN
        created = _parse_time(labels.get(LABEL_CREATED)) or utcnow()
        updated = _parse_time(labels.get(LABEL_UPDATED)) or created
        health = state.get("Health") or state.get("Healthcheck") or {}
        bound = self._host_port(container)
        details: dict[str, Any] = {
            "container": container.name,
            "container_id": container.id,
            "state": container.status,
            "image": labels.get("dev.modelport.image"),
            "image_id": container.attrs.get("Image"),
            "host_port": bound[1] if bound else None,
            "docker_health": health.get("Status"),
        }
        if status is DeploymentStatus.FAILED:
            details["exit_code"] = state.get("ExitCode")
            details["last_log_lines"] = self._log_tail(container, 5)
        if labels.get("dev.modelport.pushed"):
            details["pushed"] = labels["dev.modelport.pushed"]
        return Deployment(
            name=name,
            target=TARGET,
            status=status,
            endpoint=endpoint,
            package_digest=labels.get(LABEL_DIGEST, ""),
            created_at=created,
            updated_at=updated,
            details=details,
        )

    def _current(self, name: str) -> Any:
        container = self._container(name)
        if container is None:
            raise DeploymentNotFound(f"no docker deployment named {name!r}")
        return container

    # --- the verbs ------------------------------------------------------------------------

    def plan(self, name: str, package: Package) -> builtins.list[PlannedAction]:
        """The image build, push and container ``create`` would make; touches nothing."""
        ref = self.config.image or image_reference(package.name, package.version)
        from modelport.deployers.dockerfile import default_base_image

        base = self.config.base_image or default_base_image(package.manifest.python)
        actions = [
            PlannedAction(
                kind="image",
                description=f"build the image {ref} on {base} (runtime image reused if present)",
                details={
                    "image": ref,
                    "base_image": base,
                    "index_url": self.config.index_url,
                    "package_digest": package.digest,
                    "docker_host": self.config.docker_host or os.environ.get("DOCKER_HOST"),
                },
            )
        ]
        if self.config.push:
            actions.append(PlannedAction(kind="push", description=f"push {ref}", details={}))
        env = dict(self.config.env)
        actions.append(
            PlannedAction(
                kind="container",
                description=(
                    f"run {container_name(name)} publishing port {container_port(env)} on "
                    f"{self.config.host_ip}:{self.config.port or '<free port>'}"
                ),
                details={
                    "container": container_name(name),
                    "host": self.config.host_ip,
                    "port": self.config.port,
                    "env": env,
                },
            )
        )
        return actions

    def create(self, name: str, package: Package, *, wait: bool = True) -> Deployment:
        """Build the image, (push it,) run the container, and wait until it is ready."""
        self.check_name(name)
        if self._containers(name):
            raise DeploymentExists(f"a docker deployment named {name!r} exists")
        image_id: str | None = None
        container: Any = None
        try:
            image_id, ref = self._build_image(name, package)
            pushed = self._push(ref) if self.config.push else None
            container = self._run(
                name, package, image_id, next_=False, created_at=utcnow(), pushed=pushed, ref=ref
            )
            if wait:
                self._wait_ready(container, f"the container {container.name}")
            container.reload()
            return self._record(name, container)
        except BaseException as exc:
            self._remove_container(container)
            self._remove_image(image_id, name)
            if isinstance(exc, self._errors()):
                raise DeploymentError(f"creating docker deployment {name!r} failed: {exc}") from exc
            raise

    def update(self, name: str, package: Package) -> Deployment:
        """Switch the deployment to ``package``: start the new container, wait, switch, clean up."""
        self.check_name(name)
        old = self._current(name)
        if (old.labels or {}).get(LABEL_DIGEST) == package.digest:
            return self._record(name, old)
        # A leftover successor from an interrupted update is not worth keeping.
        stale = self._container(name, next_=True)
        self._remove_image(self._remove_container(stale), name)

        created_at = _parse_time((old.labels or {}).get(LABEL_CREATED)) or utcnow()
        old_image = str(old.attrs.get("Image") or "")
        old_ref = (old.labels or {}).get("dev.modelport.image")
        image_id: str | None = None
        new: Any = None
        stopped_old = False
        try:
            image_id, ref = self._build_image(name, package)
            pushed = self._push(ref) if self.config.push else None
            if self.config.port:
                # One host port cannot be published twice: the old container makes way.
                self.progress(f"stopping {old.name} to free port {self.config.port}")
                old.stop(timeout=self.config.stop_timeout)
                stopped_old = True
            new = self._run(
                name, package, image_id, next_=True, created_at=created_at, pushed=pushed, ref=ref
            )
            self._wait_ready(new, f"the new container {new.name}")
        except BaseException as exc:
            self._remove_container(new)
            self._remove_image(image_id, name)
            if old_ref and old_image:
                # The new build took the tag; give it back to the image still serving.
                repository, tag = self._split_ref(old_ref)
                with contextlib.suppress(*self._errors()):
                    self.client.images.get(old_image).tag(repository, tag)
            if stopped_old:
                self.progress(f"restarting {old.name}")
                old.start()
                with contextlib.suppress(DeploymentError):
                    self._wait_ready(old, f"the old container {old.name}")
            if isinstance(exc, self._errors()):
                raise DeploymentError(f"updating docker deployment {name!r} failed: {exc}") from exc
            raise
        self.progress(f"switching to {new.name}; removing {old.name}")
        self._remove_image(self._remove_container(old), name)
        new.rename(container_name(name))
        new.reload()
        return self._record(name, new)

    def delete(self, name: str) -> None:
        """Stop and remove the deployment's containers and images; nothing to do if absent."""
        self.check_name(name)
        for container in self._containers(name):
            self._remove_image(self._remove_container(container), name)
        # Images of a failed run whose container is already gone.
        for image in self.client.images.list(
            filters={"label": [f"{LABEL_TARGET}={TARGET}", f"{LABEL_DEPLOYMENT}={name}"]}
        ):
            self._remove_image(str(image.id), name)

    def get(self, name: str) -> Deployment:
        """The deployment's container state and readiness."""
        self.check_name(name)
        container = self._current(name)
        return self._record(name, container, updating=self._container(name, next_=True) is not None)

    def list(self) -> Sequence[Deployment]:
        """Every deployment of this target on the engine, by name."""
        # One listing holds every container with its state: no second lookup per deployment.
        containers = {c.name: c for c in self._containers()}
        names = sorted(
            {str((c.labels or {}).get(LABEL_DEPLOYMENT)) for c in containers.values()} - {"None"}
        )
        result = []
        for name in names:
            with contextlib.suppress(UsageError):
                self.check_name(name)
                current = containers.get(container_name(name))
                if current is not None and (current.labels or {}).get(LABEL_DEPLOYMENT) == name:
                    updating = container_name(name, next_=True) in containers
                    result.append(self._record(name, current, updating=updating))
        return result

    def predict(self, name: str, payload: Mapping[str, Any]) -> dict[str, Any]:
        """POST the payload to the container's ``/invocations``."""
        self.check_name(name)
        container = self._current(name)
        endpoint = self._endpoint(container)
        if endpoint is None or container.status != "running":
            raise DeploymentError(
                f"docker deployment {name!r} is not running (state {container.status})"
            )
        return predict_over_http(f"docker deployment {name!r}", endpoint, payload)

    def logs(self, name: str, *, tail: int | None = 100) -> Iterator[str]:
        """The container's last ``tail`` log lines (stdout and stderr)."""
        self.check_name(name)
        container = self._current(name)
        if tail == 0:
            return iter(())
        return iter(self._read_logs(container, tail))
