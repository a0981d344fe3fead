"""The runtime side of flavors: turn a verified package directory into a model that predicts."""

from __future__ import annotations

from pathlib import Path

from modelport.errors import CodeExecutionRefused
from modelport.model_format.flavors import FLAVORS, flavor_entry
from modelport.model_format.flavors.base import (
    FileOpener,
    ModelRunner,
    directory_opener,
)
from modelport.model_format.manifest import Manifest

__all__ = ["FileOpener", "ModelRunner", "content_problems", "directory_opener", "open_runner"]


def open_runner(
    root: Path, manifest: Manifest, *, allow_code: bool, threads: int | None = None
) -> ModelRunner:
    """Load the model of a verified package directory with its flavor's entry.

    ``root`` must come from :func:`~modelport.model_format.package.open_package`, which has
    checked its files' contents too (:func:`content_problems`: no runtime sees a model that
    refers to something outside the package).

    ``threads`` sizes ONNX Runtime's intra-op pool (default: the CPUs this process may use); a
    server with several worker processes gives each a share.

    Raises:
        CodeExecutionRefused: the flavor runs carried code and ``allow_code`` is false.
        PackageError: the flavor is unknown to this version of modelport.
    """
    entry = flavor_entry(manifest.flavor.name)
    if entry.runs_code and not allow_code:
        raise CodeExecutionRefused(f"a {entry.name!r} flavor package")
    return entry.open(root, manifest, threads)


def content_problems(manifest: Manifest, open_file: FileOpener) -> list[str]:
    """What is wrong inside a package's files that their digests cannot tell (its entry says).

    Args:
        manifest: the package's validated manifest (its files already match their digests).
        open_file: opens a listed file by its manifest path.

    Returns:
        One line per problem; empty when there is none (or the flavor is unknown: loading it
        fails anyway).
    """
    entry = FLAVORS.get(manifest.flavor.name)
    return [] if entry is None else entry.content_problems(manifest, open_file)
