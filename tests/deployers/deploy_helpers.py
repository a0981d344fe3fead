"""Helpers for tests that start processes: find them by command line, reap them, wait them out."""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path


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
