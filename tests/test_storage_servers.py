"""The local servers of tests/storage_servers.py, each used through its real client."""

from __future__ import annotations

import http.client
import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from process_helpers import wait_for
from storage_servers import (
    MlflowServer,
    WebHDFSServer,
    azurite_server,
    gcs_server,
    register_version,
    s3_server,
    verify_mlflow_signature,
    webhdfs_server,
    webhook_receiver,
)


def test_s3fs_against_moto(tmp_path: Path) -> None:
    import s3fs

    local = tmp_path / "model.bin"
    local.write_bytes(b"weights")
    with s3_server() as s3:
        s3.make_bucket("models")
        fs = s3fs.S3FileSystem(**s3.storage_options)
        fs.put(str(local), "models/a/model.bin")
        info = fs.info("models/a/model.bin")
        assert info["size"] == 7
        assert info["ETag"].strip('"')
        fs.get("models/a/model.bin", str(tmp_path / "back.bin"))
        assert (tmp_path / "back.bin").read_bytes() == b"weights"
        assert fs.ls("models/a") == ["models/a/model.bin"]
        with pytest.raises(FileNotFoundError):
            fs.info("models/a/missing.bin")
    # moto's state is the process's: a new server starts empty.
    with s3_server() as s3:
        fs = s3fs.S3FileSystem(**s3.storage_options, skip_instance_cache=True)
        assert fs.ls("") == []


def test_one_s3_server_at_a_time() -> None:
    with s3_server(), pytest.raises(RuntimeError, match="global"), s3_server():
        pass


def test_gcsfs_against_the_emulator(tmp_path: Path) -> None:
    assert os.environ["GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT"] == "false"
    import gcsfs

    local = tmp_path / "model.bin"
    local.write_bytes(b"weights")
    with gcs_server("models") as gcs:
        fs = gcsfs.GCSFileSystem(**gcs.storage_options)
        fs.put(str(local), "models/a/model.bin")
        info = fs.info("models/a/model.bin")
        assert info["size"] == 7
        assert info["generation"]
        assert info["etag"]
        fs.get("models/a/model.bin", str(tmp_path / "back.bin"))
        assert (tmp_path / "back.bin").read_bytes() == b"weights"
        assert fs.ls("models/a") == ["models/a/model.bin"]
        gcs.make_bucket("other")
        assert "other" in [b.rstrip("/") for b in fs.ls("")]
        with pytest.raises(FileNotFoundError):
            fs.info("models/a/missing.bin")


def test_adlfs_against_azurite(tmp_path: Path) -> None:
    import adlfs

    local = tmp_path / "model.bin"
    local.write_bytes(b"weights")
    with azurite_server(tmp_path / "azurite") as azure:
        azure.make_container("models")
        fs = adlfs.AzureBlobFileSystem(**azure.storage_options)
        fs.put(str(local), "models/a/model.bin")
        info = fs.info("models/a/model.bin")
        assert info["size"] == 7
        assert info["etag"]
        fs.get("models/a/model.bin", str(tmp_path / "back.bin"))
        assert (tmp_path / "back.bin").read_bytes() == b"weights"
        assert fs.ls("models/a") == ["models/a/model.bin"]
        with pytest.raises(FileNotFoundError):
            fs.info("models/a/missing.bin")


@pytest.fixture(scope="module")
def webhdfs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebHDFSServer]:
    with webhdfs_server(tmp_path_factory.mktemp("hdfs")) as server:
        yield server


def test_fsspec_webhdfs(webhdfs: WebHDFSServer, tmp_path: Path) -> None:
    import fsspec

    local = tmp_path / "model.bin"
    local.write_bytes(bytes(range(256)) * 40)
    fs = fsspec.filesystem("webhdfs", **webhdfs.storage_options, skip_instance_cache=True)
    fs.put(str(local), "/data/models/model.bin")
    assert (webhdfs.root / "data/models/model.bin").read_bytes() == local.read_bytes()
    info = fs.info("/data/models/model.bin")
    assert (info["type"], info["size"], info["owner"]) == ("file", 10240, "test")
    assert fs.ls("/data/models") == ["/data/models/model.bin"]
    fs.get("/data/models/model.bin", str(tmp_path / "back.bin"))
    assert (tmp_path / "back.bin").read_bytes() == local.read_bytes()
    with fs.open("/data/models/model.bin", block_size=100) as stream:
        stream.seek(5000)
        assert stream.read(10) == local.read_bytes()[5000:5010]
    assert fs.ukey("/data/models/model.bin")["algorithm"] == "MD5"
    fs.mv("/data/models/model.bin", "/data/models/renamed.bin")
    assert fs.ls("/data/models") == ["/data/models/renamed.bin"]
    fs.rm("/data/models/renamed.bin")
    assert fs.ls("/data/models") == []
    with pytest.raises(FileNotFoundError, match="File does not exist"):
        fs.info("/data/missing.bin")
    with pytest.raises(FileNotFoundError):
        fs.cat("/data/missing.bin")
    # The URL form, and what was asked: the reads went through the datanode redirect.
    with fsspec.open(webhdfs.url("/data/hello.txt"), "wb", user="test") as stream:
        stream.write(b"hello")
    with fsspec.open(webhdfs.url("/data/hello.txt"), "rb", user="test") as stream:
        assert stream.read() == b"hello"
    opens = [r for r in webhdfs.requests if r.op == "OPEN"]
    assert {r.datanode for r in opens} == {False, True}
    assert all(r.params.get("user.name") == "test" for r in webhdfs.requests)


def _raw(server: WebHDFSServer, method: str, target: str) -> tuple[int, dict]:
    """A request exactly as written (requests and urllib would normalise ``..`` away)."""
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        connection.request(method, target)
        response = connection.getresponse()
        return response.status, json.loads(response.read() or b"{}")
    finally:
        connection.close()


def test_webhdfs_refuses_paths_outside_its_root(webhdfs: WebHDFSServer, tmp_path: Path) -> None:
    import fsspec

    outside = tmp_path / "secret.txt"
    outside.write_text("secret")
    for target in (
        f"/webhdfs/v1/../{outside.name}?op=GETFILESTATUS",
        "/webhdfs/v1/a/%2e%2e/%2e%2e/etc/passwd?op=OPEN",
    ):
        status, body = _raw(webhdfs, "GET", target)
        assert (status, body["RemoteException"]["exception"]) == (400, "InvalidPathException")
    (webhdfs.root / "escape").symlink_to(tmp_path)
    fs = fsspec.filesystem("webhdfs", **webhdfs.storage_options, skip_instance_cache=True)
    with pytest.raises(PermissionError, match="outside the served root"):
        fs.cat("/escape/secret.txt")
    with pytest.raises(PermissionError):
        fs.pipe("/escape/new.txt", b"x")
    assert not (tmp_path / "new.txt").exists()
    webhdfs.forbidden.add("/private")
    try:
        with pytest.raises(PermissionError, match="Permission denied"):
            fs.ls("/private/x")
    finally:
        webhdfs.forbidden.discard("/private")
    status, body = _raw(webhdfs, "GET", "/webhdfs/v1/?op=NOSUCHOP")
    assert (status, body["RemoteException"]["exception"]) == (400, "IllegalArgumentException")


@pytest.fixture
def registry(mlflow_registry: MlflowServer) -> MlflowServer:
    return mlflow_registry


def test_mlflow_registry_aliases_and_webhooks(
    registry: MlflowServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import mlflow
    from mlflow import MlflowClient
    from mlflow.entities.webhook import WebhookEvent

    client = MlflowClient(registry.tracking_uri, registry_uri=registry.tracking_uri)
    versions = []
    for n in (1, 2):
        model_dir = tmp_path / f"model{n}"
        model_dir.mkdir()
        (model_dir / "weights.txt").write_text(f"version {n}")
        (model_dir / "sub").mkdir()
        (model_dir / "sub" / "extra.txt").write_text("extra")
        versions.append(register_version(client, "tiny", model_dir))
    assert versions == ["1", "2"]

    with webhook_receiver() as receiver:
        webhook = client.create_webhook(
            name="aliases",
            url=receiver.url("/x"),
            events=[WebhookEvent("model_version_alias", "created")],
            secret="s",
        )
        client.set_registered_model_alias("tiny", "champion", "2")
        wait_for(lambda: len(receiver.deliveries) >= 1, "the alias webhook's delivery")
        client.delete_webhook(webhook.webhook_id)
    (delivery,) = receiver.deliveries
    assert delivery.path == "/x"
    assert verify_mlflow_signature("s", delivery.headers, delivery.body)
    assert delivery.headers["X-MLflow-Signature"].startswith("v1,")
    assert delivery.headers["X-MLflow-Delivery-Id"]
    assert delivery.headers["X-MLflow-Timestamp"].isdigit()
    assert delivery.headers["Content-Type"] == "application/json"
    payload = delivery.json()
    print("webhook headers:", delivery.headers)
    print("webhook body:", delivery.body.decode())
    assert set(payload) == {"entity", "action", "timestamp", "data"}
    assert (payload["entity"], payload["action"]) == ("model_version_alias", "created")
    assert payload["data"] == {"name": "tiny", "alias": "champion", "version": "2"}

    assert client.get_model_version_by_alias("tiny", "champion").version == "2"
    # download_artifacts resolves models:/ with the process's registry URI, whatever its
    # registry_uri argument says (mlflow 3.17, ModelsArtifactRepository._get_model_uri_infos),
    # and that defaults to sqlite:///mlflow.db in the working directory.
    for name, value in registry.env.items():
        monkeypatch.setenv(name, value)
    assert mlflow.get_registry_uri() == registry.tracking_uri
    out = mlflow_artifacts_download(registry, "models:/tiny@champion", tmp_path / "dl")
    assert (out / "weights.txt").read_text() == "version 2"
    assert (out / "sub" / "extra.txt").read_text() == "extra"
    out = mlflow_artifacts_download(registry, "models:/tiny/1", tmp_path / "dl1")
    assert (out / "weights.txt").read_text() == "version 1"


def mlflow_artifacts_download(server: MlflowServer, uri: str, dst: Path) -> Path:
    import mlflow.artifacts

    dst.mkdir()
    return Path(
        mlflow.artifacts.download_artifacts(
            artifact_uri=uri,
            dst_path=str(dst),
            tracking_uri=server.tracking_uri,
            registry_uri=server.tracking_uri,
        )
    )
