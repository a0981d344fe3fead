"""Server configuration: one frozen dataclass, and where each setting comes from.

Nothing here imports Flask or gunicorn, so the CLI can build a config cheaply.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from modelport.errors import UsageError
from modelport.model_format.limits import DEFAULT_LIMITS, ArchiveLimits

if TYPE_CHECKING:  # the policy's module imports the package loader: not for --help
    from modelport.model_format.signing import TrustPolicy

DEFAULT_PORT = 8080
DEFAULT_HOST = "127.0.0.1"
HOST_ENV = "MODELPORT_HOST"
#: Checked in this order after ``--port``; SageMaker's variable wins over Vertex's.
PORT_ENVS = ("SAGEMAKER_BIND_TO_PORT", "AIP_HTTP_PORT")
HEALTH_ROUTE_ENV = "AIP_HEALTH_ROUTE"
PREDICT_ROUTE_ENV = "AIP_PREDICT_ROUTE"
#: gunicorn waits this long at most for in-flight requests after SIGTERM; SageMaker sends
#: SIGKILL 30 s after SIGTERM, so draining must end well before that.
MAX_GRACEFUL_S = 25.0
MAX_DEFAULT_WORKERS = 8
#: What predictions hold: ``full``, every output as the model gives it; ``mlflow``, what MLflow's
#: scoring server answers for the same model (``payload.answer_outputs``).
ANSWER_MODES = ("full", "mlflow")


@dataclass(frozen=True)
class ServeConfig:
    """Everything ``modelport serve`` needs, resolved and validated.

    Attributes:
        package: the package directory or archive to serve.
        host: the address to bind.
        port: the TCP port to bind (0 picks a free one; the log says which).
        fd: a listening socket this process inherited (its file descriptor), served instead of
            binding ``host:port``: a supervisor (the local target, systemd) bound it.
        workers: worker processes, each with its own copy of the model.
        threads: request threads per worker (also the most requests one batch can merge).
        ort_threads: ONNX Runtime intra-op threads per worker.
        batching: merge concurrent requests into one model call.
        max_batch_size: the most rows one merged model call may hold.
        max_batch_wait_s: the longest a batch waits for requests still being read.
        max_body_bytes: larger request bodies get 413 before they are read.
        max_connections: connections one worker holds at most; at the limit the oldest idle
            ones (kept alive between requests, or with a head still arriving) are closed.
        max_buffered_bytes: request bytes one worker holds at most over all its connections
            (503 beyond); None: four bodies at the limit, at least 64 MiB.
        timeout_s: the longest a request may wait for its prediction (then 503).
        allow_code: allow packages whose flavor runs code they carry.
        answer: what predictions hold: ``full`` (every output) or ``mlflow`` (what MLflow's
            scoring server answers for the same model; see ``payload.answer_outputs``).
        strict_inputs: refuse table columns that feed no input instead of ignoring them.
        dev: use Flask's development server instead of gunicorn.
        health_route: Vertex AI's health route (``AIP_HEALTH_ROUTE``), if set.
        predict_route: Vertex AI's predict route (``AIP_PREDICT_ROUTE``), if set.
        expected_digest: the package digest (``sha256:...``) the package must have; None
            serves any intact package.
        archive_limits: what reading the package may cost (expanded size, entries, manifest
            size, compression ratio); over a limit, the server refuses to start.
        trust: the signature policy the package must pass before it serves
            (``MODELPORT_TRUST``, ``--trust``); None is off.
    """

    package: Path
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    fd: int | None = None
    workers: int = 1
    threads: int = 16
    ort_threads: int = 1
    batching: bool = True
    max_batch_size: int = 64
    max_batch_wait_s: float = 0.002
    # SageMaker's own limit on an /invocations payload (6 MB); --max-body-mb raises it.
    max_body_bytes: int = 6 * 1024 * 1024
    max_connections: int = 1000
    max_buffered_bytes: int | None = None
    timeout_s: float = 60.0
    allow_code: bool = False
    answer: str = "full"
    strict_inputs: bool = False
    dev: bool = False
    health_route: str | None = None
    predict_route: str | None = None
    expected_digest: str | None = None
    archive_limits: ArchiveLimits = DEFAULT_LIMITS
    trust: TrustPolicy | None = None

    @property
    def graceful_timeout_s(self) -> float:
        """How long a stopping server waits for in-flight requests."""
        return min(self.timeout_s, MAX_GRACEFUL_S)


def resolve_port(port: int | None, env: Mapping[str, str]) -> int:
    """Pick the port: ``--port``, ``SAGEMAKER_BIND_TO_PORT``, ``AIP_HTTP_PORT``, else 8080.

    Raises:
        UsageError: an environment variable holds something that is not a port number.
    """
    if port is not None:
        return port
    for name in PORT_ENVS:
        value = env.get(name, "").strip()
        if value:
            try:
                number = int(value)
            except ValueError:
                raise UsageError(f"{name} must be a port number (0-65535)") from None
            if not 0 <= number <= 65535:
                raise UsageError(f"{name} must be a port number (0-65535)")
            return number
    return DEFAULT_PORT


def resolve_host(host: str | None, env: Mapping[str, str]) -> str:
    """Pick the host: ``--host``, else ``MODELPORT_HOST`` (images set 0.0.0.0), else 127.0.0.1."""
    return host or env.get(HOST_ENV, "").strip() or DEFAULT_HOST


def vertex_route(name: str, env: Mapping[str, str]) -> str | None:
    """Read a Vertex AI route variable; a route must start with ``/``.

    Raises:
        UsageError: the variable is set to something that is not an absolute path.
    """
    value = env.get(name, "").strip()
    if not value:
        return None
    if not value.startswith("/") or any(c in value for c in "<>?# "):
        raise UsageError(f"{name} must be a URL path starting with '/'")
    return value


def default_workers(cpus: int) -> int:
    """One worker per usable CPU (request handling is CPU-bound Python), at most 8."""
    return max(1, min(cpus, MAX_DEFAULT_WORKERS))


def ort_threads_per_worker(cpus: int, workers: int) -> int:
    """Share the usable CPUs among the workers so ONNX Runtime pools never oversubscribe them."""
    return max(1, cpus // max(1, workers))
