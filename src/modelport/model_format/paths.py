"""Paths inside a package, and private temporary directories.

A leaf module: it imports nothing else of ``model_format``, so the manifest, the archive, the
flavors and the packer may all use it.
"""

from __future__ import annotations

import contextlib
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from modelport.errors import EnvironmentProblem


def is_safe_relative_path(path: str) -> bool:
    """True for a relative POSIX path with no ``..``, no empty or ``.`` parts, no backslash."""
    if not path or path.startswith("/") or "\\" in path or "\x00" in path:
        return False
    if re.match(r"^[A-Za-z]:", path):
        return False
    return all(part not in ("", ".", "..") for part in path.split("/"))


def make_temp_dir(prefix: str, parent: Path | None = None) -> Path:
    """Create a private directory named ``prefix`` + random in ``parent`` or the temp directory.

    Raises:
        EnvironmentProblem: no writable temporary directory (or ``parent``), or no room there.
    """
    try:
        return Path(tempfile.mkdtemp(prefix=prefix, dir=parent))
    except OSError as exc:
        if parent is not None:
            raise EnvironmentProblem(
                f"cannot create a directory in {parent} ({exc.strerror or exc})",
                hint="check that the directory exists, is writable and has free space",
            ) from None
        raise EnvironmentProblem(
            f"no writable temporary directory ({exc.strerror or exc})",
            hint="set TMPDIR to a writable directory with room for the package",
        ) from None


@contextlib.contextmanager
def temp_dir(prefix: str) -> Iterator[Path]:
    """A :func:`make_temp_dir` directory, removed with everything in it on leaving."""
    path = make_temp_dir(prefix)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)
