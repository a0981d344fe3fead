"""Pack sources that are not flavors: they convert into one at pack time.

A flavor (:mod:`modelport.model_format.flavors`) is what a manifest names and a loader opens;
a source is only something ``pack`` reads. scikit-learn (:mod:`.sklearn`, with the estimators of
XGBoost, LightGBM and CatBoost, alone or in pipelines), raw boosters (:mod:`.boosting`) and
PyTorch (:mod:`.pytorch`) become the ``onnx`` flavor, each checked against the original on the
example by :mod:`.parity`; an MLflow directory (:mod:`.mlflow`) becomes ``onnx`` or ``python``.
The flavors' own files (``.onnx``, ``.py``) are sources declared by their entries, and an
existing package is one declared by :mod:`modelport.model_format.pack`.
"""
