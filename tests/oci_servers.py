"""OCI registries for the tests: a real ``docker-registry`` (distribution 2.8) of their own, and a
proxy in front of one that can lie about a blob, demand Bearer tokens, or send blobs elsewhere.

:func:`registry_server` starts ``docker-registry serve`` on a free port of 127.0.0.1 with its
storage in a directory of the test's, optionally behind an htpasswd file (bcrypt, as the registry
reads it), and waits until ``GET /v2/`` answers. :func:`registry_proxy` forwards every request to
such a registry and records it; it can serve other bytes for one blob (``tamper``), answer with
Bearer challenges and issue tokens from its own ``/token`` endpoint (``token_users``), and redirect
blob downloads to a second server on another port (``redirect_blobs``) that records the headers it
got, as object storage would. :func:`push_raw` writes an arbitrary manifest with the distribution
protocol, for artifacts modelport would never write itself.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import http.client
import http.server
import json
import secrets
import shutil
import threading
import urllib.parse
import urllib.request
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from storage_servers import HOST, _process_server

REGISTRY_BINARY = "docker-registry"


def registry_available() -> bool:
    """Whether ``docker-registry`` (Debian's distribution 2.8) is installed."""
    return shutil.which(REGISTRY_BINARY) is not None


@dataclass(frozen=True)
class RegistryServer:
    """A running registry: ``host`` is ``127.0.0.1:PORT`` (plain HTTP).

    Attributes:
        host: where it listens.
        root: its storage directory.
        users: the user names and passwords of its htpasswd file (empty: no authentication).
    """

    host: str
    root: Path
    users: Mapping[str, str] = field(default_factory=dict)


def _answers(port: int) -> bool:
    conn = http.client.HTTPConnection(HOST, port, timeout=2)
    try:
        conn.request("GET", "/v2/")
        return conn.getresponse().status in (200, 401)
    except OSError:
        return False
    finally:
        conn.close()


@contextlib.contextmanager
def registry_server(
    root: Path, *, users: Mapping[str, str] | None = None
) -> Iterator[RegistryServer]:
    """``docker-registry serve`` on a free port, storing under ``root``; stopped on leaving.

    With ``users``, every request needs HTTP Basic credentials of one of them.
    """
    import bcrypt

    root.mkdir(parents=True, exist_ok=True)
    config: dict[str, Any] = {
        "version": "0.1",
        "log": {"level": "warn"},
        "storage": {
            "filesystem": {"rootdirectory": str(root / "data")},
            "delete": {"enabled": True},
        },
        "http": {"addr": ""},
    }
    if users:
        htpasswd = root / "htpasswd"
        # Cost 4, the least bcrypt allows: the registry checks the password on every request.
        htpasswd.write_text(
            "".join(
                f"{user}:{bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=4)).decode()}\n"
                for user, password in users.items()
            )
        )
        config["auth"] = {"htpasswd": {"realm": "modelport-test", "path": str(htpasswd)}}
    path = root / "config.yml"

    def command(port: int) -> list[str]:
        config["http"]["addr"] = f"{HOST}:{port}"
        path.write_text(json.dumps(config))  # JSON is YAML
        return [REGISTRY_BINARY, "serve", str(path)]

    with _process_server(
        command, root / "registry.log", ready=_answers, what="docker-registry"
    ) as (_, port):
        yield RegistryServer(f"{HOST}:{port}", root, dict(users or {}))


# --- the proxy ----------------------------------------------------------------------------------


@dataclass
class Seen:
    """One request the proxy (or the blob store behind a redirect) received."""

    method: str
    path: str
    headers: dict[str, str]


@dataclass
class RegistryProxy:
    """A proxy in front of a registry (see :func:`registry_proxy`).

    Attributes:
        host: ``127.0.0.1:PORT`` of the proxy.
        upstream: the registry it forwards to.
        tamper: blob digest -> the bytes served instead of that blob's.
        seen: every request received, in order.
        blob_store_seen: every request the blob store (behind ``redirect_blobs``) received.
        token_requests: the query (or form) and the user it authenticated, of each token request.
        refresh_tokens: identity (refresh) tokens the ``/token`` endpoint takes, to the user.
        fail_blobs: when set, the status every blob download is answered with.
        lie_about_digests: say every upload was stored as ``sha256:000…``.
    """

    host: str
    upstream: str
    tamper: dict[str, bytes] = field(default_factory=dict)
    seen: list[Seen] = field(default_factory=list)
    blob_store_seen: list[Seen] = field(default_factory=list)
    token_requests: list[dict[str, Any]] = field(default_factory=list)
    refresh_tokens: dict[str, str] = field(default_factory=dict)
    fail_blobs: int | None = None
    lie_about_digests: bool = False


def _forward(upstream: str, method: str, path: str, headers: Mapping[str, str], body: bytes) -> Any:
    conn = http.client.HTTPConnection(upstream, timeout=30)
    try:
        conn.request(
            method,
            path,
            body=body if body or method in ("PUT", "POST") else None,
            headers=dict(headers),
        )
        response = conn.getresponse()
        return response.status, response.getheaders(), response.read()
    finally:
        conn.close()


class _ProxyServer(http.server.ThreadingHTTPServer):
    daemon_threads = True
    state: RegistryProxy
    token_users: Mapping[str, str]
    tokens: set[str]
    blob_store: str | None  # the host blob GETs are redirected to
    is_blob_store: bool


class _ProxyHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _ProxyServer

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _answer(self, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
        self.send_response(status)
        for name, value in headers:
            if name.lower() not in (
                "content-length",
                "connection",
                "transfer-encoding",
                "date",
                "server",
            ):
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _handle(self) -> None:
        server = self.server
        state = server.state
        body = self._body()
        headers = {k: v for k, v in self.headers.items()}
        seen = Seen(self.command, self.path, dict(headers))
        if server.is_blob_store:
            state.blob_store_seen.append(seen)
            # /blobs/<repo>/<digest>: what the registry holds, fetched without credentials
            repo, _, digest = self.path[len("/blobs/") :].rpartition("/")
            status, got, data = _forward(
                state.upstream, "GET", f"/v2/{repo}/blobs/{digest}", {}, b""
            )
            self._answer(status, [(k, v) for k, v in got if k.lower() == "content-type"], data)
            return
        state.seen.append(seen)
        path = urllib.parse.urlsplit(self.path).path
        if path == "/token":
            self._token(body)
            return
        if server.token_users:
            auth = headers.get("Authorization", "")
            if not (auth.startswith("Bearer ") and auth[len("Bearer ") :] in server.tokens):
                parts = path.split("/")
                repo = "/".join(parts[2:-2]) if len(parts) > 4 else ""
                challenge = f'Bearer realm="http://{state.host}/token",service="modelport-test"' + (
                    f',scope="repository:{repo}:pull"' if repo else ""
                )
                self._answer(
                    401,
                    [("WWW-Authenticate", challenge), ("Content-Type", "application/json")],
                    b'{"errors":[{"code":"UNAUTHORIZED"}]}',
                )
                return
            headers.pop("Authorization")
        parts = path.split("/")
        if self.command == "GET" and len(parts) >= 5 and parts[-2] == "blobs":
            digest = parts[-1]
            if state.fail_blobs is not None:
                self._answer(state.fail_blobs, [("Content-Type", "text/plain")], b"down")
                return
            if digest in state.tamper:
                data = state.tamper[digest]
                self._answer(
                    200,
                    [
                        ("Content-Type", "application/octet-stream"),
                        ("Docker-Content-Digest", digest),
                    ],
                    data,
                )
                return
            if server.blob_store is not None:
                repo = "/".join(parts[2:-2])
                location = f"http://{server.blob_store}/blobs/{repo}/{digest}"
                self._answer(307, [("Location", location)], b"")
                return
        status, got, data = _forward(state.upstream, self.command, self.path, headers, body)
        if state.lie_about_digests and self.command == "PUT":
            zero = "sha256:" + "0" * 64
            got = [(k, zero if k.lower() == "docker-content-digest" else v) for k, v in got]
        self._answer(status, got, data)

    def _token(self, body: bytes) -> None:
        server = self.server
        query = urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query)
        auth = self.headers.get("Authorization", "")
        user = None
        if auth.startswith("Basic "):
            name, _, password = base64.b64decode(auth[6:]).decode().partition(":")
            if server.token_users.get(name) == password:
                user = name
        if self.command == "POST":  # OAuth2: a refresh token (an identity token) for a token
            query = urllib.parse.parse_qs(body.decode())
            given = query.get("refresh_token", [""])[0]
            if query.get("grant_type") == ["refresh_token"]:
                user = server.state.refresh_tokens.get(given)
        server.state.token_requests.append({"query": query, "user": user})
        if user is None:
            self._answer(
                401, [("Content-Type", "application/json")], b'{"errors":[{"code":"UNAUTHORIZED"}]}'
            )
            return
        token = secrets.token_hex(16)
        server.tokens.add(token)
        self._answer(
            200, [("Content-Type", "application/json")], json.dumps({"token": token}).encode()
        )

    do_GET = do_HEAD = do_PUT = do_POST = do_PATCH = do_DELETE = _handle


def _serve(server: _ProxyServer) -> threading.Thread:
    thread = threading.Thread(target=server.serve_forever, name="registry-proxy", daemon=True)
    thread.start()
    return thread


@contextlib.contextmanager
def registry_proxy(
    upstream: str,
    *,
    token_users: Mapping[str, str] | None = None,
    redirect_blobs: bool = False,
) -> Iterator[RegistryProxy]:
    """A proxy on 127.0.0.1 in front of the registry ``upstream`` (``HOST:PORT``).

    Args:
        upstream: the registry.
        token_users: when given, every registry request needs a Bearer token, which the
            proxy's ``/token`` gives for HTTP Basic credentials of one of these users.
        redirect_blobs: answer blob downloads with a 307 to a blob store on another port.
    """
    servers: list[tuple[_ProxyServer, threading.Thread]] = []
    try:
        proxy = _ProxyServer((HOST, 0), _ProxyHandler)
        state = RegistryProxy(host=f"{HOST}:{proxy.server_address[1]}", upstream=upstream)
        proxy.state, proxy.token_users, proxy.tokens = state, dict(token_users or {}), set()
        proxy.blob_store, proxy.is_blob_store = None, False
        if redirect_blobs:
            store = _ProxyServer((HOST, 0), _ProxyHandler)
            store.state, store.token_users, store.tokens = state, {}, set()
            store.blob_store, store.is_blob_store = None, True
            proxy.blob_store = f"{HOST}:{store.server_address[1]}"
            servers.append((store, _serve(store)))
        servers.append((proxy, _serve(proxy)))
        yield state
    finally:
        for server, thread in servers:
            server.shutdown()
            server.server_close()
            thread.join(timeout=10)


# --- raw pushes ---------------------------------------------------------------------------------


def sha256(data: bytes) -> str:
    """``sha256:<hex>`` of ``data``."""
    return "sha256:" + hashlib.sha256(data).hexdigest()


def call(
    method: str, url: str, body: bytes | None = None, headers: Mapping[str, str] | None = None
) -> Any:
    """Send one request with urllib (raises on an error status); the open response."""
    request = urllib.request.Request(url, data=body, method=method, headers=dict(headers or {}))
    return urllib.request.urlopen(request, timeout=30)


def put_blob(host: str, repo: str, data: bytes) -> str:
    """Upload ``data`` as a blob (POST, then a monolithic PUT); its digest."""
    digest = sha256(data)
    with call("POST", f"http://{host}/v2/{repo}/blobs/uploads/", b"") as response:
        location = urllib.parse.urljoin(f"http://{host}/", response.headers["Location"])
    joiner = "&" if "?" in location else "?"
    headers = {"Content-Type": "application/octet-stream"}
    with call("PUT", f"{location}{joiner}digest={digest}", data, headers):
        pass
    return digest


def put_manifest(host: str, repo: str, reference: str, manifest: Mapping[str, Any]) -> str:
    """PUT ``manifest`` (an OCI image manifest) as ``reference``; its digest."""
    data = json.dumps(manifest).encode()
    headers = {
        "Content-Type": str(manifest.get("mediaType", "application/vnd.oci.image.manifest.v1+json"))
    }
    with call("PUT", f"http://{host}/v2/{repo}/manifests/{reference}", data, headers):
        pass
    return sha256(data)


def push_raw(
    host: str,
    repo: str,
    tag: str,
    *,
    config: Mapping[str, Any],
    layers: list[tuple[bytes, str, Mapping[str, str]]],
    artifact_type: str | None = "application/vnd.cncf.model.manifest.v1+json",
    config_media_type: str = "application/vnd.cncf.model.config.v1+json",
) -> str:
    """Push an artifact of these layers (bytes, media type, annotations) by hand; its digest."""
    config_bytes = json.dumps(config).encode()
    descriptors = []
    for data, media_type, notes in layers:
        descriptors.append(
            {
                "mediaType": media_type,
                "digest": put_blob(host, repo, data),
                "size": len(data),
                "annotations": dict(notes),
            }
        )
    manifest: dict[str, Any] = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": config_media_type,
            "digest": put_blob(host, repo, config_bytes),
            "size": len(config_bytes),
        },
        "layers": descriptors,
    }
    if artifact_type is not None:
        manifest["artifactType"] = artifact_type
    return put_manifest(host, repo, tag, manifest)


def get_json(host: str, repo: str, reference: str, accept: str) -> tuple[bytes, Any]:
    """GET a manifest (or index) from a plain-HTTP registry: its bytes and JSON."""
    with call(
        "GET", f"http://{host}/v2/{repo}/manifests/{reference}", headers={"Accept": accept}
    ) as response:
        data = response.read()
    return data, json.loads(data)
