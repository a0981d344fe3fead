"""The ``sagemaker`` target: a package as an AWS SageMaker endpoint, with plain boto3.

What one deployment ``NAME`` is made of, generation ``N`` at a time (``-gN`` names, from
:mod:`modelport.deployers.kit.naming`):

- ``s3://BUCKET/modelport/NAME/gN/model.tar.gz``: the package's files, ``modelport.json``
  first, at the archive's root (SageMaker unpacks it into ``/opt/ml/model``, where the serving
  image looks), encrypted at rest, its sha256 in the object's metadata and the model's tags;
- the serving image: the shared **runtime image** (:mod:`modelport.deployers.kit.images`),
  tagged with its runtime key in the ECR repository ``modelport-runtime``. It is built and
  pushed only when ECR lacks that key, so a second model with the same requirements deploys
  with no build. Shared: no deployment removes it;
- the SageMaker model ``NAME-gN`` (the image, the S3 URL, ``MODELPORT_EXPECT_DIGEST`` so the
  container refuses any other package), the endpoint config ``NAME-gN`` (a real-time,
  serverless or asynchronous variant, optional data capture) and the endpoint ``NAME``;
- optionally, an application-autoscaling target and target-tracking policy on the variant.

``create`` and ``update`` are rollouts (:mod:`modelport.deployers.kit.rollout`): each step's
undo removes what it made when a later one fails, ``--dry-run`` prints the same steps with the
exact request of every call, and each step has a failpoint. ``update`` makes generation
``N+1`` beside ``N`` and calls ``UpdateEndpoint`` (SageMaker's blue/green, with its canary or
linear traffic shifting and alarm rollback when asked); when SageMaker rolls back, the update
fails with its reason and removes what it made; on success the old generation is deleted unless
``keep_old``. Every SageMaker resource is tagged (:func:`~modelport.deployers.kit.naming.labels`;
the S3 object carries the digest in its metadata), and
SageMaker's own state is the only state: any machine with the credentials can ``get``, ``list``,
``predict``, ``logs``, ``update`` or ``delete``.
"""

from __future__ import annotations

import base64
import builtins
import contextlib
import dataclasses
import hashlib
import json
import re
import tempfile
import time
import uuid
from collections.abc import Collection, Iterator, Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelport import __version__
from modelport.deployers.base import Deployer, Deployment, DeploymentStatus, utcnow
from modelport.deployers.kit import background
from modelport.deployers.kit.naming import (
    PROVENANCE_FACTS,
    Facts,
    Platform,
    generation_name,
    label_key,
    labels,
    next_generation,
    parse_generation,
    provenance_details,
    read_labels,
    with_provenance,
)
from modelport.deployers.kit.rollout import Step
from modelport.deployers.kit.state import default_home
from modelport.deployers.kit.waiting import Seen, wait_until
from modelport.deployers.sagemaker.aws import AWS_ERRORS, TARGET, Aws, error_code, not_found
from modelport.deployers.sagemaker.config import SageMakerConfig
from modelport.errors import (
    ConfigError,
    ConflictError,
    DeploymentError,
    DeploymentExists,
    DeploymentNotFound,
    InputError,
    ModelError,
    UsageError,
)

if TYPE_CHECKING:
    from modelport.deployers.kit.engine import Engine
    from modelport.model_format.package import Package

VARIANT = "AllTraffic"
MAX_NAME = 54
#: BlueGreenUpdatePolicy's MaximumExecutionTimeoutInSeconds range.
MIN_EXECUTION_S, MAX_EXECUTION_S = 600, 28800
#: How long a config just made may stay invisible to CreateEndpoint (eventual consistency).
CONFIG_VISIBLE_S = 60.0
#: Instance families on AWS Graviton (arm64): ml.c6g, ml.m7g, ml.r6gd, ml.c7gn...
_GRAVITON = re.compile(r"^ml\.[a-z]+\d+g[a-z]*\.")
#: The most events one GetLogEvents call returns.
MAX_LOG_EVENTS = 10000
JSON = "application/json"
DEFAULT_INSTANCE_TYPE = "ml.m5.large"
DEFAULT_MAX_CONCURRENCY = 5
MODEL_DIR = "/opt/ml/model"
#: How long a predict waits for an asynchronous endpoint's answer to land in S3.
ASYNC_ANSWER_TIMEOUT_S = 900.0
LOG_GROUP = "/aws/sagemaker/Endpoints/{name}"
SCALABLE_DIMENSION = "sagemaker:variant:DesiredInstanceCount"
TAG_DEPLOYMENT = label_key(Platform.AWS, "deployment")
TAG_TARGET = label_key(Platform.AWS, "target")
TAG_MODEL_SHA256 = "modelport:model-data-sha256"
_STATUS = {
    "InService": DeploymentStatus.READY,
    "Creating": DeploymentStatus.STARTING,
    "Updating": DeploymentStatus.UPDATING,
    "SystemUpdating": DeploymentStatus.UPDATING,
    "RollingBack": DeploymentStatus.UPDATING,
    "Failed": DeploymentStatus.FAILED,
    "UpdateRollbackFailed": DeploymentStatus.FAILED,
    "OutOfService": DeploymentStatus.FAILED,
}
_SETTLED = ("InService", "Failed", "UpdateRollbackFailed", "OutOfService")


def _aws_tags(values: Mapping[str, str]) -> list[dict[str, str]]:
    return [{"Key": k, "Value": v} for k, v in values.items()]


def _tag_dict(tags: Sequence[Mapping[str, str]]) -> dict[str, str]:
    return {str(t["Key"]): str(t["Value"]) for t in tags}


def _split_s3(uri: str) -> tuple[str, str]:
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    return bucket, key


def _time(value: Any) -> datetime:
    if isinstance(value, datetime):
        return value.astimezone(timezone.utc).replace(microsecond=0)
    return utcnow()


def _call(service: str, operation: str, params: Mapping[str, Any]) -> dict[str, Any]:
    """One AWS call as the plan shows it."""
    return {"call": f"{service}.{operation}", "params": dict(params)}


@dataclasses.dataclass(frozen=True)
class Generation:
    """The names of one generation of a deployment's resources.

    Attributes:
        name: the deployment (and endpoint) name.
        number: the generation.
        bucket: the bucket its ``model.tar.gz`` goes to.
    """

    name: str
    number: int
    bucket: str

    @property
    def model(self) -> str:
        """The SageMaker model (and endpoint config) name, ``NAME-gN``."""
        return generation_name(self.name, self.number)

    @property
    def key(self) -> str:
        """The S3 key of its ``model.tar.gz``."""
        return f"{prefix(self.name)}g{self.number}/model.tar.gz"

    @property
    def model_data_url(self) -> str:
        """``s3://BUCKET/KEY``."""
        return f"s3://{self.bucket}/{self.key}"


def prefix(name: str) -> str:
    """The S3 prefix of everything deployment ``name`` uploads (with its trailing slash)."""
    return f"modelport/{name}/"


class SageMakerDeployer(Deployer[SageMakerConfig]):
    """Deploy a package as a SageMaker endpoint (real-time, serverless or asynchronous)."""

    name = TARGET
    config_class = SageMakerConfig
    error_map = AWS_ERRORS

    def __init__(self, config: SageMakerConfig | None = None, **kwargs: Any) -> None:
        super().__init__(config, **kwargs)
        self._aws: Aws | None = None
        self._engine: Engine | None = None

    def check_name(self, name: str) -> None:
        """The usual names, at most 54 characters: ``NAME-gN`` must stay whole within 63.

        A longer name would be shortened with a hash in its models' and configs' names, which
        then no longer contain it (SageMaker finds them by ``NameContains``).
        """
        super().check_name(name)
        if len(name) > MAX_NAME:
            raise UsageError(
                f"invalid deployment name {name!r}: at most {MAX_NAME} characters on sagemaker "
                f"(its resources are named {name}-g<generation>, within SageMaker's 63)"
            )

    @classmethod
    def options_from_uri(cls, uri: str) -> dict[str, Any]:
        """``sagemaker:/REGION`` (or ``sagemaker:REGION``) sets the region."""
        region = uri.strip("/")
        if not region:
            return {}
        if "/" in region:
            raise ConfigError([f"the target URI is sagemaker:/REGION, got sagemaker:{uri}"], TARGET)
        return {"region": region}

    # --- AWS ------------------------------------------------------------------------------

    @property
    def aws(self) -> Aws:
        """The boto3 session and clients, made on first use."""
        if self._aws is None:
            self._aws = Aws(self.config.region, self.config.profile, self.config.assume_role_arn)
        return self._aws

    def _sm(self) -> Any:
        return self.aws.client("sagemaker")

    @property
    def engine(self) -> Engine:
        """The Docker Engine API that builds and pushes the runtime image."""
        if self._engine is None:
            from modelport.deployers.kit.engine import engine_at

            self._engine = engine_at(self.config.docker_host)
        return self._engine

    def _bucket(self) -> str:
        return self.config.bucket or f"modelport-{self.aws.region}-{self.aws.account}"

    def _describe_endpoint(self, name: str) -> dict[str, Any] | None:
        try:
            found: dict[str, Any] = self._sm().describe_endpoint(EndpointName=name)
        except Exception as exc:
            if not_found(exc):
                return None
            raise
        return found

    def _tags(self, arn: str) -> dict[str, str]:
        return _tag_dict(self._sm().list_tags(ResourceArn=arn).get("Tags") or [])

    def _ours(self, name: str) -> dict[str, Any]:
        """The endpoint of deployment ``name``, when modelport made it.

        Raises:
            DeploymentNotFound: no such endpoint, or one modelport did not make.
        """
        found = self._describe_endpoint(name)
        if found is None or self._tags(found["EndpointArn"]).get(TAG_TARGET) != TARGET:
            raise DeploymentNotFound(
                f"no sagemaker deployment named {name!r} in {self.aws.region}",
                hint="check the name and the region (modelport deployments list -t sagemaker)",
            )
        return found

    def _require_role(self, config: SageMakerConfig) -> str:
        if not config.role_arn:
            raise ConfigError(
                [
                    "role_arn is required to create or update: the IAM role SageMaker runs the "
                    "model as (-C role_arn=arn:aws:iam::ACCOUNT:role/NAME); it needs "
                    "s3:GetObject on the model bucket, ecr:GetAuthorizationToken, "
                    "ecr:BatchGetImage and ecr:GetDownloadUrlForLayer on the image's "
                    "repository, and logs:CreateLogStream and logs:PutLogEvents"
                ],
                TARGET,
            )
        return config.role_arn

    # --- what each resource is made of (the run and the plan use the same) -----------------

    def _facts(
        self, name: str, package: Package, generation: int, config: SageMakerConfig
    ) -> dict[str, str]:
        facts = Facts(
            package_digest=package.digest,
            package_name=package.name,
            package_version=package.version,
            flavor=package.manifest.flavor.name,
            modelport_version=__version__,
            deployment=name,
            target=TARGET,
            generation=generation,
        )
        facts = with_provenance(facts, package.provenance)
        return {**config.tags, **labels(Platform.AWS, facts)}

    @staticmethod
    def _environment(package: Package, config: SageMakerConfig) -> dict[str, str]:
        from modelport.deployers.kit.images import package_env

        return {**config.env, "MODELPORT_PACKAGE": MODEL_DIR, **package_env(package)}

    def _model_params(
        self,
        gen: Generation,
        package: Package,
        image: str,
        sha256: str,
        config: SageMakerConfig,
    ) -> dict[str, Any]:
        params: dict[str, Any] = {
            "ModelName": gen.model,
            "PrimaryContainer": {
                "Image": image,
                "ModelDataUrl": gen.model_data_url,
                "Environment": self._environment(package, config),
            },
            "ExecutionRoleArn": config.role_arn or "<role_arn>",
            "Tags": _aws_tags(
                {**self._facts(gen.name, package, gen.number, config), TAG_MODEL_SHA256: sha256}
            ),
        }
        if config.subnets or config.security_groups:
            params["VpcConfig"] = {
                "Subnets": list(config.subnets),
                "SecurityGroupIds": list(config.security_groups),
            }
        return params

    @staticmethod
    def _variant(gen: Generation, config: SageMakerConfig) -> dict[str, Any]:
        variant: dict[str, Any] = {"VariantName": VARIANT, "ModelName": gen.model}
        if config.serverless:
            variant["ServerlessConfig"] = {
                "MemorySizeInMB": config.serverless_memory_mb,
                "MaxConcurrency": config.serverless_max_concurrency or DEFAULT_MAX_CONCURRENCY,
            }
        else:
            variant["InstanceType"] = config.instance_type or DEFAULT_INSTANCE_TYPE
            variant["InitialInstanceCount"] = config.instance_count or 1
            variant["InitialVariantWeight"] = 1.0
        return variant

    def _config_params(
        self, gen: Generation, package: Package, config: SageMakerConfig
    ) -> dict[str, Any]:
        params: dict[str, Any] = {
            "EndpointConfigName": gen.model,
            "ProductionVariants": [self._variant(gen, config)],
            "Tags": _aws_tags(self._facts(gen.name, package, gen.number, config)),
        }
        if config.async_output_s3:
            output: dict[str, Any] = {
                "S3OutputPath": config.async_output_s3,
                # Without it a failed request writes nothing anywhere a caller can wait for.
                "S3FailurePath": f"{config.async_output_s3.rstrip('/')}/failures",
            }
            if config.async_sns_topic:
                output["NotificationConfig"] = {
                    "SuccessTopic": config.async_sns_topic,
                    "ErrorTopic": config.async_sns_topic,
                }
            params["AsyncInferenceConfig"] = {"OutputConfig": output}
        if config.data_capture_s3:
            params["DataCaptureConfig"] = {
                "EnableCapture": True,
                "InitialSamplingPercentage": config.data_capture_percent,
                "DestinationS3Uri": config.data_capture_s3,
                "CaptureOptions": [{"CaptureMode": "Input"}, {"CaptureMode": "Output"}],
            }
        if config.kms_key:
            params["KmsKeyId"] = config.kms_key
        return params

    def _deployment_config(self) -> dict[str, Any] | None:
        """``UpdateEndpoint``'s DeploymentConfig: blue/green guardrails, when asked."""
        traffic = self.config.traffic_policy
        if traffic.kind == "all_at_once" and not self.config.rollback_alarms:
            return None
        deployment: dict[str, Any] = {
            "BlueGreenUpdatePolicy": {
                "TrafficRoutingConfiguration": traffic.routing(),
                "TerminationWaitInSeconds": 0,
                # SageMaker's own deadline for the whole shift: the one this update waits for.
                "MaximumExecutionTimeoutInSeconds": int(
                    min(MAX_EXECUTION_S, max(MIN_EXECUTION_S, self._update_budget_s()))
                ),
            }
        }
        if self.config.rollback_alarms:
            deployment["AutoRollbackConfiguration"] = {
                "Alarms": [{"AlarmName": a} for a in self.config.rollback_alarms]
            }
        return deployment

    def _scaling_params(self, name: str) -> tuple[dict[str, Any], dict[str, Any]]:
        resource = f"endpoint/{name}/variant/{VARIANT}"
        target = {
            "ServiceNamespace": "sagemaker",
            "ResourceId": resource,
            "ScalableDimension": SCALABLE_DIMENSION,
            "MinCapacity": self.config.min_instances,
            "MaxCapacity": self.config.max_instances,
        }
        policy = {
            "PolicyName": f"modelport-{name}-invocations",
            "ServiceNamespace": "sagemaker",
            "ResourceId": resource,
            "ScalableDimension": SCALABLE_DIMENSION,
            "PolicyType": "TargetTrackingScaling",
            "TargetTrackingScalingPolicyConfiguration": {
                "TargetValue": self.config.target_invocations_per_instance,
                "PredefinedMetricSpecification": {
                    "PredefinedMetricType": "SageMakerVariantInvocationsPerInstance"
                },
                "ScaleInCooldown": 300,
                "ScaleOutCooldown": 60,
            },
        }
        return target, policy

    def _put_params(
        self, gen: Generation, package: Package, config: SageMakerConfig
    ) -> dict[str, Any]:
        extra: dict[str, Any] = {
            # The upload claims its generation: a second deploy making the same one at once
            # gets 412 instead of overwriting (and then deleting) this one's model data.
            "IfNoneMatch": "*",
            "ExpectedBucketOwner": self.aws.account,
            "ServerSideEncryption": "aws:kms" if config.kms_key else "AES256",
            "Metadata": {
                "package-digest": package.digest,
                # Where the package came from, when known (the tags say it too).
                **{
                    fact.replace("_", "-"): value
                    for fact, value in provenance_details(
                        with_provenance(Facts(), package.provenance)
                    ).items()
                },
                "sha256": "<sha256 of the archive>",
            },
        }
        if config.kms_key:
            extra["SSEKMSKeyId"] = config.kms_key
        return {"Bucket": gen.bucket, "Key": gen.key, **extra}

    # --- the steps --------------------------------------------------------------------------

    def _bucket_step(self, bucket: str) -> Step:
        region = self.aws.region
        create: dict[str, Any] = {"Bucket": bucket}
        if region != "us-east-1":
            create["CreateBucketConfiguration"] = {"LocationConstraint": region}
        private = {
            "Bucket": bucket,
            "PublicAccessBlockConfiguration": {
                "BlockPublicAcls": True,
                "IgnorePublicAcls": True,
                "BlockPublicPolicy": True,
                "RestrictPublicBuckets": True,
            },
        }
        encrypted = {
            "Bucket": bucket,
            "ServerSideEncryptionConfiguration": {
                "Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]
            },
        }

        def ensure(_: Mapping[str, Any]) -> str:
            s3 = self.aws.client("s3")
            try:
                # Someone else's bucket of that name is not ours to upload to.
                s3.head_bucket(Bucket=bucket, ExpectedBucketOwner=self.aws.account)
                return bucket
            except Exception as exc:
                if error_code(exc) not in ("404", "NoSuchBucket", "NotFound"):
                    raise
            self.progress(f"creating the bucket {bucket}")
            try:
                s3.create_bucket(**create)
            except Exception as exc:
                if error_code(exc) != "BucketAlreadyOwnedByYou":  # another deploy made it
                    raise
                return bucket
            s3.put_public_access_block(**private)
            s3.put_bucket_encryption(**encrypted)
            return bucket

        return Step(
            "ensure-bucket",
            f"use the bucket {bucket}, created (private, encrypted) if missing; shared: it stays",
            ensure,
            kind="bucket",
            details={
                "calls": [
                    _call(
                        "s3",
                        "head_bucket",
                        {"Bucket": bucket, "ExpectedBucketOwner": self.aws.account},
                    ),
                    _call("s3", "create_bucket (only if missing)", create),
                    _call("s3", "put_public_access_block (only if missing)", private),
                    _call("s3", "put_bucket_encryption (only if missing)", encrypted),
                ]
            },
        )

    def _upload_step(self, gen: Generation, package: Package, config: SageMakerConfig) -> Step:
        put = self._put_params(gen, package, config)

        def upload(_: Mapping[str, Any]) -> dict[str, str]:
            from modelport.model_format.archive import write_archive

            with tempfile.TemporaryDirectory(prefix="modelport-sagemaker-") as tmp:
                archive = Path(tmp) / "model.tar.gz"
                # The .mport archive is already what SageMaker wants: modelport.json first,
                # every file at the root, byte-identical for the same package.
                write_archive(package.root, package.manifest, archive)
                digest = hashlib.sha256()
                with archive.open("rb") as f:
                    while chunk := f.read(1 << 20):
                        digest.update(chunk)
                sha256 = digest.hexdigest()
                self.progress(
                    f"uploading model.tar.gz ({archive.stat().st_size} bytes, sha256 {sha256}) "
                    f"to {gen.model_data_url}"
                )
                extra = {k: v for k, v in put.items() if k not in ("Bucket", "Key")}
                extra["Metadata"] = {**put["Metadata"], "sha256": sha256}
                extra["ChecksumSHA256"] = base64.b64encode(digest.digest()).decode()
                try:
                    with archive.open("rb") as body:
                        self.aws.client("s3").put_object(
                            Bucket=gen.bucket, Key=gen.key, Body=body, **extra
                        )
                except Exception as exc:
                    if error_code(exc) != "PreconditionFailed":
                        raise
                    raise ConflictError(
                        f"{gen.model_data_url} exists: another deploy of {gen.name!r} is making "
                        f"generation {gen.number} right now",
                        hint="wait for it to finish (modelport deployments get), then retry",
                    ) from None
            return {"bucket": gen.bucket, "key": gen.key, "sha256": sha256}

        def remove(done: Mapping[str, str]) -> None:
            if self._exists(lambda: self._sm().describe_model(ModelName=gen.model)):
                raise DeploymentError(f"the model {gen.model} still uses it")
            self.aws.client("s3").delete_object(
                Bucket=done["bucket"], Key=done["key"], ExpectedBucketOwner=self.aws.account
            )

        return Step(
            "upload-model",
            f"upload the package as {gen.model_data_url} (its files at the archive's root)",
            upload,
            undo=remove,
            kind="object",
            details={"calls": [_call("s3", "put_object", put)]},
            resource=lambda d: f"the object s3://{d['bucket']}/{d['key']}",
            remove_with=lambda d: f"aws s3 rm s3://{d['bucket']}/{d['key']}",
        )

    def _image_step(self, package: Package, config: SageMakerConfig) -> Step:
        if self.config.image_uri:
            uri = self.config.image_uri
            return Step(
                "use-image",
                f"serve with the image {uri} (given: nothing is built)",
                lambda _: uri,
                kind="image",
                details={"image": uri},
            )
        repository = self.config.ecr_repository
        return Step(
            "push-image",
            f"make sure ECR's {repository} holds the runtime image this package needs "
            "(built and pushed only when missing; shared: it stays)",
            lambda _: self._ensure_image(package, config),
            kind="image",
            details={
                "calls": [
                    _call("ecr", "describe_repositories", {"repositoryNames": [repository]}),
                    _call(
                        "ecr",
                        "create_repository (only if missing)",
                        {
                            "repositoryName": repository,
                            "imageTagMutability": "MUTABLE",
                            "imageScanningConfiguration": {"scanOnPush": True},
                        },
                    ),
                    _call(
                        "ecr",
                        "describe_images",
                        {
                            "repositoryName": repository,
                            "imageIds": [{"imageTag": "<runtime key>"}],
                        },
                    ),
                    _call("ecr", "get_authorization_token (only to push)", {}),
                ],
                "build": "only when ECR lacks the runtime key: the runtime image is built "
                "(or reused locally) and pushed as <registry>/"
                f"{repository}:<runtime key>",
            },
        )

    def _ensure_image(self, package: Package, config: SageMakerConfig) -> str:
        """The runtime image's ECR URI, pinned to its digest: pushed only when ECR lacks it."""
        from modelport.deployers.kit import images

        ecr = self.aws.client("ecr")
        repository = self.config.ecr_repository
        try:
            ecr.describe_repositories(repositoryNames=[repository])
        except Exception as exc:
            if error_code(exc) != "RepositoryNotFoundException":
                raise
            self.progress(f"creating the ECR repository {repository}")
            # Tags are content keys, so mutable costs nothing; immutable would fail the second
            # of two deploys that push the same key at once.
            try:
                ecr.create_repository(
                    repositoryName=repository,
                    imageTagMutability="MUTABLE",
                    imageScanningConfiguration={"scanOnPush": True},
                    tags=[{"Key": TAG_TARGET, "Value": TARGET}],
                )
            except Exception as exc:  # another deploy made it meanwhile: as good
                if error_code(exc) != "RepositoryAlreadyExistsException":
                    raise
        auth = ecr.get_authorization_token()["authorizationData"][0]
        registry = str(auth["proxyEndpoint"]).removeprefix("https://").removeprefix("http://")
        pip_cert = images.pip_cert_or_env(self.config.pip_cert)
        with images.ENGINE_ERRORS.translating("asking the container engine its architecture"):
            native = self.engine.architecture()
        wanted = self._architecture(config)
        with images.runtime_context(
            self.engine,
            package,
            base_image=self.config.base_image,
            index_url=self.config.index_url,
            pip_cert=pip_cert,
            # The instances' architecture, not the builder's (an arm64 laptop, say).
            platform=None if native == wanted else f"linux/{wanted}",
            progress=self.progress,
        ) as prepared:
            remote = f"{registry}/{repository}"
            found = self._ecr_digest(repository, prepared.key)
            if found is not None:
                self.progress(f"ECR has the runtime image {remote}:{prepared.key}: no build")
                return f"{remote}@{found}"
            runtime = images.build_runtime_image(self.engine, prepared, progress=self.progress)
            with images.ENGINE_ERRORS.translating(f"tagging {runtime.ref}"):
                self.engine.tag(runtime.ref, remote, prepared.key)
        user, _, password = base64.b64decode(auth["authorizationToken"]).decode().partition(":")
        pushed = images.push_image(
            self.engine,
            f"{remote}:{prepared.key}",
            auth=images.RegistryAuth(registry, username=user, password=password),
            progress=self.progress,
        )
        return pushed.pinned

    @staticmethod
    def _architecture(config: SageMakerConfig) -> str:
        """What the endpoint's instances run: arm64 on Graviton types (ml.c7g...), else amd64."""
        instance = config.instance_type or DEFAULT_INSTANCE_TYPE
        return "arm64" if not config.serverless and _GRAVITON.match(instance) else "amd64"

    def _ecr_digest(self, repository: str, tag: str) -> str | None:
        try:
            found = self.aws.client("ecr").describe_images(
                repositoryName=repository, imageIds=[{"imageTag": tag}]
            )
        except Exception as exc:
            if error_code(exc) == "ImageNotFoundException":
                return None
            raise
        details = found.get("imageDetails") or []
        return str(details[0]["imageDigest"]) if details else None

    def _model_step(
        self, gen: Generation, package: Package, image_step: str, config: SageMakerConfig
    ) -> Step:
        sm = self._sm

        def create(done: Mapping[str, Any]) -> str:
            params = self._model_params(
                gen, package, done[image_step], done["upload-model"]["sha256"], config
            )
            params["ExecutionRoleArn"] = self._require_role(config)
            sm().create_model(**params)
            return gen.model

        return Step(
            "create-model",
            f"create the SageMaker model {gen.model}",
            create,
            undo=lambda model: self._undo_model(gen),
            kind="model",
            details={
                "calls": [
                    _call(
                        "sagemaker",
                        "create_model",
                        self._model_params(
                            gen,
                            package,
                            self.config.image_uri or f"<the image of step {image_step}>",
                            "<sha256>",
                            config,
                        ),
                    )
                ]
            },
            resource=lambda m: f"the SageMaker model {m}",
            remove_with=lambda m: f"aws sagemaker delete-model --model-name {m}",
        )

    def _config_step(self, gen: Generation, package: Package, config: SageMakerConfig) -> Step:
        params = self._config_params(gen, package, config)
        sm = self._sm

        def create(_: Mapping[str, Any]) -> str:
            sm().create_endpoint_config(**params)
            return gen.model

        kind = (
            "serverless"
            if config.serverless
            else ("asynchronous" if config.async_output_s3 else "real-time")
        )
        return Step(
            "create-endpoint-config",
            f"create the endpoint config {gen.model} ({kind})",
            create,
            undo=lambda _: self._undo_config(gen),
            kind="endpoint-config",
            details={"calls": [_call("sagemaker", "create_endpoint_config", params)]},
            resource=lambda c: f"the endpoint config {c}",
            remove_with=lambda c: (
                f"aws sagemaker delete-endpoint-config --endpoint-config-name {c}"
            ),
        )

    # --- undoing a generation, never from under an endpoint ---------------------------------

    @staticmethod
    def _exists(describe: Any) -> bool:
        try:
            describe()
        except Exception as exc:
            if not_found(exc):
                return False
            raise
        return True

    def _undo_config(self, gen: Generation) -> None:
        """Delete the generation's endpoint config, unless the endpoint uses or may use it.

        SageMaker forbids deleting a config while CreateEndpoint or UpdateEndpoint runs on it:
        when an earlier undo could not stop the endpoint, the config (and so its model and
        upload) is left behind and reported, not pulled from under it.
        """
        found = self._describe_endpoint(gen.name)
        if found is not None and (
            found.get("EndpointConfigName") == gen.model
            or found.get("EndpointStatus") not in _SETTLED
        ):
            raise DeploymentError(
                f"the endpoint {gen.name} ({found.get('EndpointStatus')}) may still use it"
            )
        self._sm().delete_endpoint_config(EndpointConfigName=gen.model)

    def _undo_model(self, gen: Generation) -> None:
        """Delete the generation's model, unless its endpoint config is still there."""
        sm = self._sm()
        if self._exists(lambda: sm.describe_endpoint_config(EndpointConfigName=gen.model)):
            raise DeploymentError(f"the endpoint config {gen.model} still uses it")
        sm.delete_model(ModelName=gen.model)

    def _call_when_config_visible(self, call: Any, gen: Generation) -> None:
        """Make ``call`` (CreateEndpoint, UpdateEndpoint), again while its config is unseen.

        SageMaker reads endpoint configs eventually consistently: one just made may be "not
        found" for a moment.
        """

        def attempt() -> Seen:
            try:
                call()
            except Exception as exc:
                text = str(exc)
                if "Could not find endpoint configuration" in text or (
                    "Could not find" in text and gen.model in text
                ):
                    return Seen(status="its endpoint config is not visible yet")
                raise
            return Seen(done=True)

        wait_until(
            attempt,
            what=f"SageMaker to see the endpoint config {gen.model}",
            timeout_s=CONFIG_VISIBLE_S,
            interval_s=0.5,
            max_interval_s=5.0,
        )

    def _update_budget_s(self) -> float:
        """How long an update may take: a start, and every bake of the traffic shift."""
        traffic = self.config.traffic_policy
        return self.config.startup_timeout + traffic.steps * traffic.wait_s

    def _wait_settled(
        self, name: str, *, what: str, timeout_s: float | None = None
    ) -> dict[str, Any]:
        """Wait until the endpoint leaves Creating/Updating; its last description."""
        seen: list[dict[str, Any]] = []

        def poll() -> Seen:
            found = self._describe_endpoint(name)
            if found is None:
                return Seen(failed="the endpoint disappeared")
            seen.append(found)
            status = str(found.get("EndpointStatus"))
            return Seen(done=status in _SETTLED, status=status)

        wait_until(
            poll,
            what=what,
            timeout_s=self.config.startup_timeout if timeout_s is None else timeout_s,
            progress=self.progress,
            interval_s=0.25,
            max_interval_s=10.0,
            log=lambda: self._log_lines(name, 15),
            timeout_hint="allow more time with -C startup_timeout=SECONDS",
        )
        return seen[-1]

    def _failure(self, found: Mapping[str, Any]) -> str:
        reason = found.get("FailureReason") or "no reason given"
        return f"endpoint {found.get('EndpointName')} is {found.get('EndpointStatus')}: {reason}"

    def _wait_in_service(self, name: str) -> None:
        found = self._wait_settled(name, what=f"the endpoint {name} to be InService")
        if found.get("EndpointStatus") != "InService":
            lines = self._log_lines(name, 15)
            tail = "; its log ends:\n" + "\n".join(f"  {x}" for x in lines) if lines else ""
            raise DeploymentError(self._failure(found) + tail)

    def _delete_endpoint(self, name: str) -> None:
        """Delete the endpoint and wait until it is gone (its configs may then go)."""
        found = self._describe_endpoint(name)
        if found is None:
            return
        if found.get("EndpointStatus") in ("Creating", "Updating", "SystemUpdating"):
            # Deleting an endpoint mid-change is allowed, but what it leaves is not defined.
            self._wait_settled(name, what=f"the endpoint {name} to settle before deleting")
        try:
            self._sm().delete_endpoint(EndpointName=name)
        except Exception as exc:
            if not not_found(exc):
                raise
        wait_until(
            lambda: self._describe_endpoint(name) is None,
            what=f"the endpoint {name} to be deleted",
            timeout_s=self.config.startup_timeout,
            progress=self.progress,
            interval_s=0.25,
            max_interval_s=10.0,
        )

    def _endpoint_steps(self, gen: Generation, package: Package, *, wait: bool) -> list[Step]:
        name = gen.name
        params = {
            "EndpointName": name,
            "EndpointConfigName": gen.model,
            "Tags": _aws_tags(self._facts(name, package, gen.number, self.config)),
        }

        def create(_: Mapping[str, Any]) -> str:
            self._call_when_config_visible(lambda: self._sm().create_endpoint(**params), gen)
            return name

        steps = [
            Step(
                "create-endpoint",
                f"create the endpoint {name}",
                create,
                undo=lambda _: self._delete_endpoint(name),
                kind="endpoint",
                details={"calls": [_call("sagemaker", "create_endpoint", params)]},
                resource=lambda _: f"the endpoint {name}",
                remove_with=lambda _: f"aws sagemaker delete-endpoint --endpoint-name {name}",
            )
        ]
        if wait or self.config.autoscaling:
            steps.append(
                Step(
                    "wait-in-service",
                    f"wait until the endpoint {name} is InService (at most "
                    f"{self.config.startup_timeout:g} s)",
                    lambda _: self._wait_in_service(name),
                    kind="wait",
                    details={
                        "calls": [_call("sagemaker", "describe_endpoint", {"EndpointName": name})]
                    },
                )
            )
        if self.config.autoscaling:
            steps.append(self._scaling_step(name))
        return steps

    def _scaling_step(self, name: str) -> Step:
        target, policy = self._scaling_params(name)

        def register(_: Mapping[str, Any]) -> str:
            scaling = self.aws.client("application-autoscaling")
            scaling.register_scalable_target(**target)
            try:
                scaling.put_scaling_policy(**policy)
            except Exception:
                # The step failed half-way: its own undo will not run, so undo the half here.
                with contextlib.suppress(Exception):
                    self._deregister_scaling(name)
                raise
            return name

        return Step(
            "autoscaling",
            f"scale the variant between {self.config.min_instances} and "
            f"{self.config.max_instances} instances on invocations per instance",
            register,
            undo=lambda _: self._deregister_scaling(name),
            kind="autoscaling",
            details={
                "calls": [
                    _call("application-autoscaling", "register_scalable_target", target),
                    _call("application-autoscaling", "put_scaling_policy", policy),
                ]
            },
            resource=lambda _: f"the scalable target endpoint/{name}/variant/{VARIANT}",
        )

    def _scalable_target(self, name: str) -> dict[str, Any] | None:
        found = self.aws.client("application-autoscaling").describe_scalable_targets(
            ServiceNamespace="sagemaker",
            ResourceIds=[f"endpoint/{name}/variant/{VARIANT}"],
            ScalableDimension=SCALABLE_DIMENSION,
        )
        targets = found.get("ScalableTargets") or []
        return dict(targets[0]) if targets else None

    def _deregister_scaling(self, name: str) -> None:
        scaling = self.aws.client("application-autoscaling")
        resource = f"endpoint/{name}/variant/{VARIANT}"
        policies = (
            scaling.describe_scaling_policies(
                ServiceNamespace="sagemaker",
                ResourceId=resource,
                ScalableDimension=SCALABLE_DIMENSION,
            ).get("ScalingPolicies")
            or []
        )
        for policy in policies:
            scaling.delete_scaling_policy(
                PolicyName=policy["PolicyName"],
                ServiceNamespace="sagemaker",
                ResourceId=resource,
                ScalableDimension=SCALABLE_DIMENSION,
            )
        if self._scalable_target(name) is not None:
            scaling.deregister_scalable_target(
                ServiceNamespace="sagemaker",
                ResourceId=resource,
                ScalableDimension=SCALABLE_DIMENSION,
            )

    def _generation_steps(
        self, gen: Generation, package: Package, config: SageMakerConfig
    ) -> list[Step]:
        image = self._image_step(package, config)
        return [
            self._bucket_step(gen.bucket),
            self._upload_step(gen, package, config),
            image,
            self._model_step(gen, package, image.name, config),
            self._config_step(gen, package, config),
        ]

    def _next_generation(self, name: str) -> int:
        """One more than any generation of ``name`` left in SageMaker (1 for a new name)."""
        names = [m["ModelName"] for m in self._listed("list_models", "Models", NameContains=name)]
        names += [
            c["EndpointConfigName"]
            for c in self._listed("list_endpoint_configs", "EndpointConfigs", NameContains=name)
        ]
        return next_generation(names, name)

    def _listed(
        self, operation: str, key: str, *, service: str = "sagemaker", **params: Any
    ) -> Iterator[dict[str, Any]]:
        """Every item of a listing, through botocore's paginator for ``operation``."""
        for page in self.aws.client(service).get_paginator(operation).paginate(**params):
            yield from page.get(key) or []

    # --- records --------------------------------------------------------------------------

    def _record(self, found: Mapping[str, Any], *, updating: bool = False) -> Deployment:
        name = str(found["EndpointName"])
        sm = self._sm()
        config_name = str(found.get("EndpointConfigName") or "")
        details: dict[str, Any] = {
            "region": self.aws.region,
            "endpoint_arn": found.get("EndpointArn"),
            "endpoint_status": found.get("EndpointStatus"),
            "endpoint_config": config_name,
            "generation": parse_generation(config_name, name),
        }
        digest = ""
        updated = _time(found.get("CreationTime"))
        config: dict[str, Any] = {}
        with contextlib.suppress(Exception):
            config = sm.describe_endpoint_config(EndpointConfigName=config_name)
        if config:
            updated = _time(config.get("CreationTime"))
            facts = read_labels(Platform.AWS, self._tags(config["EndpointConfigArn"]))
            digest = facts.package_digest or ""
            details.update(provenance_details(facts))
            variants = config.get("ProductionVariants") or []
            if variants:
                details["model"] = variants[0].get("ModelName")
                details["variant"] = {
                    k: variants[0][k]
                    for k in ("InstanceType", "InitialInstanceCount", "ServerlessConfig")
                    if k in variants[0]
                }
            if config.get("AsyncInferenceConfig"):
                output = config["AsyncInferenceConfig"].get("OutputConfig") or {}
                details["async_output_s3"] = output.get("S3OutputPath")
            if (config.get("DataCaptureConfig") or {}).get("DestinationS3Uri"):
                details["data_capture_s3"] = config["DataCaptureConfig"]["DestinationS3Uri"]
        live = (found.get("ProductionVariants") or [{}])[0]
        for key in ("CurrentInstanceCount", "DesiredInstanceCount", "CurrentServerlessConfig"):
            if key in live:
                details.setdefault("variant", {})[key] = live[key]
        if found.get("FailureReason"):
            details["failure_reason"] = found["FailureReason"]
        with contextlib.suppress(Exception):
            scaling = self._scalable_target(name)
            if scaling:
                details["autoscaling"] = {
                    "min_instances": scaling.get("MinCapacity"),
                    "max_instances": scaling.get("MaxCapacity"),
                }
        job = background.last(default_home(), TARGET, name)
        if job is not None:
            details["update_job"] = job.to_dict()
            updating = updating or job.status == "running"
        status = _STATUS.get(str(found.get("EndpointStatus")), DeploymentStatus.UNKNOWN)
        if updating and status is DeploymentStatus.READY:
            status = DeploymentStatus.UPDATING
        runtime = self.aws.client("sagemaker-runtime").meta.endpoint_url
        return Deployment(
            name=name,
            target=TARGET,
            status=status,
            endpoint=f"{runtime}/endpoints/{name}/invocations",
            package_digest=digest,
            created_at=_time(found.get("CreationTime")),
            # The first endpoint config is made before its endpoint, maybe a second earlier.
            updated_at=max(updated, _time(found.get("CreationTime"))),
            details=details,
        )

    # --- the verbs ------------------------------------------------------------------------

    @AWS_ERRORS.translated("planning a sagemaker deployment")
    def create_steps(self, name: str, package: Package, *, wait: bool = True) -> list[Step]:
        """Upload, image, model, endpoint config, endpoint, wait (and autoscaling).

        Building them reads (the next generation, the account that names the bucket), and
        changes nothing.
        """
        gen = Generation(name, self._next_generation(name), self._bucket())
        return self._generation_steps(gen, package, self.config) + self._endpoint_steps(
            gen, package, wait=wait
        )

    @AWS_ERRORS.translated("creating a sagemaker deployment")
    def create(self, name: str, package: Package, *, wait: bool = True) -> Deployment:
        """Make the endpoint ``name`` serving ``package`` (see the module's docstring)."""
        self.check_name(name)
        self._require_role(self.config)
        if self._describe_endpoint(name) is not None:
            raise DeploymentExists(f"an endpoint named {name!r} exists in {self.aws.region}")
        self.rollout("create", self.create_steps(name, package, wait=wait)).run()
        found = self._describe_endpoint(name)
        if found is None:
            raise DeploymentError(f"the endpoint {name} vanished right after it was created")
        return self._record(found)

    def _update_steps(
        self,
        name: str,
        package: Package,
        gen: Generation,
        old_config: str,
        settings: SageMakerConfig,
    ) -> list[Step]:
        steps = self._generation_steps(gen, package, settings)
        scaling = self._scalable_target(name)
        if scaling is not None:
            # Autoscaling survives the update: off while the variant changes, then on again,
            # with the options given now or else the settings it had.
            old_policies = (
                self.aws.client("application-autoscaling")
                .describe_scaling_policies(
                    ServiceNamespace="sagemaker",
                    ResourceId=f"endpoint/{name}/variant/{VARIANT}",
                    ScalableDimension=SCALABLE_DIMENSION,
                )
                .get("ScalingPolicies")
                or []
            )

            def restore(_: Any) -> None:
                self._restore_scaling(scaling, old_policies)

            steps.append(
                Step(
                    "suspend-autoscaling",
                    f"deregister the scalable target of {name} while the variant changes",
                    lambda _: self._deregister_scaling(name),
                    undo=restore,
                    kind="autoscaling",
                )
            )
        update: dict[str, Any] = {"EndpointName": name, "EndpointConfigName": gen.model}
        deployment = self._deployment_config()
        if deployment is not None:
            update["DeploymentConfig"] = deployment

        old_streams: set[str] = set()

        def start(_: Mapping[str, Any]) -> str:
            # The old instances' log streams: what a rollback reports is the new ones' log.
            with contextlib.suppress(Exception):
                old_streams.update(self._log_streams(name))
            self._call_when_config_visible(lambda: self._sm().update_endpoint(**update), gen)
            return name

        def switch_back(_: Any) -> None:
            found = self._wait_settled(
                name, what=f"the endpoint {name} to settle", timeout_s=self._update_budget_s()
            )
            if found.get("EndpointConfigName") == gen.model:
                self.progress(f"switching {name} back to {old_config}")
                self._sm().update_endpoint(EndpointName=name, EndpointConfigName=old_config)
                self._wait_in_service(name)

        steps += [
            Step(
                "update-endpoint",
                f"switch the endpoint {name} to {gen.model}"
                + (" with SageMaker's blue/green guardrails" if deployment else ""),
                start,
                undo=switch_back,
                kind="endpoint",
                details={"calls": [_call("sagemaker", "update_endpoint", update)]},
                resource=lambda _: f"the endpoint {name} switched to {gen.model}",
                remove_with=lambda _: (
                    f"aws sagemaker update-endpoint --endpoint-name {name} "
                    f"--endpoint-config-name {old_config}"
                ),
            ),
            Step(
                "wait-updated",
                f"wait until {name} serves {gen.model}, or SageMaker rolls it back",
                lambda _: self._wait_updated(name, gen.model, old_streams),
                kind="wait",
            ),
        ]
        if settings.serverless and scaling is not None:
            # A serverless variant scales by itself: SageMaker takes no scalable target on it.
            self.progress.warn(
                f"{name} becomes serverless: its autoscaling "
                f"({scaling.get('MinCapacity')}-{scaling.get('MaxCapacity')} instances) is removed"
            )
        elif scaling is not None or self.config.autoscaling:
            if self.config.autoscaling:
                steps.append(self._scaling_step(name))
            else:
                steps.append(
                    Step(
                        "restore-autoscaling",
                        f"register the scalable target of {name} again",
                        lambda _: self._restore_scaling(scaling or {}, old_policies),
                        undo=lambda _: self._deregister_scaling(name),
                        kind="autoscaling",
                    )
                )
        return steps

    def _restore_scaling(
        self, target: Mapping[str, Any], policies: Sequence[Mapping[str, Any]]
    ) -> None:
        scaling = self.aws.client("application-autoscaling")
        keep = ("ServiceNamespace", "ResourceId", "ScalableDimension", "MinCapacity", "MaxCapacity")
        scaling.register_scalable_target(**{k: target[k] for k in keep if k in target})
        for policy in policies:
            fields = ("PolicyName", "ServiceNamespace", "ResourceId", "ScalableDimension")
            params = {k: policy[k] for k in (*fields, "PolicyType") if k in policy}
            for key in (
                "TargetTrackingScalingPolicyConfiguration",
                "StepScalingPolicyConfiguration",
            ):
                if key in policy:
                    params[key] = policy[key]
            scaling.put_scaling_policy(**params)

    def _wait_updated(self, name: str, new_config: str, old_streams: Collection[str]) -> None:
        found = self._wait_settled(
            name,
            what=f"the endpoint {name} to finish updating",
            timeout_s=self._update_budget_s(),
        )
        if found.get("EndpointStatus") == "InService" and found.get("EndpointConfigName") == (
            new_config
        ):
            return
        lines = self._log_lines(name, 15, skip_streams=old_streams)
        tail = "; the new version's log ends:\n" + "\n".join(f"  {x}" for x in lines)
        if found.get("EndpointStatus") == "InService":
            raise DeploymentError(
                f"SageMaker rolled the update of {name} back; the old version still serves: "
                f"{found.get('FailureReason') or 'no reason given'}" + (tail if lines else "")
            )
        raise DeploymentError(self._failure(found) + (tail if lines else ""))

    def _settings_for_update(
        self, endpoint: Mapping[str, Any], config_name: str
    ) -> SageMakerConfig:
        """The options of the next generation: those given, else what the deployment has now.

        An update without ``-C`` keeps the deployment as it is (instance type and count,
        serverless settings, asynchronous output, data capture, execution role, VPC, extra
        environment and tags, KMS key), changing only the package. Giving any variant option
        replaces the variant with the options given.
        """
        sm = self._sm()
        try:
            current = sm.describe_endpoint_config(EndpointConfigName=config_name)
        except Exception as exc:
            if not not_found(exc):
                raise
            return self.config  # its config is gone: nothing to keep
        variant = (current.get("ProductionVariants") or [{}])[0]
        model: dict[str, Any] = {}
        if variant.get("ModelName"):
            with contextlib.suppress(Exception):
                model = sm.describe_model(ModelName=variant["ModelName"])
        tags = self._tags(current["EndpointConfigArn"]) if current.get("EndpointConfigArn") else {}
        return self.config.inherit(
            endpoint_config=current,
            model=model,
            tags={k: v for k, v in tags.items() if not k.startswith("modelport:")},
            instance_count=(endpoint.get("ProductionVariants") or [{}])[0].get(
                "CurrentInstanceCount"
            ),
            ours=frozenset(self._environment_keys()),
        )

    @staticmethod
    def _environment_keys() -> tuple[str, ...]:
        """The container variables modelport sets itself (never "extra environment")."""
        from modelport.deployers.kit.images import PACKAGE_ENV_KEYS

        return ("MODELPORT_PACKAGE", *PACKAGE_ENV_KEYS)

    @AWS_ERRORS.translated("updating a sagemaker deployment")
    def update(self, name: str, package: Package, *, wait: bool = True) -> Deployment:
        """Switch the endpoint to ``package`` with a new generation (see the module docstring).

        With ``wait=False`` the same update runs in a background job and the record returned
        says ``updating``.
        """
        self.check_name(name)
        found = self._ours(name)
        current = self._record(found)
        if current.package_digest == package.digest:
            return current
        old_config = str(found["EndpointConfigName"])
        settings = self._settings_for_update(found, old_config)
        self._require_role(settings)
        if not wait:
            job = background.start(self, "update", name, package, home=default_home())
            record = self._record(found, updating=True)
            return dataclasses.replace(
                record, details={**record.details, "update_job": job.to_dict()}
            )
        background.refuse_if_busy(default_home(), TARGET, name)
        if found.get("EndpointStatus") != "InService":
            raise DeploymentError(
                f"the endpoint {name} is {found.get('EndpointStatus')}: it can be updated only "
                "when InService",
                hint="wait for it (modelport deployments get), or delete and deploy again",
            )
        gen = Generation(name, self._next_generation(name), self._bucket())
        steps = self._update_steps(name, package, gen, old_config, settings)
        self.rollout("update", steps).run()
        self._retire(name, package, gen, old_config, current)
        return self._record(self._ours(name))

    def _retire(
        self, name: str, package: Package, gen: Generation, old_config: str, old: Deployment
    ) -> None:
        """After a switch: tag the endpoint with the new facts, and remove the old generation.

        ``old``: the record before the switch; a provenance fact it had and the new package
        lacks is untagged (adding tags keeps the others).
        """
        sm = self._sm()
        try:
            with AWS_ERRORS.translating(f"tagging the endpoint {name}"):
                found = self._ours(name)
                sm.add_tags(
                    ResourceArn=found["EndpointArn"],
                    Tags=_aws_tags(self._facts(name, package, gen.number, self.config)),
                )
                new = provenance_details(with_provenance(Facts(), package.provenance))
                stale = [f for f in PROVENANCE_FACTS if f in old.details and f not in new]
                if stale:
                    sm.delete_tags(
                        ResourceArn=found["EndpointArn"],
                        TagKeys=[label_key(Platform.AWS, f) for f in stale],
                    )
                if self.config.keep_old:
                    self.progress(f"keeping the old generation {old_config} (keep_old)")
                    return
                self._remove_generation(name, old_config)
        except DeploymentError as exc:  # the new version serves: say what is left, do not fail
            self.progress.warn(
                f"the update succeeded, but cleaning up {old_config} failed ({exc}); "
                f"'modelport deployments delete -t sagemaker -n {name}' removes it with the rest"
            )

    def _remove_generation(self, name: str, config_name: str) -> None:
        """Delete a generation of ``name``: its endpoint config, its models, their uploads.

        Only what modelport made for ``name`` (by name, tag and S3 prefix): an endpoint someone
        pointed at another config by hand keeps that config's resources.
        """
        sm = self._sm()
        if parse_generation(config_name, name) is None:
            self.progress.warn(f"{config_name} is not a generation of {name}: it is left alone")
            return
        try:
            config = sm.describe_endpoint_config(EndpointConfigName=config_name)
        except Exception as exc:
            if not not_found(exc):
                raise
            config = {"ProductionVariants": []}
        else:
            if self._tags(config["EndpointConfigArn"]).get(TAG_DEPLOYMENT) != name:
                self.progress.warn(f"{config_name} was not made for {name}: it is left alone")
                return
            sm.delete_endpoint_config(EndpointConfigName=config_name)
        models = [v["ModelName"] for v in config.get("ProductionVariants") or []]
        for model in models or [config_name]:
            self._remove_model(name, model)

    def _remove_model(self, name: str, model: str) -> str | None:
        """Delete a model modelport made for ``name``, and its upload; the upload's bucket."""
        sm = self._sm()
        try:
            found = sm.describe_model(ModelName=model)
        except Exception as exc:
            if not_found(exc):
                return None
            raise
        if self._tags(found["ModelArn"]).get(TAG_DEPLOYMENT) != name:
            return None
        url = str((found.get("PrimaryContainer") or {}).get("ModelDataUrl") or "")
        sm.delete_model(ModelName=model)
        if not url.startswith("s3://"):
            return None
        bucket, key = _split_s3(url)
        if key.startswith(prefix(name)):
            with contextlib.suppress(Exception):
                self.aws.client("s3").delete_object(
                    Bucket=bucket, Key=key, ExpectedBucketOwner=self.aws.account
                )
        return bucket

    @AWS_ERRORS.translated("deleting a sagemaker deployment")
    def delete(self, name: str) -> None:
        """Remove the endpoint, its configs, models, autoscaling and uploads; fine if absent."""
        self.check_name(name)
        background.cancel(default_home(), TARGET, name, timeout=self.config.startup_timeout)
        found = self._describe_endpoint(name)
        if found is not None and self._tags(found["EndpointArn"]).get(TAG_TARGET) != TARGET:
            raise DeploymentError(
                f"the endpoint {name} was not made by modelport: it is left alone"
            )
        if self._scalable_target(name) is not None:
            self._deregister_scaling(name)
        if found is not None:
            self._delete_endpoint(name)
        sm = self._sm()
        buckets = {self._bucket()}
        for config in builtins.list(
            self._listed("list_endpoint_configs", "EndpointConfigs", NameContains=name)
        ):
            config_name = config["EndpointConfigName"]
            if parse_generation(config_name, name) is None:
                continue
            arn = config["EndpointConfigArn"]
            if self._tags(arn).get(TAG_DEPLOYMENT) == name:
                sm.delete_endpoint_config(EndpointConfigName=config_name)
        for model in builtins.list(self._listed("list_models", "Models", NameContains=name)):
            if parse_generation(model["ModelName"], name) is not None:
                bucket = self._remove_model(name, model["ModelName"])
                buckets.update([bucket] if bucket else [])
        s3 = self.aws.client("s3")
        owner = self.aws.account
        for bucket in sorted(buckets):
            try:
                listed = self._listed(
                    "list_objects_v2",
                    "Contents",
                    service="s3",
                    Bucket=bucket,
                    Prefix=prefix(name),
                    ExpectedBucketOwner=owner,
                )
                objects = [str(item["Key"]) for item in listed]
            except Exception as exc:
                if error_code(exc) in ("NoSuchBucket", "404"):
                    continue
                if error_code(exc) == "AccessDenied" and bucket != self._bucket():
                    self.progress.warn(f"cannot list s3://{bucket}/{prefix(name)}: left alone")
                    continue
                raise
            for key in objects:
                s3.delete_object(Bucket=bucket, Key=key, ExpectedBucketOwner=owner)

    @AWS_ERRORS.translated("reading a sagemaker deployment")
    def get(self, name: str) -> Deployment:
        """The endpoint's status, variant, package digest, URL and times."""
        self.check_name(name)
        return self._record(self._ours(name))

    @AWS_ERRORS.translated("listing the sagemaker deployments")
    def list(self) -> Sequence[Deployment]:
        """Every endpoint in the region that modelport made (by its tags), by name."""
        result = []
        for summary in self._listed("list_endpoints", "Endpoints"):
            tags = self._tags(summary["EndpointArn"])
            if tags.get(TAG_TARGET) != TARGET:
                continue
            with contextlib.suppress(DeploymentNotFound, UsageError):
                self.check_name(str(summary["EndpointName"]))
                found = self._describe_endpoint(str(summary["EndpointName"]))
                if found is not None:
                    result.append(self._record(found))
        return sorted(result, key=lambda d: d.name)

    @AWS_ERRORS.translated("asking a sagemaker deployment")
    def predict(self, name: str, payload: Mapping[str, Any]) -> dict[str, Any]:
        """``InvokeEndpoint`` with a JSON body (asynchronous endpoints: through S3)."""
        raw, _ = self.predict_body(
            name, json.dumps(payload).encode(), content_type=JSON, accept=JSON
        )
        return self._json_answer(name, raw)

    @AWS_ERRORS.translated("asking a sagemaker deployment")
    def predict_body(
        self, name: str, body: bytes, *, content_type: str, accept: str | None = None
    ) -> tuple[bytes, str]:
        """``InvokeEndpoint`` with a body as it is (CSV, NumPy, ...); asynchronous: via S3."""
        self.check_name(name)
        found = self._ours(name)
        config: dict[str, Any] = {}
        with contextlib.suppress(Exception):
            config = self._sm().describe_endpoint_config(
                EndpointConfigName=found["EndpointConfigName"]
            )
        if config.get("AsyncInferenceConfig"):
            return self._predict_async(name, config, body, content_type, accept)
        if found.get("EndpointStatus") not in ("InService", "Updating", "SystemUpdating"):
            raise DeploymentError(
                f"the endpoint {name} is {found.get('EndpointStatus')}: it does not serve",
                hint=found.get("FailureReason"),
            )
        runtime = self.aws.client("sagemaker-runtime")
        try:
            answer = runtime.invoke_endpoint(
                EndpointName=name,
                ContentType=content_type,
                Body=body,
                **({"Accept": accept} if accept else {}),
            )
        except Exception as exc:
            if error_code(exc) == "ModelError":
                raise self._model_error(name, exc) from None
            raise
        return answer["Body"].read(), str(answer.get("ContentType") or "")

    @staticmethod
    def _json_answer(name: str, raw: bytes) -> dict[str, Any]:
        try:
            answer = json.loads(raw)
        except ValueError:
            raise DeploymentError(f"the endpoint {name} answered something not JSON") from None
        if not isinstance(answer, dict):
            raise DeploymentError(f"the endpoint {name} answered JSON that is not an object")
        return answer

    @staticmethod
    def _model_error(name: str, exc: Any) -> Exception:
        """SageMaker's ModelError (the container answered an error) as modelport's error."""
        status = exc.response.get("OriginalStatusCode")
        original = exc.response.get("OriginalMessage") or ""
        message = str(original)
        with contextlib.suppress(ValueError, TypeError, AttributeError):
            message = str(json.loads(original).get("message") or original)
        if isinstance(status, int) and 400 <= status < 500:
            return InputError(message or f"the endpoint {name} refused the input ({status})")
        if status == 500:
            return ModelError(message or "the model failed (HTTP 500)")
        return DeploymentError(f"the endpoint {name} answered HTTP {status}: {message}")

    def _predict_async(
        self,
        name: str,
        config: Mapping[str, Any],
        body: bytes,
        content_type: str,
        accept: str | None,
    ) -> tuple[bytes, str]:
        """Put the request in S3, invoke asynchronously, wait for the answer object.

        The request object, and the answer (or failure) object once read, are removed: a
        ``predict`` leaves nothing in the bucket.
        """
        s3 = self.aws.client("s3")
        output = config["AsyncInferenceConfig"]["OutputConfig"]["S3OutputPath"]
        bucket, key_prefix = _split_s3(output.rstrip("/") + "/")
        key = f"{key_prefix}modelport-requests/{uuid.uuid4().hex}"
        s3.put_object(Bucket=bucket, Key=key, Body=body, ContentType=content_type)
        landed: list[tuple[str, bool]] = []
        try:
            answer = self.aws.client("sagemaker-runtime").invoke_endpoint_async(
                EndpointName=name,
                ContentType=content_type,
                InputLocation=f"s3://{bucket}/{key}",
                **({"Accept": accept} if accept else {}),
            )
            places = [(str(answer["OutputLocation"]), False)]
            if answer.get("FailureLocation"):
                places.append((str(answer["FailureLocation"]), True))

            def arrived() -> bool:
                for where, failed in places:
                    try:
                        s3.head_object(Bucket=_split_s3(where)[0], Key=_split_s3(where)[1])
                    except Exception as exc:
                        if error_code(exc) in ("404", "NoSuchKey", "NotFound"):
                            continue
                        raise
                    landed.append((where, failed))
                    return True
                return False

            wait_until(
                arrived,
                what=f"the answer of {name} at {answer['OutputLocation']}",
                timeout_s=ASYNC_ANSWER_TIMEOUT_S,
                interval_s=0.1,
                max_interval_s=5.0,
            )
            where, failed = landed[0]
            result = s3.get_object(Bucket=_split_s3(where)[0], Key=_split_s3(where)[1])
            raw = result["Body"].read()
        finally:
            with contextlib.suppress(Exception):
                s3.delete_object(Bucket=bucket, Key=key)
            for where, _ in landed:
                with contextlib.suppress(Exception):
                    s3.delete_object(Bucket=_split_s3(where)[0], Key=_split_s3(where)[1])
        if failed:
            raise self._async_failure(name, raw)
        return raw, str(result.get("ContentType") or "")

    @staticmethod
    def _async_failure(name: str, raw: bytes) -> Exception:
        """An asynchronous request's failure object as modelport's error.

        The container's error answer is modelport's JSON error (``error_code``, ``message``):
        a request error is an :class:`InputError`, a failure of the model a ``ModelError``.
        """
        text = raw.decode("utf-8", "replace")
        code, message = "", text[:500]
        with contextlib.suppress(ValueError, TypeError, AttributeError):
            found = json.loads(text)
            code = str(found.get("error_code") or "")
            message = str(found.get("message") or message)
        if code in ("BAD_REQUEST", "INVALID_PARAMETER_VALUE", "REQUEST_LIMIT_EXCEEDED"):
            return InputError(message)
        if code == "INTERNAL_ERROR":
            return ModelError(message)
        return DeploymentError(f"the asynchronous request to {name} failed: {message}")

    def _log_streams(self, name: str) -> builtins.list[str]:
        """The endpoint's log streams (one per instance), most recently written first."""
        logs = self.aws.client("logs")
        found = logs.describe_log_streams(
            logGroupName=LOG_GROUP.format(name=name),
            orderBy="LastEventTime",
            descending=True,
            limit=50,
        )
        return [str(s["logStreamName"]) for s in found.get("logStreams") or []]

    def _stream_events(
        self, name: str, stream: str, tail: int | None
    ) -> builtins.list[tuple[int, str]]:
        """A stream's (timestamp, message) pairs, oldest first: its last ``tail``, or all."""
        logs = self.aws.client("logs")
        params: dict[str, Any] = {
            "logGroupName": LOG_GROUP.format(name=name),
            "logStreamName": stream,
            "startFromHead": tail is None,
            # Up to now: reading from the head of a busy stream would never end otherwise.
            "endTime": int(time.time() * 1000),
        }
        if tail is not None:
            page = logs.get_log_events(**params, limit=min(max(tail, 1), MAX_LOG_EVENTS))
            return [(int(e["timestamp"]), str(e["message"])) for e in page.get("events") or []]
        messages: builtins.list[tuple[int, str]] = []
        while True:  # empty or short pages do not mean the end: the token stopping does
            page = logs.get_log_events(**params)
            messages += [(int(e["timestamp"]), str(e["message"])) for e in page.get("events") or []]
            token = page.get("nextForwardToken")
            if not token or token == params.get("nextToken"):
                return messages
            params["nextToken"] = token

    def _log_lines(
        self,
        name: str,
        tail: int | None,
        *,
        strict: bool = False,
        skip_streams: Collection[str] = (),
    ) -> builtins.list[str]:
        """The endpoint's CloudWatch log lines, ``[stream] message``, oldest first.

        Args:
            name: the endpoint.
            tail: how many lines at most (None: all).
            strict: raise what AWS refuses (``logs``); else a failure to read gives no lines (a
                log tail added to another error must not hide that error).
            skip_streams: streams to leave out (those of instances older than an update).
        """
        try:
            streams = [s for s in self._log_streams(name) if s not in skip_streams]
            # By time, then stream, then place in its stream: lines of one millisecond keep
            # the order they were written in.
            events = [
                (stamp, rank, index, stream, message)
                for rank, stream in enumerate(streams)
                for index, (stamp, message) in enumerate(self._stream_events(name, stream, tail))
            ]
        except Exception as exc:
            if error_code(exc) == "ResourceNotFoundException":
                return []
            if strict or AWS_ERRORS.translate(exc, "reading the log") is None:
                raise
            return []
        lines = [f"[{stream}] {message.rstrip()}" for *_, stream, message in sorted(events)]
        return lines[-tail:] if tail else ([] if tail == 0 else lines)

    @AWS_ERRORS.translated("reading a sagemaker deployment's log")
    def logs(self, name: str, *, tail: int | None = 100) -> Iterator[str]:
        """The endpoint's CloudWatch log lines (every instance's stream), oldest first."""
        self.check_name(name)
        self._ours(name)
        if tail == 0:
            return iter(())
        return iter(self._log_lines(name, tail, strict=True))
