"""Pinning the package one expects, and load() errors from the runtime.

"Verified" meant self-consistent only: any intact package passed. ``expected_digest=`` /
``--expect-digest`` / ``MODELPORT_EXPECT_DIGEST`` now refuse every package but the one named.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

import modelport
from modelport.cli.main import main
from modelport.errors import PackageError, UsageError
from modelport.image.entrypoint import main as entrypoint_main
from modelport.model_format.archive import extract_archive
from modelport.plugins.testing import make_test_package

OTHER = "sha256:" + "ab" * 32


@pytest.fixture(scope="module")
def packages(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("digest-packages")
    archive = make_test_package(root / "model.mport", name="pinned")
    directory = root / "model-dir"
    directory.mkdir()
    extract_archive(archive, directory)
    return {"archive": archive, "directory": directory}


@pytest.fixture(params=["archive", "directory"])
def package(request: pytest.FixtureRequest, packages: dict[str, Path]) -> Path:
    return packages[request.param]


def _digest(path: Path) -> str:
    return modelport.verify(path).manifest.digest


def test_verify_and_load_accept_the_expected_digest(package: Path) -> None:
    digest = _digest(package)
    assert modelport.verify(package, expected_digest=digest).ok
    # Upper-case hex is the same digest.
    assert modelport.verify(package, expected_digest=digest.upper().replace("SHA256", "sha256")).ok
    with modelport.load(package, expected_digest=digest) as loaded:
        assert loaded.digest == digest


def test_verify_and_load_refuse_any_other(package: Path) -> None:
    from modelport.errors import DigestMismatch

    digest = _digest(package)
    for call in (modelport.verify, modelport.load):
        with pytest.raises(DigestMismatch) as info:
            call(package, expected_digest=OTHER)
        assert isinstance(info.value, PackageError) and info.value.exit_code == 4
        assert OTHER in str(info.value) and digest in str(info.value)


@pytest.mark.parametrize(
    "bad", ["abc", "sha256:" + "0" * 63, "md5:" + "0" * 64, "sha256:" + "g" * 64]
)
def test_a_malformed_expected_digest_is_a_usage_error(package: Path, bad: str) -> None:
    with pytest.raises(UsageError, match="64 hex digits"):
        modelport.verify(package, expected_digest=bad)
    with pytest.raises(UsageError, match="64 hex digits"):
        modelport.load(package, expected_digest=bad)


def test_cli_verify_and_predict(
    package: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    digest = _digest(package)
    assert main(["verify", str(package), "--expect-digest", digest]) == 0
    capsys.readouterr()
    assert main(["verify", str(package), "--expect-digest", OTHER]) == 4
    err = capsys.readouterr().err
    assert f"is not the expected {OTHER}" in err and "Traceback" not in err
    assert main(["verify", str(package), "--expect-digest", "sha256:nope"]) == 2
    assert "--expect-digest" in capsys.readouterr().err
    body = tmp_path / "in.json"
    body.write_text(json.dumps({"inputs": {"X": [[1.0, 2.0]]}}))
    assert main(["predict", str(package), "-i", str(body), "--expect-digest", OTHER]) == 4
    assert main(["predict", str(package), "-i", str(body), "--expect-digest", digest]) == 0
    assert "predictions" in capsys.readouterr().out


def test_serve_refuses_another_package_before_any_worker_starts(
    package: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert main(["serve", str(package), "--port", "0", "--expect-digest", OTHER]) == 4
    assert f"is not the expected {OTHER}" in capsys.readouterr().err
    # Inside images the option comes from its variable.
    monkeypatch.setenv("MODELPORT_EXPECT_DIGEST", OTHER)
    assert main(["serve", str(package), "--port", "0"]) == 4
    assert f"is not the expected {OTHER}" in capsys.readouterr().err
    monkeypatch.setenv("MODELPORT_EXPECT_DIGEST", "sha256:short")
    assert main(["serve", str(package), "--port", "0"]) == 2


def test_the_image_entrypoint_honours_the_variable(
    packages: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    directory = packages["directory"]
    env = {"MODELPORT_PACKAGE": str(directory), "MODELPORT_EXPECT_DIGEST": OTHER}
    assert entrypoint_main(["verify"], env) == 4
    first = capsys.readouterr().err.splitlines()[0]
    assert "refusing to start" in first and "MODELPORT_EXPECT_DIGEST" in first
    env["MODELPORT_EXPECT_DIGEST"] = _digest(directory)
    assert entrypoint_main(["verify"], env) == 0
    env["MODELPORT_EXPECT_DIGEST"] = "sha256:1"
    assert entrypoint_main(["verify"], env) == 2


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "home"
    monkeypatch.setenv("MODELPORT_HOME", str(path))
    return path


def test_deploy_refuses_another_package_before_any_step(
    home: Path, packages: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    archive = str(packages["archive"])
    for verb in (["deploy"], ["deployments", "update"]):
        code = main([*verb, archive, "-t", "local", "-n", "x", "--expect-digest", OTHER])
        assert code == 4
        assert f"is not the expected {OTHER}" in capsys.readouterr().err
    assert main(["deploy", archive, "-t", "local", "-n", "x", "--expect-digest", "x"]) == 2
    assert not (home / "deployments" / "local" / "x").exists()
    # The right digest gets as far as the plan.
    digest = _digest(packages["archive"])
    dry = ["deploy", archive, "-t", "local", "-n", "x", "--dry-run", "--expect-digest", digest]
    assert main(dry) == 0
    assert "Nothing was created." in capsys.readouterr().out


# --- load() wraps the runtime's errors ----------------------------------------------------------


def _broken_model() -> onnx.ModelProto:
    """Valid protobuf that ONNX Runtime refuses: an operator no domain defines."""
    graph = helper.make_graph(
        [helper.make_node("NoSuchOperator", ["X"], ["Y"])],
        "broken",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, [None, 2])],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [None, 2])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


@pytest.mark.parametrize("content", ["runtime-refuses", "not-protobuf"])
def test_load_wraps_what_the_runtime_raises(
    packages: dict[str, Path], tmp_path: Path, content: str
) -> None:
    """A model file that digests say is intact but the runtime cannot load is a PackageError."""
    from modelport.model_format.archive import file_digest
    from modelport.model_format.manifest import MANIFEST_NAME, parse

    root = tmp_path / "broken"
    root.mkdir()
    extract_archive(packages["archive"], root)
    manifest = json.loads((root / MANIFEST_NAME).read_bytes())
    model = root / manifest["flavor"]["model"]
    data = _broken_model().SerializeToString() if content == "runtime-refuses" else b"not onnx"
    model.write_bytes(data)
    manifest["files"][model.name] = file_digest(model)
    (root / MANIFEST_NAME).write_bytes(parse(json.dumps(manifest).encode()).to_json())
    with pytest.raises(PackageError) as info:
        modelport.load(root)
    message = str(info.value)
    if content == "runtime-refuses":
        assert str(root) in message
        assert "cannot be loaded" in message and "NoSuchOperator" in message
        assert len(message) < 800
        assert info.value.__cause__ is not None  # the runtime's own exception, kept as the cause
    else:
        assert "not a readable ONNX model" in message
    body = tmp_path / "in.json"
    body.write_text(json.dumps({"inputs": {"X": [[1.0, 2.0]]}}))
    assert main(["predict", str(root), "-i", str(body)]) == 4


def test_predicting_still_works_after_the_checks(packages: dict[str, Path]) -> None:
    with modelport.load(packages["directory"]) as loaded:
        out = loaded.predict({"X": np.array([[1.0, 2.0]], dtype=np.float32)})
    assert out["Y"].tolist() == [[1.0, 2.0]]
