"""The serving image, built for real from ``modelport dockerfile``'s context and run with podman.

One image is built per session (the Dockerfile as written, on the Debian + python3-venv base
image that ``.ci/setup-containers.sh`` makes) and every test runs its own container of it: the
platforms' serving contracts (SageMaker, Vertex AI, Azure ML, KServe V2), the signal
handling, the user, the labels, and a tampered package that must not be served.
"""

from __future__ import annotations

import contextlib
import io
import json
import tarfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from docker_fixtures import (
    RUN_LABEL,
    BuiltImage,
    base_image,
    built_image,
    engine,
    free_port,
    http,
    published_port,
    remove_test_leftovers,
    run_labels,
    running,
    wait_http_ok,
)

from modelport.image import LABEL_DIGEST, LABEL_SAGEMAKER_PORT

# One worker builds and runs every image (when these tests run on several workers): the session's
# images are built once, and two podman builds never race for the same layers.
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("containers")]

#: ``Y = X * 3`` on float32 [N, 2].
ROWS = [[1.0, 2.0], [3.0, 4.0]]
EXPECTED = [[3.0, 6.0], [9.0, 12.0]]


@pytest.fixture(scope="module")
def client() -> Iterator[Any]:
    """The docker-py client; removes what the tests made when the module is done."""
    docker_client = engine()
    yield docker_client
    remove_test_leftovers(docker_client)
    docker_client.close()


@pytest.fixture(scope="module")
def image(client: Any, tmp_path_factory: pytest.TempPathFactory) -> BuiltImage:
    """The test package's serving image (built once)."""
    return built_image(client, tmp_path_factory.getbasetemp() / "docker-image", base_image(client))


def _run(client: Any, image: BuiltImage, port: int = 8080, **kwargs: Any) -> Any:
    return running(client, image.id, ports={f"{port}/tcp": ("127.0.0.1", None)}, **kwargs)


def _predictions(status_body: tuple[int, bytes]) -> Any:
    status, body = status_body
    assert status == 200, body
    return json.loads(body)["predictions"]


# --- metadata -----------------------------------------------------------------------------------


def test_labels_carry_the_package_digest(client: Any, image: BuiltImage) -> None:
    attrs = client.images.get(image.id).attrs
    labels = attrs["Config"]["Labels"]
    assert labels[LABEL_DIGEST] == image.digest
    assert labels["org.opencontainers.image.title"] == image.package_name
    assert labels["org.opencontainers.image.version"] == "1"
    assert labels[LABEL_SAGEMAKER_PORT] == "true"
    config = attrs["Config"]
    assert config["User"] == "10001:10001"
    assert "8080/tcp" in config["ExposedPorts"]
    assert config["Entrypoint"] == ["/opt/venv/bin/python", "/opt/modelport/entrypoint.py"]
    assert config["Cmd"] == ["serve"]
    # podman's Docker-compatible inspect leaves out the health check; its own API has it.
    healthcheck = config.get("Healthcheck")
    if healthcheck is None:
        libpod = client.api.get(client.api.base_url + f"/v4.0.0/libpod/images/{image.id}/json")
        healthcheck = libpod.json()["Healthcheck"]
    assert healthcheck["Test"][-1] == "healthcheck"


def test_image_holds_the_runtime_only(client: Any, image: BuiltImage) -> None:
    script = (
        "import importlib.util as u, os, sys; "
        "print(sorted(m for m in ('pip', 'setuptools', 'sklearn', 'docker', 'pytest') "
        "if u.find_spec(m))); "
        "print(os.path.exists('/tmp/modelport'), os.path.exists('/opt/venv/bin/pip')); "
        "print(sys.prefix)"
    )
    out = client.containers.run(
        image.id,
        entrypoint=["/opt/venv/bin/python", "-c", script],
        command=[],
        remove=True,
        labels=run_labels(),
    )
    assert out.decode().split("\n")[:3] == ["[]", "False False", "/opt/venv"]


# --- the platform contracts ---------------------------------------------------------------------


def test_sagemaker_ping_and_invocations_on_8080(client: Any, image: BuiltImage) -> None:
    with _run(client, image) as container:
        port = published_port(container, 8080)
        wait_http_ok(f"http://127.0.0.1:{port}/ping", container)
        assert http("GET", f"http://127.0.0.1:{port}/ping") == (200, b"")
        url = f"http://127.0.0.1:{port}/invocations"
        assert _predictions(http("POST", url, {"inputs": {"X": ROWS}})) == EXPECTED
        # MLflow's formats too, and 415 for what it cannot read.
        assert _predictions(http("POST", url, {"instances": ROWS})) == EXPECTED
        status, _ = http("POST", url, None, headers={"Content-Type": "application/xml"})
        assert status == 415


def test_serve_argument_starts_the_same_server(client: Any, image: BuiltImage) -> None:
    """SageMaker runs `docker run IMAGE serve`."""
    with _run(client, image, command=["serve"]) as container:
        port = published_port(container, 8080)
        wait_http_ok(f"http://127.0.0.1:{port}/ping", container)
        url = f"http://127.0.0.1:{port}/invocations"
        assert _predictions(http("POST", url, {"inputs": ROWS})) == EXPECTED
        # The options after `serve` reach `modelport serve`.
    with _run(client, image, command=["serve", "--workers", "1"]) as container:
        port = published_port(container, 8080)
        wait_http_ok(f"http://127.0.0.1:{port}/ping", container)
        assert "1 worker(s)" in container.logs().decode()


def test_sagemaker_bind_to_port(client: Any, image: BuiltImage) -> None:
    with _run(client, image, 9090, environment={"SAGEMAKER_BIND_TO_PORT": "9090"}) as container:
        port = published_port(container, 9090)
        wait_http_ok(f"http://127.0.0.1:{port}/ping", container)
        assert "0.0.0.0:9090" in container.logs().decode()
        url = f"http://127.0.0.1:{port}/invocations"
        assert _predictions(http("POST", url, {"inputs": ROWS})) == EXPECTED
        # The image's own health check follows the port too.
        code, output = container.exec_run(
            ["/opt/venv/bin/python", "/opt/modelport/entrypoint.py", "healthcheck"]
        )
        assert code == 0, output


def test_vertex_routes(client: Any, image: BuiltImage) -> None:
    env = {
        "AIP_HTTP_PORT": "8085",
        "AIP_HEALTH_ROUTE": "/v1/endpoints/e/deployedModels/m:health",
        "AIP_PREDICT_ROUTE": "/v1/endpoints/e/deployedModels/m:predict",
    }
    with _run(client, image, 8085, environment=env) as container:
        base = f"http://127.0.0.1:{published_port(container, 8085)}"
        wait_http_ok(base + env["AIP_HEALTH_ROUTE"], container)
        body = {"instances": ROWS, "parameters": {}}
        answer = _predictions(http("POST", base + env["AIP_PREDICT_ROUTE"], body))
        assert answer == EXPECTED


def test_azure_score_and_liveness(client: Any, image: BuiltImage) -> None:
    with _run(client, image) as container:
        base = f"http://127.0.0.1:{published_port(container, 8080)}"
        wait_http_ok(base + "/ping", container)
        assert http("GET", base + "/")[0] == 200
        status, answer = http("POST", base + "/score", {"input_data": ROWS})
        assert status == 200, answer
        # Azure ML's MLflow scoring answers the predictions themselves, without a wrapper.
        assert json.loads(answer) == EXPECTED


def test_v2_infer(client: Any, image: BuiltImage) -> None:
    with _run(client, image) as container:
        base = f"http://127.0.0.1:{published_port(container, 8080)}"
        wait_http_ok(base + "/v2/health/ready", container)
        body = {
            "id": "r1",
            "inputs": [{"name": "X", "shape": [2, 2], "datatype": "FP32", "data": [1, 2, 3, 4]}],
        }
        status, raw = http("POST", f"{base}/v2/models/{image.package_name}/infer", body)
        assert status == 200, raw
        answer = json.loads(raw)
        assert answer["id"] == "r1"
        (output,) = answer["outputs"]
        assert output["name"] == "Y" and output["shape"] == [2, 2]
        assert output["data"] == [3.0, 6.0, 9.0, 12.0]
        assert http("POST", f"{base}/v2/models/other/infer", body)[0] == 404


# --- process behaviour --------------------------------------------------------------------------


def test_stops_promptly_on_sigterm(client: Any, image: BuiltImage) -> None:
    with _run(client, image) as container:
        port = published_port(container, 8080)
        wait_http_ok(f"http://127.0.0.1:{port}/ping", container)
        start = time.monotonic()
        container.stop(timeout=30)  # SIGTERM; SIGKILL only after 30 s, as SageMaker does
        elapsed = time.monotonic() - start
        container.reload()
        # Well under the 30 s after which SageMaker (and this stop) kills it.
        assert elapsed < 10.0, f"took {elapsed:.1f} s to stop"
        assert container.attrs["State"]["ExitCode"] != 137  # not killed


def test_runs_as_non_root_and_cannot_alter_the_package(client: Any, image: BuiltImage) -> None:
    with _run(client, image) as container:
        wait_http_ok(f"http://127.0.0.1:{published_port(container, 8080)}/ping", container)
        code, out = container.exec_run(["id", "-u"])
        assert code == 0 and out.decode().strip() not in ("", "0")
        assert out.decode().strip() == "10001"
        # Every process of the server runs as that user: PID 1 included.
        code, out = container.exec_run(["cat", "/proc/1/status"])
        uid_line = next(line for line in out.decode().splitlines() if line.startswith("Uid:"))
        assert uid_line.split()[1] == "10001"
        code, _ = container.exec_run(
            ["/opt/venv/bin/python", "-c", "open('/opt/modelport/package/modelport.json', 'a')"]
        )
        assert code != 0  # the package is read-only for the server's user


def test_healthcheck_command_reports_readiness(client: Any, image: BuiltImage) -> None:
    with _run(client, image) as container:
        wait_http_ok(f"http://127.0.0.1:{published_port(container, 8080)}/ping", container)
        code, output = container.exec_run(
            ["/opt/venv/bin/python", "/opt/modelport/entrypoint.py", "healthcheck"]
        )
        assert code == 0, output
        # Probing a port nothing listens on fails: the check can say "not ready".
        code, output = container.exec_run(
            ["/opt/venv/bin/python", "/opt/modelport/entrypoint.py", "healthcheck"],
            environment={"AIP_HTTP_PORT": str(free_port())},
        )
        assert code == 1 and b"not ready" in output


# --- a tampered package -------------------------------------------------------------------------


def _context_tar(files: dict[str, bytes]) -> io.BytesIO:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    buffer.seek(0)
    return buffer


@contextlib.contextmanager
def _derived_image(client: Any, image: BuiltImage, files: dict[str, bytes]) -> Iterator[str]:
    """An image derived from the serving image with files of the package replaced (COPY)."""
    dockerfile = f"FROM {image.id}\n" + "".join(
        f"COPY {name} /opt/modelport/package/{name}\n" for name in files
    )
    tar = _context_tar({"Dockerfile": dockerfile.encode(), **files})
    built, _ = client.images.build(fileobj=tar, custom_context=True, rm=True, labels=run_labels())
    try:
        yield str(built.id)
    finally:
        with contextlib.suppress(Exception):
            client.images.remove(built.id, force=True)


def _exit_and_logs(client: Any, image_id: str) -> tuple[int, str]:
    with running(client, image_id) as container:
        result = container.wait(timeout=60)
        return int(result["StatusCode"]), container.logs().decode("utf-8", "replace")


def test_a_tampered_model_file_refuses_to_start(client: Any, image: BuiltImage) -> None:
    model = next(p for p in (image.context / "package").iterdir() if p.suffix == ".onnx")
    altered = model.read_bytes().replace(b"contract", b"tampered")
    assert altered != model.read_bytes()
    with _derived_image(client, image, {model.name: altered}) as derived:
        code, logs = _exit_and_logs(client, derived)
    assert code == 4, logs
    first = logs.strip().splitlines()[0]
    assert first.startswith("modelport: refusing to start: the package at /opt/modelport/package")
    assert f"altered file: {model.name}" in first
    assert "Listening" not in logs  # the server never started


def test_a_swapped_package_refuses_to_start(client: Any, image: BuiltImage, tmp_path: Path) -> None:
    """A whole other package, consistent with its own manifest, is not the one built for."""
    from modelport.model_format.archive import extract_archive
    from modelport.plugins.testing import make_test_package

    other = make_test_package(tmp_path / "other.mport", scale=5.0, name="image-test")
    out = tmp_path / "other"
    out.mkdir()
    extract_archive(other, out)
    files = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    with _derived_image(client, image, files) as derived:
        code, logs = _exit_and_logs(client, derived)
    assert code == 4, logs
    assert "refusing to start" in logs
    assert f"is not the {image.digest} this image was built for" in logs


def test_a_build_from_a_tampered_context_fails(
    client: Any, image: BuiltImage, tmp_path: Path
) -> None:
    """The build-time verify: a context whose package was altered after it was written."""
    import shutil

    context = tmp_path / "context"
    shutil.copytree(image.context, context)
    (context / "package" / "smuggled.py").write_text("print('hi')\n")
    log = []
    for chunk in client.api.build(
        path=str(context), rm=True, forcerm=True, decode=True, labels=run_labels()
    ):
        log.append(chunk.get("stream") or chunk.get("error") or "")
    text = "".join(log)
    assert "refusing to start" in text and "extra file (not listed in the manifest)" in text
    assert "Successfully built" not in text


# --- the tests' own clean-up --------------------------------------------------------------------


def test_cleanup_removes_only_what_its_own_run_made(client: Any, tmp_path: Path) -> None:
    """Two runs on one machine: one run's clean-up leaves the other's images and containers."""
    import docker.errors

    (tmp_path / "Dockerfile").write_text(f"FROM {base_image(client)}\n")
    made = {}
    for run in ("run-a", "run-b"):
        # No cache: podman's look for a cached build of the same Dockerfile met a layer an
        # earlier test's clean-up had just removed ("getting top layer info: layer not known",
        # once in CI); this test is about labels, not caching.
        image, _ = client.images.build(
            path=str(tmp_path),
            rm=True,
            nocache=True,
            labels=run_labels({RUN_LABEL: f"{run}-{uuid.uuid4()}"}),
        )
        labels = image.labels
        container = client.containers.create(image.id, labels=labels)
        made[run] = (image.id, container.id, labels[RUN_LABEL])
    try:
        remove_test_leftovers(client, made["run-a"][2])
        with pytest.raises(docker.errors.NotFound):
            client.images.get(made["run-a"][0])
        with pytest.raises(docker.errors.NotFound):
            client.containers.get(made["run-a"][1])
        assert client.images.get(made["run-b"][0]).labels[RUN_LABEL] == made["run-b"][2]
        assert client.containers.get(made["run-b"][1]).labels[RUN_LABEL] == made["run-b"][2]
    finally:
        for _, _, run_id in made.values():
            remove_test_leftovers(client, run_id)
