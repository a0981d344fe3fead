"""A LightGBM booster (lightgbm.train), packed to ONNX with its parity checked.

Run: python examples/frameworks/lightgbm_booster.py [OUT_DIR]   (needs modelport[lightgbm] and
lightgbm). The example generates its data.
"""

from __future__ import annotations

import lightgbm
import numpy as np
from report import pack_and_compare
from sklearn.datasets import make_regression
from sklearn.model_selection import train_test_split

# Continuous features: LightGBM's float64 split thresholds are float32 in ONNX, so a row within
# float32 rounding of one can take the other branch (load_diabetes' few distinct values do).
features, target = make_regression(n_samples=600, n_features=8, noise=5.0, random_state=0)
x_train, x_test, y_train, _ = train_test_split(features, target, random_state=0)
params = {"objective": "regression", "num_leaves": 15, "verbose": -1}
booster = lightgbm.train(params, lightgbm.Dataset(x_train, y_train), num_boost_round=50)

rows = x_test.astype(np.float32)
pack_and_compare(
    booster,
    "regression-lightgbm",
    example=x_test[:20],
    rows=rows,
    original=lambda x: {"prediction": booster.predict(x.astype(np.float64))},
)
