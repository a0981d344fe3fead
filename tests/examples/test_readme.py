"""The README's examples run as written.

- Every ``python`` block is run by a test: the packing one here, the deploy one (``connect(``) by
  ``tests/deployers/test_connect.py``.
- The serving block: its ``modelport serve`` line serves the bundled example's package (written by
  the quickstart, as ``make demo`` writes it), and each of its ``curl`` lines is run with the real
  curl binary (an equivalent request in Python where curl is not installed). The only change
  made to the lines is the port: a free one instead of 8080.
"""

from __future__ import annotations

import ast
import csv
import http.client
import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import numpy as np
import pytest
from examples_support import README, Quickstart, readme_blocks

from process_helpers import wait_for

BIN = Path(sys.executable).parent


def test_every_python_block_of_the_readme_is_run_by_a_test() -> None:
    blocks = readme_blocks("python")
    assert blocks
    for block in blocks:
        # "modelport.pack(": run below; "connect(": run by tests/deployers/test_connect.py;
        # "modelport.batch": run by tests/batch/test_batch_spark.py.
        kinds = ["modelport.pack(" in block, "connect(" in block, "modelport.batch" in block]
        assert kinds.count(True) == 1, block


# --- the Python API ---------------------------------------------------------------------------


def churn_data() -> tuple[Any, Any]:
    """A fitted DataFrame pipeline (numeric and string columns) and a test frame for it."""
    pd = pytest.importorskip("pandas")
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    rng = np.random.default_rng(7)
    n = 240
    frame = pd.DataFrame(
        {
            "tenure": rng.integers(0, 72, n),
            "monthly_charges": np.round(rng.uniform(15, 110, n), 2),
            "contract": rng.choice(["month-to-month", "one-year", "two-year"], n),
        }
    )
    churned = (frame["tenure"] < 12) | (frame["contract"] == "month-to-month")
    pipeline = make_pipeline(
        ColumnTransformer(
            [
                ("numbers", StandardScaler(), ["tenure", "monthly_charges"]),
                ("contract", OneHotEncoder(handle_unknown="ignore"), ["contract"]),
            ]
        ),
        LogisticRegression(max_iter=500),
    )
    pipeline.fit(frame.iloc[:200], churned.iloc[:200].to_numpy().astype(np.int64))
    return pipeline, frame.iloc[200:].reset_index(drop=True)


def run_statements(code: str, namespace: dict[str, Any]) -> list[tuple[str, Any]]:
    """Run ``code`` a statement at a time, as a reader would type it; each expression's value."""
    values = []
    for node in ast.parse(code).body:
        source = ast.get_source_segment(code, node) or ""
        if isinstance(node, ast.Expr):
            expression = compile(ast.Expression(node.value), str(README), "eval")
            values.append((source, eval(expression, namespace)))
        else:
            exec(compile(ast.Module([node], []), str(README), "exec"), namespace)
    return values


def test_the_readme_python_example_runs_as_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (code,) = [b for b in readme_blocks("python") if "modelport.pack(" in b]
    pipeline, x_test = churn_data()
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, Any] = {"pipeline": pipeline, "x_test": x_test}
    try:
        values = run_statements(code, namespace)
        shown = dict(values)
        assert shown["package.digest"].startswith("sha256:")
        assert [s.name for s in shown["package.signature"].inputs] == list(x_test.columns)
        predictions = [v for source, v in values if source.startswith("package.predict(")]
        assert len(predictions) == 3
        rows = x_test.head(3)
        for outputs in predictions:
            assert set(outputs) == {"label", "probabilities"}
            np.testing.assert_array_equal(outputs["label"], pipeline.predict(rows))
            np.testing.assert_allclose(
                outputs["probabilities"], pipeline.predict_proba(rows), atol=1e-5
            )
        assert namespace["report"].ok
        assert namespace["package"].digest == shown["package.digest"]
    finally:
        if "package" in namespace:
            namespace["package"].close()


# --- serving the bundled example, asked with curl -----------------------------------------------


def serving_block() -> tuple[str, list[str]]:
    """The serving block's ``modelport serve`` line and its ``curl`` lines."""
    (block,) = [b for b in readme_blocks("bash") if "modelport serve" in b and "curl" in b]
    lines = [line.strip() for line in block.splitlines()]
    (serve,) = [line for line in lines if line.startswith("modelport serve")]
    curls = [line for line in lines if line.startswith("curl ")]
    assert curls
    return serve, curls


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def served(quickstart: Quickstart, tmp_path: Path) -> Iterator[int]:
    """The README's serve line, run where ``make demo`` ran; yields the port it listens on."""
    serve, _ = serving_block()
    port = free_port()
    argv = shlex.split(serve.replace("8080", str(port)), comments=True)
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    env["MODELPORT_WORKERS"] = "1"  # the line as written, on one worker
    env.pop("MODELPORT_HOST", None)
    log_path = tmp_path / "serve.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            argv, cwd=quickstart.cwd, env=env, stdout=log, stderr=subprocess.STDOUT
        )
    try:
        wait_for(
            lambda: ping(port) or proc.poll() is not None,
            "the README's modelport serve to be ready",
            timeout=120,
            log=lambda: log_path.read_text(errors="replace"),
        )
        assert proc.poll() is None, log_path.read_text(errors="replace")
        yield port
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            assert proc.wait(30) == 0, log_path.read_text(errors="replace")
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)


def ping(port: int) -> bool:
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        try:
            conn.request("GET", "/ping")
            return conn.getresponse().status == 200
        finally:
            conn.close()
    except OSError:
        return False


def curl_in_python(argv: list[str], cwd: Path) -> bytes:
    """What ``curl -s URL -H H ... -d @FILE | --data-binary @FILE`` sends, sent without curl."""
    headers: dict[str, str] = {}
    body: bytes | None = None
    url = ""
    args = iter(argv[1:])
    for arg in args:
        if arg == "-s":
            continue
        if arg == "-H":
            name, _, value = next(args).partition(":")
            headers[name.strip()] = value.strip()
        elif arg in ("-d", "--data-binary"):
            value = next(args)
            data = (cwd / value[1:]).read_bytes() if value.startswith("@") else value.encode()
            # -d drops a file's line breaks; --data-binary sends it as it is.
            body = data.replace(b"\r", b"").replace(b"\n", b"") if arg == "-d" else data
        else:
            url = arg
    parts = urlsplit(url if "://" in url else f"http://{url}")
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    try:
        conn.request("POST" if body is not None else "GET", parts.path, body, headers)
        return conn.getresponse().read()
    finally:
        conn.close()


def test_the_readme_curl_lines_ask_the_bundled_example(quickstart: Quickstart, served: int) -> None:
    _, curls = serving_block()
    # What `modelport predict` printed for the same rows (the quickstart's last line).
    expected = quickstart.result.stdout.strip().splitlines()[-1]
    # What the README says they answer, up to its ellipsis.
    said = re.search(r"Both answer `([^`…]*)…", README.read_text("utf-8"))
    assert said is not None
    assert expected.startswith(said.group(1))
    for line in curls:
        argv = shlex.split(line.replace("8080", str(served)), comments=True)
        if shutil.which("curl"):
            result = subprocess.run(
                argv, cwd=quickstart.cwd, capture_output=True, timeout=60, check=False
            )
            assert result.returncode == 0, (line, result.stderr)
            answer = result.stdout
        else:
            answer = curl_in_python(argv, quickstart.cwd)
        assert json.loads(answer) == json.loads(expected), line
        assert answer.decode() == expected, line  # the very same text, number for number
        assert len(json.loads(answer)["predictions"]["label"]) == 3


# --- batch scoring the bundled example ---------------------------------------------------------


def test_the_readme_batch_line_scores_the_bundled_example(quickstart: Quickstart) -> None:
    (block,) = [b for b in readme_blocks("bash") if "modelport batch" in b]
    (line,) = [x.strip() for x in block.splitlines() if x.strip().startswith("modelport batch")]
    argv = shlex.split(line)
    result = subprocess.run(
        [str(BIN / argv[0]), *argv[1:]], cwd=quickstart.cwd, capture_output=True, text=True,
        timeout=120, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    out = quickstart.cwd / argv[argv.index("-o") + 1]
    said = re.search(
        r"It prints `(scored 3 rows in) … s \(… rows/s\) -> (\S+)`", README.read_text()
    )
    assert said is not None
    assert said.group(1) in result.stderr and f"-> {said.group(2)}" in result.stderr
    rows = list(csv.DictReader(out.read_text().splitlines()))
    assert [r["label"] for r in rows] == ["0", "1", "1"]  # what the serving block answers
    assert list(rows[0])[-3:] == ["label", "probabilities_0", "probabilities_1"]
