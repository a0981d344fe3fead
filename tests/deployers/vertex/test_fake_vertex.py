"""The offline Vertex itself, driven by the real google-cloud-aiplatform SDK over its REST
transport (AnonymousCredentials, ``api_endpoint`` at the fake): what the Vertex target's tests
rely on.
"""

from __future__ import annotations

import base64
import json
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from fake_vertex import LOCATION, PROJECT, PROJECT_NUMBER, FakeVertex
from registry_images import ProcessImages

#: The test packages' input: two rows of ``X`` (2 floats each); v1 answers ``X``, v2 ``2 X``.
INSTANCES = [[1.0, 2.0], [3.0, 4.0]]


def raw(fake: FakeVertex, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    """One plain HTTP request to the fake; (status, JSON body or None)."""
    request = urllib.request.Request(
        fake.url + path,
        data=None if body is None else json.dumps(body).encode(),
        method=method,
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            data = response.read()
            return response.status, json.loads(data) if data else None
    except urllib.error.HTTPError as error:
        data = error.read()
        return error.code, json.loads(data) if data else None


def location_path(rest: str, project: str = PROJECT) -> str:
    return f"/v1/projects/{project}/locations/{LOCATION}/{rest}"


def sdk(fake: FakeVertex, credentials: Any = None) -> Any:
    """The SDK, initialised against the fake."""
    from google.cloud import aiplatform

    fake.init_sdk(credentials)
    return aiplatform


def upload(aiplatform: Any, image: str, **kwargs: Any) -> Any:
    """Upload a model serving ``image`` with modelport's Vertex routes."""
    options: dict[str, Any] = {
        "display_name": "scale-model",
        "serving_container_image_uri": image,
        "serving_container_predict_route": "/predict",
        "serving_container_health_route": "/health",
        "serving_container_ports": [8080],
    }
    options.update(kwargs)
    return aiplatform.Model.upload(**options)


def last(fake: FakeVertex, method: str, suffix: str) -> Any:
    """The last recorded call with ``method`` whose path ends with ``suffix``."""
    return [c for c in fake.calls() if c.method == method and c.path.endswith(suffix)][-1]


def test_upload_versions_aliases_and_deletes(vertex: FakeVertex) -> None:
    from google.api_core import exceptions

    aiplatform = sdk(vertex)
    model = upload(
        aiplatform,
        "127.0.0.1:5000/some/image:1",
        description="Y = X",
        labels={"app": "scale", "modelport-digest": "0123abcd"},
        serving_container_environment_variables={"MODELPORT_WORKERS": "1"},
    )
    call = last(vertex, "POST", "models:upload")
    assert call.path == location_path("models:upload")
    assert call.body == {
        "model": {
            "displayName": "scale-model",
            "description": "Y = X",
            "labels": {"app": "scale", "modelport-digest": "0123abcd"},
            "containerSpec": {
                "imageUri": "127.0.0.1:5000/some/image:1",
                "predictRoute": "/predict",
                "healthRoute": "/health",
                "ports": [{"containerPort": 8080}],
                "env": [{"name": "MODELPORT_WORKERS", "value": "1"}],
            },
            "versionAliases": ["default"],
        }
    }
    model_id = model.name
    assert (
        model.resource_name == f"projects/{PROJECT_NUMBER}/locations/{LOCATION}/models/{model_id}"
    )
    assert model.version_id == "1"
    assert model.version_aliases == ["default"]
    # The SDK reads the new version back by id.
    assert last(vertex, "GET", f"models/{model_id}@1").status == 200

    second = upload(
        aiplatform, "127.0.0.1:5000/some/image:2", parent_model=model_id, is_default_version=False
    )
    assert (second.name, second.version_id, second.version_aliases) == (model_id, "2", [])
    # A bare id comes back as a name with the project id (the fake takes either).
    assert last(vertex, "POST", "models:upload").body["parentModel"] == (
        f"projects/{PROJECT}/locations/{LOCATION}/models/{model_id}"
    )
    third = upload(aiplatform, "127.0.0.1:5000/some/image:3", parent_model=model_id)
    assert third.version_id == "3"
    assert vertex.model(model_id)["versionId"] == "3"  # uploaded as default: takes the alias
    assert vertex.model_version(model_id, "1")["versionAliases"] == []

    registry = aiplatform.models.ModelRegistry(model_id)
    assert [v.version_id for v in registry.list_versions()] == ["1", "2", "3"]
    registry.add_version_aliases(["golden"], version="2")
    assert last(vertex, "POST", f"models/{model_id}@2:mergeVersionAliases").body == {
        "versionAliases": ["golden"]
    }
    golden = registry.get_model(version="golden")
    assert golden.version_id == "2"
    assert golden.gca_resource.container_spec.image_uri == "127.0.0.1:5000/some/image:2"

    # Vertex keeps the default version while other versions exist.
    with pytest.raises(exceptions.BadRequest, match="default version"):
        registry.delete_version("3")
    registry.delete_version("golden")  # a version is named by its id or an alias
    assert last(vertex, "DELETE", ":deleteVersion").path == location_path(
        f"models/{model_id}@golden:deleteVersion"
    )
    assert sorted(vertex.model(model_id)["versions"]) == ["1", "3"]
    model.delete()
    assert vertex.models() == {}
    status, body = raw(vertex, "GET", location_path(f"models/{model_id}"))
    assert status == 404 and body["error"]["status"] == "NOT_FOUND"


def test_deploy_predict_traffic_undeploy_and_logs(
    vertex: FakeVertex, process_images: ProcessImages
) -> None:
    from google.api_core import exceptions

    aiplatform = sdk(vertex)
    model = upload(aiplatform, process_images.v1, labels={"app": "scale"})
    endpoint = aiplatform.Endpoint.create(display_name="scale-endpoint", labels={"app": "scale"})
    endpoint_id = endpoint.name
    assert last(vertex, "POST", "/endpoints").body == {
        "displayName": "scale-endpoint",
        "labels": {"app": "scale"},
    }

    model.deploy(
        endpoint=endpoint, machine_type="n1-standard-2", min_replica_count=1, max_replica_count=3
    )
    deploy = last(vertex, "POST", ":deployModel")
    assert deploy.body == {
        "deployedModel": {
            "model": f"{model.resource_name}@1",
            "dedicatedResources": {
                "machineSpec": {"machineType": "n1-standard-2"},
                "minReplicaCount": 1,
                "maxReplicaCount": 3,
            },
        },
        "trafficSplit": {"0": 100},
    }
    (first_id,) = vertex.deployed_models(endpoint_id)
    assert vertex.traffic_split(endpoint_id) == {first_id: 100}
    host = vertex.host(endpoint_id, first_id)
    assert host is not None and host["kind"] == "process" and not host["stopped"]
    assert host["replicas"] == {"min": 1, "max": 3}
    env = host["env"]
    assert env["AIP_HTTP_PORT"] == str(host["port"])
    assert (env["AIP_HEALTH_ROUTE"], env["AIP_PREDICT_ROUTE"]) == ("/health", "/predict")
    assert env["AIP_DEPLOYED_MODEL_ID"] == first_id
    assert env["AIP_ENDPOINT_ID"] == endpoint_id
    assert env["AIP_PROJECT_NUMBER"] == PROJECT_NUMBER
    assert env["AIP_MACHINE_TYPE"] == "n1-standard-2"
    assert env["AIP_MODE"] == "PREDICTION"
    assert "AIP_STORAGE_URI" not in env  # the model has no artifactUri
    assert Path(env["MODELPORT_PACKAGE"]).is_dir()  # the image's package, extracted

    shown = vertex.model_version(model.name, "1")
    assert shown["deployedModels"] == [
        {"endpoint": endpoint.resource_name, "deployedModelId": first_id}
    ]
    prediction = endpoint.predict(instances=INSTANCES)
    assert prediction.predictions == INSTANCES
    assert prediction.deployed_model_id == first_id
    assert prediction.model_version_id == "1"
    assert prediction.model_resource_name == model.resource_name

    # A second version (Y = 2 X) with half of the traffic: answers alternate deterministically.
    second = upload(aiplatform, process_images.v2, parent_model=model.name)
    second.deploy(endpoint=endpoint, machine_type="n1-standard-2", traffic_percentage=50)
    assert last(vertex, "POST", ":deployModel").body["trafficSplit"] == {first_id: 50, "0": 50}
    second_id = next(d for d in vertex.deployed_models(endpoint_id) if d != first_id)
    assert vertex.traffic_split(endpoint_id) == {first_id: 50, second_id: 50}
    answers = [endpoint.predict(instances=INSTANCES) for _ in range(4)]
    assert sorted(a.deployed_model_id for a in answers) == sorted([first_id, second_id] * 2)
    for answer in answers:
        scale = 2.0 if answer.deployed_model_id == second_id else 1.0
        assert answer.predictions == [[x * scale for x in row] for row in INSTANCES]
    served = [s.deployed_model for s in vertex.scoring_requests(endpoint_id)]
    assert served == [first_id] + [a.deployed_model_id for a in answers]

    # A container's 400 is Google's INVALID_ARGUMENT; a bad split is refused.
    with pytest.raises(exceptions.BadRequest):
        endpoint.predict(instances=[["not", "numbers"]])
    assert vertex.scoring_requests(endpoint_id)[-1].status == 400
    with pytest.raises(exceptions.BadRequest, match="must be 100"):
        endpoint.update(traffic_split={first_id: 60, second_id: 60})
    endpoint.update(traffic_split={first_id: 0, second_id: 100})
    assert last(vertex, "PATCH", endpoint_id).query["updateMask"] == "trafficSplit"
    assert vertex.traffic_split(endpoint_id) == {first_id: 0, second_id: 100}
    assert endpoint.predict(instances=INSTANCES).deployed_model_id == second_id

    # Nothing deployed goes away while it is deployed.
    with pytest.raises(exceptions.BadRequest, match="deployed") as refused:
        endpoint.delete()
    assert refused.value.response.json()["error"]["status"] == "FAILED_PRECONDITION"
    with pytest.raises(exceptions.BadRequest, match="deployed"):
        model.delete()

    endpoint.undeploy(first_id)
    assert last(vertex, "POST", ":undeployModel").body == {
        "deployedModelId": first_id,
        "trafficSplit": {second_id: 100},
    }
    assert vertex.host(endpoint_id, first_id)["stopped"]
    assert list(vertex.deployed_models(endpoint_id)) == [second_id]

    # Cloud Logging keeps the hosts' lines, a stopped host's included.
    status, body = raw(
        vertex,
        "POST",
        "/v2/entries:list",
        {
            "resourceNames": [f"projects/{PROJECT}"],
            "filter": f'resource.type="aiplatform.googleapis.com/Endpoint" AND '
            f'resource.labels.endpoint_id="{endpoint_id}"',
            "orderBy": "timestamp asc",
        },
    )
    assert status == 200
    entries = body["entries"]
    assert {e["resource"]["labels"]["deployed_model_id"] for e in entries} == {first_id, second_id}
    assert all(e["resource"]["labels"]["endpoint_id"] == endpoint_id for e in entries)
    assert all(e["resource"]["labels"]["location"] == LOCATION for e in entries)
    assert all(isinstance(e["textPayload"], str) and e["timestamp"] for e in entries)
    status, body = raw(
        vertex,
        "POST",
        "/v2/entries:list",
        {"resourceNames": [f"projects/{PROJECT}"], "filter": 'resource.labels.endpoint_id="9"'},
    )
    assert (status, body) == (200, {})
    latest = [e for e in entries if e["resource"]["labels"]["deployed_model_id"] == second_id][-1][
        "timestamp"
    ]
    status, body = raw(
        vertex,
        "POST",
        "/v2/entries:list",
        {
            "resourceNames": [f"projects/{PROJECT_NUMBER}"],
            "filter": f'resource.labels.deployed_model_id="{second_id}" AND '
            f'timestamp>="{latest}" AND severity>=INFO',
            "orderBy": "timestamp desc",
            "pageSize": 1,
        },
    )
    assert status == 200 and len(body["entries"]) == 1
    assert body["entries"][0]["timestamp"] == latest

    endpoint.delete(force=True)
    assert vertex.endpoints() == {}
    assert all(h["stopped"] for h in vertex.hosts())
    model.delete()
    assert vertex.models() == {}
    assert vertex.sequence(reads=False, services=("vertex",)) == [
        "POST models:upload",
        "POST endpoints",
        f"POST endpoints/{endpoint_id}:deployModel",
        "POST models:upload",
        f"POST endpoints/{endpoint_id}:deployModel",
        f"PATCH endpoints/{endpoint_id}",
        f"PATCH endpoints/{endpoint_id}",
        f"DELETE endpoints/{endpoint_id}",
        f"DELETE models/{model.name}",
        f"POST endpoints/{endpoint_id}:undeployModel",
        f"POST endpoints/{endpoint_id}:undeployModel",
        f"DELETE endpoints/{endpoint_id}",
        f"DELETE models/{model.name}",
    ]


def test_pending_operations_are_polled_until_done(
    vertex: FakeVertex, process_images: ProcessImages
) -> None:
    aiplatform = sdk(vertex)
    vertex.pending_polls = 2
    endpoint = aiplatform.Endpoint.create(display_name="pending")
    polls = vertex.calls("poll")
    operation = polls[0].path.rsplit("/", 1)[1]
    # The REST transport polls at /ui/{operation name}; "done" came at the second poll.
    assert [p.path for p in polls] == [
        f"/ui/projects/{PROJECT_NUMBER}/locations/{LOCATION}/endpoints/{endpoint.name}"
        f"/operations/{operation}"
    ] * 2
    assert vertex.sequence(polls=True) == [
        "POST endpoints",
        f"GET endpoints/{endpoint.name}/operations/{operation}",
        f"GET endpoints/{endpoint.name}/operations/{operation}",
    ]
    assert vertex.endpoint(endpoint.name)["displayName"] == "pending"

    # A deployment pending in its thread: the endpoint shows it only once it is done.
    vertex.pending_polls = 0
    model = upload(aiplatform, process_images.v1)
    vertex.pending_polls = 2
    status, started = raw(
        vertex,
        "POST",
        location_path(f"endpoints/{endpoint.name}:deployModel"),
        {
            "deployedModel": {
                "model": model.resource_name,
                "dedicatedResources": {
                    "machineSpec": {"machineType": "n1-standard-2"},
                    "minReplicaCount": 1,
                },
            },
            "trafficSplit": {"0": 100},
        },
    )
    assert status == 200 and started["done"] is False
    assert "deployedModels" not in vertex.endpoint(endpoint.name)
    poll = "/ui/" + started["name"]
    assert raw(vertex, "GET", poll)[1]["done"] is False
    status, done = raw(vertex, "GET", poll)  # waits for the host (up to hold_s)
    assert status == 200 and done["done"] is True
    assert done["response"]["@type"].endswith("aiplatform.v1.DeployModelResponse")
    deployed_id = done["response"]["deployedModel"]["id"]
    assert list(vertex.deployed_models(endpoint.name)) == [deployed_id]
    assert endpoint.predict(instances=INSTANCES).deployed_model_id == deployed_id


def test_failed_deployments_leave_no_deployed_model(
    vertex: FakeVertex, process_images: ProcessImages
) -> None:
    from google.api_core import exceptions

    aiplatform = sdk(vertex)
    endpoint = aiplatform.Endpoint.create(display_name="failing")
    model = upload(aiplatform, process_images.v1)
    vertex.fail_deploy("Model server exited unexpectedly. (on purpose)")
    with pytest.raises(exceptions.FailedPrecondition, match="on purpose"):
        model.deploy(endpoint=endpoint, machine_type="n1-standard-2")
    assert vertex.deployed_models(endpoint.name) == {}
    assert "deployedModels" not in vertex.model_version(model.name, "1")

    # A real crash: the runtime image has no package, so the server exits at once.
    broken = upload(aiplatform, process_images.runtime, display_name="no-package")
    with pytest.raises(exceptions.FailedPrecondition, match="Model server exited unexpectedly"):
        broken.deploy(endpoint=endpoint, machine_type="n1-standard-2")
    assert vertex.endpoint(endpoint.name).get("deployedModels") is None
    (host,) = vertex.hosts()
    assert host["stopped"] and host["lines"]
    assert vertex.log_entries(endpoint.name)  # its lines are in Cloud Logging

    # The REST transport raises by HTTP status: 400 is BadRequest whatever Google's status.
    with pytest.raises(exceptions.BadRequest, match="no deployed model") as refused:
        endpoint.predict(instances=INSTANCES)
    assert refused.value.response.json()["error"]["status"] == "FAILED_PRECONDITION"
    endpoint.delete()  # nothing was left deployed
    assert vertex.endpoints() == {}


def test_labels_are_validated_as_vertex_does(vertex: FakeVertex) -> None:
    from google.api_core import exceptions

    aiplatform = sdk(vertex)
    with pytest.raises(exceptions.BadRequest, match="invalid label key 'Team'"):
        upload(aiplatform, "127.0.0.1:5000/x:1", labels={"Team": "a"})
    with pytest.raises(exceptions.BadRequest, match="invalid value"):
        aiplatform.Endpoint.create(display_name="e", labels={"digest": "a" * 64})
    assert vertex.models() == {} and vertex.endpoints() == {}

    status, body = raw(
        vertex,
        "POST",
        location_path("endpoints"),
        {"displayName": "e", "labels": {f"k{i}": "v" for i in range(65)}},
    )
    assert status == 400
    assert body["error"]["code"] == 400 and body["error"]["status"] == "INVALID_ARGUMENT"
    assert "at most 64" in body["error"]["message"]
    fits = {"a" * 63: "b" * 63, "k_1-x": "", "digest": "0123456789abcdef" * 3 + "x" * 15}
    assert aiplatform.Endpoint.create(display_name="ok", labels=fits).labels == fits


def test_lists_filter_by_labels_and_display_name(vertex: FakeVertex) -> None:
    aiplatform = sdk(vertex)
    aiplatform.Endpoint.create(display_name="a", labels={"app": "one", "team": "x"})
    aiplatform.Endpoint.create(display_name="b", labels={"app": "two"})
    upload(aiplatform, "127.0.0.1:5000/x:1", display_name="m", labels={"app": "one"})
    upload(aiplatform, "127.0.0.1:5000/x:2", display_name="n", labels={"app": "one"})

    found = aiplatform.Endpoint.list(filter='labels.app="one" AND labels.team=x')
    assert [e.display_name for e in found] == ["a"]
    assert last(vertex, "GET", "/endpoints").query["filter"] == (
        'labels.app="one" AND labels.team=x'
    )
    assert [e.display_name for e in aiplatform.Endpoint.list(filter='display_name="b"')] == ["b"]
    models = aiplatform.Model.list(filter='labels.app=one AND display_name="n"')
    assert [m.display_name for m in models] == ["n"]
    status, body = raw(vertex, "GET", location_path("endpoints") + "?filter=create_time>1")
    assert status == 400 and body["error"]["status"] == "INVALID_ARGUMENT"


def test_ids_chosen_by_the_caller(vertex: FakeVertex) -> None:
    from google.api_core import exceptions

    aiplatform = sdk(vertex)
    endpoint = aiplatform.Endpoint.create(display_name="mine", endpoint_id="modelport-e")
    assert last(vertex, "POST", "/endpoints").query["endpointId"] == "modelport-e"
    assert (
        endpoint.resource_name
        == f"projects/{PROJECT_NUMBER}/locations/{LOCATION}/endpoints/modelport-e"
    )
    with pytest.raises(exceptions.Conflict):
        aiplatform.Endpoint.create(display_name="again", endpoint_id="modelport-e")
    with pytest.raises(exceptions.BadRequest, match="Invalid endpoint_id"):
        aiplatform.Endpoint.create(display_name="bad", endpoint_id="Bad_Id")
    model = upload(aiplatform, "127.0.0.1:5000/x:1", model_id="modelport-m")
    assert last(vertex, "POST", "models:upload").body["modelId"] == "modelport-m"
    assert (model.name, model.version_id) == ("modelport-m", "1")
    assert sorted(vertex.model("modelport-m")["versions"]) == ["1"]
    with pytest.raises(exceptions.Conflict):
        upload(aiplatform, "127.0.0.1:5000/x:1", model_id="modelport-m")


def test_faults_answer_google_errors(vertex: FakeVertex) -> None:
    from google.api_core import exceptions

    aiplatform = sdk(vertex)
    vertex.fail_next("POST", r"/endpoints$", 403, message="no permission here")
    with pytest.raises(exceptions.Forbidden, match="no permission here"):
        aiplatform.Endpoint.create(display_name="e")
    assert vertex.calls()[-1].status == 403
    aiplatform.Endpoint.create(display_name="e")  # only the next one failed

    vertex.fail_operation("POST", r"models:upload$", "out of quota", code="RESOURCE_EXHAUSTED")
    with pytest.raises(exceptions.ResourceExhausted, match="out of quota"):
        upload(aiplatform, "127.0.0.1:5000/x:1")
    assert vertex.models() == {}
    (operation,) = [op for op in vertex.operations().values() if "error" in op]
    assert operation["done"] and operation["error"] == {"code": 8, "message": "out of quota"}

    # Another project is not the fake's; a project number is.
    status, body = raw(vertex, "GET", location_path("endpoints", project="someone-else"))
    assert status == 403 and body["error"]["status"] == "PERMISSION_DENIED"
    status, body = raw(vertex, "GET", location_path("endpoints", project=PROJECT_NUMBER))
    assert status == 200 and len(body["endpoints"]) == 1


def test_service_account_key_file(vertex: FakeVertex, tmp_path: Path) -> None:
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import padding
    from google.auth.transport.requests import Request
    from google.oauth2 import service_account
    from vertex_support import SERVICE_ACCOUNT, write_key

    key_file = write_key(tmp_path / "key.json", vertex.token_uri)
    written = json.loads(key_file.read_text())
    key = serialization.load_pem_private_key(written["private_key"].encode(), password=None)
    credentials = service_account.Credentials.from_service_account_file(
        str(key_file), scopes=["https://www.googleapis.com/auth/cloud-platform"]
    )
    credentials.refresh(Request())  # the OAuth flow: a JWT assertion posted to token_uri
    (token_call,) = vertex.calls("token")
    assert token_call.body["grant_type"] == "urn:ietf:params:oauth:grant-type:jwt-bearer"
    assert credentials.token == vertex.tokens_issued()[0]

    aiplatform = sdk(vertex, credentials)
    aiplatform.Endpoint.list()
    scheme, _, bearer = (last(vertex, "GET", "/endpoints").authorization or "").partition(" ")
    assert scheme == "Bearer"
    # The SDK does not send that token: it signs its own JWT with the key (self-signed JWT),
    # which the fake accepts as any other bearer.
    assert bearer not in vertex.tokens_issued()
    header, payload, signature = (
        base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)) for part in bearer.split(".")
    )
    assert json.loads(header)["kid"] == written["private_key_id"]
    claims = json.loads(payload)
    assert claims["iss"] == claims["sub"] == SERVICE_ACCOUNT
    signed = bearer.rsplit(".", 1)[0].encode()
    key.public_key().verify(signature, signed, padding.PKCS1v15(), hashes.SHA256())
