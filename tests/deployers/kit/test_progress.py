"""The progress facade: events to a sink, lines to a callback, warnings never lost."""

from __future__ import annotations

import pytest

from modelport.deployers.kit.progress import Progress, ProgressEvent, as_progress
from modelport.errors import ModelportWarning


def test_events_carry_the_step_they_belong_to() -> None:
    events: list[ProgressEvent] = []
    progress = Progress(events.append)
    progress.step("build-image", "build the image", verb="create")
    progress("reusing the runtime image")
    progress.waiting("the container", 12.4, "starting")
    progress.end_step()
    progress.warn("the registry keeps the pushed image")
    assert events == [
        ProgressEvent("step", "build the image", step="build-image", verb="create"),
        ProgressEvent("info", "reusing the runtime image", step="build-image", verb="create"),
        ProgressEvent(
            "wait",
            "waiting for the container",
            step="build-image",
            verb="create",
            elapsed_s=12.4,
            status="starting",
        ),
        ProgressEvent("warn", "the registry keeps the pushed image"),
    ]
    assert [e.text() for e in events] == [
        "build the image",
        "reusing the runtime image",
        "waiting for the container (12 s, last status: starting)",
        "warning: the registry keeps the pushed image",
    ]


def test_a_callback_taking_lines_still_works() -> None:
    lines: list[str] = []
    progress = as_progress(lines.append)
    progress("copying")
    progress.warn("careful")
    assert lines == ["copying", "warning: careful"]
    assert as_progress(progress) is progress


def test_nobody_listening_drops_notes_but_not_warnings() -> None:
    progress = as_progress(None)
    progress("nobody hears this")
    with pytest.warns(ModelportWarning, match="left behind: the old container"):
        progress.warn("left behind: the old container")
