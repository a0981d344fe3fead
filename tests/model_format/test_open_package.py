"""``open_package``: the one way from a path to a verified package directory; ``code_allowed``.

Every package here is real (packed by modelport, or self-consistent and hostile in one way), and
each test runs with a private temporary directory that must be empty again afterwards.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from onnx import TensorProto, helper

import modelport
from hostile_archives import END, entry, gzip_parts
from modelport.errors import (
    CodeExecutionRefused,
    DigestMismatch,
    IntegrityError,
    PackageError,
    UsageError,
)
from modelport.model_format.archive import file_digest, write_archive
from modelport.model_format.manifest import MANIFEST_NAME, Flavor, Manifest
from modelport.model_format.package import (
    ALLOW_CODE_ENV,
    OpenedPackage,
    code_allowed,
    open_package,
    read_manifest,
)
from modelport.model_format.signature import Signature, TensorSpec

OTHER = "sha256:" + "0" * 64


@pytest.fixture(autouse=True)
def sandbox(
    monkeypatch: pytest.MonkeyPatch,
    private_tempdir: Path,
    temp_leftovers: Callable[[], list[str]],
) -> Iterator[None]:
    """No opt-in from the caller's environment; no extraction directory left behind."""
    monkeypatch.delenv(ALLOW_CODE_ENV, raising=False)
    monkeypatch.delenv("MODELPORT_TEST_IMPORT_MARKER", raising=False)
    yield
    assert temp_leftovers() == []


@pytest.fixture
def tiny_dir(pack_tiny: Callable[..., Any], tmp_path: Path) -> Path:
    pack_tiny("tiny").close()
    return tmp_path / "tiny"


@pytest.fixture
def tiny_archive(pack_tiny: Callable[..., Any], tmp_path: Path) -> Path:
    pack_tiny("tiny.mport").close()
    return tmp_path / "tiny.mport"


@pytest.fixture
def python_archive(python_model: Any, tmp_path: Path) -> Path:
    modelport.pack(
        python_model.source,
        tmp_path / "py.mport",
        example=python_model.example,
        artifacts=[python_model.artifact],
    ).close()
    return tmp_path / "py.mport"


def listing(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*"))


# --- a directory and an archive ---------------------------------------------------------------


def test_a_directory_is_verified_in_place(tiny_dir: Path, temp_leftovers: Any) -> None:
    with open_package(tiny_dir) as opened:
        assert isinstance(opened, OpenedPackage)
        assert opened.source == opened.directory == tiny_dir
        assert not opened.extracted
        assert opened.manifest == modelport.verify(tiny_dir).manifest
        assert temp_leftovers() == []  # nothing extracted, nothing created
    assert (tiny_dir / MANIFEST_NAME).is_file()  # the caller's directory is left alone


def test_an_archive_is_extracted_into_a_temporary_directory_removed_on_exit(
    tiny_archive: Path, tiny_dir: Path, private_tempdir: Path
) -> None:
    with open_package(str(tiny_archive)) as opened:
        assert opened.source == tiny_archive and opened.extracted
        assert opened.directory.parent == private_tempdir
        assert opened.directory.name.startswith("modelport-")
        assert listing(opened.directory) == listing(tiny_dir)
        assert opened.manifest.digest == modelport.verify(tiny_archive).manifest.digest
        extracted = opened.directory
    assert not extracted.exists()


def test_the_temporary_directory_is_removed_when_the_caller_fails(tiny_archive: Path) -> None:
    extracted: list[Path] = []

    def fail_inside() -> None:
        with open_package(tiny_archive) as opened:
            extracted.append(opened.directory)
            raise RuntimeError("the caller failed")

    with pytest.raises(RuntimeError, match="the caller failed"):
        fail_inside()
    assert extracted and not extracted[0].exists()


def test_an_archive_can_be_extracted_into_a_directory_the_caller_keeps(
    tiny_archive: Path, tiny_dir: Path, tmp_path: Path, temp_leftovers: Any
) -> None:
    into = tmp_path / "into"
    into.mkdir()
    with open_package(tiny_archive, extract_into=into) as opened:
        assert opened.directory == into and opened.extracted
        assert temp_leftovers() == []
    assert listing(into) == listing(tiny_dir)  # kept: it is the caller's
    # A directory is still verified in place: nothing is written into the caller's directory.
    empty = tmp_path / "empty"
    empty.mkdir()
    with open_package(tiny_dir, extract_into=empty) as opened:
        assert opened.directory == tiny_dir
    assert listing(empty) == []


def test_a_missing_path_is_a_package_error(tmp_path: Path) -> None:
    with (
        pytest.raises(PackageError, match="no such file or directory"),
        open_package(tmp_path / "nothing.mport"),
    ):
        pytest.fail("opened a package that does not exist")


def test_a_tampered_archive_is_refused_and_leaves_nothing(
    package_parts: Any, tmp_path: Path
) -> None:
    path = tmp_path / "tampered.mport"
    path.write_bytes(
        gzip_parts(
            [
                entry(MANIFEST_NAME, package_parts.manifest),
                entry("example.json", package_parts.files["example.json"]),
                entry("model.onnx", b"not the model the manifest names"),
                END,
            ]
        )
    )
    with pytest.raises(IntegrityError, match=r"model\.onnx"), open_package(path):
        pytest.fail("opened a tampered archive")


def test_a_tampered_directory_is_refused(tiny_dir: Path) -> None:
    (tiny_dir / "extra.txt").write_text("not listed")
    with pytest.raises(IntegrityError, match=r"extra\.txt"), open_package(tiny_dir):
        pytest.fail("opened a directory with an unlisted file")


# --- what an ONNX model may refer to ----------------------------------------------------------


def _reads_outside(root: Path) -> Path:
    """A self-consistent package whose model reads its weights from ``../secret.bin``."""
    weights = TensorProto(name="W", data_type=TensorProto.INT32, dims=[4])
    weights.data_location = TensorProto.EXTERNAL
    location = weights.external_data.add()
    location.key, location.value = "location", "../secret.bin"
    graph = helper.make_graph(
        [helper.make_node("Add", ["X", "W"], ["Y"])],
        "adder",
        [helper.make_tensor_value_info("X", TensorProto.INT32, [4])],
        [helper.make_tensor_value_info("Y", TensorProto.INT32, [4])],
        initializer=[weights],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    root.mkdir()
    (root / "model.onnx").write_bytes(model.SerializeToString())
    manifest = Manifest(
        name="hostile",
        version="1",
        flavor=Flavor("onnx", {"model": "model.onnx"}),
        signature=Signature((TensorSpec("X", "int32", (4,)),), (TensorSpec("Y", "int32", (4,)),)),
        files={"model.onnx": file_digest(root / "model.onnx")},
    )
    (root / MANIFEST_NAME).write_bytes(manifest.to_json())
    (root.parent / "secret.bin").write_bytes(b"TOPSECRET-BYTES!")
    return root


def test_a_model_reading_files_outside_the_package_is_refused_both_ways(tmp_path: Path) -> None:
    root = _reads_outside(tmp_path / "hostile")
    archive = tmp_path / "hostile.mport"
    write_archive(root, read_manifest(root), archive)
    for source in (root, archive):
        with pytest.raises(IntegrityError, match=r"secret\.bin"), open_package(source):
            pytest.fail(f"opened {source}, whose model reads a file outside it")


# --- the digest pin ---------------------------------------------------------------------------


@pytest.mark.parametrize("form", ["tiny", "tiny.mport"])
def test_the_pinned_digest_is_checked(
    form: str, pack_tiny: Callable[..., Any], tmp_path: Path
) -> None:
    digest = pack_tiny(form).digest
    with open_package(tmp_path / form, expected_digest=digest) as opened:
        assert opened.manifest.digest == digest
    with (
        pytest.raises(DigestMismatch) as info,
        open_package(tmp_path / form, expected_digest=OTHER),
    ):
        pytest.fail("opened a package that is not the pinned one")
    assert info.value.exit_code == 4 and digest in str(info.value)
    with pytest.raises(UsageError), open_package(tmp_path / form, expected_digest="sha256:abc"):
        pytest.fail("accepted a malformed digest")


# --- allow-code -------------------------------------------------------------------------------


def test_reading_a_code_package_needs_no_opt_in(python_archive: Path) -> None:
    # allow_code=None: the caller reads the files and runs nothing (verify, build an image).
    with open_package(python_archive) as opened:
        assert opened.manifest.flavor.runs_code
        assert (opened.directory / "code" / "scaler_model.py").is_file()


def test_running_a_code_package_needs_the_opt_in(
    python_archive: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    marker = tmp_path / "imported.txt"
    monkeypatch.setenv("MODELPORT_TEST_IMPORT_MARKER", str(marker))
    for value in (None, "0", "true"):  # only "1" opts in
        if value is not None:
            monkeypatch.setenv(ALLOW_CODE_ENV, value)
        with (
            pytest.raises(CodeExecutionRefused, match=r"'python' flavor package .*py\.mport"),
            open_package(python_archive, allow_code=False),
        ):
            pytest.fail("opened a code package to run without the opt-in")
    with open_package(python_archive, allow_code=True) as opened:  # from the argument
        assert opened.manifest.flavor.name == "python"
    monkeypatch.setenv(ALLOW_CODE_ENV, "1")
    with open_package(python_archive, allow_code=False) as opened:  # from the environment
        assert opened.manifest.flavor.name == "python"
    assert not marker.exists(), "opening a package ran its code"


def test_an_onnx_package_opens_to_run_without_the_opt_in(tiny_archive: Path) -> None:
    with open_package(tiny_archive, allow_code=False) as opened:
        assert not opened.manifest.flavor.runs_code


def test_code_allowed_reads_the_argument_then_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert ALLOW_CODE_ENV == "MODELPORT_ALLOW_CODE"
    assert code_allowed(True)
    assert not code_allowed(False) and not code_allowed(None) and not code_allowed()
    for value in ("0", "", "true", "yes", " 1"):
        monkeypatch.setenv(ALLOW_CODE_ENV, value)
        assert not code_allowed(False), value
    monkeypatch.setenv(ALLOW_CODE_ENV, "1")
    # The environment can only opt in: an explicit False does not override it.
    assert code_allowed(False) and code_allowed(None) and code_allowed(True)
