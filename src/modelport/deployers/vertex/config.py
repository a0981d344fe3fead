"""The options of the ``vertex`` target, checked against Vertex AI's rules before any call."""

from __future__ import annotations

import configparser
import json
import os
import re
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from modelport.errors import ConfigError

TARGET = "vertex"
#: Where Vertex AI runs when neither -C region nor the environment says (the SDK's default).
DEFAULT_REGION = "us-central1"
DEFAULT_MACHINE_TYPE = "n1-standard-2"
#: The labels Vertex takes per resource, and how many of them modelport's own facts use.
MAX_LABELS = 64
OWN_LABELS = 9
_PROJECT = re.compile(r"^[a-z][a-z0-9-]{4,28}[a-z0-9]$")
_REGION = re.compile(r"^[a-z]+(-[a-z]+)+[0-9]+$")
_MACHINE_TYPE = re.compile(r"^[a-z][a-z0-9]*-[a-z0-9-]+$")
_ACCELERATOR = re.compile(r"^[A-Z][A-Z0-9_]+$")
_SERVICE_ACCOUNT = re.compile(r"^[^@\s]+@[a-z0-9.-]+\.[a-z]+$")
_ENDPOINT_ID = re.compile(r"^[1-9][0-9]{0,18}$")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_LABEL_KEY = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")
_LABEL_VALUE = re.compile(r"^[a-z0-9_-]{0,63}$")
#: Where the project and region come from when -C does not give them (first found wins).
ENV_PROJECT = ("GOOGLE_CLOUD_PROJECT", "CLOUDSDK_CORE_PROJECT", "GCLOUD_PROJECT")
ENV_REGION = ("GOOGLE_CLOUD_REGION", "CLOUD_ML_REGION", "CLOUDSDK_COMPUTE_REGION")
LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")


@dataclass(frozen=True)
class VertexConfig:
    """Options of the ``vertex`` target.

    The project and region are ``project`` and ``region`` (also: ``-t vertex:/PROJECT/REGION``,
    ``$GOOGLE_CLOUD_PROJECT`` and ``$GOOGLE_CLOUD_REGION``, gcloud's configuration, or the
    credentials' project). Only ``create`` and ``update`` need the image settings.
    """

    project: str | None = field(
        default=None,
        metadata={
            "help": "Google Cloud project (also: -t vertex:/PROJECT/REGION); default "
            "$GOOGLE_CLOUD_PROJECT, gcloud's core/project, else the credentials' project."
        },
    )
    region: str | None = field(
        default=None,
        metadata={
            "help": f"Vertex AI region; default $GOOGLE_CLOUD_REGION (or $CLOUD_ML_REGION), "
            f"gcloud's compute/region, else {DEFAULT_REGION}."
        },
    )
    service_account_file: Path | None = field(
        default=None,
        metadata={
            "help": "A service account's JSON key to call Vertex with; default google-auth's "
            "default credentials (GOOGLE_APPLICATION_CREDENTIALS, gcloud auth "
            "application-default login, or the metadata server on Google Cloud)."
        },
    )
    api_endpoint: str | None = field(
        default=None,
        metadata={
            "help": "Vertex API host for a private or regional endpoint (HOST[:PORT], or "
            "https://...; http:// only on this machine); default REGION-aiplatform.googleapis.com."
        },
    )
    logging_endpoint: str | None = field(
        default=None,
        metadata={"help": "Cloud Logging API that 'logs' reads; default logging.googleapis.com."},
    )
    registry: str | None = field(
        default=None,
        metadata={
            "help": "Registry the serving image is pushed to (REGION-docker.pkg.dev/PROJECT/"
            "REPO, or any Vertex can pull from; log in first with gcloud auth "
            "configure-docker or docker login)."
        },
    )
    repository: str = field(
        default="modelport",
        metadata={"help": "Image name in the registry: <repository>-model:<digest>."},
    )
    image: str | None = field(
        default=None,
        metadata={"help": "Serving image to use as is (nothing is built); a modelport image."},
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
    endpoint_id: str | None = field(
        default=None,
        metadata={
            "help": "Deploy to this existing endpoint (its numeric id) instead of creating one; "
            "delete then leaves the endpoint itself."
        },
    )
    machine_type: str | None = field(
        default=None,
        metadata={
            "help": f"Machine of each replica; default {DEFAULT_MACHINE_TYPE} (an update keeps "
            "the deployment's)."
        },
    )
    min_replicas: int | None = field(
        default=None,
        metadata={"help": "Fewest replicas; default 1 (an update keeps the deployment's)."},
    )
    max_replicas: int | None = field(
        default=None,
        metadata={"help": "Most replicas (autoscaling); default min_replicas."},
    )
    accelerator_type: str | None = field(
        default=None,
        metadata={"help": "GPU or TPU per replica, e.g. NVIDIA_TESLA_T4 or NVIDIA_L4."},
    )
    accelerator_count: int | None = field(
        default=None,
        metadata={"help": "Accelerators per replica; default 1 with accelerator_type."},
    )
    service_account: str | None = field(
        default=None,
        metadata={
            "help": "Service account the serving containers run as (its email); the caller "
            "needs roles/iam.serviceAccountUser on it."
        },
    )
    cpu_target_percent: int | None = field(
        default=None,
        metadata={"help": "Autoscaling target: CPU use (1-100 %) at which replicas are added."},
    )
    environment_variables: dict[str, str] = field(
        default_factory=dict,
        metadata={"help": "Extra container environment, as a JSON object."},
    )
    canary_percent: int = field(
        default=0,
        metadata={
            "help": "An update stops with this share (1-99) of the traffic on the new "
            "version; then 'deployments promote' or 'rollback'."
        },
    )
    labels: dict[str, str] = field(
        default_factory=dict,
        metadata={"help": "Extra labels on every resource, a JSON object (Vertex label rules)."},
    )
    startup_timeout: float = field(
        default=1800.0,
        metadata={"help": "Seconds a model may take to be deployed (create or update)."},
    )

    def __post_init__(self) -> None:
        problems = self.problems()
        if problems:
            raise ValueError("; ".join(problems))
        for key in ("pip_cert", "service_account_file"):
            value: Any = getattr(self, key)  # the Python API may pass a str
            if value is not None and not isinstance(value, Path):
                object.__setattr__(self, key, Path(value))

    def problems(self) -> list[str]:
        """Everything Vertex AI would refuse in these options, found before any call."""
        found: list[str] = []
        if self.project is not None and not _PROJECT.match(self.project):
            found.append(
                f"project {self.project!r}: a project id is 6-30 lowercase letters, digits and "
                "hyphens, starting with a letter"
            )
        if self.region is not None and not _REGION.match(self.region):
            found.append(f"region {self.region!r} is not a region like us-central1")
        for key in ("api_endpoint", "logging_endpoint"):
            value = getattr(self, key)
            if value is not None:
                problem = _endpoint_problem(key, value)
                if problem:
                    found.append(problem)
        if self.image and self.registry:
            found.append("image is used as is: drop registry (nothing is built or pushed)")
        if self.endpoint_id is not None and not _ENDPOINT_ID.match(self.endpoint_id):
            found.append(f"endpoint_id must be an endpoint's numeric id, got {self.endpoint_id!r}")
        if self.machine_type is not None and not _MACHINE_TYPE.match(self.machine_type):
            found.append(
                f"machine_type must be a machine type like n1-standard-4, got {self.machine_type!r}"
            )
        if self.min_replicas is not None and self.min_replicas < 1:
            found.append("min_replicas must be at least 1")
        if self.max_replicas is not None and self.max_replicas < max(1, self.min_replicas or 1):
            found.append("max_replicas must be at least min_replicas (and 1)")
        if self.accelerator_type is not None and not _ACCELERATOR.match(self.accelerator_type):
            found.append(
                f"accelerator_type must be like NVIDIA_TESLA_T4, got {self.accelerator_type!r}"
            )
        if self.accelerator_count is not None:
            if self.accelerator_count < 1:
                found.append("accelerator_count must be at least 1")
            elif self.accelerator_type is None:
                found.append("accelerator_count needs accelerator_type")
        if self.service_account is not None and not _SERVICE_ACCOUNT.match(self.service_account):
            found.append(f"service_account must be an email, got {self.service_account!r}")
        if self.cpu_target_percent is not None and not 1 <= self.cpu_target_percent <= 100:
            found.append("cpu_target_percent must be 1-100")
        if not 0 <= self.canary_percent <= 99:
            found.append("canary_percent must be 1-99 (0: switch all traffic at once)")
        for key in self.environment_variables:
            if not _ENV_NAME.match(key):
                found.append(f"environment_variables: {key!r} is not a variable name")
            elif key.startswith(("MODELPORT_PACKAGE", "MODELPORT_EXPECT_DIGEST", "AIP_")):
                found.append(f"environment_variables: {key!r} is set by modelport or Vertex")
        if len(self.labels) > MAX_LABELS - OWN_LABELS:
            found.append(f"labels: at most {MAX_LABELS - OWN_LABELS} (modelport uses {OWN_LABELS})")
        for key, value in self.labels.items():
            if key.startswith("modelport-"):
                found.append(f"labels: {key!r} is reserved")
            elif not _LABEL_KEY.match(key) or not _LABEL_VALUE.match(str(value)):
                found.append(
                    f"labels: {key!r}: keys are 1-63 lowercase letters, digits, '_' and '-' "
                    "starting with a letter; values at most 63 of the same"
                )
        if self.startup_timeout <= 0:
            found.append("startup_timeout must be positive")
        return found


def _endpoint_problem(key: str, value: str) -> str | None:
    """Why an API address is unusable (None: it is fine).

    A bearer token travels with every request: plain HTTP only to this machine (an emulator).
    """
    if "://" not in value:
        value = f"https://{value}"
    parts = urllib.parse.urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return f"{key} must be HOST[:PORT] or an http(s):// URL, got {value!r}"
    if parts.path.strip("/") or parts.query:
        return f"{key} is a host (and port), without a path: got {value!r}"
    if parts.scheme == "http" and parts.hostname not in LOCAL_HOSTS:
        return f"{key}: http:// only to this machine (tokens travel with each request)"
    return None


def api_base(value: str | None, default_host: str) -> str:
    """``scheme://host[:port]`` of an API: ``value`` (a host defaults to https), else default."""
    value = value or default_host
    if "://" not in value:
        value = f"https://{value}"
    return value.rstrip("/")


@dataclass(frozen=True)
class Location:
    """The project and region a deployer talks to.

    Attributes:
        project: the project's id.
        region: the Vertex AI region.
    """

    project: str
    region: str

    @property
    def uri(self) -> str:
        """The target URI that names it: ``vertex:/PROJECT/REGION``."""
        return f"vertex:/{self.project}/{self.region}"


def gcloud_properties(env: Mapping[str, str]) -> dict[str, str]:
    """Gcloud's active configuration: ``core/project`` and ``compute/region`` when set.

    It lives in ``$CLOUDSDK_CONFIG`` (default ``~/.config/gcloud``): ``active_config`` names the
    configuration, ``configurations/config_NAME`` holds it (INI). Unreadable: nothing.
    """
    root = Path(env.get("CLOUDSDK_CONFIG") or Path.home() / ".config" / "gcloud")
    name = env.get("CLOUDSDK_ACTIVE_CONFIG_NAME", "").strip()
    if not name:
        try:
            name = (root / "active_config").read_text(encoding="utf-8").strip() or "default"
        except OSError:
            name = "default"
    parser = configparser.ConfigParser()
    try:
        parser.read(root / "configurations" / f"config_{name}", encoding="utf-8")
    except (configparser.Error, UnicodeDecodeError):
        return {}
    found: dict[str, str] = {}
    for section, option in (("core", "project"), ("compute", "region")):
        value = parser.get(section, option, fallback="").strip()
        if value:
            found[f"{section}/{option}"] = value
    return found


def key_file_project(path: Path | None) -> str | None:
    """The ``project_id`` a service account key names, or None."""
    if path is None:
        return None
    try:
        document = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    project = document.get("project_id") if isinstance(document, dict) else None
    return str(project) if project else None


def resolve_location(
    config: VertexConfig,
    env: Mapping[str, str] | None = None,
    credentials_project: str | None = None,
) -> Location:
    """The project and region: the options, else the environment, else gcloud's configuration.

    The project falls back to the credentials' own (a key file's ``project_id``, or what
    google-auth's default credentials name); the region to ``us-central1``.

    Raises:
        ConfigError: no project is named anywhere, or one found is not a project id.
    """
    env = os.environ if env is None else env
    gcloud = gcloud_properties(env)
    project = config.project or next((env[v] for v in ENV_PROJECT if env.get(v)), None)
    project = project or gcloud.get("core/project") or credentials_project
    region = config.region or next((env[v] for v in ENV_REGION if env.get(v)), None)
    region = region or gcloud.get("compute/region") or DEFAULT_REGION
    if not project:
        raise ConfigError(
            [
                "project is required: pass -C project=..., use -t vertex:/PROJECT/REGION, set "
                f"{' or '.join(ENV_PROJECT)}, gcloud config set project PROJECT, or use "
                "credentials that name one (a service account key's project_id)"
            ],
            TARGET,
        )
    try:  # the same checks -C values get
        VertexConfig(project=project, region=region)
    except ValueError as exc:
        raise ConfigError([f"{exc} (from the environment or gcloud)"], TARGET) from None
    return Location(project, region)
