"""The runtime side of flavors: turn a verified package directory into a model that predicts."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import IO, Any, Protocol

import numpy as np

from modelport.errors import CodeExecutionRefused, IntegrityError, PackageError
from modelport.model_format.manifest import Manifest

#: Opens a file of a package by its manifest path: the open file and its size.
FileOpener = Callable[[str], AbstractContextManager[tuple[IO[bytes], int]]]


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

        # Checked here too, not only by verify: no runtime sees a model that reads other files.
        problems = content_problems(manifest, directory_opener(root))
        if problems:
            raise IntegrityError(problems)

        return OnnxRunner(root / str(flavor.settings["model"]), threads)
    if flavor.name == "python":
        if not allow_code:
            raise CodeExecutionRefused("a 'python' flavor package")
        from modelport.model_format.flavors.python import PythonRunner

        return PythonRunner(root, manifest)
    raise PackageError(
        f"flavor {flavor.name!r} is not supported by this version of modelport; upgrade it"
    )


def content_problems(manifest: Manifest, open_file: FileOpener) -> list[str]:
    """What is wrong inside a package's files that their digests cannot tell.

    For the ``onnx`` flavor: every external-data location of the model must be a relative path
    inside the package that the manifest lists (:mod:`~.onnx_refs`). Other flavors: nothing.

    Args:
        manifest: the package's validated manifest (its files already match their digests).
        open_file: opens a listed file by its manifest path.

    Returns:
        One line per problem; empty when there is none.
    """
    if manifest.flavor.name != "onnx":
        return []
    from modelport.model_format.flavors.onnx_refs import external_data_problems

    model = str(manifest.flavor.settings["model"])
    with open_file(model) as (fh, size):
        return external_data_problems(fh, size, model, manifest.files)


def directory_opener(root: Path) -> FileOpener:
    """A :data:`FileOpener` for the files of the package directory ``root``."""

    @contextmanager
    def open_file(rel: str) -> Iterator[tuple[IO[bytes], int]]:
        with root.joinpath(*rel.split("/")).open("rb") as fh:
            yield fh, os.fstat(fh.fileno()).st_size

    return open_file


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
