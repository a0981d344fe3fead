"""What a cloud deployment of a test package must answer, for every cloud target's tests.

Imported by module name (``from predictions import ...``): ``tests/deployers`` is on ``sys.path``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from modelport.model_format.package import Package
from modelport.model_format.payload import format_predictions, parse_payload

#: A request body every test package (``Y = scale * X``) takes.
PAYLOAD = {"inputs": {"X": [[1.0, 2.0], [3.0, 4.0]]}}


def expected(package: Package, payload: Mapping[str, Any] = PAYLOAD) -> dict[str, Any]:
    """What a deployment of ``package`` must answer: the package's own in-process prediction."""
    return format_predictions(package.predict(parse_payload(payload, package.signature)))


def same_predictions(got: Mapping[str, Any], want: Mapping[str, Any]) -> bool:
    """``{"predictions": ...}`` answers equal up to float32 rounding."""
    if set(got) != set(want):
        return False
    a = np.asarray(got["predictions"], dtype=np.float64)
    b = np.asarray(want["predictions"], dtype=np.float64)
    return a.shape == b.shape and bool(np.allclose(a, b, rtol=1e-6, atol=1e-7))
