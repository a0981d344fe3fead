"""``modelport predict`` prints what ``modelport serve`` answers, byte for byte.

The same package and the same JSON body go to the console script (``-i -``) and to a real
server's ``POST /invocations``: the printed line is the answer's body (float32 outputs in their
shortest form, ``0.9`` and not ``0.8999999761581421``; non-finite floats as ``NaN``/``Infinity``).
"""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from cli_serving import MODELPORT, Served, start

import modelport
from bodies_corpus import corpus_models

#: The numbers of a JSON text, as written.
NUMBER = re.compile(rb"-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?|NaN|-?Infinity")


def predict_cli(package: Path, body: bytes) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [MODELPORT, "predict", str(package), "-i", "-"],
        input=body,
        capture_output=True,
        env=os.environ.copy(),
        timeout=120,
        check=False,
    )


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A single-input float32 model, and a classifier with float32 probabilities."""
    from sklearn.linear_model import LogisticRegression

    root = tmp_path_factory.mktemp("same-answers")
    rng = np.random.default_rng(3)
    x = rng.normal(size=(120, 3)).astype(np.float32)
    y = (x[:, 0] + 0.5 * x[:, 1] > 0).astype(np.int64)
    classifier = root / "classifier.mport"
    modelport.pack(
        LogisticRegression().fit(x, y), classifier, name="classifier", example=x[:10]
    ).close()
    return {"single": corpus_models(root)["single"].path, "classifier": classifier}


@pytest.fixture(scope="module")
def servers(models: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    logs = tmp_path_factory.mktemp("same-answers-logs")
    started: dict[str, Served] = {}
    try:
        for name, path in models.items():
            started[name] = start(path, log_dir=logs)
        yield started
    finally:
        for server in started.values():
            assert server.stop() == 0, server.log()


BODIES = {
    "single": [
        # y = x @ [[0, 1], [2, 3], [4, 5]]: 0.9 (float32) in, 0.9 out.
        "[[0.9, 0.0, 0.0], [0.1, 0.2, 0.3]]",
        '{"inputs": [[0.9, 0.0, 0.0]]}',
        '{"instances": [{"x": [0.7, 0.1, 0.0]}]}',
        '{"dataframe_split": {"columns": ["a", "b", "c"], "data": [[0.3, 0.3, 0.3]]}}',
        "[[NaN, 1.0, 2.0], [Infinity, 0.0, 0.0], [-Infinity, 0.0, 0.0]]",
        '{"inputs": [[1e-7, 3.4e38, 0.0]], "params": {"outputs": ["y"]}}',
    ],
    "classifier": [
        "[[0.25, -1.5, 2.0], [1.0, 1.0, 1.0], [-0.125, 0.5, 3.0]]",
        '{"instances": [[0.9, 0.1, 0.2]], "params": {"outputs": ["probabilities"]}}',
        '{"dataframe_records": [{"a": 0.5, "b": 0.5, "c": 0.5}]}',
    ],
}
CASES = [(model, body) for model, bodies in BODIES.items() for body in bodies]


@pytest.mark.parametrize(
    ("model", "body"), CASES, ids=[f"{m}-{i}" for i, (m, _) in enumerate(CASES)]
)
def test_predict_prints_the_server_s_answer(
    models: dict[str, Path], servers: dict[str, Served], model: str, body: str
) -> None:
    answer = servers[model].post(
        "/invocations", body.encode(), {"Content-Type": "application/json"}
    )
    assert answer.status == 200, answer.body
    printed = predict_cli(models[model], body.encode())
    assert printed.returncode == 0, printed.stderr
    assert printed.stdout == answer.body + b"\n"
    parsed = json.loads(printed.stdout)  # NaN and Infinity tokens read back as floats
    assert _same(parsed, json.loads(answer.body))


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a):
        return math.isnan(b)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    return bool(a == b)


def test_float32_outputs_print_in_their_shortest_form(models: dict[str, Path]) -> None:
    printed = predict_cli(models["single"], b"[[0.9, 0.0, 0.0], [0.1, 0.2, 0.3]]")
    assert printed.returncode == 0, printed.stderr
    assert printed.stdout.startswith(b'{"predictions":[[0.0,0.9],[')
    x = np.array([[0.9, 0.0, 0.0], [0.1, 0.2, 0.3]], np.float32)
    y = x @ np.arange(6, dtype=np.float32).reshape(3, 2)
    for token, value in zip(NUMBER.findall(printed.stdout), y.ravel(), strict=True):
        # The float32's own shortest digits (numpy's repr of it), not those of it widened.
        assert float(token) == float(str(value)), (token, value)
        assert np.float32(float(token)) == value


def test_non_finite_outputs_print_as_tokens(models: dict[str, Path]) -> None:
    printed = predict_cli(models["single"], b"[[NaN, 1.0, 2.0], [Infinity, 0.0, 0.0]]")
    assert printed.returncode == 0, printed.stderr
    assert printed.stdout == b'{"predictions":[[NaN,NaN],[NaN,Infinity]]}\n'


MODES = ["--answer", "mlflow", "--strict-inputs"]


@pytest.fixture(scope="module")
def mlflow_strict_server(
    models: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Served]:
    server = start(
        models["classifier"],
        MODES,
        log_dir=tmp_path_factory.mktemp("mlflow-strict-logs"),
    )
    yield server
    assert server.stop() == 0, server.log()


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ("[[0.25, -1.5, 2.0], [1.0, 1.0, 1.0]]", 200),  # labels only, as MLflow answers
        ('{"instances": [[0.9, 0.1, 0.2]], "params": {"outputs": ["probabilities"]}}', 200),
        # A single-input model's table is its matrix: no column is extra, strict or not.
        ('{"dataframe_split": {"columns": ["a", "b", "c"], "data": [[0.5, 0.5, 0.5]]}}', 200),
        ('{"inputs": [[0.1, 0.2]]}', 400),
    ],
)
def test_predict_answers_as_the_server_in_its_modes(
    models: dict[str, Path], mlflow_strict_server: Served, body: str, status: int
) -> None:
    answer = mlflow_strict_server.post(
        "/invocations", body.encode(), {"Content-Type": "application/json"}
    )
    assert answer.status == status, answer.body
    printed = subprocess.run(
        [MODELPORT, "predict", str(models["classifier"]), "-i", "-", *MODES],
        input=body.encode(),
        capture_output=True,
        timeout=120,
        check=False,
    )
    if status != 200:
        assert printed.returncode == 1, printed.stderr
        return
    assert printed.returncode == 0, printed.stderr
    assert printed.stdout == answer.body + b"\n"
    if "params" not in body:
        assert all(isinstance(v, int) for v in json.loads(printed.stdout)["predictions"])


def test_predict_ignores_or_refuses_extra_columns_as_the_server(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    named = corpus_models(tmp_path_factory.mktemp("strict"))["named"].path  # inputs a and b
    body = b'{"dataframe_records": [{"a": [1.0, 2.0], "b": [3], "note": "x"}]}'
    loose = predict_cli(named, body)
    assert loose.returncode == 0, loose.stderr
    assert b"ignored column(s) 'note'" in loose.stderr
    strict = subprocess.run(
        [MODELPORT, "predict", str(named), "-i", "-", "--strict-inputs"],
        input=body,
        capture_output=True,
        timeout=120,
        check=False,
    )
    assert strict.returncode == 1
    assert b"'note' feed no input" in strict.stderr
