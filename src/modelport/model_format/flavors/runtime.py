"""The runtime side of flavors: turn a verified package directory into a model that predicts."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from modelport.errors import CodeExecutionRefused, PackageError
from modelport.model_format.manifest import Manifest


class ModelRunner(Protocol):
    """What a loaded flavor offers: predict on already-enforced input arrays."""

    def predict(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run the model on inputs that match the signature exactly."""
        ...


def open_runner(
    root: Path, manifest: Manifest, *, allow_code: bool, threads: int | None = None
) -> ModelRunner:
    """Load the model of a verified package directory.

    ``threads`` sizes ONNX Runtime's intra-op pool (default: the CPUs this process may use); a
    server with several worker processes gives each a share.

    Raises:
        CodeExecutionRefused: the flavor runs carried code and ``allow_code`` is false.
        PackageError: the flavor is unknown to this version of modelport.
    """
    flavor = manifest.flavor
    if flavor.name == "onnx":
        from modelport.model_format.flavors.onnx import OnnxRunner

        return OnnxRunner(root / str(flavor.settings["model"]), threads)
    if flavor.name == "python":
        if not allow_code:
            raise CodeExecutionRefused("a 'python' flavor package")
        from modelport.model_format.flavors.python import PythonRunner

        return PythonRunner(root, manifest)
    raise PackageError(
        f"flavor {flavor.name!r} is not supported by this version of modelport; upgrade it"
    )


def as_outputs(result: Any, output_names: tuple[str, ...]) -> dict[str, np.ndarray]:
    """Normalise what a model returned into ``{output name: array}``."""
    if isinstance(result, Mapping):
        return {str(k): np.asarray(v) for k, v in result.items()}
    if isinstance(result, (tuple, list)) and len(output_names) > 1:
        if len(result) != len(output_names):
            raise ValueError(
                f"the model returned {len(result)} outputs, expected {len(output_names)}"
            )
        return {n: np.asarray(v) for n, v in zip(output_names, result, strict=True)}
    name = output_names[0] if output_names else "predictions"
    return {name: np.asarray(result)}
