"""Where modelport keeps its state on this machine, written so that nobody sees half of it.

``$MODELPORT_HOME`` (default ``~/.modelport``) holds the targets' deployments and the package
cache.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

HOME_ENV = "MODELPORT_HOME"


def default_home() -> Path:
    """``$MODELPORT_HOME``, else ``~/.modelport``: the root of every target's state here."""
    return Path(os.environ.get(HOME_ENV) or Path.home() / ".modelport").expanduser()


def write_json_atomic(path: Path, data: Any) -> None:
    """Write JSON to ``path`` so that readers see the old or the new content, never a mix."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(data, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def exclusive_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on the file ``path`` (created) for as long as the block runs.

    One process at a time, across processes; a process that dies lets go of it.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+b") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)
