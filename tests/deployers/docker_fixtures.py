"""Shared helpers of the docker tests: the engine, the base image, one image built per session.

The slow tests need a Docker Engine API (podman's service works: ``.ci/setup-containers.sh``
starts one and builds the base image). Without them the tests are skipped, except where
``MODELPORT_REQUIRE_CONTAINERS=1`` (set by that script): there a missing piece is a failure,
so CI can never pass by skipping.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import time
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from modelport.deployers.kit import http as _http

#: Where the image tests' base image comes from: a Debian with python3 + python3-venv.
BASE_IMAGE_ENV = "MODELPORT_TEST_BASE_IMAGE"
REGISTRY_ENV = "MODELPORT_TEST_REGISTRY"
REQUIRE_ENV = "MODELPORT_REQUIRE_CONTAINERS"
#: Label on every container and image the tests make (any run's: for a manual clean-up).
TEST_LABEL = "dev.modelport.test"
#: Label whose value is this run's id (:data:`RUN_ID`): teardown removes only what this run made,
#: so two runs on one machine never remove each other's images.
RUN_LABEL = "dev.modelport.test-run"
RUN_ID = uuid.uuid4().hex


def run_labels(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The labels of everything a test makes: the test label, this run's id, and ``extra``."""
    return {TEST_LABEL: "1", RUN_LABEL: RUN_ID, **(extra or {})}


def unavailable(reason: str) -> None:
    """Skip (developer machine) or fail (CI, where the setup script promised containers)."""
    if os.environ.get(REQUIRE_ENV) == "1":
        pytest.fail(f"{reason} ({REQUIRE_ENV}=1: containers must be available)", pytrace=False)
    pytest.skip(f"{reason}; run `source .ci/setup-containers.sh` to enable the image tests")


def require_registry(address: str) -> None:
    """Skip (or fail, where containers are required) unless a registry answers at ``address``."""
    from hosting import exchange

    host, _, port = address.partition(":")
    try:
        exchange(int(port or 80), "GET", "/v2/", timeout=5, host=host)
    except OSError as exc:
        unavailable(f"no registry at {address}: {exc}")


def engine() -> Any:
    """A docker-py client for $DOCKER_HOST, or skip/fail."""
    try:
        import docker
    except ImportError:
        unavailable("docker-py is not installed (pip install 'modelport[docker]')")
    base_url = os.environ.get("DOCKER_HOST")
    if not base_url:
        unavailable("DOCKER_HOST is not set")
    try:
        client = docker.DockerClient(base_url=base_url, timeout=900)
        client.ping()
    except Exception as exc:
        unavailable(f"no Docker Engine API at {base_url}: {exc}")
    return client


def base_image(client: Any) -> str:
    """The local base image named by $MODELPORT_TEST_BASE_IMAGE, or skip/fail."""
    import docker.errors

    name = os.environ.get(BASE_IMAGE_ENV)
    if not name:
        unavailable(f"{BASE_IMAGE_ENV} is not set")
    from modelport.deployers.kit.waiting import wait_until

    def inspected() -> bool:
        # podman's inspection of the image can fail for a moment with a 500 "image not known"
        # while another image is being removed (CI, once, between two modules); it is a read,
        # so ask again.
        try:
            client.images.get(name)
        except docker.errors.ImageNotFound:
            unavailable(f"the base image {name} is not there")
        except docker.errors.APIError as exc:
            if "not known" not in str(exc):
                raise
            return False
        return True

    wait_until(inspected, what=f"podman to inspect the base image {name}", timeout_s=30)
    return name


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def http(
    method: str, url: str, body: Any = None, timeout: float = 10.0, headers: Any = None
) -> tuple[int, bytes]:
    """One HTTP exchange (JSON body when given); (status, body). Raises OSError if no answer."""
    data = None if body is None else json.dumps(body).encode()
    return _http.http(method, url, data, timeout, headers)


def wait_http_ok(url: str, container: Any, timeout: float = 60.0) -> float:
    """Wait until ``GET url`` answers 200; returns the seconds it took. Fails if the container
    exits first (with its log) or on timeout."""
    start = time.monotonic()
    while True:
        with contextlib.suppress(OSError):
            if http("GET", url, timeout=2.0)[0] == 200:
                return time.monotonic() - start
        container.reload()
        if container.status in ("exited", "dead"):
            logs = container.logs().decode("utf-8", "replace")
            pytest.fail(f"container exited before {url} answered:\n{logs}")
        if time.monotonic() - start > timeout:
            logs = container.logs().decode("utf-8", "replace")
            pytest.fail(f"{url} did not answer 200 within {timeout} s:\n{logs}")
        time.sleep(0.05)


def published_port(container: Any, port: int) -> int:
    """The host port a container's ``port/tcp`` is published on."""
    container.reload()
    bindings = container.attrs["NetworkSettings"]["Ports"][f"{port}/tcp"]
    return int(bindings[0]["HostPort"])


@dataclass(frozen=True)
class BuiltImage:
    """The serving image of the test package, built once per session from its build context."""

    id: str
    tag: str
    digest: str
    package_name: str
    context: Path
    base_image: str
    build_seconds: float


_BUILT: dict[str, BuiltImage] = {}


def build_context(client: Any, directory: Path, tag: str) -> str:
    """``docker build`` of a written context through the Engine API; the image's id.

    Fails the test with the end of the build's log when the build fails.
    """
    log: list[str] = []
    image_id = None
    for chunk in client.api.build(
        path=str(directory), tag=tag, rm=True, forcerm=True, decode=True, labels=run_labels()
    ):
        log.append(str(chunk.get("stream", "")))
        if "error" in chunk:
            pytest.fail(f"building {tag} failed: {chunk['error']}\n{''.join(log[-30:])}")
        if isinstance(chunk.get("aux"), dict):
            image_id = chunk["aux"].get("ID") or image_id
    return str(image_id or client.images.get(tag).id)


def built_image(client: Any, tmp_root: Path, base: str) -> BuiltImage:
    """Build (once per session) the image of the ``Y = X * 3`` test package with `docker build`.

    This is the Dockerfile exactly as ``modelport dockerfile`` writes it, built whole through the
    Engine API: what a user gets from ``docker build``. Every test that runs it shares it.
    """
    key = str(tmp_root)
    if key in _BUILT:
        return _BUILT[key]
    from modelport.image import write_context
    from modelport.plugins.testing import make_test_package

    tmp_root.mkdir(parents=True, exist_ok=True)
    package = make_test_package(tmp_root / "image-test.mport", scale=3.0, name="image-test")
    context = write_context(
        package,
        tmp_root / "context",
        base_image=base,
        pip_cert=os.environ.get("PIP_CERT") or None,
    )
    tag = f"localhost/modelport-test/image-test:{os.getpid()}"
    start = time.monotonic()
    image_id = build_context(client, context.directory, tag)
    _BUILT[key] = BuiltImage(
        id=str(image_id),
        tag=tag,
        digest=context.package_digest,
        package_name=context.package_name,
        context=context.directory,
        base_image=base,
        build_seconds=time.monotonic() - start,
    )
    return _BUILT[key]


def remove_test_leftovers(client: Any, run_id: str = RUN_ID) -> None:
    """Remove every container and image run ``run_id`` made (this run's, unless told)."""
    import docker.errors

    from modelport.deployers.docker import list_images

    # One label per filter: podman matches no image given two.
    this_run = {"label": f"{RUN_LABEL}={run_id}"}
    for container in client.containers.list(all=True, filters=this_run):
        with contextlib.suppress(docker.errors.NotFound):
            container.remove(force=True)
    for image in list_images(client, this_run["label"]):
        with contextlib.suppress(docker.errors.NotFound, docker.errors.APIError):
            client.images.remove(image.id, force=True)


@contextlib.contextmanager
def running(client: Any, image: str, **kwargs: Any) -> Iterator[Any]:
    """Run a container of ``image`` (detached, labelled with this run) and remove it afterwards."""
    import docker.errors

    labels = run_labels(kwargs.pop("labels", None))
    container = client.containers.run(image, detach=True, labels=labels, **kwargs)
    try:
        yield container
    finally:
        with contextlib.suppress(docker.errors.NotFound):
            container.remove(force=True)
