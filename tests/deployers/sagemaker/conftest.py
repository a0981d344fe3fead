"""Fixtures of the SageMaker tests: the offline AWS of ``fake_aws.py``.

- ``fake_aws`` (session): one :class:`~fake_aws.FakeAWS` for the whole run (moto's backends are
  global to the process, so there is only ever one); its environment is *not* applied.
- ``aws``: that fake, reset, with process hosts, and its environment (``AWS_ENDPOINT_URL``,
  credentials, region...) set for the test; after the test every host is stopped and the
  test fails if one of their processes is still there.
- ``packages``: the ``v1`` (scale 1) and ``v2`` (scale 2) test packages, loaded once per module;
- ``fake_aws_containers``: the same with container hosts (the model's image run by podman);
  skipped without containers, a failure where ``MODELPORT_REQUIRE_CONTAINERS=1``; after the test
  every container is removed and the test fails if one of them is still there.
"""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
from fake_aws import FakeAWS

from modelport.model_format.package import Package, load
from process_helpers import group_alive


@pytest.fixture(scope="session")
def fake_aws() -> Iterator[FakeAWS]:
    """The session's fake AWS (started once, stopped at the end of the session)."""
    fake = FakeAWS().start()
    try:
        yield fake
    finally:
        fake.stop()


def _use(fake: FakeAWS, monkeypatch: pytest.MonkeyPatch, hosting: str) -> None:
    fake.reset()
    fake.hosting = hosting
    for name in fake.conflicting_env():
        monkeypatch.delenv(name, raising=False)
    for name, value in fake.env.items():
        monkeypatch.setenv(name, value)


@pytest.fixture
def aws(fake_aws: FakeAWS, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeAWS]:
    """The fake AWS, reset, with process hosts and its environment applied for the test."""
    _use(fake_aws, monkeypatch, "process")
    yield fake_aws
    pids = [h["pid"] for h in fake_aws.hosts() if h["pid"]]
    fake_aws.reset()
    leaked = [pid for pid in pids if group_alive(pid)]
    for pid in leaked:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)
    assert not leaked, f"host processes outlived the test: {leaked}"


@pytest.fixture
def fake_aws_containers(fake_aws: FakeAWS, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeAWS]:
    """The fake AWS, reset, with container hosts (podman) and its environment applied."""
    import docker.errors
    from docker_fixtures import RUN_ID, RUN_LABEL, engine, require_registry

    client = engine()  # skips, or fails where containers are required
    require_registry(fake_aws.registry)
    _use(fake_aws, monkeypatch, "container")
    try:
        yield fake_aws
    finally:
        fake_aws.reset()
        fake_aws.hosting = "process"
    # One label per filter: podman matches nothing given two.
    this_run = client.containers.list(all=True, filters={"label": f"{RUN_LABEL}={RUN_ID}"})
    left = [c for c in this_run if "dev.modelport.fake-sagemaker" in (c.labels or {})]
    for container in left:
        with contextlib.suppress(docker.errors.NotFound):
            container.remove(force=True)
    assert not left, f"containers outlived the test: {[c.name for c in left]}"


@pytest.fixture(scope="module")
def packages(package_paths: dict[str, Path]) -> Iterator[dict[str, Package]]:
    """The ``v1`` (scale 1) and ``v2`` (scale 2) test packages, loaded."""
    loaded = {key: load(path) for key, path in package_paths.items()}
    yield loaded
    for package in loaded.values():
        package.close()
