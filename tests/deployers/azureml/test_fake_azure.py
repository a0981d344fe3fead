"""The offline Azure itself, driven by the real azure-ai-ml SDK (MLClient over HTTPS with the
fake's CA, AzureCliCredential through the fake ``az``): what the Azure ML target's tests rely on.
"""

from __future__ import annotations

import json
import ssl
import time
import urllib.error
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from fake_azure import (
    CLOUD,
    TOKEN,
    WORKSPACE,
    WORKSPACE_ID,
    FakeAzure,
    ProcessImages,
    ServingImages,
)

from modelport.model_format.manifest import MANIFEST_NAME

ROUTES = {
    "liveness_route": {"port": 8080, "path": "/ping"},
    "readiness_route": {"port": 8080, "path": "/ping"},
    "scoring_route": {"port": 8080, "path": "/score"},
}
PAYLOAD = {"inputs": {"X": [[1.0, 2.0], [3.0, 4.0]]}}


def raw(
    fake: FakeAzure,
    method: str,
    path: str,
    body: Any = None,
    token: str | None = TOKEN,
    headers: dict[str, str] | None = None,
) -> tuple[int, Any]:
    """One HTTPS request to the fake (trusting its CA); (status, JSON body or None)."""
    request = urllib.request.Request(
        fake.url + path,
        data=None if body is None else json.dumps(body).encode(),
        method=method,
        headers={
            "Content-Type": "application/json",
            **({"Authorization": f"Bearer {token}"} if token else {}),
            **(headers or {}),
        },
    )
    context = ssl.create_default_context(cafile=fake.ca_pem)
    try:
        with urllib.request.urlopen(request, context=context, timeout=30) as response:
            data = response.read()
            return response.status, json.loads(data) if data else None
    except urllib.error.HTTPError as error:
        data = error.read()
        return error.code, json.loads(data) if data else None


def arm(path: str) -> str:
    return f"{WORKSPACE_ID}/{path}?api-version=2023-04-01"


def ml_client(fake: FakeAzure) -> Any:
    return fake.ml_client()


def environment(ml: Any, image: str, name: str = "mp-env") -> Any:
    from azure.ai.ml.entities import Environment

    return ml.environments.create_or_update(
        Environment(name=name, image=image, inference_config=ROUTES)
    )


def endpoint(ml: Any, name: str = "ep-fake", **kwargs: Any) -> Any:
    from azure.ai.ml.entities import ManagedOnlineEndpoint

    return ml.online_endpoints.begin_create_or_update(
        ManagedOnlineEndpoint(name=name, auth_mode=kwargs.pop("auth_mode", "key"), **kwargs)
    ).result()


def deployment(ml: Any, env: Any, name: str, endpoint_name: str = "ep-fake", **kwargs: Any) -> Any:
    from azure.ai.ml.entities import ManagedOnlineDeployment

    return ml.online_deployments.begin_create_or_update(
        ManagedOnlineDeployment(
            name=name,
            endpoint_name=endpoint_name,
            environment=env,
            instance_type="Standard_DS3_v2",
            instance_count=1,
            **kwargs,
        )
    ).result()


def set_traffic(
    ml: Any, name: str, traffic: dict[str, int], mirror: dict[str, int] | None = None
) -> Any:
    found = ml.online_endpoints.get(name)
    found.traffic = traffic
    if mirror is not None:
        found.mirror_traffic = mirror
    return ml.online_endpoints.begin_create_or_update(found).result()


def invoke(ml: Any, tmp_path: Path, name: str = "ep-fake", **kwargs: Any) -> Any:
    request = tmp_path / "request.json"
    request.write_text(json.dumps(PAYLOAD))
    return json.loads(ml.online_endpoints.invoke(name, request_file=str(request), **kwargs))


# --- the control plane without hosts -------------------------------------------------------------


def test_metadata_and_arm_authentication(azure: FakeAzure) -> None:
    status, metadata = raw(azure, "GET", "/metadata/endpoints?api-version=2022-09-01", token=None)
    assert status == 200
    assert metadata["resourceManager"] == azure.resource_manager_url
    assert metadata["suffixes"]["storage"] == "core.fake.test"
    assert metadata["authentication"]["loginEndpoint"].startswith(azure.url)
    assert azure.resource_manager_url in metadata["authentication"]["audiences"]

    path = f"{WORKSPACE_ID}?api-version=2024-10-01-preview"
    status, error = raw(azure, "GET", path, token=None)
    assert (status, error["error"]["code"]) == (401, "AuthenticationFailed")
    status, error = raw(azure, "GET", path, token="someone-elses")
    assert (status, error["error"]["code"]) == (401, "InvalidAuthenticationToken")
    status, workspace = raw(azure, "GET", path)
    assert status == 200 and workspace["location"] == "eastus"
    status, error = raw(azure, "GET", path.replace(WORKSPACE, "ws-other"))
    assert (status, error["error"]["code"]) == (404, "ResourceNotFound")
    assert [c.status for c in azure.calls("arm")] == [401, 401, 200, 404]
    assert azure.calls("arm")[0].query == {"api-version": "2024-10-01-preview"}


def test_the_sdk_reaches_the_fake_with_the_cli_credential(azure: FakeAzure, tmp_path: Path) -> None:
    import os

    log = tmp_path / "az.log"
    os.environ["MODELPORT_FAKE_AZ_LOG"] = str(log)
    try:
        ml = ml_client(azure)
        assert ml.workspaces.get(WORKSPACE).location == "eastus"
    finally:
        del os.environ["MODELPORT_FAKE_AZ_LOG"]
    assert os.environ["AZUREML_CURRENT_CLOUD"] == CLOUD  # the SDK's: the fixture removes it
    (asked,) = log.read_text().splitlines()
    assert (
        # azure-identity turns the scope (resource manager + ".default") back into a resource.
        asked == f"account get-access-token --output json --resource {azure.url}"
    )
    assert all(c.headers["authorization"] == f"Bearer {TOKEN}" for c in azure.calls("arm"))
    env = azure.cli_env(tmp_path / "cli")
    assert "AZUREML_CURRENT_CLOUD" not in env
    assert env["PATH"].split(os.pathsep)[0].endswith("azureml/az")


@pytest.mark.parametrize("lro", ["async", "sync"])
def test_endpoint_lifecycle(azure: FakeAzure, lro: str) -> None:
    azure.lro = lro
    ml = ml_client(azure)
    created = endpoint(ml, tags={"owner": "modelport"})
    assert created.provisioning_state.lower() == "succeeded"
    assert created.scoring_uri == azure.scoring_uri("ep-fake")
    create = ["GET workspace", "PUT onlineEndpoints/ep-fake"]
    if lro == "async":
        create.append("GET onlineEndpoints/ep-fake")  # the poller's final GET
    assert azure.sequence() == create
    put = next(c for c in azure.calls() if c.method == "PUT")
    assert put.body["properties"]["authMode"] == "Key"
    assert put.body["tags"] == {"owner": "modelport"}
    if lro == "async":
        polls = [c for c in azure.calls("poll")]
        assert len(polls) == 1 and "mfeOperationsStatus" in polls[0].path

    keys = ml.online_endpoints.get_keys("ep-fake")
    assert keys.primary_key and keys.secondary_key and keys.primary_key != keys.secondary_key
    assert azure.endpoint("ep-fake")["tags"] == {"owner": "modelport"}

    azure.clear_calls()
    ml.online_endpoints.begin_delete("ep-fake").result()
    assert azure.sequence() == ["DELETE onlineEndpoints/ep-fake"]
    assert azure.endpoints() == {}
    # Deleting what is gone is fine (ARM: 204).
    assert raw(azure, "DELETE", arm("onlineEndpoints/ep-fake"))[0] == 204


def test_lists_are_paged(azure: FakeAzure) -> None:
    azure.lro = "sync"
    azure.page_size = 2
    ml = ml_client(azure)
    for index in range(5):
        endpoint(ml, name=f"ep-list-{index}")
    assert sorted(e.name for e in ml.online_endpoints.list()) == [f"ep-list-{i}" for i in range(5)]
    lists = [c for c in azure.calls() if c.short == "GET onlineEndpoints"]
    assert [c.query.get("$skipToken") for c in lists] == [None, "2", "4"]


def test_names_and_rules_are_azures(azure: FakeAzure) -> None:
    from azure.core.exceptions import HttpResponseError

    ml = ml_client(azure)
    for bad in ("ab", "1-starts-with-a-digit", "x" * 33, "ends-with-"):
        status, error = raw(
            azure,
            "PUT",
            arm(f"onlineEndpoints/{bad}"),
            {"location": "eastus", "properties": {"authMode": "Key"}},
        )
        assert (status, error["error"]["code"]) == (400, "BadArgument"), bad
    azure.taken_endpoint_names.add("ep-taken")
    with pytest.raises(HttpResponseError) as taken:
        endpoint(ml, name="ep-taken")
    assert taken.value.status_code == 409
    # A new endpoint stays Creating for a while: no deployment meanwhile.
    azure.endpoint_delay_s = 5
    from azure.ai.ml.entities import ManagedOnlineEndpoint

    ml.online_endpoints.begin_create_or_update(ManagedOnlineEndpoint(name="ep-slow"))
    assert azure.endpoint("ep-slow")["properties"]["provisioningState"] == "Creating"
    body = {
        "location": "eastus",
        "sku": {"name": "Default", "capacity": 1},
        "properties": {
            "endpointComputeType": "Managed",
            "instanceType": "Standard_DS3_v2",
            "environmentId": "nope",
        },
    }
    status, error = raw(azure, "PUT", arm("onlineEndpoints/ep-slow/deployments/blue"), body)
    assert status == 400 and "environment" in error["error"]["message"]


def test_token_auth_modes(azure: FakeAzure) -> None:
    ml = ml_client(azure)
    endpoint(ml, name="ep-aad", auth_mode="aad_token")
    endpoint(ml, name="ep-aml", auth_mode="aml_token")
    assert azure.endpoint("ep-aad")["properties"]["authMode"] == "AADToken"
    # aad_token: the SDK asks the credential (the fake az) for a token; the scoring URI takes it.
    assert ml.online_endpoints.get_keys("ep-aad").access_token == TOKEN
    # Past authentication, an endpoint without deployments has nowhere to route: 404, not 401.
    assert raw(azure, "POST", "/inference/ep-aad/score", PAYLOAD)[0] == 404
    assert raw(azure, "POST", "/inference/ep-aad/score", PAYLOAD, token="other")[0] == 401
    # aml_token: a token from POST .../token.
    token = ml.online_endpoints.get_keys("ep-aml").access_token
    assert azure.calls()[-1].short == "POST onlineEndpoints/ep-aml/token"
    assert raw(azure, "POST", "/inference/ep-aml/score", PAYLOAD, token=token)[0] == 404
    assert raw(azure, "POST", "/inference/ep-aml/score", PAYLOAD, token=TOKEN)[0] == 401


# --- environments, models, blob storage ----------------------------------------------------------


def test_environment_versions(azure: FakeAzure) -> None:
    from azure.core.exceptions import HttpResponseError, ResourceNotFoundError

    ml = ml_client(azure)
    with pytest.raises(ResourceNotFoundError):
        ml.environments.get("mp-env", version="1")
    azure.clear_calls()
    first = environment(ml, "127.0.0.1:5000/some/image:1")
    assert first.version == "1"
    assert azure.sequence() == ["GET environments/mp-env", "PUT environments/mp-env/versions/1"]
    second = environment(ml, "127.0.0.1:5000/some/image:2")
    assert second.version == "2"
    assert azure.environments() == {"mp-env": ["1", "2"]}
    stored = azure.environment("mp-env", "2")
    assert stored["properties"]["image"] == "127.0.0.1:5000/some/image:2"
    assert stored["properties"]["inferenceConfig"]["scoringRoute"] == {
        "port": 8080,
        "path": "/score",
    }
    assert [e.version for e in ml.environments.list(name="mp-env")] == ["2", "1"]

    ml.environments.archive("mp-env", version="1")
    assert azure.environment("mp-env", "1")["properties"]["isArchived"] is True
    assert [e.version for e in ml.environments.list(name="mp-env")] == ["2"]
    # A version's content never changes.
    from azure.ai.ml.entities import Environment

    with pytest.raises(HttpResponseError) as changed:
        ml.environments.create_or_update(
            Environment(name="mp-env", version="2", image="127.0.0.1:5000/other:1")
        )
    assert changed.value.status_code == 409
    for version in ("1", "2"):
        assert raw(azure, "DELETE", arm(f"environments/mp-env/versions/{version}"))[0] == 200
    assert azure.environments() == {}
    assert raw(azure, "GET", arm("environments/mp-env"))[0] == 404


def test_model_upload_goes_to_blob_storage(
    azure: FakeAzure, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from azure.ai.ml.entities import Model

    # The SDK's blob client gets no connection_verify: it trusts the CA of the environment.
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", azure.ca_pem)
    folder = tmp_path / "mp-model"
    (folder / "sub").mkdir(parents=True)
    (folder / "weights.bin").write_bytes(b"\x00\x01" * 1000)
    (folder / "sub" / "config.json").write_text("{}")
    ml = ml_client(azure)
    model = ml.models.create_or_update(
        Model(path=str(folder), type="custom_model", name="mp-model", version="1")
    )
    assert azure.models() == {"mp-model": ["1"]}
    blobs = azure.blobs()
    names = sorted(n.split("/", 2)[2] for n in blobs)
    assert names == ["mp-model/sub/config.json", "mp-model/weights.bin"]
    weights = next(n for n in blobs if n.endswith("weights.bin"))
    assert blobs[weights] == b"\x00\x01" * 1000
    assert model.path.endswith("/mp-model")
    assert azure.model("mp-model", "1")["properties"]["modelUri"] == model.path
    assert [c.short for c in azure.calls("arm")] == [
        "GET models/mp-model/versions",
        "GET datastores/workspaceblobstore",
        "POST datastores/workspaceblobstore/listSecrets",
        "PUT models/mp-model/versions/1",
    ]
    assert {c.method for c in azure.calls("blob")} >= {"HEAD", "PUT"}
    assert all(c.headers["authorization"].startswith("SharedKey ") for c in azure.calls("blob"))


def test_faults_and_throttling(azure: FakeAzure) -> None:
    from azure.core.exceptions import HttpResponseError

    ml = ml_client(azure)
    azure.fail_next("PUT", r"/onlineEndpoints/ep-fake$", 400, "BadArgument", "no, not today")
    with pytest.raises(HttpResponseError) as refused:
        endpoint(ml)
    assert refused.value.error.code == "BadArgument"
    assert "no, not today" in str(refused.value)
    # Throttled once: azure-core waits Retry-After and sends it again.
    azure.clear_calls()
    azure.fail_next(
        "PUT", r"/onlineEndpoints/ep-fake$", 429, "TooManyRequests", "slow down", retry_after=1
    )
    started = time.monotonic()
    endpoint(ml)
    assert time.monotonic() - started >= 1.0
    assert [c.status for c in azure.calls() if c.method == "PUT"] == [429, 201]


# --- deployments that really serve ------------------------------------------------------------


@pytest.mark.parametrize("lro", ["async", "sync"])
def test_a_deployment_serves_its_image(
    azure: FakeAzure, process_images: ProcessImages, tmp_path: Path, lro: str
) -> None:
    azure.lro = lro
    ml = ml_client(azure)
    endpoint(ml)
    env = environment(ml, process_images.v1)
    azure.clear_calls()
    created = deployment(ml, env, "blue", environment_variables={"EXTRA": "1"})
    assert created.provisioning_state.lower() == "succeeded"
    expected = [
        "GET onlineEndpoints/ep-fake",
        "GET workspace",
        "PUT onlineEndpoints/ep-fake/deployments/blue",
    ]
    if lro == "async":
        expected.append("GET onlineEndpoints/ep-fake/deployments/blue")
    assert azure.sequence() == expected
    put = next(c for c in azure.calls() if c.method == "PUT")
    assert put.body["properties"]["environmentId"] == env.id
    assert put.body["properties"]["environmentVariables"] == {"EXTRA": "1"}
    assert put.body["sku"] == {"name": "Default", "capacity": 1}
    host = azure.host("ep-fake", "blue")
    assert host is not None and host["kind"] == "process"
    assert host["image"] == process_images.v1
    assert host["env"]["EXTRA"] == "1"
    assert Path(host["env"]["MODELPORT_PACKAGE"], MANIFEST_NAME).is_file()

    azure.clear_calls()
    set_traffic(ml, "ep-fake", {"blue": 100})
    assert azure.endpoint("ep-fake")["properties"]["traffic"] == {"blue": 100}
    assert azure.sequence(reads=False) == ["PUT onlineEndpoints/ep-fake"]
    assert invoke(ml, tmp_path) == [[1.0, 2.0], [3.0, 4.0]]
    assert [(s.deployment, s.status) for s in azure.scoring_requests("ep-fake")] == [("blue", 200)]
    logs = ml.online_deployments.get_logs("blue", "ep-fake", lines=50)
    assert "modelport: serving" in logs
    assert azure.calls()[-1].body == {"tail": 50}

    from azure.core.exceptions import HttpResponseError

    with pytest.raises(HttpResponseError) as busy:
        ml.online_deployments.begin_delete("blue", "ep-fake").result()
    assert busy.value.status_code == 400 and "traffic" in str(busy.value)
    pid = host["pid"]
    ml.online_endpoints.begin_delete("ep-fake").result()
    assert azure.endpoints() == {}
    stopped = azure.host("ep-fake", "blue")
    assert stopped is not None and stopped["stopped"] and stopped["pid"] == pid


def test_traffic_routing_mirroring_and_its_rules(
    azure: FakeAzure, process_images: ProcessImages, tmp_path: Path
) -> None:
    from azure.core.exceptions import HttpResponseError

    ml = ml_client(azure)
    endpoint(ml)
    deployment(ml, environment(ml, process_images.v1), "blue")
    deployment(ml, environment(ml, process_images.v2, name="mp-env-2"), "green")
    set_traffic(ml, "ep-fake", {"blue": 90, "green": 10})
    answers = [invoke(ml, tmp_path)[0][0] for _ in range(10)]
    assert Counter(answers) == {1.0: 9, 2.0: 1}
    assert Counter(s.deployment for s in azure.scoring_requests("ep-fake")) == {
        "blue": 9,
        "green": 1,
    }
    # The deployment header wins over the weights.
    assert invoke(ml, tmp_path, deployment_name="green")[0][0] == 2.0
    # SDK trap: invoke() left the header in EndpointInvokeFields.DEFAULT_HEADER (a class
    # attribute), so the next plain invoke goes to green too, whatever the weights.
    assert invoke(ml, tmp_path)[0][0] == 2.0
    from azure.ai.ml.constants._endpoint import EndpointInvokeFields

    del EndpointInvokeFields.DEFAULT_HEADER["azureml-model-deployment"]
    assert invoke(ml, tmp_path)[0][0] == 1.0

    for traffic, mirror, words in (
        ({"blue": 90, "green": 20}, None, "add up to 100"),
        ({"blue": 50, "nope": 50}, None, "does not exist"),
        ({"blue": 100}, {"green": 60}, "50%"),
        ({"blue": 50, "green": 50}, {"green": 10}, "live traffic"),
    ):
        with pytest.raises(HttpResponseError) as refused:
            set_traffic(ml, "ep-fake", traffic, mirror)
        assert refused.value.status_code == 400 and words in str(refused.value), words
    status, error = raw(
        azure,
        "PUT",
        arm("onlineEndpoints/ep-fake"),
        {
            "location": "eastus",
            "properties": {"authMode": "Key", "traffic": {"blue": "100"}},
        },
    )
    assert status == 400 and "integer" in error["error"]["message"]

    # An update replaces the deployment's host once the new one is ready.
    old_pid = azure.host("ep-fake", "blue")["pid"]
    deployment(ml, environment(ml, process_images.v2, name="mp-env-2"), "blue")
    assert azure.host("ep-fake", "blue")["pid"] != old_pid
    assert invoke(ml, tmp_path, deployment_name="blue")[0][0] == 2.0
    del EndpointInvokeFields.DEFAULT_HEADER["azureml-model-deployment"]
    deployment(ml, environment(ml, process_images.v1), "blue")

    # 20 % of the live requests are copied to green in the background; their answers unseen.
    set_traffic(ml, "ep-fake", {"blue": 100, "green": 0}, {"green": 20})
    assert azure.endpoint("ep-fake")["properties"]["mirrorTraffic"] == {"green": 20}
    before = len(azure.scoring_requests("ep-fake"))
    answers = [invoke(ml, tmp_path)[0][0] for _ in range(10)]
    assert answers == [1.0] * 10
    mirrored = azure.wait_scoring("ep-fake", 2, mirrored=True)
    assert [(s.deployment, s.status) for s in mirrored] == [("green", 200)] * 2
    assert len(azure.scoring_requests("ep-fake")) == before + 12

    set_traffic(ml, "ep-fake", {"blue": 0, "green": 0}, {})
    request = tmp_path / "request.json"
    with pytest.raises(HttpResponseError) as nowhere:
        ml.online_endpoints.invoke("ep-fake", request_file=str(request))
    assert nowhere.value.status_code == 404 and "No valid deployments" in str(nowhere.value)
    status, _ = raw(azure, "POST", "/inference/ep-fake/score", PAYLOAD, token="not-a-key")
    assert status == 401


def test_a_container_that_crashes_fails_its_deployment(
    azure: FakeAzure, process_images: ProcessImages
) -> None:
    from azure.core.exceptions import HttpResponseError

    ml = ml_client(azure)
    endpoint(ml)
    env = environment(ml, process_images.v1)
    # The entrypoint refuses a package whose digest is not the pinned one: exit 4, one line.
    pinned = "sha256:" + "0" * 64
    with pytest.raises(HttpResponseError) as failed:
        deployment(ml, env, "blue", environment_variables={"MODELPORT_EXPECT_DIGEST": pinned})
    message = str(failed.value)
    assert "ResourceNotReady" in message and "User container has crashed or terminated" in message
    assert "refusing to start" in message  # the container's last line
    assert azure.deployments("ep-fake")["blue"]["properties"]["provisioningState"] == "Failed"
    logs = ml.online_deployments.get_logs("blue", "ep-fake", lines=10)
    assert "refusing to start" in logs

    azure.fail_provisioning("green", "User container has crashed or terminated: OOMKilled.")
    with pytest.raises(HttpResponseError) as crashed:
        deployment(ml, env, "green")
    assert "OOMKilled" in str(crashed.value)
    assert azure.deployments("ep-fake")["green"]["properties"]["provisioningState"] == "Failed"


def test_a_model_asset_is_mounted_as_azure_mounts_it(
    azure: FakeAzure,
    process_images: ProcessImages,
    package_paths: dict[str, Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from azure.ai.ml.entities import Model

    from modelport.model_format.package import extract_verified

    monkeypatch.setenv("REQUESTS_CA_BUNDLE", azure.ca_pem)
    folder = tmp_path / "package"
    extract_verified(package_paths["v2"], folder)
    ml = ml_client(azure)
    model = ml.models.create_or_update(
        Model(path=str(folder), type="custom_model", name="mp-model", version="3")
    )
    endpoint(ml)
    env = environment(ml, process_images.runtime)
    mount = "/var/azureml-app/azureml-models/mp-model/3"
    # Pointed at the mounted package by the deployment's variables, the runtime image serves it.
    deployment(
        ml,
        env,
        "blue",
        model=model,
        environment_variables={"MODELPORT_PACKAGE": f"{mount}/package"},
    )
    put = next(
        c for c in azure.calls() if c.short == "PUT onlineEndpoints/ep-fake/deployments/blue"
    )
    assert put.body["properties"]["model"] == model.id
    host = azure.host("ep-fake", "blue")
    assert host is not None
    model_dir = Path(host["env"]["AZUREML_MODEL_DIR"])
    assert str(model_dir).endswith(mount)
    assert (model_dir / "package" / MANIFEST_NAME).is_file()
    set_traffic(ml, "ep-fake", {"blue": 100})
    assert invoke(ml, tmp_path)[0] == [2.0, 4.0]
    storage = ml.online_deployments.get_logs(
        "blue", "ep-fake", lines=5, container_type="storage-initializer"
    )
    assert "mp-model:3" in storage


@pytest.mark.slow
def test_container_hosting_runs_the_image_as_azure_does(
    azure_containers: FakeAzure, serving_images: ServingImages, tmp_path: Path
) -> None:
    """The real serving image, run by podman with its own CMD, the deployment's variables and the
    route's port published; predictions through the scoring URI."""
    from docker_fixtures import engine

    azure = azure_containers
    ml = ml_client(azure)
    endpoint(ml)
    env = environment(ml, serving_images.package)
    deployment(
        ml, env, "blue", environment_variables={"MODELPORT_EXPECT_DIGEST": serving_images.digest}
    )
    set_traffic(ml, "ep-fake", {"blue": 100})
    assert invoke(ml, tmp_path) == [[1.0, 2.0], [3.0, 4.0]]
    host = azure.host("ep-fake", "blue")
    assert host is not None and host["kind"] == "container"
    container = engine().containers.get(host["ident"])
    assert container.attrs["Config"]["Cmd"] == ["serve"]  # the image's own
    env_vars = dict(e.split("=", 1) for e in container.attrs["Config"]["Env"])
    assert env_vars["MODELPORT_EXPECT_DIGEST"] == serving_images.digest
    assert "modelport: serving" in ml.online_deployments.get_logs("blue", "ep-fake", lines=20)
    ml.online_endpoints.begin_delete("ep-fake").result()
    assert host["ident"] not in [c.id for c in engine().containers.list(all=True)]
