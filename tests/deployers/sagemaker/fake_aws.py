"""An offline AWS for the SageMaker tests: a real moto server with its gaps closed in-process.

:class:`FakeAWS` starts moto's server on 127.0.0.1 (a :class:`~moto.server.ThreadedMotoServer`,
so moto's backends live in this process) and real boto3 clients (or a CLI in a subprocess, with
:attr:`FakeAWS.env`) talk to it over HTTP. Where moto differs from AWS, the fake patches moto's
backend and response classes for as long as it runs (undone by :meth:`FakeAWS.stop`):

- creating a model, endpoint configuration or endpoint whose name exists is refused with AWS's
  ValidationException;
- endpoints have a real lifecycle: ``Creating`` while a *host* (see :mod:`fake_hosting`) starts
  on the model data from moto's S3 and until ``GET /ping`` answers 200, then ``InService``, or
  ``Failed`` with AWS's FailureReason; the host's output goes to CloudWatch Logs
  (``/aws/sagemaker/Endpoints/<endpoint>``, stream ``<variant>/<instance-id>``);
- ``UpdateEndpoint`` (not implemented by moto) starts a host for the new configuration while the
  old one keeps serving, watches the deployment's auto-rollback alarms, then switches, or rolls
  back (old configuration kept, FailureReason saying why);
- ``DeleteEndpoint`` stops the endpoint's hosts;
- ``InvokeEndpoint`` goes to the serving host's ``POST /invocations``, its errors come back as
  AWS's ``ModelError`` (HTTP 424); ``InvokeEndpointAsync`` reads and writes moto's S3;
- ECR's registry is the local one (``$MODELPORT_TEST_REGISTRY``): ``GetAuthorizationToken`` points
  there and ``DescribeImages`` reports what it holds.

A WSGI middleware in front of moto records every request (:meth:`FakeAWS.calls`) and injects
faults (:meth:`FakeAWS.fail_next`), so both also work for requests from other processes.

Only one FakeAWS runs at a time (moto's backends are global to the process).
"""

from __future__ import annotations

import atexit
import base64
import contextlib
import datetime
import functools
import io
import json
import os
import re
import shutil
import tempfile
import threading
import time
import urllib.parse
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from unittest import mock

from fake_hosting import (
    ContainerHost,
    Host,
    HostFailure,
    HostSpec,
    ProcessHost,
    exchange,
    extract_model_data,
    split_image,
)

ACCOUNT = "123456789012"
REGION = "us-east-1"
#: The credentials every client of the fake uses (moto accepts any).
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}
#: A request carrying this header is the fake's own: neither recorded nor faulted.
INTERNAL_HEADER = "X-Modelport-Fake-Internal"
#: Endpoint states in which AWS refuses UpdateEndpoint and DeleteEndpoint.
IN_PROGRESS = frozenset({"Creating", "Updating", "SystemUpdating", "RollingBack", "Deleting"})
#: Signing names that are not the boto3 client's name.
_SIGNING_TO_CLIENT = {"monitoring": "cloudwatch", "email": "ses"}
#: What the registry is asked for: every manifest kind (OCI and Docker; images and indexes).
MANIFEST_TYPES = ", ".join(
    [
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.docker.distribution.manifest.v2+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
    ]
)

#: The running FakeAWS (at most one): the patches find it here.
_ACTIVE: list[FakeAWS] = []
_ACTIVE_LOCK = threading.Lock()


def _active() -> FakeAWS:
    if not _ACTIVE:  # pragma: no cover - patches are only installed while one runs
        raise RuntimeError("no FakeAWS is running")
    return _ACTIVE[0]


def _now() -> datetime.datetime:
    from moto.core.utils import utcnow

    return utcnow()


def _request_id() -> str:
    return uuid.uuid4().hex


def log_group(endpoint: str) -> str:
    """The CloudWatch log group of an endpoint."""
    return f"/aws/sagemaker/Endpoints/{endpoint}"


def arn(kind: str, name: str, region: str = REGION) -> str:
    """A SageMaker ARN (``kind`` is ``model``, ``endpoint-config`` or ``endpoint``)."""
    return f"arn:aws:sagemaker:{region}:{ACCOUNT}:{kind}/{name}"


def split_s3_url(url: str) -> tuple[str, str]:
    """``s3://bucket/key`` -> (bucket, key)."""
    parsed = urllib.parse.urlparse(url)
    if parsed.scheme != "s3" or not parsed.netloc:
        raise ValueError(f"not an s3:// URL: {url!r}")
    return parsed.netloc, parsed.path.lstrip("/")


# --- what the middleware records -----------------------------------------------------------------


@dataclass
class Call:
    """One request the fake received.

    Attributes:
        service: the boto3 client name (``sagemaker``, ``sagemaker-runtime``, ``s3``, ``ecr``...).
        operation: the operation (``CreateEndpoint``, ``PutObject``...).
        params: the request's parameters: the JSON body (JSON protocols), the form (query
            protocols); for S3 ``Bucket``, ``Key``, ``Query`` and ``Headers`` (``x-amz-*`` and
            ``content-type``); for sagemaker-runtime ``EndpointName``, the header members and
            ``Body`` (bytes).
        status: the HTTP status answered (0 while the request is being answered).
        error: the error code answered, if any.
        region: the region from the request's signature.
        injected: whether :meth:`FakeAWS.fail_next` answered it.
    """

    service: str
    operation: str
    params: dict[str, Any]
    status: int = 0
    error: str | None = None
    region: str | None = None
    injected: bool = False


@dataclass
class _Fault:
    service: str
    operation: str
    code: str
    message: str
    status: int
    remaining: int | None


_RUNTIME_HEADERS = {
    "content-type": "ContentType",
    "accept": "Accept",
    "x-amzn-sagemaker-custom-attributes": "CustomAttributes",
    "x-amzn-sagemaker-target-variant": "TargetVariant",
    "x-amzn-sagemaker-inference-id": "InferenceId",
    "x-amzn-sagemaker-content-type": "ContentType",
    "x-amzn-sagemaker-accept": "Accept",
    "x-amzn-sagemaker-inputlocation": "InputLocation",
    "x-amzn-sagemaker-requestttlseconds": "RequestTTLSeconds",
    "x-amzn-sagemaker-invocationtimeoutseconds": "InvocationTimeoutSeconds",
}


def _headers_of(environ: Mapping[str, Any]) -> dict[str, str]:
    """The request headers, lower-case names."""
    headers = {
        key[5:].replace("_", "-").lower(): str(value)
        for key, value in environ.items()
        if key.startswith("HTTP_")
    }
    if environ.get("CONTENT_TYPE"):
        headers["content-type"] = str(environ["CONTENT_TYPE"])
    return headers


def _s3_operation(method: str, path: str, query: Mapping[str, list[str]], headers: Mapping) -> str:
    """The S3 operation of a path-style request."""
    bucket, _, key = path.lstrip("/").partition("/")
    sub = next((k for k in query if k not in ("list-type", "prefix", "max-keys")), None)
    if not bucket:
        return "ListBuckets"
    if not key:
        bucket_ops = {
            ("PUT", None): "CreateBucket",
            ("HEAD", None): "HeadBucket",
            ("DELETE", None): "DeleteBucket",
            ("POST", "delete"): "DeleteObjects",
        }
        if method == "GET" and "list-type" in query:
            return "ListObjectsV2"
        if (method, sub) in bucket_ops:
            return bucket_ops[(method, sub)]
        if method == "GET" and sub in (None, "continuation-token", "delimiter", "encoding-type"):
            return "ListObjects"
        verb = {"GET": "GetBucket", "PUT": "PutBucket", "DELETE": "DeleteBucket"}.get(
            method, method
        )
        if sub == "publicAccessBlock":  # S3 names these without "Bucket"
            verb = verb.replace("Bucket", "")
        return verb + "".join(w[:1].upper() + w[1:] for w in re.split(r"[-_]", sub or ""))
    if method == "PUT":
        if "x-amz-copy-source" in headers:
            return "CopyObject"
        if "partNumber" in query:
            return "UploadPart"
        return "PutObject" + ("Tagging" if "tagging" in query else "")
    if method == "POST":
        return "CreateMultipartUpload" if "uploads" in query else "CompleteMultipartUpload"
    if method == "DELETE" and "uploadId" in query:
        return "AbortMultipartUpload"
    ops = {"GET": "GetObject", "HEAD": "HeadObject", "DELETE": "DeleteObject"}
    return ops.get(method, method) + ("Tagging" if "tagging" in query else "")


@dataclass(frozen=True)
class _Request:
    service: str
    operation: str
    protocol: str  # json, rest-json, query, rest-xml, other
    params: dict[str, Any]
    region: str | None


def _identify(environ: Mapping[str, Any], body: bytes) -> _Request | None:
    """Which service and operation a request is; None for moto's own API and unsigned calls."""
    path = str(environ.get("PATH_INFO", ""))
    if path.startswith("/moto-api"):
        return None
    method = str(environ.get("REQUEST_METHOD", "GET"))
    headers = _headers_of(environ)
    query = urllib.parse.parse_qs(str(environ.get("QUERY_STRING", "")), keep_blank_values=True)
    scope = re.search(
        r"Credential=[^/,]+/\d{8}/([^/]+)/([^/]+)/aws4_request",
        headers.get("authorization", "")
        + " Credential="
        + "".join(query.get("X-Amz-Credential", [])),
    )
    region, signing = (scope.group(1), scope.group(2)) if scope else (None, None)
    if signing is None:
        return None
    service = _SIGNING_TO_CLIENT.get(signing, signing)
    target = headers.get("x-amz-target")
    if signing == "sagemaker" and path.startswith("/endpoints/"):
        parts = path.split("/")
        kind = parts[3] if len(parts) > 3 else ""
        operation = {
            "invocations": "InvokeEndpoint",
            "async-invocations": "InvokeEndpointAsync",
            "invocations-response-stream": "InvokeEndpointWithResponseStream",
        }.get(kind, kind)
        params: dict[str, Any] = {"EndpointName": urllib.parse.unquote(parts[2])}
        for name, member in _RUNTIME_HEADERS.items():
            if name in headers:
                params[member] = headers[name]
        if operation != "InvokeEndpointAsync":
            params["Body"] = body
        return _Request("sagemaker-runtime", operation, "rest-json", params, region)
    if target:
        try:
            params = json.loads(body or b"{}")
        except ValueError:
            params = {"_raw": body}
        return _Request(service, target.rsplit(".", 1)[-1], "json", params, region)
    if signing == "s3":
        bucket, _, key = path.lstrip("/").partition("/")
        params = {"Bucket": urllib.parse.unquote(bucket)} if bucket else {}
        if key:
            params["Key"] = urllib.parse.unquote(key)
        if query:
            params["Query"] = {k: v[0] if len(v) == 1 else v for k, v in query.items()}
        params["Headers"] = {
            k: v for k, v in headers.items() if k.startswith("x-amz-") or k == "content-type"
        }
        params["ContentLength"] = len(body)
        operation = _s3_operation(method, path, query, headers)
        return _Request("s3", operation, "rest-xml", params, region)
    if "x-www-form-urlencoded" in headers.get("content-type", "") or "Action" in query:
        form = urllib.parse.parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True)
        form.update(query)
        params = {k: v[0] if len(v) == 1 else v for k, v in form.items()}
        return _Request(service, str(params.get("Action", "")), "query", params, region)
    return _Request(service, f"{method} {path}", "other", {"_raw": body}, region)


def _error_response(
    request: _Request, code: str, message: str, status: int
) -> tuple[str, list[tuple[str, str]], bytes]:
    """An AWS error answer in the request's protocol."""
    rid = _request_id()
    reason = {400: "Bad Request", 403: "Forbidden", 404: "Not Found", 424: "Failed Dependency"}
    status_line = f"{status} {reason.get(status, 'Error')}"
    if request.protocol in ("json", "rest-json", "other"):
        body = json.dumps({"__type": code, "message": message, "Message": message}).encode()
        content_type = (
            "application/x-amz-json-1.1" if request.protocol == "json" else "application/json"
        )
        headers = [("Content-Type", content_type), ("x-amzn-ErrorType", code)]
    elif request.protocol == "query":
        body = (
            "<ErrorResponse><Error><Type>Sender</Type>"
            f"<Code>{_xml(code)}</Code><Message>{_xml(message)}</Message></Error>"
            f"<RequestId>{rid}</RequestId></ErrorResponse>"
        ).encode()
        headers = [("Content-Type", "text/xml")]
    else:
        body = (
            '<?xml version="1.0" encoding="UTF-8"?>\n'
            f"<Error><Code>{_xml(code)}</Code><Message>{_xml(message)}</Message>"
            f"<RequestId>{rid}</RequestId></Error>"
        ).encode()
        headers = [("Content-Type", "application/xml")]
    headers += [("x-amzn-RequestId", rid), ("Content-Length", str(len(body)))]
    return status_line, headers, body


def _xml(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _error_code_of(headers: Iterable[tuple[str, str]], body: bytes) -> str | None:
    """The AWS error code an error answer carries."""
    for name, value in headers:
        if name.lower() == "x-amzn-errortype":
            return value.split(":", 1)[0].rsplit("#", 1)[-1]
    with contextlib.suppress(ValueError, AttributeError):
        document = json.loads(body)
        code = document.get("__type") or document.get("code") or document.get("Code")
        if code:
            return str(code).split(":", 1)[0].rsplit("#", 1)[-1]
    found = re.search(rb"<Code>([^<]*)</Code>", body)
    return found.group(1).decode() if found else None


class _Middleware:
    """Records every request and answers injected faults, in front of moto's app."""

    def __init__(self, app: Any, fake: FakeAWS) -> None:
        self.app = app
        self.fake = fake

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        stream = environ["wsgi.input"]
        length = environ.get("CONTENT_LENGTH")
        if length:
            body = stream.read(int(length))
        elif environ.get("wsgi.input_terminated"):
            body = stream.read()
        else:
            body = b""
        environ["wsgi.input"] = io.BytesIO(body)
        environ["CONTENT_LENGTH"] = str(len(body))
        internal = bool(environ.get("HTTP_" + INTERNAL_HEADER.upper().replace("-", "_")))
        request = None if internal else _identify(environ, body)
        if request is None:
            return self.app(environ, start_response)

        fault = self.fake._take_fault(request.service, request.operation)
        if fault is not None:
            status_line, headers, data = _error_response(
                request, fault.code, fault.message, fault.status
            )
            self.fake._record(
                Call(
                    request.service,
                    request.operation,
                    request.params,
                    fault.status,
                    fault.code,
                    request.region,
                    injected=True,
                )
            )
            start_response(status_line, headers)
            return [b"" if environ.get("REQUEST_METHOD") == "HEAD" else data]

        # Recorded as it arrives (the order requests were received), answered below.
        call = Call(request.service, request.operation, request.params, region=request.region)
        self.fake._record(call)
        seen: dict[str, Any] = {}

        def recording_start_response(status: str, headers: list, exc_info: Any = None) -> Any:
            seen["status"], seen["headers"] = int(status.split(maxsplit=1)[0]), headers
            return start_response(status, headers, exc_info)

        chunks: list[bytes] = []
        try:
            result = self.app(environ, recording_start_response)
            try:
                chunks = list(result)
            finally:
                close = getattr(result, "close", None)
                if close is not None:
                    close()
        finally:
            call.status = int(seen.get("status", 500))
            if call.status >= 400:
                call.error = _error_code_of(seen.get("headers", []), b"".join(chunks))
        return chunks


# --- endpoints ------------------------------------------------------------------------------------


@dataclass
class _Run:
    """The fake's side of one endpoint: its hosts and the thread moving it between states."""

    region: str
    name: str
    backend: Any  # moto's SageMakerModelBackend
    endpoint: Any  # moto's FakeEndpoint
    serving: Host | None = None
    pending: Host | None = None
    hosts: list[Host] = field(default_factory=list)
    threads: list[threading.Thread] = field(default_factory=list)
    cancel: threading.Event = field(default_factory=threading.Event)


def _service_error(code: str, message: str) -> Exception:
    """A moto service exception with AWS's ``code`` (serialized by moto with the model's status)."""
    from moto.core.exceptions import ServiceException

    return ServiceException(code, message)


class FakeAWS:
    """The fake AWS: a moto server on 127.0.0.1 with SageMaker hosting, ECR and faults.

    Args:
        hosting: ``"process"`` (the entrypoint in a child process) or ``"container"`` (the
            model's image, pulled from the local registry, run by podman); settable later.
        startup_timeout: seconds a host has to answer ``/ping`` with 200 (AWS: 4 minutes).
        alarm_watch_s: the longest an update watches its rollback alarms once the new host is
            ready (the canary/linear wait and termination wait, capped to this).
        stop_timeout: seconds between SIGTERM and SIGKILL when a host stops (AWS: 30).
        registry: the local registry standing in for ECR (``host:port``, plain HTTP).
        max_attempts: ``AWS_MAX_ATTEMPTS`` in :attr:`env` (1: botocore never retries, so an
            injected fault is seen once); None leaves botocore's default.
        container_labels: labels on every container it runs (default: the test run's).
        refuse_delete_in_progress: refuse DeleteEndpoint while Creating/Updating, as AWS does.
    """

    def __init__(
        self,
        hosting: str = "process",
        *,
        startup_timeout: float = 120.0,
        alarm_watch_s: float = 2.0,
        stop_timeout: float = 30.0,
        registry: str | None = None,
        max_attempts: int | None = 1,
        container_labels: Mapping[str, str] | None = None,
        refuse_delete_in_progress: bool = True,
    ) -> None:
        self.hosting = hosting
        self.startup_timeout = startup_timeout
        self.alarm_watch_s = alarm_watch_s
        self.stop_timeout = stop_timeout
        self.registry = registry or os.environ.get("MODELPORT_TEST_REGISTRY") or "127.0.0.1:5000"
        self.max_attempts = max_attempts
        self.container_labels = dict(container_labels) if container_labels is not None else None
        self.refuse_delete_in_progress = refuse_delete_in_progress
        #: The password in ECR's authorization token (the local registry accepts any).
        self.ecr_password = f"fake-ecr-password-{ACCOUNT}"
        #: Seconds DeleteEndpoint waits for the hosts to stop before answering (then: Deleting).
        self.delete_wait_s = 10.0
        self._lock = threading.RLock()
        self._log_lock = threading.Lock()
        self._calls: list[Call] = []
        self._faults: list[_Fault] = []
        self._runs: dict[tuple[str, str], _Run] = {}
        self._history: list[Host] = []
        self._pushed_at: dict[str, datetime.datetime] = {}
        self._server: Any = None
        self._patches: contextlib.ExitStack | None = None
        self._workdir: Path | None = None
        self._docker: Any = None
        self.url = ""

    # -- starting and stopping ------------------------------------------------------------------

    def start(self) -> FakeAWS:
        """Start the server and install the patches; returns self."""
        with _ACTIVE_LOCK:
            if _ACTIVE:
                raise RuntimeError("a FakeAWS is running already: moto's backends are global")
            _ACTIVE.append(self)
        try:
            self._workdir = Path(tempfile.mkdtemp(prefix="fake-aws-"))
            self._patches = self._install_patches()
            self._server = _make_server(self)
            self._server.start()
            host, port = self._server.get_host_and_port()
            self.url = f"http://{host}:{port}"
            # A run that ends without stop() (an interrupted session) leaves no hosts behind.
            atexit.register(self._stop_all_hosts)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop every host, the server, and undo the patches (idempotent)."""
        atexit.unregister(self._stop_all_hosts)
        try:
            self._stop_all_hosts()
        finally:
            if self._server is not None:
                # moto's state is the process's: leave none behind for whoever uses moto next.
                with contextlib.suppress(OSError):
                    exchange(self._port(), "POST", "/moto-api/reset", b"", timeout=30)
                self._server.stop()
                self._server = None
            if self._patches is not None:
                self._patches.close()
                self._patches = None
            if self._docker is not None:
                with contextlib.suppress(Exception):
                    self._docker.close()
                self._docker = None
            if self._workdir is not None:
                shutil.rmtree(self._workdir, ignore_errors=True)
                self._workdir = None
            with _ACTIVE_LOCK:
                if self in _ACTIVE:
                    _ACTIVE.remove(self)

    def __enter__(self) -> FakeAWS:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def reset(self) -> None:
        """Forget everything: hosts stopped, moto's state reset, faults and calls cleared."""
        self._stop_all_hosts()
        with self._lock:
            self._faults.clear()
            self._calls.clear()
            self._history.clear()
        exchange(self._port(), "POST", "/moto-api/reset", b"", timeout=30)

    def _port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])

    # -- the environment of clients -------------------------------------------------------------

    @property
    def env(self) -> dict[str, str]:
        """The variables a boto3 client or a CLI subprocess needs to use the fake."""
        assert self._workdir is not None, "start() first"
        env = {
            "AWS_ENDPOINT_URL": self.url,
            **CREDENTIALS,
            "AWS_DEFAULT_REGION": REGION,
            "AWS_REGION": REGION,
            "AWS_EC2_METADATA_DISABLED": "true",
            # Never the user's ~/.aws: profiles, SSO or endpoint settings there would leak in.
            "AWS_CONFIG_FILE": str(self._workdir / "no-aws-config"),
            "AWS_SHARED_CREDENTIALS_FILE": str(self._workdir / "no-aws-credentials"),
        }
        if self.max_attempts is not None:
            env["AWS_MAX_ATTEMPTS"] = str(self.max_attempts)
            env["AWS_RETRY_MODE"] = "standard"
        return env

    #: Variables that would override :attr:`env` (unset them for clients of the fake).
    UNSET = ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN", "AWS_ROLE_ARN")

    def conflicting_env(self, environ: Mapping[str, str] | None = None) -> list[str]:
        """Names in ``environ`` (default os.environ) that would send clients elsewhere."""
        environ = os.environ if environ is None else environ
        return [
            name
            for name in environ
            if name in self.UNSET
            or (
                name.startswith("AWS_ENDPOINT_URL_")
                or name == "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS"
            )
        ]

    def subprocess_env(self, base: Mapping[str, str] | None = None) -> dict[str, str]:
        """A whole environment for a subprocess: ``base`` (default os.environ) + :attr:`env`."""
        base = dict(os.environ if base is None else base)
        for name in self.conflicting_env(base):
            base.pop(name, None)
        return {**base, **self.env}

    def client(self, service: str, *, internal: bool = False, region: str = REGION) -> Any:
        """A boto3 client of the fake (``internal``: not recorded, never faulted)."""
        import boto3
        from botocore.config import Config

        client = boto3.session.Session().client(
            service,
            endpoint_url=self.url,
            region_name=region,
            aws_access_key_id=CREDENTIALS["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
            config=Config(retries={"max_attempts": 1, "mode": "standard"}),
        )
        if internal:

            def mark(request: Any, **_: Any) -> None:
                request.headers[INTERNAL_HEADER] = "1"

            client.meta.events.register("before-sign.*", mark)
        return client

    # -- calls and faults -----------------------------------------------------------------------

    def _record(self, call: Call) -> None:
        with self._lock:
            self._calls.append(call)

    def calls(self, service: str | None = None, operation: str | None = None) -> list[Call]:
        """The requests received so far (in order), optionally of one service/operation."""
        with self._lock:
            return [
                c
                for c in self._calls
                if (service is None or c.service == service)
                and (operation is None or c.operation == operation)
            ]

    def operations(self, service: str | None = None) -> list[str]:
        """The operation names received, in order (``service:Operation`` when no service given)."""
        return [
            c.operation if service else f"{c.service}:{c.operation}" for c in self.calls(service)
        ]

    def clear_calls(self) -> None:
        """Forget the recorded calls."""
        with self._lock:
            self._calls.clear()

    def fail_next(
        self,
        service: str,
        operation: str,
        code: str,
        message: str,
        status: int = 400,
        times: int | None = 1,
    ) -> None:
        """Answer the next ``times`` calls of ``service``'s ``operation`` with an AWS error.

        ``service`` is the boto3 client name, ``operation`` the API name (``CreateEndpoint``);
        ``times=None``: every call until :meth:`clear_faults`. The answer is on the wire (any
        process's client sees it), in the protocol of the service.
        """
        with self._lock:
            self._faults.append(_Fault(service, operation, code, message, status, times))

    def clear_faults(self) -> None:
        """Remove every pending fault."""
        with self._lock:
            self._faults.clear()

    def _take_fault(self, service: str, operation: str) -> _Fault | None:
        with self._lock:
            for fault in self._faults:
                if fault.service == service and fault.operation == operation:
                    if fault.remaining is not None:
                        fault.remaining -= 1
                        if fault.remaining <= 0:
                            self._faults.remove(fault)
                    return fault
        return None

    # -- helpers for tests ----------------------------------------------------------------------

    def set_alarm(self, name: str, state: str, *, region: str = REGION) -> None:
        """Create CloudWatch alarm ``name`` if needed and put it in ``state`` (OK, ALARM...)."""
        cloudwatch = self.client("cloudwatch", internal=True, region=region)
        existing = cloudwatch.describe_alarms(AlarmNames=[name])["MetricAlarms"]
        if not existing:
            cloudwatch.put_metric_alarm(
                AlarmName=name,
                Namespace="AWS/SageMaker",
                MetricName="Invocation5XXErrors",
                Statistic="Sum",
                Period=60,
                EvaluationPeriods=1,
                Threshold=1.0,
                ComparisonOperator="GreaterThanOrEqualToThreshold",
            )
        cloudwatch.set_alarm_state(AlarmName=name, StateValue=state, StateReason="set by a test")

    def endpoint_status(self, endpoint: str, *, region: str = REGION) -> str | None:
        """The endpoint's status now (None: there is no such endpoint)."""
        from moto.sagemaker.models import sagemaker_backends

        found = sagemaker_backends[ACCOUNT][region].endpoints.get(endpoint)
        return None if found is None else str(found.endpoint_status)

    def wait_status(
        self, endpoint: str, status: str | None, timeout: float = 60.0, *, region: str = REGION
    ) -> dict[str, Any]:
        """Wait until the endpoint's status is ``status`` (None: until it is gone).

        Returns the endpoint's description (empty when gone). Fails at once when it reaches a
        settled state that is not the one asked for (e.g. ``Failed`` when waiting for
        ``InService``), with the FailureReason and the host's last lines; fails after
        ``timeout`` seconds.
        """
        from moto.sagemaker.models import sagemaker_backends

        deadline = time.monotonic() + timeout
        settled = {"InService", "Failed", "OutOfService"}
        tick = threading.Event()
        while True:
            found = sagemaker_backends[ACCOUNT][region].endpoints.get(endpoint)
            now = None if found is None else found.endpoint_status
            if now == status:
                return {} if found is None else dict(found.response_object)
            if (now in settled and status in settled) or (now is None and status is not None):
                raise AssertionError(
                    f"endpoint {endpoint} is {now}, not {status}"
                    + (f": {found.failure_reason}" if found is not None else "")
                    + self._host_tail(endpoint)
                )
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"endpoint {endpoint} still {now} after {timeout:g} s, not {status}"
                    + self._host_tail(endpoint)
                )
            tick.wait(0.02)

    def _host_tail(self, endpoint: str) -> str:
        lines = [line for h in self._history if h.spec.endpoint == endpoint for line in h.lines()]
        return ("\nhost output:\n" + "\n".join(lines[-30:])) if lines else ""

    def host(self, endpoint: str, *, region: str = REGION) -> dict[str, Any] | None:
        """The endpoint's serving host (else the one starting): kind, port, url, ident (pid or
        container id), pid, image, env, model_dir, instance_id, log_stream, lines, stopped."""
        with self._lock:
            run = self._runs.get((region, endpoint))
            chosen = None
            if run is not None:
                chosen = run.serving or run.pending or (run.hosts[-1] if run.hosts else None)
        return None if chosen is None else self._describe_host(chosen)

    def hosts(self, endpoint: str | None = None) -> list[dict[str, Any]]:
        """Every host started since the last reset (stopped ones too), oldest first."""
        with self._lock:
            chosen = [h for h in self._history if endpoint is None or h.spec.endpoint == endpoint]
        return [self._describe_host(h) for h in chosen]

    @staticmethod
    def _describe_host(host: Host) -> dict[str, Any]:
        info = host.describe()
        info["pid"] = host.pid if isinstance(host, ProcessHost) else None
        info["lines"] = host.lines()
        return info

    def log_lines(self, endpoint: str, *, region: str = REGION) -> list[str]:
        """Every message in the endpoint's CloudWatch log group (read from moto's backend)."""
        from moto.logs.models import logs_backends

        group = logs_backends[ACCOUNT][region].groups.get(log_group(endpoint))
        if group is None:
            return []
        events = [e for s in list(group.streams.values()) for e in list(s.events)]
        return [e.message for e in sorted(events, key=lambda e: e.timestamp)]

    # -- patches --------------------------------------------------------------------------------

    def _install_patches(self) -> contextlib.ExitStack:
        from moto.ecr.models import ECRBackend
        from moto.ecr.responses import ECRResponse
        from moto.sagemaker.models import FakeEndpointConfig, SageMakerModelBackend
        from moto.sagemaker.responses import SageMakerResponse
        from moto.sagemakerruntime.responses import SageMakerRuntimeResponse

        stack = contextlib.ExitStack()
        originals = {
            name: getattr(SageMakerModelBackend, name)
            for name in (
                "create_model",
                "create_endpoint_config",
                "create_endpoint",
                "delete_endpoint",
                "delete_model",
            )
        }
        create_repository = ECRBackend.create_repository

        def create_model(backend: Any, *args: Any, **kwargs: Any) -> Any:
            name = kwargs.get("model_name", args[0] if args else None)
            if name in backend._models:
                model_arn = arn("model", name, backend.region_name)
                raise _validation(f'Cannot create already existing model "{model_arn}".')
            return originals["create_model"](backend, *args, **kwargs)

        def create_endpoint_config(backend: Any, *args: Any, **kwargs: Any) -> Any:
            name = kwargs.get("endpoint_config_name", args[0] if args else None)
            if name in backend.endpoint_configs:
                config_arn = arn("endpoint-config", name, backend.region_name)
                raise _validation(
                    f'Cannot create already existing endpoint configuration "{config_arn}".'
                )
            return originals["create_endpoint_config"](backend, *args, **kwargs)

        def create_endpoint(backend: Any, *args: Any, **kwargs: Any) -> Any:
            name = kwargs.get("endpoint_name", args[0] if args else None)
            if name in backend.endpoints:
                raise _validation(
                    "Cannot create already existing endpoint "
                    f'"{arn("endpoint", name, backend.region_name)}".'
                )
            endpoint = originals["create_endpoint"](backend, *args, **kwargs)
            _active()._on_created(backend, endpoint)
            return endpoint

        def delete_model(backend: Any, *args: Any, **kwargs: Any) -> None:
            name = kwargs.get("model_name", args[0] if args else None)
            if name not in backend._models:
                model_arn = arn("model", name, backend.region_name)
                raise _validation(f'Could not find model "{model_arn}".')
            originals["delete_model"](backend, *args, **kwargs)

        def delete_endpoint(backend: Any, *args: Any, **kwargs: Any) -> None:
            name = kwargs.get("endpoint_name", args[0] if args else None)
            if name not in backend.endpoints:
                _aws_quotes(originals["delete_endpoint"])(backend, *args, **kwargs)  # raises
                return
            _active()._on_delete(backend, name)

        def update_endpoint(response: Any) -> Any:
            from moto.core.responses import ActionResult

            endpoint_arn = _active()._on_update(
                response.sagemaker_backend,
                response._get_param("EndpointName"),
                response._get_param("EndpointConfigName"),
                response._get_param("DeploymentConfig"),
                bool(response._get_param("RetainDeploymentConfig")),
            )
            return ActionResult({"EndpointArn": endpoint_arn})

        def invoke_endpoint(response: Any) -> Any:
            name = urllib.parse.unquote(response.path.split("/")[2])
            return _active()._invoke(response.region, name, response.raw_body, response.headers)

        def invoke_endpoint_async(response: Any) -> Any:
            name = urllib.parse.unquote(response.path.split("/")[2])
            return _active()._invoke_async(response.region, name, response.headers)

        def validate_instance_type(config: Any, instance_type: str) -> None:
            # moto knows 66 instance types (no m6i, c6i, g5...): AWS takes its model's enum.
            allowed = _instance_types()
            if instance_type not in allowed:
                raise _validation(
                    f"Value '{instance_type}' at 'instanceType' failed to satisfy constraint: "
                    f"Member must satisfy enum value set: {allowed}"
                )

        def ecr_create_repository(backend: Any, *args: Any, **kwargs: Any) -> Any:
            repository = create_repository(backend, *args, **kwargs)
            repository.uri = f"{_active().registry}/{repository.name}"
            return repository

        def get_authorization_token(response: Any) -> Any:
            from moto.core.responses import ActionResult

            fake = _active()
            token = base64.b64encode(f"AWS:{fake.ecr_password}".encode()).decode()
            expires = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(hours=12)
            ids = response._get_param("registryIds") or [response.current_account]
            data = [
                {
                    "authorizationToken": token,
                    "expiresAt": expires,
                    "proxyEndpoint": f"http://{fake.registry}",
                }
                for _ in ids
            ]
            return ActionResult({"authorizationData": data})

        def describe_images(response: Any) -> Any:
            from moto.core.responses import ActionResult

            details = _active()._describe_images(
                response.ecr_backend,
                response._get_param("repositoryName"),
                response._get_param("registryId"),
                response._get_param("imageIds"),
            )
            return ActionResult({"imageDetails": details})

        # AWS quotes ARNs in its messages with double quotes, moto with single ones.
        backend = SageMakerModelBackend
        patches = [
            (backend, "create_model", _aws_quotes(create_model)),
            (backend, "create_endpoint_config", _aws_quotes(create_endpoint_config)),
            (backend, "create_endpoint", _aws_quotes(create_endpoint)),
            (backend, "delete_endpoint", delete_endpoint),
            (backend, "delete_model", delete_model),
            (backend, "describe_model", _aws_quotes(backend.describe_model)),
            (backend, "describe_endpoint_config", _aws_quotes(backend.describe_endpoint_config)),
            (backend, "describe_endpoint", _aws_quotes(backend.describe_endpoint)),
            (SageMakerResponse, "describe_endpoint", _omit_empty("EndpointName")),
            (SageMakerResponse, "describe_endpoint_config", _omit_empty("EndpointConfigName")),
            (backend, "delete_endpoint_config", _aws_quotes(backend.delete_endpoint_config)),
            (FakeEndpointConfig, "validate_instance_type", validate_instance_type),
            (SageMakerResponse, "update_endpoint", update_endpoint),
            (SageMakerRuntimeResponse, "invoke_endpoint", invoke_endpoint),
            # Bodies are bytes (application/x-npy, Parquet...): moto would decode them as UTF-8.
            (SageMakerRuntimeResponse, "use_raw_body", True),
            (SageMakerRuntimeResponse, "invoke_endpoint_async", invoke_endpoint_async),
            (ECRBackend, "create_repository", ecr_create_repository),
            (ECRResponse, "get_authorization_token", get_authorization_token),
            (ECRResponse, "describe_images", describe_images),
        ]
        for owner, name, new in patches:
            stack.enter_context(
                mock.patch.object(owner, name, new, create=not hasattr(owner, name))
            )
        return stack

    # -- endpoint lifecycle ---------------------------------------------------------------------

    def _current(self, run: _Run) -> bool:
        """Whether ``run`` is still the endpoint's (not reset, deleted or replaced)."""
        return (
            self._runs.get((run.region, run.name)) is run
            and run.backend.endpoints.get(run.name) is run.endpoint
            and not run.cancel.is_set()
        )

    def _spawn(self, run: _Run, target: Callable[..., None], *args: Any) -> None:
        thread = threading.Thread(
            target=target, args=(run, *args), name=f"fake-sagemaker-{run.name}", daemon=True
        )
        run.threads.append(thread)
        thread.start()

    def _on_created(self, backend: Any, endpoint: Any) -> None:
        """CreateEndpoint accepted: Creating, and a host starts for the configuration."""
        config = backend.endpoint_configs[endpoint.endpoint_config_name]
        endpoint.endpoint_status = "Creating"
        # Nothing runs yet: what is desired, not what is current.
        endpoint.production_variants = [
            {k: v for k, v in variant.items() if not k.startswith("Current")}
            for variant in endpoint.production_variants
        ]
        if config.async_inference_config:
            endpoint.async_inference_config = config.async_inference_config
        run = _Run(backend.region_name, endpoint.endpoint_name, backend, endpoint)
        with self._lock:
            self._runs[(run.region, run.name)] = run
        self._spawn(run, self._create_flow)

    def _create_flow(self, run: _Run) -> None:
        try:
            host = self._launch_reporting(run, run.endpoint.endpoint_config_name)
        except HostFailure as failure:
            with self._lock:
                if self._current(run):
                    run.endpoint.endpoint_status = "Failed"
                    run.endpoint.failure_reason = failure.reason
                    run.endpoint.last_modified_time = _now()
            return
        deployed = self._deployed_image(host)
        with self._lock:
            if self._current(run):
                run.serving, run.pending = host, None
                self._show_variants(run, host, deployed)
                run.endpoint.endpoint_status = "InService"
                run.endpoint.last_modified_time = _now()
                return
        self._retire(host)

    def _show_variants(self, run: _Run, host: Host, deployed: dict[str, Any] | None) -> None:
        """The endpoint's ProductionVariants as they run on ``host``'s configuration."""
        config = run.backend.endpoint_configs.get(host.spec.endpoint_config)
        if config is None:
            return
        variants = run.endpoint._process_production_variants(config.production_variants)
        for variant in variants:
            if variant["VariantName"] == host.spec.variant and deployed:
                variant["DeployedImages"] = [deployed]
        run.endpoint.production_variants = variants

    def _deployed_image(self, host: Host) -> dict[str, Any] | None:
        """DeployedImages' entry: the image as given and as resolved to a digest (when the
        local registry can say)."""
        image = host.spec.image
        if not image:
            return None
        resolved = None
        if "@" in image:
            resolved = image
        elif image.startswith(f"{self.registry}/"):
            repository, tag = split_image(image)
            with contextlib.suppress(Exception):
                found = self._manifest(repository.split("/", 1)[1], tag)
                if found is not None:
                    resolved = f"{repository}@{found['digest']}"
        entry = {"SpecifiedImage": image, "ResolutionTime": _now()}
        if resolved:
            entry["ResolvedImage"] = resolved
        return entry

    def _launch_reporting(self, run: _Run, config_name: str) -> Host:
        """:meth:`_launch`, a bug of the fake itself reported as the endpoint's FailureReason
        (rather than lost in a thread, leaving the endpoint Creating forever)."""
        try:
            return self._launch(run, config_name)
        except HostFailure:
            raise
        except Exception as exc:
            raise HostFailure(f"fake AWS internal error: {type(exc).__name__}: {exc}") from exc

    def _launch(self, run: _Run, config_name: str) -> Host:
        """Start a host for ``config_name``'s (first) production variant and wait until ready.

        Raises:
            HostFailure: with the endpoint's FailureReason.
        """
        backend = run.backend
        config = backend.endpoint_configs.get(config_name)
        if config is None:
            raise HostFailure(f"Could not find endpoint configuration {config_name}.")
        variant = config.production_variants[0]
        model = backend._models.get(variant["ModelName"])
        if model is None:
            raise HostFailure(f"Could not find model {variant['ModelName']}.")
        container = model.primary_container or (model.containers[0] if model.containers else {})
        url = container.get("ModelDataUrl")
        assert self._workdir is not None
        model_dir = None
        if url:
            data = self._s3_bytes(url)
            if data is None:
                raise HostFailure(
                    f'Failed to download model data for container "container_1" from URL: '
                    f'"{url}". Please ensure that there is an object located at the URL and that '
                    "the role passed to CreateModel has permissions to download the object."
                )
            model_dir = Path(tempfile.mkdtemp(prefix="model-", dir=self._workdir))
            try:
                extract_model_data(data, model_dir)
            except HostFailure:
                shutil.rmtree(model_dir, ignore_errors=True)
                raise
        spec = HostSpec(
            endpoint=run.name,
            variant=variant["VariantName"],
            endpoint_config=config_name,
            model=model.model_name,
            image=container.get("Image"),
            environment={str(k): str(v) for k, v in (container.get("Environment") or {}).items()},
            model_dir=model_dir,
            model_data_url=url,
        )
        host = self._new_host(spec)
        host.sink = self._log_sink(run.region, run.name, host.log_stream)
        with self._lock:
            if not self._current(run):
                self._retire(host)
                raise HostFailure("cancelled")
            run.hosts.append(host)
            run.pending = host
            self._history.append(host)
        try:
            host.start()
            host.wait_ready(self.startup_timeout, run.cancel)
        except HostFailure:
            self._retire(host)
            with self._lock:
                if run.pending is host:
                    run.pending = None
            raise
        return host

    def _new_host(self, spec: HostSpec) -> Host:
        if self.hosting == "process":
            return ProcessHost(spec, sink=lambda _: None, stop_timeout=self.stop_timeout)
        if self.hosting == "container":
            labels = self.container_labels
            if labels is None:
                from docker_fixtures import run_labels

                labels = run_labels()
            return ContainerHost(
                spec,
                sink=lambda _: None,
                stop_timeout=self.stop_timeout,
                client=self._docker_client(),
                labels=dict(labels),
            )
        raise ValueError(f"unknown hosting {self.hosting!r}: 'process' or 'container'")

    def _docker_client(self) -> Any:
        with self._lock:
            if self._docker is None:
                import docker

                base_url = os.environ.get("DOCKER_HOST")
                if not base_url:
                    raise HostFailure("container hosting needs DOCKER_HOST")
                self._docker = docker.DockerClient(base_url=base_url, timeout=600)
            return self._docker

    def _retire(self, host: Host) -> None:
        """Stop a host and remove its model data."""
        host.stop()
        if host.spec.model_dir is not None:
            shutil.rmtree(host.spec.model_dir, ignore_errors=True)

    def _stop_all_hosts(self) -> None:
        with self._lock:
            runs = list(self._runs.values())
            self._runs.clear()
            for run in runs:
                run.cancel.set()
        for run in runs:
            for thread in run.threads:
                if thread is not threading.current_thread():
                    thread.join(timeout=self.stop_timeout + 60)
        for run in runs:
            for host in list(run.hosts):
                self._retire(host)

    def _on_update(
        self,
        backend: Any,
        name: str,
        config_name: str,
        deployment_config: dict[str, Any] | None,
        retain_deployment_config: bool,
    ) -> str:
        """UpdateEndpoint: validated like AWS, then Updating and a new host starts."""
        region = backend.region_name
        endpoint = backend.endpoints.get(name)
        endpoint_arn = arn("endpoint", name, region)
        if endpoint is None:
            raise _validation(f'Could not find endpoint "{endpoint_arn}".')
        if endpoint.endpoint_status in IN_PROGRESS:
            raise _validation(f'Cannot update in-progress endpoint "{endpoint_arn}".')
        if endpoint.endpoint_status != "InService":
            raise _validation(
                f'Cannot update endpoint "{endpoint_arn}" in status {endpoint.endpoint_status}.'
            )
        config = backend.endpoint_configs.get(config_name)
        if config is None:
            config_arn = arn("endpoint-config", config_name, region)
            raise _validation(f'Could not find endpoint configuration "{config_arn}".')
        if deployment_config is None and retain_deployment_config:
            deployment_config = getattr(endpoint, "last_deployment_config", None)
        with self._lock:
            run = self._runs.get((region, name))
            if run is None or run.endpoint is not endpoint:
                raise _validation(f'Cannot update endpoint "{endpoint_arn}": it has no hosts.')
            endpoint.endpoint_status = "Updating"
            endpoint.last_modified_time = _now()
            endpoint.pending_deployment_summary = {
                "EndpointConfigName": config_name,
                "ProductionVariants": [
                    {
                        k: v
                        for k, v in {
                            "VariantName": variant["VariantName"],
                            "DesiredInstanceCount": variant.get("InitialInstanceCount"),
                            "InstanceType": variant.get("InstanceType"),
                            "DesiredServerlessConfig": variant.get("ServerlessConfig"),
                        }.items()
                        if v is not None
                    }
                    for variant in config.production_variants
                ],
                "StartTime": _now(),
            }
        self._spawn(run, self._update_flow, config_name, deployment_config or {})
        return endpoint_arn

    def _update_flow(self, run: _Run, config_name: str, deployment_config: dict[str, Any]) -> None:
        try:
            host = self._launch_reporting(run, config_name)
        except HostFailure as failure:
            self._roll_back(run, failure.reason)
            return
        rollback = deployment_config.get("AutoRollbackConfiguration") or {}
        alarms = [a["AlarmName"] for a in rollback.get("Alarms") or [] if a.get("AlarmName")]
        fired = self._watch_alarms(run, alarms, self._watch_seconds(deployment_config))
        if fired is not None:
            self._retire(host)
            self._roll_back(
                run,
                f"The update was rolled back because the CloudWatch alarm {fired} was in ALARM "
                "state during the deployment.",
            )
            return
        deployed = self._deployed_image(host)
        with self._lock:
            if not self._current(run):
                old = None
            else:
                endpoint = run.endpoint
                old, run.serving, run.pending = run.serving, host, None
                config = run.backend.endpoint_configs.get(config_name)
                endpoint.endpoint_config_name = config_name
                self._show_variants(run, host, deployed)
                if config is not None:
                    endpoint.data_capture_config = config.data_capture_config
                    endpoint.async_inference_config = config.async_inference_config
                endpoint.endpoint_status = "InService"
                endpoint.failure_reason = None
                endpoint.pending_deployment_summary = None
                if deployment_config:
                    endpoint.last_deployment_config = deployment_config
                endpoint.last_modified_time = _now()
                host = None  # kept: it serves now
        if host is not None:  # the endpoint went away meanwhile
            self._retire(host)
        if old is not None:
            self._retire(old)

    def _watch_seconds(self, deployment_config: Mapping[str, Any]) -> float:
        policy = deployment_config.get("BlueGreenUpdatePolicy") or {}
        routing = policy.get("TrafficRoutingConfiguration") or {}
        wanted = float(routing.get("WaitIntervalInSeconds") or 0)
        wanted += float(policy.get("TerminationWaitInSeconds") or 0)
        return min(wanted, self.alarm_watch_s)

    def _watch_alarms(self, run: _Run, alarms: list[str], seconds: float) -> str | None:
        """The first of ``alarms`` seen in ALARM within ``seconds`` (checked at least once)."""
        if not alarms:
            return None
        from moto.cloudwatch.models import cloudwatch_backends

        deadline = time.monotonic() + seconds
        while True:
            backend = cloudwatch_backends[ACCOUNT][run.region]
            for name in alarms:
                alarm = backend.alarms.get(name)
                if alarm is not None and alarm.state_value == "ALARM":
                    return name
            if time.monotonic() >= deadline or run.cancel.wait(0.05):
                return None

    def _roll_back(self, run: _Run, reason: str) -> None:
        with self._lock:
            if self._current(run):
                run.endpoint.endpoint_status = "InService"
                run.endpoint.failure_reason = reason
                run.endpoint.pending_deployment_summary = None
                run.endpoint.last_modified_time = _now()

    def _on_delete(self, backend: Any, name: str) -> None:
        """DeleteEndpoint: refused while in progress; Deleting until its hosts are stopped."""
        region = backend.region_name
        endpoint = backend.endpoints[name]
        if endpoint.endpoint_status == "Deleting" or (
            self.refuse_delete_in_progress and endpoint.endpoint_status in IN_PROGRESS
        ):
            raise _validation(
                f'Cannot delete in-progress endpoint "{arn("endpoint", name, region)}".'
            )
        with self._lock:
            endpoint.endpoint_status = "Deleting"
            endpoint.last_modified_time = _now()
            run = self._runs.get((region, name))
            if run is not None and run.endpoint is not endpoint:
                run = None
            if run is not None:
                run.cancel.set()
        thread = threading.Thread(
            target=self._delete_flow, args=(backend, name, endpoint, run), daemon=True
        )
        if run is not None:
            run.threads.append(thread)
        thread.start()
        thread.join(timeout=self.delete_wait_s)

    def _delete_flow(self, backend: Any, name: str, endpoint: Any, run: _Run | None) -> None:
        if run is not None:
            for thread in list(run.threads):
                if thread is not threading.current_thread():
                    thread.join(timeout=self.stop_timeout + 60)
            for host in list(run.hosts):
                self._retire(host)
        with self._lock:
            if backend.endpoints.get(name) is endpoint:
                # A new dict, not a deletion: a request iterating the old one is undisturbed.
                backend.endpoints = {k: v for k, v in backend.endpoints.items() if k != name}
            if run is not None and self._runs.get((run.region, run.name)) is run:
                del self._runs[(run.region, run.name)]

    # -- logs and S3 ----------------------------------------------------------------------------

    def _log_sink(self, region: str, endpoint: str, stream: str) -> Callable[[str], None]:
        group = log_group(endpoint)

        def sink(line: str) -> None:
            if not line.strip():
                return
            from moto.logs.models import LogGroup, LogStream, logs_backends

            with self._log_lock:
                backend = logs_backends[ACCOUNT][region]
                # New dicts, not insertions: requests iterating the old ones (this runs beside
                # the server's threads) are undisturbed.
                if group not in backend.groups:
                    backend.groups = {**backend.groups, group: LogGroup(ACCOUNT, region, group)}
                found = backend.groups[group]
                if stream not in found.streams:
                    found.streams = {**found.streams, stream: LogStream(found, stream)}
                event = {"timestamp": int(time.time() * 1000), "message": line}
                backend.put_log_events(group, stream, [event])

        return sink

    @staticmethod
    def _s3_backend() -> Any:
        from moto.s3.models import s3_backends

        return s3_backends[ACCOUNT]["aws"]

    def _s3_bytes(self, url: str) -> bytes | None:
        try:
            bucket, key = split_s3_url(url)
            found = self._s3_backend().get_object(bucket, key)
        except Exception:
            return None
        return None if found is None else bytes(found.value)

    # -- the runtime ------------------------------------------------------------------------------

    def _serving_host(self, region: str, name: str) -> tuple[Any, Host | None]:
        from moto.sagemaker.models import sagemaker_backends

        endpoint = sagemaker_backends[ACCOUNT][region].endpoints.get(name)
        with self._lock:
            run = self._runs.get((region, name))
            host = run.serving if run is not None and run.endpoint is endpoint else None
        return endpoint, host

    @staticmethod
    def _runtime_error(
        status: int, code: str, message: str, **fields: Any
    ) -> tuple[int, dict[str, str], str]:
        body = {"__type": code, "Message": message, "message": message, **fields}
        headers = {"Content-Type": "application/json", "x-amzn-ErrorType": code}
        return _answer(status, headers, json.dumps(body))

    def _not_serving(self, region: str, name: str) -> tuple[int, dict[str, str], str] | None:
        endpoint, host = self._serving_host(region, name)
        if endpoint is None:
            return self._runtime_error(
                400, "ValidationError", f"Endpoint {name} of account {ACCOUNT} not found."
            )
        if endpoint.endpoint_status not in ("InService", "Updating") or host is None:
            return self._runtime_error(
                400,
                "ValidationError",
                f"Endpoint {name} of account {ACCOUNT} is not ready to serve requests: "
                f"its status is {endpoint.endpoint_status}.",
            )
        return None

    def _invoke(
        self, region: str, name: str, body: bytes | str | None, headers: Mapping[str, str]
    ) -> tuple[int, dict[str, str], bytes | str]:
        """InvokeEndpoint: the serving host's answer, or AWS's error."""
        refusal = self._not_serving(region, name)
        if refusal is not None:
            return refusal
        _, host = self._serving_host(region, name)
        assert host is not None
        lower = {k.lower(): v for k, v in headers.items()}
        forwarded = {"Content-Type": lower.get("content-type", "application/octet-stream")}
        if "accept" in lower:
            forwarded["Accept"] = lower["accept"]
        if "x-amzn-sagemaker-custom-attributes" in lower:
            forwarded["X-Amzn-SageMaker-Custom-Attributes"] = lower[
                "x-amzn-sagemaker-custom-attributes"
            ]
        data = body.encode() if isinstance(body, str) else (body or b"")
        try:
            answer = host.invoke(data, forwarded)
        except OSError as exc:
            return self._model_error(region, name, None, f"{exc}")
        if not 200 <= answer.status < 300:
            return self._model_error(
                region, name, answer.status, answer.body.decode("utf-8", "replace")
            )
        out = {
            "Content-Type": answer.header("Content-Type") or "application/octet-stream",
            "x-Amzn-Invoked-Production-Variant": host.spec.variant,
        }
        custom = answer.header("X-Amzn-SageMaker-Custom-Attributes")
        if custom:
            out["X-Amzn-SageMaker-Custom-Attributes"] = custom
        return _answer(200, out, answer.body)

    def _model_error(
        self, region: str, name: str, status: int | None, text: str
    ) -> tuple[int, dict[str, str], str]:
        group = log_group(name)
        log_url = (
            f"https://{region}.console.aws.amazon.com/cloudwatch/home?region={region}"
            f"#logEventViewer:group={group}"
        )
        if status is None:
            message = (
                "Your invocation timed out while waiting for a response from container primary. "
                "Review the latency metrics for each container in Amazon CloudWatch, resolve the "
                f"issue, and try again. ({text})"
            )
            return self._runtime_error(424, "ModelError", message)
        side = "client" if status < 500 else "server"
        message = (
            f'Received {side} error ({status}) from primary with message "{text}". See '
            f"{log_url} in account {ACCOUNT} for more information."
        )
        return self._runtime_error(
            424,
            "ModelError",
            message,
            OriginalStatusCode=status,
            OriginalMessage=text,
            LogStreamArn=f"arn:aws:logs:{region}:{ACCOUNT}:log-group:{group}",
        )

    def _invoke_async(
        self, region: str, name: str, headers: Mapping[str, str]
    ) -> tuple[int, dict[str, str], str]:
        """InvokeEndpointAsync, done at once: input from S3, answer written to S3."""
        refusal = self._not_serving(region, name)
        if refusal is not None:
            return refusal
        endpoint, host = self._serving_host(region, name)
        assert host is not None
        config = getattr(endpoint, "async_inference_config", None) or {}
        output = config.get("OutputConfig") or {}
        if not output.get("S3OutputPath"):
            return self._runtime_error(
                400, "ValidationError", f"Endpoint {name} is not configured for async inference."
            )
        lower = {k.lower(): v for k, v in headers.items()}
        location = lower.get("x-amzn-sagemaker-inputlocation", "")
        data = self._s3_bytes(location)
        if data is None:
            return self._runtime_error(
                400, "ValidationError", f"Could not access the input at {location!r}."
            )
        inference_id = lower.get("x-amzn-sagemaker-inference-id") or str(uuid.uuid4())
        forwarded = {
            "Content-Type": lower.get("x-amzn-sagemaker-content-type", "application/octet-stream")
        }
        if "x-amzn-sagemaker-accept" in lower:
            forwarded["Accept"] = lower["x-amzn-sagemaker-accept"]
        output_url = f"{output['S3OutputPath'].rstrip('/')}/{inference_id}.out"
        failure_path = output.get("S3FailurePath") or output["S3OutputPath"]
        failure_url = f"{failure_path.rstrip('/')}/{inference_id}-error.out"
        try:
            answer = host.invoke(data, forwarded)
            ok, result = 200 <= answer.status < 300, answer.body
        except OSError as exc:
            ok, result = False, str(exc).encode()
        bucket, key = split_s3_url(output_url if ok else failure_url)
        self._s3_backend().put_object(bucket, key, result)
        out = {
            "Content-Type": "application/json",
            "X-Amzn-SageMaker-OutputLocation": output_url,
            "X-Amzn-SageMaker-FailureLocation": failure_url,
        }
        return _answer(202, out, json.dumps({"InferenceId": inference_id}))

    # -- ECR --------------------------------------------------------------------------------------

    def _registry(self, method: str, path: str) -> tuple[int, dict[str, str], bytes]:
        host, _, port = self.registry.partition(":")
        if host not in ("127.0.0.1", "localhost"):
            raise _service_error("ServerException", f"the fake's registry {host} is not local")
        try:
            answer = exchange(
                int(port or 80), method, path, headers={"Accept": MANIFEST_TYPES}, timeout=30
            )
        except OSError as exc:
            raise _service_error(
                "ServerException", f"the local registry {self.registry} cannot be reached: {exc}"
            ) from None
        return answer.status, {k.lower(): v for k, v in answer.headers.items()}, answer.body

    def _manifest(self, repository: str, reference: str) -> dict[str, Any] | None:
        """The digest, media type and size of ``repository:reference``; None when missing."""
        status, headers, body = self._registry("GET", f"/v2/{repository}/manifests/{reference}")
        if status != 200:
            return None
        digest = headers.get("docker-content-digest") or reference
        size = 0
        with contextlib.suppress(ValueError, AttributeError, TypeError):
            document = json.loads(body)
            parts = [document.get("config") or {}, *(document.get("layers") or [])]
            parts += document.get("manifests") or []
            size = sum(int(p.get("size", 0)) for p in parts)
        media_type = headers.get("content-type", "").split(";")[0]
        return {"digest": digest, "mediaType": media_type, "size": size}

    def _describe_images(
        self,
        backend: Any,
        repository: str,
        registry_id: str | None,
        image_ids: list[dict[str, str]] | None,
    ) -> list[dict[str, Any]]:
        """DescribeImages from what the local registry holds under ``repository``."""
        from moto.ecr.exceptions import ImageNotFoundException

        repo = backend._get_repository(repository, registry_id)  # AWS's error when missing
        status, _, body = self._registry("GET", f"/v2/{repository}/tags/list")
        tags = (json.loads(body).get("tags") or []) if status == 200 else []
        by_digest: dict[str, dict[str, Any]] = {}
        for tag in tags:
            manifest = self._manifest(repository, tag)
            if manifest is not None:
                entry = by_digest.setdefault(manifest["digest"], {**manifest, "tags": []})
                entry["tags"].append(tag)
        wanted: list[dict[str, Any]] = []
        for image_id in image_ids or []:
            tag, digest = image_id.get("imageTag"), image_id.get("imageDigest")
            entry = None
            if digest:
                entry = by_digest.get(digest)
                if entry is None:
                    manifest = self._manifest(repository, digest)
                    entry = None if manifest is None else {**manifest, "tags": []}
                if entry is not None and tag and tag not in entry["tags"]:
                    entry = None
            elif tag:
                entry = next((e for e in by_digest.values() if tag in e["tags"]), None)
            if entry is None:
                shown = f"{{imageDigest:'{digest or 'null'}', imageTag:'{tag or 'null'}'}}"
                raise ImageNotFoundException(shown, repository, repo.registry_id)
            if entry not in wanted:
                wanted.append(entry)
        chosen = wanted if image_ids else list(by_digest.values())
        details = []
        for entry in chosen:
            pushed = self._pushed_at.setdefault(entry["digest"], _now())
            detail = {
                "registryId": repo.registry_id,
                "repositoryName": repository,
                "imageDigest": entry["digest"],
                "imageSizeInBytes": entry["size"],
                "imagePushedAt": pushed,
                "imageManifestMediaType": entry["mediaType"],
            }
            if entry["tags"]:
                detail["imageTags"] = sorted(entry["tags"])
            details.append(detail)
        return details


def _answer(status: int, headers: dict[str, str], body: Any) -> tuple[int, dict[str, Any], Any]:
    """A raw answer of a moto response method (moto takes the status from the headers)."""
    return status, {**headers, "status": status}, body


@functools.lru_cache(maxsize=1)
def _instance_types() -> list[str]:
    """The instance types a SageMaker production variant may have (botocore's model)."""
    import botocore.session

    model = botocore.session.get_session().get_service_model("sagemaker")
    return list(model.shape_for("ProductionVariantInstanceType").enum)


def _aws_quotes(method: Callable[..., Any]) -> Callable[..., Any]:
    """``method``, its ValidationExceptions quoting ARNs as AWS does (``"arn:..."``)."""
    from moto.sagemaker.exceptions import ValidationError

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return method(*args, **kwargs)
        except ValidationError as exc:
            message = re.sub(r"'(arn:[^']+)'", r'"\1"', exc.message)
            if message == exc.message:
                raise
            raise _validation(message) from None

    return wrapper


def _omit_empty(name_param: str) -> Callable[..., Any]:
    """A describe action that leaves out an empty ``DataCaptureConfig``, as AWS does.

    moto answers ``{}`` for an endpoint (config) without data capture, and the SageMaker SDK's
    pydantic shapes refuse it. Only the answer changes: moto's backend still reads its own.
    """
    from moto.core.responses import ActionResult

    def action(response: Any) -> Any:
        backend = response.sagemaker_backend
        name = response._get_param(name_param)
        if name_param == "EndpointName":
            found = backend.describe_endpoint(name)
        else:
            found = backend.describe_endpoint_config(name)
        if found.get("DataCaptureConfig") == {}:
            found = {k: v for k, v in found.items() if k != "DataCaptureConfig"}
        return ActionResult(found)

    return action


def _validation(message: str) -> Exception:
    """SageMaker's ValidationException."""
    from moto.sagemaker.exceptions import ValidationError

    return ValidationError(message=message)


def _make_server(fake: FakeAWS) -> Any:
    """moto's threaded server on 127.0.0.1 (a free port), its app wrapped in the middleware."""
    from storage_servers import moto_server

    return moto_server(lambda app: _Middleware(app, fake))


# --- model data for tests -------------------------------------------------------------------------


def model_tarball(package: Path) -> bytes:
    """The ``model.tar.gz`` of a package: its files at the archive root, the manifest first.

    An ``.mport`` archive is exactly that (a gzip tar, ``modelport.json`` first), so its bytes
    are used as they are; a package directory is archived the same way.
    """
    import tarfile

    if package.is_file():
        data = package.read_bytes()
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
            first = tar.next()
            assert first is not None and first.name == "modelport.json", first
        return data
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz") as tar:
        tar.add(package / "modelport.json", arcname="modelport.json")
        for path in sorted(package.rglob("*")):
            if path.is_file() and path.name != "modelport.json":
                tar.add(path, arcname=path.relative_to(package).as_posix())
    return out.getvalue()


@contextlib.contextmanager
def running(**kwargs: Any) -> Iterator[FakeAWS]:
    """A started :class:`FakeAWS` for the block (stopped afterwards)."""
    fake = FakeAWS(**kwargs).start()
    try:
        yield fake
    finally:
        fake.stop()
