"""Flavors: the ways a manifest says its model is loaded, one module and one entry each.

``FLAVORS`` is the one table: the manifest validates a flavor's settings with its entry, packing
stages with it, loading opens with it, and "does loading run code?" is its ``runs_code``.
Sources that are not flavors (scikit-learn, MLflow) convert into one of these at pack time:
see :mod:`modelport.model_format.sources`.
"""

from __future__ import annotations

from types import MappingProxyType

from modelport.errors import PackageError
from modelport.model_format.flavors.base import FlavorEntry
from modelport.model_format.flavors.onnx import ONNX
from modelport.model_format.flavors.python import PYTHON

#: Every flavor this version of modelport reads, by name, in the order errors list them.
FLAVORS = MappingProxyType({entry.name: entry for entry in (ONNX, PYTHON)})


def flavor_entry(name: str) -> FlavorEntry:
    """The entry of the flavor ``name``.

    Raises:
        PackageError: no such flavor in this version of modelport (a newer one wrote it).
    """
    entry = FLAVORS.get(name)
    if entry is None:
        raise PackageError(
            f"flavor {name!r} is not supported by this version of modelport; upgrade it"
        )
    return entry
