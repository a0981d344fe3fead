"""Loading and verifying packages: a directory or a ``.mport`` archive, both verified in full."""

from __future__ import annotations

import contextlib
import functools
import json
import os
import shlex
import shutil
import stat
import weakref
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from modelport.errors import (
    CodeExecutionRefused,
    DigestMismatch,
    IntegrityError,
    ModelError,
    ModelportError,
    PackageError,
    UsageError,
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
from modelport.model_format.payload import python_inputs
from modelport.model_format.remote.uri import is_remote
from modelport.model_format.signature import Signature

#: Set to ``1`` to allow packages that run code they carry (read by :func:`code_allowed` only).
ALLOW_CODE_ENV = "MODELPORT_ALLOW_CODE"


def code_allowed(allow_code: bool | None = None) -> bool:
    """Whether running code that a package carries is allowed.

    The one place the opt-in is decided: the caller's ``allow_code`` (``--allow-code``,
    ``allow_code=True``), or the environment variable ``MODELPORT_ALLOW_CODE=1``. The variable
    can only opt in: ``allow_code=False`` with it set is allowed.

    Args:
        allow_code: what the caller said; None or False: the environment decides.
    """
    return bool(allow_code) or os.environ.get(ALLOW_CODE_ENV) == "1"


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


#: The first bytes of a gzip stream: what every ``.mport`` archive starts with.
_GZIP_MAGIC = b"\x1f\x8b"


def local_path(source: str | os.PathLike[str]) -> Path:
    """``source`` as a path; a URI is refused here with the way to read it.

    Raises:
        UsageError: ``source`` is a storage or MLflow URI.
    """
    if is_remote(source):
        raise UsageError(
            f"{source} is a URI, not a path",
            hint="modelport.load, modelport.verify and modelport.locate read URIs",
        )
    return Path(source)


def check_package_path(path: Path) -> None:
    """Refuse, before reading it, a path that cannot be a package: missing, or a bare model.

    A bare ONNX file or an MLflow model directory is what ``modelport pack`` takes, not a
    package; the error's hint says to pack it first.

    Raises:
        PackageError: the path does not exist, or it is a model that was not packed.
    """
    if not path.exists():
        raise PackageError(f"{path}: no such file or directory")
    if path.is_dir():
        if (path / "MLmodel").is_file() and not (path / MANIFEST_NAME).exists():
            raise PackageError(
                f"{path} is an MLflow model directory, not a modelport package",
                hint=_pack_hint(path),
            )
        return
    if path.suffix.lower() == ".onnx" and not _starts_with(path, _GZIP_MAGIC):
        raise PackageError(
            f"{path} is an ONNX model, not a modelport package", hint=_pack_hint(path)
        )


def _starts_with(path: Path, magic: bytes) -> bool:
    try:
        with path.open("rb") as fh:
            return fh.read(len(magic)) == magic
    except OSError:
        return False  # reading it for real will say why


def _pack_hint(path: Path) -> str:
    if path.is_dir():  # "." has no name of its own
        out = Path(f"{path.resolve().name or 'model'}.mport")
    else:
        out = path.with_suffix(".mport")
    return (
        "pack it first (modelport.pack in Python), then use the package: "
        f"modelport pack {shlex.quote(str(path))} -o {shlex.quote(str(out))}"
    )


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
        PackageError: the package cannot be read at all (missing, a bare model not packed yet,
            no manifest, invalid manifest, unsafe archive, over a limit). File-level problems
            are reported in the returned report instead.
        DigestMismatch: the package's digest is not ``expected_digest``.
        UsageError: ``expected_digest`` is not ``sha256:`` and 64 hex digits.
    """
    p = local_path(path)
    expected = _expected(expected_digest)
    check_package_path(p)
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


@dataclass(frozen=True)
class OpenedPackage:
    """A package opened by :func:`open_package`: its verified directory and manifest.

    Attributes:
        source: the path it was opened from (a directory or an archive).
        directory: the verified package directory: ``source`` itself, or where the archive
            was extracted.
        manifest: the package's validated manifest.
    """

    source: Path
    directory: Path
    manifest: Manifest

    @property
    def extracted(self) -> bool:
        """True when ``source`` is an archive, extracted into ``directory``."""
        return self.directory != self.source


@contextlib.contextmanager
def open_package(
    source: str | os.PathLike[str],
    *,
    allow_code: bool | None = None,
    expected_digest: str | None = None,
    limits: ArchiveLimits = DEFAULT_LIMITS,
    extract_into: Path | None = None,
) -> Iterator[OpenedPackage]:
    """Verify a package and give its directory: the one way from a path to a package to read.

    A directory is verified in place; an archive is extracted, checked as it is written, into
    a private temporary directory that is removed on leaving (also on an error). Either way
    everything :func:`verify` checks is checked, and an error is raised instead of a report.

    Args:
        source: the package directory or ``.mport`` archive.
        allow_code: None (the default) when the caller only reads the package, never runs it
            (verify, inspect, build an image, copy it): any flavor opens. True or False when
            the caller will run it: a flavor that runs code is refused unless
            :func:`code_allowed` says so (the argument, or ``MODELPORT_ALLOW_CODE=1``).
        expected_digest: the package digest (``sha256:...``) it must have; None accepts any.
        limits: what reading the package may cost (see :func:`verify`).
        extract_into: an empty directory to extract an archive into instead of a temporary
            one; it is the caller's, kept on leaving (on an error it may hold some files).

    Yields:
        The verified package.

    Raises:
        PackageError: missing, a bare model not packed yet (:func:`check_package_path`),
            unreadable, invalid, tampered with, unsafe or over a limit.
        EnvironmentProblem: no writable temporary directory to extract an archive into, or the
            disk filled up while extracting.
        DigestMismatch: the package's digest is not ``expected_digest``.
        CodeExecutionRefused: the package runs code, ``allow_code`` is not None and code is not
            allowed.
        UsageError: ``expected_digest`` is not ``sha256:`` and 64 hex digits.
    """
    p = local_path(source)
    expected = _expected(expected_digest)
    check_package_path(p)
    tmp: Path | None = None
    try:
        if p.is_dir():
            report = verify(p, expected_digest=expected, limits=limits)
            if not report.ok:
                raise IntegrityError(report.problems)
            directory, manifest = p, report.manifest
        else:
            directory = extract_into if extract_into is not None else make_temp_dir("modelport-")
            tmp = None if extract_into is not None else directory
            manifest = extract_verified(p, directory, expected_digest=expected, limits=limits)
        if allow_code is not None and manifest.flavor.runs_code and not code_allowed(allow_code):
            raise CodeExecutionRefused(f"the {manifest.flavor.name!r} flavor package {p}")
        yield OpenedPackage(p, directory, manifest)
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)


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


@dataclass(frozen=True)
class Provenance:
    """Where a package came from and who signed it: what ``inspect`` shows and targets record.

    Attributes:
        source: the reference it was given as (a path or a URI), if known.
        oci_digest: the OCI manifest digest it was pulled by (``sha256:…``), for ``oci://``.
        signature_fingerprint: the fingerprint of the key or certificate that signed it
            (``sha256:…``), when it carries a signature.
        signature_verified: whether that signature was checked against a trusted key.
    """

    source: str | None = None
    oci_digest: str | None = None
    signature_fingerprint: str | None = None
    signature_verified: bool = False

    def to_dict(self) -> dict[str, Any]:
        """The facts that are known, as JSON values."""
        facts = {
            "source": self.source,
            "oci_digest": self.oci_digest,
            "signature_fingerprint": self.signature_fingerprint,
        }
        result: dict[str, Any] = {k: v for k, v in facts.items() if v is not None}
        if self.signature_fingerprint is not None:
            result["signature_verified"] = self.signature_verified
        return result


class Package:
    """A loaded, verified model package.

    Use :func:`load` to get one. A package loaded from an archive is extracted into a private
    temporary directory that lives as long as the object (or until :meth:`close`).
    """

    def __init__(self, path: Path, root: Path, manifest: Manifest, runner: ModelRunner) -> None:
        self.path = path
        self.root = root
        self.manifest = manifest
        #: Where it came from and who signed it (set by :func:`modelport.load` and the CLI).
        self.provenance = Provenance(source=str(path))
        self._runner = runner
        self._cleanup: weakref.finalize[[], Package] | None = None

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

        Takes what the HTTP routes take, read the same way and checked by the same enforcement
        (lossless conversions only), so a model packed from a DataFrame takes a DataFrame:

        - a pandas DataFrame: a table, as MLflow's ``dataframe_split`` (each input takes the
          column of its name; a single-input model takes the whole table as its matrix);
        - a mapping of input name to array-like (a ``[-1, 1]`` input also takes one value per
          row, as ``df.to_dict("list")`` gives);
        - a list of records, each a mapping of input name to value (``df.to_dict("records")``),
          as ``instances``;
        - for a model with a single input, the array-like itself (numpy array, nested list).

        Args:
            inputs: one of the above.

        Returns:
            A dict of output name to numpy array.

        Raises:
            InputError: the inputs do not match the signature (the message names the input and
                never quotes values).
            ModelError: the model itself failed.
        """
        return self.predict_arrays(self.signature.enforce(python_inputs(inputs, self.signature)))

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
    p = local_path(path)
    # The runtime refuses code itself (with its own message), so the package is opened to read.
    allowed = code_allowed(allow_code)
    with contextlib.ExitStack() as stack:
        opened = stack.enter_context(
            open_package(p, expected_digest=expected_digest, limits=limits)
        )
        runner = _runner(p, opened.directory, opened.manifest, allowed, threads)
        package = Package(p, opened.directory, opened.manifest, runner)
        if opened.extracted:
            # The extracted directory lives as long as the package (or until close()).
            package._cleanup = weakref.finalize(package, stack.pop_all().close)
    return package
