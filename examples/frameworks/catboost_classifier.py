"""A CatBoost classifier, exported by CatBoost's own ONNX export, with its parity checked.

Run: python examples/frameworks/catboost_classifier.py [OUT_DIR]   (needs modelport[catboost] and
catboost). The data set ships with scikit-learn.
"""

from __future__ import annotations

import catboost
import numpy as np
from report import pack_and_compare
from sklearn.datasets import load_breast_cancer
from sklearn.model_selection import train_test_split

features, target = load_breast_cancer(return_X_y=True)
x_train, x_test, y_train, _ = train_test_split(features, target, random_state=0)
model = catboost.CatBoostClassifier(
    iterations=50, depth=4, verbose=False, allow_writing_files=False
)
model.fit(x_train, y_train)

rows = x_test.astype(np.float32)
pack_and_compare(
    model,
    "breast-cancer-catboost",
    example=x_test[:20],
    rows=rows,
    original=lambda x: {"label": model.predict(x), "probabilities": model.predict_proba(x)},
)
