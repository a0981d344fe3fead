"""The contract every deploy target follows, as pytest classes plugin authors subclass.

Usage, in a plugin's tests::

    import pytest
    from modelport.plugins.testing import DeployerContract
    from my_plugin import MyDeployer, MyConfig

    class TestMyTarget(DeployerContract):
        @pytest.fixture
        def deployer(self, tmp_path):
            return MyDeployer(MyConfig(root=tmp_path))

Every ``test_*`` method then runs against the target. :class:`DeployerContract` is the sum of one
mixin per concern, each usable alone (fsspec's ``tests/abstract`` shape) over one scenario base
(:class:`Scenario`: the fixtures and hooks):

- :class:`LifecycleContract`: create, get, list, predict, delete, ``--dry-run``;
- :class:`UpdateContract`: blue/green update, no-op update, update without waiting;
- :class:`FailureContract`: **each named step** of ``create`` and of ``update`` made to fail in
  turn (through its failpoint, :mod:`modelport.deployers.kit.rollout`), checking after each that
  nothing is left and that a failed update leaves the old version serving;
- :class:`LogsContract`: ``logs``, for targets that keep them;
- :class:`TrafficContract`: ``promote`` and ``rollback``, for targets that split traffic.

Capabilities come from the target class (``supports_logs()``, ``supports_traffic()``,
``update_can_skip_waiting()``); set :attr:`Scenario.has_logs`, :attr:`Scenario.splits_traffic`
or :attr:`Scenario.updates_without_waiting` to override. A target whose verbs report no rollout
steps (``create_steps``) cannot have its failures checked: those checks skip, saying so.

The packages it deploys are two tiny ONNX models (``Y = X * scale`` with ``X`` float32 ``[N, 2]``)
built by :func:`make_test_package` with nothing but modelport's core dependencies; override the
``package`` and ``package_v2`` fixtures to deploy your own. Override
:meth:`Scenario.assert_gone` and :meth:`Scenario.assert_serves` to also check the target's own
resources (files, processes, cloud objects).

This module imports pytest: import it from tests only.
"""

from __future__ import annotations

import dataclasses
import struct
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from modelport.deployers.base import Deployer, Deployment, DeploymentStatus, PlannedAction
from modelport.deployers.kit.progress import Progress, ProgressEvent
from modelport.deployers.kit.rollout import FailpointTriggered, failpoint
from modelport.deployers.kit.waiting import Seen, wait_until
from modelport.errors import (
    DeploymentExists,
    DeploymentNotFound,
    InputError,
    NotSupportedError,
)
from modelport.model_format.package import Package, load
from modelport.model_format.payload import format_predictions, parse_payload

__all__ = [
    "DeployerContract",
    "FailureContract",
    "LifecycleContract",
    "LogsContract",
    "Scenario",
    "TrafficContract",
    "UpdateContract",
    "make_test_package",
    "onnx_scale_model",
]


# --- a tiny ONNX model, written without the onnx package ------------------------------------


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _field_int(number: int, value: int) -> bytes:
    return _varint(number << 3) + _varint(value)


def _field_bytes(number: int, data: bytes) -> bytes:
    return _varint(number << 3 | 2) + _varint(len(data)) + data


def _field_str(number: int, text: str) -> bytes:
    return _field_bytes(number, text.encode())


def _float_tensor_info(name: str, dims: list[int | str]) -> bytes:
    """An ONNX ValueInfoProto for a float32 tensor (a str dim is symbolic)."""
    shape = b"".join(
        _field_bytes(1, _field_int(1, d) if isinstance(d, int) else _field_str(2, d)) for d in dims
    )
    tensor_type = _field_int(1, 1) + _field_bytes(2, shape)  # elem_type FLOAT, shape
    return _field_str(1, name) + _field_bytes(2, _field_bytes(1, tensor_type))


def onnx_scale_model(scale: float = 1.0) -> bytes:
    """A serialized ONNX model computing ``Y = X * scale`` for ``X`` float32 of shape [N, 2].

    Hand-encoded protobuf (IR version 8, opset 13), so plugin tests need neither ``onnx`` nor
    any converter.
    """
    initializer = (
        _field_int(1, 1)  # dims: [1]
        + _field_int(2, 1)  # data_type: FLOAT
        + _field_str(8, "scale")
        + _field_bytes(9, struct.pack("<f", scale))  # raw_data
    )
    node = _field_str(1, "X") + _field_str(1, "scale") + _field_str(2, "Y")
    node += _field_str(3, "mul") + _field_str(4, "Mul")
    graph = (
        _field_bytes(1, node)
        + _field_str(2, "contract")
        + _field_bytes(5, initializer)
        + _field_bytes(11, _float_tensor_info("X", ["N", 2]))
        + _field_bytes(12, _float_tensor_info("Y", ["N", 2]))
    )
    opset = _field_int(2, 13)
    return (
        _field_int(1, 8)
        + _field_str(2, "modelport-contract")
        + _field_bytes(7, graph)
        + _field_bytes(8, opset)
    )


def make_test_package(
    path: str | Path, *, scale: float = 1.0, name: str = "contract-model", version: str = "1"
) -> Path:
    """Pack the ``Y = X * scale`` model at ``path`` (``.mport`` for an archive) and return it.

    Different scales give different digests and different predictions, which is what the update
    checks need.
    """
    from modelport.model_format.pack import pack

    out = Path(path)
    source = out.with_name(f".{out.name}.source.onnx")
    source.write_bytes(onnx_scale_model(scale))
    try:
        example = {"X": np.array([[1.0, 2.0], [3.0, 4.0]], dtype=np.float32)}
        pack(source, out, name=name, version=version, example=example).close()
    finally:
        source.unlink()
    return out


# --- the contract ---------------------------------------------------------------------------

_PACKAGES: dict[tuple[str, float], Path] = {}


def _session_package(factory: pytest.TempPathFactory, scale: float) -> Path:
    """Pack each test package once per test session (packing is the slow part, not loading)."""
    key = (str(factory.getbasetemp()), scale)
    if key not in _PACKAGES:
        directory = factory.mktemp("contract-packages")
        _PACKAGES[key] = make_test_package(
            directory / f"scale-{scale:g}.mport", scale=scale, version=f"{scale:g}"
        )
    return _PACKAGES[key]


def _same_predictions(got: Any, want: Any) -> bool:
    """Predictions equal up to float32 rounding (servers may print floats more tersely)."""
    if isinstance(want, Mapping):
        return (
            isinstance(got, Mapping)
            and set(got) == set(want)
            and all(_same_predictions(got[k], want[k]) for k in want)
        )
    try:
        a = np.asarray(got, dtype=np.float64)
        b = np.asarray(want, dtype=np.float64)
    except (TypeError, ValueError):
        return bool(got == want)
    return a.shape == b.shape and bool(np.allclose(a, b, rtol=1e-6, atol=1e-7))


class _Recorder:
    """Collects a deployer's progress events while a block runs."""

    def __init__(self, deployer: Deployer[Any]) -> None:
        self.deployer = deployer
        self.events: list[ProgressEvent] = []

    def __enter__(self) -> _Recorder:
        self.saved = self.deployer.progress
        self.deployer.progress = Progress(self.events.append)
        return self

    def __exit__(self, *exc: object) -> None:
        self.deployer.progress = self.saved

    def steps(self, verb: str) -> list[str]:
        """The names of the steps of ``verb`` that started, in order."""
        return [e.step for e in self.events if e.kind == "step" and e.verb == verb and e.step]


class Scenario:
    """What every contract mixin shares: the fixtures, the capabilities and the hooks.

    Attributes:
        ready_timeout: seconds a deployment made with ``wait=False`` may take to be ready.
        has_logs: the target keeps logs; None asks ``supports_logs()``.
        splits_traffic: the target splits traffic (promote, rollback); None asks
            ``supports_traffic()``.
        updates_without_waiting: ``update(wait=False)`` works; None asks
            ``update_can_skip_waiting()``.
    """

    ready_timeout: float = 180.0
    has_logs: bool | None = None
    splits_traffic: bool | None = None
    updates_without_waiting: bool | None = None

    # --- fixtures a plugin provides or may override ---------------------------------------

    @pytest.fixture
    def deployer(self) -> Deployer[Any]:
        """The target under test. Override this fixture."""
        pytest.fail("override the 'deployer' fixture to return your Deployer instance")

    @pytest.fixture
    def package(self, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Package]:
        """The package deployed first (``Y = X * 1``)."""
        with load(_session_package(tmp_path_factory, 1.0)) as loaded:
            yield loaded

    @pytest.fixture
    def package_v2(self, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Package]:
        """The package an update switches to (``Y = X * 2``): another digest, other outputs."""
        with load(_session_package(tmp_path_factory, 2.0)) as loaded:
            yield loaded

    @pytest.fixture
    def name(self, deployer: Deployer[Any]) -> Iterator[str]:
        """A fresh deployment name, deleted after the test whatever happened."""
        deployment_name = f"contract-{uuid.uuid4().hex[:10]}"
        yield deployment_name
        deployer.delete(deployment_name)

    @pytest.fixture
    def payload(self) -> dict[str, Any]:
        """A request body the test packages accept."""
        return {"inputs": {"X": [[1.0, 2.0], [3.0, 4.0]]}}

    # --- capabilities ---------------------------------------------------------------------

    def _has_logs(self, deployer: Deployer[Any]) -> bool:
        return type(deployer).supports_logs() if self.has_logs is None else self.has_logs

    def _splits_traffic(self, deployer: Deployer[Any]) -> bool:
        found = type(deployer).supports_traffic()
        return found if self.splits_traffic is None else self.splits_traffic

    def _updates_without_waiting(self, deployer: Deployer[Any]) -> bool:
        found = type(deployer).update_can_skip_waiting()
        return found if self.updates_without_waiting is None else self.updates_without_waiting

    # --- hooks ----------------------------------------------------------------------------

    def assert_gone(self, deployer: Deployer[Any], name: str) -> None:
        """Assert that nothing of deployment ``name`` is left. Extend it with your resources."""
        with pytest.raises(DeploymentNotFound):
            deployer.get(name)
        assert name not in [d.name for d in deployer.list()]

    def assert_serves(
        self, deployer: Deployer[Any], name: str, package: Package, payload: Mapping[str, Any]
    ) -> None:
        """Assert that ``name`` is ready and serves ``package``, and only it.

        Extend it with your resources: after a failed update, nothing of the new version may be
        left.
        """
        deployment = deployer.get(name)
        assert deployment.status is DeploymentStatus.READY, deployment.details
        assert deployment.package_digest == package.digest
        assert _same_predictions(deployer.predict(name, payload), self.expected(package, payload))

    def expected(self, package: Package, payload: Mapping[str, Any]) -> dict[str, Any]:
        """What ``predict`` must answer: the package's own in-process prediction."""
        return format_predictions(package.predict(parse_payload(payload, package.signature)))

    def wait_until_ready(
        self, deployer: Deployer[Any], name: str, digest: str | None = None
    ) -> Deployment:
        """Poll ``get`` until the deployment is ready (and serves ``digest``, when given)."""
        seen: list[Deployment] = []

        def ready() -> Seen:
            deployment = deployer.get(name)
            seen.append(deployment)
            if deployment.status is DeploymentStatus.FAILED:
                return Seen(failed=f"it failed: {deployment.details}")
            done = deployment.status is DeploymentStatus.READY and (
                digest is None or deployment.package_digest == digest
            )
            return Seen(done=done, status=deployment.status.value)

        wait_until(ready, what=f"deployment {name!r}", timeout_s=self.ready_timeout)
        return seen[-1]


def _assert_ready_with(deployment: Deployment, package: Package) -> None:
    """The record says ready and serving ``package``."""
    assert deployment.status is DeploymentStatus.READY, deployment.details
    assert deployment.package_digest == package.digest


class LifecycleContract(Scenario):
    """create, get, list, predict, delete and ``--dry-run``."""

    def test_declares_name_and_config(self, deployer: Deployer[Any]) -> None:
        """The class names itself and declares a frozen dataclass config."""
        assert isinstance(deployer, Deployer)
        assert isinstance(type(deployer).name, str) and type(deployer).name
        config_class = type(deployer).config_class
        assert dataclasses.is_dataclass(config_class)
        params = getattr(config_class, "__dataclass_params__", None)
        assert params is not None and params.frozen, "config_class must be a frozen dataclass"
        assert isinstance(deployer.config, config_class)

    def test_create_blocks_until_ready(
        self, deployer: Deployer[Any], name: str, package: Package
    ) -> None:
        """create() returns once the deployment is ready, with a complete record."""
        deployment = deployer.create(name, package)
        assert isinstance(deployment, Deployment)
        assert deployment.name == name
        assert deployment.target == deployer.name
        _assert_ready_with(deployment, package)
        assert deployment.created_at.tzinfo is not None
        assert deployment.updated_at >= deployment.created_at
        assert deployment.to_dict()["status"] == "ready"

    def test_get_describes_the_deployment(
        self, deployer: Deployer[Any], name: str, package: Package
    ) -> None:
        """get() describes what create() made."""
        created = deployer.create(name, package)
        got = deployer.get(name)
        assert got.name == name
        _assert_ready_with(got, package)
        assert got.endpoint == created.endpoint
        assert got.created_at == created.created_at

    def test_list_includes_the_deployment(
        self, deployer: Deployer[Any], name: str, package: Package
    ) -> None:
        """list() includes a created deployment."""
        deployer.create(name, package)
        listed = {d.name: d for d in deployer.list()}
        assert name in listed
        assert listed[name].package_digest == package.digest

    def test_get_missing_raises_not_found(self, deployer: Deployer[Any], name: str) -> None:
        """get() of a missing name raises DeploymentNotFound."""
        with pytest.raises(DeploymentNotFound):
            deployer.get(name)

    def test_create_refuses_an_existing_name(
        self, deployer: Deployer[Any], name: str, package: Package, package_v2: Package
    ) -> None:
        """create() refuses an existing name and leaves that deployment alone."""
        deployer.create(name, package)
        with pytest.raises(DeploymentExists):
            deployer.create(name, package_v2)
        _assert_ready_with(deployer.get(name), package)

    def test_create_without_waiting_returns_at_once(
        self,
        deployer: Deployer[Any],
        name: str,
        package: Package,
        payload: dict[str, Any],
    ) -> None:
        """create(wait=False) returns at once; the deployment becomes ready later."""
        deployment = deployer.create(name, package, wait=False)
        assert deployment.name == name
        assert deployment.package_digest == package.digest
        assert deployment.status in (DeploymentStatus.STARTING, DeploymentStatus.READY)
        self.wait_until_ready(deployer, name)
        assert _same_predictions(deployer.predict(name, payload), self.expected(package, payload))

    def test_predict_matches_the_package(
        self, deployer: Deployer[Any], name: str, package: Package, payload: dict[str, Any]
    ) -> None:
        """predict() answers what the package predicts in-process."""
        deployer.create(name, package)
        answer = deployer.predict(name, payload)
        assert set(answer) == {"predictions"}
        assert _same_predictions(answer, self.expected(package, payload))

    def test_predict_accepts_instances(
        self, deployer: Deployer[Any], name: str, package: Package
    ) -> None:
        """predict() accepts every payload format, e.g. instances."""
        deployer.create(name, package)
        body = {"instances": [[0.5, -1.0], [2.0, 3.0], [4.0, 5.0]]}
        assert _same_predictions(deployer.predict(name, body), self.expected(package, body))

    def test_predict_bad_input_raises_input_error(
        self, deployer: Deployer[Any], name: str, package: Package
    ) -> None:
        """predict() with inputs that do not fit the signature raises InputError."""
        deployer.create(name, package)
        with pytest.raises(InputError):
            deployer.predict(name, {"inputs": {"no_such_input": [[1.0, 2.0]]}})

    def test_predict_missing_raises_not_found(
        self, deployer: Deployer[Any], name: str, payload: dict[str, Any]
    ) -> None:
        """predict() on a missing name raises DeploymentNotFound."""
        with pytest.raises(DeploymentNotFound):
            deployer.predict(name, payload)

    def test_delete_removes_everything_and_is_idempotent(
        self, deployer: Deployer[Any], name: str, package: Package
    ) -> None:
        """delete() removes everything, and deleting again is fine."""
        deployer.create(name, package)
        deployer.delete(name)
        self.assert_gone(deployer, name)
        deployer.delete(name)  # again: no error
        self.assert_gone(deployer, name)

    def test_delete_of_a_missing_name_is_fine(self, deployer: Deployer[Any], name: str) -> None:
        """delete() of a name that never existed is not an error."""
        deployer.delete(name)
        self.assert_gone(deployer, name)

    def test_name_can_be_reused_after_delete(
        self, deployer: Deployer[Any], name: str, package: Package, package_v2: Package
    ) -> None:
        """A deleted name can be created again."""
        deployer.create(name, package)
        deployer.delete(name)
        deployment = deployer.create(name, package_v2)
        assert deployment.package_digest == package_v2.digest

    def test_plan_touches_nothing(
        self, deployer: Deployer[Any], name: str, package: Package
    ) -> None:
        """plan() (deploy --dry-run) describes the work and does none of it."""
        actions = deployer.plan(name, package)
        assert actions, "plan() must say what create() would do"
        assert all(isinstance(a, PlannedAction) and a.description for a in actions)
        self.assert_gone(deployer, name)

    def test_plan_is_the_steps_create_runs(
        self, deployer: Deployer[Any], name: str, package: Package
    ) -> None:
        """The dry run's steps are the steps a real create reports, in the same order."""
        planned = [a.step for a in deployer.plan(name, package) if a.step]
        with _Recorder(deployer) as recorder:
            deployer.create(name, package)
        assert planned == recorder.steps("create")


class UpdateContract(Scenario):
    """update: blue/green switch, no-op on the same digest, and without waiting."""

    def test_update_switches_the_package(
        self,
        deployer: Deployer[Any],
        name: str,
        package: Package,
        package_v2: Package,
        payload: dict[str, Any],
    ) -> None:
        """update() switches to the new package; creation time is kept."""
        created = deployer.create(name, package)
        updated = deployer.update(name, package_v2)
        _assert_ready_with(updated, package_v2)
        assert updated.created_at == created.created_at
        assert updated.updated_at >= created.updated_at
        self.assert_serves(deployer, name, package_v2, payload)
        answer = deployer.predict(name, payload)
        assert not _same_predictions(answer, self.expected(package, payload))

    def test_update_missing_raises_not_found_and_creates_nothing(
        self, deployer: Deployer[Any], name: str, package: Package
    ) -> None:
        """update() of a missing name raises DeploymentNotFound and creates nothing."""
        with pytest.raises(DeploymentNotFound):
            deployer.update(name, package)
        self.assert_gone(deployer, name)

    def test_update_with_the_same_digest_changes_nothing(
        self, deployer: Deployer[Any], name: str, package: Package
    ) -> None:
        """update() to the digest already deployed is a no-op."""
        deployer.create(name, package)
        before = deployer.get(name)
        after = deployer.update(name, package)
        assert after.package_digest == before.package_digest
        assert after.updated_at == before.updated_at
        assert after.endpoint == before.endpoint
        again = deployer.get(name)
        assert again.updated_at == before.updated_at
        assert again.status is DeploymentStatus.READY

    def test_update_without_waiting_finishes_by_itself(
        self,
        deployer: Deployer[Any],
        name: str,
        package: Package,
        package_v2: Package,
        payload: dict[str, Any],
    ) -> None:
        """update(wait=False) returns at once; the new version serves once it is ready."""
        if not self._updates_without_waiting(deployer):
            pytest.skip("the target's update always waits")
        deployer.create(name, package)
        started = deployer.update(name, package_v2, wait=False)
        assert started.status in (DeploymentStatus.UPDATING, DeploymentStatus.READY)
        self.wait_until_ready(deployer, name, package_v2.digest)
        self.assert_serves(deployer, name, package_v2, payload)


class FailureContract(Scenario):
    """Each named step of create and update, failed in turn: nothing is left behind."""

    def test_each_create_step_failing_leaves_nothing(
        self, deployer: Deployer[Any], name: str, package: Package
    ) -> None:
        """A create that fails after any one of its steps undoes them all."""
        steps = [a.step for a in deployer.plan(name, package) if a.step]
        if not steps:
            pytest.skip("the target's create has no rollout steps (create_steps): not checked")
        for step in steps:
            with failpoint(f"{deployer.name}.create.{step}"), pytest.raises(FailpointTriggered):
                deployer.create(name, package)
            self.assert_gone(deployer, name)

    def test_each_update_step_failing_keeps_the_old_version(
        self,
        deployer: Deployer[Any],
        name: str,
        package: Package,
        package_v2: Package,
        payload: dict[str, Any],
    ) -> None:
        """An update that fails after any one of its steps leaves the old version serving."""
        deployer.create(name, package)
        with _Recorder(deployer) as recorder:
            deployer.update(name, package_v2)  # a real one, to learn the steps
        steps = recorder.steps("update")
        if not steps:
            pytest.skip("the target's update reports no rollout steps: not checked")
        for step in steps:
            with failpoint(f"{deployer.name}.update.{step}"), pytest.raises(FailpointTriggered):
                deployer.update(name, package)
            self.assert_serves(deployer, name, package_v2, payload)


class LogsContract(Scenario):
    """logs, for targets that keep them."""

    def test_logs_are_lines_or_not_supported(
        self, deployer: Deployer[Any], name: str, package: Package
    ) -> None:
        """logs() yields at most `tail` lines of text, and refuses missing names.

        A target without logs must say so (NotSupportedError), not answer nothing.
        """
        if not self._has_logs(deployer):
            with pytest.raises(NotSupportedError):
                list(deployer.logs(name))
            return
        deployer.create(name, package)
        lines = list(deployer.logs(name, tail=5))
        assert len(lines) <= 5
        assert all(isinstance(line, str) for line in lines)
        with pytest.raises(DeploymentNotFound):
            list(deployer.logs(f"{name}-missing"))


class TrafficContract(Scenario):
    """promote and rollback, for targets that split traffic between versions."""

    def start_canary(self, deployer: Deployer[Any], name: str, package: Package) -> None:
        """Put ``package`` beside the version serving, sharing its traffic.

        Override with your target's way (a config option, a traffic split); the default is
        ``update``.
        """
        deployer.update(name, package)

    def test_promote_and_rollback(
        self,
        deployer: Deployer[Any],
        name: str,
        package: Package,
        package_v2: Package,
        payload: dict[str, Any],
    ) -> None:
        """rollback() returns to the old version; promote() keeps the new one, alone.

        A target that does not split traffic must refuse both (NotSupportedError).
        """
        if not self._splits_traffic(deployer):
            for verb in (deployer.promote, deployer.rollback):
                with pytest.raises(NotSupportedError):
                    verb(name)
            return
        deployer.create(name, package)
        self.start_canary(deployer, name, package_v2)
        _assert_ready_with(deployer.rollback(name), package)
        self.assert_serves(deployer, name, package, payload)
        self.start_canary(deployer, name, package_v2)
        _assert_ready_with(deployer.promote(name), package_v2)
        self.assert_serves(deployer, name, package_v2, payload)


class DeployerContract(
    LifecycleContract, UpdateContract, FailureContract, LogsContract, TrafficContract
):
    """Every rule of the Deployer API. Subclass it and provide a ``deployer`` fixture."""
