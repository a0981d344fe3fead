"""The vertex target against the offline Vertex: the exact requests, the state each verb leaves,
and what a failure at each Vertex call leaves.

The real google-cloud-aiplatform (REST transport, a service account key that signs its own
JWTs) talks to ``fake_vertex.py``; deployed models really serve (process hosts running the
package baked into a small pushed image: ``-C image=`` of ``process_images``, nothing built).
The contract suite covers the Deployer API's rules and a failure after each kit step
(failpoints); here a failure comes from Vertex itself, at each call.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fake_vertex import LOCATION, PROJECT, PROJECT_NUMBER, FakeVertex
from registry_images import ProcessImages, push_process_image
from vertex_support import (
    NOTHING,
    PAYLOAD,
    endpoint_of,
    expected,
    modelport_labels,
    resources,
    same_predictions,
    vertex_target,
)

from modelport.deployers.base import DeploymentStatus
from modelport.deployers.kit.images import package_env
from modelport.deployers.kit.progress import Progress, ProgressEvent
from modelport.deployers.vertex import VertexDeployer
from modelport.deployers.vertex.deployer import CPU_METRIC
from modelport.errors import (
    ConflictError,
    DeploymentError,
    DeploymentNotFound,
    PermissionDeniedError,
    QuotaExceededError,
    TargetUnavailableError,
    UsageError,
)
from modelport.model_format.package import Package, load
from modelport.plugins.testing import make_test_package

SERVICE_ACCOUNT = f"serve@{PROJECT}.iam.gserviceaccount.com"


@pytest.fixture
def packages(package_paths: dict[str, Path]) -> Iterator[dict[str, Package]]:
    with load(package_paths["v1"]) as v1, load(package_paths["v2"]) as v2:
        yield {"v1": v1, "v2": v2}


@pytest.fixture
def target(
    vertex: FakeVertex, home: Path, key_file: Path, process_images: ProcessImages
) -> Iterator[VertexDeployer]:
    """The target serving the v1 image; deletes what a test left."""
    made = vertex_target(vertex, key_file, image=process_images.v1, registry=None)
    yield made
    for doc in vertex.endpoints().values():
        name = (doc.get("labels") or {}).get("modelport-deployment")
        if name:
            made.delete(name)


def on(vertex: FakeVertex, key_file: Path, image: str, **options: Any) -> VertexDeployer:
    """Another target on the same fake, serving ``image``."""
    return vertex_target(vertex, key_file, image=image, registry=None, **options)


def changes(vertex: FakeVertex) -> list[str]:
    """The calls that change something, in order (reads and polls left out)."""
    return vertex.sequence(polls=False, reads=False)


def body_of(vertex: FakeVertex, method: str, ending: str) -> Any:
    found = [c for c in vertex.calls() if c.method == method and c.path.endswith(ending)]
    assert len(found) == 1, [c.short() for c in vertex.calls()]
    return found[0].body


def split_by_name(vertex: FakeVertex, name: str) -> dict[str, int]:
    endpoint = endpoint_of(vertex, name)
    assert endpoint is not None
    names = {i: d["displayName"] for i, d in vertex.deployed_models(endpoint).items()}
    return {names[i]: p for i, p in vertex.traffic_split(endpoint).items() if p}


def aliases(vertex: FakeVertex, name: str) -> dict[str, list[str]]:
    model = vertex.model(f"modelport-{name}")
    assert model is not None
    return {v: list(doc.get("versionAliases") or []) for v, doc in model["versions"].items()}


# --- create -------------------------------------------------------------------------------------


def test_create_sends_the_container_spec_machines_and_labels_asked_for(
    vertex: FakeVertex,
    home: Path,
    key_file: Path,
    process_images: ProcessImages,
    packages: dict[str, Package],
) -> None:
    v1 = packages["v1"]
    target = on(
        vertex,
        key_file,
        process_images.v1,
        machine_type="n1-highmem-4",
        min_replicas=2,
        max_replicas=3,
        accelerator_type="NVIDIA_TESLA_T4",
        accelerator_count=1,
        service_account=SERVICE_ACCOUNT,
        cpu_target_percent=60,
        labels='{"team": "risk"}',
        environment_variables='{"LOG_LEVEL": "debug"}',
    )
    try:
        record = target.create("churn", v1)
        endpoint = endpoint_of(vertex, "churn")
        assert changes(vertex) == [
            "POST models:upload",
            "POST endpoints",
            f"POST endpoints/{endpoint}:deployModel",
        ]
        upload = body_of(vertex, "POST", "models:upload")
        assert upload["modelId"] == "modelport-churn" and "parentModel" not in upload
        assert upload["model"]["containerSpec"] == {
            "imageUri": process_images.v1,
            "env": [
                {"name": "LOG_LEVEL", "value": "debug"},
                *({"name": k, "value": v} for k, v in package_env(v1).items()),
            ],
            "ports": [{"containerPort": 8080}],
            "predictRoute": "/predict",
            "healthRoute": "/ping",
        }
        assert upload["model"]["labels"] == {"team": "risk", **modelport_labels(v1, "churn", 1)}
        assert upload["model"]["versionAliases"] == ["default"]
        assert v1.digest in upload["model"]["versionDescription"]
        created = body_of(vertex, "POST", "/endpoints")
        assert created["displayName"] == "churn"
        assert created["labels"] == {
            "team": "risk",
            "modelport-deployment": "churn",
            "modelport-target": "vertex",
            "modelport-modelport-version": modelport_labels(v1, "churn", 1)[
                "modelport-modelport-version"
            ],
        }
        deploy = body_of(vertex, "POST", ":deployModel")
        assert deploy["trafficSplit"] == {"0": 100}
        model = f"projects/{PROJECT_NUMBER}/locations/{LOCATION}/models/modelport-churn@1"
        assert deploy["deployedModel"]["model"] == model
        assert deploy["deployedModel"]["displayName"] == "modelport-g1"
        assert deploy["deployedModel"]["serviceAccount"] == SERVICE_ACCOUNT
        resources_asked = deploy["deployedModel"]["dedicatedResources"]
        assert resources_asked["minReplicaCount"] == 2 and resources_asked["maxReplicaCount"] == 3
        assert resources_asked["machineSpec"]["machineType"] == "n1-highmem-4"
        assert resources_asked["machineSpec"]["acceleratorCount"] == 1
        assert resources_asked["autoscalingMetricSpecs"] == [
            {"metricName": CPU_METRIC, "target": 60}
        ]
        # As Vertex runs the container: its routes and machine in AIP_* variables.
        host = vertex.hosts()[0]
        assert host["env"]["AIP_HEALTH_ROUTE"] == "/ping"
        assert host["env"]["AIP_PREDICT_ROUTE"] == "/predict"
        assert host["env"]["AIP_MACHINE_TYPE"] == "n1-highmem-4"
        assert host["env"]["AIP_ACCELERATOR_TYPE"] == "NVIDIA_TESLA_T4"
        assert host["env"]["MODELPORT_EXPECT_DIGEST"] == v1.digest
        # The record says what Vertex has.
        assert record.status is DeploymentStatus.READY
        assert record.package_digest == v1.digest
        serving = record.details["deployed_models"]["modelport-g1"]
        assert serving["machine_type"] == "n1-highmem-4"
        assert (serving["min_replicas"], serving["max_replicas"]) == (2, 3)
        assert (serving["accelerator_type"], serving["accelerator_count"]) == (
            "NVIDIA_TESLA_T4",
            1,
        )
        assert serving["cpu_target_percent"] == 60
        assert record.details["traffic"] == {"modelport-g1": 100}
        assert record.details["endpoint_id"] == endpoint
        assert record.endpoint == (
            f"{vertex.api_endpoint}/v1/projects/{PROJECT_NUMBER}/locations/{LOCATION}/"
            f"endpoints/{endpoint}:predict"
        )
        assert resources(vertex, "churn") == {
            "endpoint": ["churn"],
            "deployed": ["modelport-g1"],
            "versions": ["1"],
        }
        assert same_predictions(target.predict("churn", PAYLOAD), expected(v1))
        # Rows went as Vertex instances, through Endpoint.predict.
        asked = [c.body for c in vertex.calls("predict")]
        assert asked == [{"instances": [{"X": [1.0, 2.0]}, {"X": [3.0, 4.0]}]}]
    finally:
        target.delete("churn")
    assert resources(vertex, "churn") == NOTHING


def test_the_plan_is_the_requests_create_sends_and_touches_nothing(
    vertex: FakeVertex, target: VertexDeployer, packages: dict[str, Package]
) -> None:
    v1 = packages["v1"]
    plan = target.plan("planned", v1)
    assert [a.step for a in plan] == [
        "use-image",
        "upload-model",
        "create-endpoint",
        "deploy-model",
    ]
    assert changes(vertex) == []
    planned = {a.step: a.details["calls"][0] for a in plan if "calls" in a.details}
    upload = planned["upload-model"]["params"]
    assert planned["upload-model"]["call"] == "aiplatform.Model.upload"
    assert upload["serving_container_image_uri"] == "<use-image>"
    assert planned["deploy-model"]["params"]["traffic_split"] == {"0": 100}
    target.create("planned", v1)
    sent = body_of(vertex, "POST", "models:upload")["model"]
    assert sent["labels"] == upload["labels"]
    assert {e["name"]: e["value"] for e in sent["containerSpec"]["env"]} == upload[
        "serving_container_environment_variables"
    ]
    assert json.dumps(plan[0].to_dict())  # the plan is JSON (deploy --dry-run --json)


def test_an_endpoint_given_by_id_is_used_labelled_and_left_after_delete(
    vertex: FakeVertex, target: VertexDeployer, key_file: Path, process_images: ProcessImages,
    packages: dict[str, Package],
) -> None:  # fmt: skip
    from google.cloud import aiplatform

    vertex.init_sdk()
    theirs = aiplatform.Endpoint.create(display_name="shared", labels={"owner": "them"})
    endpoint_id = theirs.name
    vertex.clear_calls()
    given = on(vertex, key_file, process_images.v1, endpoint_id=endpoint_id)
    record = given.create("reuse", packages["v1"])
    assert record.details["reused_endpoint"] is True
    assert changes(vertex) == [
        "POST models:upload",
        f"PATCH endpoints/{endpoint_id}",
        f"POST endpoints/{endpoint_id}:deployModel",
    ]
    assert vertex.endpoint(endpoint_id)["labels"]["owner"] == "them"
    given.delete("reuse")
    left = vertex.endpoint(endpoint_id)
    assert left is not None and left["labels"] == {"owner": "them"}
    assert vertex.deployed_models(endpoint_id) == {}
    assert vertex.model("modelport-reuse") is None


def test_an_endpoint_given_by_id_that_serves_other_models_is_refused(
    vertex: FakeVertex, key_file: Path, home: Path, process_images: ProcessImages,
    packages: dict[str, Package],
) -> None:  # fmt: skip
    from google.cloud import aiplatform

    vertex.init_sdk()
    busy = aiplatform.Endpoint.create(display_name="busy")
    model = aiplatform.Model.upload(
        display_name="theirs",
        serving_container_image_uri=process_images.v1,
        serving_container_predict_route="/predict",
        serving_container_health_route="/ping",
    )
    model.deploy(endpoint=busy, machine_type="n1-standard-2")
    given = on(vertex, key_file, process_images.v1, endpoint_id=busy.name)
    with pytest.raises(ConflictError, match="has models deployed on it"):
        given.create("crowded", packages["v1"])
    # Its own model upload was undone; the endpoint and its model are as they were.
    assert vertex.model("modelport-crowded") is None
    assert len(vertex.deployed_models(busy.name)) == 1
    assert "modelport-deployment" not in (vertex.endpoint(busy.name).get("labels") or {})
    busy.undeploy_all()


def test_list_shows_only_what_modelport_made(
    vertex: FakeVertex, target: VertexDeployer, packages: dict[str, Package]
) -> None:
    from google.cloud import aiplatform

    target.create("listed", packages["v1"])
    vertex.init_sdk()
    aiplatform.Endpoint.create(display_name="someone-elses", labels={"modelport-target": "x"})
    assert [d.name for d in target.list()] == ["listed"]


# --- update, canary, promote, rollback ----------------------------------------------------------


def test_update_moves_all_traffic_and_removes_the_old_version(
    vertex: FakeVertex, target: VertexDeployer, key_file: Path, process_images: ProcessImages,
    packages: dict[str, Package],
) -> None:  # fmt: skip
    v1, v2 = packages["v1"], packages["v2"]
    first = target.create("switch", v1)
    old = first.details["deployed_model_id"]
    endpoint = first.details["endpoint_id"]
    vertex.clear_calls()
    record = on(vertex, key_file, process_images.v2).update("switch", v2)
    new = record.details["deployed_model_id"]
    assert changes(vertex) == [
        "POST models:upload",
        f"POST endpoints/{endpoint}:deployModel",
        f"PATCH endpoints/{endpoint}",
        f"POST endpoints/{endpoint}:undeployModel",
        "DELETE models/modelport-switch@1:deleteVersion",
    ]
    upload = body_of(vertex, "POST", "models:upload")
    parent = f"projects/{PROJECT}/locations/{LOCATION}/models/modelport-switch"
    assert upload["parentModel"] == parent and "modelId" not in upload
    assert upload["model"]["labels"] == modelport_labels(v2, "switch", 2)
    assert body_of(vertex, "POST", ":deployModel")["trafficSplit"] == {old: 100, "0": 0}
    patch = next(c for c in vertex.calls() if c.method == "PATCH")
    assert patch.query["updateMask"] == "trafficSplit"
    assert patch.body["trafficSplit"] == {new: 100}
    assert body_of(vertex, "POST", ":undeployModel")["deployedModelId"] == old
    assert (record.status, record.package_digest) == (DeploymentStatus.READY, v2.digest)
    assert resources(vertex, "switch") == {
        "endpoint": ["switch"],
        "deployed": ["modelport-g2"],
        "versions": ["2"],
    }
    assert aliases(vertex, "switch") == {"2": ["default"]}
    assert same_predictions(target.predict("switch", PAYLOAD), expected(v2))


def test_the_packages_provenance_is_labelled_and_replaced_by_an_update(
    vertex: FakeVertex, target: VertexDeployer, key_file: Path, process_images: ProcessImages,
    packages: dict[str, Package],
) -> None:  # fmt: skip
    v1, v2 = packages["v1"], packages["v2"]
    fingerprint, oci_digest, oci_digest_2 = ("sha256:" + c * 64 for c in "abc")
    v1.provenance = dataclasses.replace(
        v1.provenance, signature_fingerprint=fingerprint, oci_digest=oci_digest
    )
    v2.provenance = dataclasses.replace(v2.provenance, oci_digest=oci_digest_2)
    target.create("prov", v1)
    # Each digest is split in two labels (a GCP value holds 63 characters).
    assert body_of(vertex, "POST", "models:upload")["model"]["labels"] == {
        **modelport_labels(v1, "prov", 1),
        "modelport-signature-fingerprint": "sha256-" + "a" * 32,
        "modelport-signature-fingerprint-2": "a" * 32,
        "modelport-oci-digest": "sha256-" + "b" * 32,
        "modelport-oci-digest-2": "b" * 32,
    }
    got = on(vertex, key_file, process_images.v1).get("prov").details  # read from Vertex
    assert (got["signature_fingerprint"], got["oci_digest"]) == (fingerprint, oci_digest)
    on(vertex, key_file, process_images.v2).update("prov", v2)
    got = on(vertex, key_file, process_images.v2).get("prov").details
    assert got["oci_digest"] == oci_digest_2 and "signature_fingerprint" not in got
    assert got["deployed_models"]["modelport-g2"]["oci_digest"] == oci_digest_2


def test_update_keeps_the_machines_of_the_version_serving(
    vertex: FakeVertex, key_file: Path, home: Path, process_images: ProcessImages,
    packages: dict[str, Package],
) -> None:  # fmt: skip
    made = on(
        vertex, key_file, process_images.v1, machine_type="n1-highmem-4", min_replicas=2,
        max_replicas=3, cpu_target_percent=70, service_account=SERVICE_ACCOUNT,
    )  # fmt: skip
    made.create("keeps", packages["v1"])
    vertex.clear_calls()
    try:
        on(vertex, key_file, process_images.v2).update("keeps", packages["v2"])
        deployed = body_of(vertex, "POST", ":deployModel")["deployedModel"]
        assert deployed["serviceAccount"] == SERVICE_ACCOUNT
        asked = deployed["dedicatedResources"]
        assert asked["machineSpec"] == {"machineType": "n1-highmem-4"}
        assert (asked["minReplicaCount"], asked["maxReplicaCount"]) == (2, 3)
        assert asked["autoscalingMetricSpecs"] == [{"metricName": CPU_METRIC, "target": 70}]
    finally:
        made.delete("keeps")


def test_update_builds_into_the_registry_of_the_image_serving(
    vertex: FakeVertex, key_file: Path, home: Path, image_builds: None,
    packages: dict[str, Package],
) -> None:  # fmt: skip
    """``deployments update -n NAME model-v2.mport`` needs no image options: the serving image
    was built by modelport, so the new one goes to the same registry and repository."""
    made = vertex_target(vertex, key_file, repository="team-a")
    registry = made.config.registry
    made.create("rebuilt", packages["v1"])
    vertex.clear_calls()
    try:
        bare = vertex_target(vertex, key_file, registry=None)
        assert bare.config.registry is None
        record = bare.update("rebuilt", packages["v2"])
        uri = body_of(vertex, "POST", "models:upload")["model"]["containerSpec"]["imageUri"]
    finally:
        made.delete("rebuilt")
    assert uri.startswith(f"{registry}/team-a-model@sha256:"), uri
    assert record.package_digest == packages["v2"].digest


def test_canary_promote_and_rollback(
    vertex: FakeVertex, target: VertexDeployer, key_file: Path, process_images: ProcessImages,
    packages: dict[str, Package], tmp_path: Path,
) -> None:  # fmt: skip
    v1, v2 = packages["v1"], packages["v2"]
    endpoint = target.create("bird", v1).details["endpoint_id"]
    vertex.clear_calls()
    canary = on(vertex, key_file, process_images.v2, canary_percent=10).update("bird", v2)
    assert changes(vertex) == [
        "POST models:upload",
        f"POST endpoints/{endpoint}:deployModel",
        f"PATCH endpoints/{endpoint}",
    ]
    # A canary's version is not the default one until it is promoted.
    assert "versionAliases" not in body_of(vertex, "POST", "models:upload")["model"]
    assert split_by_name(vertex, "bird") == {"modelport-g1": 90, "modelport-g2": 10}
    assert canary.status is DeploymentStatus.READY
    assert canary.package_digest == v1.digest  # the old version still serves most
    assert canary.details["candidate"]["deployment"] == "modelport-g2"
    assert canary.details["candidate"]["percent"] == 10
    assert canary.details["candidate"]["package_digest"] == v2.digest
    assert aliases(vertex, "bird") == {"1": ["default"], "2": []}
    # Vertex shares the requests by the split: 1 in 10 reaches the canary.
    answers = [target.predict("bird", PAYLOAD) for _ in range(10)]
    assert sum(same_predictions(a, expected(v2)) for a in answers) == 1
    assert sum(same_predictions(a, expected(v1)) for a in answers) == 9
    # An update to a third package while the canary runs is refused: finish it first.
    third = make_test_package(tmp_path / "v3.mport", scale=3.0, version="3")
    image = push_process_image(vertex.registry, third, "modelport-fake-vertex/process", "v3")
    with load(third) as v3, pytest.raises(ConflictError, match="canary in progress"):
        on(vertex, key_file, image).update("bird", v3)

    vertex.clear_calls()
    promoted = target.promote("bird")
    assert changes(vertex) == [
        f"PATCH endpoints/{endpoint}",
        "POST models/modelport-bird@2:mergeVersionAliases",
        f"POST endpoints/{endpoint}:undeployModel",
        "DELETE models/modelport-bird@1:deleteVersion",
    ]
    assert (promoted.status, promoted.package_digest) == (DeploymentStatus.READY, v2.digest)
    assert "candidate" not in promoted.details
    assert resources(vertex, "bird")["deployed"] == ["modelport-g2"]
    assert aliases(vertex, "bird") == {"2": ["default"]}

    on(vertex, key_file, process_images.v1, canary_percent=25).update("bird", v1)
    assert split_by_name(vertex, "bird") == {"modelport-g2": 75, "modelport-g3": 25}
    vertex.clear_calls()
    rolled = target.rollback("bird")
    assert changes(vertex) == [
        f"PATCH endpoints/{endpoint}",
        f"POST endpoints/{endpoint}:undeployModel",
        "DELETE models/modelport-bird@3:deleteVersion",
    ]
    assert (rolled.status, rolled.package_digest) == (DeploymentStatus.READY, v2.digest)
    assert split_by_name(vertex, "bird") == {"modelport-g2": 100}
    assert resources(vertex, "bird")["versions"] == ["2"]
    assert aliases(vertex, "bird") == {"2": ["default"]}
    with pytest.raises(UsageError, match="no canary in progress"):
        target.promote("bird")


# --- failures from Vertex, at each call ---------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "status", "google", "message", "error"),
    [
        ("POST", r"models:upload$", 500, "INTERNAL", "backend error", DeploymentError),
        (
            "POST",
            r"/endpoints$",
            403,
            "PERMISSION_DENIED",
            "Permission 'aiplatform.endpoints.create' denied on resource",
            PermissionDeniedError,
        ),
        (
            "POST",
            r":deployModel$",
            429,
            "RESOURCE_EXHAUSTED",
            "The following quota metrics exceed quota limits: "
            "aiplatform.googleapis.com/custom_model_serving_cpus",
            QuotaExceededError,
        ),
    ],
    ids=["upload", "create-endpoint", "deploy-quota"],
)
def test_create_refused_at_each_call_leaves_nothing(
    vertex: FakeVertex, target: VertexDeployer, packages: dict[str, Package],
    method: str, path: str, status: int, google: str, message: str, error: type[Exception],
) -> None:  # fmt: skip
    vertex.fail_next(method, path, status, google, message)
    with pytest.raises(error) as caught:
        target.create("refused", packages["v1"])
    assert message.split(":", maxsplit=1)[0] in str(caught.value)
    assert resources(vertex, "refused") == NOTHING
    if error is QuotaExceededError:
        hint = str(caught.value.hint)  # type: ignore[attr-defined]
        assert "aiplatform.googleapis.com/custom_model_serving_cpus" in hint
        assert LOCATION in hint and "n1-standard-2" in hint
    if error is PermissionDeniedError:
        assert "roles/aiplatform.user" in str(caught.value.hint)  # type: ignore[attr-defined]


def test_a_model_that_never_serves_fails_the_create_and_leaves_nothing(
    vertex: FakeVertex, target: VertexDeployer, packages: dict[str, Package]
) -> None:
    vertex.fail_deploy("Model server never became ready. Please validate the container.")
    with pytest.raises(DeploymentError, match="Model server never became ready"):
        target.create("broken", packages["v1"])
    assert resources(vertex, "broken") == NOTHING


@pytest.mark.parametrize("at", ["upload", "deploy", "traffic"])
def test_an_update_failing_at_each_call_keeps_the_old_version_alone(
    vertex: FakeVertex, target: VertexDeployer, key_file: Path, process_images: ProcessImages,
    packages: dict[str, Package], at: str,
) -> None:  # fmt: skip
    v1, v2 = packages["v1"], packages["v2"]
    target.create("steady", v1)
    if at == "upload":
        vertex.fail_next("POST", r"models:upload$", 400, "INVALID_ARGUMENT", "bad container spec")
    elif at == "deploy":
        vertex.fail_deploy("Model server exited unexpectedly.")
    else:
        vertex.fail_next("PATCH", r"/endpoints/\d+$", 500, "INTERNAL", "traffic not applied")
    with pytest.raises(DeploymentError):
        on(vertex, key_file, process_images.v2).update("steady", v2)
    assert resources(vertex, "steady") == {
        "endpoint": ["steady"],
        "deployed": ["modelport-g1"],
        "versions": ["1"],
    }
    assert split_by_name(vertex, "steady") == {"modelport-g1": 100}
    assert aliases(vertex, "steady") == {"1": ["default"]}
    record = target.get("steady")
    assert (record.status, record.package_digest) == (DeploymentStatus.READY, v1.digest)
    assert same_predictions(target.predict("steady", PAYLOAD), expected(v1))


def test_pending_operations_are_polled_until_done(
    vertex: FakeVertex, target: VertexDeployer, packages: dict[str, Package]
) -> None:
    vertex.pending_polls = 2
    seen: list[ProgressEvent] = []
    target.progress = Progress(seen.append)
    assert target.create("patient", packages["v1"]).status is DeploymentStatus.READY
    polls = vertex.calls("poll")
    assert polls and all(c.path.startswith("/ui/") for c in polls)
    assert any(c.path.endswith(tuple(vertex.operations())) for c in polls)
    target.delete("patient")
    assert resources(vertex, "patient") == NOTHING


def test_a_call_refused_before_vertex_acts_is_made_again(
    vertex: FakeVertex, target: VertexDeployer, packages: dict[str, Package]
) -> None:
    vertex.fail_next("POST", r"models:upload$", 503, "UNAVAILABLE", "try again")
    seen: list[ProgressEvent] = []
    target.progress = Progress(seen.append)
    target.create("again", packages["v1"])
    uploads = [c for c in vertex.calls() if c.path.endswith("models:upload")]
    assert [c.status for c in uploads] == [503, 200]
    assert any("Google answered 503; trying again" in e.message for e in seen)
    assert resources(vertex, "again")["versions"] == ["1"]


def test_vertex_unreachable_is_a_clear_error(
    key_file: Path, home: Path, vertex: FakeVertex
) -> None:
    from hosting import free_port

    gone = vertex_target(vertex, key_file, api_endpoint=f"http://127.0.0.1:{free_port()}")
    with pytest.raises((TargetUnavailableError, DeploymentError)) as caught:
        gone.get("anything")
    assert "api_endpoint" in str(caught.value.hint)  # type: ignore[attr-defined]


# --- get, logs ----------------------------------------------------------------------------------


def test_logs_come_from_cloud_logging_and_say_where_they_are(
    vertex: FakeVertex, target: VertexDeployer, packages: dict[str, Package]
) -> None:
    endpoint = target.create("talks", packages["v1"]).details["endpoint_id"]
    seen: list[ProgressEvent] = []
    target.progress = Progress(seen.append)
    lines = list(target.logs("talks", tail=3))
    assert len(lines) == 3
    assert lines == [e.text for e in vertex.log_entries(endpoint)][-3:]
    assert any(f'resource.labels.endpoint_id="{endpoint}"' in e.message for e in seen)
    asked = vertex.calls("logging")[-1].body
    assert asked["resourceNames"] == [f"projects/{PROJECT}"]
    assert f'resource.labels.endpoint_id="{endpoint}"' in asked["filter"]
    vertex.fail_next(
        "POST",
        r"entries:list$",
        403,
        "PERMISSION_DENIED",
        "Permission 'logging.logEntries.list' denied",
    )
    with pytest.raises(PermissionDeniedError) as caught:
        list(target.logs("talks"))
    assert "gcloud logging read" in str(caught.value.hint)
    assert "roles/logging.viewer" in str(caught.value.hint)


def test_the_default_credentials_and_their_project_are_used(
    vertex: FakeVertex, key_file: Path, home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """google-auth's default chain, from GOOGLE_APPLICATION_CREDENTIALS: the project comes from
    the key, and nothing asks a metadata server."""
    from modelport.deployers import connect

    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(key_file))
    target = connect(
        "vertex", {"api_endpoint": vertex.api_endpoint, "logging_endpoint": vertex.logging_endpoint}
    )
    assert isinstance(target, VertexDeployer)
    assert (target.location.project, target.location.region) == (PROJECT, LOCATION)
    with pytest.raises(DeploymentNotFound):
        target.get("nothing-here")
    assert vertex.calls() and all(c.authorization for c in vertex.calls())
