"""The vertex target's options, project and region, requests and Google error translation.

No Vertex here: options are checked against Vertex's rules before any call, through the same
parsing the CLI gives ``-C key=value`` (every problem reported together); the project and region
come from the options, the target URI, the environment, gcloud's configuration or the
credentials; payloads become ``instances``; google-api-core's real exceptions, raised from real
HTTP answers the way the REST transport raises them, become modelport's errors with a hint
naming the role, the quota metric or the resource; a call Google refuses with 429 or 503 before
acting is made again, honouring ``Retry-After``.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import requests
from google.api_core import exceptions as api

from modelport.deployers import connect
from modelport.deployers.config import Sources, build_config, parse_assignments
from modelport.deployers.vertex import VertexConfig, VertexDeployer
from modelport.deployers.vertex.config import (
    Location,
    gcloud_properties,
    resolve_location,
)
from modelport.deployers.vertex.deployer import vertex_request
from modelport.deployers.vertex.google import VERTEX_ERRORS, refused_before_acting, retrying
from modelport.errors import (
    ConfigError,
    ConflictError,
    DeploymentError,
    InputError,
    PermissionDeniedError,
    QuotaExceededError,
    ResourceNotFound,
    TargetUnavailableError,
    ThrottledError,
    UsageError,
)


def options(*pairs: str, environ: dict[str, str] | None = None) -> VertexConfig:
    """``-C`` strings parsed as the CLI parses them."""
    config = build_config(
        VertexConfig,
        "vertex",
        Sources(env=environ or {}, cli=parse_assignments(pairs), cli_name="-C"),
    )
    assert isinstance(config, VertexConfig)
    return config


def problems_of(*pairs: str) -> str:
    with pytest.raises(ConfigError) as caught:
        options(*pairs)
    assert caught.value.target == "vertex"
    return str(caught.value)


# --- options ------------------------------------------------------------------------------------


def test_good_options_parse_with_their_types() -> None:
    config = options(
        "project=my-project-1",
        "region=europe-west4",
        "machine_type=n1-standard-4",
        "min_replicas=2",
        "max_replicas=5",
        "accelerator_type=NVIDIA_TESLA_T4",
        "accelerator_count=1",
        "service_account=serve@my-project-1.iam.gserviceaccount.com",
        "cpu_target_percent=70",
        "canary_percent=10",
        'labels={"team": "risk"}',
        'environment_variables={"LOG_LEVEL": "debug"}',
        "api_endpoint=europe-west4-aiplatform.googleapis.com",
        "endpoint_id=1234567890",
    )
    assert (config.min_replicas, config.max_replicas, config.cpu_target_percent) == (2, 5, 70)
    assert config.labels == {"team": "risk"}
    assert config.environment_variables == {"LOG_LEVEL": "debug"}


def test_every_problem_is_reported_at_once() -> None:
    text = problems_of(
        "project=X",
        "region=moon",
        "machine_type=huge",
        "min_replicas=0",
        "accelerator_count=2",
        "cpu_target_percent=101",
        "canary_percent=100",
        "service_account=nobody",
        "endpoint_id=my-endpoint",
        'labels={"Team": "x", "modelport-target": "y", "ok": "UPPER"}',
        'environment_variables={"AIP_HTTP_PORT": "1", "MODELPORT_PACKAGE": "/x", "1x": "y"}',
        "image=reg/x:1",
        "registry=reg",
        "startup_timeout=0",
    )
    for needle in (
        "project 'X'",
        "region 'moon'",
        "machine_type must be",
        "min_replicas must be at least 1",
        "accelerator_count needs accelerator_type",
        "cpu_target_percent must be 1-100",
        "canary_percent must be 1-99",
        "service_account must be an email",
        "endpoint_id must be",
        "'Team'",
        "'modelport-target' is reserved",
        "'ok'",
        "'AIP_HTTP_PORT' is set by modelport or Vertex",
        "'MODELPORT_PACKAGE' is set by modelport",
        "'1x' is not a variable name",
        "image is used as is",
        "startup_timeout must be positive",
    ):
        assert needle in text, (needle, text)


def test_max_replicas_below_min_replicas_is_refused() -> None:
    assert "max_replicas must be at least min_replicas" in problems_of(
        "min_replicas=3", "max_replicas=2"
    )


@pytest.mark.parametrize(
    ("value", "ok"),
    [
        ("us-central1-aiplatform.googleapis.com", True),
        ("https://private.example.com:8443", True),
        ("http://127.0.0.1:8080", True),
        ("http://localhost:9", True),
        ("http://vertex.example.com", False),  # a token over plain HTTP to another machine
        ("https://host/v1/projects", False),
        ("ftp://host", False),
    ],
)
def test_api_endpoints_are_hosts_and_plain_http_stays_on_this_machine(value: str, ok: bool) -> None:
    if ok:
        assert options(f"api_endpoint={value}").api_endpoint == value
    else:
        assert "api_endpoint" in problems_of(f"api_endpoint={value}")


def test_the_target_uri_names_project_and_region() -> None:
    target = connect("vertex:/my-project-1/asia-northeast1")
    assert isinstance(target, VertexDeployer)
    assert (target.config.project, target.config.region) == ("my-project-1", "asia-northeast1")
    assert connect("vertex:/my-project-1").config.region is None
    with pytest.raises(ConfigError, match="vertex:/PROJECT/REGION"):
        connect("vertex:/a/b/c")


@pytest.mark.parametrize("name", ["9lives", "a" * 54, "Upper", "under_score"])
def test_names_vertex_cannot_hold_are_refused(name: str) -> None:
    with pytest.raises(UsageError, match="invalid deployment name"):
        VertexDeployer(VertexConfig(project="my-project-1")).check_name(name)


# --- project and region -------------------------------------------------------------------------


def _gcloud(root: Path, name: str, text: str, active: str | None = None) -> None:
    (root / "configurations").mkdir(parents=True, exist_ok=True)
    (root / "configurations" / f"config_{name}").write_text(text)
    if active:
        (root / "active_config").write_text(active)


def test_location_comes_from_the_options_first(tmp_path: Path) -> None:
    env = {"GOOGLE_CLOUD_PROJECT": "env-project", "CLOUDSDK_CONFIG": str(tmp_path)}
    found = resolve_location(VertexConfig(project="my-project-1", region="europe-west1"), env)
    assert found == Location("my-project-1", "europe-west1")
    assert found.uri == "vertex:/my-project-1/europe-west1"


def test_location_comes_from_the_environment(tmp_path: Path) -> None:
    env = {
        "CLOUDSDK_CORE_PROJECT": "core-project",
        "CLOUD_ML_REGION": "europe-west2",
        "CLOUDSDK_CONFIG": str(tmp_path),
    }
    assert resolve_location(VertexConfig(), env) == Location("core-project", "europe-west2")


def test_location_comes_from_gcloud_s_active_configuration(tmp_path: Path) -> None:
    _gcloud(tmp_path, "default", "[core]\nproject = not-this-one\n")
    _gcloud(
        tmp_path, "work", "[core]\nproject = work-project\n[compute]\nregion = us-east4\n", "work"
    )
    env = {"CLOUDSDK_CONFIG": str(tmp_path)}
    assert gcloud_properties(env) == {"core/project": "work-project", "compute/region": "us-east4"}
    assert resolve_location(VertexConfig(), env) == Location("work-project", "us-east4")
    env["CLOUDSDK_ACTIVE_CONFIG_NAME"] = "default"
    assert resolve_location(VertexConfig(), env) == Location("not-this-one", "us-central1")


def test_location_falls_back_to_the_credentials_project_and_us_central1(tmp_path: Path) -> None:
    env = {"CLOUDSDK_CONFIG": str(tmp_path)}
    found = resolve_location(VertexConfig(), env, credentials_project="key-project")
    assert found == Location("key-project", "us-central1")


def test_no_project_anywhere_is_a_config_error_naming_every_source(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        resolve_location(VertexConfig(), {"CLOUDSDK_CONFIG": str(tmp_path)})
    for needle in ("-C project", "vertex:/PROJECT/REGION", "GOOGLE_CLOUD_PROJECT", "gcloud config"):
        assert needle in str(caught.value)


def test_a_bad_project_from_the_environment_is_refused(tmp_path: Path) -> None:
    env = {"GOOGLE_CLOUD_PROJECT": "Bad_Project", "CLOUDSDK_CONFIG": str(tmp_path)}
    with pytest.raises(ConfigError, match="from the environment"):
        resolve_location(VertexConfig(), env)


def test_an_unreadable_key_file_is_a_usage_error(tmp_path: Path) -> None:
    key = tmp_path / "key.json"
    key.write_text("{}")
    target = VertexDeployer(VertexConfig(project="my-project-1", service_account_file=key))
    with pytest.raises(UsageError, match="cannot read the service account key"):
        target.location  # noqa: B018 (reading it makes the credentials)


# --- payloads -----------------------------------------------------------------------------------


def test_instances_go_as_they_are_and_inputs_become_rows() -> None:
    rows = [[1.0, 2.0], [3.0, 4.0]]
    assert vertex_request({"instances": rows, "parameters": {"outputs": ["Y"]}}) == (
        rows,
        {"outputs": ["Y"]},
    )
    assert vertex_request({"inputs": rows}) == (rows, None)
    assert vertex_request({"inputs": {"X": rows, "Z": [5, 6]}, "params": {"k": 1}}) == (
        [{"X": [1.0, 2.0], "Z": 5}, {"X": [3.0, 4.0], "Z": 6}],
        {"k": 1},
    )


@pytest.mark.parametrize(
    "payload",
    [
        {"instances": {"X": [1]}},
        {"inputs": {"X": [1], "Z": [1, 2]}},
        {"inputs": {"X": 1}},
        {"inputs": "text"},
        {"dataframe_split": {"columns": ["a"], "data": [[1]]}},
    ],
)
def test_payloads_vertex_cannot_send_are_input_errors(payload: dict[str, Any]) -> None:
    with pytest.raises(InputError):
        vertex_request(payload)


# --- Google's errors, from real HTTP answers ------------------------------------------------------


class _Answers(BaseHTTPRequestHandler):
    """Answers each request with the status and Google error its path names: ``/STATUS/...``."""

    script: list[tuple[int, dict[str, str]]] = []

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        parts = self.path.strip("/").split("/")
        status, grpc, message = int(parts[0]), parts[1], requests.utils.unquote(parts[2])
        headers: dict[str, str] = {}
        if self.script:
            status, headers = self.script.pop(0)
        body = json.dumps({"error": {"code": status, "message": message, "status": grpc}})
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        for key, value in headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body.encode())

    do_GET = _answer
    do_POST = _answer


@pytest.fixture(scope="module")
def google_errors() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Answers)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def _raised(base: str, status: int, grpc: str, message: str, method: str = "GET") -> Exception:
    """The exception google-api-core makes of Google's answer, as the REST transport does."""
    response = requests.request(
        method, f"{base}/{status}/{grpc}/{requests.utils.quote(message, safe='')}", timeout=10
    )
    return api.from_http_response(response)


def _translated(exc: Exception) -> Any:
    error = VERTEX_ERRORS.translate(exc, "deploying")
    assert error is not None
    return error


def test_permission_denied_names_the_role(google_errors: str) -> None:
    exc = _raised(
        google_errors,
        403,
        "PERMISSION_DENIED",
        "Permission 'aiplatform.endpoints.create' denied on resource "
        "'//aiplatform.googleapis.com/projects/p/locations/us-central1' (or it may not exist).",
    )
    error = _translated(exc)
    assert isinstance(error, PermissionDeniedError)
    assert "aiplatform.endpoints.create" in error.hint and "roles/aiplatform.user" in error.hint


def test_act_as_a_service_account_names_service_account_user(google_errors: str) -> None:
    exc = _raised(
        google_errors,
        403,
        "PERMISSION_DENIED",
        "Permission 'iam.serviceAccounts.actAs' denied on service account serve@p.iam",
    )
    assert "roles/iam.serviceAccountUser" in _translated(exc).hint


def test_a_quota_refusal_names_the_metric_and_is_not_retried(google_errors: str) -> None:
    exc = _raised(
        google_errors,
        429,
        "RESOURCE_EXHAUSTED",
        "The following quota metrics exceed quota limits: "
        "aiplatform.googleapis.com/custom_model_serving_cpus",
        method="POST",
    )
    error = _translated(exc)
    assert isinstance(error, QuotaExceededError)
    assert "aiplatform.googleapis.com/custom_model_serving_cpus" in error.hint
    assert not refused_before_acting(exc, idempotent=True)


def test_throttling_and_unavailability_are_retriable(google_errors: str) -> None:
    throttled = _raised(google_errors, 429, "RESOURCE_EXHAUSTED", "Too many requests")
    assert isinstance(_translated(throttled), ThrottledError)
    unavailable = _raised(google_errors, 503, "UNAVAILABLE", "try later", method="POST")
    assert isinstance(_translated(unavailable), TargetUnavailableError)
    assert refused_before_acting(unavailable, idempotent=False)  # the start of an operation
    # A poll of an operation that creates something is not made again: it may be done already.
    poll = _raised(google_errors, 503, "UNAVAILABLE", "try later", method="GET")
    assert refused_before_acting(poll, idempotent=True)
    assert not refused_before_acting(poll, idempotent=False)


def test_not_found_names_the_resource(google_errors: str) -> None:
    exc = _raised(
        google_errors,
        404,
        "NOT_FOUND",
        "Endpoint `projects/123/locations/us-central1/endpoints/42` not found.",
    )
    error = _translated(exc)
    assert isinstance(error, ResourceNotFound)
    assert "projects/123/locations/us-central1/endpoints/42" in error.hint


def test_conflicts_and_invalid_requests(google_errors: str) -> None:
    assert isinstance(
        _translated(_raised(google_errors, 409, "ALREADY_EXISTS", "exists")), ConflictError
    )
    invalid = _translated(_raised(google_errors, 400, "INVALID_ARGUMENT", "bad label"))
    assert type(invalid) is DeploymentError and "bad label" in str(invalid)


def test_an_operation_s_own_error_is_never_retried() -> None:
    # What google-api-core raises for an operation that ended in error: no HTTP answer.
    exc = api.from_grpc_status(14, "backend died")  # 14: UNAVAILABLE
    assert isinstance(exc, api.ServiceUnavailable) and exc.code == 503
    assert not refused_before_acting(exc, idempotent=True)


def test_retrying_honours_retry_after_then_succeeds(google_errors: str) -> None:
    _Answers.script = [(503, {"Retry-After": "0"}), (503, {"Retry-After": "0"}), (200, {})]
    seen: list[int] = []

    def call() -> int:
        response = requests.get(f"{google_errors}/200/OK/fine", timeout=10)
        seen.append(response.status_code)
        if response.status_code >= 400:
            raise api.from_http_response(response)
        return response.status_code

    assert retrying(call, "reading") == 200
    assert seen == [503, 503, 200]


def test_retrying_gives_up_on_what_is_not_retriable(google_errors: str) -> None:
    seen: list[int] = []

    def call() -> None:
        response = requests.get(f"{google_errors}/403/PERMISSION_DENIED/no", timeout=10)
        seen.append(response.status_code)
        raise api.from_http_response(response)

    with pytest.raises(api.Forbidden):
        retrying(call, "reading")
    assert seen == [403]
