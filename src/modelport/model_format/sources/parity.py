"""What every converting source shares: run the converted model beside the original, record it.

A source (scikit-learn, the gradient-boosted trees, PyTorch) converts a model to ONNX and says
what the original answered on the example (:class:`Conversion`). :func:`stage_conversion` runs
the ONNX model on the same inputs, compares output by output and row by row, and stages the
model with the record of it (``converted_from`` in the flavor's settings). Class labels must be
equal; other outputs may differ by at most the tolerance. A failure names the output, the worst
row of the example and both values, so the user can see whether it is a real defect or a row on
a tree's split threshold.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from modelport.errors import ConversionMismatchError, PackError
from modelport.model_format.flavors.base import Staged
from modelport.model_format.flavors.onnx import make_session, stage_onnx, strip_zipmap

#: Outputs that hold class labels: compared for equality, not within the tolerance.
LABEL_OUTPUTS = frozenset({"label"})

#: Why a tree model's conversion can disagree on a few rows; added to its mismatch errors.
THRESHOLD_HINT = (
    "tree models compare each feature with split thresholds: a row lying exactly on a "
    "threshold (training rows often do) can fall on the other side once rounded to float32; "
    "check parity on rows the model was not trained on"
)


@dataclass(frozen=True)
class Conversion:
    """A model converted to ONNX and what the original answered on the example.

    Args:
        onnx_bytes: the converted model (ZipMap outputs are rewritten as tensors).
        fed: the example exactly as the ONNX model takes it, by input name.
        expected: what the original model returned on those values, by ONNX output name; an
            output of the ONNX model not named here is not compared (nor recorded).
        library: the framework the model came from, pinned (``xgboost==3.2.0``).
        converter: what converted it, pinned (``onnxmltools==1.16.0``).
        model_class: the original's class, qualified.
        trees: the model holds decision trees (a mismatch error then explains thresholds).
        extra: more facts to record (how it was exported).
    """

    onnx_bytes: bytes
    fed: dict[str, np.ndarray]
    expected: dict[str, np.ndarray]
    library: str
    converter: str
    model_class: str
    trees: bool = False
    extra: Mapping[str, Any] | None = None


def qualified_name(obj: Any) -> str:
    """``module.Class`` of an object, as the record names the converted model."""
    return f"{type(obj).__module__}.{type(obj).__qualname__}"


def opsets(onnx_bytes: bytes) -> dict[str, int]:
    """The opset of each domain a model imports (``""`` is the default ONNX domain)."""
    import onnx

    model = onnx.load_from_string(onnx_bytes)
    return {entry.domain or "": int(entry.version) for entry in model.opset_import}


def stage_conversion(conversion: Conversion, tolerance: float, *, default_name: str) -> Staged:
    """Check ``conversion`` against the original on its example and stage it with the record.

    Raises:
        PackError: ONNX Runtime cannot load or run the converted model.
        ConversionMismatchError: a label differs, or an output by more than ``tolerance``.
    """
    onnx_bytes = strip_zipmap(conversion.onnx_bytes)
    try:
        session = make_session(onnx_bytes, threads=1)
        names = [o.name for o in session.get_outputs()]
        got = dict(zip(names, session.run(names, conversion.fed), strict=True))
    except PackError:
        raise
    except Exception as exc:
        raise PackError(f"the converted model fails on the example: {exc}") from None
    what = conversion.model_class.rsplit(".", 1)[-1]
    diffs = check_parity(what, conversion.expected, got, tolerance, trees=conversion.trees)
    record: dict[str, Any] = {
        "library": conversion.library,
        "converter": conversion.converter,
        "estimator": conversion.model_class,
        "opset": opsets(onnx_bytes),
        "rows_checked": rows_of(conversion.fed),
        "tolerance": tolerance,
        "max_abs_diff": diffs,
    }
    if LABEL_OUTPUTS & diffs.keys():
        record["labels_equal"] = True  # checked: a differing label fails the pack
    record.update(conversion.extra or {})
    return stage_onnx(
        onnx_bytes,
        None,
        default_name=default_name,
        settings={"converted_from": record},
        checked_example=conversion.fed,
    )


def rows_of(arrays: Mapping[str, np.ndarray]) -> int:
    """The number of rows of an example (the first dimension of its first input)."""
    first = next(iter(arrays.values()))
    return int(first.shape[0]) if first.ndim else 1


def check_parity(
    what: str,
    expected: Mapping[str, np.ndarray],
    got: Mapping[str, np.ndarray],
    tolerance: float,
    *,
    trees: bool = False,
) -> dict[str, float]:
    """The max abs difference per output of ``got`` against ``expected``.

    Raises:
        ConversionMismatchError: a label differs, or an output by more than ``tolerance``;
            the message names each output, its worst row and both values there.
        PackError: no output of the original is among the converted model's outputs.
    """
    diffs: dict[str, float] = {}
    problems: list[str] = []
    for name, want in expected.items():
        if name not in got:
            continue
        diff, row = _worst_row(np.asarray(want), np.asarray(got[name]))
        diffs[name] = diff
        is_label = name in LABEL_OUTPUTS
        if (diff > 0 if is_label else not diff <= tolerance) and row is not None:
            at = f"example row {row} (original {_row_text(want, row)}, converted "
            at += f"{_row_text(got[name], row)})"
            problems.append(
                f"{name!r} differs at {at}"
                if is_label
                else f"{name!r} max abs difference {diff:.3g} at {at}"
            )
        elif row is None and diff > 0:
            problems.append(f"{name!r} has another shape than the original's")
    if expected and not diffs:
        raise PackError(
            f"none of the outputs of {what} ({', '.join(map(repr, expected))}) is among the "
            f"converted model's ({', '.join(map(repr, got))}): nothing could be checked"
        )
    if problems:
        hint = f"; {THRESHOLD_HINT}" if trees else ""
        raise ConversionMismatchError(
            f"the ONNX conversion of {what} disagrees with the original on the example beyond "
            f"the tolerance {tolerance:g}: {'; '.join(problems)}. Labels must be equal; pass a "
            f"larger tolerance only if that difference is acceptable{hint}"
        )
    return diffs


def _worst_row(want: np.ndarray, got: np.ndarray) -> tuple[float, int | None]:
    """The largest difference and the row holding it (None when the shapes cannot match)."""
    # (N,) against (N, 1) is one column either way; (2, 3) against (3, 2) is not.
    if want.size != got.size or np.squeeze(want).shape != np.squeeze(got).shape:
        return float("inf"), None
    if want.size == 0:
        return 0.0, None
    rows = want.shape[0] if want.ndim and got.ndim and want.shape[0] == got.shape[0] else 1
    want, got = want.reshape(rows, -1), got.reshape(rows, -1)
    if want.dtype.kind in "UOS" or got.dtype.kind in "UOS":
        # Labels that are strings: any disagreement counts as a difference of 1.
        per_row = np.array(
            [float(any(str(a) != str(b) for a, b in zip(w, g, strict=True)))
             for w, g in zip(want, got, strict=True)]
        )  # fmt: skip
    else:
        wide, other = want.astype(np.float64), got.astype(np.float64)  # bools as 0 and 1
        with np.errstate(invalid="ignore"):
            delta = np.abs(wide - other)
        # Equal values (infinities included) agree, NaN on both sides agrees, NaN on one does not.
        same = (wide == other) | (np.isnan(wide) & np.isnan(other))
        delta = np.where(same, 0.0, np.where(np.isnan(delta), np.inf, delta))
        per_row = delta.max(axis=1)
    row = int(np.argmax(per_row))
    return float(per_row[row]), row


def _row_text(values: Any, row: int) -> str:
    array = np.asarray(values)
    item = array[row] if array.ndim and array.shape[0] > row else array
    text = np.array2string(np.asarray(item), precision=6, threshold=8, separator=", ")
    return text if len(text) <= 120 else text[:117] + "..."
