"""The ``docker`` target for real: images built and containers run through podman's Docker API.

The target passes the plugin contract suite (``DeployerContract``), and the rest checks what is
particular to it: a fixed host port across updates, pushing to a registry on 127.0.0.1:5000, the
state living in Docker alone, and the CLI end to end.
"""

from __future__ import annotations

import dataclasses
import json
import os
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from docker_fixtures import REGISTRY_ENV, base_image, engine, free_port, http, unavailable

from modelport.cli.main import main
from modelport.deployers.base import Deployer, DeploymentStatus
from modelport.deployers.docker import (
    LABEL_DEPLOYMENT,
    LABEL_TARGET,
    DockerConfig,
    DockerDeployer,
    container_name,
    list_images,
)
from modelport.deployers.kit.naming import Platform, label_key
from modelport.deployers.kit.progress import Progress
from modelport.deployers.kit.rollout import FailpointTriggered, failpoint
from modelport.errors import DeploymentError, DeploymentNotFound
from modelport.model_format.package import Package, load
from modelport.plugins.testing import DeployerContract, make_test_package

# One worker builds and runs every image (when these tests run on several workers): the session's
# images are built once, and two podman builds never race for the same layers.
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("containers")]

#: A digest no package has: a container told to expect it refuses to start (exit 4).
WRONG_DIGEST = "sha256:" + "0" * 64
#: A signing key's fingerprints and an OCI manifest digest, as a package's provenance has them.
FINGERPRINT = "sha256:" + "ab" * 32
FINGERPRINT_2 = "sha256:" + "cd" * 32
OCI_DIGEST = "sha256:" + "ef" * 32


@pytest.fixture(scope="module")
def client() -> Iterator[Any]:
    """docker-py on $DOCKER_HOST (skips, or fails under MODELPORT_REQUIRE_CONTAINERS=1)."""
    docker_client = engine()
    yield docker_client
    docker_client.close()


@pytest.fixture(scope="module")
def config(client: Any) -> DockerConfig:
    """The target's config for these tests: the local base image, short timeouts."""
    return DockerConfig(base_image=base_image(client), startup_timeout=60.0, stop_timeout=5)


def leftovers(client: Any, name: str) -> list[str]:
    """Containers and images of deployment ``name`` still on the engine."""
    label = f"{LABEL_DEPLOYMENT}={name}"  # one label: podman matches no image given two
    found = client.containers.list(all=True, filters={"label": label})
    found += list_images(client, label)
    return [
        c.name if hasattr(c, "name") else str(c.id)
        for c in found
        if (c.labels or {}).get(LABEL_TARGET) == "docker"
    ]


class TestDockerContract(DeployerContract):
    """Every rule of the Deployer API, against real containers."""

    ready_timeout = 60.0

    @pytest.fixture
    def deployer(self, config: DockerConfig) -> DockerDeployer:
        return DockerDeployer(config)

    def assert_gone(self, deployer: Deployer[Any], name: str) -> None:
        super().assert_gone(deployer, name)
        assert isinstance(deployer, DockerDeployer)
        assert leftovers(deployer.client, name) == []

    def assert_serves(
        self, deployer: Deployer[Any], name: str, package: Package, payload: Any
    ) -> None:
        super().assert_serves(deployer, name, package, payload)
        assert isinstance(deployer, DockerDeployer)
        # One container and its image: nothing of a failed attempt is left.
        container = deployer.client.containers.get(container_name(name))
        assert sorted(leftovers(deployer.client, name)) == sorted(
            [container.name, container.attrs["Image"]]
        )


# --- what is particular to docker ---------------------------------------------------------------


@pytest.fixture(scope="module")
def packages(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("docker-target")
    return {
        "v1": make_test_package(root / "v1.mport", scale=1.0, name="docker-target", version="1"),
        "v2": make_test_package(root / "v2.mport", scale=2.0, name="docker-target", version="2"),
    }


@pytest.fixture
def v1(packages: dict[str, Path]) -> Iterator[Package]:
    with load(packages["v1"]) as package:
        yield package


@pytest.fixture
def v2(packages: dict[str, Path]) -> Iterator[Package]:
    with load(packages["v2"]) as package:
        yield package


@pytest.fixture
def name(client: Any, config: DockerConfig) -> Iterator[str]:
    """A fresh deployment name; whatever it left is deleted (and must be gone) afterwards."""
    deployment = f"dt-{uuid.uuid4().hex[:8]}"
    yield deployment
    DockerDeployer(config).delete(deployment)
    assert leftovers(client, deployment) == []


BODY = {"inputs": {"X": [[1.0, 2.0]]}}


def test_update_with_a_fixed_port_keeps_the_endpoint(
    config: DockerConfig, name: str, v1: Package, v2: Package
) -> None:
    port = free_port()
    said: list[str] = []
    # Where each package came from is recorded on the container and its image.
    v1.provenance = dataclasses.replace(
        v1.provenance, signature_fingerprint=FINGERPRINT, oci_digest=OCI_DIGEST
    )
    v2.provenance = dataclasses.replace(v2.provenance, signature_fingerprint=FINGERPRINT_2)
    deployer = DockerDeployer(dataclasses.replace(config, port=port), progress=said.append)
    created = deployer.create(name, v1)
    assert created.endpoint == f"http://127.0.0.1:{port}"
    assert deployer.predict(name, BODY) == {"predictions": [[1.0, 2.0]]}
    got = DockerDeployer(config).get(name).details  # read back from the engine's labels
    assert (got["signature_fingerprint"], got["oci_digest"]) == (FINGERPRINT, OCI_DIGEST)
    image = deployer.client.images.get(got["image_id"]).labels
    assert image[label_key(Platform.DOCKER, "oci_digest")] == OCI_DIGEST
    said.clear()
    updated = deployer.update(name, v2)
    assert updated.endpoint == created.endpoint
    assert updated.details["container"] == container_name(name)
    assert deployer.predict(name, BODY) == {"predictions": [[2.0, 4.0]]}
    # The new package's provenance replaces the old: v2 was not pulled, so no OCI digest.
    got = DockerDeployer(config).get(name).details
    assert got["signature_fingerprint"] == FINGERPRINT_2 and "oci_digest" not in got
    image = deployer.client.images.get(got["image_id"]).labels
    assert image[label_key(Platform.DOCKER, "signature_fingerprint")] == FINGERPRINT_2
    assert label_key(Platform.DOCKER, "oci_digest") not in image
    # Another package with the same requirements builds on the same runtime image.
    assert any(line.startswith("reusing the runtime image") for line in said), said


def test_failed_update_on_a_fixed_port_restarts_the_old_container(
    client: Any, config: DockerConfig, name: str, v1: Package, v2: Package
) -> None:
    port = free_port()
    fixed = dataclasses.replace(config, port=port)
    DockerDeployer(fixed).create(name, v1)
    failing = DockerDeployer(
        dataclasses.replace(fixed, env={"MODELPORT_PACKAGE_DIGEST": WRONG_DIGEST})
    )
    with pytest.raises(DeploymentError, match="refusing to start"):
        failing.update(name, v2)
    deployer = DockerDeployer(fixed)
    got = deployer.get(name)
    assert got.status is DeploymentStatus.READY
    assert got.package_digest == v1.digest
    assert got.endpoint == f"http://127.0.0.1:{port}"
    assert deployer.predict(name, BODY) == {"predictions": [[1.0, 2.0]]}
    # Only the old container and its image are left.
    assert [c.name for c in client.containers.list(all=True, filters={"name": name})] == [
        container_name(name)
    ]


def test_every_step_of_a_fixed_port_update_undoes(
    client: Any, config: DockerConfig, name: str, v1: Package, v2: Package
) -> None:
    """With a fixed port the update stops the old container first: each step's failure restarts
    it on the same port, and nothing of the new version is left."""
    port = free_port()
    deployer = DockerDeployer(dataclasses.replace(config, port=port))
    deployer.create(name, v1)
    steps = ["build-image", "stop-old", "run-container", "wait-ready", "switch"]
    for step in steps:
        with failpoint(f"docker.update.{step}"), pytest.raises(FailpointTriggered):
            deployer.update(name, v2)
        got = deployer.get(name)
        assert (got.status, got.package_digest) == (DeploymentStatus.READY, v1.digest), step
        assert got.endpoint == f"http://127.0.0.1:{port}"
        assert deployer.predict(name, BODY) == {"predictions": [[1.0, 2.0]]}
        container = client.containers.get(container_name(name))
        assert sorted(leftovers(client, name)) == sorted([container.name, container.attrs["Image"]])
    # The steps tried are the steps a real update runs.
    said: list[str] = []
    deployer.progress = Progress(lambda e: said.append(e.step) if e.kind == "step" else None)
    deployer.update(name, v2)
    assert [s for s in said if s] == steps


def test_a_container_refusing_its_package_fails_the_create_and_leaves_nothing(
    client: Any, config: DockerConfig, name: str, v1: Package
) -> None:
    # A real failure inside a step: the container was told to expect another digest.
    failing = DockerDeployer(
        dataclasses.replace(config, env={"MODELPORT_PACKAGE_DIGEST": WRONG_DIGEST})
    )
    with pytest.raises(DeploymentError, match="refusing to start"):
        failing.create(name, v1)
    assert leftovers(client, name) == []


def test_a_dead_container_is_reported_as_failed(
    client: Any, config: DockerConfig, name: str, v1: Package
) -> None:
    deployer = DockerDeployer(config)
    deployer.create(name, v1)
    client.containers.get(container_name(name)).kill()
    got = deployer.get(name)
    assert got.status is DeploymentStatus.FAILED
    assert got.details["state"] == "exited"
    assert got.details["exit_code"] != 0
    with pytest.raises(DeploymentError, match="not running"):
        deployer.predict(name, BODY)


def test_state_lives_in_docker_alone(
    config: DockerConfig, name: str, v1: Package, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another deployer (another process, another machine on the same engine) sees it all."""
    created = DockerDeployer(config).create(name, v1)
    monkeypatch.setenv("HOME", "/nonexistent")
    other = DockerDeployer()  # defaults: $DOCKER_HOST, no state anywhere else
    got = other.get(name)
    assert got.package_digest == v1.digest
    assert got.created_at == created.created_at
    assert got.endpoint == created.endpoint
    assert name in [d.name for d in other.list()]
    lines = list(other.logs(name, tail=50))
    assert any("modelport: serving docker-target 1" in line for line in lines)
    other.delete(name)
    with pytest.raises(DeploymentNotFound):
        DockerDeployer(config).get(name)


def test_push_to_a_local_registry(
    client: Any, config: DockerConfig, name: str, v1: Package
) -> None:
    registry = os.environ.get(REGISTRY_ENV)
    if not registry:
        unavailable(f"{REGISTRY_ENV} is not set (a registry on 127.0.0.1)")
    assert registry.startswith("127.0.0.1:")  # loopback only
    tag = uuid.uuid4().hex[:12]
    ref = f"{registry}/modelport-test/docker-target:{tag}"
    deployer = DockerDeployer(dataclasses.replace(config, push=True, image=ref))
    deployment = deployer.create(name, v1)
    pushed = deployment.details["pushed"]
    assert pushed.startswith(f"{ref}@sha256:")
    # The registry has it, under that tag and digest.
    status, body = http("GET", f"http://{registry}/v2/modelport-test/docker-target/tags/list")
    assert status == 200 and tag in json.loads(body)["tags"]
    request = urllib.request.Request(
        f"http://{registry}/v2/modelport-test/docker-target/manifests/{tag}", method="HEAD"
    )
    request.add_header(
        "Accept",
        "application/vnd.docker.distribution.manifest.v2+json, "
        "application/vnd.oci.image.manifest.v1+json",
    )
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(request, timeout=10) as response:
        assert response.headers["Docker-Content-Digest"] == pushed.split("@", 1)[1]
    # It runs what it pushed.
    assert deployer.predict(name, BODY) == {"predictions": [[1.0, 2.0]]}


def test_a_failed_push_leaves_nothing(
    client: Any, config: DockerConfig, name: str, v1: Package
) -> None:
    # Nothing listens on this loopback port: the push fails after the image was built.
    ref = f"127.0.0.1:{free_port()}/modelport-test/nowhere:1"
    deployer = DockerDeployer(dataclasses.replace(config, push=True, image=ref))
    with pytest.raises(DeploymentError, match="pushing"):
        deployer.create(name, v1)
    assert leftovers(client, name) == []
    with pytest.raises(DeploymentNotFound):
        deployer.get(name)


def test_cli_deploy_get_logs_delete(
    config: DockerConfig,
    name: str,
    packages: dict[str, Path],
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    base = f"base_image={config.base_image}"
    assert main(["deploy", str(packages["v1"]), "-t", "docker", "--name", name, "-C", base]) == 0
    capsys.readouterr()
    assert main(["deployments", "get", "-t", "docker", "--name", name, "--json"]) == 0
    record = json.loads(capsys.readouterr().out)
    assert record["status"] == "ready" and record["target"] == "docker"
    assert record["details"]["container"] == container_name(name)
    request = tmp_path / "in.json"
    request.write_text(json.dumps(BODY))
    assert main(["deployments", "predict", "-t", "docker", "--name", name, "-i", str(request)]) == 0
    assert json.loads(capsys.readouterr().out) == {"predictions": [[1.0, 2.0]]}
    assert main(["deployments", "logs", "-t", "docker", "--name", name]) == 0
    assert "modelport: serving" in capsys.readouterr().out
    assert main(["deployments", "delete", "-t", "docker", "--name", name]) == 0
    assert main(["deployments", "get", "-t", "docker", "--name", name]) != 0


def test_a_python_flavor_package_runs_with_its_code(
    config: DockerConfig, name: str, python_model: Any, tmp_path: Path
) -> None:
    """The image of a code-carrying package opts in (MODELPORT_ALLOW_CODE=1) and serves it."""
    from modelport.model_format.pack import pack

    path = tmp_path / "scaler.mport"
    pack(
        python_model.source,
        path,
        artifacts=[python_model.artifact],
        example=python_model.example,
        allow_code=True,
    ).close()
    deployer = DockerDeployer(config)
    with load(path, allow_code=True) as package:
        deployment = deployer.create(name, package)
    assert deployment.status is DeploymentStatus.READY
    answer = deployer.predict(name, {"inputs": {"x": [[1.0, 2.0]]}})
    assert answer == {"predictions": [[3.0, 6.0]]}


def test_a_port_in_use_fails_the_create_and_leaves_nothing(
    client: Any, config: DockerConfig, name: str, v1: Package
) -> None:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        deployer = DockerDeployer(dataclasses.replace(config, port=port))
        with pytest.raises(DeploymentError, match="starting the container"):
            deployer.create(name, v1)
    assert leftovers(client, name) == []
    with pytest.raises(DeploymentNotFound):
        deployer.get(name)
