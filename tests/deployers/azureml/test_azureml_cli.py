"""The ``modelport`` console script driving the azureml target, in a subprocess, against the
offline Azure: README.md's Azure ML commands run as written (deploy, predict, a canary update,
promote, delete); the rest of a deployment's life (a refused second deploy, list, get, both
bodies Azure ML users send, logs, a mirror and its rollback, delete twice); ``--dry-run``'s steps
and azure-ai-ml calls; errors as a person sees them (exit code, one message, a hint, no
traceback).

The CLI runs in its own process with :meth:`~fake_azure.FakeAzure.cli_env` (the fake ``az``,
``*.fake.test`` resolved to the fake, no inherited ``AZUREML_CURRENT_CLOUD``) and the test's
``MODELPORT_HOME``; the fake records and faults its requests like the test process's own. The
deployments serve ``process_images``: the package baked in, nothing built."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest
from azureml_support import (
    NOTHING,
    TARGET_URI,
    azureml_target,
    expected,
    fake_options,
    modelport_tags,
    only_generation,
    resources,
    same_predictions,
)
from fake_azure import RESOURCE_GROUP, SUBSCRIPTION, WORKSPACE, FakeAzure, ProcessImages

from modelport.model_format.package import Package, load

MODELPORT = str(Path(sys.executable).parent / "modelport")
README = Path(__file__).resolve().parents[3] / "README.md"
ROWS = [[1.0, 2.0], [3.0, -4.5]]
#: The two bodies Azure ML users send: a table (MLflow's split orient) and a bare tensor.
TABLE = {"input_data": {"columns": ["a", "b"], "index": [7, 9], "data": ROWS}}
TENSOR = {"input_data": ROWS}


@pytest.fixture
def packages(package_paths: dict[str, Path]) -> Any:
    with load(package_paths["v1"]) as v1, load(package_paths["v2"]) as v2:
        yield {"v1": v1, "v2": v2}


class CLI:
    """``modelport`` in subprocesses, with the fake's options after every target."""

    def __init__(self, fake: FakeAzure, env: dict[str, str]) -> None:
        self.fake = fake
        self.env = env
        self.options = [w for k, v in fake_options(fake).items() for w in ("-C", f"{k}={v}")]

    def _argv(self, args: Sequence[str]) -> list[str]:
        return [MODELPORT, *args, *self.options]

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self._argv(args), env=self.env, capture_output=True, text=True, timeout=180,
            check=False,
        )  # fmt: skip

    def run_all(self, *commands: Sequence[str]) -> list[subprocess.CompletedProcess[str]]:
        """Commands that do not depend on each other, at once (most of a CLI's second is
        importing azure-ai-ml)."""
        pipes = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE, "text": True}
        started = [subprocess.Popen(self._argv(args), env=self.env, **pipes) for args in commands]
        done = []
        for args, process in zip(commands, started, strict=True):
            out, err = process.communicate(timeout=180)
            done.append(subprocess.CompletedProcess(list(args), process.returncode, out, err))
        return done

    def ok(self, *args: str) -> str:
        done = self.run(*args)
        assert done.returncode == 0, (args, done.stdout, done.stderr)
        return done.stdout

    def ok_json(self, *args: str) -> Any:
        return json.loads(self.ok(*args, "--json"))


@pytest.fixture
def cli(azure: FakeAzure, home: Path, tmp_path: Path) -> CLI:
    env = azure.cli_env(tmp_path / "az")
    assert env["MODELPORT_HOME"] == str(home)
    assert "AZUREML_CURRENT_CLOUD" not in env
    return CLI(azure, env)


def body_file(tmp_path: Path, name: str, body: Any) -> str:
    path = tmp_path / name
    path.write_text(json.dumps(body))
    return str(path)


def the_rest_of_the_cli_after_a_deploy(
    cli: CLI, azure: FakeAzure, process_images: ProcessImages, v1: Package, pkg: Path, name: str
) -> None:
    """A refused second deploy, list, get, the tensor body, logs: at once (none changes a thing)."""
    tensor = body_file(Path(cli.env["MODELPORT_HOME"]).parent, "tensor.json", TENSOR)
    again, listed, got, by_tensor, logs = cli.run_all(
        # A second deploy of the name is refused, and the first goes on serving.
        ("deploy", str(pkg), "-t", TARGET_URI, "-n", name, "-C", f"image={process_images.v2}"),
        ("deployments", "list", "-t", TARGET_URI, "--json"),
        ("deployments", "get", "-t", TARGET_URI, "-n", name, "--json"),
        ("deployments", "predict", "-t", TARGET_URI, "-n", name, "-i", tensor),
        ("deployments", "logs", "-t", TARGET_URI, "-n", name),
    )
    assert (again.returncode, again.stdout) == (1, "")
    assert again.stderr == (
        f"Error: an online endpoint named '{name}' exists in the workspace {WORKSPACE}\n"
    )

    assert got.returncode == 0, got.stderr
    record = json.loads(got.stdout)
    assert json.loads(listed.stdout) == [record], listed.stderr
    assert (record["name"], record["target"], record["status"]) == (name, "azureml", "ready")
    assert record["package_digest"] == v1.digest
    assert record["endpoint"] == azure.scoring_uri(name)
    details = record["details"]
    assert (details["subscription_id"], details["resource_group"], details["workspace"]) == (
        SUBSCRIPTION,
        RESOURCE_GROUP,
        WORKSPACE,
    )
    assert (details["deployment"], details["traffic"], details["mirror_traffic"]) == (
        "modelport-g1",
        {"modelport-g1": 100},
        {},
    )
    assert details["deployments"]["modelport-g1"]["package_digest"] == v1.digest
    assert "candidate" not in details

    assert by_tensor.returncode == 0, by_tensor.stderr
    want = expected(v1, {"inputs": {"X": ROWS}})
    assert same_predictions(json.loads(by_tensor.stdout), want), by_tensor.stdout
    (scored,) = azure.calls("scoring")
    assert scored.body == TENSOR  # as the file holds it, with the endpoint's key
    assert scored.headers["authorization"].startswith("Bearer ")

    assert logs.returncode == 0, logs.stderr
    host = azure.host(name, "modelport-g1")
    assert host is not None
    assert logs.stdout.splitlines() == host["lines"][-100:]
    assert any("ready" in line for line in logs.stdout.splitlines()), logs.stdout
    environment = azure.environment(f"modelport-{name}", "1")
    assert environment is not None
    assert environment["properties"]["image"] == process_images.v1
    assert resources(azure, name) == only_generation(name, 1)


def a_mirror_and_its_rollback(
    cli: CLI, azure: FakeAzure, process_images: ProcessImages, v1: Package, v2: Package,
    pkg: Path, name: str,
) -> None:  # fmt: skip
    """v2 serves (generation 2): v1 as a mirror beside it (which answers nothing), rolled back."""
    mirrored = cli.ok_json(
        "deployments", "update", str(pkg), "-t", TARGET_URI, "-n", name,
        "-C", f"image={process_images.v1}", "-C", "mirror_percent=20",
    )  # fmt: skip
    assert mirrored["status"] == "ready"
    assert mirrored["package_digest"] == v2.digest  # the serving one still answers
    assert mirrored["details"]["traffic"] == {"modelport-g2": 100}
    assert mirrored["details"]["mirror_traffic"] == {"modelport-g3": 20}
    assert mirrored["details"]["candidate"] == {
        "deployment": "modelport-g3",
        "kind": "mirror",
        "percent": 20,
        "package_digest": v1.digest,
    }
    assert resources(azure, name) == only_generation(name, 2, 3)
    assert azure.deployments(name)["modelport-g3"]["tags"] == modelport_tags(v1, name, 3)

    rolled = cli.ok_json("deployments", "rollback", "-t", TARGET_URI, "-n", name)
    assert rolled["package_digest"] == v2.digest
    assert rolled["details"]["traffic"] == {"modelport-g2": 100}
    assert rolled["details"]["mirror_traffic"] == {}
    assert "candidate" not in rolled["details"]
    assert resources(azure, name) == only_generation(name, 2)


def _plan_calls(printed: str) -> list[tuple[str, Any]]:
    """The ``call azure-ai-ml OPERATION {params}`` lines of a text plan."""
    found = []
    for line in printed.splitlines():
        if line.strip().startswith("call azure-ai-ml "):
            operation, params = line.strip().removeprefix("call azure-ai-ml ").split(" ", 1)
            found.append((operation, json.loads(params)))
    return found


def test_a_dry_run_prints_the_steps_and_the_azure_calls_and_makes_nothing(
    cli: CLI,
    azure: FakeAzure,
    process_images: ProcessImages,
    packages: dict[str, Package],
    package_paths: dict[str, Path],
) -> None:
    v1 = packages["v1"]
    name = "dry"
    args = (
        "deploy", str(package_paths["v1"]), "-t", TARGET_URI, "-n", name,
        "-C", f"image={process_images.v1}", "-C", "instance_count=2",
        "-C", "request_timeout_ms=9000", "-C", 'environment_variables={"MODELPORT_WORKERS": "2"}',
        "--dry-run",
    )  # fmt: skip
    text, as_json = cli.run_all(args, (*args, "--json"))
    assert text.returncode == 0, text.stderr
    printed = text.stdout
    assert printed.startswith(
        f"Dry run: deploying {v1.name} {v1.version} ({v1.digest}) to azureml as '{name}' would:\n"
    )
    assert printed.endswith("Nothing was created.\n")
    steps = re.findall(r"^  \d+\. (\S+) \[", printed, re.MULTILINE)
    assert steps == [
        "use-image",
        "register-environment",
        "create-endpoint",
        "create-deployment",
        "route-traffic",
    ]
    tags = modelport_tags(v1, name, 1)
    asset = f"modelport-{name}"
    calls = _plan_calls(printed)
    assert [c[0] for c in calls] == [
        "environments.create_or_update",
        "online_endpoints.begin_create_or_update",
        "online_deployments.begin_create_or_update",
        "online_endpoints.begin_create_or_update",
    ]
    environment, endpoint, deployment, traffic = (c[1] for c in calls)
    assert environment == {
        "name": asset,
        "version": "1",
        "image": "<use-image>",
        "inference_config": {
            "liveness_route": {"port": 8080, "path": "/ping"},
            "readiness_route": {"port": 8080, "path": "/ping"},
            "scoring_route": {"port": 8080, "path": "/score"},
        },
        "tags": tags,
        "description": f"modelport serving image of {v1.name} {v1.version} ({v1.digest})",
    }
    assert endpoint["name"] == name
    assert endpoint["auth_mode"] == "key"
    assert endpoint["tags"] == {
        k: v for k, v in tags.items() if k in ("modelport-modelport-version",
                                               "modelport-deployment", "modelport-target")
    }  # fmt: skip
    assert deployment["name"] == "modelport-g1"
    assert deployment["endpoint_name"] == name
    assert deployment["environment"] == f"azureml:{asset}:1"
    assert (deployment["instance_type"], deployment["instance_count"]) == ("Standard_DS3_v2", 2)
    assert deployment["environment_variables"] == {
        "MODELPORT_WORKERS": "2",
        "MODELPORT_EXPECT_DIGEST": v1.digest,
    }
    assert deployment["request_settings"]["request_timeout_ms"] == 9000
    assert deployment["tags"] == tags
    assert "model" not in deployment  # the package is in the image
    assert traffic == {"name": name, "traffic": {"modelport-g1": 100}, "mirror_traffic": {}}

    assert as_json.returncode == 0, as_json.stderr
    plan = json.loads(as_json.stdout)
    assert {k: v for k, v in plan.items() if k != "actions"} == {
        "dry_run": True,
        "target": "azureml",
        "name": name,
        "package_digest": v1.digest,
    }
    assert [a["step"] for a in plan["actions"]] == steps
    assert plan["actions"][0]["details"] == {"image": process_images.v1}
    planned = [
        (c["call"].removeprefix("azure-ai-ml "), c["params"])
        for a in plan["actions"]
        for c in a.get("details", {}).get("calls", [])
    ]
    assert planned == calls

    # Two dry runs: reads only (the generation's number), nothing made.
    assert {c.method for c in azure.calls()} == {"GET"}
    assert resources(azure, name) == NOTHING


def test_errors_exit_with_one_message_and_a_hint(
    cli: CLI, azure: FakeAzure, process_images: ProcessImages, package_paths: dict[str, Path]
) -> None:
    scope = (
        f"/subscriptions/{SUBSCRIPTION}/resourceGroups/{RESOURCE_GROUP}/providers/"
        f"Microsoft.MachineLearningServices/workspaces/{WORKSPACE}/onlineEndpoints/denied"
    )
    action = "Microsoft.MachineLearningServices/workspaces/onlineEndpoints/write"
    azure.fail_next(
        "PUT",
        r"/onlineEndpoints/denied$",
        status=403,
        code="AuthorizationFailed",
        message=f"The client 'ci@example.com' with object id '1' does not have authorization "
        f"to perform action '{action}' over scope '{scope}' or the scope is invalid.",
    )
    package = str(package_paths["v1"])
    denied, unnamed, unbuilt = cli.run_all(
        ("deploy", package, "-t", TARGET_URI, "-n", "denied", "-C", f"image={process_images.v1}"),
        # No workspace anywhere: -t azureml alone, no config.json, no AZURE_* variable.
        ("deployments", "get", "-t", "azureml", "-n", "denied"),
        # Neither a registry to push to nor an image.
        ("deploy", package, "-t", TARGET_URI, "-n", "unbuilt"),
    )

    assert (denied.returncode, denied.stdout) == (1, "")
    lines = denied.stderr.splitlines()
    assert "Traceback" not in denied.stderr
    assert [line for line in lines if line.startswith("Error: ")] == [
        "Error: create step 'create-endpoint' failed on target 'azureml' (permission denied): "
        f"(AuthorizationFailed) The client 'ci@example.com' with object id '1' does not have "
        f"authorization to perform action '{action}' over scope '{scope}' or the scope is "
        "invalid."
    ]
    assert (
        f"  hint: give the identity in use a role with {action} (AzureML Data Scientist, or "
        f"Contributor) on the scope {scope}"
    ) in lines
    # The environment registered before the endpoint was refused is removed again.
    assert "PUT environments/modelport-denied/versions/1" in azure.sequence()
    assert resources(azure, "denied") == NOTHING

    assert (unnamed.returncode, unnamed.stdout) == (2, "")
    ways = {
        "subscription_id": "AZURE_SUBSCRIPTION_ID or AZUREML_ARM_SUBSCRIPTION",
        "resource_group": "AZURE_RESOURCE_GROUP or AZUREML_ARM_RESOURCEGROUP",
        "workspace": "AZUREML_WORKSPACE_NAME or AZUREML_ARM_WORKSPACE_NAME",
    }
    assert unnamed.stderr == "".join(
        [
            "Error: invalid configuration for target 'azureml' (3 problems):\n",
            *(
                f"  - {key} is required: pass -C {key}=..., use -t azureml:/SUBSCRIPTION/"
                f"RESOURCE_GROUP/WORKSPACE, keep the workspace's config.json here, or set "
                f"{variables}\n"
                for key, variables in ways.items()
            ),
        ]
    )

    assert (unbuilt.returncode, unbuilt.stdout) == (2, "")
    assert unbuilt.stderr == (
        "Error: the azureml target needs a registry to push the serving image to\n"
        "  hint: pass -C registry=NAME.azurecr.io (the workspace must be able to pull from it), "
        "or -C image=... to use an image as is\n"
    )
    assert resources(azure, "unbuilt") == NOTHING
    assert [c for c in azure.calls() if c.method != "GET" and "denied" not in c.path] == []


def test_an_update_prints_no_azure_ai_ml_log_lines(
    cli: CLI, azure: FakeAzure, process_images: ProcessImages, package_paths: dict[str, Path]
) -> None:
    name = "quiet"
    with load(package_paths["v1"]) as v1:  # made here: only the update is the CLI's
        azureml_target(azure, image=process_images.v1).create(name, v1)
    done = cli.run(
        "deployments", "update", str(package_paths["v2"]), "-t", TARGET_URI, "-n", name,
        "-C", f"image={process_images.v2}", "--json",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["details"]["deployment"] == "modelport-g2"
    assert "Check: " not in done.stderr, done.stderr


def traffic(fake: FakeAzure, name: str) -> dict[str, int]:
    """The endpoint's live traffic in the fake (the deployments with a share)."""
    endpoint = fake.endpoint(name)
    assert endpoint is not None
    return {k: int(v) for k, v in (endpoint["properties"].get("traffic") or {}).items() if v}


def _readme_commands() -> list[str]:
    """The lines of README.md's bash block under ``### Azure ML``."""
    text = README.read_text()
    section = text[text.index("### Azure ML") :]
    block = re.search(r"```bash\n(.*?)```", section, re.DOTALL)
    assert block is not None, "README.md's Azure ML section has no bash block"
    return [line for line in block.group(1).splitlines() if line.strip()]


def test_the_readmes_azureml_commands_work_as_written(
    cli: CLI,
    azure: FakeAzure,
    process_images: ProcessImages,
    packages: dict[str, Package],
    package_paths: dict[str, Path],
    tmp_path: Path,
) -> None:
    """README.md's block, line by line, on one deployment; between its lines, the rest of the
    CLI on that deployment (one scenario: each CLI process is mostly azure-ai-ml's import)."""
    v1, v2 = packages["v1"], packages["v2"]
    files = {
        "model.mport": str(package_paths["v1"]),
        "model-v2.mport": str(package_paths["v2"]),
        "rows.json": body_file(tmp_path, "rows.json", TABLE),
    }
    workspace = f"/{SUBSCRIPTION}/{RESOURCE_GROUP}/{WORKSPACE}"
    images = {"deploy": process_images.v1, "deployments update": process_images.v2}
    between: dict[str, Callable[[str], None]] = {
        "deploy": lambda name: the_rest_of_the_cli_after_a_deploy(
            cli, azure, process_images, v1, package_paths["v2"], name
        ),
        "deployments promote": lambda name: a_mirror_and_its_rollback(
            cli, azure, process_images, v1, v2, package_paths["v1"], name
        ),
    }
    ran: list[str] = []
    name = ""
    for line in _readme_commands():
        words = shlex.split(line, comments=True)
        assert words[0] == "modelport", line
        args = [
            files.get(w, w.replace("/SUBSCRIPTION/RESOURCE_GROUP/WORKSPACE", workspace))
            for w in words[1:]
        ]
        verb = args[0] if args[0] != "deployments" else f"deployments {args[1]}"
        if verb in images:
            # The process hosts serve a pushed image with the package in it: the image takes
            # the registry's place (the slow container test builds and pushes the real one).
            if "registry=myregistry.azurecr.io" in args:
                at = args.index("registry=myregistry.azurecr.io")
                del args[at - 1 : at + 1]
            args += ["-C", f"image={images[verb]}"]
        done = cli.run(*args)
        assert done.returncode == 0, (line, done.stdout, done.stderr)
        assert "Traceback" not in done.stderr
        ran.append(verb)
        name = args[args.index("--name") + 1]
        assert args[args.index("-t") + 1] == TARGET_URI
        # What the command said and left, read from the fake's own state.
        if verb == "deploy":
            assert done.stdout.startswith(
                f"Deployment {name} on azureml: ready\n  endpoint: {azure.scoring_uri(name)}\n"
            )
            assert traffic(azure, name) == {"modelport-g1": 100}
            assert resources(azure, name) == only_generation(name, 1)
        if verb == "deployments predict":  # rows.json: the table body
            want = expected(v1, {"inputs": {"X": ROWS}})
            assert same_predictions(json.loads(done.stdout), want)
            assert [c.body for c in azure.calls("scoring")] == [TENSOR, TABLE]
            assert [s.deployment for s in azure.scoring_requests(name)] == 2 * ["modelport-g1"]
        if verb == "deployments update":  # the canary takes 10 %
            assert traffic(azure, name) == {"modelport-g1": 90, "modelport-g2": 10}
            assert azure.deployments(name)["modelport-g2"]["tags"] == modelport_tags(v2, name, 2)
            assert resources(azure, name) == only_generation(name, 1, 2)
        if verb == "deployments promote":
            assert traffic(azure, name) == {"modelport-g2": 100}
            assert resources(azure, name) == only_generation(name, 2)
        if verb == "deployments delete":
            assert done.stdout == f"Deleted deployment {name} on azureml (if it existed).\n"
            assert resources(azure, name) == NOTHING
        if verb in between:
            between[verb](name)
    assert ran == [
        "deploy",
        "deployments predict",
        "deployments update",
        "deployments promote",
        "deployments delete",
    ]
    # Deleting again is fine: nothing is there.
    again = cli.run("deployments", "delete", "-t", TARGET_URI, "--name", name)
    assert (again.returncode, again.stdout) == (
        0,
        f"Deleted deployment {name} on azureml (if it existed).\n",
    ), again.stderr
    assert resources(azure, name) == NOTHING
    assert azure.hosts() and all(h["stopped"] for h in azure.hosts())
