"""The ``python`` flavor: a class in a file the package carries, with ``load`` and ``predict``.

Loading such a package imports and runs that file, which is why it needs an explicit opt-in.
"""

from __future__ import annotations

import ast
import importlib.util
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from modelport.errors import PackageError, PackError
from modelport.model_format.flavors.runtime import as_outputs
from modelport.model_format.manifest import Manifest


def find_model_class(source: Path, wanted: str | None = None) -> str:
    """Find the model class in a Python file by reading its syntax tree (nothing is executed).

    A model class defines both ``load`` and ``predict``. With ``wanted`` set, that class must exist
    and qualify; otherwise the file must hold exactly one such class.

    Raises:
        PackError: no such class, or several and none chosen.
    """
    try:
        tree = ast.parse(source.read_bytes(), filename=str(source))
    except SyntaxError as exc:
        raise PackError(f"{source}: not valid Python ({exc.msg}, line {exc.lineno})") from None
    candidates = []
    for node in tree.body:
        if isinstance(node, ast.ClassDef):
            methods = {
                n.name for n in node.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))
            }
            if {"load", "predict"} <= methods:
                candidates.append(node.name)
    if wanted is not None:
        if wanted not in candidates:
            raise PackError(
                f"{source}: no class {wanted!r} with methods load(self, path) and "
                "predict(self, inputs)"
            )
        return wanted
    if len(candidates) != 1:
        found = ", ".join(candidates) or "none"
        raise PackError(
            f"{source}: expected exactly one class with methods load(self, path) and "
            f"predict(self, inputs), found {found}; choose one with --class"
        )
    return candidates[0]


def instantiate(code: Path, class_name: str, root: Path, module_name: str) -> Any:
    """Import ``code`` as ``module_name``, create the class and call ``load(root)``."""
    spec = importlib.util.spec_from_file_location(module_name, code)
    if spec is None or spec.loader is None:
        raise PackageError(f"cannot import {code}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
        cls = getattr(module, class_name)
        model = cls()
        model.load(str(root))
    except Exception:
        sys.modules.pop(module_name, None)
        raise
    return model


class PythonRunner:
    """Runs the model class a ``python`` flavor package carries."""

    def __init__(self, root: Path, manifest: Manifest) -> None:
        settings = manifest.flavor.settings
        module_name = f"modelport_model_{manifest.digest[7:19]}"
        self.model = instantiate(
            root / str(settings["code"]), str(settings["class"]), root, module_name
        )
        self.output_names = manifest.signature.output_names

    def predict(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Call the carried class's ``predict`` with a dict of arrays."""
        return as_outputs(self.model.predict(dict(inputs)), self.output_names)
