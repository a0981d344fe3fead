"""An offline Azure for the Azure ML tests: Resource Manager, blob storage and scoring on one
local HTTPS server, with deployments that really serve.

:class:`FakeAzure` starts one threaded HTTPS server on 127.0.0.1 (a random port) with a throwaway
CA made by ``trustme`` (its certificate names 127.0.0.1, localhost and the blob host), and the
real ``azure-ai-ml`` SDK talks to it as to ARM (``MLClient(..., cloud=CLOUD,
cloud_metadata=fake.cloud_metadata, connection_verify=fake.ca_pem)``: :meth:`FakeAzure.ml_client`).
It answers, in ARM's shapes:

- ``GET /metadata/endpoints``: the cloud's metadata (what ``az cloud register
  --endpoint-resource-manager`` reads), no token needed;
- one workspace (:data:`WORKSPACE` in :data:`RESOURCE_GROUP` of :data:`SUBSCRIPTION`):
  online endpoints (keys, tokens, traffic and mirror traffic), their deployments (logs),
  environment and model versions (and their containers), the default blob datastore and its
  secrets; every other name is ARM's 404;
- the blob service of the datastore's account on ``<account>.blob.core.fake.test`` (routed by the
  Host header; tests resolve ``*.fake.test`` to this server: :func:`resolving`);
- each endpoint's scoring URI ``https://127.0.0.1:PORT/inference/<endpoint>/score``: keys or
  tokens checked, routed by the ``azureml-model-deployment`` header or the traffic weights
  (deterministic weighted round robin), mirrored in the background, forwarded to the deployment's
  host on the environment's scoring route.

Every ARM request needs ``Authorization: Bearer`` :data:`TOKEN` (what the fake ``az`` prints):
anything else is ARM's 401. Azure's rules are enforced: unique names and their form, traffic
summing to 100 (or all 0) over existing deployments, mirror traffic (one deployment, at most 50 %,
no live traffic), no deployment created while its endpoint is not Succeeded, no deployment
deleted while it has traffic, deployment bodies with ``scaleSettings``.

Long-running operations (endpoint and deployment PUT and DELETE) answer either way
(:attr:`FakeAzure.lro`): ``"async"`` (201/202 with ``Azure-AsyncOperation``, ``Location`` and
``Retry-After: 1``; a poll waits up to :attr:`FakeAzure.poll_hold_s` for the work to finish
before answering ``InProgress``, so a test sleeps at most rarely), or ``"sync"`` (the PUT answers
once the work is done, with ``provisioningState: Succeeded`` or ``Failed``).

A deployment's PUT starts a *host* (:mod:`hosting`): the environment version named by
``environmentId`` gives the image and its routes.

- ``fake.hosting = "process"`` (default, fast): the image is pulled from its registry over the
  registry v2 API (plain HTTP, 127.0.0.1 only), the package baked into it
  (``opt/modelport/package/``) is found in its layers from the top down and extracted, and
  ``python -m modelport.image.entrypoint serve --port P`` runs with the image's environment
  (container paths mapped under a per-host root directory), the deployment's
  ``environmentVariables``, and, when the deployment names a model asset, ``AZUREML_MODEL_DIR``
  pointing at the model's blobs laid out as Azure mounts them
  (``.../azureml-models/<name>/<version>/<uploaded folder>/...``);
- ``fake.hosting = "container"``: the image itself through the Docker Engine API (``$DOCKER_HOST``)
  as Azure runs it: its own CMD, the deployment's variables, the route's port published on a free
  host port, the model (if any) mounted read-only at
  ``/var/azureml-app/azureml-models/<name>/<version>`` with ``AZUREML_MODEL_DIR`` set to it.

A deployment is Succeeded once its readiness route answers 200 (within its ``readinessProbe``
budget, at most :attr:`FakeAzure.startup_timeout`), else Failed with Azure's
``ResourceNotReady`` and the host's last lines. Its output is kept for ``getLogs``. Deleting a
deployment or endpoint stops its hosts.

Test hooks:

- ``fake.resource_manager_url`` (``https://127.0.0.1:PORT/``), ``fake.url``, ``fake.port``,
  ``fake.ca_pem`` (path of the CA bundle), ``fake.cloud_metadata`` (MLClient's),
  ``fake.ml_client(credential=None, **kwargs)``, ``fake.scoring_uri(endpoint)``;
- settings: ``fake.lro = "async" | "sync"``, ``fake.hosting = "process" | "container"``,
  ``fake.poll_hold_s``, ``fake.startup_timeout``, ``fake.endpoint_delay_s`` (how long a new or
  updated endpoint stays Creating/Updating), ``fake.page_size``;
- ``fake.calls(service=None)`` -> [:class:`Call`] (method, path without query, query, JSON body,
  status, service: ``arm`` ``blob`` ``scoring`` ``metadata`` ``poll``); ``fake.sequence(...)``
  -> ``["PUT onlineEndpoints/e", ...]`` (workspace prefix stripped; polls and reads dropped
  only when asked: ``polls=False`` is the default, ``reads=False`` drops every GET);
  ``fake.clear_calls()``;
- faults: ``fake.fail_next(method, path_regex, status=500, code=..., message=..., times=1,
  retry_after=None)`` (ARM's error body; 429 with ``Retry-After`` for throttling);
  ``fake.fail_provisioning(deployment_regex, message)`` (the next matching deployment's
  container "crashes"); ``fake.clear_faults()``;
- state: ``fake.endpoints()``, ``fake.endpoint(name)``, ``fake.deployments(endpoint)``,
  ``fake.environments()`` ({name: sorted versions}), ``fake.environment(name, version)``,
  ``fake.models()``, ``fake.model(name, version)``, ``fake.blobs()`` ({name: bytes}),
  ``fake.scoring_requests(endpoint=None)`` -> [:class:`Scored`], ``fake.host(endpoint,
  deployment)`` (kind, image, env, url, port, lines, pid or container id...), ``fake.hosts()``;
- ``fake.reset()``: every host stopped, state, calls and faults cleared (server and CA kept).
"""

from __future__ import annotations

import atexit
import base64
import contextlib
import datetime
import email.utils
import hashlib
import http.server
import json
import os
import re
import secrets
import shutil
import socket
import ssl
import sys
import tempfile
import threading
import time
import urllib.parse
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any
from xml.etree import ElementTree

from hosting import ContainerHost, Host, HostFailure, ProcessHost, free_port

# The images live in registry_images (shared with the Vertex fake); the tests still import
# ProcessImages, ServingImages and push_process_image from here.
from registry_images import (  # noqa: F401
    IMAGE_PACKAGE_DIR,
    ProcessImages,
    RegistryImages,
    ServingImages,
    push_process_image,
)
from resolver import fake_resolver

from http_fakes import read_body

SUBSCRIPTION = "00000000-0000-0000-0000-000000000001"
TENANT = "00000000-0000-0000-0000-0000000000aa"
RESOURCE_GROUP = "rg-modelport"
WORKSPACE = "ws-modelport"
LOCATION = "eastus"
#: The name tests register the fake's cloud under in azure-ai-ml (MLClient(cloud=CLOUD)).
CLOUD = "ModelportFake"
#: The bearer token the fake ``az`` issues; the only one ARM accepts.
TOKEN = "modelport-fake-azure-token-0b1d7c"
#: Variable through which the fake ``az`` learns the token (unset: "Please run 'az login'").
AZ_TOKEN_ENV = "MODELPORT_FAKE_AZ_TOKEN"
#: The folder holding the fake ``az`` (put it first on PATH).
AZ_DIR = Path(__file__).resolve().parent / "az"
#: Variables (besides ``AZURE_*`` and ``AZUREML_*``) that send azure-identity or azure-ai-ml
#: elsewhere: managed identity endpoints and ARM's metadata URL.
AZURE_UNSET = (
    "ARM_CLOUD_METADATA_URL",
    "IDENTITY_ENDPOINT",
    "IDENTITY_HEADER",
    "IDENTITY_SERVER_THUMBPRINT",
    "IMDS_ENDPOINT",
    "MSI_ENDPOINT",
    "MSI_SECRET",
)
#: The storage suffix of the fake cloud and the datastore's account and container.
STORAGE_SUFFIX = "core.fake.test"
STORAGE_ACCOUNT = "modelportfakestore"
BLOB_CONTAINER = "azureml-blobstore-00000000-0000-0000-0000-0000000000bb"
BLOB_HOST = f"{STORAGE_ACCOUNT}.blob.{STORAGE_SUFFIX}"
#: Every name under this domain resolves to the fake in the test process (:func:`resolving`).
FAKE_DOMAIN = "fake.test"
PROVIDER = "Microsoft.MachineLearningServices"
WORKSPACE_ID = (
    f"/subscriptions/{SUBSCRIPTION}/resourceGroups/{RESOURCE_GROUP}/providers/{PROVIDER}"
    f"/workspaces/{WORKSPACE}"
)
#: Where Azure mounts a deployment's model, and the variable naming it.
MODEL_MOUNT_ROOT = "/var/azureml-app/azureml-models"
MODEL_DIR_ENV = "AZUREML_MODEL_DIR"
#: Container paths whose values in environment variables a process host maps under its root.
CONTAINER_ROOTS = ("/opt/modelport", "/var/azureml-app")
#: Azure's default readiness probe: 10 s delay, every 10 s, 30 failures (ManagedOnlineDeployment).
DEFAULT_PROBE = {
    "initialDelay": "PT10S",
    "period": "PT10S",
    "timeout": "PT2S",
    "failureThreshold": 30,
}
#: What a deployment's properties hold when its PUT did not say (Azure's defaults).
DEPLOYMENT_DEFAULTS: dict[str, dict[str, Any]] = {
    "scaleSettings": {"scaleType": "Default"},
    "requestSettings": {
        "maxConcurrentRequestsPerInstance": 1,
        "requestTimeout": "PT5S",
        "maxQueueWait": "PT0.5S",
    },
    "livenessProbe": {**DEFAULT_PROBE, "successThreshold": 1},
    "readinessProbe": {**DEFAULT_PROBE, "failureThreshold": 30, "successThreshold": 1},
}
#: What an asset version's PUT may change, and what the service fills in itself.
MUTABLE_ASSET_FIELDS = frozenset({"description", "tags", "isArchived", "properties", "stage"})
SERVER_ASSET_FIELDS = frozenset(
    {"provisioningState", "environmentType", "osType", "autoRebuild", "isAnonymous", "flavors"}
)
#: Endpoint names: 3-32 characters, a letter first, then letters, digits and '-'.
ENDPOINT_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9-]{1,30}[A-Za-z0-9]$")
DEPLOYMENT_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9-]{1,30}[A-Za-z0-9]$")
ASSET_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,254}$")
SETTLED = frozenset({"Succeeded", "Failed", "Canceled"})


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _system_data(created: str, modified: str | None = None) -> dict[str, Any]:
    return {
        "createdAt": created,
        "createdBy": "modelport-tests",
        "createdByType": "User",
        "lastModifiedAt": modified or created,
        "lastModifiedBy": "modelport-tests",
        "lastModifiedByType": "User",
    }


def iso_seconds(text: str | None, default: float) -> float:
    """An ISO 8601 duration (``PT10S``, ``PT1M30S``) in seconds; ``default`` when absent."""
    if not text:
        return default
    match = re.fullmatch(
        r"P(?:(?P<d>\d+)D)?(?:T(?:(?P<h>\d+)H)?(?:(?P<m>\d+)M)?(?:(?P<s>[\d.]+)S)?)?", text
    )
    if not match:
        return default
    parts = {k: float(v) for k, v in match.groupdict().items() if v}
    return (
        parts.get("d", 0) * 86400 + parts.get("h", 0) * 3600 + parts.get("m", 0) * 60
    ) + parts.get("s", 0)


# --- requests, answers, records ----------------------------------------------------------------


@dataclass
class Request:
    """One HTTP request as the server read it."""

    method: str
    host: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]  # names lowercased
    body: bytes

    def json(self) -> Any:
        """The body as JSON (None when empty or not JSON)."""
        if not self.body:
            return None
        try:
            return json.loads(self.body)
        except ValueError:
            return None


@dataclass
class Response:
    """What the fake answers."""

    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""


def json_response(status: int, document: Any, headers: Mapping[str, str] | None = None) -> Response:
    """A JSON answer."""
    return Response(
        status,
        {"Content-Type": "application/json; charset=utf-8", **(headers or {})},
        json.dumps(document).encode(),
    )


class ArmError(Exception):
    """An ARM error answer: ``{"error": {"code", "message"}}`` with ``status``."""

    def __init__(
        self, status: int, code: str, message: str, headers: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.headers = dict(headers or {})

    def response(self) -> Response:
        body = {"error": {"code": self.code, "message": self.message, "details": []}}
        return json_response(self.status, body, {"x-ms-failure-cause": "service", **self.headers})


def not_found(kind: str, name: str) -> ArmError:
    """ARM's 404 for a missing resource of the workspace (``kind``: ``onlineEndpoints``...)."""
    return ArmError(
        404,
        "ResourceNotFound",
        f"The Resource '{PROVIDER}/workspaces/{WORKSPACE}/{kind}/{name}' under resource group "
        f"'{RESOURCE_GROUP}' was not found. For more details please go to "
        "https://aka.ms/ARMResourceNotFoundFix",
    )


def not_found_workspace(name: str) -> ArmError:
    """ARM's 404 for a workspace that is not there."""
    return ArmError(
        404,
        "ResourceNotFound",
        f"The Resource '{PROVIDER}/workspaces/{name}' under resource group '{RESOURCE_GROUP}' was "
        "not found. For more details please go to https://aka.ms/ARMResourceNotFoundFix",
    )


def bad_argument(message: str) -> ArmError:
    """Azure ML's 400 for a request it refuses."""
    return ArmError(400, "BadArgument", message)


def _sorted_versions(versions: Mapping[str, Any]) -> list[str]:
    """Versions in Azure's order: numeric ones by value, then the others by name."""
    return sorted(versions, key=lambda v: (0, int(v), "") if v.isdigit() else (1, 0, v))


@dataclass
class Call:
    """One request the fake received (recorded as it arrives; ``status`` once answered).

    Attributes:
        service: ``arm``, ``poll`` (an LRO status or result), ``metadata``, ``blob`` or ``scoring``.
        method: the HTTP method.
        path: the URL path, without the query.
        query: the query's parameters (``api-version`` included).
        body: the JSON body (None when empty or not JSON).
        status: the status answered (0 while in flight).
        headers: the request's headers (names lowercased).
    """

    service: str
    method: str
    path: str
    query: dict[str, str]
    body: Any
    headers: dict[str, str]
    status: int = 0

    @property
    def short(self) -> str:
        """``METHOD path`` with the workspace prefix stripped (``PUT onlineEndpoints/e``)."""
        return f"{self.method} {short_path(self.path)}"


def short_path(path: str) -> str:
    """A path relative to the workspace (``onlineEndpoints/e``); ``workspace`` for the workspace
    itself; other paths as they are."""
    match = _WORKSPACE_PATH.match(path)
    if not match:
        return path
    rest = (match.group("rest") or "").strip("/")
    return rest or "workspace"


def is_poll(call: Call) -> bool:
    """Whether ``call`` polled a long-running operation (its status or result URL)."""
    return call.service == "poll"


def is_read(call: Call) -> bool:
    """Whether ``call`` only read (GET or HEAD): the SDK's incidental lookups among them."""
    return call.method in ("GET", "HEAD")


@dataclass
class _Fault:
    method: str
    path: re.Pattern[str]
    status: int
    code: str
    message: str
    remaining: int | None
    retry_after: int | None


@dataclass(frozen=True)
class Scored:
    """One scoring request: which deployment answered (or was mirrored to) and its status."""

    endpoint: str
    deployment: str | None
    mirrored: bool
    status: int


# --- resources ----------------------------------------------------------------------------------


@dataclass
class _Operation:
    """A long-running operation: its status URL polls this."""

    id: str
    done: threading.Event = field(default_factory=threading.Event)
    status: str = "InProgress"
    error: dict[str, Any] | None = None
    started: str = field(default_factory=_now)
    ended: str | None = None

    def finish(self, status: str, error: dict[str, Any] | None = None) -> None:
        self.status, self.error, self.ended = status, error, _now()
        self.done.set()

    def document(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"id": self.id, "name": self.id, "status": self.status}
        doc["startTime"] = self.started
        if self.ended:
            doc["endTime"] = self.ended
        if self.error:
            doc["error"] = self.error
        return doc


@dataclass
class _Deployment:
    name: str
    endpoint: str
    body: dict[str, Any]
    state: str = "Creating"
    created: str = field(default_factory=_now)
    modified: str = field(default_factory=_now)
    host: Host | None = None
    hosts: list[Host] = field(default_factory=list)
    lines: list[str] = field(default_factory=list)
    storage_lines: list[str] = field(default_factory=list)
    error: dict[str, Any] | None = None
    cancel: threading.Event = field(default_factory=threading.Event)

    def properties(self) -> dict[str, Any]:
        return dict(self.body.get("properties") or {})


@dataclass
class _Endpoint:
    name: str
    body: dict[str, Any]
    keys: tuple[str, str]
    state: str = "Creating"
    created: str = field(default_factory=_now)
    modified: str = field(default_factory=_now)
    deployments: dict[str, _Deployment] = field(default_factory=dict)
    #: Weighted round robin: how many requests each deployment has answered.
    served: dict[str, int] = field(default_factory=dict)
    mirror_seen: int = 0
    mirror_sent: int = 0
    tokens: set[str] = field(default_factory=set)
    #: Settles the state after :attr:`FakeAzure.endpoint_delay_s` (cancelled by a reset).
    timer: threading.Timer | None = None

    @property
    def properties(self) -> dict[str, Any]:
        props = self.body.setdefault("properties", {})
        assert isinstance(props, dict)
        return props

    @property
    def traffic(self) -> dict[str, int]:
        return {k: int(v) for k, v in (self.properties.get("traffic") or {}).items()}

    @property
    def mirror_traffic(self) -> dict[str, int]:
        return {k: int(v) for k, v in (self.properties.get("mirrorTraffic") or {}).items()}


@dataclass
class _Asset:
    """A version of an environment or model."""

    name: str
    version: str
    body: dict[str, Any]
    created: str = field(default_factory=_now)
    modified: str = field(default_factory=_now)


@dataclass
class _Blob:
    data: bytes
    metadata: dict[str, str]
    content_type: str
    etag: str
    modified: float
    created: float
    headers: dict[str, str] = field(default_factory=dict)


# --- name resolution ------------------------------------------------------------------------------


@contextlib.contextmanager
def resolving(port: int, domain: str = FAKE_DOMAIN) -> Iterator[None]:
    """Resolve every ``*.<domain>`` name to 127.0.0.1:``port`` in this process, then undo it
    (:mod:`resolver.fake_resolver`; subprocesses get it from :meth:`FakeAzure.cli_env`)."""
    undo = fake_resolver.install(domain, port)
    try:
        yield
    finally:
        undo()


# --- the server --------------------------------------------------------------------------------


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    # Many SDK connections come and go in one test: do not keep them waiting in the backlog.
    request_queue_size = 64

    def __init__(self, fake: FakeAzure, context: ssl.SSLContext) -> None:
        self.fake = fake
        self.context = context
        super().__init__(("127.0.0.1", 0), _Handler)

    def get_request(self) -> tuple[socket.socket, Any]:
        sock, address = super().get_request()
        # The handshake happens in the request's thread (on first read), never in the accept loop.
        return self.context.wrap_socket(
            sock, server_side=True, do_handshake_on_connect=False
        ), address


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the fake records calls itself."""

    def handle(self) -> None:
        # A client that went away or refused our certificate is no error of the fake's.
        with contextlib.suppress(ssl.SSLError, ConnectionError, TimeoutError):
            super().handle()

    def _serve(self) -> None:
        url = urllib.parse.urlsplit(self.path)
        request = Request(
            method=self.command,
            host=(self.headers.get("Host") or "").lower(),
            path=urllib.parse.unquote(url.path),
            query={k: v[0] for k, v in urllib.parse.parse_qs(url.query, True).items()},
            headers={k.lower(): v for k, v in self.headers.items()},
            body=read_body(self),
        )
        response = self.server.fake._dispatch(request)
        self.send_response(response.status)
        headers = {"x-ms-request-id": str(uuid.uuid4()), **response.headers}
        for name, value in headers.items():
            if name.lower() not in ("content-length", "transfer-encoding", "connection"):
                self.send_header(name, value)
        body = b"" if self.command == "HEAD" else response.body
        length = response.headers.get("Content-Length") if self.command == "HEAD" else None
        self.send_header("Content-Length", str(length or len(body)))
        self.end_headers()
        if body:
            self.wfile.write(body)

    do_GET = do_PUT = do_POST = do_PATCH = do_DELETE = do_HEAD = _serve


_WORKSPACE_PATH = re.compile(
    r"^/subscriptions/(?P<sub>[^/]+)/resourceGroups/(?P<rg>[^/]+)/providers/"
    rf"{re.escape(PROVIDER)}/workspaces/(?P<ws>[^/]+)(?P<rest>/.*)?$",
    re.IGNORECASE,
)
_OPERATION_PATH = re.compile(
    rf"^/subscriptions/[^/]+/providers/{re.escape(PROVIDER)}/locations/[^/]+/"
    r"(?P<kind>mfeOperationsStatus|mfeOperationResults)/(?P<id>[^/]+)$",
    re.IGNORECASE,
)


class FakeAzure:
    """The fake Azure (see the module's docstring for what it answers and its test hooks).

    Args:
        registry: the local registry images are pulled from (``host:port``, plain HTTP).
        startup_timeout: the longest a deployment's host has to become ready (seconds).
        container_labels: labels on every container it runs (default: the test run's).
    """

    def __init__(
        self,
        *,
        registry: str | None = None,
        startup_timeout: float = 120.0,
        container_labels: Mapping[str, str] | None = None,
    ) -> None:
        self.registry = registry or os.environ.get("MODELPORT_TEST_REGISTRY") or "127.0.0.1:5000"
        #: ``"async"``: LROs answered 201/202 and polled; ``"sync"``: answered once done.
        self.lro = "async"
        #: ``"process"``: the image's package in a child process; ``"container"``: the image.
        self.hosting = "process"
        self.startup_timeout = startup_timeout
        #: The longest a status poll waits for its operation to finish before saying InProgress.
        self.poll_hold_s = 2.0
        #: How long a created or updated endpoint stays Creating/Updating before Succeeded.
        self.endpoint_delay_s = 0.0
        #: Items per page of a list (more: a ``nextLink``).
        self.page_size = 20
        #: Seconds between SIGTERM and SIGKILL when a host stops.
        self.stop_timeout = 30.0
        self.container_labels = dict(container_labels) if container_labels is not None else None
        self._lock = threading.RLock()
        self._calls: list[Call] = []
        self._faults: list[_Fault] = []
        self._crashes: list[tuple[re.Pattern[str], str]] = []
        self._endpoints: dict[str, _Endpoint] = {}
        self._environments: dict[str, dict[str, _Asset]] = {}
        self._models: dict[str, dict[str, _Asset]] = {}
        self._containers: dict[tuple[str, str], dict[str, Any]] = {}
        self._blobs: dict[str, _Blob] = {}
        self._blocks: dict[tuple[str, str], bytes] = {}
        self._operations: dict[str, _Operation] = {}
        self._scored: list[Scored] = []
        self._scored_changed = threading.Condition(self._lock)
        self._history: list[_Placed] = []
        #: Endpoint names taken in the region by someone else (a create of one: 409).
        self.taken_endpoint_names: set[str] = set()
        #: A scoring request's timeout when the deployment sets none (Azure's: 5 s).
        self.request_timeout_s = 5.0
        self._threads: list[threading.Thread] = []
        self._generation = 0
        self._server: _Server | None = None
        self._serve_thread: threading.Thread | None = None
        self._workdir: Path | None = None
        self._images: RegistryImages | None = None
        self._docker: Any = None
        self._account_key = base64.b64encode(secrets.token_bytes(32)).decode()
        self.ca_pem = ""
        self.port = 0

    # -- starting and stopping ---------------------------------------------------------------------

    def start(self) -> FakeAzure:
        """Make the CA and certificate, start the server; returns self."""
        import trustme

        self._workdir = Path(tempfile.mkdtemp(prefix="fake-azure-"))
        self._images = RegistryImages(self._workdir)
        ca = trustme.CA()
        cert = ca.issue_cert("127.0.0.1", "localhost", BLOB_HOST, f"*.blob.{STORAGE_SUFFIX}")
        self.ca_pem = str(self._workdir / "fake-azure-ca.pem")
        ca.cert_pem.write_to_path(self.ca_pem)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        cert.configure_cert(context)
        self._server = _Server(self, context)
        self.port = self._server.server_address[1]
        self._serve_thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.1},
            daemon=True,
            name="fake-azure-server",
        )
        self._serve_thread.start()
        # A run that ends without stop() (an interrupted session) leaves no hosts behind.
        atexit.register(self._stop_hosts)
        return self

    def stop(self) -> None:
        """Stop every host and the server, remove the work directory (idempotent)."""
        atexit.unregister(self._stop_hosts)
        self._stop_hosts()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._docker is not None:
            with contextlib.suppress(Exception):
                self._docker.close()
            self._docker = None
        if self._workdir is not None:
            shutil.rmtree(self._workdir, ignore_errors=True)
            self._workdir = None

    def __enter__(self) -> FakeAzure:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def reset(self) -> None:
        """Forget everything (hosts stopped, state, calls, faults); keep the server and CA."""
        self._stop_hosts()
        with self._lock:
            self._generation += 1
            self._calls.clear()
            self._faults.clear()
            self._crashes.clear()
            self._environments.clear()
            self._models.clear()
            self._containers.clear()
            self._blobs.clear()
            self._blocks.clear()
            self._operations.clear()
            self._scored.clear()
            self._history.clear()
        self.lro = "async"
        self.hosting = "process"
        self.poll_hold_s = 2.0
        self.endpoint_delay_s = 0.0
        self.page_size = 20
        self.request_timeout_s = 5.0
        self.taken_endpoint_names.clear()

    def _stop_hosts(self) -> None:
        with self._lock:
            endpoints = list(self._endpoints.values())
            self._endpoints.clear()
            threads, self._threads = self._threads, []
        for endpoint in endpoints:
            if endpoint.timer is not None:
                endpoint.timer.cancel()
            for deployment in endpoint.deployments.values():
                deployment.cancel.set()
        for thread in threads:
            thread.join(timeout=60)
        for endpoint in endpoints:
            for deployment in endpoint.deployments.values():
                for host in deployment.hosts:
                    self._retire(host)

    # -- addresses ---------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        """``https://127.0.0.1:PORT``."""
        return f"https://127.0.0.1:{self.port}"

    @property
    def resource_manager_url(self) -> str:
        """The Resource Manager endpoint (``https://127.0.0.1:PORT/``)."""
        return self.url + "/"

    @property
    def cloud_metadata(self) -> dict[str, str]:
        """azure-ai-ml's ``cloud_metadata`` for :data:`CLOUD` (every key MLClient reads)."""
        return {
            "azure_portal": f"{self.url}/portal/",
            "resource_manager": self.resource_manager_url,
            "active_directory": f"{self.url}/login/",
            "aml_resource_id": f"{self.url}/ml/",
            "storage_endpoint": STORAGE_SUFFIX,
            "registry_discovery_endpoint": f"{self.url}/registries/",
        }

    def ml_client(self, credential: Any = None, **kwargs: Any) -> Any:
        """An ``MLClient`` of the fake's workspace (default credential: ``AzureCliCredential``,
        which runs the fake ``az`` on PATH)."""
        from azure.ai.ml import MLClient

        if credential is None:
            from azure.identity import AzureCliCredential

            credential = AzureCliCredential()
        options = {
            "cloud": CLOUD,
            "cloud_metadata": self.cloud_metadata,
            "connection_verify": self.ca_pem,
            "enable_telemetry": False,
            "show_progress": False,
            **kwargs,
        }
        return MLClient(credential, SUBSCRIPTION, RESOURCE_GROUP, WORKSPACE, **options)

    # -- the environment of clients ------------------------------------------------------------

    @staticmethod
    def conflicting_env(environ: Mapping[str, str] | None = None) -> list[str]:
        """Names in ``environ`` (default os.environ) that would send Azure clients elsewhere
        (credentials, managed identity, a current cloud, a metadata URL)."""
        environ = os.environ if environ is None else environ
        return [
            name
            for name in environ
            if name.startswith(("AZURE_", "AZUREML_")) or name in AZURE_UNSET
        ]

    def az_env(self, config_dir: Path, path: str | None = None) -> dict[str, str]:
        """What the test's subprocesses need: the fake ``az`` first on PATH (before ``path``,
        default $PATH), the token it prints, a config dir; and ``*.fake.test`` resolved to the
        fake in any Python subprocess (:mod:`resolver.fake_resolver`: the CLI's or a background
        job's model uploads)."""
        config_dir.mkdir(parents=True, exist_ok=True)
        rest = os.environ.get("PATH", "") if path is None else path
        resolve = fake_resolver.subprocess_env(FAKE_DOMAIN, self.port, os.environ)
        return {
            "PATH": f"{AZ_DIR}{os.pathsep}{rest}",
            AZ_TOKEN_ENV: TOKEN,
            "MODELPORT_FAKE_AZ_SUBSCRIPTION": SUBSCRIPTION,
            "MODELPORT_FAKE_AZ_TENANT": TENANT,
            "AZURE_CONFIG_DIR": str(config_dir),
            "PYTHONPATH": resolve["PYTHONPATH"],
            fake_resolver.RESOLVE_ENV: resolve[fake_resolver.RESOLVE_ENV],
        }

    def cli_env(self, config_dir: Path, base: Mapping[str, str] | None = None) -> dict[str, str]:
        """A whole environment for a CLI subprocess: ``base`` (default os.environ) without
        what :meth:`conflicting_env` names (``AZUREML_CURRENT_CLOUD``, which azure-ai-ml put in
        this process's environment, among them), with the fake ``az``."""
        env = dict(os.environ if base is None else base)
        for name in self.conflicting_env(env):
            del env[name]
        return {**env, **self.az_env(config_dir, env.get("PATH", ""))}

    def scoring_uri(self, endpoint: str) -> str:
        """An endpoint's scoring URI."""
        return f"{self.url}/inference/{endpoint}/score"

    # -- calls and faults --------------------------------------------------------------------------

    def calls(self, service: str | None = None) -> list[Call]:
        """The requests received so far, in order (optionally of one ``service``)."""
        with self._lock:
            return [c for c in self._calls if service is None or c.service == service]

    def sequence(
        self,
        calls: list[Call] | None = None,
        *,
        polls: bool = False,
        reads: bool = True,
        services: tuple[str, ...] = ("arm", "poll"),
    ) -> list[str]:
        """``METHOD short-path`` of each call (default: the ARM calls, LRO polls left out).

        Args:
            calls: the calls to show (default: every call so far).
            polls: keep the LRO status polls (:func:`is_poll`).
            reads: keep GET/HEAD requests (:func:`is_read`: the SDK's incidental lookups).
            services: the services shown.
        """
        chosen = self.calls() if calls is None else calls
        return [
            c.short
            for c in chosen
            if c.service in services and (polls or not is_poll(c)) and (reads or not is_read(c))
        ]

    def clear_calls(self) -> None:
        """Forget the recorded calls."""
        with self._lock:
            self._calls.clear()

    def fail_next(
        self,
        method: str,
        path_regex: str,
        status: int = 500,
        code: str = "InternalServerError",
        message: str = "The fake Azure failed this request on purpose.",
        times: int | None = 1,
        retry_after: int | None = None,
    ) -> None:
        """Answer the next ``times`` requests whose method is ``method`` and whose path (without
        query) matches ``path_regex`` (``re.search``) with ARM's error; ``times=None``: all, until
        :meth:`clear_faults`. ``retry_after`` adds a ``Retry-After`` header (throttling: 429)."""
        with self._lock:
            self._faults.append(
                _Fault(
                    method.upper(),
                    re.compile(path_regex),
                    status,
                    code,
                    message,
                    times,
                    retry_after,
                )
            )

    def fail_provisioning(
        self, deployment_regex: str, message: str = "User container has crashed or terminated."
    ) -> None:
        """The next deployment whose name matches ``deployment_regex`` (``re.fullmatch``) fails
        to provision as if its container crashed, with ``message``."""
        with self._lock:
            self._crashes.append((re.compile(deployment_regex), message))

    def clear_faults(self) -> None:
        """Remove every pending fault."""
        with self._lock:
            self._faults.clear()
            self._crashes.clear()

    def _take_fault(self, request: Request) -> _Fault | None:
        with self._lock:
            for fault in self._faults:
                if fault.method == request.method and fault.path.search(request.path):
                    if fault.remaining is not None:
                        fault.remaining -= 1
                        if fault.remaining <= 0:
                            self._faults.remove(fault)
                    return fault
        return None

    def _take_crash(self, deployment: str) -> str | None:
        with self._lock:
            for entry in self._crashes:
                if entry[0].fullmatch(deployment):
                    self._crashes.remove(entry)
                    return entry[1]
        return None

    # -- state views ---------------------------------------------------------------------------

    def endpoints(self) -> dict[str, dict[str, Any]]:
        """Every endpoint as ARM shows it, by name."""
        with self._lock:
            return {name: self._endpoint_doc(e) for name, e in self._endpoints.items()}

    def endpoint(self, name: str) -> dict[str, Any] | None:
        """One endpoint as ARM shows it (None: there is none)."""
        with self._lock:
            found = self._endpoints.get(name)
            return None if found is None else self._endpoint_doc(found)

    def deployments(self, endpoint: str) -> dict[str, dict[str, Any]]:
        """The endpoint's deployments as ARM shows them, by name (empty: no such endpoint)."""
        with self._lock:
            found = self._endpoints.get(endpoint)
            if found is None:
                return {}
            return {n: self._deployment_doc(d) for n, d in found.deployments.items()}

    def environments(self) -> dict[str, list[str]]:
        """{environment name: its versions, sorted}."""
        return self._versions("environments")

    def environment(self, name: str, version: str) -> dict[str, Any] | None:
        """One environment version as ARM shows it."""
        return self._version("environments", name, version)

    def models(self) -> dict[str, list[str]]:
        """{model name: its versions, sorted}."""
        return self._versions("models")

    def model(self, name: str, version: str) -> dict[str, Any] | None:
        """One model version as ARM shows it."""
        return self._version("models", name, version)

    def _store(self, kind: str) -> dict[str, dict[str, _Asset]]:
        return self._environments if kind == "environments" else self._models

    def _versions(self, kind: str) -> dict[str, list[str]]:
        with self._lock:
            return {n: _sorted_versions(v) for n, v in self._store(kind).items() if v}

    def _version(self, kind: str, name: str, version: str) -> dict[str, Any] | None:
        with self._lock:
            found = self._store(kind).get(name, {}).get(version)
            return None if found is None else self._asset_doc(kind, found)

    def blobs(self) -> dict[str, bytes]:
        """Every blob of the datastore's container, by name."""
        with self._lock:
            return {name: blob.data for name, blob in sorted(self._blobs.items())}

    def blob_metadata(self, name: str) -> dict[str, str] | None:
        """A blob's metadata (None: no such blob)."""
        with self._lock:
            found = self._blobs.get(name)
            return None if found is None else dict(found.metadata)

    def scoring_requests(self, endpoint: str | None = None) -> list[Scored]:
        """Every scoring request answered (mirrored copies included), oldest first."""
        with self._lock:
            return [s for s in self._scored if endpoint is None or s.endpoint == endpoint]

    def host(self, endpoint: str, deployment: str) -> dict[str, Any] | None:
        """The deployment's host (serving, else the last started): kind, image, env, url, port,
        ident, pid (process), lines, stopped, model_dir, root, routes."""
        with self._lock:
            found = self._endpoints.get(endpoint)
            record = found.deployments.get(deployment) if found is not None else None
            serving = record.host if record is not None else None
            chosen = next((p for p in self._history if p.host is serving), None) or next(
                (
                    p
                    for p in reversed(self._history)
                    if (p.endpoint, p.deployment) == (endpoint, deployment)
                ),
                None,
            )
        return None if chosen is None else self._describe_host(chosen)

    def hosts(self) -> list[dict[str, Any]]:
        """Every host started since the last reset (stopped ones too), oldest first."""
        with self._lock:
            chosen = list(self._history)
        return [self._describe_host(p) for p in chosen]

    @staticmethod
    def _describe_host(placed: _Placed) -> dict[str, Any]:
        info = placed.host.describe()
        info.setdefault("pid", None)
        info.update(
            endpoint=placed.endpoint,
            deployment=placed.deployment,
            lines=placed.host.lines(),
            image=placed.image,
            model_dir=placed.model_dir,
            root=placed.root,
            routes=placed.routes,
        )
        return info

    # -- dispatch ----------------------------------------------------------------------------------

    def _dispatch(self, request: Request) -> Response:
        service = self._service_of(request)
        call = Call(
            service,
            request.method,
            request.path,
            dict(request.query),
            request.json(),
            dict(request.headers),
        )
        with self._lock:
            self._calls.append(call)
        try:
            response = self._answer(service, request)
        except ArmError as error:
            response = error.response()
        except Exception as exc:  # a bug of the fake: ARM's 500, with what went wrong
            response = ArmError(
                500, "InternalServerError", f"fake Azure bug: {type(exc).__name__}: {exc}"
            ).response()
        call.status = response.status
        return response

    @staticmethod
    def _service_of(request: Request) -> str:
        host = request.host.split(":", 1)[0]
        if host.endswith("." + FAKE_DOMAIN) or host == FAKE_DOMAIN:
            return "blob"
        if request.path.startswith("/inference/"):
            return "scoring"
        if request.path.startswith("/metadata/"):
            return "metadata"
        if _OPERATION_PATH.match(request.path):
            return "poll"
        return "arm"

    def _answer(self, service: str, request: Request) -> Response:
        if service == "metadata":
            return self._metadata(request)
        if service == "blob":
            return self._blob(request)
        if service == "scoring":
            return self._score(request)
        self._authenticate(request)
        fault = self._take_fault(request)
        if fault is not None:
            headers = (
                {"Retry-After": str(fault.retry_after)} if fault.retry_after is not None else {}
            )
            raise ArmError(fault.status, fault.code, fault.message, headers)
        if service == "poll":
            return self._poll(request)
        return self._arm(request)

    @staticmethod
    def _authenticate(request: Request) -> None:
        challenge = {
            "WWW-Authenticate": f'Bearer authorization_uri="https://127.0.0.1/{TENANT}", '
            'error="invalid_token", error_description="The access token is missing or invalid"'
        }
        header = request.headers.get("authorization", "")
        if not header:
            raise ArmError(
                401,
                "AuthenticationFailed",
                "Authentication failed. The 'Authorization' header is missing.",
                challenge,
            )
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or token != TOKEN:
            raise ArmError(
                401,
                "InvalidAuthenticationToken",
                "The access token is invalid.",
                challenge,
            )

    # -- cloud metadata --------------------------------------------------------------------------

    def _metadata(self, request: Request) -> Response:
        if request.method != "GET" or request.path.rstrip("/") != "/metadata/endpoints":
            raise ArmError(404, "NotFound", f"No metadata at {request.path}.")
        return json_response(200, self.arm_metadata())

    def arm_metadata(self) -> dict[str, Any]:
        """The cloud's metadata as ARM serves it at ``/metadata/endpoints`` (one cloud)."""
        return {
            "name": CLOUD,
            "portal": f"{self.url}/portal/",
            "resourceManager": self.resource_manager_url,
            "authentication": {
                "loginEndpoint": f"{self.url}/login/",
                "audiences": [self.resource_manager_url, "https://management.fake.test/"],
                "tenant": "common",
                "identityProvider": "AAD",
            },
            "media": f"{self.url}/media/",
            "graphAudience": f"{self.url}/graph/",
            "graph": f"{self.url}/graph/",
            "batch": f"{self.url}/batch/",
            "gallery": f"{self.url}/gallery/",
            "sqlManagement": f"{self.url}/sql/",
            "microsoftGraphResourceId": f"{self.url}/msgraph/",
            "appInsightsResourceId": f"{self.url}/appinsights/",
            "appInsightsTelemetryChannelResourceId": f"{self.url}/appinsights-channel/",
            "attestationResourceId": f"{self.url}/attestation/",
            "synapseAnalyticsResourceId": f"{self.url}/synapse/",
            "logAnalyticsResourceId": f"{self.url}/loganalytics/",
            "ossrDbmsResourceId": f"{self.url}/ossrdbms/",
            "suffixes": {
                "storage": STORAGE_SUFFIX,
                "keyVaultDns": "vault.fake.test",
                "acrLoginServer": "azurecr.fake.test",
                "sqlServerHostname": "database.fake.test",
                "azureDatalakeStoreFileSystem": "azuredatalakestore.fake.test",
                "azureDatalakeAnalyticsCatalogAndJob": "azuredatalakeanalytics.fake.test",
                "mhsmDns": "managedhsm.fake.test",
                "mysqlServerEndpoint": "mysql.database.fake.test",
                "postgresqlServerEndpoint": "postgres.database.fake.test",
                "mariadbServerEndpoint": "mariadb.database.fake.test",
                "synapseAnalytics": "dev.azuresynapse.fake.test",
                "attestationEndpoint": "attest.fake.test",
            },
            "batchResourceId": f"{self.url}/batch/",
            "activeDirectoryDataLake": f"{self.url}/datalake/",
        }

    # -- ARM routing -----------------------------------------------------------------------------

    def _arm(self, request: Request) -> Response:
        match = _WORKSPACE_PATH.match(request.path)
        if not match:
            raise ArmError(
                404,
                "InvalidResourceType" if request.path.startswith("/subscriptions/") else "NotFound",
                f"The resource type could not be found for {request.path}.",
            )
        if match.group("sub") != SUBSCRIPTION:
            raise ArmError(
                404,
                "SubscriptionNotFound",
                f"The subscription '{match.group('sub')}' could not be found.",
            )
        if match.group("rg").lower() != RESOURCE_GROUP:
            raise ArmError(
                404,
                "ResourceGroupNotFound",
                f"Resource group '{match.group('rg')}' could not be found.",
            )
        if match.group("ws").lower() != WORKSPACE:
            raise not_found_workspace(match.group("ws"))
        parts = [p for p in (match.group("rest") or "").split("/") if p]
        method = request.method
        kind = parts[0].lower() if parts else ""
        # Handlers take the lock themselves: a synchronous LRO waits without holding it.
        if not parts:
            if method == "GET":
                return json_response(200, self._workspace_doc())
        elif kind == "onlineendpoints":
            return self._online(request, parts[1:])
        elif kind in ("environments", "models"):
            return self._assets(request, kind, parts[1:])
        elif kind == "datastores":
            return self._datastores(request, parts[1:])
        raise ArmError(
            405 if not parts else 404,
            "NotFound",
            f"No route for {method} {request.path} in the fake Azure.",
        )

    # -- documents -------------------------------------------------------------------------------

    def _workspace_doc(self) -> dict[str, Any]:
        group = f"/subscriptions/{SUBSCRIPTION}/resourceGroups/{RESOURCE_GROUP}/providers"
        return {
            "id": WORKSPACE_ID,
            "name": WORKSPACE,
            "type": f"{PROVIDER}/workspaces",
            "location": LOCATION,
            "kind": "Default",
            "tags": {},
            "sku": {"name": "Basic", "tier": "Basic"},
            "identity": {
                "type": "SystemAssigned",
                "principalId": "00000000-0000-0000-0000-0000000000dd",
                "tenantId": TENANT,
            },
            "properties": {
                "friendlyName": WORKSPACE,
                "workspaceId": "00000000-0000-0000-0000-0000000000cc",
                "provisioningState": "Succeeded",
                "creationTime": "2024-01-01T00:00:00.0000000Z",
                "storageAccount": f"{group}/Microsoft.Storage/storageAccounts/{STORAGE_ACCOUNT}",
                "keyVault": f"{group}/Microsoft.KeyVault/vaults/kv-modelport",
                "applicationInsights": f"{group}/Microsoft.Insights/components/ai-modelport",
                "containerRegistry": f"{group}/Microsoft.ContainerRegistry/registries/acrmodelport",
                "discoveryUrl": f"{self.url}/discovery",
                "mlFlowTrackingUri": f"azureml://{LOCATION}.api.azureml.ms/mlflow/v1.0{WORKSPACE_ID}",
                "hbiWorkspace": False,
                "publicNetworkAccess": "Enabled",
                "v1LegacyMode": False,
                "systemDatastoresAuthMode": "AccessKey",
            },
            "systemData": _system_data("2024-01-01T00:00:00.000000Z"),
        }

    def _endpoint_id(self, name: str) -> str:
        return f"{WORKSPACE_ID}/onlineEndpoints/{name}"

    def _endpoint_doc(self, endpoint: _Endpoint) -> dict[str, Any]:
        body = endpoint.body
        props = dict(endpoint.properties)
        props.update(
            provisioningState=endpoint.state,
            scoringUri=self.scoring_uri(endpoint.name),
            swaggerUri=f"{self.url}/inference/{endpoint.name}/swagger.json",
            traffic=endpoint.traffic,
            mirrorTraffic=endpoint.mirror_traffic,
        )
        props.setdefault("authMode", "Key")
        props.setdefault("publicNetworkAccess", "Enabled")
        props["properties"] = {
            **(props.get("properties") or {}),
            "azureml.onlineendpointid": self._endpoint_id(endpoint.name).lower(),
        }
        identity = dict(body.get("identity") or {"type": "SystemAssigned"})
        if identity.get("type", "").lower().startswith("systemassigned"):
            identity.setdefault("principalId", str(uuid.uuid5(uuid.NAMESPACE_URL, endpoint.name)))
            identity.setdefault("tenantId", TENANT)
        return {
            "id": self._endpoint_id(endpoint.name),
            "name": endpoint.name,
            "type": f"{PROVIDER}/workspaces/onlineEndpoints",
            "location": body.get("location") or LOCATION,
            "kind": body.get("kind") or "Managed",
            "tags": dict(body.get("tags") or {}),
            "identity": identity,
            "properties": props,
            "systemData": _system_data(endpoint.created, endpoint.modified),
        }

    def _deployment_doc(self, deployment: _Deployment) -> dict[str, Any]:
        body = deployment.body
        props = deployment.properties()
        # What Azure fills in when the PUT leaves it out (the SDK's deserializer needs
        # scaleSettings).
        for key, default in DEPLOYMENT_DEFAULTS.items():
            props[key] = {**default, **(props.get(key) or {})}
        props["provisioningState"] = deployment.state
        doc = {
            "id": f"{self._endpoint_id(deployment.endpoint)}/deployments/{deployment.name}",
            "name": deployment.name,
            "type": f"{PROVIDER}/workspaces/onlineEndpoints/deployments",
            "location": body.get("location") or LOCATION,
            "kind": body.get("kind") or "Managed",
            "tags": dict(body.get("tags") or {}),
            "sku": dict(body.get("sku") or {"name": "Default", "tier": "Standard", "capacity": 1}),
            "properties": props,
            "systemData": _system_data(deployment.created, deployment.modified),
        }
        if body.get("identity"):
            doc["identity"] = body["identity"]
        return doc

    def _asset_doc(self, kind: str, asset: _Asset) -> dict[str, Any]:
        props = dict(asset.body.get("properties") or {})
        props.setdefault("isArchived", False)
        props.setdefault("isAnonymous", False)
        props.setdefault("tags", {})
        props.setdefault("properties", {})
        props["provisioningState"] = "Succeeded"
        if kind == "environments":
            props.setdefault("environmentType", "UserCreated")
            props.setdefault("osType", "Linux")
            props.setdefault("autoRebuild", "Disabled")
        else:
            # The SDK's model deserializer needs flavors.
            props["flavors"] = props.get("flavors") or {}
            props.setdefault("modelType", "custom_model")
        return {
            "id": f"{WORKSPACE_ID}/{kind}/{asset.name}/versions/{asset.version}",
            "name": asset.version,
            "type": f"{PROVIDER}/workspaces/{kind}/versions",
            "properties": props,
            "systemData": _system_data(asset.created, asset.modified),
        }

    def _container_doc(self, kind: str, name: str) -> dict[str, Any]:
        versions = self._store(kind).get(name, {})
        extra = self._containers.get((kind, name), {})
        ordered = _sorted_versions(versions)
        numeric = [int(v) for v in ordered if v.isdigit()]
        props = {
            "description": extra.get("description"),
            "tags": dict(extra.get("tags") or {}),
            "properties": dict(extra.get("properties") or {}),
            "isArchived": bool(extra.get("isArchived", False)),
            "latestVersion": ordered[-1] if ordered else None,
            "nextVersion": str(max(numeric) + 1) if numeric else "1",
            "provisioningState": "Succeeded",
        }
        created = min((a.created for a in versions.values()), default=_now())
        return {
            "id": f"{WORKSPACE_ID}/{kind}/{name}",
            "name": name,
            "type": f"{PROVIDER}/workspaces/{kind}",
            "properties": props,
            "systemData": _system_data(created),
        }

    def _page(self, request: Request, items: list[dict[str, Any]]) -> Response:
        """One page of ``items`` (``$skipToken`` is the offset); ``nextLink`` when more."""
        skip = int(request.query.get("$skipToken") or 0)
        doc: dict[str, Any] = {"value": items[skip : skip + self.page_size]}
        if skip + self.page_size < len(items):
            query = {**request.query, "$skipToken": str(skip + self.page_size)}
            doc["nextLink"] = f"{self.url}{request.path}?{urllib.parse.urlencode(query)}"
        return json_response(200, doc)

    # -- long-running operations -----------------------------------------------------------------

    def _operation(self) -> _Operation:
        op = _Operation(f"{uuid.uuid4()}")
        with self._lock:
            self._operations[op.id] = op
        return op

    def _operation_urls(self, op: _Operation, request: Request) -> dict[str, str]:
        base = f"{self.url}/subscriptions/{SUBSCRIPTION}/providers/{PROVIDER}/locations/{LOCATION}"
        query = urllib.parse.urlencode(
            {"api-version": request.query.get("api-version", "2023-04-01"), "type": "async"}
        )
        return {
            "Azure-AsyncOperation": f"{base}/mfeOperationsStatus/{op.id}?{query}",
            "Location": f"{base}/mfeOperationResults/{op.id}?{query}",
            # An integer: 0 or no header makes azure-core wait its own 5-30 s between polls.
            "Retry-After": "1",
        }

    def _lro_answer(
        self,
        request: Request,
        op: _Operation,
        status: int,
        document: Callable[[], dict[str, Any] | None],
        wait_s: float,
    ) -> Response:
        """Answer a long-running operation: 201/202 with the status URLs (async), or once
        the work is done (sync: ``status``, 200 for a DELETE)."""
        if self.lro == "sync":
            op.done.wait(wait_s)
            doc = document()
            if request.method == "DELETE":
                return Response(200) if doc is None else json_response(202, doc)
            return json_response(status, doc)
        headers = self._operation_urls(op, request)
        doc = document()
        if request.method == "DELETE" or doc is None:
            return Response(202, headers)
        return json_response(status, doc, headers)

    def _poll(self, request: Request) -> Response:
        match = _OPERATION_PATH.match(request.path)
        assert match is not None
        with self._lock:
            op = self._operations.get(match.group("id"))
        if op is None or request.method != "GET":
            raise ArmError(404, "NotFound", f"No operation {match.group('id')}.")
        # Hold the poll a moment: work that finishes meanwhile is seen without a Retry-After sleep.
        op.done.wait(self.poll_hold_s)
        if match.group("kind").lower() == "mfeoperationsstatus":
            headers = {} if op.done.is_set() else {"Retry-After": "1"}
            return json_response(200, op.document(), headers)
        if not op.done.is_set():
            return Response(202, self._operation_urls(op, request))
        return (
            Response(200)
            if op.status == "Succeeded"
            else json_response(400, {"error": op.error or {"code": "Failed", "message": op.status}})
        )

    def _spawn(self, name: str, target: Callable[..., None], *args: Any) -> None:
        thread = threading.Thread(target=target, args=args, name=name, daemon=True)
        with self._lock:
            self._threads = [t for t in self._threads if t.is_alive()]
            self._threads.append(thread)
        thread.start()

    # -- online endpoints ------------------------------------------------------------------------

    def _endpoint_or_404(self, name: str) -> _Endpoint:
        found = self._endpoints.get(name)
        if found is None:
            raise not_found("onlineEndpoints", name)
        return found

    def _online(self, request: Request, parts: list[str]) -> Response:
        method = request.method
        if not parts:
            if method == "GET":
                with self._lock:
                    docs = [self._endpoint_doc(e) for e in self._endpoints.values()]
                return self._page(request, docs)
        elif len(parts) == 1:
            name = parts[0]
            if method == "GET":
                with self._lock:
                    return json_response(200, self._endpoint_doc(self._endpoint_or_404(name)))
            if method in ("PUT", "PATCH"):
                return self._put_endpoint(request, name)
            if method == "DELETE":
                return self._delete_endpoint(request, name)
        elif len(parts) == 2 and method == "POST":
            return self._endpoint_action(request, parts[0], parts[1].lower())
        elif parts[1].lower() == "deployments":
            return self._deployments_route(request, parts[0], parts[2:])
        raise ArmError(405, "MethodNotAllowed", f"{method} is not allowed on {request.path}.")

    def _endpoint_action(self, request: Request, name: str, action: str) -> Response:
        with self._lock:
            endpoint = self._endpoint_or_404(name)
            mode = str(endpoint.properties.get("authMode", "Key")).lower()
            if action == "listkeys":
                if mode != "key":
                    raise bad_argument(f"Keys are not supported for auth mode {mode} of {name}.")
                primary, secondary = endpoint.keys
                return json_response(200, {"primaryKey": primary, "secondaryKey": secondary})
            if action == "token":
                if mode != "amltoken":
                    raise bad_argument(f"Tokens are only issued in AMLToken auth mode, not {mode}.")
                token = secrets.token_urlsafe(32)
                endpoint.tokens.add(token)
                now = int(time.time())
                return json_response(
                    200,
                    {
                        "accessToken": token,
                        "expiryTimeUtc": now + 3600,
                        "refreshAfterTimeUtc": now + 1800,
                        "tokenType": "Bearer",
                    },
                )
            if action == "regeneratekeys":
                body = request.json() or {}
                key_type = str(body.get("keyType", "Primary")).lower()
                fresh = base64.b64encode(secrets.token_bytes(24)).decode()
                primary, secondary = endpoint.keys
                endpoint.keys = (fresh, secondary) if key_type == "primary" else (primary, fresh)
                op = self._operation()
                op.finish("Succeeded")
            else:
                raise ArmError(404, "NotFound", f"No action {action} on online endpoints.")
        return self._lro_answer(request, op, 202, lambda: None, 0)

    def _check_traffic(
        self, name: str, props: Mapping[str, Any], deployments: Mapping[str, _Deployment]
    ) -> None:
        """Azure's rules for ``traffic`` and ``mirrorTraffic`` (400 BadArgument otherwise)."""
        tables = {}
        for key in ("traffic", "mirrorTraffic"):
            table = props.get(key) or {}
            if not isinstance(table, dict):
                raise bad_argument(f"{key} must be a map of deployment name to percentage.")
            for deployment, value in table.items():
                if isinstance(value, bool) or not isinstance(value, int):
                    raise bad_argument(
                        f"Traffic for deployment '{deployment}' must be an integer, got {value!r}."
                    )
                if not 0 <= value <= 100:
                    raise bad_argument(
                        f"Traffic for deployment '{deployment}' must be between 0 and 100, "
                        f"got {value}."
                    )
                if deployment not in deployments:
                    raise bad_argument(
                        f"The deployment '{deployment}' named in {key} does not exist in "
                        f"endpoint '{name}'."
                    )
            tables[key] = table
        total = sum(tables["traffic"].values())
        if total not in (0, 100):
            raise bad_argument(
                f"Traffic for endpoint '{name}' must add up to 100 (or be 0 everywhere); "
                f"it adds up to {total}."
            )
        mirrored = {d: v for d, v in tables["mirrorTraffic"].items() if v > 0}
        if len(mirrored) > 1:
            raise bad_argument("Mirror traffic can go to one deployment only.")
        for deployment, value in mirrored.items():
            if value > 50:
                raise bad_argument(
                    f"Mirror traffic for deployment '{deployment}' cannot exceed 50%, got {value}."
                )
            if tables["traffic"].get(deployment, 0) > 0:
                raise bad_argument(
                    f"Deployment '{deployment}' receives live traffic: it cannot also receive "
                    "mirror traffic."
                )

    def _put_endpoint(self, request: Request, name: str) -> Response:
        body = request.json()
        if not isinstance(body, dict):
            raise bad_argument("The request body must be a JSON object.")
        if not ENDPOINT_NAME.match(name):
            raise bad_argument(
                f"Endpoint name '{name}' is invalid: it must be 3 to 32 characters long, begin "
                "with a letter, and contain only letters, digits and '-' (not at the end)."
            )
        with self._lock:
            existing = self._endpoints.get(name)
            if request.method == "PATCH":
                if existing is None:
                    raise not_found("onlineEndpoints", name)
                merged = json.loads(json.dumps(existing.body))
                for key in ("tags", "identity", "kind", "sku"):
                    if key in body:
                        merged[key] = body[key]
                merged.setdefault("properties", {}).update(body.get("properties") or {})
                body = merged
            props = body.get("properties")
            if not isinstance(props, dict) or not props.get("authMode"):
                raise bad_argument("properties.authMode is required for an online endpoint.")
            if existing is None and name in self.taken_endpoint_names:
                raise ArmError(
                    409,
                    "Conflict",
                    f"An endpoint named '{name}' already exists in region {LOCATION}: endpoint "
                    "names must be unique in a region.",
                )
            if existing is not None:
                if existing.state in ("Creating", "Updating", "Deleting"):
                    raise ArmError(
                        409,
                        "Conflict",
                        f"Endpoint '{name}' is {existing.state.lower()}: another operation is in "
                        "progress. Please retry when it has finished.",
                    )
                if (body.get("kind") or "Managed") != (existing.body.get("kind") or "Managed"):
                    raise ArmError(
                        409,
                        "Conflict",
                        f"An endpoint named '{name}' of kind {existing.body.get('kind')} already "
                        "exists: its kind cannot be changed.",
                    )
            self._check_traffic(name, props, existing.deployments if existing else {})
            body = json.loads(json.dumps(body))
            if existing is None:
                endpoint = _Endpoint(
                    name,
                    body,
                    keys=(
                        base64.b64encode(secrets.token_bytes(24)).decode(),
                        base64.b64encode(secrets.token_bytes(24)).decode(),
                    ),
                )
                self._endpoints[name] = endpoint
                status = 201
            else:
                endpoint = existing
                endpoint.body = body
                endpoint.state = "Updating"
                endpoint.modified = _now()
                status = 200
            op = self._operation()
            doc = self._endpoint_doc(endpoint)

        def settle() -> None:
            with self._lock:
                if self._endpoints.get(name) is endpoint and endpoint.state != "Deleting":
                    endpoint.state = "Succeeded"
                    endpoint.modified = _now()
            op.finish("Succeeded")

        if self.endpoint_delay_s > 0:
            endpoint.timer = threading.Timer(self.endpoint_delay_s, settle)
            endpoint.timer.daemon = True
            endpoint.timer.start()
        elif self.lro == "sync":
            settle()
            with self._lock:
                doc = self._endpoint_doc(endpoint)
        else:
            settle()  # the PUT's body still says Creating/Updating, as Azure's does
        return self._lro_answer(
            request,
            op,
            status,
            lambda: doc if self.lro == "async" else self._doc_of(name),
            self.endpoint_delay_s + 30,
        )

    def _doc_of(self, name: str) -> dict[str, Any] | None:
        with self._lock:
            found = self._endpoints.get(name)
            return None if found is None else self._endpoint_doc(found)

    def _delete_endpoint(self, request: Request, name: str) -> Response:
        with self._lock:
            endpoint = self._endpoints.get(name)
            if endpoint is None:
                return Response(204)
            if endpoint.state in ("Creating", "Updating", "Deleting"):
                raise ArmError(
                    409,
                    "Conflict",
                    f"Endpoint '{name}' is {endpoint.state.lower()}: another operation is in "
                    "progress. Please retry when it has finished.",
                )
            endpoint.state = "Deleting"
            op = self._operation()
            deployments = list(endpoint.deployments.values())
            for deployment in deployments:
                deployment.state = "Deleting"
                deployment.cancel.set()

        def work() -> None:
            for deployment in deployments:
                for host in list(deployment.hosts):
                    self._retire(host)
            with self._lock:
                if self._endpoints.get(name) is endpoint:
                    del self._endpoints[name]
            op.finish("Succeeded")

        self._spawn(f"fake-azure-delete-{name}", work)
        return self._lro_answer(request, op, 202, lambda: self._doc_of(name), 120)

    # -- deployments -------------------------------------------------------------------------------

    def _deployments_route(self, request: Request, endpoint: str, parts: list[str]) -> Response:
        method = request.method
        if not parts:
            if method == "GET":
                with self._lock:
                    found = self._endpoint_or_404(endpoint)
                    docs = [self._deployment_doc(d) for d in found.deployments.values()]
                return self._page(request, docs)
        elif len(parts) == 1:
            if method == "GET":
                with self._lock:
                    return json_response(
                        200, self._deployment_doc(self._deployment(endpoint, parts[0]))
                    )
            if method in ("PUT", "PATCH"):
                return self._put_deployment(request, endpoint, parts[0])
            if method == "DELETE":
                return self._delete_deployment(request, endpoint, parts[0])
        elif len(parts) == 2 and parts[1].lower() == "getlogs" and method == "POST":
            return self._get_logs(request, endpoint, parts[0])
        elif len(parts) == 2 and parts[1].lower() == "skus" and method == "GET":
            with self._lock:
                self._deployment(endpoint, parts[0])
            return json_response(200, {"value": []})
        raise ArmError(405, "MethodNotAllowed", f"{method} is not allowed on {request.path}.")

    def _deployment(self, endpoint: str, name: str) -> _Deployment:
        found = self._endpoint_or_404(endpoint).deployments.get(name)
        if found is None:
            raise not_found(f"onlineEndpoints/{endpoint}/deployments", name)
        return found

    def _check_deployment_body(self, name: str, body: Any) -> None:
        """What Azure checks in a deployment's PUT before accepting it."""
        if not isinstance(body, dict) or not isinstance(body.get("properties"), dict):
            raise bad_argument("The request body must be a JSON object with properties.")
        if not DEPLOYMENT_NAME.match(name):
            raise bad_argument(
                f"Deployment name '{name}' is invalid: it must be 3 to 32 characters long, begin "
                "with a letter, and contain only letters, digits and '-' (not at the end)."
            )
        props = body["properties"]
        if props.get("endpointComputeType") not in ("Managed", "Kubernetes", "AzureMLCompute"):
            raise bad_argument("properties.endpointComputeType must be Managed or Kubernetes.")
        scale = props.get("scaleSettings", {"scaleType": "Default"})
        if not isinstance(scale, dict) or scale.get("scaleType") not in (
            "Default",
            "TargetUtilization",
        ):
            raise bad_argument(
                "properties.scaleSettings.scaleType must be Default or TargetUtilization."
            )
        if props["endpointComputeType"] == "Managed" and not props.get("instanceType"):
            raise bad_argument("properties.instanceType is required for a managed deployment.")
        capacity = (body.get("sku") or {}).get("capacity", 1)
        if not isinstance(capacity, int) or capacity < 1:
            raise bad_argument(
                f"sku.capacity (the instance count) must be at least 1: {capacity!r}."
            )
        if not props.get("environmentId"):
            raise bad_argument("properties.environmentId is required (a custom container).")
        if self._environment_of(props["environmentId"]) is None:
            raise bad_argument(f"The environment {props['environmentId']} does not exist.")
        if props.get("model") and self._model_of(props["model"]) is None:
            raise bad_argument(f"The model {props['model']} does not exist.")

    def _put_deployment(self, request: Request, endpoint_name: str, name: str) -> Response:
        body = request.json()
        with self._lock:
            endpoint = self._endpoint_or_404(endpoint_name)
            existing = endpoint.deployments.get(name)
            if request.method == "PATCH":
                if existing is None:
                    raise not_found(f"onlineEndpoints/{endpoint_name}/deployments", name)
                merged = json.loads(json.dumps(existing.body))
                for key in ("tags", "sku"):
                    if key in (body or {}):
                        merged[key] = body[key]
                merged.setdefault("properties", {}).update((body or {}).get("properties") or {})
                body = merged
            self._check_deployment_body(name, body)
            if endpoint.state != "Succeeded":
                raise ArmError(
                    409,
                    "Conflict",
                    f"Endpoint '{endpoint_name}' is in {endpoint.state} state: deployments can "
                    "only be created or updated once it has Succeeded.",
                )
            if existing is not None and existing.state in ("Creating", "Updating", "Deleting"):
                raise ArmError(
                    409,
                    "Conflict",
                    f"Deployment '{name}' is {existing.state.lower()}: another operation is in "
                    "progress. Please retry when it has finished.",
                )
            body = json.loads(json.dumps(body))
            if existing is None:
                deployment = _Deployment(name, endpoint_name, body)
                endpoint.deployments[name] = deployment
                status = 201
            else:
                deployment = existing
                deployment.body = body
                deployment.state = "Updating"
                deployment.modified = _now()
                deployment.error = None
                status = 200
            op = self._operation()
            doc = self._deployment_doc(deployment)
            generation = self._generation
        self._spawn(
            f"fake-azure-provision-{endpoint_name}-{name}",
            self._provision,
            endpoint,
            deployment,
            op,
            generation,
        )

        def final() -> dict[str, Any]:
            if self.lro == "async":
                return doc
            with self._lock:
                return self._deployment_doc(deployment)

        return self._lro_answer(request, op, status, final, self.startup_timeout + 60)

    def _delete_deployment(self, request: Request, endpoint_name: str, name: str) -> Response:
        with self._lock:
            endpoint = self._endpoint_or_404(endpoint_name)
            deployment = endpoint.deployments.get(name)
            if deployment is None:
                return Response(204)
            live = endpoint.traffic.get(name, 0)
            mirrored = endpoint.mirror_traffic.get(name, 0)
            if live > 0 or mirrored > 0:
                kind = "traffic" if live > 0 else "mirror traffic"
                raise bad_argument(
                    f"Deployment '{name}' cannot be deleted: it receives {kind} "
                    f"({live if live > 0 else mirrored}%). Set its {kind} to 0 first."
                )
            if deployment.state in ("Deleting",) or endpoint.state != "Succeeded":
                raise ArmError(
                    409,
                    "Conflict",
                    f"Deployment '{name}' cannot be deleted now: another operation is in "
                    "progress on it or its endpoint. Please retry when it has finished.",
                )
            deployment.state = "Deleting"
            deployment.cancel.set()
            op = self._operation()

        def work() -> None:
            for host in list(deployment.hosts):
                self._retire(host)
            with self._lock:
                if endpoint.deployments.get(name) is deployment:
                    del endpoint.deployments[name]
            op.finish("Succeeded")

        self._spawn(f"fake-azure-delete-{endpoint_name}-{name}", work)
        return self._lro_answer(request, op, 202, lambda: None, 120)

    def _get_logs(self, request: Request, endpoint: str, name: str) -> Response:
        body = request.json() or {}
        with self._lock:
            deployment = self._deployment(endpoint, name)
            container = str(body.get("containerType") or "InferenceServer")
            if container.lower() == "storageinitializer":
                lines = list(deployment.storage_lines)
            elif container.lower() == "inferenceserver":
                host = deployment.host or (deployment.hosts[-1] if deployment.hosts else None)
                lines = host.lines() if host is not None else list(deployment.lines)
            else:
                raise bad_argument(f"Unknown containerType {container}.")
        tail = body.get("tail")
        if isinstance(tail, int) and tail >= 0:
            lines = lines[-tail:] if tail else []
        return json_response(200, {"content": "\n".join(lines)})

    # -- provisioning: a host per deployment ---------------------------------------------------

    def _environment_of(self, environment_id: str) -> _Asset | None:
        match = re.search(r"/environments/([^/]+)/versions/([^/]+)$", environment_id, re.I)
        if not match:
            return None
        return self._environments.get(match.group(1), {}).get(match.group(2))

    def _model_of(self, model_id: str) -> _Asset | None:
        match = re.search(r"/models/([^/]+)/versions/([^/]+)$", model_id, re.I) or re.fullmatch(
            r"azureml:([^:]+):([^:]+)", model_id
        )
        if not match:
            return None
        return self._models.get(match.group(1), {}).get(match.group(2))

    def _current(self, endpoint: _Endpoint, deployment: _Deployment, generation: int) -> bool:
        return (
            self._generation == generation
            and self._endpoints.get(endpoint.name) is endpoint
            and endpoint.deployments.get(deployment.name) is deployment
            and not deployment.cancel.is_set()
        )

    def _provision(
        self, endpoint: _Endpoint, deployment: _Deployment, op: _Operation, generation: int
    ) -> None:
        """Start the deployment's host and wait until ready; then Succeeded, else Failed."""
        placed: _Placed | None = None
        try:
            placed = self._place(endpoint, deployment, generation)
            error = None
        except ProvisioningFailure as failure:
            error = {"code": failure.code, "message": failure.reason}
        except Exception as exc:  # a bug of the fake: the deployment says so instead of hanging
            error = {
                "code": "InternalServerError",
                "message": f"fake Azure bug: {type(exc).__name__}: {exc}",
            }
        old = None
        with self._lock:
            if self._current(endpoint, deployment, generation):
                if error is None:
                    assert placed is not None
                    old, deployment.host = deployment.host, placed.host
                    deployment.state = "Succeeded"
                else:
                    deployment.state = "Failed"
                    deployment.error = error
                deployment.modified = _now()
            elif placed is not None:
                old, placed = placed.host, None
        if old is not None:
            self._retire(old)
        op.finish("Succeeded" if error is None else "Failed", error)

    def _place(self, endpoint: _Endpoint, deployment: _Deployment, generation: int) -> _Placed:
        """Pull, start and wait for one host of ``deployment``.

        Raises:
            ProvisioningFailure: with Azure's code and message.
        """
        props = deployment.properties()
        crash = self._take_crash(deployment.name)
        if crash is not None:
            deployment.lines = [f"fake Azure: the container crashed on purpose: {crash}"]
            raise ProvisioningFailure("ResourceNotReady", crash)
        with self._lock:
            environment = self._environment_of(str(props.get("environmentId")))
            model = self._model_of(str(props["model"])) if props.get("model") else None
        if environment is None:
            raise ProvisioningFailure(
                "BadArgument", f"No environment {props.get('environmentId')}."
            )
        env_props = environment.body.get("properties") or {}
        image = env_props.get("image")
        if not image:
            raise ProvisioningFailure("BadArgument", "The environment has no image to run.")
        routes = _routes(env_props.get("inferenceConfig") or {})
        ports = {route["port"] for route in routes.values()}
        if len(ports) != 1:
            raise ProvisioningFailure(
                "BadArgument", f"The fake Azure serves one port per container, not {sorted(ports)}."
            )
        assert self._workdir is not None
        root = Path(tempfile.mkdtemp(prefix=f"host-{deployment.name}-", dir=self._workdir))
        os.chmod(root, 0o755)
        model_dir = None
        if model is not None:
            model_dir = root / MODEL_MOUNT_ROOT.lstrip("/") / model.name / model.version
            deployment.storage_lines = self._download_model(model, model_dir)
        variables = {str(k): str(v) for k, v in (props.get("environmentVariables") or {}).items()}
        host = self._new_host(deployment, image, variables, routes, root, model, model_dir)
        placed = _Placed(endpoint.name, deployment.name, host, image, root, model_dir, routes)
        with self._lock:
            if not self._current(endpoint, deployment, generation):
                shutil.rmtree(root, ignore_errors=True)
                raise ProvisioningFailure("Canceled", "The deployment was deleted or reset.")
            deployment.hosts.append(host)
            self._history.append(placed)
        probe = {**DEFAULT_PROBE, **(props.get("readinessProbe") or {})}
        budget = iso_seconds(probe.get("initialDelay"), 10) + iso_seconds(
            probe.get("period"), 10
        ) * int(probe.get("failureThreshold") or 30)
        try:
            host.start()
            host.wait_ready(
                routes["readiness"]["path"],
                min(budget, self.startup_timeout),
                deployment.cancel,
                reason="Readiness probe failed",
                probe_timeout=iso_seconds(probe.get("timeout"), 2),
            )
        except HostFailure as failure:
            exited = host.exit_status() is not None
            self._retire(host, keep_root=True)
            tail = host.lines()[-20:]
            if exited:
                message = (
                    f"User container has crashed or terminated: {failure.detail or failure.reason}."
                )
            elif "pull" in failure.reason.lower():
                message = f"{failure.reason} {failure.detail}".strip()
            else:
                message = (
                    f"{failure.reason}: {failure.detail}." if failure.detail else failure.reason
                )
            message += " Please see troubleshooting guide, available here: https://aka.ms/oe-tsg#error-resourcenotready"
            if tail:
                message += "\nLast log lines:\n" + "\n".join(tail)
            code = "ImagePullFailure" if "pull" in failure.reason.lower() else "ResourceNotReady"
            raise ProvisioningFailure(code, message) from None
        return placed

    def _new_host(
        self,
        deployment: _Deployment,
        image: str,
        variables: dict[str, str],
        routes: dict[str, dict[str, Any]],
        root: Path,
        model: _Asset | None,
        model_dir: Path | None,
    ) -> Host:
        name = f"fake-azure-{deployment.endpoint}-{deployment.name}"
        if self.hosting == "process":
            assert self._images is not None
            try:
                _digest, image_env, package = self._images.package(image)
            except HostFailure as failure:
                raise ProvisioningFailure(
                    "ImagePullFailure", f"{failure.reason} {failure.detail}".strip()
                ) from None
            if package is not None:
                (root / "opt/modelport").mkdir(parents=True, exist_ok=True)
                (root / IMAGE_PACKAGE_DIR).symlink_to(package, target_is_directory=True)
            # The image's ENV with container paths under this host's root (PATH is the venv's:
            # this machine's stays).
            env = {k: _in_root(v, root) for k, v in image_env.items() if k != "PATH"}
            env.update({k: _in_root(v, root) for k, v in variables.items()})
            if model_dir is not None:
                env[MODEL_DIR_ENV] = str(model_dir)
            env["MODELPORT_HOST"] = "127.0.0.1"  # never listen beyond this machine
            env.setdefault("MODELPORT_WORKERS", "1")  # the tests' machines have 2 cores
            port = free_port()
            return ProcessHost(
                name=name,
                port=port,
                env=env,
                stop_timeout=self.stop_timeout,
                argv=[
                    sys.executable,
                    "-m",
                    "modelport.image.entrypoint",
                    "serve",
                    "--port",
                    str(port),
                ],
                cwd=str(root),
            )
        if self.hosting == "container":
            env = dict(variables)
            volumes = {}
            if model is not None and model_dir is not None:
                mount = f"{MODEL_MOUNT_ROOT}/{model.name}/{model.version}"
                env[MODEL_DIR_ENV] = mount
                volumes[str(model_dir)] = {"bind": mount, "mode": "ro"}
            labels = self.container_labels
            if labels is None:
                from docker_fixtures import run_labels

                labels = run_labels()
            return ContainerHost(
                name=name,
                env=env,
                stop_timeout=self.stop_timeout,
                client=self._docker_client(),
                image=image,
                command=None,  # the image's own CMD, as Azure runs it
                container_port=routes["scoring"]["port"],
                volumes=volumes,
                labels={**labels, "dev.modelport.fake-azure": deployment.endpoint},
                subject=f"deployment {deployment.name}",
            )
        raise ValueError(f"unknown hosting {self.hosting!r}: 'process' or 'container'")

    def _docker_client(self) -> Any:
        with self._lock:
            if self._docker is None:
                import docker

                base_url = os.environ.get("DOCKER_HOST")
                if not base_url:
                    raise ProvisioningFailure(
                        "InternalServerError", "container hosting needs DOCKER_HOST"
                    )
                self._docker = docker.DockerClient(base_url=base_url, timeout=600)
            return self._docker

    def _download_model(self, model: _Asset, dest: Path) -> list[str]:
        """The model's blobs into ``dest`` as Azure lays them out; the storage initializer's log.

        Raises:
            ProvisioningFailure: the model's path has no blobs.
        """
        uri = str((model.body.get("properties") or {}).get("modelUri") or "")
        prefix = _blob_path(uri)
        if prefix is None:
            raise ProvisioningFailure(
                "BadArgument", f"The model's URI {uri!r} is not in a datastore."
            )
        prefix = prefix.strip("/")
        with self._lock:
            chosen = {
                name: blob.data
                for name, blob in self._blobs.items()
                if name == prefix or name.startswith(prefix + "/")
            }
        if not chosen:
            raise ProvisioningFailure(
                "ResourceNotReady",
                f"Model download failed: no blobs under {uri} (StorageInitializer).",
            )
        parent = PurePosixPath(prefix).parent
        lines = [f"Downloading model {model.name}:{model.version} from {uri}"]
        dest.mkdir(parents=True, exist_ok=True)
        for name, data in sorted(chosen.items()):
            relative = (
                PurePosixPath(name).relative_to(parent)
                if str(parent) != "."
                else PurePosixPath(name)
            )
            if ".." in relative.parts:
                raise ProvisioningFailure("BadArgument", f"Unsafe blob name {name}.")
            target = dest.joinpath(*relative.parts)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
            lines.append(f"Downloaded {name} ({len(data)} bytes)")
        # World-readable, like Azure's mount: the container's non-root user reads it.
        for path in [dest, *dest.rglob("*")]:
            os.chmod(path, 0o755 if path.is_dir() else 0o644)
        for parent_dir in dest.parents:
            if self._workdir is not None and parent_dir == self._workdir:
                break
            os.chmod(parent_dir, 0o755)
        mount = f"{MODEL_MOUNT_ROOT}/{model.name}/{model.version}"
        lines.append(f"Model {model.name}:{model.version} is ready at {mount}")
        return lines

    def _retire(self, host: Host, keep_root: bool = False) -> None:
        """Stop a host (its output drained) and remove its root directory."""
        host.stop()
        if keep_root:
            return
        with self._lock:
            placed = next((p for p in self._history if p.host is host), None)
        if placed is not None:
            shutil.rmtree(placed.root, ignore_errors=True)

    def _placed(self, host: Host) -> _Placed | None:
        with self._lock:
            return next((p for p in self._history if p.host is host), None)

    # -- environments and models ---------------------------------------------------------------

    def _assets(self, request: Request, kind: str, parts: list[str]) -> Response:
        kind = "environments" if kind == "environments" else "models"
        store = self._store(kind)
        method = request.method
        with self._lock:
            if not parts:
                if method == "GET":
                    names = sorted(n for n, versions in store.items() if versions)
                    return self._page(request, [self._container_doc(kind, n) for n in names])
            elif len(parts) == 1:
                name = parts[0]
                if method == "GET":
                    if not store.get(name):
                        raise not_found(kind, name)
                    return json_response(200, self._container_doc(kind, name))
                if method in ("PUT", "PATCH"):
                    if not store.get(name):
                        raise not_found(kind, name)
                    props = (request.json() or {}).get("properties") or {}
                    extra = self._containers.setdefault((kind, name), {})
                    for key in ("description", "tags", "properties", "isArchived"):
                        if key in props:
                            extra[key] = props[key]
                    return json_response(200, self._container_doc(kind, name))
            elif len(parts) == 2 and parts[1].lower() == "versions" and method == "GET":
                versions = store.get(name := parts[0], {})
                view = request.query.get("listViewType", "ActiveOnly").lower()
                chosen = [
                    self._asset_doc(kind, versions[v])
                    for v in reversed(_sorted_versions(versions))
                    if view == "all"
                    or (view == "archivedonly")
                    == bool((versions[v].body.get("properties") or {}).get("isArchived"))
                ]
                top = request.query.get("$top")
                return self._page(request, chosen[: int(top)] if top else chosen)
            elif len(parts) == 3 and parts[1].lower() == "versions":
                name, version = parts[0], parts[2]
                if method == "GET":
                    found = store.get(name, {}).get(version)
                    if found is None:
                        raise not_found(f"{kind}/{name}/versions", version)
                    return json_response(200, self._asset_doc(kind, found))
                if method in ("PUT", "PATCH"):
                    return self._put_asset(request, kind, store, name, version)
                if method == "DELETE":
                    versions = store.get(name, {})
                    if version not in versions:
                        return Response(204)
                    del versions[version]
                    if not versions:
                        store.pop(name, None)
                        self._containers.pop((kind, name), None)
                    return Response(200)
        raise ArmError(405, "MethodNotAllowed", f"{method} is not allowed on {request.path}.")

    def _put_asset(
        self,
        request: Request,
        kind: str,
        store: dict[str, dict[str, _Asset]],
        name: str,
        version: str,
    ) -> Response:
        body = request.json()
        if not isinstance(body, dict) or not isinstance(body.get("properties"), dict):
            raise bad_argument("The request body must be a JSON object with properties.")
        if not ASSET_NAME.match(name) or not re.fullmatch(r"[A-Za-z0-9_.-]{1,30}", version):
            raise bad_argument(f"Invalid {kind[:-1]} name or version: {name}:{version}.")
        props = body["properties"]
        if kind == "environments":
            if not props.get("image") and not props.get("build"):
                raise bad_argument("An environment needs an image or a build context.")
            for route in _routes_given(props.get("inferenceConfig") or {}).values():
                if not isinstance(route.get("port"), int) or not str(
                    route.get("path", "")
                ).startswith("/"):
                    raise bad_argument(
                        f"An inference route needs an integer port and a path: {route}."
                    )
        elif not props.get("modelUri"):
            raise bad_argument("A model version needs a modelUri.")
        if request.method == "PATCH":
            existing_asset = store.get(name, {}).get(version)
            if existing_asset is None:
                raise not_found(f"{kind}/{name}/versions", version)
            merged = json.loads(json.dumps(existing_asset.body))
            merged["properties"].update(props)
            body = merged
        body = json.loads(json.dumps(body))
        versions = store.setdefault(name, {})
        existing = versions.get(version)
        if existing is not None:
            # What may change, and what the service fills in (a GET's body sent back is fine).
            ignored = MUTABLE_ASSET_FIELDS | SERVER_ASSET_FIELDS
            before = existing.body.get("properties") or {}
            after = body["properties"]
            changed = [
                k
                for k in set(before) | set(after)
                if k not in ignored and before.get(k) != after.get(k)
            ]
            if changed:
                raise ArmError(
                    409,
                    "UserError",
                    f"A {kind[:-1]} with this name and version already exists ({name}:{version}). "
                    "If you are trying to create a new one, use a different name or version. If "
                    "you are trying to update an existing one, the existing asset's data cannot be "
                    "changed. Only tags, description, and isArchived can be updated.",
                )
            existing.body = body
            existing.modified = _now()
            return json_response(200, self._asset_doc(kind, existing))
        asset = _Asset(name, version, body)
        versions[version] = asset
        return json_response(201, self._asset_doc(kind, asset))

    # -- datastores ------------------------------------------------------------------------------

    def _datastore_doc(self) -> dict[str, Any]:
        return {
            "id": f"{WORKSPACE_ID}/datastores/workspaceblobstore",
            "name": "workspaceblobstore",
            "type": f"{PROVIDER}/workspaces/datastores",
            "properties": {
                "datastoreType": "AzureBlob",
                "accountName": STORAGE_ACCOUNT,
                "containerName": BLOB_CONTAINER,
                "endpoint": STORAGE_SUFFIX,
                "protocol": "https",
                "serviceDataAccessAuthIdentity": "WorkspaceSystemAssignedIdentity",
                "credentials": {"credentialsType": "AccountKey"},
                "isDefault": True,
                "description": None,
                "tags": {},
                "properties": {},
                "subscriptionId": SUBSCRIPTION,
                "resourceGroup": RESOURCE_GROUP,
            },
            "systemData": _system_data("2024-01-01T00:00:00.000000Z"),
        }

    def _datastores(self, request: Request, parts: list[str]) -> Response:
        method = request.method
        if not parts and method == "GET":
            wanted = request.query.get("isDefault", "").lower()
            items = [self._datastore_doc()] if wanted in ("", "true") else []
            return self._page(request, items)
        if parts and parts[0] != "workspaceblobstore":
            raise not_found("datastores", parts[0])
        if len(parts) == 1 and method == "GET":
            return json_response(200, self._datastore_doc())
        if len(parts) == 2 and parts[1].lower() == "listsecrets" and method == "POST":
            return json_response(200, {"secretsType": "AccountKey", "key": self._account_key})
        raise ArmError(405, "MethodNotAllowed", f"{method} is not allowed on {request.path}.")

    # -- blob storage ----------------------------------------------------------------------------

    def _blob(self, request: Request) -> Response:
        account = request.host.split(":", 1)[0].split(".", 1)[0]
        if account != STORAGE_ACCOUNT or ".blob." not in request.host:
            return _storage_error(400, "InvalidUri", f"No storage account at {request.host}.")
        auth = request.headers.get("authorization", "")
        if not (auth.startswith(f"SharedKey {STORAGE_ACCOUNT}:") or "sig" in request.query):
            return _storage_error(
                401 if not auth else 403,
                "NoAuthenticationInformation" if not auth else "AuthenticationFailed",
                "Server failed to authenticate the request.",
            )
        fault = self._take_fault(request)
        if fault is not None:
            headers = (
                {"Retry-After": str(fault.retry_after)} if fault.retry_after is not None else {}
            )
            error = _storage_error(fault.status, fault.code, fault.message)
            error.headers.update(headers)
            return error
        container, _, name = request.path.lstrip("/").partition("/")
        if container != BLOB_CONTAINER:
            return _storage_error(
                404, "ContainerNotFound", "The specified container does not exist."
            )
        comp = request.query.get("comp", "")
        method = request.method
        with self._lock:
            if not name:
                if comp == "list" and method == "GET":
                    return self._list_blobs(request)
                if method in ("GET", "HEAD"):
                    return Response(
                        200, _storage_headers(request, {"x-ms-lease-state": "available"})
                    )
                return _storage_error(405, "UnsupportedHttpVerb", f"{method} on a container.")
            blob = self._blobs.get(name)
            if method == "PUT" and comp == "block":
                self._blocks[(name, request.query.get("blockid", ""))] = request.body
                return Response(
                    201, _storage_headers(request, {"x-ms-request-server-encrypted": "true"})
                )
            if method == "PUT" and comp == "blocklist":
                ids = [e.text or "" for e in ElementTree.fromstring(request.body)]
                missing = [i for i in ids if (name, i) not in self._blocks]
                if missing:
                    return _storage_error(
                        400, "InvalidBlockList", "The specified block list is invalid."
                    )
                data = b"".join(self._blocks.pop((name, i)) for i in ids)
                return self._store_blob(request, name, data, "x-ms-blob-content-type")
            if method == "PUT" and comp == "":
                if request.headers.get("if-none-match") == "*" and blob is not None:
                    return _storage_error(
                        409, "BlobAlreadyExists", "The specified blob already exists."
                    )
                return self._store_blob(
                    request, name, request.body, "x-ms-blob-content-type", "content-type"
                )
            if blob is None:
                return _storage_error(404, "BlobNotFound", "The specified blob does not exist.")
            if method == "PUT" and comp == "metadata":
                blob.metadata = _metadata_of(request)
                blob.etag = f'"0x{secrets.token_hex(8).upper()}"'
                blob.modified = time.time()
                return Response(
                    200, _storage_headers(request, _blob_headers(blob, with_length=False))
                )
            if method in ("GET", "HEAD") and comp in ("", "metadata"):
                headers = _blob_headers(blob, with_length=comp == "")
                if comp == "metadata":
                    return Response(200, _storage_headers(request, headers))
                return _ranged(request, blob, _storage_headers(request, headers))
            if method == "DELETE":
                del self._blobs[name]
                return Response(202, _storage_headers(request, {}))
        return _storage_error(405, "UnsupportedHttpVerb", f"{method} {comp or 'blob'}.")

    def _store_blob(self, request: Request, name: str, data: bytes, *type_headers: str) -> Response:
        content_type = next(
            (request.headers[h] for h in type_headers if request.headers.get(h)),
            "application/octet-stream",
        )
        previous = self._blobs.get(name)
        now = time.time()
        blob = _Blob(
            data=data,
            metadata=_metadata_of(request),
            content_type=content_type,
            etag=f'"0x{secrets.token_hex(8).upper()}"',
            modified=now,
            created=previous.created if previous else now,
        )
        self._blobs[name] = blob
        headers = _blob_headers(blob, with_length=False)
        headers["Content-MD5"] = base64.b64encode(hashlib.md5(data).digest()).decode()
        headers["x-ms-request-server-encrypted"] = "true"
        return Response(201, _storage_headers(request, headers))

    def _list_blobs(self, request: Request) -> Response:
        prefix = request.query.get("prefix", "")
        delimiter = request.query.get("delimiter", "")
        include = request.query.get("include", "")
        results = ElementTree.Element(
            "EnumerationResults",
            {"ServiceEndpoint": f"https://{BLOB_HOST}/", "ContainerName": BLOB_CONTAINER},
        )
        ElementTree.SubElement(results, "Prefix").text = prefix
        blobs = ElementTree.SubElement(results, "Blobs")
        prefixes: set[str] = set()
        for name, blob in sorted(self._blobs.items()):
            if not name.startswith(prefix):
                continue
            rest = name[len(prefix) :]
            if delimiter and delimiter in rest:
                prefixes.add(prefix + rest.split(delimiter, 1)[0] + delimiter)
                continue
            entry = ElementTree.SubElement(blobs, "Blob")
            ElementTree.SubElement(entry, "Name").text = name
            properties = ElementTree.SubElement(entry, "Properties")
            for key, value in (
                ("Creation-Time", email.utils.formatdate(blob.created, usegmt=True)),
                ("Last-Modified", email.utils.formatdate(blob.modified, usegmt=True)),
                ("Etag", blob.etag),
                ("Content-Length", str(len(blob.data))),
                ("Content-Type", blob.content_type),
                ("BlobType", "BlockBlob"),
                ("LeaseStatus", "unlocked"),
                ("LeaseState", "available"),
                ("ServerEncrypted", "true"),
            ):
                ElementTree.SubElement(properties, key).text = value
            if "metadata" in include:
                metadata = ElementTree.SubElement(entry, "Metadata")
                for key, value in blob.metadata.items():
                    ElementTree.SubElement(metadata, key).text = value
        for name in sorted(prefixes):
            ElementTree.SubElement(ElementTree.SubElement(blobs, "BlobPrefix"), "Name").text = name
        ElementTree.SubElement(results, "NextMarker")
        body = b'<?xml version="1.0" encoding="utf-8"?>' + ElementTree.tostring(results)
        return Response(200, _storage_headers(request, {"Content-Type": "application/xml"}), body)

    # -- scoring -----------------------------------------------------------------------------------

    def _score(self, request: Request) -> Response:
        match = re.fullmatch(r"/inference/([^/]+)/score", request.path)
        if not match:
            return _scoring_error(404, f"No scoring route at {request.path}.")
        name = match.group(1)
        with self._lock:
            endpoint = self._endpoints.get(name)
            if endpoint is None:
                return _scoring_error(404, f"Endpoint {name} does not exist.")
            mode = str(endpoint.properties.get("authMode", "Key")).lower()
            scheme, _, token = request.headers.get("authorization", "").partition(" ")
            accepted = {
                "key": set(endpoint.keys),
                "amltoken": endpoint.tokens,
                "aadtoken": {TOKEN},
            }.get(mode, set())
            if scheme.lower() != "bearer" or token not in accepted:
                self._scored.append(Scored(name, None, False, 401))
                return _scoring_error(401, "Unauthorized: the key or token is missing or invalid.")
            if request.method != "POST":
                return _scoring_error(405, "Scoring takes POST.")
            chosen = request.headers.get("azureml-model-deployment")
            if chosen:
                if chosen not in endpoint.deployments:
                    self._scored.append(Scored(name, chosen, False, 404))
                    return _scoring_error(404, f"Deployment {chosen} does not exist in {name}.")
            else:
                chosen = self._route(endpoint)
                if chosen is None:
                    self._scored.append(Scored(name, None, False, 404))
                    return _scoring_error(
                        404,
                        "No valid deployments to route to. Please check that the endpoint has at "
                        "least one deployment with positive weight values or use a deployment "
                        "specific header to route.",
                    )
                mirror = self._mirror_target(endpoint)
                if mirror is not None:
                    self._spawn(
                        f"fake-azure-mirror-{name}", self._forward, endpoint, mirror, request, True
                    )
        return self._forward(endpoint, chosen, request, False)

    @staticmethod
    def _route(endpoint: _Endpoint) -> str | None:
        """Weighted round robin: the deployment furthest behind its share of requests."""
        weights = {d: w for d, w in sorted(endpoint.traffic.items()) if w > 0}
        if not weights:
            return None
        chosen = min(
            weights, key=lambda d: (endpoint.served.get(d, 0) / weights[d], -weights[d], d)
        )
        endpoint.served[chosen] = endpoint.served.get(chosen, 0) + 1
        return chosen

    @staticmethod
    def _mirror_target(endpoint: _Endpoint) -> str | None:
        """The mirror deployment when this request is one of its share (deterministic)."""
        mirrored = {d: w for d, w in endpoint.mirror_traffic.items() if w > 0}
        if not mirrored:
            return None
        deployment, share = next(iter(mirrored.items()))
        endpoint.mirror_seen += 1
        if endpoint.mirror_seen * share // 100 > endpoint.mirror_sent:
            endpoint.mirror_sent += 1
            return deployment
        return None

    def _forward(
        self, endpoint: _Endpoint, name: str, request: Request, mirrored: bool
    ) -> Response:
        """Send the scoring request to the deployment's host; Azure's answer for what it said."""
        with self._lock:
            deployment = endpoint.deployments.get(name)
            host = deployment.host if deployment is not None else None
            placed = self._placed(host) if host is not None else None
            settings = (deployment.properties().get("requestSettings") or {}) if deployment else {}
        response = self._forward_to(placed, name, request, settings)
        with self._lock:
            self._scored.append(Scored(endpoint.name, name, mirrored, response.status))
            self._scored_changed.notify_all()
        return response

    def _forward_to(
        self, placed: _Placed | None, name: str, request: Request, settings: Mapping[str, Any]
    ) -> Response:
        if placed is None:
            return _scoring_error(503, f"Deployment {name} has no ready instance.")
        timeout = iso_seconds(settings.get("requestTimeout"), self.request_timeout_s)
        headers = {
            k: v
            for k, v in request.headers.items()
            if k
            not in (
                "authorization",
                "host",
                "content-length",
                "connection",
                "azureml-model-deployment",
                "transfer-encoding",
            )
        }
        try:
            answer = placed.host.request(
                "POST", placed.routes["scoring"]["path"], request.body, headers, timeout
            )
        except TimeoutError:
            return _scoring_error(408, f"upstream request timeout after {timeout:g} s")
        except OSError as exc:
            return _scoring_error(502, f"The deployment {name} did not answer: {exc}")
        out = {
            k: v
            for k, v in answer.headers.items()
            if k.lower()
            not in ("content-length", "connection", "transfer-encoding", "date", "server")
        }
        out["azureml-model-deployment"] = name
        if answer.status == 200:
            return Response(200, out, answer.body)
        # Azure turns a model's non-200 into 424 and says what the model said in two headers.
        out["ms-azureml-model-error-statuscode"] = str(answer.status)
        out["ms-azureml-model-error-reason"] = "model_error"
        return Response(424, out, answer.body)

    def wait_scoring(
        self, endpoint: str, count: int, *, mirrored: bool | None = None, timeout: float = 30.0
    ) -> list[Scored]:
        """Wait until ``count`` scoring requests of ``endpoint`` (only mirrored ones, or only
        live ones, when told) are recorded; returns them.

        Raises:
            AssertionError: fewer arrived within ``timeout``.
        """
        deadline = time.monotonic() + timeout
        with self._lock:
            while True:
                found = [
                    s
                    for s in self._scored
                    if s.endpoint == endpoint and (mirrored is None or s.mirrored == mirrored)
                ]
                left = deadline - time.monotonic()
                if len(found) >= count or left <= 0:
                    break
                self._scored_changed.wait(left)
        if len(found) < count:
            raise AssertionError(f"{len(found)} scoring requests of {endpoint}, not {count}")
        return found


# --- helpers of the server ---------------------------------------------------------------------


class ProvisioningFailure(HostFailure):
    """A deployment's provisioning failed with Azure's ``code`` and message (``reason``)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass
class _Placed:
    """A host and what the fake made it from."""

    endpoint: str
    deployment: str
    host: Host
    image: str
    root: Path
    model_dir: Path | None
    routes: dict[str, dict[str, Any]]


def _routes_given(config: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        key: dict(config[name])
        for key, name in (
            ("liveness", "livenessRoute"),
            ("readiness", "readinessRoute"),
            ("scoring", "scoringRoute"),
        )
        if isinstance(config.get(name), dict)
    }


def _routes(config: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """An environment's routes; Azure's inference server defaults (port 5001, ``/`` and
    ``/score``) for those it does not give."""
    given = _routes_given(config)
    defaults = {
        "liveness": {"port": 5001, "path": "/"},
        "readiness": {"port": 5001, "path": "/"},
        "scoring": {"port": 5001, "path": "/score"},
    }
    return {key: given.get(key, value) for key, value in defaults.items()}


def _in_root(value: str, root: Path) -> str:
    """A container path (``/opt/modelport/...``, ``/var/azureml-app/...``) under ``root``.

    Only a path the image (or the model mount) really has there: one it lacks (a runtime
    image's package directory) stays as the container would see it, missing.
    """
    for prefix in CONTAINER_ROOTS:
        if value == prefix or value.startswith(prefix + "/"):
            mapped = str(root) + value
            return mapped if os.path.lexists(mapped) else value
    return value


def _blob_path(uri: str) -> str | None:
    """The blob path inside the workspace's datastore of a model URI (azureml:// or https://)."""
    match = re.search(r"/datastores/[^/]+/paths/(.+)$", uri)
    if match:
        return urllib.parse.unquote(match.group(1))
    prefix = f"https://{BLOB_HOST}/{BLOB_CONTAINER}/"
    if uri.startswith(prefix):
        return urllib.parse.unquote(uri[len(prefix) :])
    return None


def _storage_headers(request: Request, extra: Mapping[str, str]) -> dict[str, str]:
    return {
        "x-ms-version": request.headers.get("x-ms-version", "2025-01-05"),
        "Date": email.utils.formatdate(usegmt=True),
        "Server": "Windows-Azure-Blob/1.0 Microsoft-HTTPAPI/2.0",
        **extra,
    }


def _blob_headers(blob: _Blob, *, with_length: bool) -> dict[str, str]:
    headers = {
        "ETag": blob.etag,
        "Last-Modified": email.utils.formatdate(blob.modified, usegmt=True),
        "x-ms-creation-time": email.utils.formatdate(blob.created, usegmt=True),
        "x-ms-blob-type": "BlockBlob",
        "x-ms-lease-state": "available",
        "x-ms-lease-status": "unlocked",
        "x-ms-server-encrypted": "true",
        **{f"x-ms-meta-{k}": v for k, v in blob.metadata.items()},
    }
    if with_length:
        headers.update(
            {
                "Content-Type": blob.content_type,
                "Content-Length": str(len(blob.data)),
                "Accept-Ranges": "bytes",
            }
        )
    return headers


def _ranged(request: Request, blob: _Blob, headers: dict[str, str]) -> Response:
    """A GET/HEAD of a blob, honouring ``x-ms-range`` / ``Range``."""
    wanted = request.headers.get("x-ms-range") or request.headers.get("range")
    data = blob.data
    match = re.fullmatch(r"bytes=(\d+)-(\d*)", wanted or "")
    if not match:
        return Response(200, headers, data)
    start = int(match.group(1))
    end = min(int(match.group(2)) if match.group(2) else len(data) - 1, len(data) - 1)
    if start >= len(data) and data:
        return _storage_error(416, "InvalidRange", "The range specified is invalid.")
    part = data[start : end + 1]
    headers.update(
        {"Content-Length": str(len(part)), "Content-Range": f"bytes {start}-{end}/{len(data)}"}
    )
    return Response(206, headers, part)


def _metadata_of(request: Request) -> dict[str, str]:
    return {
        k[len("x-ms-meta-") :]: v for k, v in request.headers.items() if k.startswith("x-ms-meta-")
    }


def _storage_error(status: int, code: str, message: str) -> Response:
    """Blob storage's error: XML body and ``x-ms-error-code``."""
    body = (
        '<?xml version="1.0" encoding="utf-8"?><Error>'
        f"<Code>{code}</Code><Message>{message}\nRequestId:{uuid.uuid4()}\n"
        f"Time:{_now()}</Message></Error>"
    ).encode()
    return Response(status, {"x-ms-error-code": code, "Content-Type": "application/xml"}, body)


def _scoring_error(status: int, message: str) -> Response:
    return json_response(status, {"message": message})
