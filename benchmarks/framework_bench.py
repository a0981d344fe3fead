"""Packing PyTorch, XGBoost, LightGBM and CatBoost models: modelport beside MLflow, in one run.

Usage: python benchmarks/framework_bench.py [--runs N] [--frameworks xgboost,lightgbm,...]

For each framework, one small model trained on a data set scikit-learn ships:

- pack time and package size: ``modelport.pack`` (converts to ONNX, checks parity, writes a
  ``.mport``) against MLflow's ``save_model`` of the same model with the same input example
  (``mlflow.xgboost``, ``mlflow.lightgbm``, ``mlflow.catboost``, ``mlflow.pytorch``), which
  stores the model in its framework's format;
- first predict in a fresh process, interpreter start and imports included: ``modelport.load``
  + ``predict`` against ``mlflow.pyfunc.load_model`` + ``predict``;
- the parity of the conversion, as the manifest records it.

Medians of N runs (default 5). Needs the frameworks and MLflow (the test dependency group has
them). Nothing here is part of the test suite.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from pack_bench import median_time, size_of  # this folder's: run as a script

FRAMEWORKS = ("xgboost", "lightgbm", "catboost", "torch")

MODELPORT_PREDICT = """
import sys, numpy as np, modelport
package = modelport.load(sys.argv[1])
package.predict(np.load(sys.argv[2]))
"""
MLFLOW_PREDICT = """
import sys, numpy as np, mlflow.pyfunc
mlflow.pyfunc.load_model(sys.argv[1]).predict(np.load(sys.argv[2]))
"""


@dataclass(frozen=True)
class Case:
    """A trained model, the rows to check and predict on, and how MLflow saves it."""

    model: Any
    rows: np.ndarray
    mlflow_save: Callable[..., None]


def xgboost_case() -> Case:
    import mlflow.xgboost
    import xgboost
    from sklearn.datasets import load_wine

    x, y = load_wine(return_X_y=True)
    model = xgboost.XGBClassifier(n_estimators=50, max_depth=4).fit(x[:130], y[:130])
    return Case(model, x[130:].astype(np.float32), mlflow.xgboost.save_model)


def lightgbm_case() -> Case:
    import lightgbm
    import mlflow.lightgbm
    from sklearn.datasets import make_regression

    x, y = make_regression(n_samples=600, n_features=8, noise=5.0, random_state=0)
    model = lightgbm.LGBMRegressor(n_estimators=50, num_leaves=15, verbose=-1).fit(x[:450], y[:450])
    rows = x[450:].astype(np.float32)
    return Case(model, rows, mlflow.lightgbm.save_model)


def catboost_case() -> Case:
    import catboost
    import mlflow.catboost
    from sklearn.datasets import load_breast_cancer

    x, y = load_breast_cancer(return_X_y=True)
    model = catboost.CatBoostClassifier(
        iterations=50, depth=4, verbose=False, allow_writing_files=False, random_seed=0
    ).fit(x[:420], y[:420])
    return Case(model, x[420:].astype(np.float32), mlflow.catboost.save_model)


def torch_case() -> Case:
    import mlflow.pytorch
    import torch
    from sklearn.datasets import load_digits

    images, _ = load_digits(return_X_y=True)
    images = (images / 16.0).reshape(-1, 1, 8, 8).astype(np.float32)
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(1, 8, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.MaxPool2d(2),
        torch.nn.Flatten(),
        torch.nn.Linear(8 * 4 * 4, 10),
        torch.nn.Softmax(dim=-1),
    ).eval()
    return Case(model, images[1500:], mlflow.pytorch.save_model)


CASES = {
    "xgboost": xgboost_case,
    "lightgbm": lightgbm_case,
    "catboost": catboost_case,
    "torch": torch_case,
}


def fresh_process_s(script: str, model: Path, rows: Path, runs: int) -> float:
    command = [sys.executable, "-c", script, str(model), str(rows)]
    return median_time(lambda: subprocess.run(command, check=True, capture_output=True), runs)


def measure(name: str, runs: int, work: Path) -> dict[str, Any]:
    import modelport

    case = CASES[name]()
    rows_file = work / f"{name}-rows.npy"
    np.save(rows_file, case.rows)
    package = work / f"{name}.mport"
    example = case.rows[:20]

    def pack() -> None:
        modelport.pack(case.model, package, example=example, overwrite=True).close()

    counter = iter(range(10**6))

    def save() -> None:
        path = str(work / f"mlflow-{name}-{next(counter)}")
        case.mlflow_save(case.model, path, input_example=example)  # pt2 traces it

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # MLflow's advice on signatures and pip pins
        pack_s = median_time(pack, runs)
        save_s = median_time(save, runs)
    mlflow_dir = work / f"mlflow-{name}-0"
    with modelport.load(package) as loaded:
        record = loaded.manifest.flavor.settings["converted_from"]
    return {
        "name": name,
        "pack_s": pack_s,
        "save_s": save_s,
        "size": size_of(package),
        "mlflow_size": size_of(mlflow_dir),
        "predict_s": fresh_process_s(MODELPORT_PREDICT, package, rows_file, runs),
        "mlflow_predict_s": fresh_process_s(MLFLOW_PREDICT, mlflow_dir, rows_file, runs),
        "parity": ", ".join(f"{k} {v:.2g}" for k, v in record["max_abs_diff"].items()),
        "converter": record["converter"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--frameworks", default=",".join(FRAMEWORKS))
    args = parser.parse_args()
    names = [n for n in args.frameworks.split(",") if n]
    unknown = set(names) - set(FRAMEWORKS)
    if unknown:
        parser.error(f"unknown frameworks: {', '.join(sorted(unknown))}")
    with tempfile.TemporaryDirectory() as tmp:
        results = [measure(name, args.runs, Path(tmp)) for name in names]
    print(f"medians of {args.runs} runs")
    print(
        "| framework | modelport pack s | MLflow save s | .mport bytes | MLflow dir bytes "
        "| first predict s, fresh process: modelport | MLflow | parity (max abs diff) |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for r in results:
        print(
            f"| {r['name']} | {r['pack_s']:.2f} | {r['save_s']:.2f} | {r['size']:,} "
            f"| {r['mlflow_size']:,} | {r['predict_s']:.2f} | {r['mlflow_predict_s']:.2f} "
            f"| {r['parity']} |"
        )
    for r in results:
        print(f"{r['name']}: converted by {r['converter']}")


if __name__ == "__main__":
    main()
