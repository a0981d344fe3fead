"""The fake AWS itself, driven with raw boto3: each of moto's gaps it closes, shown closed.

Real model data (``model.tar.gz`` of the ``Y = X * scale`` test packages) goes to the fake's S3;
real hosts serve it; what boto3 sees is compared with what AWS documents and answers.
"""

from __future__ import annotations

import base64
import contextlib
import io
import json
import os
import subprocess
import sys
import tarfile
import uuid
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from fake_aws import ACCOUNT, REGION, FakeAWS, model_tarball

from process_helpers import wait_for

BUCKET = "modelport-fake-aws-tests"
ROLE = f"arn:aws:iam::{ACCOUNT}:role/modelport-test"
IMAGE = "127.0.0.1:5000/modelport-runtime:unused-by-process-hosts"
X = [[1.0, 2.0], [3.0, 4.0]]
WRONG_DIGEST = "sha256:" + "0" * 64
HEALTH_CHECK = (
    "The primary container for production variant AllTraffic did not pass the ping health "
    "check. Please check CloudWatch logs for this endpoint."
)


@pytest.fixture(scope="module")
def tarballs(package_paths: dict[str, Path]) -> dict[str, bytes]:
    """``model.tar.gz`` of the scale-1 (``v1``) and scale-2 (``v2``) packages."""
    return {key: model_tarball(path) for key, path in package_paths.items()}


def clients() -> dict[str, Any]:
    """Plain boto3 clients, configured by the environment only (as the deploy target's are)."""
    return {
        name: boto3.client(name)
        for name in ("s3", "sagemaker", "sagemaker-runtime", "logs", "ecr", "sts")
    }


def put_model(data: bytes, key: str) -> str:
    """Upload model data to the fake's S3; its s3:// URL."""
    s3 = boto3.client("s3")
    try:
        s3.head_bucket(Bucket=BUCKET)
    except ClientError:
        s3.create_bucket(Bucket=BUCKET)
    s3.put_object(Bucket=BUCKET, Key=key, Body=data, ServerSideEncryption="AES256")
    return f"s3://{BUCKET}/{key}"


def create(
    name: str,
    data: bytes,
    *,
    env: dict[str, str] | None = None,
    variant: dict[str, Any] | None = None,
    config_extra: dict[str, Any] | None = None,
    endpoint: bool = True,
) -> str:
    """Model ``name``, endpoint config ``name`` and (unless told) endpoint ``name``'s creation."""
    sm = boto3.client("sagemaker")
    sm.create_model(
        ModelName=name,
        ExecutionRoleArn=ROLE,
        PrimaryContainer={
            "Image": IMAGE,
            "ModelDataUrl": put_model(data, f"{name}/model.tar.gz"),
            "Environment": {"MODELPORT_PACKAGE": "/opt/ml/model", **(env or {})},
        },
    )
    sm.create_endpoint_config(
        EndpointConfigName=name,
        ProductionVariants=[
            variant
            or {
                "VariantName": "AllTraffic",
                "ModelName": name,
                "InstanceType": "ml.m5.large",
                "InitialInstanceCount": 1,
            }
        ],
        **(config_extra or {}),
    )
    if endpoint:
        sm.create_endpoint(EndpointName=name, EndpointConfigName=name)
    return name


def predict(endpoint: str, rows: Any = X) -> Any:
    """The endpoint's answer to ``{"inputs": {"X": rows}}``, decoded."""
    answer = boto3.client("sagemaker-runtime").invoke_endpoint(
        EndpointName=endpoint,
        Body=json.dumps({"inputs": {"X": rows}}),
        ContentType="application/json",
        Accept="application/json",
    )
    assert answer["ContentType"].startswith("application/json")
    return json.loads(answer["Body"].read())


def error_of(call: Any, *args: Any, **kwargs: Any) -> dict[str, Any]:
    """The ClientError response ``call`` raises."""
    with pytest.raises(ClientError) as caught:
        call(*args, **kwargs)
    return caught.value.response


def scaled(factor: float) -> dict[str, Any]:
    return {"predictions": [[v * factor for v in row] for row in X]}


# --- gap 1 and 2: duplicates, tags ----------------------------------------------------------------


def test_duplicate_names_are_refused_like_aws(aws: FakeAWS, tarballs: dict[str, bytes]) -> None:
    sm = boto3.client("sagemaker")
    create("dup", tarballs["v1"])
    aws.wait_status("dup", "InService")
    base = f"arn:aws:sagemaker:{REGION}:{ACCOUNT}"

    refused = error_of(
        sm.create_model,
        ModelName="dup",
        ExecutionRoleArn=ROLE,
        PrimaryContainer={"Image": IMAGE},
    )
    assert refused["Error"] == {
        "Code": "ValidationException",
        "Message": f'Cannot create already existing model "{base}:model/dup".',
    }
    refused = error_of(
        sm.create_endpoint_config,
        EndpointConfigName="dup",
        ProductionVariants=[
            {"VariantName": "v", "ModelName": "dup", "InstanceType": "ml.m5.large"}
        ],
    )
    assert refused["Error"]["Message"] == (
        f'Cannot create already existing endpoint configuration "{base}:endpoint-config/dup".'
    )
    refused = error_of(sm.create_endpoint, EndpointName="dup", EndpointConfigName="dup")
    assert refused["Error"] == {
        "Code": "ValidationException",
        "Message": f'Cannot create already existing endpoint "{base}:endpoint/dup".',
    }
    assert refused["ResponseMetadata"]["HTTPStatusCode"] == 400
    # The first endpoint is untouched and still serves.
    assert predict("dup") == scaled(1)


def test_instance_types_and_missing_names_are_awss(
    aws: FakeAWS, tarballs: dict[str, bytes]
) -> None:
    sm = boto3.client("sagemaker")
    create("types", tarballs["v1"], endpoint=False)
    # moto's own list lacks the newer families; AWS takes every type in its model.
    for instance_type in ("ml.g5.xlarge", "ml.m6i.large", "ml.c7i.large"):
        sm.create_endpoint_config(
            EndpointConfigName=f"types-{instance_type.replace('.', '-')}",
            ProductionVariants=[
                {"VariantName": "v", "ModelName": "types", "InstanceType": instance_type}
            ],
        )
    refused = error_of(
        sm.create_endpoint_config,
        EndpointConfigName="types-bogus",
        ProductionVariants=[{"VariantName": "v", "ModelName": "types", "InstanceType": "ml.x"}],
    )
    assert refused["Error"]["Message"].startswith(
        "Value 'ml.x' at 'instanceType' failed to satisfy constraint"
    )
    base = f"arn:aws:sagemaker:{REGION}:{ACCOUNT}"
    for call, kwargs, what in (
        (sm.describe_model, {"ModelName": "nope"}, f'model "{base}:model/nope"'),
        (sm.delete_model, {"ModelName": "nope"}, f'model "{base}:model/nope"'),
        (
            sm.describe_endpoint_config,
            {"EndpointConfigName": "nope"},
            f'endpoint configuration "{base}:endpoint-config/nope"',
        ),
        (sm.delete_endpoint, {"EndpointName": "nope"}, f'endpoint "{base}:endpoint/nope"'),
    ):
        assert error_of(call, **kwargs)["Error"] == {
            "Code": "ValidationException",
            "Message": f"Could not find {what}.",
        }


def test_tags_given_at_creation_are_listed(aws: FakeAWS, tarballs: dict[str, bytes]) -> None:
    sm = boto3.client("sagemaker")
    url = put_model(tarballs["v1"], "tags/model.tar.gz")
    tags = [{"Key": "modelport:deployment", "Value": "tags"}, {"Key": "team", "Value": "ml"}]
    model = sm.create_model(
        ModelName="tags",
        ExecutionRoleArn=ROLE,
        PrimaryContainer={"Image": IMAGE, "ModelDataUrl": url},
        Tags=tags,
    )["ModelArn"]
    config = sm.create_endpoint_config(
        EndpointConfigName="tags",
        ProductionVariants=[
            {
                "VariantName": "AllTraffic",
                "ModelName": "tags",
                "InstanceType": "ml.m5.large",
                "InitialInstanceCount": 1,
            }
        ],
        Tags=tags[:1],
    )["EndpointConfigArn"]
    endpoint = sm.create_endpoint(EndpointName="tags", EndpointConfigName="tags", Tags=tags)[
        "EndpointArn"
    ]
    assert sm.list_tags(ResourceArn=model)["Tags"] == tags
    assert sm.list_tags(ResourceArn=config)["Tags"] == tags[:1]
    assert sm.list_tags(ResourceArn=endpoint)["Tags"] == tags

    sm.add_tags(ResourceArn=endpoint, Tags=[{"Key": "added", "Value": "1"}])
    sm.delete_tags(ResourceArn=endpoint, TagKeys=["team"])
    assert sm.list_tags(ResourceArn=endpoint)["Tags"] == [tags[0], {"Key": "added", "Value": "1"}]
    aws.wait_status("tags", "InService")


# --- gap 3 and 5: the lifecycle, with a real host -------------------------------------------------


def test_endpoint_is_created_serves_and_is_deleted(
    aws: FakeAWS, tarballs: dict[str, bytes]
) -> None:
    c = clients()
    sm = c["sagemaker"]
    create("life", tarballs["v1"])
    first = sm.describe_endpoint(EndpointName="life")
    assert first["EndpointStatus"] == "Creating"
    assert first["ProductionVariants"] == [{"VariantName": "AllTraffic", "DesiredInstanceCount": 1}]
    assert sm.list_endpoints()["Endpoints"][0]["EndpointStatus"] == "Creating"

    # boto3's own waiter (polling every second here; its default is every 30 s).
    sm.get_waiter("endpoint_in_service").wait(
        EndpointName="life", WaiterConfig={"Delay": 1, "MaxAttempts": 60}
    )
    ready = sm.describe_endpoint(EndpointName="life")
    assert ready["EndpointStatus"] == "InService"
    assert ready["LastModifiedTime"] > first["LastModifiedTime"]
    assert "FailureReason" not in ready
    (variant,) = ready["ProductionVariants"]
    deployed = variant.pop("DeployedImages")
    assert variant == {
        "VariantName": "AllTraffic",
        "CurrentInstanceCount": 1,
        "DesiredInstanceCount": 1,
    }
    assert [d["SpecifiedImage"] for d in deployed] == [IMAGE]

    answer = c["sagemaker-runtime"].invoke_endpoint(
        EndpointName="life",
        Body=json.dumps({"inputs": {"X": X}}).encode(),
        ContentType="application/json",
        Accept="application/json",
    )
    assert answer["InvokedProductionVariant"] == "AllTraffic"
    assert answer["ContentType"] == "application/json"
    assert json.loads(answer["Body"].read()) == scaled(1)
    assert predict("life", [[0.5, -2.0]]) == {"predictions": [[0.5, -2.0]]}

    # The host: the entrypoint on the unpacked model data, its output in CloudWatch Logs.
    host = aws.host("life")
    assert host is not None
    assert host["kind"] == "process"
    assert host["env"]["MODELPORT_PACKAGE"] == str(host["model_dir"])
    assert host["env"]["SAGEMAKER_BIND_TO_PORT"] == str(host["port"])
    assert sorted(p.name for p in Path(host["model_dir"]).iterdir()) == [
        "example.json",
        "model.onnx",
        "modelport.json",
    ]
    # A host's output reaches CloudWatch Logs a moment after it is written.
    wait_for(
        lambda: any("modelport: serving" in line for line in aws.log_lines("life")),
        "the host's output in the endpoint's log",
    )
    group = "/aws/sagemaker/Endpoints/life"
    streams = c["logs"].describe_log_streams(logGroupName=group)["logStreams"]
    assert [s["logStreamName"] for s in streams] == [host["log_stream"]]
    assert host["log_stream"].startswith("AllTraffic/i-")
    events = c["logs"].get_log_events(
        logGroupName=group, logStreamName=host["log_stream"], startFromHead=True
    )["events"]
    assert any("modelport: serving contract-model 1" in e["message"] for e in events)
    found = c["logs"].filter_log_events(logGroupName=group, filterPattern="serving")["events"]
    assert found
    assert found[0]["logStreamName"] == host["log_stream"]

    sm.delete_endpoint(EndpointName="life")
    sm.get_waiter("endpoint_deleted").wait(
        EndpointName="life", WaiterConfig={"Delay": 1, "MaxAttempts": 30}
    )
    gone = error_of(sm.describe_endpoint, EndpointName="life")
    assert gone["Error"] == {
        "Code": "ValidationException",
        "Message": f'Could not find endpoint "arn:aws:sagemaker:{REGION}:{ACCOUNT}:endpoint/life".',
    }
    assert aws.hosts("life")[0]["stopped"]
    assert not Path(host["model_dir"]).exists()
    with pytest.raises(ProcessLookupError):
        os.killpg(host["pid"], 0)
    # The model and its config stay until deleted, like AWS.
    assert sm.describe_model(ModelName="life")["PrimaryContainer"]["Image"] == IMAGE
    sm.delete_endpoint_config(EndpointConfigName="life")
    sm.delete_model(ModelName="life")
    assert sm.list_models()["Models"] == []


def test_a_model_that_fails_verification_fails_the_endpoint(
    aws: FakeAWS, tarballs: dict[str, bytes]
) -> None:
    sm = boto3.client("sagemaker")
    create("bad", tarballs["v1"], env={"MODELPORT_EXPECT_DIGEST": WRONG_DIGEST})
    assert sm.describe_endpoint(EndpointName="bad")["EndpointStatus"] == "Creating"
    aws.wait_status("bad", "Failed")
    failed = sm.describe_endpoint(EndpointName="bad")
    assert failed["FailureReason"] == HEALTH_CHECK
    assert aws.hosts("bad")[0]["stopped"]

    # The refusal is in the endpoint's log, as a person would look for it.
    events = boto3.client("logs").filter_log_events(
        logGroupName="/aws/sagemaker/Endpoints/bad", filterPattern="refusing"
    )["events"]
    assert len(events) == 1
    assert events[0]["message"].startswith("modelport: refusing to start: the package at ")
    assert WRONG_DIGEST in events[0]["message"]

    refused = error_of(
        boto3.client("sagemaker-runtime").invoke_endpoint,
        EndpointName="bad",
        Body=b"{}",
        ContentType="application/json",
    )
    assert refused["Error"]["Code"] == "ValidationError"
    assert "Failed" in refused["Error"]["Message"]
    # Updating a failed endpoint is refused; deleting it works.
    assert error_of(sm.update_endpoint, EndpointName="bad", EndpointConfigName="bad")["Error"][
        "Code"
    ] == ("ValidationException")
    sm.delete_endpoint(EndpointName="bad")
    aws.wait_status("bad", None)


def test_missing_model_data_fails_the_endpoint(aws: FakeAWS, tarballs: dict[str, bytes]) -> None:
    sm = boto3.client("sagemaker")
    create("nodata", tarballs["v1"], endpoint=False)
    boto3.client("s3").delete_object(Bucket=BUCKET, Key="nodata/model.tar.gz")
    sm.create_endpoint(EndpointName="nodata", EndpointConfigName="nodata")
    reason = aws.wait_status("nodata", "Failed")["FailureReason"]
    assert reason.startswith('Failed to download model data for container "container_1" from URL')
    assert f"s3://{BUCKET}/nodata/model.tar.gz" in reason
    assert aws.hosts("nodata") == []


def test_unsafe_model_data_is_not_extracted(aws: FakeAWS, tmp_path: Path) -> None:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz") as tar:
        info = tarfile.TarInfo("../escape.txt")
        info.size = 2
        tar.addfile(info, io.BytesIO(b"hi"))
    create("unsafe", out.getvalue())
    reason = aws.wait_status("unsafe", "Failed")["FailureReason"]
    assert reason.startswith("Failed to extract model data archive")
    assert aws.hosts("unsafe") == []  # refused before any host started
    workdir = Path(aws.env["AWS_CONFIG_FILE"]).parent
    assert not (workdir.parent / "escape.txt").exists()
    assert not list(workdir.rglob("escape.txt"))


def test_delete_is_refused_while_creating(aws: FakeAWS, tarballs: dict[str, bytes]) -> None:
    sm = boto3.client("sagemaker")
    create("busy", tarballs["v1"])
    # A process host needs a few tenths of a second: the endpoint is still Creating here.
    refused = error_of(sm.delete_endpoint, EndpointName="busy")
    assert refused["Error"]["Message"] == (
        f'Cannot delete in-progress endpoint "arn:aws:sagemaker:{REGION}:{ACCOUNT}:endpoint/busy".'
    )
    aws.wait_status("busy", "InService")
    sm.delete_endpoint(EndpointName="busy")
    aws.wait_status("busy", None)


def test_serverless_variant(aws: FakeAWS, tarballs: dict[str, bytes]) -> None:
    serverless = {"MemorySizeInMB": 2048, "MaxConcurrency": 5}
    create(
        "sls",
        tarballs["v2"],
        variant={"VariantName": "AllTraffic", "ModelName": "sls", "ServerlessConfig": serverless},
    )
    aws.wait_status("sls", "InService")
    described = boto3.client("sagemaker").describe_endpoint(EndpointName="sls")
    (variant,) = described["ProductionVariants"]
    assert variant["CurrentServerlessConfig"] == serverless
    assert variant["DesiredServerlessConfig"] == serverless
    assert "CurrentInstanceCount" not in variant
    assert predict("sls") == scaled(2)


# --- gap 4: UpdateEndpoint ------------------------------------------------------------------------

BLUE_GREEN = {
    "BlueGreenUpdatePolicy": {
        "TrafficRoutingConfiguration": {"Type": "ALL_AT_ONCE", "WaitIntervalInSeconds": 0},
        "TerminationWaitInSeconds": 1,
        "MaximumExecutionTimeoutInSeconds": 600,
    },
    "AutoRollbackConfiguration": {"Alarms": [{"AlarmName": "modelport-errors"}]},
}


def _v1_endpoint_and_v2_config(aws: FakeAWS, tarballs: dict[str, bytes], name: str, **v2: Any):
    create(name, tarballs["v1"])
    create(f"{name}-v2", tarballs["v2"], endpoint=False, **v2)
    aws.wait_status(name, "InService")
    assert predict(name) == scaled(1)


def test_update_switches_to_the_new_model(aws: FakeAWS, tarballs: dict[str, bytes]) -> None:
    sm = boto3.client("sagemaker")
    _v1_endpoint_and_v2_config(aws, tarballs, "upd")
    aws.set_alarm("modelport-errors", "OK")
    before = sm.describe_endpoint(EndpointName="upd")
    sm.update_endpoint(
        EndpointName="upd",
        EndpointConfigName="upd-v2",
        DeploymentConfig=BLUE_GREEN,
        RetainAllVariantProperties=False,
    )
    updating = sm.describe_endpoint(EndpointName="upd")
    assert updating["EndpointStatus"] == "Updating"
    assert updating["EndpointConfigName"] == "upd"
    assert updating["PendingDeploymentSummary"]["EndpointConfigName"] == "upd-v2"
    # The old host answers while the new one starts and bakes (TerminationWaitInSeconds: 1).
    assert predict("upd") == scaled(1)
    again = error_of(sm.update_endpoint, EndpointName="upd", EndpointConfigName="upd-v2")
    assert again["Error"]["Message"] == (
        f'Cannot update in-progress endpoint "arn:aws:sagemaker:{REGION}:{ACCOUNT}:endpoint/upd".'
    )

    done = aws.wait_status("upd", "InService")
    assert done["EndpointConfigName"] == "upd-v2"
    assert done.get("FailureReason") is None
    described = sm.describe_endpoint(EndpointName="upd")
    assert described["LastDeploymentConfig"] == BLUE_GREEN
    assert "PendingDeploymentSummary" not in described
    assert described["LastModifiedTime"] > before["LastModifiedTime"]
    assert predict("upd") == scaled(2)
    old, new = aws.hosts("upd")
    assert old["stopped"]
    assert not new["stopped"]
    assert aws.host("upd")["instance_id"] == new["instance_id"]


def test_update_is_rolled_back_by_an_alarm(aws: FakeAWS, tarballs: dict[str, bytes]) -> None:
    sm = boto3.client("sagemaker")
    _v1_endpoint_and_v2_config(aws, tarballs, "alarmed")
    aws.set_alarm("modelport-errors", "ALARM")
    sm.update_endpoint(
        EndpointName="alarmed", EndpointConfigName="alarmed-v2", DeploymentConfig=BLUE_GREEN
    )
    assert sm.describe_endpoint(EndpointName="alarmed")["EndpointStatus"] == "Updating"
    wait_for(lambda: len(aws.hosts("alarmed")) == 2, "the new host to start")
    wait_for(lambda: aws.hosts("alarmed")[1]["stopped"], "the new host to be stopped")
    back = aws.wait_status("alarmed", "InService")
    assert back["EndpointConfigName"] == "alarmed"
    assert "modelport-errors" in back["FailureReason"]
    assert "rolled back" in back["FailureReason"]
    assert "ALARM" in back["FailureReason"]
    assert predict("alarmed") == scaled(1)
    assert aws.host("alarmed")["endpoint_config"] == "alarmed"


def test_update_to_a_failing_model_is_rolled_back(aws: FakeAWS, tarballs: dict[str, bytes]) -> None:
    sm = boto3.client("sagemaker")
    _v1_endpoint_and_v2_config(
        aws, tarballs, "rollback", env={"MODELPORT_EXPECT_DIGEST": WRONG_DIGEST}
    )
    sm.update_endpoint(EndpointName="rollback", EndpointConfigName="rollback-v2")
    assert sm.describe_endpoint(EndpointName="rollback")["EndpointStatus"] == "Updating"
    wait_for(
        lambda: len(aws.hosts("rollback")) == 2 and aws.hosts("rollback")[1]["stopped"],
        "the new host to fail",
    )
    back = aws.wait_status("rollback", "InService")
    assert back["EndpointConfigName"] == "rollback"
    assert back["FailureReason"] == HEALTH_CHECK
    assert predict("rollback") == scaled(1)
    # The failed host's refusal is in the log, in its own stream.
    failed = aws.hosts("rollback")[1]
    events = boto3.client("logs").get_log_events(
        logGroupName="/aws/sagemaker/Endpoints/rollback", logStreamName=failed["log_stream"]
    )["events"]
    assert any("refusing to start" in e["message"] for e in events)


def test_update_of_unknown_things_is_refused(aws: FakeAWS, tarballs: dict[str, bytes]) -> None:
    sm = boto3.client("sagemaker")
    refused = error_of(sm.update_endpoint, EndpointName="nope", EndpointConfigName="nope")
    assert refused["Error"]["Code"] == "ValidationException"
    assert "Could not find endpoint" in refused["Error"]["Message"]
    create("known", tarballs["v1"])
    aws.wait_status("known", "InService")
    refused = error_of(sm.update_endpoint, EndpointName="known", EndpointConfigName="nope")
    assert "Could not find endpoint configuration" in refused["Error"]["Message"]
    assert sm.describe_endpoint(EndpointName="known")["EndpointStatus"] == "InService"


# --- gap 6: the runtime ---------------------------------------------------------------------------


def test_model_errors_come_back_as_aws_sends_them(aws: FakeAWS, tarballs: dict[str, bytes]) -> None:
    create("errs", tarballs["v1"])
    aws.wait_status("errs", "InService")
    runtime = boto3.client("sagemaker-runtime")
    answer = error_of(
        runtime.invoke_endpoint,
        EndpointName="errs",
        Body=json.dumps({"inputs": {"X": [[1.0, 2.0, 3.0]]}}),
        ContentType="application/json",
    )
    assert answer["Error"]["Code"] == "ModelError"
    assert answer["ResponseMetadata"]["HTTPStatusCode"] == 424
    assert answer["OriginalStatusCode"] == 400
    original = json.loads(answer["OriginalMessage"])
    assert original["error_code"] == "BAD_REQUEST"
    assert answer["Error"]["Message"] == (
        f'Received client error (400) from primary with message "{answer["OriginalMessage"]}". '
        f"See https://{REGION}.console.aws.amazon.com/cloudwatch/home?region={REGION}"
        "#logEventViewer:group=/aws/sagemaker/Endpoints/errs in account "
        f"{ACCOUNT} for more information."
    )
    assert answer["LogStreamArn"] == (
        f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:/aws/sagemaker/Endpoints/errs"
    )
    with pytest.raises(runtime.exceptions.ModelError):
        runtime.invoke_endpoint(EndpointName="errs", Body=b"not json", ContentType="text/plain")

    unknown = error_of(
        runtime.invoke_endpoint, EndpointName="nope", Body=b"{}", ContentType="application/json"
    )
    assert unknown["Error"] == {
        "Code": "ValidationError",
        "Message": f"Endpoint nope of account {ACCOUNT} not found.",
    }
    # Content types pass through: a CSV row, and the host's own content type back.
    csv = runtime.invoke_endpoint(
        EndpointName="errs", Body=b"5,6\n", ContentType="text/csv", Accept="application/json"
    )
    assert json.loads(csv["Body"].read()) == {"predictions": [[5.0, 6.0]]}
    call = aws.calls("sagemaker-runtime")[-1]
    assert call.params["ContentType"] == "text/csv"
    assert call.params["Body"] == b"5,6\n"


def test_async_invocation_reads_and_writes_s3(aws: FakeAWS, tarballs: dict[str, bytes]) -> None:
    s3 = boto3.client("s3")
    output = f"s3://{BUCKET}/async/out"
    create(
        "asyncep",
        tarballs["v2"],
        config_extra={
            "AsyncInferenceConfig": {
                "OutputConfig": {"S3OutputPath": output, "S3FailurePath": f"{output}-failed"}
            }
        },
    )
    aws.wait_status("asyncep", "InService")
    input_url = put_model(json.dumps({"inputs": {"X": X}}).encode(), "async/in/1.json")
    answer = boto3.client("sagemaker-runtime").invoke_endpoint_async(
        EndpointName="asyncep",
        InputLocation=input_url,
        ContentType="application/json",
        InferenceId="inf-1",
    )
    assert answer["InferenceId"] == "inf-1"
    assert answer["OutputLocation"] == f"{output}/inf-1.out"
    assert answer["ResponseMetadata"]["HTTPStatusCode"] == 202
    body = s3.get_object(Bucket=BUCKET, Key="async/out/inf-1.out")["Body"].read()
    assert json.loads(body) == scaled(2)
    described = boto3.client("sagemaker").describe_endpoint(EndpointName="asyncep")
    assert described["AsyncInferenceConfig"]["OutputConfig"]["S3OutputPath"] == output


# --- gap 8 and 9: faults and the record of calls --------------------------------------------------


def test_injected_faults_answer_over_the_wire(aws: FakeAWS, tarballs: dict[str, bytes]) -> None:
    sm = boto3.client("sagemaker")
    denied = (
        f"User: arn:aws:sts::{ACCOUNT}:assumed-role/x is not authorized to perform: "
        f"sagemaker:CreateModel on resource: arn:aws:sagemaker:{REGION}:{ACCOUNT}:model/f"
    )
    aws.fail_next("sagemaker", "CreateModel", "AccessDeniedException", denied)
    refused = error_of(
        sm.create_model, ModelName="f", ExecutionRoleArn=ROLE, PrimaryContainer={"Image": IMAGE}
    )
    assert refused["Error"] == {"Code": "AccessDeniedException", "Message": denied}
    with pytest.raises(sm.exceptions.ClientError):
        sm.describe_model(ModelName="f")  # the faulted call never reached moto

    create("f", tarballs["v1"], endpoint=False)
    aws.fail_next("sagemaker", "CreateEndpoint", "ResourceLimitExceeded", "limit: 0 instances")
    refused = error_of(sm.create_endpoint, EndpointName="f", EndpointConfigName="f")
    assert refused["Error"] == {"Code": "ResourceLimitExceeded", "Message": "limit: 0 instances"}
    aws.fail_next("sagemaker", "CreateEndpoint", "ResourceLimitExceeded", "again")
    with pytest.raises(sm.exceptions.ResourceLimitExceeded):  # modeled: boto3's own class
        sm.create_endpoint(EndpointName="f", EndpointConfigName="f")
    sm.create_endpoint(EndpointName="f", EndpointConfigName="f")  # faults are used up

    aws.fail_next("sagemaker", "DescribeEndpoint", "ThrottlingException", "Rate exceeded", times=2)
    for _ in range(2):
        assert error_of(sm.describe_endpoint, EndpointName="f")["Error"]["Code"] == (
            "ThrottlingException"
        )
    assert sm.describe_endpoint(EndpointName="f")["EndpointName"] == "f"

    # Other protocols: S3 (REST XML), STS (query), the runtime (REST JSON).
    aws.fail_next("s3", "PutObject", "AccessDenied", "Access Denied", status=403)
    refused = error_of(boto3.client("s3").put_object, Bucket=BUCKET, Key="k", Body=b"x")
    assert refused["Error"]["Code"] == "AccessDenied"
    assert refused["ResponseMetadata"]["HTTPStatusCode"] == 403
    aws.fail_next("sts", "GetCallerIdentity", "ExpiredToken", "The security token expired")
    refused = error_of(boto3.client("sts").get_caller_identity)
    assert refused["Error"]["Code"] == "ExpiredToken"
    assert refused["Error"]["Message"] == "The security token expired"
    assert boto3.client("sts").get_caller_identity()["Account"] == ACCOUNT
    aws.wait_status("f", "InService")
    aws.fail_next("sagemaker-runtime", "InvokeEndpoint", "ServiceUnavailable", "busy", status=503)
    assert error_of(predict, "f")["Error"]["Code"] == "ServiceUnavailable"
    assert [c.operation for c in aws.calls() if c.injected] == [
        "CreateModel",
        "CreateEndpoint",
        "CreateEndpoint",
        "DescribeEndpoint",
        "DescribeEndpoint",
        "PutObject",
        "GetCallerIdentity",
        "InvokeEndpoint",
    ]


def test_faults_and_calls_reach_a_subprocess(aws: FakeAWS) -> None:
    aws.fail_next("sagemaker", "ListEndpoints", "ThrottlingException", "Rate exceeded")
    code = (
        "import boto3, botocore.exceptions as e\n"
        "sm = boto3.client('sagemaker')\n"
        "try:\n"
        "    sm.list_endpoints()\n"
        "except e.ClientError as x:\n"
        "    print(x.response['Error']['Code'])\n"
        "print(len(sm.list_endpoints()['Endpoints']))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        env=aws.subprocess_env(),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["ThrottlingException", "0"]
    assert [(c.operation, c.status, c.error) for c in aws.calls("sagemaker")] == [
        ("ListEndpoints", 400, "ThrottlingException"),
        ("ListEndpoints", 200, None),
    ]


def test_every_call_is_recorded_in_order(aws: FakeAWS, tarballs: dict[str, bytes]) -> None:
    c = clients()
    c["sts"].get_caller_identity()
    url = put_model(tarballs["v1"], "rec/model.tar.gz")
    c["sagemaker"].create_model(
        ModelName="rec",
        ExecutionRoleArn=ROLE,
        PrimaryContainer={"Image": IMAGE, "ModelDataUrl": url, "Environment": {"A": "1"}},
        VpcConfig={"SecurityGroupIds": ["sg-1"], "Subnets": ["subnet-1"]},
        Tags=[{"Key": "k", "Value": "v"}],
    )
    error_of(c["sagemaker"].describe_endpoint, EndpointName="rec")
    assert aws.operations() == [
        "sts:GetCallerIdentity",
        "s3:HeadBucket",
        "s3:CreateBucket",
        "s3:PutObject",
        "sagemaker:CreateModel",
        "sagemaker:DescribeEndpoint",
    ]
    head, created, put = aws.calls("s3")
    assert (head.status, head.params["Bucket"]) == (404, BUCKET)
    assert created.status == 200
    assert put.params["Key"] == "rec/model.tar.gz"
    assert put.params["Headers"]["x-amz-server-side-encryption"] == "AES256"
    (model,) = aws.calls("sagemaker", "CreateModel")
    assert model.params == {
        "ModelName": "rec",
        "ExecutionRoleArn": ROLE,
        "PrimaryContainer": {"Image": IMAGE, "ModelDataUrl": url, "Environment": {"A": "1"}},
        "VpcConfig": {"SecurityGroupIds": ["sg-1"], "Subnets": ["subnet-1"]},
        "Tags": [{"Key": "k", "Value": "v"}],
    }
    assert model.region == REGION
    missing = aws.calls("sagemaker", "DescribeEndpoint")[0]
    assert (missing.status, missing.error) == (400, "ValidationException")
    # The SSE asked for is what S3 keeps.
    head = c["s3"].head_object(Bucket=BUCKET, Key="rec/model.tar.gz")
    assert head["ServerSideEncryption"] == "AES256"
    listed = c["s3"].list_objects_v2(Bucket=BUCKET, Prefix="rec/")["Contents"]
    assert [o["Key"] for o in listed] == ["rec/model.tar.gz"]
    assert aws.operations("s3")[-2:] == ["HeadObject", "ListObjectsV2"]
    aws.clear_calls()
    assert aws.calls() == []


# --- the rest of the calls the deploy target makes ------------------------------------------------


def test_autoscaling_works_through_the_server(aws: FakeAWS, tarballs: dict[str, bytes]) -> None:
    create("scaled", tarballs["v1"])
    aws.wait_status("scaled", "InService")
    scaling = boto3.client("application-autoscaling")
    resource = "endpoint/scaled/variant/AllTraffic"
    dimension = "sagemaker:variant:DesiredInstanceCount"
    scaling.register_scalable_target(
        ServiceNamespace="sagemaker",
        ResourceId=resource,
        ScalableDimension=dimension,
        MinCapacity=1,
        MaxCapacity=3,
    )
    scaling.put_scaling_policy(
        PolicyName="scaled-invocations",
        ServiceNamespace="sagemaker",
        ResourceId=resource,
        ScalableDimension=dimension,
        PolicyType="TargetTrackingScaling",
        TargetTrackingScalingPolicyConfiguration={
            "TargetValue": 100.0,
            "PredefinedMetricSpecification": {
                "PredefinedMetricType": "SageMakerVariantInvocationsPerInstance"
            },
        },
    )
    targets = scaling.describe_scalable_targets(ServiceNamespace="sagemaker")["ScalableTargets"]
    assert [(t["ResourceId"], t["MaxCapacity"]) for t in targets] == [(resource, 3)]
    policies = scaling.describe_scaling_policies(ServiceNamespace="sagemaker")["ScalingPolicies"]
    assert [p["PolicyName"] for p in policies] == ["scaled-invocations"]
    scaling.delete_scaling_policy(
        PolicyName="scaled-invocations",
        ServiceNamespace="sagemaker",
        ResourceId=resource,
        ScalableDimension=dimension,
    )
    scaling.deregister_scalable_target(
        ServiceNamespace="sagemaker", ResourceId=resource, ScalableDimension=dimension
    )
    assert scaling.describe_scalable_targets(ServiceNamespace="sagemaker")["ScalableTargets"] == []


def test_ecr_points_at_the_local_registry(aws: FakeAWS) -> None:
    ecr = boto3.client("ecr")
    (auth,) = ecr.get_authorization_token()["authorizationData"]
    assert auth["proxyEndpoint"] == f"http://{aws.registry}"
    user, password = base64.b64decode(auth["authorizationToken"]).decode().split(":", 1)
    assert (user, password) == ("AWS", aws.ecr_password)

    missing = error_of(ecr.describe_repositories, repositoryNames=["modelport-runtime"])
    assert missing["Error"]["Code"] == "RepositoryNotFoundException"
    created = ecr.create_repository(
        repositoryName="modelport-runtime", tags=[{"Key": "modelport", "Value": "runtime"}]
    )["repository"]
    assert created["repositoryUri"] == f"{aws.registry}/modelport-runtime"
    (listed,) = ecr.describe_repositories(repositoryNames=["modelport-runtime"])["repositories"]
    assert listed["repositoryUri"] == created["repositoryUri"]
    tags = ecr.list_tags_for_resource(resourceArn=created["repositoryArn"])["tags"]
    assert tags == [{"Key": "modelport", "Value": "runtime"}]
    missing = error_of(ecr.describe_images, repositoryName="not-there")
    assert missing["Error"]["Code"] == "RepositoryNotFoundException"


# --- slow: the local registry and real containers -------------------------------------------------


def _tiny_image(client: Any, ref: str) -> None:
    """Build a one-file image as ``ref`` (labelled with this test run)."""
    from docker_fixtures import run_labels

    context = io.BytesIO()
    with tarfile.open(fileobj=context, mode="w") as tar:
        for name, data in (
            ("Dockerfile", b"FROM scratch\nCOPY hello.txt /hello.txt\n"),
            ("hello.txt", uuid.uuid4().hex.encode()),  # a new digest every run
        ):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    context.seek(0)
    client.images.build(fileobj=context, custom_context=True, tag=ref, labels=run_labels(), rm=True)


@pytest.mark.slow
def test_ecr_describe_images_reflects_the_local_registry(aws: FakeAWS) -> None:
    from docker_fixtures import engine, remove_test_leftovers

    client = engine()
    repository = f"modelport-fake-aws/t{uuid.uuid4().hex[:12]}"
    ref = f"{aws.registry}/{repository}"
    ecr = boto3.client("ecr")
    ecr.create_repository(repositoryName=repository)
    assert ecr.describe_images(repositoryName=repository)["imageDetails"] == []
    try:
        _tiny_image(client, f"{ref}:one")
        client.images.get(f"{ref}:one").tag(ref, "two")
        for tag in ("one", "two"):
            for line in client.images.push(ref, tag=tag, stream=True, decode=True):
                assert "error" not in line, line
        (image,) = ecr.describe_images(repositoryName=repository)["imageDetails"]
        assert image["imageTags"] == ["one", "two"]
        assert image["imageDigest"].startswith("sha256:")
        assert image["repositoryName"] == repository
        assert image["registryId"] == ACCOUNT
        assert image["imageSizeInBytes"] > 0

        by_tag = ecr.describe_images(repositoryName=repository, imageIds=[{"imageTag": "two"}])
        assert by_tag["imageDetails"][0]["imageDigest"] == image["imageDigest"]
        by_digest = ecr.describe_images(
            repositoryName=repository, imageIds=[{"imageDigest": image["imageDigest"]}]
        )
        assert by_digest["imageDetails"][0]["imageTags"] == ["one", "two"]
        missing = error_of(
            ecr.describe_images, repositoryName=repository, imageIds=[{"imageTag": "three"}]
        )
        assert missing["Error"]["Code"] == "ImageNotFoundException"
        assert missing["Error"]["Message"] == (
            "The image with imageId {imageDigest:'null', imageTag:'three'} does not exist within "
            f"the repository with name '{repository}' in the registry with id '{ACCOUNT}'"
        )
        with pytest.raises(ecr.exceptions.ImageNotFoundException):
            ecr.describe_images(
                repositoryName=repository, imageIds=[{"imageDigest": "sha256:" + "1" * 64}]
            )
    finally:
        remove_test_leftovers(client)


@pytest.mark.slow
def test_container_hosting_runs_the_image_as_sagemaker_does(
    fake_aws_containers: FakeAWS, package_paths: dict[str, Path], tmp_path: Path
) -> None:
    """The runtime image (built by the deployer kit, pushed to the local registry) serving the
    model data mounted at /opt/ml/model, started with ``serve`` as SageMaker starts it."""
    from docker_fixtures import base_image, engine, remove_test_leftovers, run_labels

    from modelport.deployers.kit.engine import Engine
    from modelport.deployers.kit.images import build_package_image, push_image
    from modelport.model_format.package import load

    aws = fake_aws_containers
    client = engine()
    pushed_ref = ""
    base = base_image(client)
    package = load(package_paths["v2"])
    try:
        with Engine() as kit_engine:
            built = build_package_image(
                kit_engine,
                package,
                ref=f"localhost/modelport-fake-aws/package:{uuid.uuid4().hex[:12]}",
                base_image=base,
                pip_cert=Path(os.environ["PIP_CERT"]) if os.environ.get("PIP_CERT") else None,
                labels=run_labels(),
            )
            key = built.runtime_ref.rsplit(":", 1)[1]
            pushed_ref = f"{aws.registry}/modelport-fake-aws/runtime:{key}"
            client.images.get(built.runtime_ref).tag(pushed_ref.rsplit(":", 1)[0], key)
            pushed = push_image(kit_engine, pushed_ref)
        assert pushed.digest
        image = pushed.pinned
        sm = boto3.client("sagemaker")
        sm.create_model(
            ModelName="boxed",
            ExecutionRoleArn=ROLE,
            PrimaryContainer={
                "Image": image,
                "ModelDataUrl": put_model(model_tarball(package_paths["v2"]), "boxed/m.tar.gz"),
                "Environment": {
                    "MODELPORT_PACKAGE": "/opt/ml/model",
                    "MODELPORT_EXPECT_DIGEST": package.digest,
                },
            },
        )
        sm.create_endpoint_config(
            EndpointConfigName="boxed",
            ProductionVariants=[
                {
                    "VariantName": "AllTraffic",
                    "ModelName": "boxed",
                    "InstanceType": "ml.m5.large",
                    "InitialInstanceCount": 1,
                }
            ],
        )
        sm.create_endpoint(EndpointName="boxed", EndpointConfigName="boxed")
        aws.wait_status("boxed", "InService", timeout=180)
        assert predict("boxed") == scaled(2)
        (variant,) = sm.describe_endpoint(EndpointName="boxed")["ProductionVariants"]
        assert variant["DeployedImages"][0]["ResolvedImage"] == image

        host = aws.host("boxed")
        assert host is not None
        assert host["kind"] == "container"
        container = client.containers.get(host["ident"])
        assert container.attrs["Config"]["Cmd"] == ["serve"]
        mounts = {m["Destination"]: m for m in container.attrs["Mounts"]}
        assert mounts["/opt/ml/model"]["RW"] is False
        env = dict(e.split("=", 1) for e in container.attrs["Config"]["Env"])
        assert env["SAGEMAKER_BIND_TO_PORT"] == str(host["port"])
        assert env["MODELPORT_PACKAGE"] == "/opt/ml/model"
        # The container's output reaches CloudWatch Logs a moment after it is written.
        wait_for(
            lambda: any("modelport: serving" in line for line in aws.log_lines("boxed")),
            "the container's output in the endpoint's log",
            log=lambda: "\n".join(aws.log_lines("boxed")),
        )

        sm.delete_endpoint(EndpointName="boxed")
        aws.wait_status("boxed", None, timeout=60)
        assert host["ident"] not in [c.id for c in client.containers.list(all=True)]

        # An image the registry does not have: the endpoint fails, no container is left.
        missing = f"{aws.registry}/modelport-fake-aws/missing:{uuid.uuid4().hex[:8]}"
        sm.create_model(
            ModelName="noimage", ExecutionRoleArn=ROLE, PrimaryContainer={"Image": missing}
        )
        serverless = {"MemorySizeInMB": 1024, "MaxConcurrency": 1}
        sm.create_endpoint_config(
            EndpointConfigName="noimage",
            ProductionVariants=[
                {
                    "VariantName": "AllTraffic",
                    "ModelName": "noimage",
                    "ServerlessConfig": serverless,
                }
            ],
        )
        sm.create_endpoint(EndpointName="noimage", EndpointConfigName="noimage")
        reason = aws.wait_status("noimage", "Failed", timeout=120)["FailureReason"]
        assert reason == f"Failed to pull the image {missing} for production variant AllTraffic."
    finally:
        package.close()
        remove_test_leftovers(client)
        with contextlib.suppress(Exception):  # our registry tag on the shared runtime image
            client.images.remove(pushed_ref)
