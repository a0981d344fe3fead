"""A bounded schemathesis run over the server's own /openapi.json.

Checks: no 5xx, every status, content type, header and body as documented, and requests that
violate the schema are rejected. Not checked: that every schema-valid request is accepted
(``positive_data_acceptance``), because a table's column names and a CSV body's content depend on
the model in ways a JSON schema cannot express (the server answers those with a documented 400).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from serving_support import Server

CHECKS = ",".join(
    [
        "not_a_server_error",
        "status_code_conformance",
        "content_type_conformance",
        "response_headers_conformance",
        "response_schema_conformance",
        "negative_data_rejection",
    ]
)


def schemathesis(url: str, max_examples: int, workdir: Path) -> subprocess.CompletedProcess[str]:
    st = shutil.which("st", path=str(Path(sys.executable).parent))
    if st is None:
        pytest.fail("schemathesis is not installed: install the 'test' dependency group")
    return subprocess.run(
        [
            st,
            "run",
            f"{url}/openapi.json",
            "--checks",
            CHECKS,
            "--max-examples",
            str(max_examples),
            "--seed",
            "20240601",
            "--request-timeout",
            "20",
            "--no-color",
        ],
        capture_output=True,
        text=True,
        timeout=240,
        cwd=workdir,
        check=False,
    )


def test_schemathesis_single_input_model_with_vertex_routes(
    iris_server: Server, tmp_path: Path
) -> None:
    result = schemathesis(iris_server.url, 30, tmp_path)
    assert result.returncode == 0, result.stdout[-6000:]
    assert "Tested: " in result.stdout
    assert "Traceback" not in iris_server.log()


def test_schemathesis_multi_input_model(dtypes_server: Server, tmp_path: Path) -> None:
    result = schemathesis(dtypes_server.url, 15, tmp_path)
    assert result.returncode == 0, result.stdout[-6000:]
    assert "Traceback" not in dtypes_server.log()
