"""Managed background processes on this machine (POSIX): spawn, check, stop.

Used by the local target (its servers and proxies) and by background jobs
(:mod:`modelport.deployers.kit.background`).

A process is identified by its pid *and* its start time (``/proc/<pid>/stat``), so a state file
left behind by a dead process never mistakes a newer process that reused the pid for it, and a
zombie counts as dead.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from modelport.deployers.kit.waiting import wait_until
from modelport.errors import WaitTimeout

#: The descriptor a process started with ``pass_fd`` finds it as (the first after stderr).
PASSED_FD = 3


def spawn_detached(
    argv: Sequence[str], *, log: Path, env: Mapping[str, str], pass_fd: int | None = None
) -> int:
    """Start ``argv`` in its own session, with stdout and stderr appended to ``log``.

    ``posix_spawn`` leaves no ``Popen`` object behind to warn at garbage collection, and is safe
    from a multi-threaded parent: no other descriptor leaks into the new process. The new process
    leads its own process group, so it and its children (server workers) can be stopped together.

    Args:
        argv: the program and its arguments.
        log: the file stdout and stderr are appended to.
        env: the new process's whole environment.
        pass_fd: a descriptor the new process inherits, as :data:`PASSED_FD` (a listening
            socket bound here, so no other process can take its port in between).

    Returns:
        The new process's pid.
    """
    actions: list[tuple[Any, ...]] = [
        (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
        (os.POSIX_SPAWN_OPEN, 1, str(log), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644),
        (os.POSIX_SPAWN_DUP2, 1, 2),
    ]
    # A dup2 onto itself leaves the descriptor close-on-exec where the libc does not clear the
    # flag (POSIX left it open until 2024; glibc clears it): pass a copy instead.
    copy = os.dup(pass_fd) if pass_fd == PASSED_FD else None
    if pass_fd is not None:
        actions.append((os.POSIX_SPAWN_DUP2, pass_fd if copy is None else copy, PASSED_FD))
    try:
        try:
            return os.posix_spawn(argv[0], list(argv), dict(env), file_actions=actions, setsid=True)
        except NotImplementedError:  # pragma: no cover - a libc without POSIX_SPAWN_SETSID
            return os.posix_spawn(argv[0], list(argv), dict(env), file_actions=actions, setpgroup=0)
    finally:
        if copy is not None:
            os.close(copy)


def _stat_fields(pid: int) -> list[str] | None:
    """Fields of ``/proc/<pid>/stat`` from the state on (field 3), or None where unavailable."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) is in parentheses and may hold spaces and parentheses.
    return text[text.rfind(")") + 2 :].split()


def start_time(pid: int) -> int | None:
    """The process's start time in clock ticks since boot (Linux), or None where unknown."""
    fields = _stat_fields(pid)
    return int(fields[19]) if fields and len(fields) > 19 else None


def _reap(pid: int) -> bool:
    """Reap ``pid`` if it is our exited child. Returns True when it has exited."""
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return False
    return done == pid


def is_running(pid: int, started: int | None = None) -> bool:
    """True while the process ``pid`` (started at ``started``, when known) is alive.

    A zombie, a reaped child, or a different process that reused the pid count as not running.
    """
    if pid <= 0 or _reap(pid):
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # alive, but someone else's: the start time below decides
    fields = _stat_fields(pid)
    if fields is None:
        return not Path("/proc/self/stat").exists()  # no /proc at all (macOS): trust kill(0)
    if fields[0] in ("Z", "X"):
        return False
    return started is None or start_time(pid) == started


def wait_exit(pid: int, started: int | None, timeout: float) -> bool:
    """Wait up to ``timeout`` seconds for the process to exit. Returns True once it has."""
    try:
        wait_until(
            lambda: not is_running(pid, started),
            what=f"process {pid} to exit",
            timeout_s=timeout,
            max_interval_s=0.05,
        )
    except WaitTimeout:
        return False
    return True


def stop_all(processes: Sequence[tuple[int, int | None]], *, timeout: float) -> None:
    """Stop processes we spawned, together, and the process groups they lead.

    SIGTERM to each first (a server drains its in-flight requests), all at once so their drains
    overlap; SIGKILL to a whole group after ``timeout`` seconds; then a final SIGKILL to any
    straggler left in each group. A process already gone, or whose pid now belongs to another
    process (start time differs), is left alone.
    """
    running = [(pid, started) for pid, started in processes if is_running(pid, started)]
    for pid, _ in running:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    for pid, started in running:
        if not wait_exit(pid, started, max(0.0, deadline - time.monotonic())):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)
            wait_exit(pid, started, 5.0)
        # The leader was ours a moment ago, so its group still is: no worker is left orphaned.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)
