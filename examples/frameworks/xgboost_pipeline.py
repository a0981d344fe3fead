"""XGBoost inside a scikit-learn pipeline, packed to ONNX with its parity checked.

Run: python examples/frameworks/xgboost_pipeline.py [OUT_DIR]   (needs modelport[xgboost] and
xgboost, e.g. pip install xgboost-cpu). The data set ships with scikit-learn.
"""

from __future__ import annotations

import numpy as np
import xgboost
from report import pack_and_compare
from sklearn.datasets import load_wine
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

features, target = load_wine(return_X_y=True)
x_train, x_test, y_train, _ = train_test_split(features, target, random_state=0)
pipeline = make_pipeline(StandardScaler(), xgboost.XGBClassifier(n_estimators=30, max_depth=3))
pipeline.fit(x_train, y_train)

# Parity is checked on held-out rows: training rows can lie exactly on a split threshold.
rows = x_test.astype(np.float32)
pack_and_compare(
    pipeline,
    "wine-xgboost",
    example=x_test[:20],
    rows=rows,
    original=lambda x: {"label": pipeline.predict(x), "probabilities": pipeline.predict_proba(x)},
)
