"""The packages a process has loaded for batch scoring: verified and loaded once per process.

Spark runs a UDF's tasks one after another in reused Python workers, unpickling the function for
each task. A cache defined with the function (in ``__main__``, or a closure) would be unpickled
afresh with every task and load the model every time; this module is imported, not pickled, so
its cache lives as long as the worker. Keys are package digests computed on the driver: a
package is verified against its digest when it is loaded, so a file that changed on the way is
refused, and a new package never finds an old one's model.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Callable

from modelport.model_format.package import Package, load

_lock = threading.Lock()
_loaded: dict[str, Package] = {}


def package(digest: str, locate: Callable[[], str], *, allow_code: bool = False) -> Package:
    """The package with this digest, loaded the first time this process asks for it.

    It is loaded with one ONNX Runtime thread: Spark already runs one task per core, and the
    local engine runs one scoring thread per core.

    Args:
        digest: the package digest (``sha256:...``) the driver computed.
        locate: gives the package's path in this process (called on the first load only).
        allow_code: allow a package that runs code it carries.

    Raises:
        PackageError: the package is missing, damaged or not the one with ``digest``.
        CodeExecutionRefused: it runs code and that was not allowed.
    """
    with _lock:
        found = _loaded.get(digest)
        if found is None:
            started = time.perf_counter()
            found = load(locate(), threads=1, expected_digest=digest, allow_code=allow_code)
            _loaded[digest] = found
            # One line per load in the worker's stderr (an executor's log): how often, and how
            # long, packages were verified and loaded.
            sys.stderr.write(
                f"modelport: verified and loaded {found.name} {found.version} "
                f"({digest[:19]}) in process {os.getpid()} in "
                f"{time.perf_counter() - started:.2f} s\n"
            )
            sys.stderr.flush()
        return found


def loaded() -> tuple[str, ...]:
    """The digests of the packages this process has loaded."""
    with _lock:
        return tuple(_loaded)
