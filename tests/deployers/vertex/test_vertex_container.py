"""The serving image as Vertex AI runs it: built and pushed by the target, run as a container.

The target builds the package's serving image with modelport's kit and pushes it to the local
registry; the fake's deployModel pulls it and runs it through the Docker Engine API (podman)
with the environment Vertex gives a custom container (``AIP_HTTP_PORT=8080``,
``AIP_HEALTH_ROUTE``, ``AIP_PREDICT_ROUTE``, ``AIP_DEPLOYED_MODEL_ID``, ...: the image's own
ENTRYPOINT and CMD, nothing else), waits for its health route, and forwards ``:predict`` to it.
Then the SDK's ``Endpoint.predict`` and ``modelport deployments predict -t vertex`` both answer
through the real container.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from fake_vertex import FakeVertex
from vertex_support import (
    PAYLOAD,
    TARGET_URI,
    expected,
    fake_options,
    same_predictions,
    vertex_target,
)

from modelport.model_format.package import load

pytestmark = pytest.mark.slow
MODELPORT = str(Path(sys.executable).parent / "modelport")


def test_the_image_serves_as_vertex_runs_it(
    vertex_containers: FakeVertex,
    home: Path,
    key_file: Path,
    image_builds: None,
    package_paths: dict[str, Path],
    tmp_path: Path,
) -> None:
    fake = vertex_containers
    target = vertex_target(fake, key_file)
    with load(package_paths["v1"]) as v1:
        record = target.create("boxed", v1)
        try:
            endpoint = record.details["endpoint_id"]
            deployed = record.details["deployed_model_id"]
            (host,) = fake.hosts()
            assert host["kind"] == "container"
            assert host["image"] == fake.model("modelport-boxed")["containerSpec"]["imageUri"]
            assert "@sha256:" in host["image"]  # pushed, and pinned by digest
            env = host["env"]
            assert (env["AIP_HTTP_PORT"], env["AIP_HEALTH_ROUTE"], env["AIP_PREDICT_ROUTE"]) == (
                "8080",
                "/ping",
                "/predict",
            )
            assert env["AIP_DEPLOYED_MODEL_ID"] == deployed
            assert env["MODELPORT_EXPECT_DIGEST"] == v1.digest

            # The Vertex SDK, as users call an endpoint: the answer has the shape it parses.
            from google.cloud import aiplatform

            fake.init_sdk()
            answer = aiplatform.Endpoint(endpoint).predict(instances=[[1.0, 2.0], [3.0, -4.5]])
            assert answer.predictions == [[1.0, 2.0], [3.0, -4.5]]
            assert answer.deployed_model_id == deployed
            assert answer.model_version_id == "1"

            # The CLI, in its own process.
            rows = tmp_path / "rows.json"
            rows.write_text(json.dumps(PAYLOAD))
            options = [
                w for k, v in fake_options(fake, key_file).items() for w in ("-C", f"{k}={v}")
            ]
            env = {
                k: v for k, v in os.environ.items() if not k.startswith(("GOOGLE_", "CLOUDSDK_"))
            }
            env["CLOUDSDK_CONFIG"] = str(tmp_path / "gcloud")
            done = subprocess.run(
                [MODELPORT, "deployments", "predict", "-t", TARGET_URI, "--name", "boxed",
                 "-i", str(rows), *options],
                env=env, capture_output=True, text=True, timeout=120, check=False,
            )  # fmt: skip
            assert done.returncode == 0, done.stderr
            assert same_predictions(json.loads(done.stdout), expected(v1))
            assert [s.deployed_model for s in fake.scoring_requests(endpoint)] == 2 * [deployed]
        finally:
            target.delete("boxed")
    assert fake.endpoints() == {} and fake.models() == {}
    assert all(h["stopped"] for h in fake.hosts())
