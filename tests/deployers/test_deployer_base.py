"""The Deployer base class: its defaults for optional hooks, and its records."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

import modelport
from modelport.deployers import Deployer, Deployment, DeploymentStatus, PlannedAction, utcnow
from modelport.deployers.base import describe_config
from modelport.errors import ConfigError, NotSupportedError, UsageError


@dataclass(frozen=True)
class NeedsRegion:
    region: str = field(metadata={"help": "Where."})
    size: int = 1


class Minimal(Deployer[NeedsRegion]):
    """Implements the abstract verbs only, to show the defaults of everything else."""

    name = "minimal"
    config_class = NeedsRegion

    def create(self, name: str, package: Any, *, wait: bool = True) -> Deployment:
        raise NotImplementedError

    def update(self, name: str, package: Any) -> Deployment:
        raise NotImplementedError

    def delete(self, name: str) -> None:
        raise NotImplementedError

    def get(self, name: str) -> Deployment:
        raise NotImplementedError

    def list(self) -> Sequence[Deployment]:
        return []

    def predict(self, name: str, payload: Mapping[str, Any]) -> dict[str, Any]:
        raise NotImplementedError


def test_required_options_are_needed_to_construct() -> None:
    with pytest.raises(ConfigError, match="region is required"):
        Minimal()
    deployer = Minimal(NeedsRegion(region="eu"), target_uri=None)
    assert deployer.config.region == "eu"


def test_a_target_takes_no_uri_unless_it_says_so() -> None:
    assert Minimal.options_from_uri("") == {}
    assert Minimal.options_from_uri("/") == {}
    with pytest.raises(ConfigError, match=r"takes no URI; use -t minimal \(got minimal:/eu\)"):
        Minimal.options_from_uri("/eu")


def test_logs_are_optional() -> None:
    assert not Minimal.supports_logs()
    with pytest.raises(NotSupportedError, match="does not provide logs") as info:
        Minimal(NeedsRegion("eu")).logs("x")
    assert isinstance(info.value, UsageError)


@pytest.mark.parametrize("name", ["a", "model-1", "x" * 63, "0abc"])
def test_good_names(name: str) -> None:
    Minimal(NeedsRegion("eu")).check_name(name)


@pytest.mark.parametrize("name", ["", "A", "-a", "a-", "a_b", "a.b", "x" * 64, "a/b"])
def test_bad_names(name: str) -> None:
    with pytest.raises(UsageError, match="invalid deployment name"):
        Minimal(NeedsRegion("eu")).check_name(name)


def test_progress_goes_to_the_callback_when_there_is_one() -> None:
    seen: list[str] = []
    Minimal(NeedsRegion("eu"), progress=seen.append).progress("step")
    Minimal(NeedsRegion("eu")).progress("nobody listens")
    assert seen == ["step"]


def test_default_plan_names_the_package_and_config(
    tmp_path: Path, package_paths: dict[str, Path]
) -> None:
    with modelport.load(package_paths["v1"]) as package:
        (action,) = Minimal(NeedsRegion("eu")).plan("demo", package)
    assert isinstance(action, PlannedAction)
    assert package.digest in action.description
    assert action.details["config"] == {"region": "eu", "size": 1}
    assert json.loads(json.dumps(action.to_dict()))["kind"] == "deployment"


def test_deployment_record_as_json() -> None:
    when = datetime(2024, 5, 1, 12, 0, tzinfo=timezone.utc)
    record = Deployment("d", "t", DeploymentStatus.READY, None, "sha256:ab", when, when, {"k": 1})
    assert record.to_dict() == {
        "name": "d",
        "target": "t",
        "status": "ready",
        "endpoint": None,
        "package_digest": "sha256:ab",
        "created_at": "2024-05-01T12:00:00+00:00",
        "updated_at": "2024-05-01T12:00:00+00:00",
        "details": {"k": 1},
    }
    assert utcnow().tzinfo is timezone.utc and utcnow().microsecond == 0


def test_describe_config() -> None:
    described = describe_config(Minimal)
    assert described["region"] == {
        "type": "str",
        "required": True,
        "default": None,
        "help": "Where.",
        "env": "MODELPORT_MINIMAL_REGION",
    }
    assert described["size"]["default"] == "1"
