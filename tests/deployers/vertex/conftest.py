"""Fixtures of the Vertex AI tests: the offline Vertex of ``fake_vertex.py``.

- every test in this folder runs with google-auth kept off the GCE metadata server
  (``NO_GCE_CHECK=true``, ``GCE_METADATA_HOST`` and ``GCE_METADATA_IP`` at a closed port) and
  without the developer's ``GOOGLE_APPLICATION_CREDENTIALS``, ``GOOGLE_CLOUD_PROJECT``,
  ``CLOUDSDK_*`` or ``CLOUD_ML_REGION`` (which would send the SDK to a real project);
- ``fake_vertex`` (session): one started :class:`~fake_vertex.FakeVertex` for the whole run;
- ``vertex``: that fake, reset, with process hosts, for one test; after the test every host is
  stopped, and the test fails if a host process outlived it;
- ``vertex_containers``: the same with container hosts (podman at ``$DOCKER_HOST``); skipped
  without containers, a failure where ``MODELPORT_REQUIRE_CONTAINERS=1``; fails if a container
  outlived the test;
- ``process_images`` (session): images for *process* hosting pushed straight to the local
  registry (``$MODELPORT_TEST_REGISTRY``; no build, no engine:
  :func:`registry_images.push_process_image`): the ``v1`` and ``v2`` packages and a runtime image;
  skipped (or failed) without the registry;
- ``key_file`` (session): a service account's JSON key whose ``token_uri`` is the fake's;
- ``image_builds`` (session): a container engine (``$DOCKER_HOST``) and the local registry, for
  the tests whose deployer builds and pushes the package's serving image itself (skipped, or
  failed where ``MODELPORT_REQUIRE_CONTAINERS=1``, without them).
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from fake_vertex import FakeVertex
from registry_images import ProcessImages, push_process_image

from process_helpers import group_alive

#: Where google-auth looks for the GCE metadata server: a closed port of this machine.
CLOSED_METADATA = "127.0.0.1:9"
#: Variables that would point google-auth or the SDK at a real project or region.
GOOGLE_UNSET = (
    "GOOGLE_APPLICATION_CREDENTIALS",
    "GOOGLE_CLOUD_PROJECT",
    "GCLOUD_PROJECT",
    "GOOGLE_CLOUD_QUOTA_PROJECT",
    "CLOUD_ML_REGION",
    "GOOGLE_API_USE_CLIENT_CERTIFICATE",
    "GOOGLE_API_USE_MTLS_ENDPOINT",
    "GOOGLE_CLOUD_UNIVERSE_DOMAIN",
)


@pytest.fixture(autouse=True)
def _no_google_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep google-auth off the metadata server and the developer's projects and credentials."""
    # google-auth wants exactly "true" (it ignores "True"), and reads it once, at import: the
    # root conftest sets it before any import; this keeps it so for processes the tests start.
    monkeypatch.setenv("NO_GCE_CHECK", "true")
    monkeypatch.setenv("GCE_METADATA_HOST", CLOSED_METADATA)
    monkeypatch.setenv("GCE_METADATA_IP", CLOSED_METADATA)
    for name in GOOGLE_UNSET:
        monkeypatch.delenv(name, raising=False)
    for name in list(os.environ):
        if name.startswith("CLOUDSDK_"):
            monkeypatch.delenv(name, raising=False)
    # gcloud's own configuration directory: nothing of the developer's is read.
    monkeypatch.setenv("CLOUDSDK_CONFIG", os.devnull)


@pytest.fixture(scope="session")
def fake_vertex() -> Iterator[FakeVertex]:
    """The session's fake Vertex (started once, stopped at the end of the session)."""
    fake = FakeVertex().start()
    try:
        yield fake
    finally:
        fake.stop()


def _forget_sdk_config() -> None:
    """Drop what ``aiplatform.init`` kept (project, endpoint, credentials) between tests."""
    initializer = sys.modules.get("google.cloud.aiplatform.initializer")
    if initializer is not None:  # never import the SDK only to forget it (seconds)
        # In place: ``aiplatform.init`` is this very object's bound method.
        initializer.global_config.__init__()


@pytest.fixture
def vertex(fake_vertex: FakeVertex) -> Iterator[FakeVertex]:
    """The fake Vertex, reset, with process hosts; fails the test if a host process outlived it."""
    fake_vertex.reset()
    fake_vertex.hosting = "process"
    try:
        yield fake_vertex
    finally:
        pids = [h["pid"] for h in fake_vertex.hosts() if h["pid"]]
        fake_vertex.reset()
        _forget_sdk_config()
    leaked = [pid for pid in pids if group_alive(pid)]
    for pid in leaked:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)
    assert not leaked, f"host processes outlived the test: {leaked}"


@pytest.fixture
def vertex_containers(fake_vertex: FakeVertex) -> Iterator[FakeVertex]:
    """The fake Vertex, reset, with container hosts (podman)."""
    import docker.errors
    from docker_fixtures import RUN_ID, RUN_LABEL, engine, require_registry

    client = engine()  # skips, or fails where containers are required
    require_registry(fake_vertex.registry)
    fake_vertex.reset()
    fake_vertex.hosting = "container"
    try:
        yield fake_vertex
    finally:
        fake_vertex.reset()
        _forget_sdk_config()
    # One label per filter: podman matches nothing given two.
    this_run = client.containers.list(all=True, filters={"label": f"{RUN_LABEL}={RUN_ID}"})
    left = [c for c in this_run if "dev.modelport.fake-vertex" in (c.labels or {})]
    for container in left:
        with contextlib.suppress(docker.errors.NotFound):
            container.remove(force=True)
    assert not left, f"containers outlived the test: {[c.name for c in left]}"


@pytest.fixture(scope="session")
def process_images(fake_vertex: FakeVertex, package_paths: dict[str, Path]) -> ProcessImages:
    """Push the process-hosting images (a second or less: no build)."""
    from docker_fixtures import require_registry

    require_registry(fake_vertex.registry)
    repository = "modelport-fake-vertex/process"
    run = uuid.uuid4().hex[:8]
    return ProcessImages(
        v1=push_process_image(fake_vertex.registry, package_paths["v1"], repository, f"v1-{run}"),
        v2=push_process_image(fake_vertex.registry, package_paths["v2"], repository, f"v2-{run}"),
        runtime=push_process_image(fake_vertex.registry, None, repository, f"runtime-{run}"),
    )


@pytest.fixture(scope="session")
def key_file(fake_vertex: FakeVertex, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A service account key for the fake (google-auth signs its own JWTs with it)."""
    from vertex_support import write_key

    return write_key(tmp_path_factory.mktemp("google") / "key.json", fake_vertex.token_uri)


@pytest.fixture(scope="session")
def image_builds(fake_vertex: FakeVertex) -> None:
    """An engine that builds and a registry that takes pushes; skip (or fail) without them."""
    from docker_fixtures import engine, require_registry

    engine()  # skips, or fails where containers are required
    require_registry(fake_vertex.registry)
