"""``modelport serve``: the REST server, also the entry point every image runs.

SageMaker starts a container as ``docker run IMAGE serve``, so with ``ENTRYPOINT ["modelport"]``
the package comes from ``MODELPORT_PACKAGE`` (or ``/opt/ml/model`` when that holds a package).
Every option also reads a ``MODELPORT_*`` environment variable, for images and cloud configs.
This module imports no web framework: the server modules are imported when the command runs.
"""

from __future__ import annotations

import os
from pathlib import Path

import click

from modelport.errors import UsageError
from modelport.serving.config import ServeConfig

# The options' defaults are ServeConfig's, so the Python API and the CLI cannot drift apart.
_MIB = 1024 * 1024

SAGEMAKER_MODEL_DIR = Path("/opt/ml/model")


def _package_path(package: str | None) -> Path:
    if package:
        return Path(package)
    if (SAGEMAKER_MODEL_DIR / "modelport.json").is_file():
        return SAGEMAKER_MODEL_DIR
    raise UsageError(
        "no package to serve: pass PKG, or set MODELPORT_PACKAGE "
        "(or mount a package at /opt/ml/model)"
    )


@click.command(context_settings={"max_content_width": 100})
@click.argument("package", metavar="[PKG]", required=False, envvar="MODELPORT_PACKAGE")
@click.option(
    "--host",
    default=None,
    help="Address to bind. [default: $MODELPORT_HOST, else 127.0.0.1]",
)
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=None,
    help="Port (0: any free one). [default: $SAGEMAKER_BIND_TO_PORT, $AIP_HTTP_PORT, else 8080]",
)
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    envvar="MODELPORT_WORKERS",
    default=None,
    help="Worker processes, each with its own model. [default: usable CPUs, at most 8]",
)
@click.option(
    "--threads",
    type=click.IntRange(min=1),
    envvar="MODELPORT_THREADS",
    default=ServeConfig.threads,
    show_default=True,
    help="Request threads per worker (the most requests one batch can merge).",
)
@click.option(
    "--max-batch-size",
    type=click.IntRange(min=1),
    envvar="MODELPORT_MAX_BATCH_SIZE",
    default=ServeConfig.max_batch_size,
    show_default=True,
    help="Most rows one merged model call may hold.",
)
@click.option(
    "--max-batch-wait-ms",
    type=click.FloatRange(min=0),
    envvar="MODELPORT_MAX_BATCH_WAIT_MS",
    default=ServeConfig.max_batch_wait_s * 1000.0,
    show_default=True,
    help="Longest a batch waits for requests still being read.",
)
@click.option(
    "--no-batching",
    is_flag=True,
    envvar="MODELPORT_NO_BATCHING",
    help="Run every request in its own model call.",
)
@click.option(
    "--max-body-mb",
    type=click.FloatRange(min=0, min_open=True),
    envvar="MODELPORT_MAX_BODY_MB",
    default=ServeConfig.max_body_bytes / _MIB,
    show_default=True,
    help="Largest request body accepted (413 above).",
)
@click.option(
    "--timeout-s",
    type=click.FloatRange(min=0, min_open=True),
    envvar="MODELPORT_TIMEOUT_S",
    default=ServeConfig.timeout_s,
    show_default=True,
    help="Longest a request may wait for its prediction (503 after).",
)
@click.option(
    "--allow-code",
    is_flag=True,
    help="Allow a package that runs code it carries (python flavor). Also MODELPORT_ALLOW_CODE=1.",
)
@click.option("--dev", is_flag=True, help="Use Flask's development server instead of gunicorn.")
def serve(
    package: str | None,
    host: str | None,
    port: int | None,
    workers: int | None,
    threads: int,
    max_batch_size: int,
    max_batch_wait_ms: float,
    no_batching: bool,
    max_body_mb: float,
    timeout_s: float,
    allow_code: bool,
    dev: bool,
) -> None:
    """Serve PKG over HTTP: SageMaker, KServe V2, Vertex AI and Azure ML routes in one server.

    PKG is a package directory or .mport archive (default: $MODELPORT_PACKAGE). Stop with
    SIGTERM or Ctrl-C: in-flight requests finish first.
    """
    from modelport.model_format.flavors.onnx import usable_cpus
    from modelport.serving import config as cfg

    env = os.environ
    cpus = usable_cpus()
    n_workers = 1 if dev else workers or cfg.default_workers(cpus)
    config = cfg.ServeConfig(
        package=_package_path(package),
        host=cfg.resolve_host(host, env),
        port=cfg.resolve_port(port, env),
        workers=n_workers,
        threads=threads,
        ort_threads=cfg.ort_threads_per_worker(cpus, n_workers),
        batching=not no_batching,
        max_batch_size=max_batch_size,
        max_batch_wait_s=max_batch_wait_ms / 1000.0,
        max_body_bytes=max(1, int(max_body_mb * _MIB)),
        timeout_s=timeout_s,
        allow_code=allow_code,
        dev=dev,
        health_route=cfg.vertex_route(cfg.HEALTH_ROUTE_ENV, env),
        predict_route=cfg.vertex_route(cfg.PREDICT_ROUTE_ENV, env),
    )
    from modelport.serving.server import run

    run(config)
