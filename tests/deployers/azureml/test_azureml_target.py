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

import dataclasses
import re
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
    "PUT onlineEndpoints/ep-target",  # the endpoint, no traffic yet
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


def host_of(fake: FakeAzure, deployment: str) -> dict[str, Any]:
    """The host serving ``deployment`` of the endpoint (or the last one it had)."""
    found = fake.host(NAME, deployment)
    assert found is not None, deployment
    return found


def resource(found: dict[str, Any] | None) -> dict[str, Any]:
    """A resource the fake has (failing the test when it has none)."""
    assert found is not None
    return found


def environment_id(kind: str, version: int) -> str:
    """The ARM id of version ``version`` of the deployment's environment or model."""
    return f"{WORKSPACE_ID}/{kind}/{ASSET}/versions/{version}"


def with_progress(target: AzureMLDeployer, sink: Any) -> AzureMLDeployer:
    """The same target, reporting its progress events to ``sink``."""
    return AzureMLDeployer(target.config, progress=Progress(sink))


# --- create, get, list, logs, predict, delete ----------------------------------------------------


def test_create_sends_these_requests_then_get_list_logs_predict_and_delete(
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
    assert resource(azure.endpoint(NAME))["tags"] == ENDPOINT_TAGS
    host = host_of(azure, G1)
    assert host["image"] == process_images.v1
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

    # logs: the container's own lines (getLogs), the last ones when asked, none for tail=0.
    lines = list(target.logs(NAME))
    assert lines == host["lines"]
    assert any("modelport: serving contract-model 1" in line for line in lines)
    assert list(target.logs(NAME, tail=2)) == lines[-2:]
    asked = [c.body for c in azure.calls() if c.short.endswith(f"{G1}/getLogs")]
    assert [a["tail"] for a in asked] == [100, 2]
    before = len(azure.calls())
    assert list(target.logs(NAME, tail=0)) == []
    assert not [c for c in azure.calls()[before:] if c.path.endswith("/getLogs")]
    with pytest.raises(DeploymentNotFound):
        target.logs("ep-missing")

    # A body the model refuses: the container's 400, which Azure answers as 424.
    with pytest.raises(InputError):
        target.predict(NAME, {"inputs": {"X": [[1.0, 2.0, 3.0]]}})
    assert azure.scoring_requests(NAME)[-1].status == 424

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
    assert host_of(azure, G1)["stopped"]
    assert list(azure.endpoints()) == ["someone-else"]


# --- a canary, then promote ----------------------------------------------------------------------

#: Every request of a promote from a canary (model-asset form), LRO polls left out.
PROMOTE = [
    "GET onlineEndpoints/ep-target",  # which deployments are primary and candidate
    "GET onlineEndpoints/ep-target/deployments",
    "GET onlineEndpoints/ep-target/deployments",
    "GET onlineEndpoints/ep-target",  # the endpoint to PUT back with the new traffic
    "GET onlineEndpoints/ep-target/deployments",
    "GET onlineEndpoints/ep-target/deployments",
    "GET workspace",
    "PUT onlineEndpoints/ep-target",  # traffic {modelport-g2: 100}
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


def test_the_packages_provenance_is_tagged_and_replaced_by_an_update(
    azure: FakeAzure,
    home: Path,
    process_images: ProcessImages,
    packages: dict[str, Package],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    v1, v2 = packages["v1"], packages["v2"]
    fingerprint, oci_digest = "sha256:" + "ab" * 32, "sha256:" + "ef" * 32
    signed = dataclasses.replace(v1.provenance, signature_fingerprint=fingerprint)
    monkeypatch.setattr(v1, "provenance", signed)
    monkeypatch.setattr(v2, "provenance", dataclasses.replace(v2.provenance, oci_digest=oci_digest))
    baked(azure, process_images.v1).create(NAME, v1)
    (deployment,) = bodies(azure, "PUT onlineEndpoints/ep-target/deployments/modelport-g1")
    assert deployment["tags"] == {
        **modelport_tags(v1, NAME, 1),
        "modelport-signature-fingerprint": fingerprint,
    }
    got = baked(azure, process_images.v1).get(NAME).details  # read from Azure's tags
    assert got["signature_fingerprint"] == fingerprint and "oci_digest" not in got
    baked(azure, process_images.v2).update(NAME, v2)
    got = baked(azure, process_images.v2).get(NAME).details
    assert got["oci_digest"] == oci_digest and "signature_fingerprint" not in got
    assert got["deployments"][G2]["oci_digest"] == oci_digest
    baked(azure, process_images.v2).delete(NAME)


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
    assert host_of(azure, G1)["stopped"]
    assert answered_by(target.predict(NAME, PAYLOAD), packages) == "v2"


# --- rollback after a canary ---------------------------------------------------------------------

#: Every request of a rollback of a canary (baked-in images), LRO polls left out.
ROLLBACK = [
    "GET onlineEndpoints/ep-target",  # which deployments are primary and candidate
    "GET onlineEndpoints/ep-target/deployments",
    "GET onlineEndpoints/ep-target/deployments",
    "GET onlineEndpoints/ep-target",  # the endpoint to PUT back with the new traffic
    "GET onlineEndpoints/ep-target/deployments",
    "GET onlineEndpoints/ep-target/deployments",
    "GET workspace",
    "PUT onlineEndpoints/ep-target",  # traffic {modelport-g1: 100}
    "GET onlineEndpoints/ep-target",
    "DELETE onlineEndpoints/ep-target/deployments/modelport-g2",
    "GET environments/modelport-ep-target/versions",
    "DELETE environments/modelport-ep-target/versions/2",
    "GET models/modelport-ep-target/versions",  # (no model asset in this form)
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
    assert host_of(azure, G2)["stopped"]
    assert record.package_digest == v1.digest
    assert record.details["traffic"] == {G1: 100}
    assert "candidate" not in record.details
    served = len(azure.scoring_requests(NAME))
    answers = [answered_by(target.predict(NAME, PAYLOAD), packages) for _ in range(2)]
    assert answers == ["v1"] * 2
    assert live(azure, served) == {G1: 2}


# --- mirror traffic ------------------------------------------------------------------------------


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

    # Five requests: every answer from the old version; one copy (20 %) reached the new one.
    answers = [answered_by(target.predict(NAME, PAYLOAD), packages) for _ in range(5)]
    assert answers == ["v1"] * 5
    assert live(azure) == {G1: 5}
    copies = azure.wait_scoring(NAME, 1, mirrored=True)
    assert [(c.deployment, c.status) for c in copies] == [(G2, 200)]

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


# --- a failed update -----------------------------------------------------------------------------


def test_a_failed_update_removes_the_deployment_it_made(
    azure: FakeAzure, home: Path, process_images: ProcessImages, packages: dict[str, Package]
) -> None:
    v1, v2 = packages["v1"], packages["v2"]
    target = baked(azure, process_images.v1)
    target.create(NAME, v1)

    # The image serves v1: its container refuses to start as v2 (MODELPORT_EXPECT_DIGEST).
    with pytest.raises(DeploymentError) as failed:
        target.update(NAME, v2)

    # Azure's reason, and the container's own last line.
    assert "(ResourceNotReady) User container has crashed or terminated" in str(failed.value)
    assert "modelport: refusing to start" in str(failed.value)
    assert f"is not the {v2.digest} MODELPORT_EXPECT_DIGEST expects" in str(failed.value)
    assert traffic(azure) == ({G1: 100}, {})
    assert resources(azure, NAME) == only_generation(NAME, 1)
    assert answered_by(target.predict(NAME, PAYLOAD), packages) == "v1"


# --- a create or an update failing at each request it sends --------------------------------------

#: The requests that change something, of a create in the model-asset form (blob storage's
#: two: the block, then the block list).
CREATE_ASSET_WRITES = [
    "POST datastores/workspaceblobstore/listSecrets",
    "PUT blob",
    "PUT blob",
    "PUT models/modelport-ep-target/versions/1",
    "PUT environments/modelport-ep-target/versions/1",
    "PUT onlineEndpoints/ep-target",
    "PUT onlineEndpoints/ep-target/deployments/modelport-g1",
    "PUT onlineEndpoints/ep-target",
]


def failing_steps(generation: int) -> list[tuple[str, str, str]]:
    """(step, method, path) of each request of a rollout of ``generation`` that changes
    something (each armed once its step starts: the endpoint is PUT twice in a create)."""
    version = f"{ASSET}/versions/{generation}$"
    return [
        ("register-model", "POST", r"/datastores/workspaceblobstore/listSecrets$"),
        ("register-model", "PUT", BLOB),
        ("register-model", "PUT", f"/models/{version}"),
        ("register-environment", "PUT", f"/environments/{version}"),
        ("create-endpoint", "PUT", f"/onlineEndpoints/{NAME}$"),
        (
            "create-deployment",
            "PUT",
            f"/onlineEndpoints/{NAME}/deployments/modelport-g{generation}$",
        ),
        ("route-traffic", "PUT", f"/onlineEndpoints/{NAME}$"),
    ]


def failing_at(fake: FakeAzure, target: AzureMLDeployer, step: str, method: str, path: str) -> Any:
    """The target, arming a 409 for the next ``method path`` when the rollout starts ``step``."""

    def sink(event: ProgressEvent) -> None:
        if event.kind == "step" and event.step == step:
            fake.fail_next(method, path, status=409, code="Conflict", message=f"{step} refused")

    return with_progress(target, sink)


@pytest.mark.parametrize(
    ("step", "method", "path"), failing_steps(1), ids=[f"{s}-{m}" for s, m, _ in failing_steps(1)]
)
def test_a_create_failing_at_each_request_leaves_nothing(
    azure: FakeAzure,
    home: Path,
    process_images: ProcessImages,
    packages: dict[str, Package],
    step: str,
    method: str,
    path: str,
) -> None:
    target = failing_at(azure, asset_form(azure, process_images), step, method, path)

    with pytest.raises(ModelportError) as failed:
        target.create(NAME, packages["v1"])

    refused = [c for c in azure.calls() if c.status == 409]
    assert len(refused) == 1 and refused[0].method == method
    assert failed.value.hint, failed.value
    if method == "PUT" and path != BLOB:
        assert f"{step} refused" in str(failed.value)
    assert resources(azure, NAME) == NOTHING
    assert all(h["stopped"] for h in azure.hosts())


def test_an_update_failing_at_each_request_or_provisioning_keeps_the_old_version(
    azure: FakeAzure, home: Path, process_images: ProcessImages, packages: dict[str, Package]
) -> None:
    v1, v2, v3 = packages["v1"], packages["v2"], packages["v3"]
    target = asset_form(azure, process_images)
    target.create(NAME, v1)
    assert writes(azure, blobs=True) == CREATE_ASSET_WRITES
    # The model upload's own requests fail the same way in an update (tested with create).
    cases = [c for c in failing_steps(2) if c[1] == "PUT" and c[2] != BLOB]
    cases.remove(("create-endpoint", "PUT", f"/onlineEndpoints/{NAME}$"))

    for step, method, path in cases:
        before = len(azure.calls())
        with pytest.raises(ModelportError) as failed:
            failing_at(azure, target, step, method, path).update(NAME, v2)
        refused = [c for c in azure.calls()[before:] if c.status == 409]
        assert len(refused) == 1 and refused[0].method == method, step
        assert failed.value.hint, (step, failed.value)
        assert traffic(azure) == ({G1: 100}, {}), step
        assert resources(azure, NAME) == only_generation(NAME, 1, models=True), step
        assert not host_of(azure, G1)["stopped"], step
    assert answered_by(target.predict(NAME, PAYLOAD), packages) == "v1"
    # Each ARM request an update sends that changes something was failed once (the blob is
    # there already: the SDK's HEAD finds it and skips the upload).
    azure.clear_calls()
    target.update(NAME, v2)
    assert writes(azure)[:5] == [
        "POST datastores/workspaceblobstore/listSecrets",
        "PUT models/modelport-ep-target/versions/2",
        "PUT environments/modelport-ep-target/versions/2",
        "PUT onlineEndpoints/ep-target/deployments/modelport-g2",
        "PUT onlineEndpoints/ep-target",
    ]
    assert resources(azure, NAME) == only_generation(NAME, 2, models=True)

    # The next one's container crashes while Azure provisions it.
    reason = "Liveness probe failed: the container exited with code 3"
    azure.fail_provisioning(G3, reason)
    azure.clear_calls()
    with pytest.raises(DeploymentError) as failed:
        target.update(NAME, v3)

    message = str(failed.value)
    assert f"(ResourceNotReady) {reason}" in message  # Azure's reason
    assert f"its log ends:\n  fake Azure: the container crashed on purpose: {reason}" in message
    # No traffic moved; the Failed deployment, its environment and model versions are gone.
    assert bodies(azure, "PUT onlineEndpoints/ep-target") == []
    assert writes(azure)[-3:] == [
        "DELETE onlineEndpoints/ep-target/deployments/modelport-g3",
        "DELETE environments/modelport-ep-target/versions/3",
        "DELETE models/modelport-ep-target/versions/3",
    ]
    assert traffic(azure) == ({G2: 100}, {})
    assert resources(azure, NAME) == only_generation(NAME, 2, models=True)
    assert answered_by(target.predict(NAME, PAYLOAD), packages) == "v2"
    record = target.get(NAME)
    assert record.status is DeploymentStatus.READY
    assert record.package_digest == v2.digest


# --- Azure's errors ------------------------------------------------------------------------------

SCOPE = (
    f"/subscriptions/{WORKSPACE_ID.split('/')[2]}/resourceGroups/rg-modelport/providers/"
    f"Microsoft.MachineLearningServices/workspaces/ws-modelport/onlineEndpoints/{NAME}"
)
WRITE_ACTION = "Microsoft.MachineLearningServices/workspaces/onlineEndpoints/write"


def test_an_authorization_failure_names_the_action_and_the_scope(
    azure: FakeAzure, home: Path, process_images: ProcessImages, packages: dict[str, Package]
) -> None:
    azure.fail_next(
        "PUT",
        f"/onlineEndpoints/{NAME}$",
        status=403,
        code="AuthorizationFailed",
        message="The client 'dev@example.com' with object id "
        "'11111111-2222-3333-4444-555555555555' does not have authorization to perform action "
        f"'{WRITE_ACTION}' over scope '{SCOPE}' or the scope is invalid. If access was recently "
        "granted, please refresh your credentials.",
    )

    with pytest.raises(PermissionDeniedError) as refused:
        baked(azure, process_images.v1).create(NAME, packages["v1"])

    assert WRITE_ACTION in str(refused.value.hint)
    assert SCOPE in str(refused.value.hint)
    assert resources(azure, NAME) == NOTHING


def test_throttling_is_waited_out_as_retry_after_says(azure: FakeAzure, home: Path) -> None:
    listed = r"/onlineEndpoints$"
    azure.fail_next("GET", listed, status=429, code="TooManyRequests", retry_after=1)
    seen: list[float] = []  # when each attempt reached the fake (within a few ms)
    deadline = time.monotonic() + 30

    def watch() -> None:
        while len(seen) < 2 and time.monotonic() < deadline:
            found = [c for c in azure.calls("arm") if c.short == "GET onlineEndpoints"]
            seen.extend(time.monotonic() for _ in found[len(seen) :])
            threading.Event().wait(0.005)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    assert baked(azure, "unused").list() == []
    watcher.join()

    statuses = [c.status for c in azure.calls("arm") if c.short == "GET onlineEndpoints"]
    assert statuses == [429, 200]
    assert len(seen) == 2 and seen[1] - seen[0] >= 0.95


def test_a_quota_error_says_which_option_to_change(
    azure: FakeAzure, home: Path, process_images: ProcessImages, packages: dict[str, Package]
) -> None:
    azure.fail_next(
        "PUT",
        f"/deployments/{G1}$",
        status=400,
        code="QuotaExceeded",
        message="Not enough quota available for Standard_DS3_v2 in SubscriptionId "
        "00000000-0000-0000-0000-000000000001. Current usage/limit: 4/6. Additional needed: 4",
    )

    with pytest.raises(QuotaExceededError) as refused:
        baked(azure, process_images.v1).create(NAME, packages["v1"])

    assert "Standard_DS3_v2" in str(refused.value)
    assert "instance_type" in str(refused.value.hint)
    assert resources(azure, NAME) == NOTHING


def test_a_quota_hint_names_the_sku_asked_for(
    azure: FakeAzure, home: Path, process_images: ProcessImages, packages: dict[str, Package]
) -> None:
    azure.fail_next(
        "PUT",
        f"/deployments/{G1}$",
        status=400,
        code="QuotaExceeded",
        message="The subscription has no quota left for this request.",
    )
    target = baked(azure, process_images.v1, instance_type="Standard_NC6s_v3")

    with pytest.raises(QuotaExceededError) as refused:
        target.create(NAME, packages["v1"])

    assert "Standard_NC6s_v3" in str(refused.value.hint)


def test_a_name_taken_in_the_region_is_a_conflict_naming_the_endpoint(
    azure: FakeAzure, home: Path, process_images: ProcessImages, packages: dict[str, Package]
) -> None:
    azure.taken_endpoint_names.add(NAME)

    with pytest.raises(ConflictError) as refused:
        baked(azure, process_images.v1).create(NAME, packages["v1"])

    assert f"onlineEndpoints/{NAME}" in str(refused.value.hint)
    assert [c.status for c in azure.calls() if c.short == f"PUT onlineEndpoints/{NAME}"] == [409]
    assert resources(azure, NAME) == NOTHING


# --- long-running operations answered at once ----------------------------------------------------


def test_a_create_and_delete_with_synchronous_operations(
    azure: FakeAzure, home: Path, process_images: ProcessImages, packages: dict[str, Package]
) -> None:
    azure.lro = "sync"
    target = baked(azure, process_images.v1)

    record = target.create(NAME, packages["v1"])

    assert azure.sequence(reads=False) == CREATE_WRITES
    assert azure.calls("poll") == []
    assert record.status is DeploymentStatus.READY
    assert resources(azure, NAME) == only_generation(NAME, 1)
    target.delete(NAME)
    assert azure.calls("poll") == []
    assert resources(azure, NAME) == NOTHING


# --- AAD tokens ----------------------------------------------------------------------------------


def test_aad_token_endpoints_are_asked_with_a_token_never_a_key(
    azure: FakeAzure,
    home: Path,
    process_images: ProcessImages,
    packages: dict[str, Package],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    target = baked(azure, process_images.v1, auth_mode="aad_token")
    target.create(NAME, packages["v1"])
    made = bodies(azure, "PUT onlineEndpoints/ep-target")[0]
    assert made["properties"]["authMode"] == "AADToken"

    assert same_predictions(target.predict(NAME, PAYLOAD), expected(packages["v1"]))

    (scored,) = azure.calls("scoring")
    assert scored.headers["authorization"] == f"Bearer {TOKEN}"
    assert not [c for c in azure.calls() if c.path.lower().endswith("/listkeys")]
    # A token the endpoint does not take (az now prints another): refused, as a permission.
    monkeypatch.setenv(AZ_TOKEN_ENV, "not-the-token")
    with pytest.raises(PermissionDeniedError, match="refused the credentials"):
        target.predict(NAME, PAYLOAD)
    assert [s.status for s in azure.scoring_requests(NAME)] == [200, 401]


# --- the plan ------------------------------------------------------------------------------------


def test_the_plan_touches_nothing_and_lists_every_step(
    azure: FakeAzure, home: Path, process_images: ProcessImages, packages: dict[str, Package]
) -> None:
    v1 = packages["v1"]
    target = azureml_target(
        azure,
        registry="127.0.0.1:5000",
        model_asset="true",
        instance_type="Standard_F4s_v2",
        instance_count=2,
    )

    plan = {p.step: p for p in target.plan(NAME, v1)}
    baked_plan = baked(azure, process_images.v1).plan(NAME, v1)

    assert writes(azure, blobs=True) == []
    assert list(plan) == [
        "push-image",
        "register-model",
        "register-environment",
        "create-endpoint",
        "create-deployment",
        "route-traffic",
    ]
    assert plan["push-image"].details == {
        "image": "127.0.0.1:5000/modelport-runtime:<runtime key>",
        "registry": "127.0.0.1:5000",
    }

    def params(step: str) -> dict[str, Any]:
        (call,) = plan[step].details["calls"]
        return dict(call["params"])

    assert params("register-model") == {
        "name": ASSET,
        "version": "1",
        "type": "custom_model",
        "path": "<the package's .mport archive>",
    }
    environment = params("register-environment")
    assert environment["image"] == "<push-image>"
    assert environment["inference_config"] == {
        "liveness_route": {"port": 8080, "path": "/ping"},
        "readiness_route": {"port": 8080, "path": "/ping"},
        "scoring_route": {"port": 8080, "path": "/score"},
    }
    assert environment["tags"] == modelport_tags(v1, NAME, 1)
    endpoint = params("create-endpoint")
    assert (endpoint["name"], endpoint["auth_mode"], endpoint["tags"]) == (
        NAME,
        "key",
        ENDPOINT_TAGS,
    )
    deployment = params("create-deployment")
    assert deployment["environment"] == f"azureml:{ASSET}:1"
    assert (deployment["instance_type"], deployment["instance_count"]) == ("Standard_F4s_v2", 2)
    assert deployment["environment_variables"] == {EXPECT_DIGEST: v1.digest}
    assert deployment["tags"] == modelport_tags(v1, NAME, 1)
    assert params("route-traffic") == {"name": NAME, "traffic": {G1: 100}, "mirror_traffic": {}}
    # With -C image: the image as given, no model asset.
    assert [p.step for p in baked_plan] == [
        "use-image",
        "register-environment",
        "create-endpoint",
        "create-deployment",
        "route-traffic",
    ]
    assert baked_plan[0].details == {"image": process_images.v1}


# --- the model-asset form, and what an update keeps ----------------------------------------------


def test_the_model_asset_is_mounted_and_an_update_keeps_the_settings_not_given(
    azure: FakeAzure,
    home: Path,
    process_images: ProcessImages,
    packages: dict[str, Package],
    tmp_path: Path,
) -> None:
    v1, v2 = packages["v1"], packages["v2"]
    target = asset_form(
        azure,
        process_images,
        instance_type="Standard_F4s_v2",
        instance_count=2,
        environment_variables='{"FOO": "bar"}',
    )

    target.create(NAME, v1)

    assert writes(azure, blobs=True) == CREATE_ASSET_WRITES
    # The blob: the package's archive, which is the package.
    (blob,) = azure.blobs()
    assert re.search(BLOB, "/" + blob)
    (tmp_path / "uploaded.mport").write_bytes(azure.blobs()[blob])
    with load(tmp_path / "uploaded.mport") as uploaded:
        assert uploaded.digest == v1.digest
    # The model version: custom_model, tagged, pointing at the blob.
    model = resource(azure.model(ASSET, "1"))
    assert model["properties"]["modelType"] == "custom_model"
    assert model["properties"]["tags"] == modelport_tags(v1, NAME, 1)
    assert model["properties"]["modelUri"].endswith(f"/paths/{blob}")
    # The environment: the runtime image; the deployment names the model and sets no package
    # path (MODELPORT_PACKAGE stays the image's own).
    (environment,) = bodies(azure, "PUT environments/modelport-ep-target/versions/1")
    assert environment["properties"]["image"] == process_images.runtime
    (deployment,) = bodies(azure, "PUT onlineEndpoints/ep-target/deployments/modelport-g1")
    assert deployment["properties"]["model"] == environment_id("models", 1)
    assert deployment["properties"]["environmentId"] == environment_id("environments", 1)
    assert deployment["properties"]["environmentVariables"] == {
        "FOO": "bar",
        EXPECT_DIGEST: v1.digest,
    }
    assert deployment["properties"]["instanceType"] == "Standard_F4s_v2"
    assert deployment["sku"] == {"name": "Default", "capacity": 2}
    # Azure mounted it at AZUREML_MODEL_DIR, where the image's entrypoint found it.
    host = host_of(azure, G1)
    assert host["env"]["AZUREML_MODEL_DIR"].endswith(f"/azureml-models/{ASSET}/1")
    assert host["env"]["FOO"] == "bar"
    assert same_predictions(target.predict(NAME, PAYLOAD), expected(v1))

    # An update given only instance_count keeps the deployment's type and variables.
    record = asset_form(azure, process_images, instance_count=3).update(NAME, v2)

    (deployment,) = bodies(azure, "PUT onlineEndpoints/ep-target/deployments/modelport-g2")
    assert deployment["properties"]["model"] == environment_id("models", 2)
    assert deployment["properties"]["instanceType"] == "Standard_F4s_v2"  # kept
    assert deployment["sku"]["capacity"] == 3  # given
    assert deployment["properties"]["environmentVariables"] == {
        "FOO": "bar",  # kept
        EXPECT_DIGEST: v2.digest,  # this package's
    }
    assert record.details["deployments"] == {
        G2: {
            "state": "Succeeded",
            "package_digest": v2.digest,
            "traffic": 100,
            "mirror": 0,
            "instance_type": "Standard_F4s_v2",
            "instance_count": 3,
        }
    }
    assert resources(azure, NAME) == only_generation(NAME, 2, models=True)
    target.delete(NAME)
    assert resources(azure, NAME) == NOTHING


# --- a version Azure keeps (archives) ----------------------------------------------------------


def test_an_archived_version_is_not_reused_by_the_next_update(
    azure: FakeAzure, home: Path, process_images: ProcessImages, packages: dict[str, Package]
) -> None:
    v1, v2, v3 = packages["v1"], packages["v2"], packages["v3"]
    events: list[ProgressEvent] = []
    target = with_progress(asset_form(azure, process_images), events.append)
    target.create(NAME, v1)
    # The update fails; Azure refuses to delete the model version it made, which is archived.
    azure.fail_next("PUT", f"/deployments/{G2}$", status=409, code="Conflict")
    azure.fail_next("DELETE", f"/models/{ASSET}/versions/2$", status=405, code="MethodNotAllowed")
    with pytest.raises(ConflictError):
        target.update(NAME, v2)
    assert azure.models()[ASSET] == ["1", "2"]
    assert resource(azure.model(ASSET, "2"))["properties"]["isArchived"]
    assert [e.message for e in events if e.kind == "warn"] == [
        f"Azure keeps model {ASSET}:2: it is archived"
    ]

    record = target.update(NAME, v3)

    assert record.details["deployment"] == G3
    found = resources(azure, NAME)
    assert found["deployments"] == [G3]
    assert (found["environments"], found["models"]) == (["3"], ["2", "3"])  # 2: archived
    assert answered_by(target.predict(NAME, PAYLOAD), packages) == "v3"


def test_a_canary_with_most_of_the_traffic_is_still_the_canary(
    azure: FakeAzure, home: Path, process_images: ProcessImages, packages: dict[str, Package]
) -> None:
    """60 % on the new version: the old one still serves the record, and promote and rollback
    see the canary (the primary is the oldest generation with traffic, not the biggest share)."""
    v1, v2 = packages["v1"], packages["v2"]
    baked(azure, process_images.v1).create(NAME, v1)
    record = baked(azure, process_images.v2, canary_percent=60).update(NAME, v2)
    assert traffic(azure) == ({G1: 40, G2: 60}, {})
    assert (record.package_digest, record.details["deployment"]) == (v1.digest, G1)
    assert record.details["candidate"]["deployment"] == G2
    assert record.details["candidate"]["percent"] == 60
    promoted = baked(azure, process_images.v2).promote(NAME)
    assert (promoted.package_digest, promoted.details["deployment"]) == (v2.digest, G2)
    assert traffic(azure) == ({G2: 100}, {})
    assert resources(azure, NAME) == only_generation(NAME, 2)
