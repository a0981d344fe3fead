"""An offline Vertex AI for the Vertex tests: its REST API (v1), Cloud Logging's ``entries:list``
and an OAuth token endpoint on one local plain-HTTP server, with deployed models that really serve.

:class:`FakeVertex` starts one threaded HTTP server on 127.0.0.1 (a random port); the real
``google-cloud-aiplatform`` SDK talks to it over its REST transport::

    aiplatform.init(project=PROJECT, location=LOCATION, credentials=AnonymousCredentials(),
                    api_endpoint=fake.api_endpoint, api_transport="rest")

It answers, in Vertex's JSON (camelCase) shapes, under ``/v1/projects/{project}/locations/
{location}/...`` (also ``/v1beta1/`` and ``/ui/``, where the REST transport polls operations):

- **models**: ``models:upload`` (a new model, or with ``parentModel`` its next version),
  ``GET models/ID`` (the default version) and ``models/ID@VERSION`` (a version id or alias),
  ``GET models`` (the default versions; ``filter``), ``models/ID:listVersions``,
  ``PATCH models/ID[@V]`` (display name, description, labels), ``models/ID@V:mergeVersionAliases``,
  ``DELETE models/ID`` (every version) and ``DELETE models/ID@V:deleteVersion``;
- **endpoints**: create (``?endpointId=`` optional), get, list (``filter``), ``PATCH`` with an
  ``updateMask`` (traffic split, labels, display name, description), delete, ``:deployModel``,
  ``:undeployModel`` and ``:predict``;
- **operations**: every long-running call answers an Operation (``done`` with its typed
  ``response`` or an ``error``); ``GET`` of its name polls it;
- ``POST /v2/entries:list`` (Cloud Logging): the hosts' output lines as log entries;
- ``POST /token`` (an OAuth token endpoint, what a service-account key's ``token_uri`` may name).

Resource names in answers use :data:`PROJECT_NUMBER`, as Vertex does; requests may name the project
by id (:data:`PROJECT`) or number. Any ``Authorization`` header, or none, is accepted (and kept on
each :class:`Call`): AnonymousCredentials sends none, a service-account key sends a self-signed JWT
or a token from ``/token``.

Vertex's rules are enforced with its status codes and Google's error body ``{"error": {"code",
"message", "status"}}``: labels (at most 64; keys 1-63 characters starting with a lowercase letter;
keys and values of lowercase letters, digits, ``_`` and ``-``; values at most 63), display names,
ids, traffic splits (summing to 100 over deployed model ids, or empty), nothing deleted while
deployed (400 FAILED_PRECONDITION), the default version kept while others exist.

**Long-running operations** finish at once or after a delay: the request (and each poll) waits up
to :attr:`FakeVertex.hold_s` for the work, then answers ``done: false`` if it is not finished. With
``fake.pending_polls = k`` every new operation answers ``done: false`` to its request and its
first ``k - 1`` polls whatever the work, so the SDK really polls (``GET /ui/{operation name}``).
A failed operation is ``done: true`` with ``error: {"code", "message"}`` (a deployment that failed:
code 9, FAILED_PRECONDITION).

**deployModel** assigns a deployed model id (``"0"`` in the request's ``trafficSplit`` is the new
one), then, in a thread, starts a *host* (:mod:`hosting`) running the model's ``containerSpec``
as Vertex runs it and waits until its health route answers 200 (within
:attr:`FakeVertex.startup_timeout`): then the operation is done (``DeployModelResponse``) and the
endpoint shows the deployed model and the new split; if the host exits or never becomes ready,
the operation fails with Vertex's message and the deployed model is not left on the endpoint.
The host's environment: ``containerSpec.env``, then ``AIP_HTTP_PORT``, ``AIP_HEALTH_ROUTE``,
``AIP_PREDICT_ROUTE`` (the spec's routes, else Vertex's defaults
``/v1/endpoints/E/deployedModels/D`` and ``...:predict``), ``AIP_DEPLOYED_MODEL_ID``,
``AIP_ENDPOINT_ID``, ``AIP_PROJECT_NUMBER``, ``AIP_MACHINE_TYPE``, ``AIP_MODE=PREDICTION``,
``AIP_MODE_VERSION``, ``AIP_FRAMEWORK=CUSTOM_CONTAINER``, ``AIP_ACCELERATOR_TYPE`` (when asked) and
``AIP_STORAGE_URI`` (the model's ``artifactUri`` as given, only when it has one). One host per
deployed model (the replica counts are kept, not honoured).

- ``fake.hosting = "process"`` (default, fast): the image is pulled from its local plain-HTTP
  registry (:class:`registry_images.RegistryImages`), and ``python -m modelport.image.entrypoint
  serve`` (or the spec's ``args``) runs in a child process with the image's ENV (container paths
  mapped under a per-host root, ``MODELPORT_PACKAGE`` at the extracted package), the spec's env and
  the ``AIP_*`` variables; ``AIP_HTTP_PORT`` is a free port of this machine;
- ``fake.hosting = "container"``: the image itself through the Docker Engine API
  (``$DOCKER_HOST``): its own ENTRYPOINT and CMD (the spec's ``args`` replace CMD),
  ``AIP_HTTP_PORT`` the spec's first port (default 8080), published on a free port of 127.0.0.1.

Neither kind can replace the image's ENTRYPOINT: a ``containerSpec.command`` fails the deployment
with a message saying so.

**predict** picks a deployed model by the traffic split (deterministic weighted round robin),
posts the request's body to its host's predict route and answers ``{"predictions",
"deployedModelId", "model", "modelDisplayName", "modelVersionId"}``; a non-200 from the container
is Google's error with the status mapped (400 INVALID_ARGUMENT...); no deployed model with traffic
is 400 FAILED_PRECONDITION.

Test hooks:

- ``fake.api_endpoint`` (``http://127.0.0.1:PORT``: the scheme is needed, the REST transport
  would speak HTTPS to a bare ``host:port``), ``fake.logging_endpoint``, ``fake.token_uri``,
  ``fake.url``, ``fake.port``, ``fake.project``, ``fake.project_number``, ``fake.location``,
  ``fake.parent``, ``fake.model_name(id, version=None)``, ``fake.endpoint_name(id)``,
  ``fake.init_sdk(credentials=None)``;
- settings: ``fake.hosting``, ``fake.pending_polls``, ``fake.hold_s``, ``fake.startup_timeout``,
  ``fake.stop_timeout``, ``fake.predict_timeout_s``, ``fake.page_size``;
- ``fake.calls(service=None)`` -> [:class:`Call`] (service: ``vertex`` ``poll`` ``predict``
  ``logging`` ``token``); ``fake.sequence(polls=False, reads=True)`` -> ``["POST models:upload",
  "POST endpoints/E:deployModel", ...]``; ``fake.clear_calls()``;
- faults: ``fake.fail_next(method, path_pattern, status, google_status, message, times)``,
  ``fake.fail_deploy(message)``, ``fake.fail_operation(method, path_pattern, message, code,
  times)``, ``fake.clear_faults()``;
- state: ``fake.models()``, ``fake.model(id)`` (with its versions), ``fake.model_version(id, v)``,
  ``fake.endpoints()``, ``fake.endpoint(id)``, ``fake.deployed_models(endpoint)``,
  ``fake.traffic_split(endpoint)``, ``fake.operations()``, ``fake.host(endpoint, deployed_id)``,
  ``fake.hosts()``, ``fake.scoring_requests(endpoint=None)`` -> [:class:`Scored`],
  ``fake.log_entries(endpoint=None)`` -> [:class:`LogEntry`], ``fake.wait_log(predicate,
  timeout)``, ``fake.tokens_issued()``;
- ``fake.reset()``: every host stopped, state, calls, faults and settings cleared (server kept).
"""

from __future__ import annotations

import atexit
import contextlib
import datetime
import http.server
import itertools
import json
import os
import re
import shutil
import sys
import tempfile
import threading
import time
import urllib.parse
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hosting import ContainerHost, Host, HostFailure, ProcessHost, free_port
from registry_images import IMAGE_PACKAGE_DIR, RegistryImages

from http_fakes import read_body

PROJECT = "modelport-fake"
PROJECT_NUMBER = "123456789012"
LOCATION = "us-central1"
#: The ``@type`` prefix of the aiplatform v1 messages in operations.
TYPE_PREFIX = "type.googleapis.com/google.cloud.aiplatform.v1."
EMPTY_TYPE = "type.googleapis.com/google.protobuf.Empty"
#: The monitored resource of a Vertex endpoint's container logs, and their log name.
LOG_RESOURCE = "aiplatform.googleapis.com/Endpoint"
LOG_ID = "aiplatform.googleapis.com%2Fprediction_container"
#: Container paths whose values in environment variables a process host maps under its root.
CONTAINER_ROOTS = ("/opt/modelport",)
#: What a process host runs (modelport's entrypoint; the image's CMD is ``serve``).
DEFAULT_ARGS = ("serve",)
#: Vertex's default container port.
DEFAULT_PORT = 8080

#: gRPC status codes (what a failed operation's ``error.code`` holds).
GRPC_CODES = {
    "OK": 0,
    "CANCELLED": 1,
    "UNKNOWN": 2,
    "INVALID_ARGUMENT": 3,
    "DEADLINE_EXCEEDED": 4,
    "NOT_FOUND": 5,
    "ALREADY_EXISTS": 6,
    "PERMISSION_DENIED": 7,
    "RESOURCE_EXHAUSTED": 8,
    "FAILED_PRECONDITION": 9,
    "ABORTED": 10,
    "OUT_OF_RANGE": 11,
    "UNIMPLEMENTED": 12,
    "INTERNAL": 13,
    "UNAVAILABLE": 14,
    "DATA_LOSS": 15,
    "UNAUTHENTICATED": 16,
}
#: Google's status for an HTTP status (the usual pairing in Google APIs' error bodies).
STATUS_OF_HTTP = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    409: "ALREADY_EXISTS",
    412: "FAILED_PRECONDITION",
    413: "INVALID_ARGUMENT",
    415: "INVALID_ARGUMENT",
    429: "RESOURCE_EXHAUSTED",
    499: "CANCELLED",
    500: "INTERNAL",
    501: "UNIMPLEMENTED",
    502: "UNAVAILABLE",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}

LABEL_KEY = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")
LABEL_VALUE = re.compile(r"^[a-z0-9_-]{0,63}$")
MAX_LABELS = 64
#: A model id given at upload: up to 63 of [a-z0-9_-], not starting with a digit or '-'.
MODEL_ID = re.compile(r"^[a-z_][a-z0-9_-]{0,62}$")
#: An endpoint id given at create: a letter and up to 62 of [a-z0-9-] (not ending in '-'), or a
#: number of up to 9 digits without a leading zero.
ENDPOINT_ID = re.compile(r"^(?:[a-z](?:[a-z0-9-]{0,61}[a-z0-9])?|[1-9][0-9]{0,8})$")
#: A version alias (mergeVersionAliases' rule).
ALIAS = re.compile(r"^[a-z][a-zA-Z0-9-]{0,126}[a-z0-9-]$")
MAX_DISPLAY_NAME = 128
#: Cloud Logging's severities in order (a container's lines are INFO here).
SEVERITIES = {
    name: rank
    for rank, name in enumerate(
        ["DEFAULT", "DEBUG", "INFO", "NOTICE", "WARNING", "ERROR", "CRITICAL", "ALERT", "EMERGENCY"]
    )
}


def _now() -> str:
    """Now, in Google's JSON timestamp form (RFC 3339, UTC, microseconds)."""
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


_EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)


def _stamp(micros: int) -> str:
    """Epoch microseconds in Google's JSON timestamp form (exact: no float rounding)."""
    moment = _EPOCH + datetime.timedelta(microseconds=micros)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _parse_stamp(text: str) -> int:
    """An RFC 3339 timestamp (``Z`` or an offset, any fraction) in epoch microseconds (a finer
    fraction truncated)."""
    value = text.strip().strip('"')
    match = re.fullmatch(r"(.+?)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)?", value)
    if not match:
        raise ValueError(value)
    base, fraction, zone = match.groups()
    parsed = datetime.datetime.fromisoformat(base + ("+00:00" if zone in (None, "Z") else zone))
    whole = (parsed - _EPOCH) // datetime.timedelta(seconds=1)
    return whole * 1_000_000 + int(((fraction or "") + "000000")[:6])


# --- requests, answers, records ----------------------------------------------------------------


@dataclass
class Request:
    """One HTTP request as the server read it."""

    method: str
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

    def form(self) -> dict[str, str]:
        """The body as an URL-encoded form."""
        text = self.body.decode("utf-8", "replace")
        return {k: v[0] for k, v in urllib.parse.parse_qs(text, keep_blank_values=True).items()}


@dataclass
class Response:
    """What the fake answers."""

    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""


def json_response(status: int, document: Any) -> Response:
    """A JSON answer."""
    return Response(
        status, {"Content-Type": "application/json; charset=UTF-8"}, json.dumps(document).encode()
    )


class GoogleError(Exception):
    """A Google API error answer: ``{"error": {"code", "message", "status"}}``."""

    def __init__(self, status: int, google_status: str | None, message: str) -> None:
        self.status = status
        self.google_status = google_status or STATUS_OF_HTTP.get(status, "UNKNOWN")
        self.message = message
        super().__init__(f"{status} {self.google_status}: {message}")

    def body(self) -> dict[str, Any]:
        """Google's error body."""
        return {
            "error": {"code": self.status, "message": self.message, "status": self.google_status}
        }

    def response(self) -> Response:
        return json_response(self.status, self.body())


def invalid(message: str) -> GoogleError:
    """400 INVALID_ARGUMENT."""
    return GoogleError(400, "INVALID_ARGUMENT", message)


def precondition(message: str) -> GoogleError:
    """400 FAILED_PRECONDITION (what Vertex answers for a resource in the wrong state)."""
    return GoogleError(400, "FAILED_PRECONDITION", message)


def not_found(message: str) -> GoogleError:
    """404 NOT_FOUND."""
    return GoogleError(404, "NOT_FOUND", message)


@dataclass
class Call:
    """One request the fake received (recorded as it arrives; ``status`` once answered).

    Attributes:
        service: ``vertex`` (the API), ``poll`` (a GET of an operation), ``predict``,
            ``logging`` (Cloud Logging) or ``token`` (the OAuth token endpoint).
        method: the HTTP method.
        path: the URL path, without the query.
        query: the query's parameters.
        body: the JSON body (a form's fields for ``token``; None when empty or not JSON).
        authorization: the ``Authorization`` header (None: there was none).
        headers: every header (names lowercased).
        status: the status answered (0 while in flight).
    """

    service: str
    method: str
    path: str
    query: dict[str, str]
    body: Any
    authorization: str | None
    headers: dict[str, str]
    status: int = 0

    @property
    def short(self) -> str:
        """``METHOD path`` relative to the location (``POST endpoints/E:deployModel``)."""
        return f"{self.method} {short_path(self.path)}"


_LOCATION_PATH = re.compile(
    r"^/(?P<api>v1|v1beta1|ui)/projects/(?P<project>[^/]+)/locations/(?P<location>[^/]+)"
    r"(?:/(?P<rest>.*))?$"
)
_OPERATION_REST = re.compile(r"^(?:(?:models|endpoints)/[^/]+/)?operations/[^/]+$")


def short_path(path: str) -> str:
    """A path relative to its location (``models/1@2:deleteVersion``); others as they are."""
    match = _LOCATION_PATH.match(path)
    if not match:
        return path
    return match.group("rest") or "location"


def is_poll(call: Call) -> bool:
    """Whether ``call`` polled an operation."""
    return call.service == "poll"


def is_read(call: Call) -> bool:
    """Whether ``call`` only read (a GET: the SDK's incidental lookups among them)."""
    return call.method == "GET"


@dataclass
class _Fault:
    method: str
    path: re.Pattern[str]
    status: int
    google_status: str | None
    message: str
    remaining: int | None


@dataclass
class _OperationFault:
    method: str
    path: re.Pattern[str]
    code: int
    message: str
    remaining: int | None


@dataclass(frozen=True)
class Scored:
    """One predict request: the deployed model that answered (None: none did) and the status."""

    endpoint: str
    deployed_model: str | None
    status: int


@dataclass(frozen=True)
class LogEntry:
    """One line a host printed, as Cloud Logging keeps it (``micros``: when, epoch microseconds)."""

    micros: int
    endpoint: str
    deployed_model: str
    text: str
    insert_id: str


# --- resources ----------------------------------------------------------------------------------


@dataclass
class _Operation:
    """A long-running operation."""

    name: str
    metadata_type: str
    #: How many more answers (the request's, then polls') say ``done: false`` whatever the work.
    pending: int
    created: str = field(default_factory=_now)
    finished: threading.Event = field(default_factory=threading.Event)
    response: dict[str, Any] | None = None
    error: dict[str, Any] | None = None
    updated: str | None = None
    #: The API version it was started through: its messages' ``@type`` are of that version.
    api: str = "v1"

    def finish(
        self, response: dict[str, Any] | None = None, error: dict[str, Any] | None = None
    ) -> None:
        self.response, self.error, self.updated = response, error, _now()
        self.finished.set()

    def document(self, done: bool) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "name": self.name,
            "metadata": {
                "@type": TYPE_PREFIX + self.metadata_type,
                "genericMetadata": {
                    "createTime": self.created,
                    "updateTime": self.updated or self.created,
                },
            },
            "done": done,
        }
        if done and self.error is not None:
            doc["error"] = self.error
        elif done:
            doc["response"] = self.response or {"@type": EMPTY_TYPE}
        if self.api != "v1":  # the v1beta1 client unpacks v1beta1 messages only
            text = json.dumps(doc).replace(TYPE_PREFIX, TYPE_PREFIX[: -len("v1.")] + self.api + ".")
            doc = json.loads(text)
        return doc


@dataclass
class _Version:
    """One version of a model: its body as uploaded (camelCase) and what Vertex adds."""

    version_id: str
    body: dict[str, Any]
    aliases: list[str]
    created: str = field(default_factory=_now)
    updated: str = field(default_factory=_now)


@dataclass
class _Model:
    id: str
    created: str = field(default_factory=_now)
    versions: dict[str, _Version] = field(default_factory=dict)
    #: The last version id given (ids are never reused).
    last_version: int = 0

    def default(self) -> _Version:
        return next(v for v in self.versions.values() if "default" in v.aliases)


@dataclass
class _Deployed:
    """A deployed model: being deployed (``ready`` unset) or serving."""

    id: str
    endpoint: str
    model_id: str
    version_id: str
    body: dict[str, Any]
    created: str = field(default_factory=_now)
    ready: bool = False
    host: Host | None = None
    cancel: threading.Event = field(default_factory=threading.Event)


@dataclass
class _Endpoint:
    id: str
    body: dict[str, Any]
    created: str = field(default_factory=_now)
    updated: str = field(default_factory=_now)
    deployed: dict[str, _Deployed] = field(default_factory=dict)
    #: Deployed models whose deployModel operation has not finished.
    deploying: dict[str, _Deployed] = field(default_factory=dict)
    traffic: dict[str, int] = field(default_factory=dict)
    #: Weighted round robin: how many requests each deployed model has answered.
    served: dict[str, int] = field(default_factory=dict)


@dataclass
class _Placed:
    """A host and what the fake made it from."""

    endpoint: str
    deployed_model: str
    host: Host
    image: str
    root: Path
    health_route: str
    predict_route: str
    container_port: int
    replicas: tuple[int, int]


class ProvisioningFailure(HostFailure):
    """A deployment failed with Vertex's message (``reason``) and gRPC ``code``."""

    def __init__(self, message: str, code: int = GRPC_CODES["FAILED_PRECONDITION"]) -> None:
        super().__init__(message)
        self.code = code


# --- the server --------------------------------------------------------------------------------


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    # Many SDK connections come and go in one test: do not keep them waiting in the backlog.
    request_queue_size = 64

    def __init__(self, fake: FakeVertex) -> None:
        self.fake = fake
        super().__init__(("127.0.0.1", 0), _Handler)


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the fake records calls itself."""

    def handle(self) -> None:
        # A client that went away is no error of the fake's.
        with contextlib.suppress(ConnectionError, TimeoutError):
            super().handle()

    def _serve(self) -> None:
        url = urllib.parse.urlsplit(self.path)
        request = Request(
            method=self.command,
            path=urllib.parse.unquote(url.path),
            query={k: v[0] for k, v in urllib.parse.parse_qs(url.query, True).items()},
            headers={k.lower(): v for k, v in self.headers.items()},
            body=read_body(self),
        )
        response = self.server.fake._dispatch(request)
        self.send_response(response.status)
        for name, value in response.headers.items():
            if name.lower() not in ("content-length", "transfer-encoding", "connection"):
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(response.body)))
        self.end_headers()
        if response.body:
            self.wfile.write(response.body)

    do_GET = do_PUT = do_POST = do_PATCH = do_DELETE = _serve


# --- the fake ------------------------------------------------------------------------------------


class FakeVertex:
    """The fake Vertex AI (see the module's docstring for what it answers and its test hooks).

    Args:
        registry: the local registry the tests push images to (``host:port``, plain HTTP;
            default ``$MODELPORT_TEST_REGISTRY``); a model's image names its own registry.
        startup_timeout: the longest a deployed model's host has to become ready (seconds).
        container_labels: labels on every container it runs (default: the test run's).
        project, project_number, location: who the fake is.
    """

    def __init__(
        self,
        *,
        registry: str | None = None,
        startup_timeout: float = 120.0,
        container_labels: Mapping[str, str] | None = None,
        project: str = PROJECT,
        project_number: str = PROJECT_NUMBER,
        location: str = LOCATION,
    ) -> None:
        self.registry = registry or os.environ.get("MODELPORT_TEST_REGISTRY") or "127.0.0.1:5000"
        self.project = project
        self.project_number = project_number
        self.location = location
        self.startup_timeout = startup_timeout
        self.container_labels = dict(container_labels) if container_labels is not None else None
        self._defaults()
        self._lock = threading.RLock()
        self._calls: list[Call] = []
        self._faults: list[_Fault] = []
        self._operation_faults: list[_OperationFault] = []
        self._deploy_faults: list[str] = []
        self._models: dict[str, _Model] = {}
        self._endpoints: dict[str, _Endpoint] = {}
        self._operations: dict[str, _Operation] = {}
        self._history: list[_Placed] = []
        self._scored: list[Scored] = []
        self._logs: list[LogEntry] = []
        self._logged = threading.Condition(self._lock)
        self._tokens: list[str] = []
        self._threads: list[threading.Thread] = []
        self._generation = 0
        self._ids = itertools.count(1)
        self._server: _Server | None = None
        self._serve_thread: threading.Thread | None = None
        self._workdir: Path | None = None
        self._images: RegistryImages | None = None
        self._docker: Any = None
        self.port = 0

    def _defaults(self) -> None:
        #: ``"process"``: the image's package in a child process; ``"container"``: the image.
        self.hosting = "process"
        #: Every new operation answers ``done: false`` this many times (its request's answer
        #: included) before it may say done: ``k`` means done at the ``k``-th poll.
        self.pending_polls = 0
        #: The longest a request or poll waits for its operation's work before ``done: false``.
        self.hold_s = 10.0
        #: Seconds between SIGTERM and SIGKILL when a host stops.
        self.stop_timeout = 30.0
        #: The longest the fake waits for a container's predict answer (Vertex's: 60 s).
        self.predict_timeout_s = 60.0
        #: Items per page of a list (more: a ``nextPageToken``).
        self.page_size = 50

    # -- starting and stopping ---------------------------------------------------------------------

    def start(self) -> FakeVertex:
        """Start the server; returns self."""
        self._workdir = Path(tempfile.mkdtemp(prefix="fake-vertex-"))
        self._images = RegistryImages(self._workdir)
        self._server = _Server(self)
        self.port = self._server.server_address[1]
        self._serve_thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.1},
            daemon=True,
            name="fake-vertex-server",
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

    def __enter__(self) -> FakeVertex:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def reset(self) -> None:
        """Forget everything (hosts stopped, state, calls, faults, settings); keep the server."""
        self._stop_hosts()
        with self._lock:
            self._generation += 1
            self._calls.clear()
            self._faults.clear()
            self._operation_faults.clear()
            self._deploy_faults.clear()
            self._models.clear()
            self._operations.clear()
            self._history.clear()
            self._scored.clear()
            self._logs.clear()
            self._tokens.clear()
        self._defaults()

    def _stop_hosts(self) -> None:
        with self._lock:
            self._generation += 1  # provisioning in flight sees it is stale
            endpoints = list(self._endpoints.values())
            self._endpoints.clear()
            threads, self._threads = self._threads, []
            placed = list(self._history)
        for endpoint in endpoints:
            for deployed in [*endpoint.deploying.values(), *endpoint.deployed.values()]:
                deployed.cancel.set()
        for thread in threads:
            thread.join(timeout=60)
        for record in placed:
            self._retire(record.host)

    # -- addresses ---------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        """The server's base URL."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def api_endpoint(self) -> str:
        """What ``aiplatform.init(api_endpoint=...)`` takes (a scheme: plain HTTP with REST)."""
        return self.url

    @property
    def logging_endpoint(self) -> str:
        """Cloud Logging's base URL (``POST {logging_endpoint}/v2/entries:list``)."""
        return self.url

    @property
    def token_uri(self) -> str:
        """The OAuth token endpoint (a service-account key's ``token_uri``)."""
        return f"{self.url}/token"

    @property
    def parent(self) -> str:
        """``projects/NUMBER/locations/LOCATION``: the prefix of every resource name."""
        return f"projects/{self.project_number}/locations/{self.location}"

    def model_name(self, model_id: str, version: str | None = None) -> str:
        """A model's resource name (``...@version`` when given)."""
        return f"{self.parent}/models/{model_id}" + (f"@{version}" if version else "")

    def endpoint_name(self, endpoint_id: str) -> str:
        """An endpoint's resource name."""
        return f"{self.parent}/endpoints/{endpoint_id}"

    def init_sdk(self, credentials: Any = None, **kwargs: Any) -> None:
        """``aiplatform.init`` pointed at the fake (REST, anonymous unless ``credentials``)."""
        from google.auth.credentials import AnonymousCredentials
        from google.cloud import aiplatform

        aiplatform.init(
            project=self.project,
            location=self.location,
            credentials=credentials or AnonymousCredentials(),
            api_endpoint=self.api_endpoint,
            api_transport="rest",
            **kwargs,
        )

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
        services: tuple[str, ...] = ("vertex", "poll", "predict"),
    ) -> list[str]:
        """``METHOD short-path`` of each call (default: the API's calls, polls left out).

        Args:
            calls: the calls to show (default: every call so far).
            polls: keep the operation polls (:func:`is_poll`).
            reads: keep GET requests (:func:`is_read`: the SDK's incidental lookups).
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
        path_pattern: str,
        status: int = 500,
        google_status: str | None = None,
        message: str = "The fake Vertex failed this request on purpose.",
        times: int | None = 1,
    ) -> None:
        """Answer the next ``times`` requests whose method is ``method`` and whose path (without
        query) matches ``path_pattern`` (``re.search``) with Google's error body (``status``,
        ``google_status``: default the HTTP status's usual one); ``times=None``: all of them,
        until :meth:`clear_faults`."""
        with self._lock:
            self._faults.append(
                _Fault(
                    method.upper(), re.compile(path_pattern), status, google_status, message, times
                )
            )

    def fail_operation(
        self,
        method: str,
        path_pattern: str,
        message: str = "The fake Vertex failed this operation on purpose.",
        code: int | str = "INTERNAL",
        times: int | None = 1,
    ) -> None:
        """The next ``times`` long-running calls matching ``method`` and ``path_pattern`` are
        accepted (an Operation) and then fail with ``code`` (a gRPC code or its name) and
        ``message``, without doing their work."""
        number = GRPC_CODES[code] if isinstance(code, str) else int(code)
        with self._lock:
            self._operation_faults.append(
                _OperationFault(method.upper(), re.compile(path_pattern), number, message, times)
            )

    def fail_deploy(self, message: str = "Model server exited unexpectedly.") -> None:
        """The next deployModel is accepted, then its operation fails with ``message`` (code 9)
        as if the model server had crashed: no host serves, no deployed model is left."""
        with self._lock:
            self._deploy_faults.append(message)

    def clear_faults(self) -> None:
        """Remove every pending fault."""
        with self._lock:
            self._faults.clear()
            self._operation_faults.clear()
            self._deploy_faults.clear()

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

    def _take_operation_fault(self, request: Request) -> _OperationFault | None:
        with self._lock:
            for fault in self._operation_faults:
                if fault.method == request.method and fault.path.search(request.path):
                    if fault.remaining is not None:
                        fault.remaining -= 1
                        if fault.remaining <= 0:
                            self._operation_faults.remove(fault)
                    return fault
        return None

    # -- state views -------------------------------------------------------------------------------

    def models(self) -> dict[str, dict[str, Any]]:
        """Every model's default version as Vertex shows it, by model id."""
        with self._lock:
            return {mid: self._version_doc(m, m.default()) for mid, m in self._models.items()}

    def model(self, model_id: str) -> dict[str, Any] | None:
        """A model's default version as Vertex shows it, with ``versions``: {id: version doc}."""
        with self._lock:
            found = self._models.get(model_id)
            if found is None:
                return None
            doc = self._version_doc(found, found.default())
            doc["versions"] = {
                v: self._version_doc(found, ver) for v, ver in found.versions.items()
            }
            return doc

    def model_version(self, model_id: str, version: str) -> dict[str, Any] | None:
        """One version (an id or alias) as Vertex shows it."""
        with self._lock:
            found = self._models.get(model_id)
            chosen = self._find_version(found, version) if found is not None else None
            return None if chosen is None or found is None else self._version_doc(found, chosen)

    def endpoints(self) -> dict[str, dict[str, Any]]:
        """Every endpoint as Vertex shows it, by endpoint id."""
        with self._lock:
            return {eid: self._endpoint_doc(e) for eid, e in self._endpoints.items()}

    def endpoint(self, endpoint_id: str) -> dict[str, Any] | None:
        """One endpoint as Vertex shows it (None: there is none)."""
        with self._lock:
            found = self._endpoints.get(endpoint_id)
            return None if found is None else self._endpoint_doc(found)

    def deployed_models(self, endpoint_id: str) -> dict[str, dict[str, Any]]:
        """The endpoint's deployed models (serving ones) as Vertex shows them, by id."""
        with self._lock:
            found = self._endpoints.get(endpoint_id)
            if found is None:
                return {}
            return {d: self._deployed_doc(dm) for d, dm in found.deployed.items()}

    def traffic_split(self, endpoint_id: str) -> dict[str, int]:
        """The endpoint's traffic split (empty: no such endpoint)."""
        with self._lock:
            found = self._endpoints.get(endpoint_id)
            return dict(found.traffic) if found is not None else {}

    def operations(self) -> dict[str, dict[str, Any]]:
        """Every operation since the reset as a poll would show it once done, by name."""
        with self._lock:
            return {
                name: op.document(op.finished.is_set()) for name, op in self._operations.items()
            }

    def host(self, endpoint_id: str, deployed_model_id: str) -> dict[str, Any] | None:
        """The deployed model's host (the last started): kind, image, env, url, port, ident, pid
        (process), lines, stopped, root, routes, container_port, replicas."""
        with self._lock:
            chosen = next(
                (
                    p
                    for p in reversed(self._history)
                    if (p.endpoint, p.deployed_model) == (endpoint_id, deployed_model_id)
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
            deployed_model=placed.deployed_model,
            lines=placed.host.lines(),
            image=placed.image,
            root=placed.root,
            routes={"health": placed.health_route, "predict": placed.predict_route},
            container_port=placed.container_port,
            replicas={"min": placed.replicas[0], "max": placed.replicas[1]},
        )
        return info

    def scoring_requests(self, endpoint_id: str | None = None) -> list[Scored]:
        """Every predict request answered, oldest first (optionally of one endpoint)."""
        with self._lock:
            return [s for s in self._scored if endpoint_id is None or s.endpoint == endpoint_id]

    def log_entries(self, endpoint_id: str | None = None) -> list[LogEntry]:
        """Every line the hosts printed since the reset (optionally of one endpoint)."""
        with self._lock:
            return [e for e in self._logs if endpoint_id is None or e.endpoint == endpoint_id]

    def tokens_issued(self) -> list[str]:
        """The access tokens ``/token`` gave out since the reset."""
        with self._lock:
            return list(self._tokens)

    # -- dispatch ----------------------------------------------------------------------------------

    def _dispatch(self, request: Request) -> Response:
        service = self._service_of(request)
        body = request.form() if service == "token" else request.json()
        call = Call(
            service,
            request.method,
            request.path,
            dict(request.query),
            body,
            request.headers.get("authorization"),
            dict(request.headers),
        )
        with self._lock:
            self._calls.append(call)
        try:
            response = self._answer(service, request)
        except GoogleError as error:
            response = error.response()
        except Exception as exc:  # a bug of the fake: a 500 saying what went wrong
            response = GoogleError(
                500, "INTERNAL", f"fake Vertex bug: {type(exc).__name__}: {exc}"
            ).response()
        call.status = response.status
        return response

    @staticmethod
    def _service_of(request: Request) -> str:
        if request.path == "/token":
            return "token"
        if request.path.startswith("/v2/"):
            return "logging"
        match = _LOCATION_PATH.match(request.path)
        rest = (match.group("rest") or "") if match else ""
        if request.method == "GET" and _OPERATION_REST.match(rest):
            return "poll"
        if rest.endswith(":predict"):
            return "predict"
        return "vertex"

    def _answer(self, service: str, request: Request) -> Response:
        fault = self._take_fault(request)
        if fault is not None:
            raise GoogleError(fault.status, fault.google_status, fault.message)
        if service == "token":
            return self._token(request)
        if service == "logging":
            return self._list_entries(request)
        match = _LOCATION_PATH.match(request.path)
        if not match:
            raise not_found(f"The fake Vertex serves no {request.path}.")
        self._check_location(match.group("project"), match.group("location"))
        if request.body and request.json() is None:
            raise invalid("Invalid JSON payload received.")
        return self._route(request, match.group("rest") or "")

    def _check_location(self, project: str, location: str) -> None:
        if project not in (self.project, self.project_number):
            raise GoogleError(
                403,
                "PERMISSION_DENIED",
                f"Permission denied on resource project {project} (or it may not exist).",
            )
        if location != self.location:
            raise invalid(
                f"Location {location} is not served by this endpoint "
                f"({self.location}-aiplatform.googleapis.com)."
            )

    def _route(self, request: Request, rest: str) -> Response:
        method = request.method
        if _OPERATION_REST.match(rest) and method == "GET":
            return self._poll(rest)
        if rest == "models:upload" and method == "POST":
            return self._upload(request)
        if rest == "models" and method == "GET":
            return self._list_models(request)
        match = re.fullmatch(r"models/([^/@:]+)(?:@([^/:]+))?(?::([A-Za-z]+))?", rest)
        if match:
            return self._model_route(request, *match.groups())
        if rest == "endpoints":
            if method == "POST":
                return self._create_endpoint(request)
            if method == "GET":
                return self._list_endpoints(request)
        match = re.fullmatch(r"endpoints/([^/:]+)(?::([A-Za-z]+))?", rest)
        if match:
            return self._endpoint_route(request, *match.groups())
        raise not_found(f"The fake Vertex serves no {method} {rest}.")

    # -- operations --------------------------------------------------------------------------------

    def _operation(self, scope: str, metadata_type: str, api: str = "v1") -> _Operation:
        """A new operation under ``scope`` (a resource name, or the location)."""
        op_id = str(1_000_000_000_000_000_000 + next(self._ids) * 7919)
        op = _Operation(
            f"{scope}/operations/{op_id}", metadata_type, max(0, self.pending_polls), api=api
        )
        with self._lock:
            self._operations[op.name] = op
        return op

    def _lro(
        self,
        request: Request,
        scope: str,
        metadata_type: str,
        work: Callable[[_Operation], None],
        *,
        background: bool = False,
        abandon: Callable[[], None] | None = None,
    ) -> Response:
        """Start an operation doing ``work`` (inline, or in a thread) and answer it.

        ``work`` finishes the operation itself; an exception it raises fails the operation. When
        a :meth:`fail_operation` fault takes the operation, ``work`` never runs and ``abandon``
        (if any) undoes what the request had already set up.
        """
        api = "v1beta1" if request.path.startswith("/v1beta1/") else "v1"
        op = self._operation(scope, metadata_type, api)
        fault = self._take_operation_fault(request)
        if fault is not None:
            if abandon is not None:
                abandon()
            op.finish(error={"code": fault.code, "message": fault.message})
            return self._answer_operation(op, hold=False)

        def run() -> None:
            try:
                work(op)
            except GoogleError as error:
                op.finish(error={"code": GRPC_CODES[error.google_status], "message": error.message})
            except Exception as exc:  # a bug of the fake: the operation says so
                op.finish(error={"code": 13, "message": f"fake Vertex bug: {exc!r}"})
            finally:
                if not op.finished.is_set():
                    op.finish(error={"code": 13, "message": "fake Vertex bug: unfinished work"})

        if background:
            self._spawn(f"fake-vertex-{metadata_type}", run)
        else:
            run()
        return self._answer_operation(op, hold=True)

    def _answer_operation(self, op: _Operation, *, hold: bool) -> Response:
        with self._lock:
            pending = op.pending > 0
            if pending:
                op.pending -= 1
        if not pending and hold:
            op.finished.wait(self.hold_s)
        return json_response(200, op.document(not pending and op.finished.is_set()))

    def _poll(self, rest: str) -> Response:
        name = f"{self.parent}/{rest}"
        with self._lock:
            op = self._operations.get(name)
        if op is None:
            raise not_found(f"Operation {name} not found.")
        return self._answer_operation(op, hold=True)

    def _spawn(self, name: str, target: Callable[[], None]) -> None:
        thread = threading.Thread(target=target, name=name, daemon=True)
        with self._lock:
            self._threads = [t for t in self._threads if t.is_alive()]
            self._threads.append(thread)
        thread.start()

    # -- validation --------------------------------------------------------------------------------

    @staticmethod
    def _check_labels(labels: Any, what: str) -> dict[str, str]:
        if labels is None:
            return {}
        if not isinstance(labels, dict):
            raise invalid(f"{what}.labels must be a map of strings.")
        if len(labels) > MAX_LABELS:
            raise invalid(f"{what}.labels has {len(labels)} labels; at most {MAX_LABELS} allowed.")
        for key, value in labels.items():
            if not isinstance(value, str):
                raise invalid(f"{what}.labels: the value of {key!r} must be a string.")
            if not LABEL_KEY.fullmatch(key):
                raise invalid(
                    f"{what}.labels: invalid label key {key!r}. Keys must be 1-63 characters, "
                    "start with a lowercase letter, and contain only lowercase letters, numeric "
                    "characters, underscores and dashes."
                )
            if not LABEL_VALUE.fullmatch(value):
                raise invalid(
                    f"{what}.labels: invalid value {value!r} of label {key!r}. Values can be at "
                    "most 63 characters and contain only lowercase letters, numeric characters, "
                    "underscores and dashes."
                )
        return dict(labels)

    @staticmethod
    def _check_display_name(name: Any, what: str) -> str:
        if not isinstance(name, str) or not name.strip():
            raise invalid(f"{what}.display_name must be set.")
        if len(name) > MAX_DISPLAY_NAME:
            raise invalid(f"{what}.display_name must be at most {MAX_DISPLAY_NAME} characters.")
        return name

    def _resource(self, name: str, noun: str) -> tuple[str, str | None]:
        """(id, version or None) of a resource name of this location (project id or number)."""
        match = re.fullmatch(
            rf"projects/([^/]+)/locations/([^/]+)/{noun}/([^/@]+)(?:@([^/]+))?", name or ""
        )
        if not match:
            raise invalid(f"Invalid {noun[:-1]} resource name {name!r}.")
        project, location, rid, version = match.groups()
        if project not in (self.project, self.project_number) or location != self.location:
            raise not_found(f"The {noun[:-1]} {name} does not exist.")
        return rid, version

    # -- models ------------------------------------------------------------------------------------

    @staticmethod
    def _find_version(model: _Model, ref: str | None) -> _Version | None:
        if ref is None:
            return model.default()
        found = model.versions.get(ref)
        return found or next((v for v in model.versions.values() if ref in v.aliases), None)

    def _model_or_404(self, model_id: str) -> _Model:
        found = self._models.get(model_id)
        if found is None:
            raise not_found(f'The Model "{self.model_name(model_id)}" does not exist.')
        return found

    def _version_or_404(self, model: _Model, ref: str | None) -> _Version:
        found = self._find_version(model, ref)
        if found is None:
            raise not_found(f'The Model "{self.model_name(model.id, ref)}" does not exist.')
        return found

    def _deployments_of(self, model_id: str, version_id: str | None = None) -> list[_Deployed]:
        """Deployed models (serving or being deployed) of a model (one version, when given)."""
        found = []
        for endpoint in self._endpoints.values():
            for deployed in [*endpoint.deployed.values(), *endpoint.deploying.values()]:
                if deployed.model_id == model_id and version_id in (None, deployed.version_id):
                    found.append(deployed)
        return found

    def _version_doc(self, model: _Model, version: _Version) -> dict[str, Any]:
        doc = {
            k: v
            for k, v in version.body.items()
            if k not in ("name", "versionId", "versionAliases", "deployedModels")
        }
        doc.update(
            name=self.model_name(model.id),
            versionId=version.version_id,
            versionAliases=list(version.aliases),
            versionCreateTime=version.created,
            versionUpdateTime=version.updated,
            createTime=model.created,
            updateTime=version.updated,
            etag=f"fake-{version.updated}",
            supportedDeploymentResourcesTypes=["DEDICATED_RESOURCES"],
            supportedInputStorageFormats=["jsonl"],
            supportedOutputStorageFormats=["jsonl"],
            modelSourceInfo={"sourceType": "CUSTOM"},
        )
        refs = [
            {"endpoint": self.endpoint_name(d.endpoint), "deployedModelId": d.id}
            for d in self._deployments_of(model.id, version.version_id)
            if d.ready
        ]
        if refs:
            doc["deployedModels"] = refs
        return doc

    def _check_model_body(self, body: Any) -> dict[str, Any]:
        if not isinstance(body, dict):
            raise invalid("model is required.")
        self._check_display_name(body.get("displayName"), "model")
        self._check_labels(body.get("labels"), "model")
        spec = body.get("containerSpec")
        if not isinstance(spec, dict) or not spec.get("imageUri"):
            raise invalid("model.container_spec.image_uri is required.")
        ports = spec.get("ports") or []
        if len(ports) > 1:
            raise invalid("model.container_spec.ports: only one port is supported.")
        for route in ("predictRoute", "healthRoute"):
            value = spec.get(route)
            if value is not None and not str(value).startswith("/"):
                raise invalid(f"model.container_spec.{route} must start with '/'.")
        for variable in spec.get("env") or []:
            if not isinstance(variable, dict) or not variable.get("name"):
                raise invalid("model.container_spec.env: every variable needs a name.")
        return body

    @staticmethod
    def _check_aliases(aliases: Any) -> list[str]:
        chosen = [str(a) for a in (aliases or [])]
        for alias in chosen:
            name = alias[1:] if alias.startswith("-") else alias
            if not ALIAS.fullmatch(name) or name.isdigit():
                raise invalid(f"Invalid version alias {alias!r}.")
        return chosen

    @staticmethod
    def _move_aliases(model: _Model, version: _Version, aliases: list[str]) -> None:
        """Give ``aliases`` to ``version``, taking them off the versions that had them (an alias
        names one version of a model)."""
        for alias in aliases:
            for other in model.versions.values():
                if other is not version and alias in other.aliases:
                    other.aliases.remove(alias)
            if alias not in version.aliases:
                version.aliases.append(alias)

    def _upload(self, request: Request) -> Response:
        body = request.json() or {}
        model_body = dict(self._check_model_body(body.get("model")))
        aliases = self._check_aliases(model_body.get("versionAliases"))
        parent_name = body.get("parentModel")
        model_id = body.get("modelId")
        with self._lock:
            if parent_name:
                parent_id, _ = self._resource(str(parent_name), "models")
                model = self._model_or_404(parent_id)
            else:
                if model_id:
                    if not MODEL_ID.fullmatch(str(model_id)):
                        raise invalid(
                            f"Invalid model_id {model_id!r}: up to 63 characters of [a-z0-9_-], "
                            "not starting with a number or a hyphen."
                        )
                    if str(model_id) in self._models:
                        raise GoogleError(
                            409,
                            "ALREADY_EXISTS",
                            f'The Model "{self.model_name(str(model_id))}" already exists.',
                        )
                model = _Model(str(model_id or self._new_id()))

        def work(op: _Operation) -> None:
            with self._lock:
                if not parent_name:
                    if self._models.setdefault(model.id, model) is not model:  # a race lost
                        raise GoogleError(
                            409,
                            "ALREADY_EXISTS",
                            f'The Model "{self.model_name(model.id)}" already exists.',
                        )
                elif self._models.get(model.id) is not model:
                    raise not_found(f'The Model "{self.model_name(model.id)}" does not exist.')
                model.last_version += 1
                version = _Version(str(model.last_version), model_body, [])
                model.versions[version.version_id] = version
                wanted = [a for a in aliases if a != "default"]
                # The first version is the default whatever was asked; a later one takes the
                # alias when it was uploaded as the default version.
                if len(model.versions) == 1 or "default" in aliases:
                    wanted.append("default")
                self._move_aliases(model, version, wanted)
            op.finish(
                {
                    "@type": TYPE_PREFIX + "UploadModelResponse",
                    "model": self.model_name(model.id),
                    "modelVersionId": version.version_id,
                }
            )

        return self._lro(request, self.model_name(model.id), "UploadModelOperationMetadata", work)

    def _new_id(self) -> str:
        """A new numeric resource id (19 digits, as Vertex's)."""
        return str(1_000_000_000_000_000_000 + next(self._ids) * 104729)

    def _model_route(
        self, request: Request, model_id: str, ref: str | None, verb: str | None
    ) -> Response:
        method = request.method
        with self._lock:
            model = self._model_or_404(model_id)
            if verb is None and method == "GET":
                return json_response(
                    200, self._version_doc(model, self._version_or_404(model, ref))
                )
            if verb == "listVersions" and method == "GET":
                docs = [
                    self._version_doc(model, v)
                    for _, v in sorted(model.versions.items(), key=lambda kv: int(kv[0]))
                ]
                return self._page(request, docs, "models")
            if verb is None and method == "PATCH":
                return self._update_model(request, model, ref)
            if verb == "mergeVersionAliases" and method == "POST":
                return self._merge_aliases(request, model, ref)
        if verb is None and method == "DELETE":
            return self._delete_model(request, model_id, ref)
        if verb == "deleteVersion" and method == "DELETE":
            return self._delete_version(request, model_id, ref)
        raise not_found(f"The fake Vertex serves no {method} models/{model_id}:{verb}.")

    def _update_model(self, request: Request, model: _Model, ref: str | None) -> Response:
        version = self._version_or_404(model, ref)
        body = request.json() or {}
        paths = _mask(request.query.get("updateMask"))
        if not paths:
            raise invalid("update_mask is required.")
        changes: dict[str, Any] = {}
        for path in paths:
            if path == "labels":
                changes["labels"] = self._check_labels(body.get("labels") or {}, "model")
            elif path == "displayName":
                changes["displayName"] = self._check_display_name(body.get("displayName"), "model")
            elif path in ("description", "versionDescription"):
                changes[path] = str(body.get(path) or "")
            else:
                raise invalid(f"The fake Vertex cannot update model.{path}.")
        version.body.update(changes)
        version.updated = _now()
        return json_response(200, self._version_doc(model, version))

    def _merge_aliases(self, request: Request, model: _Model, ref: str | None) -> Response:
        version = self._version_or_404(model, ref)
        aliases = self._check_aliases((request.json() or {}).get("versionAliases"))
        if not aliases:
            raise invalid("version_aliases is required.")
        removed = [a[1:] for a in aliases if a.startswith("-")]
        added = [a for a in aliases if not a.startswith("-")]
        if "default" in removed:
            raise invalid("The default alias cannot be removed; give it to another version.")
        for alias in removed:
            if alias in version.aliases:
                version.aliases.remove(alias)
        self._move_aliases(model, version, added)
        version.updated = _now()
        return json_response(200, self._version_doc(model, version))

    def _delete_model(self, request: Request, model_id: str, ref: str | None) -> Response:
        with self._lock:
            model = self._model_or_404(model_id)
            if ref is not None:
                raise invalid("DeleteModel takes a model, not a version: use deleteVersion.")
            deployed = self._deployments_of(model_id)
            if deployed:
                where = ", ".join(sorted({self.endpoint_name(d.endpoint) for d in deployed}))
                raise precondition(
                    f'The Model "{self.model_name(model_id)}" is deployed or being deployed at '
                    f"the following Endpoint(s): {where}."
                )

        def work(op: _Operation) -> None:
            with self._lock:
                if self._models.get(model_id) is model:
                    del self._models[model_id]
            op.finish({"@type": EMPTY_TYPE})

        return self._lro(request, self.parent, "DeleteOperationMetadata", work)

    def _delete_version(self, request: Request, model_id: str, ref: str | None) -> Response:
        with self._lock:
            model = self._model_or_404(model_id)
            version = self._version_or_404(model, ref)
            name = self.model_name(model_id, version.version_id)
            deployed = self._deployments_of(model_id, version.version_id)
            if deployed:
                where = ", ".join(sorted({self.endpoint_name(d.endpoint) for d in deployed}))
                raise precondition(
                    f'The Model "{name}" is deployed or being deployed at the following '
                    f"Endpoint(s): {where}."
                )
            if len(model.versions) == 1:
                raise precondition(
                    f'Cannot delete the only version of Model "{self.model_name(model_id)}"; '
                    "delete the model instead."
                )
            if "default" in version.aliases:
                raise precondition(
                    f'Cannot delete the default version of Model "{self.model_name(model_id)}" '
                    "while it has other versions. Make another version the default first."
                )

        def work(op: _Operation) -> None:
            with self._lock:
                model.versions.pop(version.version_id, None)
            op.finish({"@type": EMPTY_TYPE})

        return self._lro(request, self.parent, "DeleteOperationMetadata", work)

    def _list_models(self, request: Request) -> Response:
        clauses = _filter(request.query.get("filter"))
        with self._lock:
            docs = [
                self._version_doc(m, m.default())
                for m in self._models.values()
                if _matches(clauses, m.default().body)
            ]
        return self._page(request, docs, "models")

    def _page(self, request: Request, items: list[dict[str, Any]], key: str) -> Response:
        size = int(request.query.get("pageSize") or self.page_size) or self.page_size
        start = int(request.query.get("pageToken") or 0)
        doc: dict[str, Any] = {key: items[start : start + size]}
        if start + size < len(items):
            doc["nextPageToken"] = str(start + size)
        return json_response(200, doc)

    # -- endpoints ---------------------------------------------------------------------------------

    def _endpoint_or_404(self, endpoint_id: str) -> _Endpoint:
        found = self._endpoints.get(endpoint_id)
        if found is None:
            raise not_found(f'The Endpoint "{self.endpoint_name(endpoint_id)}" does not exist.')
        return found

    def _deployed_doc(self, deployed: _Deployed) -> dict[str, Any]:
        doc = {k: v for k, v in deployed.body.items() if k not in ("model", "id")}
        doc.update(
            id=deployed.id,
            model=self.model_name(deployed.model_id),
            modelVersionId=deployed.version_id,
            createTime=deployed.created,
        )
        return doc

    def _endpoint_doc(self, endpoint: _Endpoint) -> dict[str, Any]:
        doc = {
            k: v
            for k, v in endpoint.body.items()
            if k not in ("name", "deployedModels", "trafficSplit")
        }
        doc.update(
            name=self.endpoint_name(endpoint.id),
            createTime=endpoint.created,
            updateTime=endpoint.updated,
            etag=f"fake-{endpoint.updated}",
        )
        if endpoint.deployed:
            doc["deployedModels"] = [self._deployed_doc(d) for d in endpoint.deployed.values()]
        if endpoint.traffic:
            doc["trafficSplit"] = dict(endpoint.traffic)
        return doc

    def _create_endpoint(self, request: Request) -> Response:
        body = request.json() or {}
        self._check_display_name(body.get("displayName"), "endpoint")
        labels = self._check_labels(body.get("labels"), "endpoint")
        if body.get("deployedModels") or body.get("trafficSplit"):
            raise invalid("An endpoint is created without deployed models; use deployModel.")
        wanted = request.query.get("endpointId")
        with self._lock:
            if wanted:
                if not ENDPOINT_ID.fullmatch(wanted):
                    raise invalid(
                        f"Invalid endpoint_id {wanted!r}: a lowercase letter then up to 62 of "
                        "[a-z0-9-] (not ending in '-'), or up to 9 digits without a leading zero."
                    )
                if wanted in self._endpoints:
                    raise GoogleError(
                        409,
                        "ALREADY_EXISTS",
                        f'The Endpoint "{self.endpoint_name(wanted)}" already exists.',
                    )
            endpoint_id = wanted or self._new_id()
            endpoint = _Endpoint(endpoint_id, {**body, "labels": labels} if labels else body)

        def work(op: _Operation) -> None:
            with self._lock:
                if endpoint_id in self._endpoints:
                    raise GoogleError(
                        409, "ALREADY_EXISTS", f'The Endpoint "{endpoint_id}" already exists.'
                    )
                self._endpoints[endpoint_id] = endpoint
                doc = self._endpoint_doc(endpoint)
            op.finish({"@type": TYPE_PREFIX + "Endpoint", **doc})

        return self._lro(
            request,
            self.endpoint_name(endpoint_id),
            "CreateEndpointOperationMetadata",
            work,
        )

    def _list_endpoints(self, request: Request) -> Response:
        clauses = _filter(request.query.get("filter"))
        with self._lock:
            docs = [
                self._endpoint_doc(e) for e in self._endpoints.values() if _matches(clauses, e.body)
            ]
        return self._page(request, docs, "endpoints")

    def _endpoint_route(self, request: Request, endpoint_id: str, verb: str | None) -> Response:
        method = request.method
        if verb == "predict" and method == "POST":
            return self._predict(request, endpoint_id)
        with self._lock:
            endpoint = self._endpoint_or_404(endpoint_id)
            if verb is None and method == "GET":
                return json_response(200, self._endpoint_doc(endpoint))
            if verb is None and method == "PATCH":
                return self._update_endpoint(request, endpoint)
        if verb is None and method == "DELETE":
            return self._delete_endpoint(request, endpoint)
        if verb == "deployModel" and method == "POST":
            return self._deploy(request, endpoint)
        if verb == "undeployModel" and method == "POST":
            return self._undeploy(request, endpoint)
        raise not_found(f"The fake Vertex serves no {method} endpoints/{endpoint_id}:{verb}.")

    def _check_traffic(self, endpoint: _Endpoint, split: Any, known: set[str]) -> dict[str, int]:
        """A traffic split over ``known`` deployed model ids: empty (no traffic accepted), or
        percentages summing to 100 (zeros kept, as given)."""
        if split is None:
            return {}
        if not isinstance(split, dict):
            raise invalid("traffic_split must be a map of deployed model ids to percentages.")
        chosen: dict[str, int] = {}
        for key, value in split.items():
            if key not in known:
                raise invalid(
                    f"Traffic split references DeployedModel {key}, which is not deployed on "
                    f'Endpoint "{self.endpoint_name(endpoint.id)}".'
                )
            if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= 100:
                raise invalid(f"Traffic split percentage of {key} must be between 0 and 100.")
            chosen[key] = value
        total = sum(chosen.values())
        if chosen and total != 100:
            raise invalid(
                f"The sum of the traffic split of Endpoint "
                f'"{self.endpoint_name(endpoint.id)}" must be 100, not {total}.'
            )
        return chosen

    def _update_endpoint(self, request: Request, endpoint: _Endpoint) -> Response:
        body = request.json() or {}
        paths = _mask(request.query.get("updateMask"))
        if not paths:
            raise invalid("update_mask is required.")
        changes: dict[str, Any] = {}
        traffic = None
        for path in paths:
            if path == "trafficSplit":
                traffic = self._check_traffic(
                    endpoint, body.get("trafficSplit") or {}, set(endpoint.deployed)
                )
            elif path == "labels":
                changes["labels"] = self._check_labels(body.get("labels") or {}, "endpoint")
            elif path == "displayName":
                changes["displayName"] = self._check_display_name(
                    body.get("displayName"), "endpoint"
                )
            elif path == "description":
                changes["description"] = str(body.get("description") or "")
            else:
                raise invalid(f"The fake Vertex cannot update endpoint.{path}.")
        if traffic is not None:
            endpoint.traffic = traffic
        endpoint.body.update(changes)
        endpoint.updated = _now()
        return json_response(200, self._endpoint_doc(endpoint))

    def _delete_endpoint(self, request: Request, endpoint: _Endpoint) -> Response:
        with self._lock:
            if endpoint.deployed or endpoint.deploying:
                raise precondition(
                    f'Endpoint "{self.endpoint_name(endpoint.id)}" has deployed or being deployed '
                    "DeployedModel(s). Undeploy all models first."
                )

        def work(op: _Operation) -> None:
            with self._lock:
                if self._endpoints.get(endpoint.id) is endpoint:
                    del self._endpoints[endpoint.id]
            op.finish({"@type": EMPTY_TYPE})

        return self._lro(request, self.parent, "DeleteOperationMetadata", work)

    # -- deploying ---------------------------------------------------------------------------------

    def _deploy(self, request: Request, endpoint: _Endpoint) -> Response:
        body = request.json() or {}
        wanted = body.get("deployedModel")
        if not isinstance(wanted, dict) or not wanted.get("model"):
            raise invalid("deployed_model.model is required.")
        model_id, ref = self._resource(str(wanted["model"]), "models")
        resources = wanted.get("dedicatedResources")
        if not isinstance(resources, dict):
            raise invalid(
                f'Model "{self.model_name(model_id)}" supports only DEDICATED_RESOURCES: '
                "deployed_model.dedicated_resources is required."
            )
        machine = (resources.get("machineSpec") or {}).get("machineType")
        if not machine:
            raise invalid(
                "deployed_model.dedicated_resources.machine_spec.machine_type is required."
            )
        low = int(resources.get("minReplicaCount") or 0)
        high = int(resources.get("maxReplicaCount") or low)
        if low < 1:
            raise invalid("dedicated_resources.min_replica_count must be at least 1.")
        if high < low:
            raise invalid(
                "dedicated_resources.max_replica_count must be at least min_replica_count."
            )
        with self._lock:
            model = self._model_or_404(model_id)
            version = self._version_or_404(model, ref)
            deployed_id = str(next(self._ids) * 1_000_003 + 7_000_000_000_000_000_000)
            split = body.get("trafficSplit")
            if split:
                # "0" names the model being deployed.
                renamed = {deployed_id if k == "0" else k: v for k, v in dict(split).items()}
                traffic = self._check_traffic(endpoint, renamed, {*endpoint.deployed, deployed_id})
            else:  # no split: the endpoint's stays as it is (the new model gets no traffic)
                traffic = dict(endpoint.traffic)
            stored = {k: v for k, v in wanted.items() if k not in ("model", "id")}
            spec_of_machine = dict(resources.get("machineSpec") or {})
            if "acceleratorType" in spec_of_machine:
                spec_of_machine["acceleratorType"] = _accelerator_name(
                    spec_of_machine["acceleratorType"]
                )
            stored["dedicatedResources"] = {
                **resources,
                "machineSpec": spec_of_machine,
                "minReplicaCount": low,
                "maxReplicaCount": high,
            }
            deployed = _Deployed(deployed_id, endpoint.id, model.id, version.version_id, stored)
            endpoint.deploying[deployed_id] = deployed
            crash = self._deploy_faults.pop(0) if self._deploy_faults else None
            generation = self._generation
            spec = dict(version.body.get("containerSpec") or {})
            artifact = version.body.get("artifactUri")

        def work(op: _Operation) -> None:
            self._provision(endpoint, deployed, spec, artifact, traffic, crash, generation, op)

        def abandon() -> None:
            with self._lock:
                endpoint.deploying.pop(deployed_id, None)

        return self._lro(
            request,
            self.endpoint_name(endpoint.id),
            "DeployModelOperationMetadata",
            work,
            background=True,
            abandon=abandon,
        )

    def _current(self, endpoint: _Endpoint, deployed: _Deployed, generation: int) -> bool:
        return (
            self._generation == generation
            and self._endpoints.get(endpoint.id) is endpoint
            and endpoint.deploying.get(deployed.id) is deployed
            and not deployed.cancel.is_set()
        )

    def _provision(
        self,
        endpoint: _Endpoint,
        deployed: _Deployed,
        spec: dict[str, Any],
        artifact: str | None,
        traffic: dict[str, int],
        crash: str | None,
        generation: int,
        op: _Operation,
    ) -> None:
        """Start the deployed model's host and wait until ready; then the endpoint serves it."""
        placed: _Placed | None = None
        try:
            if crash is not None:
                self._log(
                    endpoint.id, deployed.id, f"fake Vertex: the model server crashed: {crash}"
                )
                raise ProvisioningFailure(crash)
            placed = self._place(endpoint, deployed, spec, artifact, generation)
        except ProvisioningFailure as failure:
            with self._lock:
                endpoint.deploying.pop(deployed.id, None)
            op.finish(error={"code": failure.code, "message": failure.reason})
            return
        except Exception as exc:  # a bug of the fake: the operation says so instead of hanging
            with self._lock:
                endpoint.deploying.pop(deployed.id, None)
            op.finish(error={"code": 13, "message": f"fake Vertex bug: {exc!r}"})
            return
        with self._lock:
            current = self._current(endpoint, deployed, generation)
            if current:
                del endpoint.deploying[deployed.id]
                deployed.host, deployed.ready = placed.host, True
                endpoint.deployed[deployed.id] = deployed
                # A model undeployed meanwhile: its share goes nowhere, the split stays valid.
                kept = {k: v for k, v in traffic.items() if k in endpoint.deployed}
                if not kept or sum(kept.values()) == 100:
                    endpoint.traffic = kept
                endpoint.updated = _now()
                doc = self._deployed_doc(deployed)
        if not current:
            self._retire(placed.host)
            op.finish(error={"code": 1, "message": "The deployment was cancelled."})
            return
        op.finish({"@type": TYPE_PREFIX + "DeployModelResponse", "deployedModel": doc})

    def _logs_url(self, endpoint_id: str) -> str:
        query = urllib.parse.quote(
            f'resource.type="{LOG_RESOURCE}"\nresource.labels.endpoint_id="{endpoint_id}"\n'
            f'resource.labels.location="{self.location}"',
            safe="",
        )
        return (
            f"https://console.cloud.google.com/logs/viewer?project={self.project_number}"
            f"&resource={urllib.parse.quote(LOG_RESOURCE, safe='')}&advancedFilter={query}"
        )

    def _place(
        self,
        endpoint: _Endpoint,
        deployed: _Deployed,
        spec: dict[str, Any],
        artifact: str | None,
        generation: int,
    ) -> _Placed:
        """Pull, start and wait for the deployed model's host.

        Raises:
            ProvisioningFailure: with Vertex's message.
        """
        image = str(spec.get("imageUri") or "")
        ports = spec.get("ports") or []
        container_port = int((ports[0] or {}).get("containerPort") or DEFAULT_PORT) if ports else 0
        container_port = container_port or DEFAULT_PORT
        base = f"/v1/endpoints/{endpoint.id}/deployedModels/{deployed.id}"
        health = str(spec.get("healthRoute") or base)
        predict = str(spec.get("predictRoute") or f"{base}:predict")
        resources = deployed.body.get("dedicatedResources") or {}
        machine = resources.get("machineSpec") or {}
        variables = {
            str(v["name"]): str(v.get("value", "")) for v in spec.get("env") or [] if v.get("name")
        }
        aip = {
            "AIP_HEALTH_ROUTE": health,
            "AIP_PREDICT_ROUTE": predict,
            "AIP_DEPLOYED_MODEL_ID": deployed.id,
            "AIP_ENDPOINT_ID": endpoint.id,
            "AIP_PROJECT_NUMBER": self.project_number,
            "AIP_MACHINE_TYPE": str(machine.get("machineType") or ""),
            "AIP_MODE": "PREDICTION",
            "AIP_MODE_VERSION": "1.0.0",
            "AIP_FRAMEWORK": "CUSTOM_CONTAINER",
        }
        if machine.get("acceleratorType") and machine.get("acceleratorCount"):
            aip["AIP_ACCELERATOR_TYPE"] = str(machine["acceleratorType"])
        if artifact:
            aip["AIP_STORAGE_URI"] = str(artifact)
        if spec.get("command"):
            raise ProvisioningFailure(
                "The fake Vertex cannot replace an image's ENTRYPOINT (containerSpec.command); "
                "use the image's own, or containerSpec.args for its CMD.",
                GRPC_CODES["INVALID_ARGUMENT"],
            )
        assert self._workdir is not None
        root = Path(tempfile.mkdtemp(prefix=f"host-{deployed.id}-", dir=self._workdir))
        os.chmod(root, 0o755)
        try:
            host, port_inside = self._new_host(
                endpoint, deployed, image, spec, variables, aip, root, container_port
            )
        except BaseException:
            shutil.rmtree(root, ignore_errors=True)
            raise
        replicas = (
            int(resources.get("minReplicaCount") or 1),
            int(resources.get("maxReplicaCount") or 1),
        )
        placed = _Placed(
            endpoint.id, deployed.id, host, image, root, health, predict, port_inside, replicas
        )
        with self._lock:
            if not self._current(endpoint, deployed, generation):
                shutil.rmtree(root, ignore_errors=True)
                raise ProvisioningFailure("The deployment was cancelled.", GRPC_CODES["CANCELLED"])
            self._history.append(placed)
        logs = f"Model server logs can be found at {self._logs_url(endpoint.id)}"
        try:
            host.start()
            host.wait_ready(health, self.startup_timeout, deployed.cancel, reason="never ready")
        except HostFailure as failure:
            exited = host.exit_status() is not None
            self._retire(host)
            if "pull" in failure.reason.lower():
                message = f"Failed to deploy the model: {failure.reason} {failure.detail}".strip()
            elif deployed.cancel.is_set():
                raise ProvisioningFailure(
                    "The deployment was cancelled.", GRPC_CODES["CANCELLED"]
                ) from None
            elif exited:
                message = f"Model server exited unexpectedly. {logs}"
            else:
                message = (
                    "Model server never became ready. Please validate that your model file or "
                    f"container configuration are valid. {logs}"
                )
            raise ProvisioningFailure(message) from None
        return placed

    def _new_host(
        self,
        endpoint: _Endpoint,
        deployed: _Deployed,
        image: str,
        spec: dict[str, Any],
        variables: dict[str, str],
        aip: dict[str, str],
        root: Path,
        container_port: int,
    ) -> tuple[Host, int]:
        """The host for one deployed model, and the port its server listens on inside."""
        name = f"fake-vertex-{endpoint.id}-{deployed.id}"

        def sink(line: str) -> None:
            self._log(endpoint.id, deployed.id, line)

        args = [str(a) for a in spec.get("args") or []]
        if self.hosting == "process":
            assert self._images is not None
            try:
                _digest, image_env, package = self._images.package(image)
            except HostFailure as failure:
                raise ProvisioningFailure(
                    f"Failed to deploy the model: unable to pull the image {image}: "
                    f"{failure.reason} {failure.detail}".strip()
                ) from None
            if package is not None:
                (root / "opt/modelport").mkdir(parents=True, exist_ok=True)
                (root / IMAGE_PACKAGE_DIR).symlink_to(package, target_is_directory=True)
            port = free_port()
            # The image's ENV with container paths under this host's root (PATH is the venv's:
            # this machine's stays), then the spec's, then what Vertex sets (it wins).
            env = {k: _in_root(v, root) for k, v in image_env.items() if k != "PATH"}
            env.update({k: _in_root(v, root) for k, v in variables.items()})
            env.update(aip)
            # Another machine's port would clash here: the server's port is a free one.
            env["AIP_HTTP_PORT"] = str(port)
            env["MODELPORT_HOST"] = "127.0.0.1"  # never listen beyond this machine
            env.setdefault("MODELPORT_WORKERS", "1")  # the tests' machines have 2 cores
            host: Host = ProcessHost(
                name=name,
                port=port,
                env=env,
                sink=sink,
                stop_timeout=self.stop_timeout,
                argv=[
                    sys.executable,
                    "-m",
                    "modelport.image.entrypoint",
                    *(args or DEFAULT_ARGS),
                ],
                cwd=str(root),
            )
            return host, port
        if self.hosting == "container":
            labels = self.container_labels
            if labels is None:
                from docker_fixtures import run_labels

                labels = run_labels()
            env = {**variables, **aip, "AIP_HTTP_PORT": str(container_port)}
            host = ContainerHost(
                name=name,
                env=env,
                sink=sink,
                stop_timeout=self.stop_timeout,
                client=self._docker_client(),
                image=image,
                command=args or None,  # the image's own CMD unless the spec gives args
                container_port=container_port,
                labels={**labels, "dev.modelport.fake-vertex": endpoint.id},
                subject=f"deployed model {deployed.id}",
            )
            return host, container_port
        raise ValueError(f"unknown hosting {self.hosting!r}: 'process' or 'container'")

    def _docker_client(self) -> Any:
        with self._lock:
            if self._docker is None:
                import docker

                base_url = os.environ.get("DOCKER_HOST")
                if not base_url:
                    raise ProvisioningFailure(
                        "container hosting needs DOCKER_HOST", GRPC_CODES["INTERNAL"]
                    )
                self._docker = docker.DockerClient(base_url=base_url, timeout=600)
            return self._docker

    def _retire(self, host: Host) -> None:
        """Stop a host (its output drained) and remove its root directory."""
        host.stop()
        with self._lock:
            placed = next((p for p in self._history if p.host is host), None)
        if placed is not None:
            shutil.rmtree(placed.root, ignore_errors=True)

    def _log(self, endpoint_id: str, deployed_id: str, line: str) -> None:
        entry = LogEntry(
            time.time_ns() // 1000, endpoint_id, deployed_id, line, uuid.uuid4().hex[:16]
        )
        with self._lock:
            self._logs.append(entry)
            self._logged.notify_all()

    def _undeploy(self, request: Request, endpoint: _Endpoint) -> Response:
        body = request.json() or {}
        deployed_id = str(body.get("deployedModelId") or "")
        with self._lock:
            deployed = endpoint.deployed.get(deployed_id)
            if deployed is None:
                raise not_found(
                    f"DeployedModel {deployed_id} does not exist in Endpoint "
                    f'"{self.endpoint_name(endpoint.id)}".'
                )
            remaining = set(endpoint.deployed) - {deployed_id}
            if body.get("trafficSplit"):
                traffic = self._check_traffic(endpoint, body["trafficSplit"], remaining)
            else:
                traffic = {k: v for k, v in endpoint.traffic.items() if k in remaining}
                if traffic and sum(traffic.values()) != 100:
                    raise invalid(
                        f"DeployedModel {deployed_id} has traffic: undeploying it needs a new "
                        f'traffic_split for Endpoint "{self.endpoint_name(endpoint.id)}".'
                    )

        def work(op: _Operation) -> None:
            with self._lock:
                if endpoint.deployed.get(deployed_id) is deployed:
                    del endpoint.deployed[deployed_id]
                    endpoint.traffic = {k: v for k, v in traffic.items() if k in endpoint.deployed}
                    endpoint.updated = _now()
                host = deployed.host
            deployed.cancel.set()
            if host is not None:
                self._retire(host)
            op.finish({"@type": TYPE_PREFIX + "UndeployModelResponse"})

        return self._lro(
            request,
            self.endpoint_name(endpoint.id),
            "UndeployModelOperationMetadata",
            work,
            background=True,
        )

    # -- predicting --------------------------------------------------------------------------------

    @staticmethod
    def _pick(endpoint: _Endpoint) -> str | None:
        """Weighted round robin: the deployed model furthest behind its share of requests."""
        weights = {d: w for d, w in sorted(endpoint.traffic.items()) if w > 0}
        if not weights:
            return None
        chosen = min(
            weights, key=lambda d: (endpoint.served.get(d, 0) / weights[d], -weights[d], d)
        )
        endpoint.served[chosen] = endpoint.served.get(chosen, 0) + 1
        return chosen

    def _predict(self, request: Request, endpoint_id: str) -> Response:
        body = request.json()
        with self._lock:
            endpoint = self._endpoint_or_404(endpoint_id)
            if not isinstance(body, dict) or not isinstance(body.get("instances"), list):
                self._scored.append(Scored(endpoint_id, None, 400))
                raise invalid("instances must be a list.")
            chosen = self._pick(endpoint)
            deployed = endpoint.deployed.get(chosen) if chosen else None
            if deployed is None or deployed.host is None:
                self._scored.append(Scored(endpoint_id, None, 400))
                raise precondition(
                    f'Endpoint "{self.endpoint_name(endpoint_id)}" has no deployed model with '
                    "traffic to serve the request."
                )
            placed = next((p for p in reversed(self._history) if p.host is deployed.host), None)
            model = self._models.get(deployed.model_id)
            version = model.versions.get(deployed.version_id) if model else None
            display = (version.body.get("displayName") if version else None) or ""
        assert placed is not None
        try:
            answer = placed.host.request(
                "POST",
                placed.predict_route,
                request.body,
                {"Content-Type": "application/json"},
                self.predict_timeout_s,
            )
        except OSError as exc:
            self._record(endpoint_id, deployed.id, 503)
            raise GoogleError(
                503, "UNAVAILABLE", f"The model server did not answer: {exc}"
            ) from None
        if answer.status != 200:
            self._record(endpoint_id, deployed.id, answer.status)
            raise GoogleError(answer.status, None, _container_message(answer.body, answer.status))
        try:
            result = json.loads(answer.body)
        except ValueError:
            self._record(endpoint_id, deployed.id, 500)
            raise GoogleError(500, "INTERNAL", "The model server's answer is not JSON.") from None
        if not isinstance(result, dict) or "predictions" not in result:
            self._record(endpoint_id, deployed.id, 500)
            raise GoogleError(500, "INTERNAL", "The model server's answer has no 'predictions'.")
        self._record(endpoint_id, deployed.id, 200)
        return json_response(
            200,
            {
                "predictions": result["predictions"],
                "deployedModelId": deployed.id,
                "model": self.model_name(deployed.model_id),
                "modelDisplayName": display,
                "modelVersionId": deployed.version_id,
            },
        )

    def _record(self, endpoint_id: str, deployed_id: str | None, status: int) -> None:
        with self._lock:
            self._scored.append(Scored(endpoint_id, deployed_id, status))

    # -- Cloud Logging and OAuth -------------------------------------------------------------------

    def _list_entries(self, request: Request) -> Response:
        if request.path != "/v2/entries:list" or request.method != "POST":
            raise not_found(f"The fake Cloud Logging serves no {request.method} {request.path}.")
        body = request.json() or {}
        names = body.get("resourceNames") or []
        allowed = {f"projects/{self.project}", f"projects/{self.project_number}"}
        if not names or any(n not in allowed for n in names):
            raise GoogleError(
                403, "PERMISSION_DENIED", f"The caller cannot read the logs of {names}."
            )
        tests = _log_filter(str(body.get("filter") or ""))
        order = str(body.get("orderBy") or "timestamp asc").strip().lower()
        if order not in ("timestamp asc", "timestamp desc"):
            raise invalid(f"Unsupported order_by {order!r}.")
        size = min(int(body.get("pageSize") or 50), 1000)
        start = int(body.get("pageToken") or 0)
        with self._lock:
            entries = [self._entry_doc(e) for e in self._logs]
        chosen = [e for e in entries if all(test(e) for test in tests)]
        chosen.sort(key=lambda e: e["_at"], reverse=order.endswith("desc"))
        page = chosen[start : start + size]
        for entry in page:
            entry.pop("_at")
        doc: dict[str, Any] = {"entries": page} if page else {}
        if start + size < len(chosen):
            doc["nextPageToken"] = str(start + size)
        return json_response(200, doc)

    def _entry_doc(self, entry: LogEntry) -> dict[str, Any]:
        return {
            "_at": entry.micros,
            "insertId": entry.insert_id,
            "logName": f"projects/{self.project}/logs/{LOG_ID}",
            "resource": {
                "type": LOG_RESOURCE,
                "labels": {
                    "endpoint_id": entry.endpoint,
                    "deployed_model_id": entry.deployed_model,
                    "location": self.location,
                    "resource_container": self.project_number,
                },
            },
            "textPayload": entry.text,
            "timestamp": _stamp(entry.micros),
            "receiveTimestamp": _stamp(entry.micros),
            "severity": "INFO",
        }

    def _token(self, request: Request) -> Response:
        if request.method != "POST":
            raise GoogleError(405, "INVALID_ARGUMENT", "The token endpoint takes POST.")
        form = request.form()
        if not form.get("grant_type"):
            return json_response(
                400, {"error": "invalid_request", "error_description": "grant_type is missing"}
            )
        token = f"fake-vertex-token-{uuid.uuid4().hex}"
        with self._lock:
            self._tokens.append(token)
        return json_response(
            200, {"access_token": token, "expires_in": 3600, "token_type": "Bearer"}
        )

    # -- waiting ---------------------------------------------------------------------------------

    def wait_log(self, predicate: Callable[[LogEntry], bool], timeout: float = 30.0) -> LogEntry:
        """The first log entry ``predicate`` accepts, waiting up to ``timeout`` s for it.

        Raises:
            AssertionError: none came in time.
        """
        deadline = time.monotonic() + timeout
        with self._logged:
            while True:
                found = next((e for e in self._logs if predicate(e)), None)
                if found is not None:
                    return found
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"no such log entry within {timeout:g} s")
                self._logged.wait(left)


# --- helpers ----------------------------------------------------------------------------------


def _mask(text: str | None) -> list[str]:
    """A FieldMask's paths in camelCase (REST sends camelCase; snake_case is accepted too)."""
    paths = []
    for raw in (text or "").split(","):
        part = raw.strip()
        if part:
            head, *rest = part.split("_")
            paths.append(head + "".join(w[:1].upper() + w[1:] for w in rest))
    return paths


_CLAUSE = re.compile(
    r"^\s*(?P<field>labels\.[a-z][a-z0-9_-]*|display_name|displayName)\s*"
    r'(?:(?P<op>=|!=)\s*(?P<value>"[^"]*"|[^\s"]+)|(?P<has>:\s*\*))\s*$'
)


def _filter(text: str | None) -> list[tuple[str, str, str | None]]:
    """A list filter's clauses (``labels.KEY=VALUE``, ``labels.KEY:*``, ``display_name=...``,
    joined by ``AND``) as (field, op, value).

    Raises:
        GoogleError: anything else (400 INVALID_ARGUMENT, as Vertex answers a bad filter).
    """
    if not text or not text.strip():
        return []
    clauses = []
    for part in re.split(r"\s+AND\s+", text.strip()):
        match = _CLAUSE.match(part)
        if not match:
            raise invalid(
                f"Unsupported filter {text!r} (the fake Vertex: labels and display_name)."
            )
        name = (
            "displayName"
            if match.group("field") in ("display_name", "displayName")
            else (match.group("field"))
        )
        if match.group("has"):
            clauses.append((name, ":*", None))
        else:
            clauses.append((name, match.group("op"), match.group("value").strip('"')))
    return clauses


def _matches(clauses: list[tuple[str, str, str | None]], body: Mapping[str, Any]) -> bool:
    for name, op, value in clauses:
        if name.startswith("labels."):
            actual = (body.get("labels") or {}).get(name[len("labels.") :])
        else:
            actual = body.get("displayName")
        if op == ":*":
            ok = actual is not None
        elif op == "=":
            ok = actual == value
        else:
            ok = actual != value
        if not ok:
            return False
    return True


_LOG_CLAUSE = re.compile(
    r'^\s*(?P<field>[A-Za-z_][A-Za-z0-9_.]*)\s*(?P<op>>=|<=|!=|=|>|<|:)\s*(?P<value>"[^"]*"|\S+)\s*$'
)


def _log_filter(text: str) -> list[Callable[[dict[str, Any]], bool]]:
    """Cloud Logging filter clauses joined by ``AND`` (or new lines): ``resource.type``,
    ``resource.labels.KEY``, ``logName``, ``severity`` and ``textPayload`` compared with ``=``,
    ``!=`` or ``:`` (contains); ``timestamp`` and ``severity`` also with ``>= > <= <``.

    Raises:
        GoogleError: another form (400 INVALID_ARGUMENT: the fake does not understand it).
    """
    tests: list[Callable[[dict[str, Any]], bool]] = []
    parts = [p for p in re.split(r"\s+AND\s+|\n", text.strip()) if p.strip()]
    for part in parts:
        match = _LOG_CLAUSE.match(part)
        if not match:
            raise invalid(f"Unsupported filter clause {part!r} (the fake Cloud Logging).")
        name, op, raw_value = match.group("field"), match.group("op"), match.group("value")
        value = raw_value[1:-1] if raw_value.startswith('"') else raw_value
        if name == "timestamp":
            if op not in (">=", ">", "<=", "<"):
                raise invalid(f"Unsupported timestamp comparison {part!r}.")
            try:
                bound = _parse_stamp(value)
            except ValueError:
                raise invalid(f"Invalid timestamp {value!r}.") from None
            compare = {
                ">=": lambda at, b=bound: at >= b,
                ">": lambda at, b=bound: at > b,
                "<=": lambda at, b=bound: at <= b,
                "<": lambda at, b=bound: at < b,
            }[op]
            tests.append(lambda e, c=compare: c(e["_at"]))
            continue
        if name == "severity" and op in (">=", ">", "<=", "<"):
            level = SEVERITIES.get(value.upper())
            if level is None:
                raise invalid(f"Unknown severity {value!r}.")
            compare = {
                ">=": lambda at, b=level: at >= b,
                ">": lambda at, b=level: at > b,
                "<=": lambda at, b=level: at <= b,
                "<": lambda at, b=level: at < b,
            }[op]
            tests.append(lambda e, c=compare: c(SEVERITIES[e["severity"]]))
            continue
        if name not in ("resource.type", "logName", "severity", "textPayload") and not (
            name.startswith("resource.labels.")
        ):
            raise invalid(f"Unsupported filter field {name!r} (the fake Cloud Logging).")
        if op not in ("=", "!=", ":"):
            raise invalid(f"Unsupported comparison {part!r} (the fake Cloud Logging).")

        def test(entry: dict[str, Any], name: str = name, op: str = op, value: str = value) -> bool:
            actual: Any = entry
            for key in name.split("."):
                actual = actual.get(key) if isinstance(actual, dict) else None
            text = "" if actual is None else str(actual)
            if op == ":":
                return value in text
            return (text == value) == (op == "=")

        tests.append(test)
    return tests


def _accelerator_name(value: Any) -> str:
    """An accelerator type as Vertex shows it (``NVIDIA_TESLA_T4``): the SDK's REST transport
    sends enums as numbers (``$alt=json;enum-encoding=int``)."""
    if isinstance(value, int) and not isinstance(value, bool):
        try:
            from google.cloud.aiplatform_v1.types import AcceleratorType
        except ImportError:  # pragma: no cover - the SDK is what sends numbers
            return str(value)
        try:
            return str(AcceleratorType(value).name)
        except ValueError:
            return str(value)
    return str(value)


def _container_message(body: bytes, status: int) -> str:
    """What Vertex says of a container's error answer: its Google-shaped message, else its text."""
    try:
        document = json.loads(body)
    except ValueError:
        document = None
    if isinstance(document, dict):
        error = document.get("error")
        if isinstance(error, dict) and error.get("message"):
            return str(error["message"])
        if isinstance(error, str):
            return error
        if document.get("message"):
            return str(document["message"])
    text = body.decode("utf-8", "replace").strip()[:500]
    return text or f"The model server answered {status}."


def _in_root(value: str, root: Path) -> str:
    """A container path (``/opt/modelport/...``) under ``root``.

    Only a path the image really has there: one it lacks (a runtime image's package directory)
    stays as the container would see it, missing.
    """
    for prefix in CONTAINER_ROOTS:
        if value == prefix or value.startswith(prefix + "/"):
            mapped = str(root) + value
            return mapped if os.path.lexists(mapped) else value
    return value
