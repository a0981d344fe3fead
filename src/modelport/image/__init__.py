"""The one serving image every container target ships.

docker, SageMaker, Azure ML, Vertex AI and Kubernetes all run it. Here: its build context,
Dockerfile stages, labels, pinned requirements, the modelport wheel, and the container's
entrypoint.

Nothing here talks to a container engine or imports a cloud SDK: building and pushing is
:mod:`modelport.deployers.kit.images`.
"""

from __future__ import annotations

from modelport.image.context import BuildContext, write_context
from modelport.image.dockerfile import (
    CONTAINER_PORT,
    LABEL_DIGEST,
    LABEL_SAGEMAKER_PORT,
    default_base_image,
    image_labels,
    image_reference,
    package_stage,
)
from modelport.image.requirements import pinned_requirements
from modelport.image.wheel import build_modelport_wheel

__all__ = [
    "CONTAINER_PORT",
    "LABEL_DIGEST",
    "LABEL_SAGEMAKER_PORT",
    "BuildContext",
    "build_modelport_wheel",
    "default_base_image",
    "image_labels",
    "image_reference",
    "package_stage",
    "pinned_requirements",
    "write_context",
]
