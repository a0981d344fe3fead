"""The ``local`` target: ``modelport serve`` as a managed background process on this machine.

Each deployment is two detached processes and one directory::

    $MODELPORT_HOME/deployments/local/<name>/
        state.json          what the target knows (written atomically)
        upstream.json       {"port": N}: the server the proxy sends requests to
        proxy.ready.json    written by the proxy once it listens
        proxy.log           the proxy's log
        server-<gen>.log    the server's log (``deployments logs``)
        package-<gen>[.mport]  a private copy of the package it serves

- **the proxy** (:mod:`modelport.deployers.local.proxy`) owns the deployment's stable address
  (``-C port=...``, or a free port it picks) and forwards every request to the current server;
- **the server** is ``modelport serve`` on a private ephemeral port on 127.0.0.1, bound here and
  inherited (``--fd``), so no other process can take the port before the server listens.

``create`` and ``update`` are rollouts (:mod:`modelport.deployers.kit.rollout`): named steps,
each undone in reverse order when a later one fails, and the same steps are ``--dry-run``'s plan.

``update`` is blue/green: it starts the new version's server on a new port, waits until its
``/ping`` answers 200, points the proxy at it (one atomic file replace; the proxy picks the server
per request), then stops the old server with SIGTERM, which lets it finish what it has. Clients of
the stable address see no failed request. If any step fails, the new server is stopped, its files
are removed and the old version keeps serving. ``update(..., wait=False)`` runs the same update
in a background job (:mod:`modelport.deployers.kit.background`) and returns at once.

``get`` checks that both processes are alive (by pid and start time, so a stale state file is
reported as ``failed``, never as running) and probes ``/ping`` through the proxy.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import json
import os
import shlex
import shutil
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelport.deployers.base import Deployer, Deployment, DeploymentStatus, utcnow
from modelport.deployers.kit import background, processes
from modelport.deployers.kit.http import client_host, predict_over_http, probe_status
from modelport.deployers.kit.naming import (
    PROVENANCE_FACTS,
    Facts,
    provenance_details,
    with_provenance,
)
from modelport.deployers.kit.rollout import Step
from modelport.deployers.kit.state import (
    HOME_ENV,
    default_home,
    exclusive_lock,
    write_json_atomic,
)
from modelport.deployers.kit.waiting import Seen, wait_until
from modelport.errors import (
    DeploymentError,
    DeploymentExists,
    DeploymentNotFound,
    UsageError,
)

if TYPE_CHECKING:
    from modelport.model_format.package import Package

STATE_VERSION = 1
#: How long the old server keeps getting requests already routed to it before it is stopped.
SWITCH_GRACE_S = 0.3
#: How long the proxy may take to listen.
PROXY_START_TIMEOUT_S = 30.0


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


def _package_record(package: Package, package_path: Path) -> dict[str, Any]:
    """What the state file says of the package a server runs (its provenance when known)."""
    return {
        "digest": package.digest,
        "name": package.name,
        "version": package.version,
        "flavor": package.manifest.flavor.name,
        "source": str(package.path),
        "path": package_path.name,
        **provenance_details(with_provenance(Facts(), package.provenance)),
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

    def _locked(self) -> contextlib.AbstractContextManager[None]:
        """Serialize verbs that change deployments, across processes."""
        return exclusive_lock(self.root / ".lock")

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
                f"the state of local deployment {name!r} is unreadable ({path}: {exc})",
                hint=f"'modelport deployments delete -t local --name {name}' removes it",
            ) from None
        if not isinstance(data, dict):
            raise DeploymentError(f"the state of local deployment {name!r} is corrupt ({path})")
        return data

    def _write_state(self, name: str, state: Mapping[str, Any]) -> None:
        write_json_atomic(self._dir(name) / "state.json", dict(state))

    # --- processes ------------------------------------------------------------------------

    def _env(self, package: Package) -> dict[str, str]:
        from modelport.model_format.package import ALLOW_CODE_ENV

        env = dict(os.environ)
        env["PYTHONUNBUFFERED"] = "1"
        # The server refuses its private copy if it is ever not the package that was deployed.
        env["MODELPORT_EXPECT_DIGEST"] = package.digest
        if package.manifest.flavor.runs_code:
            # Only a caller who opted in could load a code-carrying package: pass it on.
            env[ALLOW_CODE_ENV] = "1"
        return env

    def _serve_command(self, package_path: Path) -> list[str]:
        command = [
            sys.executable,
            "-m",
            "modelport.cli.main",
            "serve",
            str(package_path),
            "--fd",
            str(processes.PASSED_FD),
        ]
        if self.config.workers is not None:
            command += ["--workers", str(self.config.workers)]
        return command + list(self.config.serve_args)

    def _proxy_command(self, directory: Path) -> list[str]:
        return [
            sys.executable,
            "-m",
            "modelport.deployers.local.proxy",
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
        log = directory / f"server-{generation}.log"
        # Bound here and handed down (``serve --fd``) rather than picked, closed and bound again
        # by the server: in between, any other process could take the port, and /ping might then
        # be answered by someone else.
        from modelport.serving.server import listening_socket

        with listening_socket("127.0.0.1", 0) as sock:
            port = sock.getsockname()[1]
            pid = processes.spawn_detached(
                self._serve_command(package_path),
                log=log,
                env=self._env(package),
                pass_fd=sock.fileno(),
            )
        return {
            "pid": pid,
            "start_time": processes.start_time(pid),
            "port": port,
            "log": log.name,
            "generation": generation,
        }

    def _start_proxy(self, directory: Path, state: dict[str, Any]) -> dict[str, Any]:
        pid = processes.spawn_detached(
            self._proxy_command(directory), log=directory / "proxy.log", env=dict(os.environ)
        )
        proxy = {"pid": pid, "start_time": processes.start_time(pid)}
        try:
            state["proxy"] = proxy
            self._write_state(state["name"], state)
            return self._await_proxy(directory, proxy)
        except BaseException:
            self._stop(proxy)  # the step failed inside: its undo will not run
            raise

    def _await_proxy(self, directory: Path, proxy: dict[str, Any]) -> dict[str, Any]:
        """Wait until the proxy listens; its port goes into ``proxy``."""
        ready = directory / "proxy.ready.json"
        pid = proxy["pid"]

        def listening() -> Seen:
            if ready.exists():
                return Seen(done=True)
            if not processes.is_running(pid, proxy["start_time"]):
                return Seen(failed="the proxy exited at start")
            return Seen(status="starting")

        wait_until(
            listening,
            what="the local target's endpoint proxy",
            timeout_s=PROXY_START_TIMEOUT_S,
            progress=self.progress,
            log=lambda: _tail_lines(directory / "proxy.log", 20),
        )
        info = json.loads(ready.read_text("utf-8"))
        if "error" in info:
            raise DeploymentError(f"the local target's endpoint {info['error']}")
        proxy["port"] = int(info["port"])
        return proxy

    def _stop(self, *records: Mapping[str, Any] | None) -> None:
        """Stop the processes these state records describe (absent or malformed ones skipped)."""
        processes.stop_all(
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

        def ready() -> Seen:
            code = probe_status(url)
            if code == 200:
                return Seen(done=True)
            if not processes.is_running(server["pid"], server.get("start_time")):
                return Seen(failed="the server exited while starting")
            return Seen(status=f"/ping answered {code}" if code else "not listening yet")

        wait_until(
            ready,
            what=f"{what}: the server on port {server['port']}",
            timeout_s=self.config.startup_timeout,
            progress=self.progress,
            max_interval_s=0.25,
            log=lambda: _tail_lines(directory / server["log"], 25),
            timeout_hint="allow more time with -C startup_timeout=SECONDS",
        )

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
        # A verdict on the copy, not a directory to read: verify() checks an archive in place
        # (open_package would extract it only to throw it away).
        report = verify(target)
        if not report.ok or report.manifest.digest != package.digest:
            LocalDeployer._remove_path(target)
            raise DeploymentError(
                f"the package at {source} changed on disk after it was loaded; load it again"
            )
        return target

    @staticmethod
    def _remove_path(path: Path) -> None:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)

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
        if not processes.is_running(proxy.get("pid", 0), proxy.get("start_time")):
            problem = f"the proxy process {proxy.get('pid')} is not running"
        elif not processes.is_running(server.get("pid", 0), server.get("start_time")):
            problem = (
                f"the server process {server.get('pid')} is not running "
                f"(see: modelport deployments logs -t local --name {state['name']})"
            )
        job = background.last(self.home, self.name, state["name"])
        updating = bool(state.get("pending")) or (job is not None and job.status == "running")
        if problem is not None:
            status = DeploymentStatus.FAILED
        elif not probe or endpoint is None:
            status = DeploymentStatus(state.get("status", "unknown"))
        else:
            code = probe_status(f"{endpoint}/ping")
            if code == 200:
                status = DeploymentStatus.UPDATING if updating else DeploymentStatus.READY
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
        details.update({k: package[k] for k in PROVENANCE_FACTS if package.get(k) is not None})
        if job is not None:
            details["update_job"] = job.to_dict()
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

    # --- the steps ------------------------------------------------------------------------

    def _create_rollout(
        self, name: str, package: Package, *, wait: bool
    ) -> tuple[list[Step], dict[str, Any]]:
        """The steps of ``create``, and the state they fill in as they run."""
        directory = self._dir(name)
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

        def make_directory(_: Mapping[str, Any]) -> Path:
            directory.mkdir(parents=True)
            self._write_state(name, state)
            return directory

        def copy_package(_: Mapping[str, Any]) -> Path:
            path = self._copy_package(package, directory, 1)
            state["package"] = _package_record(package, path)
            self._write_state(name, state)
            return path

        def start_server(done: Mapping[str, Any]) -> dict[str, Any]:
            server = self._start_server(directory, package, done["copy-package"], 1)
            try:
                state["server"] = server
                self._write_state(name, state)
                write_json_atomic(directory / "upstream.json", {"port": server["port"]})
            except BaseException:
                self._stop(server)  # the step failed inside: its undo will not run
                raise
            return server

        def start_proxy(_: Mapping[str, Any]) -> dict[str, Any]:
            proxy = self._start_proxy(directory, state)
            self._write_state(name, state)
            return proxy

        def wait_ready(done: Mapping[str, Any]) -> None:
            self._wait_ready(directory, done["start-server"], f"deployment {name!r}")
            state["status"] = DeploymentStatus.READY.value
            self._write_state(name, state)

        port = self.config.port or "a free port"
        steps = [
            Step(
                "make-directory",
                f"create {directory} for state, logs and a copy of the package",
                make_directory,
                undo=self._remove_path,
                kind="directory",
                details={"path": str(directory)},
                resource=lambda d: f"the directory {d}",
                remove_with=lambda d: f"rm -r {shlex.quote(str(d))}",
            ),
            Step(
                "copy-package",
                f"copy the package {package.name} {package.version} ({package.digest}) into it",
                copy_package,
                undo=self._remove_path,
                kind="file",
                details={"source": str(package.path), "package_digest": package.digest},
            ),
            _process_step(
                "start-server",
                f"start modelport serve for {package.name} {package.version} "
                f"({package.digest}) on a free port on 127.0.0.1",
                start_server,
                self._stop,
                self._serve_command(directory / "package-1"),
            ),
            _process_step(
                "start-proxy",
                f"start the endpoint proxy on {self.config.host}:{port}",
                start_proxy,
                self._stop,
                self._proxy_command(directory),
            ),
        ]
        if wait:
            steps.append(
                Step(
                    "wait-ready",
                    f"wait until the server answers /ping with 200 (at most "
                    f"{self.config.startup_timeout:g} s)",
                    wait_ready,
                    kind="wait",
                )
            )
        return steps, state

    def _update_rollout(
        self, name: str, package: Package, state: dict[str, Any]
    ) -> tuple[list[Step], Callable[[], None]]:
        """The steps of a blue/green ``update``, and the cleanup to run once they all passed."""
        directory = self._dir(name)
        old = state.get("server")
        old_package = state.get("package", {}).get("path")
        generation = int(state.get("generation", 1)) + 1

        def copy_package(_: Mapping[str, Any]) -> Path:
            return self._copy_package(package, directory, generation)

        def start_server(done: Mapping[str, Any]) -> dict[str, Any]:
            pending = self._start_server(directory, package, done["copy-package"], generation)
            try:
                state["pending"] = pending
                self._write_state(name, state)
            except BaseException:
                stop_server(pending)  # the step failed inside: its undo will not run
                raise
            return pending

        def stop_server(pending: Mapping[str, Any]) -> None:
            self._stop(pending)
            self._remove_path(directory / str(pending["log"]))
            state.pop("pending", None)
            self._write_state(name, state)

        def wait_ready(done: Mapping[str, Any]) -> None:
            self._wait_ready(directory, done["start-server"], f"update of deployment {name!r}")

        def switch(done: Mapping[str, Any]) -> dict[str, Any]:
            before = copy.deepcopy(state)
            new = done["start-server"]
            # One atomic replace: the proxy routes each new request to the new port.
            write_json_atomic(directory / "upstream.json", {"port": new["port"]})
            state.pop("pending", None)
            state.update(
                server=new,
                # Recorded until it is stopped, so that delete (or the next update) stops it
                # whatever interrupts the cleanup.
                retiring=old,
                generation=generation,
                updated_at=utcnow().isoformat(),
                status=DeploymentStatus.READY.value,
                package=_package_record(package, done["copy-package"]),
            )
            self._write_state(name, state)
            return before

        def switch_back(before: dict[str, Any]) -> None:
            write_json_atomic(directory / "upstream.json", {"port": before["server"]["port"]})
            state.clear()
            state.update(before)
            self._write_state(name, state)

        def cleanup() -> None:
            self.progress("switched; stopping the old server")
            time.sleep(SWITCH_GRACE_S)
            self._stop(old)
            state.pop("retiring", None)
            self._write_state(name, state)
            try:
                if isinstance(old, Mapping) and old.get("log"):
                    self._remove_path(directory / str(old["log"]))
                if old_package:
                    self._remove_path(directory / str(old_package))
            except OSError as exc:
                self.progress.warn(f"left behind in {directory}: {exc}")

        steps = [
            Step(
                "copy-package",
                f"copy the package {package.name} {package.version} ({package.digest}) into "
                f"{directory}",
                copy_package,
                undo=self._remove_path,
                kind="file",
            ),
            _process_step(
                "start-server",
                f"start modelport serve for {package.name} {package.version} beside the "
                "current one",
                start_server,
                stop_server,
                self._serve_command(directory / f"package-{generation}"),
            ),
            Step(
                "wait-ready",
                "wait until the new server answers /ping with 200",
                wait_ready,
                kind="wait",
            ),
            Step(
                "switch",
                "point the endpoint proxy at the new server",
                switch,
                undo=switch_back,
                kind="switch",
            ),
        ]
        return steps, cleanup

    def _clear_pending(self, name: str, state: dict[str, Any]) -> None:
        """Remove what an update killed midway (SIGKILL, power loss) had started or left."""
        retiring = state.pop("retiring", None)
        if isinstance(retiring, Mapping):  # killed after its switch: the old server may run
            self._stop(retiring)
            self._write_state(name, state)
        leftover = state.pop("pending", None)
        if not isinstance(leftover, Mapping):
            return
        directory = self._dir(name)
        self._stop(leftover)
        generation = leftover.get("generation")
        self._remove_path(directory / f"server-{generation}.log")
        for suffix in ("", ".mport"):
            self._remove_path(directory / f"package-{generation}{suffix}")
        self._write_state(name, state)

    # --- the verbs ------------------------------------------------------------------------

    def create_steps(self, name: str, package: Package, *, wait: bool = True) -> list[Step]:
        """The steps of ``create``: directory, package copy, server, proxy, readiness."""
        return self._create_rollout(name, package, wait=wait)[0]

    def create(self, name: str, package: Package, *, wait: bool = True) -> Deployment:
        """Start the proxy and the server; wait for ``/ping`` unless ``wait`` is False."""
        self.check_name(name)
        with self._locked():
            if self._dir(name).exists():
                raise DeploymentExists(
                    f"a deployment named {name!r} already exists on target 'local'",
                    hint="use 'modelport deployments update' to change its package",
                )
            steps, state = self._create_rollout(name, package, wait=wait)
            self.rollout("create", steps).run()
        return self._record(state, probe=wait)

    def update(self, name: str, package: Package, *, wait: bool = True) -> Deployment:
        """Blue/green: start the new server, wait until ready, switch the proxy, stop the old.

        With ``wait=False`` the same update runs in a background job, and the record returned
        says ``updating``.
        """
        if not wait:
            current = self.get(name)
            if current.package_digest == package.digest:
                return current
            job = background.start(self, "update", name, package, home=self.home)
            details = {**current.details, "update_job": job.to_dict()}
            return dataclasses.replace(current, status=DeploymentStatus.UPDATING, details=details)
        background.refuse_if_busy(self.home, self.name, name)
        with self._locked():
            state = self._read_state(name)
            if state.get("package", {}).get("digest") == package.digest:
                self.progress("the package digest is unchanged: nothing to do")
                return self._record(state)
            self._clear_pending(name, state)
            steps, cleanup = self._update_rollout(name, package, state)
            self.rollout("update", steps).run()
            cleanup()
        return self._record(state)

    def delete(self, name: str) -> None:
        """Stop the proxy and the server(s) and remove the deployment's directory."""
        directory = self._dir(name)
        background.cancel(self.home, self.name, name, timeout=self.config.stop_timeout * 2)
        if not directory.exists():
            return
        with self._locked():
            if not directory.exists():
                return
            try:
                state = self._read_state(name)
            except DeploymentError:
                state = {}  # corrupt or half-written: remove what is there
            self._stop(
                state.get("proxy"), state.get("pending"), state.get("server"), state.get("retiring")
            )
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


def _process_step(
    name: str,
    description: str,
    run: Callable[[Mapping[str, Any]], dict[str, Any]],
    stop: Callable[[Mapping[str, Any]], None],
    command: Sequence[str],
) -> Step:
    """A step that starts a detached process; its undo stops it."""
    return Step(
        name,
        description,
        run,
        undo=stop,
        kind="process",
        details={"command": list(command)},
        resource=lambda record: f"process {record['pid']}",
        remove_with=lambda record: f"kill -TERM -- -{record['pid']}",
    )
