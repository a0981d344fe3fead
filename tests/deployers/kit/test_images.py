"""Serving images on any engine: the runtime cache, the package image, push, remove, credentials.

The fast tests check references, the ``X-Registry-Auth`` encoding against docker-py's own
(``docker.auth.encode_header``, installed as the oracle), reading the docker CLI's config and its
credential helpers, and the error map. The slow ones build for real on podman: one package image
per module (its runtime image is reused by every later build), a second package on the same
runtime, a push to the registry on 127.0.0.1:5000, failing builds, and removal rules.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import os
import re
import shutil
import stat
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from docker_fixtures import REGISTRY_ENV, RUN_ID, RUN_LABEL, TEST_LABEL, run_labels, unavailable
from test_engine import (
    FakeEngine,
    UnixServer,
    delete_manifest,
    registry_digest,
    serving,
    stream,
)

from modelport.deployers.kit import images
from modelport.deployers.kit.engine import Engine, EngineError, EngineUnreachable
from modelport.deployers.kit.images import (
    ENGINE_ERRORS,
    LABEL_RUNTIME,
    RUNTIME_REPOSITORY,
    BuiltImage,
    PushedImage,
    RegistryAuth,
    build_package_image,
    push_image,
    registry_of,
    remove_image,
    runtime_key,
    split_reference,
)
from modelport.deployers.kit.progress import Progress, ProgressEvent
from modelport.errors import (
    ConflictError,
    DeploymentError,
    ResourceNotFound,
    TargetUnavailableError,
    UsageError,
)
from modelport.image import LABEL_DIGEST, image_labels, write_context
from modelport.image.dockerfile import package_stage
from modelport.model_format.package import Package, load
from modelport.plugins.testing import make_test_package
from process_helpers import imports_after

# One worker builds and runs every image (when these tests run on several workers): the session's
# images are built once, and two podman builds never race for the same layers.
pytestmark = pytest.mark.xdist_group("containers")


DIGEST = "sha256:" + "d" * 64

#: Every image this module builds carries it; the `real` fixture removes them at the end.
CLEANUP_LABEL = "kit-images-test"


# --- references ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ref", "expected"),
    [
        ("reg:5000/team/m:1", ("reg:5000/team/m", "1")),
        ("reg:5000/team/m", ("reg:5000/team/m", "latest")),
        ("team/m:1.2-rc", ("team/m", "1.2-rc")),
        ("m", ("m", "latest")),
        ("localhost/m:latest", ("localhost/m", "latest")),
        (f"reg:5000/m@{DIGEST}", ("reg:5000/m", DIGEST)),
        (f"reg:5000/m:1@{DIGEST}", ("reg:5000/m", DIGEST)),
        ("127.0.0.1:5000/x/y:1", ("127.0.0.1:5000/x/y", "1")),
    ],
)
def test_split_reference(ref: str, expected: tuple[str, str]) -> None:
    assert split_reference(ref) == expected


@pytest.mark.parametrize(
    ("ref", "registry"),
    [
        ("127.0.0.1:5000/x/y:1", "127.0.0.1:5000"),
        ("team/m:1", "docker.io"),
        ("ubuntu", "docker.io"),
        ("localhost/m:1", "localhost"),
        ("localhost:5000/m", "localhost:5000"),
        ("123.dkr.ecr.eu-west-1.amazonaws.com/m:1", "123.dkr.ecr.eu-west-1.amazonaws.com"),
        ("index.docker.io/library/ubuntu", "docker.io"),
        (f"ghcr.io/org/m@{DIGEST}", "ghcr.io"),
    ],
)
def test_registry_of(ref: str, registry: str) -> None:
    assert registry_of(ref) == registry


def test_a_pushed_image_is_pinned_by_its_digest() -> None:
    assert PushedImage("reg:5000/team/m:1", DIGEST).pinned == f"reg:5000/team/m@{DIGEST}"
    assert PushedImage("reg:5000/team/m:1", None).pinned == "reg:5000/team/m:1"


# --- credentials ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("auth", "document"),
    [
        (
            RegistryAuth("reg:5000", username="ci", password="p@ss:wörd"),
            {"username": "ci", "password": "p@ss:wörd", "serveraddress": "reg:5000"},
        ),
        (
            RegistryAuth("ghcr.io", identity_token="tok"),
            {"identitytoken": "tok", "serveraddress": "ghcr.io"},
        ),
    ],
)
def test_the_auth_header_is_what_docker_py_sends(
    auth: RegistryAuth, document: dict[str, str]
) -> None:
    docker_auth = pytest.importorskip("docker.auth")
    assert auth.header() == docker_auth.encode_header(document).decode("ascii")
    assert json.loads(base64.urlsafe_b64decode(auth.header())) == document


def test_credentials_never_show_in_repr() -> None:
    assert "s3cret" not in repr(RegistryAuth("reg", username="u", password="s3cret"))
    assert "t0ken" not in repr(RegistryAuth("reg", identity_token="t0ken"))


def _config(tmp_path: Path, document: Any) -> Path:
    path = tmp_path / "docker" / "config.json"
    path.parent.mkdir(exist_ok=True)
    path.write_text(document if isinstance(document, str) else json.dumps(document))
    return path


def _basic(user: str, password: str) -> str:
    return base64.b64encode(f"{user}:{password}".encode()).decode()


def test_auths_entries_match_with_or_without_scheme_and_path(tmp_path: Path) -> None:
    config = _config(
        tmp_path,
        {
            "auths": {
                "https://127.0.0.1:5000/v1/": {"auth": _basic("ci", "pw:with:colons")},
                "https://index.docker.io/v1/": {"auth": _basic("hub", "hubpw")},
                "ghcr.io": {"identitytoken": "oauth-token"},
                "empty.example": {},
            }
        },
    )
    local = RegistryAuth.from_docker_config("127.0.0.1:5000", config)
    assert local == RegistryAuth("127.0.0.1:5000", username="ci", password="pw:with:colons")
    hub = RegistryAuth.from_docker_config("docker.io", config)
    assert hub == RegistryAuth("docker.io", username="hub", password="hubpw")
    assert RegistryAuth.from_docker_config("ghcr.io", config) == RegistryAuth(
        "ghcr.io", identity_token="oauth-token"
    )
    assert RegistryAuth.from_docker_config("empty.example", config) is None
    assert RegistryAuth.from_docker_config("other.example", config) is None
    # docker-py reads the same file to the same credentials.
    docker_auth = pytest.importorskip("docker.auth")
    found = docker_auth.load_config(str(config)).resolve_authconfig("127.0.0.1:5000")
    assert (found["username"], found["password"]) == ("ci", "pw:with:colons")


def test_the_default_config_is_docker_config_then_home(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = _config(tmp_path, {"auths": {"reg.example": {"auth": _basic("a", "b")}}})
    monkeypatch.setenv("DOCKER_CONFIG", str(config.parent))
    assert RegistryAuth.from_docker_config("reg.example") == RegistryAuth(
        "reg.example", username="a", password="b"
    )
    monkeypatch.delenv("DOCKER_CONFIG")
    monkeypatch.setenv("HOME", str(tmp_path / "nobody"))
    assert RegistryAuth.from_docker_config("reg.example") is None  # no file: no credentials


@pytest.mark.parametrize(
    "document",
    [
        "{not json",
        "[]",
        {"auths": ["reg.example"]},
        {"auths": {"reg.example": "user:pass"}},
        {"credHelpers": ["fake"]},
        {"auths": {"reg.example": {"auth": "bm8tY29sb24="}}},  # base64 of "no-colon"
    ],
)
def test_a_malformed_config_is_a_usage_error_naming_the_file(tmp_path: Path, document: Any) -> None:
    config = _config(tmp_path, document)
    with pytest.raises(UsageError, match=re.escape(str(config))):
        RegistryAuth.from_docker_config("reg.example", config)


def _helper(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, body: str) -> Path:
    """An executable ``docker-credential-<name>`` on PATH; it logs its stdin to ``<name>.in``."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    script = bin_dir / f"docker-credential-{name}"
    log = tmp_path / f"{name}.in"
    script.write_text(f'#!/bin/sh\n[ "$1" = get ] || exit 9\ncat > "{log}"\n{body}\n')
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return log


def test_cred_helpers_are_asked_with_the_server_address_on_stdin(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = _helper(
        tmp_path, monkeypatch, "fake", """echo '{"Username": "robot", "Secret": "s3cret"}'"""
    )
    config = _config(
        tmp_path,
        {
            "credHelpers": {"reg.example:5000": "fake"},
            "auths": {"reg.example:5000": {"auth": _basic("not", "used")}},
        },
    )
    found = RegistryAuth.from_docker_config("reg.example:5000", config)
    assert found == RegistryAuth("reg.example:5000", username="robot", password="s3cret")
    assert log.read_text() == "reg.example:5000"


def test_a_token_from_a_creds_store_is_an_identity_token(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = _helper(
        tmp_path, monkeypatch, "store", """echo '{"Username": "<token>", "Secret": "refresh"}'"""
    )
    config = _config(tmp_path, {"credsStore": "store"})
    found = RegistryAuth.from_docker_config("docker.io", config)
    assert found == RegistryAuth("docker.io", identity_token="refresh")
    assert log.read_text() == "https://index.docker.io/v1/"  # the address the docker CLI uses


def test_a_helper_without_credentials_falls_back_to_auths(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _helper(
        tmp_path, monkeypatch, "empty", "echo 'credentials not found in native keychain'\nexit 1"
    )
    config = _config(
        tmp_path,
        {"credsStore": "empty", "auths": {"reg.example": {"auth": _basic("ci", "pw")}}},
    )
    assert RegistryAuth.from_docker_config("reg.example", config) == RegistryAuth(
        "reg.example", username="ci", password="pw"
    )
    assert RegistryAuth.from_docker_config("other.example", config) is None


def test_a_missing_or_failing_helper_is_a_usage_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _helper(tmp_path, monkeypatch, "broken", "echo 'keychain locked' >&2\nexit 2")
    config = _config(tmp_path, {"credHelpers": {"a.example": "broken", "b.example": "absent"}})
    with pytest.raises(UsageError, match="keychain locked"):
        RegistryAuth.from_docker_config("a.example", config)
    with pytest.raises(UsageError, match="docker-credential-absent"):
        RegistryAuth.from_docker_config("b.example", config)


@pytest.fixture
def stand_in() -> Iterator[tuple[FakeEngine, Engine]]:
    """The recording stand-in of test_engine.py on a unix socket, and a client for it."""
    directory = tempfile.mkdtemp(prefix="kit-images-")
    fake = FakeEngine()
    path = os.path.join(directory, "engine.sock")
    try:
        with serving(UnixServer(path, fake.handler())), Engine(f"unix://{path}") as client:
            yield fake, client
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def _pushes(fake: FakeEngine) -> None:
    fake.routes[("POST", "/images/reg.example:5000/team/m/push")] = (
        200,
        stream({"status": f"1: digest: {DIGEST} size: 581"}),
    )


def test_push_image_sends_the_given_credentials(
    stand_in: tuple[FakeEngine, Engine], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake, client = stand_in
    _pushes(fake)
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path))  # no config: nothing else to find
    auth = RegistryAuth("reg.example:5000", username="ci", password="pw")
    pushed = push_image(client, "reg.example:5000/team/m:1", auth=auth)
    assert pushed == PushedImage("reg.example:5000/team/m:1", DIGEST)
    assert fake.seen[0].headers["X-Registry-Auth"] == auth.header()
    assert push_image(client, "reg.example:5000/team/m:1").digest == DIGEST
    assert "X-Registry-Auth" not in fake.seen[1].headers


def test_push_image_reads_the_docker_config_by_default(
    stand_in: tuple[FakeEngine, Engine], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake, client = stand_in
    _pushes(fake)
    _config(tmp_path, {"auths": {"reg.example:5000": {"auth": _basic("robot", "pw")}}})
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "docker"))
    push_image(client, "reg.example:5000/team/m:1")
    header = fake.seen[0].headers["X-Registry-Auth"]
    assert header == RegistryAuth("reg.example:5000", username="robot", password="pw").header()


def test_engine_failures_while_pushing_are_modelport_errors(
    stand_in: tuple[FakeEngine, Engine], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake, client = stand_in
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path))
    fake.routes[("POST", "/images/reg.example/m/push")] = (200, stream({"error": "denied"}))
    with pytest.raises(DeploymentError, match=r"^pushing reg\.example/m:1 failed.*denied"):
        push_image(client, "reg.example/m:1")
    with pytest.raises(ResourceNotFound, match="no such route"):
        push_image(client, "reg.example/other:1")  # the stand-in answers 404


# --- errors and imports ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (EngineError("no such image", status=404), ResourceNotFound),
        (EngineError("in use", status=409), ConflictError),
        (EngineError("broken", status=500), DeploymentError),
        (EngineError("build failed"), DeploymentError),
        (EngineUnreachable("nothing answers"), TargetUnavailableError),
    ],
)
def test_engine_errors_become_modelport_errors(
    error: EngineError, expected: type[DeploymentError]
) -> None:
    translated = ENGINE_ERRORS.translate(error, "building the image")
    assert type(translated) is expected
    assert str(error) in str(translated)
    assert translated.__cause__ is error
    if expected is TargetUnavailableError:
        assert "podman system service" in (translated.hint or "")
    assert ENGINE_ERRORS.translate(ValueError("not ours"), "x") is None


def test_the_modules_import_no_sdk() -> None:
    code = "import modelport.deployers.kit.engine, modelport.deployers.kit.images"
    # "google" alone is the empty namespace module google-cloud-aiplatform's .pth file makes.
    heavy = ("docker", "requests", "urllib3", "boto3", "botocore", "azure", "google.auth")
    heavy += ("google.cloud.aiplatform", "kubernetes")
    assert imports_after(code, heavy).imported == set()


def test_image_labels_carry_the_packages_provenance_when_known(tmp_path: Path) -> None:
    with load(make_test_package(tmp_path / "p.mport")) as package:
        manifest = package.manifest
        plain = image_labels(manifest, "base:1", package.provenance)
        assert plain == image_labels(manifest, "base:1")  # nothing known: nothing more
        assert plain[LABEL_DIGEST] == package.digest
        fingerprint, oci_digest = "sha256:" + "ab" * 32, "sha256:" + "ef" * 32
        provenance = dataclasses.replace(
            package.provenance, signature_fingerprint=fingerprint, oci_digest=oci_digest
        )
        found = image_labels(manifest, "base:1", provenance)
        assert found == {
            **plain,
            "dev.modelport.signature.fingerprint": fingerprint,
            "dev.modelport.oci.digest": oci_digest,
        }
        stage = package_stage(manifest, from_image="rt", base_image="base:1", provenance=provenance)
        assert f'dev.modelport.oci.digest="{oci_digest}"' in stage


# --- real builds --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Built:
    """The module's package image, and what the build reported."""

    image: BuiltImage
    package: Package
    events: list[ProgressEvent]


def _build(
    client: Engine, base: str, package: Package, ref: str, events: list[ProgressEvent]
) -> BuiltImage:
    return build_package_image(
        client,
        package,
        ref=ref,
        base_image=base,
        pip_cert=Path(os.environ["PIP_CERT"]) if os.environ.get("PIP_CERT") else None,
        labels=run_labels({"kit-images-test": "1"}),
        progress=Progress(events.append),
    )


@pytest.fixture(scope="module")
def packages(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[float, Package]]:
    root = tmp_path_factory.mktemp("kit-images")
    loaded = {
        scale: load(make_test_package(root / f"scale-{scale:g}.mport", scale=scale))
        for scale in (1.0, 2.0)
    }
    yield loaded
    for package in loaded.values():
        package.close()


@pytest.fixture(scope="module")
def built(real: tuple[Engine, str], packages: dict[float, Package]) -> Iterator[Built]:
    client, base = real
    events: list[ProgressEvent] = []
    ref = f"localhost/modelport-test/kit-images:{uuid.uuid4().hex[:12]}"
    image = _build(client, base, packages[1.0], ref, events)
    yield Built(image, packages[1.0], events)
    client.remove_image(image.id, force=True)


@pytest.mark.slow
def test_the_package_image_is_built_on_the_runtime_image(
    real: tuple[Engine, str], built: Built
) -> None:
    client, base = real
    image = built.image
    found = client.image(image.ref)
    assert found is not None
    assert found["Id"] == image.id
    labels = found["Config"]["Labels"]
    assert labels[LABEL_DIGEST] == built.package.digest == image.package_digest
    assert labels[TEST_LABEL] == "1"
    assert labels[RUN_LABEL] == RUN_ID
    assert image.base_image == base
    key = image.runtime_ref.removeprefix(f"{RUNTIME_REPOSITORY}:")
    runtime = client.image(image.runtime_ref)
    assert runtime is not None
    assert runtime["Config"]["Labels"][LABEL_RUNTIME] == key
    messages = [event.message for event in built.events]
    first = (
        f"reusing the runtime image {image.runtime_ref}"
        if image.runtime_reused
        else f"building the runtime image {image.runtime_ref} on {base}"
    )
    assert first in messages
    assert any(m.startswith("image: STEP ") for m in messages), messages
    assert all(len(m) <= len("runtime image: ") + 120 for m in messages if "STEP " in m)


@pytest.mark.slow
def test_runtime_key_depends_on_the_runtime_only(
    real: tuple[Engine, str], built: Built, packages: dict[float, Package], tmp_path: Path
) -> None:
    client, base = real
    pip_cert = os.environ.get("PIP_CERT") or None
    one = write_context(packages[1.0], tmp_path / "one", base_image=base, pip_cert=pip_cert)
    two = write_context(packages[2.0], tmp_path / "two", base_image=base, pip_cert=pip_cert)
    assert runtime_key(client, one) == runtime_key(client, two)
    assert built.image.runtime_ref == f"{RUNTIME_REPOSITORY}:{runtime_key(client, one)}"
    other = write_context(packages[1.0], tmp_path / "three", base_image=base, index_url="http://x")
    assert runtime_key(client, other) != runtime_key(client, one)


@pytest.mark.slow
def test_a_second_package_reuses_the_runtime_image(
    real: tuple[Engine, str], built: Built, packages: dict[float, Package]
) -> None:
    client, base = real
    events: list[ProgressEvent] = []
    ref = f"localhost/modelport-test/kit-images:{uuid.uuid4().hex[:12]}"
    second = _build(client, base, packages[2.0], ref, events)
    try:
        assert second.runtime_reused is True
        assert second.runtime_ref == built.image.runtime_ref
        assert second.id != built.image.id
        assert second.package_digest == packages[2.0].digest != built.image.package_digest
        messages = [event.message for event in events]
        assert f"reusing the runtime image {second.runtime_ref}" in messages
        assert not any(m.startswith("runtime image: ") for m in messages)
    finally:
        client.remove_image(second.id, force=True)


@pytest.mark.slow
def test_push_reports_the_digest_the_registry_holds(
    real: tuple[Engine, str], built: Built, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    client, _ = real
    registry = os.environ.get(REGISTRY_ENV)
    if not registry:
        unavailable(f"{REGISTRY_ENV} is not set")
    assert registry.startswith("127.0.0.1:")  # nothing leaves this machine
    repository, tag = "modelport-test/kit-images", uuid.uuid4().hex[:12]
    client.tag(built.image.id, f"{registry}/{repository}", tag)
    ref = f"{registry}/{repository}:{tag}"
    # The test registry needs no credentials: a Docker config without any.
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path))
    events: list[ProgressEvent] = []
    pushed = push_image(client, ref, progress=Progress(events.append))
    try:
        assert pushed.ref == ref
        assert pushed.digest is not None
        assert pushed.digest == registry_digest(registry, repository, tag)
        assert pushed.pinned == f"{registry}/{repository}@{pushed.digest}"
        assert [e.message for e in events] == [f"pushing {ref}"]
    finally:
        if pushed.digest:
            delete_manifest(registry, repository, pushed.digest)


@pytest.mark.slow
def test_a_failing_package_stage_is_a_deployment_error_with_its_output(
    real: tuple[Engine, str],
    built: Built,
    packages: dict[float, Package],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    client, base = real
    marker = f"kit-images-failing-{uuid.uuid4().hex[:8]}"

    def failing_stage(
        manifest: Any, *, from_image: str, base_image: str, trust: str = "off"
    ) -> str:
        return f"FROM {from_image}\nRUN echo {marker} && exit 3\n"

    monkeypatch.setattr(images, "package_stage", failing_stage)
    ref = f"localhost/modelport-test/{marker}:1"
    with pytest.raises(DeploymentError) as caught:
        _build(client, base, packages[1.0], ref, [])
    message = str(caught.value)
    assert message.startswith("building the image failed")
    assert marker in message
    assert client.image(ref) is None


@pytest.mark.slow
def test_a_failing_runtime_build_says_so(
    real: tuple[Engine, str], packages: dict[float, Package]
) -> None:
    client, _ = real
    # A base image that is not there: the engine tries to pull it from localhost:443 and fails.
    missing = f"localhost/modelport-test/no-such-base:{uuid.uuid4().hex[:8]}"
    with pytest.raises(DeploymentError) as caught:
        _build(client, missing, packages[1.0], "localhost/modelport-test/never:1", [])
    assert str(caught.value).startswith("building the runtime image failed")
    assert missing in str(caught.value)


@pytest.mark.slow
def test_remove_image_leaves_images_in_use_or_not_ours(
    real: tuple[Engine, str], tmp_path: Path
) -> None:
    client, base = real
    unique = uuid.uuid4().hex[:12]
    context = tmp_path / "context"
    context.mkdir()
    (context / "Dockerfile").write_text(f"FROM {base}\nLABEL kit-images-remove={unique}\n")
    labels = run_labels({"kit-images-test": "1", "dev.modelport.deployment": unique})
    image_id = client.build(context, tag=f"localhost/modelport-test/kit-rm:{unique}", labels=labels)
    docker = pytest.importorskip("docker")
    # The Engine client creates no containers: docker-py (the test oracle) makes one.
    docker_py = docker.DockerClient(base_url=client.base_url)
    try:
        container = docker_py.containers.create(image_id, labels=run_labels())
        try:
            # A created (never started) container is enough to keep it.
            assert remove_image(client, image_id) is False
        finally:
            container.remove(force=True)
        assert remove_image(client, image_id, labels={"dev.modelport.deployment": "other"}) is False
        ref = f"localhost/modelport-test/kit-rm:{unique}"
        assert remove_image(client, ref, labels={"dev.modelport.deployment": unique}) is True
        assert client.image(image_id) is None
        assert remove_image(client, image_id) is False
        assert remove_image(client, None) is False
    finally:
        client.remove_image(image_id, force=True)
        docker_py.close()
