"""The ``local`` target: ``modelport serve`` as a managed background process on this machine."""

from __future__ import annotations

from modelport.deployers.local.deployer import LocalConfig, LocalDeployer

__all__ = ["LocalConfig", "LocalDeployer"]
