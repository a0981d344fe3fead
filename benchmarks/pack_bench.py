"""Packing, loading and CLI start-up: modelport beside MLflow, in one run.

Usage: python benchmarks/pack_bench.py [--runs N]

Prints medians of N runs (default 5) for:
- pack time and package size of a 100-tree RandomForest pipeline (StandardScaler + forest, 20
  float features), against ``mlflow.sklearn.save_model`` of the same pipeline;
- load + first predict in a fresh process, against ``mlflow.pyfunc.load_model`` + predict;
- ``modelport --help`` against ``mlflow --help`` (whole process, interpreter start included);
- the parity (max abs difference) of each estimator's ONNX conversion, as recorded in its manifest.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np

BIN = Path(sys.executable).parent


def median_time(fn: Callable[[], object], runs: int) -> float:
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def size_of(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def data(rows: int = 2000, features: int = 20) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(rows, features)).astype(np.float32)
    y = (x[:, :5].sum(axis=1) + rng.normal(scale=0.5, size=rows) > 0).astype(np.int64)
    return x, y


def forest_pipeline(x: np.ndarray, y: np.ndarray):  # type: ignore[no-untyped-def]
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(
        StandardScaler(), RandomForestClassifier(n_estimators=100, random_state=0)
    ).fit(x, y)


LOAD_MODELPORT = """
import sys, time
t0 = time.perf_counter()
import modelport
p = modelport.load(sys.argv[1])
t1 = time.perf_counter()
import numpy as np
p.predict(np.zeros((1, 20), dtype=np.float32))
t2 = time.perf_counter()
print(t1 - t0, t2 - t1)
"""

LOAD_MLFLOW = """
import sys, time, warnings
warnings.simplefilter("ignore")
t0 = time.perf_counter()
import mlflow.pyfunc
m = mlflow.pyfunc.load_model(sys.argv[1])  # trusted types were recorded at save time
t1 = time.perf_counter()
import numpy as np
m.predict(np.zeros((1, 20), dtype=np.float32))
t2 = time.perf_counter()
print(t1 - t0, t2 - t1)
"""


def fresh_process(code: str, path: Path, runs: int) -> tuple[float, float]:
    loads, firsts = [], []
    for _ in range(runs):
        out = subprocess.run(
            [sys.executable, "-c", code, str(path)], capture_output=True, text=True, check=True
        ).stdout.split()
        loads.append(float(out[-2]))
        firsts.append(float(out[-1]))
    return statistics.median(loads), statistics.median(firsts)


def cli_time(argv: list[str], runs: int) -> float:
    return median_time(lambda: subprocess.run(argv, capture_output=True, check=True), runs)


def parity_table(tmp: Path) -> list[tuple[str, dict[str, float]]]:
    import pandas as pd
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import (
        GradientBoostingClassifier,
        RandomForestClassifier,
        RandomForestRegressor,
    )
    from sklearn.linear_model import LogisticRegression
    from sklearn.neural_network import MLPClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    import modelport

    x, y = data(600, 8)
    frame = pd.DataFrame(x[:, :3], columns=["age", "income", "tenure"])
    frame["plan"] = np.array(["basic", "plus", "pro"])[np.arange(len(frame)) % 3]
    column_pipeline = make_pipeline(
        ColumnTransformer(
            [
                ("num", StandardScaler(), ["age", "income", "tenure"]),
                ("cat", OneHotEncoder(handle_unknown="ignore"), ["plan"]),
            ]
        ),
        LogisticRegression(),
    )
    cases = [
        ("LogisticRegression", make_pipeline(StandardScaler(), LogisticRegression()), x),
        ("RandomForest(100)", RandomForestClassifier(n_estimators=100, random_state=0), x),
        ("GradientBoosting", GradientBoostingClassifier(random_state=0), x),
        ("MLP", make_pipeline(StandardScaler(), MLPClassifier(max_iter=300, random_state=0)), x),
        ("RandomForestRegressor", RandomForestRegressor(n_estimators=50, random_state=0), x),
        ("ColumnTransformer+OneHot", column_pipeline, frame),
    ]
    rows = []
    for name, model, features in cases:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            target = y.astype(np.float64) if "Regressor" in name else y
            model.fit(features, target)
        example = features[:200] if isinstance(features, np.ndarray) else features.head(200)
        package = modelport.pack(model, tmp / f"{name}.mport", example=example, overwrite=True)
        rows.append(
            (name, dict(package.manifest.flavor.settings["converted_from"]["max_abs_diff"]))
        )
        package.close()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()

    import mlflow.sklearn

    import modelport

    x, y = data()
    pipeline = forest_pipeline(x, y)
    tmp = Path(tempfile.mkdtemp(prefix="pack-bench-"))
    try:
        package_path = tmp / "forest.mport"

        def pack_once() -> None:
            modelport.pack(pipeline, package_path, example=x[:100], overwrite=True).close()

        def mlflow_once() -> None:
            target = tmp / "mlflow-forest"
            shutil.rmtree(target, ignore_errors=True)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                mlflow.sklearn.save_model(
                    pipeline,
                    target,
                    input_example=x[:100],
                    skops_trusted_types=["sklearn.tree._tree.Tree"],
                )

        pack_s = median_time(pack_once, args.runs)
        mlflow_s = median_time(mlflow_once, args.runs)
        mp_load, mp_first = fresh_process(LOAD_MODELPORT, package_path, args.runs)
        ml_load, ml_first = fresh_process(LOAD_MLFLOW, tmp / "mlflow-forest", args.runs)
        mp_help = cli_time([str(BIN / "modelport"), "--help"], max(args.runs, 10))
        ml_help = (
            cli_time([str(BIN / "mlflow"), "--help"], max(args.runs, 10))
            if (BIN / "mlflow").exists()
            else float("nan")
        )

        print(f"RandomForest(100 trees) pipeline, 20 float features; medians of {args.runs} runs\n")
        print(f"{'measure':<34}{'modelport':>12}{'MLflow':>12}{'ratio':>9}")
        rows = [
            ("pack / save_model (s)", pack_s, mlflow_s),
            (
                "package size (KiB)",
                size_of(package_path) / 1024,
                size_of(tmp / "mlflow-forest") / 1024,
            ),
            ("load, fresh process (s)", mp_load, ml_load),
            ("first predict, 1 row (ms)", mp_first * 1000, ml_first * 1000),
            ("CLI --help, whole process (s)", mp_help, ml_help),
        ]
        for label, ours, theirs in rows:
            print(f"{label:<34}{ours:>12.3f}{theirs:>12.3f}{theirs / ours:>8.1f}x")
        print("\nONNX conversion parity (max abs difference on 200 example rows)")
        for name, diffs in parity_table(tmp):
            cells = ", ".join(f"{k}={v:.2e}" for k, v in diffs.items())
            print(f"  {name:<28}{cells}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
