"""Hostile archives cost at most what the limits allow: refused from their headers, quickly.

Each archive here is crafted byte by byte (``hostile_archives``): sparse members, gzip bombs,
huge pax headers and manifests, many entries, data hidden after the last entry. Every refusal
must come before the bytes in question are inflated: each test bounds its time and the memory
Python allocates meanwhile.
"""

from __future__ import annotations

import gc
import hashlib
import json
import os
import tempfile
import time
import tracemalloc
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

import modelport
from hostile_archives import (
    END,
    GIB,
    MIB,
    TIB,
    Part,
    Zeros,
    entry,
    gnu_sparse_entry,
    gzip_parts,
    huge_entry,
    many_entries,
    pax_bomb,
    pax_sparse_entry,
)
from modelport.errors import (
    ArchiveLimitError,
    EnvironmentProblem,
    IntegrityError,
    PackageError,
    UnsafeArchiveError,
    UsageError,
)
from modelport.model_format.archive import archive_problems, extract_archive
from modelport.model_format.limits import DEFAULT_LIMITS, ArchiveLimits
from modelport.model_format.manifest import MANIFEST_NAME
from process_helpers import run_with_file_size_limit

#: Raised ratio and size limits: what is left to refuse a member is the check under test.
NO_RATIO = ArchiveLimits(max_ratio=1e9, max_expanded_mb=1e9)


@pytest.fixture(autouse=True)
def sandbox(private_tempdir: Path, temp_leftovers: Callable[[], list[str]]) -> Iterator[Path]:
    """A private temporary directory; no extraction directory may be left in it."""
    yield private_tempdir
    gc.collect()
    assert temp_leftovers() == []


@contextmanager
def bounded(seconds: float = 3.0, megabytes: float = 32.0) -> Iterator[None]:
    """The block must finish within ``seconds`` and allocate at most ``megabytes`` at once."""
    tracemalloc.start()
    start = time.perf_counter()
    try:
        yield
    finally:
        elapsed = time.perf_counter() - start
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    assert elapsed < seconds, f"took {elapsed:.1f} s"
    assert peak < megabytes * MIB, f"allocated {peak / MIB:.0f} MiB"


def write(path: Path, parts: Sequence[Part], *, checksum: bool = True) -> Path:
    path.write_bytes(gzip_parts(parts, checksum=checksum))
    return path


def manifest(parts: Any) -> bytes:
    return entry(MANIFEST_NAME, parts.manifest)


def listed(parts: Any, *, without: str = "") -> list[Part]:
    return [entry(name, data) for name, data in sorted(parts.files.items()) if name != without]


def refused(path: Path, expected: type[Exception], limits: ArchiveLimits = DEFAULT_LIMITS) -> str:
    """Refused the same way by verify() and load(), within the bounds; the message."""
    with bounded(), pytest.raises(expected) as verified:
        modelport.verify(path, limits=limits)
    with bounded(), pytest.raises(expected) as loaded:
        modelport.load(path, limits=limits)
    assert str(verified.value) == str(loaded.value)
    return str(verified.value)


# --- sparse members ---------------------------------------------------------------------------

SPARSE = {
    "gnu": lambda: gnu_sparse_entry("model.onnx", TIB),
    "pax-0.1": lambda: pax_sparse_entry("model.onnx", TIB, "0.1"),
    "pax-1.0": lambda: pax_sparse_entry("model.onnx", TIB, "1.0"),
}


@pytest.mark.parametrize("form", sorted(SPARSE))
def test_a_listed_sparse_member_is_refused_from_its_header(
    form: str, package_parts: Any, tmp_path: Path
) -> None:
    # One stored byte standing for a terabyte: verify would hash it, load would write it out.
    parts = [manifest(package_parts), SPARSE[form](), *listed(package_parts, without="model.onnx")]
    path = write(tmp_path / "sparse.mport", [*parts, END])
    assert path.stat().st_size < 3000
    message = refused(path, UnsafeArchiveError)
    assert message == "archive entry 'model.onnx' is a sparse file; refusing it"


# --- expanded size and ratio ------------------------------------------------------------------


@pytest.fixture
def zero_bomb(package_parts: Any, tmp_path: Path) -> Path:
    """A 4 MiB archive whose model.onnx is 4 GiB of zeros (the trailer's CRC is not computed:
    a reader that got to the end would call it damaged instead)."""
    parts = [manifest(package_parts), *huge_entry("model.onnx", 4 * GIB), END]
    return write(tmp_path / "bomb.mport", parts, checksum=False)


def test_a_gzip_bomb_is_refused_by_the_ratio_before_it_is_inflated(zero_bomb: Path) -> None:
    message = refused(zero_bomb, ArchiveLimitError)
    assert "archive entry 'model.onnx' (4.0 GiB) would expand the 4.1 MiB archive" in message
    assert "1,011 times its size" in message
    assert "at most 100 times" in message
    assert message.endswith("(--max-ratio)")


def test_a_member_past_the_expanded_size_limit_is_refused_from_its_header(
    zero_bomb: Path,
) -> None:
    limits = ArchiveLimits(max_ratio=1e6, max_expanded_mb=1024)
    message = refused(zero_bomb, ArchiveLimitError, limits)
    assert "archive entry 'model.onnx' (4.0 GiB) would expand the archive to 4.0 GiB" in message
    assert message.endswith("over the 1024 MiB limit (--max-expanded-mb)")
    with pytest.raises(ArchiveLimitError) as excinfo:
        modelport.verify(zero_bomb, limits=limits)
    assert "--max-expanded-mb" in (excinfo.value.hint or "")


def test_small_highly_compressible_packages_are_not_held_to_the_ratio(
    package_parts: Any, tmp_path: Path
) -> None:
    # 100 MiB of zeros (an untrained model, say) in a 100 KiB archive: 1,000:1, under 256 MiB.
    raw = json.loads(package_parts.manifest)
    raw["files"]["zeros.bin"] = "sha256:" + hashlib.sha256(bytes(100 * MIB)).hexdigest()
    parts = [
        entry(MANIFEST_NAME, json.dumps(raw).encode()),
        *listed(package_parts),
        *huge_entry("zeros.bin", 100 * MIB),
        END,
    ]
    path = write(tmp_path / "zeros.mport", parts)
    assert path.stat().st_size < 200_000
    assert modelport.verify(path).ok


def test_zeros_hidden_after_the_last_entry_are_not_inflated(
    package_parts: Any, tmp_path: Path
) -> None:
    # A valid archive (the CRC is right) whose tar stream goes on with 256 MiB of zeros that no
    # header mentions: gzip's trailer is only reached by inflating them all.
    parts = [manifest(package_parts), *listed(package_parts), END, Zeros(256 * MIB)]
    path = write(tmp_path / "trailing.mport", parts)
    message = refused(path, PackageError)
    assert message.endswith("damaged archive (more than 1.0 MiB of data after its last entry)")


def test_a_huge_pax_header_is_refused_before_it_is_read(package_parts: Any, tmp_path: Path) -> None:
    # tarfile reads a pax header into memory whole: 512 MiB here.
    parts = [manifest(package_parts), *pax_bomb(512 * MIB), *listed(package_parts), END]
    path = write(tmp_path / "pax.mport", parts, checksum=False)
    message = refused(path, UnsafeArchiveError)
    assert "a tar header near byte" in message
    assert "is over 1.0 MiB (pax records, a long name or a sparse map)" in message


# --- entries and the manifest -----------------------------------------------------------------


def test_too_many_entries_are_refused_without_reading_them_all(
    package_parts: Any, tmp_path: Path
) -> None:
    parts = [manifest(package_parts), *listed(package_parts), many_entries(5000), END]
    path = write(tmp_path / "many.mport", parts)
    limits = ArchiveLimits(max_entries=100)
    message = refused(path, ArchiveLimitError, limits)
    assert message.endswith("the archive holds more than 100 entries (--max-entries)")
    assert DEFAULT_LIMITS.max_entries == 10_000
    assert modelport.verify(path, limits=ArchiveLimits(max_entries=5003)).problems[0] == (
        "extra file (not listed in the manifest): f0"
    )


def test_a_huge_manifest_is_refused_from_its_header(tmp_path: Path) -> None:
    path = write(tmp_path / "manifest.mport", [*huge_entry(MANIFEST_NAME, 500 * MIB), END])
    message = refused(path, ArchiveLimitError)
    assert message == (
        f"{path}:{MANIFEST_NAME}: the manifest is 500.0 MiB, over the 16 MiB limit "
        "(--max-manifest-mb)"
    )


def test_a_huge_directory_manifest_is_refused_before_it_is_read(
    pack_tiny: Callable[..., Any], tmp_path: Path
) -> None:
    pack_tiny("big-manifest").close()
    manifest_path = tmp_path / "big-manifest" / MANIFEST_NAME
    os.truncate(manifest_path, 17 * MIB)  # sparse on disk: cheap to make
    message = refused(tmp_path / "big-manifest", ArchiveLimitError)
    assert message.endswith("the manifest is 17.0 MiB, over the 16 MiB limit (--max-manifest-mb)")
    small = ArchiveLimits(max_manifest_mb=0.0001)
    pack_tiny("small-limit").close()
    with pytest.raises(ArchiveLimitError, match=r"over the 0\.0001 MiB limit"):
        modelport.verify(tmp_path / "small-limit", limits=small)


def test_the_manifest_must_come_first(package_parts: Any, tmp_path: Path) -> None:
    parts = [*listed(package_parts), manifest(package_parts), END]
    message = refused(write(tmp_path / "late.mport", parts), PackageError)
    assert f"does not start with {MANIFEST_NAME} (its first entry is 'example.json')" in message


# --- unlisted members -------------------------------------------------------------------------


def test_a_large_unlisted_member_before_the_listed_ones_is_never_inflated(
    package_parts: Any, tmp_path: Path
) -> None:
    # 8 GiB that no limit stops: only being unlisted refuses it, from its header.
    parts = [manifest(package_parts), *huge_entry("aaa.bin", 8 * GIB), *listed(package_parts)]
    path = write(tmp_path / "unlisted.mport", [*parts, END], checksum=False)
    expected = (
        "extra file (not listed in the manifest): aaa.bin",
        "not checked: the entries after aaa.bin, an unlisted file of 8.0 GiB",
    )
    with bounded():
        assert modelport.verify(path, limits=NO_RATIO).problems == expected
    with bounded(), pytest.raises(IntegrityError) as excinfo:
        modelport.load(path, limits=NO_RATIO)
    assert excinfo.value.problems == expected


def test_a_small_unlisted_member_is_reported_with_every_other_problem(
    package_parts: Any, tmp_path: Path
) -> None:
    parts = [manifest(package_parts), entry("payload.sh", b"rm -rf /"), *listed(package_parts)]
    parts = [p for p in parts if p != entry("example.json", package_parts.files["example.json"])]
    report = modelport.verify(write(tmp_path / "small.mport", [*parts, END]))
    assert report.problems == (
        "missing file: example.json",
        "extra file (not listed in the manifest): payload.sh",
    )


# --- what still passes ------------------------------------------------------------------------


def test_a_real_package_passes_the_default_and_tight_limits(
    pack_tiny: Callable[..., Any], tmp_path: Path
) -> None:
    pack_tiny("ok.mport").close()
    path = tmp_path / "ok.mport"
    tight = ArchiveLimits(max_entries=3, max_expanded_mb=0.1, max_manifest_mb=0.01, max_ratio=1)
    assert modelport.verify(path).ok
    assert modelport.verify(path, limits=tight).ok
    with modelport.load(path, limits=tight) as package:
        assert package.manifest.files.keys() == {"model.onnx", "example.json"}
    with pytest.raises(ArchiveLimitError, match="more than 2 entries"):
        modelport.verify(path, limits=ArchiveLimits(max_entries=2))


@pytest.mark.parametrize(
    "field", ["max_expanded_mb", "max_entries", "max_manifest_mb", "max_ratio"]
)
@pytest.mark.parametrize("value", [0, -1, True, "1"])
def test_limits_must_be_positive_numbers(field: str, value: Any) -> None:
    with pytest.raises(UsageError, match=f"ArchiveLimits.{field} must be a positive number"):
        ArchiveLimits(**{field: value})


# --- directory packages -----------------------------------------------------------------------


def test_a_symlinked_directory_manifest_is_refused(
    pack_tiny: Callable[..., Any], tmp_path: Path
) -> None:
    # The link points at the package's own (valid) manifest, moved outside: still refused.
    pack_tiny("linked").close()
    root = tmp_path / "linked"
    outside = tmp_path / "elsewhere.json"
    (root / MANIFEST_NAME).rename(outside)
    (root / MANIFEST_NAME).symlink_to(outside)
    message = refused(root, PackageError)
    assert message == (
        f"{root / MANIFEST_NAME} is a symbolic link; a package's manifest must be a file in it"
    )


# --- the environment --------------------------------------------------------------------------


def test_no_writable_temporary_directory_is_an_environment_problem(
    pack_tiny: Callable[..., Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pack_tiny("env.mport").close()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "no-such-dir"))
    with pytest.raises(EnvironmentProblem) as excinfo:
        modelport.load(tmp_path / "env.mport")
    assert str(excinfo.value).startswith("no writable temporary directory (")
    assert "set TMPDIR to a writable directory" in (excinfo.value.hint or "")
    assert excinfo.value.exit_code == 1


def test_extracting_over_a_file_size_limit_is_an_environment_problem(
    pack_tiny: Callable[..., Any], tmp_path: Path
) -> None:
    pack_tiny("big.mport").close()
    dest = tmp_path / "dest"
    dest.mkdir()
    result = run_with_file_size_limit(
        f"""
        from pathlib import Path
        from modelport.errors import EnvironmentProblem
        from modelport.model_format.archive import extract_archive
        try:
            extract_archive(Path({str(tmp_path / "big.mport")!r}), Path({str(dest)!r}))
        except EnvironmentProblem as exc:
            print(exc)
            print(exc.hint)
        """,
        check=True,
    )
    message, hint = result.stdout.splitlines()
    assert message == (
        f"disk full while extracting {tmp_path / 'big.mport'} into {dest} (File too large)"
    )
    assert hint == "free space there, or set TMPDIR to a directory with room for the package"


def test_archive_functions_take_the_limits(package_parts: Any, tmp_path: Path) -> None:
    path = write(tmp_path / "ok.mport", [manifest(package_parts), *listed(package_parts), END])
    two = ArchiveLimits(max_entries=2)
    with pytest.raises(ArchiveLimitError):
        archive_problems(path, two)
    dest = tmp_path / "dest"
    dest.mkdir()
    with pytest.raises(ArchiveLimitError):
        extract_archive(path, dest, two)
    assert list(dest.iterdir()) == []
