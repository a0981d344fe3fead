"""The contract suite itself: a correct in-memory target passes it, and each target that breaks
one rule fails exactly the checks for that rule. The suite runs in a pytest subprocess on a
generated test module, the way a plugin author runs it."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path
from xml.etree import ElementTree

import numpy as np
import pytest

import modelport
from modelport.plugins.testing import DeployerContract, make_test_package, onnx_scale_model

#: Every check of the contract suite.
CHECKS = {name for name in dir(DeployerContract) if name.startswith("test_")}

TARGETS = '''
import dataclasses
from datetime import timedelta

import pytest

from modelport import load
from modelport.deployers import Deployer, Deployment, DeploymentStatus, utcnow
from modelport.deployers.kit.rollout import Step
from modelport.errors import DeploymentExists, DeploymentNotFound
from modelport.model_format.payload import format_predictions, parse_payload
from modelport.plugins.testing import DeployerContract


class Memory(Deployer):
    """A correct target whose deployments live in a dict shared by the instances of a test."""

    name = "memory"

    def __init__(self, store, config=None):
        super().__init__(config)
        self.store = store

    def _record(self, name, package, created=None):
        now = utcnow()
        return Deployment(name, self.name, DeploymentStatus.READY, None, package.digest,
                          created or now, now, {"path": str(package.path)})

    def create_steps(self, name, package, *, wait=True):
        def store(done):
            self.store[name] = self._record(name, package)
            return name
        return [
            Step("store", "store the record", store, undo=self.store.pop),
            Step("warm-up", "pretend to warm up", lambda done: None, kind="wait"),
        ]

    def create(self, name, package, *, wait=True):
        self.check_name(name)
        if name in self.store:
            raise DeploymentExists(name)
        self.rollout("create", self.create_steps(name, package, wait=wait)).run()
        return self.store[name]

    def update_steps(self, name, package, old):
        def switch(done):
            self.store[name] = dataclasses.replace(
                self._record(name, package, old.created_at),
                updated_at=old.updated_at + timedelta(seconds=1))
            return old
        return [
            Step("switch", "switch the record", switch,
                 undo=lambda old: self.store.__setitem__(name, old)),
            Step("settle", "pretend to settle", lambda done: None, kind="wait"),
        ]

    def update(self, name, package, *, wait=True):
        old = self.get(name)
        if old.package_digest == package.digest:
            return old
        self.rollout("update", self.update_steps(name, package, old)).run()
        return self.store[name]

    def delete(self, name):
        self.store.pop(name, None)

    def get(self, name):
        if name not in self.store:
            raise DeploymentNotFound(name)
        return self.store[name]

    def list(self):
        return list(self.store.values())

    def predict(self, name, payload):
        with load(self.get(name).details["path"]) as package:
            return format_predictions(package.predict(parse_payload(payload, package.signature)))


class Canary(Memory):
    """A correct target that splits traffic: a canary runs beside the version serving."""

    name = "canary"

    def start_canary(self, name, package):
        old = self.get(name)
        self.store[f"{name}~canary"] = self._record(name, package, old.created_at)

    def get(self, name):
        if name not in self.store:
            raise DeploymentNotFound(name)
        record = self.store[name]
        if f"{name}~canary" in self.store:
            return dataclasses.replace(record, details={**record.details, "canary": True})
        return record

    def list(self):
        return [v for k, v in self.store.items() if "~" not in k]

    def delete(self, name):
        self.store.pop(name, None)
        self.store.pop(f"{name}~canary", None)

    def promote(self, name):
        self.get(name)
        self.store[name] = self.store.pop(f"{name}~canary")
        return self.store[name]

    def rollback(self, name):
        self.get(name)
        self.store.pop(f"{name}~canary")
        return self.store[name]


class CreateOverwrites(Memory):
    def create(self, name, package, *, wait=True):
        self.store.pop(name, None)
        return super().create(name, package, wait=wait)


class UpdateCreates(Memory):
    def update(self, name, package, *, wait=True):
        if name not in self.store:
            return self.create(name, package)
        return super().update(name, package)


class UpdateAlwaysTouches(Memory):
    def update(self, name, package, *, wait=True):
        old = self.get(name)
        self.store[name] = dataclasses.replace(old, updated_at=old.updated_at + timedelta(1))
        return super().update(name, package)


class DeleteNotIdempotent(Memory):
    def delete(self, name):
        del self.store[name]


class GetMissingIsNone(Memory):
    def get(self, name):
        found = self.store.get(name)
        if found is None:
            raise KeyError(name)
        return found


class FailedCreateLeavesDebris(Memory):
    def create_steps(self, name, package, *, wait=True):
        first, second = super().create_steps(name, package, wait=wait)
        return [dataclasses.replace(first, undo=None), second]


class FailedUpdateKeepsTheNew(Memory):
    def update_steps(self, name, package, old):
        first, second = super().update_steps(name, package, old)
        return [dataclasses.replace(first, undo=None), second]


class PlanDrifts(Memory):
    def create(self, name, package, *, wait=True):
        if name in self.store:
            raise DeploymentExists(name)
        extra = Step("surprise", "a step the plan does not show", lambda done: None)
        steps = [*self.create_steps(name, package, wait=wait), extra]
        self.rollout("create", steps).run()
        return self.store[name]


class PredictIgnoresPackage(Memory):
    def predict(self, name, payload):
        self.get(name)
        return {"predictions": [[0.0, 0.0], [0.0, 0.0]]}


class RollbackPromotes(Canary):
    def rollback(self, name):
        return self.promote(name)


def contract_for(cls):
    class Contract(DeployerContract):
        @pytest.fixture
        def store(self):
            return {}

        @pytest.fixture
        def deployer(self, store):
            return cls(store)

        def start_canary(self, deployer, name, package):
            deployer.start_canary(name, package)

    Contract.__name__ = f"Test{cls.__name__}"
    return Contract


TestMemory = contract_for(Memory)
TestCanary = contract_for(Canary)
TestCreateOverwrites = contract_for(CreateOverwrites)
TestUpdateCreates = contract_for(UpdateCreates)
TestUpdateAlwaysTouches = contract_for(UpdateAlwaysTouches)
TestDeleteNotIdempotent = contract_for(DeleteNotIdempotent)
TestGetMissingIsNone = contract_for(GetMissingIsNone)
TestFailedCreateLeavesDebris = contract_for(FailedCreateLeavesDebris)
TestFailedUpdateKeepsTheNew = contract_for(FailedUpdateKeepsTheNew)
TestPlanDrifts = contract_for(PlanDrifts)
TestPredictIgnoresPackage = contract_for(PredictIgnoresPackage)
TestRollbackPromotes = contract_for(RollbackPromotes)


class TestNoDeployerFixture(DeployerContract):
    pass
'''


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, str]]:
    """``{class: {test: outcome}}`` from one pytest run over the generated module."""
    root = tmp_path_factory.mktemp("contract")
    (root / "test_targets.py").write_text(textwrap.dedent(TARGETS))
    report = root / "report.xml"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "-W",
            "error",
            f"--junitxml={report}",
            str(root),
        ],
        capture_output=True,
        text=True,
        cwd=root,
        timeout=600,
        check=False,
    )
    assert report.exists(), result.stdout[-3000:] + result.stderr[-3000:]
    found: dict[str, dict[str, str]] = {}
    for case in ElementTree.parse(report).getroot().iter("testcase"):
        cls = case.attrib["classname"].rsplit(".", 1)[-1]
        kinds = {child.tag for child in case}
        # A test that failed and then errored at teardown counts as failed.
        outcome = next((o for o in ("failure", "error", "skipped") if o in kinds), "passed").upper()
        found.setdefault(cls, {})[case.attrib["name"]] = outcome
    return found


def failures(outcomes: dict[str, dict[str, str]], cls: str) -> set[str]:
    return {t for t, o in outcomes[cls].items() if o in ("FAILURE", "ERROR")}


def test_a_correct_target_passes_every_check(outcomes: dict[str, dict[str, str]]) -> None:
    # Nothing is skipped: a target without logs or traffic splitting must refuse those verbs,
    # and the failure checks ran against the target's own steps.
    for cls in ("TestMemory", "TestCanary"):
        assert outcomes[cls] == dict.fromkeys(CHECKS, "PASSED")


@pytest.mark.parametrize(
    ("cls", "expected"),
    [
        ("TestCreateOverwrites", {"test_create_refuses_an_existing_name"}),
        ("TestUpdateCreates", {"test_update_missing_raises_not_found_and_creates_nothing"}),
        ("TestUpdateAlwaysTouches", {"test_update_with_the_same_digest_changes_nothing"}),
        (
            "TestDeleteNotIdempotent",
            {
                "test_delete_removes_everything_and_is_idempotent",
                "test_delete_of_a_missing_name_is_fine",
                "test_update_missing_raises_not_found_and_creates_nothing",
                "test_get_missing_raises_not_found",
                "test_predict_missing_raises_not_found",
                "test_plan_touches_nothing",
                # Its name fixture deletes a name that was never created, at teardown.
                "test_each_create_step_failing_leaves_nothing",
                "test_logs_are_lines_or_not_supported",
                "test_promote_and_rollback",
            },
        ),
        # A step without its undo: the step's failpoint finds what it made still there.
        ("TestFailedCreateLeavesDebris", {"test_each_create_step_failing_leaves_nothing"}),
        ("TestFailedUpdateKeepsTheNew", {"test_each_update_step_failing_keeps_the_old_version"}),
        # A create that runs a step its plan (the dry run) does not show.
        ("TestPlanDrifts", {"test_plan_is_the_steps_create_runs"}),
        ("TestRollbackPromotes", {"test_promote_and_rollback"}),
        (
            "TestPredictIgnoresPackage",
            {
                "test_predict_matches_the_package",
                "test_predict_accepts_instances",
                "test_predict_bad_input_raises_input_error",
                "test_update_switches_the_package",
                "test_update_without_waiting_finishes_by_itself",
                "test_create_without_waiting_returns_at_once",
                "test_each_update_step_failing_keeps_the_old_version",
            },
        ),
    ],
)
def test_each_broken_rule_is_caught(
    outcomes: dict[str, dict[str, str]], cls: str, expected: set[str]
) -> None:
    assert failures(outcomes, cls) == expected


def test_get_of_a_missing_name_must_raise_not_found(outcomes: dict[str, dict[str, str]]) -> None:
    broken = failures(outcomes, "TestGetMissingIsNone")
    assert "test_get_missing_raises_not_found" in broken
    assert "test_update_missing_raises_not_found_and_creates_nothing" in broken


def test_forgetting_the_deployer_fixture_fails_loudly(outcomes: dict[str, dict[str, str]]) -> None:
    results = outcomes["TestNoDeployerFixture"]
    assert "PASSED" not in results.values()
    assert "test_create_blocks_until_ready" in failures(outcomes, "TestNoDeployerFixture")


def test_the_test_model_is_a_real_onnx_model(tmp_path: Path) -> None:
    # Hand-encoded protobuf: check it with the onnx package where it is installed.
    onnx = pytest.importorskip("onnx")
    model = onnx.load_from_string(onnx_scale_model(1.5))
    onnx.checker.check_model(model)
    path = make_test_package(tmp_path / "p.mport", scale=1.5)
    with modelport.load(path) as package:
        y = package.predict({"X": [[1.0, -2.0]]})["Y"]
    np.testing.assert_array_equal(y, np.array([[1.5, -3.0]], dtype=np.float32))
    assert make_test_package(tmp_path / "q.mport", scale=1.5).read_bytes() == path.read_bytes()
