"""What every framework example does after training: pack, reload, predict, compare, report.

Each example script trains a tiny model and calls :func:`pack_and_compare`. It prints the parity
record the manifest keeps, the package's size, how long packing and the first prediction of a
freshly loaded package took, and a last ``metrics`` line in JSON (read by the tests).
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

import modelport


def out_dir() -> Path:
    """Where the example writes: the first argument, or ``build/frameworks``."""
    path = Path(sys.argv[1] if len(sys.argv) > 1 else "build/frameworks")
    path.mkdir(parents=True, exist_ok=True)
    return path


def pack_and_compare(
    model: Any,
    name: str,
    example: Any,
    rows: np.ndarray,
    original: Callable[[np.ndarray], Mapping[str, Any]],
) -> None:
    """Pack ``model`` as ``NAME.mport``; its answers on ``rows`` must be the original's."""
    path = out_dir() / f"{name}.mport"
    started = time.perf_counter()
    modelport.pack(model, path, name=name, example=example, overwrite=True).close()
    pack_s = time.perf_counter() - started

    started = time.perf_counter()
    package = modelport.load(path)  # verifies every file, then opens ONNX Runtime
    got = package.predict(rows)
    first_predict_ms = (time.perf_counter() - started) * 1000
    record = package.manifest.flavor.settings["converted_from"]
    package.close()

    print(f"packed {name}: {path} ({path.stat().st_size:,} bytes) in {pack_s:.2f} s")
    print(f"  converted from {record['estimator']} by {record['converter']}")
    print(f"  opset {dict(record['opset'])}, checked on {record['rows_checked']} example rows")
    for output, diff in record["max_abs_diff"].items():
        print(f"  parity: {output} max abs difference {diff:.2g}")
    print(f"  first prediction of the loaded package: {first_predict_ms:.1f} ms")

    for output, answered in original(rows).items():
        want = np.asarray(answered).reshape(got[output].shape)
        same = (
            np.array_equal(got[output], want)
            if output == "label"
            else np.allclose(got[output], want, atol=record["tolerance"])
        )
        verdict = "same as" if same else "DIFFERS from"
        print(f"  {output} on {len(rows)} new rows: {verdict} the original")
        if not same:
            sys.exit(f"{name}: the package's {output!r} differs from the original's")
    metrics = {
        "name": name,
        "pack_s": round(pack_s, 3),
        "size_bytes": path.stat().st_size,
        "max_abs_diff": dict(record["max_abs_diff"]),
        "first_predict_ms": round(first_predict_ms, 1),
    }
    print("metrics " + json.dumps(metrics))
