"""The member ``model.sig``: archives carry it, the one unlisted name a package may hold.

These tests are about the container only (any bytes stand in for a bundle); what a signature
says, and whether it verifies, is tested in ``test_signing.py``.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import shutil
import tarfile
from collections.abc import Callable
from pathlib import Path

import onnx
import pytest

import modelport
from modelport.errors import ArchiveLimitError, IntegrityError, PackageError, UnsafeArchiveError
from modelport.model_format.archive import (
    FIXED_MTIME,
    MAX_SIGNATURE_BYTES,
    archive_problems,
    directory_problems,
    extract_archive,
    read_signature_member,
    write_archive,
)
from modelport.model_format.manifest import MANIFEST_NAME, SIGNATURE_NAME, parse
from modelport.model_format.package import open_package, read_manifest, verify

BUNDLE = b'{"mediaType": "application/vnd.dev.sigstore.bundle.v0.3+json"}\n'


@pytest.fixture(scope="module")
def package_dir(
    tmp_path_factory: pytest.TempPathFactory,
    onnx_graphs: dict[str, Callable[[], onnx.ModelProto]],
) -> Path:
    """An unsigned tiny package directory (never modified: tests copy it)."""
    out = tmp_path_factory.mktemp("archive-signature") / "tiny"
    modelport.pack(onnx_graphs["tiny"](), out).close()
    return out


@pytest.fixture
def signed_dir(package_dir: Path, tmp_path: Path) -> Path:
    """A copy of the package with ``model.sig`` beside its manifest."""
    out = tmp_path / "signed"
    shutil.copytree(package_dir, out)
    (out / SIGNATURE_NAME).write_bytes(BUNDLE)
    return out


def _names(archive: Path) -> list[str]:
    with tarfile.open(archive) as tar:
        return tar.getnames()


def _write_tar(
    path: Path, entries: list[tuple[str, bytes]], *, kind: bytes = tarfile.REGTYPE
) -> Path:
    """A gzip tar of ``entries`` in this order; the last one of type ``kind``."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for i, (name, data) in enumerate(entries):
            info = tarfile.TarInfo(name)
            if i == len(entries) - 1 and kind != tarfile.REGTYPE:
                info.type = kind
                info.linkname = MANIFEST_NAME
                tar.addfile(info)
                continue
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    path.write_bytes(gzip.compress(buf.getvalue(), mtime=0))
    return path


def _entries(package_dir: Path) -> list[tuple[str, bytes]]:
    manifest = read_manifest(package_dir)
    return [
        (MANIFEST_NAME, (package_dir / MANIFEST_NAME).read_bytes()),
        *((rel, (package_dir / rel).read_bytes()) for rel in sorted(manifest.files)),
    ]


def test_an_archive_carries_the_signature_last_and_keeps_its_digest(
    package_dir: Path, signed_dir: Path, tmp_path: Path
) -> None:
    manifest = read_manifest(signed_dir)
    unsigned, signed = tmp_path / "unsigned.mport", tmp_path / "signed.mport"
    write_archive(package_dir, manifest, unsigned)
    write_archive(signed_dir, manifest, signed)

    assert _names(signed) == [*_names(unsigned), SIGNATURE_NAME]
    with tarfile.open(signed) as tar:
        member = tar.getmember(SIGNATURE_NAME)
        assert (member.mtime, member.mode, member.uid, member.gid) == (FIXED_MTIME, 0o644, 0, 0)
        assert tar.extractfile(member).read() == BUNDLE  # type: ignore[union-attr]
    assert read_signature_member(signed) == BUNDLE
    assert read_signature_member(unsigned) is None
    assert archive_problems(signed) == (manifest, [])
    assert verify(signed).manifest.digest == verify(unsigned).manifest.digest == manifest.digest


def test_the_same_package_and_signature_give_the_same_archive_bytes(
    signed_dir: Path, tmp_path: Path
) -> None:
    manifest = read_manifest(signed_dir)
    first, second = tmp_path / "a.mport", tmp_path / "b.mport"
    write_archive(signed_dir, manifest, first)
    os.utime(signed_dir / SIGNATURE_NAME, (0, 0))  # the file's own time never reaches the archive
    write_archive(signed_dir, manifest, second)
    assert first.read_bytes() == second.read_bytes()

    (signed_dir / SIGNATURE_NAME).write_bytes(BUNDLE + b" ")
    write_archive(signed_dir, manifest, second)
    assert first.read_bytes() != second.read_bytes()


def test_extraction_keeps_the_signature_where_a_directory_holds_it(
    signed_dir: Path, tmp_path: Path
) -> None:
    manifest = read_manifest(signed_dir)
    archive = tmp_path / "signed.mport"
    write_archive(signed_dir, manifest, archive)

    dest = tmp_path / "out"
    dest.mkdir()
    assert extract_archive(archive, dest) == manifest
    assert (dest / SIGNATURE_NAME).read_bytes() == BUNDLE
    assert directory_problems(dest, manifest) == []
    assert verify(dest).ok
    with open_package(archive) as opened:
        assert (opened.directory / SIGNATURE_NAME).read_bytes() == BUNDLE


def test_a_signature_over_the_size_cap_is_refused_everywhere(
    signed_dir: Path, tmp_path: Path
) -> None:
    manifest = read_manifest(signed_dir)
    big = b"x" * (MAX_SIGNATURE_BYTES + 1)
    (signed_dir / SIGNATURE_NAME).write_bytes(big)

    problems = directory_problems(signed_dir, manifest)
    assert len(problems) == 1
    assert "over the 1.0 MiB a signature may take" in problems[0]
    with pytest.raises(ArchiveLimitError, match="a signature may take"):
        write_archive(signed_dir, manifest, tmp_path / "never.mport")
    assert not (tmp_path / "never.mport").exists()

    archive = _write_tar(tmp_path / "big.mport", [*_entries(signed_dir), (SIGNATURE_NAME, big)])
    with pytest.raises(
        ArchiveLimitError, match=r"big\.mport:model\.sig: the signature is 1\.0 MiB"
    ):
        archive_problems(archive)
    with pytest.raises(ArchiveLimitError):
        read_signature_member(archive)
    dest = tmp_path / "out"
    dest.mkdir()
    with pytest.raises(ArchiveLimitError):
        extract_archive(archive, dest)
    assert not (dest / SIGNATURE_NAME).exists()


def test_a_signature_at_the_cap_is_still_a_signature(signed_dir: Path, tmp_path: Path) -> None:
    (signed_dir / SIGNATURE_NAME).write_bytes(b"x" * MAX_SIGNATURE_BYTES)
    manifest = read_manifest(signed_dir)
    assert directory_problems(signed_dir, manifest) == []
    write_archive(signed_dir, manifest, tmp_path / "at-cap.mport")
    assert archive_problems(tmp_path / "at-cap.mport") == (manifest, [])


def test_a_signature_must_be_a_regular_file(signed_dir: Path, tmp_path: Path) -> None:
    manifest = read_manifest(signed_dir)
    (signed_dir / SIGNATURE_NAME).unlink()
    (signed_dir / SIGNATURE_NAME).symlink_to(signed_dir / MANIFEST_NAME)
    assert directory_problems(signed_dir, manifest) == [
        f"{signed_dir / SIGNATURE_NAME} is a symbolic link; a signature must be a file"
    ]
    with pytest.raises(PackageError, match="symbolic link"):
        write_archive(signed_dir, manifest, tmp_path / "never.mport")

    (signed_dir / SIGNATURE_NAME).unlink()
    (signed_dir / SIGNATURE_NAME).mkdir()
    assert any("not a regular file" in p for p in directory_problems(signed_dir, manifest))

    archive = _write_tar(
        tmp_path / "link.mport",
        [*_entries(signed_dir), (SIGNATURE_NAME, b"")],
        kind=tarfile.SYMTYPE,
    )
    with pytest.raises(UnsafeArchiveError, match=r"'model\.sig' is a link"):
        archive_problems(archive)


@pytest.mark.parametrize("name", ["model.sig.bak", "sub/model.sig", "MODEL.SIG", "tiny.sig"])
def test_any_other_unlisted_file_is_still_refused(
    signed_dir: Path, tmp_path: Path, name: str
) -> None:
    manifest = read_manifest(signed_dir)
    target = signed_dir / name
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(BUNDLE)
    assert directory_problems(signed_dir, manifest) == [
        f"extra file (not listed in the manifest): {name}"
    ]

    archive = _write_tar(tmp_path / "extra.mport", [*_entries(signed_dir), (name, BUNDLE)])
    assert archive_problems(archive)[1] == [f"extra file (not listed in the manifest): {name}"]
    dest = tmp_path / "out"
    dest.mkdir()
    with pytest.raises(IntegrityError, match="extra file"):
        extract_archive(archive, dest)


def test_the_signature_is_read_wherever_it_lies_after_the_manifest(
    signed_dir: Path, tmp_path: Path
) -> None:
    entries = _entries(signed_dir)
    archive = _write_tar(
        tmp_path / "early.mport", [entries[0], (SIGNATURE_NAME, BUNDLE), *entries[1:]]
    )
    assert archive_problems(archive)[1] == []
    assert read_signature_member(archive) == BUNDLE
    twice = _write_tar(
        tmp_path / "twice.mport", [*entries, (SIGNATURE_NAME, BUNDLE), (SIGNATURE_NAME, BUNDLE)]
    )
    with pytest.raises(UnsafeArchiveError, match="appears twice"):
        archive_problems(twice)


def test_a_package_that_lists_a_file_named_model_sig_keeps_it_as_a_file(
    package_dir: Path, tmp_path: Path
) -> None:
    # A model file of that name predates signatures: it is part of the package, never a bundle.
    pkg = tmp_path / "own"
    shutil.copytree(package_dir, pkg)
    (pkg / SIGNATURE_NAME).write_bytes(b"weights")
    raw = parse((pkg / MANIFEST_NAME).read_bytes()).to_dict()
    raw["files"][SIGNATURE_NAME] = "sha256:" + hashlib.sha256(b"weights").hexdigest()
    manifest = parse(json.dumps(raw).encode())
    (pkg / MANIFEST_NAME).write_bytes(manifest.to_json())
    assert directory_problems(pkg, manifest) == []

    archive = tmp_path / "own.mport"
    write_archive(pkg, manifest, archive)
    assert _names(archive).count(SIGNATURE_NAME) == 1
    assert read_signature_member(archive) is None
    (pkg / SIGNATURE_NAME).write_bytes(b"other")
    assert directory_problems(pkg, manifest) == [
        f"altered file: {SIGNATURE_NAME} (expected {manifest.files[SIGNATURE_NAME]}, found "
        f"sha256:{hashlib.sha256(b'other').hexdigest()})"
    ]
