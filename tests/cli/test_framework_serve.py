"""Packages converted from XGBoost, LightGBM, CatBoost and PyTorch, served by ``modelport serve``.

Each answers a real HTTP request (``POST /invocations``, JSON) as the original model answers the
same rows in its own framework.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from cli_serving import start

import modelport


def xgboost_pipeline(data: Any) -> tuple[Any, Callable[[np.ndarray], dict[str, Any]]]:
    import xgboost
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    model = Pipeline([("scale", StandardScaler()), ("xgb", xgboost.XGBClassifier(n_estimators=8))])
    model.fit(data.x_train, data.y_train)
    return model, lambda x: {"label": model.predict(x), "probabilities": model.predict_proba(x)}


def lightgbm_booster(data: Any) -> tuple[Any, Callable[[np.ndarray], dict[str, Any]]]:
    import lightgbm

    params = {"objective": "regression", "verbose": -1, "num_leaves": 8, "min_data_in_leaf": 5}
    booster = lightgbm.train(params, lightgbm.Dataset(data.x_train, data.y_train), 8)
    return booster, lambda x: {"prediction": booster.predict(x)}


def catboost_classifier(data: Any) -> tuple[Any, Callable[[np.ndarray], dict[str, Any]]]:
    import catboost

    model = catboost.CatBoostClassifier(
        iterations=8, depth=3, verbose=False, allow_writing_files=False, random_seed=0
    ).fit(data.x_train, data.y_train)
    return model, lambda x: {"label": model.predict(x), "probabilities": model.predict_proba(x)}


def torch_mlp(data: Any) -> tuple[Any, Callable[[np.ndarray], dict[str, Any]]]:
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    width = data.x_train.shape[1]
    model = torch.nn.Sequential(torch.nn.Linear(width, 8), torch.nn.Tanh(), torch.nn.Linear(8, 2))
    model.eval()

    def answer(x: np.ndarray) -> dict[str, Any]:
        with torch.no_grad():
            return {"output": model(torch.from_numpy(x.astype(np.float32))).numpy()}

    return model, answer


MODELS = {
    "xgboost-pipeline": (xgboost_pipeline, "multiclass_data"),
    "lightgbm-booster": (lightgbm_booster, "regression_data"),
    "catboost-classifier": (catboost_classifier, "binary_data"),
    "torch-mlp": (torch_mlp, "binary_data"),
}


@pytest.mark.parametrize("key", list(MODELS))
def test_the_served_package_answers_as_the_original(
    key: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    build, data_fixture = MODELS[key]
    data = request.getfixturevalue(data_fixture)
    model, original = build(data)
    path = tmp_path / f"{key}.mport"
    modelport.pack(model, path, example=data.x_test[:10]).close()

    rows = data.x_test[10:20].astype(np.float32)
    server = start(path, log_dir=tmp_path)
    try:
        answer = server.post(
            "/invocations",
            json.dumps({"inputs": rows.tolist()}).encode(),
            {"Content-Type": "application/json"},
        )
        assert answer.status == 200, answer.body
        predictions = json.loads(answer.body)["predictions"]
    finally:
        server.stop()
    want = original(rows.astype(np.float64))
    if len(want) == 1:  # one output: the answer is its list
        predictions = {next(iter(want)): predictions}
    for name, values in want.items():
        got = np.asarray(predictions[name])
        expected = np.asarray(values).reshape(got.shape)
        if name == "label":
            np.testing.assert_array_equal(got, expected)
        else:
            np.testing.assert_allclose(got, expected, atol=1e-4)
