"""The ``docker`` target: build a serving image, run it as a container (Docker or podman)."""

from __future__ import annotations

from modelport.deployers.docker.deployer import (
    LABEL_DEPLOYMENT,
    LABEL_TARGET,
    DockerConfig,
    DockerDeployer,
    container_name,
    container_port,
    list_images,
)

__all__ = [
    "LABEL_DEPLOYMENT",
    "LABEL_TARGET",
    "DockerConfig",
    "DockerDeployer",
    "container_name",
    "container_port",
    "list_images",
]
