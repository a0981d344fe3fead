"""Hosts that really serve, for the offline fakes of the clouds (SageMaker, Azure ML...).

A host is one "instance" behind a fake cloud's endpoint: a serving process started the way the
cloud starts it, whose output is kept line by line and whose readiness is a real HTTP probe.
Two kinds, over one base (:class:`Host`: output pump, readiness wait, stop):

- :class:`ProcessHost`: a command in a child process of the tests, in its own process group (so a
  stop reaches the workers it forks) — fast, what most tests use;
- :class:`ContainerHost`: an image pulled from the local registry and run through the Docker Engine
  API (``$DOCKER_HOST``, podman's service), one container port published on 127.0.0.1.

Each cloud's fake adds its own layer on top (what to run, which environment, its messages):
``sagemaker/fake_hosting.py`` and ``azureml/fake_azure.py``. :func:`exchange` is the one way the
fakes talk HTTP to a host (never through a proxy from the environment).

Imported by module name (``from hosting import ...``): ``tests/deployers`` is on ``sys.path``.
"""

from __future__ import annotations

import abc
import contextlib
import http.client
import os
import signal
import socket
import subprocess
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

#: How many of a host's last output lines it keeps (for failure messages, logs and tests).
KEPT_LINES = 400
#: The longest one HTTP exchange with a host waits by default (SageMaker's invocation limit).
EXCHANGE_TIMEOUT_S = 60.0


class HostFailure(Exception):
    """A host could not be started or did not become ready; ``reason`` is the cloud's message."""

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


# --- talking to a host ------------------------------------------------------------------------


@dataclass(frozen=True)
class Answer:
    """What a host answered to one request."""

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
    timeout: float = EXCHANGE_TIMEOUT_S,
    host: str = "127.0.0.1",
) -> Answer:
    """One HTTP exchange with ``host:port`` (never through a proxy).

    Raises:
        OSError: no answer (refused, reset, timed out, not HTTP).
    """
    connection = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        connection.request(method, path, body=body, headers=dict(headers or {}))
        response = connection.getresponse()
        data = response.read()
        return Answer(response.status, dict(response.getheaders()), data)
    except http.client.HTTPException as exc:
        raise OSError(f"bad HTTP answer from {host}:{port}: {exc}") from None
    finally:
        connection.close()


# --- hosts -------------------------------------------------------------------------------------


class Host(abc.ABC):
    """One running server (see the subclasses); its output lines, readiness and stop.

    Args:
        name: names its threads (and, in :meth:`describe`, the host).
        port: the port on 127.0.0.1 it answers on (default: a free one).
        sink: called with each line the host prints (after it is kept).
        stop_timeout: seconds between SIGTERM and SIGKILL.
        env: the environment it is started with (what the cloud gives; subclasses may add).
    """

    kind = "host"

    def __init__(
        self,
        *,
        name: str,
        port: int | None = None,
        sink: Callable[[str], None] | None = None,
        stop_timeout: float = 30.0,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.name = name
        self.port = port or free_port()
        self.sink: Callable[[str], None] = sink or (lambda _line: None)
        self.stop_timeout = stop_timeout
        self.env: dict[str, str] = dict(env or {})
        self.started_at = 0.0
        self.stopped = False
        self._lines: deque[str] = deque(maxlen=KEPT_LINES)
        self._printed = threading.Condition()
        self._pumps: list[threading.Thread] = []
        self._stop_lock = threading.Lock()

    @property
    def url(self) -> str:
        """The host's base URL."""
        return f"http://127.0.0.1:{self.port}"

    # -- output ----------------------------------------------------------------------------------

    def lines(self) -> list[str]:
        """The last lines the host printed."""
        with self._printed:
            return list(self._lines)

    def wait_line(self, predicate: Callable[[str], bool], timeout: float) -> str | None:
        """The first kept line ``predicate`` accepts, waiting up to ``timeout`` s; else None."""
        deadline = time.monotonic() + timeout
        with self._printed:
            while True:
                found = next((line for line in self._lines if predicate(line)), None)
                left = deadline - time.monotonic()
                if found is not None or left <= 0:
                    return found
                self._printed.wait(left)

    def _emit(self, line: str) -> None:
        with self._printed:
            self._lines.append(line)
            self._printed.notify_all()
        with contextlib.suppress(Exception):  # a sink's bug must never kill the pump
            self.sink(line)

    def _pump_text(self, chunks: Iterable[bytes]) -> None:
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
        thread = threading.Thread(target=target, name=f"{self.name}-output-{self.port}")
        thread.daemon = True
        thread.start()
        self._pumps.append(thread)

    # -- what a kind of host implements ------------------------------------------------------------

    @abc.abstractmethod
    def _launch(self) -> None:
        """Start the server (returns once launched, not ready)."""

    @abc.abstractmethod
    def exit_status(self) -> int | None:
        """The host's exit status once it has exited; None while it runs."""

    @abc.abstractmethod
    def _terminate(self) -> None:
        """Stop the server: SIGTERM, then SIGKILL after :attr:`stop_timeout`."""

    @property
    @abc.abstractmethod
    def ident(self) -> str:
        """The pid or container id ("" before it started)."""

    def _release(self) -> None:
        """Close what the host held open (after its output is drained)."""
        self._pumps.clear()

    # -- the lifecycle -----------------------------------------------------------------------------

    def start(self) -> None:
        """Start the host (returns once it is launched, not ready).

        Raises:
            HostFailure: it could not be started, or was stopped before it started.
        """
        with self._stop_lock:  # a stop() meanwhile waits, then stops what was started
            if self.stopped:
                raise HostFailure("The host was stopped before it started.")
            self.started_at = time.monotonic()
            self._launch()

    def probe(self, path: str, timeout: float) -> int | None:
        """The status of one ``GET path`` (``timeout`` s); None when nothing answered."""
        try:
            return exchange(self.port, "GET", path, timeout=timeout).status
        except OSError:
            return None

    def wait_ready(
        self,
        path: str,
        timeout: float,
        cancelled: threading.Event,
        *,
        reason: str,
        probe_timeout: float = 2.0,
    ) -> float:
        """Probe ``GET path`` until it answers 200; returns the seconds since the start.

        Probes every 50 ms (faster than any cloud: tests wait for the event, not a period).

        Raises:
            HostFailure: with ``reason``, when the host exited, the wait was cancelled, or
                ``path`` did not answer 200 within ``timeout`` seconds.
        """
        deadline = time.monotonic() + timeout
        while True:
            if cancelled.is_set():
                raise HostFailure(reason, "cancelled")
            status = self.exit_status()
            if status is not None:
                raise HostFailure(reason, f"the container exited with status {status}")
            if self.probe(path, probe_timeout) == 200:
                return time.monotonic() - self.started_at
            if time.monotonic() > deadline:
                raise HostFailure(reason, f"{path} did not answer 200 within {timeout:g} s")
            cancelled.wait(0.05)

    def request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float = EXCHANGE_TIMEOUT_S,
    ) -> Answer:
        """One HTTP exchange with the host.

        Raises:
            OSError: no answer within ``timeout``.
        """
        return exchange(self.port, method, path, body, headers, timeout)

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

    def describe(self) -> dict[str, Any]:
        """What tests may assert about the host."""
        return {
            "kind": self.kind,
            "name": self.name,
            "port": self.port,
            "url": self.url,
            "ident": self.ident,
            "env": dict(self.env),
            "stopped": self.stopped,
        }


class ProcessHost(Host):
    """A command in a child process, in its own process group.

    Its environment: this process's, then :attr:`env`. Output (stdout and stderr) is pumped into
    the host's lines.

    Args:
        argv: the command.
        cwd: its working directory (default: the current one).
    """

    kind = "process"

    def __init__(self, *, argv: Sequence[str], cwd: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.argv = list(argv)
        self.cwd = cwd
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def ident(self) -> str:
        return str(self.process.pid) if self.process else ""

    @property
    def pid(self) -> int | None:
        """The process's pid (None before it started)."""
        return self.process.pid if self.process else None

    def _launch(self) -> None:
        self.process = subprocess.Popen(
            self.argv,
            env={**os.environ, **self.env},
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            cwd=self.cwd,
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
        super()._release()

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

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "pid": self.pid, "argv": list(self.argv)}


class ContainerHost(Host):
    """An image pulled and run through the Docker Engine API (a docker-py client).

    ``container_port`` inside is published on 127.0.0.1:``port``; stopped with SIGTERM, then
    SIGKILL after :attr:`stop_timeout`, and removed.

    Args:
        client: a ``docker.DockerClient``.
        image: the image to pull and run.
        command: replaces the image's CMD (None: the image's own, as Azure ML and Vertex run it).
        container_port: the port the server listens on inside (default: ``port``).
        volumes: docker-py's ``volumes`` (``{host_dir: {"bind": path, "mode": "ro"}}``).
        labels: labels on the container.
        subject: what the cloud's messages say the container is for ("production variant X").
    """

    kind = "container"

    def __init__(
        self,
        *,
        client: Any,
        image: str | None,
        command: Sequence[str] | None = None,
        container_port: int | None = None,
        volumes: Mapping[str, Mapping[str, str]] | None = None,
        labels: Mapping[str, str] | None = None,
        subject: str = "the container",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.client = client
        self.image = image
        self.command = list(command) if command is not None else None
        self.container_port = container_port
        self.volumes = {k: dict(v) for k, v in (volumes or {}).items()}
        self.labels = dict(labels or {})
        self.subject = subject
        self.container: Any = None

    @property
    def ident(self) -> str:
        return str(self.container.id) if self.container is not None else ""

    def _pull(self, image: str) -> None:
        repository, reference = split_image(image)
        reason = f"Failed to pull the image {image} for {self.subject}."
        try:
            for chunk in self.client.api.pull(repository, tag=reference, stream=True, decode=True):
                if isinstance(chunk, dict) and chunk.get("error"):
                    raise HostFailure(reason, str(chunk["error"]))
        except HostFailure:
            raise
        except Exception as exc:
            raise HostFailure(reason, str(exc)) from None

    def _launch(self) -> None:
        if not self.image:
            raise HostFailure(f"There is no container image for {self.subject}.")
        self._pull(self.image)
        inside = self.container_port or self.port
        try:
            self.container = self.client.containers.create(
                self.image,
                command=self.command,
                environment=self.env,
                ports={f"{inside}/tcp": ("127.0.0.1", self.port)},
                volumes=self.volumes,
                labels=self.labels,
                detach=True,
            )
            self.container.start()
        except Exception as exc:
            reason = f"Failed to start the container for {self.subject}."
            raise HostFailure(reason, str(exc)) from None
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

    def describe(self) -> dict[str, Any]:
        return {
            **super().describe(),
            "image": self.image,
            "command": self.command,
            "container_port": self.container_port or self.port,
            "volumes": {k: dict(v) for k, v in self.volumes.items()},
        }
