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

The machinery (output pump, readiness wait, process groups, the Docker Engine API) is the shared
:mod:`hosting`; this module is SageMaker's layer over it: what runs, with which environment, and
SageMaker's messages.
"""

from __future__ import annotations

import io
import os
import secrets
import shutil
import sys
import tarfile
import tempfile
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import hosting
from hosting import KEPT_LINES, Answer, HostFailure, exchange, free_port, split_image

__all__ = [
    "INVOKE_TIMEOUT_S",
    "KEPT_LINES",
    "MODEL_MOUNT",
    "PING_TIMEOUT_S",
    "Answer",
    "ContainerHost",
    "Host",
    "HostFailure",
    "HostSpec",
    "ProcessHost",
    "exchange",
    "extract_model_data",
    "free_port",
    "instance_id",
    "split_image",
]

#: Where SageMaker puts the model data inside the container.
MODEL_MOUNT = "/opt/ml/model"
#: SageMaker's timeout for one health-check ping.
PING_TIMEOUT_S = 2.0
#: SageMaker's timeout for one invocation.
INVOKE_TIMEOUT_S = 60.0


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


class Host(hosting.Host):
    """One running instance of a production variant (a :class:`ProcessHost` or
    :class:`ContainerHost`): SageMaker's readiness, invocation and names over :mod:`hosting`.

    Attributes:
        spec: what it runs.
        instance_id: its instance id (the log stream is ``<variant>/<instance_id>``).
    """

    def __init__(
        self,
        spec: HostSpec,
        sink: Callable[[str], None] | None = None,
        stop_timeout: float = 30.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            name=f"fake-sagemaker-{spec.endpoint}", sink=sink, stop_timeout=stop_timeout, **kwargs
        )
        self.spec = spec
        self.instance_id = instance_id()

    @property
    def log_stream(self) -> str:
        """The CloudWatch log stream of this instance."""
        return f"{self.spec.variant}/{self.instance_id}"

    def wait_ready(  # type: ignore[override]
        self, timeout: float, cancelled: threading.Event
    ) -> float:
        """Ping until ``/ping`` answers 200 (2 s per ping); returns the seconds it took.

        Raises:
            HostFailure: the host exited, was cancelled, or was not ready within ``timeout``.
        """
        reason = (
            f"The primary container for production variant {self.spec.variant} did not pass "
            "the ping health check. Please check CloudWatch logs for this endpoint."
        )
        return super().wait_ready(
            "/ping", timeout, cancelled, reason=reason, probe_timeout=PING_TIMEOUT_S
        )

    def ping(self) -> int | None:
        """The status of one ``GET /ping`` (2 s timeout); None when nothing answered."""
        return self.probe("/ping", PING_TIMEOUT_S)

    def invoke(self, body: bytes, headers: Mapping[str, str]) -> Answer:
        """``POST /invocations`` with ``body`` and ``headers``.

        Raises:
            OSError: the host did not answer within 60 s.
        """
        return self.request("POST", "/invocations", body, headers, INVOKE_TIMEOUT_S)

    def describe(self) -> dict[str, Any]:
        """What tests may assert about the host."""
        return {
            **super().describe(),
            "endpoint": self.spec.endpoint,
            "variant": self.spec.variant,
            "endpoint_config": self.spec.endpoint_config,
            "model": self.spec.model,
            "instance_id": self.instance_id,
            "log_stream": self.log_stream,
            "image": self.spec.image,
            "model_dir": self.spec.model_dir,
        }


class ProcessHost(Host, hosting.ProcessHost):
    """The serving entrypoint in a child process: ``python -m modelport.image.entrypoint serve``.

    Its environment: this process's, the model's ``Environment``, then ``MODELPORT_PACKAGE`` (the
    unpacked model data, standing in for ``/opt/ml/model``), ``SAGEMAKER_BIND_TO_PORT``,
    ``MODELPORT_WORKERS=1`` and ``MODELPORT_HOST=127.0.0.1``. The image is not used.
    """

    def __init__(
        self,
        spec: HostSpec,
        sink: Callable[[str], None] | None = None,
        stop_timeout: float = 30.0,
    ) -> None:
        super().__init__(
            spec,
            sink,
            stop_timeout,
            argv=[sys.executable, "-m", "modelport.image.entrypoint", "serve"],
            cwd=str(spec.model_dir or tempfile.gettempdir()),
        )

    def _launch(self) -> None:
        self.env = {
            **self.spec.environment,
            "SAGEMAKER_BIND_TO_PORT": str(self.port),
            "MODELPORT_WORKERS": "1",
            "MODELPORT_HOST": "127.0.0.1",
        }
        if self.spec.model_dir is not None:
            self.env["MODELPORT_PACKAGE"] = str(self.spec.model_dir)
        super()._launch()


class ContainerHost(Host, hosting.ContainerHost):
    """The model's image, pulled and run the way SageMaker runs it.

    ``docker run IMAGE serve`` with the model data bind-mounted read-only at ``/opt/ml/model``,
    the model's ``Environment`` plus ``SAGEMAKER_BIND_TO_PORT``, published on 127.0.0.1 (the same
    port inside and out); stopped with SIGTERM, then SIGKILL after 30 s.
    """

    def __init__(
        self,
        spec: HostSpec,
        sink: Callable[[str], None] | None = None,
        stop_timeout: float = 30.0,
        *,
        client: Any,
        labels: Mapping[str, str] | None = None,
    ) -> None:
        volumes = {}
        if spec.model_dir is not None:
            volumes[str(spec.model_dir)] = {"bind": MODEL_MOUNT, "mode": "ro"}
        super().__init__(
            spec,
            sink,
            stop_timeout,
            client=client,
            image=spec.image,
            command=["serve"],
            volumes=volumes,
            labels={**(labels or {}), "dev.modelport.fake-sagemaker": spec.endpoint},
            subject=f"production variant {spec.variant}",
        )

    def _launch(self) -> None:
        if not self.spec.image:
            raise HostFailure(f"The model {self.spec.model} has no container image.")
        self.env = {**self.spec.environment, "SAGEMAKER_BIND_TO_PORT": str(self.port)}
        super()._launch()
