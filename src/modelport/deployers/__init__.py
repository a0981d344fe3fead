"""Deploy targets: the :class:`Deployer` base class, its records, and the built-in targets.

Third-party targets subclass :class:`Deployer` and register it under the entry-point group
``modelport.deployers.v1`` (see ``docs/writing-a-target.md``). Importing this package is cheap:
it imports no target.
"""

from __future__ import annotations

from modelport.deployers.base import (
    NAME_PATTERN,
    Deployer,
    Deployment,
    DeploymentStatus,
    PlannedAction,
    utcnow,
)
from modelport.deployers.config import ConfigField, NoConfig, Sources, build_config, fields_of

__all__ = [
    "NAME_PATTERN",
    "ConfigField",
    "Deployer",
    "Deployment",
    "DeploymentStatus",
    "NoConfig",
    "PlannedAction",
    "Sources",
    "build_config",
    "fields_of",
    "utcnow",
]
