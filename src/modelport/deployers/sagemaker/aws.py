"""boto3 for the ``sagemaker`` target: one session, its clients, and AWS errors with hints.

boto3 is imported here and in this folder only (the ``modelport[sagemaker]`` extra). The session
follows boto3's own chain for credentials and region, plus the target's ``region``, ``profile``
and ``assume_role_arn``; ``AWS_ENDPOINT_URL`` / ``AWS_ENDPOINT_URL_<SERVICE>`` are boto3's and
are never overridden (private endpoints and tests use them). Throttled calls are retried with
backoff by botocore's ``standard`` retry mode.
"""

from __future__ import annotations

import os
import re
import sys
from typing import Any

from modelport.deployers.kit.errors import Classified, ErrorMap, Kind, kind_for_status
from modelport.errors import MissingDependencyError, UsageError

TARGET = "sagemaker"
#: botocore's retry mode and attempts: throttling and transient errors back off and retry.
RETRIES = {"mode": "standard", "max_attempts": 10}
#: A prediction is not idempotent: asked again at most once, and answered within SageMaker's
#: 60 s limit (plus the way there and back).
RUNTIME_RETRIES = {"mode": "standard", "max_attempts": 2}
RUNTIME_READ_TIMEOUT_S = 70

_THROTTLED = {
    "ThrottlingException",
    "Throttling",
    "TooManyRequestsException",
    "RequestLimitExceeded",
    "SlowDown",
    "ProvisionedThroughputExceededException",
}
_QUOTA = {"ResourceLimitExceeded", "LimitExceededException", "ServiceQuotaExceededException"}
_DENIED = {
    "AccessDenied",
    "AccessDeniedException",
    "UnauthorizedOperation",
    "UnrecognizedClientException",
    "InvalidClientTokenId",
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "ExpiredToken",
    "ExpiredTokenException",
    "AuthFailure",
}
_NOT_FOUND = {
    "ResourceNotFound",
    "ResourceNotFoundException",
    "NoSuchBucket",
    "NoSuchKey",
    "NotFound",
    "RepositoryNotFoundException",
    "ImageNotFoundException",
    "ObjectNotFoundException",
}
_CONFLICT = {
    "ResourceInUse",
    "ConflictException",
    "BucketAlreadyExists",
    "BucketAlreadyOwnedByYou",
    "RepositoryAlreadyExistsException",
    "ConcurrentUpdateException",
    "PreconditionFailed",
}
_NOT_AUTHORIZED = re.compile(r"not authorized to perform: (\S+)(?: on resource: (\S+))?")
#: Which option a request field in a ValidationException comes from.
_FIELD_OPTIONS = {
    "ExecutionRoleArn": "role_arn",
    "InstanceType": "instance_type",
    "InitialInstanceCount": "instance_count",
    "MemorySizeInMB": "serverless_memory_mb",
    "MaxConcurrency": "serverless_max_concurrency",
    "S3OutputPath": "async_output_s3",
    "SuccessTopic": "async_sns_topic",
    "DestinationS3Uri": "data_capture_s3",
    "InitialSamplingPercentage": "data_capture_percent",
    "Subnets": "subnets",
    "SecurityGroupIds": "security_groups",
    "Image": "image_uri",
    "AlarmName": "rollback_alarms",
    "TrafficRoutingConfiguration": "traffic",
    "MinCapacity": "min_instances",
    "MaxCapacity": "max_instances",
}


def _client_error_detail(exc: Any) -> tuple[str, str, int | None]:
    error = exc.response.get("Error") or {}
    code = str(error.get("Code") or "")
    message = str(error.get("Message") or exc)
    status = (exc.response.get("ResponseMetadata") or {}).get("HTTPStatusCode")
    return code, message, status


def _classify_client_error(exc: Any) -> Classified:
    code, message, status = _client_error_detail(exc)
    detail = f"{code}: {message}" if code else message
    if code in _THROTTLED:
        return Classified(Kind.THROTTLED, detail)
    if code in _QUOTA:
        return Classified(
            Kind.QUOTA,
            detail,
            hint="ask for more in Service Quotas (the quota is named above), or ask for fewer "
            "or smaller instances (-C instance_type, -C instance_count, -C max_instances)",
        )
    if code in _DENIED:
        found = _NOT_AUTHORIZED.search(message)
        if found:
            action, resource = found.group(1), found.group(2) or "*"
            hint = f"allow {action} on {resource} for the credentials in use"
        else:
            hint = "check the credentials (AWS_PROFILE, -C profile, -C assume_role_arn)"
        return Classified(Kind.PERMISSION_DENIED, detail, hint=hint)
    if code in _NOT_FOUND or (code == "ValidationException" and "Could not find" in message):
        return Classified(Kind.NOT_FOUND, detail)
    if code in _CONFLICT or "already existing" in message or "in-progress" in message:
        return Classified(Kind.CONFLICT, detail)
    # sagemaker-runtime says ValidationError where the control plane says ValidationException.
    validation = ("ValidationException", "ValidationError", "InvalidParameterValue")
    if code in (*validation, "InvalidParameterException"):
        options = sorted({o for f, o in _FIELD_OPTIONS.items() if f in message})
        hint = (
            "check " + ", ".join(f"-C {o}" for o in options)
            if options
            else "check the -C options this request is made of (see --dry-run)"
        )
        return Classified(Kind.INVALID, detail, hint=hint)
    return Classified(kind_for_status(status) or Kind.OTHER, detail)


def _classify(exc: BaseException) -> Kind | Classified | None:
    """What a botocore exception means (None: not botocore's)."""
    exceptions = sys.modules.get("botocore.exceptions")
    if exceptions is None:
        return None
    if isinstance(exc, exceptions.ClientError):
        return _classify_client_error(exc)
    if isinstance(exc, (exceptions.NoCredentialsError, exceptions.PartialCredentialsError)):
        return Classified(
            Kind.PERMISSION_DENIED,
            str(exc),
            hint="set AWS credentials (aws configure, AWS_PROFILE or -C profile)",
        )
    if isinstance(exc, exceptions.ProfileNotFound):
        return Classified(Kind.INVALID, str(exc), hint="check -C profile / AWS_PROFILE")
    if isinstance(exc, exceptions.NoRegionError):
        return Classified(Kind.INVALID, str(exc), hint=REGION_HINT)
    if isinstance(exc, (exceptions.EndpointConnectionError, exceptions.ConnectionError)):
        return Classified(Kind.UNAVAILABLE, str(exc))
    if isinstance(exc, exceptions.BotoCoreError):
        return Classified(Kind.OTHER, str(exc))
    return None


REGION_HINT = "use -t sagemaker:/REGION, -C region=REGION or AWS_DEFAULT_REGION"
AWS_ERRORS = ErrorMap(
    TARGET,
    _classify,
    hints={Kind.UNAVAILABLE: "check the network, AWS_ENDPOINT_URL and any proxy in between"},
    reference="https://docs.aws.amazon.com/sagemaker/latest/APIReference/CommonErrors.html",
)


def error_code(exc: BaseException) -> str | None:
    """The AWS error code of a botocore ``ClientError`` (None for anything else)."""
    response = getattr(exc, "response", None)
    if not isinstance(response, dict):
        return None
    return str((response.get("Error") or {}).get("Code") or "") or None


def not_found(exc: BaseException) -> bool:
    """Whether a SageMaker describe/delete failed because the resource is not there.

    SageMaker answers a missing model, endpoint config or endpoint with a ValidationException
    saying "Could not find ..." (no error code of its own).
    """
    return error_code(exc) == "ValidationException" and "Could not find" in str(exc)


class Aws:
    """A boto3 session for one region, and its clients, made on first use.

    Args:
        region: the region; default boto3's (``AWS_REGION``, ``AWS_DEFAULT_REGION``, the
            profile's).
        profile: a named profile.
        assume_role_arn: a role to assume first.

    Raises:
        MissingDependencyError: boto3 is not installed.
    """

    def __init__(
        self,
        region: str | None = None,
        profile: str | None = None,
        assume_role_arn: str | None = None,
    ) -> None:
        try:
            import boto3
            from botocore.config import Config
        except ImportError:
            raise MissingDependencyError("the sagemaker target", "sagemaker", "boto3") from None
        with AWS_ERRORS.translating("opening the AWS session"):
            session = boto3.Session(profile_name=profile, region_name=region)
        region = region or session.region_name
        if not region:
            raise UsageError("no AWS region is set for the sagemaker target", hint=REGION_HINT)
        self._config_class = Config
        self._config = Config(retries=dict(RETRIES), user_agent_extra="modelport")
        if assume_role_arn:
            session = self._assumed(session, assume_role_arn, region)
        self.session = session
        self.region = region
        self._clients: dict[str, Any] = {}
        self._account: str | None = None

    def _assumed(self, source: Any, role_arn: str, region: str) -> Any:
        """A session with ``role_arn``'s credentials: assumed on first use, renewed in time.

        A deploy may outlive the hour STS's credentials last.
        """
        import boto3
        import botocore.session
        from botocore.credentials import (
            AssumeRoleCredentialFetcher,
            DeferredRefreshableCredentials,
        )

        with AWS_ERRORS.translating(f"assuming the role {role_arn}"):
            credentials = source.get_credentials()
            if credentials is None:
                raise UsageError(
                    f"no credentials to assume {role_arn} with",
                    hint="set AWS credentials (aws configure, AWS_PROFILE or -C profile)",
                )
            fetcher = AssumeRoleCredentialFetcher(
                client_creator=source._session.create_client,
                source_credentials=credentials,
                role_arn=role_arn,
                extra_args={"RoleSessionName": f"modelport-{os.getpid()}"},
            )
            core = botocore.session.Session()
            core._credentials = DeferredRefreshableCredentials(
                method="assume-role", refresh_using=fetcher.fetch_credentials
            )
            return boto3.Session(botocore_session=core, region_name=region)

    def client(self, service: str) -> Any:
        """The boto3 client of ``service`` (``sagemaker``, ``s3``, ...), made once."""
        if service not in self._clients:
            config = self._config
            if service == "sagemaker-runtime":
                config = config.merge(
                    self._config_class(
                        retries=dict(RUNTIME_RETRIES),
                        read_timeout=RUNTIME_READ_TIMEOUT_S,
                    )
                )
            self._clients[service] = self.session.client(
                service, region_name=self.region, config=config
            )
        return self._clients[service]

    @property
    def account(self) -> str:
        """The account the credentials belong to (``sts:GetCallerIdentity``, asked once)."""
        if self._account is None:
            with AWS_ERRORS.translating("asking STS which account the credentials belong to"):
                self._account = str(self.client("sts").get_caller_identity()["Account"])
        return self._account
