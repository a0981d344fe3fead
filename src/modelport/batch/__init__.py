"""Batch scoring: a package over a Spark DataFrame, or over files on one machine.

``from modelport.batch import score, spark_udf`` (Spark; the ``spark`` extra) and
``score_file`` (one machine; the ``batch`` extra). Nothing heavy is imported until one is used.
This package imports :mod:`modelport.model_format` only: it is not a deployer.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__all__ = ["ModelUDF", "score", "score_file", "spark_udf"]

if TYPE_CHECKING:
    from modelport.batch.local import score_file
    from modelport.batch.spark import ModelUDF, score, spark_udf

_LAZY = {
    "ModelUDF": "modelport.batch.spark",
    "score": "modelport.batch.spark",
    "spark_udf": "modelport.batch.spark",
    "score_file": "modelport.batch.local",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'modelport.batch' has no attribute {name!r}")
