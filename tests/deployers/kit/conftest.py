"""Fixtures of the kit's engine and image tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from docker_fixtures import RUN_ID, RUN_LABEL, base_image, engine

from modelport.deployers.kit.engine import Engine


@pytest.fixture(scope="module")
def real(request: pytest.FixtureRequest) -> Iterator[tuple[Engine, str]]:
    """The engine at $DOCKER_HOST and the base image; removes the module's images at the end.

    A module names the label its images carry in ``CLEANUP_LABEL``; only this run's are removed
    (another run on the same machine keeps its own).
    """
    docker_py = engine()  # docker-py checks the setup the way every image test does
    base = base_image(docker_py)
    docker_py.close()
    label = request.module.CLEANUP_LABEL
    with Engine() as client:
        yield client, base
        # One label per filter (podman 4.3 matches no image when given two): this run's images,
        # then the module's among them.
        for image in client.images(filters={"label": [f"{RUN_LABEL}={RUN_ID}"]}):
            if label in (image.get("Labels") or {}):
                client.remove_image(image["Id"], force=True)
