"""examples/plugin_template is a real third-party target: pip-install it into this environment,
then check that modelport finds it, that it passes its own contract tests, and that the CLI
deploys with it."""

from __future__ import annotations

import fcntl
import importlib
import importlib.metadata
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from modelport.plugins.testing import DeployerContract, make_test_package

#: Every check of the contract suite.
CHECKS = {name for name in dir(DeployerContract) if name.startswith("test_")}

TEMPLATE = Path(__file__).resolve().parents[2] / "examples" / "plugin_template"
DIST = "modelport-echo-target"


def _installed_from_template() -> bool:
    """Whether the template is installed, editable, from this checkout (checked afresh)."""
    probe = (
        "import importlib.metadata as m, json, sys\n"
        f"try: d = m.distribution({DIST!r})\n"
        "except m.PackageNotFoundError: sys.exit(1)\n"
        "url = json.loads(d.read_text('direct_url.json') or '{}').get('url', '')\n"
        "print(url)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=False
    )
    return result.returncode == 0 and result.stdout.strip() == TEMPLATE.as_uri()


def _pip_install() -> None:
    command = [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "-e", str(TEMPLATE)]
    try:
        import setuptools

        # Offline when the environment can build it (setuptools >= 70.1 has bdist_wheel).
        if tuple(int(p) for p in setuptools.__version__.split(".")[:2]) >= (70, 1):
            command.insert(-2, "--no-build-isolation")
    except ImportError:
        pass
    result = subprocess.run(command, capture_output=True, text=True, timeout=600, check=False)
    assert result.returncode == 0, f"pip install of the template failed:\n{result.stderr}"


@pytest.fixture(scope="session")
def template_installed() -> None:
    """Install the template into this environment once (a lock guards concurrent test runs)."""
    lock_path = Path(sys.prefix) / ".modelport-plugin-template.lock"
    with open(lock_path, "a+b") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            if not _installed_from_template():
                _pip_install()
                assert _installed_from_template()
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    importlib.invalidate_caches()


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "modelport.cli.main", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=120,
        check=False,
    )


def test_it_is_listed_by_modelport_targets(template_installed: None) -> None:
    result = run("targets", "--json")
    assert result.returncode == 0, result.stderr
    echo = [t for t in json.loads(result.stdout) if t["name"] == "echo"]
    assert echo == [
        {
            "name": "echo",
            "value": "modelport_echo:EchoDeployer",
            "distribution": DIST,
            "version": importlib.metadata.version(DIST),
            "status": "ok",
            "problem": None,
            "extras": [],
            "missing": [],
            "install": None,
        }
    ]
    help_text = run("targets", "help", "echo").stdout
    assert "root  [Path | None]  default: none" in help_text
    assert "simulate" not in help_text  # failures are tested through failpoints, not options
    assert "Verbs: create, update, delete, get, list, predict, logs." in help_text


def test_it_passes_its_contract_suite(template_installed: None) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(TEMPLATE / "tests")],
        capture_output=True,
        text=True,
        cwd=TEMPLATE,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-4000:]
    # Every rule ran (none skipped): every contract check, each step's failure included, + its
    # own test.
    assert re.search(rf"\b{len(CHECKS) + 1} passed\b", result.stdout), result.stdout[-2000:]
    assert "skipped" not in result.stdout


def test_the_cli_deploys_with_it(template_installed: None, tmp_path: Path) -> None:
    package = make_test_package(tmp_path / "m.mport", scale=3.0)
    root = tmp_path / "echo-root"
    target = f"echo:{root}"  # the URI form: the template maps it to its root option
    deployed = run("deploy", str(package), "-t", target, "-n", "hello", "--json")
    assert deployed.returncode == 0, deployed.stderr
    assert json.loads(deployed.stdout)["status"] == "ready"
    assert (root / "hello" / "deployment.json").is_file()
    body = tmp_path / "in.json"
    body.write_text(json.dumps({"instances": [[1, 2]]}))
    predicted = run("deployments", "predict", "-t", target, "-n", "hello", "-i", str(body))
    assert json.loads(predicted.stdout) == {"predictions": [[3.0, 6.0]]}
    # The last step fails (a failpoint, as the contract suite arms them): every step is undone.
    failing = run(
        "deploy",
        str(package),
        "-t",
        target,
        "-n",
        "bad",
        env={"MODELPORT_FAILPOINTS": "echo.create.move-into-place"},
    )
    assert failing.returncode == 1
    assert "failpoint echo.create.move-into-place triggered" in failing.stderr
    assert sorted(p.name for p in root.iterdir()) == ["hello"]
    # The dry run lists the same steps.
    plan = run("deploy", str(package), "-t", target, "-n", "bad", "--dry-run", "--json")
    steps = [a["step"] for a in json.loads(plan.stdout)["actions"]]
    assert steps == ["stage", "copy-package", "write-record", "move-into-place"]
    assert run("deployments", "delete", "-t", target, "-n", "hello").returncode == 0
    assert list(root.iterdir()) == []


def test_the_installed_module_is_the_template_source(template_installed: None) -> None:
    # Editable: the installed target is this checkout's template, so edits to it are tested.
    result = subprocess.run(
        [sys.executable, "-c", "import modelport_echo; print(modelport_echo.__file__)"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert Path(result.stdout.strip()).resolve().is_relative_to(TEMPLATE)
