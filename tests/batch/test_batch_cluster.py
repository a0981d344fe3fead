"""Two executor processes (local-cluster[2,1,1024]): each verifies and loads the package once.

Each executor's log (``SPARK_WORKER_DIR/<app>/<executor>/stderr``) holds modelport's line for
every load; after several jobs over many partitions, by ``score`` and by ``spark_udf``, there is
exactly one per executor, and every row equals ``Package.predict``.
"""

from __future__ import annotations

import contextlib
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from spark_support import classic_session

import modelport
from modelport.batch import score, spark_udf

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("batch-cluster")]

FEATURES = ["f0", "f1", "f2", "f3"]
LOADED = re.compile(r"modelport: verified and loaded \S+ \S+ \(sha256:\w+\) in process (\d+)")


@pytest.fixture(scope="module")
def cluster(spark_work: Path) -> Iterator[Any]:
    session = classic_session("local-cluster[2,1,1024]", **{"spark.executor.memory": "512m"})
    # local-cluster's workers keep their executors' logs under SPARK_HOME/work, whatever
    # SPARK_WORKER_DIR says.
    logs = Path(session.sparkContext._jvm.System.getenv("SPARK_HOME") or "") / "work"
    app = logs / session.sparkContext.applicationId
    yield session, app
    session.stop()
    shutil.rmtree(app, ignore_errors=True)
    with contextlib.suppress(OSError):
        logs.rmdir()


def loads(app: Path) -> dict[str, list[str]]:
    """Executor id -> the process ids its log says loaded a package."""
    found: dict[str, list[str]] = {}
    for log in sorted(app.glob("*/stderr")):
        found[log.parent.name] = LOADED.findall(log.read_text(errors="replace"))
    return found


def test_each_executor_loads_the_package_once_and_rows_match(
    cluster: tuple[Any, Path], packages: Any
) -> None:
    spark, app = cluster
    x = np.tile(packages.x, (20, 1))
    table = pd.DataFrame(x, columns=FEATURES).assign(id=np.arange(len(x)))
    frame = spark.createDataFrame(table).repartition(8).cache()
    assert frame.count() == len(x)
    udf = spark_udf(spark, packages.lr, outputs="label")
    want = modelport.load(packages.lr).predict(x)
    # Three jobs of one Python step each (two steps in one stage would run two Python workers
    # side by side in each task, each loading the package once).
    for _ in range(2):
        scored = score(frame, packages.lr, columns=FEATURES).toPandas().sort_values("id")
        np.testing.assert_array_equal(scored["label"].to_numpy(), want["label"])
        np.testing.assert_array_equal(np.stack(scored["probabilities"]), want["probabilities"])
    labels = frame.withColumn("again", udf(*FEATURES)).toPandas().sort_values("id")
    np.testing.assert_array_equal(labels["again"].to_numpy(), want["label"])

    found = loads(app)
    assert sorted(found) == ["0", "1"], found  # two executors, each with its log
    assert [len(pids) for pids in found.values()] == [1, 1], found
    assert found["0"] != found["1"]  # two processes
