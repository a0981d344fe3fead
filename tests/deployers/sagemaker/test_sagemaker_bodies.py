"""``deployments predict --content-type``: bodies that are not JSON objects, sent as they are.

SageMaker's ``InvokeEndpoint`` takes any content type; the sagemaker target sends the body
unchanged, and the CLI prints (or writes, for a binary answer) what the endpoint answered.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from fake_aws import FakeAWS
from sagemaker_support import sagemaker_target

from modelport.cli.main import main
from modelport.model_format.package import load

ROWS = np.array([[1.0, 2.0], [3.0, -4.5]], dtype=np.float32)


@pytest.fixture
def deployed(aws: FakeAWS, home: Path, package_paths: dict[str, Path]) -> str:
    target = sagemaker_target()
    with load(package_paths["v2"]) as package:  # Y = X * 2
        target.create("bodies", package)
    return "bodies"


def predict(*args: str) -> int:
    base = ["deployments", "predict", "-t", "sagemaker:/us-east-1", "-n"]
    return main([*base, *args])


def test_a_csv_body_is_sent_as_it_is(
    aws: FakeAWS, deployed: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = tmp_path / "rows.csv"
    rows.write_text("1.0,2.0\n3.0,-4.5\n", encoding="utf-8")
    code = predict(deployed, "-i", str(rows), "--content-type", "text/csv", "--accept", "text/csv")
    assert code == 0
    assert capsys.readouterr().out == "2.0,4.0\n6.0,-9.0\n"
    (call,) = aws.calls("sagemaker-runtime", "InvokeEndpoint")
    assert call.params["ContentType"] == "text/csv"
    assert call.params["Accept"] == "text/csv"
    assert call.params["Body"] == b"1.0,2.0\n3.0,-4.5\n"


def test_a_binary_answer_goes_to_a_file(aws: FakeAWS, deployed: str, tmp_path: Path) -> None:
    request, answer = tmp_path / "rows.npy", tmp_path / "answer.npy"
    np.save(request, ROWS)
    mime = "application/x-npy"
    code = predict(deployed, "-i", str(request), "--content-type", mime, "--accept", mime, "-o",
                   str(answer))  # fmt: skip
    assert code == 0
    np.testing.assert_array_equal(np.load(io.BytesIO(answer.read_bytes())), ROWS * 2)


def test_a_binary_answer_is_not_printed(
    deployed: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    request = tmp_path / "rows.npy"
    np.save(request, ROWS)
    mime = "application/x-npy"
    assert predict(deployed, "-i", str(request), "--content-type", mime, "--accept", mime) == 2
    assert "write it to a file with -o" in capsys.readouterr().err


def test_a_body_the_model_refuses_is_an_input_error(
    deployed: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = tmp_path / "rows.csv"
    rows.write_text("1.0,2.0,3.0\n", encoding="utf-8")
    assert predict(deployed, "-i", str(rows), "--content-type", "text/csv") == 1
    err = capsys.readouterr().err
    assert err.startswith("Error: ") and "Traceback" not in err


def test_accept_needs_a_content_type(
    deployed: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    request = tmp_path / "rows.json"
    request.write_text('{"inputs": [[1.0, 2.0]]}', encoding="utf-8")
    assert predict(deployed, "-i", str(request), "--accept", "text/csv") == 2
    assert "--accept goes with --content-type" in capsys.readouterr().err


def test_a_target_that_sends_json_only_says_so(
    home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = tmp_path / "rows.csv"
    rows.write_text("1.0,2.0\n", encoding="utf-8")
    args = ["deployments", "predict", "-t", "local", "-n", "any", "-i", str(rows)]
    assert main([*args, "--content-type", "text/csv"]) == 2
    assert "sends JSON objects only" in capsys.readouterr().err
