"""The ``docker`` target: build a serving image, run it as a container, manage it.

Images are built and pushed by :mod:`modelport.deployers.kit.images` (the runtime image every
package with the same requirements shares, then the package image on top of it); containers are
run through the Docker Engine API with docker-py. Both reach ``DOCKER_HOST``, so the same code
drives Docker and podman's Docker-compatible service (``podman system service``).

``create`` and ``update`` are rollouts (:mod:`modelport.deployers.kit.rollout`): named steps,
each undone in reverse order when a later one fails, the same steps ``--dry-run`` shows.

- ``create``: build the image, push it (``-C push=true``), run it as the container
  ``modelport-<name>`` with the server's port published on ``host_ip:port`` (127.0.0.1 and a free
  port by default), and wait until ``/ping`` answers 200.
- ``update``: build the new image, start it as ``modelport-<name>-next``, wait until it is ready,
  then switch names and remove the old container and image. With a fixed ``port`` the old
  container is stopped first (one host port cannot be published twice) and started again if the
  update fails. An unchanged package digest changes nothing; ``wait=False`` runs the same update
  in a background job (:mod:`modelport.deployers.kit.background`).
- ``delete`` stops and removes the containers and the package images; the shared runtime image
  stays, like a base image.

Docker's own state is the only state: containers and images carry labels
(:mod:`modelport.deployers.kit.naming`: deployment name, package digest; plus creation and update
times), so ``get``, ``list``, ``logs``, ``predict``, ``update`` and ``delete`` work from any
machine that reaches the same engine. ``get`` reports the container's state and the server's
readiness, probed over HTTP (podman without systemd never runs an image's HEALTHCHECK, so
Docker's health status is a detail only).
"""

from __future__ import annotations

import builtins
import contextlib
import dataclasses
import os
import sys
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelport.deployers.base import Deployer, Deployment, DeploymentStatus, utcnow
from modelport.deployers.kit import background
from modelport.deployers.kit.errors import Classified, ErrorMap, Kind, kind_for_status
from modelport.deployers.kit.http import (
    client_host,
    predict_over_http,
    probe_status,
)
from modelport.deployers.kit.naming import (
    Facts,
    Platform,
    label_key,
    labels,
    provenance_details,
    read_labels,
    with_provenance,
)
from modelport.deployers.kit.rollout import Step
from modelport.deployers.kit.state import default_home
from modelport.deployers.kit.waiting import Seen, wait_until
from modelport.errors import (
    DeploymentError,
    DeploymentExists,
    DeploymentNotFound,
    MissingDependencyError,
    TargetUnavailableError,
    UsageError,
)
from modelport.image import CONTAINER_PORT, LABEL_DIGEST, default_base_image, image_reference

if TYPE_CHECKING:
    from modelport.deployers.kit.engine import Engine
    from modelport.deployers.kit.images import BuiltImage, PushedImage
    from modelport.model_format.package import Package

TARGET = "docker"
LABEL_TARGET = label_key(Platform.DOCKER, "target")
LABEL_DEPLOYMENT = label_key(Platform.DOCKER, "deployment")
LABEL_CREATED = "dev.modelport.created-at"
LABEL_UPDATED = "dev.modelport.updated-at"
LABEL_IMAGE = "dev.modelport.image"
LABEL_PUSHED = "dev.modelport.pushed"
READY_ROUTE = "/ping"
#: docker-py's per-read timeout: a step may print nothing for minutes.
API_TIMEOUT_S = 900
_UNREACHABLE_HINT = "start Docker (or `podman system service`), or set DOCKER_HOST / -C docker_host"


def _classify(exc: BaseException) -> Kind | Classified | None:
    """What a docker-py (or kit engine) exception means."""
    from modelport.deployers.kit.images import ENGINE_ERRORS

    engine_kind = ENGINE_ERRORS.classify(exc)
    if engine_kind is not None:
        return engine_kind
    errors = sys.modules.get("docker.errors")
    if errors is None or not isinstance(exc, errors.DockerException):
        return None
    if isinstance(exc, errors.APIError):
        kind = kind_for_status(exc.status_code) or Kind.OTHER
        return Classified(kind, detail=str(exc.explanation or exc))
    return Classified(Kind.UNAVAILABLE, hint=_UNREACHABLE_HINT)


DOCKER_ERRORS = ErrorMap(TARGET, _classify, hints={Kind.UNAVAILABLE: _UNREACHABLE_HINT})


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


def _parse_time(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        return None


#: How often a listing podman failed with "image not known" is asked again.
_LIST_ATTEMPTS = 5


def list_images(client: Any, label: str) -> builtins.list[Any]:
    """The images carrying ``label`` (``key=value``), asked again when podman lost one meanwhile.

    podman lists every image, then reads each: one removed in between (by another client, or by
    podman itself after a build) fails the whole listing with a 500 "image not known". The
    listing is only ever a read, so asking again is safe.
    """
    import docker.errors

    filters = {"label": label}
    for _ in range(_LIST_ATTEMPTS - 1):
        try:
            return list(client.images.list(filters=filters))
        except docker.errors.APIError as exc:
            if "image not known" not in str(exc):
                raise
    return list(client.images.list(filters=filters))


def container_name(deployment: str, *, role: str | None = None) -> str:
    """The container of a deployment, ``modelport-<name>``.

    ``role`` names its companion during an update: ``next`` (being started) or ``old`` (being
    replaced). Deployment names are valid container names as they are: none is rewritten, so
    two deployments never share a container name.
    """
    return f"modelport-{deployment}-{role}" if role else f"modelport-{deployment}"


def container_port(env: Mapping[str, str]) -> int:
    """The port the server listens on inside the container, given the container's environment."""
    from modelport.serving.config import resolve_port

    return resolve_port(None, env) if env else CONTAINER_PORT


class DockerDeployer(Deployer[DockerConfig]):
    """Build a serving image of the package and run it as a container (Docker or podman).

    Reaches the engine through the Docker Engine API at ``docker_host`` (default
    ``$DOCKER_HOST``); podman's ``podman system service`` works the same as Docker.
    """

    name = TARGET
    config_class = DockerConfig
    error_map = DOCKER_ERRORS

    def __init__(self, config: DockerConfig | None = None, **kwargs: Any) -> None:
        super().__init__(config, **kwargs)
        self._docker: Any = None
        self._engine: Engine | None = None

    # --- the engine -----------------------------------------------------------------------

    @property
    def base_url(self) -> str | None:
        """The Engine API address in use (None: docker-py's default)."""
        return self.config.docker_host or os.environ.get("DOCKER_HOST") or None

    @property
    def client(self) -> Any:
        """The docker-py client (``docker.DockerClient``), connected on first use.

        Raises:
            MissingDependencyError: docker-py is not installed.
            TargetUnavailableError: the engine does not answer.
        """
        if self._docker is None:
            try:
                import docker
            except ImportError:
                raise MissingDependencyError("the docker target", "docker", "docker") from None
            base_url = self.base_url
            client = None
            try:
                # The kit's probe first: docker-py leaks the socket of a failed connect.
                self.engine.ping()
                if base_url:
                    client = docker.DockerClient(base_url=base_url, timeout=API_TIMEOUT_S)
                else:
                    client = docker.from_env(timeout=API_TIMEOUT_S)
                client.ping()
            except Exception as exc:
                if client is not None:
                    client.close()
                where = base_url or "the default Docker socket"
                raise TargetUnavailableError(
                    f"cannot reach the Docker Engine API at {where}: {exc}",
                    hint=_UNREACHABLE_HINT,
                ) from None
            self._docker = client
        return self._docker

    @property
    def engine(self) -> Engine:
        """The kit's Engine API client for images, on the same address as :attr:`client`."""
        if self._engine is None:
            from modelport.deployers.kit.engine import Engine, EngineError

            try:
                self._engine = Engine(self.base_url, timeout=API_TIMEOUT_S)
            except EngineError as exc:  # an address it cannot use
                raise UsageError(str(exc), hint="set -C docker_host or DOCKER_HOST") from None
        return self._engine

    def _containers(self, name: str | None = None) -> builtins.list[Any]:
        wanted = [f"{LABEL_TARGET}={TARGET}"]
        if name is not None:
            wanted.append(f"{LABEL_DEPLOYMENT}={name}")
        return list(self.client.containers.list(all=True, filters={"label": wanted}))

    def _container(self, name: str, *, role: str | None = None) -> Any | None:
        import docker.errors

        try:
            container = self.client.containers.get(container_name(name, role=role))
        except docker.errors.NotFound:
            return None
        found = container.labels or {}
        if found.get(LABEL_TARGET) != TARGET or found.get(LABEL_DEPLOYMENT) != name:
            return None  # a container of that name that modelport did not make
        return container

    def _current(self, name: str) -> Any:
        container = self._container(name)
        if container is None:
            raise DeploymentNotFound(f"no docker deployment named {name!r}")
        return container

    # --- images ---------------------------------------------------------------------------

    def _image_ref(self, package: Package) -> str:
        from modelport.deployers.kit.images import split_reference

        repository, tag = split_reference(
            self.config.image or image_reference(package.name, package.version)
        )
        return f"{repository}:{tag}"

    def _image_steps(
        self, name: str, package: Package, *, restore: tuple[str, str] | None
    ) -> list[Step]:
        """Build (and push) the package image.

        ``restore`` (image id, reference): the image serving now, which gets its reference back
        when the build is undone (a new build of the same reference took it).
        """
        from modelport.deployers.kit import images
        from modelport.deployers.kit.engine import EngineError

        ref = self._image_ref(package)
        base = self.config.base_image or default_base_image(package.manifest.python)
        owner = {LABEL_TARGET: TARGET, LABEL_DEPLOYMENT: name}
        # The image says where its package came from, like the container does.
        provenance = labels(Platform.DOCKER, with_provenance(Facts(), package.provenance))

        def build(_: Mapping[str, Any]) -> BuiltImage:
            return images.build_package_image(
                self.engine,
                package,
                ref=ref,
                base_image=self.config.base_image,
                index_url=self.config.index_url,
                pip_cert=images.pip_cert_or_env(self.config.pip_cert),
                labels={**provenance, **owner},
                progress=self.progress,
            )

        def unbuild(built: BuiltImage) -> None:
            images.remove_image(self.engine, built.id, labels={LABEL_DEPLOYMENT: name})
            if restore and restore[0] and restore[1]:
                # The new build may have taken the tag; give it back to the image still serving.
                repository, tag = images.split_reference(restore[1])
                with contextlib.suppress(EngineError):
                    self.engine.tag(restore[0], repository, tag)

        def push(done: Mapping[str, Any]) -> PushedImage:
            return images.push_image(self.engine, done["build-image"].ref, progress=self.progress)

        def unpush(pushed: PushedImage) -> None:
            self.progress.warn(
                f"{pushed.ref} stays in its registry: registries offer no common way to delete it"
            )

        steps = [
            Step(
                "build-image",
                f"build the image {ref} on {base} (the runtime image is reused when present)",
                build,
                undo=unbuild,
                kind="image",
                details={
                    "image": ref,
                    "base_image": base,
                    "index_url": self.config.index_url,
                    "package_digest": package.digest,
                    "docker_host": self.base_url,
                },
                resource=lambda built: f"the image {built.ref} ({built.id})",
                remove_with=lambda built: f"docker rmi {built.id}",
            )
        ]
        if self.config.push:
            steps.append(Step("push-image", f"push {ref}", push, undo=unpush, kind="push"))
        return steps

    # --- containers -----------------------------------------------------------------------

    def _run(
        self,
        name: str,
        package: Package,
        done: Mapping[str, Any],
        *,
        role: str | None,
        created_at: datetime,
    ) -> Any:
        built: BuiltImage = done["build-image"]
        pushed: PushedImage | None = done.get("push-image")
        env = {str(k): str(v) for k, v in self.config.env.items()}
        facts = Facts(
            package_digest=package.digest,
            package_name=package.name,
            package_version=package.version,
            deployment=name,
            target=TARGET,
        )
        facts = with_provenance(facts, package.provenance)
        container_labels = {
            **labels(Platform.DOCKER, facts),
            LABEL_CREATED: created_at.isoformat(),
            LABEL_UPDATED: utcnow().isoformat(),
            LABEL_IMAGE: built.ref,
        }
        if pushed is not None and pushed.digest:
            container_labels[LABEL_PUSHED] = f"{pushed.ref}@{pushed.digest}"
        container = container_name(name, role=role)
        with DOCKER_ERRORS.translating(f"starting the container {container}"):
            try:
                return self.client.containers.run(
                    built.id,
                    detach=True,
                    name=container,
                    labels=container_labels,
                    environment=env,
                    ports={
                        f"{container_port(env)}/tcp": (
                            self.config.host_ip,
                            self.config.port or None,
                        )
                    },
                    stop_signal="SIGTERM",
                )
            except Exception:
                # run() is create + start: a container that failed to start still exists.
                with contextlib.suppress(Exception):
                    self._remove_container(self._container(name, role=role))
                raise

    def _run_step(
        self, name: str, package: Package, *, role: str | None, created_at: datetime
    ) -> Step:
        env = dict(self.config.env)
        container = container_name(name, role=role)
        return Step(
            "run-container",
            f"run {container} publishing port {container_port(env)} on "
            f"{self.config.host_ip}:{self.config.port or '<free port>'}",
            lambda done: self._run(name, package, done, role=role, created_at=created_at),
            undo=self._remove_container,
            kind="container",
            details={
                "container": container,
                "host": self.config.host_ip,
                "port": self.config.port,
                "env": env,
            },
            resource=lambda c: f"the container {c.name}",
            remove_with=lambda c: f"docker rm -f {c.name}",
        )

    def _wait_step(self, name: str, *, role: str | None) -> Step:
        container = container_name(name, role=role)
        return Step(
            "wait-ready",
            f"wait until {container} answers {READY_ROUTE} with 200 (at most "
            f"{self.config.startup_timeout:g} s)",
            lambda done: self._wait_ready(done["run-container"]),
            kind="wait",
        )

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
        import docker.errors

        try:
            return [line for line in self._read_logs(container, lines) if line.strip()]
        except docker.errors.DockerException:
            return []

    def _wait_ready(self, container: Any) -> None:
        """Wait until the container's server answers ``/ping`` with 200.

        Raises:
            DeploymentError: it exited first (with its last log lines).
            WaitTimeout: it was not ready in time.
        """

        def ready() -> Seen:
            container.reload()
            state = container.attrs.get("State") or {}
            if container.status in ("exited", "dead") or state.get("Status") in ("exited", "dead"):
                lines = self._log_tail(container)
                why = next(
                    (line for line in lines if "refusing to start" in line),
                    lines[-1] if lines else "no log",
                )
                return Seen(
                    failed=f"exited with status {state.get('ExitCode')} before it was ready: {why}"
                )
            endpoint = self._endpoint(container)
            if endpoint and probe_status(f"{endpoint}{READY_ROUTE}") == 200:
                return Seen(done=True)
            return Seen(status=container.status)

        wait_until(
            ready,
            what=f"the container {container.name}",
            timeout_s=self.config.startup_timeout,
            progress=self.progress,
            interval_s=0.1,
            max_interval_s=0.5,
            log=lambda: self._log_tail(container),
            timeout_hint="allow more time with -C startup_timeout=SECONDS",
        )

    def _remove_container(self, container: Any | None) -> str | None:
        """Stop (SIGTERM, then SIGKILL after ``stop_timeout``) and remove; returns its image id."""
        import docker.errors

        if container is None:
            return None
        image_id = (container.attrs or {}).get("Image")
        with contextlib.suppress(docker.errors.NotFound):
            container.reload()
            if container.status in ("running", "restarting", "paused"):
                container.stop(timeout=self.config.stop_timeout)
            container.remove(force=True)
        return str(image_id) if image_id else None

    def _remove_image(self, image_id: str | None, name: str) -> None:
        """Remove a package image built for ``name``, unless a container still uses it."""
        from modelport.deployers.kit.images import remove_image

        remove_image(self.engine, image_id, labels={LABEL_DEPLOYMENT: name})

    # --- records --------------------------------------------------------------------------

    def _record(self, name: str, container: Any, *, updating: bool = False) -> Deployment:
        found = container.labels or {}
        state = container.attrs.get("State") or {}
        endpoint = self._endpoint(container)
        job = background.last(default_home(), TARGET, name)
        updating = updating or (job is not None and job.status == "running")
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
        created = _parse_time(found.get(LABEL_CREATED)) or utcnow()
        updated = _parse_time(found.get(LABEL_UPDATED)) or created
        health = state.get("Health") or state.get("Healthcheck") or {}
        bound = self._host_port(container)
        details: dict[str, Any] = {
            "container": container.name,
            "container_id": container.id,
            "state": container.status,
            "image": found.get(LABEL_IMAGE),
            "image_id": container.attrs.get("Image"),
            "host_port": bound[1] if bound else None,
            "docker_health": health.get("Status"),
        }
        if status is DeploymentStatus.FAILED:
            details["exit_code"] = state.get("ExitCode")
            details["last_log_lines"] = self._log_tail(container, 5)
        if found.get(LABEL_PUSHED):
            details["pushed"] = found[LABEL_PUSHED]
        details.update(provenance_details(read_labels(Platform.DOCKER, found)))
        if job is not None:
            details["update_job"] = job.to_dict()
        return Deployment(
            name=name,
            target=TARGET,
            status=status,
            endpoint=endpoint,
            package_digest=found.get(LABEL_DIGEST, ""),
            created_at=created,
            updated_at=updated,
            details=details,
        )

    # --- the verbs ------------------------------------------------------------------------

    def create_steps(self, name: str, package: Package, *, wait: bool = True) -> list[Step]:
        """Build (and push) the image, run the container, wait until it is ready."""
        steps = self._image_steps(name, package, restore=None)
        steps.append(self._run_step(name, package, role=None, created_at=utcnow()))
        if wait:
            steps.append(self._wait_step(name, role=None))
        return steps

    @DOCKER_ERRORS.translated("creating a docker deployment")
    def create(self, name: str, package: Package, *, wait: bool = True) -> Deployment:
        """Build the image, (push it,) run the container, and wait until it is ready."""
        self.check_name(name)
        if self._containers(name):
            raise DeploymentExists(f"a docker deployment named {name!r} exists")
        results = self.rollout("create", self.create_steps(name, package, wait=wait)).run()
        container = results["run-container"]
        container.reload()
        return self._record(name, container)

    def _update_steps(self, name: str, package: Package, old: Any) -> list[Step]:
        old_labels = old.labels or {}
        created_at = _parse_time(old_labels.get(LABEL_CREATED)) or utcnow()
        restore = (str(old.attrs.get("Image") or ""), str(old_labels.get(LABEL_IMAGE) or ""))
        steps = self._image_steps(name, package, restore=restore)

        def stop_old(_: Mapping[str, Any]) -> Any:
            old.stop(timeout=self.config.stop_timeout)
            return old

        def start_old(container: Any) -> None:
            self.progress(f"restarting {container.name}")
            container.start()
            with contextlib.suppress(DeploymentError):
                self._wait_ready(container)

        def switch(done: Mapping[str, Any]) -> Any:
            new = done["run-container"]
            old.rename(container_name(name, role="old"))
            new.rename(container_name(name))
            return new

        def switch_back(new: Any) -> None:
            new.rename(container_name(name, role="next"))
            old.rename(container_name(name))

        if self.config.port:
            # One host port cannot be published twice: the old container makes way.
            steps.append(
                Step(
                    "stop-old",
                    f"stop {old.name} to free port {self.config.port}",
                    stop_old,
                    undo=start_old,
                    kind="container",
                )
            )
        steps += [
            self._run_step(name, package, role="next", created_at=created_at),
            self._wait_step(name, role="next"),
            Step(
                "switch",
                f"make {container_name(name, role='next')} the deployment's container",
                switch,
                undo=switch_back,
                kind="switch",
            ),
        ]
        return steps

    @DOCKER_ERRORS.translated("updating a docker deployment")
    def update(self, name: str, package: Package, *, wait: bool = True) -> Deployment:
        """Switch the deployment to ``package``: start the new container, wait, switch, clean up.

        With ``wait=False`` the same update runs in a background job, and the record returned
        says ``updating``.
        """
        self.check_name(name)
        old = self._current(name)
        if (old.labels or {}).get(LABEL_DIGEST) == package.digest:
            return self._record(name, old)
        if not wait:
            job = background.start(self, "update", name, package, home=default_home())
            record = self._record(name, old, updating=True)
            return dataclasses.replace(
                record, details={**record.details, "update_job": job.to_dict()}
            )
        # Docker holds no lock: one update at a time is what a running background job says.
        background.refuse_if_busy(default_home(), TARGET, name)
        # What an interrupted update left (a successor, a renamed predecessor) is not worth keeping.
        for role in ("next", "old"):
            self._remove_image(self._remove_container(self._container(name, role=role)), name)
        results = self.rollout("update", self._update_steps(name, package, old)).run()
        new = results["switch"]
        self.progress(f"switched to {new.name}; removing the old container")
        try:
            with DOCKER_ERRORS.translating(f"removing the old container {old.name}"):
                self._remove_image(self._remove_container(old), name)
        except DeploymentError as exc:  # the new version serves: say what is left, do not fail
            self.progress.warn(
                f"left behind: the old container {old.name} ({exc}); "
                f"'modelport deployments delete -t docker -n {name}' removes it with the rest"
            )
        new.reload()
        return self._record(name, new)

    @DOCKER_ERRORS.translated("deleting a docker deployment")
    def delete(self, name: str) -> None:
        """Stop and remove the deployment's containers and images; nothing to do if absent."""
        self.check_name(name)
        background.cancel(default_home(), TARGET, name, timeout=self.config.stop_timeout + 60.0)
        for container in self._containers(name):
            self._remove_image(self._remove_container(container), name)
        # Images of a failed run whose container is already gone. One label per filter:
        # podman 4.3 matches no image when given two.
        for image in list_images(self.client, f"{LABEL_DEPLOYMENT}={name}"):
            if (image.labels or {}).get(LABEL_TARGET) == TARGET:
                self._remove_image(str(image.id), name)

    @DOCKER_ERRORS.translated("reading a docker deployment")
    def get(self, name: str) -> Deployment:
        """The deployment's container state and readiness."""
        self.check_name(name)
        container = self._current(name)
        updating = self._container(name, role="next") is not None
        return self._record(name, container, updating=updating)

    @DOCKER_ERRORS.translated("listing the docker deployments")
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
                    updating = container_name(name, role="next") in containers
                    result.append(self._record(name, current, updating=updating))
        return result

    @DOCKER_ERRORS.translated("asking a docker deployment")
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

    @DOCKER_ERRORS.translated("reading a docker deployment's log")
    def logs(self, name: str, *, tail: int | None = 100) -> Iterator[str]:
        """The container's last ``tail`` log lines (stdout and stderr)."""
        self.check_name(name)
        container = self._current(name)
        if tail == 0:
            return iter(())
        return iter(self._read_logs(container, tail))
