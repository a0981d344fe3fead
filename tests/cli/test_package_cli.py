"""The package commands through the real console script: output, files and every exit code."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

import modelport
from process_helpers import imports_after

MODELPORT = str(Path(sys.executable).parent / "modelport")


def run(*args: str, stdin: str | None = None, env: dict[str, str] | None = None):
    return subprocess.run(
        [MODELPORT, *args],
        capture_output=True,
        text=True,
        input=stdin,
        env={**os.environ, **(env or {})},
        timeout=120,
        check=False,
    )


@pytest.fixture(scope="module")
def iris_package(tmp_path_factory: pytest.TempPathFactory) -> Path:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(120, 4)).astype(np.float32)
    y = (x[:, 0] + x[:, 1] > 0).astype(np.int64)
    model = LogisticRegression().fit(x, y)
    path = tmp_path_factory.mktemp("cli") / "clf.mport"
    modelport.pack(model, path, name="clf", example=x[:10]).close()
    return path


@pytest.fixture
def onnx_file(iris_package: Path, tmp_path: Path) -> Path:
    with tarfile.open(iris_package) as tar:
        member = tar.extractfile("model.onnx")
        assert member is not None
        target = tmp_path / "model.onnx"
        target.write_bytes(member.read())
    return target


def test_help_lists_every_command() -> None:
    result = run("--help")
    assert result.returncode == 0
    for command in ("pack", "inspect", "verify", "predict", "serve", "deploy", "targets"):
        assert command in result.stdout


def test_help_imports_nothing_heavy() -> None:
    # google-cloud-aiplatform's *-nspkg.pth puts an empty "google" module into every process:
    # what would be heavy is google.auth or google.cloud.aiplatform.
    heavy = ("numpy", "onnxruntime", "sklearn", "flask", "boto3", "azure", "google.auth", "onnx")
    heavy += ("pandas", "mlflow", "google.cloud.aiplatform", "pyarrow")
    code = "from modelport.cli.main import main\nmain(['--help'])"
    assert imports_after(code, heavy).imported == set()


def test_import_modelport_imports_nothing_heavy() -> None:
    heavy = ("numpy", "onnxruntime", "click", "sklearn")
    assert imports_after("import modelport", heavy).imported == set()


def test_pack_onnx_file_then_inspect_verify_predict(onnx_file: Path, tmp_path: Path) -> None:
    example = tmp_path / "example.json"
    example.write_text(json.dumps({"inputs": [[0.1, 0.2, 0.3, 0.4], [1, 2, 3, 4]]}))
    out = tmp_path / "m.mport"
    result = run(
        "pack",
        str(onnx_file),
        "-o",
        str(out),
        "--example",
        str(example),
        "--name",
        "demo",
        "--version",
        "2.1",
        "--metadata",
        "team=risk",
        "--json",
    )
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["name"] == "demo"
    assert summary["version"] == "2.1"
    assert summary["digest"].startswith("sha256:")
    assert summary["size_bytes"] == out.stat().st_size

    inspected = run("inspect", str(out), "--json")
    assert inspected.returncode == 0
    manifest = json.loads(inspected.stdout)["manifest"]
    assert manifest["metadata"] == {"team": "risk"}
    assert manifest["example"] == "example.json"
    assert json.loads(inspected.stdout)["digest"] == summary["digest"]

    human = run("inspect", str(out))
    assert "float32[-1, 4]" in human.stdout

    verified = run("verify", str(out))
    assert verified.returncode == 0
    assert "OK" in verified.stdout

    predicted = run("predict", str(out), "-i", str(example))
    assert predicted.returncode == 0, predicted.stderr
    predictions = json.loads(predicted.stdout)["predictions"]
    assert len(predictions["label"]) == 2
    assert len(predictions["probabilities"][0]) == 2


def test_predict_accepts_every_payload_format(iris_package: Path, tmp_path: Path) -> None:
    row = [0.5, -0.25, 1.0, 2.0]
    bodies = [
        {"inputs": {"input": [row]}},
        {"inputs": [row]},
        {"instances": [row]},
        {"dataframe_split": {"columns": ["a", "b", "c", "d"], "data": [row]}},
        {"dataframe_records": [dict(zip("abcd", row, strict=True))]},
    ]
    results = []
    for body in bodies:
        result = run("predict", str(iris_package), "-i", "-", stdin=json.dumps(body))
        assert result.returncode == 0, (body, result.stderr)
        results.append(json.loads(result.stdout))
    assert all(r == results[0] for r in results)


def test_predict_writes_output_file(iris_package: Path, tmp_path: Path) -> None:
    out = tmp_path / "pred.json"
    result = run(
        "predict",
        str(iris_package),
        "-i",
        "-",
        "-o",
        str(out),
        stdin=json.dumps({"inputs": [[0, 0, 0, 0]]}),
    )
    assert result.returncode == 0
    assert result.stdout == ""
    assert "predictions" in json.loads(out.read_text())


def test_exit_1_for_bad_input_without_echoing_it(iris_package: Path) -> None:
    result = run("predict", str(iris_package), "-i", "-", stdin='{"inputs": [[987654.321, 2, 3]]}')
    assert result.returncode == 1
    assert "expects size 4" in result.stderr
    assert "987654" not in result.stderr
    assert "Traceback" not in result.stderr


def test_exit_1_for_malformed_json(iris_package: Path) -> None:
    result = run("predict", str(iris_package), "-i", "-", stdin="{not json")
    assert result.returncode == 1
    assert "malformed JSON body (line 1" in result.stderr


def test_exit_2_for_usage_errors(iris_package: Path, tmp_path: Path) -> None:
    assert run("pack").returncode == 2
    assert run("no-such-command").returncode == 2
    assert run("predict", str(iris_package)).returncode == 2  # -i is required
    bad_metadata = run("pack", str(iris_package), "-o", str(tmp_path / "x"), "--metadata", "oops")
    assert bad_metadata.returncode == 2
    assert "KEY=VALUE" in bad_metadata.stderr


def test_exit_4_for_tampered_packages(iris_package: Path, tmp_path: Path) -> None:
    directory = tmp_path / "pkg"
    assert run("pack", str(iris_package), "-o", str(directory)).returncode == 0
    assert run("verify", str(directory)).returncode == 0

    (directory / "model.onnx").write_bytes(b"tampered")
    (directory / "stray.txt").write_text("not listed")
    (directory / "example.json").unlink()
    result = run("verify", str(directory))
    assert result.returncode == 4
    assert "altered file: model.onnx" in result.stderr
    assert "extra file (not listed in the manifest): stray.txt" in result.stderr
    assert "missing file: example.json" in result.stderr

    as_json = run("verify", str(directory), "--json")
    assert as_json.returncode == 4
    report = json.loads(as_json.stdout)
    assert report["ok"] is False
    assert len(report["problems"]) == 3

    predicted = run("predict", str(directory), "-i", "-", stdin='{"inputs": [[0, 0, 0, 0]]}')
    assert predicted.returncode == 4
    assert "Traceback" not in predicted.stderr


def test_exit_4_for_an_invalid_manifest(tmp_path: Path) -> None:
    directory = tmp_path / "bad"
    directory.mkdir()
    (directory / "modelport.json").write_text(json.dumps({"format_version": "1.0", "name": "x y"}))
    result = run("inspect", str(directory))
    assert result.returncode == 4
    for field in ("name:", "version:", "flavor:", "signature:", "files:"):
        assert field in result.stderr


def test_pack_refuses_to_overwrite_without_force(iris_package: Path, tmp_path: Path) -> None:
    out = tmp_path / "copy.mport"
    assert run("pack", str(iris_package), "-o", str(out)).returncode == 0
    before = out.read_bytes()
    again = run("pack", str(iris_package), "-o", str(out))
    assert again.returncode == 1
    assert "--force" in again.stderr
    assert run("pack", str(iris_package), "-o", str(out), "--force").returncode == 0
    assert out.read_bytes() == before  # the same package gives the same bytes


def test_pack_unknown_source_is_a_clear_error(tmp_path: Path) -> None:
    source = tmp_path / "weights.bin"
    source.write_bytes(b"\0" * 10)
    result = run("pack", str(source), "-o", str(tmp_path / "out.mport"))
    assert result.returncode == 1
    assert "don't know how to pack" in result.stderr
    assert not (tmp_path / "out.mport").exists()


def test_python_flavor_needs_allow_code(tmp_path: Path) -> None:
    code = tmp_path / "doubler.py"
    code.write_text(
        "import numpy as np\n\n"
        "class Doubler:\n"
        "    def load(self, path):\n        self.factor = 2.0\n\n"
        "    def predict(self, inputs):\n"
        "        return {'doubled': np.asarray(inputs['x']) * self.factor}\n"
    )
    example = tmp_path / "ex.json"
    example.write_text(json.dumps({"inputs": {"x": [[1.0, 2.0]]}}))
    out = tmp_path / "doubler.mport"
    assert run("pack", str(code), "-o", str(out), "--example", str(example)).returncode == 0

    refused = run("predict", str(out), "-i", str(example))
    assert refused.returncode == 1
    assert "--allow-code" in refused.stderr
    allowed = run("predict", str(out), "-i", str(example), "--allow-code")
    assert allowed.returncode == 0, allowed.stderr
    assert json.loads(allowed.stdout) == {"predictions": [[2.0, 4.0]]}
    via_env = run("predict", str(out), "-i", str(example), env={"MODELPORT_ALLOW_CODE": "1"})
    assert via_env.returncode == 0


def test_debug_shows_the_traceback(iris_package: Path) -> None:
    result = run("--debug", "predict", str(iris_package), "-i", "-", stdin='{"inputs": [[1]]}')
    assert result.returncode != 0
    assert "Traceback" in result.stderr
