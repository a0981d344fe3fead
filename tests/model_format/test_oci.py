"""Packages in OCI registries: push and pull against real registries, read by real OCI clients.

The registry is Debian's ``docker-registry`` (distribution 2.8, no referrers API): the one CI
runs on ``$MODELPORT_TEST_REGISTRY`` (127.0.0.1:5000), or one started here, and an
htpasswd-protected one started here (:mod:`oci_servers`). What we push is read back by skopeo
and by the ``oras`` Python SDK; a ModelPack artifact the ``oras`` SDK pushes is pulled by us.
A proxy in front of a registry serves a layer with other bytes, demands Bearer tokens, and sends
blob downloads to another host. Every server is on 127.0.0.1.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import stat
import subprocess
import tarfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import modelport
from modelport.errors import (
    ArchiveLimitError,
    IntegrityError,
    PackageError,
    SourceError,
    SourceNotFound,
    UsageError,
)
from modelport.model_format.limits import ArchiveLimits
from modelport.model_format.manifest import SIGNATURE_NAME, canonical_json
from modelport.model_format.package import open_package
from modelport.model_format.remote import oci
from modelport.model_format.remote.cache import PackageCache
from oci_servers import (
    RegistryServer,
    call,
    get_json,
    push_raw,
    put_blob,
    put_manifest,
    registry_available,
    registry_proxy,
    registry_server,
    sha256,
)

pytestmark = pytest.mark.skipif(not registry_available(), reason="docker-registry not installed")

SCHEMA = Path(__file__).resolve().parents[1] / "data" / "modelpack" / "config-schema.json"
PLAIN = {"insecure": True}
USER, PASSWORD = "alice", "correct-horse-battery"
MANIFEST_ACCEPT = oci.MANIFEST_MEDIA_TYPE


def _fresh(name: str) -> str:
    """A repository no earlier run used (the CI registry outlives test runs)."""
    return f"modelport-test/{uuid.uuid4().hex[:12]}/{name}"


# --- fixtures ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``HOST:PORT`` of a plain-HTTP registry: CI's, or one of our own."""
    given = os.environ.get("MODELPORT_TEST_REGISTRY")
    if given:
        yield given
        return
    with registry_server(tmp_path_factory.mktemp("registry")) as server:
        yield server.host


@pytest.fixture(scope="module")
def protected(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegistryServer]:
    """A registry that takes HTTP Basic credentials of one user (htpasswd, bcrypt)."""
    with registry_server(tmp_path_factory.mktemp("protected"), users={USER: PASSWORD}) as server:
        yield server


@dataclass(frozen=True)
class Medium:
    """A ~2 MiB package as an archive and as a directory (the same package)."""

    archive: Path
    directory: Path
    digest: str


@pytest.fixture(scope="module")
def medium(tmp_path_factory: pytest.TempPathFactory) -> Medium:
    """y = x @ W with W float32[1024, 512] (2 MiB of weights), with authors and a licence."""
    from onnx import TensorProto, helper, numpy_helper

    weights = np.random.default_rng(0).standard_normal((1024, 512)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "W"], ["y"])],
        "medium",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 1024])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 512])],
        [numpy_helper.from_array(weights, "W")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    root = tmp_path_factory.mktemp("medium")
    options: dict[str, Any] = {
        "name": "medium",
        "version": "2.0",
        "example": np.ones((1, 1024), dtype=np.float32),
        "metadata": {"authors": "Ada <ada@example.com>, Bob", "license": "Apache-2.0"},
        "created_at": "2025-01-02T03:04:05Z",
    }
    with modelport.pack(model, root / "medium.mport", **options) as package:
        digest = package.digest
    modelport.pack(model, root / "medium-dir", **options).close()
    return Medium(root / "medium.mport", root / "medium-dir", digest)


@dataclass(frozen=True)
class Pushed:
    """The medium package pushed to the plain registry."""

    host: str
    repo: str
    tag: str
    result: oci.PushResult

    @property
    def uri(self) -> str:
        return f"oci://{self.host}/{self.repo}:{self.tag}"


@pytest.fixture(scope="module")
def pushed(registry: str, medium: Medium) -> Pushed:
    repo = _fresh("medium")
    result = oci.push(medium.archive, f"oci://{registry}/{repo}:v2", insecure=True)
    return Pushed(registry, repo, "v2", result)


@pytest.fixture(autouse=True)
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private MODELPORT_HOME, and no credentials but the ones a test writes."""
    monkeypatch.setenv("MODELPORT_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("HOME", str(tmp_path / "user"))
    for name in (
        "DOCKER_CONFIG",
        "REGISTRY_AUTH_FILE",
        "XDG_RUNTIME_DIR",
        "MODELPORT_STORAGE_OPTIONS",
    ):
        monkeypatch.delenv(name, raising=False)
    return tmp_path / "home"


def _auth_json(path: Path, host: str, user: str = USER, password: str = PASSWORD) -> Path:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"auths": {host: {"auth": token}}}))
    return path


def _cache_is_empty(home: Path) -> bool:
    tmp = home / "cache" / "tmp"
    return PackageCache().entries() == [] and (not tmp.exists() or not any(tmp.iterdir()))


# --- push and pull ------------------------------------------------------------------------------


def test_a_pushed_package_pulls_back_byte_for_byte(
    pushed: Pushed, medium: Medium, home: Path
) -> None:
    assert pushed.result.uploaded_blobs == 4  # config, modelport.json, example.json, model.onnx
    assert pushed.result.package_digest == medium.digest
    path = modelport.locate(pushed.uri, storage_options=PLAIN)
    assert path.parent == home / "cache" / "objects"
    assert path.read_bytes() == medium.archive.read_bytes()  # the same reproducible archive
    (entry,) = PackageCache().entries()
    assert entry.digest == medium.digest
    assert entry.metadata["oci_digest"] == pushed.result.digest
    assert entry.metadata["oci_reference"] == f"{pushed.host}/{pushed.repo}@{pushed.result.digest}"
    with modelport.load(pushed.uri, storage_options=PLAIN) as package:
        assert package.predict(np.ones((1, 1024), dtype=np.float32))["y"].shape == (1, 512)
    # By digest too: the same cache entry.
    pinned = f"oci://{pushed.host}/{pushed.repo}@{pushed.result.digest}"
    assert modelport.locate(pinned, storage_options=PLAIN) == path


def test_pushing_again_gives_the_same_digest_and_uploads_nothing(
    pushed: Pushed, medium: Medium
) -> None:
    for source in (medium.archive, medium.directory):  # an archive and a directory: one artifact
        again = oci.push(source, pushed.uri, insecure=True)
        assert again.digest == pushed.result.digest
        assert (again.uploaded_blobs, again.uploaded_bytes) == (0, 0)
        assert again.skipped_blobs == pushed.result.uploaded_blobs
        assert again.manifest == pushed.result.manifest


def test_the_artifact_is_a_modelpack_one(pushed: Pushed, medium: Medium) -> None:
    import jsonschema

    raw, manifest = get_json(pushed.host, pushed.repo, pushed.tag, MANIFEST_ACCEPT)
    assert sha256(raw) == pushed.result.digest
    assert manifest["mediaType"] == "application/vnd.oci.image.manifest.v1+json"
    assert manifest["artifactType"] == "application/vnd.cncf.model.manifest.v1+json"
    assert manifest["config"]["mediaType"] == "application/vnd.cncf.model.config.v1+json"
    layers = {
        layer["annotations"]["org.cncf.model.filepath"]: layer for layer in manifest["layers"]
    }
    assert {path: layer["mediaType"] for path, layer in layers.items()} == {
        "modelport.json": "application/vnd.cncf.model.weight.config.v1.raw",
        "example.json": "application/vnd.cncf.model.dataset.v1.raw",
        "model.onnx": "application/vnd.cncf.model.weight.v1.raw",
    }
    with open_package(medium.directory) as opened:
        package_manifest = opened.manifest
    for path, layer in layers.items():
        assert layer["annotations"]["org.opencontainers.image.title"] == path
        metadata = json.loads(layer["annotations"]["org.cncf.model.file.metadata+json"])
        assert metadata == {
            "name": path,
            "mode": 0o644,
            "uid": 0,
            "gid": 0,
            "size": layer["size"],
            "mtime": "2025-01-02T03:04:05Z",
            "typeflag": 48,
        }
        if path != "modelport.json":
            assert layer["digest"] == package_manifest.files[path]  # a raw layer is the file
            assert layer["size"] == (medium.directory / path).stat().st_size
    assert layers["modelport.json"]["digest"] == sha256(package_manifest.to_json())
    annotations = manifest["annotations"]
    assert annotations["dev.modelport.package.digest"] == medium.digest
    # The annotation is the canonical manifest: its sha256 is the package digest.
    assert sha256(annotations["dev.modelport.manifest"].encode()) == medium.digest
    assert annotations["dev.modelport.manifest"].encode() == canonical_json(
        package_manifest.to_dict()
    )
    assert annotations["org.opencontainers.image.created"] == "2025-01-02T03:04:05Z"
    assert annotations["org.opencontainers.image.title"] == "medium"
    assert annotations["org.opencontainers.image.version"] == "2.0"

    digest = manifest["config"]["digest"]
    with call("GET", f"http://{pushed.host}/v2/{pushed.repo}/blobs/{digest}") as response:
        config_bytes = response.read()
    assert sha256(config_bytes) == digest
    config = json.loads(config_bytes)
    validator = jsonschema.Draft202012Validator(
        json.loads(SCHEMA.read_text()),
        format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER,
    )
    validator.validate(config)
    assert config == {
        "descriptor": {
            "name": "medium",
            "version": "2.0",
            "createdAt": "2025-01-02T03:04:05Z",
            "authors": ["Ada <ada@example.com>", "Bob"],
            "licenses": ["Apache-2.0"],
        },
        "config": {"format": "onnx", "paramSize": "524.3K"},  # 1024 * 512 weights
        "modelfs": {"type": "layers", "diffIds": [layer["digest"] for layer in manifest["layers"]]},
    }


def test_a_python_package_has_code_doc_and_dataset_layers(
    tmp_path: Path, python_model: Any
) -> None:
    readme = tmp_path / "README.md"
    readme.write_text("# A scaler\n")
    with modelport.pack(
        python_model.source,
        tmp_path / "py",
        example=python_model.example,
        artifacts=[python_model.artifact, readme],
    ) as package:
        artifact = oci.model_artifact(package.root, package.manifest)
        kinds = {
            layer["annotations"]["org.cncf.model.filepath"]: layer["mediaType"]
            for layer in artifact.manifest["layers"]
        }
        assert kinds == {
            "modelport.json": "application/vnd.cncf.model.weight.config.v1.raw",
            "code/scaler_model.py": "application/vnd.cncf.model.code.v1.raw",
            # A settings-like text file, as a tokenizer's vocabulary would be.
            "artifacts/factor.txt": "application/vnd.cncf.model.weight.config.v1.raw",
            "artifacts/README.md": "application/vnd.cncf.model.doc.v1.raw",
            "example.json": "application/vnd.cncf.model.dataset.v1.raw",
        }
        assert artifact.config["config"] == {"format": "python"}
        assert "createdAt" not in artifact.config["descriptor"]  # packed without a time
        # Nothing of the disk or the clock goes in: other file times, the same bytes.
        for path in package.root.rglob("*"):
            os.utime(path, (1e9, 1e9))
        again = oci.model_artifact(package.root, package.manifest)
        assert again.manifest_bytes == artifact.manifest_bytes
        assert again.digest == artifact.digest


def test_skopeo_reads_the_artifact_and_copies_its_layers(pushed: Pushed, tmp_path: Path) -> None:
    if shutil.which("skopeo") is None:
        pytest.skip("skopeo not installed")
    image = f"docker://{pushed.host}/{pushed.repo}:{pushed.tag}"
    raw = subprocess.run(
        ["skopeo", "inspect", "--raw", "--tls-verify=false", image],
        capture_output=True,
        check=True,
        timeout=60,
    ).stdout
    assert sha256(raw) == pushed.result.digest
    layout = tmp_path / "layout"
    subprocess.run(
        [
            "skopeo",
            "--insecure-policy",
            "copy",
            "--src-tls-verify=false",
            image,
            f"oci:{layout}:copied",
        ],
        capture_output=True,
        check=True,
        timeout=60,
    )
    manifest = json.loads(raw)
    for descriptor in [manifest["config"], *manifest["layers"]]:
        blob = layout / "blobs" / "sha256" / descriptor["digest"].removeprefix("sha256:")
        assert sha256(blob.read_bytes()) == descriptor["digest"]
    index = json.loads((layout / "index.json").read_text())
    assert index["manifests"][0]["digest"] == pushed.result.digest


def test_the_oras_sdk_pulls_the_files(pushed: Pushed, medium: Medium, tmp_path: Path) -> None:
    import oras.client

    client = oras.client.OrasClient(hostname=pushed.host, insecure=True)
    out = tmp_path / "oras"
    files = client.pull(target=f"{pushed.host}/{pushed.repo}:{pushed.tag}", outdir=str(out))
    assert sorted(Path(f).relative_to(out).as_posix() for f in files) == [
        "example.json",
        "model.onnx",
        "modelport.json",
    ]
    for name in ("example.json", "model.onnx", "modelport.json"):
        assert (out / name).read_bytes() == (medium.directory / name).read_bytes()
    # What oras wrote is the package itself.
    assert modelport.verify(out).manifest.digest == medium.digest


# --- failures -------------------------------------------------------------------------------------


def test_an_unknown_tag_or_repository_is_not_found(pushed: Pushed) -> None:
    with pytest.raises(SourceNotFound, match="no-such-tag") as info:
        modelport.locate(f"oci://{pushed.host}/{pushed.repo}:no-such-tag", storage_options=PLAIN)
    assert "not found" in str(info.value)
    with pytest.raises(SourceNotFound):
        modelport.locate(f"oci://{pushed.host}/{_fresh('nothing')}:v1", storage_options=PLAIN)
    assert PackageCache().entries() == []


def test_https_to_a_plain_registry_says_to_use_insecure(pushed: Pushed) -> None:
    with pytest.raises(SourceError, match="TLS") as info:
        modelport.locate(pushed.uri)
    assert "--insecure" in (info.value.hint or "")
    assert "insecure=true" in (info.value.hint or "")


@pytest.mark.parametrize(
    ("ref", "parts"),
    [
        ("oci://127.0.0.1:5000/a/b:v1", ("127.0.0.1:5000", "a/b", "v1", None)),
        ("oci://ghcr.io/org/model", ("ghcr.io", "org/model", None, None)),
        (f"oci://[::1]:5000/m@sha256:{'A' * 64}", ("[::1]:5000", "m", None, f"sha256:{'a' * 64}")),
        (
            f"oci://h.example/m_x-1.y:t@sha256:{'b' * 64}",
            ("h.example", "m_x-1.y", "t", f"sha256:{'b' * 64}"),
        ),
    ],
)
def test_oci_references_are_taken_apart(ref: str, parts: tuple[Any, ...]) -> None:
    target = oci.oci_reference(ref)
    assert (target.registry, target.repository, target.tag, target.digest) == parts
    assert target.reference == (parts[3] or parts[2] or "latest")


@pytest.mark.parametrize(
    "ref",
    [
        "oci://127.0.0.1:5000",
        "oci://127.0.0.1:5000/Upper",
        "oci://h/x:bad tag",
        "oci://h/x@sha256:12",
    ],
)
def test_a_malformed_reference_is_a_usage_error(ref: str) -> None:
    with pytest.raises(UsageError) as info:
        modelport.locate(ref)
    assert "oci://" in str(info.value) + (info.value.hint or "")


def test_push_refuses_a_digest_and_unknown_options(pushed: Pushed, medium: Medium) -> None:
    with pytest.raises(UsageError, match="not a digest"):
        oci.push(medium.archive, f"oci://{pushed.host}/{pushed.repo}@{pushed.result.digest}")
    with pytest.raises(UsageError, match="endpoint_url"):
        modelport.locate(pushed.uri, storage_options={"endpoint_url": "x"})


def test_a_tampered_layer_is_refused_naming_the_file(
    pushed: Pushed, medium: Medium, home: Path
) -> None:
    layers = {
        layer["annotations"]["org.cncf.model.filepath"]: layer
        for layer in pushed.result.manifest["layers"]
    }
    onnx = layers["model.onnx"]
    original = (medium.directory / "model.onnx").read_bytes()
    forged = original[:-4] + b"\0\0\0\0"  # the same size, other weights
    with registry_proxy(pushed.host) as proxy:
        proxy.tamper[onnx["digest"]] = forged
        with pytest.raises(IntegrityError) as info:
            modelport.locate(
                f"oci://{proxy.host}/{pushed.repo}:{pushed.tag}", storage_options=PLAIN
            )
    message = str(info.value)
    assert "model.onnx: the registry sent other bytes" in message  # refused as it came
    assert onnx["digest"] in message and sha256(forged) in message
    assert _cache_is_empty(home)


@pytest.mark.parametrize(
    ("paths", "why"),
    [
        (["../evil.onnx"], "unsafe path '../evil.onnx'"),
        (["/etc/evil.onnx"], "unsafe path '/etc/evil.onnx'"),
        (["a/./b.onnx"], "unsafe path"),
        (["model.onnx", "model.onnx"], "two layers are the file 'model.onnx'"),
    ],
)
def test_an_artifact_with_unsafe_paths_is_refused(
    paths: list[str], why: str, registry: str, tiny_onnx: Any, home: Path
) -> None:
    repo = _fresh("unsafe")
    model = tiny_onnx.SerializeToString()
    push_raw(
        registry,
        repo,
        "v1",
        config={
            "descriptor": {"name": "x"},
            "config": {},
            "modelfs": {"type": "layers", "diffIds": []},
        },
        layers=[(model, oci.WEIGHT_MEDIA_TYPE, {"org.cncf.model.filepath": p}) for p in paths],
    )
    with pytest.raises(PackageError, match=re.escape(why)):
        modelport.locate(f"oci://{registry}/{repo}:v1", storage_options=PLAIN)
    assert _cache_is_empty(home)


def test_an_artifact_over_the_size_limit_is_refused_before_download(
    pushed: Pushed, home: Path
) -> None:
    with (
        registry_proxy(pushed.host) as proxy,
        pytest.raises(ArchiveLimitError, match="over the 1 MiB limit") as info,
    ):
        modelport.locate(
            f"oci://{proxy.host}/{pushed.repo}:{pushed.tag}",
            storage_options=PLAIN,
            limits=ArchiveLimits(max_expanded_mb=1),
        )
    assert "--max-expanded-mb" in str(info.value)
    assert not [s for s in proxy.seen if "/blobs/" in s.path]  # not one layer was asked for
    assert _cache_is_empty(home)


def test_a_container_image_or_two_weights_are_not_packages(registry: str, tiny_onnx: Any) -> None:
    repo = _fresh("other")
    model = tiny_onnx.SerializeToString()
    push_raw(
        registry,
        repo,
        "image",
        config={"architecture": "amd64", "os": "linux"},
        config_media_type="application/vnd.oci.image.config.v1+json",
        artifact_type=None,
        layers=[(b"not a tar", "application/vnd.oci.image.layer.v1.tar", {})],
    )
    with pytest.raises(PackageError, match="container image"):
        modelport.locate(f"oci://{registry}/{repo}:image", storage_options=PLAIN)
    push_raw(
        registry,
        repo,
        "two",
        config={
            "descriptor": {"name": "two"},
            "config": {},
            "modelfs": {"type": "layers", "diffIds": []},
        },
        layers=[
            (model, oci.WEIGHT_MEDIA_TYPE, {"org.cncf.model.filepath": "a.onnx"}),
            (b"weights", oci.WEIGHT_MEDIA_TYPE, {"org.cncf.model.filepath": "b.safetensors"}),
        ],
    )
    with pytest.raises(PackageError, match=r"2 weight layer\(s\): a.onnx, b.safetensors"):
        modelport.locate(f"oci://{registry}/{repo}:two", storage_options=PLAIN)


# --- an artifact another tool made ----------------------------------------------------------------


def test_a_modelpack_artifact_pushed_by_oras_is_packed(
    registry: str,
    tiny_onnx: Any,
    tiny_weights: np.ndarray,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import oras.client

    work = tmp_path / "oras-push"
    work.mkdir()
    (work / "model.onnx").write_bytes(tiny_onnx.SerializeToString())
    (work / "README.md").write_text("# tiny\n")
    config = {
        "descriptor": {
            "name": "tiny-foreign",
            "version": "3.1",
            "createdAt": "2024-06-01T00:00:00Z",
        },
        "config": {"format": "onnx"},
        "modelfs": {"type": "layers", "diffIds": [sha256((work / "model.onnx").read_bytes())]},
    }
    (work / "config.json").write_text(json.dumps(config))
    monkeypatch.chdir(work)
    repo = _fresh("foreign")
    client = oras.client.OrasClient(hostname=registry, insecure=True)
    client.push(
        target=f"{registry}/{repo}:v3",
        files=[f"model.onnx:{oci.WEIGHT_MEDIA_TYPE}", f"README.md:{oci.DOC_MEDIA_TYPE}"],
        manifest_config=f"config.json:{oci.MODEL_CONFIG_MEDIA_TYPE}",
        quiet=True,
    )
    uri = f"oci://{registry}/{repo}:v3"
    with modelport.load(uri, storage_options=PLAIN) as package:
        assert (package.name, package.version) == ("tiny-foreign", "3.1")
        assert package.manifest.created_at == "2024-06-01T00:00:00Z"
        signature = package.signature.to_dict()
        assert signature["inputs"] == [{"name": "x", "dtype": "float32", "shape": [-1, 3]}]
        assert signature["outputs"] == [{"name": "y", "dtype": "float32", "shape": [-1, 2]}]
        x = np.array([[1.0, 2.0, 3.0]], dtype=np.float32)
        np.testing.assert_allclose(package.predict(x)["y"], x @ tiny_weights)
    (entry,) = PackageCache().entries()
    assert entry.metadata["oci_artifact"] == "modelpack"


# --- credentials ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def protected_push(
    protected: RegistryServer, medium: Medium, tmp_path_factory: pytest.TempPathFactory
) -> str:
    """The medium package pushed to the protected registry (credentials in REGISTRY_AUTH_FILE)."""
    auth = _auth_json(tmp_path_factory.mktemp("auth") / "auth.json", protected.host)
    repo = _fresh("private")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("REGISTRY_AUTH_FILE", str(auth))
        oci.push(medium.archive, f"oci://{protected.host}/{repo}:v1", insecure=True)
    return f"oci://{protected.host}/{repo}:v1"


def test_an_anonymous_pull_from_a_protected_registry_says_where_credentials_are_read(
    protected_push: str, home: Path, tmp_path: Path
) -> None:
    with pytest.raises(SourceError, match="user name and password") as info:
        modelport.locate(protected_push, storage_options=PLAIN)
    hint = info.value.hint or ""
    assert str(tmp_path / "user" / ".docker" / "config.json") in hint
    assert "REGISTRY_AUTH_FILE" in hint
    assert _cache_is_empty(home)


def test_a_wrong_password_is_refused_without_showing_it(
    protected_push: str, protected: RegistryServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    auth = _auth_json(tmp_path / "auth.json", protected.host, password="wrong-password-123")
    monkeypatch.setenv("REGISTRY_AUTH_FILE", str(auth))
    with pytest.raises(SourceError, match="refused") as info:
        modelport.locate(protected_push, storage_options=PLAIN)
    assert str(auth) in str(info.value) + (info.value.hint or "")
    assert "wrong-password-123" not in str(info.value) + (info.value.hint or "")


def _helper(bin_dir: Path, host: str, log: Path) -> None:
    bin_dir.mkdir(parents=True)
    script = bin_dir / "docker-credential-mptest"
    script.write_text(
        "#!/bin/sh\n"
        f'read server; echo "$1 $server" >> "{log}"\n'
        f'if [ "$server" = "{host}" ]; then\n'
        f'  printf \'{{"ServerURL": "%s", "Username": "{USER}", \' "$server"\n'
        f'  printf \'"Secret": "{PASSWORD}"}}\'\n'
        "else echo 'credentials not found in native keychain'; exit 1; fi\n"
    )
    script.chmod(script.stat().st_mode | stat.S_IXUSR)


@pytest.mark.parametrize(
    "where", ["docker_config", "registry_auth_file", "cred_helpers", "creds_store"]
)
def test_credentials_are_read_as_container_tools_read_them(
    where: str,
    protected_push: str,
    protected: RegistryServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    log = tmp_path / "helper.log"
    if where == "docker_config":
        # An old-style key, as docker once wrote them.
        _auth_json(tmp_path / "docker" / "config.json", f"http://{protected.host}/v1/")
        monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "docker"))
    elif where == "registry_auth_file":
        monkeypatch.setenv(
            "REGISTRY_AUTH_FILE", str(_auth_json(tmp_path / "a.json", protected.host))
        )
    else:
        _helper(tmp_path / "bin", protected.host, log)
        monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}")
        config = (
            {"credHelpers": {protected.host: "mptest"}}
            if where == "cred_helpers"
            else {"credsStore": "mptest", "auths": {protected.host: {}}}
        )
        (tmp_path / "user" / ".docker").mkdir(parents=True)
        (tmp_path / "user" / ".docker" / "config.json").write_text(json.dumps(config))
    path = modelport.locate(protected_push, storage_options=PLAIN)
    assert modelport.verify(path).ok
    if where in ("cred_helpers", "creds_store"):
        assert log.read_text().split() == ["get", protected.host]


def test_bearer_tokens_and_a_redirect_to_another_host(
    pushed: Pushed, medium: Medium, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with registry_proxy(pushed.host, token_users={"bob": "bob-pw"}, redirect_blobs=True) as proxy:
        uri = f"oci://{proxy.host}/{pushed.repo}:{pushed.tag}"
        with pytest.raises(SourceError, match="refused anonymous access"):
            modelport.locate(uri, storage_options=PLAIN)
        monkeypatch.setenv(
            "REGISTRY_AUTH_FILE", str(_auth_json(tmp_path / "a.json", proxy.host, "bob", "bob-pw"))
        )
        path = modelport.locate(uri, storage_options=PLAIN)
    assert path.read_bytes() == medium.archive.read_bytes()
    # One token for the whole pull, asked with Basic credentials for our scope and the service.
    (token,) = [t for t in proxy.token_requests if t["user"] == "bob"]
    assert token["query"]["service"] == ["modelport-test"]
    assert f"repository:{pushed.repo}:pull" in token["query"]["scope"]
    blob_gets = [s for s in proxy.seen if "/blobs/" in s.path and s.method == "GET"]
    assert blob_gets and all(s.headers["Authorization"].startswith("Bearer ") for s in blob_gets)
    # The blob store on another port got the downloads, and never the registry's token.
    assert len(proxy.blob_store_seen) >= 3
    assert not any("Authorization" in s.headers for s in proxy.blob_store_seen)


def test_an_identity_token_is_exchanged_for_an_access_token(
    pushed: Pushed, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with registry_proxy(pushed.host, token_users={"bob": "bob-pw"}) as proxy:
        proxy.refresh_tokens["refresh-token-of-bob"] = "bob"
        config = {"auths": {proxy.host: {"identitytoken": "refresh-token-of-bob"}}}
        (tmp_path / "auth.json").write_text(json.dumps(config))
        monkeypatch.setenv("REGISTRY_AUTH_FILE", str(tmp_path / "auth.json"))
        path = modelport.locate(
            f"oci://{proxy.host}/{pushed.repo}:{pushed.tag}", storage_options=PLAIN
        )
    assert modelport.verify(path).ok
    (token,) = proxy.token_requests
    assert token["user"] == "bob"  # by the refresh token, POSTed (never in a URL)
    assert token["query"]["grant_type"] == ["refresh_token"]
    assert f"repository:{pushed.repo}:pull" in token["query"]["scope"][0].split()


def test_a_failing_registry_is_a_source_error(pushed: Pushed, home: Path) -> None:
    with registry_proxy(pushed.host) as proxy:
        proxy.fail_blobs = 503
        with pytest.raises(SourceError, match=r"the registry failed \(HTTP 503\)"):
            modelport.locate(
                f"oci://{proxy.host}/{pushed.repo}:{pushed.tag}", storage_options=PLAIN
            )
    assert _cache_is_empty(home)


def test_a_registry_that_stores_other_bytes_is_refused(
    registry: str, tiny_versions: dict[str, Path]
) -> None:
    with registry_proxy(registry) as proxy:
        proxy.lie_about_digests = True
        with pytest.raises(SourceError, match=r"the registry stored sha256:0{64}, not sha256:"):
            oci.push(tiny_versions["1"], f"oci://{proxy.host}/{_fresh('liar')}:v1", insecure=True)


# --- the cache and signatures -------------------------------------------------------------------


def test_a_pinned_cached_pull_needs_no_registry(
    tmp_path: Path, tiny_versions: dict[str, Path]
) -> None:
    with registry_server(tmp_path / "short-lived") as server:
        result = oci.push(tiny_versions["1"], f"oci://{server.host}/tiny:v1", insecure=True)
        pinned = f"oci://{server.host}/tiny@{result.digest}"
        path = modelport.locate(pinned, storage_options=PLAIN)
    # The registry is gone: a tag cannot be resolved, the pinned digest is served from the cache.
    with pytest.raises(SourceError, match="connection refused"):
        modelport.locate(f"oci://{server.host}/tiny:v1", storage_options=PLAIN)
    assert modelport.locate(pinned, storage_options=PLAIN) == path
    assert modelport.verify(pinned, storage_options=PLAIN).ok


def _bundle(text: str) -> bytes:
    return json.dumps(
        {"mediaType": "application/vnd.dev.sigstore.bundle.v0.3+json", "note": text}
    ).encode()


def test_a_signature_travels_as_a_referrer_on_the_fallback_tag(
    registry: str, medium: Medium, home: Path
) -> None:
    repo = _fresh("signed")
    bundle = _bundle("signed by the tests")
    result = oci.push(
        medium.archive, f"oci://{registry}/{repo}:v1", insecure=True, signature=bundle
    )
    assert result.signature_digest is not None
    # distribution 2.8 has no referrers API: the index under the sha256-<hex> tag lists it.
    tag = result.digest.replace(":", "-")
    _, index = get_json(registry, repo, tag, oci.INDEX_MEDIA_TYPE)
    (entry,) = index["manifests"]
    assert entry["digest"] == result.signature_digest
    assert entry["artifactType"] == "application/vnd.dev.sigstore.bundle.v0.3+json"
    _, referrer = get_json(registry, repo, result.signature_digest, MANIFEST_ACCEPT)
    assert referrer["subject"]["digest"] == result.digest
    assert referrer["config"]["mediaType"] == "application/vnd.oci.empty.v1+json"
    assert referrer["layers"][0]["digest"] == sha256(bundle)
    assert "org.opencontainers.image.created" in referrer["annotations"]
    # The same signature again: the same referrer, still one.
    again = oci.push(medium.archive, f"oci://{registry}/{repo}:v1", insecure=True, signature=bundle)
    assert again.signature_digest == result.signature_digest
    assert len(get_json(registry, repo, tag, oci.INDEX_MEDIA_TYPE)[1]["manifests"]) == 1

    # An older signature listed after it (as another tool might append one): the newest wins.
    older = _bundle("an older signature")
    empty = put_blob(registry, repo, b"{}")
    stale = {
        "schemaVersion": 2,
        "mediaType": oci.MANIFEST_MEDIA_TYPE,
        "artifactType": oci.SIGSTORE_BUNDLE_TYPE,
        "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": empty, "size": 2},
        "layers": [
            {
                "mediaType": oci.SIGSTORE_BUNDLE_TYPE,
                "digest": put_blob(registry, repo, older),
                "size": len(older),
            }
        ],
        "subject": referrer["subject"],
        "annotations": {"org.opencontainers.image.created": "2001-01-01T00:00:00Z"},
    }
    stale_digest = sha256(json.dumps(stale).encode())
    put_manifest(registry, repo, stale_digest, stale)
    index["manifests"].append(
        {
            "mediaType": oci.MANIFEST_MEDIA_TYPE,
            "digest": stale_digest,
            "size": len(json.dumps(stale).encode()),
            "artifactType": oci.SIGSTORE_BUNDLE_TYPE,
            "annotations": stale["annotations"],
        }
    )
    put_manifest(registry, repo, tag, index)

    path = modelport.locate(f"oci://{registry}/{repo}:v1", storage_options=PLAIN)
    with tarfile.open(path) as tar:
        member = tar.extractfile(SIGNATURE_NAME)
        assert member is not None and member.read() == bundle
    (cached,) = PackageCache().entries()
    assert cached.digest == medium.digest  # signing does not change the package
    assert cached.metadata["oci_signature_digest"] == result.signature_digest


def test_a_signed_archive_pulls_back_identical_and_its_signature_verifies(
    registry: str, tiny_versions: dict[str, Path], tmp_path: Path
) -> None:
    pytest.importorskip("model_signing")
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    from modelport.model_format import signing

    key = ec.generate_private_key(ec.SECP256R1())
    (tmp_path / "key.pem").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    (tmp_path / "pub.pem").write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    archive = tmp_path / "signed.mport"
    shutil.copyfile(tiny_versions["1"], archive)
    signing.sign(archive, key=tmp_path / "key.pem")
    ref = f"oci://{registry}/{_fresh('signed-tiny')}:v1"
    result = oci.push(archive, ref, insecure=True, signature=signing.read_signature(archive))
    assert result.signature_digest is not None
    path = modelport.locate(ref, storage_options=PLAIN)
    assert path.read_bytes() == archive.read_bytes()  # the signature comes back as it was
    info = signing.verify_signature(path, [tmp_path / "pub.pem"])
    assert info.verified
