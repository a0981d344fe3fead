"""Differential test: MLflow's own scoring server and ``modelport serve --answer mlflow``.

The same scikit-learn classifiers are saved with ``mlflow.sklearn.save_model`` (skops, with a
signature) and served by MLflow's scoring server, started exactly as ``mlflow models serve
--env-manager local`` starts it (``mlflow.pyfunc.scoring_server.get_cmd``: uvicorn on
``mlflow.pyfunc.scoring_server.app:app``); the same directories are packed with modelport's MLflow
source and served with ``--answer mlflow``. Every body MLflow answers is posted to both, and the
JSON answers must be equal.

- ``table``: a ColumnTransformer pipeline fitted on a DataFrame (``num`` float, ``cat`` string),
  with string class labels;
- ``matrix``: a LogisticRegression fitted on a float64 numpy matrix (a tensor signature).
"""

from __future__ import annotations

import json
import re
import shlex
import signal
import subprocess
import sys
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from clients.models import fit_table_pipeline, table_frame
from serving_support import Response, Server, request, start_server

import modelport
from process_helpers import wait_for

# MLflow's servers take ~4 s to start and the models ~3 s to save: ~10 s for the module.
pytestmark = pytest.mark.slow


#: Given, so that save_model does not infer them (a subprocess loading the model: seconds).
REQUIREMENTS = ["scikit-learn"]


@dataclass
class Reference:
    """MLflow's scoring server for one model directory."""

    proc: subprocess.Popen[bytes]
    log_path: Path
    url: str = ""

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


def start_reference(model_dir: Path, log_dir: Path) -> Reference:
    """Start MLflow's scoring server on a free loopback port (not yet waited for)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from mlflow.pyfunc import scoring_server

    # (get_cmd's host is annotated int; it is the address string mlflow models serve passes.)
    command, env = scoring_server.get_cmd(
        model_uri=str(model_dir),
        host="127.0.0.1",  # type: ignore[arg-type]
        nworkers=1,
    )
    args = shlex.split(command)
    assert args[0] == "uvicorn", command
    # The venv's uvicorn, and port 0 (get_cmd drops a falsy port): uvicorn prints the one it got.
    args = [sys.executable, "-m", "uvicorn", "--port", "0", *args[1:]]
    log_path = log_dir / f"mlflow-{model_dir.name}.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=env)
    return Reference(proc, log_path)


def wait_reference(reference: Reference) -> None:
    def announced() -> bool:
        if reference.proc.poll() is not None:
            raise AssertionError(f"MLflow's server exited:\n{reference.log()[-3000:]}")
        match = re.search(r"Uvicorn running on (http://127\.0\.0\.1:\d+)", reference.log())
        if match:
            reference.url = match.group(1)
        return bool(match)

    wait_for(announced, "MLflow's scoring server to listen", timeout=60, log=reference.log)

    def ready() -> bool:
        try:
            return request(reference.url + "/ping", timeout=5).status == 200
        except OSError:
            return False

    wait_for(ready, "MLflow's scoring server to be ready", timeout=60, log=reference.log)


@dataclass(frozen=True)
class Pair:
    reference: Reference
    modelport: Server


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Pair]]:
    from sklearn.linear_model import LogisticRegression

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # MLflow's own import-time and type-hint chatter
        import mlflow.sklearn
        from mlflow.models import infer_signature

        root = tmp_path_factory.mktemp("mlflow-differential")
        frame = table_frame(150, seed=51)
        table = fit_table_pipeline(frame, classes=("no", "yes"))
        rng = np.random.default_rng(52)
        x = rng.normal(size=(150, 4))
        y = (x[:, 0] > 0).astype(np.int64) + (x[:, 1] > 0.5).astype(np.int64)
        matrix = LogisticRegression(max_iter=500).fit(x, y)
        dirs = {"table": root / "table", "matrix": root / "matrix"}
        mlflow.sklearn.save_model(
            table,
            dirs["table"],
            signature=infer_signature(frame, table.predict(frame)),
            input_example=frame.head(3),
            pip_requirements=REQUIREMENTS,
        )
        mlflow.sklearn.save_model(
            matrix,
            dirs["matrix"],
            signature=infer_signature(x, matrix.predict(x)),
            input_example=x[:3],
            pip_requirements=REQUIREMENTS,
        )

    logs = tmp_path_factory.mktemp("mlflow-differential-logs")
    references: dict[str, Reference] = {}
    ours: dict[str, Server] = {}
    try:
        # MLflow's servers take seconds to import MLflow: start both, pack meanwhile.
        for name, path in dirs.items():
            references[name] = start_reference(path, logs)
        for name, path in dirs.items():
            package = modelport.pack(path, root / f"{name}.mport")
            package.close()
            ours[name] = start_server(
                root / f"{name}.mport", ["--workers", "1", "--answer", "mlflow"], log_dir=logs
            )
        for reference in references.values():
            wait_reference(reference)
        yield {name: Pair(references[name], ours[name]) for name in dirs}
    finally:
        for reference in references.values():
            reference.stop()
        for server in ours.values():
            assert server.stop() == 0, server.log()


def post(url: str, body: str | bytes, content_type: str) -> Response:
    return request(url + "/invocations", "POST", body, {"Content-Type": content_type})


def _table_bodies() -> dict[str, tuple[str, str]]:
    frame = table_frame(8, seed=53)
    records = frame.to_dict(orient="records")
    split = frame.to_dict(orient="split")
    columns = {c: frame[c].tolist() for c in frame.columns}
    first = records[0]
    return {
        "dataframe_split": ("application/json", json.dumps({"dataframe_split": split})),
        "dataframe_split-no-index": (
            "application/json",
            json.dumps({"dataframe_split": frame.to_dict(orient="split", index=False)}),
        ),
        "dataframe_records": ("application/json", json.dumps({"dataframe_records": records})),
        "instances-records": ("application/json", json.dumps({"instances": records})),
        "instances-columns": ("application/json", json.dumps({"instances": columns})),
        "inputs-columns": ("application/json", json.dumps({"inputs": columns})),
        "inputs-records": ("application/json", json.dumps({"inputs": records})),
        "inputs-one-value-per-column": ("application/json", json.dumps({"inputs": first})),
        "csv-header": ("text/csv", frame.to_csv(index=False)),
        "csv-header-reordered": ("text/csv", frame[["cat", "num"]].to_csv(index=False)),
        "csv-header-and-index": ("text/csv", frame.to_csv()),
        "csv-extra-column": ("text/csv", frame.assign(extra=1).to_csv(index=False)),
        "params": (
            "application/json",
            json.dumps({"dataframe_records": records, "params": {}}),
        ),
    }


def _matrix_bodies() -> dict[str, tuple[str, str]]:
    rows = np.random.default_rng(54).normal(size=(8, 4)).round(4)
    frame = pd.DataFrame(rows)
    return {
        "inputs": ("application/json", json.dumps({"inputs": rows.tolist()})),
        "instances": ("application/json", json.dumps({"instances": rows.tolist()})),
        "dataframe_split": (
            "application/json",
            json.dumps({"dataframe_split": frame.to_dict(orient="split")}),
        ),
        "dataframe_records": (
            "application/json",
            json.dumps({"dataframe_records": frame.to_dict(orient="records")}),
        ),
        # No CSV: MLflow refuses CSV for a tensor signature ("TensorSpec only supports numpy
        # types"), so there is nothing to compare with.
        "one-row": ("application/json", json.dumps({"inputs": rows[:1].tolist()})),
    }


CASES = [("table", name, *body) for name, body in _table_bodies().items()] + [
    ("matrix", name, *body) for name, body in _matrix_bodies().items()
]


@pytest.mark.parametrize(
    ("model", "name", "content_type", "body"),
    CASES,
    ids=[f"{model}-{name}" for model, name, _, _ in CASES],
)
def test_same_answer_as_mlflow(
    servers: dict[str, Pair], model: str, name: str, content_type: str, body: str
) -> None:
    pair = servers[model]
    theirs = post(pair.reference.url, body, content_type)
    # Only bodies MLflow itself answers are compared.
    assert theirs.status == 200, (theirs.status, theirs.body[:500])
    ours = post(pair.modelport.url, body, content_type)
    assert ours.status == 200, (ours.status, ours.body[:500])
    assert ours.json() == theirs.json()


def test_both_refuse_a_missing_column(servers: dict[str, Pair]) -> None:
    body = json.dumps({"dataframe_records": [{"num": 1.0}]})
    pair = servers["table"]
    theirs = post(pair.reference.url, body, "application/json")
    ours = post(pair.modelport.url, body, "application/json")
    assert theirs.status == ours.status == 400, (theirs.body[:300], ours.body[:300])
    # Both MLflow-shaped, but not the same code: MLflow answers INVALID_PARAMETER_VALUE (with its
    # sqlstate and error_class), modelport BAD_REQUEST; so only the shape is compared.
    assert {"error_code", "message"} <= set(theirs.json())
    assert set(ours.json()) == {"error_code", "message"}


def test_version_route_like_mlflow(servers: dict[str, Pair]) -> None:
    pair = servers["table"]
    theirs = request(pair.reference.url + "/version")
    ours = request(pair.modelport.url + "/version")
    assert theirs.status == ours.status == 200
    assert ours.body.decode() == modelport.__version__
    # MLflow labels its version text application/json; the contract says text/plain (MLflow's
    # client reads .text, whatever the label).
    assert ours.headers["content-type"].split(";")[0] == "text/plain"
    for route in ("/ping", "/health"):
        assert request(pair.reference.url + route).status == 200
        assert request(pair.modelport.url + route).status == 200
