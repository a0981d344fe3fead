"""What every flavor declares (:class:`FlavorEntry`) and what packing and loading hand it.

A flavor is a way a manifest says the model is loaded (``flavor.name``). Each flavor module
(:mod:`.onnx`, :mod:`.python`) declares one entry; :mod:`modelport.model_format.flavors` holds
the table. This module imports no other module of ``model_format`` but the signature, so the
manifest can ask the entries without an import cycle (the manifest is only named for types).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Protocol

import numpy as np

from modelport.model_format.signature import Signature

if TYPE_CHECKING:
    from modelport.model_format.manifest import Manifest

#: Opens a file of a package by its manifest path: the open file and its size.
FileOpener = Callable[[str], AbstractContextManager[tuple[IO[bytes], int]]]
#: A problem in a flavor's settings: the setting's key and what is wrong with it.
SettingProblem = tuple[str, str]


class ModelRunner(Protocol):
    """What a loaded flavor offers: predict on already-enforced input arrays."""

    def predict(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run the model on inputs that match the signature exactly."""
        ...


@dataclass
class Staged:
    """A package being assembled: files (relative path -> bytes or source) and manifest fields."""

    flavor: str
    settings: Mapping[str, Any]
    signature: Signature
    files: dict[str, bytes | Path] = field(default_factory=dict)
    example: dict[str, np.ndarray] | None = None
    requirements: list[str] = field(default_factory=list)
    metadata: dict[str, str] = field(default_factory=dict)
    default_name: str = "model"
    default_version: str = "1"


@dataclass(frozen=True)
class PackRequest:
    """What :func:`~modelport.model_format.pack.pack` was asked, as every source reads it."""

    example: Any
    tolerance: float
    model_class: str | None
    artifacts: Sequence[str | os.PathLike[str]]
    allow_code: bool


@dataclass(frozen=True)
class PackSource:
    """One kind of thing ``pack`` reads: which models it takes and how it stages them.

    Args:
        name: what the source is called (``onnx``, ``sklearn``, ``mlflow``, ...).
        accepts: true for a model this source packs; a path is given as an existing ``Path``.
        stage: stage that model into the files and fields of a package.
    """

    name: str
    accepts: Callable[[Any], bool]
    stage: Callable[[Any, PackRequest], Staged]


def _no_content_problems(manifest: Manifest, open_file: FileOpener) -> list[str]:
    return []


def _no_setting_problems(settings: Mapping[str, Any]) -> list[SettingProblem]:
    return []


@dataclass(frozen=True)
class FlavorEntry:
    """A flavor: its settings, whether it runs code, how it packs and how it loads.

    Args:
        name: the manifest's ``flavor.name``.
        runs_code: loading runs code the package carries, so it needs the allow-code opt-in.
        required: settings that must be non-empty strings.
        file_settings: those of ``required`` that name a file the manifest lists.
        source: how ``pack`` stages a model of this flavor from its own files.
        open: load the model of a verified package directory (``root``, manifest, threads).
        check_settings: what else is wrong with the settings, beyond ``required``.
        content_problems: what is wrong inside the package's files that digests cannot tell.
    """

    name: str
    runs_code: bool
    required: tuple[str, ...]
    file_settings: tuple[str, ...]
    source: PackSource
    open: Callable[[Path, Manifest, int | None], ModelRunner]
    check_settings: Callable[[Mapping[str, Any]], list[SettingProblem]] = _no_setting_problems
    content_problems: Callable[[Manifest, FileOpener], list[str]] = _no_content_problems

    def settings_problems(
        self, settings: Mapping[str, Any], files: Collection[str]
    ) -> list[SettingProblem]:
        """Every problem of ``settings`` for a package listing ``files``, each naming its key."""
        problems: list[SettingProblem] = [
            (key, f"required for the {self.name!r} flavor, a string")
            for key in self.required
            if not isinstance(settings.get(key), str) or not settings[key]
        ]
        for key in self.file_settings:
            path = settings.get(key)
            if isinstance(path, str) and path and path not in files:
                problems.append((key, f"{path!r} is not listed in files"))
        return problems + self.check_settings(settings)


def write_files(root: Path, files: Mapping[str, bytes | Path]) -> dict[str, Path]:
    """Write each file (bytes, or a file to copy) under ``root``; returns where each went."""
    written: dict[str, Path] = {}
    for rel, content in sorted(files.items()):
        target = root.joinpath(*rel.split("/"))
        target.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, Path):
            shutil.copyfile(content, target)
        else:
            target.write_bytes(content)
        written[rel] = target
    return written


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
