"""The vertex target passes every rule of the Deployer API, against the offline Vertex.

Real google-cloud-aiplatform (REST transport) against the fake of Vertex's REST API
(``fake_vertex.py``), with deployed models that really serve: each create and update builds the
package's serving image with modelport's kit (on the cached runtime image), pushes it to the
local registry, and the fake runs what the image holds as Vertex runs a custom container. Beside
the contract's own checks, nothing of a deployment may be left after it is gone, and after a
failed update only the generation still serving may exist.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from fake_vertex import FakeVertex
from vertex_support import NOTHING, resources, vertex_target

from modelport.deployers.base import Deployer
from modelport.model_format.package import Package
from modelport.plugins.testing import DeployerContract


class TestVertexContract(DeployerContract):
    ready_timeout = 120.0

    @pytest.fixture
    def deployer(
        self, vertex: FakeVertex, home: Any, key_file: Path, image_builds: None
    ) -> Deployer[Any]:
        self.fake = vertex
        return vertex_target(vertex, key_file)

    def start_canary(self, deployer: Deployer[Any], name: str, package: Package) -> None:
        canary = type(deployer)(dataclasses.replace(deployer.config, canary_percent=10))
        canary.update(name, package)

    def assert_gone(self, deployer: Deployer[Any], name: str) -> None:
        super().assert_gone(deployer, name)
        assert resources(self.fake, name) == NOTHING

    def assert_serves(
        self, deployer: Deployer[Any], name: str, package: Package, payload: Mapping[str, Any]
    ) -> None:
        super().assert_serves(deployer, name, package, payload)
        record = deployer.get(name)
        serving = record.details["deployment"]
        version = record.details["deployed_models"][serving]["model_version"]
        assert resources(self.fake, name) == {
            "endpoint": [name],
            "deployed": [serving],
            "versions": [version],
        }
