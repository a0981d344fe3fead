"""A verb as a list of named steps, each with its undo: run it, or plan it (``--dry-run``).

A target describes what ``create`` (or ``update``) does as :class:`Step` records and hands them
to a :class:`Rollout`::

    steps = [
        Step("build-image", f"build the image {ref}", build, undo=remove_image, kind="image"),
        Step("run-container", f"run {container}", run, undo=remove_container, kind="container"),
        Step("wait-ready", f"wait until {container} answers /ping", wait),
    ]
    results = Rollout("docker", "create", steps, progress=self.progress).run()

:meth:`Rollout.run` runs the steps in order, each getting the results of the steps before it
(by name), and reports each to the progress facade. When a step fails, the undos of the steps
that finished run in reverse order (``contextlib.ExitStack``'s idea), and the error is raised
again: translated through the target's :class:`~modelport.deployers.kit.errors.ErrorMap` when it
came from the SDK. An undo that fails itself is reported, not hidden: the error becomes
:class:`~modelport.errors.RollbackIncomplete`, one ``left behind: <resource>, remove with:
<command>`` line per resource.

:meth:`Rollout.plan` turns the *same* steps into the ``--dry-run`` output without running
anything, so what a dry run shows and what a real run does cannot drift apart. Building the steps
must therefore touch nothing: only their ``run`` does.

**Failpoints**, for tests: every step has one, named ``<target>.<verb>.<step>``. An armed
failpoint fails the rollout right after that step finished (so its own undo runs too). Arm them
in-process with :func:`failpoint`, or for a whole process (a CLI run, a background job) with
``MODELPORT_FAILPOINTS=name[,name...]``. The contract suite triggers every step's failpoint in
turn and checks that nothing is left behind.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from modelport.deployers.kit.errors import ErrorMap
from modelport.deployers.kit.progress import Progress
from modelport.errors import DeploymentError, ModelportError, RollbackIncomplete

FAILPOINTS_ENV = "MODELPORT_FAILPOINTS"


@dataclass(frozen=True)
class Step:
    """One named step of a verb.

    Attributes:
        name: short and stable (``build-image``): its name in plans, progress and failpoints.
        description: what it does, for people (a line of the plan and of the progress).
        run: does the step; gets the results of the steps before it, by name, and returns what
            it made (kept as its result, and handed to ``undo``).
        undo: removes what ``run`` made, given its result; None when there is nothing to undo
            (a wait, a check).
        kind: what the step makes or does, for the plan: ``image``, ``container``, ``process``,
            ``directory``, ``endpoint``, ``request``, ``wait``, ...
        details: the exact values the plan shows (names, ports, request bodies), JSON values.
        resource: names what ``run`` made, given its result, when an undo fails (default: the
            description).
        remove_with: the command a person runs to remove it by hand, given the result.
    """

    name: str
    description: str
    run: Callable[[Mapping[str, Any]], Any]
    undo: Callable[[Any], object] | None = None
    kind: str = "step"
    details: Mapping[str, Any] = field(default_factory=dict)
    resource: Callable[[Any], str] | None = None
    remove_with: Callable[[Any], str] | None = None


class FailpointTriggered(DeploymentError):
    """An armed failpoint failed a rollout on purpose (tests only)."""


_armed: set[str] = set()
_armed_lock = threading.Lock()


@contextlib.contextmanager
def failpoint(*names: str) -> Iterator[None]:
    """Arm failpoints (``<target>.<verb>.<step>``) in this process while the block runs."""
    with _armed_lock:
        added = set(names) - _armed
        _armed.update(added)
    try:
        yield
    finally:
        with _armed_lock:
            _armed.difference_update(added)  # only these: another caller's stay armed


def armed(name: str) -> bool:
    """Whether the failpoint ``name`` is armed, in-process or by ``MODELPORT_FAILPOINTS``."""
    with _armed_lock:
        if name in _armed:
            return True
    from_env = os.environ.get(FAILPOINTS_ENV, "")
    return name in {item.strip() for item in from_env.split(",")}


class Rollout:
    """Runs (or plans) the steps of one verb of one target.

    Args:
        target: the target's name (the first part of each failpoint's name).
        verb: ``create``, ``update``, ... (the second part).
        steps: the steps, in order; names must be unique.
        progress: told of each step as it starts, and of each undo.
        errors: translates SDK exceptions a step raises into modelport's errors.
    """

    def __init__(
        self,
        target: str,
        verb: str,
        steps: Sequence[Step],
        *,
        progress: Progress | None = None,
        errors: ErrorMap | None = None,
    ) -> None:
        names = [s.name for s in steps]
        if len(set(names)) != len(names):
            raise ValueError(f"step names must be unique, got {names}")
        self.target = target
        self.verb = verb
        self.steps = tuple(steps)
        self.progress = progress or Progress()
        self.errors = errors

    def failpoint_name(self, step: Step) -> str:
        """The name of a step's failpoint: ``<target>.<verb>.<step>``."""
        return f"{self.target}.{self.verb}.{step.name}"

    def plan(self) -> list[Any]:
        """The steps as :class:`~modelport.deployers.PlannedAction` records; runs nothing."""
        from modelport.deployers.base import PlannedAction

        return [
            PlannedAction(s.kind, s.description, dict(s.details), step=s.name) for s in self.steps
        ]

    def run(self) -> dict[str, Any]:
        """Run every step; on a failure, undo what was done and raise.

        Returns:
            Each step's result, by name.

        Raises:
            ModelportError: what the failing step raised (translated when it came from the SDK),
                or :class:`~modelport.errors.RollbackIncomplete` when an undo failed too.
            BaseException: anything else a step raised, after the undos ran.
        """
        results: dict[str, Any] = {}
        done: list[tuple[Step, Any]] = []
        current = "?"
        try:
            for step in self.steps:
                current = step.name
                self.progress.step(step.name, step.description, verb=self.verb)
                results[step.name] = step.run(results)
                done.append((step, results[step.name]))
                if armed(self.failpoint_name(step)):
                    raise FailpointTriggered(
                        f"failpoint {self.failpoint_name(step)} triggered after step "
                        f"{step.name!r} (a test asked for this failure)"
                    )
        except BaseException as exc:
            left = self._undo(done)
            error = self._translated(exc, current)
            if left:
                raise RollbackIncomplete(
                    f"{self.verb} failed at step {current!r}: {error or exc}",
                    left,
                    hint="remove what was left behind with the commands above, then retry",
                ) from exc
            if error is not None:
                raise error from exc
            raise
        finally:
            self.progress.end_step()
        return results

    def _translated(self, exc: BaseException, step: str) -> ModelportError | None:
        if self.errors is None:
            return None
        return self.errors.translate(exc, f"{self.verb} step {step!r}")

    def _undo(self, done: Sequence[tuple[Step, Any]]) -> list[str]:
        """Run the undos in reverse order; return a line per resource that could not be removed."""
        left: list[str] = []
        for step, result in reversed(done):
            if step.undo is None:
                continue
            # Whoever watches must not stop the undos (a closed terminal, say).
            with contextlib.suppress(Exception):
                self.progress.info(f"undoing {step.name}")
            try:
                step.undo(result)
            except Exception as exc:
                line = step.resource(result) if step.resource else step.description
                if step.remove_with is not None:
                    line += f", remove with: {step.remove_with(result)}"
                left.append(f"{line} (undo failed: {exc})")
                with contextlib.suppress(Exception):
                    self.progress.warn(f"could not undo step {step.name!r}: {exc}")
        return left


def undo_after_failure(exc: BaseException, undo: Callable[[], object], left: str) -> None:
    """Undo what a step made before it failed with ``exc``; say so when that fails too.

    A rollout undoes the steps that finished, not the one that failed: a step whose request the
    cloud accepted before it failed (a deployment that never became ready) calls this itself.

    Raises:
        RollbackIncomplete: the undo failed (``left`` says what is left and how to remove it).
    """
    try:
        undo()
    except Exception as failed:
        raise RollbackIncomplete(
            f"{exc}; undoing it failed too ({failed})",
            [left],
            hint="remove what was left behind with the command above, then retry",
        ) from exc
