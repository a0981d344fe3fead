"""The ``.mport`` archive: reproducible to the byte, and extraction that refuses anything unsafe.

Malicious archives are written by hand with :mod:`tarfile`. Every test runs with a private
temporary directory (where extraction happens) and a private working directory, and checks that
nothing was written outside them and that no ``modelport-*`` directory was left behind.
"""

from __future__ import annotations

import gc
import gzip
import hashlib
import io
import json
import os
import tarfile
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import modelport
from modelport.errors import (
    IntegrityError,
    ManifestError,
    PackageError,
    UnsafeArchiveError,
    UnsupportedFormatError,
)
from modelport.model_format.archive import (
    FIXED_MTIME,
    archive_problems,
    extract_archive,
    file_digest,
    is_archive,
    read_archive_manifest,
    write_archive,
)
from modelport.model_format.manifest import MANIFEST_NAME, Flavor, Manifest, parse
from modelport.model_format.signature import Signature, TensorSpec


@dataclass(frozen=True)
class Entry:
    """One tar entry, written exactly as given (name, type, data, link target, attributes)."""

    name: str
    data: bytes = b""
    type: bytes = tarfile.REGTYPE
    linkname: str = ""
    attrs: dict[str, Any] = field(default_factory=dict)


def write_tar(path: Path, entries: Sequence[Entry]) -> Path:
    with tarfile.open(path, mode="w:gz", format=tarfile.PAX_FORMAT) as tar:
        for entry in entries:
            info = tarfile.TarInfo(entry.name)
            info.type = entry.type
            info.linkname = entry.linkname
            info.mode = 0o644
            for key, value in entry.attrs.items():
                setattr(info, key, value)
            if info.isreg():
                info.size = len(entry.data)
                tar.addfile(info, io.BytesIO(entry.data))
            else:
                tar.addfile(info)
    return path


def valid_entries(parts: Any) -> list[Entry]:
    return [Entry(MANIFEST_NAME, parts.manifest)] + [
        Entry(name, data) for name, data in sorted(parts.files.items())
    ]


@pytest.fixture(autouse=True)
def sandbox(
    tmp_path: Path,
    private_tempdir: Path,
    temp_leftovers: Callable[[], list[str]],
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Path]:
    """Run in a private cwd and temp dir; afterwards no ``modelport-*`` dir may be left."""
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    assert temp_leftovers() == []
    yield cwd
    gc.collect()  # packages that were not closed clean up when collected
    assert temp_leftovers() == []


def load_error(path: Path, expected: type[Exception]) -> Exception:
    with pytest.raises(expected) as excinfo:
        modelport.load(path)
    return excinfo.value


def assert_nothing_escaped(tmp_path: Path) -> None:
    """No file called ``evil`` and no link exists anywhere under the test's directory."""
    assert list(tmp_path.rglob("evil")) == []
    assert [p for p in tmp_path.rglob("*") if p.is_symlink()] == []


# --- reproducibility --------------------------------------------------------------------------


def test_same_model_packs_to_byte_identical_archives(
    pack_tiny: Callable[..., Any], tmp_path: Path
) -> None:
    with pack_tiny("one.mport") as first, pack_tiny("two.mport") as second:
        assert first.digest == second.digest
    assert (tmp_path / "one.mport").read_bytes() == (tmp_path / "two.mport").read_bytes()


def test_same_model_packs_to_identical_directories(
    pack_tiny: Callable[..., Any], tmp_path: Path
) -> None:
    first, second = pack_tiny("dir-one"), pack_tiny("dir-two")
    assert first.digest == second.digest

    def listing(root: Path) -> dict[str, bytes]:
        return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*")}

    assert listing(tmp_path / "dir-one") == listing(tmp_path / "dir-two")


def test_archive_and_directory_of_the_same_model_share_the_digest(
    pack_tiny: Callable[..., Any],
) -> None:
    with pack_tiny("same.mport") as archived:
        assert archived.digest == pack_tiny("same-dir").digest


def test_different_packages_give_different_archives(
    pack_tiny: Callable[..., Any], tmp_path: Path
) -> None:
    with pack_tiny("a.mport") as a, pack_tiny("b.mport", metadata={"k": "v"}) as b:
        assert a.digest != b.digest
    assert (tmp_path / "a.mport").read_bytes() != (tmp_path / "b.mport").read_bytes()


def test_archive_layout_is_fixed(pack_tiny: Callable[..., Any], tmp_path: Path) -> None:
    with pack_tiny("layout.mport") as package:
        manifest = package.manifest
    path = tmp_path / "layout.mport"
    raw = path.read_bytes()
    assert raw[:2] == b"\x1f\x8b"
    assert raw[3] & 0x08 == 0, "the gzip header must not record a file name"
    assert raw[4:8] == b"\0\0\0\0", "the gzip header must not record a time"
    assert path.stat().st_mode & 0o777 == 0o644
    with tarfile.open(path, "r:gz") as tar:
        members = tar.getmembers()
        names = [m.name for m in members]
        assert names == [MANIFEST_NAME, *sorted(manifest.files)]
        for member in members:
            assert member.isreg()
            assert member.mtime == FIXED_MTIME
            assert (member.uid, member.gid, member.uname, member.gname) == (0, 0, "", "")
            assert member.mode == 0o644
        data = tar.extractfile(MANIFEST_NAME)
        assert data is not None
        assert data.read() == manifest.to_json()
    assert sorted(p.name for p in tmp_path.iterdir() if "layout" in p.name) == ["layout.mport"]


def test_archive_holds_only_listed_files(package_parts: Any, tmp_path: Path) -> None:
    root = tmp_path / "with-stray"
    root.mkdir()
    for name, data in package_parts.files.items():
        (root / name).write_bytes(data)
    (root / "stray.txt").write_text("not listed")
    manifest = parse(package_parts.manifest)
    out = tmp_path / "out" / "x.mport"
    write_archive(root, manifest, out)
    with tarfile.open(out, "r:gz") as tar:
        assert "stray.txt" not in tar.getnames()
    assert sorted(p.name for p in out.parent.iterdir()) == ["x.mport"]


# --- a property: any set of files round-trips through an archive ------------------------------

FILE_NAMES = st.from_regex(r"[a-z0-9_]{1,8}(\.[a-z]{1,3})?", fullmatch=True)


@st.composite
def file_trees(draw: st.DrawFn) -> dict[str, bytes]:
    dirs = draw(st.lists(st.from_regex(r"d[a-z0-9]{0,5}", fullmatch=True), max_size=2))
    names = draw(st.lists(FILE_NAMES, min_size=1, max_size=5, unique=True))
    tree = {
        "/".join([*dirs[: draw(st.integers(0, len(dirs)))], name]): draw(st.binary(max_size=300))
        for name in names
    }
    # A path cannot be both a file and a directory (the manifest rejects such trees).
    prefixes = {"/".join(p.split("/")[:i]) for p in tree for i in range(1, p.count("/") + 1)}
    assume(not prefixes & set(tree))
    return tree


def manifest_for(files: dict[str, bytes]) -> Manifest:
    return Manifest(
        name="tree",
        version="1",
        flavor=Flavor("onnx", {"model": sorted(files)[0]}),
        signature=Signature((TensorSpec("x", "float32", (-1,)),), ()),
        files={rel: "sha256:" + hashlib.sha256(data).hexdigest() for rel, data in files.items()},
    )


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(files=file_trees())
def test_any_file_tree_round_trips_through_a_reproducible_archive(
    files: dict[str, bytes], tmp_path: Path
) -> None:
    with tempfile.TemporaryDirectory(dir=tmp_path) as work:
        base = Path(work)
        src = base / "src"
        for rel, data in files.items():
            (src / rel).parent.mkdir(parents=True, exist_ok=True)
            (src / rel).write_bytes(data)
        manifest = parse(manifest_for(files).to_json())
        write_archive(src, manifest, base / "a.mport")
        write_archive(src, manifest, base / "b.mport")
        assert (base / "a.mport").read_bytes() == (base / "b.mport").read_bytes()
        assert read_archive_manifest(base / "a.mport") == manifest
        assert archive_problems(base / "a.mport") == (manifest, [])
        dest = base / "dest"
        dest.mkdir()
        assert extract_archive(base / "a.mport", dest) == manifest
        extracted = {
            p.relative_to(dest).as_posix(): p.read_bytes() for p in dest.rglob("*") if p.is_file()
        }
        assert extracted == {**files, MANIFEST_NAME: manifest.to_json()}


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_a_corrupted_archive_extracts_intact_or_fails_as_a_package_error(
    data: Any, package_parts: Any, tmp_path: Path
) -> None:
    good = tmp_path / "good.mport"
    if not good.exists():
        write_tar(good, valid_entries(package_parts))
    raw = bytearray(good.read_bytes())
    position = data.draw(st.integers(0, len(raw) - 1))
    raw[position] ^= data.draw(st.integers(1, 255))
    with tempfile.TemporaryDirectory(dir=tmp_path) as work:
        bad = Path(work) / "bad.mport"
        bad.write_bytes(bytes(raw))
        dest = Path(work) / "dest"
        dest.mkdir()
        try:
            manifest = extract_archive(bad, dest)
        except PackageError:
            return
        # Only bytes that carry no content may change (gzip header fields, trailer, padding).
        for rel, content in package_parts.files.items():
            assert (dest / rel).read_bytes() == content
        assert manifest == parse(package_parts.manifest)


# --- unsafe entries ---------------------------------------------------------------------------

UNSAFE = {
    "parent traversal": Entry("../evil", b"x"),
    "deep traversal": Entry("a/../../evil", b"x"),
    "traversal inside": Entry("sub/../evil", b"x"),
    "dot segment": Entry("./evil", b"x"),
    "windows drive": Entry("C:evil", b"x"),
    "symlink out": Entry("evil", type=tarfile.SYMTYPE, linkname="/etc/passwd"),
    "symlink in": Entry("evil", type=tarfile.SYMTYPE, linkname="model.onnx"),
    "hardlink": Entry("evil", type=tarfile.LNKTYPE, linkname="model.onnx"),
    "hardlink out": Entry("evil", type=tarfile.LNKTYPE, linkname="/etc/passwd"),
    "char device": Entry("evil", type=tarfile.CHRTYPE, attrs={"devmajor": 1, "devminor": 3}),
    "block device": Entry("evil", type=tarfile.BLKTYPE, attrs={"devmajor": 7, "devminor": 0}),
    "fifo": Entry("evil", type=tarfile.FIFOTYPE),
    "directory": Entry("evil", type=tarfile.DIRTYPE),
}


@pytest.mark.parametrize("where", ["first", "last"])
@pytest.mark.parametrize("case", sorted(UNSAFE))
def test_unsafe_entries_are_refused(
    case: str, where: str, package_parts: Any, tmp_path: Path
) -> None:
    entries = valid_entries(package_parts)
    bad = UNSAFE[case]
    entries = [entries[0], bad, *entries[1:]] if where == "first" else [*entries, bad]
    path = write_tar(tmp_path / "unsafe.mport", entries)
    error = load_error(path, UnsafeArchiveError)
    assert repr(bad.name) in str(error)
    with pytest.raises(UnsafeArchiveError):
        modelport.verify(path)
    assert_nothing_escaped(tmp_path)


def test_absolute_paths_are_refused_and_nothing_is_written_there(
    package_parts: Any, tmp_path: Path
) -> None:
    victim = tmp_path / "victim.txt"
    victim.write_text("original")
    target = tmp_path / "elsewhere" / "evil"
    entries = [
        *valid_entries(package_parts),
        Entry(str(target), b"x"),
        Entry(str(victim), b"overwritten"),
    ]
    path = write_tar(tmp_path / "absolute.mport", entries)
    error = load_error(path, UnsafeArchiveError)
    assert "absolute" in str(error)
    assert not target.parent.exists()
    assert victim.read_text() == "original"


def test_listed_file_replaced_by_a_symlink_is_refused(package_parts: Any, tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("secret")
    entries = [
        Entry(MANIFEST_NAME, package_parts.manifest),
        Entry("example.json", package_parts.files["example.json"]),
        Entry("model.onnx", type=tarfile.SYMTYPE, linkname=str(secret)),
    ]
    load_error(write_tar(tmp_path / "link.mport", entries), UnsafeArchiveError)
    assert secret.read_text() == "secret"


def test_traversal_in_a_pax_header_is_refused(package_parts: Any, tmp_path: Path) -> None:
    # A PAX "path" record overrides the name in the ustar header.
    entries = [
        *valid_entries(package_parts),
        Entry("harmless.txt", b"x", attrs={"pax_headers": {"path": "../evil"}}),
    ]
    path = write_tar(tmp_path / "pax.mport", entries)
    load_error(path, UnsafeArchiveError)
    assert_nothing_escaped(tmp_path)


def test_duplicate_entries_are_refused(package_parts: Any, tmp_path: Path) -> None:
    entries = [*valid_entries(package_parts), Entry("model.onnx", b"second copy")]
    error = load_error(write_tar(tmp_path / "dup.mport", entries), UnsafeArchiveError)
    assert "'model.onnx'" in str(error)
    assert "twice" in str(error)


# --- integrity --------------------------------------------------------------------------------


def test_file_not_listed_in_the_manifest(package_parts: Any, tmp_path: Path) -> None:
    entries = [*valid_entries(package_parts), Entry("payload.sh", b"rm -rf /")]
    path = write_tar(tmp_path / "extra.mport", entries)
    error = load_error(path, IntegrityError)
    assert error.problems == ("extra file (not listed in the manifest): payload.sh",)  # type: ignore[attr-defined]
    report = modelport.verify(path)
    assert not report.ok
    assert report.problems == error.problems  # type: ignore[attr-defined]
    assert list(tmp_path.rglob("payload.sh")) == []


def test_missing_listed_file(package_parts: Any, tmp_path: Path) -> None:
    entries = [e for e in valid_entries(package_parts) if e.name != "model.onnx"]
    error = load_error(write_tar(tmp_path / "missing.mport", entries), IntegrityError)
    assert error.problems == ("missing file: model.onnx",)  # type: ignore[attr-defined]


def test_altered_file(package_parts: Any, tmp_path: Path) -> None:
    entries = [
        Entry(e.name, e.data + b"\0") if e.name == "model.onnx" else e
        for e in valid_entries(package_parts)
    ]
    error = load_error(write_tar(tmp_path / "altered.mport", entries), IntegrityError)
    (problem,) = error.problems  # type: ignore[attr-defined]
    assert problem.startswith("altered file: model.onnx")
    expected = parse(package_parts.manifest).files["model.onnx"]
    assert expected in problem


def test_every_integrity_problem_is_reported_at_once(package_parts: Any, tmp_path: Path) -> None:
    entries = [
        Entry(MANIFEST_NAME, package_parts.manifest),
        Entry("model.onnx", b"not the model"),
        Entry("zz-extra.bin", b"extra"),
    ]
    path = write_tar(tmp_path / "all.mport", entries)
    error = load_error(path, IntegrityError)
    problems = error.problems  # type: ignore[attr-defined]
    assert problems[0] == "missing file: example.json"
    assert problems[1].startswith("altered file: model.onnx")
    assert problems[2] == "extra file (not listed in the manifest): zz-extra.bin"
    assert len(problems) == 3
    assert modelport.verify(path).problems == problems


# --- not a package at all ---------------------------------------------------------------------


def test_archive_without_a_manifest(package_parts: Any, tmp_path: Path) -> None:
    entries = [e for e in valid_entries(package_parts) if e.name != MANIFEST_NAME]
    error = load_error(write_tar(tmp_path / "nomanifest.mport", entries), PackageError)
    assert type(error) is PackageError
    assert MANIFEST_NAME in str(error)


@pytest.mark.parametrize(
    "content",
    [
        b"",
        b"just some text, not gzip",
        gzip.compress(b"gzip, but not a tar" * 50),
        b"\x1f\x8b\x08\x00",
    ],
    ids=["empty", "text", "gzip-not-tar", "gzip-header-only"],
)
def test_not_an_archive(content: bytes, tmp_path: Path) -> None:
    path = tmp_path / "junk.mport"
    path.write_bytes(content)
    error = load_error(path, PackageError)
    assert type(error) is PackageError
    with pytest.raises(PackageError):
        modelport.verify(path)


def test_uncompressed_tar_is_not_an_archive(package_parts: Any, tmp_path: Path) -> None:
    path = tmp_path / "plain.mport"
    with tarfile.open(path, "w") as tar:
        info = tarfile.TarInfo(MANIFEST_NAME)
        info.size = len(package_parts.manifest)
        tar.addfile(info, io.BytesIO(package_parts.manifest))
    assert type(load_error(path, PackageError)) is PackageError


@pytest.mark.parametrize("keep", [0.3, 0.6, 0.9])
def test_truncated_archive(keep: float, pack_tiny: Callable[..., Any], tmp_path: Path) -> None:
    pack_tiny("whole.mport").close()
    data = (tmp_path / "whole.mport").read_bytes()
    path = tmp_path / "truncated.mport"
    path.write_bytes(data[: int(len(data) * keep)])
    error = load_error(path, PackageError)
    assert not isinstance(error, (IntegrityError, UnsafeArchiveError))


def test_invalid_manifest_inside_an_archive(package_parts: Any, tmp_path: Path) -> None:
    raw = json.loads(package_parts.manifest)
    raw["name"] = "not valid!"
    raw["files"]["../evil"] = raw["files"]["model.onnx"]
    entries = [Entry(MANIFEST_NAME, json.dumps(raw).encode()), *valid_entries(package_parts)[1:]]
    error = load_error(write_tar(tmp_path / "badmanifest.mport", entries), ManifestError)
    assert len(error.problems) == 2  # type: ignore[attr-defined]
    assert_nothing_escaped(tmp_path)


def test_newer_major_format_inside_an_archive(package_parts: Any, tmp_path: Path) -> None:
    raw = json.loads(package_parts.manifest)
    raw["format_version"] = "2.0"
    entries = [Entry(MANIFEST_NAME, json.dumps(raw).encode()), *valid_entries(package_parts)[1:]]
    load_error(write_tar(tmp_path / "v2.mport", entries), UnsupportedFormatError)


def test_a_listed_file_that_is_also_a_folder_fails_cleanly(
    package_parts: Any, tmp_path: Path
) -> None:
    # "model.onnx" and "model.onnx/x" cannot both be written: refuse before extracting anything.
    raw = json.loads(package_parts.manifest)
    raw["files"]["model.onnx/x"] = "sha256:" + hashlib.sha256(b"x").hexdigest()
    entries = [
        Entry(MANIFEST_NAME, json.dumps(raw).encode()),
        *valid_entries(package_parts)[1:],
        Entry("model.onnx/x", b"x"),
    ]
    error = load_error(write_tar(tmp_path / "clash.mport", entries), ManifestError)
    assert "'model.onnx/x'" in str(error)


def test_missing_path(tmp_path: Path) -> None:
    error = load_error(tmp_path / "nowhere.mport", PackageError)
    assert "no such file" in str(error)
    with pytest.raises(PackageError):
        modelport.verify(tmp_path / "nowhere.mport")


# --- the extraction directory -----------------------------------------------------------------


def test_loaded_archive_lives_in_a_private_directory_until_closed(
    pack_tiny: Callable[..., Any], private_tempdir: Path, temp_leftovers: Callable[[], list[str]]
) -> None:
    package = pack_tiny("lives.mport")
    root = Path(package.root)
    assert root.parent == private_tempdir
    assert root.name.startswith("modelport-")
    assert sorted(p.name for p in root.iterdir()) == sorted(
        ["example.json", MANIFEST_NAME, "model.onnx"]
    )
    assert file_digest(root / "model.onnx") == package.manifest.files["model.onnx"]
    assert parse((root / MANIFEST_NAME).read_bytes()) == package.manifest
    out = package.predict(np.ones((1, 3), dtype=np.float32))
    assert out["y"].shape == (1, 2)
    package.close()
    assert not root.exists()
    assert temp_leftovers() == []
    package.close()  # closing twice is harmless


def test_context_manager_and_garbage_collection_remove_the_directory(
    pack_tiny: Callable[..., Any], tmp_path: Path
) -> None:
    pack_tiny("ctx.mport").close()
    with modelport.load(tmp_path / "ctx.mport") as package:
        root = Path(package.root)
        assert root.is_dir()
    assert not root.exists()
    package = modelport.load(tmp_path / "ctx.mport")
    root = Path(package.root)
    del package
    gc.collect()
    assert not root.exists()


def test_directory_packages_are_used_in_place(
    pack_tiny: Callable[..., Any], tmp_path: Path
) -> None:
    package = pack_tiny("in-place")
    assert Path(package.root) == tmp_path / "in-place"
    package.close()
    assert (tmp_path / "in-place" / MANIFEST_NAME).is_file()


def test_is_archive(tmp_path: Path) -> None:
    (tmp_path / "file.mport").write_bytes(b"")
    (tmp_path / "dir.mport").mkdir()
    assert is_archive(tmp_path / "file.mport")
    assert is_archive(tmp_path / "new.mport")
    assert not is_archive(tmp_path / "dir.mport")
    assert not is_archive(tmp_path / "new-dir")
    assert not os.path.exists(tmp_path / "new.mport")
