"""The quickstart example runs end to end, as `make demo` runs it."""

from __future__ import annotations

import json

from examples_support import Quickstart

import modelport


def test_quickstart_packs_verifies_and_predicts(quickstart: Quickstart) -> None:
    stdout = quickstart.result.stdout
    assert "$ modelport verify" in stdout
    assert "OK:" in stdout
    path = quickstart.out_dir / "breast-cancer.mport"
    package = modelport.load(path)
    assert package.name == "breast-cancer"
    assert package.version == "1.0.0"
    assert modelport.verify(path).ok
    predictions = json.loads(stdout.strip().splitlines()[-1])["predictions"]
    assert set(predictions) == {"label", "probabilities"}
    assert len(predictions["label"]) == 3
    # The Python API took the DataFrame itself, and agreed with scikit-learn.
    (line,) = [li for li in stdout.splitlines() if "max difference to scikit-learn" in li]
    assert float(line.rsplit(" ", 1)[1]) < 1e-4
    assert f"labels {predictions['label']}" in line
    package.close()


def test_quickstart_writes_the_requests_the_readme_sends(quickstart: Quickstart) -> None:
    body = json.loads((quickstart.out_dir / "request.json").read_text())
    columns = body["dataframe_split"]["columns"]
    assert len(columns) == 30 and len(body["dataframe_split"]["data"]) == 3
    header, *rows = (quickstart.out_dir / "request.csv").read_text().splitlines()
    assert header.split(",") == columns  # a header row naming the model's inputs
    assert len(rows) == 3
