"""One way to wait: :func:`wait_until` a condition holds, with a deadline, backoff and a heartbeat.

Every target waits for something (a server to answer ``/ping``, a container to start, an endpoint
to leave ``Creating``). :func:`wait_until` polls a function that reports what it saw
(:class:`Seen`), sleeps a little longer each time (up to ``max_interval_s``, never past the
deadline), tells the :class:`~modelport.deployers.kit.progress.Progress` how long it has waited
every ``heartbeat_s``, and stops in one of three ways:

- the condition holds: it returns what was seen last;
- the poll says the thing failed and will not recover (a container exited, an endpoint is
  ``Failed``): :class:`~modelport.errors.DeploymentError` with the reason and the log tail;
- the deadline passes: :class:`~modelport.errors.WaitTimeout` with the last status, the log tail
  and a hint (which option gives it more time).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from modelport.deployers.kit.progress import Progress
from modelport.errors import DeploymentError, WaitTimeout

#: How many log lines a failure or timeout message shows.
LOG_TAIL_LINES = 15


@dataclass(frozen=True)
class Seen:
    """What one poll saw.

    Attributes:
        done: the condition holds.
        status: the state the thing is in, for people (``starting``, ``InService``).
        failed: set when it failed and waiting longer cannot help: why.
    """

    done: bool = False
    status: str | None = None
    failed: str | None = None


def _with_log(message: str, log: Sequence[str]) -> str:
    lines = [line for line in log if line.strip()][-LOG_TAIL_LINES:]
    if not lines:
        return message
    return message + "; its log ends:\n" + "\n".join(f"  {line}" for line in lines)


def wait_until(
    poll: Callable[[], Seen | bool],
    *,
    what: str,
    timeout_s: float,
    progress: Progress | None = None,
    interval_s: float = 0.02,
    max_interval_s: float = 1.0,
    backoff: float = 1.5,
    heartbeat_s: float = 5.0,
    log: Callable[[], Sequence[str]] | None = None,
    timeout_hint: str | None = None,
) -> Seen:
    """Poll until ``poll`` reports done, failed, or ``timeout_s`` seconds have passed.

    Args:
        poll: looks once; returns a :class:`Seen` (or True when done, False when not yet). An
            exception it raises ends the wait and propagates.
        what: what is awaited, for messages: ``"the server on port 8123 to answer /ping"``.
        timeout_s: the deadline, in seconds from now.
        progress: told how long the wait has taken, every ``heartbeat_s`` seconds.
        interval_s: the first pause between polls.
        max_interval_s: the longest pause between polls.
        backoff: each pause is this much longer than the one before.
        heartbeat_s: how often ``progress`` hears about the wait.
        log: gives the awaited thing's last log lines, for the error messages.
        timeout_hint: the hint of the timeout error (e.g. which option allows more time).

    Returns:
        What the last poll saw (``done`` is True).

    Raises:
        DeploymentError: the poll reported a failure.
        WaitTimeout: the deadline passed first.
    """
    start = time.monotonic()
    deadline = start + timeout_s
    next_beat = start + heartbeat_s
    pause = interval_s
    while True:
        result = poll()
        seen = result if isinstance(result, Seen) else Seen(done=bool(result))
        if seen.done:
            return seen
        if seen.failed is not None:
            raise DeploymentError(_with_log(f"{what}: {seen.failed}", log() if log else ()))
        now = time.monotonic()
        if now >= deadline:
            status = f" (last status: {seen.status})" if seen.status else ""
            message = f"{what}: not done within {timeout_s:g} s{status}"
            raise WaitTimeout(_with_log(message, log() if log else ()), hint=timeout_hint)
        if progress is not None and now >= next_beat:
            progress.waiting(what, now - start, seen.status)
            next_beat = now + heartbeat_s
        time.sleep(min(pause, max(0.0, deadline - now)))
        pause = min(pause * backoff, max_interval_s)
