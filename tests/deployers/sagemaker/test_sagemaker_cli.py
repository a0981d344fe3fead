"""The ``modelport`` console script driving the sagemaker target, in a subprocess, against the
offline AWS: the whole life of a deployment, ``--dry-run``'s exact calls, errors as a person sees
them (exit code, one message, a hint, no traceback), and README.md's SageMaker commands run as
written.

The CLI runs in its own process with the fake's environment (``AWS_ENDPOINT_URL`` and test
credentials); the fake records and faults its requests on the wire like the test process's own.
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
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
    modelport_tags,
    mutating,
    only_generation,
    resources,
    same_predictions,
    wait_logged,
)

from modelport.deployers.kit.waiting import wait_until
from modelport.model_format.package import Package

MODELPORT = str(Path(sys.executable).parent / "modelport")
README = Path(__file__).resolve().parents[3] / "README.md"
TARGET = f"sagemaker:/{REGION}"
#: The create options every deploy here gives (the process hosts ignore the image).
CREATE = ("-C", f"role_arn={ROLE}", "-C", f"image_uri={IMAGE}", "-C", "startup_timeout=120")


@pytest.fixture
def rows(tmp_path: Path) -> Path:
    """A request body file for ``deployments predict -i``."""
    path = tmp_path / "rows.json"
    path.write_text(json.dumps(PAYLOAD))
    return path


def cli(fake: FakeAWS, *args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    """``modelport ARGS`` in a subprocess with the fake's environment (and the test's home)."""
    return subprocess.run(
        [MODELPORT, *args],
        env=fake.subprocess_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def ok(fake: FakeAWS, *args: str) -> str:
    """``modelport ARGS``'s output; the test fails unless it exits 0."""
    done = cli(fake, *args)
    assert done.returncode == 0, (args, done.stdout, done.stderr)
    return done.stdout


def ok_json(fake: FakeAWS, *args: str) -> Any:
    return json.loads(ok(fake, *args, "--json"))


def test_the_cli_deploys_queries_updates_and_deletes(
    aws: FakeAWS,
    home: Path,
    packages: dict[str, Package],
    package_paths: dict[str, Path],
    rows: Path,
) -> None:
    v1, v2 = packages["v1"], packages["v2"]
    name = "cli"
    record = ok_json(aws, "deploy", str(package_paths["v1"]), "-t", TARGET, "-n", name, *CREATE)
    assert (record["name"], record["target"], record["status"]) == (name, "sagemaker", "ready")
    assert record["package_digest"] == v1.digest
    assert record["endpoint"] == f"{aws.url}/endpoints/{name}/invocations"
    assert record["details"]["endpoint_config"] == f"{name}-g1"
    assert resources(aws, name) == only_generation(name, 1)

    # A second deploy of the name is refused, and the first goes on serving.
    again = cli(aws, "deploy", str(package_paths["v2"]), "-t", TARGET, "-n", name, *CREATE)
    assert (again.returncode, again.stdout) == (1, "")
    assert again.stderr == f"Error: an endpoint named '{name}' exists in {REGION}\n"

    assert ok_json(aws, "deployments", "list", "-t", "sagemaker") == [record]
    assert ok_json(aws, "deployments", "get", "-t", "sagemaker", "-n", name) == record
    answer = json.loads(
        ok(aws, "deployments", "predict", "-t", TARGET, "-n", name, "-i", str(rows))
    )
    assert same_predictions(answer, expected(v1))
    host = aws.host(name)
    assert host is not None
    messages = wait_logged(aws, name)
    logged = ok(aws, "deployments", "logs", "-t", "sagemaker", "-n", name, "--all").splitlines()
    assert sorted(logged) == sorted(f"[{host['log_stream']}] {m}" for m in messages)

    # An update without waiting, and with no -C but the image (the deployment keeps its role
    # and variant): a background job does it; `get` says so once done. (README.md's commands,
    # below, update and wait.)
    started = ok_json(
        aws, "deployments", "update", str(package_paths["v2"]), "-t", TARGET, "-n", name,
        "-C", f"image_uri={IMAGE}", "--no-wait",
    )  # fmt: skip
    assert started["status"] == "updating"
    assert started["package_digest"] == v1.digest  # not switched yet
    assert started["details"]["update_job"]["package_digest"] == v2.digest
    seen: list[dict[str, Any]] = []

    def updated_to_v2() -> bool:
        seen.append(ok_json(aws, "deployments", "get", "-t", TARGET, "-n", name))
        return seen[-1]["status"] == "ready" and seen[-1]["package_digest"] == v2.digest

    wait_until(updated_to_v2, what="the background update to v2", timeout_s=120)
    assert seen[-1]["details"]["update_job"]["status"] == "succeeded"
    assert seen[-1]["details"]["generation"] == 2
    assert seen[-1]["details"]["variant"]["InstanceType"] == "ml.m5.large"
    assert resources(aws, name) == only_generation(name, 2)
    answer = json.loads(
        ok(aws, "deployments", "predict", "-t", TARGET, "-n", name, "-i", str(rows))
    )
    assert same_predictions(answer, expected(v2))

    deleted = cli(aws, "deployments", "delete", "-t", "sagemaker", "-n", name)
    assert deleted.returncode == 0, deleted.stderr
    assert deleted.stdout == f"Deleted deployment {name} on sagemaker (if it existed).\n"
    assert resources(aws, name) == NOTHING
    assert ok_json(aws, "deployments", "list", "-t", "sagemaker") == []


def test_a_dry_run_prints_every_call_and_makes_none(
    aws: FakeAWS, home: Path, packages: dict[str, Package], package_paths: dict[str, Path]
) -> None:
    v1 = packages["v1"]
    args = ("deploy", str(package_paths["v1"]), "-t", TARGET, "-n", "dry", *CREATE, "--dry-run")
    printed = ok(aws, *args)
    calls = [
        line.strip().removeprefix("call ").split(" ", 1)
        for line in printed.splitlines()
        if line.strip().startswith("call ")
    ]
    assert [c[0] for c in calls] == [
        "s3.head_bucket",
        "s3.create_bucket",  # the rest of the name is "(only if missing)": split off above
        "s3.put_public_access_block",
        "s3.put_bucket_encryption",
        "s3.put_object",
        "sagemaker.create_model",
        "sagemaker.create_endpoint_config",
        "sagemaker.create_endpoint",
        "sagemaker.describe_endpoint",
    ]
    params = {c[0]: c[1] for c in calls}
    tags = [{"Key": k, "Value": v} for k, v in modelport_tags(v1, "dry", 1).items()]
    model = json.loads(params["sagemaker.create_model"])
    assert model == {
        "ModelName": "dry-g1",
        "PrimaryContainer": {
            "Image": IMAGE,
            "ModelDataUrl": f"s3://{BUCKET}/modelport/dry/g1/model.tar.gz",
            "Environment": {
                "MODELPORT_PACKAGE": "/opt/ml/model",
                "MODELPORT_EXPECT_DIGEST": v1.digest,
            },
        },
        "ExecutionRoleArn": ROLE,
        "Tags": [*tags, {"Key": "modelport:model-data-sha256", "Value": "<sha256>"}],
    }
    assert json.loads(params["sagemaker.create_endpoint_config"]) == {
        "EndpointConfigName": "dry-g1",
        "ProductionVariants": [
            {
                "VariantName": "AllTraffic",
                "ModelName": "dry-g1",
                "InstanceType": "ml.m5.large",
                "InitialInstanceCount": 1,
                "InitialVariantWeight": 1.0,
            }
        ],
        "Tags": tags,
    }
    assert json.loads(params["sagemaker.create_endpoint"]) == {
        "EndpointName": "dry",
        "EndpointConfigName": "dry-g1",
        "Tags": tags,
    }
    assert json.loads(params["s3.put_object"]) == {
        "Bucket": BUCKET,
        "Key": "modelport/dry/g1/model.tar.gz",
        "IfNoneMatch": "*",
        "ExpectedBucketOwner": ACCOUNT,
        "ServerSideEncryption": "AES256",
        "Metadata": {"package-digest": v1.digest, "sha256": "<sha256 of the archive>"},
    }
    assert printed.endswith("Nothing was created.\n")

    plan = ok_json(aws, *args)
    assert {k: v for k, v in plan.items() if k != "actions"} == {
        "dry_run": True,
        "target": "sagemaker",
        "name": "dry",
        "package_digest": v1.digest,
    }
    assert [a["step"] for a in plan["actions"]] == [
        "ensure-bucket",
        "upload-model",
        "use-image",
        "create-model",
        "create-endpoint-config",
        "create-endpoint",
        "wait-in-service",
    ]
    (model_action,) = [a for a in plan["actions"] if a["step"] == "create-model"]
    assert model_action["details"]["calls"][0]["params"]["ModelName"] == "dry-g1"

    # Two dry runs: reads only, in both processes.
    assert aws.operations() == 2 * [
        "sagemaker:ListModels",
        "sagemaker:ListEndpointConfigs",
        "sts:GetCallerIdentity",
    ]
    assert resources(aws, "dry") == NOTHING


def test_errors_exit_with_one_message_and_a_hint(
    aws: FakeAWS, home: Path, packages: dict[str, Package], package_paths: dict[str, Path]
) -> None:
    deploy = ("deploy", str(package_paths["v1"]), "-t", TARGET, *CREATE)
    bad = cli(aws, *deploy, "-n", "bad", "-C", "serverless_memory_mb=1500")
    assert (bad.returncode, bad.stdout) == (2, "")
    assert bad.stderr == (
        "Error: invalid configuration for target 'sagemaker': serverless_memory_mb must be one "
        "of 1024, 2048, 3072, 4096, 5120, 6144\n"
    )
    assert aws.calls() == []

    model_arn = f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:model/denied-g1"
    aws.fail_next(
        "sagemaker",
        "CreateModel",
        "AccessDeniedException",
        f"User: arn:aws:sts::{ACCOUNT}:assumed-role/ci/x is not authorized to perform: "
        f"sagemaker:CreateModel on resource: {model_arn}",
    )
    denied = cli(aws, *deploy, "-n", "denied")
    assert denied.returncode == 1
    lines = denied.stderr.splitlines()
    assert lines[0].startswith(
        "Error: create step 'create-model' failed on target 'sagemaker' (permission denied): "
        "AccessDeniedException: User: "
    )
    assert f"  hint: allow sagemaker:CreateModel on {model_arn} for the credentials in use" in lines
    assert "Traceback" not in denied.stderr
    assert resources(aws, "denied") == NOTHING


def _readme_commands() -> list[str]:
    """The lines of README.md's bash block under ``### AWS SageMaker``."""
    text = README.read_text()
    section = text[text.index("### AWS SageMaker") :]
    block = re.search(r"```bash\n(.*?)```", section, re.DOTALL)
    assert block is not None, "README.md's SageMaker section has no bash block"
    return [line for line in block.group(1).splitlines() if line.strip()]


def test_the_readmes_sagemaker_commands_work_as_written(
    aws: FakeAWS,
    home: Path,
    packages: dict[str, Package],
    package_paths: dict[str, Path],
    rows: Path,
) -> None:
    files = {
        "model.mport": str(package_paths["v1"]),
        "model-v2.mport": str(package_paths["v2"]),
        "rows.json": str(rows),
    }
    commands = _readme_commands()
    ran: list[str] = []
    name = region = ""
    for line in commands:
        words = shlex.split(line, comments=True)
        assert words[0] == "modelport", line
        args = [files.get(w, w) for w in words[1:]]
        verb = args[0] if args[0] != "deployments" else f"deployments {args[1]}"
        if verb in ("deploy", "deployments update"):
            # The process hosts ignore the image, so none is built (the slow container test
            # builds and runs the real one).
            args += ["-C", f"image_uri={IMAGE}"]
        done = cli(aws, *args)
        assert done.returncode == 0, (line, done.stdout, done.stderr)
        ran.append(verb)
        name = args[args.index("--name") + 1]
        region = args[args.index("-t") + 1].removeprefix("sagemaker:/")
        if verb == "deployments predict":
            assert same_predictions(json.loads(done.stdout), expected(packages["v1"]))
        if verb == "deployments update":
            get = ok_json(aws, "deployments", "get", "-t", f"sagemaker:/{region}", "-n", name)
            assert get["package_digest"] == packages["v2"].digest
            assert get["details"]["region"] == region
    assert ran[:2] == ["deploy", "deployments predict"]
    # The whole block ran in the region it names (eu-west-1 when written; the fake's clients
    # default to us-east-1), and its last line deleted what it made.
    calls = aws.calls("sagemaker")
    assert calls and {c.region for c in calls} == {region}
    uploads = {c.params["Bucket"] for c in aws.calls("s3", "PutObject")}
    assert uploads == {f"modelport-{region}-{ACCOUNT}"}
    assert ran[-1] == "deployments delete"
    assert resources(aws, name, region=region) == NOTHING
    assert [c for c in aws.calls() if mutating(c.operation) and c.region == REGION] == []
