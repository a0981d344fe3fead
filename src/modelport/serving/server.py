"""Running the server: gunicorn in production, Flask's own server with ``--dev``.

The master process verifies the package once (an archive is extracted once, into a private
directory) and refuses a code-carrying package without the opt-in before any worker starts, so a
bad package is a clear error and exit code, not a crash loop. Each worker then loads the model
itself (ONNX Runtime sessions are not fork-safe, so nothing model-related is created before the
fork), warms it up, and only then reports ready. Workers are modelport's own gunicorn worker
class (:mod:`modelport.serving.worker`: one thread reads and parses, a pool answers), and
requests go straight from its threads to the model: no hop between processes.

The listening socket is bound first, before the package is even read: a port already in use
fails at once, naming the port (gunicorn itself would retry for 5 s, then print a log line).
The bound socket is handed to gunicorn as ``fd://N`` (and to Flask's server as its ``fd``), so
nothing else can take the port between the check and the server. A supervisor that bound the
socket itself (the local target does, so no other process can take the port it picked) hands
it down instead, with ``--fd``.
"""

from __future__ import annotations

import dataclasses
import errno
import logging
import math
import os
import shutil
import signal
import socket
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import Any

from modelport.errors import ServeError
from modelport.model_format.package import open_package
from modelport.model_format.paths import make_temp_dir
from modelport.model_format.signing import enforce
from modelport.serving.config import ServeConfig
from modelport.serving.metrics import zero_gauges

log = logging.getLogger("modelport.serving")

#: gunicorn's exit status for "worker failed to boot": the master stops the whole server.
WORKER_BOOT_ERROR = 3
#: Connections the kernel queues before the server accepts them (gunicorn's default backlog).
LISTEN_BACKLOG = 2048


_FD_HINT = "--fd names a listening socket this process inherited"


def _address(host: str) -> str:
    return f"[{host}]" if ":" in host else host


@contextmanager
def listening_socket(host: str, port: int) -> Iterator[socket.socket]:
    """Bind and listen on ``host:port`` now; closed on leaving unless handed on (detached).

    Raises:
        ServeError: the port is in use, may not be bound, or the host is not this machine's.
    """
    where = f"{_address(host)}:{port}"
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, socket.AF_UNSPEC, socket.SOCK_STREAM, 0, socket.AI_PASSIVE
        )[0]
    except socket.gaierror as exc:
        raise ServeError(
            f"cannot listen on {where}: the host name does not resolve ({exc.strerror})",
            hint="give --host an address of this machine (127.0.0.1, 0.0.0.0, ::1, ::)",
        ) from None
    sock = socket.socket(family, kind, proto)
    try:
        # As gunicorn does: a port whose last connections are in TIME_WAIT is free to take.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(LISTEN_BACKLOG)
    except OSError as exc:
        sock.close()
        raise _listen_error(exc, host, port) from None
    try:
        yield sock
    finally:
        sock.close()  # a no-op once detached


@contextmanager
def inherited_socket(fd: int) -> Iterator[socket.socket]:
    """The listening TCP socket this process inherited as ``fd``; closed on leaving unless detached.

    Raises:
        ServeError: ``fd`` is not open, not a socket, or not a listening TCP socket.
    """
    try:
        sock = socket.socket(fileno=fd)
    except OSError as exc:
        raise ServeError(
            f"cannot serve on file descriptor {fd}: {exc.strerror or exc}",
            hint=_FD_HINT,
        ) from None
    try:
        listening = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN)
        if sock.type != socket.SOCK_STREAM or sock.family not in (socket.AF_INET, socket.AF_INET6):
            listening = 0
    except OSError:
        listening = 0
    if not listening:
        sock.detach()  # not ours to close
        raise ServeError(
            f"file descriptor {fd} is not a listening TCP socket",
            hint=_FD_HINT,
        )
    try:
        yield sock
    finally:
        sock.close()


def _listen_error(exc: OSError, host: str, port: int) -> ServeError:
    where = f"{_address(host)}:{port}"
    if exc.errno == errno.EADDRINUSE:
        return ServeError(
            f"port {port} is already in use (cannot listen on {where})",
            hint="stop what listens there, or pick another port with --port (0 picks a free one)",
        )
    if exc.errno == errno.EACCES:
        return ServeError(
            f"not allowed to listen on port {port} ({where})",
            hint="ports below 1024 need privileges; pick another port with --port",
        )
    if exc.errno == errno.EADDRNOTAVAIL:
        return ServeError(
            f"cannot listen on {where}: {host} is not an address of this machine",
            hint="give --host an address of this machine (127.0.0.1, 0.0.0.0, ::1, ::)",
        )
    return ServeError(f"cannot listen on {where}: {exc.strerror or exc}")


@contextmanager
def prepared_package(config: ServeConfig) -> Iterator[Path]:
    """Verify the package and yield the directory workers load it from.

    Raises:
        PackageError: missing, invalid, tampered with or over ``config.archive_limits``.
        DigestMismatch: not the package ``config.expected_digest`` names.
        EnvironmentProblem: no writable temporary directory, or the disk filled up.
        CodeExecutionRefused: it carries code and ``allow_code`` is off.
        TrustRefused: the trust policy refuses it (unsigned, or not verified).
    """
    # Who signed it is checked before anything of it is opened for serving.
    signed = None if config.trust is None else enforce(config.package, config.trust, doing="serve")
    if signed is not None:
        print(
            f"modelport: signature verified: {signed.fingerprint} ({signed.kind}, trusted by "
            f"{signed.trusted_by})",
            file=sys.stderr,
            flush=True,
        )
    with open_package(
        config.package,
        allow_code=config.allow_code,
        expected_digest=config.expected_digest,
        limits=config.archive_limits,
    ) as opened:
        yield opened.directory


@contextmanager
def metrics_directory() -> Iterator[Path]:
    """The directory every worker's metrics file lives in, removed when the server stops."""
    directory = make_temp_dir("modelport-metrics-")
    try:
        yield directory
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def _announce(config: ServeConfig, url: str, name: str, version: str) -> None:
    mode = "development server" if config.dev else f"{config.workers} worker(s)"
    batching = f"batching up to {config.max_batch_size} rows" if config.batching else "batching off"
    print(
        f"modelport: serving {name} {version} at {url} ({mode}, {config.threads} thread(s) "
        f"each, {batching})",
        file=sys.stderr,
        flush=True,
    )


def _exit_worker(exc: BaseException) -> None:
    log.error("loading the model failed, stopping the server: %s", exc, exc_info=exc)
    logging.shutdown()
    # Called in the loader thread; gunicorn's master halts on this status instead of respawning.
    os._exit(WORKER_BOOT_ERROR)


def _worker_exit(server: Any, worker: Any) -> None:
    """Gunicorn hook, in the worker, after it stopped serving: exit without finalization.

    ONNX Runtime's static destructors can crash (SIGSEGV) once Python has torn itself down, which
    turned clean stops into "worker was sent SIGSEGV". By now requests are drained and nothing
    is left to clean up in a worker, so it exits at once, with the status it was exiting with.
    Exiting here also keeps the master's own cleanup, which a forked worker inherits on its stack
    (removing the extracted package and the metrics directory), from running in a worker.
    """
    exc = sys.exc_info()[1]
    code = exc.code if isinstance(exc, SystemExit) else (1 if exc is not None else 0)
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code if isinstance(code, int) else 1)


def run(config: ServeConfig) -> None:
    """Serve until stopped (SIGTERM drains in-flight requests first).

    Raises:
        PackageError: the package is invalid.
        CodeExecutionRefused: the package carries code and ``allow_code`` is off.
        ServeError: the port cannot be listened on (in use, not allowed), checked first; or
            the server stopped with an error.
    """
    bound = (
        listening_socket(config.host, config.port)
        if config.fd is None
        else inherited_socket(config.fd)
    )
    with bound as sock, prepared_package(config) as package_dir, metrics_directory() as metrics_dir:
        if config.fd is not None:
            host, port = sock.getsockname()[:2]
            config = dataclasses.replace(config, host=host, port=port)
        if config.dev:
            _run_dev(config, sock, package_dir, metrics_dir)
        else:
            _run_gunicorn(config, sock, package_dir, metrics_dir)


def _run_gunicorn(
    config: ServeConfig, sock: socket.socket, package_dir: Path, metrics_dir: Path
) -> None:
    # Imported before the fork, so each worker starts with them already loaded.
    import onnxruntime  # noqa: F401
    from gunicorn.app.base import BaseApplication  # type: ignore[import-untyped]

    from modelport.model_format.package import read_manifest
    from modelport.serving.app import create_app
    from modelport.serving.worker import ModelportWorker

    manifest = read_manifest(package_dir, config.archive_limits)

    def when_ready(server: Any) -> None:
        for listener in server.LISTENERS:
            _announce(config, str(listener), manifest.name, manifest.version)

    def child_exit(server: Any, worker: Any) -> None:
        zero_gauges(metrics_dir, worker.pid)

    tmp_dir = "/dev/shm" if os.access("/dev/shm", os.W_OK) else None
    settings: dict[str, Any] = {
        # The socket bound above, handed over: gunicorn takes (and closes) the descriptor.
        "bind": [f"fd://{sock.detach()}"],
        "workers": config.workers,
        "worker_class": ModelportWorker.configured(
            config.max_body_bytes, config.max_buffered_bytes
        ),
        "threads": config.threads,
        "worker_connections": config.max_connections,
        # The worker's main loop beats even while requests run, so this only catches hung workers.
        "timeout": max(30, int(config.timeout_s) + 10),
        "graceful_timeout": max(1, math.ceil(config.graceful_timeout_s)),
        # Longer than load balancers' idle timeouts (60 s for AWS), so they close first.
        "keepalive": 75,
        "accesslog": None,
        "errorlog": "-",
        "loglevel": "info",
        "proc_name": f"modelport {manifest.name}",
        "worker_tmp_dir": tmp_dir,
        "preload_app": False,
        "control_socket_disable": True,
        "when_ready": when_ready,
        "child_exit": child_exit,
        "worker_exit": _worker_exit,
    }

    class Server(BaseApplication):  # type: ignore[misc]
        def load_config(self) -> None:
            for key, value in settings.items():
                self.cfg.set(key, value)

        def load(self) -> Callable[..., Any]:
            # Runs in each worker after the fork: the model is loaded once per worker.
            return create_app(config, package_dir, metrics_dir, on_load_failure=_exit_worker)

    try:
        Server().run()
    except SystemExit as exc:
        if exc.code not in (0, None):
            raise ServeError(
                f"the server stopped with exit status {exc.code}; see the log above"
            ) from None


def _run_dev(
    config: ServeConfig, sock: socket.socket, package_dir: Path, metrics_dir: Path
) -> None:
    from werkzeug.serving import make_server

    from modelport.serving.app import create_app

    app = create_app(config, package_dir, metrics_dir, start=False)
    service = app.extensions["modelport"]
    service.load()
    # Werkzeug serves a duplicate of the bound socket; ours is closed when run() leaves.
    server = make_server(config.host, config.port, app, threaded=True, fd=sock.fileno())
    _announce(
        config, f"http://{_address(config.host)}:{server.port}", service.name, service.version
    )

    def stop(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
        server.server_close()
        app.extensions["modelport.metrics"].close()
