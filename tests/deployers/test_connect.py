"""The Python deploy API: connect() configures a target as the CLI does, register() adds a class
in-process, and the README's three-line deploy runs as written."""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

import modelport
from modelport.cli.main import main
from modelport.deployers import (
    Deployer,
    Deployment,
    DeploymentStatus,
    Progress,
    ProgressEvent,
    connect,
    register,
    unregister,
    utcnow,
)
from modelport.deployers.local import LocalDeployer
from modelport.errors import ConfigError, DeploymentNotFound, PluginError, UsageError
from modelport.plugins.registry import REGISTERED, discover, load_target

README = Path(__file__).resolve().parents[2] / "README.md"


@dataclasses.dataclass(frozen=True)
class NotesConfig:
    region: str = dataclasses.field(metadata={"help": "Where the notes go."})
    copies: int = dataclasses.field(default=1, metadata={"help": "How many."})


class Notes(Deployer[NotesConfig]):
    """A target that only remembers what it was asked to deploy (in this process)."""

    name = "notes"
    config_class = NotesConfig
    kept: dict[str, Deployment] = {}

    @classmethod
    def options_from_uri(cls, uri: str) -> dict[str, Any]:
        return {"region": uri.strip("/")}

    def create(self, name: str, package: modelport.Package, *, wait: bool = True) -> Deployment:
        now = utcnow()
        self.kept[name] = Deployment(
            name, self.name, DeploymentStatus.READY, None, package.digest, now, now
        )
        self.progress(f"noted {name} in {self.config.region}")
        return self.kept[name]

    def update(self, name: str, package: modelport.Package, *, wait: bool = True) -> Deployment:
        return self.create(name, package)

    def delete(self, name: str) -> None:
        self.kept.pop(name, None)

    def get(self, name: str) -> Deployment:
        if name not in self.kept:
            raise DeploymentNotFound(name)
        return self.kept[name]

    def list(self) -> Sequence[Deployment]:
        return list(self.kept.values())

    def predict(self, name: str, payload: Mapping[str, Any]) -> dict[str, Any]:
        return {"predictions": []}


@pytest.fixture
def notes() -> Iterator[type[Notes]]:
    register("notes", Notes)
    yield Notes
    unregister("notes")
    Notes.kept.clear()


def test_connect_reads_every_source_as_the_cli_does(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "local.toml"
    config.write_text("port = 1111\nworkers = 2\nstartup_timeout = 5\n")
    monkeypatch.setenv("MODELPORT_LOCAL_PORT", "2222")
    target = connect(f"local:{tmp_path / 'home'}", config_file=config, workers=3)
    assert isinstance(target, LocalDeployer)
    assert target.config.home == tmp_path / "home"  # from the URI
    assert target.config.port == 2222  # the environment beats the file
    assert target.config.workers == 3  # keyword arguments beat everything
    assert target.config.startup_timeout == 5.0
    # Strings, as the CLI passes them, and a mapping of options work the same.
    assert connect("local", {"port": "8123"}, environ={}).config.port == 8123
    assert connect("local", environ={}).config.port == 0  # the environment given, not os.environ


def test_connect_checks_the_options() -> None:
    with pytest.raises(ConfigError, match=r"unknown key 'prot' \(from keyword argument\)"):
        connect("local", prot=80)
    with pytest.raises(ConfigError, match="expected an integer"):
        connect("local", port="eighty")
    with pytest.raises(PluginError, match="unknown target 'lcoal'; did you mean 'local'"):
        connect("lcoal")
    with pytest.raises(UsageError, match="no target name"):
        connect(":x")


def test_a_registered_class_is_a_target(
    notes: type[Notes], package_paths: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    assert load_target("notes") is Notes
    listed = {t.name: t for t in discover()}
    assert listed["notes"].distribution == REGISTERED and listed["notes"].status == "ok"
    events: list[ProgressEvent] = []
    target = connect("notes:/eu-west-1", copies=2, progress=Progress(events.append))
    with modelport.load(package_paths["v1"]) as package:
        target.create("churn", package)
    assert [e.message for e in events] == ["noted churn in eu-west-1"]
    # The CLI, run in this process, finds it too.
    assert main(["deployments", "list", "-t", "notes:/eu-west-1", "--json"]) == 0
    assert [d["name"] for d in json.loads(capsys.readouterr().out)] == ["churn"]
    with pytest.raises(ConfigError, match="region is required"):
        connect("notes")


def test_register_refuses_what_cannot_be_a_target(notes: type[Notes]) -> None:
    with pytest.raises(PluginError, match="that name is taken") as taken:
        register("notes", Notes)
    assert taken.value.hint == "pass replace=True to take it in this process"
    with pytest.raises(PluginError, match="name is taken"):
        register("local", type("Local2", (Notes,), {"name": "local"}))
    with pytest.raises(PluginError, match=r"is not a subclass of modelport\.deployers\.Deployer"):
        register("thing", dict)  # type: ignore[arg-type]
    with pytest.raises(PluginError, match=r"named 'other' but Notes\.name is 'notes'"):
        register("other", Notes)
    register("notes", Notes, replace=True)


def test_the_readme_python_deploy_runs_as_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, package_paths: dict[str, Path], home: Path
) -> None:
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.DOTALL)
    (code,) = [b for b in blocks if "connect(" in b]
    assert (
        len(
            [
                line
                for line in code.splitlines()
                if line and not line.startswith(("#", "from", "import"))
            ]
        )
        == 3
    )
    monkeypatch.chdir(tmp_path)
    (tmp_path / "model.mport").write_bytes(package_paths["v1"].read_bytes())
    namespace: dict[str, Any] = {}
    try:
        exec(compile(code, str(README), "exec"), namespace)
        assert namespace["deployment"].status is DeploymentStatus.READY
        assert namespace["answer"] == {"predictions": [[1.0, 2.0]]}
    finally:
        namespace["target"].delete("demo")
