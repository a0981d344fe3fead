"""The ``modelport`` console script driving the vertex target, in a subprocess, against the
offline Vertex: README.md's Vertex AI commands run as written (deploy, predict, a canary update,
rollback, delete); the rest of a deployment's life beside and between them (a ``--json`` deploy,
list, get, logs, ``--dry-run``'s steps and SDK calls, a refused second deploy, a second canary
and its promote, delete twice); and beside those, errors as a person sees them (exit code, one
message, a hint, no traceback): a bad option, no project, Google's 403 on the upload.

The CLI runs in its own process with the fake's options (``-C api_endpoint=...
logging_endpoint=... service_account_file=...``), the test's ``MODELPORT_HOME``, google-auth kept
off the metadata server and no ``GOOGLE_*`` or ``CLOUDSDK_*`` variable of the developer's (gcloud's
configuration is an empty folder); the fake records and faults its requests like the test
process's own. The deployments serve ``process_images``: the package baked in, nothing built.
Most of a CLI process's seconds are google-cloud-aiplatform's import (about 3 s of CPU), so the
commands that do not depend on each other start together (:meth:`CLI.run_all`), and the whole
file is one scenario: on two cores, every process not started is two seconds saved.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from fake_vertex import LOCATION, PROJECT, PROJECT_NUMBER, FakeVertex
from registry_images import ProcessImages
from vertex_support import (
    NOTHING,
    TARGET_URI,
    endpoint_of,
    expected,
    fake_options,
    modelport_labels,
    resources,
    same_predictions,
)

from modelport.model_format.package import Package, load

MODELPORT = str(Path(sys.executable).parent / "modelport")
README = Path(__file__).resolve().parents[3] / "README.md"
#: Where README.md's commands deploy (replaced by the fake's project and region).
README_PLACE = "/my-project/us-central1"
ROWS = [[1.0, 2.0], [3.0, -4.5]]
#: What Vertex users send: rows as ``instances``.
ROWS_BODY = {"instances": ROWS}
#: Variables that would send google-auth or the SDK to a real project (besides the prefixes).
GOOGLE_NAMES = ("GCLOUD_PROJECT", "CLOUD_ML_REGION")
GOOGLE_PREFIXES = ("GOOGLE_", "CLOUDSDK_", "MODELPORT_VERTEX_")
CLOSED_METADATA = "127.0.0.1:9"
TIMEOUT_S = 180
#: Google's answer to an upload the credentials may not make.
DENIAL = (
    f"Permission 'aiplatform.models.upload' denied on resource '//aiplatform.googleapis.com/"
    f"projects/{PROJECT}/locations/{LOCATION}' (or it may not exist)."
)
Done = subprocess.CompletedProcess[str]


@pytest.fixture
def packages(package_paths: dict[str, Path]) -> Iterator[dict[str, Package]]:
    with load(package_paths["v1"]) as v1, load(package_paths["v2"]) as v2:
        yield {"v1": v1, "v2": v2}


class CLI:
    """``modelport`` in subprocesses, with the fake's options after every command."""

    def __init__(self, fake: FakeVertex, env: dict[str, str], options: Mapping[str, str]) -> None:
        self.fake = fake
        self.env = env
        self.options = dict(options)

    def argv(self, *args: str, **options: str | None) -> list[str]:
        """The command line of ``args``: the fake's options (``options`` changed; None drops)."""
        given = {**self.options, **options}
        pairs = [w for k, v in given.items() if v is not None for w in ("-C", f"{k}={v}")]
        return [MODELPORT, *args, *pairs]

    def run(self, *args: str) -> Done:
        return self.run_all(self.argv(*args))[0]

    def run_all(self, *commands: Sequence[str]) -> list[Done]:
        """Command lines (:meth:`argv`) that do not depend on each other, started at once."""
        pipes: dict[str, Any] = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE}
        started = [
            subprocess.Popen(list(argv), env=self.env, text=True, **pipes) for argv in commands
        ]
        done = []
        for argv, process in zip(commands, started, strict=True):
            out, err = process.communicate(timeout=TIMEOUT_S)
            done.append(subprocess.CompletedProcess(list(argv), process.returncode, out, err))
        return done


def cli_env(home: Path, gcloud: Path) -> dict[str, str]:
    """This process's environment without Google's variables, for a CLI subprocess."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(GOOGLE_PREFIXES) and k not in GOOGLE_NAMES
    }
    gcloud.mkdir(parents=True, exist_ok=True)
    env.update(
        MODELPORT_HOME=str(home),
        NO_GCE_CHECK="true",  # google-auth compares with "true" exactly
        GCE_METADATA_HOST=CLOSED_METADATA,
        GCE_METADATA_IP=CLOSED_METADATA,
        CLOUDSDK_CONFIG=str(gcloud),  # gcloud's configuration: an empty folder
    )
    return env


@pytest.fixture
def cli(vertex: FakeVertex, home: Path, key_file: Path, tmp_path: Path) -> CLI:
    options = fake_options(vertex, key_file)
    # The deployments use a pushed image as is, and the target refuses image with registry.
    options.pop("registry", None)
    return CLI(vertex, cli_env(home, tmp_path / "gcloud"), options)


def body_file(folder: Path, name: str, body: Any) -> str:
    path = folder / name
    path.write_text(json.dumps(body))
    return str(path)


def ok(done: Done) -> str:
    """The stdout of a command that must have succeeded, and said nothing on stderr."""
    assert done.returncode == 0, (done.args, done.stdout, done.stderr)
    assert done.stderr == "", done.stderr  # no SDK INFO line, no warning, no traceback
    return done.stdout


def traffic(fake: FakeVertex, name: str) -> dict[str, int]:
    """The live traffic of deployment ``name`` in the fake, by deployed model display name."""
    endpoint = endpoint_of(fake, name)
    assert endpoint is not None, name
    names = {i: d["displayName"] for i, d in fake.deployed_models(endpoint).items()}
    return {names[i]: int(p) for i, p in fake.traffic_split(endpoint).items() if int(p)}


def version_of(fake: FakeVertex, name: str, deployed: str) -> dict[str, Any]:
    """The model version the deployed model ``deployed`` of ``name`` serves, as Vertex shows it."""
    endpoint = endpoint_of(fake, name)
    assert endpoint is not None, name
    (doc,) = [d for d in fake.deployed_models(endpoint).values() if d["displayName"] == deployed]
    version = fake.model_version(f"modelport-{name}", doc["modelVersionId"])
    assert version is not None
    return version


def default_version(fake: FakeVertex, name: str) -> str:
    """The id of the default version of the model of ``name``."""
    model = fake.model(f"modelport-{name}")
    assert model is not None, name
    return str(model["versionId"])


def generations(name: str, deployed: list[str], versions: list[str]) -> dict[str, Any]:
    """What :func:`vertex_support.resources` finds of a live deployment ``name``."""
    return {"endpoint": [name], "deployed": deployed, "versions": versions}


@dataclass
class Beside:
    """A command run beside one of README's lines (at once), and what its result must be."""

    argv: list[str]
    check: Callable[[Done], None]


@dataclass
class Scenario:
    """One deployment's life on the CLI: what runs beside and between README's lines.

    Beside a line run only commands whose result does not depend on how far that line got:
    reads of a state the line does not change, other deployments, errors.
    """

    cli: CLI
    fake: FakeVertex
    images: ProcessImages
    v1: Package
    v2: Package
    paths: dict[str, Path]
    #: Where the scenario writes files (a key without a project).
    folder: Path
    name: str = "churn"
    #: What ``deploy --json`` printed for the deployment made beside README's.
    other: dict[str, Any] = field(default_factory=dict)
    #: What ``deployments get --json`` printed for README's deployment.
    record: dict[str, Any] = field(default_factory=dict)

    def beside(self, verb: str) -> list[Beside]:
        """The commands that run at once with README's line ``verb`` (none changes its state)."""
        cli, name, target = self.cli, self.name, ("-t", TARGET_URI)
        v1, v2 = str(self.paths["v1"]), str(self.paths["v2"])
        if verb == "deploy":
            return [
                Beside(
                    cli.argv("deploy", v1, *target, "-n", "quiet",
                             "-C", f"image={self.images.v1}", "--json"),
                    self.a_json_deploy,
                )
            ]  # fmt: skip
        if verb == "deployments predict":
            return [
                Beside(cli.argv("deployments", "get", *target, "-n", name, "--json"), self.get),
                Beside(cli.argv("deployments", "list", *target, "--json"), self.listed),
                Beside(
                    cli.argv("deployments", "logs", *target, "-n", name, "--tail", "5"), self.logs
                ),
            ]
        if verb == "deployments update":
            # A second deploy of the name is refused, and the first goes on serving.
            return [
                Beside(
                    cli.argv("deploy", v2, *target, "-n", name, "-C", f"image={self.images.v2}"),
                    self.refused_again,
                )
            ]
        if verb == "deployments rollback":  # no upload: the fault is the other deploy's
            self.fake.fail_next("POST", r"models:upload", 403, "PERMISSION_DENIED", DENIAL)
            return [
                Beside(
                    cli.argv("deploy", v1, *target, "-n", "denied",
                             "-C", f"image={self.images.v1}"),
                    self.denied,
                ),
                Beside(
                    cli.argv("deploy", v1, *target, "-n", "huge", "-C", "machine_type=huge",
                             "-C", f"image={self.images.v1}"),
                    self.bad_option,
                ),
            ]  # fmt: skip
        return []

    # --- beside README's deploy -------------------------------------------------------------------

    def a_json_deploy(self, done: Done) -> None:
        """``deploy --json`` prints one JSON document: the SDK's INFO lines stay off stdout."""
        printed = ok(done)
        assert printed.startswith("{\n"), printed
        self.other = json.loads(printed)  # the whole of stdout is the record
        assert (self.other["name"], self.other["status"], self.other["package_digest"]) == (
            "quiet",
            "ready",
            self.v1.digest,
        )
        assert self.other["details"]["traffic"] == {"modelport-g1": 100}
        assert resources(self.fake, "quiet") == generations("quiet", ["modelport-g1"], ["1"])

    # --- beside README's predict ------------------------------------------------------------------

    def get(self, done: Done) -> None:
        fake, name = self.fake, self.name
        endpoint = endpoint_of(fake, name)
        self.record = record = json.loads(ok(done))
        assert (record["name"], record["target"], record["status"]) == (name, "vertex", "ready")
        assert record["package_digest"] == self.v1.digest
        assert record["endpoint"] == (
            f"{fake.api_endpoint}/v1/projects/{PROJECT_NUMBER}/locations/{LOCATION}/endpoints/"
            f"{endpoint}:predict"
        )
        details = record["details"]
        assert (details["project"], details["region"], details["endpoint_id"]) == (
            PROJECT,
            LOCATION,
            endpoint,
        )
        assert (details["model"], details["deployment"], details["traffic"]) == (
            f"modelport-{name}",
            "modelport-g1",
            {"modelport-g1": 100},
        )
        served = details["deployed_models"]["modelport-g1"]
        assert (served["model_version"], served["package_digest"], served["traffic"]) == (
            "1",
            self.v1.digest,
            100,
        )
        assert "candidate" not in details

    def listed(self, done: Done) -> None:
        """Both deployments, by name, as ``get`` and ``deploy --json`` printed them."""
        assert json.loads(ok(done)) == [self.record, self.other]

    def logs(self, done: Done) -> None:
        """The last five lines the host printed, as Cloud Logging keeps them, oldest first."""
        endpoint = endpoint_of(self.fake, self.name)
        assert endpoint is not None
        shown = ok(done).splitlines()
        kept = [e.text for e in self.fake.log_entries(endpoint)]
        assert len(shown) == 5, shown
        assert any(kept[i : i + 5] == shown for i in range(len(kept) - 4)), (shown, kept)
        assert self.fake.calls("logging"), "logs did not read Cloud Logging"

    # --- beside README's update, and after its rollback -------------------------------------------

    def refused_again(self, done: Done) -> None:
        assert (done.returncode, done.stdout) == (1, "")
        assert done.stderr == (
            f"Error: a vertex deployment named '{self.name}' exists in {PROJECT}/{LOCATION}\n"
        )

    def a_second_canary_promoted(self) -> None:
        """README's other way after a canary: v2 as a canary again, then promoted (an error
        beside it)."""
        cli, fake, name = self.cli, self.fake, self.name
        canary = cli.run(
            "deployments", "update", str(self.paths["v2"]), "-t", TARGET_URI, "-n", name,
            "-C", f"image={self.images.v2}", "-C", "canary_percent=10",
        )  # fmt: skip
        assert ok(canary).startswith(f"Deployment {name} on vertex: ready\n")
        assert traffic(fake, name) == {"modelport-g1": 90, "modelport-g2": 10}
        # Version 2 went with the rollback: the new canary is version 3 (generation 2 again).
        assert resources(fake, name) == generations(
            name, ["modelport-g1", "modelport-g2"], ["1", "3"]
        )
        assert version_of(fake, name, "modelport-g2")["labels"] == modelport_labels(
            self.v2, name, 2
        )
        assert default_version(fake, name) == "1"  # a canary is not the default version

        promoted, unnamed = cli.run_all(
            cli.argv("deployments", "promote", "-t", TARGET_URI, "-n", name, "--json"),
            # No project anywhere: -t vertex alone, no -C project, no variable, no gcloud
            # setting, and a key that names none.
            cli.argv("deployments", "get", "-t", "vertex", "-n", name,
                     service_account_file=self.key_without_project()),
        )  # fmt: skip
        self.no_project(unnamed)
        record = json.loads(ok(promoted))
        assert (record["status"], record["package_digest"]) == ("ready", self.v2.digest)
        assert (record["details"]["deployment"], record["details"]["traffic"]) == (
            "modelport-g2",
            {"modelport-g2": 100},
        )
        assert "candidate" not in record["details"]
        assert traffic(fake, name) == {"modelport-g2": 100}
        assert resources(fake, name) == generations(name, ["modelport-g2"], ["3"])
        assert default_version(fake, name) == "3"

    # --- beside the second delete -----------------------------------------------------------------

    def dry_run(self, done: Done) -> None:
        """``deploy --dry-run --json``: the four steps, with the google-cloud-aiplatform calls."""
        v1, name = self.v1, "dry"
        plan = json.loads(ok(done))
        assert {k: v for k, v in plan.items() if k != "actions"} == {
            "dry_run": True,
            "target": "vertex",
            "name": name,
            "package_digest": v1.digest,
        }
        actions = plan["actions"]
        assert [(a["step"], a["kind"]) for a in actions] == [
            ("use-image", "image"),
            ("upload-model", "model"),
            ("create-endpoint", "endpoint"),
            ("deploy-model", "deployment"),
        ]
        assert actions[0]["details"] == {"image": self.images.v1}
        calls = [(c["call"], c["params"]) for a in actions[1:] for c in a["details"]["calls"]]
        assert [c[0] for c in calls] == [
            "aiplatform.Model.upload",
            "aiplatform.Endpoint.create",
            "aiplatform.Model.deploy",
        ]
        upload, endpoint, deploy = (c[1] for c in calls)
        labels = modelport_labels(v1, name, 1)
        assert upload == {
            "display_name": f"modelport-{name}",
            "serving_container_image_uri": "<use-image>",  # what the use-image step gives
            "serving_container_predict_route": "/predict",
            "serving_container_health_route": "/ping",
            "serving_container_ports": [8080],
            "serving_container_environment_variables": {"MODELPORT_EXPECT_DIGEST": v1.digest},
            "labels": labels,
            "description": f"modelport deployment {name}",
            "version_description": f"{v1.name} {v1.version} ({v1.digest})",
            "is_default_version": True,
            "model_id": f"modelport-{name}",
        }
        own = ("modelport-modelport-version", "modelport-deployment", "modelport-target")
        assert endpoint == {
            "display_name": name,
            "labels": {k: v for k, v in labels.items() if k in own},
            "description": "made by modelport",
        }
        assert deploy == {
            "deployed_model_display_name": "modelport-g1",
            "machine_type": "n1-standard-2",
            "min_replica_count": 1,
            "max_replica_count": 1,
            "traffic_split": {"0": 100},
        }
        assert actions[3]["description"] == (
            "deploy the new version as modelport-g1 on 1 x n1-standard-2 (100 % of the "
            "traffic), and wait until it serves (at most 120 s)"
        )
        assert resources(self.fake, name) == NOTHING

    # --- errors, as a person sees them (beside commands that upload nothing) ----------------------

    def denied(self, done: Done) -> None:
        """Google's 403 on the upload: one message, a hint naming the role, nothing left."""
        assert (done.returncode, done.stdout) == (1, "")
        assert "Traceback" not in done.stderr, done.stderr
        lines = done.stderr.splitlines()
        assert len(lines) == 3, done.stderr
        error, hint, see = lines
        # Google's message alone (api_core's "POST <url>: " before it is dropped).
        assert error == (
            "Error: create step 'upload-model' failed on target 'vertex' (permission denied): "
            f"{DENIAL}"
        ), error
        assert hint == (
            "  hint: the credentials in use need aiplatform.models.upload: grant "
            "roles/aiplatform.user (Vertex AI User) on the project"
        )
        assert see == "  see: https://cloud.google.com/vertex-ai/docs/general/troubleshooting"
        mine = [c for c in self.fake.calls() if "denied" in f"{c.path} {json.dumps(c.body)}"]
        (refused,) = [c for c in mine if c.path.endswith("models:upload")]
        assert refused.status == 403
        # The upload was its first change, and refused: nothing was made, nothing is left.
        assert [c.short for c in mine if c.method != "GET"] == ["POST models:upload"]
        assert resources(self.fake, "denied") == NOTHING

    def bad_option(self, done: Done) -> None:
        """Checked with Vertex's own rule before any request."""
        assert (done.returncode, done.stdout, done.stderr) == (
            2,
            "",
            "Error: invalid configuration for target 'vertex': machine_type must be a machine "
            "type like n1-standard-4, got 'huge'\n",
        )
        assert resources(self.fake, "huge") == NOTHING

    def key_without_project(self) -> str:
        """The fake's service account key without its ``project_id``."""
        key = json.loads(Path(self.cli.options["service_account_file"]).read_text())
        del key["project_id"]
        return body_file(self.folder, "key-without-project.json", key)

    def no_project(self, done: Done) -> None:
        """Every way to name the project, in one message."""
        assert (done.returncode, done.stdout, done.stderr) == (
            2,
            "",
            "Error: invalid configuration for target 'vertex': project is required: pass "
            "-C project=..., use -t vertex:/PROJECT/REGION, set GOOGLE_CLOUD_PROJECT or "
            "CLOUDSDK_CORE_PROJECT or GCLOUD_PROJECT, gcloud config set project PROJECT, or "
            "use credentials that name one (a service account key's project_id)\n",
        )


def _readme_commands() -> list[str]:
    """The lines of README.md's bash block under ``### Vertex AI``."""
    text = README.read_text()
    section = text[text.index("### Vertex AI") :]
    block = re.search(r"```bash\n(.*?)```", section, re.DOTALL)
    assert block is not None, "README.md's Vertex AI section has no bash block"
    return [line for line in block.group(1).splitlines() if line.strip()]


def test_the_readmes_vertex_commands_work_as_written(
    cli: CLI,
    vertex: FakeVertex,
    process_images: ProcessImages,
    packages: dict[str, Package],
    package_paths: dict[str, Path],
    tmp_path: Path,
) -> None:
    """README.md's block, line by line, on one deployment; beside and between its lines, the
    rest of the CLI and its errors (:class:`Scenario`)."""
    v1, v2 = packages["v1"], packages["v2"]
    scenario = Scenario(cli, vertex, process_images, v1, v2, package_paths, tmp_path)
    files = {
        "model.mport": str(package_paths["v1"]),
        "model-v2.mport": str(package_paths["v2"]),
        "rows.json": body_file(tmp_path, "rows.json", ROWS_BODY),
    }
    place = f"/{PROJECT}/{LOCATION}"
    images = {"deploy": process_images.v1, "deployments update": process_images.v2}
    ran: list[str] = []
    name = ""
    for line in _readme_commands():
        words = shlex.split(line, comments=True)
        assert words[0] == "modelport", line
        args = [files.get(w, w.replace(README_PLACE, place)) for w in words[1:]]
        verb = args[0] if args[0] != "deployments" else f"deployments {args[1]}"
        name = args[args.index("--name") + 1]
        assert (name, args[args.index("-t") + 1]) == (scenario.name, TARGET_URI), line
        if verb in images:
            # The process hosts serve a pushed image with the package in it: the image takes
            # the registry's place (the container tests build and push the real one). README's
            # update names no registry: as written it needs $MODELPORT_VERTEX_REGISTRY.
            registry = [i for i, w in enumerate(args) if w.startswith("registry=")]
            for at in reversed(registry):
                assert args[at - 1] == "-C", line
                del args[at - 1 : at + 1]
            args += ["-C", f"image={images[verb]}"]
        vertex.clear_calls()
        beside = scenario.beside(verb)
        done, *others = cli.run_all(cli.argv(*args), *(b.argv for b in beside))
        printed = ok(done)
        ran.append(verb)
        for command, result in zip(beside, others, strict=True):
            command.check(result)
        # What the command said and left, read from the fake's own state.
        endpoint = endpoint_of(vertex, name)
        if verb == "deploy":
            assert printed.startswith(
                f"Deployment {name} on vertex: ready\n  endpoint: {vertex.api_endpoint}/v1/"
                f"projects/{PROJECT_NUMBER}/locations/{LOCATION}/endpoints/{endpoint}:predict\n"
                f"  package:  {v1.digest}\n"
            )
            assert traffic(vertex, name) == {"modelport-g1": 100}
            assert resources(vertex, name) == generations(name, ["modelport-g1"], ["1"])
            assert version_of(vertex, name, "modelport-g1")["labels"] == modelport_labels(
                v1, name, 1
            )
        if verb == "deployments predict":  # rows.json: Vertex's instances
            want = expected(v1, {"inputs": {"X": ROWS}})
            assert same_predictions(json.loads(printed), want), printed
            (asked,) = vertex.calls("predict")
            assert asked.body == ROWS_BODY  # the rows as the file holds them
            (scored,) = vertex.scoring_requests()
            assert (scored.endpoint, scored.status) == (endpoint, 200)
            # Beside it get, list and logs only read: the predict is the one change.
            assert vertex.sequence(reads=False) == [f"POST endpoints/{endpoint}:predict"]
        if verb == "deployments update":  # the canary takes 10 %
            assert printed.startswith(f"Deployment {name} on vertex: ready\n")
            assert traffic(vertex, name) == {"modelport-g1": 90, "modelport-g2": 10}
            assert version_of(vertex, name, "modelport-g2")["labels"] == modelport_labels(
                v2, name, 2
            )
            assert resources(vertex, name) == generations(
                name, ["modelport-g1", "modelport-g2"], ["1", "2"]
            )
            assert default_version(vertex, name) == "1"
        if verb == "deployments rollback":
            assert printed.startswith(f"Deployment {name} on vertex: ready\n")
            assert f"\n  package:  {v1.digest}\n" in printed
            assert traffic(vertex, name) == {"modelport-g1": 100}
            assert resources(vertex, name) == generations(name, ["modelport-g1"], ["1"])
            scenario.a_second_canary_promoted()  # README's "or: promote"
        if verb == "deployments delete":
            assert printed == f"Deleted deployment {name} on vertex (if it existed).\n"
            assert resources(vertex, name) == NOTHING
    assert ran == [
        "deploy",
        "deployments predict",
        "deployments update",
        "deployments rollback",
        "deployments delete",
    ]
    # Deleting again is fine: nothing is there. Beside it a dry run: both only read.
    vertex.clear_calls()
    again, planned = cli.run_all(
        cli.argv("deployments", "delete", "-t", TARGET_URI, "--name", name),
        cli.argv("deploy", str(package_paths["v1"]), "-t", TARGET_URI, "-n", "dry",
                 "-C", f"image={process_images.v1}", "--dry-run", "--json"),
    )  # fmt: skip
    assert ok(again) == f"Deleted deployment {name} on vertex (if it existed).\n"
    assert resources(vertex, name) == NOTHING
    scenario.dry_run(planned)
    assert vertex.sequence(reads=False) == []  # no POST, PATCH or DELETE
    assert "GET models/modelport-dry:listVersions" in vertex.sequence()
    # What is left is the --json deploy's (the fixture's reset stops its host).
    assert [d["displayName"] for d in vertex.endpoints().values()] == ["quiet"]
    assert list(vertex.models()) == ["modelport-quiet"]
    theirs = endpoint_of(vertex, "quiet")
    churns = [h for h in vertex.hosts() if h["endpoint"] != theirs]
    assert churns and all(h["stopped"] for h in churns)
