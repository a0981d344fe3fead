"""How the tests start Spark: loopback only, this interpreter, scratch in the test's directory."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any


def spark_environment(work: Path) -> dict[str, str]:
    """What every Spark process of the tests runs with: loopback only, this interpreter."""
    return {
        "SPARK_LOCAL_IP": "127.0.0.1",
        "PYSPARK_PYTHON": sys.executable,
        "PYSPARK_DRIVER_PYTHON": sys.executable,
        "SPARK_WORKER_DIR": str(work),
        "SPARK_LOCAL_DIRS": str(work),
    }


#: Settings for every test session: loopback, no UI, few shuffle partitions.
SPARK_CONFS = {
    "spark.driver.host": "127.0.0.1",
    "spark.driver.bindAddress": "127.0.0.1",
    "spark.ui.enabled": "false",
    "spark.ui.showConsoleProgress": "false",
    "spark.sql.shuffle.partitions": "2",
}


def classic_session(master: str, **confs: str) -> Any:
    """A classic Spark session on ``master`` with the tests' settings."""
    from pyspark.sql import SparkSession

    builder = SparkSession.builder.master(master).appName("modelport-tests")
    for key, value in {**SPARK_CONFS, **confs}.items():
        builder = builder.config(key, value)
    return builder.getOrCreate()
