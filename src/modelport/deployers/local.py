"""The ``local`` target: ``modelport serve`` as a managed background process on this machine.

Each deployment is two detached processes and one directory::

    $MODELPORT_HOME/deployments/local/<name>/
        state.json          what the target knows (written atomically)
        upstream.json       {"port": N}: the server the proxy sends requests to
        proxy.ready.json    written by the proxy once it listens
        proxy.log           the proxy's log
        server-<gen>.log    the server's log (``deployments logs``)
        package-<gen>[.mport]  a private copy of the package it serves

- **the proxy** (:mod:`modelport.deployers.local_proxy`) owns the deployment's stable address
  (``-C port=...``, or a free port it picks) and forwards every request to the current server;
- **the server** is ``modelport serve`` on a private ephemeral port on 127.0.0.1.

``update`` is blue/green: it starts the new version's server on a new port, waits until its
``/ping`` answers 200, points the proxy at it (one atomic file replace; the proxy picks the server
per request), then stops the old server with SIGTERM, which lets it finish what it has. Clients of
the stable address see no failed request. If the new server does not become ready, it is stopped,
its files are removed and the old version keeps serving.

``get`` checks that both processes are alive (by pid and start time, so a stale state file is
reported as ``failed``, never as running) and probes ``/ping`` through the proxy.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import socket
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelport.deployers import _process
from modelport.deployers._http import client_host, predict_over_http, probe_status
from modelport.deployers.base import (
    Deployer,
    Deployment,
    DeploymentStatus,
    PlannedAction,
    utcnow,
)
from modelport.deployers.local_proxy import write_json_atomic
from modelport.errors import (
    DeploymentError,
    DeploymentExists,
    DeploymentNotFound,
    UsageError,
)

if TYPE_CHECKING:
    from modelport.model_format.package import Package

HOME_ENV = "MODELPORT_HOME"
STATE_VERSION = 1
#: How long the old server keeps getting requests already routed to it before it is stopped.
SWITCH_GRACE_S = 0.3


def default_home() -> Path:
    """``$MODELPORT_HOME``, else ``~/.modelport``."""
    return Path(os.environ.get(HOME_ENV) or Path.home() / ".modelport").expanduser()


@dataclass(frozen=True)
class LocalConfig:
    """Options of the ``local`` target."""

    home: Path | None = field(
        default=None,
        metadata={
            "help": "Directory for the deployments' state, logs and package copies "
            f"(default: ${HOME_ENV}, else ~/.modelport). Also given as a URI: -t local:/path."
        },
    )
    host: str = field(
        default="127.0.0.1",
        metadata={"help": "Address the deployment's stable endpoint listens on."},
    )
    port: int = field(
        default=0,
        metadata={"help": "Port of the stable endpoint; 0 picks a free one."},
    )
    workers: int | None = field(
        default=None,
        metadata={"help": "Worker processes of the server (modelport serve --workers)."},
    )
    serve_args: tuple[str, ...] = field(
        default=(),
        metadata={
            "help": "More options for modelport serve, as a JSON list, e.g. "
            '["--max-batch-size", "32"].'
        },
    )
    startup_timeout: float = field(
        default=120.0,
        metadata={"help": "Seconds a new server may take to answer /ping with 200."},
    )
    stop_timeout: float = field(
        default=30.0,
        metadata={"help": "Seconds a stopping server may take to drain before it is killed."},
    )

    def __post_init__(self) -> None:
        home: Any = self.home  # the Python API may pass a str
        if home is not None and not isinstance(home, Path):
            object.__setattr__(self, "home", Path(home).expanduser())
        if not 0 <= self.port <= 65535:
            raise ValueError(f"port must be between 0 and 65535, got {self.port}")
        if self.workers is not None and self.workers < 1:
            raise ValueError(f"workers must be at least 1, got {self.workers}")
        if self.startup_timeout <= 0 or self.stop_timeout <= 0:
            raise ValueError("startup_timeout and stop_timeout must be positive")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _package_record(package: Package, package_path: Path) -> dict[str, Any]:
    """What the state file says of the package a server runs."""
    return {
        "digest": package.digest,
        "name": package.name,
        "version": package.version,
        "flavor": package.manifest.flavor.name,
        "source": str(package.path),
        "path": package_path.name,
    }


def _tail_lines(path: Path, count: int | None) -> list[str]:
    """The last ``count`` lines of a file (all for None), read from the end in blocks."""
    try:
        f = open(path, "rb")  # noqa: SIM115 - closed below
    except FileNotFoundError:
        return []
    with f:
        if count is None:
            return f.read().decode("utf-8", "replace").splitlines()
        f.seek(0, os.SEEK_END)
        end = position = f.tell()
        data = b""
        while position > 0 and data.count(b"\n") <= count:
            position = max(0, position - 65536)
            f.seek(position)
            data = f.read(end - position)
        lines = data.decode("utf-8", "replace").splitlines()
        return lines[-count:] if count else []


class LocalDeployer(Deployer[LocalConfig]):
    """Run the package with ``modelport serve`` as a managed background process on this machine.

    The deployment's endpoint is a stable local address (a small proxy) in front of the server,
    so ``update`` swaps servers without failing a request. State lives under ``$MODELPORT_HOME``
    (default ``~/.modelport``). POSIX only.
    """

    name = "local"
    config_class = LocalConfig

    @classmethod
    def options_from_uri(cls, uri: str) -> dict[str, Any]:
        """``local:/some/dir`` keeps its state in ``/some/dir`` (the ``home`` option)."""
        return {"home": uri} if uri.strip() else {}

    # --- paths, state, locking ------------------------------------------------------------

    @property
    def home(self) -> Path:
        """The directory that holds this target's state."""
        return self.config.home if self.config.home is not None else default_home()

    @property
    def root(self) -> Path:
        """``<home>/deployments/local``: one directory per deployment."""
        return self.home / "deployments" / "local"

    def _dir(self, name: str) -> Path:
        # Every verb reaches its state through here: a name like ".." never becomes a path.
        self.check_name(name)
        return self.root / name

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """Serialize verbs that change deployments, across processes."""
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / ".lock", "a+b") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def _read_state(self, name: str) -> dict[str, Any]:
        path = self._dir(name) / "state.json"
        try:
            data = json.loads(path.read_text("utf-8"))
        except FileNotFoundError:
            raise DeploymentNotFound(
                f"no deployment named {name!r} on target 'local' (in {self.root})"
            ) from None
        except (OSError, ValueError) as exc:
            raise DeploymentError(
                f"the state of local deployment {name!r} is unreadable ({path}: {exc}); "
                f"'modelport deployments delete -t local --name {name}' removes it"
            ) from None
        if not isinstance(data, dict):
            raise DeploymentError(f"the state of local deployment {name!r} is corrupt ({path})")
        return data

    def _write_state(self, name: str, state: Mapping[str, Any]) -> None:
        write_json_atomic(self._dir(name) / "state.json", dict(state))

    # --- processes ------------------------------------------------------------------------

    def _env(self, package: Package) -> dict[str, str]:
        env = dict(os.environ)
        env["PYTHONUNBUFFERED"] = "1"
        if package.manifest.flavor.name != "onnx":
            # Only a caller who opted in could load a code-carrying package: pass it on.
            env["MODELPORT_ALLOW_CODE"] = "1"
        return env

    def _serve_command(self, package_path: Path, port: int) -> list[str]:
        command = [
            sys.executable,
            "-m",
            "modelport.cli.main",
            "serve",
            str(package_path),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ]
        if self.config.workers is not None:
            command += ["--workers", str(self.config.workers)]
        return command + list(self.config.serve_args)

    def _proxy_command(self, directory: Path) -> list[str]:
        return [
            sys.executable,
            "-m",
            "modelport.deployers.local_proxy",
            "--host",
            self.config.host,
            "--port",
            str(self.config.port),
            "--upstream",
            str(directory / "upstream.json"),
            "--ready",
            str(directory / "proxy.ready.json"),
        ]

    def _start_server(
        self, directory: Path, package: Package, package_path: Path, generation: int
    ) -> dict[str, Any]:
        port = _free_port()
        log = directory / f"server-{generation}.log"
        pid = _process.spawn_detached(
            self._serve_command(package_path, port), log=log, env=self._env(package)
        )
        return {
            "pid": pid,
            "start_time": _process.start_time(pid),
            "port": port,
            "log": log.name,
            "generation": generation,
        }

    def _start_proxy(self, directory: Path, state: dict[str, Any]) -> dict[str, Any]:
        ready = directory / "proxy.ready.json"
        pid = _process.spawn_detached(
            self._proxy_command(directory), log=directory / "proxy.log", env=dict(os.environ)
        )
        proxy = {"pid": pid, "start_time": _process.start_time(pid)}
        state["proxy"] = proxy
        self._write_state(state["name"], state)
        deadline = time.monotonic() + 30.0
        while not ready.exists():
            if not _process.is_running(pid, proxy["start_time"]):
                raise DeploymentError(
                    "the local proxy exited at start; its log says:\n"
                    + "\n".join(_tail_lines(directory / "proxy.log", 20))
                )
            if time.monotonic() > deadline:
                raise DeploymentError("the local proxy did not start within 30 s")
            time.sleep(0.01)
        info = json.loads(ready.read_text("utf-8"))
        if "error" in info:
            raise DeploymentError(f"the local target's endpoint {info['error']}")
        proxy["port"] = int(info["port"])
        return proxy

    def _stop(self, *records: Mapping[str, Any] | None) -> None:
        """Stop the processes these state records describe (absent or malformed ones skipped)."""
        _process.stop_all(
            [
                (r["pid"], r.get("start_time"))
                for r in records
                if isinstance(r, Mapping) and isinstance(r.get("pid"), int)
            ],
            timeout=self.config.stop_timeout,
        )

    def _wait_ready(self, directory: Path, server: Mapping[str, Any], what: str) -> None:
        """Wait until the server answers /ping with 200; raise (with its log) if it dies."""
        url = f"http://127.0.0.1:{server['port']}/ping"
        deadline = time.monotonic() + self.config.startup_timeout
        next_note = time.monotonic() + 5.0
        delay = 0.02
        while True:
            if probe_status(url) == 200:
                return
            if not _process.is_running(server["pid"], server.get("start_time")):
                log = "\n".join(_tail_lines(directory / server["log"], 25))
                raise DeploymentError(
                    f"{what}: the server exited while starting; its log ends:\n{log}"
                )
            now = time.monotonic()
            if now > deadline:
                log = "\n".join(_tail_lines(directory / server["log"], 25))
                raise DeploymentError(
                    f"{what}: the server was not ready within {self.config.startup_timeout:g} s "
                    f"(-C startup_timeout=...); its log ends:\n{log}"
                )
            if now > next_note:
                self.progress(f"still waiting for the server on port {server['port']} ...")
                next_note = now + 5.0
            time.sleep(delay)
            delay = min(delay * 1.5, 0.25)

    @staticmethod
    def _copy_package(package: Package, directory: Path, generation: int) -> Path:
        """Copy the package into the deployment, so later changes to the source do not matter."""
        from modelport.model_format.package import verify

        source = Path(package.path)
        if source.is_dir():
            target = directory / f"package-{generation}"
            shutil.copytree(source, target, symlinks=True)
        else:
            target = directory / f"package-{generation}.mport"
            shutil.copyfile(source, target)
        report = verify(target)
        if not report.ok or report.manifest.digest != package.digest:
            raise DeploymentError(
                f"the package at {source} changed on disk after it was loaded; load it again"
            )
        return target

    @staticmethod
    def _remove_path(path: Path) -> None:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()

    # --- records --------------------------------------------------------------------------

    def _endpoint(self, state: Mapping[str, Any]) -> str | None:
        proxy = state.get("proxy") or {}
        port = proxy.get("port")
        return f"http://{client_host(state['host'])}:{port}" if port else None

    def _record(self, state: Mapping[str, Any], *, probe: bool = True) -> Deployment:
        server = state.get("server") or {}
        proxy = state.get("proxy") or {}
        endpoint = self._endpoint(state)
        problem = None
        if not _process.is_running(proxy.get("pid", 0), proxy.get("start_time")):
            problem = f"the proxy process {proxy.get('pid')} is not running"
        elif not _process.is_running(server.get("pid", 0), server.get("start_time")):
            problem = (
                f"the server process {server.get('pid')} is not running "
                f"(see: modelport deployments logs -t local --name {state['name']})"
            )
        if problem is not None:
            status = DeploymentStatus.FAILED
        elif not probe or endpoint is None:
            status = DeploymentStatus(state.get("status", "unknown"))
        else:
            code = probe_status(f"{endpoint}/ping")
            if code == 200:
                status = (
                    DeploymentStatus.UPDATING if state.get("pending") else DeploymentStatus.READY
                )
            elif code == 503:
                status = DeploymentStatus.STARTING
            else:
                status = DeploymentStatus.UNKNOWN
                problem = f"/ping answered {code}" if code else "the endpoint does not answer"
        package = state.get("package") or {}
        details: dict[str, Any] = {
            "package_name": package.get("name"),
            "package_version": package.get("version"),
            "package_source": package.get("source"),
            "host": state.get("host"),
            "port": proxy.get("port"),
            "server_port": server.get("port"),
            "server_pid": server.get("pid"),
            "proxy_pid": proxy.get("pid"),
            "generation": state.get("generation"),
            "log": str(self._dir(state["name"]) / server["log"]) if server.get("log") else None,
            "state_dir": str(self._dir(state["name"])),
        }
        if problem:
            details["problem"] = problem
        return Deployment(
            name=state["name"],
            target=self.name,
            status=status,
            endpoint=endpoint,
            package_digest=package.get("digest", ""),
            created_at=datetime.fromisoformat(state["created_at"]),
            updated_at=datetime.fromisoformat(state["updated_at"]),
            details=details,
        )

    # --- the verbs ------------------------------------------------------------------------

    def plan(self, name: str, package: Package) -> Sequence[PlannedAction]:
        """What ``create`` would start and write; touches nothing."""
        directory = self._dir(name)
        port = self.config.port or "a free port"
        return [
            PlannedAction(
                "directory",
                f"create {directory} for state, logs and a copy of the package",
                {"path": str(directory)},
            ),
            PlannedAction(
                "process",
                f"start the endpoint proxy on {self.config.host}:{port}",
                {"command": self._proxy_command(directory)},
            ),
            PlannedAction(
                "process",
                f"start modelport serve for {package.name} {package.version} "
                f"({package.digest}) on a free port on 127.0.0.1",
                {"command": self._serve_command(directory / "package-1", 0)},
            ),
        ]

    def create(self, name: str, package: Package, *, wait: bool = True) -> Deployment:
        """Start the proxy and the server; wait for ``/ping`` unless ``wait`` is False."""
        self.check_name(name)
        with self._locked():
            directory = self._dir(name)
            if directory.exists():
                raise DeploymentExists(
                    f"a deployment named {name!r} already exists on target 'local'; "
                    "use 'modelport deployments update' to change its package"
                )
            now = utcnow().isoformat()
            state: dict[str, Any] = {
                "version": STATE_VERSION,
                "name": name,
                "target": self.name,
                "host": self.config.host,
                "created_at": now,
                "updated_at": now,
                "status": DeploymentStatus.STARTING.value,
                "generation": 1,
            }
            try:
                directory.mkdir(parents=True)
                self._write_state(name, state)
                self.progress(f"copying package {package.name} {package.version}")
                package_path = self._copy_package(package, directory, 1)
                state["package"] = _package_record(package, package_path)
                server = self._start_server(directory, package, package_path, 1)
                state["server"] = server
                self._write_state(name, state)
                write_json_atomic(directory / "upstream.json", {"port": server["port"]})
                self.progress("starting the endpoint proxy")
                self._start_proxy(directory, state)
                self._write_state(name, state)
                if wait:
                    self.progress(f"waiting for the server (pid {server['pid']}) to be ready")
                    self._wait_ready(directory, server, f"deployment {name!r}")
                    state["status"] = DeploymentStatus.READY.value
                    self._write_state(name, state)
            except BaseException:
                self._stop(state.get("proxy"), state.get("server"))
                shutil.rmtree(directory, ignore_errors=True)
                raise
        return self._record(state, probe=wait)

    def update(self, name: str, package: Package) -> Deployment:
        """Blue/green: start the new server, wait until ready, switch the proxy, stop the old."""
        with self._locked():
            state = self._read_state(name)
            if state.get("package", {}).get("digest") == package.digest:
                self.progress("the package digest is unchanged: nothing to do")
                return self._record(state)
            directory = self._dir(name)
            leftover = state.pop("pending", None)
            if isinstance(leftover, Mapping):
                # An earlier update was killed midway: remove what it had started.
                self._stop(leftover)
                self._remove_path(directory / f"server-{leftover.get('generation')}.log")
                for suffix in ("", ".mport"):
                    self._remove_path(directory / f"package-{leftover.get('generation')}{suffix}")
                self._write_state(name, state)
            old = state.get("server")
            old_package = state.get("package", {}).get("path")
            generation = int(state.get("generation", 1)) + 1
            pending: dict[str, Any] = {"generation": generation}
            package_path = directory / f"package-{generation}"
            try:
                self.progress(f"copying package {package.name} {package.version}")
                package_path = self._copy_package(package, directory, generation)
                pending = self._start_server(directory, package, package_path, generation)
                state["pending"] = pending
                self._write_state(name, state)
                self.progress(f"waiting for the new server (pid {pending['pid']}) to be ready")
                self._wait_ready(directory, pending, f"update of deployment {name!r}")
            except BaseException:
                self._stop(pending)
                self._remove_path(package_path)
                self._remove_path(directory / f"server-{generation}.log")
                state.pop("pending", None)
                self._write_state(name, state)
                raise
            # The switch: one atomic replace; the proxy routes each new request to the new port.
            write_json_atomic(directory / "upstream.json", {"port": pending["port"]})
            state.pop("pending")
            state["server"] = pending
            state["generation"] = generation
            state["updated_at"] = utcnow().isoformat()
            state["status"] = DeploymentStatus.READY.value
            state["package"] = _package_record(package, package_path)
            self._write_state(name, state)
            self.progress("switched; stopping the old server")
            time.sleep(SWITCH_GRACE_S)
            self._stop(old)
            if isinstance(old, Mapping) and old.get("log"):
                self._remove_path(directory / str(old["log"]))
            if old_package:
                self._remove_path(directory / str(old_package))
        return self._record(state)

    def delete(self, name: str) -> None:
        """Stop the proxy and the server(s) and remove the deployment's directory."""
        directory = self._dir(name)
        if not directory.exists():
            return
        with self._locked():
            if not directory.exists():
                return
            try:
                state = self._read_state(name)
            except DeploymentError:
                state = {}  # corrupt or half-written: remove what is there
            self._stop(state.get("proxy"), state.get("pending"), state.get("server"))
            shutil.rmtree(directory)

    def get(self, name: str) -> Deployment:
        """The deployment with its live status: processes alive, and ``/ping`` via the proxy."""
        return self._record(self._read_state(name))

    def list(self) -> Sequence[Deployment]:
        """Every local deployment under this target's home, by name."""
        if not self.root.is_dir():
            return []
        result = []
        for directory in sorted(self.root.iterdir()):
            if directory.is_dir() and (directory / "state.json").is_file():
                # A directory someone else put there (not a valid name, or no state) is skipped.
                with contextlib.suppress(DeploymentNotFound, DeploymentError, UsageError):
                    result.append(self._record(self._read_state(directory.name)))
        return result

    def predict(self, name: str, payload: Mapping[str, Any]) -> dict[str, Any]:
        """POST the payload to the deployment's ``/invocations``."""
        state = self._read_state(name)
        endpoint = self._endpoint(state)
        if endpoint is None:
            raise DeploymentError(f"local deployment {name!r} has no endpoint yet")
        return predict_over_http(
            f"local deployment {name!r}",
            endpoint,
            payload,
            f"; see 'modelport deployments get -t local --name {name}'",
        )

    def logs(self, name: str, *, tail: int | None = 100) -> Iterator[str]:
        """The last ``tail`` lines of the current server's log."""
        state = self._read_state(name)
        server = state.get("server") or {}
        if not server.get("log"):
            return iter(())
        return iter(_tail_lines(self._dir(name) / str(server["log"]), tail))
