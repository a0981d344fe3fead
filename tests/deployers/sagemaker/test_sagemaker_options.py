"""The sagemaker target's options and AWS error translation, without any AWS.

Options are checked against SageMaker's rules before any call (a serverless memory it refuses, a
canary of 0 %, async with serverless); botocore's real exceptions become modelport's errors with
a hint naming the action, the quota or the option at fault.
"""

from __future__ import annotations

from typing import Any

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError, NoCredentialsError

from modelport.deployers import connect
from modelport.deployers.sagemaker import SageMakerDeployer, Traffic
from modelport.deployers.sagemaker.aws import AWS_ERRORS
from modelport.errors import (
    ConfigError,
    ConflictError,
    DeploymentError,
    PermissionDeniedError,
    QuotaExceededError,
    ResourceNotFound,
    TargetUnavailableError,
    ThrottledError,
)

ROLE = "arn:aws:iam::123456789012:role/modelport"


def client_error(code: str, message: str, status: int = 400, operation: str = "X") -> ClientError:
    response: Any = {
        "Error": {"Code": code, "Message": message},
        "ResponseMetadata": {"HTTPStatusCode": status},
    }
    return ClientError(response, operation)


# --- options --------------------------------------------------------------------------------


def test_the_uri_sets_the_region() -> None:
    target = connect("sagemaker:/eu-west-1", environ={})
    assert isinstance(target, SageMakerDeployer)
    assert target.config.region == "eu-west-1"


def test_a_uri_with_more_than_a_region_is_refused() -> None:
    with pytest.raises(ConfigError, match="sagemaker:/REGION"):
        connect("sagemaker:/eu-west-1/extra", environ={})


def test_read_verbs_need_no_role() -> None:
    """list/get/predict/logs/delete work with a region and credentials alone."""
    assert connect("sagemaker", environ={}).config.role_arn is None


def test_options_from_the_cli_are_typed() -> None:
    target = connect(
        "sagemaker:/us-east-1",
        {
            "role_arn": ROLE,
            "instance_count": "2",
            "rollback_alarms": '["errors", "latency"]',
            "traffic": "linear:20:60",
            "env": '{"MODELPORT_WORKERS": "2"}',
            "keep_old": "true",
        },
        environ={},
    )
    config = target.config
    assert config.instance_count == 2
    assert config.rollback_alarms == ["errors", "latency"]
    assert config.env == {"MODELPORT_WORKERS": "2"}
    assert config.keep_old is True


@pytest.mark.parametrize(
    ("options", "problem"),
    [
        ({"serverless_memory_mb": 1500}, "serverless_memory_mb must be one of 1024, 2048"),
        ({"serverless_memory_mb": 2048, "serverless_max_concurrency": 0}, "1-200"),
        (
            {"serverless_memory_mb": 2048, "async_output_s3": "s3://bucket/out"},
            "serverless endpoints do not take asynchronous inference",
        ),
        (
            {"serverless_memory_mb": 2048, "min_instances": 1, "max_instances": 2},
            "serverless endpoints scale by themselves",
        ),
        ({"min_instances": 1}, "needs both min_instances and max_instances"),
        ({"min_instances": 3, "max_instances": 2}, "1 <= min_instances <= max_instances"),
        ({"traffic": "canary:0:60"}, "a canary step must be 1-50 %, got 0"),
        ({"traffic": "canary:60:60"}, "a canary step must be 1-50 %, got 60"),
        ({"traffic": "linear:5:60"}, "a linear step must be 10-50 %, got 5"),
        ({"rollback_alarms": '["errors"]'}, "rollback_alarms need a time to watch them"),
        (
            {"serverless_memory_mb": 2048, "traffic": "canary:10:60"},
            "serverless endpoints take no deployment guardrails",
        ),
        ({"tags": '{"aws:owner": "x"}'}, "'aws:owner' is reserved"),
        ({"tags": {f"k{i}": "v" for i in range(42)}}, "tags: at most 41"),
        ({"traffic": "canary:10:7200"}, "at most 3600 s"),
        ({"traffic": "blue-green"}, "traffic must be all_at_once"),
        ({"role_arn": "my-role"}, "role_arn must be an IAM role ARN"),
        ({"async_output_s3": "bucket/out"}, "async_output_s3 must be an s3://"),
        ({"async_sns_topic": "arn:aws:sns:us-east-1:123456789012:t"}, "needs async_output_s3"),
        ({"instance_type": "m5.large"}, "instance_type must look like ml.m5.large"),
        ({"region": "Europe"}, "is not an AWS region name"),
        ({"data_capture_percent": 0}, "data_capture_percent must be 1-100"),
        ({"rollback_alarms": [f"a{i}" for i in range(11)]}, "at most 10 alarms"),
    ],
)
def test_options_sagemaker_refuses_are_refused_before_any_call(
    options: dict[str, Any], problem: str
) -> None:
    with pytest.raises(ConfigError, match=problem.replace("(", r"\(").replace(".", r"\.")):
        connect("sagemaker", options, environ={})


def test_every_problem_is_reported_at_once() -> None:
    with pytest.raises(ConfigError) as caught:
        connect(
            "sagemaker",
            {"role_arn": "x", "instance_type": "bad", "instance_count": 0},
            environ={},
        )
    message = str(caught.value)
    assert "role_arn must be an IAM role ARN" in message
    assert "instance_type must look like" in message
    assert "instance_count must be at least 1" in message


@pytest.mark.parametrize(
    ("text", "routing"),
    [
        ("all_at_once", {"Type": "ALL_AT_ONCE", "WaitIntervalInSeconds": 0}),
        (
            "canary:10:300",
            {
                "Type": "CANARY",
                "WaitIntervalInSeconds": 300,
                "CanarySize": {"Type": "CAPACITY_PERCENT", "Value": 10},
            },
        ),
        (
            "linear:25:60",
            {
                "Type": "LINEAR",
                "WaitIntervalInSeconds": 60,
                "LinearStepSize": {"Type": "CAPACITY_PERCENT", "Value": 25},
            },
        ),
    ],
)
def test_traffic_becomes_sagemakers_routing(text: str, routing: dict[str, Any]) -> None:
    assert Traffic.parse(text).routing() == routing


def test_the_target_describes_every_option() -> None:
    from modelport.deployers.base import describe_config

    described = describe_config(SageMakerDeployer)
    assert described["role_arn"]["required"] is False
    assert "s3:GetObject" in described["role_arn"]["help"]
    assert "default ml.m5.large" in described["instance_type"]["help"]
    assert all(option["help"] for option in described.values())


# --- AWS errors -----------------------------------------------------------------------------


def test_access_denied_names_the_action_and_the_resource() -> None:
    error = AWS_ERRORS.translate(
        client_error(
            "AccessDeniedException",
            "User: arn:aws:sts::123456789012:assumed-role/ci/x is not authorized to perform: "
            "sagemaker:CreateModel on resource: arn:aws:sagemaker:us-east-1:123456789012:"
            "model/churn-g1 because no identity-based policy allows the action",
        ),
        "create step 'create-model'",
    )
    assert isinstance(error, PermissionDeniedError)
    assert error.hint == (
        "allow sagemaker:CreateModel on arn:aws:sagemaker:us-east-1:123456789012:model/churn-g1 "
        "for the credentials in use"
    )
    assert "create step 'create-model' failed on target 'sagemaker'" in str(error)


def test_a_quota_names_itself_and_what_to_ask_for() -> None:
    error = AWS_ERRORS.translate(
        client_error(
            "ResourceLimitExceeded",
            "The account-level service limit 'ml.g5.xlarge for endpoint usage' is 0 Instances",
        ),
        "create step 'create-endpoint'",
    )
    assert isinstance(error, QuotaExceededError)
    assert "ml.g5.xlarge for endpoint usage" in str(error)
    assert error.hint is not None and "Service Quotas" in error.hint


def test_a_validation_error_names_the_option() -> None:
    error = AWS_ERRORS.translate(
        client_error(
            "ValidationException",
            "1 validation error detected: Value 'ml.nope' at "
            "'productionVariants.1.member.instanceType' failed to satisfy constraint "
            "(InstanceType)",
        ),
        "create step 'create-endpoint-config'",
    )
    assert isinstance(error, DeploymentError)
    assert error.hint == "check -C instance_type"


@pytest.mark.parametrize(
    ("exc", "kind"),
    [
        (client_error("ThrottlingException", "Rate exceeded"), ThrottledError),
        (client_error("ValidationException", 'Could not find endpoint "x".'), ResourceNotFound),
        (
            client_error("ValidationException", 'Cannot create already existing model "arn:x".'),
            ConflictError,
        ),
        (
            client_error("NoSuchBucket", "The specified bucket does not exist", 404),
            ResourceNotFound,
        ),
        (client_error("InternalFailure", "oops", 503), TargetUnavailableError),
        (NoCredentialsError(), PermissionDeniedError),
        (EndpointConnectionError(endpoint_url="https://sagemaker.x"), TargetUnavailableError),
    ],
)
def test_aws_errors_map_onto_modelports(exc: Exception, kind: type[Exception]) -> None:
    error = AWS_ERRORS.translate(exc, "doing it")
    assert type(error) is kind
    assert error.hint


def test_anything_else_passes_through() -> None:
    assert AWS_ERRORS.translate(ValueError("ours"), "doing it") is None
