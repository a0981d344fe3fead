"""The package cache on its own: verified before it is added, a hit, LRU eviction, a damaged
entry, left-overs of a dead download; and references told apart by their text."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from modelport.errors import ModelportWarning, PackageError, UsageError
from modelport.model_format.remote import storage
from modelport.model_format.remote.cache import PackageCache, parse_size
from modelport.model_format.remote.uri import Kind, parse_reference


@pytest.fixture
def packed(tmp_path: Path, pack_tiny: Callable[..., Any]) -> list[Path]:
    out = []
    for version in ("1", "2", "3"):
        pack_tiny(f"tiny-{version}.mport", version=version).close()
        out.append(tmp_path / f"tiny-{version}.mport")
    return out


def add(cache: PackageCache, key: str, archive: Path) -> Any:
    """Put ``archive`` in the cache as a download would: copied into staging, then added."""
    with cache.staging() as stage:
        part = stage / "package.mport"
        shutil.copyfile(archive, part)
        return cache.add(key, f"s3://bucket/{archive.name}", part)


def test_an_added_package_is_a_hit_until_its_key_changes(tmp_path: Path, packed: list[Path]):
    cache = PackageCache(tmp_path / "cache")
    entry = add(cache, "s3://bucket/tiny-1.mport\netag-1", packed[0])
    assert entry.path.read_bytes() == packed[0].read_bytes()
    assert entry.path.parent == tmp_path / "cache" / "objects"
    hit = cache.get("s3://bucket/tiny-1.mport\netag-1")
    assert hit is not None
    assert hit.path == entry.path
    assert hit.digest == entry.digest
    assert cache.get("s3://bucket/tiny-1.mport\netag-2") is None  # the object changed
    assert list((tmp_path / "cache" / "tmp").iterdir()) == []  # the staging directory went


def test_the_same_bytes_are_one_object(tmp_path: Path, packed: list[Path]):
    cache = PackageCache(tmp_path / "cache")
    a = add(cache, "s3://a\n1", packed[0])
    b = add(cache, "gs://b\n1", packed[0])
    assert a.path == b.path
    assert len(list((tmp_path / "cache" / "objects").iterdir())) == 1
    assert {e.source for e in cache.entries()} == {"s3://bucket/tiny-1.mport"}
    assert len(cache.entries()) == 2


def test_a_damaged_download_is_never_added(tmp_path: Path, packed: list[Path]):
    cache = PackageCache(tmp_path / "cache")
    data = bytearray(packed[0].read_bytes())
    data[len(data) // 2] ^= 0xFF
    bad = tmp_path / "bad.mport"
    bad.write_bytes(bytes(data))
    with pytest.raises(PackageError):
        add(cache, "s3://bad\n1", bad)
    not_a_package = tmp_path / "junk.mport"
    not_a_package.write_bytes(b"not a package at all")
    with pytest.raises(PackageError):
        add(cache, "s3://junk\n1", not_a_package)
    assert cache.entries() == []
    assert list((tmp_path / "cache" / "objects").glob("*")) == []
    assert list((tmp_path / "cache" / "tmp").iterdir()) == []


def test_least_recently_used_is_evicted_first(tmp_path: Path, packed: list[Path]):
    size = max(p.stat().st_size for p in packed)
    cache = PackageCache(tmp_path / "cache", max_bytes=2 * size + size // 2)  # room for two
    first = add(cache, "k1", packed[0])
    second = add(cache, "k2", packed[1])
    os.utime(first.path, (1_000, 1_000))
    os.utime(second.path, (2_000, 2_000))
    assert cache.get("k1") is not None  # a use makes k1 the most recent
    third = add(cache, "k3", packed[2])
    assert cache.get("k2") is None  # the least recently used went
    assert not second.path.exists()
    assert cache.get("k1") is not None
    assert cache.get("k3") is not None
    assert {e.key for e in cache.entries()} == {"k1", "k3"}
    assert third.path.exists()


def test_a_package_larger_than_the_cache_is_still_kept_while_used(
    tmp_path: Path, packed: list[Path]
):
    cache = PackageCache(tmp_path / "cache", max_bytes=10)
    entry = add(cache, "k1", packed[0])
    assert entry.path.exists()
    add(cache, "k2", packed[1])
    assert not entry.path.exists()  # the older one made room for the new one


def test_a_damaged_entry_is_dropped_with_a_warning(tmp_path: Path, packed: list[Path]):
    cache = PackageCache(tmp_path / "cache")
    entry = add(cache, "k1", packed[0])
    data = bytearray(entry.path.read_bytes())
    data[-5] ^= 0x01
    entry.path.write_bytes(bytes(data))
    with pytest.warns(ModelportWarning, match="damaged; fetching it again"):
        assert cache.get("k1") is None
    assert not entry.path.exists()
    assert cache.entries() == []
    assert add(cache, "k1", packed[0]).path == entry.path  # fetched again, whole


def test_left_overs_of_a_dead_download_are_removed(tmp_path: Path, packed: list[Path]):
    cache = PackageCache(tmp_path / "cache")
    # A download killed half-way: its staging directory, named by its (now dead) pid.
    child = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    dead = tmp_path / "cache" / "tmp" / f"{child.stdout.strip()}.abc.part"
    dead.mkdir(parents=True)
    (dead / "package.mport").write_bytes(b"half")
    mine = tmp_path / "cache" / "tmp" / f"{os.getpid()}.other.part"
    mine.mkdir()
    add(cache, "k1", packed[0])
    assert not dead.exists()
    assert mine.exists()  # a live process's download is left alone
    assert cache.get("k1") is not None


def test_clear_and_listing(tmp_path: Path, packed: list[Path]):
    cache = PackageCache(tmp_path / "cache")
    assert cache.entries() == []
    for i, p in enumerate(packed):
        add(cache, f"k{i}", p)
    listed = cache.entries()
    assert len(listed) == 3
    assert json.loads(json.dumps([e.to_dict() for e in listed]))[0]["size_bytes"] > 0
    count, size = cache.clear()
    assert count == 3
    assert size == sum(p.stat().st_size for p in packed)
    assert cache.entries() == []


@pytest.mark.parametrize(
    ("text", "expected"),
    [("1000", 1000), ("500M", 500 << 20), ("2g", 2 << 30), ("1.5GiB", 3 << 29), ("10KB", 10240)],
)
def test_sizes(text: str, expected: int):
    assert parse_size(text) == expected


def test_a_bad_size_is_a_usage_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    monkeypatch.setenv("MODELPORT_CACHE_SIZE", "lots")
    with pytest.raises(UsageError, match="MODELPORT_CACHE_SIZE: 'lots' is not a size"):
        PackageCache(tmp_path)


@pytest.mark.parametrize(
    ("ref", "kind", "scheme"),
    [
        ("model.mport", Kind.PATH, ""),
        ("dir/with:colon", Kind.PATH, ""),
        ("s3://b/k.mport", Kind.STORAGE, "s3"),
        ("S3A://b/k.mport", Kind.STORAGE, "s3a"),
        ("gs://b/k", Kind.STORAGE, "gs"),
        ("abfs://c/k", Kind.STORAGE, "abfs"),
        ("az://c/k", Kind.STORAGE, "az"),
        ("hdfs://nn:8020/k", Kind.STORAGE, "hdfs"),
        ("webhdfs://nn:9870/k", Kind.STORAGE, "webhdfs"),
        ("https://h/k.mport", Kind.STORAGE, "https"),
        ("models:/churn@champion", Kind.MLFLOW, "models"),
        ("runs:/abc/model", Kind.MLFLOW, "runs"),
    ],
)
def test_references_are_told_apart_by_their_text(ref: str, kind: Kind, scheme: str):
    parsed = parse_reference(ref)
    assert (parsed.kind, parsed.scheme) == (kind, scheme)


def test_file_uris_are_paths_and_path_objects_never_uris():
    assert parse_reference("file:///tmp/x.mport").text == "/tmp/x.mport"
    assert parse_reference(Path("s3://b/k")).kind is Kind.PATH


def test_an_unknown_scheme_says_what_is_read():
    with pytest.raises(UsageError, match=r"cannot read ftp:// URIs") as info:
        parse_reference("ftp://host/x.mport")
    assert "s3://" in (info.value.hint or "")


def test_a_uri_given_to_the_path_loader_says_where_uris_are_read():
    from modelport.model_format.package import load

    with pytest.raises(UsageError, match="is a URI, not a path") as info:
        load("s3://bucket/x.mport")
    assert "modelport.load" in (info.value.hint or "")


def test_storage_options_come_from_the_environment_then_the_caller():
    ref = parse_reference("gs://bucket/x.mport")
    env = {
        "MODELPORT_STORAGE_OPTIONS": json.dumps(
            {"gcs": {"project": "p", "token": "anon"}, "gs": {"token": "t"}, "s3": {"anon": True}}
        )
    }
    assert storage.storage_options(ref, {"project": "q"}, env) == {"project": "q", "token": "t"}
    assert storage.storage_options(ref, None, {}) == {}


@pytest.mark.parametrize("text", ["[1]", "{not json", '{"s3": 1}'])
def test_malformed_storage_options_in_the_environment(text: str):
    with pytest.raises(UsageError, match="MODELPORT_STORAGE_OPTIONS"):
        storage.storage_options(
            parse_reference("s3://b/k"), None, {"MODELPORT_STORAGE_OPTIONS": text}
        )


def test_option_values_are_json_where_they_read_as_json():
    assert storage.option_value("true") is True
    assert storage.option_value("8020") == 8020
    assert storage.option_value('{"region_name": "x"}') == {"region_name": "x"}
    assert storage.option_value("http://127.0.0.1:9000") == "http://127.0.0.1:9000"


class NoCredentialsError(Exception):
    """Named as botocore's: errors are told apart by class name, no backend imported."""


class ClientAuthenticationError(Exception):
    """Named as azure-core's."""


@pytest.mark.parametrize(
    ("exc", "match", "hint"),
    [
        (NoCredentialsError("Unable to locate credentials"), "no credentials", "AWS_PROFILE"),
        (PermissionError("Forbidden"), "access denied", "credentials may read"),
        (FileNotFoundError("k"), "no such object", "bucket"),
        (ConnectionRefusedError("refused"), "cannot reach the store", "endpoint_url"),
        (RuntimeError("odd"), "failed: RuntimeError: odd", None),
    ],
)
def test_store_errors_say_what_was_tried(exc: Exception, match: str, hint: str | None):
    error = storage.translate(exc, "s3://bucket/k.mport")
    assert match in str(error)
    assert "s3://bucket/k.mport" in str(error)
    if hint:
        assert hint in (error.hint or "")


def test_a_cause_deep_in_the_chain_is_found():
    try:
        try:
            raise ClientAuthenticationError("Server failed to authenticate the request")
        except ClientAuthenticationError as inner:
            raise OSError("wrapped") from inner
    except OSError as outer:
        error = storage.translate(outer, "az://c/k.mport")
    assert "access denied" in str(error)
    assert "account_key" in (error.hint or "")


class _Terminal:
    def __init__(self, tty: bool) -> None:
        self.tty = tty
        self.text = ""

    def isatty(self) -> bool:
        return self.tty

    def write(self, text: str) -> None:
        self.text += text

    def flush(self) -> None:
        pass


def test_a_download_shows_progress_on_a_terminal_only():
    shown = _Terminal(tty=True)
    progress = storage.Progress("s3://b/k.mport", 3 << 20, stream=shown)  # type: ignore[arg-type]
    progress.advance(1 << 20)
    progress.close()
    assert shown.text == "\rDownloading s3://b/k.mport: 1.0 MiB of 3.0 MiB\n"
    hidden = _Terminal(tty=False)
    progress = storage.Progress("s3://b/k.mport", 3 << 20, stream=hidden)  # type: ignore[arg-type]
    progress.advance(1 << 20)
    progress.close()
    assert hidden.text == ""
