"""The manifest, ``modelport.json``: two layers, every problem at once, version policy, digest."""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import re
from collections.abc import Callable
from datetime import timezone
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from modelport.errors import (
    ManifestError,
    ModelportWarning,
    PackageError,
    UnsupportedFormatError,
)
from modelport.model_format.manifest import (
    FORMAT_VERSION,
    MANIFEST_NAME,
    Flavor,
    Manifest,
    parse,
    read_raw,
    validate,
)
from modelport.model_format.paths import is_safe_relative_path
from modelport.model_format.signature import DTYPES, Signature, TensorSpec

PROPERTY = settings(max_examples=75, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def valid_raw() -> dict[str, Any]:
    """A small valid manifest as a plain JSON object, every key present."""
    return {
        "format_version": "1.0",
        "name": "iris-classifier",
        "version": "3",
        "flavor": {"name": "onnx", "model": "model.onnx"},
        "signature": {
            "inputs": [{"name": "x", "dtype": "float32", "shape": [-1, 4]}],
            "outputs": [{"name": "label", "dtype": "int64", "shape": [-1]}],
        },
        "files": {"model.onnx": sha(b"model"), "example.json": sha(b"example")},
        "requirements": ["numpy==2.1.0", "onnxruntime==1.20.0"],
        "python": "3.11.7",
        "created_at": "2024-05-01T12:00:00Z",
        "metadata": {"team": "vision", "ticket": "ML-42"},
        "example": "example.json",
    }


def to_bytes(raw: Any) -> bytes:
    return json.dumps(raw).encode()


def problems_of(raw: Any) -> tuple[str, ...]:
    with pytest.raises(ManifestError) as excinfo:
        validate(raw)
    return excinfo.value.problems


def assert_problem(problems: tuple[str, ...], *fragments: str) -> None:
    """Some single problem mentions every fragment."""
    assert any(all(f in p for f in fragments) for p in problems), (fragments, problems)


# --- strategies -------------------------------------------------------------------------------

NAMES = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}", fullmatch=True)
DIGESTS = st.binary(max_size=8).map(sha)
SEGMENTS = st.from_regex(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,10}", fullmatch=True)
PATHS = (
    st.lists(SEGMENTS, min_size=1, max_size=3)
    .map("/".join)
    .filter(lambda p: p.split("/")[0] != MANIFEST_NAME)
)
IDENTIFIERS = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,15}", fullmatch=True)
TEXT = st.text(max_size=12)
JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | TEXT,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(TEXT, children, max_size=3),
    max_leaves=8,
)
SPECS = st.fixed_dictionaries(
    {
        "name": st.text(min_size=1, max_size=10),
        "dtype": st.sampled_from(sorted(DTYPES)),
        "shape": st.lists(st.integers(min_value=-1, max_value=64), max_size=4),
    }
)


def _under_another(path: str, paths: list[str]) -> bool:
    return any(path.startswith(other + "/") for other in paths if other != path)


@st.composite
def valid_manifests(draw: st.DrawFn) -> dict[str, Any]:
    """Raw manifests that must validate: every field drawn from its whole valid range."""
    paths = draw(st.lists(PATHS, min_size=1, max_size=6, unique=True))
    paths = [p for p in paths if not _under_another(p, paths)]
    files = {p: draw(DIGESTS) for p in paths}
    extra_settings = draw(
        st.dictionaries(
            TEXT.filter(lambda k: k not in ("name", "model", "code", "class")),
            JSON_VALUES,
            max_size=3,
        )
    )
    if draw(st.booleans()):
        flavor = {"name": "onnx", "model": draw(st.sampled_from(paths)), **extra_settings}
    else:
        flavor = {
            "name": "python",
            "code": draw(st.sampled_from(paths)),
            "class": draw(IDENTIFIERS),
            **extra_settings,
        }
    unique_name = {"unique_by": lambda s: s["name"]}
    created = draw(
        st.none()
        | st.datetimes(timezones=st.none() | st.just(timezone.utc)).map(lambda d: d.isoformat())
    )
    return {
        "format_version": FORMAT_VERSION,
        "name": draw(NAMES),
        "version": draw(st.text(min_size=1, max_size=12)),
        "flavor": flavor,
        "signature": {
            "inputs": draw(st.lists(SPECS, min_size=1, max_size=3, **unique_name)),
            "outputs": draw(st.lists(SPECS, max_size=3, **unique_name)),
        },
        "files": files,
        "requirements": draw(
            st.lists(  # plain requirements: a PEP 508 name, maybe a pin
                st.from_regex(
                    r"[A-Za-z0-9]([A-Za-z0-9._-]{0,8}[A-Za-z0-9])?(==[0-9]{1,3}(\.[0-9]{1,3}){0,2})?",
                    fullmatch=True,
                )
            )
        ),
        "python": draw(
            st.just("") | st.from_regex(r"\d{1,2}\.\d{1,2}(\.\d{1,2})?", fullmatch=True)
        ),
        "created_at": created,
        "metadata": draw(st.dictionaries(TEXT, TEXT, max_size=4)),
        "example": draw(st.none() | st.sampled_from(paths)),
    }


# --- round trips ------------------------------------------------------------------------------


@PROPERTY
@given(raw=valid_manifests())
def test_valid_manifest_round_trips(raw: dict[str, Any]) -> None:
    manifest = validate(raw)
    assert manifest.to_dict() == raw
    data = manifest.to_json()
    assert json.loads(data) == raw
    assert next(iter(json.loads(data))) == "format_version"
    again = parse(data)
    assert again == manifest
    assert again.to_json() == data
    assert again.digest == manifest.digest
    assert re.fullmatch(r"sha256:[0-9a-f]{64}", manifest.digest)


@PROPERTY
@given(raw=valid_manifests(), data=st.data())
def test_json_and_digest_do_not_depend_on_key_order(raw: dict[str, Any], data: Any) -> None:
    def shuffled(d: dict[str, Any]) -> dict[str, Any]:
        keys = data.draw(st.permutations(list(d)))
        return {k: d[k] for k in keys}

    reordered = shuffled(raw)
    reordered["files"] = shuffled(raw["files"])
    reordered["metadata"] = shuffled(raw["metadata"])
    reordered["flavor"] = shuffled(raw["flavor"])
    assert validate(reordered).to_json() == validate(raw).to_json()
    assert validate(reordered).digest == validate(raw).digest


def _mutations() -> dict[str, Callable[[dict[str, Any]], None]]:
    def first_file(r: dict[str, Any]) -> str:
        return sorted(r["files"])[0]

    def set_file_digest(r: dict[str, Any]) -> None:
        path = first_file(r)
        r["files"][path] = sha(r["files"][path].encode())

    def add_file(r: dict[str, Any]) -> None:
        r["files"]["zz-added-file.bin"] = sha(b"added")

    def toggle_example(r: dict[str, Any]) -> None:
        r["example"] = first_file(r) if r["example"] is None else None

    def change_dtype(r: dict[str, Any]) -> None:
        spec = r["signature"]["inputs"][0]
        spec["dtype"] = "float64" if spec["dtype"] != "float64" else "int8"

    def change_shape(r: dict[str, Any]) -> None:
        r["signature"]["inputs"][0]["shape"].append(7)

    def add_output(r: dict[str, Any]) -> None:
        names = {s["name"] for s in r["signature"]["outputs"]}
        r["signature"]["outputs"].append(
            {"name": "extra-" + "x" * len(names), "dtype": "bool", "shape": []}
        )

    def toggle_created(r: dict[str, Any]) -> None:
        r["created_at"] = "1999-12-31T23:59:59Z" if r["created_at"] is None else None

    return {
        "name": lambda r: r.update(name=r["name"][:127] + ("a" if r["name"][-1] != "a" else "b")),
        "version": lambda r: r.update(version=r["version"] + "+1"),
        "flavor setting": lambda r: r["flavor"].update(added_setting=1),
        "file digest": set_file_digest,
        "added file": add_file,
        "dtype": change_dtype,
        "shape": change_shape,
        "output": add_output,
        "requirements": lambda r: r["requirements"].append("added==1.0"),
        "python": lambda r: r.update(python="99.1" if r["python"] != "99.1" else "99.2"),
        "created_at": toggle_created,
        "metadata": lambda r: r["metadata"].update({"added key ☃": "v"}),
        "example": toggle_example,
    }


@PROPERTY
@given(raw=valid_manifests(), which=st.sampled_from(sorted(_mutations())))
def test_digest_changes_when_any_field_changes(raw: dict[str, Any], which: str) -> None:
    changed = copy.deepcopy(raw)
    _mutations()[which](changed)
    before, after = validate(raw), validate(changed)
    assert after.digest != before.digest, which
    assert after.to_json() != before.to_json()
    assert parse(after.to_json()).digest == after.digest


def test_digest_is_sha256_of_canonical_json() -> None:
    manifest = validate(valid_raw())
    canonical = json.dumps(
        manifest.to_dict(), sort_keys=True, separators=(",", ":"), ensure_ascii=False
    ).encode()
    assert manifest.digest == sha(canonical)
    # Whitespace in the file does not change the identity of the package.
    assert parse(json.dumps(valid_raw(), indent=7).encode()).digest == manifest.digest


def test_manifest_built_directly_round_trips() -> None:
    manifest = Manifest(
        name="direct",
        version="1.0.0",
        flavor=Flavor("python", {"code": "code/m.py", "class": "Model"}),
        signature=Signature(
            (TensorSpec("x", "float64", (-1, 2)),), (TensorSpec("y", "string", (-1,)),)
        ),
        files={"code/m.py": sha(b"code")},
        metadata={"b": "2", "a": "1"},
    )
    again = parse(manifest.to_json())
    assert again == manifest
    assert again.to_dict()["metadata"] == {"a": "1", "b": "2"}
    assert again.created_at is None
    assert again.example is None
    assert again.requirements == ()
    assert again.format_version == FORMAT_VERSION


def test_manifest_is_immutable() -> None:
    manifest = validate(valid_raw())
    with pytest.raises(dataclasses.FrozenInstanceError):
        manifest.name = "other"  # type: ignore[misc]
    with pytest.raises(TypeError):
        manifest.files["model.onnx"] = sha(b"x")  # type: ignore[index]
    with pytest.raises(TypeError):
        manifest.flavor.settings["model"] = "x"  # type: ignore[index]


def test_defaults_for_optional_fields() -> None:
    raw = valid_raw()
    for key in ("requirements", "python", "created_at", "metadata", "example"):
        del raw[key]
    manifest = validate(raw)
    assert manifest.requirements == ()
    assert manifest.python == ""
    assert manifest.created_at is None
    assert dict(manifest.metadata) == {}
    assert manifest.example is None


# --- every problem at once --------------------------------------------------------------------


def test_several_problems_in_one_error() -> None:
    raw = valid_raw()
    raw["name"] = "bad name!"
    raw["signature"]["inputs"][0]["dtype"] = "float128"
    raw["files"]["model.onnx"] = "sha256:NOT-HEX"
    raw["files"]["../evil"] = sha(b"evil")
    with pytest.raises(ManifestError) as excinfo:
        parse(to_bytes(raw))
    problems = excinfo.value.problems
    assert_problem(problems, "name:")
    assert_problem(problems, "signature.inputs[0].dtype")
    assert_problem(problems, "files:", "'model.onnx'", "sha256")
    assert_problem(problems, "files:", "'../evil'")
    assert len(problems) >= 4
    message = str(excinfo.value)
    assert f"{len(problems)} problem(s)" in message
    for problem in problems:
        assert problem in message


def test_empty_manifest_names_every_required_field() -> None:
    problems = problems_of({"format_version": "1.0"})
    for field in ("name:", "version:", "files:", "flavor:", "signature:"):
        assert_problem(problems, field)


_CORRUPTIONS: dict[str, tuple[Callable[[dict[str, Any]], None], str]] = {
    "name": (lambda r: r.update(name="-starts-with-dash"), "name:"),
    "version": (lambda r: r.update(version=""), "version:"),
    "unsafe path": (lambda r: r["files"].update({"a/../../b": sha(b"")}), "'a/../../b'"),
    "dtype": (
        lambda r: r["signature"]["inputs"][0].update(dtype="complex64"),
        "signature.inputs[0].dtype",
    ),
    "shape": (
        lambda r: r["signature"]["outputs"][0].update(shape=[-2]),
        "signature.outputs[0].shape",
    ),
    "requirements": (lambda r: r["requirements"].append("a\nb"), "requirements[2]:"),
    "python": (lambda r: r.update(python="three"), "python:"),
    "created_at": (lambda r: r.update(created_at="yesterday"), "created_at:"),
    "metadata": (lambda r: r["metadata"].update(count=3), "metadata:"),
    "example": (lambda r: r.update(example="nowhere.json"), "example:"),
    "unknown key": (lambda r: r.update(surprise=True), "surprise"),
    "flavor": (lambda r: r["flavor"].update(name="tensorflow"), "flavor.name"),
}


@settings(max_examples=60, deadline=None)
@given(chosen=st.sets(st.sampled_from(sorted(_CORRUPTIONS)), min_size=1))
def test_every_problem_is_reported_together(chosen: set[str]) -> None:
    raw = valid_raw()
    for key in chosen:
        _CORRUPTIONS[key][0](raw)
    problems = problems_of(raw)
    for key in chosen:
        assert_problem(problems, _CORRUPTIONS[key][1])
    assert len(problems) == len(chosen)


@pytest.mark.parametrize(
    "path",
    [
        "../evil",
        "/etc/passwd",
        "a/../../b",
        "a/./b",
        "./a",
        "a//b",
        "a/",
        "a\\b",
        "C:/windows",
        "c:evil",
        "nul\x00byte",
        "",
        "..",
        ".",
    ],
)
def test_unsafe_file_paths_are_refused(path: str) -> None:
    assert not is_safe_relative_path(path)
    raw = valid_raw()
    raw["files"][path] = sha(b"x")
    assert_problem(problems_of(raw), "files:", repr(path))


@pytest.mark.parametrize("path", ["model.onnx", "a/b/c.txt", "code/m.py", ".hidden", "x..y"])
def test_safe_file_paths_are_accepted(path: str) -> None:
    assert is_safe_relative_path(path)


def test_manifest_may_not_list_itself() -> None:
    raw = valid_raw()
    raw["files"][MANIFEST_NAME] = sha(b"")
    assert_problem(problems_of(raw), "files:", MANIFEST_NAME)


@pytest.mark.parametrize(
    ("extra", "under"),
    [("model.onnx/inner.bin", "model.onnx"), ("modelport.json/x", "modelport.json")],
)
def test_a_file_cannot_also_be_a_folder(extra: str, under: str) -> None:
    # Such a manifest cannot be written to disk: extraction would fail half-way.
    raw = valid_raw()
    raw["files"][extra] = sha(b"x")
    assert_problem(problems_of(raw), "files:", repr(extra), repr(under))


@pytest.mark.parametrize(
    ("mutate", "fragment"),
    [
        (lambda r: r.update(name="a" * 129), "name:"),
        (lambda r: r.update(name="trailing-newline\n"), "name:"),
        (lambda r: r.update(name=3), "name:"),
        (lambda r: r.update(version=None), "version:"),
        (lambda r: r["files"].update({"model.onnx": "sha256:" + "A" * 64}), "'model.onnx'"),
        (lambda r: r["files"].update({"model.onnx": "md5:" + "a" * 32}), "'model.onnx'"),
        (lambda r: r["files"].update({"model.onnx": sha(b"") + "\n"}), "'model.onnx'"),
        (lambda r: r["files"].update({"model.onnx": None}), "'model.onnx'"),
        (lambda r: r.update(files=[]), "files:"),
        (lambda r: r.update(flavor="onnx"), "flavor:"),
        (lambda r: r.update(flavor={"model": "model.onnx"}), "flavor:"),
        (lambda r: r["flavor"].pop("model"), "flavor.model"),
        (lambda r: r["flavor"].update(model="absent.onnx"), "flavor.model"),
        (
            lambda r: r.update(flavor={"name": "python", "code": "model.onnx", "class": "1Bad"}),
            "flavor.class",
        ),
        (
            lambda r: r.update(flavor={"name": "python", "code": "model.onnx", "class": "Ok\n"}),
            "flavor.class",
        ),
        (lambda r: r.update(flavor={"name": "python", "code": "model.onnx"}), "flavor.class"),
        (lambda r: r.update(signature='{"inputs": []}'), "signature:"),
        (lambda r: r["signature"].update(inputs=[]), "signature.inputs"),
        (lambda r: r["signature"].pop("outputs"), "signature.outputs"),
        (lambda r: r["signature"]["inputs"].append(r["signature"]["inputs"][0]), "twice"),
        (lambda r: r["signature"]["inputs"][0].update(name=""), "signature.inputs[0].name"),
        (lambda r: r["signature"]["inputs"][0].update(shape=[True]), "inputs[0].shape"),
        (lambda r: r["signature"]["inputs"][0].update(shape=[1.0]), "inputs[0].shape"),
        (lambda r: r["signature"]["inputs"][0].update(shape="[-1]"), "inputs[0].shape"),
        (lambda r: r["signature"]["inputs"][0].update(doc="x"), "inputs[0]: unknown key"),
        (lambda r: r["signature"]["inputs"].append("x"), "signature.inputs[1]"),
        (lambda r: r.update(requirements="numpy"), "requirements:"),
        (lambda r: r.update(requirements=["  "]), "requirements[0]:"),
        (lambda r: r.update(python="3"), "python:"),
        (lambda r: r.update(python="3.11\n"), "python:"),
        (lambda r: r.update(created_at=1714564800), "created_at:"),
        (lambda r: r.update(metadata=["a"]), "metadata:"),
        (lambda r: r.update(metadata={"a": None}), "metadata:"),
        (lambda r: r.update(example=3), "example:"),
    ],
)
def test_each_invalid_field_is_named(
    mutate: Callable[[dict[str, Any]], Any], fragment: str
) -> None:
    raw = valid_raw()
    mutate(raw)
    assert_problem(problems_of(raw), fragment)


# --- layer one: bytes -> JSON object ----------------------------------------------------------


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"{",
        b"not json",
        b'{"format_version": "1.0",}',
        b"[]",
        b'"a string"',
        b"42",
        b"null",
        b'{"format_version": NaN}',
        b'{"x": Infinity}',
        b'{"x": -Infinity}',
        b'{"x": 1e999}',
        b'{"x": "\\ud800"}',
        b"\xff\xfe{}",
    ],
)
def test_read_raw_refuses_what_is_not_a_json_object(data: bytes) -> None:
    with pytest.raises(ManifestError) as excinfo:
        read_raw(data, "somewhere/modelport.json")
    assert excinfo.value.source == "somewhere/modelport.json"
    assert len(excinfo.value.problems) == 1
    assert "somewhere/modelport.json" in str(excinfo.value)
    with pytest.raises(ManifestError):
        parse(data)


def test_read_raw_does_not_validate() -> None:
    assert read_raw(b'{"anything": [1, 2.5, null]}') == {"anything": [1, 2.5, None]}


def test_large_numbers_in_settings_survive_the_digest() -> None:
    raw = valid_raw()
    raw["flavor"]["tolerance"] = 1e308
    raw["flavor"]["count"] = 2**70
    manifest = parse(to_bytes(raw))
    assert parse(manifest.to_json()).digest == manifest.digest


def test_manifest_error_is_a_package_error() -> None:
    # The CLI turns every PackageError into exit code 4 (invalid package).
    with pytest.raises(PackageError) as excinfo:
        parse(b"[]")
    assert excinfo.value.exit_code == 4


# --- versions ---------------------------------------------------------------------------------


@pytest.mark.parametrize("version", ["2.0", "3.1", "10.0"])
def test_newer_major_version_is_refused(version: str) -> None:
    raw = valid_raw()
    raw["format_version"] = version
    raw["name"] = "!!! invalid too"  # refused for its version before anything else
    with pytest.raises(UnsupportedFormatError) as excinfo:
        parse(to_bytes(raw), "pkg/modelport.json")
    assert not isinstance(excinfo.value, ManifestError)
    message = str(excinfo.value)
    assert version in message
    assert "upgrade" in message
    assert "pkg/modelport.json" in message


def newer_minor_raw() -> dict[str, Any]:
    raw = valid_raw()
    raw["format_version"] = "1.7"
    raw["provenance"] = {"git": "abc123", "steps": [1, 2.5, None]}
    raw["labels"] = ["a", "b"]
    raw["flavor"] = {"name": "tensorrt", "engine": "model.onnx", "precision": "fp16"}
    return raw


def test_newer_minor_version_warns_and_keeps_unknown_keys() -> None:
    raw = newer_minor_raw()
    with pytest.warns(ModelportWarning, match=r"1\.7"):
        manifest = parse(to_bytes(raw))
    assert manifest.format_version == "1.7"
    assert manifest.flavor.name == "tensorrt"
    assert dict(manifest.flavor.settings) == {"engine": "model.onnx", "precision": "fp16"}
    written = manifest.to_dict()
    assert written["provenance"] == raw["provenance"]
    assert written["labels"] == ["a", "b"]
    assert written["flavor"] == raw["flavor"]
    assert written == raw
    with pytest.warns(ModelportWarning):
        again = parse(manifest.to_json())
    assert again == manifest
    assert again.digest == manifest.digest


def test_newer_minor_unknown_keys_are_part_of_the_digest() -> None:
    raw = newer_minor_raw()
    with pytest.warns(ModelportWarning):
        first = parse(to_bytes(raw))
    raw["provenance"]["git"] = "def456"
    with pytest.warns(ModelportWarning):
        second = parse(to_bytes(raw))
    assert first.digest != second.digest


def test_newer_minor_still_validates_known_fields() -> None:
    raw = newer_minor_raw()
    raw["name"] = "bad name"
    with pytest.warns(ModelportWarning), pytest.raises(ManifestError) as excinfo:
        parse(to_bytes(raw))
    assert_problem(excinfo.value.problems, "name:")
    assert len(excinfo.value.problems) == 1


def test_unknown_keys_in_the_current_version_are_errors() -> None:
    raw = valid_raw()
    raw["provenance"] = {}
    raw["zeta"] = 1
    problems = problems_of(raw)
    assert_problem(problems, "unknown key", "provenance", "zeta")


def test_unknown_flavor_in_the_current_version_is_an_error() -> None:
    raw = valid_raw()
    raw["flavor"] = {"name": "tensorrt", "engine": "model.onnx"}
    assert_problem(problems_of(raw), "flavor.name", "'tensorrt'")


@pytest.mark.parametrize("version", [None, 1.0, 1, "1", "1.0.0", "v1.0", "1.x", "1.0\n", ""])
def test_malformed_format_version(version: Any) -> None:
    raw = valid_raw()
    raw["format_version"] = version
    assert_problem(problems_of(raw), "format_version")


def test_missing_format_version() -> None:
    raw = valid_raw()
    del raw["format_version"]
    assert_problem(problems_of(raw), "format_version")


def test_older_major_version_is_refused() -> None:
    raw = valid_raw()
    raw["format_version"] = "0.9"
    assert_problem(problems_of(raw), "format_version", "0.9")
