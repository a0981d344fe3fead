"""The sagemaker target against the offline AWS, resource by resource and call by call.

Real boto3 against moto on 127.0.0.1 (``fake_aws.py``), with endpoints that really serve the
uploaded ``model.tar.gz``. Where the contract suite (``test_sagemaker_contract.py``) checks the
Deployer API's rules, these tests check what the target makes in AWS: the exact requests, tags,
environment and S3 objects of each kind of endpoint; that a create calls what its plan says;
updates that keep the deployment's settings, autoscaling, guarded updates SageMaker rolls back,
endpoints that fail, AWS's errors over the wire, predict, logs, and the read verbs without a
role. Each test starts from an empty account (the ``aws`` fixture resets the fake).
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import io
import tarfile
from pathlib import Path
from typing import Any

import pytest
from fake_aws import ACCOUNT, REGION, FakeAWS
from sagemaker_support import (
    BUCKET,
    IMAGE,
    NOTHING,
    PAYLOAD,
    ROLE,
    expected,
    foreign_config,
    modelport_tags,
    mutating,
    only_generation,
    resources,
    sagemaker_target,
    same_predictions,
    tags_of,
    wait_logged,
)

from modelport.deployers import connect
from modelport.deployers.base import DeploymentStatus
from modelport.deployers.kit.progress import Progress, ProgressEvent
from modelport.deployers.kit.rollout import FailpointTriggered, failpoint
from modelport.deployers.kit.waiting import wait_until
from modelport.errors import (
    ConfigError,
    DeploymentError,
    DeploymentNotFound,
    InputError,
    PermissionDeniedError,
    QuotaExceededError,
)
from modelport.model_format.package import Package

#: What the fake's SageMaker says of a container that never answered /ping.
HEALTH_CHECK = (
    "The primary container for production variant AllTraffic did not pass the ping health "
    "check. Please check CloudWatch logs for this endpoint."
)
#: An environment the server refuses at start (``modelport serve`` exits 2), and its one line.
REFUSED_ENV = '{"MODELPORT_MAX_BATCH_SIZE": "0"}'
REFUSAL = "Error: MODELPORT_MAX_BATCH_SIZE: must be at least 1, got 0"
SCALABLE_DIMENSION = "sagemaker:variant:DesiredInstanceCount"


def _describe(fake: FakeAWS, kind: str, name: str) -> dict[str, Any]:
    sm = fake.client("sagemaker", internal=True)
    found: dict[str, Any] = {
        "model": lambda: sm.describe_model(ModelName=name),
        "config": lambda: sm.describe_endpoint_config(EndpointConfigName=name),
        "endpoint": lambda: sm.describe_endpoint(EndpointName=name),
    }[kind]()
    found.pop("ResponseMetadata", None)
    return found


def _object(fake: FakeAWS, key: str, bucket: str = BUCKET) -> tuple[dict[str, Any], bytes]:
    s3 = fake.client("s3", internal=True)
    head = s3.head_object(Bucket=bucket, Key=key)
    return head, s3.get_object(Bucket=bucket, Key=key)["Body"].read()


def _only_call(fake: FakeAWS, service: str, operation: str) -> dict[str, Any]:
    calls = fake.calls(service, operation)
    assert len(calls) == 1, [c.params for c in calls]
    return calls[0].params


def _changes(fake: FakeAWS) -> list[str]:
    """The mutating calls received, ``service:Operation``, in order."""
    return [f"{c.service}:{c.operation}" for c in fake.calls() if mutating(c.operation)]


def _scaling(fake: FakeAWS, name: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The scalable targets and scaling policies on ``name``'s variant, without their times and
    ARNs (which AWS makes up)."""
    scaling = fake.client("application-autoscaling", internal=True)
    resource = f"endpoint/{name}/variant/AllTraffic"
    targets = scaling.describe_scalable_targets(
        ServiceNamespace="sagemaker", ResourceIds=[resource]
    )["ScalableTargets"]
    policies = scaling.describe_scaling_policies(ServiceNamespace="sagemaker", ResourceId=resource)[
        "ScalingPolicies"
    ]
    drop = ("CreationTime", "ScalableTargetARN", "PolicyARN")
    return (
        [{k: v for k, v in t.items() if k not in drop} for t in targets],
        [{k: v for k, v in p.items() if k not in drop} for p in policies],
    )


def _scaled(name: str, low: int, high: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """What :func:`_scaling` says of the target's autoscaling between ``low`` and ``high``."""
    resource = f"endpoint/{name}/variant/AllTraffic"
    return (
        [
            {
                "ServiceNamespace": "sagemaker",
                "ResourceId": resource,
                "ScalableDimension": SCALABLE_DIMENSION,
                "MinCapacity": low,
                "MaxCapacity": high,
            }
        ],
        [
            {
                "PolicyName": f"modelport-{name}-invocations",
                "ServiceNamespace": "sagemaker",
                "ResourceId": resource,
                "ScalableDimension": SCALABLE_DIMENSION,
                "PolicyType": "TargetTrackingScaling",
                "TargetTrackingScalingPolicyConfiguration": {
                    "TargetValue": 100.0,
                    "PredefinedMetricSpecification": {
                        "PredefinedMetricType": "SageMakerVariantInvocationsPerInstance"
                    },
                    "ScaleInCooldown": 300,
                    "ScaleOutCooldown": 60,
                },
                "Alarms": [],
            }
        ],
    )


def _assert_serves(target: Any, name: str, package: Package) -> None:
    record = target.get(name)
    assert record.status is DeploymentStatus.READY, record.details
    assert record.package_digest == package.digest
    assert same_predictions(target.predict(name, PAYLOAD), expected(package))


# --- 1. exactly what a create makes -------------------------------------------------------------


def _assert_model_data(
    fake: FakeAWS, name: str, package: Package, archive: Path, generation: int = 1
) -> str:
    """The S3 object of ``name``'s generation: encrypted, its digests in its metadata, the
    package's ``.mport`` bytes (modelport.json first, the package's files at the root). Returns
    its sha256."""
    key = f"modelport/{name}/g{generation}/model.tar.gz"
    head, data = _object(fake, key)
    sha256 = hashlib.sha256(data).hexdigest()
    assert head["ServerSideEncryption"] == "AES256"
    assert head["Metadata"] == {"package-digest": package.digest, "sha256": sha256}
    assert data == archive.read_bytes()  # the same deterministic archive
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        members = tar.getmembers()
    assert [m.name for m in members] == ["modelport.json", *sorted(package.manifest.files)]
    assert all(m.isfile() for m in members)
    # S3 checked the sha256 on upload (the request carried it).
    (put,) = [c for c in fake.calls("s3", "PutObject") if c.params["Key"] == key]
    headers = put.params["Headers"]
    assert headers["x-amz-checksum-sha256"] == base64.b64encode(bytes.fromhex(sha256)).decode()
    assert headers["x-amz-server-side-encryption"] == "AES256"
    return sha256


@pytest.mark.parametrize("kind", ["real-time", "serverless", "async"])
def test_create_makes_exactly_these_resources(
    aws: FakeAWS,
    home: Path,
    packages: dict[str, Package],
    package_paths: dict[str, Path],
    kind: str,
) -> None:
    v1 = packages["v1"]
    name = f"exact-{kind}"
    options: dict[str, str] = {"env": '{"A": "1"}', "tags": '{"team": "ml"}'}
    if kind == "real-time":
        options |= {
            "instance_type": "ml.c5.xlarge",
            "instance_count": "2",
            "subnets": '["subnet-1", "subnet-2"]',
            "security_groups": '["sg-1"]',
            "data_capture_s3": f"s3://{BUCKET}/capture",
            "data_capture_percent": "50",
        }
        variant = {"InstanceType": "ml.c5.xlarge", "InitialInstanceCount": 2}
        variant_sent = {**variant, "InitialVariantWeight": 1.0}
        live = {"CurrentInstanceCount": 2, "DesiredInstanceCount": 2}
    elif kind == "serverless":
        options["serverless_memory_mb"] = "2048"
        variant = {"ServerlessConfig": {"MemorySizeInMB": 2048, "MaxConcurrency": 5}}
        variant_sent = variant
        live = {"CurrentServerlessConfig": {"MemorySizeInMB": 2048, "MaxConcurrency": 5}}
    else:
        options["async_output_s3"] = f"s3://{BUCKET}/async-out"
        variant = {"InstanceType": "ml.m5.large", "InitialInstanceCount": 1}
        variant_sent = {**variant, "InitialVariantWeight": 1.0}
        live = {"CurrentInstanceCount": 1, "DesiredInstanceCount": 1}
    target = sagemaker_target(**options)

    deployment = target.create(name, v1)

    tags = {"team": "ml", **modelport_tags(v1, name, 1)}
    endpoint_arn = f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:endpoint/{name}"
    details: dict[str, Any] = {
        "region": REGION,
        "endpoint_arn": endpoint_arn,
        "endpoint_status": "InService",
        "endpoint_config": f"{name}-g1",
        "generation": 1,
        "model": f"{name}-g1",
        "variant": {**variant, **live},
    }
    if kind == "real-time":
        details["data_capture_s3"] = f"s3://{BUCKET}/capture"
    if kind == "async":
        details["async_output_s3"] = f"s3://{BUCKET}/async-out"
    record = deployment.to_dict()
    assert record["details"] == details
    assert (record["name"], record["target"], record["status"]) == (name, "sagemaker", "ready")
    assert record["endpoint"] == f"{aws.url}/endpoints/{name}/invocations"
    assert record["package_digest"] == v1.digest
    assert target.get(name).to_dict() == record

    # The S3 object, and the model that points at it.
    sha256 = _assert_model_data(aws, name, v1, package_paths["v1"])
    container = {
        "Image": IMAGE,
        "ModelDataUrl": f"s3://{BUCKET}/modelport/{name}/g1/model.tar.gz",
        "Environment": {
            "A": "1",
            "MODELPORT_PACKAGE": "/opt/ml/model",
            "MODELPORT_EXPECT_DIGEST": v1.digest,
        },
    }
    model_tags = {**tags, "modelport:model-data-sha256": sha256}
    sent = _only_call(aws, "sagemaker", "CreateModel")
    assert sent == {
        "ModelName": f"{name}-g1",
        "PrimaryContainer": container,
        "ExecutionRoleArn": ROLE,
        "Tags": [{"Key": k, "Value": v} for k, v in model_tags.items()],
        **(
            {"VpcConfig": {"Subnets": ["subnet-1", "subnet-2"], "SecurityGroupIds": ["sg-1"]}}
            if kind == "real-time"
            else {}
        ),
    }
    model = _describe(aws, "model", f"{name}-g1")
    assert model["PrimaryContainer"] == container
    assert model["ExecutionRoleArn"] == ROLE
    if kind == "real-time":
        assert model["VpcConfig"] == {
            "Subnets": ["subnet-1", "subnet-2"],
            "SecurityGroupIds": ["sg-1"],
        }
    assert tags_of(aws, model["ModelArn"]) == model_tags

    # The endpoint config.
    config_sent: dict[str, Any] = {
        "EndpointConfigName": f"{name}-g1",
        "ProductionVariants": [
            {"VariantName": "AllTraffic", "ModelName": f"{name}-g1", **variant_sent}
        ],
        "Tags": [{"Key": k, "Value": v} for k, v in tags.items()],
    }
    capture = {
        "EnableCapture": True,
        "InitialSamplingPercentage": 50,
        "DestinationS3Uri": f"s3://{BUCKET}/capture",
        "CaptureOptions": [{"CaptureMode": "Input"}, {"CaptureMode": "Output"}],
    }
    asynchronous = {
        "OutputConfig": {
            "S3OutputPath": f"s3://{BUCKET}/async-out",
            "S3FailurePath": f"s3://{BUCKET}/async-out/failures",
        }
    }
    if kind == "real-time":
        config_sent["DataCaptureConfig"] = capture
    if kind == "async":
        config_sent["AsyncInferenceConfig"] = asynchronous
    assert _only_call(aws, "sagemaker", "CreateEndpointConfig") == config_sent
    config = _describe(aws, "config", f"{name}-g1")
    assert config["ProductionVariants"] == config_sent["ProductionVariants"]
    assert config.get("DataCaptureConfig") == (capture if kind == "real-time" else None)
    assert config.get("AsyncInferenceConfig") == (asynchronous if kind == "async" else None)
    assert tags_of(aws, config["EndpointConfigArn"]) == tags

    # The endpoint.
    assert _only_call(aws, "sagemaker", "CreateEndpoint") == {
        "EndpointName": name,
        "EndpointConfigName": f"{name}-g1",
        "Tags": [{"Key": k, "Value": v} for k, v in tags.items()],
    }
    assert tags_of(aws, endpoint_arn) == tags
    assert resources(aws, name) == only_generation(name, 1)
    # The host SageMaker started runs that model's environment.
    host = aws.host(name)
    assert host is not None
    assert host["model"] == f"{name}-g1"
    assert {k: host["env"][k] for k in ("A", "MODELPORT_EXPECT_DIGEST")} == {
        "A": "1",
        "MODELPORT_EXPECT_DIGEST": v1.digest,
    }
    assert same_predictions(target.predict(name, PAYLOAD), expected(v1))


# --- 2. the plan is the calls ---------------------------------------------------------------------


def _planned_calls(actions: Any) -> list[tuple[str, str, dict[str, Any]]]:
    """``(service, Operation, params)`` of every call a plan lists, ``(only if missing)`` ones
    included."""
    out = []
    for action in actions:
        for call in action.details.get("calls", []):
            service, _, method = str(call["call"]).partition(".")
            method = method.split(" (")[0]
            operation = "".join(word.capitalize() for word in method.split("_"))
            out.append((service, operation, call["params"]))
    return out


def test_a_create_makes_the_calls_its_plan_lists(
    aws: FakeAWS, home: Path, packages: dict[str, Package]
) -> None:
    v1 = packages["v1"]
    aws.client("s3", internal=True).create_bucket(Bucket=BUCKET)  # only-if-missing calls: none
    target = sagemaker_target(min_instances="1", max_instances="3")
    plan = target.plan("seq", v1)
    assert [a.step for a in plan] == [
        "ensure-bucket",
        "upload-model",
        "use-image",
        "create-model",
        "create-endpoint-config",
        "create-endpoint",
        "wait-in-service",
        "autoscaling",
    ]
    aws.clear_calls()

    target.create("seq", v1)

    bucket_made = ("CreateBucket", "PutPublicAccessBlock", "PutBucketEncryption")
    planned = [c for c in _planned_calls(plan) if c[1] not in bucket_made]
    made = [c for c in aws.calls() if mutating(c.operation)]
    planned_changes = [(s, o) for s, o, _ in planned if mutating(o)]
    assert [(c.service, c.operation) for c in made] == planned_changes
    assert planned_changes == [
        ("s3", "PutObject"),
        ("sagemaker", "CreateModel"),
        ("sagemaker", "CreateEndpointConfig"),
        ("sagemaker", "CreateEndpoint"),
        ("application-autoscaling", "RegisterScalableTarget"),
        ("application-autoscaling", "PutScalingPolicy"),
    ]
    # The reads it plans are made too, where the plan has them.
    operations = aws.operations()
    assert "s3:HeadBucket" in operations[: operations.index("s3:PutObject")]
    waited = operations[
        operations.index("sagemaker:CreateEndpoint") : operations.index(
            "application-autoscaling:RegisterScalableTarget"
        )
    ]
    assert "sagemaker:DescribeEndpoint" in waited

    # Each request is the plan's, its placeholders filled in with what was known only then.
    by_operation = {o: p for _, o, p in planned}
    put = made[0].params
    planned_put = by_operation["PutObject"]
    assert (put["Bucket"], put["Key"]) == (planned_put["Bucket"], planned_put["Key"])
    assert put["Headers"]["x-amz-server-side-encryption"] == planned_put["ServerSideEncryption"]
    sha256 = put["Headers"]["x-amz-meta-sha256"]
    assert planned_put["Metadata"] == {
        "package-digest": put["Headers"]["x-amz-meta-package-digest"],
        "sha256": "<sha256 of the archive>",
    }
    model = by_operation["CreateModel"]
    model["PrimaryContainer"]["Image"] = IMAGE  # see test_the_plan_shows_a_given_image
    model["Tags"] = [
        {**t, "Value": sha256} if t["Value"] == "<sha256>" else t for t in model["Tags"]
    ]
    for call in made[1:]:
        assert call.params == by_operation[call.operation], call.operation


def test_the_plan_shows_a_given_image(
    aws: FakeAWS, home: Path, packages: dict[str, Package]
) -> None:
    plan = sagemaker_target().plan("img", packages["v1"])
    (model,) = [p for _, o, p in _planned_calls(plan) if o == "CreateModel"]
    assert model["PrimaryContainer"]["Image"] == IMAGE


def test_the_plan_lists_every_call_that_makes_the_bucket(
    aws: FakeAWS, home: Path, packages: dict[str, Package]
) -> None:
    target = sagemaker_target()
    plan = target.plan("fresh", packages["v1"])
    # The bucket step, run for real in a fresh account (then the create stops).
    with failpoint("sagemaker.create.ensure-bucket"), pytest.raises(FailpointTriggered):
        target.create("fresh", packages["v1"])
    (bucket_step,) = [a for a in plan if a.step == "ensure-bucket"]
    planned = [(s, o) for s, o, _ in _planned_calls([bucket_step]) if mutating(o)]
    made = [("s3", c.operation) for c in aws.calls("s3") if mutating(c.operation)]
    assert made[0] == ("s3", "CreateBucket")  # the account had no bucket: it was made
    assert planned == made


def test_a_dry_run_only_reads(aws: FakeAWS, home: Path, packages: dict[str, Package]) -> None:
    target = sagemaker_target(min_instances="1", max_instances="3")
    actions = target.plan("dry", packages["v1"])
    assert actions
    # Which generation comes next, and which account names the bucket: nothing else.
    assert aws.operations() == [
        "sagemaker:ListModels",
        "sagemaker:ListEndpointConfigs",
        "sts:GetCallerIdentity",
    ]
    assert resources(aws, "dry") == NOTHING
    assert aws.client("s3", internal=True).list_buckets()["Buckets"] == []


# --- 3. update ------------------------------------------------------------------------------------


def test_update_makes_the_next_generation_and_removes_the_old(
    aws: FakeAWS, home: Path, packages: dict[str, Package], package_paths: dict[str, Path]
) -> None:
    v1, v2 = packages["v1"], packages["v2"]
    target = sagemaker_target()
    created = target.create("upd", v1)
    aws.clear_calls()

    updated = target.update("upd", v2)

    assert updated.package_digest == v2.digest
    assert updated.created_at == created.created_at
    assert (updated.details["generation"], updated.details["model"]) == (2, "upd-g2")
    assert resources(aws, "upd") == only_generation("upd", 2)
    _assert_model_data(aws, "upd", v2, package_paths["v2"], generation=2)
    endpoint_arn = f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:endpoint/upd"
    assert tags_of(aws, endpoint_arn) == modelport_tags(v2, "upd", 2)
    switch = _only_call(aws, "sagemaker", "UpdateEndpoint")
    assert switch == {"EndpointName": "upd", "EndpointConfigName": "upd-g2"}  # all at once
    # g1 went after the switch: its config, its model, then its upload.
    assert _changes(aws)[-4:] == [
        "sagemaker:AddTags",
        "sagemaker:DeleteEndpointConfig",
        "sagemaker:DeleteModel",
        "s3:DeleteObject",
    ]
    assert [c.params for c in aws.calls("sagemaker", "DeleteModel")] == [{"ModelName": "upd-g1"}]
    _assert_serves(target, "upd", v2)
    old, new = aws.hosts("upd")
    assert (old["stopped"], new["stopped"]) == (True, False)

    # The same digest again: nothing but reads.
    aws.clear_calls()
    assert target.update("upd", v2) == target.get("upd")
    assert aws.calls() and _changes(aws) == []
    assert resources(aws, "upd") == only_generation("upd", 2)

    # keep_old: the old generation stays, until the deployment is deleted.
    sagemaker_target(keep_old="true").update("upd", v1)
    assert resources(aws, "upd") == only_generation("upd", 2, 3)
    _assert_serves(target, "upd", v1)
    target.delete("upd")
    assert resources(aws, "upd") == NOTHING


def test_the_packages_provenance_is_tagged_and_replaced_by_an_update(
    aws: FakeAWS, home: Path, packages: dict[str, Package], monkeypatch: pytest.MonkeyPatch
) -> None:
    v1, v2 = packages["v1"], packages["v2"]
    fingerprint, oci_digest = "sha256:" + "ab" * 32, "sha256:" + "ef" * 32
    signed = dataclasses.replace(
        v1.provenance, signature_fingerprint=fingerprint, oci_digest=oci_digest
    )
    monkeypatch.setattr(v1, "provenance", signed)
    monkeypatch.setattr(
        v2,
        "provenance",
        dataclasses.replace(v2.provenance, signature_fingerprint="sha256:" + "cd" * 32),
    )
    sagemaker_target().create("prov", v1)
    provenance = {
        "modelport:signature-fingerprint": fingerprint,
        "modelport:oci-digest": oci_digest,
    }
    arn = f"arn:aws:sagemaker:{REGION}:{ACCOUNT}"
    for resource in ("model/prov-g1", "endpoint-config/prov-g1", "endpoint/prov"):
        tags = tags_of(aws, f"{arn}:{resource}")
        assert tags.items() >= {**modelport_tags(v1, "prov", 1), **provenance}.items(), tags
    head, _ = _object(aws, "modelport/prov/g1/model.tar.gz")
    assert head["Metadata"]["signature-fingerprint"] == fingerprint
    assert head["Metadata"]["oci-digest"] == oci_digest
    got = sagemaker_target().get("prov").details  # a fresh deployer reads the tags
    assert (got["signature_fingerprint"], got["oci_digest"]) == (fingerprint, oci_digest)

    sagemaker_target().update("prov", v2)
    got = sagemaker_target().get("prov").details
    assert got["signature_fingerprint"] == "sha256:" + "cd" * 32 and "oci_digest" not in got
    # The endpoint keeps no tag of the old package's provenance.
    assert tags_of(aws, f"{arn}:endpoint/prov") == {
        **modelport_tags(v2, "prov", 2),
        "modelport:signature-fingerprint": "sha256:" + "cd" * 32,
    }
    sagemaker_target().delete("prov")


def test_an_update_without_options_keeps_the_deployments_settings(
    aws: FakeAWS, home: Path, packages: dict[str, Package]
) -> None:
    v1, v2 = packages["v1"], packages["v2"]
    sagemaker_target(
        instance_type="ml.c5.xlarge",
        instance_count="2",
        env='{"A": "1"}',
        subnets='["subnet-1"]',
        security_groups='["sg-1"]',
        data_capture_s3=f"s3://{BUCKET}/capture",
        data_capture_percent="25",
        tags='{"team": "risk"}',
    ).create("keep", v1)
    aws.clear_calls()
    # No role, no variant: only the image (a given image is not a setting kept; without it the
    # target would build the runtime image).
    bare = connect("sagemaker:/us-east-1", {"image_uri": IMAGE, "startup_timeout": "120"})

    bare.update("keep", v2)

    tags = {"team": "risk", **modelport_tags(v2, "keep", 2)}
    model = _only_call(aws, "sagemaker", "CreateModel")
    assert model["ExecutionRoleArn"] == ROLE
    assert model["PrimaryContainer"]["Environment"] == {
        "A": "1",
        "MODELPORT_PACKAGE": "/opt/ml/model",
        "MODELPORT_EXPECT_DIGEST": v2.digest,
    }
    assert model["VpcConfig"] == {"Subnets": ["subnet-1"], "SecurityGroupIds": ["sg-1"]}
    assert _only_call(aws, "sagemaker", "CreateEndpointConfig") == {
        "EndpointConfigName": "keep-g2",
        "ProductionVariants": [
            {
                "VariantName": "AllTraffic",
                "ModelName": "keep-g2",
                "InstanceType": "ml.c5.xlarge",
                "InitialInstanceCount": 2,
                "InitialVariantWeight": 1.0,
            }
        ],
        "Tags": [{"Key": k, "Value": v} for k, v in tags.items()],
        "DataCaptureConfig": {
            "EnableCapture": True,
            "InitialSamplingPercentage": 25,
            "DestinationS3Uri": f"s3://{BUCKET}/capture",
            "CaptureOptions": [{"CaptureMode": "Input"}, {"CaptureMode": "Output"}],
        },
    }
    _assert_serves(bare, "keep", v2)
    assert resources(aws, "keep") == only_generation("keep", 2)


def test_a_variant_option_on_update_replaces_the_variant(
    aws: FakeAWS, home: Path, packages: dict[str, Package]
) -> None:
    target = sagemaker_target(instance_type="ml.c5.xlarge")
    target.create("swap", packages["v1"])
    sagemaker_target(serverless_memory_mb="2048").update("swap", packages["v2"])
    config = _describe(aws, "config", "swap-g2")
    assert config["ProductionVariants"] == [
        {
            "VariantName": "AllTraffic",
            "ModelName": "swap-g2",
            "ServerlessConfig": {"MemorySizeInMB": 2048, "MaxConcurrency": 5},
        }
    ]
    assert target.get("swap").details["variant"] == {
        "ServerlessConfig": {"MemorySizeInMB": 2048, "MaxConcurrency": 5},
        "CurrentServerlessConfig": {"MemorySizeInMB": 2048, "MaxConcurrency": 5},
    }
    _assert_serves(target, "swap", packages["v2"])


def test_autoscaling_is_made_kept_changed_and_removed(
    aws: FakeAWS, home: Path, packages: dict[str, Package]
) -> None:
    target = sagemaker_target(min_instances="1", max_instances="3")
    created = target.create("auto", packages["v1"])
    assert created.details["autoscaling"] == {"min_instances": 1, "max_instances": 3}
    assert _scaling(aws, "auto") == _scaled("auto", 1, 3)

    # An update without autoscaling options keeps it as it was.
    sagemaker_target().update("auto", packages["v2"])
    assert _scaling(aws, "auto") == _scaled("auto", 1, 3)
    # One with them changes it.
    changed = sagemaker_target(min_instances="2", max_instances="4").update("auto", packages["v1"])
    assert changed.details["autoscaling"] == {"min_instances": 2, "max_instances": 4}
    assert _scaling(aws, "auto") == _scaled("auto", 2, 4)
    _assert_serves(target, "auto", packages["v1"])

    target.delete("auto")
    assert _scaling(aws, "auto") == ([], [])
    assert resources(aws, "auto") == NOTHING


def test_an_update_to_serverless_drops_autoscaling_and_says_so(
    aws: FakeAWS, home: Path, packages: dict[str, Package]
) -> None:
    sagemaker_target(min_instances="1", max_instances="3").create("tosls", packages["v1"])
    events: list[ProgressEvent] = []
    serverless = sagemaker_target(serverless_memory_mb="2048")
    serverless.progress = Progress(events.append)
    serverless.update("tosls", packages["v2"])
    assert [e.message for e in events if e.kind == "warn"] == [
        "tosls becomes serverless: its autoscaling (1-3 instances) is removed"
    ]
    assert _scaling(aws, "tosls") == ([], [])
    assert "autoscaling" not in serverless.get("tosls").details
    _assert_serves(serverless, "tosls", packages["v2"])


def test_a_create_failing_after_autoscaling_leaves_nothing(
    aws: FakeAWS, home: Path, packages: dict[str, Package]
) -> None:
    target = sagemaker_target(min_instances="1", max_instances="3")
    with failpoint("sagemaker.create.autoscaling"), pytest.raises(FailpointTriggered):
        target.create("cfail", packages["v1"])
    assert aws.calls("application-autoscaling", "RegisterScalableTarget")  # it got that far
    assert _scaling(aws, "cfail") == ([], [])
    assert resources(aws, "cfail") == NOTHING


@pytest.mark.parametrize(
    ("step", "options"),
    [
        ("suspend-autoscaling", {}),
        # Each of these also switches the endpoint back to the old generation: slower.
        pytest.param("update-endpoint", {}, marks=pytest.mark.slow),
        pytest.param("wait-updated", {}, marks=pytest.mark.slow),
        pytest.param("restore-autoscaling", {}, marks=pytest.mark.slow),
        pytest.param(
            "autoscaling", {"min_instances": "2", "max_instances": "4"}, marks=pytest.mark.slow
        ),
    ],
)
def test_an_update_failing_around_autoscaling_keeps_the_old_version_and_its_scaling(
    aws: FakeAWS, home: Path, packages: dict[str, Package], step: str, options: dict[str, str]
) -> None:
    target = sagemaker_target(min_instances="1", max_instances="3")
    target.create("ufail", packages["v1"])
    updating = sagemaker_target(**options)
    with failpoint(f"sagemaker.update.{step}"), pytest.raises(FailpointTriggered):
        updating.update("ufail", packages["v2"])
    assert _scaling(aws, "ufail") == _scaled("ufail", 1, 3)
    assert resources(aws, "ufail") == only_generation("ufail", 1)
    _assert_serves(target, "ufail", packages["v1"])


def test_an_endpoint_still_creating(aws: FakeAWS, home: Path, packages: dict[str, Package]) -> None:
    v1 = packages["v1"]
    target = sagemaker_target()
    # A process host takes a few tenths of a second to answer /ping: still Creating here.
    started = target.create("phases", v1, wait=False)
    assert started.status is DeploymentStatus.STARTING
    assert started.details["endpoint_status"] == "Creating"
    assert started.package_digest == v1.digest
    # Deleting it now waits for it to settle (AWS refuses to delete an endpoint in progress).
    target.delete("phases")
    deletes = [(c.status, c.error) for c in aws.calls("sagemaker", "DeleteEndpoint")]
    assert deletes == [(200, None)]
    assert resources(aws, "phases") == NOTHING

    # Not waited for, and its container refuses: get() says failed, and why.
    sagemaker_target(env=REFUSED_ENV).create("phases", v1, wait=False)
    seen: list[Any] = []

    def settled() -> bool:
        seen.append(target.get("phases"))
        return seen[-1].status is not DeploymentStatus.STARTING

    wait_until(settled, what="the endpoint to fail", timeout_s=60, max_interval_s=0.1)
    failed = seen[-1]
    assert failed.status is DeploymentStatus.FAILED
    assert (failed.details["endpoint_status"], failed.details["failure_reason"]) == (
        "Failed",
        HEALTH_CHECK,
    )
    with pytest.raises(DeploymentError) as caught:
        target.predict("phases", PAYLOAD)
    assert str(caught.value) == "the endpoint phases is Failed: it does not serve"
    assert caught.value.hint == HEALTH_CHECK
    with pytest.raises(DeploymentError, match="can be updated only when InService"):
        target.update("phases", packages["v2"])
    target.delete("phases")
    assert resources(aws, "phases") == NOTHING


@pytest.mark.slow
def test_an_endpoint_sagemaker_is_updating(
    aws: FakeAWS, home: Path, packages: dict[str, Package]
) -> None:
    v1 = packages["v1"]
    target = sagemaker_target()
    target.create("phases", v1)
    # SageMaker updating the endpoint (here: asked directly, to the same config).
    sm = aws.client("sagemaker", internal=True)
    sm.update_endpoint(EndpointName="phases", EndpointConfigName="phases-g1")
    updating = target.get("phases")
    assert updating.status is DeploymentStatus.UPDATING
    assert updating.details["endpoint_status"] == "Updating"
    assert same_predictions(target.predict("phases", PAYLOAD), expected(v1))  # the old serves
    with pytest.raises(DeploymentError) as caught:
        target.update("phases", packages["v2"])
    assert str(caught.value) == (
        "the endpoint phases is Updating: it can be updated only when InService"
    )
    aws.wait_status("phases", "InService")
    _assert_serves(target, "phases", v1)
    assert resources(aws, "phases") == only_generation("phases", 1)


# --- 4. updates SageMaker rolls back ------------------------------------------------------------


def test_a_guarded_update_rolled_back_by_an_alarm(
    aws: FakeAWS, home: Path, packages: dict[str, Package]
) -> None:
    v1, v2 = packages["v1"], packages["v2"]
    target = sagemaker_target()
    target.create("guard", v1)
    aws.set_alarm("errors", "ALARM")
    aws.clear_calls()
    guarded = sagemaker_target(rollback_alarms='["errors"]', traffic="canary:10:1")

    with pytest.raises(DeploymentError) as caught:
        guarded.update("guard", v2)

    message = str(caught.value)
    assert message.startswith(
        "SageMaker rolled the update of guard back; the old version still serves: The update "
        "was rolled back because the CloudWatch alarm errors was in ALARM state during the "
        "deployment.; the new version's log ends:\n"
    )
    # The log is the new instance's (it started: the alarm, not the model, rolled it back).
    new_stream = aws.hosts("guard")[1]["log_stream"]
    assert all(line.startswith(f"  [{new_stream}] ") for line in message.splitlines()[1:])
    assert _only_call(aws, "sagemaker", "UpdateEndpoint") == {
        "EndpointName": "guard",
        "EndpointConfigName": "guard-g2",
        "DeploymentConfig": {
            "BlueGreenUpdatePolicy": {
                "TrafficRoutingConfiguration": {
                    "Type": "CANARY",
                    "WaitIntervalInSeconds": 1,
                    "CanarySize": {"Type": "CAPACITY_PERCENT", "Value": 10},
                },
                "TerminationWaitInSeconds": 0,
                # The start (120 s) and two bakes of 1 s, raised to SageMaker's least: 600.
                "MaximumExecutionTimeoutInSeconds": 600,
            },
            "AutoRollbackConfiguration": {"Alarms": [{"AlarmName": "errors"}]},
        },
    }
    assert resources(aws, "guard") == only_generation("guard", 1)
    _assert_serves(target, "guard", v1)
    endpoint_arn = f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:endpoint/guard"
    assert tags_of(aws, endpoint_arn) == modelport_tags(v1, "guard", 1)


def test_an_update_whose_new_version_cannot_start_is_rolled_back(
    aws: FakeAWS, home: Path, packages: dict[str, Package]
) -> None:
    target = sagemaker_target()
    target.create("nostart", packages["v1"])
    with pytest.raises(DeploymentError) as caught:
        sagemaker_target(env=REFUSED_ENV).update("nostart", packages["v2"])
    new_stream = aws.hosts("nostart")[1]["log_stream"]
    assert str(caught.value) == (
        f"SageMaker rolled the update of nostart back; the old version still serves: {HEALTH_CHECK}"
        f"; the new version's log ends:\n  [{new_stream}] {REFUSAL}"
    )
    assert resources(aws, "nostart") == only_generation("nostart", 1)
    _assert_serves(target, "nostart", packages["v1"])
    # The new host refused, and said why in the endpoint's log.
    failed = aws.hosts("nostart")[1]
    assert failed["model"] == "nostart-g2"
    assert REFUSAL in failed["lines"]


def test_a_rolled_back_update_shows_why_the_new_version_failed(
    aws: FakeAWS, home: Path, packages: dict[str, Package]
) -> None:
    sagemaker_target().create("why", packages["v1"])
    with pytest.raises(DeploymentError) as caught:
        sagemaker_target(env=REFUSED_ENV).update("why", packages["v2"])
    stream = aws.hosts("why")[1]["log_stream"]
    assert f"[{stream}] {REFUSAL}" in str(caught.value)


# --- 5. a create SageMaker fails ----------------------------------------------------------------


def test_a_create_whose_container_refuses_fails_with_its_log_and_leaves_nothing(
    aws: FakeAWS, home: Path, packages: dict[str, Package]
) -> None:
    with pytest.raises(DeploymentError) as caught:
        sagemaker_target(env=REFUSED_ENV).create("refused", packages["v1"])
    (host,) = aws.hosts("refused")
    message = str(caught.value)
    assert message.startswith(f"endpoint refused is Failed: {HEALTH_CHECK}; its log ends:\n")
    assert f"  [{host['log_stream']}] {REFUSAL}" in message.splitlines()
    assert resources(aws, "refused") == NOTHING
    assert host["stopped"]


# --- 6. AWS's errors, over the wire ---------------------------------------------------------------


def test_access_denied_names_the_action_and_removes_the_upload(
    aws: FakeAWS, home: Path, packages: dict[str, Package]
) -> None:
    model_arn = f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:model/denied-g1"
    aws.fail_next(
        "sagemaker",
        "CreateModel",
        "AccessDeniedException",
        f"User: arn:aws:sts::{ACCOUNT}:assumed-role/ci/x is not authorized to perform: "
        f"sagemaker:CreateModel on resource: {model_arn}",
    )
    with pytest.raises(PermissionDeniedError) as caught:
        sagemaker_target().create("denied", packages["v1"])
    assert (
        caught.value.hint
        == f"allow sagemaker:CreateModel on {model_arn} for the credentials in use"
    )
    assert "create step 'create-model' failed on target 'sagemaker' (permission denied)" in str(
        caught.value
    )
    key = "modelport/denied/g1/model.tar.gz"
    assert [c.params["Key"] for c in aws.calls("s3", "DeleteObject")] == [key]
    assert resources(aws, "denied") == NOTHING


def test_a_quota_on_create_endpoint_leaves_nothing(
    aws: FakeAWS, home: Path, packages: dict[str, Package]
) -> None:
    quota = (
        "The account-level service limit 'ml.m5.large for endpoint usage' is 0 Instances, with "
        "current utilization of 0 Instances and a request delta of 1 Instances."
    )
    aws.fail_next("sagemaker", "CreateEndpoint", "ResourceLimitExceeded", quota)
    with pytest.raises(QuotaExceededError) as caught:
        sagemaker_target().create("quota", packages["v1"])
    assert quota in str(caught.value)
    assert caught.value.hint is not None and "-C instance_type" in caught.value.hint
    assert _changes(aws)[-3:] == [
        "sagemaker:DeleteEndpointConfig",
        "sagemaker:DeleteModel",
        "s3:DeleteObject",
    ]
    assert resources(aws, "quota") == NOTHING


def test_throttled_calls_are_retried(
    aws: FakeAWS, home: Path, packages: dict[str, Package]
) -> None:
    # AWS_MAX_ATTEMPTS=1 in the fake's environment: the target's own retry config wins.
    aws.fail_next("sagemaker", "DescribeEndpoint", "ThrottlingException", "Rate exceeded", times=2)
    deployment = sagemaker_target().create("throttled", packages["v1"])
    assert deployment.status is DeploymentStatus.READY
    first = [(c.injected, c.status) for c in aws.calls("sagemaker", "DescribeEndpoint")][:3]
    assert first == [(True, 400), (True, 400), (False, 400)]  # then: not found (yet), as asked


def test_a_validation_error_names_the_option(
    aws: FakeAWS, home: Path, packages: dict[str, Package]
) -> None:
    aws.fail_next(
        "sagemaker",
        "CreateEndpointConfig",
        "ValidationException",
        "1 validation error detected: Value 'ml.c5.xlarge' at "
        "'productionVariants.1.member.instanceType' failed to satisfy constraint: Member must "
        "satisfy enum value set (InstanceType)",
    )
    with pytest.raises(DeploymentError) as caught:
        sagemaker_target(instance_type="ml.c5.xlarge").create("invalid", packages["v1"])
    assert caught.value.hint == "check -C instance_type"
    assert resources(aws, "invalid") == NOTHING


# --- 7. predict, and endpoints modelport did not make -------------------------------------------


def test_predict_answers_what_the_package_does(
    aws: FakeAWS, home: Path, packages: dict[str, Package]
) -> None:
    v1 = packages["v1"]
    target = sagemaker_target()
    target.create("ask", v1)
    for body in (PAYLOAD, {"instances": [[0.5, -1.0], [2.0, 3.0], [4.0, 5.0]]}):
        assert same_predictions(target.predict("ask", body), expected(v1, body))
    (call,) = aws.calls("sagemaker-runtime", "InvokeEndpoint")[:1]
    assert call.params["ContentType"] == "application/json"
    assert call.params["Accept"] == "application/json"

    bad = {"inputs": {"X": [[1.0, 2.0, 3.0]]}}
    with pytest.raises(InputError) as caught:
        target.predict("ask", bad)
    assert (
        str(caught.value)
        == "input 'X' expects size 2 on dimension 1 (float32[-1, 2]), got shape [1, 3]"
    )
    with pytest.raises(InputError) as in_process:
        expected(v1, bad)
    assert str(caught.value) == str(in_process.value)
    refused = aws.calls("sagemaker-runtime", "InvokeEndpoint")[-1]
    assert (refused.status, refused.error) == (424, "ModelError")

    with pytest.raises(DeploymentNotFound):
        target.predict("missing", PAYLOAD)


def invoke_answer_key(aws: FakeAWS) -> str:
    """The S3 key where the fake's last asynchronous invocation put its answer."""
    (get,) = [c for c in aws.calls("s3", "GetObject") if c.params["Key"].endswith(".out")]
    return str(get.params["Key"])


def test_an_async_endpoint_is_asked_through_s3(
    aws: FakeAWS, home: Path, packages: dict[str, Package]
) -> None:
    v1, v2 = packages["v1"], packages["v2"]
    output = f"s3://{BUCKET}/async-out"
    target = sagemaker_target(async_output_s3=output)
    target.create("queued", v1)
    aws.clear_calls()

    assert same_predictions(target.predict("queued", PAYLOAD), expected(v1))

    (put,) = aws.calls("s3", "PutObject")
    assert put.params["Bucket"] == BUCKET
    request_key = put.params["Key"]
    assert request_key.startswith("async-out/modelport-requests/")
    (invoke,) = aws.calls("sagemaker-runtime", "InvokeEndpointAsync")
    assert invoke.params["InputLocation"] == f"s3://{BUCKET}/{request_key}"
    assert aws.calls("sagemaker-runtime", "InvokeEndpoint") == []
    # The request, then the answer once read: a predict leaves nothing in the bucket.
    answer_key = invoke_answer_key(aws)
    assert [c.params["Key"] for c in aws.calls("s3", "DeleteObject")] == [request_key, answer_key]
    s3 = aws.client("s3", internal=True)
    left = s3.list_objects_v2(Bucket=BUCKET, Prefix="async-out/")
    assert left.get("Contents", []) == []

    # An update keeps the asynchronous output.
    sagemaker_target().update("queued", v2)
    assert _describe(aws, "config", "queued-g2")["AsyncInferenceConfig"] == {
        "OutputConfig": {"S3OutputPath": output, "S3FailurePath": f"{output}/failures"}
    }
    assert same_predictions(target.predict("queued", PAYLOAD), expected(v2))


def test_an_async_endpoint_refusing_the_input_is_an_input_error(
    aws: FakeAWS, home: Path, packages: dict[str, Package]
) -> None:
    target = sagemaker_target(async_output_s3=f"s3://{BUCKET}/async-out")
    target.create("queued-bad", packages["v1"])
    with pytest.raises(InputError) as caught:
        target.predict("queued-bad", {"inputs": {"X": [[1.0, 2.0, 3.0]]}})
    assert str(caught.value) == (
        "input 'X' expects size 2 on dimension 1 (float32[-1, 2]), got shape [1, 3]"
    )


def test_an_endpoint_modelport_did_not_make_is_left_alone(
    aws: FakeAWS, home: Path, packages: dict[str, Package], package_paths: dict[str, Path]
) -> None:
    s3 = aws.client("s3", internal=True)
    s3.create_bucket(Bucket="someone-else")
    s3.put_object(Bucket="someone-else", Key="m.tar.gz", Body=package_paths["v1"].read_bytes())
    sm = aws.client("sagemaker", internal=True)
    sm.create_model(
        ModelName="foreign",
        ExecutionRoleArn=ROLE,
        PrimaryContainer={
            "Image": IMAGE,
            "ModelDataUrl": "s3://someone-else/m.tar.gz",
            "Environment": {"MODELPORT_PACKAGE": "/opt/ml/model"},
        },
    )
    foreign_config(aws, "foreign", "foreign")
    sm.create_endpoint(EndpointName="foreign", EndpointConfigName="foreign")
    aws.wait_status("foreign", "InService")
    target = sagemaker_target()
    target.create("ours", packages["v1"])
    aws.clear_calls()

    assert [d.name for d in target.list()] == ["ours"]
    for verb in (
        lambda: target.get("foreign"),
        lambda: target.predict("foreign", PAYLOAD),
        lambda: list(target.logs("foreign")),
        lambda: target.update("foreign", packages["v2"]),
    ):
        with pytest.raises(DeploymentNotFound):
            verb()
    with pytest.raises(DeploymentError) as caught:
        target.delete("foreign")
    assert str(caught.value) == "the endpoint foreign was not made by modelport: it is left alone"

    assert _changes(aws) == []
    assert aws.endpoint_status("foreign") == "InService"
    assert _describe(aws, "model", "foreign")["PrimaryContainer"]["ModelDataUrl"] == (
        "s3://someone-else/m.tar.gz"
    )
    assert _describe(aws, "config", "foreign")["EndpointConfigName"] == "foreign"
    assert s3.head_object(Bucket="someone-else", Key="m.tar.gz")["ContentLength"] > 0


# --- 8. logs --------------------------------------------------------------------------------------


def test_logs_are_the_endpoints_cloudwatch_lines(
    aws: FakeAWS, home: Path, packages: dict[str, Package]
) -> None:
    target = sagemaker_target()
    target.create("logged", packages["v1"])
    host = aws.host("logged")
    assert host is not None
    stream = host["log_stream"]
    logged = wait_logged(aws, "logged")
    lines = list(target.logs("logged", tail=None))
    # Sorted: see test_log_lines_of_one_millisecond_keep_their_order.
    assert sorted(lines) == sorted(f"[{stream}] {line}" for line in logged)
    assert any(
        line.startswith(f"[{stream}] modelport: serving contract-model 1 at http://127.0.0.1:")
        for line in lines
    )
    assert list(target.logs("logged", tail=2)) == lines[-2:]
    assert len(list(target.logs("logged"))) == len(lines)  # fewer than the default 100


def test_log_lines_of_one_millisecond_keep_their_order(
    aws: FakeAWS, home: Path, packages: dict[str, Package]
) -> None:
    target = sagemaker_target()
    target.create("ordered", packages["v1"])
    logs = aws.client("logs", internal=True)
    group = "/aws/sagemaker/Endpoints/ordered"
    logs.create_log_stream(logGroupName=group, logStreamName="AllTraffic/i-0ffffffffffffffff")
    now = max(e["timestamp"] for e in logs.filter_log_events(logGroupName=group)["events"]) + 1
    written = ["zulu: first", "alpha: second", "mike: third"]
    logs.put_log_events(
        logGroupName=group,
        logStreamName="AllTraffic/i-0ffffffffffffffff",
        logEvents=[{"timestamp": now, "message": m} for m in written],
    )
    assert list(target.logs("ordered", tail=3)) == [
        f"[AllTraffic/i-0ffffffffffffffff] {m}" for m in written
    ]


def test_logs_without_permission_say_so(
    aws: FakeAWS, home: Path, packages: dict[str, Package]
) -> None:
    target = sagemaker_target()
    target.create("secret", packages["v1"], wait=False)  # an endpoint is all it takes
    aws.fail_next(
        "logs",
        "DescribeLogStreams",
        "AccessDeniedException",
        f"User: arn:aws:sts::{ACCOUNT}:assumed-role/ci/x is not authorized to perform: "
        f"logs:DescribeLogStreams on resource: arn:aws:logs:{REGION}:{ACCOUNT}:log-group:"
        "/aws/sagemaker/Endpoints/secret:log-stream:",
    )
    with pytest.raises(PermissionDeniedError):
        list(target.logs("secret"))


# --- 9. the read verbs need no role -------------------------------------------------------------


def test_the_read_verbs_need_only_a_region(
    aws: FakeAWS, home: Path, packages: dict[str, Package]
) -> None:
    v1 = packages["v1"]
    sagemaker_target().create("shared", v1)
    reader = connect("sagemaker:/us-east-1")
    assert reader.config.role_arn is None

    assert [d.name for d in reader.list()] == ["shared"]
    assert reader.get("shared").package_digest == v1.digest
    assert same_predictions(reader.predict("shared", PAYLOAD), expected(v1))
    stream = aws.host("shared")["log_stream"]
    logged = {f"[{stream}] {message}" for message in wait_logged(aws, "shared")}
    (line,) = reader.logs("shared", tail=1)
    assert line in logged

    aws.clear_calls()
    with pytest.raises(ConfigError) as caught:
        reader.create("another", v1)
    message = str(caught.value)
    assert "role_arn is required to create or update" in message
    for permission in ("s3:GetObject", "ecr:BatchGetImage", "logs:PutLogEvents"):
        assert permission in message
    assert aws.calls() == []  # refused before any call

    reader.delete("shared")
    assert resources(aws, "shared") == NOTHING
