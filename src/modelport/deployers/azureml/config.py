"""The options of the ``azureml`` target, checked against Azure ML's rules before any call."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from modelport.errors import ConfigError

#: Clouds azure-ai-ml knows by name; any other is reached through ``resource_manager_url``.
CLOUDS = ("AzureCloud", "AzureChinaCloud", "AzureUSGovernment")
CREDENTIALS = ("default", "cli", "environment", "managed_identity", "workload_identity")
AUTH_MODES = ("key", "aad_token")
#: Azure ML's longest request timeout (request_settings.request_timeout_ms).
MAX_REQUEST_TIMEOUT_MS = 180_000
#: Azure ML mirrors at most half of the live traffic.
MAX_MIRROR_PERCENT = 50
#: What a probe setting (liveness_probe, readiness_probe) may hold: azure-ai-ml's ProbeSettings.
PROBE_KEYS = ("initial_delay", "period", "timeout", "failure_threshold", "success_threshold")
#: The tags Azure takes per resource, and how many of them modelport's own facts use.
MAX_TAGS = 50
OWN_TAGS = 8
_RESOURCE_GROUP = re.compile(r"^[-\w._()]{1,90}$")
_WORKSPACE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_-]{2,32}$")
_SUBSCRIPTION = re.compile(r"^[0-9a-fA-F]{8}-([0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}$")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
#: Where the workspace's coordinates come from when -C does not give them (first found wins).
ENV_SUBSCRIPTION = ("AZURE_SUBSCRIPTION_ID", "AZUREML_ARM_SUBSCRIPTION")
ENV_RESOURCE_GROUP = ("AZURE_RESOURCE_GROUP", "AZUREML_ARM_RESOURCEGROUP")
ENV_WORKSPACE = ("AZUREML_WORKSPACE_NAME", "AZUREML_ARM_WORKSPACE_NAME")
WORKSPACE_CONFIG = "config.json"


def _probe_value_ok(key: str, value: Any) -> bool:
    """Probe settings are whole numbers: at least 1, or 0 for the initial delay."""
    low = 0 if key == "initial_delay" else 1
    return isinstance(value, int) and not isinstance(value, bool) and value >= low


@dataclass(frozen=True)
class AzureMLConfig:
    """Options of the ``azureml`` target.

    The workspace is ``subscription_id``, ``resource_group`` and ``workspace`` (also:
    ``-t azureml:/SUBSCRIPTION/RESOURCE_GROUP/WORKSPACE``, the workspace's ``config.json`` in
    this directory or a parent, or ``AZURE_SUBSCRIPTION_ID``, ``AZURE_RESOURCE_GROUP`` and
    ``AZUREML_WORKSPACE_NAME``). Only ``create`` and ``update`` need the image settings.
    """

    subscription_id: str | None = field(
        default=None,
        metadata={
            "help": "Subscription of the workspace (also: -t azureml:/SUB/RG/WS); default "
            "the workspace's config.json, else $AZURE_SUBSCRIPTION_ID."
        },
    )
    resource_group: str | None = field(
        default=None,
        metadata={
            "help": "Resource group of the workspace; default config.json, else "
            "$AZURE_RESOURCE_GROUP."
        },
    )
    workspace: str | None = field(
        default=None,
        metadata={
            "help": "Azure ML workspace name; default config.json, else $AZUREML_WORKSPACE_NAME."
        },
    )
    workspace_config: Path | None = field(
        default=None,
        metadata={
            "help": "The workspace's config.json (subscription_id, resource_group, "
            "workspace_name); default one found in . or a parent (also in .azureml/)."
        },
    )
    cloud: str = field(
        default="AzureCloud",
        metadata={"help": "AzureCloud, AzureChinaCloud or AzureUSGovernment."},
    )
    resource_manager_url: str | None = field(
        default=None,
        metadata={
            "help": "Any other cloud's Resource Manager (https://...); its other endpoints are "
            "read from its /metadata/endpoints."
        },
    )
    ca_bundle: Path | None = field(
        default=None,
        metadata={
            "help": "CA bundle to trust for Azure's APIs and the scoring URI (a private "
            "cloud's); default the system's, or $REQUESTS_CA_BUNDLE."
        },
    )
    credential: str = field(
        default="default",
        metadata={
            "help": "default (azure-identity's chain), cli (az login), environment "
            "(AZURE_CLIENT_ID/SECRET/TENANT_ID), managed_identity or workload_identity."
        },
    )
    client_id: str | None = field(
        default=None,
        metadata={"help": "Client id of a user-assigned managed identity (managed_identity)."},
    )
    registry: str | None = field(
        default=None,
        metadata={
            "help": "Registry the serving image is pushed to (NAME.azurecr.io or any; log in "
            "first with az acr login or docker login); the workspace must be able to pull it."
        },
    )
    repository: str = field(
        default="modelport",
        metadata={
            "help": "Repository in the registry: <repository>-model:<digest> images hold a "
            "package, <repository>-runtime:<key> images serve a model asset."
        },
    )
    image: str | None = field(
        default=None,
        metadata={"help": "Serving image to use as is (nothing is built); a modelport image."},
    )
    model_asset: bool = field(
        default=False,
        metadata={
            "help": "Register the package as a custom_model asset that Azure mounts at "
            "AZUREML_MODEL_DIR, served by the shared runtime image; default bake it in the image."
        },
    )
    base_image: str | None = field(
        default=None,
        metadata={"help": "Image the serving image builds on; default python:<x.y>-slim."},
    )
    index_url: str | None = field(
        default=None, metadata={"help": "Python package index the image build installs from."}
    )
    pip_cert: Path | None = field(
        default=None,
        metadata={"help": "CA bundle pip trusts during the image build; default $PIP_CERT."},
    )
    docker_host: str | None = field(
        default=None,
        metadata={"help": "Docker Engine API that builds and pushes; default $DOCKER_HOST."},
    )
    auth_mode: str = field(
        default="key",
        metadata={"help": "How the endpoint authenticates callers: key or aad_token."},
    )
    instance_type: str | None = field(
        default=None,
        metadata={
            "help": "VM size of the deployment; default Standard_DS3_v2 (an update keeps the "
            "deployment's)."
        },
    )
    instance_count: int | None = field(
        default=None,
        metadata={"help": "Instances; default 1 (an update keeps the deployment's)."},
    )
    environment_variables: dict[str, str] = field(
        default_factory=dict,
        metadata={"help": "Extra container environment, as a JSON object."},
    )
    request_timeout_ms: int | None = field(
        default=None,
        metadata={"help": "Scoring request timeout, 1-180000 ms; default Azure's (5000)."},
    )
    max_concurrent_requests_per_instance: int | None = field(
        default=None,
        metadata={"help": "Requests an instance takes at once; default Azure's (1)."},
    )
    liveness_probe: dict[str, int] = field(
        default_factory=dict,
        metadata={
            "help": "Liveness probe settings, a JSON object of initial_delay, period, timeout, "
            "failure_threshold, success_threshold (seconds and counts)."
        },
    )
    readiness_probe: dict[str, int] = field(
        default_factory=dict,
        metadata={"help": "Readiness probe settings, the same keys as liveness_probe."},
    )
    canary_percent: int = field(
        default=0,
        metadata={
            "help": "An update stops with this share (1-99) of live traffic on the new "
            "version; then 'deployments promote' or 'rollback'."
        },
    )
    mirror_percent: int = field(
        default=0,
        metadata={
            "help": "An update mirrors this share (1-50) of live traffic to the new version, "
            "which answers none of it; then 'deployments promote' or 'rollback'."
        },
    )
    tags: dict[str, str] = field(
        default_factory=dict, metadata={"help": "Extra tags on every resource, a JSON object."}
    )
    startup_timeout: float = field(
        default=1800.0,
        metadata={"help": "Seconds a deployment may take to be provisioned (create or update)."},
    )

    def __post_init__(self) -> None:
        problems = self.problems()
        if problems:
            raise ValueError("; ".join(problems))
        for key in ("pip_cert", "ca_bundle", "workspace_config"):
            value: Any = getattr(self, key)  # the Python API may pass a str
            if value is not None and not isinstance(value, Path):
                object.__setattr__(self, key, Path(value))

    @property
    def splits_traffic(self) -> bool:
        """An update stops half-way (a canary or a mirror) for promote or rollback."""
        return bool(self.canary_percent or self.mirror_percent)

    def problems(self) -> list[str]:
        """Everything Azure ML would refuse in these options, found before any call."""
        found: list[str] = []
        if self.subscription_id is not None and not _SUBSCRIPTION.match(self.subscription_id):
            found.append(f"subscription_id must be a GUID, got {self.subscription_id!r}")
        if self.resource_group is not None and not _RESOURCE_GROUP.match(self.resource_group):
            found.append(f"resource_group {self.resource_group!r} is not a resource group name")
        if self.workspace is not None and not _WORKSPACE.match(self.workspace):
            found.append(
                f"workspace {self.workspace!r}: 3-33 letters, digits, '-' and '_', starting "
                "with a letter or digit"
            )
        if self.cloud not in CLOUDS:
            found.append(
                f"cloud must be one of {', '.join(CLOUDS)} (another cloud: -C "
                f"resource_manager_url=https://...), got {self.cloud!r}"
            )
        url = self.resource_manager_url
        if url is not None and not re.match(r"^https://[^/\s]+(/.*)?$", url):
            found.append(
                f"resource_manager_url must be an https:// URL (azure-core sends tokens over "
                f"TLS only), got {url!r}"
            )
        if self.credential not in CREDENTIALS:
            found.append(f"credential must be one of {', '.join(CREDENTIALS)}")
        if self.client_id and self.credential not in ("managed_identity", "default"):
            found.append("client_id is for credential=managed_identity (or default)")
        if self.auth_mode not in AUTH_MODES:
            found.append(f"auth_mode must be one of {', '.join(AUTH_MODES)}")
        if self.image and self.registry:
            found.append("image is used as is: drop registry (nothing is built or pushed)")
        if self.instance_count is not None and self.instance_count < 1:
            found.append("instance_count must be at least 1")
        if self.instance_type is not None and not re.match(r"^Standard_\w+$", self.instance_type):
            found.append(
                f"instance_type must be an Azure VM size like Standard_DS3_v2, got "
                f"{self.instance_type!r}"
            )
        timeout = self.request_timeout_ms
        if timeout is not None and not 1 <= timeout <= MAX_REQUEST_TIMEOUT_MS:
            found.append(f"request_timeout_ms must be 1-{MAX_REQUEST_TIMEOUT_MS}")
        concurrency = self.max_concurrent_requests_per_instance
        if concurrency is not None and concurrency < 1:
            found.append("max_concurrent_requests_per_instance must be at least 1")
        for key in ("liveness_probe", "readiness_probe"):
            probe: Mapping[str, Any] = getattr(self, key)
            unknown = sorted(set(probe) - set(PROBE_KEYS))
            if unknown:
                found.append(
                    f"{key}: unknown setting(s) {', '.join(unknown)} (takes "
                    f"{', '.join(PROBE_KEYS)})"
                )
            bad = [k for k, v in probe.items() if k in PROBE_KEYS and not _probe_value_ok(k, v)]
            if bad:
                found.append(
                    f"{key}: {', '.join(sorted(bad))} must be whole numbers >= 1 "
                    "(initial_delay >= 0)"
                )
        if not 0 <= self.canary_percent <= 99:
            found.append("canary_percent must be 1-99 (0: switch all traffic at once)")
        if not 0 <= self.mirror_percent <= MAX_MIRROR_PERCENT:
            found.append(f"mirror_percent must be 1-{MAX_MIRROR_PERCENT} (Azure ML's limit)")
        if self.canary_percent and self.mirror_percent:
            found.append("an update is a canary or a mirror, not both")
        for key in self.environment_variables:
            if not _ENV_NAME.match(key):
                found.append(f"environment_variables: {key!r} is not a variable name")
            elif key.startswith(("MODELPORT_PACKAGE", "MODELPORT_EXPECT_DIGEST", "AZUREML_")):
                found.append(f"environment_variables: {key!r} is set by modelport or Azure")
        if len(self.tags) > MAX_TAGS - OWN_TAGS:
            found.append(f"tags: at most {MAX_TAGS - OWN_TAGS} (modelport uses {OWN_TAGS})")
        for key, value in self.tags.items():
            if key.startswith("modelport-"):
                found.append(f"tags: {key!r} is reserved")
            elif not 1 <= len(key) <= 512 or len(value) > 256 or re.search(r"[<>%&\\?/]", key):
                found.append(
                    f"tags: {key!r}: keys are 1-512 characters without <>%&\\?/, values at most 256"
                )
        if self.startup_timeout <= 0:
            found.append("startup_timeout must be positive")
        return found


@dataclass(frozen=True)
class Workspace:
    """The workspace a deployer talks to, with where each coordinate came from.

    Attributes:
        subscription_id: its subscription.
        resource_group: its resource group.
        name: the workspace's name.
    """

    subscription_id: str
    resource_group: str
    name: str

    @property
    def uri(self) -> str:
        """The target URI that names it: ``azureml:/SUBSCRIPTION/RESOURCE_GROUP/WORKSPACE``."""
        return f"azureml:/{self.subscription_id}/{self.resource_group}/{self.name}"


def find_workspace_config(start: Path | None = None) -> Path | None:
    """The workspace ``config.json`` in ``start`` (default the working directory) or a parent.

    Azure ML's portal and ``az ml`` write it; ``MLClient.from_config`` looks in the same places
    (``config.json`` or ``.azureml/config.json``). Only a file naming a subscription counts.
    """
    here = (start or Path.cwd()).resolve()
    for directory in (here, *here.parents):
        for candidate in (directory / WORKSPACE_CONFIG, directory / ".azureml" / WORKSPACE_CONFIG):
            try:
                document = json.loads(candidate.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                continue
            if isinstance(document, dict) and "subscription_id" in document:
                return candidate
    return None


def resolve_workspace(
    config: AzureMLConfig, env: Mapping[str, str] | None = None, cwd: Path | None = None
) -> Workspace:
    """The workspace named by the options, else the ``config.json``, else the environment.

    Raises:
        ConfigError: a coordinate is missing, or the config file cannot be read.
    """
    env = os.environ if env is None else env
    values: dict[str, str | None] = {
        "subscription_id": config.subscription_id,
        "resource_group": config.resource_group,
        "workspace": config.workspace,
    }
    path = config.workspace_config or (None if all(values.values()) else find_workspace_config(cwd))
    if path is not None:
        try:
            document = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ConfigError([f"workspace_config {path}: {exc}"], "azureml") from None
        if not isinstance(document, dict):
            raise ConfigError([f"workspace_config {path}: not a JSON object"], "azureml")
        keys = {
            "subscription_id": "subscription_id",
            "resource_group": "resource_group",
            "workspace": "workspace_name",
        }
        for key, file_key in keys.items():
            if not values[key] and isinstance(document.get(file_key), str):
                values[key] = document[file_key]
    names = {
        "subscription_id": ENV_SUBSCRIPTION,
        "resource_group": ENV_RESOURCE_GROUP,
        "workspace": ENV_WORKSPACE,
    }
    for key, variables in names.items():
        for variable in variables:
            if not values[key] and env.get(variable):
                values[key] = env[variable]
    missing = [key for key, value in values.items() if not value]
    if missing:
        raise ConfigError(
            [
                f"{key} is required: pass -C {key}=..., use -t azureml:/SUBSCRIPTION/"
                f"RESOURCE_GROUP/WORKSPACE, keep the workspace's config.json here, or set "
                f"{' or '.join(names[key])}"
                for key in missing
            ],
            "azureml",
        )
    workspace = Workspace(
        str(values["subscription_id"]), str(values["resource_group"]), str(values["workspace"])
    )
    try:  # the same checks -C values get
        AzureMLConfig(
            subscription_id=workspace.subscription_id,
            resource_group=workspace.resource_group,
            workspace=workspace.name,
        )
    except ValueError as exc:
        raise ConfigError([f"{exc} (from {path or 'the environment'})"], "azureml") from None
    return workspace
