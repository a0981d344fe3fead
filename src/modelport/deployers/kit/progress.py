"""What a target tells whoever watches it work: steps, waits with elapsed time, warnings.

A target never prints. It is handed a :class:`Progress` (``self.progress`` on every
:class:`~modelport.deployers.Deployer`) and reports to it; the CLI renders the events on a
terminal and stays quiet otherwise (warnings excepted), and a Python caller may collect them::

    events = []
    target = connect("docker", progress=Progress(events.append))

Events are :class:`ProgressEvent` records. :class:`~modelport.deployers.kit.rollout.Rollout`
reports each step it starts, :func:`~modelport.deployers.kit.waiting.wait_until` reports how long
it has waited, and a target may add its own notes (``self.progress("reusing the runtime image")``).
"""

from __future__ import annotations

import contextlib
import functools
import logging
import sys
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

from modelport.errors import ModelportWarning

EventKind = Literal["step", "info", "wait", "warn"]


@dataclass(frozen=True)
class ProgressEvent:
    """One thing a target reported.

    Attributes:
        kind: ``step`` (a rollout step started), ``info`` (a note), ``wait`` (still waiting),
            or ``warn`` (something the user should know even when nothing else is shown).
        message: one line for people.
        step: the step's name (``step`` events, and notes made while a step runs).
        verb: the verb the step belongs to (``create``, ``update``, ...).
        elapsed_s: seconds waited so far (``wait`` events).
        status: the last status seen while waiting (``wait`` events), when there is one.
    """

    kind: EventKind
    message: str
    step: str | None = None
    verb: str | None = None
    elapsed_s: float | None = None
    status: str | None = None

    def text(self) -> str:
        """The event as one line of text."""
        if self.kind == "wait":
            seen = f", last status: {self.status}" if self.status else ""
            return f"{self.message} ({self.elapsed_s or 0:.0f} s{seen})"
        if self.kind == "warn":
            return f"warning: {self.message}"
        return self.message


Sink = Callable[[ProgressEvent], None]


class Progress:
    """The facade a target reports to. Calling it (``progress("...")``) reports a note.

    Args:
        sink: receives every event; None drops them all, except warnings, which go to Python's
            :mod:`warnings` (a warning must not be lost because nobody watches).
    """

    def __init__(self, sink: Sink | None = None) -> None:
        self._sink = sink
        self._step: str | None = None
        self._verb: str | None = None

    @classmethod
    def from_lines(cls, show: Callable[[str], None]) -> Progress:
        """A progress that hands each event, as one line of text, to ``show``."""
        return cls(lambda event: show(event.text()))

    def _emit(self, event: ProgressEvent) -> None:
        if self._sink is not None:
            self._sink(event)
        elif event.kind == "warn":
            warnings.warn(event.message, ModelportWarning, stacklevel=3)

    def step(self, name: str, description: str, *, verb: str | None = None) -> None:
        """A named step starts (what :class:`~modelport.deployers.kit.rollout.Rollout` calls)."""
        self._step, self._verb = name, verb
        self._emit(ProgressEvent("step", description, step=name, verb=verb))

    def end_step(self) -> None:
        """No step runs any more."""
        self._step = self._verb = None

    def info(self, message: str) -> None:
        """A note on what is happening."""
        self._emit(ProgressEvent("info", message, step=self._step, verb=self._verb))

    __call__ = info

    def waiting(self, what: str, elapsed_s: float, status: str | None = None) -> None:
        """Still waiting for ``what``, ``elapsed_s`` seconds so far."""
        self._emit(
            ProgressEvent(
                "wait",
                f"waiting for {what}",
                step=self._step,
                verb=self._verb,
                elapsed_s=elapsed_s,
                status=status,
            )
        )

    def warn(self, message: str) -> None:
        """Something the user should know, shown even when progress is not."""
        self._emit(ProgressEvent("warn", message, step=self._step, verb=self._verb))


def as_progress(progress: Progress | Callable[[str], None] | None) -> Progress:
    """A :class:`Progress` from what a caller gave: one, a callback taking lines, or nothing."""
    if isinstance(progress, Progress):
        return progress
    if progress is None:
        return Progress()
    return Progress.from_lines(progress)


F = TypeVar("F", bound=Callable[..., Any])


def silence_loggers(prefix: str) -> None:
    """Raise the loggers under ``prefix`` loaded so far to WARNING.

    Cloud SDKs give their loggers INFO (and a handler printing to stdout) as their modules
    load, so this runs again after each import of the SDK.
    """
    for name, logger in list(logging.root.manager.loggerDict.items()):
        if name.startswith(prefix) and isinstance(logger, logging.Logger):
            logger.setLevel(max(logger.level, logging.WARNING))


def quiet(prefix: str) -> Callable[[F], F]:
    """A decorator keeping an SDK's own output off stdout while the function runs.

    What the SDK prints (poll dots, "Creating Endpoint" lines) would corrupt ``--json``: it goes
    to stderr instead, and the SDK's INFO lines under ``prefix`` are silenced (modelport
    reports its steps itself).
    """

    def decorate(function: F) -> F:
        @functools.wraps(function)
        def run(*args: Any, **kwargs: Any) -> Any:
            silence_loggers(prefix)
            with contextlib.redirect_stdout(sys.stderr):
                return function(*args, **kwargs)

        return run  # type: ignore[return-value]

    return decorate
