"""Rollouts: steps run in order, a failure undoes what was done (in reverse), an undo that fails is
reported with how to remove what it left, SDK errors are translated, failpoints fire after their
step, and the plan is the same steps, run by nobody."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections.abc import Mapping
from typing import Any

import pytest

from modelport.deployers.base import PlannedAction
from modelport.deployers.kit.errors import ErrorMap, Kind
from modelport.deployers.kit.progress import Progress, ProgressEvent
from modelport.deployers.kit.rollout import (
    FAILPOINTS_ENV,
    FailpointTriggered,
    Rollout,
    Step,
    armed,
    failpoint,
)
from modelport.errors import (
    DeploymentError,
    InputError,
    RollbackIncomplete,
    TargetUnavailableError,
)


class World:
    """What the steps of these tests make: a list of resources, and a log of what happened."""

    def __init__(self) -> None:
        self.resources: list[str] = []
        self.log: list[str] = []

    def make(self, name: str, *, fails: BaseException | None = None) -> Step:
        def run(done: Mapping[str, Any]) -> str:
            self.log.append(f"run {name} after {sorted(done)}")
            if fails is not None:
                raise fails
            self.resources.append(name)
            return f"{name}-id"

        def undo(result: str) -> None:
            self.log.append(f"undo {name} ({result})")
            self.resources.remove(name)

        return Step(name, f"make {name}", run, undo=undo, kind="thing", details={"name": name})


def test_steps_run_in_order_and_see_the_results_before_them() -> None:
    world = World()
    events: list[ProgressEvent] = []
    rollout = Rollout(
        "t", "create", [world.make("a"), world.make("b")], progress=Progress(events.append)
    )
    assert rollout.run() == {"a": "a-id", "b": "b-id"}
    assert world.resources == ["a", "b"]
    assert world.log == ["run a after []", "run b after ['a']"]
    assert [(e.kind, e.step, e.verb, e.message) for e in events] == [
        ("step", "a", "create", "make a"),
        ("step", "b", "create", "make b"),
    ]


def test_a_failing_step_undoes_the_finished_ones_in_reverse_and_raises_its_error() -> None:
    world = World()
    error = InputError("the third step refused its input")
    steps = [world.make("a"), world.make("b"), world.make("c", fails=error), world.make("d")]
    with pytest.raises(InputError) as raised:
        Rollout("t", "create", steps).run()
    assert raised.value is error  # the step's own error, unchanged: type, message, exit code
    assert world.resources == []
    assert world.log[-2:] == ["undo b (b-id)", "undo a (a-id)"]
    assert "run d" not in " ".join(world.log)


def test_an_interrupt_undoes_too() -> None:
    world = World()
    with pytest.raises(KeyboardInterrupt):
        Rollout("t", "create", [world.make("a"), world.make("b", fails=KeyboardInterrupt())]).run()
    assert world.resources == []


def test_a_failing_undo_reports_what_was_left_and_how_to_remove_it() -> None:
    world = World()

    def stuck(result: str) -> None:
        raise OSError("device busy")

    stuck_step = Step(
        "volume",
        "make a volume",
        lambda done: "vol-1",
        undo=stuck,
        resource=lambda v: f"the volume {v}",
        remove_with=lambda v: f"acme volume rm {v}",
    )
    steps = [world.make("a"), stuck_step, world.make("c", fails=DeploymentError("c broke"))]
    events: list[ProgressEvent] = []
    with pytest.raises(RollbackIncomplete) as raised:
        Rollout("t", "update", steps, progress=Progress(events.append)).run()
    assert [e.message for e in events if e.kind == "warn"] == [
        "could not undo step 'volume': device busy"
    ]
    error = raised.value
    assert error.left_behind == (
        "the volume vol-1, remove with: acme volume rm vol-1 (undo failed: device busy)",
    )
    assert str(error).splitlines() == [
        "update failed at step 'c': c broke",
        "  left behind: the volume vol-1, remove with: acme volume rm vol-1 (undo failed: "
        "device busy)",
    ]
    assert error.hint and "left behind" in error.hint
    assert isinstance(error.__cause__, DeploymentError)
    assert world.resources == []  # the other undos still ran


def test_sdk_errors_are_translated_with_the_targets_map() -> None:
    errors = ErrorMap(
        "acme", lambda exc: Kind.UNAVAILABLE if isinstance(exc, ConnectionError) else None
    )
    world = World()
    cause = ConnectionError("no route to acme.example")
    with pytest.raises(TargetUnavailableError) as raised:
        Rollout("acme", "create", [world.make("a", fails=cause)], errors=errors).run()
    assert str(raised.value) == (
        "create step 'a' failed on target 'acme' (unavailable): no route to acme.example"
    )
    assert raised.value.__cause__ is cause
    # An exception the map does not know passes through as it is.
    with pytest.raises(ZeroDivisionError):
        Rollout("acme", "create", [world.make("b", fails=ZeroDivisionError())], errors=errors).run()


def test_a_failpoint_fires_after_its_step_and_undoes_it() -> None:
    world = World()
    steps = [world.make("a"), world.make("b"), world.make("c")]
    with failpoint("t.create.b"), pytest.raises(FailpointTriggered, match=r"t\.create\.b"):
        Rollout("t", "create", steps).run()
    assert world.log == [
        "run a after []",
        "run b after ['a']",
        "undo b (b-id)",
        "undo a (a-id)",
    ]
    assert not armed("t.create.b")  # disarmed when the block ends
    assert Rollout("t", "create", steps).run()  # and the same steps run fine again
    assert world.resources == ["a", "b", "c"]


def test_failpoints_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(FAILPOINTS_ENV, "other.create.x, t.update.a")
    assert armed("t.update.a") and armed("other.create.x")
    assert not armed("t.create.a")
    world = World()
    with pytest.raises(FailpointTriggered):
        Rollout("t", "update", [world.make("a")]).run()
    assert world.resources == []


def test_failpoints_reach_a_child_process(tmp_path: Any) -> None:
    script = textwrap.dedent(
        """
        from modelport.deployers.kit.rollout import Rollout, Step
        Rollout("t", "create", [Step("a", "a", lambda done: None)]).run()
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        env={"PATH": "/usr/bin:/bin", FAILPOINTS_ENV: "t.create.a"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode != 0
    assert "failpoint t.create.a triggered" in result.stderr


def test_the_plan_is_the_steps_and_runs_nothing() -> None:
    world = World()
    rollout = Rollout("t", "create", [world.make("a"), world.make("b")])
    assert rollout.plan() == [
        PlannedAction("thing", "make a", {"name": "a"}, step="a"),
        PlannedAction("thing", "make b", {"name": "b"}, step="b"),
    ]
    assert world.log == []
    assert rollout.plan()[0].to_dict() == {
        "step": "a",
        "kind": "thing",
        "description": "make a",
        "details": {"name": "a"},
    }


def test_step_names_are_unique() -> None:
    world = World()
    with pytest.raises(ValueError, match="unique"):
        Rollout("t", "create", [world.make("a"), world.make("a")])


def test_a_watcher_that_breaks_does_not_stop_the_undos() -> None:
    world = World()

    def sink(event: ProgressEvent) -> None:
        if event.message.startswith("undoing"):
            raise OSError("the terminal went away")

    steps = [world.make("a"), world.make("b", fails=DeploymentError("b broke"))]
    with pytest.raises(DeploymentError, match="b broke"):
        Rollout("t", "create", steps, progress=Progress(sink)).run()
    assert world.resources == []


def test_failpoints_armed_by_two_callers_stay_armed_until_each_is_done() -> None:
    with failpoint("t.create.a"):
        with failpoint("t.create.a", "t.create.b"):
            assert armed("t.create.a") and armed("t.create.b")
        assert armed("t.create.a") and not armed("t.create.b")
    assert not armed("t.create.a")
