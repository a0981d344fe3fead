"""modelport: package a trained model once, then verify, predict, serve or deploy it anywhere.

``import modelport`` is cheap: the API below is imported on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = ["Package", "__version__", "load", "locate", "pack", "verify"]

if TYPE_CHECKING:
    from modelport.model_format.locate import load, locate, verify
    from modelport.model_format.pack import pack
    from modelport.model_format.package import Package

_LAZY = {
    "Package": "modelport.model_format.package",
    "load": "modelport.model_format.locate",
    "locate": "modelport.model_format.locate",
    "verify": "modelport.model_format.locate",
    "pack": "modelport.model_format.pack",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'modelport' has no attribute {name!r}")
