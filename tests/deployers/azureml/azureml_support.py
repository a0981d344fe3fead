"""What the azureml target's tests share: the target as the CLI makes it, pointed at the fake,
what a deployment left in Azure, and the answer a deployment must give.

Imported by module name (``from azureml_support import ...``), like ``fake_azure``: pytest puts
this folder on ``sys.path``.
"""

from __future__ import annotations

from typing import Any

from fake_azure import RESOURCE_GROUP, SUBSCRIPTION, WORKSPACE, FakeAzure
from predictions import PAYLOAD, expected, same_predictions  # noqa: F401 (theirs too)

from modelport import __version__
from modelport.deployers import connect
from modelport.deployers.azureml import AzureMLDeployer
from modelport.model_format.package import Package

TARGET_URI = f"azureml:/{SUBSCRIPTION}/{RESOURCE_GROUP}/{WORKSPACE}"


def fake_options(fake: FakeAzure) -> dict[str, str]:
    """The options that point the target at the fake: its Resource Manager, CA and ``az``."""
    return {
        "resource_manager_url": fake.resource_manager_url,
        "ca_bundle": str(fake.ca_pem),
        "credential": "cli",
        "startup_timeout": "120",
    }


def azureml_target(fake: FakeAzure, **options: Any) -> AzureMLDeployer:
    """The target as the CLI makes it (``-t azureml:/SUB/RG/WS`` and ``-C``), on the fake."""
    target = connect(TARGET_URI, {**fake_options(fake), **{k: str(v) for k, v in options.items()}})
    assert isinstance(target, AzureMLDeployer)
    return target


def resources(fake: FakeAzure, name: str) -> dict[str, Any]:
    """Everything of deployment ``name`` in the fake: endpoint, deployments, versions, blobs."""
    asset = f"modelport-{name}"
    endpoint = fake.endpoint(name)
    return {
        "endpoint": [name] if endpoint is not None else [],
        "deployments": sorted(fake.deployments(name)) if endpoint is not None else [],
        "environments": list(fake.environments().get(asset, [])),
        "models": list(fake.models().get(asset, [])),
    }


def only_generation(name: str, *generations: int, models: bool = False) -> dict[str, Any]:
    """What :func:`resources` says when exactly ``generations`` of ``name`` exist."""
    gens = sorted(generations)
    return {
        "endpoint": [name] if gens else [],
        "deployments": [f"modelport-g{g}" for g in gens],
        "environments": [str(g) for g in gens],
        "models": [str(g) for g in gens] if models else [],
    }


NOTHING: dict[str, Any] = {"endpoint": [], "deployments": [], "environments": [], "models": []}


def modelport_tags(package: Package, name: str, generation: int) -> dict[str, str]:
    """The tags modelport puts on a generation's deployment, environment and model."""
    return {
        "modelport-package-digest": package.digest,
        "modelport-package-name": package.name,
        "modelport-package-version": package.version,
        "modelport-flavor": package.manifest.flavor.name,
        "modelport-modelport-version": __version__,
        "modelport-deployment": name,
        "modelport-target": "azureml",
        "modelport-generation": str(generation),
    }
