"""Where and as whom the sagemaker target works: region, profile, an assumed role, no region.

boto3's own chain is used as it is (the fake's environment: explicit keys, ``AWS_ENDPOINT_URL``),
with the target's ``region``, ``profile`` and ``assume_role_arn`` on top.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from fake_aws import FakeAWS

from modelport.deployers import connect
from modelport.errors import UsageError

ASSUMED = "arn:aws:iam::123456789012:role/modelport-deployer"


def test_an_assumed_role_is_assumed_before_any_other_call(aws: FakeAWS) -> None:
    target = connect("sagemaker:/us-east-1", assume_role_arn=ASSUMED)
    assert target.list() == []
    (assume,) = aws.calls("sts", "AssumeRole")
    assert assume.params["RoleArn"] == ASSUMED
    assert str(assume.params["RoleSessionName"]).startswith("modelport-")
    # The first call is the assumption; the listing after it.
    assert aws.operations()[:2] == ["sts:AssumeRole", "sagemaker:ListEndpoints"]


def test_a_profile_gives_its_region(
    aws: FakeAWS, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "config"
    config.write_text("[profile deploy]\nregion = eu-west-1\n", encoding="utf-8")
    credentials = tmp_path / "credentials"
    credentials.write_text(
        "[deploy]\naws_access_key_id = testing\naws_secret_access_key = testing\n",
        encoding="utf-8",
    )
    monkeypatch.setenv("AWS_CONFIG_FILE", str(config))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(credentials))
    for name in ("AWS_DEFAULT_REGION", "AWS_REGION", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(name)
    target = connect("sagemaker", profile="deploy")
    assert target.aws.region == "eu-west-1"
    assert target.list() == []
    assert {c.region for c in aws.calls()} == {"eu-west-1"}


def test_the_uri_region_wins_over_the_environment(aws: FakeAWS) -> None:
    target = connect("sagemaker:/ap-southeast-2")
    target.list()
    assert {c.region for c in aws.calls()} == {"ap-southeast-2"}


def test_no_region_anywhere_is_a_clear_error(aws: FakeAWS, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("AWS_DEFAULT_REGION", "AWS_REGION"):
        monkeypatch.delenv(name)
    target = connect("sagemaker")
    with pytest.raises(UsageError, match="no AWS region") as caught:
        target.list()
    assert caught.value.hint is not None and "sagemaker:/REGION" in caught.value.hint
    assert aws.calls() == []
