"""The manifest, ``modelport.json``, read in two layers.

Layer one (:func:`read_raw`) turns bytes into a plain JSON object and fails only when the bytes are
not a JSON object at all. Layer two (:func:`validate`) turns that object into frozen dataclasses:
one :class:`FieldValidator` per field (:data:`FIELDS`, each with the format version that added
it) records :class:`FieldProblem` pairs ``(field, message)``, and every problem is raised together
as one :class:`~modelport.errors.ManifestError`. A flavor's settings are checked by its entry
(:mod:`modelport.model_format.flavors`).

Versions: ``format_version`` is ``MAJOR.MINOR``. A newer major is refused; a newer minor is read
with a warning, and keys this version does not know are kept and written back on round-trip.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from types import MappingProxyType
from typing import Any, NamedTuple

from modelport.errors import (
    ManifestError,
    ModelportWarning,
    UnsupportedFormatError,
    UsageError,
)
from modelport.model_format.flavors import FLAVORS
from modelport.model_format.paths import is_safe_relative_path
from modelport.model_format.signature import DTYPES, Signature, TensorSpec

FORMAT_VERSION = "1.0"
FORMAT_MAJOR, FORMAT_MINOR = (int(p) for p in FORMAT_VERSION.split("."))
MANIFEST_NAME = "modelport.json"
#: The package's OpenSSF Model Signing bundle, beside the manifest: never listed in ``files``,
#: not part of the package digest (signing a package does not change its identity).
SIGNATURE_NAME = "model.sig"

# ``\Z``, not ``$``: ``$`` also matches before a trailing newline, so "name\n" would pass.
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}\Z")
DIGEST_PATTERN = re.compile(r"^sha256:[0-9a-f]{64}\Z")
PYTHON_PATTERN = re.compile(r"^\d+\.\d+(\.\d+)?\Z")
VERSION_PATTERN = re.compile(r"^(\d+)\.(\d+)\Z")


def _frozen(mapping: Mapping[str, Any]) -> Mapping[str, Any]:
    return MappingProxyType(dict(mapping))


@dataclass(frozen=True)
class Flavor:
    """How to load the model: the flavor's name and its settings (e.g. ``model`` for ``onnx``)."""

    name: str
    settings: Mapping[str, Any] = field(default_factory=lambda: _frozen({}))

    @property
    def runs_code(self) -> bool:
        """Whether loading runs code the package carries, as the flavor's entry declares.

        A flavor this version does not know (a newer minor version wrote it) counts as running
        code: nothing would vouch that it does not.
        """
        entry = FLAVORS.get(self.name)
        return entry is None or entry.runs_code

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


class FieldProblem(NamedTuple):
    """One problem of a manifest: the field it is in, and what is wrong with it.

    ``field`` is a dotted path (``flavor.model``, ``signature.inputs[0].dtype``); it is empty for
    the manifest as a whole (unknown keys). ``str()`` gives the line a :class:`ManifestError`
    lists: ``"field: message"``.
    """

    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.field}: {self.message}" if self.field else self.message


@dataclass
class ValidationContext:
    """What the field validators of one manifest share.

    The problems found so far, whether a newer minor version wrote it, and the fields already
    validated (by key).
    """

    problems: list[FieldProblem] = field(default_factory=list)
    newer_minor: bool = False
    values: dict[str, Any] = field(default_factory=dict)

    def problem(self, where: str, message: str) -> None:
        """Record a problem of the field ``where``."""
        self.problems.append(FieldProblem(where, message))


@dataclass(frozen=True)
class FieldValidator:
    """One manifest field: its key, the format version that added it, and its check.

    Args:
        key: the manifest key.
        added: the ``format_version`` that added the field; in a manifest of an older version
            the key is unknown, and the field takes its default.
        check: gets the raw value (``default`` when absent), records problems in the context
            and returns the validated value (a stand-in when invalid).
        default: the value of an absent key; None for a required field (its check refuses it).
    """

    key: str
    added: str
    check: Callable[[Any, ValidationContext], Any]
    default: Any = None

    def applies_to(self, version: tuple[int, int]) -> bool:
        """Whether a manifest of format ``version`` (major, minor) has this field."""
        return _version_tuple(self.added) <= version


def _version_tuple(version: str) -> tuple[int, int]:
    major, minor = version.split(".")
    return int(major), int(minor)


def validate(raw: Mapping[str, Any], source: str = MANIFEST_NAME) -> Manifest:
    """Validate a raw manifest object and build a :class:`Manifest`.

    Each field of :data:`FIELDS` is checked in turn and every problem is collected before any is
    raised.

    Raises:
        UnsupportedFormatError: written by a newer major version of the format.
        ManifestError: listing every problem found, each naming its field.
    """
    context = ValidationContext()
    version = _check_format_version(raw.get("format_version"), context, source)
    known = {"format_version"}
    for validator in FIELDS:
        applies = validator.applies_to(version)
        value = raw.get(validator.key, validator.default) if applies else validator.default
        context.values[validator.key] = validator.check(value, context)
        if applies:
            known.add(validator.key)
    unknown = {k: v for k, v in raw.items() if k not in known}
    if unknown and not context.newer_minor:
        context.problem("", f"unknown key(s) {', '.join(sorted(unknown))}")
    if context.problems:
        raise ManifestError([str(p) for p in context.problems], source)
    assert context.values["flavor"] is not None and context.values["signature"] is not None
    return Manifest(
        **context.values,
        format_version=str(raw["format_version"]),
        extra=_freeze_json(unknown),
    )


def parse(data: bytes, source: str = MANIFEST_NAME) -> Manifest:
    """Read and validate manifest bytes (both layers)."""
    return validate(read_raw(data, source), source)


def _check_format_version(value: Any, context: ValidationContext, source: str) -> tuple[int, int]:
    """The version whose fields apply; sets ``context.newer_minor`` for a newer minor version.

    An invalid or too old version is a problem, and the current version's fields are checked.
    """
    current = (FORMAT_MAJOR, FORMAT_MINOR)
    match = VERSION_PATTERN.match(value) if isinstance(value, str) else None
    if match is None:
        context.problem("format_version", "required, a string 'MAJOR.MINOR' such as '1.0'")
        return current
    major, minor = int(match.group(1)), int(match.group(2))
    if major > FORMAT_MAJOR:
        raise UnsupportedFormatError(
            f"{source}: format_version {value} is newer than this modelport reads "
            f"({FORMAT_VERSION}); upgrade modelport to load this package"
        )
    if major < FORMAT_MAJOR:
        context.problem("format_version", f"{value} predates 1.0 and is not supported")
        return current
    if minor > FORMAT_MINOR:
        warnings.warn(
            f"{source}: format_version {value} is newer than {FORMAT_VERSION}; reading it, and "
            "keeping the keys this version does not know",
            ModelportWarning,
            stacklevel=3,
        )
        context.newer_minor = True
    return major, minor


def _text(
    key: str,
    value: Any,
    context: ValidationContext,
    pattern: re.Pattern[str] | None = None,
    hint: str = "",
) -> str:
    if not isinstance(value, str) or not value:
        context.problem(key, "required, a non-empty string")
        return ""
    if pattern is not None and not pattern.match(value):
        context.problem(key, hint)
    return value


def _name(value: Any, context: ValidationContext) -> str:
    return _text(
        "name",
        value,
        context,
        NAME_PATTERN,
        "letters, digits, '.', '_' and '-', starting with a letter or digit, at most 128",
    )


def _version(value: Any, context: ValidationContext) -> str:
    return _text("version", value, context)


def _files(value: Any, context: ValidationContext) -> Mapping[str, str]:
    if not isinstance(value, dict):
        context.problem("files", "required, an object of relative path to 'sha256:<hex>'")
        return _frozen({})
    files: dict[str, str] = {}
    for path, digest in value.items():
        if not is_safe_relative_path(path):
            context.problem(
                "files", f"{path!r} is not a safe relative POSIX path (no '..', no absolute path)"
            )
        elif path == MANIFEST_NAME:
            context.problem("files", f"must not list {MANIFEST_NAME} itself")
        elif not isinstance(digest, str) or not DIGEST_PATTERN.match(digest):
            context.problem("files", f"{path!r} must map to 'sha256:' and 64 lowercase hex digits")
        else:
            files[path] = digest
    # A path that is both a file and a folder of another file cannot be written to disk.
    taken = set(files) | {MANIFEST_NAME}
    for path in sorted(files):
        parents = {"/".join(path.split("/")[:i]) for i in range(1, path.count("/") + 1)}
        clash = sorted(parents & taken)
        if clash:
            context.problem("files", f"{path!r} lies under {clash[0]!r}, which is a file")
    return _frozen(files)


def _flavor(value: Any, context: ValidationContext) -> Flavor | None:
    if not isinstance(value, dict) or not isinstance(value.get("name"), str):
        context.problem("flavor", "required, an object with a string 'name'")
        return None
    name = value["name"]
    settings = {k: v for k, v in value.items() if k != "name"}
    entry = FLAVORS.get(name)
    if entry is None:
        # A newer minor version may add flavors: read the manifest, loading it will refuse.
        if not context.newer_minor:
            context.problem("flavor.name", f"unknown flavor {name!r}; known: {', '.join(FLAVORS)}")
    else:
        for key, message in entry.settings_problems(settings, context.values["files"]):
            context.problem(f"flavor.{key}", message)
    return Flavor(name, _freeze_json(settings))


def _signature(value: Any, context: ValidationContext) -> Signature | None:
    if not isinstance(value, dict):
        context.problem("signature", "required, an object with 'inputs' and 'outputs'")
        return None
    inputs = _specs(value.get("inputs"), "signature.inputs", context, required=True)
    outputs = _specs(value.get("outputs"), "signature.outputs", context, required=False)
    return Signature(inputs, outputs)


def _specs(
    value: Any, where: str, context: ValidationContext, *, required: bool
) -> tuple[TensorSpec, ...]:
    if not isinstance(value, list) or (required and not value):
        context.problem(where, f"required, a {'non-empty ' if required else ''}list")
        return ()
    specs: list[TensorSpec] = []
    seen: set[str] = set()
    for i, item in enumerate(value):
        at = f"{where}[{i}]"
        if not isinstance(item, dict):
            context.problem(at, "an object with name, dtype and shape")
            continue
        name, dtype, shape = item.get("name"), item.get("dtype"), item.get("shape")
        ok = True
        if not isinstance(name, str) or not name:
            context.problem(f"{at}.name", "a non-empty string")
            ok = False
        elif name in seen:
            context.problem(f"{at}.name", f"{name!r} appears twice")
            ok = False
        if dtype not in DTYPES:
            context.problem(f"{at}.dtype", f"one of {', '.join(DTYPES)}")
            ok = False
        if not isinstance(shape, list) or not all(
            isinstance(d, int) and not isinstance(d, bool) and d >= -1 for d in shape
        ):
            context.problem(f"{at}.shape", "a list of integers, -1 for a variable dimension")
            ok = False
        unknown = set(item) - {"name", "dtype", "shape"}
        if unknown:
            context.problem(at, f"unknown key(s) {', '.join(sorted(unknown))}")
            ok = False
        if ok:
            assert isinstance(name, str) and isinstance(dtype, str) and isinstance(shape, list)
            seen.add(name)
            specs.append(TensorSpec(name, dtype, tuple(shape)))
    return tuple(specs)


def _requirements(value: Any, context: ValidationContext) -> tuple[str, ...]:
    if not isinstance(value, list):
        context.problem("requirements", "a list of requirement strings such as 'numpy==2.1.0'")
        return ()
    bad = False
    for i, requirement in enumerate(value):
        why = requirement_problem(requirement)
        if why is not None:
            context.problem(f"requirements[{i}]", why)
            bad = True
    return () if bad else tuple(value)


def _python(value: Any, context: ValidationContext) -> str:
    if not isinstance(value, str) or (value and not PYTHON_PATTERN.match(value)):
        context.problem("python", "a version string such as '3.11.7'")
        return ""
    return value


def _created_at(value: Any, context: ValidationContext) -> str | None:
    if value is not None and not _is_iso_datetime(value):
        context.problem("created_at", "null or an ISO 8601 date and time")
        return None
    return value  # type: ignore[no-any-return]


def _metadata(value: Any, context: ValidationContext) -> Mapping[str, str]:
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        context.problem("metadata", "an object of string keys to string values")
        return _frozen({})
    return _frozen(value)


def _example(value: Any, context: ValidationContext) -> str | None:
    if value is not None and (not isinstance(value, str) or value not in context.values["files"]):
        context.problem("example", "null or the path of a file listed in files")
        return None
    return value


def _is_iso_datetime(value: Any) -> bool:
    if not isinstance(value, str):
        return False
    try:
        datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return False
    return True


#: The manifest's fields after ``format_version``, validated in this order (the order of the
#: problems reported). ``files`` comes before the fields that name a file.
FIELDS: tuple[FieldValidator, ...] = (
    FieldValidator("name", "1.0", _name),
    FieldValidator("version", "1.0", _version),
    FieldValidator("files", "1.0", _files),
    FieldValidator("flavor", "1.0", _flavor),
    FieldValidator("signature", "1.0", _signature),
    FieldValidator("requirements", "1.0", _requirements, default=[]),
    FieldValidator("python", "1.0", _python, default=""),
    FieldValidator("created_at", "1.0", _created_at),
    FieldValidator("metadata", "1.0", _metadata, default={}),
    FieldValidator("example", "1.0", _example),
)


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
