"""The archive limits and environment errors through the CLI: flags, messages, exit codes."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from hostile_archives import END, TIB, entry, gnu_sparse_entry, gzip_parts
from modelport.cli.main import main
from modelport.model_format.manifest import MANIFEST_NAME
from process_helpers import run_with_file_size_limit

LIMIT_FLAGS = ("--max-expanded-mb", "--max-entries", "--max-manifest-mb", "--max-ratio")


@pytest.fixture
def package(pack_tiny: Callable[..., Any], tmp_path: Path) -> Path:
    pack_tiny("tiny.mport").close()
    return tmp_path / "tiny.mport"


@pytest.fixture
def inputs(tmp_path: Path) -> Path:
    path = tmp_path / "inputs.json"
    path.write_text(json.dumps({"inputs": {"x": [[1.0, 2.0, 3.0]]}}))
    return path


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    """Run the CLI in-process: its exit status and what it wrote to stderr."""
    code = main(list(args))
    return code, capsys.readouterr().err


@pytest.mark.parametrize("command", ["verify", "inspect", "predict"])
def test_every_limit_is_a_flag_of_the_package_commands(
    command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([command, "--help"]) == 0
    shown = capsys.readouterr().out
    for flag in LIMIT_FLAGS:
        assert flag in shown


@pytest.mark.parametrize("command", ["verify", "inspect", "predict"])
def test_a_package_over_a_limit_exits_4_naming_the_flag(
    command: str, package: Path, inputs: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    extra = ["-i", str(inputs)] if command == "predict" else []
    code, err = cli(capsys, command, str(package), *extra, "--max-entries", "2")
    assert code == 4
    assert f"{package}: the archive holds more than 2 entries (--max-entries)" in err
    assert "hint: if you trust this package, raise the limit with --max-entries" in err
    assert "bug" not in err


def test_limits_come_from_the_environment_too(
    package: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MODELPORT_MAX_MANIFEST_MB", "0.0001")
    code, err = cli(capsys, "verify", str(package))
    assert code == 4
    assert "over the 0.0001 MiB limit (--max-manifest-mb)" in err
    code, _ = cli(capsys, "verify", str(package), "--max-manifest-mb", "1")
    assert code == 0


def test_tight_limits_still_pass_a_real_package(
    package: Path, inputs: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tight = ["--max-entries", "3", "--max-expanded-mb", "0.1", "--max-ratio", "1"]
    assert cli(capsys, "verify", str(package), *tight)[0] == 0
    assert cli(capsys, "inspect", str(package), *tight)[0] == 0
    assert main(["predict", str(package), "-i", str(inputs), *tight]) == 0
    assert json.loads(capsys.readouterr().out)["predictions"]


@pytest.mark.parametrize("flag", LIMIT_FLAGS)
def test_a_limit_must_be_positive(
    flag: str, package: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, err = cli(capsys, "verify", str(package), flag, "0")
    assert code == 2
    assert flag in err


def test_a_sparse_archive_exits_4(
    pack_tiny: Callable[..., Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pack_tiny("source").close()
    manifest = (tmp_path / "source" / MANIFEST_NAME).read_bytes()
    path = tmp_path / "sparse.mport"
    parts = [entry(MANIFEST_NAME, manifest), gnu_sparse_entry("model.onnx", TIB)]
    path.write_bytes(gzip_parts([*parts, END]))
    code, err = cli(capsys, "verify", str(path))
    assert (code, err) == (4, "Error: archive entry 'model.onnx' is a sparse file; refusing it\n")


def test_a_symlinked_manifest_exits_4(
    pack_tiny: Callable[..., Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pack_tiny("linked").close()
    manifest = tmp_path / "linked" / MANIFEST_NAME
    manifest.rename(tmp_path / "outside.json")
    manifest.symlink_to(tmp_path / "outside.json")
    for command in ("verify", "inspect"):
        code, err = cli(capsys, command, str(tmp_path / "linked"))
        assert code == 4
        assert f"Error: {manifest} is a symbolic link" in err


# --- the environment --------------------------------------------------------------------------


def test_no_writable_temporary_directory_exits_1_and_says_what_to_fix(
    package: Path,
    inputs: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # What tempfile has settled on is gone (TMPDIR removed, or a read-only root filesystem).
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "removed"))
    code, err = cli(capsys, "predict", str(package), "-i", str(inputs))
    assert code == 1
    assert err.startswith("Error: no writable temporary directory (")
    assert "  hint: set TMPDIR to a writable directory with room for the package" in err
    assert "bug" not in err


def test_a_full_disk_while_extracting_exits_1_and_leaves_nothing(
    package: Path, inputs: Path, tmp_path: Path
) -> None:
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    result = run_with_file_size_limit(
        f"""
        import sys
        from modelport.cli.main import main
        sys.exit(main(["predict", {str(package)!r}, "-i", {str(inputs)!r}]))
        """,
        env={**os.environ, "TMPDIR": str(scratch)},
    )
    assert result.returncode == 1, result.stderr
    assert result.stderr.startswith(f"Error: disk full while extracting {package} into {scratch}/")
    assert "(File too large)" in result.stderr
    assert "hint: free space there, or set TMPDIR to a directory with room" in result.stderr
    assert "bug" not in result.stderr
    assert list(scratch.iterdir()) == []
