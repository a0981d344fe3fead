"""Where a target keeps its state on this machine: the kit's name for :mod:`modelport.home`.

Targets (and plugins) import ``default_home``, ``write_json_atomic``, ``exclusive_lock`` and
``HOME_ENV`` from here;
they live in :mod:`modelport.home` because the package cache shares ``$MODELPORT_HOME`` and the
package format must not import the deployers.
"""

from modelport.home import HOME_ENV, default_home, exclusive_lock, write_json_atomic

__all__ = ["HOME_ENV", "default_home", "exclusive_lock", "write_json_atomic"]
