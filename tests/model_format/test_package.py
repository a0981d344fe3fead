"""Packing, loading and verifying packages: ONNX and python flavors, tampering, opt-in to code."""

from __future__ import annotations

import gc
import json
import os
import platform
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import modelport
from modelport.errors import (
    CodeExecutionRefused,
    InputError,
    IntegrityError,
    ModelError,
    ModelportWarning,
    PackageError,
    PackError,
)
from modelport.model_format.manifest import MANIFEST_NAME
from modelport.model_format.signature import TensorSpec


@pytest.fixture(autouse=True)
def clean_environment(
    monkeypatch: pytest.MonkeyPatch,
    private_tempdir: Path,
    temp_leftovers: Callable[[], list[str]],
) -> Iterator[None]:
    """No opt-in or build date from the caller's environment; no extraction dir left behind."""
    monkeypatch.delenv("MODELPORT_ALLOW_CODE", raising=False)
    monkeypatch.delenv("SOURCE_DATE_EPOCH", raising=False)
    monkeypatch.delenv("MODELPORT_TEST_IMPORT_MARKER", raising=False)
    yield
    gc.collect()
    assert temp_leftovers() == []


def entries(directory: Path) -> list[str]:
    """Names in a directory (staging leftovers would show up here)."""
    return sorted(p.name for p in directory.iterdir())


# --- ONNX -------------------------------------------------------------------------------------


def test_pack_onnx_from_a_file_and_from_a_model_proto(
    tiny_onnx: Any, tiny_onnx_file: Path, tiny_example: np.ndarray, tmp_path: Path
) -> None:
    from_file = modelport.pack(tiny_onnx_file, tmp_path / "from-file", example=tiny_example)
    from_proto = modelport.pack(tiny_onnx, tmp_path / "from-proto", example=tiny_example)
    assert from_file.name == "tiny"  # the file's stem
    assert from_proto.name == "tiny"  # the graph's name
    assert from_file.digest == from_proto.digest
    assert from_file.manifest.flavor.name == "onnx"
    assert dict(from_file.manifest.flavor.settings) == {"model": "model.onnx"}
    model_bytes = (tmp_path / "from-proto" / "model.onnx").read_bytes()
    assert model_bytes == tiny_onnx_file.read_bytes()


def test_signature_comes_from_the_graph(tiny_onnx: Any, tmp_path: Path) -> None:
    package = modelport.pack(tiny_onnx, tmp_path / "pkg")
    assert package.signature.inputs == (TensorSpec("x", "float32", (-1, 3)),)
    assert package.signature.outputs == (TensorSpec("y", "float32", (-1, 2)),)
    assert package.manifest.example is None
    assert set(package.manifest.files) == {"model.onnx"}


def test_predict(pack_tiny: Callable[..., Any], tiny_weights: np.ndarray) -> None:
    package = pack_tiny("pkg")
    x = np.array([[1.0, 2.0, 3.0], [0.0, -1.0, 0.5]])
    out = package.predict(x)
    assert list(out) == ["y"]
    assert out["y"].dtype == np.float32
    np.testing.assert_allclose(out["y"], x.astype(np.float32) @ tiny_weights)
    np.testing.assert_array_equal(package.predict({"x": x.tolist()})["y"], out["y"])
    np.testing.assert_array_equal(package.predict([[1, 2, 3]])["y"], [[16.0, 22.0]])


def test_predict_enforces_the_signature(pack_tiny: Callable[..., Any]) -> None:
    package = pack_tiny("pkg")
    with pytest.raises(InputError, match=r"'x' expects size 3 on dimension 1"):
        package.predict([[1.0, 2.0]])
    with pytest.raises(InputError, match=r"'x' expects float32, got strings"):
        package.predict([["a", "b", "c"]])
    with pytest.raises(InputError, match="unknown input"):
        package.predict({"x": [[1, 2, 3]], "z": [1]})


def test_two_input_model(two_input_onnx: Any, tmp_path: Path) -> None:
    example = {"a": np.array([[1.0, 2.0]], dtype=np.float32), "b": np.array([[3]])}
    package = modelport.pack(two_input_onnx, tmp_path / "two", example=example)
    assert package.signature.input_names == ("a", "b")
    out = package.predict({"a": [[1.0, 2.0], [0.5, 0.5]], "b": [[10], [-1]]})
    np.testing.assert_array_equal(out["total"], [[13.0], [0.0]])
    with pytest.raises(InputError, match="missing input"):
        package.predict({"a": [[1.0, 2.0]]})
    with pytest.raises(InputError, match="different numbers of rows"):
        package.predict({"a": [[1.0, 2.0]], "b": [[1], [2]]})


def test_string_model(string_onnx: Any, tmp_path: Path) -> None:
    package = modelport.pack(string_onnx, tmp_path / "strings", example={"text": ["a", "b"]})
    assert package.signature.inputs == (TensorSpec("text", "string", (-1,)),)
    out = package.predict(["héllo", "wörld", ""])
    assert out["same"].tolist() == ["héllo", "wörld", ""]


def test_example_is_stored_and_enforced(pack_tiny: Callable[..., Any], tmp_path: Path) -> None:
    example = np.array([[1.0, 2.0, 3.0]], dtype=np.float64)
    package = pack_tiny("pkg", example=example)
    assert package.manifest.example == "example.json"
    assert "example.json" in package.manifest.files
    body = json.loads((tmp_path / "pkg" / "example.json").read_text())
    assert body == {"inputs": {"x": [[1.0, 2.0, 3.0]]}}
    stored = package.example()
    assert stored is not None
    assert stored["x"].dtype == np.float32
    np.testing.assert_array_equal(stored["x"], example)


def test_example_refines_an_input_of_unknown_rank(tmp_path: Path) -> None:
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"])],
        "norank",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, None)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    package = modelport.pack(model, tmp_path / "pkg", example=np.ones((2, 4), dtype=np.float32))
    assert package.signature.inputs == (TensorSpec("x", "float32", (-1, 4)),)
    np.testing.assert_array_equal(package.predict([[-1, 2, -3, 4]])["y"], [[0, 2, 0, 4]])
    with pytest.raises(InputError, match="'x'"):
        package.predict([[1, 2, 3]])


@pytest.mark.parametrize(
    "example",
    [
        np.ones((2, 4)),
        [["a", "b", "c"]],
        {"not_x": [[1.0, 2.0, 3.0]]},
        [[1.0, 2.0, 3.0], [1.0]],
        [[1.5, float("nan"), None]],
    ],
)
def test_an_example_that_does_not_fit_fails_the_pack_and_leaves_nothing(
    example: Any, tiny_onnx: Any, tmp_path: Path
) -> None:
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    for target in (out_dir / "pkg", out_dir / "pkg.mport"):
        with pytest.raises(PackError, match="example"):
            modelport.pack(tiny_onnx, target, example=example)
    assert entries(out_dir) == []


def test_example_from_a_json_file(tiny_onnx: Any, tmp_path: Path) -> None:
    example_file = tmp_path / "example.json"
    example_file.write_text(
        json.dumps({"dataframe_split": {"columns": list("abc"), "data": [[1, 2, 3]]}})
    )
    package = modelport.pack(tiny_onnx, tmp_path / "pkg", example=example_file)
    stored = package.example()
    assert stored is not None
    np.testing.assert_array_equal(stored["x"], [[1.0, 2.0, 3.0]])
    with pytest.raises(PackError, match="does not exist"):
        modelport.pack(tiny_onnx, tmp_path / "pkg2", example=tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(PackError, match="not valid JSON"):
        modelport.pack(tiny_onnx, tmp_path / "pkg3", example=tmp_path / "bad.json")
    assert not (tmp_path / "pkg2").exists()
    assert not (tmp_path / "pkg3").exists()


def test_name_version_metadata_and_requirements(pack_tiny: Callable[..., Any]) -> None:
    package = pack_tiny(
        "pkg",
        name="my-model_v2.1",
        version="2024.05",
        metadata={"team": "vision", "note": "ünïcode ✓"},
        requirements=["extra-lib==1.2.3"],
    )
    manifest = package.manifest
    assert (package.name, package.version) == ("my-model_v2.1", "2024.05")
    assert dict(manifest.metadata) == {"team": "vision", "note": "ünïcode ✓"}
    assert manifest.requirements[-1] == "extra-lib==1.2.3"
    assert f"numpy=={np.__version__}" in manifest.requirements
    assert any(r.startswith("onnxruntime==") for r in manifest.requirements)
    assert manifest.python == platform.python_version()
    assert manifest.version == "2024.05"
    assert "my-model_v2.1" in repr(package)
    assert package.digest[:19] in repr(package)


@pytest.mark.parametrize("name", ["bad name", "-leading-dash", "a" * 129, "trailing\n", "ü"])
def test_invalid_names_are_refused(
    name: str, pack_tiny: Callable[..., Any], tmp_path: Path
) -> None:
    with pytest.raises(PackError, match="name"):
        pack_tiny("pkg", name=name)
    assert not (tmp_path / "pkg").exists()


# --- writing the output -----------------------------------------------------------------------


@pytest.mark.parametrize("target", ["existing.mport", "existing-dir"])
def test_existing_output_is_not_replaced_without_overwrite(
    target: str, pack_tiny: Callable[..., Any], tmp_path: Path
) -> None:
    path = tmp_path / target
    if target.endswith(".mport"):
        path.write_bytes(b"precious bytes")
    else:
        path.mkdir()
        (path / "precious.txt").write_text("precious")
    with pytest.raises(PackError, match="already exists"):
        pack_tiny(target)
    if target.endswith(".mport"):
        assert path.read_bytes() == b"precious bytes"
    else:
        assert entries(path) == ["precious.txt"]
    assert entries(tmp_path) == sorted([target, "systemp"])
    pack_tiny(target, overwrite=True).close()
    assert modelport.verify(path).ok


def test_overwrite_replaces_a_package(pack_tiny: Callable[..., Any], tmp_path: Path) -> None:
    first = pack_tiny("pkg.mport")
    first.close()
    second = pack_tiny("pkg.mport", overwrite=True, metadata={"v": "2"})
    second.close()
    assert first.digest != second.digest
    assert modelport.verify(tmp_path / "pkg.mport").manifest.digest == second.digest
    assert entries(tmp_path) == ["pkg.mport", "systemp"]


@pytest.mark.parametrize("target", ["pkg", "pkg.mport"])
def test_a_pack_that_fails_after_staging_leaves_nothing(
    target: str, pack_tiny: Callable[..., Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    with pytest.raises(PackError, match="created_at"):
        pack_tiny(f"out/{target}", created_at="not a date")
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "yesterday")
    with pytest.raises(PackError, match="SOURCE_DATE_EPOCH"):
        pack_tiny(f"out/{target}")
    assert entries(out_dir) == []


def test_a_failed_overwrite_keeps_the_old_package(
    pack_tiny: Callable[..., Any], tmp_path: Path
) -> None:
    pack_tiny("pkg.mport").close()
    before = (tmp_path / "pkg.mport").read_bytes()
    with pytest.raises(PackError):
        pack_tiny("pkg.mport", overwrite=True, created_at="not a date")
    assert (tmp_path / "pkg.mport").read_bytes() == before
    assert entries(tmp_path) == ["pkg.mport", "systemp"]


def test_unsupported_sources(tmp_path: Path) -> None:
    with pytest.raises(PackError, match="cannot pack"):
        modelport.pack(object(), tmp_path / "a")
    with pytest.raises(PackError, match="no such file"):
        modelport.pack(tmp_path / "missing.onnx", tmp_path / "b")
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(PackError, match="don't know how"):
        modelport.pack(tmp_path / "notes.txt", tmp_path / "c")
    (tmp_path / "broken.onnx").write_bytes(b"not a model")
    with pytest.raises(PackError, match="ONNX Runtime"):
        modelport.pack(tmp_path / "broken.onnx", tmp_path / "d")
    assert entries(tmp_path) == ["broken.onnx", "notes.txt", "systemp"]


# --- created_at -------------------------------------------------------------------------------


def test_created_at_defaults_to_none(pack_tiny: Callable[..., Any]) -> None:
    assert pack_tiny("pkg").manifest.created_at is None


def test_created_at_now(pack_tiny: Callable[..., Any]) -> None:
    before = datetime.now(timezone.utc).replace(microsecond=0)
    stamp = pack_tiny("pkg", created_at="now").manifest.created_at
    after = datetime.now(timezone.utc)
    assert stamp is not None
    assert stamp.endswith("Z")
    recorded = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    assert before <= recorded <= after


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (datetime(2024, 5, 1, 12, 30, tzinfo=timezone.utc), "2024-05-01T12:30:00Z"),
        (datetime(2024, 5, 1, 14, 30, tzinfo=timezone(timedelta(hours=2))), "2024-05-01T12:30:00Z"),
        (datetime(2024, 5, 1, 12, 30), "2024-05-01T12:30:00Z"),
        ("2024-05-01T12:30:00Z", "2024-05-01T12:30:00Z"),
        ("2024-05-01T07:30:00-05:00", "2024-05-01T12:30:00Z"),
    ],
)
def test_explicit_created_at_is_recorded_in_utc(
    value: Any, expected: str, pack_tiny: Callable[..., Any]
) -> None:
    assert pack_tiny("pkg", created_at=value).manifest.created_at == expected


def test_source_date_epoch(
    pack_tiny: Callable[..., Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    first = pack_tiny("a.mport")
    second = pack_tiny("b.mport")
    assert first.manifest.created_at == "2023-11-14T22:13:20Z"
    assert first.digest == second.digest
    first.close()
    second.close()
    assert (tmp_path / "a.mport").read_bytes() == (tmp_path / "b.mport").read_bytes()
    # An explicit value wins over the environment.
    explicit = pack_tiny("c", created_at="2000-01-01T00:00:00Z")
    assert explicit.manifest.created_at == "2000-01-01T00:00:00Z"


def test_created_at_is_part_of_the_identity(pack_tiny: Callable[..., Any]) -> None:
    plain = pack_tiny("a")
    stamped = pack_tiny("b", created_at="2024-01-01T00:00:00Z")
    assert plain.digest != stamped.digest


# --- repacking --------------------------------------------------------------------------------


def test_repacking_between_directory_and_archive_keeps_the_digest(
    pack_tiny: Callable[..., Any], tmp_path: Path
) -> None:
    original = pack_tiny("original", name="kept", version="7", metadata={"k": "v"})
    archived = modelport.pack(tmp_path / "original", tmp_path / "again.mport")
    assert archived.digest == original.digest
    archived.close()
    back = modelport.pack(tmp_path / "again.mport", tmp_path / "back")
    assert back.digest == original.digest
    assert (back.name, back.version) == ("kept", "7")
    assert (tmp_path / "back" / MANIFEST_NAME).read_bytes() == (
        tmp_path / "original" / MANIFEST_NAME
    ).read_bytes()
    again = modelport.pack(tmp_path / "back", tmp_path / "again2.mport")
    again.close()
    assert (tmp_path / "again.mport").read_bytes() == (tmp_path / "again2.mport").read_bytes()


def test_repacking_a_tampered_package_is_refused(
    pack_tiny: Callable[..., Any], tmp_path: Path
) -> None:
    pack_tiny("original")
    (tmp_path / "original" / "model.onnx").write_bytes(b"tampered")
    with pytest.raises(IntegrityError, match=r"altered file: model\.onnx"):
        modelport.pack(tmp_path / "original", tmp_path / "copy.mport")
    assert not (tmp_path / "copy.mport").exists()


# --- tampering with a directory package -------------------------------------------------------


@pytest.fixture
def package_dir(pack_tiny: Callable[..., Any], tmp_path: Path) -> Path:
    pack_tiny("pkg")
    assert modelport.verify(tmp_path / "pkg").ok
    return tmp_path / "pkg"


def load_problems(path: Path) -> tuple[str, ...]:
    with pytest.raises(IntegrityError) as excinfo:
        modelport.load(path)
    return excinfo.value.problems


def test_altered_file(package_dir: Path) -> None:
    with (package_dir / "model.onnx").open("ab") as fh:
        fh.write(b"\0")
    (problem,) = load_problems(package_dir)
    assert problem.startswith("altered file: model.onnx (expected sha256:")


def test_extra_file(package_dir: Path) -> None:
    (package_dir / "sub").mkdir()
    (package_dir / "sub" / "extra.py").write_text("print('hi')")
    assert load_problems(package_dir) == ("extra file (not listed in the manifest): sub/extra.py",)


def test_removed_file(package_dir: Path) -> None:
    (package_dir / "example.json").unlink()
    assert load_problems(package_dir) == ("missing file: example.json",)


def test_symlink_is_refused_even_with_the_right_content(package_dir: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside.onnx"
    outside.write_bytes((package_dir / "model.onnx").read_bytes())
    (package_dir / "model.onnx").unlink()
    (package_dir / "model.onnx").symlink_to(outside)
    problems = load_problems(package_dir)
    assert "symbolic link: model.onnx" in problems
    assert "missing file: model.onnx" in problems


def test_symlinked_directory_is_refused(package_dir: Path, tmp_path: Path) -> None:
    (tmp_path / "elsewhere").mkdir()
    (package_dir / "linked").symlink_to(tmp_path / "elsewhere", target_is_directory=True)
    assert load_problems(package_dir) == ("symbolic link: linked",)


def test_fifo_is_refused(package_dir: Path) -> None:
    os.mkfifo(package_dir / "pipe")
    assert load_problems(package_dir) == ("not a regular file: pipe",)


def test_verify_reports_every_problem_at_once(package_dir: Path, tmp_path: Path) -> None:
    (package_dir / "model.onnx").write_bytes(b"altered")
    (package_dir / "example.json").unlink()
    (package_dir / "extra.txt").write_text("extra")
    (package_dir / "link").symlink_to(tmp_path / "anything")
    report = modelport.verify(package_dir)
    assert not report.ok
    assert report.path == package_dir
    assert report.manifest.name == "tiny"
    problems = report.problems
    assert "symbolic link: link" in problems
    assert "missing file: example.json" in problems
    assert "extra file (not listed in the manifest): extra.txt" in problems
    assert any(p.startswith("altered file: model.onnx") for p in problems)
    assert len(problems) == 4
    assert load_problems(package_dir) == problems


def test_verify_of_archives_reports_too(pack_tiny: Callable[..., Any], tmp_path: Path) -> None:
    pack_tiny("pkg.mport").close()
    report = modelport.verify(tmp_path / "pkg.mport")
    assert report.ok
    assert report.problems == ()


def test_editing_the_manifest_changes_the_identity(package_dir: Path) -> None:
    before = modelport.load(package_dir).digest
    raw = json.loads((package_dir / MANIFEST_NAME).read_text())
    raw["metadata"] = {"edited": "yes"}
    (package_dir / MANIFEST_NAME).write_text(json.dumps(raw))
    assert modelport.load(package_dir).digest != before


def test_directory_without_a_manifest(package_dir: Path) -> None:
    (package_dir / MANIFEST_NAME).unlink()
    with pytest.raises(PackageError, match=r"no modelport\.json") as excinfo:
        modelport.load(package_dir)
    assert type(excinfo.value) is PackageError
    with pytest.raises(PackageError, match=r"no modelport\.json"):
        modelport.verify(package_dir)


def test_unknown_flavor_from_a_newer_minor_format(package_dir: Path) -> None:
    raw = json.loads((package_dir / MANIFEST_NAME).read_text())
    raw["format_version"] = "1.3"
    raw["flavor"] = {"name": "tensorrt", "engine": "model.onnx"}
    (package_dir / MANIFEST_NAME).write_text(json.dumps(raw))
    with pytest.warns(ModelportWarning), pytest.raises(PackageError, match="'tensorrt'"):
        modelport.load(package_dir)


def test_close_removes_the_extraction_directory(pack_tiny: Callable[..., Any]) -> None:
    package = pack_tiny("pkg.mport")
    root = Path(package.root)
    assert (root / "model.onnx").is_file()
    package.close()
    assert not root.exists()


# --- the python flavor ------------------------------------------------------------------------


@pytest.fixture
def python_package(python_model: Any, tmp_path: Path) -> Path:
    package = modelport.pack(
        python_model.source,
        tmp_path / "py.mport",
        example=python_model.example,
        artifacts=[python_model.artifact],
    )
    package.close()
    return tmp_path / "py.mport"


def test_python_package_layout(python_package: Path) -> None:
    report = modelport.verify(python_package)
    manifest = report.manifest
    assert report.ok
    assert manifest.flavor.name == "python"
    assert dict(manifest.flavor.settings) == {
        "code": "code/scaler_model.py",
        "class": "Scaler",
    }
    assert set(manifest.files) == {"code/scaler_model.py", "artifacts/factor.txt", "example.json"}
    assert manifest.signature.inputs == (TensorSpec("x", "float64", (-1, 2)),)
    assert manifest.signature.outputs == (TensorSpec("y", "float64", (-1, 2)),)


def test_python_package_is_refused_without_opt_in(
    python_package: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    marker = tmp_path / "imported.txt"
    monkeypatch.setenv("MODELPORT_TEST_IMPORT_MARKER", str(marker))
    with pytest.raises(CodeExecutionRefused) as excinfo:
        modelport.load(python_package)
    message = str(excinfo.value)
    assert "--allow-code" in message
    assert "MODELPORT_ALLOW_CODE" in message
    assert "allow_code=True" in message
    assert not marker.exists(), "the package's code ran although loading was refused"
    monkeypatch.setenv("MODELPORT_ALLOW_CODE", "0")
    with pytest.raises(CodeExecutionRefused):
        modelport.load(python_package)
    assert not marker.exists()


def test_python_package_loads_with_allow_code(python_package: Path) -> None:
    with modelport.load(python_package, allow_code=True) as package:
        out = package.predict({"x": [[1, 2], [3, 4]]})
    np.testing.assert_array_equal(out["y"], [[3.0, 6.0], [9.0, 12.0]])  # factor 3 from artifact


def test_python_package_loads_with_the_environment_opt_in(
    python_package: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MODELPORT_ALLOW_CODE", "1")
    with modelport.load(python_package) as package:
        np.testing.assert_array_equal(package.predict([[0.5, 1.0]])["y"], [[1.5, 3.0]])


def test_python_model_failure_is_a_model_error_without_details(python_package: Path) -> None:
    with (
        modelport.load(python_package, allow_code=True) as package,
        pytest.raises(ModelError) as excinfo,
    ):
        package.predict([[-5000.0, 1.0]])
    message = str(excinfo.value)
    assert "ValueError" in message
    assert "SECRET" not in message
    assert "5000" not in message


def test_python_model_needs_an_example(python_model: Any, tmp_path: Path) -> None:
    with pytest.raises(PackError, match="example"):
        modelport.pack(python_model.source, tmp_path / "py")
    assert not (tmp_path / "py").exists()


def test_python_file_with_several_model_classes(python_model: Any, tmp_path: Path) -> None:
    source = python_model.source
    source.write_text(
        source.read_text()
        + "\n\nclass Other:\n    def load(self, path):\n        pass\n\n"
        + "    def predict(self, inputs):\n        return {'y': inputs['x']}\n"
    )
    with pytest.raises(PackError, match="Scaler, Other"):
        modelport.pack(source, tmp_path / "py", example=python_model.example)
    package = modelport.pack(
        source, tmp_path / "py", example=python_model.example, model_class="Other"
    )
    np.testing.assert_array_equal(package.predict([[1.0, 2.0]])["y"], [[1.0, 2.0]])
    with pytest.raises(PackError, match="Missing"):
        modelport.pack(
            source, tmp_path / "py2", example=python_model.example, model_class="Missing"
        )


def test_python_model_failing_on_the_example(python_model: Any, tmp_path: Path) -> None:
    with pytest.raises(PackError, match="failed on the example"):
        modelport.pack(python_model.source, tmp_path / "py", example={"x": [[-5000.0, 1.0]]})
    assert not (tmp_path / "py").exists()
