"""The deployed image, run as SageMaker runs it, answering SageMaker's own clients.

One deployment with nothing given but the role: the deployer builds (or reuses) the runtime
image, pushes it to "ECR" (the local registry moto's ECR token points at), uploads
``model.tar.gz`` and registers the model. The fake then does what SageMaker does with what was
registered, read back from its own state (``DescribeModel``'s image, the S3 object): it pulls the
image, unpacks the tarball into a directory mounted read-only at ``/opt/ml/model``, and runs
``docker run IMAGE serve`` with ``SAGEMAKER_BIND_TO_PORT``. ``InvokeEndpoint`` is routed to that
container, so every prediction below went through it: the CLI's ``deployments predict``, the
SageMaker SDK's ``Endpoint.invoke`` with its serializers, and the docs' example.

Then a second package with the same requirements deploys with no image build and no push.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fake_aws import FakeAWS, split_s3_url
from sagemaker_support import ROLE

from modelport.deployers import connect
from modelport.deployers.kit.progress import Progress, ProgressEvent
from modelport.model_format.package import Package, load
from modelport.model_format.payload import format_predictions, parse_payload

pytestmark = pytest.mark.slow

DOCS = Path(__file__).resolve().parents[3] / "docs" / "sagemaker.md"
ROWS = [[1.0, 2.0], [3.0, -4.5], [0.25, 8.0]]


def expected(package: Package, rows: list[list[float]]) -> np.ndarray:
    payload = {"inputs": {"X": rows}}
    answer = format_predictions(package.predict(parse_payload(payload, package.signature)))
    return np.asarray(answer["predictions"], dtype=np.float64)


def python_blocks(path: Path) -> list[str]:
    text = path.read_text(encoding="utf-8")
    return [part.split("```", 1)[0] for part in text.split("```python\n")[1:]]


@pytest.fixture
def target(fake_aws_containers: FakeAWS, home: Path) -> Any:
    from docker_fixtures import RUN_ID, base_image, engine

    events: list[ProgressEvent] = []
    deployer = connect(
        "sagemaker:/us-east-1",
        {
            "role_arn": ROLE,
            "base_image": base_image(engine()),
            "startup_timeout": "300",
            # A repository of this run's own: the registry outlives runs, and the first deploy
            # here must push.
            "ecr_repository": f"modelport-runtime-{RUN_ID[:12]}",
        },
        progress=Progress(events.append),
    )
    deployer.events = events  # type: ignore[attr-defined]
    return deployer


def test_the_image_runs_as_sagemaker_runs_it_and_serves_its_clients(
    fake_aws_containers: FakeAWS,
    target: Any,
    package_paths: dict[str, Path],
    tmp_path: Path,
) -> None:
    fake = fake_aws_containers
    sm = fake.client("sagemaker", internal=True)
    s3 = fake.client("s3", internal=True)
    with load(package_paths["v1"]) as package:
        deployment = target.create("churn", package)
        want = expected(package, ROWS)
        files = sorted(package.manifest.files)
    repository = target.config.ecr_repository
    try:
        assert deployment.status.value == "ready"
        pushed = [e.message for e in target.events if e.message.startswith("pushing")]
        assert pushed == [f"pushing {fake.registry}/{repository}:" + pushed[0].rsplit(":", 1)[1]]

        # What was registered, read back from the fake's own state.
        model = sm.describe_model(ModelName="churn-g1")["PrimaryContainer"]
        image = model["Image"]
        assert image.startswith(f"{fake.registry}/{repository}@sha256:")
        bucket, key = split_s3_url(model["ModelDataUrl"])
        tarball = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
        with tarfile.open(fileobj=io.BytesIO(tarball), mode="r:gz") as tar:
            names = tar.getnames()
        assert names == ["modelport.json", *files]

        # ... and run as SageMaker runs it.
        host = fake.host("churn")
        assert host is not None and host["kind"] == "container"
        assert host["image"] == image
        assert host["env"]["SAGEMAKER_BIND_TO_PORT"] == str(host["port"])
        assert host["env"]["MODELPORT_PACKAGE"] == "/opt/ml/model"
        assert host["env"]["MODELPORT_EXPECT_DIGEST"] == deployment.package_digest
        from docker_fixtures import engine

        container = engine().containers.get(host["ident"])
        assert container.attrs["Config"]["Cmd"] == ["serve"]
        mounts = {m["Destination"]: m for m in container.attrs["Mounts"]}
        assert mounts["/opt/ml/model"]["RW"] is False

        # The CLI's predict goes through invoke_endpoint to the container.
        request = tmp_path / "rows.json"
        request.write_text(json.dumps({"inputs": {"X": ROWS}}), encoding="utf-8")
        done = subprocess.run(
            [str(Path(sys.executable).parent / "modelport"), "deployments", "predict", "-t",
             "sagemaker:/us-east-1", "-n", "churn", "-i", str(request)],
            capture_output=True, text=True, timeout=120, env=fake.subprocess_env(), check=False,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        got = np.asarray(json.loads(done.stdout)["predictions"], dtype=np.float64)
        np.testing.assert_allclose(got, want, rtol=1e-6)

        # The SageMaker SDK's own invoke path, with each serializer and its deserializer.
        import boto3
        from sagemaker.core.deserializers import JSONDeserializer, NumpyDeserializer
        from sagemaker.core.resources import Endpoint
        from sagemaker.core.serializers import CSVSerializer, JSONSerializer, NumpySerializer

        endpoint = Endpoint.get(endpoint_name="churn", session=boto3.Session(), region="us-east-1")
        assert endpoint.endpoint_status == "InService"
        rows = np.asarray(ROWS, dtype=np.float32)
        pairs = [
            (JSONSerializer(), JSONDeserializer(), lambda a: a["predictions"]),
            (CSVSerializer(), NumpyDeserializer(accept="text/csv"), lambda a: a),
            (NumpySerializer(), NumpyDeserializer(), lambda a: a),
        ]
        for serializer, deserializer, predictions in pairs:
            out = endpoint.invoke(
                body=serializer.serialize(rows),
                content_type=serializer.CONTENT_TYPE,
                accept=deserializer.ACCEPT[0],
            )
            answer = deserializer.deserialize(out.body, out.content_type)
            np.testing.assert_allclose(
                np.asarray(predictions(answer), dtype=np.float64), want, rtol=1e-6
            )
        calls = fake.calls("sagemaker-runtime", "InvokeEndpoint")
        assert [c.params.get("ContentType") for c in calls[-3:]] == [
            "application/json",
            "text/csv",
            "application/x-npy",
        ]

        # The docs' example, as written.
        (block,) = python_blocks(DOCS)
        printed = io.StringIO()
        with contextlib.redirect_stdout(printed):
            exec(compile(block, str(DOCS), "exec"), {})
        assert json.loads(printed.getvalue().replace("'", '"')) == {"predictions": [[1.0, 2.0]]}

        # A second model with the same requirements: no build, no push, the same image.
        target.events.clear()
        fake.clear_calls()
        with load(package_paths["v2"]) as package_v2:
            second = target.create("churn-two", package_v2)
            want_v2 = expected(package_v2, ROWS)
        assert second.status.value == "ready"
        messages = [e.message for e in target.events]
        assert any("no build" in m for m in messages), messages
        assert not any("building" in m or "pushing" in m for m in messages), messages
        assert sm.describe_model(ModelName="churn-two-g1")["PrimaryContainer"]["Image"] == image
        assert fake.host("churn-two")["image"] == image
        np.testing.assert_allclose(
            np.asarray(target.predict("churn-two", {"inputs": {"X": ROWS}})["predictions"]),
            want_v2,
            rtol=1e-6,
        )
    finally:
        target.delete("churn")
        target.delete("churn-two")
    assert sm.list_endpoints()["Endpoints"] == []
    assert sm.list_models()["Models"] == []
    assert os.environ["AWS_ENDPOINT_URL"] == fake.url
