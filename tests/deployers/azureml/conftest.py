"""Fixtures of the Azure ML tests: the offline Azure of ``fake_azure.py``.

- ``fake_azure`` (session): one :class:`~fake_azure.FakeAzure` (server and CA) for the whole run;
- ``azure``: that fake, reset, with process hosts, for one test: the fake ``az`` first on PATH
  (it prints :data:`~fake_azure.TOKEN`, so azure-identity's ``AzureCliCredential`` works),
  ``AZURE_CONFIG_DIR`` in the test's tmp, no ``AZURE_*``/``AZUREML_*`` variable of the
  developer's, ``*.fake.test`` resolved to the fake (blob storage), and after the test every
  host stopped (the test fails if a host process outlived it) and ``AZUREML_CURRENT_CLOUD``
  (which azure-ai-ml sets in ``os.environ`` for a custom cloud) removed;
- ``azure_containers``: the same with container hosts (podman); skipped without containers, a
  failure where ``MODELPORT_REQUIRE_CONTAINERS=1``; fails if a container outlived the test;
- ``process_images`` (session): images for *process* hosting pushed straight to the local
  registry (no build, no engine: :func:`~fake_azure.push_process_image`): the ``v1`` and ``v2``
  packages and a runtime image; skipped (or failed) without the registry;
- ``serving_images`` (session, slow tests): the ``v1`` test package's real serving image and its
  runtime image, built with modelport's kit and pushed to the local registry.

For the CLI in a subprocess, :meth:`FakeAzure.cli_env` gives the environment (clean of
``AZUREML_CURRENT_CLOUD``).
"""

from __future__ import annotations

import contextlib
import os
import signal
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from fake_azure import FakeAzure, ProcessImages, ServingImages, push_process_image, resolving

from process_helpers import group_alive

#: azure-ai-ml's schemas use marshmallow options marshmallow 3.x deprecates: theirs to fix
#: (pyproject turns every warning into an error).
SDK_WARNINGS = "ignore::marshmallow.warnings.Marshmallow4Warning"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tolerate the SDK's own deprecation warnings in this folder's tests."""
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.filterwarnings(SDK_WARNINGS))


@pytest.fixture(scope="session")
def fake_azure() -> Iterator[FakeAzure]:
    """The session's fake Azure (started once, stopped at the end of the session)."""
    fake = FakeAzure().start()
    try:
        yield fake
    finally:
        fake.stop()


def _use(
    fake: FakeAzure, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, hosting: str
) -> contextlib.ExitStack:
    fake.reset()
    fake.hosting = hosting
    for name in fake.conflicting_env():
        monkeypatch.delenv(name, raising=False)
    # Registered before the SDK can set it: undone (removed) after the test.
    monkeypatch.delenv("AZUREML_CURRENT_CLOUD", raising=False)
    for name, value in fake.az_env(tmp_path / "azure-config").items():
        monkeypatch.setenv(name, value)
    # online_endpoints.invoke() writes its headers (the key, azureml-model-deployment) into this
    # class-level dict: one test's deployment header would route every later invoke.
    from azure.ai.ml.constants._endpoint import EndpointInvokeFields

    monkeypatch.setattr(
        EndpointInvokeFields, "DEFAULT_HEADER", {"Content-Type": "application/json"}
    )
    stack = contextlib.ExitStack()
    stack.enter_context(resolving(fake.port))
    return stack


@pytest.fixture
def azure(
    fake_azure: FakeAzure, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> Iterator[FakeAzure]:
    """The fake Azure, reset, with process hosts, the fake ``az`` and blob names resolved."""
    with _use(fake_azure, monkeypatch, tmp_path, "process"):
        yield fake_azure
        pids = [h["pid"] for h in fake_azure.hosts() if h["pid"]]
        fake_azure.reset()
    leaked = [pid for pid in pids if group_alive(pid)]
    for pid in leaked:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)
    assert not leaked, f"host processes outlived the test: {leaked}"


@pytest.fixture
def azure_containers(
    fake_azure: FakeAzure, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> Iterator[FakeAzure]:
    """The fake Azure, reset, with container hosts (podman)."""
    import docker.errors
    from docker_fixtures import RUN_ID, RUN_LABEL, engine, require_registry

    client = engine()  # skips, or fails where containers are required
    require_registry(fake_azure.registry)
    try:
        with _use(fake_azure, monkeypatch, tmp_path, "container"):
            yield fake_azure
    finally:
        fake_azure.reset()
    # One label per filter: podman matches nothing given two.
    this_run = client.containers.list(all=True, filters={"label": f"{RUN_LABEL}={RUN_ID}"})
    left = [c for c in this_run if "dev.modelport.fake-azure" in (c.labels or {})]
    for container in left:
        with contextlib.suppress(docker.errors.NotFound):
            container.remove(force=True)
    assert not left, f"containers outlived the test: {[c.name for c in left]}"


@pytest.fixture(scope="session")
def process_images(fake_azure: FakeAzure, package_paths: dict[str, Path]) -> ProcessImages:
    """Push the process-hosting images (a second or less: no build)."""
    from docker_fixtures import require_registry

    require_registry(fake_azure.registry)
    repository = "modelport-fake-azure/process"
    run = uuid.uuid4().hex[:8]
    return ProcessImages(
        v1=push_process_image(fake_azure.registry, package_paths["v1"], repository, f"v1-{run}"),
        v2=push_process_image(fake_azure.registry, package_paths["v2"], repository, f"v2-{run}"),
        runtime=push_process_image(fake_azure.registry, None, repository, f"runtime-{run}"),
    )


@pytest.fixture(scope="session")
def serving_images(fake_azure: FakeAzure, package_paths: dict[str, Path]) -> ServingImages:
    """Build (runtime image reused when there) and push the ``v1`` package's images."""
    from docker_fixtures import base_image, engine, run_labels

    from modelport.deployers.kit.engine import Engine
    from modelport.deployers.kit.images import build_package_image, push_image
    from modelport.model_format.package import load

    client = engine()
    base = base_image(client)
    package = load(package_paths["v1"])
    tag = uuid.uuid4().hex[:12]
    repository = f"{fake_azure.registry}/modelport-fake-test"
    try:
        with Engine(os.environ["DOCKER_HOST"]) as kit_engine:
            built = build_package_image(
                kit_engine,
                package,
                ref=f"{repository}:{tag}",
                base_image=base,
                pip_cert=Path(os.environ["PIP_CERT"]) if os.environ.get("PIP_CERT") else None,
                labels=run_labels(),
            )
            pushed = push_image(kit_engine, built.ref)
            kit_engine.tag(built.runtime_ref, repository, f"runtime-{tag}")
            runtime = push_image(kit_engine, f"{repository}:runtime-{tag}")
            # The registry has them now: the engine's tags are not needed any more.
            kit_engine.remove_image(built.ref)
            kit_engine.remove_image(f"{repository}:runtime-{tag}")
    finally:
        package.close()
    return ServingImages(package=pushed.pinned, runtime=runtime.pinned, digest=built.package_digest)
