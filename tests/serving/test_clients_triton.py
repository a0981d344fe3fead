"""tritonclient.http with request compression against ``/v2/models/{name}/infer``.

``InferenceServerClient.infer(..., request_compression_algorithm="gzip"|"deflate")`` compresses
the whole body (``gzip.compress`` / ``zlib.compress``) and sends ``Content-Encoding``; with binary
tensor data the ``Inference-Header-Content-Length`` header counts the uncompressed JSON header.
The decompressed size counts against ``--max-body-mb`` (the ``iris_server`` fixture: 0.5 MiB), so
a small body that inflates past it is a 413.
"""

from __future__ import annotations

import functools
import gzip
import zlib
from pathlib import Path

import numpy as np
import pytest
from clients.models import predict
from serving_support import Server, request

LIMIT_BYTES = int(0.5 * 1024 * 1024)


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
@pytest.mark.parametrize("algorithm", ["gzip", "deflate"])
def test_infer_with_request_compression(
    iris_server: Server, packages: dict[str, Path], iris_x: np.ndarray, algorithm: str, binary: bool
) -> None:
    import tritonclient.http as triton

    rows = iris_x[:6]
    client = triton.InferenceServerClient(iris_server.url.removeprefix("http://"))
    try:
        tensor = triton.InferInput("input", list(rows.shape), "FP32")
        tensor.set_data_from_numpy(rows, binary_data=binary)
        outputs = [
            triton.InferRequestedOutput(name, binary_data=binary)
            for name in ("label", "probabilities")
        ]
        result = client.infer(
            "iris",
            [tensor],
            outputs=outputs,
            request_id=f"{algorithm}-{binary}",
            request_compression_algorithm=algorithm,
        )
    finally:
        client.close()
    want = predict(packages["iris"], rows)
    assert result.get_response()["id"] == f"{algorithm}-{binary}"
    np.testing.assert_array_equal(result.as_numpy("label"), want["label"])
    np.testing.assert_array_equal(result.as_numpy("probabilities"), want["probabilities"])


@functools.cache
def _bomb(coding: str) -> bytes:
    """A V2 JSON body padded with whitespace to 64 MiB once inflated, ~64 KiB compressed."""
    text = b'{"inputs": [' + b" " * (64 * 1024 * 1024) + b"]}"
    return gzip.compress(text, 9) if coding == "gzip" else zlib.compress(text, 9)


@pytest.mark.parametrize("coding", ["gzip", "deflate"])
@pytest.mark.parametrize(
    ("path", "shape"),
    [("/v2/models/iris/infer", "v2"), ("/invocations", "mlflow"), ("/score", "azure")],
)
def test_a_compression_bomb_is_413(iris_server: Server, coding: str, path: str, shape: str) -> None:
    body = _bomb(coding)
    assert len(body) < LIMIT_BYTES  # the body itself is well within the limit
    resp = request(
        iris_server.url + path,
        "POST",
        body,
        {"Content-Type": "application/json", "Content-Encoding": coding},
    )
    assert resp.status == 413, (resp.status, resp.body[:300])
    answer = resp.json()
    message = {"v2": "error", "mlflow": "message", "azure": "message"}[shape]
    assert isinstance(answer[message], str), answer
    if shape == "mlflow":
        assert answer["error_code"] == "REQUEST_LIMIT_EXCEEDED"
    # The server is still there, and still answers.
    assert request(iris_server.url + "/v2/health/ready").status == 200


def test_compressed_body_within_the_limit_but_inflating_just_past_it_is_413(
    iris_server: Server,
) -> None:
    # A real tensor body, padded to one byte past the limit once inflated.
    head = b'{"inputs": [{"name": "input", "shape": [1, 4], "datatype": "FP32", "data": [1,2,3,4]}]'
    text = head + b" " * (LIMIT_BYTES + 1 - len(head) - 1) + b"}"
    assert len(text) == LIMIT_BYTES + 1
    resp = request(
        iris_server.url + "/v2/models/iris/infer",
        "POST",
        gzip.compress(text),
        {"Content-Type": "application/json", "Content-Encoding": "gzip"},
    )
    assert resp.status == 413, resp.body[:300]
    # One byte less is answered.
    text = head + b" " * (LIMIT_BYTES - len(head) - 1) + b"}"
    resp = request(
        iris_server.url + "/v2/models/iris/infer",
        "POST",
        gzip.compress(text),
        {"Content-Type": "application/json", "Content-Encoding": "gzip"},
    )
    assert resp.status == 200, resp.body[:300]
