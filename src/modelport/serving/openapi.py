"""The OpenAPI 3 document of the server, with the served model's own input and output schemas."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from modelport import __version__
from modelport.model_format.signature import DTYPES, Signature, TensorSpec
from modelport.serving.codec import DTYPE_TO_V2

ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["error"],
    "properties": {"error": {"type": "string"}},
    "additionalProperties": False,
}
_FLOAT32_MAX = float(np.finfo(np.float32).max)
_FLOAT16_MAX = float(np.finfo(np.float16).max)


def value_schema(dtype: str, *, output: bool = False) -> dict[str, Any]:
    """JSON schema of one element of a tensor of ``dtype``.

    Input numbers carry the dtype's range; output floats may also be null (NaN and infinities
    have no JSON form).
    """
    if dtype == "string":
        return {"type": "string"}
    if dtype == "bool" and output:
        return {"type": "boolean"}
    if dtype == "bool":
        # Signature enforcement also takes 0 and 1 for booleans (a lossless conversion).
        return {"anyOf": [{"type": "boolean"}, {"type": "integer", "minimum": 0, "maximum": 1}]}
    np_dtype = DTYPES[dtype]
    if np_dtype.kind in "iu":
        info = np.iinfo(np_dtype)
        return {"type": "integer", "minimum": int(info.min), "maximum": int(info.max)}
    if output:
        return {"type": "number", "nullable": True}
    bound = {"float16": _FLOAT16_MAX, "float32": _FLOAT32_MAX}.get(dtype)
    if bound is None:
        return {"type": "number"}
    return {"type": "number", "minimum": -bound, "maximum": bound}


def tensor_schema(dtype: str, shape: Sequence[int], *, output: bool = False) -> dict[str, Any]:
    """Nested-array JSON schema of a tensor; fixed dimensions have exact lengths."""
    schema = value_schema(dtype, output=output)
    for dim in reversed(shape):
        array: dict[str, Any] = {"type": "array", "items": schema}
        if dim >= 0:
            array["minItems"] = dim
            array["maxItems"] = dim
        elif not output:
            array["minItems"] = 1
        schema = array
    return schema


def _named(specs: Sequence[TensorSpec], *, rows: bool, output: bool = False) -> dict[str, Any]:
    """An object of name -> tensor (or, with ``rows``, name -> one row of it)."""
    return {
        "type": "object",
        "required": [s.name for s in specs],
        "properties": {
            s.name: tensor_schema(s.dtype, s.shape[1:] if rows else s.shape, output=output)
            for s in specs
        },
        "additionalProperties": False,
    }


def _inputs_schema(signature: Signature) -> dict[str, Any]:
    named = _named(signature.inputs, rows=False)
    if len(signature.inputs) == 1:
        spec = signature.inputs[0]
        return {"oneOf": [tensor_schema(spec.dtype, spec.shape), named]}
    return named


def _instance_schema(signature: Signature) -> dict[str, Any]:
    if len(signature.inputs) == 1:
        spec = signature.inputs[0]
        return tensor_schema(spec.dtype, spec.shape[1:])
    return _named(signature.inputs, rows=True)


_PARAMS = {"type": "object", "additionalProperties": True}
_CELL = {"oneOf": [{"type": "number"}, {"type": "string"}, {"type": "boolean"}]}


def _mlflow_request(signature: Signature) -> dict[str, Any]:
    def body(key: str, schema: dict[str, Any]) -> dict[str, Any]:
        return {
            "type": "object",
            "required": [key],
            "properties": {key: schema, "params": _PARAMS, "parameters": _PARAMS},
            "additionalProperties": False,
        }

    return {
        "oneOf": [
            body("inputs", _inputs_schema(signature)),
            body(
                "instances",
                {"type": "array", "minItems": 1, "items": _instance_schema(signature)},
            ),
            body(
                "dataframe_split",
                {
                    "type": "object",
                    "required": ["columns", "data"],
                    "properties": {
                        "columns": {"type": "array", "items": {"type": "string"}},
                        "data": {
                            "type": "array",
                            "minItems": 1,
                            "items": {"type": "array", "items": _CELL},
                        },
                        "index": {"type": "array"},
                    },
                },
            ),
            body(
                "dataframe_records",
                {
                    "type": "array",
                    "minItems": 1,
                    "items": {"type": "object", "additionalProperties": _CELL},
                },
            ),
        ]
    }


def _predictions(signature: Signature) -> dict[str, Any]:
    outputs = signature.outputs
    if len(outputs) == 1:
        value = tensor_schema(outputs[0].dtype, outputs[0].shape, output=True)
    else:
        value = _named(outputs, rows=False, output=True)
    return {
        "type": "object",
        "required": ["predictions"],
        "properties": {"predictions": value},
        "additionalProperties": False,
    }


def _row_predictions(signature: Signature) -> dict[str, Any]:
    outputs = signature.outputs
    if len(outputs) == 1:
        item = tensor_schema(outputs[0].dtype, outputs[0].shape[1:], output=True)
    else:
        item = _named(outputs, rows=True, output=True)
    return {
        "type": "object",
        "required": ["predictions"],
        "properties": {"predictions": {"type": "array", "items": item}},
        "additionalProperties": False,
    }


def _json(schema: Mapping[str, Any]) -> dict[str, Any]:
    return {"application/json": {"schema": dict(schema)}}


def _error(description: str) -> dict[str, Any]:
    return {"description": description, "content": _json({"$ref": "#/components/schemas/Error"})}


_ERRORS = {
    "400": "Bad input: malformed body, or inputs that do not match the model's signature.",
    "404": "Unknown model name or version.",
    "406": "None of the media types in Accept can be produced.",
    "413": "The body is larger than the server's limit.",
    "415": "Unsupported Content-Type or Content-Encoding.",
    "500": "The model failed while predicting (details are in the server's log).",
    "503": "The model is not loaded yet, or the server is overloaded.",
}


def _errors(*codes: str) -> dict[str, Any]:
    return {code: _error(_ERRORS[code]) for code in codes}


def _post(
    summary: str,
    request: dict[str, Any],
    ok: dict[str, Any],
    errors: Sequence[str],
    parameters: Sequence[dict[str, Any]] = (),
) -> dict[str, Any]:
    operation: dict[str, Any] = {
        "summary": summary,
        "requestBody": {"required": True, "content": request},
        "responses": {"200": ok, **_errors(*errors)},
    }
    if parameters:
        operation["parameters"] = list(parameters)
    return {"post": operation}


def _get(
    summary: str,
    ok: dict[str, Any],
    errors: Sequence[str] = (),
    parameters: Sequence[dict[str, Any]] = (),
) -> dict[str, Any]:
    operation: dict[str, Any] = {"summary": summary, "responses": {"200": ok, **_errors(*errors)}}
    if parameters:
        operation["parameters"] = list(parameters)
    return {"get": operation}


def _path_param(name: str, value: str) -> dict[str, Any]:
    # Any other value is a 404, which every operation documents.
    return {
        "name": name,
        "in": "path",
        "required": True,
        "schema": {"type": "string", "enum": [value]},
    }


def _v2_tensor(specs: Sequence[TensorSpec], *, with_data: bool) -> dict[str, Any]:
    properties: dict[str, Any] = {
        "name": {"type": "string", "enum": [s.name for s in specs]},
        "datatype": {"type": "string", "enum": sorted({DTYPE_TO_V2[s.dtype] for s in specs})},
        "shape": {"type": "array", "items": {"type": "integer", "minimum": 0}},
        "parameters": _PARAMS,
    }
    required = ["name", "datatype", "shape"]
    if with_data:
        properties["data"] = {"type": "array"}
        required.append("data")
    return {"type": "object", "required": required, "properties": properties}


def _v2_metadata_tensor(*, with_data: bool = False) -> dict[str, Any]:
    """A tensor in model metadata; ``with_data``: a response tensor (parameters, data)."""
    properties: dict[str, Any] = {
        "name": {"type": "string"},
        "datatype": {"type": "string"},
        "shape": {"type": "array", "items": {"type": "integer"}},
    }
    if with_data:
        properties |= {"parameters": _PARAMS, "data": {"type": "array"}}
    return {"type": "object", "required": ["name", "datatype", "shape"], "properties": properties}


def document(
    *,
    name: str,
    version: str,
    signature: Signature,
    health_route: str | None = None,
    predict_route: str | None = None,
) -> dict[str, Any]:
    """Build the OpenAPI 3.0 document of a server serving this model.

    Args:
        name: the package (model) name.
        version: the package version.
        signature: the model's signature, which gives the request and answer schemas.
        health_route: Vertex AI's health route, when the server has one.
        predict_route: Vertex AI's predict route, when the server has one.
    """
    empty_ok = {
        "description": "Ready.",
        "content": {"text/plain": {"schema": {"type": "string", "maxLength": 0}}},
    }
    predictions = {
        "description": "Predictions (columnar when the model has several outputs).",
        "content": {
            **_json(_predictions(signature)),
            "text/csv": {"schema": {"type": "string"}},
        },
    }
    request_formats = {
        **_json(_mlflow_request(signature)),
        "text/csv": {"schema": {"type": "string"}},
    }
    score_request = {
        "oneOf": [
            {
                "type": "object",
                "required": ["input_data"],
                "properties": {
                    "input_data": {
                        "oneOf": [
                            _inputs_schema(signature),
                            {
                                "type": "object",
                                "required": ["columns", "data"],
                                "properties": {
                                    "columns": {"type": "array", "items": {"type": "string"}},
                                    "data": {"type": "array", "items": {"type": "array"}},
                                    "index": {"type": "array"},
                                },
                            },
                        ]
                    },
                    "params": _PARAMS,
                },
                "additionalProperties": False,
            },
            _mlflow_request(signature),
        ]
    }
    v2_request = {
        "type": "object",
        "required": ["inputs"],
        "properties": {
            "id": {"type": "string"},
            "parameters": _PARAMS,
            "inputs": {
                "type": "array",
                "minItems": 1,
                "items": _v2_tensor(signature.inputs, with_data=True),
            },
            "outputs": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["name"],
                    "properties": {
                        "name": {"type": "string", "enum": list(signature.output_names)},
                        "parameters": _PARAMS,
                    },
                },
            },
        },
    }
    v2_response = {
        "type": "object",
        "required": ["model_name", "outputs"],
        "properties": {
            "model_name": {"type": "string"},
            "model_version": {"type": "string"},
            "id": {"type": "string"},
            "parameters": _PARAMS,
            "outputs": {"type": "array", "items": _v2_metadata_tensor(with_data=True)},
        },
    }
    v2_infer_ok = {
        "description": "Inference result (binary tensor data when asked for).",
        "content": {
            **_json(v2_response),
            "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
        },
    }
    v2_infer_request = {
        **_json(v2_request),
        "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
    }
    model_metadata = {
        "type": "object",
        "required": ["name", "versions", "platform", "inputs", "outputs"],
        "properties": {
            "name": {"type": "string"},
            "versions": {"type": "array", "items": {"type": "string"}},
            "platform": {"type": "string"},
            "inputs": {"type": "array", "items": _v2_metadata_tensor()},
            "outputs": {"type": "array", "items": _v2_metadata_tensor()},
        },
    }
    model_ready = {
        "type": "object",
        "required": ["name", "ready"],
        "properties": {"name": {"type": "string"}, "ready": {"type": "boolean"}},
    }
    name_param = _path_param("model_name", name)
    version_param = _path_param("model_version", version)
    paths: dict[str, Any] = {
        "/ping": _get(
            "SageMaker health check: 200 with an empty body once ready.", empty_ok, ["503"]
        ),
        "/invocations": _post(
            "SageMaker and MLflow scoring: inputs, instances, dataframe_split, dataframe_records "
            "or CSV with a header row.",
            request_formats,
            predictions,
            ["400", "406", "413", "415", "500", "503"],
        ),
        "/": _get(
            "Azure ML liveness.",
            {
                "description": "The server is up.",
                "content": _json(
                    {
                        "type": "object",
                        "required": ["status"],
                        "properties": {"status": {"type": "string"}},
                    }
                ),
            },
        ),
        "/score": _post(
            "Azure ML scoring: input_data (a tensor, named tensors or a columns/data table), or "
            "any /invocations JSON format.",
            _json(score_request),
            {"description": "Predictions.", "content": _json(_predictions(signature))},
            ["400", "413", "415", "500", "503"],
        ),
        "/v2": _get(
            "Open Inference Protocol: server metadata.",
            {
                "description": "Server metadata.",
                "content": _json(
                    {
                        "type": "object",
                        "required": ["name", "version", "extensions"],
                        "properties": {
                            "name": {"type": "string"},
                            "version": {"type": "string"},
                            "extensions": {"type": "array", "items": {"type": "string"}},
                        },
                    }
                ),
            },
        ),
        "/v2/health/live": _get(
            "Open Inference Protocol: server liveness.",
            {
                "description": "Live.",
                "content": _json({"type": "object", "properties": {"live": {"type": "boolean"}}}),
            },
        ),
        "/v2/health/ready": _get(
            "Open Inference Protocol: server readiness.",
            {
                "description": "Ready.",
                "content": _json({"type": "object", "properties": {"ready": {"type": "boolean"}}}),
            },
            ["503"],
        ),
    }
    for prefix, params in (
        ("/v2/models/{model_name}", [name_param]),
        ("/v2/models/{model_name}/versions/{model_version}", [name_param, version_param]),
    ):
        paths[prefix] = _get(
            "Open Inference Protocol: model metadata.",
            {"description": "Model metadata.", "content": _json(model_metadata)},
            ["404"],
            params,
        )
        paths[f"{prefix}/ready"] = _get(
            "Open Inference Protocol: model readiness.",
            {"description": "Ready.", "content": _json(model_ready)},
            ["404", "503"],
            params,
        )
        paths[f"{prefix}/infer"] = _post(
            "Open Inference Protocol: inference (JSON, or binary tensor data).",
            v2_infer_request,
            v2_infer_ok,
            ["400", "404", "413", "415", "500", "503"],
            params,
        )
    paths["/metrics"] = _get(
        "Prometheus metrics of all workers.",
        {
            "description": "Prometheus text format 0.0.4.",
            "content": {"text/plain": {"schema": {"type": "string"}}},
        },
    )
    paths["/openapi.json"] = _get(
        "This document.",
        {"description": "OpenAPI 3 document.", "content": _json({"type": "object"})},
    )
    if health_route:
        paths[health_route] = _get("Vertex AI health check.", empty_ok, ["503"])
    if predict_route:
        paths[predict_route] = _post(
            "Vertex AI prediction: {instances, parameters} -> {predictions}, one per row.",
            _json(
                {
                    "type": "object",
                    "required": ["instances"],
                    "properties": {
                        "instances": {
                            "type": "array",
                            "minItems": 1,
                            "items": _instance_schema(signature),
                        },
                        "parameters": _PARAMS,
                    },
                    "additionalProperties": False,
                }
            ),
            {"description": "Predictions.", "content": _json(_row_predictions(signature))},
            ["400", "413", "415", "500", "503"],
        )
    return {
        "openapi": "3.0.3",
        "info": {
            "title": f"modelport: {name}",
            "version": version,
            "description": f"Model {name!r} version {version!r}, served by modelport "
            f"{__version__}.",
        },
        "paths": paths,
        "components": {"schemas": {"Error": ERROR_SCHEMA}},
    }
