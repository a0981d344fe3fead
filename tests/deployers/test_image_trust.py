"""An image built under a trust policy carries the signature and checks it at every start.

The Dockerfile is ``modelport dockerfile``'s, written with ``MODELPORT_TRUST=require`` and the
signer's public key in the builder's environment, and really built and run (podman's Docker API,
``.ci/setup-containers.sh``); the build shares its runtime stages with the session's image.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from docker_fixtures import (
    base_image,
    build_context,
    engine,
    http,
    published_port,
    remove_test_leftovers,
    running,
    wait_http_ok,
)

from signing_keys import ec_key_pair

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("containers")]


@pytest.fixture(scope="module")
def client() -> Iterator[Any]:
    docker_client = engine()
    yield docker_client
    remove_test_leftovers(docker_client)
    docker_client.close()


@pytest.fixture(scope="module")
def signed_image(
    client: Any, tmp_path_factory: pytest.TempPathFactory
) -> tuple[str, Path, dict[str, Path]]:
    """(image id, build context, key files) of a signed package built under ``require``."""
    from modelport.image import write_context
    from modelport.model_format.signing import sign
    from modelport.plugins.testing import make_test_package

    root = tmp_path_factory.mktemp("image-trust")
    private, public = ec_key_pair(root / "ours", "signer")
    _, other = ec_key_pair(root / "theirs", "other")
    package = make_test_package(root / "signed.mport", scale=3.0, name="signed-image")
    sign(package, key=private)
    saved = {k: os.environ.get(k) for k in ("MODELPORT_TRUST", "MODELPORT_TRUSTED_KEYS")}
    os.environ.update(MODELPORT_TRUST="require", MODELPORT_TRUSTED_KEYS=str(public))
    try:
        context = write_context(
            package,
            root / "context",
            base_image=base_image(client),
            pip_cert=os.environ.get("PIP_CERT") or None,
        )
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    image_id = build_context(
        client, context.directory, f"localhost/modelport-test/signed-image:{os.getpid()}"
    )
    return str(image_id), context.directory, {"public": public, "other": other.parent}


def test_the_context_carries_the_signature_the_keys_and_the_policy(
    signed_image: tuple[str, Path, dict[str, Path]],
) -> None:
    _, context, keys = signed_image
    assert (context / "package" / "model.sig").is_file()
    (baked,) = (context / "trusted-keys").iterdir()
    assert baked.read_bytes() == keys["public"].read_bytes()
    dockerfile = (context / "Dockerfile").read_text()
    assert "MODELPORT_TRUST=require" in dockerfile
    assert "MODELPORT_TRUSTED_KEYS=/opt/modelport/trusted-keys" in dockerfile


def test_the_image_verifies_the_signature_and_serves(
    client: Any, signed_image: tuple[str, Path, dict[str, Path]]
) -> None:
    image_id, _, _ = signed_image
    with running(client, image_id, ports={"8080/tcp": ("127.0.0.1", None)}) as container:
        url = f"http://127.0.0.1:{published_port(container, 8080)}"
        wait_http_ok(f"{url}/ping", container)
        status, body = http("POST", f"{url}/invocations", {"inputs": [[1.0, 2.0]]})
        assert status == 200, body
        assert json.loads(body)["predictions"] == [[3.0, 6.0]]
        assert "signature verified: sha256:" in container.logs().decode("utf-8", "replace")


def test_other_trusted_keys_make_the_container_refuse_to_start(
    client: Any, signed_image: tuple[str, Path, dict[str, Path]]
) -> None:
    """Keys swapped in at run time (a volume over the baked ones): the signer is not trusted."""
    image_id, _, keys = signed_image
    volumes = {str(keys["other"]): {"bind": "/opt/modelport/trusted-keys", "mode": "ro"}}
    with running(client, image_id, volumes=volumes) as container:
        code = int(container.wait(timeout=60)["StatusCode"])
        logs = container.logs().decode("utf-8", "replace")
    assert code == 4, logs
    assert logs.strip().splitlines()[0].startswith("modelport: refusing to serve"), logs
    assert "Listening" not in logs
