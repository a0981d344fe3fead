"""Packages from storage URIs, through each backend's real client against a real local server.

s3fs against moto's S3 server, gcsfs against gcp-storage-emulator, adlfs against Azurite,
fsspec's WebHDFS client against the WebHDFS server of ``storage_servers``, and fsspec's HTTP
client against a small server here (that also breaks a download half-way). Every server is on
127.0.0.1; every credential is a fake one given explicitly.
"""

from __future__ import annotations

import http.server
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import modelport
from modelport.errors import PackageError, SourceError, SourceNotFound
from modelport.model_format.remote.cache import PackageCache
from storage_servers import Store, all_stores


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Store]]:
    with all_stores(tmp_path_factory.mktemp("stores")) as stores:
        yield stores


@pytest.fixture(params=["s3", "gs", "az", "webhdfs"])
def store(request: pytest.FixtureRequest, servers: dict[str, Store]) -> Store:
    return servers[request.param]


@pytest.fixture(autouse=True)
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("MODELPORT_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


# --- reading ------------------------------------------------------------------------------------


def test_an_archive_from_each_store_is_fetched_once(
    store: Store, tiny_versions: dict[str, Path], home: Path
) -> None:
    uri = store.put(tiny_versions["1"], f"{store.name}/archive/tiny.mport")
    path = modelport.locate(uri, storage_options=dict(store.options))
    assert path.parent == home / "cache" / "objects"
    assert path.read_bytes() == tiny_versions["1"].read_bytes()
    with modelport.load(uri, storage_options=dict(store.options)) as package:
        assert package.version == "1"
        np.testing.assert_allclose(package.predict([[1.0, 0.0, 0.0]])["y"], [[0.0, 1.0]])
    (entry,) = PackageCache().entries()
    assert entry.source == uri
    again = modelport.locate(uri, storage_options=dict(store.options))
    assert again == path
    (same,) = PackageCache().entries()
    assert same.fetched_at == entry.fetched_at  # a hit: nothing fetched the second time


def test_a_package_directory_from_each_store(store: Store, tiny_versions: dict[str, Path]) -> None:
    uri = store.put(tiny_versions["dir"], f"{store.name}/directory/tiny")
    report = modelport.verify(uri, storage_options=dict(store.options))
    assert report.ok
    assert report.manifest.digest == modelport.verify(tiny_versions["dir"]).manifest.digest


def test_a_missing_object_in_each_store(store: Store) -> None:
    uri = f"{store.base}/{store.name}/nothing-here.mport"
    with pytest.raises(SourceNotFound, match="no such object") as info:
        modelport.locate(uri, storage_options=dict(store.options))
    assert uri in str(info.value)
    assert PackageCache().entries() == []


def test_a_changed_object_is_fetched_again(
    servers: dict[str, Store], tiny_versions: dict[str, Path]
):
    s3 = servers["s3"]
    uri = s3.put(tiny_versions["1"], "changing/tiny.mport")
    first = modelport.verify(uri, storage_options=s3.options).manifest
    s3.put(tiny_versions["2"], "changing/tiny.mport")
    second = modelport.verify(uri, storage_options=s3.options).manifest
    assert (first.version, second.version) == ("1", "2")
    assert len(PackageCache().entries()) == 2


def test_without_credentials_s3_says_where_it_looked(
    servers: dict[str, Store],
    tiny_versions: dict[str, Path],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    s3 = servers["s3"]
    uri = s3.put(tiny_versions["1"], "creds/tiny.mport")
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    options = {"endpoint_url": s3.options["endpoint_url"], "skip_instance_cache": True}
    with pytest.raises(SourceError, match="no credentials were found") as info:
        modelport.locate(uri, storage_options=options)
    assert "AWS_PROFILE" in (info.value.hint or "")


def test_a_wrong_azure_key_is_access_denied(
    servers: dict[str, Store], tiny_versions: dict[str, Path]
):
    az = servers["az"]
    uri = az.put(tiny_versions["1"], "denied/tiny.mport")
    wrong = az.options["connection_string"].replace("AccountKey=", "AccountKey=AAAA")
    with pytest.raises(SourceError, match="access denied") as info:
        modelport.locate(uri, storage_options={**az.options, "connection_string": wrong})
    assert "account_key" in (info.value.hint or "")


def test_a_forbidden_hdfs_path_is_access_denied(
    servers: dict[str, Store], tiny_versions: dict[str, Path]
) -> None:
    hdfs = servers["webhdfs"]
    uri = hdfs.put(tiny_versions["1"], "forbidden/tiny.mport")
    hdfs.server.forbidden.add("/models/forbidden/tiny.mport")
    try:
        with pytest.raises(SourceError, match="access denied"):
            modelport.locate(uri, storage_options=hdfs.options)
    finally:
        hdfs.server.forbidden.clear()


def test_what_is_not_a_package_is_refused(
    servers: dict[str, Store], tmp_path: Path, tiny_versions: dict[str, Path]
) -> None:
    s3 = servers["s3"]
    junk = tmp_path / "junk.mport"
    junk.write_bytes(os.urandom(2048))
    with pytest.raises(PackageError):
        modelport.locate(s3.put(junk, "junk/junk.mport"), storage_options=s3.options)
    mlflow_dir = tmp_path / "mlflow-model"
    mlflow_dir.mkdir()
    (mlflow_dir / "MLmodel").write_text("flavors: {}\n")
    uri = s3.put(mlflow_dir, "junk/mlflow-model")
    with pytest.raises(SourceError, match="is an MLflow model directory") as info:
        modelport.locate(uri, storage_options=s3.options)
    assert "models:/" in (info.value.hint or "")
    assert PackageCache().entries() == []
    assert list((PackageCache().root / "tmp").iterdir()) == []


# --- HTTP, and a download that breaks half-way ---------------------------------------------------


class _Files(http.server.ThreadingHTTPServer):
    files: dict[str, bytes]
    broken: set[str]


class _Handler(http.server.BaseHTTPRequestHandler):
    server: _Files

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _head(self) -> bytes | None:
        data = self.server.files.get(self.path)
        if data is None:
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return None
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("ETag", f'"{hash(data) & 0xFFFFFFFF:x}"')
        self.end_headers()
        return data

    def do_HEAD(self) -> None:
        self._head()

    def do_GET(self) -> None:
        data = self._head()
        if data is None:
            return
        if self.path in self.server.broken:
            self.wfile.write(data[: len(data) // 2])  # then the connection drops
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(data)


@pytest.fixture(scope="module")
def http_files() -> Iterator[_Files]:
    server = _Files(("127.0.0.1", 0), _Handler)
    server.files, server.broken = {}, set()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def test_https_style_urls_and_an_interrupted_download(
    http_files: _Files, tiny_versions: dict[str, Path], home: Path
) -> None:
    port = http_files.server_address[1]
    http_files.files["/good.mport"] = tiny_versions["1"].read_bytes()
    http_files.files["/broken.mport"] = tiny_versions["2"].read_bytes()
    http_files.broken.add("/broken.mport")
    with pytest.raises(SourceError, match=r"http://127\.0\.0\.1:\d+/broken\.mport"):
        modelport.locate(f"http://127.0.0.1:{port}/broken.mport")
    assert PackageCache().entries() == []  # nothing half-written became visible
    assert list((home / "cache" / "tmp").iterdir()) == []
    assert list((home / "cache" / "objects").glob("*")) == []  # none there, or no folder yet
    good = modelport.locate(f"http://127.0.0.1:{port}/good.mport")
    assert good.read_bytes() == tiny_versions["1"].read_bytes()
