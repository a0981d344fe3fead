"""What the vertex target's tests share: a service account key for the fake, the target as the
CLI makes it pointed at the fake, and what a deployment left in Vertex.

Imported by module name (``from vertex_support import ...``), like ``fake_vertex``: pytest puts
this folder on ``sys.path``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from fake_vertex import LOCATION, PROJECT, FakeVertex
from predictions import PAYLOAD, expected, same_predictions  # noqa: F401 (the tests' too)

from modelport import __version__
from modelport.deployers import connect
from modelport.deployers.vertex import VertexDeployer
from modelport.model_format.package import Package

TARGET_URI = f"vertex:/{PROJECT}/{LOCATION}"
SERVICE_ACCOUNT = f"modelport-tests@{PROJECT}.iam.gserviceaccount.com"


def write_key(path: Path, token_uri: str) -> Path:
    """A service account's JSON key (a fresh RSA key) whose ``token_uri`` is the fake's.

    google-auth signs its own JWTs with it (or asks ``token_uri``): no request leaves this
    machine either way.
    """
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    path.write_text(
        json.dumps(
            {
                "type": "service_account",
                "project_id": PROJECT,
                "private_key_id": "0123456789abcdef",
                "private_key": pem,
                "client_email": SERVICE_ACCOUNT,
                "client_id": "100000000000000000001",
                "token_uri": token_uri,
            }
        )
    )
    return path


def fake_options(fake: FakeVertex, key: Path) -> dict[str, str]:
    """The options that point the target at the fake: its API, its logging and a key for it."""
    options = {
        "api_endpoint": fake.api_endpoint,
        "logging_endpoint": fake.logging_endpoint,
        "service_account_file": str(key),
        "startup_timeout": "120",
    }
    if os.environ.get("MODELPORT_TEST_REGISTRY"):
        options["registry"] = f"{os.environ['MODELPORT_TEST_REGISTRY']}/modelport-vertex-test"
    if os.environ.get("MODELPORT_TEST_BASE_IMAGE"):
        options["base_image"] = os.environ["MODELPORT_TEST_BASE_IMAGE"]
    if os.environ.get("PIP_CERT"):
        options["pip_cert"] = os.environ["PIP_CERT"]
    return options


def vertex_target(fake: FakeVertex, key: Path, **options: Any) -> VertexDeployer:
    """The target as the CLI makes it (``-t vertex:/PROJECT/REGION`` and ``-C``), on the fake.

    An option given as None is left out (``image=...`` drops the registry this way).
    """
    given = {**fake_options(fake, key), **options}
    target = connect(TARGET_URI, {k: str(v) for k, v in given.items() if v is not None})
    assert isinstance(target, VertexDeployer)
    return target


def endpoint_of(fake: FakeVertex, name: str) -> str | None:
    """The id of the endpoint labelled as deployment ``name``, or None."""
    found = [
        endpoint_id
        for endpoint_id, doc in fake.endpoints().items()
        if (doc.get("labels") or {}).get("modelport-deployment") == name
    ]
    assert len(found) <= 1, found
    return found[0] if found else None


def resources(fake: FakeVertex, name: str) -> dict[str, Any]:
    """Everything of deployment ``name`` in the fake: endpoint, deployed models, model versions."""
    endpoint = endpoint_of(fake, name)
    deployed = fake.deployed_models(endpoint) if endpoint else {}
    model = fake.model(f"modelport-{name}")
    versions = sorted(model["versions"]) if model else []
    return {
        "endpoint": [name] if endpoint else [],
        "deployed": sorted(d["displayName"] for d in deployed.values()),
        "versions": versions,
    }


NOTHING: dict[str, Any] = {"endpoint": [], "deployed": [], "versions": []}


def modelport_labels(package: Package, name: str, generation: int) -> dict[str, str]:
    """The labels modelport puts on a generation's model version."""
    digest = package.digest.removeprefix("sha256:")
    return {
        "modelport-package-digest": f"sha256-{digest[:32]}",
        "modelport-package-digest-2": digest[32:],
        "modelport-package-name": package.name,
        "modelport-package-version": package.version,
        "modelport-flavor": package.manifest.flavor.name,
        "modelport-modelport-version": __version__.replace(".", "-").replace("+", "-").lower(),
        "modelport-deployment": name,
        "modelport-target": "vertex",
        "modelport-generation": str(generation),
    }
