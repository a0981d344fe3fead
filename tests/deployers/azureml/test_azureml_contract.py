"""The azureml target passes every rule of the Deployer API, against the offline Azure.

Real azure-ai-ml against the HTTPS fake of Resource Manager (``fake_azure.py``), with deployments
that really serve. The contract runs the model-asset form (``-C model_asset=true``): the package
is uploaded to the fake's blob storage, mounted at ``AZUREML_MODEL_DIR`` and served by one
runtime image, so no test builds an image (the baked-in form builds one per package: its tests
are in ``test_azureml_target.py`` and the container test). Beside the contract's own checks,
nothing of a deployment may be left after it is gone, and after a failed update only the
generation still serving may exist.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import pytest
from azureml_support import NOTHING, azureml_target, resources
from fake_azure import FakeAzure

from modelport.deployers.base import Deployer
from modelport.model_format.package import Package
from modelport.plugins.testing import DeployerContract


class TestAzureMLContract(DeployerContract):
    ready_timeout = 120.0

    @pytest.fixture
    def deployer(self, azure: FakeAzure, home: Any, process_images: Any) -> Deployer[Any]:
        self.fake = azure
        return azureml_target(azure, image=process_images.runtime, model_asset="true")

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
        serving = deployer.get(name).details["deployment"]
        generation = serving.rsplit("-g", 1)[1]
        assert resources(self.fake, name) == {
            "endpoint": [name],
            "deployments": [serving],
            "environments": [generation],
            "models": [generation],
        }
