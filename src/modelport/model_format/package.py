"""Loading and verifying packages: a directory or a ``.mport`` archive, both verified in full."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import weakref
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from modelport.errors import IntegrityError, ModelError, PackageError
from modelport.model_format.archive import (
    archive_problems,
    directory_problems,
    extract_archive,
)
from modelport.model_format.flavors.runtime import ModelRunner, open_runner
from modelport.model_format.manifest import MANIFEST_NAME, Manifest, parse
from modelport.model_format.signature import Signature

ALLOW_CODE_ENV = "MODELPORT_ALLOW_CODE"


def read_manifest(root: Path) -> Manifest:
    """Read a package directory's manifest (cheap: no digests checked, no model opened).

    Raises:
        PackageError: there is no manifest, or it is invalid.
    """
    manifest_path = root / MANIFEST_NAME
    if not manifest_path.is_file():
        raise PackageError(f"{root}: no {MANIFEST_NAME}; is it a modelport package?")
    return parse(manifest_path.read_bytes(), str(manifest_path))


@dataclass(frozen=True)
class VerifyReport:
    """The result of :func:`verify`: the manifest (when readable) and every problem found."""

    path: Path
    manifest: Manifest
    problems: tuple[str, ...]

    @property
    def ok(self) -> bool:
        """True when every file matches its digest and nothing unlisted is present."""
        return not self.problems


def verify(path: str | os.PathLike[str]) -> VerifyReport:
    """Check every file of a package against its manifest, without loading the model.

    Raises:
        PackageError: the package cannot be read at all (no manifest, invalid manifest, unsafe
            archive). File-level problems are reported in the returned report instead.
    """
    p = Path(path)
    if not p.exists():
        raise PackageError(f"{p}: no such file or directory")
    if p.is_dir():
        manifest = read_manifest(p)
        return VerifyReport(p, manifest, tuple(directory_problems(p, manifest)))
    manifest, problems = archive_problems(p)
    return VerifyReport(p, manifest, tuple(problems))


def _remove_tree(path: Path, ignore_errors: bool) -> None:
    shutil.rmtree(path, ignore_errors=ignore_errors)


class Package:
    """A loaded, verified model package.

    Use :func:`load` to get one. A package loaded from an archive is extracted into a private
    temporary directory that lives as long as the object (or until :meth:`close`).
    """

    def __init__(self, path: Path, root: Path, manifest: Manifest, runner: ModelRunner) -> None:
        self.path = path
        self.root = root
        self.manifest = manifest
        self._runner = runner
        self._cleanup: weakref.finalize[[Path, bool], Package] | None = None

    @property
    def signature(self) -> Signature:
        """The model's named inputs and outputs."""
        return self.manifest.signature

    @property
    def digest(self) -> str:
        """The package's identity: ``sha256:<hex>`` of its canonical manifest."""
        return self.manifest.digest

    @property
    def name(self) -> str:
        """The package name from the manifest."""
        return self.manifest.name

    @property
    def version(self) -> str:
        """The package version from the manifest."""
        return self.manifest.version

    def predict(self, inputs: Any) -> dict[str, np.ndarray]:
        """Predict on ``inputs`` after enforcing the signature.

        Args:
            inputs: a mapping of input name to array-like, or one array-like for a model with a
                single input.

        Returns:
            A dict of output name to numpy array.

        Raises:
            InputError: the inputs do not match the signature (the message names the input).
            ModelError: the model itself failed.
        """
        return self.predict_arrays(self.signature.enforce(inputs))

    def predict_arrays(self, arrays: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Predict on arrays that already passed :meth:`Signature.enforce` (the server's path)."""
        try:
            return self._runner.predict(arrays)
        except Exception as exc:
            raise ModelError(f"the model failed while predicting ({type(exc).__name__})") from exc

    def example(self) -> dict[str, np.ndarray] | None:
        """The input example the package carries, enforced to the signature, or None."""
        if self.manifest.example is None:
            return None
        raw = json.loads((self.root / self.manifest.example).read_text("utf-8"))
        if not isinstance(raw, dict) or not isinstance(raw.get("inputs"), dict):
            raise PackageError(f"{self.manifest.example}: expected {{'inputs': {{...}}}}")
        return self.signature.enforce(raw["inputs"])

    def close(self) -> None:
        """Remove the temporary extraction directory, if any. The package is unusable after."""
        if self._cleanup is not None:
            self._cleanup()

    def __enter__(self) -> Package:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return (
            f"Package(name={self.name!r}, version={self.version!r}, "
            f"flavor={self.manifest.flavor.name!r}, digest={self.digest[:19]}…)"
        )


def load(
    path: str | os.PathLike[str], *, allow_code: bool = False, threads: int | None = None
) -> Package:
    """Load a package from a directory or a ``.mport`` archive, verifying every file first.

    Args:
        path: the package directory or archive.
        allow_code: allow flavors that run code the package carries (``python``). Also enabled
            by the environment variable ``MODELPORT_ALLOW_CODE=1``.
        threads: ONNX Runtime intra-op threads; default: the CPUs this process may use.

    Raises:
        PackageError: unreadable, invalid, tampered with or unsafe.
        CodeExecutionRefused: the package carries code and running it was not allowed.
    """
    p = Path(path)
    allow_code = allow_code or os.environ.get(ALLOW_CODE_ENV) == "1"
    if not p.exists():
        raise PackageError(f"{p}: no such file or directory")
    if p.is_dir():
        manifest = read_manifest(p)
        problems = directory_problems(p, manifest)
        if problems:
            raise IntegrityError(problems)
        return Package(
            p, p, manifest, open_runner(p, manifest, allow_code=allow_code, threads=threads)
        )

    tmp = Path(tempfile.mkdtemp(prefix="modelport-"))
    try:
        manifest = extract_archive(p, tmp)
        package = Package(
            p, tmp, manifest, open_runner(tmp, manifest, allow_code=allow_code, threads=threads)
        )
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    package._cleanup = weakref.finalize(package, _remove_tree, tmp, True)
    return package
