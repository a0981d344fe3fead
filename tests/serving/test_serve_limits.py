"""``modelport serve`` applies the archive limits before any worker starts, and leaves nothing."""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from hostile_archives import END, TIB, entry, gnu_sparse_entry, gzip_parts
from modelport.errors import (
    ArchiveLimitError,
    EnvironmentProblem,
    PackageError,
    UnsafeArchiveError,
)
from modelport.model_format.limits import DEFAULT_LIMITS, ArchiveLimits
from modelport.model_format.manifest import MANIFEST_NAME
from modelport.serving.config import ServeConfig
from modelport.serving.options import SERVE_OPTIONS, parse_args, serve_config
from modelport.serving.server import prepared_package

LIMITS = {
    "max_expanded_mb": ("--max-expanded-mb", "MODELPORT_MAX_EXPANDED_MB", "2048"),
    "max_entries": ("--max-entries", "MODELPORT_MAX_ENTRIES", "7"),
    "max_manifest_mb": ("--max-manifest-mb", "MODELPORT_MAX_MANIFEST_MB", "0.5"),
    "max_ratio": ("--max-ratio", "MODELPORT_MAX_RATIO", "20"),
}


@pytest.fixture
def archive(pack_tiny: Callable[..., Any], tmp_path: Path) -> Path:
    pack_tiny("tiny.mport").close()
    return tmp_path / "tiny.mport"


def serve_leftovers(root: Path) -> list[str]:
    return sorted(p.name for p in root.glob("modelport-*"))


def test_each_limit_is_a_serve_option_with_its_environment_variable(archive: Path) -> None:
    by_name = {option.name: option for option in SERVE_OPTIONS}
    for name, (flag, env, _) in LIMITS.items():
        assert (by_name[name].flag, by_name[name].env) == (flag, env)
        assert by_name[name].default == getattr(DEFAULT_LIMITS, name)
    argv = [arg for flag, _, value in LIMITS.values() for arg in (flag, value)]
    from_flags = serve_config(str(archive), parse_args(argv, {}), {}).archive_limits
    env = {env: value for _, env, value in LIMITS.values()}
    from_env = serve_config(str(archive), parse_args([], env), {}).archive_limits
    expected = ArchiveLimits(max_expanded_mb=2048, max_entries=7, max_manifest_mb=0.5, max_ratio=20)
    assert from_flags == from_env == expected
    assert serve_config(str(archive), parse_args([], {}), {}).archive_limits == DEFAULT_LIMITS


def test_an_archive_over_a_limit_is_refused_before_serving(
    archive: Path, private_tempdir: Path
) -> None:
    config = ServeConfig(package=archive, archive_limits=ArchiveLimits(max_entries=2))
    with (
        pytest.raises(ArchiveLimitError, match=r"more than 2 entries \(--max-entries\)"),
        prepared_package(config),
    ):
        pytest.fail("served a package over the limit")
    assert serve_leftovers(private_tempdir) == []


def test_a_sparse_archive_writes_nothing_to_the_temporary_directory(
    pack_tiny: Callable[..., Any], tmp_path: Path, private_tempdir: Path
) -> None:
    pack_tiny("source").close()
    manifest = (tmp_path / "source" / MANIFEST_NAME).read_bytes()
    path = tmp_path / "sparse.mport"
    path.write_bytes(
        gzip_parts([entry(MANIFEST_NAME, manifest), gnu_sparse_entry("model.onnx", TIB), END])
    )
    with (
        pytest.raises(UnsafeArchiveError, match="is a sparse file"),
        prepared_package(ServeConfig(package=path)),
    ):
        pytest.fail("served a sparse package")
    assert serve_leftovers(private_tempdir) == []


def test_a_directory_package_with_a_symlinked_manifest_is_refused(
    pack_tiny: Callable[..., Any], tmp_path: Path
) -> None:
    pack_tiny("linked").close()
    manifest = tmp_path / "linked" / MANIFEST_NAME
    manifest.rename(tmp_path / "outside.json")
    manifest.symlink_to(tmp_path / "outside.json")
    with (
        pytest.raises(PackageError, match="is a symbolic link"),
        prepared_package(ServeConfig(package=tmp_path / "linked")),
    ):
        pytest.fail("served a package whose manifest is a link")


def test_no_writable_temporary_directory_is_an_environment_problem(
    archive: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "removed"))
    with (
        pytest.raises(EnvironmentProblem, match="no writable temporary directory") as excinfo,
        prepared_package(ServeConfig(package=archive)),
    ):
        pytest.fail("served without a temporary directory")
    assert excinfo.value.exit_code == 1
    assert "TMPDIR" in (excinfo.value.hint or "")
