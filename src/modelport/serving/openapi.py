"""The OpenAPI 3 document of the server, with the served model's own input and output schemas.

Each route's error answers are described in its protocol's shape (exactly what
:func:`modelport.serving.answers.error_body` writes for that status): :func:`error_schema`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from modelport import __version__
from modelport.model_format.signature import DTYPES, Signature, TensorSpec, largest_finite
from modelport.serving.answers import Protocol, google_status, mlflow_error_code
from modelport.serving.codec import DTYPE_TO_V2

#: The plain error shape (``/metrics``, ``/openapi.json``, unknown paths), V2's too.
ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["error"],
    "properties": {"error": {"type": "string"}},
    "additionalProperties": False,
}
#: An output float: a number, or a non-finite one written as Python's json module does (NaN,
#: Infinity, -Infinity). Validators differ on whether those tokens are numbers (jsonschema-rs
#: says no), so the schema says what the value is not.
_OUTPUT_FLOAT: dict[str, Any] = {
    "description": "A number, or one of the tokens NaN, Infinity, -Infinity.",
    "not": {"anyOf": [{"type": t} for t in ("string", "boolean", "object", "array")]},
}


_FLOAT32_MAX = largest_finite(np.float32)
_FLOAT16_MAX = largest_finite(np.float16)


def error_schema(protocol: Protocol, status: int) -> dict[str, Any]:
    """JSON schema of an error answer with ``status`` on a route speaking ``protocol``."""
    if protocol is Protocol.MLFLOW:
        return _closed(
            {
                "error_code": {"type": "string", "enum": [mlflow_error_code(status)]},
                "message": {"type": "string"},
            }
        )
    if protocol is Protocol.VERTEX:
        google = _closed(
            {
                "code": {"type": "integer", "enum": [status]},
                "message": {"type": "string"},
                "status": {"type": "string", "enum": [google_status(status)]},
            }
        )
        return _closed({"error": google})
    if protocol is Protocol.AZURE:
        return _closed({"message": {"type": "string"}})
    return dict(ERROR_SCHEMA)


def _closed(properties: dict[str, Any]) -> dict[str, Any]:
    """An object with exactly these properties."""
    return {
        "type": "object",
        "required": list(properties),
        "properties": properties,
        "additionalProperties": False,
    }


def value_schema(dtype: str, *, output: bool = False) -> dict[str, Any]:
    """JSON schema of one element of a tensor of ``dtype``.

    Input numbers carry the dtype's range; output floats may also be NaN, Infinity or -Infinity
    (the JSON tokens Python's json module reads and writes).
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
        return dict(_OUTPUT_FLOAT)
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


def _is_frame_column(spec: TensorSpec) -> bool:
    """A ``[-1, 1]`` input: one value per row (a DataFrame column)."""
    return len(spec.shape) == 2 and spec.shape[0] < 0 and spec.shape[1] == 1


def input_schema(spec: TensorSpec, *, rows: bool = False) -> dict[str, Any]:
    """JSON schema of an input's value (with ``rows``: of one row of it).

    A ``[-1, 1]`` column also takes a flat list (one value per row) and a scalar (one row),
    as every body form does.
    """
    shape = spec.shape[1:] if rows else spec.shape
    schema = tensor_schema(spec.dtype, shape)
    if not _is_frame_column(spec):
        return schema
    value = value_schema(spec.dtype)
    if rows:
        return {"anyOf": [schema, value]}
    return {"anyOf": [schema, tensor_schema(spec.dtype, [-1]), value]}


def _output_schemas(spec: TensorSpec, *, rows: bool) -> list[dict[str, Any]]:
    """The forms of an output's value: as is, and flat for an ``[n, 1]`` output (``mlflow``)."""
    shape = spec.shape[1:] if rows and spec.shape else spec.shape
    forms = [tensor_schema(spec.dtype, shape, output=True)]
    if len(spec.shape) == 2 and spec.shape[1] == 1:
        flat = spec.shape[:1] if not rows else []
        forms.append(tensor_schema(spec.dtype, flat, output=True))
    return forms


def _named(specs: Sequence[TensorSpec], *, rows: bool) -> dict[str, Any]:
    """An object of input name -> tensor (or, with ``rows``, name -> one row of it)."""
    return {
        "type": "object",
        "required": [s.name for s in specs],
        "properties": {s.name: input_schema(s, rows=rows) for s in specs},
        "additionalProperties": False,
    }


def _outputs(specs: Sequence[TensorSpec], *, rows: bool) -> dict[str, Any]:
    """What an answer holds of the outputs: one output's value, or an object of some of them.

    A request may name the outputs it wants (``params.outputs``), and one output is answered
    as its value alone, so every output may be absent and each may stand alone.
    """
    forms = [form for spec in specs for form in _output_schemas(spec, rows=rows)]
    if len(specs) == 1:
        return forms[0] if len(forms) == 1 else {"anyOf": forms}
    named = {
        "type": "object",
        "minProperties": 1,
        "properties": {s.name: _one_of_forms(_output_schemas(s, rows=rows)) for s in specs},
        "additionalProperties": False,
    }
    return {"anyOf": [named, *forms]}


def _one_of_forms(forms: list[dict[str, Any]]) -> dict[str, Any]:
    return forms[0] if len(forms) == 1 else {"anyOf": forms}


def _inputs_schema(signature: Signature) -> dict[str, Any]:
    named = _named(signature.inputs, rows=False)
    if len(signature.inputs) == 1:
        return {"oneOf": [input_schema(signature.inputs[0]), named]}
    return named


def _instance_schema(signature: Signature) -> dict[str, Any]:
    if len(signature.inputs) == 1:
        return input_schema(signature.inputs[0], rows=True)
    return _named(signature.inputs, rows=True)


def _bare_array(signature: Signature) -> dict[str, Any]:
    """A bare JSON array body: the tensor (one input), else records (rows as objects)."""
    if len(signature.inputs) == 1:
        spec = signature.inputs[0]
        schema = input_schema(spec)
        if _is_frame_column(spec):
            # A bare body is an array: not the scalar form of a column.
            return {
                "anyOf": [tensor_schema(spec.dtype, spec.shape), tensor_schema(spec.dtype, [-1])]
            }
        return schema
    return {"type": "array", "minItems": 1, "items": _named(signature.inputs, rows=True)}


_PARAMS = {"type": "object", "additionalProperties": True}
_CELL = {"oneOf": [{"type": "number"}, {"type": "string"}, {"type": "boolean"}]}


def _choosing_outputs(signature: Signature) -> dict[str, Any]:
    """``params`` (``parameters`` on Vertex AI): free, but ``outputs`` names model outputs.

    Either may be null, which is the same as leaving it out (every output).
    """
    return {
        "type": "object",
        "nullable": True,
        "properties": {
            "outputs": {
                "type": "array",
                "nullable": True,
                "minItems": 1,
                "items": {"type": "string", "enum": list(signature.output_names)},
            }
        },
        "additionalProperties": True,
    }


def _mlflow_request(signature: Signature) -> dict[str, Any]:
    params = _choosing_outputs(signature)

    def body(key: str, schema: dict[str, Any]) -> dict[str, Any]:
        return {
            "type": "object",
            "required": [key],
            "properties": {key: schema, "params": params, "parameters": _PARAMS},
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
    return {
        "type": "object",
        "required": ["predictions"],
        "properties": {"predictions": _outputs(signature.outputs, rows=False)},
        "additionalProperties": False,
    }


def _row_predictions(signature: Signature) -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["predictions"],
        "properties": {
            "predictions": {"type": "array", "items": _outputs(signature.outputs, rows=True)}
        },
        "additionalProperties": False,
    }


def _json(schema: Mapping[str, Any]) -> dict[str, Any]:
    return {"application/json": {"schema": dict(schema)}}


_BINARY = {"schema": {"type": "string", "format": "binary"}}
_TEXT = {"schema": {"type": "string"}}

_ERRORS = {
    400: "Bad input: malformed body, or inputs that do not match the model's signature.",
    404: "Unknown model name or version.",
    406: "None of the media types in Accept can be produced.",
    413: "The body (decompressed) is larger than the server's limit.",
    415: "Unsupported Content-Type or Content-Encoding.",
    500: "The model failed while predicting (details are in the server's log).",
    503: "The model is not loaded yet, or the server is overloaded (Retry-After says when).",
}
_RETRY_AFTER = {
    "Retry-After": {
        "description": "Seconds after which the request may be retried.",
        "schema": {"type": "integer", "minimum": 0},
    }
}


def _errors(protocol: Protocol, codes: Sequence[int]) -> dict[str, Any]:
    responses: dict[str, Any] = {}
    for code in codes:
        response: dict[str, Any] = {
            "description": _ERRORS[code],
            "content": _json(error_schema(protocol, code)),
        }
        if code == 503:
            response["headers"] = dict(_RETRY_AFTER)
        responses[str(code)] = response
    return responses


def _post(
    summary: str,
    request: dict[str, Any],
    ok: dict[str, Any],
    errors: Sequence[int],
    protocol: Protocol,
    parameters: Sequence[dict[str, Any]] = (),
) -> dict[str, Any]:
    operation: dict[str, Any] = {
        "summary": summary,
        "requestBody": {"required": True, "content": request},
        "responses": {"200": ok, **_errors(protocol, errors)},
    }
    if parameters:
        operation["parameters"] = list(parameters)
    return {"post": operation}


def _get(
    summary: str,
    ok: dict[str, Any],
    protocol: Protocol = Protocol.PLAIN,
    errors: Sequence[int] = (),
    parameters: Sequence[dict[str, Any]] = (),
) -> dict[str, Any]:
    operation: dict[str, Any] = {
        "summary": summary,
        "responses": {"200": ok, **_errors(protocol, errors)},
    }
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


#: Request bodies ``POST /invocations`` reads besides JSON (CSV takes ``header=present|absent``).
INVOCATIONS_REQUEST_TYPES = (
    "text/csv",
    "application/x-npy",
    "application/jsonlines",
    "application/vnd.apache.parquet",
)
#: Answers ``POST /invocations`` gives, as the Accept header asks.
INVOCATIONS_ANSWER_TYPES = (
    "application/json",
    "text/csv",
    "application/x-npy",
    "application/jsonlines",
)
_BINARY_TYPES = frozenset({"application/x-npy", "application/vnd.apache.parquet"})


def _invocations(signature: Signature, predictions: dict[str, Any]) -> dict[str, Any]:
    # The MLflow objects first (their order is what the document has always said), then an array.
    formats = [*_mlflow_request(signature)["oneOf"], _bare_array(signature)]
    request: dict[str, Any] = _json({"oneOf": formats})
    for media_type in INVOCATIONS_REQUEST_TYPES:
        request[media_type] = dict(_BINARY if media_type in _BINARY_TYPES else _TEXT)
    ok_content: dict[str, Any] = {}
    for media_type in INVOCATIONS_ANSWER_TYPES:
        if media_type == "application/json":
            ok_content.update(_json(predictions))
        else:
            ok_content[media_type] = dict(_BINARY if media_type in _BINARY_TYPES else _TEXT)
    ok = {
        "description": "Predictions, in the media type Accept asks for (JSON by default): "
        "columnar JSON when the model has several outputs; CSV rows (a header row with "
        "`text/csv; header=present`); one .npy array (a structured one for several outputs); "
        "one JSON line per row.",
        "headers": {
            "Modelport-Ignored-Columns": {
                "description": "Columns of a CSV or table body that are not model inputs "
                "(comma-separated), which were ignored.",
                "schema": {"type": "string"},
            }
        },
        "content": ok_content,
    }
    return _post(
        "SageMaker and MLflow scoring: JSON (inputs, instances, dataframe_split, "
        "dataframe_records, or a bare array: the tensor of a one-input model, else records), "
        "CSV (`header=present|absent`; without it, a first row naming the inputs is a header), "
        ".npy, JSON lines or Parquet; `params.outputs` picks outputs.",
        request,
        ok,
        [400, 406, 413, 415, 500, 503],
        Protocol.MLFLOW,
    )


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
    predictions = _predictions(signature)
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
                    "params": _choosing_outputs(signature),
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
        "content": {**_json(v2_response), "application/octet-stream": dict(_BINARY)},
    }
    v2_infer_request = {**_json(v2_request), "application/octet-stream": dict(_BINARY)}
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
    mlflow, v2 = Protocol.MLFLOW, Protocol.V2
    paths: dict[str, Any] = {
        "/ping": _get(
            "SageMaker health check: 200 with an empty body once ready.", empty_ok, mlflow, [503]
        ),
        "/health": _get(
            "MLflow health check (as /ping): 200 with an empty body once ready.",
            empty_ok,
            mlflow,
            [503],
        ),
        "/version": _get(
            "The modelport version serving (MLflow's client reads it as text).",
            {
                "description": "The version.",
                "content": {"text/plain": {"schema": {"type": "string", "minLength": 1}}},
            },
            mlflow,
        ),
        "/invocations": _invocations(signature, predictions),
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
            Protocol.AZURE,
        ),
        "/score": _post(
            "Azure ML scoring: input_data (a tensor, named tensors or a columns/data table), or "
            "any /invocations JSON format; `params.outputs` picks outputs. Answered as Azure "
            "ML's MLflow scoring script does: the predictions alone (a list for one output, "
            "an object of lists for several).",
            _json(score_request),
            {
                "description": "Predictions.",
                "content": _json(_outputs(signature.outputs, rows=False)),
            },
            [400, 413, 415, 500, 503],
            Protocol.AZURE,
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
            v2,
        ),
        "/v2/health/live": _get(
            "Open Inference Protocol: server liveness.",
            {
                "description": "Live.",
                "content": _json({"type": "object", "properties": {"live": {"type": "boolean"}}}),
            },
            v2,
        ),
        "/v2/health/ready": _get(
            "Open Inference Protocol: server readiness.",
            {
                "description": "Ready.",
                "content": _json({"type": "object", "properties": {"ready": {"type": "boolean"}}}),
            },
            v2,
            [503],
        ),
    }
    for prefix, params in (
        ("/v2/models/{model_name}", [name_param]),
        ("/v2/models/{model_name}/versions/{model_version}", [name_param, version_param]),
    ):
        paths[prefix] = _get(
            "Open Inference Protocol: model metadata.",
            {"description": "Model metadata.", "content": _json(model_metadata)},
            v2,
            [404],
            params,
        )
        paths[f"{prefix}/ready"] = _get(
            "Open Inference Protocol: model readiness.",
            {"description": "Ready.", "content": _json(model_ready)},
            v2,
            [404, 503],
            params,
        )
        paths[f"{prefix}/infer"] = _post(
            "Open Inference Protocol: inference (JSON, or binary tensor data).",
            v2_infer_request,
            v2_infer_ok,
            [400, 404, 413, 415, 500, 503],
            v2,
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
        paths[health_route] = _get("Vertex AI health check.", empty_ok, Protocol.VERTEX, [503])
    if predict_route:
        paths[predict_route] = _post(
            "Vertex AI prediction: {instances, parameters} -> {predictions}, one per row; "
            "`parameters.outputs` picks outputs.",
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
                        "parameters": _choosing_outputs(signature),
                    },
                    "additionalProperties": False,
                }
            ),
            {"description": "Predictions.", "content": _json(_row_predictions(signature))},
            [400, 413, 415, 500, 503],
            Protocol.VERTEX,
        )
    return {
        "openapi": "3.0.3",
        "info": {
            "title": f"modelport: {name}",
            "version": version,
            "description": f"Model {name!r} version {version!r}, served by modelport "
            f"{__version__}. Errors come in each protocol's own shape: MLflow's "
            '{"error_code", "message"} on /ping, /health, /version and /invocations; '
            '{"error": {"code", "message", "status"}} (Google\'s) on Vertex AI\'s routes; '
            '{"message"} on Azure ML\'s; {"error"} on the Open Inference Protocol\'s and '
            "everywhere else.",
        },
        "paths": paths,
    }
