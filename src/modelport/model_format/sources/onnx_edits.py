"""Edits the converting sources make to a converted ONNX graph, before it is checked and staged."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

#: skl2onnx's name for a regressor's output, and the name modelport gives it.
RENAMED_OUTPUTS = {"variable": "prediction"}
#: Internal name of the feature matrix when a numeric table's columns are joined in the graph.
MATRIX_INPUT = "modelport_features"


def join_columns(model: Any, columns: Mapping[str, np.ndarray]) -> Any:
    """Give ``model`` one ``[N, 1]`` input per column, joined into its matrix input in the graph."""
    from onnx import TensorProto, helper

    graph = model.graph
    nodes = []
    joined = []
    new_inputs = []
    for i, (name, values) in enumerate(columns.items()):
        is_float = values.dtype.kind == "f"
        elem = TensorProto.FLOAT if is_float else TensorProto.INT64
        new_inputs.append(helper.make_tensor_value_info(name, elem, [None, 1]))
        if is_float:
            joined.append(name)
        else:
            cast = f"{MATRIX_INPUT}_cast_{i}"
            nodes.append(helper.make_node("Cast", [name], [cast], to=TensorProto.FLOAT))
            joined.append(cast)
    nodes.append(helper.make_node("Concat", joined, [MATRIX_INPUT], axis=1))
    old_nodes = list(graph.node)
    del graph.node[:]
    graph.node.extend(nodes + old_nodes)
    del graph.input[:]
    graph.input.extend(new_inputs)
    return model


def joined_feed(columns: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The columns as :func:`join_columns` declares them: floats float32, the rest int64."""
    return {
        n: np.asarray(v).astype(np.float32 if v.dtype.kind == "f" else np.int64).reshape(-1, 1)
        for n, v in columns.items()
    }


def rename_outputs(model: Any) -> None:
    """Rename the converters' output names to modelport's (:data:`RENAMED_OUTPUTS`), in place."""
    graph_outputs = {o.name for o in model.graph.output}
    taken = graph_outputs | {i.name for i in model.graph.input}
    taken |= {name for node in model.graph.node for name in (*node.input, *node.output)}
    for old, new in RENAMED_OUTPUTS.items():
        if old not in graph_outputs or new in taken:
            continue
        for node in model.graph.node:
            node.input[:] = [new if n == old else n for n in node.input]
            node.output[:] = [new if n == old else n for n in node.output]
        for output in model.graph.output:
            if output.name == old:
                output.name = new
