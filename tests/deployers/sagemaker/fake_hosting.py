"""The hosts behind the fake SageMaker's endpoints: where a production variant really serves.

A host is one "instance" of a variant: the serving image's entrypoint, started the way SageMaker
starts it, on the model data the model names. Two kinds:

- :class:`ProcessHost`: ``python -m modelport.image.entrypoint serve`` in a child process of the
  tests (fast: most tests);
- :class:`ContainerHost`: the model's image pulled from the local registry and run as SageMaker
  runs it (``docker run IMAGE serve``, the model mounted read-only at ``/opt/ml/model``, the port
  in ``SAGEMAKER_BIND_TO_PORT``), through the Docker Engine API at ``$DOCKER_HOST`` (podman).

Every line a host prints goes to ``sink`` (the fake sends them to CloudWatch Logs). Readiness is
SageMaker's: ``GET /ping`` answering 200, each ping timing out after 2 s.
"""

from __future__ import annotations

import contextlib
import http.client
import io
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

#: Where SageMaker puts the model data inside the container.
MODEL_MOUNT = "/opt/ml/model"
#: SageMaker's timeout for one health-check ping.
PING_TIMEOUT_S = 2.0
#: SageMaker's timeout for one invocation.
INVOKE_TIMEOUT_S = 60.0
#: How many of a host's last output lines it keeps (for failure messages and tests).
KEPT_LINES = 400


class HostFailure(Exception):
    """A host could not be started or did not become ready; ``reason`` is the endpoint's."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(reason if not detail else f"{reason} ({detail})")
        self.reason = reason
        self.detail = detail


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def instance_id() -> str:
    """An EC2-style instance id (``i-`` and 17 hex digits), as in SageMaker's log stream names."""
    return "i-0" + secrets.token_hex(8)


# --- model data -------------------------------------------------------------------------------


def extract_model_data(data: bytes, dest: Path) -> None:
    """Unpack a ``model.tar.gz`` into ``dest`` as SageMaker does, refusing anything unsafe.

    Only regular files and directories with relative paths inside ``dest`` are accepted (no
    absolute paths, no ``..``, no links or devices). Everything is made world-readable, so the
    container's non-root user can read the mount.

    Raises:
        HostFailure: the data is not a tar archive, or an entry is unsafe.
    """
    reason = "Failed to extract model data archive: the object is not a valid tar.gz archive."
    dest.mkdir(parents=True, exist_ok=True)
    os.chmod(dest, 0o755)
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:*") as tar:
            for member in tar:
                parts = PurePosixPath(member.name).parts
                if member.name.startswith("/") or ".." in parts:
                    raise HostFailure(reason, f"unsafe path {member.name!r}")
                parts = tuple(p for p in parts if p != ".")
                if not parts:
                    continue
                target = dest.joinpath(*parts)
                if member.isdir():
                    target.mkdir(parents=True, exist_ok=True)
                    os.chmod(target, 0o755)
                elif member.isfile():
                    target.parent.mkdir(parents=True, exist_ok=True)
                    source = tar.extractfile(member)
                    assert source is not None
                    with source, open(target, "wb") as out:
                        shutil.copyfileobj(source, out)
                    os.chmod(target, 0o644)
                else:
                    raise HostFailure(reason, f"{member.name!r} is not a regular file")
            for directory in [dest, *(p for p in dest.rglob("*") if p.is_dir())]:
                os.chmod(directory, 0o755)
    except HostFailure:
        raise
    except Exception as exc:  # tarfile.TarError, EOFError, zlib.error, OSError...
        raise HostFailure(reason, f"{type(exc).__name__}: {exc}") from None


# --- talking to a host ------------------------------------------------------------------------


@dataclass(frozen=True)
class Answer:
    """What a host answered to one invocation."""

    status: int
    headers: dict[str, str]
    body: bytes

    def header(self, name: str) -> str | None:
        """A response header, looked up case-insensitively."""
        wanted = name.lower()
        return next((v for k, v in self.headers.items() if k.lower() == wanted), None)


def exchange(
    port: int,
    method: str,
    path: str,
    body: bytes | None = None,
    headers: Mapping[str, str] | None = None,
    timeout: float = INVOKE_TIMEOUT_S,
) -> Answer:
    """One HTTP exchange with the host on 127.0.0.1:``port`` (never through a proxy).

    Raises:
        OSError: no answer (refused, reset, timed out).
    """
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        connection.request(method, path, body=body, headers=dict(headers or {}))
        response = connection.getresponse()
        data = response.read()
        return Answer(response.status, dict(response.getheaders()), data)
    except http.client.HTTPException as exc:
        raise OSError(f"bad HTTP answer from 127.0.0.1:{port}: {exc}") from None
    finally:
        connection.close()


# --- hosts -------------------------------------------------------------------------------------


@dataclass
class HostSpec:
    """What to run for one production variant.

    Attributes:
        endpoint: the endpoint's name.
        variant: the production variant's name.
        endpoint_config: the endpoint configuration it belongs to.
        model: the model's name.
        image: ``PrimaryContainer.Image``.
        environment: ``PrimaryContainer.Environment``.
        model_dir: where the model data was unpacked (None: the model has none).
        model_data_url: ``PrimaryContainer.ModelDataUrl``.
    """

    endpoint: str
    variant: str
    endpoint_config: str
    model: str
    image: str | None
    environment: dict[str, str]
    model_dir: Path | None
    model_data_url: str | None = None


@dataclass
class Host:
    """One running instance of a production variant (see the subclasses).

    Attributes:
        spec: what it runs.
        sink: called with each line the host prints.
        port: the port on 127.0.0.1 it answers on.
        instance_id: its instance id (the log stream is ``<variant>/<instance_id>``).
        env: the environment it was started with (the model's, plus what the fake adds).
    """

    spec: HostSpec
    sink: Callable[[str], None]
    stop_timeout: float = 30.0
    port: int = field(default_factory=free_port)
    instance_id: str = field(default_factory=instance_id)
    env: dict[str, str] = field(default_factory=dict)
    kind: str = "host"
    started_at: float = 0.0
    stopped: bool = False
    _lines: deque[str] = field(default_factory=lambda: deque(maxlen=KEPT_LINES))
    _pumps: list[threading.Thread] = field(default_factory=list)
    _stop_lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def log_stream(self) -> str:
        """The CloudWatch log stream of this instance."""
        return f"{self.spec.variant}/{self.instance_id}"

    @property
    def url(self) -> str:
        """The host's base URL."""
        return f"http://127.0.0.1:{self.port}"

    def lines(self) -> list[str]:
        """The last lines the host printed."""
        return list(self._lines)

    def _emit(self, line: str) -> None:
        self._lines.append(line)
        with contextlib.suppress(Exception):  # logging must never kill the pump
            self.sink(line)

    def _pump_text(self, chunks: Any) -> None:
        """Split a stream of byte chunks into lines for :meth:`_emit`."""
        pending = b""
        for chunk in chunks:
            pending += chunk
            *complete, pending = pending.split(b"\n")
            for raw in complete:
                self._emit(raw.decode("utf-8", "replace").rstrip("\r"))
        if pending:
            self._emit(pending.decode("utf-8", "replace").rstrip("\r"))

    def _start_pump(self, target: Callable[[], None]) -> None:
        thread = threading.Thread(target=target, name=f"fake-sagemaker-log-{self.port}")
        thread.daemon = True
        thread.start()
        self._pumps.append(thread)

    # -- to implement --------------------------------------------------------------------------

    def start(self) -> None:
        """Start the host (returns once it is launched, not ready).

        Raises:
            HostFailure: it could not be started, or was stopped before it started.
        """
        with self._stop_lock:  # a stop() meanwhile waits, then stops what was started
            if self.stopped:
                raise HostFailure("The host was stopped before it started.")
            self._launch()

    def _launch(self) -> None:
        raise NotImplementedError

    def exit_status(self) -> int | None:
        """The host's exit status once it has exited; None while it runs."""
        raise NotImplementedError

    def _terminate(self) -> None:
        """Stop the host: SIGTERM, then SIGKILL after :attr:`stop_timeout`."""
        raise NotImplementedError

    @property
    def ident(self) -> str:
        """The pid or container id."""
        raise NotImplementedError

    # -- shared ----------------------------------------------------------------------------------

    def ping(self) -> int | None:
        """The status of one ``GET /ping`` (2 s timeout); None when nothing answered."""
        try:
            return exchange(self.port, "GET", "/ping", timeout=PING_TIMEOUT_S).status
        except OSError:
            return None

    def wait_ready(self, timeout: float, cancelled: threading.Event) -> float:
        """Ping until ``/ping`` answers 200; returns the seconds it took.

        Raises:
            HostFailure: the host exited, was cancelled, or was not ready within ``timeout``.
        """
        reason = (
            f"The primary container for production variant {self.spec.variant} did not pass "
            "the ping health check. Please check CloudWatch logs for this endpoint."
        )
        deadline = time.monotonic() + timeout
        while True:
            if cancelled.is_set():
                raise HostFailure(reason, "cancelled")
            status = self.exit_status()
            if status is not None:
                raise HostFailure(reason, f"the container exited with status {status}")
            if self.ping() == 200:
                return time.monotonic() - self.started_at
            if time.monotonic() > deadline:
                raise HostFailure(reason, f"/ping did not answer 200 within {timeout:g} s")
            cancelled.wait(0.05)

    def invoke(self, body: bytes, headers: Mapping[str, str]) -> Answer:
        """``POST /invocations`` with ``body`` and ``headers``.

        Raises:
            OSError: the host did not answer within 60 s.
        """
        return exchange(self.port, "POST", "/invocations", body, headers, INVOKE_TIMEOUT_S)

    def stop(self) -> None:
        """Stop the host and wait for its output to be drained (idempotent)."""
        with self._stop_lock:
            if self.stopped:
                return
            self.stopped = True
            try:
                self._terminate()
            finally:
                for pump in self._pumps:
                    pump.join(timeout=10)
                self._release()

    def _release(self) -> None:
        """Close what the host held open (after its output is drained)."""

    def describe(self) -> dict[str, Any]:
        """What tests may assert about the host."""
        return {
            "kind": self.kind,
            "endpoint": self.spec.endpoint,
            "variant": self.spec.variant,
            "endpoint_config": self.spec.endpoint_config,
            "model": self.spec.model,
            "instance_id": self.instance_id,
            "log_stream": self.log_stream,
            "port": self.port,
            "url": self.url,
            "ident": self.ident,
            "image": self.spec.image,
            "env": dict(self.env),
            "model_dir": self.spec.model_dir,
            "stopped": self.stopped,
        }


@dataclass
class ProcessHost(Host):
    """The serving entrypoint in a child process: ``python -m modelport.image.entrypoint serve``.

    Its environment: this process's, the model's ``Environment``, then ``MODELPORT_PACKAGE`` (the
    unpacked model data, standing in for ``/opt/ml/model``), ``SAGEMAKER_BIND_TO_PORT``,
    ``MODELPORT_WORKERS=1`` and ``MODELPORT_HOST=127.0.0.1``. The image is not used.
    """

    kind: str = "process"
    process: subprocess.Popen[bytes] | None = None

    @property
    def ident(self) -> str:
        return str(self.process.pid) if self.process else ""

    @property
    def pid(self) -> int | None:
        """The server's pid."""
        return self.process.pid if self.process else None

    def _launch(self) -> None:
        self.env = {
            **self.spec.environment,
            "SAGEMAKER_BIND_TO_PORT": str(self.port),
            "MODELPORT_WORKERS": "1",
            "MODELPORT_HOST": "127.0.0.1",
        }
        if self.spec.model_dir is not None:
            self.env["MODELPORT_PACKAGE"] = str(self.spec.model_dir)
        self.started_at = time.monotonic()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "modelport.image.entrypoint", "serve"],
            env={**os.environ, **self.env},
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            cwd=str(self.spec.model_dir or tempfile.gettempdir()),
            start_new_session=True,  # its own process group: the stop reaches its workers
        )
        stdout = self.process.stdout
        assert stdout is not None
        self._start_pump(lambda: self._pump_text(iter(lambda: stdout.read1(65536), b"")))

    def exit_status(self) -> int | None:
        return None if self.process is None else self.process.poll()

    def _release(self) -> None:
        if self.process is not None and self.process.stdout is not None:
            self.process.stdout.close()

    def _terminate(self) -> None:
        if self.process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=self.stop_timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=30)
        # Workers the server left behind (none, normally): the whole group goes.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signal.SIGKILL)


def split_image(reference: str) -> tuple[str, str]:
    """``repo@sha256:...`` or ``repo:tag`` (or ``repo``) -> (repository, tag or digest)."""
    if "@" in reference:
        repository, digest = reference.split("@", 1)
        return repository, digest
    last = reference.rsplit("/", 1)[-1]
    if ":" in last:
        repository, tag = reference.rsplit(":", 1)
        return repository, tag
    return reference, "latest"


@dataclass
class ContainerHost(Host):
    """The model's image, pulled and run the way SageMaker runs it.

    ``docker run IMAGE serve`` with the model data bind-mounted read-only at ``/opt/ml/model``,
    the model's ``Environment`` plus ``SAGEMAKER_BIND_TO_PORT``, published on 127.0.0.1 (the same
    port inside and out); stopped with SIGTERM, then SIGKILL after 30 s.
    """

    kind: str = "container"
    client: Any = None
    labels: dict[str, str] = field(default_factory=dict)
    container: Any = None

    @property
    def ident(self) -> str:
        return str(self.container.id) if self.container is not None else ""

    def _pull(self, image: str) -> None:
        repository, reference = split_image(image)
        try:
            for chunk in self.client.api.pull(repository, tag=reference, stream=True, decode=True):
                if isinstance(chunk, dict) and chunk.get("error"):
                    raise HostFailure(
                        f"Failed to pull the image {image} for production variant "
                        f"{self.spec.variant}.",
                        str(chunk["error"]),
                    )
        except HostFailure:
            raise
        except Exception as exc:
            raise HostFailure(
                f"Failed to pull the image {image} for production variant {self.spec.variant}.",
                str(exc),
            ) from None

    def _launch(self) -> None:
        image = self.spec.image
        if not image:
            raise HostFailure(f"The model {self.spec.model} has no container image.")
        self._pull(image)
        self.env = {**self.spec.environment, "SAGEMAKER_BIND_TO_PORT": str(self.port)}
        volumes = {}
        if self.spec.model_dir is not None:
            volumes[str(self.spec.model_dir)] = {"bind": MODEL_MOUNT, "mode": "ro"}
        self.started_at = time.monotonic()
        try:
            self.container = self.client.containers.create(
                image,
                command=["serve"],
                environment=self.env,
                ports={f"{self.port}/tcp": ("127.0.0.1", self.port)},
                volumes=volumes,
                labels={**self.labels, "dev.modelport.fake-sagemaker": self.spec.endpoint},
                detach=True,
            )
            self.container.start()
        except Exception as exc:
            raise HostFailure(
                f"Failed to start the container for production variant {self.spec.variant}.",
                str(exc),
            ) from None
        container = self.container
        self._start_pump(
            lambda: self._pump_text(container.logs(stream=True, follow=True, stdout=True))
        )

    def exit_status(self) -> int | None:
        if self.container is None:
            return None
        try:
            self.container.reload()
        except Exception:
            return -1  # removed under us
        if self.container.status in ("exited", "dead"):
            return int(self.container.attrs.get("State", {}).get("ExitCode", -1))
        return None

    def _terminate(self) -> None:
        if self.container is None:
            return
        with contextlib.suppress(Exception):
            self.container.stop(timeout=int(self.stop_timeout))
        with contextlib.suppress(Exception):
            self.container.remove(force=True)
