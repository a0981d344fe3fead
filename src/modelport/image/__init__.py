"""The one serving image every container target ships.

docker, SageMaker, Azure ML, Vertex AI and Kubernetes all run it. Here: its build context,
Dockerfile stages, labels, pinned requirements, the modelport wheel, and the container's
entrypoint.

Nothing here talks to a container engine or imports a cloud SDK: building and pushing is
:mod:`modelport.deployers.kit.images`. Importing this package is cheap: the names below are
imported on first use (``modelport targets`` needs only the requirement walker).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
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

_LAZY = {
    "BuildContext": "context",
    "write_context": "context",
    "CONTAINER_PORT": "dockerfile",
    "LABEL_DIGEST": "dockerfile",
    "LABEL_SAGEMAKER_PORT": "dockerfile",
    "default_base_image": "dockerfile",
    "image_labels": "dockerfile",
    "image_reference": "dockerfile",
    "package_stage": "dockerfile",
    "pinned_requirements": "requirements",
    "build_modelport_wheel": "wheel",
}
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


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(f"modelport.image.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'modelport.image' has no attribute {name!r}")
