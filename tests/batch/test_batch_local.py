"""`modelport batch --engine local` and score_file: files in, the same rows scored out, whole."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

import modelport
from modelport.batch import score_file
from modelport.cli.main import main
from modelport.errors import InputError

FEATURES = ["f0", "f1", "f2", "f3"]


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["batch", *args])
    out, err = capsys.readouterr()
    return code, out, err


def frame(x: np.ndarray) -> pd.DataFrame:
    table = pd.DataFrame(x.copy(), columns=FEATURES)  # pandas would share x's memory
    table.insert(0, "id", np.arange(len(x)))
    return table


def leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.startswith("."))


def test_parquet_in_parquet_out_keeps_every_row_and_column(
    capsys: pytest.CaptureFixture[str], packages: Any, tmp_path: Path
) -> None:
    source = tmp_path / "rows.parquet"
    frame(packages.x).to_parquet(source, index=False)
    out = tmp_path / "scored.parquet"
    code, stdout, err = run(
        capsys,
        str(packages.lr),
        "-i",
        str(source),
        "-o",
        str(out),
        "--columns",
        ",".join(FEATURES),
        "--batch-size",
        "7",
        "--workers",
        "2",
        "--json",
    )
    assert code == 0, err
    report = json.loads(stdout)
    assert report["rows"] == len(packages.x) and report["outputs"] == ["label", "probabilities"]
    scored = pq.read_table(out).to_pandas()
    assert list(scored.columns) == ["id", *FEATURES, "label", "probabilities"]
    assert scored["id"].tolist() == list(range(len(packages.x)))  # in order, across 2 threads
    want = modelport.load(packages.lr).predict(packages.x)
    np.testing.assert_array_equal(scored["label"].to_numpy(), want["label"])
    np.testing.assert_array_equal(np.stack(scored["probabilities"]), want["probabilities"])
    assert leftovers(tmp_path) == []


def test_csv_in_csv_out_spreads_arrays_over_columns(
    capsys: pytest.CaptureFixture[str], packages: Any, tmp_path: Path
) -> None:
    source = tmp_path / "rows.csv"
    frame(packages.x).to_csv(source, index=False)
    out = tmp_path / "scored.csv"
    code, _, err = run(
        capsys,
        str(packages.lr_dir),
        "-i",
        str(source),
        "-o",
        str(out),
        "--columns",
        ",".join(FEATURES),
        "--prefix",
        "p_",
    )
    assert code == 0, err
    assert f"scored {len(packages.x)} rows in" in err and f"-> {out}" in err
    scored = pd.read_csv(out)
    assert list(scored.columns)[-3:] == ["p_label", "p_probabilities_0", "p_probabilities_1"]
    want = modelport.load(packages.lr).predict(packages.x)
    np.testing.assert_array_equal(scored["p_label"].to_numpy(), want["label"])
    np.testing.assert_allclose(
        scored[["p_probabilities_0", "p_probabilities_1"]].to_numpy(),
        want["probabilities"],
        rtol=1e-6,
    )


def test_a_table_of_mixed_types_from_csv_and_json_lines(packages: Any, tmp_path: Path) -> None:
    test = packages.table.test
    package = modelport.load(packages.table_package)
    want = package.predict(test)["label"].tolist()
    test.to_csv(tmp_path / "people.csv", index=False)
    test.to_json(tmp_path / "people.jsonl", orient="records", lines=True)
    for name in ("people.csv", "people.jsonl"):
        out = tmp_path / f"{name}.parquet"
        report = score_file(packages.table_package, tmp_path / name, out)
        assert report.rows == len(test) and report.format == "parquet"
        assert pq.read_table(out).column("label").to_pylist() == want


def test_a_schema_problem_is_said_before_anything_is_written(
    capsys: pytest.CaptureFixture[str], packages: Any, tmp_path: Path
) -> None:
    source = tmp_path / "people.parquet"
    packages.table.test.rename(columns={"color": "colour"}).to_parquet(source)
    out = tmp_path / "out.parquet"
    code, _, err = run(capsys, str(packages.table_package), "-i", str(source), "-o", str(out))
    assert code == 1
    assert "Error: no column(s) 'color': the model's inputs are 'age' (float32[-1, 1])" in err
    assert "Traceback" not in err and not out.exists() and leftovers(tmp_path) == []


def test_a_failing_batch_leaves_no_output_whole_or_partial(
    capsys: pytest.CaptureFixture[str], packages: Any, tmp_path: Path
) -> None:
    rows = frame(packages.x)
    rows.loc[len(rows) - 1, "f2"] = None  # the last batch only
    source = tmp_path / "rows.parquet"
    rows.to_parquet(source, index=False)
    out = tmp_path / "out.parquet"
    args = [str(packages.lr), "-i", str(source), "-o", str(out), "--columns", ",".join(FEATURES)]
    code, _, err = run(capsys, *args, "--batch-size", "10")
    assert code == 1 and "column(s) 'f2' hold null values" in err
    assert not out.exists() and leftovers(tmp_path) == []
    code, _, err = run(capsys, *args, "--on-null", "skip", "--json")
    assert code == 0, err
    assert pq.read_table(out).column("label").to_pylist()[-1] is None


def test_an_existing_output_is_kept_unless_forced(
    capsys: pytest.CaptureFixture[str], packages: Any, tmp_path: Path
) -> None:
    source = tmp_path / "rows.parquet"
    frame(packages.x[:5]).to_parquet(source, index=False)
    out = tmp_path / "out.parquet"
    out.write_text("precious")
    args = [str(packages.lr), "-i", str(source), "-o", str(out), "--columns", ",".join(FEATURES)]
    code, _, err = run(capsys, *args)
    assert code == 2 and "already exists" in err and "--force" in err
    assert out.read_text() == "precious"
    assert run(capsys, *args, "--force")[0] == 0
    assert pq.read_table(out).num_rows == 5


def test_an_empty_input_gives_an_empty_output_with_every_column(
    packages: Any, tmp_path: Path
) -> None:
    source = tmp_path / "none.parquet"
    frame(np.zeros((0, 4))).to_parquet(source, index=False)
    report = score_file(packages.lr, source, tmp_path / "out.parquet", columns=FEATURES)
    table = pq.read_table(tmp_path / "out.parquet")
    assert report.rows == 0 and table.num_rows == 0
    assert table.schema.names == ["id", *FEATURES, "label", "probabilities"]


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["--format", "xlsx"], 2, "Invalid value for '--format'"),
        (["--engine", "local", "--spark-master", "local[2]"], 2, "are for --engine spark"),
        (["--conf", "nonsense"], 2, "--conf expects KEY=VALUE"),
        (["--outputs", "proba"], 2, "unknown output(s) 'proba'"),
        (["--batch-size", "0"], 2, "Invalid value for '--batch-size'"),
    ],
)
def test_bad_options_are_usage_errors(
    capsys: pytest.CaptureFixture[str],
    packages: Any,
    tmp_path: Path,
    args: list[str],
    code: int,
    message: str,
) -> None:
    source = tmp_path / "rows.parquet"
    frame(packages.x[:3]).to_parquet(source, index=False)
    got, _, err = run(
        capsys,
        str(packages.lr),
        "-i",
        str(source),
        "-o",
        str(tmp_path / "o.parquet"),
        "--columns",
        ",".join(FEATURES),
        *args,
    )
    assert got == code and message in err and "Traceback" not in err


def test_missing_and_unreadable_inputs(
    capsys: pytest.CaptureFixture[str], packages: Any, tmp_path: Path
) -> None:
    code, _, err = run(capsys, str(packages.lr), "-i", str(tmp_path / "no.csv"), "-o", "o.csv")
    assert code == 1 and "no such file" in err
    broken = tmp_path / "broken.parquet"
    broken.write_bytes(b"not parquet at all")
    code, _, err = run(capsys, str(packages.lr), "-i", str(broken), "-o", str(tmp_path / "o.pq"))
    assert code == 1 and "cannot be read as parquet" in err
    odd = tmp_path / "rows.xlsx"
    odd.write_text("x")
    code, _, err = run(capsys, str(packages.lr), "-i", str(odd), "-o", str(tmp_path / "o.pq"))
    assert code == 2 and "cannot tell the format" in err


def test_a_value_a_text_file_holds_that_the_input_cannot_take(
    packages: Any, tmp_path: Path
) -> None:
    test = packages.table.test.astype({"visits": float})
    test.loc[3, "visits"] = 2.5
    test.to_csv(tmp_path / "people.csv", index=False)
    with pytest.raises(InputError, match=r"people\.csv cannot be read as csv: .*int64"):
        score_file(packages.table_package, tmp_path / "people.csv", tmp_path / "o.parquet")
    assert not (tmp_path / "o.parquet").exists()


def test_an_interrupted_run_leaves_no_output(packages: Any, tmp_path: Path) -> None:
    """Ctrl-C while the input is still arriving (a pipe): exit 130, nothing written."""
    fifo = tmp_path / "rows.csv"
    os.mkfifo(fifo)
    out = tmp_path / "out.parquet"
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "modelport.cli.main",
            "batch",
            str(packages.lr),
            "-i",
            str(fifo),
            "-o",
            str(out),
            "--input-format",
            "csv",
            "--columns",
            ",".join(FEATURES),
        ],
        stderr=subprocess.PIPE,
        text=True,
        # A shell's background job ignores SIGINT, and ignored signals stay ignored in children.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),  # noqa: PLW1509
    )
    rows = frame(np.tile(packages.x, (4000, 1))).to_csv(index=False).encode()
    # Arrow reads a few 8 MiB blocks ahead before its first batch: with more, batches are
    # scored while the pipe stays open.
    assert len(rows) > 32 << 20

    def feed() -> None:
        with open(fifo, "wb") as pipe:  # kept open until the run ends: the input never does
            try:
                pipe.write(rows)
                pipe.flush()
                process.wait()  # the test kills it if it outlives the test
            except BrokenPipeError:
                pass

    writer = threading.Thread(target=feed, daemon=True)
    writer.start()
    try:
        assert process.stderr is not None
        line = process.stderr.readline()  # the first progress line: a batch is written
        assert line.startswith("scoring: "), line
        process.send_signal(signal.SIGINT)
        rest = process.stderr.read()
        assert process.wait(timeout=30) == 130
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        assert process.stderr is not None
        process.stderr.close()
    assert "Interrupted." in rest and "Traceback" not in rest
    assert not out.exists() and leftovers(tmp_path) == []
    writer.join(timeout=10)


def test_a_parquet_file_damaged_half_way_leaves_no_output(
    capsys: pytest.CaptureFixture[str], packages: Any, tmp_path: Path
) -> None:
    source = tmp_path / "rows.parquet"
    rows = frame(np.tile(packages.x, (50, 1)))
    rows.to_parquet(source, index=False, row_group_size=1000)
    data = bytearray(source.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 4096] = b"\xff" * 4096  # a later row group's pages; the footer is whole
    source.write_bytes(bytes(data))
    out = tmp_path / "out.parquet"
    code, _, err = run(
        capsys, str(packages.lr), "-i", str(source), "-o", str(out), "--columns", ",".join(FEATURES)
    )
    assert code == 1, err
    assert "rows.parquet cannot be read as parquet" in err and "Traceback" not in err
    assert not out.exists() and leftovers(tmp_path) == []
