"""Plugin support: discovering deploy targets, and the contract suite plugin authors subclass.

- :mod:`modelport.plugins.registry` finds targets through the ``modelport.deployers.v1``
  entry-point group without importing them, and imports one when it is selected.
- :mod:`modelport.plugins.testing` holds :class:`~modelport.plugins.testing.DeployerContract`
  (imports pytest; import it from tests only).
"""

from __future__ import annotations

from modelport.plugins.registry import GROUP, TargetInfo, discover, load_target, parse_target

__all__ = ["GROUP", "TargetInfo", "discover", "load_target", "parse_target"]
