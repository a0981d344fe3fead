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

from modelport.deployers import connect
from modelport.deployers.base import Deployer
from modelport.deployers.sagemaker import SageMakerDeployer
from modelport.model_format.package import Package
from modelport.plugins.testing import DeployerContract

ROLE = "arn:aws:iam::123456789012:role/modelport-tests"
#: The process hosts ignore the image; the container test pushes and runs a real one.
IMAGE = "127.0.0.1:5000/modelport-runtime:contract"
BUCKET = "modelport-us-east-1-123456789012"


def sagemaker_target(**options: Any) -> SageMakerDeployer:
    """The target as the CLI makes it, pointed at the fake by the environment."""
    target = connect(
        "sagemaker:/us-east-1",
        {"role_arn": ROLE, "image_uri": IMAGE, "startup_timeout": "120", **options},
    )
    assert isinstance(target, SageMakerDeployer)
    return target


def resources(fake: FakeAWS, name: str) -> dict[str, list[str]]:
    """Everything of deployment ``name`` in SageMaker and S3."""
    sm = fake.client("sagemaker", internal=True)
    s3 = fake.client("s3", internal=True)
    models = [m["ModelName"] for m in sm.list_models(NameContains=name)["Models"]]
    configs = [
        c["EndpointConfigName"]
        for c in sm.list_endpoint_configs(NameContains=name)["EndpointConfigs"]
    ]
    endpoints = [e["EndpointName"] for e in sm.list_endpoints(NameContains=name)["Endpoints"]]
    objects: list[str] = []
    if BUCKET in [b["Name"] for b in s3.list_buckets()["Buckets"]]:
        found = s3.list_objects_v2(Bucket=BUCKET, Prefix=f"modelport/{name}/")
        objects = [o["Key"] for o in found.get("Contents") or []]
    return {"models": models, "configs": configs, "endpoints": endpoints, "objects": objects}


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
