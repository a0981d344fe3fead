"""What the sagemaker target's tests share: the target as the CLI makes it, what a deployment
left in SageMaker and S3, the tags modelport puts on every resource, and the in-process answer a
deployment must give.

Imported by module name (``from sagemaker_support import ...``), like ``fake_aws``: pytest puts
this folder on ``sys.path``.
"""

from __future__ import annotations

from typing import Any

from fake_aws import ACCOUNT, REGION, FakeAWS
from predictions import PAYLOAD, expected, same_predictions  # noqa: F401 (theirs too)

from modelport import __version__
from modelport.deployers import connect
from modelport.deployers.sagemaker import SageMakerDeployer
from modelport.model_format.package import Package

ROLE = f"arn:aws:iam::{ACCOUNT}:role/modelport-tests"
#: The process hosts ignore the image; the container test pushes and runs a real one.
IMAGE = "127.0.0.1:5000/modelport-runtime:contract"
#: The bucket the target uses by default in the fake's account (``modelport-REGION-ACCOUNT``).
BUCKET = f"modelport-{REGION}-{ACCOUNT}"


def bucket_of(region: str = REGION) -> str:
    """The target's default bucket in ``region``."""
    return f"modelport-{region}-{ACCOUNT}"


def sagemaker_target(**options: Any) -> SageMakerDeployer:
    """The target as the CLI makes it, pointed at the fake by the environment."""
    target = connect(
        "sagemaker:/us-east-1",
        {"role_arn": ROLE, "image_uri": IMAGE, "startup_timeout": "120", **options},
    )
    assert isinstance(target, SageMakerDeployer)
    return target


def resources(fake: FakeAWS, name: str, region: str = REGION) -> dict[str, list[str]]:
    """Everything of deployment ``name`` in SageMaker and S3 (the default bucket)."""
    sm = fake.client("sagemaker", internal=True, region=region)
    s3 = fake.client("s3", internal=True, region=region)
    models = [m["ModelName"] for m in sm.list_models(NameContains=name)["Models"]]
    configs = [
        c["EndpointConfigName"]
        for c in sm.list_endpoint_configs(NameContains=name)["EndpointConfigs"]
    ]
    endpoints = [e["EndpointName"] for e in sm.list_endpoints(NameContains=name)["Endpoints"]]
    objects: list[str] = []
    bucket = bucket_of(region)
    if bucket in [b["Name"] for b in s3.list_buckets()["Buckets"]]:
        found = s3.list_objects_v2(Bucket=bucket, Prefix=f"modelport/{name}/")
        objects = [o["Key"] for o in found.get("Contents") or []]
    return {
        "models": sorted(models),
        "configs": sorted(configs),
        "endpoints": endpoints,
        "objects": sorted(objects),
    }


def only_generation(name: str, *generations: int) -> dict[str, list[str]]:
    """What :func:`resources` says when exactly ``generations`` of ``name`` exist (and its
    endpoint)."""
    gens = sorted(generations)
    return {
        "models": [f"{name}-g{g}" for g in gens],
        "configs": [f"{name}-g{g}" for g in gens],
        "endpoints": [name] if gens else [],
        "objects": [f"modelport/{name}/g{g}/model.tar.gz" for g in gens],
    }


NOTHING = {"models": [], "configs": [], "endpoints": [], "objects": []}


def modelport_tags(package: Package, name: str, generation: int) -> dict[str, str]:
    """The tags modelport puts on every resource of generation ``generation`` of ``name``."""
    return {
        "modelport:package-digest": package.digest,
        "modelport:package-name": package.name,
        "modelport:package-version": package.version,
        "modelport:flavor": package.manifest.flavor.name,
        "modelport:modelport-version": __version__,
        "modelport:deployment": name,
        "modelport:target": "sagemaker",
        "modelport:generation": str(generation),
    }


def tags_of(fake: FakeAWS, arn: str, region: str = REGION) -> dict[str, str]:
    """A SageMaker resource's tags, as a dict."""
    found = fake.client("sagemaker", internal=True, region=region).list_tags(ResourceArn=arn)
    return {t["Key"]: t["Value"] for t in found["Tags"]}


def wait_logged(fake: FakeAWS, name: str, region: str = REGION) -> list[str]:
    """Wait until the endpoint's log has its model's "ready" line (the last a starting server
    prints; a host's output reaches CloudWatch a moment after it is written); the log then."""
    from modelport.deployers.kit.waiting import wait_until

    wait_until(
        lambda: any(" ready in " in line for line in fake.log_lines(name, region=region)),
        what=f"the 'ready' line in the log of {name}",
        timeout_s=30,
        max_interval_s=0.1,
        log=lambda: fake.log_lines(name, region=region),
    )
    return fake.log_lines(name, region=region)


def mutating(operation: str) -> bool:
    """Whether an AWS operation changes something (not a Describe/List/Get/Head)."""
    return not operation.startswith(("Describe", "List", "Get", "Head"))


def foreign_config(fake: FakeAWS, name: str, model: str) -> None:
    """An endpoint config of one ml.m5.large instance of ``model``, made outside modelport."""
    fake.client("sagemaker", internal=True).create_endpoint_config(
        EndpointConfigName=name,
        ProductionVariants=[
            {
                "VariantName": "AllTraffic",
                "ModelName": model,
                "InstanceType": "ml.m5.large",
                "InitialInstanceCount": 1,
            }
        ],
    )
