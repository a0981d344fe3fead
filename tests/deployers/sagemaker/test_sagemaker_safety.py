"""What the sagemaker target must never do: overwrite, delete or orphan what is not its own.

- two deploys making the same generation: the second is refused before it touches anything;
- an undo never deletes an endpoint config (nor its model and upload) from under an endpoint
  that may still use it: those are left behind and reported, with the commands to remove them;
- a generation someone pointed the endpoint to by hand is left alone by an update's clean-up;
- names too long for ``NAME-gN`` to stay whole are refused.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from fake_aws import FakeAWS
from sagemaker_support import BUCKET, NOTHING, ROLE, foreign_config, resources, sagemaker_target

from modelport.deployers.kit.rollout import failpoint
from modelport.deployers.sagemaker import SageMakerConfig, SageMakerDeployer
from modelport.errors import ConflictError, RollbackIncomplete, UsageError
from modelport.model_format.package import Package


def test_a_generation_being_made_by_another_deploy_is_not_touched(
    aws: FakeAWS, home: Path, packages: dict[str, Package]
) -> None:
    s3 = aws.client("s3", internal=True)
    s3.create_bucket(Bucket=BUCKET)
    key = "modelport/race/g1/model.tar.gz"
    s3.put_object(Bucket=BUCKET, Key=key, Body=b"the other deploy's model data")

    with pytest.raises(ConflictError, match="another deploy of 'race' is making generation 1"):
        sagemaker_target().create("race", packages["v1"])

    assert s3.get_object(Bucket=BUCKET, Key=key)["Body"].read() == b"the other deploy's model data"
    assert resources(aws, "race") == {**NOTHING, "objects": [key]}


def test_an_undo_never_pulls_a_config_from_under_its_endpoint(
    aws: FakeAWS, home: Path, packages: dict[str, Package]
) -> None:
    target = sagemaker_target()
    denied = "User: arn:aws:sts::123456789012:assumed-role/ci/x is not authorized"
    aws.fail_next("sagemaker", "DeleteEndpoint", "AccessDeniedException", denied, times=None)
    with (
        failpoint("sagemaker.create.wait-in-service"),
        pytest.raises(RollbackIncomplete) as caught,
    ):
        target.create("held", packages["v1"])

    # The endpoint could not be deleted, so nothing it uses was: each is reported.
    assert [line.split(" (undo failed", 1)[0] for line in caught.value.left_behind] == [
        "the endpoint held, remove with: aws sagemaker delete-endpoint --endpoint-name held",
        "the endpoint config held-g1, remove with: aws sagemaker delete-endpoint-config "
        "--endpoint-config-name held-g1",
        "the SageMaker model held-g1, remove with: aws sagemaker delete-model --model-name held-g1",
        f"the object s3://{BUCKET}/modelport/held/g1/model.tar.gz, remove with: aws s3 rm "
        f"s3://{BUCKET}/modelport/held/g1/model.tar.gz",
    ]
    assert aws.endpoint_status("held") == "InService"
    assert resources(aws, "held") == {
        "models": ["held-g1"],
        "configs": ["held-g1"],
        "endpoints": ["held"],
        "objects": ["modelport/held/g1/model.tar.gz"],
    }
    # With the permission back, delete removes it all.
    aws.clear_faults()
    target.delete("held")
    assert resources(aws, "held") == NOTHING


def test_an_update_leaves_a_config_pointed_to_by_hand_alone(
    aws: FakeAWS, home: Path, packages: dict[str, Package]
) -> None:
    target = sagemaker_target()
    target.create("byhand", packages["v1"])
    sm = aws.client("sagemaker", internal=True)
    # Someone else's config (their own model), switched to outside modelport.
    sm.create_model(
        ModelName="theirs",
        PrimaryContainer={"Image": "127.0.0.1:5000/theirs:1", "ModelDataUrl": "s3://x/theirs"},
        ExecutionRoleArn=ROLE,
    )
    foreign_config(aws, "theirs", "byhand-g1")
    sm.update_endpoint(EndpointName="byhand", EndpointConfigName="theirs")
    aws.wait_status("byhand", "InService")
    events: list[str] = []
    target.progress = type(target.progress).from_lines(events.append)

    target.update("byhand", packages["v2"])

    assert "warning: theirs is not a generation of byhand: it is left alone" in events
    assert sm.describe_endpoint_config(EndpointConfigName="theirs")["EndpointConfigName"]
    assert sm.describe_model(ModelName="theirs")["ModelName"] == "theirs"
    assert target.get("byhand").package_digest == packages["v2"].digest


@pytest.mark.parametrize("length", [55, 63])
def test_names_too_long_for_their_generations_are_refused(aws: FakeAWS, length: int) -> None:
    with pytest.raises(UsageError, match="at most 54 characters on sagemaker"):
        sagemaker_target().get("a" * length)
    assert aws.calls() == []


@pytest.mark.parametrize(
    ("instance_type", "architecture"),
    [
        ("ml.m5.large", "amd64"),
        ("ml.g5.xlarge", "amd64"),  # GPU family g5: not Graviton
        ("ml.inf2.xlarge", "amd64"),
        ("ml.c7g.xlarge", "arm64"),
        ("ml.m6gd.large", "arm64"),
        ("ml.c7gn.2xlarge", "arm64"),
    ],
)
def test_the_image_is_built_for_the_instances_architecture(
    instance_type: str, architecture: str
) -> None:
    config = SageMakerConfig(instance_type=instance_type)
    assert SageMakerDeployer._architecture(config) == architecture
