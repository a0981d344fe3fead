"""The stdlib Docker Engine API client: against a recording stand-in, then against podman.

The stand-in (:class:`FakeEngine`) answers from a table over a unix socket or TCP (TLS too) and
records every request, so the wire format is checked exactly: query parameters, headers, the
build context's tar, and streamed answers cut at every byte. The slow tests talk to the real
engine at $DOCKER_HOST (podman's service) and the registry at $MODELPORT_TEST_REGISTRY.
"""

from __future__ import annotations

import contextlib
import http.client
import io
import json
import os
import shutil
import socketserver
import ssl
import subprocess
import tarfile
import tempfile
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

import pytest
from docker_fixtures import REGISTRY_ENV, free_port, run_labels, unavailable

from modelport.deployers.kit.engine import (
    DEFAULT_HOST,
    Engine,
    EngineError,
    EngineUnreachable,
    write_context_tar,
)
from modelport.deployers.kit.images import ENGINE_ERRORS
from modelport.errors import TargetUnavailableError

# One worker builds and runs every image (when these tests run on several workers): the session's
# images are built once, and two podman builds never race for the same layers.
pytestmark = pytest.mark.xdist_group("containers")


DIGEST = "sha256:" + "c" * 64
IMAGE_ID = "sha256:" + "a" * 64

#: Every image this module builds carries it; the `real` fixture removes them at the end.
CLEANUP_LABEL = "kit-engine-test"


# --- a recording stand-in for the engine ----------------------------------------------------------


@dataclass(frozen=True)
class Seen:
    """One request the stand-in received (``path`` without the ``/v1.41`` prefix)."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes
    raw_path: str


#: A reply: (status, body); a list body is sent chunked, one chunk per item.
Reply = tuple[int, "bytes | list[bytes]"]


@dataclass
class FakeEngine:
    """Answers ``(method, path)`` from ``routes`` (404 otherwise) and records every request."""

    routes: dict[tuple[str, str], Reply] = field(default_factory=dict)
    seen: list[Seen] = field(default_factory=list)

    def handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def serve(self) -> None:
                url = urlsplit(self.path)
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                path = unquote(url.path).removeprefix("/v1.41")
                fake.seen.append(
                    Seen(
                        self.command,
                        path,
                        dict(parse_qsl(url.query)),
                        dict(self.headers),
                        body,
                        url.path,
                    )
                )
                default: Reply = (404, b'{"message": "no such route"}')
                status, reply = fake.routes.get((self.command, path), default)
                self.send_response(status)
                if isinstance(reply, list):
                    self.send_header("Transfer-Encoding", "chunked")
                    self.end_headers()
                    for piece in reply:
                        self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
                    self.wfile.write(b"0\r\n\r\n")
                else:
                    self.send_header("Content-Length", str(len(reply)))
                    self.end_headers()
                    self.wfile.write(reply)

            do_GET = do_POST = do_DELETE = serve

        return Handler


class UnixServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True


class _TCPServer(socketserver.ThreadingMixIn, socketserver.TCPServer):
    daemon_threads = True


@contextlib.contextmanager
def serving(server: socketserver.BaseServer) -> Iterator[None]:
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


@pytest.fixture
def fake() -> Iterator[tuple[FakeEngine, Engine]]:
    """The stand-in on a unix socket (in a short path: AF_UNIX allows 108 bytes) and a client."""
    directory = tempfile.mkdtemp(prefix="kit-engine-")
    stand_in = FakeEngine()
    path = os.path.join(directory, "engine.sock")
    server = UnixServer(path, stand_in.handler())
    try:
        with serving(server), Engine(f"unix://{path}", timeout=30) as client:
            yield stand_in, client
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def stream(*messages: dict[str, Any]) -> list[bytes]:
    """Messages as the engine streams them, concatenated without newlines, one byte a chunk."""
    raw = b"".join(json.dumps(m, ensure_ascii=False).encode() for m in messages)
    return [raw[i : i + 1] for i in range(len(raw))]


def _json(value: Any) -> bytes:
    return json.dumps(value).encode()


# --- addresses ----------------------------------------------------------------------------------


def test_base_url_comes_from_docker_host_then_the_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKER_HOST", "unix:///tmp/somewhere.sock")
    assert Engine().base_url == "unix:///tmp/somewhere.sock"
    assert Engine("tcp://127.0.0.1:2375").base_url == "tcp://127.0.0.1:2375"
    monkeypatch.delenv("DOCKER_HOST")
    assert Engine().base_url == DEFAULT_HOST == "unix:///var/run/docker.sock"


@pytest.mark.parametrize(
    "address", ["ssh://user@host", "npipe:////./pipe/docker_engine", "unix://", "tcp://:2375"]
)
def test_unsupported_addresses_are_refused_clearly(address: str) -> None:
    with pytest.raises(EngineError, match="unsupported container engine address") as caught:
        Engine(address)
    assert caught.value.status is None
    assert "unix://PATH" in str(caught.value)


def test_a_missing_socket_is_unreachable_and_translates_to_unavailable(tmp_path: Path) -> None:
    client = Engine(f"unix://{tmp_path / 'nobody.sock'}")
    with pytest.raises(EngineUnreachable, match=r"nobody\.sock"):
        client.ping()
    with pytest.raises(TargetUnavailableError) as caught, ENGINE_ERRORS.translating("pinging"):
        client.ping()
    assert caught.value.hint == "start Docker (or `podman system service`), or set DOCKER_HOST"
    assert "container engine" in str(caught.value)


def test_a_closed_tcp_port_is_unreachable() -> None:
    with pytest.raises(EngineUnreachable, match="refused"):
        Engine(f"tcp://127.0.0.1:{free_port()}").ping()


def test_requests_never_go_through_a_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "ALL_PROXY"):
        monkeypatch.setenv(name, "http://127.0.0.1:9")  # nothing listens: a proxied call fails
    stand_in = FakeEngine({("GET", "/_ping"): (200, b"OK")})
    server = _TCPServer(("127.0.0.1", 0), stand_in.handler())
    with serving(server):
        port = server.server_address[1]
        Engine(f"tcp://127.0.0.1:{port}").ping()
        Engine(f"http://127.0.0.1:{port}").ping()
    assert [s.raw_path for s in stand_in.seen] == ["/v1.41/_ping", "/v1.41/_ping"]


# --- TLS ----------------------------------------------------------------------------------------


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def _make_ca(directory: Path) -> None:
    directory.mkdir()
    _openssl(
        *("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"),
        *("-keyout", "ca-key.pem", "-out", "ca.pem", "-days", "1", "-subj", "/CN=kit-test-ca"),
        *("-addext", "basicConstraints=critical,CA:TRUE"),
        *("-addext", "keyUsage=critical,keyCertSign,cRLSign"),
        cwd=directory,
    )


def _make_cert(ca: Path, name: str, extensions: str) -> None:
    """``name.pem`` and ``name-key.pem`` in ``ca``, signed by its CA."""
    (ca / f"{name}.ext").write_text(extensions)
    _openssl(
        *("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"),
        *("-keyout", f"{name}-key.pem", "-out", f"{name}.csr", "-subj", f"/CN={name}"),
        cwd=ca,
    )
    _openssl(
        *("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca-key.pem"),
        *("-CAcreateserial", "-out", f"{name}.pem", "-days", "1", "-extfile", f"{name}.ext"),
        cwd=ca,
    )


@pytest.fixture
def tls_engine(tmp_path: Path) -> Iterator[tuple[FakeEngine, int, Path]]:
    """The stand-in behind TLS that requires a client certificate; (it, port, cert dir)."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    ca = tmp_path / "ca"
    _make_ca(ca)
    _make_cert(ca, "server", "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n")
    _make_cert(ca, "client", "extendedKeyUsage=clientAuth\n")
    certs = tmp_path / "docker-certs"  # the layout docker-py reads from DOCKER_CERT_PATH
    certs.mkdir()
    shutil.copyfile(ca / "ca.pem", certs / "ca.pem")
    shutil.copyfile(ca / "client.pem", certs / "cert.pem")
    shutil.copyfile(ca / "client-key.pem", certs / "key.pem")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(ca / "server.pem", ca / "server-key.pem")
    context.load_verify_locations(ca / "ca.pem")
    context.verify_mode = ssl.CERT_REQUIRED
    stand_in = FakeEngine({("GET", "/_ping"): (200, b"OK")})
    server = _TCPServer(("127.0.0.1", 0), stand_in.handler())
    server.socket = context.wrap_socket(server.socket, server_side=True)
    with serving(server):
        yield stand_in, server.server_address[1], certs


def test_tcp_with_docker_tls_verify_uses_the_cert_path(
    tls_engine: tuple[FakeEngine, int, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    stand_in, port, certs = tls_engine
    monkeypatch.setenv("DOCKER_TLS_VERIFY", "1")
    monkeypatch.setenv("DOCKER_CERT_PATH", str(certs))
    Engine(f"tcp://127.0.0.1:{port}").ping()
    assert [s.path for s in stand_in.seen] == ["/_ping"]


def test_tls_with_another_ca_fails_verification_not_as_unreachable(
    tls_engine: tuple[FakeEngine, int, Path], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    _, port, certs = tls_engine
    other = tmp_path / "other-ca"
    _make_ca(other)
    shutil.copyfile(other / "ca.pem", certs / "ca.pem")
    monkeypatch.setenv("DOCKER_TLS_VERIFY", "1")
    monkeypatch.setenv("DOCKER_CERT_PATH", str(certs))
    with pytest.raises(EngineError, match="CERTIFICATE_VERIFY_FAILED") as caught:
        Engine(f"tcp://127.0.0.1:{port}").ping()
    assert not isinstance(caught.value, EngineUnreachable)


# --- the wire format ----------------------------------------------------------------------------


def _context(root: Path) -> Path:
    """A build context with bytecode that must not be sent."""
    root.mkdir()
    (root / "Dockerfile").write_text("FROM scratch\n")
    (root / "pkg").mkdir()
    (root / "pkg" / "mod.py").write_text("x = 1\n")
    (root / "pkg" / "mod.pyc").write_bytes(b"bytecode")
    (root / "pkg" / "__pycache__").mkdir()
    (root / "pkg" / "__pycache__" / "mod.cpython-311.pyc").write_bytes(b"bytecode")
    (root / "__pycache__").mkdir()
    (root / "run.sh").write_text("#!/bin/sh\n")
    (root / "run.sh").chmod(0o755)
    return root


def _tar_names(data: bytes) -> list[tarfile.TarInfo]:
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        return tar.getmembers()


def test_the_context_tar_is_sorted_owned_by_root_dated_zero_and_skips_bytecode(
    tmp_path: Path,
) -> None:
    context = _context(tmp_path / "context")
    first = io.BytesIO()
    write_context_tar(context, first)
    os.utime(context / "pkg" / "mod.py", (1_000_000, 1_000_000))
    second = io.BytesIO()
    write_context_tar(context, second)
    assert first.getvalue() == second.getvalue()
    members = _tar_names(first.getvalue())
    assert [m.name for m in members] == ["Dockerfile", "pkg", "pkg/mod.py", "run.sh"]
    assert {(m.mtime, m.uid, m.gid, m.uname, m.gname) for m in members} == {(0, 0, 0, "", "")}
    assert members[-1].mode & 0o111  # the executable bit survives


def test_build_sends_the_context_and_options_and_follows_a_split_stream(
    fake: tuple[FakeEngine, Engine], tmp_path: Path
) -> None:
    stand_in, client = fake
    stand_in.routes[("POST", "/build")] = (
        200,
        stream(
            {"stream": "STEP 1/2: FROM base\n"},
            {"stream": "partial "},
            {"stream": "line é\n\n"},
            {"aux": {"ID": IMAGE_ID}},
            {"stream": "no newline at the end"},
        ),
    )
    lines: list[str] = []
    image_id = client.build(
        _context(tmp_path / "context"),
        tag="localhost/kit/x:1",
        dockerfile="Dockerfile.package",
        target="runtime",
        labels={"dev.modelport.test": "1"},
        buildargs={"PIP_INDEX_URL": "http://127.0.0.1:1/simple"},
        on_output=lines.append,
    )
    assert image_id == IMAGE_ID
    assert lines == ["STEP 1/2: FROM base", "partial line é", "no newline at the end"]
    (request,) = stand_in.seen
    assert request.method == "POST"
    assert request.raw_path == "/v1.41/build"
    assert request.query == {
        "t": "localhost/kit/x:1",
        "dockerfile": "Dockerfile.package",
        "target": "runtime",
        "labels": '{"dev.modelport.test": "1"}',
        "buildargs": '{"PIP_INDEX_URL": "http://127.0.0.1:1/simple"}',
        "rm": "1",
        "forcerm": "1",
    }
    assert request.headers["Content-Type"] == "application/x-tar"
    assert [m.name for m in _tar_names(request.body)] == [
        "Dockerfile",
        "pkg",
        "pkg/mod.py",
        "run.sh",
    ]


def test_build_without_an_id_in_the_stream_inspects_the_tag(
    fake: tuple[FakeEngine, Engine], tmp_path: Path
) -> None:
    stand_in, client = fake
    stand_in.routes[("POST", "/build")] = (200, stream({"stream": "Successfully built 1\n"}))
    stand_in.routes[("GET", "/images/localhost/kit/x:1/json")] = (200, _json({"Id": IMAGE_ID}))
    assert client.build(_context(tmp_path / "c"), tag="localhost/kit/x:1") == IMAGE_ID
    assert "target" not in stand_in.seen[0].query
    assert "labels" not in stand_in.seen[0].query


def test_a_build_error_carries_the_last_fifteen_lines(
    fake: tuple[FakeEngine, Engine], tmp_path: Path
) -> None:
    stand_in, client = fake
    lines = [{"stream": f"output line {i}\n"} for i in range(20)]
    failure = {"errorDetail": {"message": "exit status 3"}, "error": "exit status 3"}
    stand_in.routes[("POST", "/build")] = (200, stream(*lines, failure))
    with pytest.raises(EngineError) as caught:
        client.build(_context(tmp_path / "c"), tag="localhost/kit/x:1")
    message = str(caught.value)
    assert message.startswith("exit status 3\n")
    assert "output line 19" in message
    assert "output line 5" in message
    assert "output line 4\n" not in message
    assert caught.value.status is None


def test_an_error_detail_alone_is_an_error(fake: tuple[FakeEngine, Engine], tmp_path: Path) -> None:
    stand_in, client = fake
    stand_in.routes[("POST", "/build")] = (200, stream({"errorDetail": {"message": "no space"}}))
    with pytest.raises(EngineError, match="no space"):
        client.build(_context(tmp_path / "c"), tag="localhost/kit/x:1")


def test_http_errors_carry_the_status_and_the_engine_message(
    fake: tuple[FakeEngine, Engine],
) -> None:
    stand_in, client = fake
    stand_in.routes[("POST", "/images/x/tag")] = (500, _json({"message": "disk on fire"}))
    stand_in.routes[("DELETE", "/images/busy")] = (409, b"image is in use\n")
    with pytest.raises(EngineError) as caught:
        client.tag("x", "localhost/y", "2")
    assert (caught.value.status, str(caught.value), caught.value.message) == (
        500,
        "disk on fire",
        "disk on fire",
    )
    assert stand_in.seen[-1].query == {"repo": "localhost/y", "tag": "2"}
    with pytest.raises(EngineError) as caught:
        client.remove_image("busy", force=True)
    assert (caught.value.status, str(caught.value)) == (409, "image is in use")
    assert stand_in.seen[-1].query == {"force": "1"}


def test_absent_images_are_none_and_removing_them_is_false(
    fake: tuple[FakeEngine, Engine],
) -> None:
    stand_in, client = fake
    assert client.image("localhost/missing:1") is None
    assert client.remove_image("sha256:" + "0" * 64) is False
    assert stand_in.seen[0].raw_path == "/v1.41/images/localhost/missing:1/json"


def test_listings_send_filters_as_json(fake: tuple[FakeEngine, Engine]) -> None:
    stand_in, client = fake
    stand_in.routes[("GET", "/images/json")] = (200, _json([{"Id": IMAGE_ID}]))
    stand_in.routes[("GET", "/containers/json")] = (200, _json([]))
    assert client.images(filters={"label": ["a=b", "c"]}) == [{"Id": IMAGE_ID}]
    assert client.containers(filters={"ancestor": [IMAGE_ID]}) == []
    assert client.containers(all=False) == []
    assert [s.query for s in stand_in.seen] == [
        {"filters": '{"label": ["a=b", "c"]}'},
        {"all": "1", "filters": json.dumps({"ancestor": [IMAGE_ID]})},
        {"all": "0"},
    ]


def test_push_sends_the_auth_header_and_reads_the_digest_from_aux(
    fake: tuple[FakeEngine, Engine],
) -> None:
    stand_in, client = fake
    stand_in.routes[("POST", "/images/reg.example:5000/team/m/push")] = (
        200,
        stream({"status": "Pushing"}, {"aux": {"Tag": "1", "Digest": DIGEST, "Size": 1}}),
    )
    assert client.push("reg.example:5000/team/m:1", auth_header="e30=") == DIGEST
    (request,) = stand_in.seen
    assert request.query == {"tag": "1"}
    assert request.headers["X-Registry-Auth"] == "e30="


def test_push_reads_podmans_digest_from_its_status_line(fake: tuple[FakeEngine, Engine]) -> None:
    stand_in, client = fake
    stand_in.routes[("POST", "/images/reg.example/m/push")] = (
        200,
        stream({"status": "Copying blob"}, {"status": f"latest: digest: {DIGEST} size: 581"}),
    )
    lines: list[str] = []
    assert client.push("reg.example/m", on_output=lines.append) == DIGEST
    assert stand_in.seen[0].query == {"tag": "latest"}
    assert "X-Registry-Auth" not in stand_in.seen[0].headers
    assert lines[0] == "Copying blob"


def test_a_push_error_in_the_stream_is_raised(fake: tuple[FakeEngine, Engine]) -> None:
    stand_in, client = fake
    stand_in.routes[("POST", "/images/reg.example/m/push")] = (
        200,
        stream({"status": "Pushing"}, {"error": "denied: requested access is denied"}),
    )
    with pytest.raises(EngineError, match="denied: requested access"):
        client.push("reg.example/m:1")


def test_a_stream_that_is_not_json_is_an_error(fake: tuple[FakeEngine, Engine]) -> None:
    stand_in, client = fake
    stand_in.routes[("POST", "/images/reg.example/m/push")] = (200, [b"<html>proxy</html>"])
    with pytest.raises(EngineError, match="not JSON"):
        client.push("reg.example/m:1")


# --- the real engine ------------------------------------------------------------------------------


def _dockerfile(tmp_path: Path, text: str) -> Path:
    directory = tmp_path / "context"
    directory.mkdir()
    (directory / "Dockerfile").write_text(text)
    return directory


@pytest.mark.slow
def test_real_engine_builds_tags_lists_and_removes(
    real: tuple[Engine, str], tmp_path: Path
) -> None:
    client, base = real
    unique = uuid.uuid4().hex[:12]
    context = _dockerfile(
        tmp_path,
        f'FROM {base} AS first\nARG WORD=nothing\nRUN echo "said: $WORD"\n'
        f"FROM {base} AS second\nRUN echo never-built\n",
    )
    lines: list[str] = []
    ref = f"localhost/modelport-test/kit-engine:{unique}"
    labels = run_labels({"kit-engine-test": unique})
    image_id = client.build(
        context,
        tag=ref,
        target="first",
        labels=labels,
        buildargs={"WORD": unique},
        on_output=lines.append,
    )
    assert f"said: {unique}" in lines
    assert not any("never-built" in line for line in lines)
    found = client.image(ref)
    assert found is not None
    assert found["Id"] == image_id
    assert {k: found["Config"]["Labels"][k] for k in labels} == labels
    listed = client.images(filters={"label": [f"kit-engine-test={unique}"]})
    assert [i["Id"] for i in listed] == [image_id]
    client.tag(image_id, "localhost/modelport-test/kit-engine", f"{unique}-again")
    again = client.image(f"localhost/modelport-test/kit-engine:{unique}-again")
    assert again is not None
    assert again["Id"] == image_id
    assert client.containers(filters={"ancestor": [image_id]}) == []
    assert client.remove_image(image_id, force=True) is True
    assert client.image(ref) is None
    assert client.remove_image(image_id) is False


@pytest.mark.slow
def test_real_engine_build_error_names_the_failing_output(
    real: tuple[Engine, str], tmp_path: Path
) -> None:
    client, base = real
    marker = f"kit-engine-failing-{uuid.uuid4().hex[:8]}"
    context = _dockerfile(tmp_path, f"FROM {base}\nRUN echo {marker} && exit 3\n")
    with pytest.raises(EngineError) as caught:
        client.build(context, tag=f"localhost/modelport-test/{marker}:1", labels=run_labels())
    assert marker in str(caught.value)
    assert client.image(f"localhost/modelport-test/{marker}:1") is None


@pytest.mark.slow
def test_real_engine_http_errors(real: tuple[Engine, str]) -> None:
    client, _ = real
    client.ping()
    assert client.image("localhost/modelport-test/no-such-image:1") is None
    with pytest.raises(EngineError) as caught:
        client.tag("localhost/modelport-test/no-such-image:1", "localhost/x", "1")
    assert caught.value.status == 404
    assert "no-such-image" in str(caught.value)


def registry_digest(registry: str, repository: str, tag: str) -> str:
    """The registry's ``Docker-Content-Digest`` for ``repository:tag`` (plain HTTP)."""
    host, _, port = registry.partition(":")
    connection = http.client.HTTPConnection(host, int(port or 80), timeout=10)
    try:
        accept = (
            "application/vnd.oci.image.manifest.v1+json, "
            "application/vnd.docker.distribution.manifest.v2+json"
        )
        connection.request("HEAD", f"/v2/{repository}/manifests/{tag}", headers={"Accept": accept})
        response = connection.getresponse()
        response.read()
        assert response.status == 200, response.status
        return str(response.getheader("Docker-Content-Digest"))
    finally:
        connection.close()


def delete_manifest(registry: str, repository: str, digest: str) -> None:
    """Delete a pushed manifest (the test registry allows deletes)."""
    host, _, port = registry.partition(":")
    connection = http.client.HTTPConnection(host, int(port or 80), timeout=10)
    with contextlib.suppress(OSError):
        connection.request("DELETE", f"/v2/{repository}/manifests/{digest}")
        connection.getresponse().read()
    connection.close()


@pytest.mark.slow
def test_real_engine_pushes_and_reports_the_registrys_digest(
    real: tuple[Engine, str], tmp_path: Path
) -> None:
    client, base = real
    registry = os.environ.get(REGISTRY_ENV)
    if not registry:
        unavailable(f"{REGISTRY_ENV} is not set")
    assert registry.startswith("127.0.0.1:")  # nothing leaves this machine
    unique = uuid.uuid4().hex[:12]
    context = _dockerfile(tmp_path, f"FROM {base}\nLABEL kit-engine-push={unique}\n")
    repository = "modelport-test/kit-engine"
    ref = f"{registry}/{repository}:{unique}"
    labels = run_labels({"kit-engine-test": unique})
    image_id = client.build(context, tag=ref, labels=labels)
    try:
        lines: list[str] = []
        digest = client.push(ref, on_output=lines.append)
        assert digest is not None, lines
        assert digest == registry_digest(registry, repository, unique)
        delete_manifest(registry, repository, digest)
    finally:
        client.remove_image(image_id, force=True)
