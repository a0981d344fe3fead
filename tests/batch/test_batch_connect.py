"""Spark Connect (``sc://``) against a server started from the pyspark wheel, and the CLI's
``--engine spark`` on it and on a classic session of its own.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from spark_support import spark_environment

import modelport
from modelport.batch import score, spark_udf
from modelport.cli.main import main
from modelport.errors import InputError

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("batch-connect")]

FEATURES = ["f0", "f1", "f2", "f3"]
STARTED = "Spark Connect server started"


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def connect_url(spark_work: Path) -> Iterator[str]:
    """A Spark Connect server (local[2]) on 127.0.0.1, ready when its log says so."""
    import pyspark

    home = Path(pyspark.__file__).parent
    port = free_port()
    log = spark_work / "connect.log"
    command = [
        str(home / "bin" / "spark-submit"),
        "--class", "org.apache.spark.sql.connect.service.SparkConnectServer",
        "--master", "local[2]",
        "--conf", "spark.connect.grpc.binding.address=127.0.0.1",
        "--conf", f"spark.connect.grpc.binding.port={port}",
        "--conf", "spark.ui.enabled=false",
        "--conf", "spark.driver.host=127.0.0.1",
    ]  # fmt: skip
    env = {**os.environ, **spark_environment(spark_work), "SPARK_HOME": str(home)}
    with log.open("wb") as out:
        server = subprocess.Popen(
            command, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
    try:
        deadline = time.monotonic() + 120
        while STARTED not in log.read_text(errors="replace"):
            assert server.poll() is None, log.read_text(errors="replace")[-3000:]
            assert time.monotonic() < deadline, "the Spark Connect server did not start"
            time.sleep(0.2)  # polling the log for its line, with a deadline
        yield f"sc://127.0.0.1:{port}"
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()


@pytest.fixture(scope="module")
def remote(connect_url: str) -> Iterator[Any]:
    from pyspark.sql import SparkSession

    session = SparkSession.builder.remote(connect_url).getOrCreate()
    yield session
    session.stop()


def test_score_and_spark_udf_over_spark_connect(remote: Any, packages: Any) -> None:
    from modelport.batch.spark import is_connect

    assert is_connect(remote)
    table = pd.DataFrame(packages.x.copy(), columns=FEATURES).assign(id=np.arange(len(packages.x)))
    frame = remote.createDataFrame(table)
    want = modelport.load(packages.lr).predict(packages.x)
    scored = score(frame, packages.lr, columns=FEATURES).toPandas().sort_values("id")
    np.testing.assert_array_equal(scored["label"].to_numpy(), want["label"])
    np.testing.assert_array_equal(np.stack(scored["probabilities"]), want["probabilities"])
    udf = spark_udf(remote, packages.lr_dir, outputs="label")
    labels = frame.withColumn("p", udf(*FEATURES)).toPandas().sort_values("id")
    np.testing.assert_array_equal(labels["p"].to_numpy(), want["label"])


def test_schema_errors_are_raised_before_a_job_over_spark_connect(
    remote: Any, packages: Any
) -> None:
    frame = remote.createDataFrame(packages.table.test.rename(columns={"visits": "n"}))
    with pytest.raises(InputError, match=r"no column\(s\) 'visits'"):
        score(frame, packages.table_package)


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    code = main(["batch", *args])
    return code, capsys.readouterr().err


def test_the_cli_on_spark_connect_parquet_and_csv(
    capsys: pytest.CaptureFixture[str], connect_url: str, packages: Any, tmp_path: Path
) -> None:
    table = pd.DataFrame(packages.x.copy(), columns=FEATURES).assign(id=np.arange(len(packages.x)))
    table.to_parquet(tmp_path / "rows.parquet", index=False)
    table.to_csv(tmp_path / "rows.csv", index=False)
    want = modelport.load(packages.lr).predict(packages.x)
    common = ["--spark-master", connect_url, "--columns", ",".join(FEATURES)]
    code, err = run(capsys, str(packages.lr), "-i", str(tmp_path / "rows.csv"),
                    "-o", str(tmp_path / "out.parquet"), *common)  # fmt: skip
    assert code == 0, err
    assert f"scored {len(table)} rows" in err
    out = pq.read_table(tmp_path / "out.parquet").to_pandas().sort_values("id")
    np.testing.assert_array_equal(out["label"].to_numpy(), want["label"])
    code, err = run(capsys, str(packages.lr), "-i", str(tmp_path / "rows.parquet"),
                    "-o", str(tmp_path / "out.csv"), *common)  # fmt: skip
    assert code == 0, err
    csv = pd.concat(pd.read_csv(p) for p in sorted((tmp_path / "out.csv").glob("part-*.csv")))
    csv = csv.sort_values("id")
    assert list(csv.columns)[-3:] == ["label", "probabilities_0", "probabilities_1"]
    np.testing.assert_allclose(
        csv[["probabilities_0", "probabilities_1"]].to_numpy(), want["probabilities"], rtol=1e-6
    )


def test_a_failing_spark_job_leaves_no_output(
    capsys: pytest.CaptureFixture[str], connect_url: str, packages: Any, tmp_path: Path
) -> None:
    table = pd.DataFrame(packages.x.copy(), columns=FEATURES)
    table.loc[7, "f3"] = None
    table.to_parquet(tmp_path / "rows.parquet", index=False)
    code, err = run(capsys, str(packages.lr), "-i", str(tmp_path / "rows.parquet"),
                    "-o", str(tmp_path / "out.parquet"), "--spark-master", connect_url)  # fmt: skip
    assert code == 1
    assert "Error: a Spark task failed: column(s) 'f3' hold null values" in err
    assert "Traceback" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rows.parquet"]


def test_the_cli_with_a_classic_session_of_its_own(packages: Any, tmp_path: Path) -> None:
    table = pd.DataFrame(packages.x.copy(), columns=FEATURES).assign(id=np.arange(len(packages.x)))
    table.to_parquet(tmp_path / "rows.parquet", index=False)
    env = {**os.environ, **spark_environment(tmp_path / "work")}
    result = subprocess.run(
        [sys.executable, "-m", "modelport.cli.main", "batch", str(packages.lr),
         "-i", str(tmp_path / "rows.parquet"), "-o", str(tmp_path / "out.jsonl"),
         "--engine", "spark", "--spark-master", "local[1]", "--columns", ",".join(FEATURES),
         "--conf", "spark.ui.enabled=false", "--conf", "spark.driver.host=127.0.0.1",
         "--json"],
        capture_output=True, text=True, env=env, timeout=180, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert f'"rows": {len(packages.x)}' in result.stdout
    parts = sorted((tmp_path / "out.jsonl").glob("part-*.json"))
    got = pd.concat(pd.read_json(p, lines=True) for p in parts).sort_values("id")
    assert (
        got["label"].tolist() == modelport.load(packages.lr).predict(packages.x)["label"].tolist()
    )
