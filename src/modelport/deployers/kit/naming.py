"""Names and labels: resource names with generations, and one vocabulary of labels per platform.

Every resource a target makes says what it serves with the same facts (:class:`Facts`: package
digest, name and version, modelport's version, the deployment and target that own it, the
blue/green generation). Each platform spells them under its own rules, and :func:`labels` /
:func:`read_labels` are the only translation::

    >>> labels(Platform.AWS, Facts(deployment="churn", generation=2))
    {'modelport:deployment': 'churn', 'modelport:generation': '2'}

- ``docker``: OCI image and container labels, reverse-DNS keys, any value;
- ``aws``: tags, keys up to 128 and values up to 256 of letters, digits, spaces and ``_.:/=+-@``;
- ``azure``: tags, keys up to 512 without ``<>%&?/`` or backslashes, values up to 256;
- ``gcp``: labels, keys and values up to 63 of ``[a-z0-9_-]``, keys starting with a letter;
- ``kubernetes``: labels, ``prefix/name`` keys, values up to 63 of ``[A-Za-z0-9._-]`` starting
  and ending with a letter or digit.

A sha256 digest (71 characters) does not fit in a GCP or Kubernetes value: there each digest fact
(the package digest, the signature's fingerprint, the OCI digest) is split into two labels, the
second under the fact's key with ``-2`` appended, and :func:`read_labels` joins them again, so
every digest survives every platform. Other values are made to fit (lower-cased, characters
replaced, shortened); reading them back gives the fitted value.
"""

from __future__ import annotations

import dataclasses
import enum
import hashlib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from modelport.model_format.package import Provenance


class Platform(str, enum.Enum):
    """A family of label or tag rules."""

    DOCKER = "docker"
    AWS = "aws"
    AZURE = "azure"
    GCP = "gcp"
    KUBERNETES = "kubernetes"


@dataclass(frozen=True)
class Facts:
    """What modelport records on a resource. Every field is optional.

    Attributes:
        package_digest: the package's digest, ``sha256:<64 hex>``.
        package_name: the package's name.
        package_version: the package's version.
        flavor: the package's flavor (``onnx``, ``python``).
        modelport_version: the modelport that made the resource.
        deployment: the deployment the resource belongs to.
        target: the target that made it.
        generation: the blue/green generation (1 for the first version).
        signature_fingerprint: the key or certificate that signed the package (``sha256:…``).
        oci_digest: the OCI manifest digest the package was pulled by (``sha256:…``).
    """

    package_digest: str | None = None
    package_name: str | None = None
    package_version: str | None = None
    flavor: str | None = None
    modelport_version: str | None = None
    deployment: str | None = None
    target: str | None = None
    generation: int | None = None
    signature_fingerprint: str | None = None
    oci_digest: str | None = None


#: The fact's key on each platform (its ``modelport`` prefix included).
_KEYS: dict[Platform, dict[str, str]] = {
    Platform.DOCKER: {
        "package_digest": "dev.modelport.package.digest",
        "package_name": "dev.modelport.package.name",
        "package_version": "dev.modelport.package.version",
        "flavor": "dev.modelport.package.flavor",
        "modelport_version": "dev.modelport.version",
        "deployment": "dev.modelport.deployment",
        "target": "dev.modelport.target",
        "generation": "dev.modelport.generation",
        "signature_fingerprint": "dev.modelport.signature.fingerprint",
        "oci_digest": "dev.modelport.oci.digest",
    },
    Platform.AWS: {f: f"modelport:{f.replace('_', '-')}" for f in Facts.__dataclass_fields__},
    Platform.AZURE: {f: f"modelport-{f.replace('_', '-')}" for f in Facts.__dataclass_fields__},
    Platform.GCP: {f: f"modelport-{f.replace('_', '-')}" for f in Facts.__dataclass_fields__},
    Platform.KUBERNETES: {
        f: f"modelport.dev/{f.replace('_', '-')}" for f in Facts.__dataclass_fields__
    },
}
#: The facts that hold a ``sha256:<64 hex>`` digest.
_DIGEST_FACTS = ("package_digest", "signature_fingerprint", "oci_digest")
#: The platforms whose values cannot hold a digest: there it is split in two.
_SPLIT_PLATFORMS = (Platform.GCP, Platform.KUBERNETES)
_SPLIT_DIGEST = re.compile(r"^sha256:([0-9a-f]{64})$")


def _tail_key(platform: Platform, fact: str) -> str:
    """Where the second half of a split digest fact goes: its key with ``-2`` appended."""
    return f"{_KEYS[platform][fact]}-2"


_VALUE_LIMIT = {Platform.AWS: 256, Platform.AZURE: 256, Platform.GCP: 63, Platform.KUBERNETES: 63}


#: The facts of a package's provenance, named as ``Deployment.details`` names them.
PROVENANCE_FACTS = ("signature_fingerprint", "oci_digest")


def with_provenance(facts: Facts, provenance: Provenance | None) -> Facts:
    """``facts`` with the signature's fingerprint and the OCI digest of ``provenance`` (if any)."""
    if provenance is None:
        return facts
    return dataclasses.replace(
        facts,
        signature_fingerprint=provenance.signature_fingerprint,
        oci_digest=provenance.oci_digest,
    )


def provenance_details(facts: Facts | None) -> dict[str, str]:
    """The provenance among ``facts`` as a deployment's details hold it: known facts only.

    >>> provenance_details(Facts(oci_digest="sha256:" + "0" * 64))
    {'oci_digest': 'sha256:0000000000000000000000000000000000000000000000000000000000000000'}
    """
    if facts is None:
        return {}
    found = ((fact, getattr(facts, fact)) for fact in PROVENANCE_FACTS)
    return {fact: value for fact, value in found if value is not None}


def label_key(platform: Platform, fact: str) -> str:
    """The key a fact is stored under on ``platform`` (``fact`` is a :class:`Facts` field)."""
    return _KEYS[platform][fact]


def _fit(platform: Platform, value: str) -> str:
    """A value made acceptable to the platform's rules."""
    if platform is Platform.DOCKER:
        return value
    if platform is Platform.AWS:
        value = re.sub(r"[^\w .:/=+\-@]", "_", value)
    elif platform is Platform.AZURE:
        pass  # values may hold anything; only their length is limited
    elif platform is Platform.GCP:
        value = re.sub(r"[^a-z0-9_-]", "-", value.lower())
    else:  # Kubernetes
        value = re.sub(r"[^A-Za-z0-9._-]", "-", value)[:63].strip("._-")
    return value[: _VALUE_LIMIT[platform]]


def labels(platform: Platform, facts: Facts) -> dict[str, str]:
    """The labels (or tags) that record ``facts`` on ``platform``; unset facts are left out."""
    result: dict[str, str] = {}
    for fact, value in dataclasses.asdict(facts).items():
        if value is None:
            continue
        text = str(value)
        key = _KEYS[platform][fact]
        split = _SPLIT_DIGEST.match(text) if fact in _DIGEST_FACTS else None
        if split and platform in _SPLIT_PLATFORMS:
            result[key] = f"sha256-{split.group(1)[:32]}"
            result[_tail_key(platform, fact)] = split.group(1)[32:]
        else:
            result[key] = _fit(platform, text)
    return result


def read_labels(platform: Platform, found: Mapping[str, str] | None) -> Facts:
    """The facts recorded by :func:`labels` (missing or unreadable ones are None)."""
    found = found or {}
    values: dict[str, object] = {}
    for fact, key in _KEYS[platform].items():
        if key in found:
            values[fact] = found[key]
    if platform in _SPLIT_PLATFORMS:
        for fact in _DIGEST_FACTS:
            head = str(values.get(fact) or "")
            tail = found.get(_tail_key(platform, fact), "")
            if head.startswith("sha256-") and tail:
                values[fact] = f"sha256:{head.removeprefix('sha256-')}{tail}"
    generation = values.get("generation")
    values["generation"] = int(str(generation)) if str(generation or "").isdigit() else None
    return Facts(**values)  # type: ignore[arg-type]


# --- resource names -----------------------------------------------------------------------------

_GENERATION = re.compile(r"^(?P<base>.+)-g(?P<generation>[1-9][0-9]*)$")


def resource_name(*parts: str, max_length: int = 63) -> str:
    """A DNS-label-style name (lowercase letters, digits, inner hyphens) from ``parts``.

    Longer than ``max_length``, it is cut and ends with 6 hex digits of a hash of the whole, so
    two long names that share a beginning stay different.

    >>> resource_name("modelport", "Churn_Model")
    'modelport-churn-model'
    """
    name = re.sub(r"[^a-z0-9]+", "-", "-".join(parts).lower()).strip("-") or "modelport"
    if len(name) <= max_length:
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:6]
    return f"{name[: max_length - 7].rstrip('-')}-{digest}"


def generation_name(base: str, generation: int, *, max_length: int = 63) -> str:
    """The name of generation ``generation`` of a resource: ``<base>-g<generation>``.

    Blue/green updates make generation N+1 beside N, switch, then remove N.

    >>> generation_name("churn", 2)
    'churn-g2'
    """
    if generation < 1:
        raise ValueError(f"generations start at 1, got {generation}")
    suffix = f"-g{generation}"
    return f"{resource_name(base, max_length=max_length - len(suffix))}{suffix}"


def parse_generation(name: str, base: str, *, max_length: int = 63) -> int | None:
    """The generation a name made by :func:`generation_name` for ``base`` has, else None."""
    match = _GENERATION.match(name)
    if match is None:
        return None
    generation = int(match.group("generation"))
    return generation if generation_name(base, generation, max_length=max_length) == name else None


def next_generation(names: Iterable[str], base: str, *, max_length: int = 63) -> int:
    """One more than the highest generation of ``base`` among ``names`` (1 when there is none)."""
    found = [parse_generation(n, base, max_length=max_length) for n in names]
    return max((g for g in found if g is not None), default=0) + 1
