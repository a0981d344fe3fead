"""The sagemaker target passes every rule of the Deployer API, against the offline AWS.

Real boto3 against moto on 127.0.0.1, with endpoints that really serve the uploaded
``model.tar.gz`` (``fake_aws.py``). Beside the contract's own checks, nothing of a deployment may
be left in SageMaker or S3 after it is gone, and after a failed update only the generation still
serving may exist.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest
from fake_aws import FakeAWS
from sagemaker_support import BUCKET, IMAGE, ROLE, resources, sagemaker_target  # noqa: F401

from modelport.deployers.base import Deployer
from modelport.model_format.package import Package
from modelport.plugins.testing import DeployerContract

# ROLE, IMAGE and BUCKET live in sagemaker_support.py now; they stay importable from here.


class TestSageMakerContract(DeployerContract):
    ready_timeout = 120.0

    @pytest.fixture
    def deployer(self, aws: FakeAWS, home: Any) -> Deployer[Any]:
        self.fake = aws
        return sagemaker_target()

    def assert_gone(self, deployer: Deployer[Any], name: str) -> None:
        super().assert_gone(deployer, name)
        assert resources(self.fake, name) == {
            "models": [],
            "configs": [],
            "endpoints": [],
            "objects": [],
        }

    def assert_serves(
        self, deployer: Deployer[Any], name: str, package: Package, payload: Mapping[str, Any]
    ) -> None:
        super().assert_serves(deployer, name, package, payload)
        serving = deployer.get(name).details["endpoint_config"]
        generation = deployer.get(name).details["generation"]
        assert resources(self.fake, name) == {
            "models": [serving],
            "configs": [serving],
            "endpoints": [name],
            "objects": [f"modelport/{name}/g{generation}/model.tar.gz"],
        }
