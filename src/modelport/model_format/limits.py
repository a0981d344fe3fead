"""Limits on what reading a package may cost: expanded size, entries, manifest size, ratio.

An archive is refused as soon as a header shows it would go over a limit, before the bytes in
question are read or decompressed. Each limit has one name, used for the :class:`ArchiveLimits`
field, the command-line flag (``max_ratio`` -> ``--max-ratio``) and, for ``modelport serve`` and
images, the environment variable (``MODELPORT_MAX_RATIO``).

This module imports nothing heavy: the CLI and the server's configuration use it.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

from modelport.errors import ArchiveLimitError, UsageError

MIB = 1 << 20
#: Archives that expand to at most this much are not held to ``max_ratio``: small packages of
#: highly compressible data (an untrained model of zeros, a big JSON example) stay welcome, and
#: the most a 2 KB bomb can cost is decompressing this much.
RATIO_EXEMPT_BYTES = 256 * MIB


@dataclass(frozen=True)
class ArchiveLimits:
    """How much reading one package may cost; over a limit, the package is refused.

    The defaults never refuse a real model: they sit well above the largest ONNX models served
    from one machine (a 30-billion-parameter float16 model is ~56 GiB of external data) and far
    above the compression real weights reach (1-3:1; only long runs of zeros go past 100:1).

    Attributes:
        max_expanded_mb: the most an archive may expand to, in MiB: its files' sizes plus the
            tar headers (a few hundred bytes per file). Default 64 GiB.
        max_entries: the most entries (files) an archive may hold. Default 10,000.
        max_manifest_mb: the largest manifest read, in MiB. Default 16 MiB (a manifest listing
            10,000 files takes about 1 MiB).
        max_ratio: the most an archive may expand, as a multiple of its own size, once it expands
            past 256 MiB (:data:`RATIO_EXEMPT_BYTES`). Default 100.
    """

    max_expanded_mb: float = 65536.0
    max_entries: int = 10_000
    max_manifest_mb: float = 16.0
    max_ratio: float = 100.0

    def __post_init__(self) -> None:
        for item in fields(self):
            value = getattr(self, item.name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
                raise UsageError(
                    f"ArchiveLimits.{item.name} must be a positive number, got {value!r}"
                )

    @property
    def max_expanded_bytes(self) -> int:
        """``max_expanded_mb`` in bytes."""
        return int(self.max_expanded_mb * MIB)

    @property
    def max_manifest_bytes(self) -> int:
        """``max_manifest_mb`` in bytes."""
        return int(self.max_manifest_mb * MIB)

    def check_manifest_size(self, source: object, size: int) -> None:
        """Refuse a manifest of ``size`` bytes over ``max_manifest_mb``, before it is read.

        Raises:
            ArchiveLimitError: it is too large.
        """
        if size > self.max_manifest_bytes:
            raise over_limit(
                f"{source}: the manifest is {human_bytes(size)}, over the "
                f"{self.max_manifest_mb:g} MiB limit",
                "max_manifest_mb",
            )

    def expansion_cap(self, archive_bytes: int) -> tuple[int, str]:
        """The most an archive of ``archive_bytes`` may expand to, and the limit that sets it.

        Returns:
            The cap in bytes and the name of the limit (``max_expanded_mb`` or ``max_ratio``).
        """
        by_ratio = max(RATIO_EXEMPT_BYTES, int(self.max_ratio * archive_bytes))
        if by_ratio < self.max_expanded_bytes:
            return by_ratio, "max_ratio"
        return self.max_expanded_bytes, "max_expanded_mb"


DEFAULT_LIMITS = ArchiveLimits()


def limit_flag(name: str) -> str:
    """The command-line flag of the limit called ``name`` (``max_ratio`` -> ``--max-ratio``)."""
    return "--" + name.replace("_", "-")


def over_limit(message: str, name: str) -> ArchiveLimitError:
    """The error for a package over the limit ``name``; ``message`` says what was found.

    The message ends with the limit's flag and the hint says how to raise it.
    """
    flag = limit_flag(name)
    return ArchiveLimitError(
        f"{message} ({flag})",
        hint=f"if you trust this package, raise the limit with {flag} "
        f"(Python: limits=ArchiveLimits({name}=...))",
    )


def human_bytes(n: float) -> str:
    """``n`` bytes for people: ``512 B``, ``3.0 KiB``, ``1.0 TiB``."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"
