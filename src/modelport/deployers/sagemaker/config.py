"""The options of the ``sagemaker`` target, checked against SageMaker's rules before any call."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from modelport.errors import ConfigError

#: What SageMaker accepts for a serverless variant's memory (MB), and its concurrency range.
SERVERLESS_MEMORY_MB = (1024, 2048, 3072, 4096, 5120, 6144)
SERVERLESS_MAX_CONCURRENCY = 200
#: The most alarms an AutoRollbackConfiguration takes, and the longest bake between steps.
MAX_ROLLBACK_ALARMS = 10
MAX_WAIT_INTERVAL_S = 3600
#: The longest a blue/green deployment may run (MaximumExecutionTimeoutInSeconds).
MAX_SHIFT_S = 28800
_ALL_AT_ONCE = re.compile(r"^all_at_once(?::(?P<wait>\d+))?$")
_STEPPED = re.compile(r"^(?P<kind>canary|linear):(?P<percent>\d{1,3}):(?P<wait>\d+)$")
_S3_URI = re.compile(r"^s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](/.*)?$")
_ROLE_ARN = re.compile(r"^arn:aws[a-z-]*:iam::\d{12}:role/.+$")
_REGION = re.compile(r"^[a-z]{2}(-[a-z]+)+-\d$")
_INSTANCE_TYPE = re.compile(r"^ml\.[a-z0-9][a-z0-9-]*\.[a-z0-9]+$")
#: Tags SageMaker takes per resource, and how many of them modelport's own facts use.
MAX_TAGS = 50
OWN_TAGS = 9


@dataclass(frozen=True)
class Traffic:
    """How an update shifts traffic (``-C traffic``): all at once, a canary, or linear steps.

    Attributes:
        kind: ``all_at_once``, ``canary`` or ``linear``.
        percent: the canary's share (1-50), or each linear step's (10-50).
        wait_s: how long each step bakes before the next: the alarms are watched meanwhile
            (``all_at_once:<wait_s>``: after the switch, before the old fleet goes).
    """

    kind: Literal["all_at_once", "canary", "linear"] = "all_at_once"
    percent: int = 0
    wait_s: int = 0

    @classmethod
    def parse(cls, text: str) -> Traffic:
        """``all_at_once[:<wait_s>]``, ``canary:<percent>:<wait_s>`` or ``linear:...``.

        Raises:
            ValueError: anything else, or values SageMaker refuses.
        """
        match = _ALL_AT_ONCE.match(text) or _STEPPED.match(text)
        if match is None:
            raise ValueError(
                f"traffic must be all_at_once[:<wait_s>], canary:<percent>:<wait_s> or "
                f"linear:<percent>:<wait_s>, got {text!r}"
            )
        wait_s = int(match["wait"] or 0)
        if wait_s > MAX_WAIT_INTERVAL_S:
            raise ValueError(f"traffic: the wait must be at most {MAX_WAIT_INTERVAL_S} s")
        if match.re is _ALL_AT_ONCE:
            return cls("all_at_once", 0, wait_s)
        percent = int(match["percent"])
        # SageMaker's limits (TrafficRoutingConfig): a canary of at most half the fleet, linear
        # steps of 10-50 %.
        low = 1 if match["kind"] == "canary" else 10
        if not low <= percent <= 50:
            raise ValueError(f"traffic: a {match['kind']} step must be {low}-50 %, got {percent}")
        kind: Literal["canary", "linear"] = "canary" if match["kind"] == "canary" else "linear"
        return cls(kind, percent, wait_s)

    @property
    def steps(self) -> int:
        """How many bakes the shift has (each ``wait_s`` long)."""
        if self.kind == "canary":
            return 2  # the canary, then the rest
        if self.kind == "linear":
            return -(-100 // self.percent)
        return 1 if self.wait_s else 0

    def routing(self) -> dict[str, Any]:
        """SageMaker's ``TrafficRoutingConfiguration`` for it."""
        if self.kind == "all_at_once":
            return {"Type": "ALL_AT_ONCE", "WaitIntervalInSeconds": self.wait_s}
        size_key = "CanarySize" if self.kind == "canary" else "LinearStepSize"
        return {
            "Type": self.kind.upper(),
            "WaitIntervalInSeconds": self.wait_s,
            size_key: {"Type": "CAPACITY_PERCENT", "Value": self.percent},
        }


@dataclass(frozen=True)
class SageMakerConfig:
    """Options of the ``sagemaker`` target.

    Only ``create`` and ``update`` need ``role_arn`` and the image settings: ``get``, ``list``,
    ``predict``, ``logs`` and ``delete`` work with a region and credentials alone.
    """

    region: str | None = field(
        default=None,
        metadata={"help": "AWS region (also: -t sagemaker:/REGION); default boto3's chain."},
    )
    profile: str | None = field(
        default=None, metadata={"help": "Named profile from ~/.aws/config to use."}
    )
    assume_role_arn: str | None = field(
        default=None,
        metadata={"help": "Role to assume (sts:AssumeRole) before any other call."},
    )
    role_arn: str | None = field(
        default=None,
        metadata={
            "help": "Execution role SageMaker runs the model as (create and update need it): "
            "it must allow s3:GetObject on the bucket, ecr:GetAuthorizationToken and "
            "ecr:BatchGetImage/GetDownloadUrlForLayer on the repository, and logs:PutLogEvents."
        },
    )
    bucket: str | None = field(
        default=None,
        metadata={
            "help": "S3 bucket for model.tar.gz; default modelport-<region>-<account>, "
            "created if missing."
        },
    )
    kms_key: str | None = field(
        default=None,
        metadata={"help": "KMS key for the uploaded model (SSE-KMS); default SSE-S3 (AES256)."},
    )
    image_uri: str | None = field(
        default=None,
        metadata={
            "help": "Serving image to use as is; default the modelport runtime image, "
            "built and pushed to ECR when its requirements change."
        },
    )
    ecr_repository: str = field(
        default="modelport-runtime",
        metadata={"help": "ECR repository of the runtime image (created if missing)."},
    )
    base_image: str | None = field(
        default=None,
        metadata={"help": "Image the runtime image builds on; default python:<x.y>-slim."},
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
    instance_type: str | None = field(
        default=None,
        metadata={
            "help": "Instance type of a real-time variant; default ml.m5.large "
            "(an update keeps the deployment's)."
        },
    )
    instance_count: int | None = field(
        default=None,
        metadata={
            "help": "Instances of a real-time variant; default 1 (an update keeps the "
            "deployment's current count)."
        },
    )
    serverless_memory_mb: int | None = field(
        default=None,
        metadata={"help": "Serverless variant instead of instances: memory, 1024-6144 by 1024."},
    )
    serverless_max_concurrency: int | None = field(
        default=None,
        metadata={"help": "Concurrent invocations of a serverless variant (1-200); default 5."},
    )
    async_output_s3: str | None = field(
        default=None,
        metadata={"help": "Asynchronous inference: s3:// prefix its answers are written to."},
    )
    async_sns_topic: str | None = field(
        default=None,
        metadata={"help": "SNS topic ARN told of each asynchronous answer and error."},
    )
    data_capture_s3: str | None = field(
        default=None,
        metadata={"help": "Capture requests and answers to this s3:// prefix."},
    )
    data_capture_percent: int = field(
        default=100, metadata={"help": "Share of requests captured (1-100)."}
    )
    subnets: list[str] = field(
        default_factory=list, metadata={"help": "VPC subnet ids, as a JSON list."}
    )
    security_groups: list[str] = field(
        default_factory=list, metadata={"help": "VPC security group ids, as a JSON list."}
    )
    min_instances: int | None = field(
        default=None, metadata={"help": "Autoscaling: the fewest instances (with max_instances)."}
    )
    max_instances: int | None = field(
        default=None, metadata={"help": "Autoscaling: the most instances (with min_instances)."}
    )
    target_invocations_per_instance: float = field(
        default=100.0,
        metadata={"help": "Autoscaling: invocations per instance per minute to track."},
    )
    traffic: str = field(
        default="all_at_once",
        metadata={
            "help": "How an update shifts traffic: all_at_once[:<bake_s>], "
            "canary:<percent 1-50>:<wait_s> or linear:<percent 10-50>:<wait_s> (SageMaker's "
            "blue/green guardrails; rollback_alarms are watched while it bakes)."
        },
    )
    rollback_alarms: list[str] = field(
        default_factory=list,
        metadata={"help": "CloudWatch alarms that roll an update back, as a JSON list."},
    )
    keep_old: bool = field(
        default=False,
        metadata={"help": "Keep the old model and endpoint config after a successful update."},
    )
    env: dict[str, str] = field(
        default_factory=dict, metadata={"help": "Extra container environment, as a JSON object."}
    )
    tags: dict[str, str] = field(
        default_factory=dict, metadata={"help": "Extra tags on every resource, a JSON object."}
    )
    startup_timeout: float = field(
        default=1800.0,
        metadata={"help": "Seconds an endpoint may take to be InService (create or update)."},
    )

    def __post_init__(self) -> None:
        problems = self.problems()
        if problems:
            raise ValueError("; ".join(problems))
        pip_cert: Any = self.pip_cert  # the Python API may pass a str
        if pip_cert is not None and not isinstance(pip_cert, Path):
            object.__setattr__(self, "pip_cert", Path(pip_cert))

    @property
    def serverless(self) -> bool:
        """The variant is serverless."""
        return self.serverless_memory_mb is not None

    @property
    def autoscaling(self) -> bool:
        """Autoscaling is asked for."""
        return self.min_instances is not None or self.max_instances is not None

    @property
    def traffic_policy(self) -> Traffic:
        """:attr:`traffic`, parsed."""
        return Traffic.parse(self.traffic)

    def problems(self) -> list[str]:
        """Everything SageMaker would refuse in these options, found before any call."""
        found: list[str] = []
        if self.region is not None and not _REGION.match(self.region):
            found.append(f"region {self.region!r} is not an AWS region name (e.g. eu-west-1)")
        for key in ("role_arn", "assume_role_arn"):
            value = getattr(self, key)
            if value is not None and not _ROLE_ARN.match(value):
                found.append(f"{key} must be an IAM role ARN (arn:aws:iam::<account>:role/NAME)")
        for key in ("async_output_s3", "data_capture_s3"):
            value = getattr(self, key)
            if value is not None and not _S3_URI.match(value):
                found.append(f"{key} must be an s3://bucket/prefix URI, got {value!r}")
        if self.instance_type is not None and not _INSTANCE_TYPE.match(self.instance_type):
            found.append(f"instance_type must look like ml.m5.large, got {self.instance_type!r}")
        if self.instance_count is not None and self.instance_count < 1:
            found.append("instance_count must be at least 1")
        if self.serverless and (self.instance_type or self.instance_count):
            found.append("a variant is serverless or has instances: drop instance_type/count")
        if self.serverless:
            if self.serverless_memory_mb not in SERVERLESS_MEMORY_MB:
                allowed = ", ".join(map(str, SERVERLESS_MEMORY_MB))
                found.append(f"serverless_memory_mb must be one of {allowed}")
            if self.async_output_s3:
                found.append("serverless endpoints do not take asynchronous inference")
            if self.data_capture_s3:
                found.append("serverless endpoints do not take data capture")
            if self.autoscaling:
                found.append("serverless endpoints scale by themselves: drop min/max_instances")
        concurrency = self.serverless_max_concurrency
        if concurrency is not None and not 1 <= concurrency <= SERVERLESS_MAX_CONCURRENCY:
            found.append(f"serverless_max_concurrency must be 1-{SERVERLESS_MAX_CONCURRENCY}")
        if self.async_sns_topic and not self.async_output_s3:
            found.append("async_sns_topic needs async_output_s3")
        if not 1 <= self.data_capture_percent <= 100:
            found.append("data_capture_percent must be 1-100")
        if self.autoscaling:
            if self.min_instances is None or self.max_instances is None:
                found.append("autoscaling needs both min_instances and max_instances")
            elif not 1 <= self.min_instances <= self.max_instances:
                found.append("autoscaling needs 1 <= min_instances <= max_instances")
            if self.target_invocations_per_instance <= 0:
                found.append("target_invocations_per_instance must be positive")
        try:
            traffic = Traffic.parse(self.traffic)
        except ValueError as exc:
            found.append(str(exc))
        else:
            if traffic.steps * traffic.wait_s > MAX_SHIFT_S:
                found.append(
                    f"traffic: the shift bakes {traffic.steps} x {traffic.wait_s} s, more than "
                    f"SageMaker's {MAX_SHIFT_S} s for a whole deployment"
                )
            if self.rollback_alarms and not traffic.wait_s:
                found.append(
                    "rollback_alarms need a time to watch them: traffic=all_at_once:<wait_s>, "
                    "canary:<percent>:<wait_s> or linear:<percent>:<wait_s>"
                )
            if self.serverless and (traffic.kind != "all_at_once" or self.rollback_alarms):
                found.append(
                    "serverless endpoints take no deployment guardrails (traffic, "
                    "rollback_alarms): SageMaker offers them for real-time and async ones"
                )
        if len(self.tags) > MAX_TAGS - OWN_TAGS:
            found.append(f"tags: at most {MAX_TAGS - OWN_TAGS} (modelport uses {OWN_TAGS})")
        for key, value in self.tags.items():
            if key.lower().startswith("aws:") or key.startswith("modelport:"):
                found.append(f"tags: {key!r} is reserved")
            elif not 1 <= len(key) <= 128 or len(value) > 256:
                found.append(f"tags: {key!r}: keys are 1-128 characters, values at most 256")
        if len(self.rollback_alarms) > MAX_ROLLBACK_ALARMS:
            found.append(f"rollback_alarms takes at most {MAX_ROLLBACK_ALARMS} alarms")
        if self.startup_timeout <= 0:
            found.append("startup_timeout must be positive")
        return found

    def inherit(
        self,
        *,
        endpoint_config: Mapping[str, Any],
        model: Mapping[str, Any],
        instance_count: int | None,
        ours: frozenset[str],
        tags: Mapping[str, str] | None = None,
    ) -> SageMakerConfig:
        """These options, with what was not given taken from a deployment's current resources.

        Args:
            endpoint_config: ``DescribeEndpointConfig`` of the generation serving now.
            model: ``DescribeModel`` of its model (empty when unknown).
            instance_count: the variant's current instance count (autoscaling may have moved
                it from the config's initial count).
            ours: environment variables modelport sets itself, not carried as extra ones.
            tags: the extra tags (not modelport's own) of the endpoint config serving now.

        Raises:
            ConfigError: the options given do not go with what is kept (e.g. serverless with
                the deployment's asynchronous output).
        """
        kept: dict[str, Any] = {}
        variant = (endpoint_config.get("ProductionVariants") or [{}])[0]
        serverless = variant.get("ServerlessConfig") or {}
        variant_given = self.serverless or self.instance_type or self.instance_count
        if not variant_given:
            if serverless:
                kept["serverless_memory_mb"] = serverless.get("MemorySizeInMB")
                kept["serverless_max_concurrency"] = serverless.get("MaxConcurrency")
            else:
                kept["instance_type"] = variant.get("InstanceType")
                kept["instance_count"] = instance_count or variant.get("InitialInstanceCount")
        elif self.serverless and serverless and self.serverless_max_concurrency is None:
            kept["serverless_max_concurrency"] = serverless.get("MaxConcurrency")
        elif not self.serverless and not serverless:
            if self.instance_type is None:
                kept["instance_type"] = variant.get("InstanceType")
            if self.instance_count is None:
                kept["instance_count"] = instance_count or variant.get("InitialInstanceCount")
        output = (endpoint_config.get("AsyncInferenceConfig") or {}).get("OutputConfig") or {}
        if self.async_output_s3 is None and output.get("S3OutputPath"):
            kept["async_output_s3"] = output["S3OutputPath"]
            topic = (output.get("NotificationConfig") or {}).get("SuccessTopic")
            if self.async_sns_topic is None and topic:
                kept["async_sns_topic"] = topic
        capture = endpoint_config.get("DataCaptureConfig") or {}
        if self.data_capture_s3 is None and capture.get("DestinationS3Uri"):
            kept["data_capture_s3"] = capture["DestinationS3Uri"]
            kept["data_capture_percent"] = capture.get("InitialSamplingPercentage", 100)
        if self.kms_key is None and endpoint_config.get("KmsKeyId"):
            kept["kms_key"] = endpoint_config["KmsKeyId"]
        if self.role_arn is None and model.get("ExecutionRoleArn"):
            kept["role_arn"] = model["ExecutionRoleArn"]
        vpc = model.get("VpcConfig") or {}
        if not (self.subnets or self.security_groups) and vpc:
            kept["subnets"] = list(vpc.get("Subnets") or [])
            kept["security_groups"] = list(vpc.get("SecurityGroupIds") or [])
        environment = (model.get("PrimaryContainer") or {}).get("Environment") or {}
        extra = {k: str(v) for k, v in environment.items() if k not in ours}
        if not self.env and extra:
            kept["env"] = extra
        if not self.tags and tags:
            kept["tags"] = dict(tags)
        kept = {k: v for k, v in kept.items() if v is not None}
        try:
            return dataclasses.replace(self, **kept)
        except ValueError as exc:
            raise ConfigError(
                [f"{exc} (with the settings the deployment has now)"], "sagemaker"
            ) from None
