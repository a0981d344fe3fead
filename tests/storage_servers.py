"""Real local servers for the remote package sources' tests: S3, GCS, Azure Blob, WebHDFS, MLflow.

Each context manager starts one server on 127.0.0.1 (a free port), yields a small frozen dataclass
with what a client needs (endpoint, port, fsspec storage options, environment), and stops it
fully on exit. Fixtures built on them are module- or session-scoped by the callers.

- :func:`s3_server`: moto's ``ThreadedMotoServer`` in this process; s3fs with fake keys. moto's
  backends are the process's: one S3 server at a time (a second refuses to start), never while
  the SageMaker tests' ``FakeAWS`` runs; every backend is reset on exit.
- :func:`gcs_server`: ``gcp-storage-emulator`` in this process, in memory; gcsfs with
  ``token="anon"``. This module sets ``GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT=false`` when imported,
  which must come before anything imports gcsfs: otherwise gcsfs's experimental zonal/HNS
  support waits on a ~60 s gRPC lookup on every call (``gcs_server`` refuses to start then).
- :func:`azurite_server`: Azurite's blob service from npm (``$(VENV)/azurite``, which ``make``
  installs), a subprocess in its own group; adlfs with the well-known ``devstoreaccount1`` key.
- :func:`webhdfs_server`: a WebHDFS REST server written here (:class:`_WebHDFSHandler`) over a
  directory, for fsspec's ``webhdfs``; HDFS itself (RPC, libhdfs) is not available offline.
- :func:`mlflow_server`: a real ``mlflow server`` subprocess (sqlite store, proxied artifacts)
  in its own process group, healthy after 8-23 s here (9 s on an idle machine); registry
  webhooks to 127.0.0.1 are delivered. :func:`register_version` adds a version in ~1 s.

MLflow gotchas (3.17): ``mlflow.artifacts.download_artifacts("models:/...")`` resolves the model
with the *process's* registry URI (``MLFLOW_REGISTRY_URI`` / ``MLFLOW_TRACKING_URI`` /
``mlflow.set_registry_uri``), ignoring its ``registry_uri`` argument
(``ModelsArtifactRepository._get_model_uri_infos``); with none set, clients default to
``sqlite:///mlflow.db`` in the working directory, which they create.

MLflow registry webhooks, as ``mlflow server`` 3.17 delivers them
-----------------------------------------------------------------
Received by ``test_mlflow_registry_aliases_and_webhooks`` for
``client.set_registered_model_alias("tiny", "champion", "2")`` with a webhook made by
``client.create_webhook(name=..., url="http://127.0.0.1:PORT/x",
events=[WebhookEvent("model_version_alias", "created")], secret="s")``: one ``POST /x`` with
these headers, in this order::

    Host: 127.0.0.1:44491
    User-Agent: python-requests/2.34.2
    Accept-Encoding: gzip, deflate, br
    Accept: */*
    Connection: keep-alive
    Content-Type: application/json
    X-MLflow-Delivery-Id: 516c63ad-f8aa-4514-85d5-43abcee8b0a0
    X-MLflow-Timestamp: 1796191129
    X-MLflow-Signature: v1,ck4YIlULg1743De+OWfwn0PQRoa8U7guJ+OK7twT7hc=
    Content-Length: 166

and this body (``json.dumps`` of it, UTF-8, exactly these bytes)::

    {"entity": "model_version_alias", "action": "created", "timestamp":
    "2026-12-02T05:58:49.068600+00:00", "data": {"name": "tiny", "alias": "champion",
    "version": "2"}}

(one line; wrapped here). The delivery id is a uuid4, new for each delivery; the timestamp header
is Unix seconds; the body's ``timestamp`` is ISO 8601 UTC; ``version`` is a string. The
signature is ``"v1," + base64(HMAC-SHA256(secret, f"{delivery_id}.{timestamp}.{body}"))`` over
the body as sent (verify on the raw bytes: :func:`verify_mlflow_signature`); without a secret
there is no signature header. A 429 or 5xx answer is retried (3 times, exponential backoff), any
other is not; delivery is asynchronous (a thread pool in the server), after the API call returns.

The server delivers to 127.0.0.1 only with ``MLFLOW_WEBHOOK_ALLOW_PRIVATE_IPS=true`` (the
environment variable has no leading underscore; the Python name ``_MLFLOW_WEBHOOK_ALLOW_...``
has), and accepts an ``http://`` URL only with ``MLFLOW_WEBHOOK_ALLOWED_SCHEMES=http,https``
(default ``https``): both are checked when the webhook is created (``_validate_webhook_url`` in
mlflow/utils/validation.py) and when it is delivered (mlflow/webhooks/ssrf.py). It caches each
event's webhook list for 60 s, so one created after an event of its kind would miss the next:
:data:`MLFLOW_SERVER_ENV` sets all three (the cache to 0 s).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import http.server
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from http_fakes import read_body
from process_helpers import group_alive, processes_mentioning, reap_children, wait_for

# Before anything imports gcsfs (see the module docstring). A test process that imported gcsfs
# already with it on would wait a minute per call: gcs_server() refuses to start then.
os.environ["GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT"] = "false"

HOST = "127.0.0.1"
REPO = Path(__file__).resolve().parents[1]

#: Azurite's version, as the Makefile installs it.
AZURITE_VERSION = "3.35.0"
#: Azurite's (and the Azure Storage emulator's) well-known development account and key.
AZURITE_ACCOUNT = "devstoreaccount1"
AZURITE_KEY = (
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now (for servers that cannot bind port 0 and tell us)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def port_open(port: int) -> bool:
    """Whether something accepts TCP connections on 127.0.0.1:``port``."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((HOST, port)) == 0


def _tail(path: Path, lines: int = 60) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return f"(no log at {path})"


# --- S3: moto --------------------------------------------------------------------------------

_MOTO_LOCK = threading.Lock()


@dataclass(frozen=True)
class S3Server:
    """moto's S3 on 127.0.0.1: ``storage_options`` are s3fs's, ``env`` a subprocess's."""

    url: str
    port: int
    storage_options: Mapping[str, Any]
    env: Mapping[str, str]

    def make_bucket(self, name: str) -> str:
        """Create bucket ``name`` (in us-east-1); return ``name``."""
        import boto3

        boto3.client("s3", **self.boto3_kwargs()).create_bucket(Bucket=name)
        return name

    def boto3_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for ``boto3.client("s3", ...)`` against this server."""
        return {
            "endpoint_url": self.url,
            "aws_access_key_id": "testing",
            "aws_secret_access_key": "testing",
            "region_name": "us-east-1",
        }


def moto_server(wrap: Callable[[Any], Any] = lambda app: app) -> Any:
    """moto's threaded server on 127.0.0.1 (a free port), request logging off, its WSGI app
    passed through ``wrap`` (the SageMaker fake puts its middleware there)."""
    from moto.moto_server.threaded_moto_server import ThreadedMotoServer
    from moto.moto_server.werkzeug_app import (
        DomainDispatcherApplication,
        MotoRequestHandler,
        create_backend_app,
    )
    from werkzeug.serving import make_server

    class QuietHandler(MotoRequestHandler):
        def log_request(self, code: Any = "-", size: Any = "-") -> None:
            pass

    class Server(ThreadedMotoServer):
        def _server_entry(self) -> None:
            app = wrap(DomainDispatcherApplication(create_backend_app))
            self._server = make_server(
                self._ip_address, self._port, app, True, request_handler=QuietHandler
            )
            self._server_ready_event.set()
            self._server.serve_forever()

    return Server(ip_address=HOST, port=0, verbose=False)


@contextlib.contextmanager
def s3_server() -> Iterator[S3Server]:
    """moto's S3 server on 127.0.0.1; every moto backend is reset on exit (they are global)."""
    if not _MOTO_LOCK.acquire(blocking=False):
        raise RuntimeError("an s3_server() is running already: moto's backends are global")
    server = None
    try:
        server = moto_server()
        server.start()
        _, port = server.get_host_and_port()
        url = f"http://{HOST}:{port}"
        yield S3Server(
            url=url,
            port=port,
            storage_options={
                "endpoint_url": url,
                "key": "testing",
                "secret": "testing",
                "client_kwargs": {"region_name": "us-east-1"},
            },
            env={
                "AWS_ACCESS_KEY_ID": "testing",
                "AWS_SECRET_ACCESS_KEY": "testing",
                "AWS_DEFAULT_REGION": "us-east-1",
                "AWS_ENDPOINT_URL": url,
                "AWS_ENDPOINT_URL_S3": url,
                "AWS_EC2_METADATA_DISABLED": "true",
            },
        )
    finally:
        try:
            if server is not None:
                with contextlib.suppress(OSError):
                    request = urllib.request.Request(
                        f"http://{HOST}:{server.get_host_and_port()[1]}/moto-api/reset",
                        data=b"",
                        method="POST",
                    )
                    urllib.request.urlopen(request, timeout=30).close()
                server.stop()
                server._server.server_close()  # stop() leaves the socket bound
        finally:
            _MOTO_LOCK.release()


# --- GCS: gcp-storage-emulator ---------------------------------------------------------------


@dataclass(frozen=True)
class GCSServer:
    """gcp-storage-emulator on 127.0.0.1: ``storage_options`` are gcsfs's (anonymous)."""

    url: str
    port: int
    bucket: str
    storage_options: Mapping[str, Any]
    env: Mapping[str, str]
    emulator: Any = field(repr=False)

    def make_bucket(self, name: str) -> str:
        """Create bucket ``name``; return ``name``."""
        from gcp_storage_emulator.handlers import buckets

        buckets.create_bucket(name, self.emulator._storage)
        return name


def _quiet_handle_error(handle_error: Any) -> Any:
    """The emulator's ``handle_error``, silent for a client that hung up.

    gcsfs's ``info`` asks for the object and, at once, for a listing under it (is it a
    directory?), and drops the listing when the object is there: the emulator's write then fails
    with a broken pipe, which socketserver would print as a traceback.
    """

    def handle(request: Any, client_address: Any) -> None:
        if not isinstance(sys.exc_info()[1], (BrokenPipeError, ConnectionResetError)):
            handle_error(request, client_address)

    return handle


@contextlib.contextmanager
def gcs_server(default_bucket: str = "test-bucket") -> Iterator[GCSServer]:
    """The GCS emulator, in memory, with ``default_bucket`` made."""
    gcsfs = sys.modules.get("gcsfs")
    if os.environ.get("GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT") != "false" or (
        gcsfs is not None and gcsfs.GCSFileSystem.__name__ == "ExtendedGcsFileSystem"
    ):
        raise RuntimeError(
            "gcsfs was imported with GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT on (each call would wait"
            " ~60 s): import storage_servers before gcsfs"
        )
    import logging

    from gcp_storage_emulator.server import create_server

    # The emulator logs every request at INFO through the root logger's handlers.
    logging.getLogger("gcp_storage_emulator").setLevel(logging.WARNING)
    emulator = create_server(HOST, 0, in_memory=True, default_bucket=default_bucket)
    emulator.start()
    try:
        httpd = emulator._api._httpd
        httpd.handle_error = _quiet_handle_error(httpd.handle_error)
        port = int(httpd.server_address[1])
        url = f"http://{HOST}:{port}"
        yield GCSServer(
            url=url,
            port=port,
            bucket=default_bucket,
            storage_options={"endpoint_url": url, "token": "anon", "project": "test"},
            env={
                "STORAGE_EMULATOR_HOST": url,
                "GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT": "false",
                "GOOGLE_CLOUD_PROJECT": "test",
                "NO_GCE_CHECK": "true",
            },
            emulator=emulator,
        )
    finally:
        emulator.stop()


# --- Azure Blob: Azurite ---------------------------------------------------------------------


@dataclass(frozen=True)
class AzuriteServer:
    """Azurite's blob service: ``storage_options`` are adlfs's (a connection string)."""

    url: str
    port: int
    account_name: str
    account_key: str
    connection_string: str
    storage_options: Mapping[str, Any]
    env: Mapping[str, str]

    def make_container(self, name: str) -> str:
        """Create container ``name``; return ``name``."""
        from azure.storage.blob import BlobServiceClient

        with BlobServiceClient.from_connection_string(self.connection_string) as service:
            service.create_container(name)
        return name


def azurite_main() -> Path:
    """Azurite's blob entry point, as ``make`` installs it (fails saying how to install it)."""
    for venv in (Path(sys.prefix), REPO / ".venv"):
        main = venv / "azurite" / "node_modules" / "azurite" / "dist" / "src" / "blob" / "main.js"
        if main.is_file():
            return main
    prefix = Path(sys.prefix) / "azurite"
    with contextlib.suppress(ValueError):
        prefix = prefix.relative_to(Path.cwd())
    raise RuntimeError(
        f"Azurite is not installed (the abfs:// tests need it): run `make {prefix}/.installed`"
        f" or `npm install --prefix {prefix} --no-audit --no-fund azurite@{AZURITE_VERSION}`"
    )


@contextlib.contextmanager
def azurite_server(work_dir: Path | None = None) -> Iterator[AzuriteServer]:
    """Azurite's blob service on 127.0.0.1 (in memory), in its own process group."""
    main = azurite_main()
    node = shutil.which("node")
    if node is None:
        raise RuntimeError("Azurite needs Node.js: `apt-get install nodejs npm` (Node >= 18)")
    with contextlib.ExitStack() as stack:
        if work_dir is None:
            import tempfile

            work_dir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="azurite-")))
        work_dir.mkdir(parents=True, exist_ok=True)
        log = work_dir / "azurite.log"

        def command(port: int) -> list[str]:
            return [
                node,
                str(main),
                "--blobHost",
                HOST,
                "--blobPort",
                str(port),
                "--inMemoryPersistence",
                "--skipApiVersionCheck",
                "--loose",
                "--silent",
                # Without it Azurite also ignores SIGTERM (and would send telemetry).
                "--disableTelemetry",
            ]

        _, port = stack.enter_context(
            _process_server(command, log, ready=port_open, what="Azurite's blob port", cwd=work_dir)
        )
        url = f"http://{HOST}:{port}/{AZURITE_ACCOUNT}"
        connection_string = (
            f"DefaultEndpointsProtocol=http;AccountName={AZURITE_ACCOUNT};"
            f"AccountKey={AZURITE_KEY};BlobEndpoint={url};"
        )
        yield AzuriteServer(
            url=url,
            port=port,
            account_name=AZURITE_ACCOUNT,
            account_key=AZURITE_KEY,
            connection_string=connection_string,
            storage_options={
                "account_name": AZURITE_ACCOUNT,
                "connection_string": connection_string,
            },
            env={"AZURE_STORAGE_CONNECTION_STRING": connection_string},
        )


# --- subprocess servers ----------------------------------------------------------------------


@contextlib.contextmanager
def _process_server(
    command: Any,
    log: Path,
    *,
    ready: Any,
    what: str,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    timeout: float = 30.0,
    attempts: int = 3,
) -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    """Start ``command(port)`` on a free port in its own process group; wait for ``ready(port)``.

    A process that exits before it is ready (another process took the port first) is started
    again on another port, up to ``attempts`` times. On exit the whole group is terminated
    (killed after 10 s), and the test fails if any process of it is left.
    """
    for attempt in range(1, attempts + 1):
        port = free_port()
        with log.open("ab") as out:
            process = subprocess.Popen(
                command(port),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=None if env is None else {**os.environ, **env},
                cwd=cwd,
                start_new_session=True,
            )

        def started(process: subprocess.Popen[bytes] = process, port: int = port) -> bool:
            return process.poll() is not None or ready(port)

        try:
            wait_for(started, what, timeout=timeout, log=lambda: _tail(log))
        except BaseException:
            _stop_group(process, what)
            raise
        if process.poll() is None:
            break
        reap_children()
        if attempt == attempts:
            raise AssertionError(
                f"{what}: the server exited with {process.returncode} before it was ready:\n"
                + _tail(log)
            )
    try:
        yield process, port
    finally:
        _stop_group(process, what)


def _stop_group(process: subprocess.Popen[bytes], what: str) -> None:
    """Terminate the process group ``process`` leads; fail if anything of it is left."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)
        raise AssertionError(f"{what}: the server ignored SIGTERM for 10 s (killed)") from None
    wait_for(lambda: not group_alive(process.pid), f"{what}'s process group to end", timeout=10)


# --- WebHDFS ---------------------------------------------------------------------------------

_JAVA_CLASSES = {
    "FileNotFoundException": "java.io.FileNotFoundException",
    "AccessControlException": "org.apache.hadoop.security.AccessControlException",
    "FileAlreadyExistsException": "org.apache.hadoop.fs.FileAlreadyExistsException",
    "PathIsNotEmptyDirectoryException": "org.apache.hadoop.fs.PathIsNotEmptyDirectoryException",
    "InvalidPathException": "org.apache.hadoop.fs.InvalidPathException",
    "IllegalArgumentException": "java.lang.IllegalArgumentException",
    "UnsupportedOperationException": "java.lang.UnsupportedOperationException",
    "IOException": "java.io.IOException",
}


class _RemoteError(Exception):
    """A WebHDFS error answered as Hadoop does: a status and a ``RemoteException`` body."""

    def __init__(self, status: int, exception: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.exception = exception
        self.message = message

    def body(self) -> dict[str, Any]:
        return {
            "RemoteException": {
                "exception": self.exception,
                "javaClassName": _JAVA_CLASSES[self.exception],
                "message": self.message,
            }
        }


def _not_found(path: str) -> _RemoteError:
    return _RemoteError(404, "FileNotFoundException", f"File does not exist: {path}")


@dataclass(frozen=True)
class WebHDFSRequest:
    """One request the WebHDFS server answered (``datanode``: the redirected second step)."""

    method: str
    op: str
    path: str
    params: Mapping[str, str]
    datanode: bool
    status: int


@dataclass(frozen=True)
class WebHDFSServer:
    """The WebHDFS server: ``url(path)`` is ``webhdfs://127.0.0.1:PORT/path``.

    ``forbidden`` holds HDFS paths (``/a/b``) for which every operation, on them or under
    them, answers ``AccessControlException`` (403); add to it to test a refusal. ``requests``
    lists what the server answered, in order.
    """

    root: Path
    port: int
    user: str
    http_url: str
    storage_options: Mapping[str, Any]
    env: Mapping[str, str]
    forbidden: set[str] = field(default_factory=set)
    requests: list[WebHDFSRequest] = field(default_factory=list)

    def url(self, path: str = "/") -> str:
        """The ``webhdfs://`` URL of HDFS path ``path``."""
        return f"webhdfs://{HOST}:{self.port}/{path.lstrip('/')}"


class _WebHDFSHandler(http.server.BaseHTTPRequestHandler):
    """WebHDFS REST (``/webhdfs/v1/PATH?op=...``) over the files under ``server.root``.

    Namenode operations: GETFILESTATUS, LISTSTATUS, GETCONTENTSUMMARY, GETHOMEDIRECTORY,
    MKDIRS, RENAME, DELETE; OPEN, CREATE, APPEND and GETFILECHECKSUM answer with a 307 to the
    "datanode" (this same server, the URL carrying ``namenoderpcaddress`` as Hadoop's do), which
    streams the data (``noredirect=true`` gets the location in a JSON body instead, as in
    Hadoop 3). ``user.name`` is accepted (and recorded); there is no authentication. Paths with
    ``.`` or ``..`` components are invalid (``InvalidPathException``, as Hadoop says), and one
    that resolves outside the root (a symbolic link) is refused (``AccessControlException``).
    GETFILECHECKSUM's algorithm is ``MD5`` over the whole file: not HDFS's block checksum.
    """

    protocol_version = "HTTP/1.1"
    server: _WebHDFSHTTPServer
    PREFIX = "/webhdfs/v1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    # --- plumbing

    def _dispatch(self, method: str) -> None:
        parsed = urllib.parse.urlsplit(self.path)
        params = dict(urllib.parse.parse_qsl(parsed.query, keep_blank_values=True))
        op = params.get("op", "").upper()
        datanode = "namenoderpcaddress" in params
        body = read_body(self)
        status = 500
        try:
            if not parsed.path.startswith(self.PREFIX):
                raise _RemoteError(
                    404, "UnsupportedOperationException", f"No such resource: {parsed.path}"
                )
            hdfs_path = "/" + urllib.parse.unquote(parsed.path[len(self.PREFIX) :]).strip("/")
            handler = getattr(self, f"_{'dn' if datanode else 'nn'}_{method}_{op}", None)
            if handler is None:
                raise _RemoteError(
                    400,
                    "IllegalArgumentException",
                    f'Invalid value for webhdfs parameter "op": {op or "(none)"} for {method}',
                )
            local = self._local(hdfs_path)
            status = handler(hdfs_path, local, params, body)
        except _RemoteError as error:
            status = error.status
            self._json(error.status, error.body())
        except PermissionError as error:
            status = 403
            self._json(403, _RemoteError(403, "AccessControlException", str(error)).body())
        except OSError as error:
            status = 500
            self._json(500, _RemoteError(500, "IOException", str(error)).body())
        finally:
            self.server.record(WebHDFSRequest(method, op, parsed.path, params, datanode, status))

    def _local(self, hdfs_path: str) -> Path:
        parts = [part for part in hdfs_path.split("/") if part]
        if any(part in (".", "..") or ":" in part for part in parts):
            raise _RemoteError(
                400, "InvalidPathException", f"Invalid path name Invalid file name: {hdfs_path}"
            )
        for entry in self.server.forbidden:
            denied = "/" + entry.strip("/")
            if hdfs_path == denied or hdfs_path.startswith(denied.rstrip("/") + "/"):
                raise _RemoteError(
                    403, "AccessControlException", f"Permission denied: user=?, path={hdfs_path}"
                )
        root = self.server.root
        local = root.joinpath(*parts)
        resolved = local.resolve()
        if resolved != root and not resolved.is_relative_to(root):
            raise _RemoteError(
                403,
                "AccessControlException",
                f"Permission denied: {hdfs_path} resolves outside the served root",
            )
        return local

    def _json(self, status: int, body: Any, headers: Mapping[str, str] | None = None) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def _empty(self, status: int, headers: Mapping[str, str] | None = None) -> int:
        self.send_response(status)
        self.send_header("Content-Length", "0")
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        return status

    def _redirect(self, hdfs_path: str, op: str, params: Mapping[str, str]) -> int:
        query = {k: v for k, v in params.items() if k not in ("op", "noredirect")}
        query = {"op": op, **query, "namenoderpcaddress": f"{HOST}:{self.server.server_port}"}
        location = (
            f"http://{HOST}:{self.server.server_port}{self.PREFIX}"
            f"{urllib.parse.quote(hdfs_path)}?{urllib.parse.urlencode(query)}"
        )
        if params.get("noredirect", "false").lower() == "true":
            self._json(200, {"Location": location})
            return 200
        return self._empty(307, {"Location": location})

    def _status(self, local: Path, suffix: str) -> dict[str, Any]:
        st = local.stat()
        is_dir = local.is_dir()
        return {
            "accessTime": 0 if is_dir else int(st.st_atime * 1000),
            "blockSize": 0 if is_dir else 134217728,
            "childrenNum": sum(1 for _ in local.iterdir()) if is_dir else 0,
            "fileId": st.st_ino,
            "group": "supergroup",
            "length": 0 if is_dir else st.st_size,
            "modificationTime": int(st.st_mtime * 1000),
            "owner": self.server.user,
            "pathSuffix": suffix,
            "permission": format(st.st_mode & 0o777, "o"),
            "replication": 0 if is_dir else 1,
            "storagePolicy": 0,
            "type": "DIRECTORY" if is_dir else "FILE",
        }

    # --- namenode

    def _nn_GET_GETFILESTATUS(self, path: str, local: Path, params: Any, body: bytes) -> int:
        if not local.exists():
            raise _not_found(path)
        self._json(200, {"FileStatus": self._status(local, "")})
        return 200

    def _nn_GET_LISTSTATUS(self, path: str, local: Path, params: Any, body: bytes) -> int:
        if not local.exists():
            raise _not_found(path)
        if local.is_dir():
            statuses = [self._status(c, c.name) for c in sorted(local.iterdir())]
        else:
            statuses = [self._status(local, "")]
        self._json(200, {"FileStatuses": {"FileStatus": statuses}})
        return 200

    def _nn_GET_GETCONTENTSUMMARY(self, path: str, local: Path, params: Any, body: bytes) -> int:
        if not local.exists():
            raise _not_found(path)
        files = [local] if local.is_file() else [p for p in local.rglob("*") if p.is_file()]
        dirs = 0 if local.is_file() else 1 + sum(1 for p in local.rglob("*") if p.is_dir())
        length = sum(p.stat().st_size for p in files)
        summary = {
            "directoryCount": dirs,
            "fileCount": len(files),
            "length": length,
            "quota": -1,
            "spaceConsumed": length,
            "spaceQuota": -1,
        }
        self._json(200, {"ContentSummary": summary})
        return 200

    def _nn_GET_GETHOMEDIRECTORY(self, path: str, local: Path, params: Any, body: bytes) -> int:
        self._json(200, {"Path": f"/user/{params.get('user.name', self.server.user)}"})
        return 200

    def _nn_GET_OPEN(self, path: str, local: Path, params: Any, body: bytes) -> int:
        if not local.is_file():
            raise _not_found(path)
        return self._redirect(path, "OPEN", params)

    def _nn_GET_GETFILECHECKSUM(self, path: str, local: Path, params: Any, body: bytes) -> int:
        if not local.is_file():
            raise _not_found(path)
        return self._redirect(path, "GETFILECHECKSUM", params)

    def _nn_PUT_CREATE(self, path: str, local: Path, params: Any, body: bytes) -> int:
        if local.is_dir():
            raise _RemoteError(
                403, "FileAlreadyExistsException", f"{path} already exists as a directory"
            )
        if local.exists() and params.get("overwrite", "false").lower() != "true":
            raise _RemoteError(
                403, "FileAlreadyExistsException", f"{path} for client 127.0.0.1 already exists"
            )
        return self._redirect(path, "CREATE", params)

    def _nn_POST_APPEND(self, path: str, local: Path, params: Any, body: bytes) -> int:
        if not local.is_file():
            raise _not_found(path)
        return self._redirect(path, "APPEND", params)

    def _nn_PUT_MKDIRS(self, path: str, local: Path, params: Any, body: bytes) -> int:
        if local.is_file():
            raise _RemoteError(
                403, "FileAlreadyExistsException", f"Parent path is not a directory: {path}"
            )
        local.mkdir(parents=True, exist_ok=True)
        self._json(200, {"boolean": True})
        return 200

    def _nn_PUT_RENAME(self, path: str, local: Path, params: Any, body: bytes) -> int:
        destination = params.get("destination", "")
        if not destination.startswith("/"):
            raise _RemoteError(
                400, "IllegalArgumentException", f"Invalid destination: {destination!r}"
            )
        target = self._local("/" + destination.strip("/"))
        if target.is_dir():
            target = target / local.name
        done = (
            local.exists()
            and path != "/"
            and not target.exists()
            and target.parent.is_dir()
            and not (local.is_dir() and target.resolve().is_relative_to(local.resolve()))
        )
        if done:
            local.rename(target)
        self._json(200, {"boolean": done})
        return 200

    def _nn_DELETE_DELETE(self, path: str, local: Path, params: Any, body: bytes) -> int:
        if path == "/" or not local.exists():
            self._json(200, {"boolean": False})
            return 200
        if local.is_dir() and not local.is_symlink():
            if any(local.iterdir()) and params.get("recursive", "false").lower() != "true":
                raise _RemoteError(
                    403,
                    "PathIsNotEmptyDirectoryException",
                    f"`{path} is non empty': Directory is not empty",
                )
            shutil.rmtree(local)
        else:
            local.unlink()
        self._json(200, {"boolean": True})
        return 200

    # --- datanode

    def _dn_GET_OPEN(self, path: str, local: Path, params: Any, body: bytes) -> int:
        if not local.is_file():
            raise _not_found(path)
        size = local.stat().st_size
        offset = int(params.get("offset") or 0)
        if offset < 0 or (offset > size):
            raise _RemoteError(
                403, "IOException", f"Offset={offset} out of the range [0, {size}); {path}"
            )
        length = params.get("length")
        end = size if length in (None, "") else min(size, offset + int(length))
        with local.open("rb") as stream:
            stream.seek(offset)
            data = stream.read(end - offset)
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
        return 200

    def _dn_GET_GETFILECHECKSUM(self, path: str, local: Path, params: Any, body: bytes) -> int:
        if not local.is_file():
            raise _not_found(path)
        digest = hashlib.md5(local.read_bytes()).hexdigest()
        self._json(200, {"FileChecksum": {"algorithm": "MD5", "bytes": digest, "length": 16}})
        return 200

    def _dn_PUT_CREATE(self, path: str, local: Path, params: Any, body: bytes) -> int:
        if local.exists() and params.get("overwrite", "false").lower() != "true":
            raise _RemoteError(
                403, "FileAlreadyExistsException", f"{path} for client 127.0.0.1 already exists"
            )
        local.parent.mkdir(parents=True, exist_ok=True)
        local.write_bytes(body)
        return self._empty(201, {"Location": f"hdfs://{HOST}:{self.server.server_port}{path}"})

    def _dn_POST_APPEND(self, path: str, local: Path, params: Any, body: bytes) -> int:
        if not local.is_file():
            raise _not_found(path)
        with local.open("ab") as stream:
            stream.write(body)
        return self._empty(200)


class _WebHDFSHTTPServer(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, root: Path) -> None:
        super().__init__((HOST, 0), _WebHDFSHandler)
        self.root = root
        self.user = "test"
        self.forbidden: set[str] = set()
        self.log: list[WebHDFSRequest] = []
        self._log_lock = threading.Lock()

    def record(self, request: WebHDFSRequest) -> None:
        with self._log_lock:
            self.log.append(request)


@contextlib.contextmanager
def webhdfs_server(root: Path, user: str = "test") -> Iterator[WebHDFSServer]:
    """A WebHDFS server on 127.0.0.1 serving the files under ``root`` (HDFS ``/`` is ``root``).

    ``storage_options`` are fsspec's ``WebHDFS(host, port, user)``; ``env`` sets
    ``HADOOP_USER_NAME`` for Hadoop's own client.
    """
    root = Path(root).resolve()
    root.mkdir(parents=True, exist_ok=True)
    httpd = _WebHDFSHTTPServer(root)
    httpd.user = user
    port = int(httpd.server_address[1])
    thread = threading.Thread(target=httpd.serve_forever, name="webhdfs", daemon=True)
    thread.start()
    try:
        state = WebHDFSServer(
            root=root,
            port=port,
            user=user,
            http_url=f"http://{HOST}:{port}/webhdfs/v1",
            storage_options={"host": HOST, "port": port, "user": user},
            env={"HADOOP_USER_NAME": user},
            forbidden=httpd.forbidden,
            requests=httpd.log,
        )
        yield state
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=10)


# --- MLflow ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class MlflowServer:
    """A running ``mlflow server``: ``tracking_uri`` for ``MlflowClient``; ``env`` a client's."""

    tracking_uri: str
    port: int
    backend_store_uri: str
    artifacts_destination: Path
    log: Path
    env: Mapping[str, str]
    #: Seconds from starting the process to the first healthy ``/health``.
    startup_s: float


#: The environment of the ``mlflow server`` process (on top of the test process's own).
MLFLOW_SERVER_ENV = {
    # Otherwise the server starts huey_consumer processes that outlive it.
    "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
    # Deliver registry webhooks to 127.0.0.1 (the SSRF guard refuses private addresses), over
    # http, and look the webhooks up on every event (no 60 s cache).
    "MLFLOW_WEBHOOK_ALLOW_PRIVATE_IPS": "true",
    "MLFLOW_WEBHOOK_ALLOWED_SCHEMES": "http,https",
    "MLFLOW_WEBHOOK_CACHE_TTL": "0",
    "MLFLOW_WEBHOOK_REQUEST_TIMEOUT": "10",
    # The key webhook secrets are stored under (a fixed one: a server started again on the same
    # database still reads them; otherwise each process makes its own).
    "MLFLOW_WEBHOOK_SECRET_ENCRYPTION_KEY": base64.urlsafe_b64encode(
        b"modelport-tests-webhook-secrets!"
    ).decode(),
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "DO_NOT_TRACK": "true",
    "PYTHONUNBUFFERED": "1",
}


def _healthy(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://{HOST}:{port}/health", timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


@contextlib.contextmanager
def mlflow_server(tmp_dir: Path, timeout: float = 90.0) -> Iterator[MlflowServer]:
    """``mlflow server`` (sqlite, proxied artifacts under ``tmp_dir``) until ``/health`` is 200.

    On exit its process group is terminated, and the test fails if any process it started
    (one mentioning its database) is left.
    """
    tmp_dir = Path(tmp_dir)
    tmp_dir.mkdir(parents=True, exist_ok=True)
    database = tmp_dir / "mlflow.db"
    artifacts = tmp_dir / "artifacts"
    artifacts.mkdir(exist_ok=True)
    log = tmp_dir / "mlflow-server.log"
    backend = f"sqlite:///{database}"

    def command(port: int) -> list[str]:
        return [
            sys.executable,
            "-m",
            "mlflow",
            "server",
            "--backend-store-uri",
            backend,
            "--artifacts-destination",
            str(artifacts),
            "--host",
            HOST,
            "--port",
            str(port),
            "--workers",
            "1",
        ]

    started = time.monotonic()
    with _process_server(
        command,
        log,
        ready=_healthy,
        what="mlflow server's /health",
        env=MLFLOW_SERVER_ENV,
        timeout=timeout,
    ) as (_, port):
        uri = f"http://{HOST}:{port}"
        yield MlflowServer(
            tracking_uri=uri,
            port=port,
            backend_store_uri=backend,
            artifacts_destination=artifacts,
            log=log,
            env={
                "MLFLOW_TRACKING_URI": uri,
                "MLFLOW_REGISTRY_URI": uri,
                "MLFLOW_DISABLE_TELEMETRY": "true",
            },
            startup_s=time.monotonic() - started,
        )
    # The group is gone (_process_server checked); nor is anything it started elsewhere.
    left = processes_mentioning(str(database))
    assert not left, f"mlflow server left processes {left}:\n{_tail(log)}"


def register_version(client: Any, name: str, model_dir: Path, *, timeout: float = 30.0) -> str:
    """Register ``model_dir``'s files as a new version of ``name``; return the version (a str).

    The fast path: a run whose ``model/`` artifacts are ``model_dir``'s files, and a version
    whose source is ``runs:/RUN/model`` (no ``log_model``), waited on until READY. ``client`` is
    an ``MlflowClient`` for the server; the registered model is created when missing.
    """
    from mlflow.exceptions import MlflowException

    run = client.create_run(experiment_id="0")
    run_id = run.info.run_id
    client.log_artifacts(run_id, str(model_dir), "model")
    client.set_terminated(run_id)
    try:
        client.get_registered_model(name)
    except MlflowException as error:
        if error.error_code != "RESOURCE_DOES_NOT_EXIST":
            raise
        client.create_registered_model(name)
    version = client.create_model_version(name, source=f"runs:/{run_id}/model", run_id=run_id)

    def ready() -> bool:
        status = client.get_model_version(name, version.version).status
        assert status != "FAILED_REGISTRATION", f"{name} version {version.version}: {status}"
        return bool(status == "READY")

    wait_for(ready, f"{name} version {version.version} READY", timeout=timeout)
    return str(version.version)


def verify_mlflow_signature(secret: str, headers: Mapping[str, str], body: bytes) -> bool:
    """Whether ``X-MLflow-Signature`` is ``v1,`` + base64 HMAC-SHA256 of the delivery."""
    lowered = {k.lower(): v for k, v in headers.items()}
    signed = f"{lowered['x-mlflow-delivery-id']}.{lowered['x-mlflow-timestamp']}.".encode() + body
    expected = base64.b64encode(hmac.new(secret.encode(), signed, hashlib.sha256).digest())
    return hmac.compare_digest(lowered.get("x-mlflow-signature", ""), "v1," + expected.decode())


@dataclass(frozen=True)
class Delivery:
    """One request a :func:`webhook_receiver` got."""

    path: str
    headers: Mapping[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass(frozen=True)
class WebhookReceiver:
    """A local HTTP endpoint recording every POST: ``url(path)``, ``deliveries``."""

    port: int
    deliveries: list[Delivery]
    status: list[int]

    def url(self, path: str = "/hook") -> str:
        return f"http://{HOST}:{self.port}/{path.lstrip('/')}"


@contextlib.contextmanager
def webhook_receiver(status: int = 200) -> Iterator[WebhookReceiver]:
    """A threaded HTTP server on 127.0.0.1 that records each POST and answers ``status``.

    ``receiver.status[0]`` may be changed while it runs (to make deliveries fail).
    """
    deliveries: list[Delivery] = []
    answer = [status]
    lock = threading.Lock()

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            with lock:
                deliveries.append(Delivery(self.path, dict(self.headers.items()), body))
            self.send_response(answer[0])
            self.send_header("Content-Length", "0")
            self.end_headers()

    httpd = http.server.ThreadingHTTPServer((HOST, 0), Handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, name="webhook-receiver", daemon=True)
    thread.start()
    try:
        yield WebhookReceiver(int(httpd.server_address[1]), deliveries, answer)
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=10)


# --- every store at once, as the remote-source tests use them --------------------------------


@dataclass(frozen=True)
class Store:
    """One running store as a client sees it: a URI prefix and the client's options.

    ``server`` is the server's own record (the WebHDFS server's ``forbidden`` and ``requests``).
    """

    name: str
    base: str  # URI prefix, no trailing slash
    options: Mapping[str, Any]
    server: Any = None

    def put(self, local: Path, rel: str) -> str:
        """Upload a file, or a directory's files, to ``base/rel`` with the real client."""
        from fsspec.core import url_to_fs

        uri = f"{self.base}/{rel}"
        fs, path = url_to_fs(uri, **self.options)
        if local.is_dir():
            for file in sorted(p for p in local.rglob("*") if p.is_file()):
                fs.put_file(str(file), f"{path}/{file.relative_to(local).as_posix()}")
        else:
            fs.put_file(str(local), path)
        fs.invalidate_cache()
        return uri

    def flags(self) -> list[str]:
        """The client's options as ``--storage-option KEY=VALUE`` flags."""
        out = []
        for key, value in self.options.items():
            text = value if isinstance(value, str) else json.dumps(value)
            out += ["--storage-option", f"{key}={text}"]
        return out


@contextlib.contextmanager
def all_stores(root: Path) -> Iterator[dict[str, Store]]:
    """moto's S3, the GCS emulator, Azurite and WebHDFS, each with a ``models`` bucket."""
    with (
        s3_server() as s3,
        gcs_server(default_bucket="models") as gcs,
        azurite_server(root / "azurite") as azurite,
        webhdfs_server(root / "hdfs") as hdfs,
    ):
        s3.make_bucket("models")
        azurite.make_container("models")
        yield {
            "s3": Store("s3", "s3://models", dict(s3.storage_options), s3),
            "gs": Store("gs", "gs://models", dict(gcs.storage_options), gcs),
            "az": Store("az", "az://models", dict(azurite.storage_options), azurite),
            "webhdfs": Store(
                "webhdfs",
                f"webhdfs://{HOST}:{hdfs.port}/models",
                dict(hdfs.storage_options),
                hdfs,
            ),
        }
