"""wait_until: returns what it saw once done, stops at a failure with the log tail, times out with
the last status and a hint, reports elapsed time to the progress, and backs off."""

from __future__ import annotations

import itertools
import time

import pytest

from modelport.deployers.kit.progress import Progress, ProgressEvent
from modelport.deployers.kit.waiting import Seen, wait_until
from modelport.errors import DeploymentError, WaitTimeout


def test_returns_when_done() -> None:
    polls = iter([Seen(status="creating"), Seen(status="creating"), Seen(done=True, status="up")])
    assert wait_until(lambda: next(polls), what="x", timeout_s=10) == Seen(done=True, status="up")


def test_a_boolean_poll_is_enough() -> None:
    answers = iter([False, False, True])
    assert wait_until(lambda: next(answers), what="x", timeout_s=10).done


def test_a_failure_stops_the_wait_at_once_with_the_log_tail() -> None:
    log = [f"line {i}" for i in range(40)] + ["", "Traceback: boom"]
    started = time.monotonic()
    with pytest.raises(DeploymentError) as raised:
        wait_until(
            lambda: Seen(failed="the server exited while starting"),
            what="the server on port 1234",
            timeout_s=60,
            log=lambda: log,
        )
    assert time.monotonic() - started < 10  # at once, not after the 60 s deadline
    lines = str(raised.value).splitlines()
    assert lines[0] == "the server on port 1234: the server exited while starting; its log ends:"
    assert lines[1:] == [f"  line {i}" for i in range(26, 40)] + ["  Traceback: boom"]
    assert not isinstance(raised.value, WaitTimeout)


def test_a_timeout_says_the_last_status_and_how_to_wait_longer() -> None:
    with pytest.raises(WaitTimeout) as raised:
        wait_until(
            lambda: Seen(status="Creating"),
            what="endpoint churn",
            timeout_s=0.2,
            log=lambda: ["pulling the image"],
            timeout_hint="allow more time with -C startup_timeout=SECONDS",
        )
    assert str(raised.value).splitlines() == [
        "endpoint churn: not done within 0.2 s (last status: Creating); its log ends:",
        "  pulling the image",
    ]
    assert raised.value.hint == "allow more time with -C startup_timeout=SECONDS"


def test_the_progress_hears_how_long_it_has_waited() -> None:
    events: list[ProgressEvent] = []
    finish = time.monotonic() + 0.5
    wait_until(
        lambda: Seen(done=time.monotonic() > finish, status="starting"),
        what="the container",
        timeout_s=10,
        progress=Progress(events.append),
        heartbeat_s=0.1,
        max_interval_s=0.02,
    )
    waits = [e for e in events if e.kind == "wait"]
    assert len(waits) >= 3
    assert all(e.message == "waiting for the container" and e.status == "starting" for e in waits)
    elapsed = [e.elapsed_s or 0 for e in waits]
    assert elapsed == sorted(elapsed) and elapsed[0] >= 0.1
    assert waits[0].text().startswith("waiting for the container (0 s, last status: starting")


def test_polls_back_off_up_to_the_longest_pause() -> None:
    times: list[float] = []

    def poll() -> bool:
        times.append(time.monotonic())
        return len(times) == 8

    wait_until(poll, what="x", timeout_s=30, interval_s=0.01, backoff=2.0, max_interval_s=0.05)
    pauses = [b - a for a, b in itertools.pairwise(times)]
    assert sum(pauses[3:6]) > sum(pauses[0:3])  # longer each time ...
    assert max(pauses) < 0.05 + 0.5  # ... but never much past the longest pause


def test_an_error_in_the_poll_ends_the_wait() -> None:
    def poll() -> bool:
        raise ConnectionResetError("the API went away")

    with pytest.raises(ConnectionResetError):
        wait_until(poll, what="x", timeout_s=30)
