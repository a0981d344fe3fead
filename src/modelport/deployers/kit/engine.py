"""A small Docker Engine API client on the standard library: Docker, or podman's service.

It speaks what docker-py speaks underneath (HTTP/1.1 on a unix socket or TCP, API ``v1.41``),
for the few calls the container targets need: inspect and list images and containers, build
from a directory, tag, push and remove. It never goes through ``$HTTP_PROXY``::

    engine = Engine()  # $DOCKER_HOST, else unix:///var/run/docker.sock
    image_id = engine.build(Path("context"), tag="localhost/model:1", on_output=print)

Errors are :class:`EngineError` (with the HTTP status, when there is one), or
:class:`EngineUnreachable` when nothing answers at the address; :mod:`~.images` turns them into
modelport's errors.
"""

from __future__ import annotations

import codecs
import http.client
import json
import os
import re
import socket
import ssl
import tarfile
import tempfile
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO, Any
from urllib.parse import quote, urlencode, urlsplit

API_VERSION = "v1.41"
DEFAULT_HOST = "unix:///var/run/docker.sock"
#: How long connecting may take; a read may take ``timeout`` (a build step can be silent).
CONNECT_TIMEOUT_S = 10.0
_PUSHED_DIGEST = re.compile(r"digest: (sha256:[0-9a-f]{64})")
_TAIL_LINES = 15


class EngineError(Exception):
    """The engine refused or failed a request; ``str()`` is the engine's message.

    Args:
        message: what the engine said (or what went wrong talking to it).
        status: the HTTP status of the answer, when there was one.
    """

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


class EngineUnreachable(EngineError):
    """Nothing answers at the engine's address (refused, no socket, or connecting timed out)."""


class _UnixConnection(http.client.HTTPConnection):
    """HTTP on a unix socket."""

    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self.path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(min(CONNECT_TIMEOUT_S, self.timeout or CONNECT_TIMEOUT_S))
            sock.connect(self.path)
        except OSError as exc:
            sock.close()
            raise EngineUnreachable(f"nothing answers at unix://{self.path}: {exc}") from exc
        sock.settimeout(self.timeout)
        self.sock = sock


class _TCPConnection(http.client.HTTPConnection):
    """HTTP on TCP, with TLS when given a context."""

    def __init__(self, host: str, port: int, timeout: float, tls: ssl.SSLContext | None) -> None:
        super().__init__(host, port, timeout=timeout)
        self.tls = tls

    def connect(self) -> None:
        try:
            timeout = min(CONNECT_TIMEOUT_S, self.timeout or CONNECT_TIMEOUT_S)
            sock = socket.create_connection((self.host, self.port), timeout)
        except OSError as exc:
            where = f"{self.host}:{self.port}"
            raise EngineUnreachable(f"nothing answers at {where}: {exc}") from exc
        sock.settimeout(self.timeout)
        if self.tls is None:
            self.sock = sock
            return
        try:
            self.sock = self.tls.wrap_socket(sock, server_hostname=self.host)
        except BaseException:
            sock.close()
            raise


def _tls_context(always: bool) -> ssl.SSLContext | None:
    """TLS as docker-py sets it up from ``DOCKER_TLS_VERIFY`` and ``DOCKER_CERT_PATH``."""
    verify_env = os.environ.get("DOCKER_TLS_VERIFY", "")
    cert_env = os.environ.get("DOCKER_CERT_PATH", "")
    if not (always or verify_env or cert_env):
        return None
    certs = Path(cert_env or Path.home() / ".docker")
    try:
        if verify_env or not cert_env:
            ca = certs / "ca.pem"
            context = ssl.create_default_context(cafile=str(ca) if ca.exists() else None)
        else:  # a certificate path without DOCKER_TLS_VERIFY: TLS, but the server is not checked
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        if (certs / "cert.pem").exists() and (certs / "key.pem").exists():
            context.load_cert_chain(str(certs / "cert.pem"), str(certs / "key.pem"))
    except (OSError, ssl.SSLError) as exc:
        raise EngineError(f"cannot load the TLS files in {certs}: {exc}") from exc
    return context


def split_reference(ref: str) -> tuple[str, str]:
    """An image reference as (repository, tag); the tag is ``latest`` when none is given.

    A reference pinned to a digest (``repo[:tag]@sha256:...``) gives the digest as its tag.
    """
    if "@" in ref:
        name, _, digest = ref.partition("@")
        return split_reference(name)[0], digest
    repository, colon, tag = ref.rpartition(":")
    if not colon or "/" in tag:  # no colon, or only a registry's port
        return ref, "latest"
    return repository, tag


def write_context_tar(directory: Path, out: IO[bytes]) -> None:
    """Write a build context as an uncompressed tar that depends on the files' content only.

    Entries are sorted, with mtime 0 and owner 0:0; ``__pycache__`` and ``*.pyc`` are left out
    (all a modelport context's ``.dockerignore`` says).
    """
    names: list[str] = []
    for root, dirs, files in os.walk(directory):
        dirs[:] = [d for d in dirs if d != "__pycache__"]
        base = Path(root).relative_to(directory)
        names += [(base / n).as_posix() for n in dirs + files if not n.endswith(".pyc")]
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name in sorted(names):
            info = tar.gettarinfo(str(directory / name), arcname=name)
            info.mtime, info.uid, info.gid, info.uname, info.gname = 0, 0, 0, "", ""
            if info.isreg():
                with open(directory / name, "rb") as f:
                    tar.addfile(info, f)
            else:
                tar.addfile(info)


def _quoted(ref: str) -> str:
    """An image reference or id as a URL path segment (as docker-py quotes it)."""
    return quote(ref, safe="/:")


def _messages(response: http.client.HTTPResponse) -> Iterator[dict[str, Any]]:
    """The JSON objects of a streamed answer, however they are split or joined."""
    decoder = json.JSONDecoder()
    text = codecs.getincrementaldecoder("utf-8")("replace")
    buffer = ""
    while True:
        chunk = response.read1(65536)
        buffer = (buffer + text.decode(chunk, final=not chunk)).lstrip()
        while buffer:
            try:
                message, end = decoder.raw_decode(buffer)
            except json.JSONDecodeError:
                if not chunk:
                    raise EngineError(
                        f"the engine sent text that is not JSON: {buffer[:200]!r}"
                    ) from None
                break
            buffer = buffer[end:].lstrip()
            if isinstance(message, dict):
                yield message
        if not chunk:
            return


class Engine:
    """A Docker Engine API client (Docker, or podman's ``podman system service``).

    Args:
        base_url: ``unix://PATH``, ``tcp://HOST:PORT`` or ``http(s)://HOST:PORT``; default
            ``$DOCKER_HOST``, else ``unix:///var/run/docker.sock``. TCP uses TLS the way
            docker-py does when ``DOCKER_TLS_VERIFY`` or ``DOCKER_CERT_PATH`` is set.
        timeout: seconds a read may wait (a build step may print nothing for minutes).

    Raises:
        EngineError: the address is not one of those forms (``ssh://`` is not supported).
    """

    def __init__(self, base_url: str | None = None, *, timeout: float = 900.0) -> None:
        self._base_url = base_url or os.environ.get("DOCKER_HOST") or DEFAULT_HOST
        self._open_connections: set[http.client.HTTPConnection] = set()
        url = urlsplit(self._base_url)
        self._prefix = ""
        if url.scheme == "unix" and (url.netloc + url.path):
            self._connect: Callable[[], http.client.HTTPConnection] = lambda: _UnixConnection(
                url.netloc + url.path, timeout
            )
            return
        if url.scheme not in ("tcp", "http", "https") or not url.hostname:
            raise EngineError(
                f"unsupported container engine address {self._base_url!r}: use unix://PATH, "
                "tcp://HOST:PORT or http(s)://HOST:PORT (for ssh://, forward the socket with "
                "`ssh -L` and use that)"
            )
        tls = None if url.scheme == "http" else _tls_context(always=url.scheme == "https")
        try:
            host, port = url.hostname, url.port or (2376 if tls else 2375)
        except ValueError as exc:
            raise EngineError(f"bad container engine address {self._base_url!r}: {exc}") from None
        self._prefix = url.path.rstrip("/")
        self._connect = lambda: _TCPConnection(host, port, timeout, tls)

    @property
    def base_url(self) -> str:
        """The engine's address."""
        return self._base_url

    # --- requests -------------------------------------------------------------------------

    def _open(
        self,
        method: str,
        path: str,
        query: Mapping[str, str] | None = None,
        body: IO[bytes] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> tuple[http.client.HTTPConnection, http.client.HTTPResponse]:
        """Send a request; the answer is left unread (close the connection when done).

        Raises:
            EngineError: the engine answered with status >= 400, or the exchange failed.
        """
        url = f"{self._prefix}/{API_VERSION}{path}"
        if query:
            url += "?" + urlencode(query)
        connection = self._connect()
        self._open_connections.add(connection)
        try:
            connection.request(method, url, body=body, headers=dict(headers or {}))
            response = connection.getresponse()
            if response.status >= 400:
                raw = response.read().decode("utf-8", "replace")
                try:
                    message = str(json.loads(raw)["message"])
                except (ValueError, KeyError, TypeError):
                    message = raw.strip() or f"HTTP {response.status} {response.reason}"
                raise EngineError(message, status=response.status)
        except BaseException as exc:
            self._close(connection)
            if isinstance(exc, (OSError, http.client.HTTPException)):
                raise EngineError(f"{method} {path} at {self._base_url} failed: {exc}") from exc
            raise
        return connection, response

    def _close(self, connection: http.client.HTTPConnection) -> None:
        connection.close()
        self._open_connections.discard(connection)

    def _call(self, method: str, path: str, query: Mapping[str, str] | None = None) -> Any:
        """One request; its JSON answer (None when empty)."""
        connection, response = self._open(method, path, query)
        try:
            raw = response.read()
        except (OSError, http.client.HTTPException) as exc:
            raise EngineError(f"reading the answer to {method} {path} failed: {exc}") from exc
        finally:
            self._close(connection)
        try:
            return json.loads(raw) if raw.strip() else None
        except ValueError:
            return raw.decode("utf-8", "replace")

    def _stream(
        self,
        connection: http.client.HTTPConnection,
        response: http.client.HTTPResponse,
        on_output: Callable[[str], None] | None,
    ) -> tuple[list[dict[str, Any]], list[str]]:
        """Follow a build's or a push's progress: (its ``aux`` objects, its status lines).

        Raises:
            EngineError: the stream reported an error (with the last lines of output).
        """
        tail: deque[str] = deque(maxlen=_TAIL_LINES)
        aux: list[dict[str, Any]] = []
        statuses: list[str] = []
        pending = ""

        def emit(text: str) -> None:
            for line in text.splitlines():
                if line.strip():
                    tail.append(line)
                    if on_output is not None:
                        on_output(line)

        try:
            for message in _messages(response):
                if "stream" in message:
                    pending += str(message["stream"])
                    done, _, pending = pending.rpartition("\n")
                    emit(done)
                if "status" in message:
                    statuses.append(str(message["status"]))
                    emit(str(message["status"]))
                if isinstance(message.get("aux"), dict):
                    aux.append(message["aux"])
                if "error" in message or "errorDetail" in message:
                    emit(pending)
                    detail = message.get("errorDetail")
                    error = message.get("error") or (
                        detail.get("message") if isinstance(detail, dict) else None
                    )
                    lines = "\n".join(f"  {line}" for line in tail)
                    error = str(error or "unknown error").strip()
                    raise EngineError(f"{error}\n{lines}" if lines else error)
            emit(pending)
        except (OSError, http.client.HTTPException) as exc:
            raise EngineError(f"reading the engine's progress failed: {exc}") from exc
        finally:
            self._close(connection)
        return aux, statuses

    # --- the calls ------------------------------------------------------------------------

    def ping(self) -> None:
        """Check that the engine answers (``GET /_ping``)."""
        self._call("GET", "/_ping")

    def architecture(self) -> str:
        """The engine's CPU architecture as images name it (``amd64``, ``arm64``)."""
        found = self._call("GET", "/version") or {}
        arch = str(found.get("Arch") or "") if isinstance(found, dict) else ""
        return {"x86_64": "amd64", "aarch64": "arm64"}.get(arch, arch)

    def image(self, ref: str) -> dict[str, Any] | None:
        """The image's inspection (``Id``, ``Config.Labels``, ...), or None when it is absent."""
        try:
            found: dict[str, Any] = self._call("GET", f"/images/{_quoted(ref)}/json")
        except EngineError as exc:
            if exc.status == 404:
                return None
            raise
        return found

    def images(self, *, filters: Mapping[str, Sequence[str]] | None = None) -> list[dict[str, Any]]:
        """The images, e.g. ``filters={"label": ["key=value"]}``."""
        query = {"filters": json.dumps({k: list(v) for k, v in filters.items()})} if filters else {}
        return list(self._call("GET", "/images/json", query) or [])

    def containers(
        self, *, all: bool = True, filters: Mapping[str, Sequence[str]] | None = None
    ) -> list[dict[str, Any]]:
        """The containers (every state with ``all``), e.g. ``filters={"ancestor": [image]}``."""
        query = {"all": "1" if all else "0"}
        if filters:
            query["filters"] = json.dumps({k: list(v) for k, v in filters.items()})
        return list(self._call("GET", "/containers/json", query) or [])

    def build(
        self,
        context: Path,
        *,
        tag: str,
        dockerfile: str = "Dockerfile",
        target: str | None = None,
        labels: Mapping[str, str] | None = None,
        buildargs: Mapping[str, str] | None = None,
        platform: str | None = None,
        on_output: Callable[[str], None] | None = None,
    ) -> str:
        """Build an image from the directory ``context``; returns the image's id.

        Args:
            context: the build context directory (sent as :func:`write_context_tar` writes it).
            tag: the reference the image gets.
            dockerfile: the Dockerfile, relative to the context.
            target: the stage to build; default the last.
            labels: labels to add to the image.
            buildargs: values of the Dockerfile's ``ARG``s.
            platform: the platform to build for (``linux/amd64``); default the engine's own.
            on_output: receives each non-empty line of the build's output.

        Raises:
            EngineError: the build failed (the message ends with its last lines of output).
        """
        query = {"t": tag, "dockerfile": dockerfile, "rm": "1", "forcerm": "1"}
        if platform:
            query["platform"] = platform
        if target:
            query["target"] = target
        if labels:
            query["labels"] = json.dumps(dict(labels))
        if buildargs:
            query["buildargs"] = json.dumps(dict(buildargs))
        with tempfile.TemporaryFile() as tar:
            write_context_tar(context, tar)
            headers = {"Content-Type": "application/x-tar", "Content-Length": str(tar.tell())}
            tar.seek(0)
            aux, _ = self._stream(*self._open("POST", "/build", query, tar, headers), on_output)
        ids = [str(a["ID"]) for a in aux if a.get("ID")]
        if ids:
            return ids[-1]
        found = self.image(tag)
        if found is None:
            raise EngineError(f"the build of {tag} gave no image")
        return str(found["Id"])

    def tag(self, image: str, repository: str, tag: str) -> None:
        """Give ``image`` the reference ``repository:tag``."""
        self._call("POST", f"/images/{_quoted(image)}/tag", {"repo": repository, "tag": tag})

    def push(
        self,
        ref: str,
        *,
        auth_header: str | None = None,
        on_output: Callable[[str], None] | None = None,
    ) -> str | None:
        """Push ``ref`` to its registry; returns the pushed manifest's digest when reported.

        Args:
            ref: ``[registry/]repository[:tag]``.
            auth_header: the ``X-Registry-Auth`` value (see :class:`~.images.RegistryAuth`).
            on_output: receives each status line.

        Raises:
            EngineError: the push failed.
        """
        repository, tag = split_reference(ref)
        headers = {"X-Registry-Auth": auth_header} if auth_header else {}
        path = f"/images/{_quoted(repository)}/push"
        opened = self._open("POST", path, {"tag": tag}, None, headers)
        aux, statuses = self._stream(*opened, on_output)
        for found in aux:
            if found.get("Digest"):
                return str(found["Digest"])
        # podman reports the digest only in a status line, as `docker push` prints it.
        for status in statuses:
            match = _PUSHED_DIGEST.search(status)
            if match:
                return match.group(1)
        return None

    def remove_image(self, image: str, *, force: bool = False) -> bool:
        """Remove an image (``force``: with all its tags); False when it was not there."""
        try:
            path = f"/images/{_quoted(image)}"
            self._call("DELETE", path, {"force": "1" if force else "0"})
        except EngineError as exc:
            if exc.status == 404:
                return False
            raise
        return True

    def close(self) -> None:
        """Close any connection still open (each request opens its own)."""
        for connection in list(self._open_connections):
            self._close(connection)

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def engine_at(docker_host: str | None) -> Engine:
    """The Engine API a target's ``-C docker_host`` names (default ``$DOCKER_HOST``).

    Raises:
        UsageError: the address is not one the client can use (with the option to set).
    """
    from modelport.errors import UsageError

    try:
        return Engine(docker_host)
    except EngineError as exc:
        raise UsageError(str(exc), hint="set -C docker_host or DOCKER_HOST") from None
