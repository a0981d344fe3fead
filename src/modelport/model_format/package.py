"""Loading and verifying packages: a directory or a ``.mport`` archive, both verified in full."""

from __future__ import annotations

import functools
import json
import os
import shutil
import stat
import weakref
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from modelport.errors import (
    DigestMismatch,
    IntegrityError,
    ModelError,
    ModelportError,
    PackageError,
)
from modelport.model_format.archive import (
    archive_problems,
    directory_problems,
    extract_archive,
    open_member,
)
from modelport.model_format.flavors.runtime import (
    FileOpener,
    ModelRunner,
    content_problems,
    directory_opener,
    open_runner,
)
from modelport.model_format.limits import DEFAULT_LIMITS, ArchiveLimits
from modelport.model_format.manifest import MANIFEST_NAME, Manifest, expected_digest, parse
from modelport.model_format.paths import make_temp_dir
from modelport.model_format.signature import Signature

ALLOW_CODE_ENV = "MODELPORT_ALLOW_CODE"


def read_manifest(root: Path, limits: ArchiveLimits = DEFAULT_LIMITS) -> Manifest:
    """Read a package directory's manifest (cheap: no digests checked, no model opened).

    Raises:
        PackageError: there is no manifest, it is a symbolic link, or it is invalid.
        ArchiveLimitError: it is larger than ``limits.max_manifest_mb``.
    """
    manifest_path = root / MANIFEST_NAME
    try:
        # O_NOFOLLOW: a manifest that is a link could name any file on the machine.
        fd = os.open(manifest_path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        if manifest_path.is_symlink():
            raise PackageError(
                f"{manifest_path} is a symbolic link; a package's manifest must be a file in it"
            ) from None
        raise PackageError(f"{root}: no {MANIFEST_NAME}; is it a modelport package?") from None
    with os.fdopen(fd, "rb") as fh:
        info = os.fstat(fh.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise PackageError(f"{root}: no {MANIFEST_NAME}; is it a modelport package?")
        limits.check_manifest_size(manifest_path, info.st_size)
        data = fh.read(limits.max_manifest_bytes + 1)  # it may grow while read
    limits.check_manifest_size(manifest_path, len(data))
    return parse(data, str(manifest_path))


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


def check_digest(source: Path, manifest: Manifest, expected: str | None) -> None:
    """Refuse a package whose digest is not the one pinned (nothing pinned: any package).

    Raises:
        DigestMismatch: the digests differ.
    """
    if expected is not None and manifest.digest != expected:
        raise DigestMismatch(str(source), expected, manifest.digest)


def verify(
    path: str | os.PathLike[str],
    *,
    expected_digest: str | None = None,
    limits: ArchiveLimits = DEFAULT_LIMITS,
) -> VerifyReport:
    """Check every file of a package against its manifest, without loading the model.

    Beyond the digests, what a file may refer to is checked too: an ONNX model's external data
    must be files of the package.

    Args:
        path: the package directory or archive.
        expected_digest: the package digest (``sha256:...``) it must have; None accepts any.
        limits: what reading the package may cost (expanded size, entries, manifest size,
            compression ratio); a package over a limit is refused before the bytes are read.

    Raises:
        PackageError: the package cannot be read at all (no manifest, invalid manifest, unsafe
            archive, over a limit). File-level problems are reported in the returned report
            instead.
        DigestMismatch: the package's digest is not ``expected_digest``.
        UsageError: ``expected_digest`` is not ``sha256:`` and 64 hex digits.
    """
    p = Path(path)
    expected = _expected(expected_digest)
    if not p.exists():
        raise PackageError(f"{p}: no such file or directory")
    if p.is_dir():
        manifest = read_manifest(p, limits)
        check_digest(p, manifest, expected)
        problems = directory_problems(p, manifest)
        opener: FileOpener = directory_opener(p)
    else:
        manifest, problems = archive_problems(p, limits)
        check_digest(p, manifest, expected)
        opener = functools.partial(open_member, p, limits=limits)
    if not problems:  # the contents of intact files only
        problems = content_problems(manifest, opener)
    return VerifyReport(p, manifest, tuple(problems))


def extract_verified(
    path: Path,
    dest: Path,
    *,
    expected_digest: str | None = None,
    limits: ArchiveLimits = DEFAULT_LIMITS,
) -> Manifest:
    """Extract an archive into the empty directory ``dest``, checking all that :func:`verify` does.

    Raises:
        PackageError: unsafe, tampered with, or a model refers to files outside the package.
        DigestMismatch: the package's digest is not ``expected_digest``.
    """
    manifest = extract_archive(path, dest, limits)
    check_digest(path, manifest, _expected(expected_digest))
    problems = content_problems(manifest, directory_opener(dest))
    if problems:
        raise IntegrityError(problems)
    return manifest


def _expected(digest: str | None) -> str | None:
    return None if digest is None else expected_digest(digest)


#: The most of a runtime's error message that goes into ours.
MAX_RUNTIME_MESSAGE = 500


def _runner(
    source: Path, root: Path, manifest: Manifest, allow_code: bool, threads: int | None
) -> ModelRunner:
    """Open the model, turning whatever its runtime raises into a :class:`PackageError`."""
    try:
        return open_runner(root, manifest, allow_code=allow_code, threads=threads)
    except ModelportError:
        raise
    except Exception as exc:
        text = " ".join(str(exc).split())
        if len(text) > MAX_RUNTIME_MESSAGE:
            text = text[:MAX_RUNTIME_MESSAGE] + "..."
        raise PackageError(
            f"{source}: the {manifest.flavor.name} model of {manifest.name} {manifest.version} "
            f"cannot be loaded: {type(exc).__name__}: {text}"
        ) from exc


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
    path: str | os.PathLike[str],
    *,
    allow_code: bool = False,
    threads: int | None = None,
    expected_digest: str | None = None,
    limits: ArchiveLimits = DEFAULT_LIMITS,
) -> Package:
    """Load a package from a directory or a ``.mport`` archive, verifying every file first.

    Args:
        path: the package directory or archive.
        allow_code: allow flavors that run code the package carries (``python``). Also enabled
            by the environment variable ``MODELPORT_ALLOW_CODE=1``.
        threads: ONNX Runtime intra-op threads; default: the CPUs this process may use.
        expected_digest: the package digest (``sha256:...``) it must have; None accepts any.
        limits: what reading the package may cost (see :func:`verify`).

    Raises:
        PackageError: unreadable, invalid, tampered with, unsafe or over a limit, or its runtime
            cannot load the model (the message holds the runtime's own).
        EnvironmentProblem: no writable temporary directory to extract an archive into, or the
            disk filled up while extracting.
        DigestMismatch: the package's digest is not ``expected_digest``.
        CodeExecutionRefused: the package carries code and running it was not allowed.
        UsageError: ``expected_digest`` is not ``sha256:`` and 64 hex digits.
    """
    p = Path(path)
    expected = _expected(expected_digest)
    allow_code = allow_code or os.environ.get(ALLOW_CODE_ENV) == "1"
    if not p.exists():
        raise PackageError(f"{p}: no such file or directory")
    if p.is_dir():
        manifest = read_manifest(p, limits)
        check_digest(p, manifest, expected)
        problems = directory_problems(p, manifest)
        if problems:
            raise IntegrityError(problems)
        return Package(p, p, manifest, _runner(p, p, manifest, allow_code, threads))

    tmp = make_temp_dir("modelport-")
    try:
        manifest = extract_verified(p, tmp, expected_digest=expected, limits=limits)
        package = Package(p, tmp, manifest, _runner(p, tmp, manifest, allow_code, threads))
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    package._cleanup = weakref.finalize(package, _remove_tree, tmp, True)
    return package
