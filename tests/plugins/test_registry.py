"""Target discovery for real: throwaway distributions (a ``.dist-info`` with ``entry_points.txt``
and a module) in a temporary directory put on ``PYTHONPATH``, and ``modelport`` run in a
subprocess that sees them. Nothing of modelport's is mocked."""

from __future__ import annotations

import importlib.metadata
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from modelport.plugins.registry import GROUP, discover, parse_target
from modelport.plugins.testing import make_test_package

GOOD_TARGET = '''
from dataclasses import dataclass, field
from modelport.deployers import Deployer, PlannedAction
from modelport.deployers.kit.errors import ErrorMap, Kind

# How this fake cloud's "SDK" fails: a ConnectionError means the API is unreachable.
ERRORS = ErrorMap(
    "fakecloud",
    lambda exc: Kind.UNAVAILABLE if isinstance(exc, ConnectionError) else None,
    hints={Kind.UNAVAILABLE: "check the fake cloud's address"},
)


@dataclass(frozen=True)
class CloudConfig:
    region: str = field(metadata={"help": "Cloud region to deploy to."})
    instance_count: int = field(default=1, metadata={"help": "How many instances."})


class CloudTarget(Deployer[CloudConfig]):
    """A fake cloud: plans only; create fails the way an SDK does, translated by the kit."""

    name = "fakecloud"
    config_class = CloudConfig

    @classmethod
    def options_from_uri(cls, uri):
        return {"region": uri.strip("/")} if uri.strip("/") else {}

    def plan(self, name, package):
        return [PlannedAction("endpoint", f"create endpoint {name} in {self.config.region}",
                              {"region": self.config.region, "count": self.config.instance_count})]

    def create(self, name, package, *, wait=True):
        with ERRORS.translating("creating the endpoint"):
            raise ConnectionError("cloud unreachable")

    def update(self, name, package, *, wait=True):
        raise KeyError("an SDK error nobody translated")

    def delete(self, name):
        pass

    def get(self, name):
        raise NotImplementedError

    def list(self):
        return []

    def predict(self, name, payload):
        raise NotImplementedError
'''

CRASHY = """
import os, pathlib
marker = os.environ.get("CRASHY_MARKER")
if marker:
    pathlib.Path(marker).write_text("imported")
raise RuntimeError("boom at import")
"""


def make_dist(
    site: Path,
    name: str,
    entry_points: dict[str, str],
    modules: dict[str, str] | None = None,
    requires: list[str] | None = None,
    version: str = "1.0",
) -> None:
    """Install a distribution the way pip leaves one: metadata in .dist-info, modules beside."""
    info = site / f"{name.replace('-', '_')}-{version}.dist-info"
    info.mkdir(parents=True)
    metadata = ["Metadata-Version: 2.1", f"Name: {name}", f"Version: {version}"]
    metadata += [f"Requires-Dist: {r}" for r in requires or []]
    (info / "METADATA").write_text("\n".join(metadata) + "\n")
    lines = [f"[{GROUP}]"] + [f"{k} = {v}" for k, v in entry_points.items()]
    (info / "entry_points.txt").write_text("\n".join(lines) + "\n")
    for module, source in (modules or {}).items():
        (site / f"{module}.py").write_text(textwrap.dedent(source))


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("site")
    make_dist(
        root,
        "fakecloud-plugin",
        {"fakecloud": "fakecloud_plugin:CloudTarget"},
        {"fakecloud_plugin": GOOD_TARGET},
    )
    make_dist(root, "crashy-plugin", {"crashy": "crashy_plugin:Target"}, {"crashy_plugin": CRASHY})
    make_dist(root, "ghost-plugin", {"ghost": "ghost_plugin_not_there.sub:Target"})
    make_dist(
        root,
        "extra-plugin",
        {"needsextra": "extra_plugin:Target [gpu]"},
        {"extra_plugin": "Target = None\n"},
        requires=["nonexistent-package-for-modelport-tests>=1; extra == 'gpu'"],
    )
    make_dist(root, "dup-a", {"twin": "dup_a:Target"}, {"dup_a": "Target = None\n"})
    make_dist(root, "dup-b", {"twin": "dup_b:Target"}, {"dup_b": "Target = None\n"})
    make_dist(
        root,
        "odd-plugin",
        {"notaclass": "odd_plugin:make"},
        {"odd_plugin": "def make():\n    return None\n"},
    )
    make_dist(root, "badvalue-plugin", {"badvalue": "no_colon_here"})
    make_dist(
        root,
        "misnamed-plugin",
        {"misnamed": "misnamed_plugin:Target"},
        {"misnamed_plugin": GOOD_TARGET.replace("CloudTarget", "Target")},
    )
    return root


@pytest.fixture(scope="module")
def package(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_test_package(tmp_path_factory.mktemp("pkg") / "m.mport")


def modelport(
    site: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run the CLI in a fresh interpreter that also sees the throwaway distributions."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("MODELPORT_FAKECLOUD")}
    full_env["PYTHONPATH"] = os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")])
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "modelport.cli.main", *args],
        capture_output=True,
        text=True,
        env=full_env,
        timeout=120,
        check=False,
    )


def listing(
    site: Path, *args: str, env: dict[str, str] | None = None
) -> dict[str, list[dict[str, Any]]]:
    result = modelport(site, "targets", "--json", *args, env=env)
    by_name: dict[str, list[dict[str, Any]]] = {}
    for entry in json.loads(result.stdout):
        by_name.setdefault(entry["name"], []).append(entry)
    return by_name


# --- listing --------------------------------------------------------------------------------


def test_listing_reports_every_status_without_importing_any_target(
    site: Path, tmp_path: Path
) -> None:
    marker = tmp_path / "crashy-imported"
    targets = listing(site, env={"CRASHY_MARKER": str(marker)})
    assert not marker.exists(), "listing targets imported one"

    (local,) = targets["local"]
    assert (local["status"], local["distribution"]) == ("ok", "modelport")
    assert local["extras"] == ["serve"]
    (cloud,) = targets["fakecloud"]
    assert (cloud["status"], cloud["distribution"], cloud["version"]) == (
        "ok",
        "fakecloud-plugin",
        "1.0",
    )
    # Import errors need an import to be seen: listing says ok, --check and selecting say broken.
    assert targets["crashy"][0]["status"] == "ok"

    (ghost,) = targets["ghost"]
    assert ghost["status"] == "broken"
    assert "module 'ghost_plugin_not_there.sub' not found" in ghost["problem"]

    (extra,) = targets["needsextra"]
    assert extra["status"] == "missing extra"
    assert extra["missing"] == ["nonexistent-package-for-modelport-tests"]
    assert extra["install"] == "pip install 'extra-plugin[gpu]'"

    twins = targets["twin"]
    assert sorted(t["distribution"] for t in twins) == ["dup-a", "dup-b"]
    for twin in twins:
        assert twin["status"] == "broken"
        assert "dup-a" in twin["problem"] and "dup-b" in twin["problem"]

    assert targets["badvalue"][0]["status"] == "broken"
    assert "must name a class as 'module:Class'" in targets["badvalue"][0]["problem"]


def test_human_listing_explains_each_problem(site: Path) -> None:
    result = modelport(site, "targets")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["TARGET", "STATUS", "DISTRIBUTION", "VERSION"]
    assert any(line.split()[:3] == ["local", "ok", "modelport"] for line in lines)
    assert (
        "needsextra (extra-plugin): needs nonexistent-package-for-modelport-tests" in result.stdout
    )
    assert "install it with: pip install 'extra-plugin[gpu]'" in result.stdout
    assert "twin (dup-a): target name 'twin' is claimed by more than one plugin" in result.stdout


def test_check_imports_each_target_and_exits_3_when_one_is_broken(site: Path) -> None:
    result = modelport(site, "targets", "--check", "--json")
    assert result.returncode == 3
    targets = {t["name"]: t for t in json.loads(result.stdout)}
    assert targets["crashy"]["status"] == "broken"
    assert targets["crashy"]["problem"] == (
        "importing 'crashy_plugin:Target' failed: RuntimeError: boom at import"
    )
    assert "is not a subclass of modelport.deployers.Deployer" in targets["notaclass"]["problem"]
    assert "named 'misnamed' but Target.name is 'fakecloud'" in targets["misnamed"]["problem"]
    assert targets["local"]["status"] == "ok"
    assert targets["fakecloud"]["status"] == "ok"
    assert "broken targets: " in result.stderr


def test_without_plugins_check_passes() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "modelport.cli.main", "targets", "--check"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


# --- selecting ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        (
            "crashy",
            "target 'crashy' from distribution crashy-plugin 1.0 is broken: importing "
            "'crashy_plugin:Target' failed: RuntimeError: boom at import",
        ),
        ("needsextra", "install it with: pip install 'extra-plugin[gpu]'"),
        ("twin", "claimed by more than one plugin: dup-a 1.0 (dup_a:Target) and dup-b 1.0"),
        ("ghost", "from distribution ghost-plugin 1.0 is broken: module"),
        ("notaclass", "is not a subclass of modelport.deployers.Deployer"),
        ("locla", "unknown target 'locla'; did you mean 'local'?"),
    ],
)
def test_selecting_an_unusable_target_exits_3_and_says_why(
    site: Path, package: Path, target: str, expected: str
) -> None:
    result = modelport(site, "deploy", str(package), "-t", target, "-n", "x", "--dry-run")
    assert result.returncode == 3, result.stderr
    assert expected in result.stderr
    assert "Traceback" not in result.stderr


def test_other_targets_keep_working_beside_broken_ones(
    site: Path, package: Path, tmp_path: Path
) -> None:
    env = {"MODELPORT_HOME": str(tmp_path / "home")}
    result = modelport(
        site, "deploy", str(package), "-t", "local", "-n", "ok", "--dry-run", env=env
    )
    assert result.returncode == 0, result.stderr
    assert "Nothing was created." in result.stdout
    result = modelport(site, "deployments", "list", "-t", "local", env=env)
    assert (result.returncode, result.stdout.strip()) == (0, "No deployments on target local.")
    result = modelport(site, "targets", "help", "local")
    assert result.returncode == 0


def test_a_target_translates_its_sdk_errors_through_the_kit(site: Path, package: Path) -> None:
    result = modelport(site, "deploy", str(package), "-t", "fakecloud:/eu-west-1", "-n", "x")
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        "Error: creating the endpoint failed on target 'fakecloud' (unavailable): "
        "cloud unreachable",
        "  hint: check the fake cloud's address",
    ]
    result = modelport(
        site, "deploy", str(package), "-t", "fakecloud:/eu-west-1", "-n", "x", "--json"
    )
    assert json.loads(result.stdout) == {
        "error": {
            "type": "TargetUnavailableError",
            "message": "creating the endpoint failed on target 'fakecloud' (unavailable): "
            "cloud unreachable",
            "hint": "check the fake cloud's address",
            "reference": None,
            "exit_code": 1,
        }
    }


def test_an_error_a_target_does_not_translate_is_reported_as_a_bug(
    site: Path, package: Path
) -> None:
    args = ["deployments", "update", str(package), "-t", "fakecloud:/eu-west-1", "-n", "x"]
    result = modelport(site, *args)
    assert result.returncode == 1
    assert "Error: unexpected KeyError: 'an SDK error nobody translated'" in result.stderr
    assert "This is a bug in modelport or a plugin; run again with --debug" in result.stderr
    assert "Traceback" not in result.stderr
    assert "Traceback" in modelport(site, "--debug", *args).stderr
    error = json.loads(modelport(site, *args, "--json").stdout)["error"]
    assert (error["type"], error["exit_code"]) == ("KeyError", 1)
    assert "a bug in modelport or a plugin" in error["hint"]


# --- config and URIs through a plugin -------------------------------------------------------


def test_missing_required_option_exits_2_naming_every_source(site: Path, package: Path) -> None:
    result = modelport(site, "deploy", str(package), "-t", "fakecloud", "-n", "x", "--dry-run")
    assert result.returncode == 2
    assert (
        "region is required: pass -C region=..., set MODELPORT_FAKECLOUD_REGION, or put region "
        "in the --config-file" in result.stderr
    )


def test_uri_env_and_cli_feed_the_target_config_in_order(
    site: Path, package: Path, tmp_path: Path
) -> None:
    def planned(*args: str, env: dict[str, str] | None = None) -> dict[str, Any]:
        result = modelport(
            site, "deploy", str(package), "-n", "x", "--dry-run", "--json", *args, env=env
        )
        assert result.returncode == 0, result.stderr
        details: dict[str, Any] = json.loads(result.stdout)["actions"][0]["details"]
        return details

    assert planned("-t", "fakecloud:/eu-west-1")["region"] == "eu-west-1"
    env = {"MODELPORT_FAKECLOUD_REGION": "ap-south-1", "MODELPORT_FAKECLOUD_INSTANCE_COUNT": "3"}
    assert planned("-t", "fakecloud", env=env) == {"region": "ap-south-1", "count": 3}
    assert planned("-t", "fakecloud:/eu-west-1", env=env)["region"] == "eu-west-1"
    assert planned("-t", "fakecloud:/eu-west-1", "-C", "region=us-east-1")["region"] == "us-east-1"
    config = tmp_path / "cloud.toml"
    config.write_text('region = "from-file"\ninstance_count = 5\n')
    assert planned("-t", "fakecloud", "--config-file", str(config)) == {
        "region": "from-file",
        "count": 5,
    }
    assert planned("-t", "fakecloud", "--config-file", str(config), env=env)["count"] == 3


def test_targets_help_for_a_plugin(site: Path) -> None:
    result = modelport(site, "targets", "help", "fakecloud")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "Target fakecloud  (fakecloud-plugin 1.0, fakecloud_plugin:CloudTarget)" in out
    assert "A fake cloud: plans only" in out
    assert "region  [str]  default: (required)" in out
    assert "Cloud region to deploy to." in out
    assert "env: MODELPORT_FAKECLOUD_REGION" in out
    assert "instance_count  [int]  default: 1" in out
    assert "environment variables MODELPORT_FAKECLOUD_<KEY>" in out
    assert "Verbs: create, update, delete, get, list, predict." in out
    result = modelport(site, "targets", "help", "needsextra")
    assert result.returncode == 3
    assert "pip install 'extra-plugin[gpu]'" in result.stderr


# --- in-process ------------------------------------------------------------------------------


def test_discover_reads_metadata_only(site: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The plugins' modules are importable here, yet discovery must not import them.
    monkeypatch.syspath_prepend(str(site))
    eps = [
        ep
        for dist in importlib.metadata.distributions(path=[str(site)])
        for ep in dist.entry_points
        if ep.group == GROUP
    ]
    infos = {(i.name, i.distribution): i for i in discover(eps)}
    assert infos[("needsextra", "extra-plugin")].status == "missing extra"
    assert infos[("twin", "dup-a")].status == "broken"
    assert infos[("fakecloud", "fakecloud-plugin")].status == "ok"
    assert "fakecloud_plugin" not in sys.modules


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("local", ("local", None)),
        ("sagemaker:/eu-west-1", ("sagemaker", "/eu-west-1")),
        ("local:", ("local", "")),
        ("azureml:/sub/rg/ws", ("azureml", "/sub/rg/ws")),
    ],
)
def test_parse_target(spec: str, expected: tuple[str, str | None]) -> None:
    assert parse_target(spec) == expected


def test_a_verb_the_target_lacks_exits_2(site: Path) -> None:
    result = modelport(site, "deployments", "logs", "-t", "fakecloud:/eu", "-n", "x")
    assert result.returncode == 2
    assert "target 'fakecloud' does not provide logs" in result.stderr
