"""What the cloud targets' benchmarks share: the verbs' row names, timing, the summary line, the
table, and one round of a deployment's life (plan, create, update, canary, promote, delete).

Imported by the ``*_bench.py`` scripts beside it (a script's folder is on ``sys.path``).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any

PLAN = "deploy --dry-run (plan)"
CREATE = "create (until it serves)"
UPDATE = "update (blue/green, until switched)"
CANARY = "canary update (10 %)"
PROMOTE = "promote (all traffic, old removed)"
DELETE = "delete (until gone)"


def timed(action: Callable[[], Any]) -> tuple[float, Any]:
    """Seconds ``action()`` took, and what it returned."""
    start = time.perf_counter()
    result = action()
    return time.perf_counter() - start, result


def summary(values: list[float]) -> str:
    """A row's figures: the median, then the range."""
    return f"{statistics.median(values):7.2f} s  ({min(values):.2f}-{max(values):.2f})"


def print_table(
    title: str, samples: dict[str, list[float]], counts: dict[str, dict[str, list[float]]]
) -> None:
    """The table every cloud bench prints: a verb per row, its wall time, then the median of
    each counted column (``counts``: column heading -> verb -> one figure per round).
    """
    width = max(len(k) for k in samples)
    print(title)
    print(f"{'verb':<{width}}  {'wall time':>24}" + "".join(f"  {name}" for name in counts))
    for label, values in samples.items():
        figures = "".join(
            f"  {statistics.median(column[label]):{len(name)}.0f}"
            for name, column in counts.items()
        )
        print(f"{label:<{width}}  {summary(values):>24}{figures}")


def lifecycle(
    name: str, serving_v1: Any, serving_v2: Any, canary_v1: Any, package: Any, package_v2: Any
) -> list[tuple[str, Callable[[], Any]]]:
    """One round's verbs on deployment ``name``, in order, with their row names.

    ``serving_v1``/``serving_v2`` serve the two packages; ``canary_v1`` takes 10 % back to v1.
    """
    return [
        (PLAN, lambda: serving_v1.plan(name, package)),
        (CREATE, lambda: serving_v1.create(name, package)),
        (UPDATE, lambda: serving_v2.update(name, package_v2)),
        (CANARY, lambda: canary_v1.update(name, package)),
        (PROMOTE, lambda: canary_v1.promote(name)),
        (DELETE, lambda: serving_v1.delete(name)),
    ]
