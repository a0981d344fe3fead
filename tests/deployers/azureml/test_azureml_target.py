"""The azureml target's requests and the state it leaves, against the offline Azure.

Real azure-ai-ml against the HTTPS fake of Resource Manager, blob storage and scoring
(``fake_azure.py``), with deployments that really serve (process hosts of the images in
``process_images``: no image is built). Each test asserts the exact requests a verb sends
(paths and bodies: image, routes, instance settings, environment, traffic and mirror traffic,
tags) and what is left in Azure after it: create, canary, mirror, promote, rollback, a failed
update, a create or update failing at each request it sends, Azure's errors, both forms of
long-running operations, the model-asset form, AAD tokens, logs, the plan and predict errors.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from azureml_support import (
    NOTHING,
    PAYLOAD,
    azureml_target,
    expected,
    modelport_tags,
    only_generation,
    resources,
    same_predictions,
)
from fake_azure import AZ_TOKEN_ENV, TOKEN, WORKSPACE_ID, FakeAzure, ProcessImages

from modelport import __version__
from modelport.deployers.azureml import AzureMLDeployer
from modelport.deployers.base import DeploymentStatus
from modelport.deployers.kit.progress import Progress, ProgressEvent
from modelport.errors import (
    ConflictError,
    DeploymentError,
    DeploymentNotFound,
    InputError,
    ModelportError,
    PermissionDeniedError,
    QuotaExceededError,
)
from modelport.model_format.package import Package, load
from modelport.plugins.testing import make_test_package

NAME = "ep-target"
ASSET = f"modelport-{NAME}"
G1, G2, G3 = "modelport-g1", "modelport-g2", "modelport-g3"
ROUTES = {
    "livenessRoute": {"port": 8080, "path": "/ping"},
    "readinessRoute": {"port": 8080, "path": "/ping"},
    "scoringRoute": {"port": 8080, "path": "/score"},
}
ENDPOINT_TAGS = {
    "modelport-modelport-version": __version__,
    "modelport-deployment": NAME,
    "modelport-target": "azureml",
}
EXPECT_DIGEST = "MODELPORT_EXPECT_DIGEST"

#: Every request of one create (baked-in image given with -C image), LRO polls left out.
CREATE = [
    "GET onlineEndpoints/ep-target",  # 404: the name is free
    "GET environments/modelport-ep-target/versions",  # the next generation
    "GET models/modelport-ep-target/versions",
    "GET onlineEndpoints/ep-target",
    "PUT environments/modelport-ep-target/versions/1",
    "GET workspace",
    "PUT onlineEndpoints/ep-target",
    "GET onlineEndpoints/ep-target",
    "GET onlineEndpoints/ep-target",
    "GET workspace",
    "PUT onlineEndpoints/ep-target/deployments/modelport-g1",
    "GET onlineEndpoints/ep-target/deployments/modelport-g1",
    "GET onlineEndpoints/ep-target",
    "GET onlineEndpoints/ep-target/deployments",
    "GET onlineEndpoints/ep-target/deployments",
    "GET workspace",
    "PUT onlineEndpoints/ep-target",  # traffic {modelport-g1: 100}
    "GET onlineEndpoints/ep-target",
    "GET onlineEndpoints/ep-target",
    "GET onlineEndpoints/ep-target/deployments",
    "GET onlineEndpoints/ep-target/deployments",
]
#: What of it changes something.
CREATE_WRITES = [
    "PUT environments/modelport-ep-target/versions/1",
    "PUT onlineEndpoints/ep-target",
    "PUT onlineEndpoints/ep-target/deployments/modelport-g1",
    "PUT onlineEndpoints/ep-target",
]
BLOB = r"/LocalUpload/[0-9a-f]+/package\.mport$"


# --- helpers -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def packages(
    package_paths: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Package]]:
    """The ``v1`` (Y = X), ``v2`` (Y = 2 X) and ``v3`` (Y = 3 X) packages, loaded."""
    v3 = make_test_package(tmp_path_factory.mktemp("v3") / "v3.mport", scale=3.0, version="3")
    loaded = {"v1": load(package_paths["v1"]), "v2": load(package_paths["v2"]), "v3": load(v3)}
    yield loaded
    for package in loaded.values():
        package.close()


def baked(fake: FakeAzure, image: str, **options: Any) -> AzureMLDeployer:
    """The target serving ``image`` as it is (the package baked in, nothing built)."""
    return azureml_target(fake, image=image, **options)


def asset_form(fake: FakeAzure, images: ProcessImages, **options: Any) -> AzureMLDeployer:
    """The target in the model-asset form: the runtime image, the package as a model asset."""
    return azureml_target(fake, image=images.runtime, model_asset="true", **options)


def writes(fake: FakeAzure, *, since: int = 0, blobs: bool = False) -> list[str]:
    """The requests that changed something (ARM, and blob storage when asked), in order."""
    services = ("arm", "blob") if blobs else ("arm",)
    calls = [c for c in fake.calls()[since:] if c.service in services]
    return [
        c.short if c.service == "arm" else f"{c.method} blob"
        for c in calls
        if c.method not in ("GET", "HEAD")
    ]


def bodies(fake: FakeAzure, request: str) -> list[Any]:
    """The JSON bodies of every ``METHOD short-path`` request, in order."""
    return [c.body for c in fake.calls() if c.service == "arm" and c.short == request]


def live(fake: FakeAzure, since: int = 0) -> Counter[str | None]:
    """How many live scoring requests each deployment answered (from ``since`` on)."""
    return Counter(s.deployment for s in fake.scoring_requests(NAME)[since:] if not s.mirrored)


def answered_by(answer: Mapping[str, Any], packages: Mapping[str, Package]) -> str:
    """Which package's prediction ``answer`` is (``v1``, ``v2`` or ``v3``)."""
    found = [k for k, p in packages.items() if same_predictions(answer, expected(p))]
    assert len(found) == 1, answer
    return found[0]


def traffic(fake: FakeAzure) -> tuple[dict[str, int], dict[str, int]]:
    """The endpoint's live traffic (non-zero shares) and mirror traffic, as Azure keeps them."""
    found = fake.endpoint(NAME)
    assert found is not None
    props = found["properties"]
    return (
        {k: v for k, v in (props.get("traffic") or {}).items() if v},
        {k: v for k, v in (props.get("mirrorTraffic") or {}).items() if v},
    )


def environment_id(kind: str, version: int) -> str:
    """The ARM id of version ``version`` of the deployment's environment or model."""
    return f"{WORKSPACE_ID}/{kind}/{ASSET}/versions/{version}"


def with_progress(target: AzureMLDeployer, sink: Any) -> AzureMLDeployer:
    """The same target, reporting its progress events to ``sink``."""
    return AzureMLDeployer(target.config, progress=Progress(sink))


# --- 1. create, get, list, delete ------------------------------------------------------------


def test_create_sends_these_requests_and_leaves_one_generation(
    azure: FakeAzure, home: Path, process_images: ProcessImages, packages: dict[str, Package]
) -> None:
    v1 = packages["v1"]
    target = baked(azure, process_images.v1)

    record = target.create(NAME, v1)

    assert azure.sequence() == CREATE
    assert azure.sequence(reads=False) == CREATE_WRITES
    # The environment: the image as given, the server's routes, the tags.
    (environment,) = bodies(azure, "PUT environments/modelport-ep-target/versions/1")
    assert environment["properties"]["image"] == process_images.v1
    assert environment["properties"]["inferenceConfig"] == ROUTES
    assert environment["properties"]["tags"] == modelport_tags(v1, NAME, 1)
    # The endpoint: key auth, no traffic yet; then all traffic to the one deployment.
    made, routed = bodies(azure, "PUT onlineEndpoints/ep-target")
    assert made["properties"]["authMode"] == "Key"
    assert made["properties"]["traffic"] == {}
    assert made["tags"] == ENDPOINT_TAGS
    assert routed["properties"]["traffic"] == {G1: 100}
    assert routed["properties"]["mirrorTraffic"] == {}
    assert routed["tags"] == ENDPOINT_TAGS
    # The deployment: the environment, no model (baked in), one Standard_DS3_v2, the digest.
    (deployment,) = bodies(azure, "PUT onlineEndpoints/ep-target/deployments/modelport-g1")
    props = deployment["properties"]
    assert props["environmentId"] == environment_id("environments", 1)
    assert "model" not in props
    assert props["instanceType"] == "Standard_DS3_v2"
    assert deployment["sku"] == {"name": "Default", "capacity": 1}
    assert props["environmentVariables"] == {EXPECT_DIGEST: v1.digest}
    assert deployment["tags"] == modelport_tags(v1, NAME, 1)

    # What Azure has now.
    assert resources(azure, NAME) == only_generation(NAME, 1)
    assert traffic(azure) == ({G1: 100}, {})
    assert azure.endpoint(NAME)["tags"] == ENDPOINT_TAGS
    host = azure.host(NAME, G1)
    assert host is not None and host["image"] == process_images.v1
    assert host["env"][EXPECT_DIGEST] == v1.digest

    # The record, from create and from get.
    for found in (record, target.get(NAME)):
        assert found.status is DeploymentStatus.READY
        assert found.package_digest == v1.digest
        assert found.endpoint == azure.scoring_uri(NAME)
        assert found.details["scoring_uri"] == azure.scoring_uri(NAME)
        assert found.details["deployment"] == G1
        assert found.details["traffic"] == {G1: 100}
        assert found.details["mirror_traffic"] == {}
        assert found.details["auth_mode"] == "key"
        assert "candidate" not in found.details
        assert found.details["deployments"] == {
            G1: {
                "state": "Succeeded",
                "package_digest": v1.digest,
                "traffic": 100,
                "mirror": 0,
                "instance_type": "Standard_DS3_v2",
                "instance_count": 1,
            }
        }
    assert same_predictions(target.predict(NAME, PAYLOAD), expected(v1))

    # An endpoint modelport did not make: not listed, not read, not deleted.
    from azure.ai.ml.entities import ManagedOnlineEndpoint

    azure.ml_client().online_endpoints.begin_create_or_update(
        ManagedOnlineEndpoint(name="someone-else", auth_mode="key")
    ).result()
    assert [d.name for d in target.list()] == [NAME]
    with pytest.raises(DeploymentNotFound):
        target.get("someone-else")
    before = len(azure.calls())
    with pytest.raises(DeploymentError, match="not made by modelport"):
        target.delete("someone-else")
    assert writes(azure, since=before) == []
    assert "someone-else" in azure.endpoints()

    # delete: the endpoint (its deployment with it), then the environment version.
    before = len(azure.calls())
    target.delete(NAME)
    assert writes(azure, since=before) == [
        "DELETE onlineEndpoints/ep-target",
        "DELETE environments/modelport-ep-target/versions/1",
    ]
    assert resources(azure, NAME) == NOTHING
    assert host is not None and azure.host(NAME, G1) is not None
    assert azure.host(NAME, G1)["stopped"]
    assert list(azure.endpoints()) == ["someone-else"]


# --- 2. canary, then promote -------------------------------------------------------------------

#: Every request of a promote from a canary (model-asset form), LRO polls left out.
PROMOTE = [
    "GET onlineEndpoints/ep-target",
    "GET onlineEndpoints/ep-target/deployments",
    "GET onlineEndpoints/ep-target/deployments",
    "GET onlineEndpoints/ep-target",
    "GET onlineEndpoints/ep-target/deployments",
    "GET onlineEndpoints/ep-target/deployments",
    "GET workspace",
    "PUT onlineEndpoints/ep-target",
    "GET onlineEndpoints/ep-target",
    "DELETE onlineEndpoints/ep-target/deployments/modelport-g1",
    "GET environments/modelport-ep-target/versions",
    "DELETE environments/modelport-ep-target/versions/1",
    "GET models/modelport-ep-target/versions",
    "DELETE models/modelport-ep-target/versions/1",
    "GET onlineEndpoints/ep-target",
    "GET onlineEndpoints/ep-target/deployments",
    "GET onlineEndpoints/ep-target/deployments",
]


def test_canary_takes_its_share_then_promote_moves_the_rest(
    azure: FakeAzure, home: Path, process_images: ProcessImages, packages: dict[str, Package]
) -> None:
    v1, v2, v3 = packages["v1"], packages["v2"], packages["v3"]
    target = asset_form(azure, process_images)
    canary = asset_form(azure, process_images, canary_percent=10)
    target.create(NAME, v1)

    before = len(azure.calls())
    record = canary.update(NAME, v2)

    assert writes(azure, since=before, blobs=True) == [
        "POST datastores/workspaceblobstore/listSecrets",
        "PUT blob",
        "PUT blob",
        "PUT models/modelport-ep-target/versions/2",
        "PUT environments/modelport-ep-target/versions/2",
        "PUT onlineEndpoints/ep-target/deployments/modelport-g2",
        "PUT onlineEndpoints/ep-target",
    ]
    (deployment,) = bodies(azure, "PUT onlineEndpoints/ep-target/deployments/modelport-g2")
    assert deployment["properties"]["model"] == environment_id("models", 2)
    assert deployment["properties"]["environmentId"] == environment_id("environments", 2)
    assert deployment["properties"]["environmentVariables"] == {EXPECT_DIGEST: v2.digest}
    assert deployment["tags"] == modelport_tags(v2, NAME, 2)
    routed = bodies(azure, "PUT onlineEndpoints/ep-target")[-1]
    assert routed["properties"]["traffic"] == {G1: 90, G2: 10}
    assert routed["properties"]["mirrorTraffic"] == {}
    assert traffic(azure) == ({G1: 90, G2: 10}, {})
    assert resources(azure, NAME) == only_generation(NAME, 1, 2, models=True)
    for found in (record, target.get(NAME)):
        assert found.status is DeploymentStatus.READY
        assert found.package_digest == v1.digest  # the primary still serves most
        assert found.details["deployment"] == G1
        assert found.details["traffic"] == {G1: 90, G2: 10}
        assert found.details["candidate"] == {
            "deployment": G2,
            "kind": "canary",
            "percent": 10,
            "package_digest": v2.digest,
        }

    # Ten requests: nine to the old version, one to the canary (the fake's weights are exact).
    answers = [answered_by(target.predict(NAME, PAYLOAD), packages) for _ in range(10)]
    assert Counter(answers) == {"v1": 9, "v2": 1}
    assert live(azure) == {G1: 9, G2: 1}

    # While the canary is there: another package is refused, the canary's own is a no-op.
    before = len(azure.calls())
    with pytest.raises(ConflictError, match="canary in progress") as refused:
        target.update(NAME, v3)
    assert "promote" in str(refused.value.hint) and "rollback" in str(refused.value.hint)
    same = canary.update(NAME, v2)
    assert same.details["candidate"]["deployment"] == G2
    assert writes(azure, since=before, blobs=True) == []
    assert resources(azure, NAME) == only_generation(NAME, 1, 2, models=True)

    # promote: all traffic to the canary, then the old deployment, environment and model go.
    azure.clear_calls()
    promoted = target.promote(NAME)

    assert azure.sequence() == PROMOTE
    # azure-ai-ml leaves a zero share out of the body.
    assert bodies(azure, "PUT onlineEndpoints/ep-target")[0]["properties"]["traffic"] == {G2: 100}
    assert traffic(azure) == ({G2: 100}, {})
    assert resources(azure, NAME) == only_generation(NAME, 2, models=True)
    assert promoted.package_digest == v2.digest
    assert promoted.details["deployment"] == G2
    assert promoted.details["traffic"] == {G2: 100}
    assert "candidate" not in promoted.details
    assert azure.host(NAME, G1)["stopped"]
    assert answered_by(target.predict(NAME, PAYLOAD), packages) == "v2"


# --- 3. rollback after a canary ----------------------------------------------------------------

#: Every request of a rollback of a canary (baked-in images), LRO polls left out.
ROLLBACK = [
    "GET onlineEndpoints/ep-target",
    "GET onlineEndpoints/ep-target/deployments",
    "GET onlineEndpoints/ep-target/deployments",
    "GET onlineEndpoints/ep-target",
    "GET onlineEndpoints/ep-target/deployments",
    "GET onlineEndpoints/ep-target/deployments",
    "GET workspace",
    "PUT onlineEndpoints/ep-target",
    "GET onlineEndpoints/ep-target",
    "DELETE onlineEndpoints/ep-target/deployments/modelport-g2",
    "GET environments/modelport-ep-target/versions",
    "DELETE environments/modelport-ep-target/versions/2",
    "GET models/modelport-ep-target/versions",
    "GET onlineEndpoints/ep-target",
    "GET onlineEndpoints/ep-target/deployments",
    "GET onlineEndpoints/ep-target/deployments",
]


def test_rollback_after_a_canary_leaves_only_the_old_generation(
    azure: FakeAzure, home: Path, process_images: ProcessImages, packages: dict[str, Package]
) -> None:
    v1, v2 = packages["v1"], packages["v2"]
    target = baked(azure, process_images.v1)
    target.create(NAME, v1)
    baked(azure, process_images.v2, canary_percent=25).update(NAME, v2)
    assert traffic(azure) == ({G1: 75, G2: 25}, {})
    (environment,) = bodies(azure, "PUT environments/modelport-ep-target/versions/2")
    assert environment["properties"]["image"] == process_images.v2
    assert environment["properties"]["tags"] == modelport_tags(v2, NAME, 2)

    azure.clear_calls()
    record = target.rollback(NAME)

    assert azure.sequence() == ROLLBACK
    assert bodies(azure, "PUT onlineEndpoints/ep-target")[0]["properties"]["traffic"] == {G1: 100}
    assert traffic(azure) == ({G1: 100}, {})
    assert resources(azure, NAME) == only_generation(NAME, 1)
    assert azure.host(NAME, G2)["stopped"]
    assert record.package_digest == v1.digest
    assert record.details["traffic"] == {G1: 100}
    assert "candidate" not in record.details
    served = len(azure.scoring_requests(NAME))
    answers = [answered_by(target.predict(NAME, PAYLOAD), packages) for _ in range(4)]
    assert answers == ["v1"] * 4
    assert live(azure, served) == {G1: 4}


# --- 4. mirror traffic -------------------------------------------------------------------------


def test_mirror_copies_a_share_and_answers_none_then_rollback_or_promote(
    azure: FakeAzure, home: Path, process_images: ProcessImages, packages: dict[str, Package]
) -> None:
    v1, v2 = packages["v1"], packages["v2"]
    target = asset_form(azure, process_images)
    mirror = asset_form(azure, process_images, mirror_percent=20)
    target.create(NAME, v1)

    record = mirror.update(NAME, v2)

    routed = bodies(azure, "PUT onlineEndpoints/ep-target")[-1]
    assert routed["properties"]["traffic"] == {G1: 100}
    assert routed["properties"]["mirrorTraffic"] == {G2: 20}
    assert traffic(azure) == ({G1: 100}, {G2: 20})
    assert resources(azure, NAME) == only_generation(NAME, 1, 2, models=True)
    assert record.details["traffic"] == {G1: 100}
    assert record.details["mirror_traffic"] == {G2: 20}
    assert record.details["candidate"] == {
        "deployment": G2,
        "kind": "mirror",
        "percent": 20,
        "package_digest": v2.digest,
    }

    # Ten requests: every answer from the old version; two copies reached the new one.
    answers = [answered_by(target.predict(NAME, PAYLOAD), packages) for _ in range(10)]
    assert answers == ["v1"] * 10
    assert live(azure) == {G1: 10}
    copies = azure.wait_scoring(NAME, 2, mirrored=True)
    assert [(c.deployment, c.status) for c in copies] == [(G2, 200), (G2, 200)]

    # rollback from a mirror: the mirror goes, the old version keeps everything.
    rolled = target.rollback(NAME)
    assert traffic(azure) == ({G1: 100}, {})
    assert resources(azure, NAME) == only_generation(NAME, 1, models=True)
    assert rolled.details["mirror_traffic"] == {} and "candidate" not in rolled.details

    # A new mirror (generation 2 again: nothing of the last one is left), then promote: all
    # traffic to it, the mirror share gone.
    mirror.update(NAME, v2)
    assert traffic(azure) == ({G1: 100}, {G2: 20})
    promoted = target.promote(NAME)
    routed = bodies(azure, "PUT onlineEndpoints/ep-target")[-1]
    assert routed["properties"]["traffic"] == {G2: 100}
    assert routed["properties"]["mirrorTraffic"] == {}
    assert traffic(azure) == ({G2: 100}, {})
    assert resources(azure, NAME) == only_generation(NAME, 2, models=True)
    assert promoted.package_digest == v2.digest
    assert answered_by(target.predict(NAME, PAYLOAD), packages) == "v2"
