"""The serving image, run as Azure ML runs it, answering ``modelport deployments predict``.

Nothing is given but the registry (and the test's base image): the target builds the serving
image itself with the package baked in (or, with ``-C model_asset=true``, reuses the shared
runtime image and registers the package as a model asset), pushes it to the local registry that
stands for the Azure Container Registry, and registers the environment and the deployment. The
fake then does what Azure ML does with what was registered, read back from its own state: it
pulls the image the environment names and runs it with its own CMD, the deployment's
environment variables and the scoring route's port published (and, for a model asset, the
model's files mounted read-only at ``/var/azureml-app/azureml-models/NAME/VERSION`` with
``AZUREML_MODEL_DIR`` naming them). The endpoint's scoring URI forwards to that container, so
the CLI's predictions below, with the two bodies Azure ML users send, went through it.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from azureml_support import NOTHING, TARGET_URI, expected, fake_options, resources
from fake_azure import FakeAzure

from modelport.deployers import connect
from modelport.deployers.kit.progress import Progress, ProgressEvent
from modelport.model_format.package import Package, load

pytestmark = pytest.mark.slow

MODELPORT = str(Path(sys.executable).parent / "modelport")
ROWS = [[1.0, 2.0], [3.0, -4.5], [0.25, 8.0]]
BODIES = {
    "table": {"input_data": {"columns": ["a", "b"], "index": [0, 1, 2], "data": ROWS}},
    "tensor": {"input_data": ROWS},
}
#: A repository of the tests' own in the local registry (its layers stay between runs).
REPOSITORY = "modelport-azureml-test"


@pytest.fixture
def target(azure_containers: FakeAzure, home: Path) -> Iterator[Any]:
    """The target with nothing but the registry and the base image (and the fake's options)."""
    from docker_fixtures import base_image, engine

    client = engine()
    events: list[ProgressEvent] = []

    def make(**options: str) -> Any:
        deployer = connect(
            TARGET_URI,
            {
                **fake_options(azure_containers),
                "registry": azure_containers.registry,
                "repository": REPOSITORY,
                "base_image": base_image(client),
                "startup_timeout": "300",
                **options,
            },
            progress=Progress(events.append),
        )
        deployer.events = events  # type: ignore[attr-defined]
        return deployer

    yield make
    # The pushed tags on the engine (the registry keeps the images; the runtime image stays
    # under its own name for the other image tests).
    for tag in {e.message.removeprefix("pushing ") for e in events if e.message.startswith("push")}:
        with contextlib.suppress(Exception):
            client.images.remove(tag)


def predict_with_the_cli(fake: FakeAzure, name: str, tmp_path: Path) -> dict[str, np.ndarray]:
    """``modelport deployments predict`` with each body of :data:`BODIES`, at once."""
    env = fake.cli_env(tmp_path / "az")
    options = [w for k, v in fake_options(fake).items() for w in ("-C", f"{k}={v}")]
    running = {}
    for shape, body in BODIES.items():
        path = tmp_path / f"{shape}.json"
        path.write_text(json.dumps(body))
        argv = [MODELPORT, "deployments", "predict", "-t", TARGET_URI, "-n", name, "-i",
                str(path), *options]  # fmt: skip
        running[shape] = subprocess.Popen(
            argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
    answers = {}
    for shape, process in running.items():
        out, err = process.communicate(timeout=120)
        assert process.returncode == 0, (shape, out, err)
        answers[shape] = np.asarray(json.loads(out)["predictions"], dtype=np.float64)
    return answers


def want(package: Package) -> np.ndarray:
    return np.asarray(expected(package, {"inputs": {"X": ROWS}})["predictions"], np.float64)


def container_of(host: dict[str, Any]) -> Any:
    from docker_fixtures import engine

    return engine().containers.get(host["ident"])


def test_the_package_image_is_built_pushed_and_run_as_azure_runs_it(
    azure_containers: FakeAzure, target: Any, package_paths: dict[str, Path], tmp_path: Path
) -> None:
    fake = azure_containers
    name = "aml-image"
    deployer = target()
    with load(package_paths["v1"]) as package:
        try:
            deployment = deployer.create(name, package)
            assert deployment.status.value == "ready"
            tag = package.digest.removeprefix("sha256:")[:32]
            pushed = [e.message for e in deployer.events if e.message.startswith("pushing")]
            assert pushed == [f"pushing {fake.registry}/{REPOSITORY}-model:{tag}"]

            # What was registered, read back from the fake's state ...
            environment = fake.environment(f"modelport-{name}", "1")
            assert environment is not None
            image = environment["properties"]["image"]
            assert image.startswith(f"{fake.registry}/{REPOSITORY}-model@sha256:")
            routes = environment["properties"]["inferenceConfig"]
            assert routes["scoringRoute"] == {"port": 8080, "path": "/score"}
            ping = {"port": 8080, "path": "/ping"}
            assert routes["readinessRoute"] == routes["livenessRoute"] == ping
            # ... and run as Azure runs it: the image, its own CMD, the deployment's variables,
            # the scoring route's port.
            host = fake.host(name, "modelport-g1")
            assert host is not None and host["kind"] == "container"
            assert (host["image"], host["command"], host["container_port"]) == (image, None, 8080)
            container = container_of(host)
            assert container.attrs["Config"]["Cmd"] == ["serve"]
            variables = dict(e.split("=", 1) for e in container.attrs["Config"]["Env"])
            assert variables["MODELPORT_EXPECT_DIGEST"] == package.digest
            assert "AZUREML_MODEL_DIR" not in variables  # the package is in the image
            assert container.attrs["Mounts"] == []

            # The CLI's predict, through the scoring URI, to the container.
            fake.clear_calls()
            answers = predict_with_the_cli(fake, name, tmp_path)
            for shape, got in answers.items():
                np.testing.assert_allclose(got, want(package), rtol=1e-6, err_msg=shape)
            scored = fake.scoring_requests(name)
            assert [(s.deployment, s.status) for s in scored] == 2 * [("modelport-g1", 200)]
            assert sorted(json.dumps(c.body) for c in fake.calls("scoring")) == sorted(
                json.dumps(b) for b in BODIES.values()
            )
            assert any("modelport: serving" in line for line in deployer.logs(name, tail=50))
        finally:
            deployer.delete(name)
    assert resources(fake, name) == NOTHING
    assert host["ident"] not in [c.id for c in _engine_containers()]


def test_a_model_asset_is_mounted_where_the_runtime_image_finds_it(
    azure_containers: FakeAzure, target: Any, package_paths: dict[str, Path], tmp_path: Path
) -> None:
    fake = azure_containers
    name = "aml-asset"
    deployer = target(model_asset="true")
    with load(package_paths["v2"]) as package:
        try:
            deployment = deployer.create(name, package)
            assert deployment.status.value == "ready"
            pushed = [e.message for e in deployer.events if e.message.startswith("pushing")]
            assert len(pushed) == 1
            assert pushed[0].startswith(f"pushing {fake.registry}/{REPOSITORY}-runtime:")
            assert not any("building the image" in e.message for e in deployer.events)

            asset = f"modelport-{name}"
            assert fake.models() == {asset: ["1"]}
            environment = fake.environment(asset, "1")
            assert environment is not None
            image = environment["properties"]["image"]
            assert image.startswith(f"{fake.registry}/{REPOSITORY}-runtime@sha256:")
            put = next(
                c
                for c in fake.calls()
                if c.short == f"PUT onlineEndpoints/{name}/deployments/modelport-g1"
            )
            assert put.body["properties"]["model"].endswith(f"/models/{asset}/versions/1")

            host = fake.host(name, "modelport-g1")
            assert host is not None and host["kind"] == "container"
            assert host["image"] == image
            mount = f"/var/azureml-app/azureml-models/{asset}/1"
            container = container_of(host)
            assert container.attrs["Config"]["Cmd"] == ["serve"]
            variables = dict(e.split("=", 1) for e in container.attrs["Config"]["Env"])
            assert variables["AZUREML_MODEL_DIR"] == mount
            assert variables["MODELPORT_EXPECT_DIGEST"] == package.digest
            mounts = {m["Destination"]: m for m in container.attrs["Mounts"]}
            assert list(mounts) == [mount]
            assert mounts[mount]["RW"] is False

            answers = predict_with_the_cli(fake, name, tmp_path)
            for shape, got in answers.items():  # v2: Y = 2 X, served from the mount
                np.testing.assert_allclose(got, want(package), rtol=1e-6, err_msg=shape)
            assert [s.status for s in fake.scoring_requests(name)] == [200, 200]

            # An update given neither -C registry nor -C model_asset keeps the deployment's
            # form and registry: the same runtime image, the package as model version 2.
            bare = {k: v for k, v in deployer.config.__dict__.items() if v is not None}
            updater = connect(
                TARGET_URI,
                {
                    **fake_options(fake),
                    "base_image": str(bare["base_image"]),
                    "startup_timeout": "300",
                },
            )
            with load(package_paths["v1"]) as v1:
                updated = updater.update(name, v1)
                assert (updated.package_digest, updated.details["deployment"]) == (
                    v1.digest,
                    "modelport-g2",
                )
                assert fake.models() == {asset: ["2"]}
                second = fake.environment(asset, "2")
                assert second is not None and second["properties"]["image"] == image
                again = predict_with_the_cli(fake, name, tmp_path)
                for shape, got in again.items():  # v1: Y = X, from the new mount
                    np.testing.assert_allclose(got, want(v1), rtol=1e-6, err_msg=shape)
        finally:
            deployer.delete(name)
    assert resources(fake, name) == NOTHING
    assert host["ident"] not in [c.id for c in _engine_containers()]


def _engine_containers() -> list[Any]:
    from docker_fixtures import engine

    return list(engine().containers.list(all=True))
