"""The azureml target's options, workspace and Azure error translation, without any Azure.

Options are checked against Azure ML's rules before any call, through the same parsing the CLI
gives ``-C key=value`` (every problem reported together); the workspace comes from the options,
the target URI, the workspace's ``config.json`` or the environment; azure-core's real exceptions,
raised from real responses the way azure-ai-ml raises them, become modelport's errors with a
hint naming the action, the scope, the quota or the sign-in to do.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from azure.core import PipelineClient
from azure.core.exceptions import (
    ClientAuthenticationError,
    HttpResponseError,
    ResourceExistsError,
    ResourceNotFoundError,
    ResourceNotModifiedError,
    map_error,
)
from azure.core.rest import HttpRequest
from azure.mgmt.core.exceptions import ARMErrorFormat
from docker_fixtures import free_port

from modelport.cli.main import main
from modelport.deployers import connect
from modelport.deployers.azureml import AzureMLConfig, AzureMLDeployer
from modelport.deployers.azureml.azure import AZURE_ERRORS, Azure, not_found
from modelport.deployers.azureml.config import Workspace, resolve_workspace
from modelport.deployers.config import Sources, build_config, parse_assignments
from modelport.errors import (
    ConfigError,
    ConflictError,
    DeploymentError,
    PermissionDeniedError,
    QuotaExceededError,
    ResourceNotFound,
    TargetUnavailableError,
    ThrottledError,
    UsageError,
)

SUB = "0b1f6471-1bf0-4dda-aec3-cb9272f09590"
OTHER_SUB = "6c9a2d1e-0f4b-4c7e-9a53-2d8e1f3b7a10"
#: The variables resolve_workspace reads (cleared where a test runs the deployer itself).
WORKSPACE_VARIABLES = (
    "AZURE_SUBSCRIPTION_ID",
    "AZUREML_ARM_SUBSCRIPTION",
    "AZURE_RESOURCE_GROUP",
    "AZUREML_ARM_RESOURCEGROUP",
    "AZUREML_WORKSPACE_NAME",
    "AZUREML_ARM_WORKSPACE_NAME",
)


def options(*pairs: str, environ: dict[str, str] | None = None) -> AzureMLConfig:
    """``-C`` strings parsed as the CLI parses them."""
    config = build_config(
        AzureMLConfig,
        "azureml",
        Sources(env=environ or {}, cli=parse_assignments(pairs), cli_name="-C"),
    )
    assert isinstance(config, AzureMLConfig)
    return config


def problems_of(*pairs: str) -> str:
    with pytest.raises(ConfigError) as caught:
        options(*pairs)
    assert caught.value.target == "azureml"
    return str(caught.value)


# --- options --------------------------------------------------------------------------------


def test_cli_strings_become_typed_options(tmp_path: Path) -> None:
    config = options(
        f"subscription_id={SUB}",
        "resource_group=ml-rg",
        "workspace=churn-ws",
        f"workspace_config={tmp_path / 'config.json'}",
        f"ca_bundle={tmp_path / 'ca.pem'}",
        "model_asset=true",
        "instance_type=Standard_F4s_v2",
        "instance_count=2",
        'environment_variables={"MODELPORT_WORKERS": "2"}',
        "request_timeout_ms=90000",
        "max_concurrent_requests_per_instance=4",
        'liveness_probe={"initial_delay": 0, "period": 5}',
        'readiness_probe={"failure_threshold": 3}',
        "canary_percent=10",
        'tags={"team": "fraud"}',
        "startup_timeout=600",
    )
    assert (config.subscription_id, config.resource_group, config.workspace) == (
        SUB,
        "ml-rg",
        "churn-ws",
    )
    assert config.workspace_config == tmp_path / "config.json"
    assert config.ca_bundle == tmp_path / "ca.pem"
    assert config.model_asset is True
    assert config.instance_count == 2
    assert config.environment_variables == {"MODELPORT_WORKERS": "2"}
    assert config.request_timeout_ms == 90000
    assert config.max_concurrent_requests_per_instance == 4
    assert config.liveness_probe == {"initial_delay": 0, "period": 5}
    assert config.readiness_probe == {"failure_threshold": 3}
    assert config.canary_percent == 10 and config.splits_traffic
    assert config.tags == {"team": "fraud"}
    assert config.startup_timeout == 600.0


def test_the_defaults_ask_for_nothing_and_split_no_traffic() -> None:
    config = options()
    assert config.cloud == "AzureCloud"
    assert config.credential == "default"
    assert config.auth_mode == "key"
    assert config.repository == "modelport"
    assert config.model_asset is False
    assert (config.canary_percent, config.mirror_percent) == (0, 0)
    assert not config.splits_traffic
    assert options("mirror_percent=20").splits_traffic


def test_the_environment_gives_options_and_the_command_line_wins() -> None:
    environ = {"MODELPORT_AZUREML_INSTANCE_COUNT": "3", "MODELPORT_AZUREML_AUTH_MODE": "aad_token"}
    config = options("instance_count=5", environ=environ)
    assert config.instance_count == 5
    assert config.auth_mode == "aad_token"


def test_the_python_api_may_pass_paths_as_strings() -> None:
    config = AzureMLConfig(ca_bundle="ca.pem", workspace_config="ws.json", pip_cert="pip.pem")  # type: ignore[arg-type]
    assert config.ca_bundle == Path("ca.pem")
    assert config.workspace_config == Path("ws.json")
    assert config.pip_cert == Path("pip.pem")


@pytest.mark.parametrize(
    ("pairs", "problem"),
    [
        (
            ["subscription_id=my-subscription"],
            "subscription_id must be a GUID, got 'my-subscription'",
        ),
        (["subscription_id=" + SUB[:-1]], "subscription_id must be a GUID"),
        (["resource_group=ml rg"], "resource_group 'ml rg' is not a resource group name"),
        (["resource_group=" + "r" * 91], "is not a resource group name"),
        (["workspace=ws"], "workspace 'ws': 3-33 letters, digits, '-' and '_'"),
        (["workspace=-ws1"], "starting with a letter or digit"),
        (["workspace=" + "w" * 34], "3-33 letters"),
        (["workspace=ws.prod"], "3-33 letters"),
        (
            ["cloud=AzureGermanCloud"],
            "cloud must be one of AzureCloud, AzureChinaCloud, AzureUSGovernment (another "
            "cloud: -C resource_manager_url=https://...), got 'AzureGermanCloud'",
        ),
        (["resource_manager_url=http://127.0.0.1:8443/"], "must be an https:// URL"),
        (["resource_manager_url=https://"], "must be an https:// URL"),
        (["resource_manager_url=management.azure.com"], "must be an https:// URL"),
        (
            ["credential=browser"],
            "credential must be one of default, cli, environment, managed_identity, "
            "workload_identity",
        ),
        (
            ["credential=cli", "client_id=3f0c0f5e-0000-4000-8000-000000000000"],
            "client_id is for credential=managed_identity (or default)",
        ),
        (
            ["credential=environment", "client_id=x"],
            "client_id is for credential=managed_identity",
        ),
        (["auth_mode=aml_token"], "auth_mode must be one of key, aad_token"),
        (
            ["image=r.azurecr.io/m:1", "registry=r.azurecr.io"],
            "image is used as is: drop registry",
        ),
        (["instance_count=0"], "instance_count must be at least 1"),
        (
            ["instance_type=ml.m5.large"],
            "instance_type must be an Azure VM size like Standard_DS3_v2",
        ),
        (["instance_type=DS3_v2"], "instance_type must be an Azure VM size"),
        (["request_timeout_ms=0"], "request_timeout_ms must be 1-180000"),
        (["request_timeout_ms=180001"], "request_timeout_ms must be 1-180000"),
        (["max_concurrent_requests_per_instance=0"], "must be at least 1"),
        (
            ['liveness_probe={"perod": 5}'],
            "liveness_probe: unknown setting(s) perod (takes initial_delay, period, timeout, "
            "failure_threshold, success_threshold)",
        ),
        (['readiness_probe={"period": 0}'], "readiness_probe: period must be whole numbers >= 1"),
        (['readiness_probe={"initial_delay": -1}'], "initial_delay must be whole numbers"),
        (['liveness_probe={"timeout": 1.5}'], "liveness_probe (from -C): expected an integer"),
        (['liveness_probe={"timeout": "2s"}'], "liveness_probe (from -C): expected an integer"),
        (["canary_percent=100"], "canary_percent must be 1-99 (0: switch all traffic at once)"),
        (["canary_percent=-1"], "canary_percent must be 1-99"),
        (["mirror_percent=51"], "mirror_percent must be 1-50 (Azure ML's limit)"),
        (["canary_percent=10", "mirror_percent=20"], "an update is a canary or a mirror, not both"),
        (['environment_variables={"1ST": "a"}'], "environment_variables: '1ST' is not a variable"),
        (['environment_variables={"A-B": "a"}'], "'A-B' is not a variable name"),
        (
            ['environment_variables={"MODELPORT_PACKAGE": "/x"}'],
            "environment_variables: 'MODELPORT_PACKAGE' is set by modelport or Azure",
        ),
        (
            ['environment_variables={"MODELPORT_EXPECT_DIGEST": "sha256:0"}'],
            "'MODELPORT_EXPECT_DIGEST' is set by modelport or Azure",
        ),
        (
            ['environment_variables={"AZUREML_MODEL_DIR": "/m"}'],
            "'AZUREML_MODEL_DIR' is set by modelport or Azure",
        ),
        (['tags={"modelport-target": "x"}'], "tags: 'modelport-target' is reserved"),
        (
            ["tags=" + json.dumps({f"k{i}": "v" for i in range(43)})],
            "tags: at most 42 (modelport uses 8)",
        ),
        (['tags={"team/sub": "x"}'], "tags: 'team/sub': keys are 1-512 characters without"),
        (['tags={"a?b": "x"}'], "keys are 1-512 characters"),
        (["tags=" + json.dumps({"k" * 513: "v"})], "keys are 1-512 characters"),
        (["tags=" + json.dumps({"team": "v" * 257})], "values at most 256"),
        (['tags={"": "v"}'], "keys are 1-512 characters"),
        (["startup_timeout=0"], "startup_timeout must be positive"),
        (["instance_count=two"], "instance_count (from -C): expected int | None, got 'two'"),
        (["model_asset=maybe"], "model_asset (from -C)"),
    ],
)
def test_options_azure_ml_refuses_are_refused_before_any_call(
    pairs: list[str], problem: str
) -> None:
    assert problem in problems_of(*pairs)


@pytest.mark.parametrize(
    "pairs",
    [
        ["workspace=ws1"],
        ["workspace=" + "w" * 33],
        ["workspace=1st_ws-prod"],
        ["resource_group=ML.rg_(prod)-1"],
        ["cloud=AzureChinaCloud"],
        ["cloud=AzureUSGovernment"],
        ["resource_manager_url=https://127.0.0.1:8443/"],
        ["resource_manager_url=https://management.azurestack.contoso.com"],
        *[[f"credential={c}"] for c in ("cli", "environment", "workload_identity")],
        ["credential=managed_identity", "client_id=3f0c0f5e-0000-4000-8000-000000000000"],
        ["client_id=3f0c0f5e-0000-4000-8000-000000000000"],  # for the default chain's identity
        ["image=registry.example.com/m:1"],
        ["registry=r.azurecr.io"],
        ["instance_type=Standard_NC6s_v3", "instance_count=1"],
        ["request_timeout_ms=1"],
        ["request_timeout_ms=180000"],
        ['liveness_probe={"initial_delay": 0, "period": 1, "timeout": 1}'],
        ['readiness_probe={"failure_threshold": 1, "success_threshold": 1}'],
        ["canary_percent=1"],
        ["canary_percent=99"],
        ["mirror_percent=1"],
        ["mirror_percent=50"],
        ['environment_variables={"_PRIVATE": "1", "MODELPORT_WORKERS": "2"}'],
        ["tags=" + json.dumps({f"k{i}": "v" for i in range(41)})],
        ["tags=" + json.dumps({"k" * 512: "v" * 256})],
        ["startup_timeout=0.5"],
    ],
)
def test_options_at_azure_mls_limits_are_accepted(pairs: list[str]) -> None:
    options(*pairs)


def test_every_problem_is_reported_at_once() -> None:
    message = problems_of(
        "subscription_id=x",
        "instance_count=0",
        "canary_percent=5",
        "mirror_percent=5",
        "auth_mode=none",
    )
    assert "subscription_id must be a GUID" in message
    assert "instance_count must be at least 1" in message
    assert "a canary or a mirror, not both" in message
    assert "auth_mode must be one of key, aad_token" in message


def test_an_unknown_option_says_which_one_was_meant() -> None:
    message = problems_of("instance_typ=Standard_DS3_v2")
    assert "unknown key 'instance_typ' (from -C); did you mean 'instance_type'?" in message


# --- the target URI and names ---------------------------------------------------------------


def test_the_uri_names_the_workspace() -> None:
    target = connect(f"azureml:/{SUB}/ml-rg/churn-ws", environ={})
    assert isinstance(target, AzureMLDeployer)
    config = target.config
    assert (config.subscription_id, config.resource_group, config.workspace) == (
        SUB,
        "ml-rg",
        "churn-ws",
    )
    assert target.workspace == Workspace(SUB, "ml-rg", "churn-ws")
    assert target.workspace.uri == f"azureml:/{SUB}/ml-rg/churn-ws"


def test_options_win_over_the_uri() -> None:
    target = connect(f"azureml:/{SUB}/ml-rg/churn-ws", {"workspace": "other-ws"}, environ={})
    assert target.config.workspace == "other-ws"


def test_an_empty_uri_names_nothing() -> None:
    assert AzureMLDeployer.options_from_uri("/") == {}
    assert AzureMLDeployer.options_from_uri("") == {}


@pytest.mark.parametrize("uri", [f"/{SUB}/ml-rg", f"/{SUB}", f"/{SUB}/ml-rg/ws1/extra"])
def test_a_uri_of_another_shape_is_refused(uri: str) -> None:
    with pytest.raises(ConfigError, match="azureml:/SUBSCRIPTION/RESOURCE_GROUP/WORKSPACE"):
        connect(f"azureml:{uri}", environ={})


def test_the_uris_values_are_checked_like_options() -> None:
    with pytest.raises(ConfigError, match="subscription_id must be a GUID, got 'my-sub'"):
        connect("azureml:/my-sub/ml-rg/churn-ws", environ={})


@pytest.mark.parametrize("name", ["abc", "churn", "churn-v2", "a1b", "a" + "b" * 31, "a--b"])
def test_endpoint_names_azure_takes(name: str) -> None:
    AzureMLDeployer().check_name(name)


@pytest.mark.parametrize(
    "name", ["ab", "a" * 33, "1churn", "-churn", "churn-", "Churn", "ch_urn", "ch.urn", ""]
)
def test_endpoint_names_azure_refuses(name: str) -> None:
    with pytest.raises(UsageError, match="invalid deployment name"):
        AzureMLDeployer().check_name(name)


def test_a_refused_name_says_azure_mls_rule() -> None:
    with pytest.raises(UsageError) as caught:
        AzureMLDeployer().check_name("1churn")
    assert "3-32 lowercase letters, digits and hyphens, starting with a letter" in str(caught.value)


# --- the workspace --------------------------------------------------------------------------


def write_config(directory: Path, **values: Any) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "config.json"
    path.write_text(json.dumps(values), encoding="utf-8")
    return path


FILE = {"subscription_id": SUB, "resource_group": "file-rg", "workspace_name": "file-ws"}
ENV = {
    "AZURE_SUBSCRIPTION_ID": OTHER_SUB,
    "AZURE_RESOURCE_GROUP": "env-rg",
    "AZUREML_WORKSPACE_NAME": "env-ws",
}


def test_options_win_over_the_file_and_the_environment(tmp_path: Path) -> None:
    write_config(tmp_path, **FILE)
    config = AzureMLConfig(subscription_id=OTHER_SUB, resource_group="opt-rg", workspace="opt-ws")
    assert resolve_workspace(config, ENV, tmp_path) == Workspace(OTHER_SUB, "opt-rg", "opt-ws")


def test_the_workspaces_config_json_here(tmp_path: Path) -> None:
    write_config(tmp_path, **FILE)
    assert resolve_workspace(AzureMLConfig(), {}, tmp_path) == Workspace(SUB, "file-rg", "file-ws")


def test_the_config_json_of_a_parent(tmp_path: Path) -> None:
    write_config(tmp_path, **FILE)
    (tmp_path / "project" / "src").mkdir(parents=True)
    found = resolve_workspace(AzureMLConfig(), {}, tmp_path / "project" / "src")
    assert found == Workspace(SUB, "file-rg", "file-ws")


def test_the_config_json_in_dot_azureml(tmp_path: Path) -> None:
    write_config(tmp_path / ".azureml", **FILE)
    assert resolve_workspace(AzureMLConfig(), {}, tmp_path).name == "file-ws"


def test_the_file_fills_in_only_what_the_options_leave_out(tmp_path: Path) -> None:
    write_config(tmp_path, **FILE)
    found = resolve_workspace(AzureMLConfig(workspace="opt-ws"), ENV, tmp_path)
    assert found == Workspace(SUB, "file-rg", "opt-ws")


def test_the_file_wins_over_the_environment(tmp_path: Path) -> None:
    write_config(tmp_path, **FILE)
    assert resolve_workspace(AzureMLConfig(), ENV, tmp_path) == Workspace(SUB, "file-rg", "file-ws")


def test_a_config_json_naming_no_subscription_is_not_the_workspaces(tmp_path: Path) -> None:
    write_config(tmp_path, name="some other tool's config.json")
    found = resolve_workspace(AzureMLConfig(), ENV, tmp_path)
    assert found == Workspace(OTHER_SUB, "env-rg", "env-ws")


def test_a_named_workspace_config_wins_over_one_found(tmp_path: Path) -> None:
    write_config(tmp_path, **FILE)
    named = write_config(tmp_path / "elsewhere", **{**FILE, "workspace_name": "named-ws"})
    found = resolve_workspace(AzureMLConfig(workspace_config=named), {}, tmp_path)
    assert found.name == "named-ws"


def test_the_environment_when_nothing_else_names_it(tmp_path: Path) -> None:
    found = resolve_workspace(AzureMLConfig(), ENV, tmp_path)
    assert found == Workspace(OTHER_SUB, "env-rg", "env-ws")


def test_the_azure_ml_job_variables_are_read_too(tmp_path: Path) -> None:
    environ = {
        "AZUREML_ARM_SUBSCRIPTION": SUB,
        "AZUREML_ARM_RESOURCEGROUP": "job-rg",
        "AZUREML_ARM_WORKSPACE_NAME": "job-ws",
    }
    assert resolve_workspace(AzureMLConfig(), environ, tmp_path) == Workspace(
        SUB, "job-rg", "job-ws"
    )
    both = {**environ, **ENV}  # the AZURE_* names come first
    assert resolve_workspace(AzureMLConfig(), both, tmp_path) == Workspace(
        OTHER_SUB, "env-rg", "env-ws"
    )


def test_a_missing_coordinate_names_every_way_to_give_it(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        resolve_workspace(AzureMLConfig(workspace="ws1"), {}, tmp_path)
    problems = caught.value.problems
    assert len(problems) == 2  # subscription_id and resource_group; the workspace was given
    subscription, group = problems
    assert subscription.startswith("subscription_id is required: pass -C subscription_id=...")
    assert "-t azureml:/SUBSCRIPTION/RESOURCE_GROUP/WORKSPACE" in subscription
    assert "config.json" in subscription
    assert "AZURE_SUBSCRIPTION_ID or AZUREML_ARM_SUBSCRIPTION" in subscription
    assert "AZURE_RESOURCE_GROUP or AZUREML_ARM_RESOURCEGROUP" in group


def test_nothing_at_all_is_three_problems(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        resolve_workspace(AzureMLConfig(), {}, tmp_path)
    assert [p.split(" ", 1)[0] for p in caught.value.problems] == [
        "subscription_id",
        "resource_group",
        "workspace",
    ]
    assert "AZUREML_WORKSPACE_NAME or AZUREML_ARM_WORKSPACE_NAME" in caught.value.problems[2]


@pytest.mark.parametrize(
    ("text", "problem"),
    [("{not json", "workspace_config"), ("[1, 2]", "not a JSON object")],
)
def test_a_named_workspace_config_that_is_not_one_is_refused(
    tmp_path: Path, text: str, problem: str
) -> None:
    path = tmp_path / "ws.json"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError, match=problem) as caught:
        resolve_workspace(AzureMLConfig(workspace_config=path), {}, tmp_path)
    assert str(path) in str(caught.value)


def test_a_named_workspace_config_that_is_missing_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "nowhere.json"
    with pytest.raises(ConfigError, match=f"workspace_config {path}"):
        resolve_workspace(AzureMLConfig(workspace_config=path), {}, tmp_path)


def test_values_from_the_file_are_checked_and_the_file_named(tmp_path: Path) -> None:
    path = write_config(tmp_path, **{**FILE, "subscription_id": "not-a-guid"})
    with pytest.raises(ConfigError) as caught:
        resolve_workspace(AzureMLConfig(), {}, tmp_path)
    assert "subscription_id must be a GUID, got 'not-a-guid'" in str(caught.value)
    assert f"(from {path})" in str(caught.value)


def test_values_from_the_environment_are_checked(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"workspace 'w!': .*\(from the environment\)"):
        resolve_workspace(AzureMLConfig(), {**ENV, "AZUREML_WORKSPACE_NAME": "w!"}, tmp_path)


def test_the_deployer_finds_the_config_json_of_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for variable in WORKSPACE_VARIABLES:
        monkeypatch.delenv(variable, raising=False)
    write_config(tmp_path, **FILE)
    monkeypatch.chdir(tmp_path)
    target = connect("azureml", environ={})
    assert target.workspace == Workspace(SUB, "file-rg", "file-ws")


def test_the_deployer_says_what_is_missing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for variable in WORKSPACE_VARIABLES:
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match="subscription_id is required"):
        _ = connect("azureml", environ={}).workspace


# --- Azure's errors -------------------------------------------------------------------------


class Answers(BaseHTTPRequestHandler):
    """Answers each request with the next (status, body, headers) queued for its path."""

    queued: dict[str, list[tuple[int, Any, dict[str, str]]]] = {}

    def _answer(self) -> None:
        status, body, headers = self.queued[self.path.split("?")[0]].pop(0)
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.send_response(status)
        for key, value in {"Content-Type": "application/json", **headers}.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    do_GET = do_PUT = do_POST = do_DELETE = _answer

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    """A plain HTTP server on 127.0.0.1 answering what a test queues (no credential is sent)."""
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Answers)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_port}"
    httpd.shutdown()
    httpd.server_close()
    thread.join(timeout=10)


def arm_error(
    server: str, status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> HttpResponseError:
    """What azure-ai-ml's generated operations raise for an ARM error answer.

    A real response from azure-core's transport, then their two lines: ``map_error`` with the
    operations' error map, and ``HttpResponseError(..., error_format=ARMErrorFormat)``.
    """
    path = f"/{status}-{code}"
    Answers.queued[path] = [(status, {"error": {"code": code, "message": message}}, headers or {})]
    response = PipelineClient(server, policies=[]).send_request(HttpRequest("PUT", server + path))
    error_map = {
        401: ClientAuthenticationError,
        404: ResourceNotFoundError,
        409: ResourceExistsError,
        304: ResourceNotModifiedError,
    }
    try:
        map_error(status_code=response.status_code, response=response, error_map=error_map)
        raise HttpResponseError(response=response, error_format=ARMErrorFormat)
    except HttpResponseError as exc:
        return exc


AUTHZ_ACTION = "Microsoft.MachineLearningServices/workspaces/onlineEndpoints/write"
AUTHZ_SCOPE = (
    f"/subscriptions/{SUB}/resourceGroups/ml-rg/providers/"
    "Microsoft.MachineLearningServices/workspaces/churn-ws"
)
AUTHZ_MESSAGE = (
    "The client 'ci@contoso.com' with object id '4a1c2f3e-5b6d-4e7f-8a9b-0c1d2e3f4a5b' does not "
    f"have authorization to perform action '{AUTHZ_ACTION}' over scope '{AUTHZ_SCOPE}' or the "
    "scope is invalid. If access was recently granted, please refresh your credentials."
)


def test_authorization_failed_names_the_action_and_the_scope(server: str) -> None:
    exc = arm_error(server, 403, "AuthorizationFailed", AUTHZ_MESSAGE)
    error = AZURE_ERRORS.translate(exc, "create step 'create-endpoint'")
    assert type(error) is PermissionDeniedError
    assert error.hint == (
        f"give the identity in use a role with {AUTHZ_ACTION} (AzureML Data Scientist, or "
        f"Contributor) on the scope {AUTHZ_SCOPE}"
    )
    assert str(error).startswith(
        "create step 'create-endpoint' failed on target 'azureml' (permission denied): "
        "(AuthorizationFailed) The client 'ci@contoso.com'"
    )
    assert error.reference is not None and "troubleshoot-online-endpoints" in error.reference
    assert error.__cause__ is exc


def test_a_refusal_without_the_action_still_names_a_role(server: str) -> None:
    exc = arm_error(server, 403, "Forbidden", "The request is not allowed.")
    error = AZURE_ERRORS.translate(exc, "doing it")
    assert type(error) is PermissionDeniedError
    assert error.hint is not None and "AzureML Data Scientist" in error.hint
    assert "on the workspace" in error.hint


def test_an_expired_token_asks_to_sign_in(server: str) -> None:
    exc = arm_error(server, 401, "ExpiredAuthenticationToken", "The access token expiry ...")
    assert isinstance(exc, ClientAuthenticationError)
    error = AZURE_ERRORS.translate(exc, "doing it")
    assert type(error) is PermissionDeniedError
    assert error.hint is not None and error.hint.startswith("sign in for the chosen -C credential")
    assert "az login" in error.hint


def test_a_credential_that_cannot_sign_in_asks_to_sign_in(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from azure.identity import AzureCliCredential

    monkeypatch.setenv("PATH", str(tmp_path))  # no az here
    with pytest.raises(ClientAuthenticationError) as caught:
        AzureCliCredential().get_token("https://management.azure.com/.default")
    error = AZURE_ERRORS.translate(caught.value, "reading the endpoint")
    assert type(error) is PermissionDeniedError
    assert error.hint is not None and "az login for cli" in error.hint
    assert "Azure CLI not found" in str(error)


def test_throttling_is_throttled(server: str) -> None:
    exc = arm_error(server, 429, "TooManyRequests", "Too many requests.", {"Retry-After": "7"})
    error = AZURE_ERRORS.translate(exc, "doing it")
    assert type(error) is ThrottledError
    assert error.hint


def test_a_quota_names_the_instance_type_to_change(server: str) -> None:
    message = (
        "Not enough quota available for Standard_NC6s_v3 in SubscriptionId "
        f"{SUB}. Current usage/limit: 0/0. Additional needed: 6"
    )
    error = AZURE_ERRORS.translate(arm_error(server, 400, "QuotaExceeded", message), "doing it")
    assert type(error) is QuotaExceededError
    assert "Standard_NC6s_v3" in str(error)
    assert error.hint is not None and "-C instance_type" in error.hint
    assert "Quotas" in error.hint


def test_a_quota_said_in_words_is_a_quota(server: str) -> None:
    message = "Operation results in exceeding quota limits of Core. Maximum allowed: 4"
    error = AZURE_ERRORS.translate(arm_error(server, 400, "BadRequest", message), "doing it")
    assert type(error) is QuotaExceededError


def test_a_conflict_says_to_wait_or_rename(server: str) -> None:
    exc = arm_error(server, 409, "Conflict", "Endpoint churn is being updated.")
    assert isinstance(exc, ResourceExistsError)
    error = AZURE_ERRORS.translate(exc, "doing it")
    assert type(error) is ConflictError
    assert error.hint is not None and "wait and retry, or use another name" in error.hint


def test_a_missing_resource_points_at_the_workspace(server: str) -> None:
    exc = arm_error(server, 404, "ResourceNotFound", "The Resource 'x' was not found.")
    assert isinstance(exc, ResourceNotFoundError) and not_found(exc)
    error = AZURE_ERRORS.translate(exc, "doing it")
    assert type(error) is ResourceNotFound
    assert error.hint == "check -C subscription_id, resource_group and workspace"


def test_azure_unavailable_is_unavailable(server: str) -> None:
    exc = arm_error(server, 503, "ServiceUnavailable", "Try again later.")
    assert type(AZURE_ERRORS.translate(exc, "doing it")) is TargetUnavailableError


def test_a_bad_request_is_a_deployment_error(server: str) -> None:
    exc = arm_error(server, 400, "BadArgument", "Instance type Standard_X is not supported.")
    error = AZURE_ERRORS.translate(exc, "doing it")
    assert type(error) is DeploymentError
    assert "Instance type Standard_X is not supported." in str(error)
    assert not not_found(exc)


def test_a_body_that_is_not_an_arm_error_is_not_pasted_whole(server: str) -> None:
    Answers.queued["/html"] = [(502, b"<html><body>Bad Gateway</body></html>", {})]
    response = PipelineClient(server, policies=[]).send_request(
        HttpRequest("GET", server + "/html")
    )
    error = AZURE_ERRORS.translate(HttpResponseError(response=response), "doing it")
    assert type(error) is TargetUnavailableError
    assert "<html>" not in str(error) and "Content:" not in str(error)


def test_an_unreachable_resource_manager_is_unavailable() -> None:
    from azure.core.exceptions import ServiceRequestError

    closed = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(ServiceRequestError) as caught:
        PipelineClient(closed, policies=[]).send_request(HttpRequest("GET", closed + "/"))
    error = AZURE_ERRORS.translate(caught.value, "reading the endpoint")
    assert type(error) is TargetUnavailableError
    assert error.hint is not None and "-C resource_manager_url" in error.hint


# Importing azure-ai-ml makes marshmallow warn about azure-ai-ml's own schemas.
@pytest.mark.filterwarnings("ignore::marshmallow.warnings.Marshmallow4Warning")
def test_azure_ai_mls_own_validation_is_a_deployment_error() -> None:
    from azure.ai.ml.exceptions import ErrorCategory, ErrorTarget, ValidationException

    exc = ValidationException(
        message="Endpoint name must start with a letter",
        no_personal_data_message="bad endpoint name",
        target=ErrorTarget.ONLINE_ENDPOINT,
        error_category=ErrorCategory.USER_ERROR,
    )
    error = AZURE_ERRORS.translate(exc, "doing it")
    assert type(error) is DeploymentError
    assert "Endpoint name must start with a letter" in str(error)


def test_anything_else_passes_through() -> None:
    assert AZURE_ERRORS.translate(ValueError("ours"), "doing it") is None
    assert AZURE_ERRORS.translate(UsageError("already modelport's"), "doing it") is None


def test_modelports_own_requests_honour_retry_after(server: str) -> None:
    """The pipeline for requests azure-ai-ml has no operation for waits out a 429."""
    Answers.queued["/busy"] = [
        (429, {"error": {"code": "TooManyRequests", "message": "slow"}}, {"Retry-After": "1"}),
        (200, {"ok": True}, {}),
    ]
    azure = Azure(AzureMLConfig(), Workspace(SUB, "ml-rg", "churn-ws"))
    client = azure.pipeline(bearer_scope=None, retries=2)
    started = time.monotonic()
    response = client.send_request(HttpRequest("GET", server + "/busy"))
    assert response.status_code == 200 and response.json() == {"ok": True}
    assert time.monotonic() - started >= 0.9  # it waited the second Azure asked for
    assert Answers.queued["/busy"] == []


# --- the CLI --------------------------------------------------------------------------------


def test_targets_help_lists_every_option(capsys: pytest.CaptureFixture[str]) -> None:
    import dataclasses

    assert main(["targets", "help", "azureml"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("Target azureml  (modelport ")
    for field in dataclasses.fields(AzureMLConfig):
        assert f"\n  {field.name}  [" in out, field.name
        assert f"env: MODELPORT_AZUREML_{field.name.upper()}" in out
    assert "Verbs: create, update, delete, get, list, predict, logs, promote, rollback." in out
    assert main(["targets", "help", "azureml", "--json"]) == 0
    described = json.loads(capsys.readouterr().out)
    assert set(described["options"]) == {f.name for f in dataclasses.fields(AzureMLConfig)}
    assert all(option["help"] for option in described["options"].values())
    assert described["options"]["canary_percent"]["type"] == "int"
