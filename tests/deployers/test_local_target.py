"""The local target: the contract suite, then what only a local deployment has (processes, ports,
state files, logs) and blue/green updates under load. Real processes, real HTTP on 127.0.0.1."""

from __future__ import annotations

import contextlib
import dataclasses
import http.client
import json
import os
import shutil
import signal
import socket
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from load import Load

import modelport
from modelport.deployers import DeploymentStatus
from modelport.deployers.kit import processes
from modelport.deployers.local import LocalConfig, LocalDeployer
from modelport.deployers.local.proxy import UNREACHABLE_BUDGET_S
from modelport.errors import DeploymentError, DeploymentNotFound, UsageError
from modelport.plugins.testing import DeployerContract
from process_helpers import processes_mentioning, reap_children, wait_no_processes

PAYLOAD = {"inputs": {"X": [[1.0, 2.0]]}}
V1_ANSWER = str([[1.0, 2.0]])
V2_ANSWER = str([[2.0, 4.0]])


class TestLocalContract(DeployerContract):
    """Every rule of the Deployer API, checked against the local target."""

    ready_timeout = 60.0

    @pytest.fixture
    def deployer(self, home: Path) -> LocalDeployer:
        return LocalDeployer(LocalConfig(home=home, workers=1, startup_timeout=60, stop_timeout=10))

    def assert_gone(self, deployer: LocalDeployer, name: str) -> None:  # type: ignore[override]
        super().assert_gone(deployer, name)
        directory = deployer.root / name
        assert not directory.exists()
        assert wait_no_processes(str(directory), timeout=5.0) == []

    def assert_serves(  # type: ignore[override]
        self, deployer: LocalDeployer, name: str, package: modelport.Package, payload: Any
    ) -> None:
        super().assert_serves(deployer, name, package, payload)
        # One server, one package copy, one log: nothing of a failed attempt.
        state = _state(deployer, name)
        generation = state["generation"]
        assert "pending" not in state
        files = {p.name for p in (deployer.root / name).iterdir()}
        assert {f for f in files if f.startswith(("package-", "server-"))} == {
            f"package-{generation}.mport",
            f"server-{generation}.log",
        }
        # Every process of the deployment is the server's (its workers too) or the proxy's.
        groups = {state["server"]["pid"], state["proxy"]["pid"]}
        reap_children()
        for pid in processes_mentioning(str(deployer.root / name)):
            with contextlib.suppress(ProcessLookupError):
                assert os.getpgid(pid) in groups, f"process {pid} is left from a failed attempt"


# --- helpers --------------------------------------------------------------------------------


def _state(deployer: LocalDeployer, name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((deployer.root / name / "state.json").read_text())
    return data


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture
def v1(package_paths: dict[str, Path]) -> Iterator[modelport.Package]:
    with modelport.load(package_paths["v1"]) as package:
        yield package


@pytest.fixture
def v2(package_paths: dict[str, Path]) -> Iterator[modelport.Package]:
    with modelport.load(package_paths["v2"]) as package:
        yield package


# --- blue/green under load ------------------------------------------------------------------


def test_update_under_load_fails_no_request(
    local: LocalDeployer, v1: modelport.Package, v2: modelport.Package
) -> None:
    created = local.create("blue-green", v1)
    assert created.endpoint is not None
    pids = []
    with Load(created.endpoint) as load:
        load.wait_for(150)
        # Three switches back and forth, each while requests keep arriving.
        for package in (v2, v1, v2):
            before = local.get("blue-green").details
            started = time.monotonic()
            updated = local.update("blue-green", package)
            print(f"update took {time.monotonic() - started:.2f} s, {load.sent} sent so far")
            assert updated.package_digest == package.digest
            assert updated.endpoint == created.endpoint  # clients never change address
            pids.append((before["server_pid"], _state(local, "blue-green")))
            load.wait_for(150)
    print(f"\nupdate under load: {load.sent} requests, {len(load.failures)} failed, 3 updates")
    assert load.failures == [], load.failures[:5]
    assert load.sent >= 600
    # Both versions answered through the same address; after the last switch only v2 does.
    assert set(load.answers) == {V1_ANSWER, V2_ANSWER}
    assert set(load.last.values()) == {V2_ANSWER}
    # Every old server is gone.
    reap_children()
    assert [pid for pid, _ in pids if pid in processes_mentioning(str(local.root))] == []
    state = _state(local, "blue-green")
    assert state["generation"] == 4
    names = sorted(p.name for p in (local.root / "blue-green").iterdir())
    assert names == [
        "package-4.mport",
        "proxy.log",
        "proxy.ready.json",
        "server-4.log",
        "state.json",
        "upstream.json",
    ]


def test_failed_update_under_load_keeps_serving(
    local: LocalDeployer, home: Path, v1: modelport.Package, v2: modelport.Package
) -> None:
    created = local.create("rollback", v1)
    assert created.endpoint is not None
    broken = LocalDeployer(LocalConfig(home=home, workers=1, serve_args=("--no-such-option",)))
    with Load(created.endpoint, threads=4) as load:
        load.wait_for(100)
        with pytest.raises(DeploymentError, match="exited while starting"):
            broken.update("rollback", v2)
        load.wait_for(100)
    assert load.failures == []
    assert set(load.answers) == {V1_ANSWER}
    after = local.get("rollback")
    assert after.package_digest == v1.digest
    assert after.status is DeploymentStatus.READY
    assert after.details["server_pid"] == created.details["server_pid"]
    # The failed attempt left nothing: no copy, no log, no pending record.
    names = {p.name for p in (local.root / "rollback").iterdir()}
    assert "package-2.mport" not in names and "server-2.log" not in names
    assert "pending" not in _state(local, "rollback")


# --- health and stale state -----------------------------------------------------------------


def test_dead_server_is_reported_failed_not_running(
    local: LocalDeployer, v1: modelport.Package
) -> None:
    created = local.create("crash", v1)
    os.killpg(created.details["server_pid"], signal.SIGKILL)
    deadline = time.monotonic() + 10
    while local.get("crash").status is not DeploymentStatus.FAILED:
        assert time.monotonic() < deadline, "a dead server is still reported as running"
        time.sleep(0.05)
    got = local.get("crash")
    assert "server process" in got.details["problem"]
    assert [d.status for d in local.list()] == [DeploymentStatus.FAILED]
    local.delete("crash")  # also stops the proxy that was still running
    assert wait_no_processes(str(local.root / "crash")) == []


def test_dead_proxy_is_reported_failed(local: LocalDeployer, v1: modelport.Package) -> None:
    created = local.create("noproxy", v1)
    os.kill(created.details["proxy_pid"], signal.SIGKILL)
    deadline = time.monotonic() + 10
    while (got := local.get("noproxy")).status is not DeploymentStatus.FAILED:
        assert time.monotonic() < deadline, "a dead proxy is still reported as running"
        time.sleep(0.05)
    assert "proxy" in got.details["problem"]


def test_stale_pid_of_another_process_is_not_trusted_or_killed(
    local: LocalDeployer, v1: modelport.Package
) -> None:
    # A state file outliving its processes (a reboot) while the pid was reused by another
    # process, here this very test process: it must count as dead, and delete must not kill it.
    local.create("stale", v1)
    state = _state(local, "stale")
    real_server, real_proxy = state["server"]["pid"], state["proxy"]["pid"]
    os.killpg(real_server, signal.SIGKILL)
    os.killpg(real_proxy, signal.SIGKILL)
    assert wait_no_processes(str(local.root / "stale")) == []
    state["server"]["pid"] = state["proxy"]["pid"] = os.getpid()
    (local.root / "stale" / "state.json").write_text(json.dumps(state))
    got = local.get("stale")
    assert got.status is DeploymentStatus.FAILED
    local.delete("stale")  # would SIGTERM this process if it trusted the pid
    assert not (local.root / "stale").exists()


def test_get_reports_starting_until_ready(local: LocalDeployer, v1: modelport.Package) -> None:
    created = local.create("slow", v1, wait=False)
    assert created.status is DeploymentStatus.STARTING
    seen = set()
    deadline = time.monotonic() + 60
    while (status := local.get("slow").status) is not DeploymentStatus.READY:
        seen.add(status)
        assert status is not DeploymentStatus.FAILED
        assert time.monotonic() < deadline
        time.sleep(0.02)
    assert seen <= {DeploymentStatus.STARTING}


def test_proxy_answers_503_while_no_server_listens(
    local: LocalDeployer, v1: modelport.Package
) -> None:
    created = local.create("gap", v1)
    assert created.endpoint is not None
    os.killpg(created.details["server_pid"], signal.SIGKILL)
    reap_children()
    port = int(created.endpoint.rsplit(":", 1)[1])
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    started = time.monotonic()
    conn.request("GET", "/ping")
    response = conn.getresponse()
    assert response.status == 503
    assert "not accepting" in json.loads(response.read())["error"]
    # Prompt: the proxy's retry budget and some slack, not the backend timeout.
    assert time.monotonic() - started < UNREACHABLE_BUDGET_S + 4
    conn.close()


def test_proxy_exits_once_its_deployment_directory_is_gone(
    local: LocalDeployer, v1: modelport.Package
) -> None:
    created = local.create("orphan", v1)
    (local.root / "orphan" / "upstream.json").unlink()
    proxy = created.details["proxy_pid"]
    deadline = time.monotonic() + 15
    while Path(f"/proc/{proxy}").exists() and proxy in processes_mentioning(
        "modelport.deployers.local.proxy"
    ):
        reap_children()
        assert time.monotonic() < deadline, "the proxy outlived its upstream file"
        time.sleep(0.1)
    assert local.get("orphan").status is DeploymentStatus.FAILED


def test_corrupt_state_is_an_error_and_delete_removes_it(
    local: LocalDeployer, v1: modelport.Package
) -> None:
    local.create("corrupt", v1)
    state = _state(local, "corrupt")
    (local.root / "corrupt" / "state.json").write_text("{not json")
    with pytest.raises(DeploymentError, match="unreadable"):
        local.get("corrupt")
    # delete cannot read the pids; it removes the directory, and the proxy notices and exits.
    local.delete("corrupt")
    assert not (local.root / "corrupt").exists()
    os.killpg(state["server"]["pid"], signal.SIGKILL)  # the server has no such watchdog
    assert wait_no_processes(str(local.root / "corrupt"), timeout=15) == []


# --- ports, names, packages, logs -----------------------------------------------------------


def test_given_port_is_the_endpoint_and_a_taken_port_fails_cleanly(
    local: LocalDeployer, home: Path, v1: modelport.Package
) -> None:
    port = _free_port()
    fixed = LocalDeployer(LocalConfig(home=home, port=port, workers=1))
    created = fixed.create("fixed", v1)
    assert created.endpoint == f"http://127.0.0.1:{port}"
    assert fixed.predict("fixed", PAYLOAD) == {"predictions": [[1.0, 2.0]]}
    with pytest.raises(DeploymentError, match=f"cannot listen on 127.0.0.1:{port}"):
        fixed.create("clash", v1)
    assert not (local.root / "clash").exists()
    assert wait_no_processes(str(local.root / "clash")) == []


def test_invalid_names_are_refused(local: LocalDeployer, v1: modelport.Package) -> None:
    for bad in ("", "UPPER", "has space", "../escape", "-dash", "a" * 64):
        with pytest.raises(UsageError, match="invalid deployment name"):
            local.create(bad, v1)
    assert not local.root.exists() or list(local.root.iterdir()) in ([], [local.root / ".lock"])


def test_every_verb_refuses_a_name_that_is_a_path(
    local: LocalDeployer, v1: modelport.Package
) -> None:
    local.create("kept", v1)
    try:
        for verb in (
            lambda: local.delete(".."),
            lambda: local.update("..", v1),
            lambda: local.get(".."),
            lambda: local.predict("..", {"inputs": {"X": [[1.0, 2.0]]}}),
            lambda: list(local.logs("..")),
        ):
            with pytest.raises(UsageError, match="invalid deployment name"):
                verb()
        # "delete .." would have removed every deployment of the target.
        assert local.get("kept").status.value == "ready"
    finally:
        local.delete("kept")


def test_package_changed_on_disk_after_loading_is_refused(
    local: LocalDeployer, tmp_path: Path, package_paths: dict[str, Path]
) -> None:
    directory = tmp_path / "pkgdir"
    modelport.pack(package_paths["v1"], directory).close()
    package = modelport.load(directory)
    model = directory / "model.onnx"
    model.write_bytes(model.read_bytes() + b"\0")
    with pytest.raises(DeploymentError, match="changed on disk"):
        local.create("tampered", package)
    assert not (local.root / "tampered").exists()
    package.close()


def test_deployment_survives_its_source_package_being_removed(
    local: LocalDeployer, tmp_path: Path, package_paths: dict[str, Path]
) -> None:
    source = tmp_path / "moved.mport"
    shutil.copyfile(package_paths["v1"], source)
    with modelport.load(source) as package:
        local.create("copied", package)
    source.unlink()
    assert local.predict("copied", PAYLOAD) == {"predictions": [[1.0, 2.0]]}


def test_the_packages_provenance_is_recorded_and_replaced_by_an_update(
    local: LocalDeployer, home: Path, v1: modelport.Package, v2: modelport.Package
) -> None:
    fingerprint, oci_digest = "sha256:" + "ab" * 32, "sha256:" + "ef" * 32
    v1.provenance = dataclasses.replace(
        v1.provenance, signature_fingerprint=fingerprint, oci_digest=oci_digest
    )
    v2.provenance = dataclasses.replace(v2.provenance, oci_digest="sha256:" + "12" * 32)
    local.create("signed", v1)
    # Another deployer (another process) reads it from the state file.
    fresh = LocalDeployer(LocalConfig(home=home))
    got = fresh.get("signed").details
    assert (got["signature_fingerprint"], got["oci_digest"]) == (fingerprint, oci_digest)
    local.update("signed", v2)
    got = LocalDeployer(LocalConfig(home=home)).get("signed").details
    assert got["oci_digest"] == "sha256:" + "12" * 32 and "signature_fingerprint" not in got


def test_logs_tail_the_current_server(
    local: LocalDeployer, v1: modelport.Package, v2: modelport.Package
) -> None:
    local.create("logged", v1)
    lines = list(local.logs("logged", tail=50))
    assert any("contract-model 1" in line for line in lines)
    assert len(list(local.logs("logged", tail=2))) == 2
    assert list(local.logs("logged", tail=0)) == []
    local.update("logged", v2)
    lines = list(local.logs("logged", tail=None))
    assert any("contract-model 2" in line for line in lines)
    assert not any("contract-model 1" in line for line in lines)
    with pytest.raises(DeploymentNotFound):
        list(local.logs("absent"))


def test_python_flavor_package_is_served_when_the_caller_opted_in(
    local: LocalDeployer, tmp_path: Path, python_model: Any
) -> None:
    path = tmp_path / "py.mport"
    modelport.pack(
        python_model.source,
        path,
        example=python_model.example,
        artifacts=[python_model.artifact],
        allow_code=True,
    ).close()
    with modelport.load(path, allow_code=True) as package:
        local.create("pyflavor", package)
    answer = local.predict("pyflavor", {"inputs": {"x": [[1.0, 2.0]]}})
    assert answer == {"predictions": [[3.0, 6.0]]}


def test_uri_names_the_home(tmp_path: Path) -> None:
    assert LocalDeployer.options_from_uri(str(tmp_path)) == {"home": str(tmp_path)}
    assert LocalDeployer.options_from_uri("") == {}


def test_config_checks_values() -> None:
    with pytest.raises(ValueError, match="port"):
        LocalConfig(port=70000)
    with pytest.raises(ValueError, match="workers"):
        LocalConfig(workers=0)
    with pytest.raises(ValueError, match="positive"):
        LocalConfig(startup_timeout=0)
    assert LocalConfig(home="~/x").home == Path("~/x").expanduser()  # type: ignore[arg-type]


def test_plan_lists_the_processes_and_touches_nothing(
    local: LocalDeployer, v1: modelport.Package
) -> None:
    actions = {a.step: a for a in local.plan("planned", v1)}
    assert list(actions) == [
        "make-directory",
        "copy-package",
        "start-server",
        "start-proxy",
        "wait-ready",
    ]
    assert "modelport.deployers.local.proxy" in actions["start-proxy"].details["command"]
    assert "serve" in actions["start-server"].details["command"]
    assert not local.home.exists()


def test_the_server_inherits_the_socket_the_target_bound(
    local: LocalDeployer, v1: modelport.Package
) -> None:
    # The port is never free between being picked and being served: the server was handed it.
    local.create("bound", v1)
    server = _state(local, "bound")["server"]
    assert b"--fd" in Path(f"/proc/{server['pid']}/cmdline").read_bytes().split(b"\0")
    with socket.create_connection(("127.0.0.1", server["port"]), timeout=10) as conn:
        conn.sendall(b"GET /ping HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert conn.recv(64).startswith(b"HTTP/1.1 200")


def test_update_cleans_up_after_an_update_that_was_killed_midway(
    local: LocalDeployer, v1: modelport.Package, v2: modelport.Package
) -> None:
    local.create("resume", v1)
    directory = local.root / "resume"
    # What an update killed with SIGKILL leaves: a pending server, its log, a package copy.
    pid = processes.spawn_detached(
        [sys.executable, "-c", "import time; time.sleep(120)", str(directory)],
        log=directory / "server-2.log",
        env=dict(os.environ),
    )
    (directory / "package-2.mport").write_bytes(b"partial copy")
    state = _state(local, "resume")
    state["pending"] = {
        "pid": pid,
        "start_time": processes.start_time(pid),
        "port": _free_port(),
        "log": "server-2.log",
        "generation": 2,
    }
    (directory / "state.json").write_text(json.dumps(state))
    assert local.get("resume").status is DeploymentStatus.UPDATING
    updated = local.update("resume", v2)
    assert updated.package_digest == v2.digest
    assert not processes.is_running(pid)
    assert local.predict("resume", PAYLOAD) == {"predictions": [[2.0, 4.0]]}
    assert "pending" not in _state(local, "resume")


# --- failures inside a step, background jobs ------------------------------------------------


def test_a_server_that_never_starts_fails_the_create_and_leaves_nothing(
    local: LocalDeployer, home: Path, v1: modelport.Package
) -> None:
    # A real failure inside a step (the server exits: modelport serve refuses the option), not
    # a failpoint after it.
    broken = LocalDeployer(LocalConfig(home=home, workers=1, serve_args=("--no-such-option",)))
    with pytest.raises(DeploymentError, match="the server exited while starting"):
        broken.create("never", v1)
    assert not (local.root / "never").exists()
    assert wait_no_processes(str(local.root / "never"), timeout=5.0) == []


def test_concurrent_updates_without_waiting_start_one_job(
    local: LocalDeployer, v1: modelport.Package, v2: modelport.Package
) -> None:
    from modelport.errors import ConflictError

    local.create("busy", v1)
    outcomes: list[str] = []

    def start() -> None:
        try:
            local.update("busy", v2, wait=False)
            outcomes.append("started")
        except ConflictError:
            outcomes.append("conflict")

    threads = [threading.Thread(target=start) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert sorted(outcomes) == ["conflict", "conflict", "conflict", "started"]
    # A foreground update is refused too while the job runs, then the job finishes.
    with pytest.raises(ConflictError, match="still running"):
        local.update("busy", v1)
    TestLocalContract().wait_until_ready(local, "busy", v2.digest)


@pytest.mark.parametrize("when", ["starting", "switched"])
def test_delete_during_a_background_update_leaves_no_process(
    local: LocalDeployer, v1: modelport.Package, v2: modelport.Package, when: str
) -> None:
    from modelport.deployers.kit.waiting import wait_until

    local.create("gone", v1)
    local.update("gone", v2, wait=False)
    key = "pending" if when == "starting" else "retiring"
    state_file = local.root / "gone" / "state.json"
    wait_until(
        lambda: (
            key in json.loads(state_file.read_text()) or _state(local, "gone")["generation"] == 2
        ),
        what=f"the background update to reach {when}",
        timeout_s=60,
        max_interval_s=0.005,
    )
    local.delete("gone")
    assert not (local.root / "gone").exists()
    # The home fixture fails the test if any process of the deployment is left.
