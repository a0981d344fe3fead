"""Helpers for tests that start processes: find them by command line, reap them, wait them out;
wait for an event with a deadline (:func:`wait_for`); what a fresh interpreter imports; and code
run where every write past a few bytes fails (:func:`run_with_file_size_limit`)."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest


def wait_for(
    condition: Callable[[], bool],
    what: str,
    *,
    timeout: float = 30.0,
    log: Callable[[], str] | None = None,
) -> None:
    """Wait until ``condition()`` holds: the one way tests wait for an event, never a bare sleep.

    Polls (every 20 ms, backing off to 100 ms) with the deployer kit's ``wait_until``; after
    ``timeout`` seconds the test fails, saying ``what`` it waited for and the end of ``log()``.
    """
    # Imported here: importing this module must not import the deployers (import-graph tests).
    from modelport.deployers.kit.waiting import wait_until
    from modelport.errors import WaitTimeout

    try:
        wait_until(
            condition,
            what=what,
            timeout_s=timeout,
            interval_s=0.02,
            max_interval_s=0.1,
            log=(lambda: log().splitlines()) if log is not None else None,
        )
    except WaitTimeout as exc:
        raise AssertionError(f"timed out waiting for {exc}") from None


def processes_mentioning(text: str) -> list[int]:
    """Pids of live (non-zombie) processes whose command line contains ``text``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        if text in cmdline and stat[stat.rfind(")") + 2 :].split()[0] not in ("Z", "X"):
            found.append(int(entry.name))
    return found


def reap_children() -> None:
    """Collect exited children of the test process (servers spawned here are its children)."""
    with contextlib.suppress(ChildProcessError):
        while os.waitpid(-1, os.WNOHANG)[0]:
            pass


def wait_no_processes(text: str, timeout: float = 10.0) -> list[int]:
    """Wait until no process mentions ``text``; return the ones still there after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        reap_children()
        left = processes_mentioning(text)
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.05)


@dataclass(frozen=True)
class ImportCheck:
    """What a fresh interpreter imported while running some code: :func:`imports_after`."""

    imported: set[str]
    stdout: str


def imports_after(code: str, modules: Iterable[str]) -> ImportCheck:
    """Run ``code`` in a fresh interpreter; which of ``modules`` it imported, and its output.

    The code may call the CLI's ``main`` (its exit status is ignored: help texts exit 0).
    """
    wanted = sorted(modules)
    script = (
        f"import sys\n{code}\n"
        f"print('IMPORTED=' + ','.join(m for m in {wanted!r} if m in sys.modules))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    last = result.stdout.rstrip("\n").rsplit("\n", 1)[-1]
    assert last.startswith("IMPORTED="), result.stdout[-2000:]
    return ImportCheck({m for m in last[len("IMPORTED=") :].split(",") if m}, result.stdout)


def run_with_file_size_limit(
    code: str, *, env: dict[str, str] | None = None, check: bool = False
) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a fresh interpreter where every write past 64 bytes fails.

    RLIMIT_FSIZE makes such writes fail with EFBIG, as a full disk fails with ENOSPC (SIGXFSZ is
    ignored, so the write raises instead of killing the process).
    """
    script = (
        "import resource, signal\n"
        "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
        "resource.setrlimit(resource.RLIMIT_FSIZE, (64, 64))\n" + textwrap.dedent(code)
    )
    return subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=check,
    )


#: How long a ``serve`` that must refuse may take before the test calls it serving instead.
REFUSAL_DEADLINE_S = 60.0


def serve_refusal(args: list[str]) -> int:
    """``main(args)`` for a ``serve`` that must refuse: in a thread, so that one that serves
    instead fails the test after ``REFUSAL_DEADLINE_S`` rather than hanging it."""
    outcome: list[tuple[bool, Any]] = []

    def run() -> None:
        try:
            from modelport.cli.main import main  # here: see the module's imports note

            outcome.append((True, main(args)))
        except BaseException as exc:  # re-raised in the test's thread
            outcome.append((False, exc))

    thread = threading.Thread(target=run, name="modelport-serve", daemon=True)
    thread.start()
    thread.join(REFUSAL_DEADLINE_S)
    if thread.is_alive():
        pytest.fail(
            f"modelport {' '.join(args)} still ran after {REFUSAL_DEADLINE_S:g} s: "
            "it served instead of refusing"
        )
    ((returned, value),) = outcome
    if not returned:
        raise value
    return int(value)


def group_alive(pid: int) -> bool:
    """Whether any process of the group ``pid`` leads is still there."""
    try:
        os.killpg(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # pragma: no cover - someone else's group reuses the id
        return True
    return True
