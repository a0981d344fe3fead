"""The manifest, ``modelport.json``, read in two layers.

Layer one (:func:`read_raw`) turns bytes into a plain JSON object and fails only when the bytes are
not a JSON object at all. Layer two (:func:`validate`) turns that object into frozen dataclasses and
collects every problem it finds, each naming its field, before raising them together as one
:class:`~modelport.errors.ManifestError`.

Versions: ``format_version`` is ``MAJOR.MINOR``. A newer major is refused; a newer minor is read
with a warning, and keys this version does not know are kept and written back on round-trip.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from types import MappingProxyType
from typing import Any

from modelport.errors import (
    ManifestError,
    ModelportWarning,
    UnsupportedFormatError,
    UsageError,
)
from modelport.model_format.paths import is_safe_relative_path
from modelport.model_format.signature import DTYPES, Signature, TensorSpec

FORMAT_VERSION = "1.0"
FORMAT_MAJOR, FORMAT_MINOR = (int(p) for p in FORMAT_VERSION.split("."))
MANIFEST_NAME = "modelport.json"

#: Flavors this version of the format knows how to load, with their required settings.
FLAVORS: dict[str, tuple[str, ...]] = {
    "onnx": ("model",),
    "python": ("code", "class"),
}

KNOWN_KEYS = (
    "format_version",
    "name",
    "version",
    "flavor",
    "signature",
    "files",
    "requirements",
    "python",
    "created_at",
    "metadata",
    "example",
)

# ``\Z``, not ``$``: ``$`` also matches before a trailing newline, so "name\n" would pass.
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}\Z")
DIGEST_PATTERN = re.compile(r"^sha256:[0-9a-f]{64}\Z")
PYTHON_PATTERN = re.compile(r"^\d+\.\d+(\.\d+)?\Z")
VERSION_PATTERN = re.compile(r"^(\d+)\.(\d+)\Z")
IDENTIFIER_PATTERN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*\Z")


def _frozen(mapping: Mapping[str, Any]) -> Mapping[str, Any]:
    return MappingProxyType(dict(mapping))


@dataclass(frozen=True)
class Flavor:
    """How to load the model: the flavor's name and its settings (e.g. ``model`` for ``onnx``)."""

    name: str
    settings: Mapping[str, Any] = field(default_factory=lambda: _frozen({}))

    @property
    def runs_code(self) -> bool:
        """Whether loading runs code the package carries: every flavor but ``onnx``."""
        return self.name != "onnx"

    def to_dict(self) -> dict[str, Any]:
        """Return the manifest form: ``{"name": ..., **settings}``."""
        return {"name": self.name, **_thaw(self.settings)}


@dataclass(frozen=True)
class Manifest:
    """A validated manifest. Build one with :func:`validate` or directly (tests, packers)."""

    name: str
    version: str
    flavor: Flavor
    signature: Signature
    files: Mapping[str, str]
    requirements: tuple[str, ...] = ()
    python: str = ""
    created_at: str | None = None
    metadata: Mapping[str, str] = field(default_factory=lambda: _frozen({}))
    example: str | None = None
    format_version: str = FORMAT_VERSION
    #: Keys written by a newer minor version of the format, kept so a round-trip loses nothing.
    extra: Mapping[str, Any] = field(default_factory=lambda: _frozen({}))

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON object of this manifest, ``format_version`` first."""
        data: dict[str, Any] = {
            "format_version": self.format_version,
            "name": self.name,
            "version": self.version,
            "flavor": self.flavor.to_dict(),
            "signature": self.signature.to_dict(),
            "files": dict(sorted(self.files.items())),
            "requirements": list(self.requirements),
            "python": self.python,
            "created_at": self.created_at,
            "metadata": dict(sorted(self.metadata.items())),
            "example": self.example,
        }
        data.update(_thaw(self.extra))
        return data

    def to_json(self) -> bytes:
        """Return the bytes written to ``modelport.json`` (stable: same manifest, same bytes)."""
        return (
            json.dumps(self.to_dict(), indent=2, ensure_ascii=False, allow_nan=False) + "\n"
        ).encode()

    @property
    def digest(self) -> str:
        """The package digest: ``sha256:<hex>`` of the canonical manifest.

        The manifest lists the digest of every file, so this one value identifies the whole
        package: its files, signature and settings.
        """
        return "sha256:" + hashlib.sha256(canonical_json(self.to_dict())).hexdigest()


def canonical_json(data: Any) -> bytes:
    """Serialize ``data`` canonically: sorted keys, no whitespace, UTF-8."""
    return json.dumps(
        data, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode()


def _thaw(value: Any) -> Any:
    if isinstance(value, Mapping):
        # Sorted, so that equal manifests give the same bytes whatever order keys arrived in.
        return {k: _thaw(value[k]) for k in sorted(value)}
    if isinstance(value, (list, tuple)):
        return [_thaw(v) for v in value]
    return value


def _freeze_json(value: Any) -> Any:
    if isinstance(value, Mapping):
        return _frozen({k: _freeze_json(v) for k, v in value.items()})
    if isinstance(value, list):
        return tuple(_freeze_json(v) for v in value)
    return value


# --- layer one ------------------------------------------------------------------------------


def read_raw(data: bytes, source: str = MANIFEST_NAME) -> dict[str, Any]:
    """Parse manifest bytes into a JSON object, without validating its fields.

    Raises:
        ManifestError: the bytes are not UTF-8 JSON or not a JSON object.
    """
    try:
        raw = json.loads(
            data.decode("utf-8"), parse_constant=_reject_constant, parse_float=_finite_float
        )
    except UnicodeDecodeError:
        raise ManifestError(["not UTF-8 text"], source) from None
    except ValueError as exc:
        raise ManifestError([f"not valid JSON: {exc}"], source) from None
    if not isinstance(raw, dict):
        raise ManifestError([f"must be a JSON object, got {type(raw).__name__}"], source)
    try:
        # A "\ud800" escape decodes to a lone surrogate, which no UTF-8 file (and no digest) holds.
        canonical_json(raw)
    except UnicodeEncodeError:
        raise ManifestError(["holds an escaped lone surrogate (\\ud800-\\udfff)"], source) from None
    return raw


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _finite_float(text: str) -> float:
    # 1e999 parses to inf, which the canonical JSON of the digest cannot represent.
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"number {text[:20]} is out of range")
    return value


# --- layer two ------------------------------------------------------------------------------


def validate(raw: Mapping[str, Any], source: str = MANIFEST_NAME) -> Manifest:
    """Validate a raw manifest object and build a :class:`Manifest`.

    Raises:
        UnsupportedFormatError: written by a newer major version of the format.
        ManifestError: listing every problem found, each naming its field.
    """
    problems: list[str] = []
    newer_minor = _check_format_version(raw.get("format_version"), problems, source)

    def text(key: str, *, pattern: re.Pattern[str] | None = None, hint: str = "") -> str:
        value = raw.get(key)
        if not isinstance(value, str) or not value:
            problems.append(f"{key}: required, a non-empty string")
            return ""
        if pattern is not None and not pattern.match(value):
            problems.append(f"{key}: {hint}")
        return value

    name = text(
        "name",
        pattern=NAME_PATTERN,
        hint="letters, digits, '.', '_' and '-', starting with a letter or digit, at most 128",
    )
    version = text("version")
    files = _files(raw.get("files"), problems)
    flavor = _flavor(raw.get("flavor"), files, problems, newer_minor)
    signature = _signature(raw.get("signature"), problems)
    requirements = _requirements(raw.get("requirements", []), problems)
    python = raw.get("python", "")
    if not isinstance(python, str) or (python and not PYTHON_PATTERN.match(python)):
        problems.append("python: a version string such as '3.11.7'")
        python = ""
    created_at = raw.get("created_at")
    if created_at is not None and not _is_iso_datetime(created_at):
        problems.append("created_at: null or an ISO 8601 date and time")
        created_at = None
    metadata = raw.get("metadata", {})
    if not isinstance(metadata, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()
    ):
        problems.append("metadata: an object of string keys to string values")
        metadata = {}
    example = raw.get("example")
    if example is not None and (not isinstance(example, str) or example not in files):
        problems.append("example: null or the path of a file listed in files")
        example = None

    unknown = {k: v for k, v in raw.items() if k not in KNOWN_KEYS}
    if unknown and not newer_minor:
        problems.append(f"unknown key(s) {', '.join(sorted(unknown))}")
    if problems:
        raise ManifestError(problems, source)
    assert flavor is not None and signature is not None
    return Manifest(
        name=name,
        version=version,
        flavor=flavor,
        signature=signature,
        files=_frozen(files),
        requirements=requirements,
        python=python,
        created_at=created_at,
        metadata=_frozen(metadata),
        example=example,
        format_version=str(raw["format_version"]),
        extra=_freeze_json(unknown),
    )


def parse(data: bytes, source: str = MANIFEST_NAME) -> Manifest:
    """Read and validate manifest bytes (both layers)."""
    return validate(read_raw(data, source), source)


def _check_format_version(value: Any, problems: list[str], source: str) -> bool:
    """Return True when the manifest comes from a newer minor version of the format."""
    match = VERSION_PATTERN.match(value) if isinstance(value, str) else None
    if match is None:
        problems.append("format_version: required, a string 'MAJOR.MINOR' such as '1.0'")
        return False
    major, minor = int(match.group(1)), int(match.group(2))
    if major > FORMAT_MAJOR:
        raise UnsupportedFormatError(
            f"{source}: format_version {value} is newer than this modelport reads "
            f"({FORMAT_VERSION}); upgrade modelport to load this package"
        )
    if major < FORMAT_MAJOR:
        problems.append(f"format_version: {value} predates 1.0 and is not supported")
        return False
    if minor > FORMAT_MINOR:
        warnings.warn(
            f"{source}: format_version {value} is newer than {FORMAT_VERSION}; reading it, and "
            "keeping the keys this version does not know",
            ModelportWarning,
            stacklevel=3,
        )
        return True
    return False


def expected_digest(value: str, where: str = "expected digest") -> str:
    """Check the form of a package digest a caller pins (``--expect-digest``) and normalise it.

    Returns:
        ``sha256:`` and 64 lowercase hex digits.

    Raises:
        UsageError: not ``sha256:`` followed by 64 hex digits.
    """
    normal = value.strip().lower() if isinstance(value, str) else ""
    if not DIGEST_PATTERN.match(normal):
        shown = value[:80] if isinstance(value, str) else type(value).__name__
        raise UsageError(f"{where}: expected 'sha256:' and 64 hex digits, got {shown!r}")
    return normal


def _files(value: Any, problems: list[str]) -> dict[str, str]:
    if not isinstance(value, dict):
        problems.append("files: required, an object of relative path to 'sha256:<hex>'")
        return {}
    files: dict[str, str] = {}
    for path, digest in value.items():
        if not is_safe_relative_path(path):
            problems.append(
                f"files: {path!r} is not a safe relative POSIX path (no '..', no absolute path)"
            )
        elif path == MANIFEST_NAME:
            problems.append(f"files: must not list {MANIFEST_NAME} itself")
        elif not isinstance(digest, str) or not DIGEST_PATTERN.match(digest):
            problems.append(f"files: {path!r} must map to 'sha256:' and 64 lowercase hex digits")
        else:
            files[path] = digest
    # A path that is both a file and a folder of another file cannot be written to disk.
    taken = set(files) | {MANIFEST_NAME}
    for path in sorted(files):
        parents = {"/".join(path.split("/")[:i]) for i in range(1, path.count("/") + 1)}
        clash = sorted(parents & taken)
        if clash:
            problems.append(f"files: {path!r} lies under {clash[0]!r}, which is a file")
    return files


def _flavor(
    value: Any, files: Mapping[str, str], problems: list[str], newer_minor: bool
) -> Flavor | None:
    if not isinstance(value, dict) or not isinstance(value.get("name"), str):
        problems.append("flavor: required, an object with a string 'name'")
        return None
    name = value["name"]
    settings = {k: v for k, v in value.items() if k != "name"}
    if name not in FLAVORS:
        if not newer_minor:
            problems.append(f"flavor.name: unknown flavor {name!r}; known: {', '.join(FLAVORS)}")
        return Flavor(name, _freeze_json(settings))
    for key in FLAVORS[name]:
        if not isinstance(settings.get(key), str) or not settings[key]:
            problems.append(f"flavor.{key}: required for the {name!r} flavor, a string")
    for key in ("model", "code"):
        path = settings.get(key)
        if key in FLAVORS[name] and isinstance(path, str) and path and path not in files:
            problems.append(f"flavor.{key}: {path!r} is not listed in files")
    cls = settings.get("class")
    if name == "python" and isinstance(cls, str) and not IDENTIFIER_PATTERN.match(cls):
        problems.append("flavor.class: must be a Python identifier")
    return Flavor(name, _freeze_json(settings))


def _signature(value: Any, problems: list[str]) -> Signature | None:
    if not isinstance(value, dict):
        problems.append("signature: required, an object with 'inputs' and 'outputs'")
        return None
    inputs = _specs(value.get("inputs"), "signature.inputs", problems, required=True)
    outputs = _specs(value.get("outputs"), "signature.outputs", problems, required=False)
    return Signature(inputs, outputs)


def _specs(
    value: Any, where: str, problems: list[str], *, required: bool
) -> tuple[TensorSpec, ...]:
    if not isinstance(value, list) or (required and not value):
        problems.append(f"{where}: required, a {'non-empty ' if required else ''}list")
        return ()
    specs: list[TensorSpec] = []
    seen: set[str] = set()
    for i, item in enumerate(value):
        at = f"{where}[{i}]"
        if not isinstance(item, dict):
            problems.append(f"{at}: an object with name, dtype and shape")
            continue
        name, dtype, shape = item.get("name"), item.get("dtype"), item.get("shape")
        ok = True
        if not isinstance(name, str) or not name:
            problems.append(f"{at}.name: a non-empty string")
            ok = False
        elif name in seen:
            problems.append(f"{at}.name: {name!r} appears twice")
            ok = False
        if dtype not in DTYPES:
            problems.append(f"{at}.dtype: one of {', '.join(DTYPES)}")
            ok = False
        if not isinstance(shape, list) or not all(
            isinstance(d, int) and not isinstance(d, bool) and d >= -1 for d in shape
        ):
            problems.append(f"{at}.shape: a list of integers, -1 for a variable dimension")
            ok = False
        unknown = set(item) - {"name", "dtype", "shape"}
        if unknown:
            problems.append(f"{at}: unknown key(s) {', '.join(sorted(unknown))}")
            ok = False
        if ok:
            assert isinstance(name, str) and isinstance(dtype, str) and isinstance(shape, list)
            seen.add(name)
            specs.append(TensorSpec(name, dtype, tuple(shape)))
    return tuple(specs)


#: Longest requirement string accepted (a name, extras, specifiers and markers).
MAX_REQUIREMENT = 512


def requirement_problem(text: Any) -> str | None:
    """Why ``text`` is not a plain requirement, or None when it is one.

    A plain requirement is ``name[extras]<specifiers>[; markers]``, parsed by ``packaging``:
    never a URL or other direct reference (``name @ https://...``), never a pip option
    (``--index-url``, ``-e``, ``-r``, ``--hash``), since an image installs these from its index.
    """
    from packaging.requirements import InvalidRequirement, Requirement

    if not isinstance(text, str) or not text.strip():
        return "must be a non-empty string such as 'numpy==2.1.0'"
    shown = repr(text[:80]) + ("..." if len(text) > 80 else "")
    if len(text) > MAX_REQUIREMENT:
        return f"{shown} is longer than {MAX_REQUIREMENT} characters"
    if text.lstrip().startswith("-"):
        return f"{shown} is a pip option, not a requirement"
    try:
        requirement = Requirement(text)
    except InvalidRequirement:
        return f"{shown} is not a requirement such as 'numpy==2.1.0'"
    if requirement.url is not None:
        return f"{shown} is a direct reference (a URL); only 'name<specifiers>' is allowed"
    return None


def _requirements(value: Any, problems: list[str]) -> tuple[str, ...]:
    if not isinstance(value, list):
        problems.append("requirements: a list of requirement strings such as 'numpy==2.1.0'")
        return ()
    found = [(i, requirement_problem(r)) for i, r in enumerate(value)]
    bad = [f"requirements[{i}]: {why}" for i, why in found if why is not None]
    problems.extend(bad)
    return () if bad else tuple(value)


def _is_iso_datetime(value: Any) -> bool:
    if not isinstance(value, str):
        return False
    try:
        datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return False
    return True
