"""A corpus of JSON request bodies, shared by the server's tests and ``modelport predict``'s.

The server (``POST /invocations``, ``Content-Type: application/json``) and ``modelport predict
-i FILE`` read JSON bodies through the same reader and the same signature path, so they must
accept exactly the same bodies and give the same predictions. The corpus is built for two small
ONNX models this module packs itself (no test fixtures needed):

- ``named``: ``a`` float32[N, 2] and ``b`` int64[N, 1] -> ``total`` float32[N, 1] = sum(a) + b
  (named inputs, a ``[-1, 1]`` column, a float input and an integer input);
- ``single``: ``x`` float32[N, 3] -> ``y`` float32[N, 2] = x @ W (one input: bare tensors).

``tests/cli/test_predict_corpus.py`` feeds each body to ``modelport predict`` and to a server.

Use::

    models = corpus_models(tmp_path)          # packs both: {name: CorpusModel}
    for case in models["named"].cases:        # BodyCase(name, body, ok, inputs)
        ...                                   # POST case.body, or write it to a file for -i
        want = expected_predictions(models["named"].path, case)   # ok cases only
        got = answer_outputs(json.loads(answer_text), models["named"].output_names)

``case.ok`` says whether the body must be answered (200, exit 0) or refused as bad input (400,
the CLI's bad-input exit). ``case.inputs`` (ok cases) is what the body means, as arrays the
package's own ``predict`` takes; the answer must equal ``predict(case.inputs)`` (NaN equal to NaN).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

#: y = x @ SINGLE_WEIGHTS for the ``single`` model.
SINGLE_WEIGHTS = np.arange(6, dtype=np.float32).reshape(3, 2)
#: A value no error message may quote (it is in some refused bodies).
SECRET = "987654.125"


@dataclass(frozen=True)
class BodyCase:
    """One JSON body and what must happen to it.

    Attributes:
        name: a short id (for pytest ids and messages).
        body: the JSON text, sent as is (it may hold NaN/Infinity tokens, or be malformed).
        ok: answered (True) or refused as bad input (False: HTTP 400).
        inputs: for an ``ok`` body, the arrays it means ({input name: array}).
        outputs: for an ``ok`` body, the outputs the answer holds (``params.outputs``), if not all.
    """

    name: str
    body: str
    ok: bool
    inputs: Mapping[str, np.ndarray] | None = None
    outputs: tuple[str, ...] | None = None


@dataclass(frozen=True)
class CorpusModel:
    """A packed corpus model and its cases."""

    name: str
    path: Path
    output_names: tuple[str, ...]
    cases: tuple[BodyCase, ...] = field(default=())


# --- the models -------------------------------------------------------------------------------


def _named_onnx() -> Any:
    from onnx import TensorProto, helper, numpy_helper

    graph = helper.make_graph(
        [
            helper.make_node("ReduceSum", ["a", "axes"], ["sum_a"], keepdims=1),
            helper.make_node("Cast", ["b"], ["b_float"], to=TensorProto.FLOAT),
            helper.make_node("Add", ["sum_a", "b_float"], ["total"]),
        ],
        "corpus_named",
        [
            helper.make_tensor_value_info("a", TensorProto.FLOAT, ["N", 2]),
            helper.make_tensor_value_info("b", TensorProto.INT64, ["N", 1]),
        ],
        [helper.make_tensor_value_info("total", TensorProto.FLOAT, ["N", 1])],
        [numpy_helper.from_array(np.array([1], dtype=np.int64), "axes")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def _single_onnx() -> Any:
    from onnx import TensorProto, helper, numpy_helper

    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "W"], ["y"])],
        "corpus_single",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 2])],
        [numpy_helper.from_array(SINGLE_WEIGHTS, "W")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


# --- the cases --------------------------------------------------------------------------------


def _f32(rows: Sequence[Any]) -> np.ndarray:
    return np.asarray(rows, dtype=np.float32)


def _i64(rows: Sequence[Any]) -> np.ndarray:
    return np.asarray(rows, dtype=np.int64)


def _named(a: Sequence[Any], b: Sequence[Any]) -> dict[str, np.ndarray]:
    return {"a": _f32(a), "b": _i64(b).reshape(-1, 1)}


def named_cases() -> tuple[BodyCase, ...]:
    """Bodies for the ``named`` model (``a`` float32[N, 2], ``b`` int64[N, 1])."""
    two = _named([[1, 2], [3.5, -4]], [1, 2])
    ok = [
        BodyCase(
            "inputs-columns", '{"inputs": {"a": [[1, 2], [3.5, -4]], "b": [[1], [2]]}}', True, two
        ),
        BodyCase(
            "inputs-column-1d", '{"inputs": {"a": [[1, 2], [3.5, -4]], "b": [1, 2]}}', True, two
        ),
        BodyCase(
            "inputs-column-scalar",
            '{"inputs": {"a": [[1, 2]], "b": 7}}',
            True,
            _named([[1, 2]], [7]),
        ),
        BodyCase(
            "instances-records",
            '{"instances": [{"a": [1, 2], "b": 1}, {"a": [3.5, -4], "b": 2}]}',
            True,
            two,
        ),
        BodyCase(
            "instances-records-listed",
            '{"instances": [{"a": [1, 2], "b": [1]}, {"a": [3.5, -4], "b": [2]}]}',
            True,
            two,
        ),
        BodyCase("bare-records", '[{"a": [1, 2], "b": 1}, {"a": [3.5, -4], "b": 2}]', True, two),
        BodyCase(
            "bare-one-record", '[{"a": [0.25, 0.5], "b": -3}]', True, _named([[0.25, 0.5]], [-3])
        ),
        BodyCase(
            "nan-float",
            '{"inputs": {"a": [[NaN, 1.0], [2.0, 3.0]], "b": [[1], [2]]}}',
            True,
            _named([[np.nan, 1.0], [2.0, 3.0]], [1, 2]),
        ),
        BodyCase(
            "infinity-float",
            '{"inputs": {"a": [[Infinity, 1.0]], "b": [[0]]}}',
            True,
            _named([[np.inf, 1.0]], [0]),
        ),
        BodyCase(
            "minus-infinity-float",
            '{"instances": [{"a": [-Infinity, 1.0], "b": 0}]}',
            True,
            _named([[-np.inf, 1.0]], [0]),
        ),
        BodyCase(
            "params-outputs",
            '{"inputs": {"a": [[1, 2]], "b": [[3]]}, "params": {"outputs": ["total"]}}',
            True,
            _named([[1, 2]], [3]),
            ("total",),
        ),
        BodyCase(
            "whitespace",
            ' \n{ "inputs" : { "a" : [ [ 1 , 2 ] ] , "b" : [ [ 3 ] ] } }\n ',
            True,
            _named([[1, 2]], [3]),
        ),
    ]
    bad = [
        BodyCase("nan-int", '{"inputs": {"a": [[1, 2]], "b": [[NaN]]}}', False),
        BodyCase("infinity-int", '{"inputs": {"a": [[1, 2]], "b": [[Infinity]]}}', False),
        BodyCase("minus-infinity-int", '{"instances": [{"a": [1, 2], "b": -Infinity}]}', False),
        BodyCase("fractional-int", f'{{"inputs": {{"a": [[1, 2]], "b": [[{SECRET}]]}}}}', False),
        BodyCase("lowercase-nan", '{"inputs": {"a": [[nan, 1]], "b": [[1]]}}', False),
        BodyCase("wrong-key", f'{{"rows": [[{SECRET}]]}}', False),
        BodyCase(
            "two-format-keys", '{"inputs": {"a": [[1, 2]], "b": [[1]]}, "instances": []}', False
        ),
        BodyCase("unknown-input", '{"inputs": {"a": [[1, 2]], "b": [[1]], "c": [[1]]}}', False),
        BodyCase("missing-input", f'{{"inputs": {{"a": [[{SECRET}, 2]]}}}}', False),
        BodyCase("wrong-width", f'{{"inputs": {{"a": [[{SECRET}, 2, 3]], "b": [[1]]}}}}', False),
        BodyCase("ragged", '{"inputs": {"a": [[1, 2], [3]], "b": [[1], [2]]}}', False),
        BodyCase("nested-too-deep", '{"inputs": {"a": [[[1, 2]]], "b": [[1]]}}', False),
        BodyCase(
            "nested-past-the-limit",
            '{"inputs": {"a": ' + "[" * 100 + "]" * 100 + ', "b": [[1]]}}',
            False,
        ),
        BodyCase(
            "row-counts-differ", '{"inputs": {"a": [[1, 2], [3, 4]], "b": [[1], [2], [3]]}}', False
        ),
        BodyCase("text-in-float", '{"inputs": {"a": [["secret-cell", 2]], "b": [[1]]}}', False),
        BodyCase("tensor-rows-for-named-inputs", "[[1, 2, 1]]", False),
        BodyCase("instances-tensor-rows", '{"instances": [[1, 2, 1]]}', False),
        BodyCase(
            "unknown-output",
            '{"inputs": {"a": [[1, 2]], "b": [[3]]}, "params": {"outputs": ["nope"]}}',
            False,
        ),
        BodyCase("malformed", '{"inputs": {"a": [[1, 2', False),
        BodyCase("a-number", "42", False),
        BodyCase("a-string", '"inputs"', False),
        BodyCase("empty-object", "{}", False),
        BodyCase("empty", "", False),
    ]
    return tuple(ok + bad)


def single_cases() -> tuple[BodyCase, ...]:
    """Bodies for the ``single`` model (``x`` float32[N, 3])."""
    rows = [[1, 2, 3], [-0.5, 0.25, 8]]
    x = {"x": _f32(rows)}
    ok = [
        BodyCase("bare-tensor", "[[1, 2, 3], [-0.5, 0.25, 8]]", True, x),
        BodyCase("inputs-tensor", '{"inputs": [[1, 2, 3], [-0.5, 0.25, 8]]}', True, x),
        BodyCase("inputs-named", '{"inputs": {"x": [[1, 2, 3], [-0.5, 0.25, 8]]}}', True, x),
        BodyCase("instances-tensor-rows", '{"instances": [[1, 2, 3], [-0.5, 0.25, 8]]}', True, x),
        BodyCase(
            "instances-records",
            '{"instances": [{"x": [1, 2, 3]}, {"x": [-0.5, 0.25, 8]}]}',
            True,
            x,
        ),
        BodyCase("bare-records", '[{"x": [1, 2, 3]}, {"x": [-0.5, 0.25, 8]}]', True, x),
        BodyCase(
            "dataframe-split",
            '{"dataframe_split": {"columns": ["c1", "c2", "c3"],'
            ' "data": [[1, 2, 3], [-0.5, 0.25, 8]]}}',
            True,
            x,
        ),
        BodyCase(
            "dataframe-records",
            '{"dataframe_records": [{"c1": 1, "c2": 2, "c3": 3},'
            ' {"c1": -0.5, "c2": 0.25, "c3": 8}]}',
            True,
            x,
        ),
        BodyCase(
            "non-finite-tokens",
            "[[NaN, Infinity, -Infinity], [1, 2, 3]]",
            True,
            {"x": _f32([[np.nan, np.inf, -np.inf], [1, 2, 3]])},
        ),
        BodyCase("integers-for-floats", "[[1, 2, 3]]", True, {"x": _f32([[1, 2, 3]])}),
    ]
    bad = [
        BodyCase("wrong-width", f"[[{SECRET}, 2]]", False),
        BodyCase("nested-too-deep", "[[[1, 2, 3]]]", False),
        BodyCase("nested-past-the-limit", "[" * 100 + "]" * 100, False),
        BodyCase("text", '[["secret-cell", "b", "c"]]', False),
        BodyCase("wrong-key", f'{{"input": [[{SECRET}, 2, 3]]}}', False),
        BodyCase("unknown-input", '{"inputs": {"y": [[1, 2, 3]]}}', False),
        BodyCase("empty-object", "{}", False),
        BodyCase("malformed", "[[1, 2, 3]", False),
        BodyCase("trailing-garbage", "[[1, 2, 3]] x", False),
    ]
    return tuple(ok + bad)


# --- packing, and reading answers -------------------------------------------------------------


def corpus_models(root: Path) -> dict[str, CorpusModel]:
    """Pack both corpus models under ``root`` (once: kept if already there), with their cases."""
    import modelport

    specs = {
        "named": (_named_onnx, ("total",), named_cases),
        "single": (_single_onnx, ("y",), single_cases),
    }
    models = {}
    for name, (build, outputs, cases) in specs.items():
        path = root / f"corpus-{name}.mport"
        if not path.exists():
            root.mkdir(parents=True, exist_ok=True)
            modelport.pack(build(), path, name=f"corpus-{name}")
        models[name] = CorpusModel(name, path, outputs, cases())
    return models


def answer_outputs(answer: Any, output_names: Sequence[str]) -> dict[str, np.ndarray]:
    """``{output: array}`` out of a decoded ``{"predictions": …}`` answer (one or more outputs)."""
    predictions = answer["predictions"]
    if isinstance(predictions, Mapping):
        return {name: np.asarray(value, np.float32) for name, value in predictions.items()}
    (name,) = output_names
    return {name: np.asarray(predictions, np.float32)}


def expected_predictions(package: Path, case: BodyCase) -> dict[str, np.ndarray]:
    """What the package predicts in-process for an ``ok`` case (its ``outputs`` only, if named)."""
    from modelport.model_format.package import load

    assert case.ok and case.inputs is not None, case.name
    loaded = load(package)
    try:
        out = loaded.predict(dict(case.inputs))
    finally:
        loaded.close()
    names = case.outputs or tuple(out)
    return {name: np.asarray(out[name]) for name in names}


# --- modelport predict over the corpus --------------------------------------------------------
