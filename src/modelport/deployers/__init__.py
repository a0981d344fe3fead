"""Deploy targets: the :class:`Deployer` base class, its records, and the Python deploy API.

::

    from modelport.deployers import connect

    target = connect("local")                       # configured as the CLI would: env, file, URI
    target.create("demo", modelport.load("model.mport"))
    target.predict("demo", {"inputs": [[1.0, 2.0]]})

Third-party targets subclass :class:`Deployer`, build their verbs on :mod:`modelport.deployers.kit`
and register under the entry-point group ``modelport.deployers.v1`` (see
``docs/writing-a-target.md``), or in-process with :func:`register`. Importing this package is
cheap: it imports no target and no SDK.
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
from modelport.deployers.connect import connect
from modelport.deployers.kit.progress import Progress, ProgressEvent
from modelport.plugins.registry import register, unregister

__all__ = [
    "NAME_PATTERN",
    "ConfigField",
    "Deployer",
    "Deployment",
    "DeploymentStatus",
    "NoConfig",
    "PlannedAction",
    "Progress",
    "ProgressEvent",
    "Sources",
    "build_config",
    "connect",
    "fields_of",
    "register",
    "unregister",
    "utcnow",
]
