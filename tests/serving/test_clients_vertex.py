"""The Vertex AI SDK's ``Endpoint.predict`` over REST, through a fake of Vertex's front.

``aiplatform.init(api_endpoint="http://127.0.0.1:PORT", api_transport="rest",
credentials=AnonymousCredentials())`` points the SDK at :mod:`clients.vertex_front`, which forwards
each ``:predict`` body to a real ``modelport serve`` started as Vertex starts a container
(``AIP_PREDICT_ROUTE``, ``AIP_HEALTH_ROUTE``). The SDK's global configuration is a fresh one for
this module, put back afterwards. Nothing reaches a Google host: the credentials are
explicit (``google.auth.default`` is made to fail), and ``Endpoint.raw_predict`` (which goes to
Google's real host) is never called.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from clients.models import TablePackage, predict, table_columns, table_frame, table_package
from clients.vertex_front import DEPLOYED_MODEL_ID, Container, VertexFront
from serving_support import Server, start_server

NUMERIC = "projects/p/locations/us-central1/endpoints/111"
TABLE = "projects/p/locations/us-central1/endpoints/222"
VERTEX_ENV = {
    "AIP_PREDICT_ROUTE": "/v1/endpoints/e/deployedModels/d:predict",
    "AIP_HEALTH_ROUTE": "/v1/endpoints/e/deployedModels/d",
    "AIP_HTTP_PORT": "8080",  # what Vertex sets; --port 0 of the tests' servers wins
}
SECRET = 987654.125


@dataclass(frozen=True)
class Vertex:
    front: VertexFront
    numeric: Any  # aiplatform.Endpoint
    table: Any
    table_path: Path


def _no_default_credentials(*args: Any, **kwargs: Any) -> Any:
    raise AssertionError("google.auth.default() was called: a credential chain ran")


@pytest.fixture(scope="module")
def vertex(packages: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Vertex]:
    import google.auth
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import aiplatform
    from google.cloud.aiplatform import initializer

    table: TablePackage = table_package(tmp_path_factory)
    logs = tmp_path_factory.mktemp("vertex-logs")
    servers: list[Server] = []
    front: VertexFront | None = None
    saved_config = initializer.global_config
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(google.auth, "default", _no_default_credentials)
        patch.setattr(initializer, "global_config", initializer._Config())
        try:
            for path in (packages["iris"], table.path):
                servers.append(start_server(path, ["--workers", "1"], VERTEX_ENV, logs))
            front = VertexFront(
                {
                    NUMERIC: Container(servers[0].url, VERTEX_ENV["AIP_PREDICT_ROUTE"]),
                    TABLE: Container(servers[1].url, VERTEX_ENV["AIP_PREDICT_ROUTE"]),
                }
            ).start()
            # aiplatform.init is the import-time global config's bound init: call the same
            # method on this module's fresh config, so that nothing outlives the module.
            initializer.global_config.init(
                project="p",
                location="us-central1",
                credentials=AnonymousCredentials(),
                api_endpoint=front.url,
                api_transport="rest",
            )
            yield Vertex(
                front, aiplatform.Endpoint(NUMERIC), aiplatform.Endpoint(TABLE), table.path
            )
        finally:
            if front is not None:
                front.stop()
            for server in servers:
                assert server.stop() == 0, server.log()
    assert initializer.global_config is saved_config


def test_numeric_model_plain_lists(
    vertex: Vertex, packages: dict[str, Path], iris_x: np.ndarray
) -> None:
    rows = iris_x[:5]
    prediction = vertex.numeric.predict(instances=rows.tolist(), parameters={"anything": 1})
    want = predict(packages["iris"], rows)
    assert prediction.deployed_model_id == DEPLOYED_MODEL_ID
    assert len(prediction.predictions) == 5
    for i, row in enumerate(prediction.predictions):
        assert set(row) == {"label", "probabilities"}
        assert row["label"] == want["label"][i]  # a protobuf Value: 1.0 for 1
        np.testing.assert_array_equal(
            np.asarray(row["probabilities"], np.float32), want["probabilities"][i]
        )


def test_dataframe_model_row_objects(vertex: Vertex) -> None:
    frame = table_frame(6, seed=31)
    prediction = vertex.table.predict(instances=frame.to_dict(orient="records"))
    want = predict(vertex.table_path, table_columns(frame))
    assert [row["label"] for row in prediction.predictions] == want["label"].tolist()
    np.testing.assert_array_equal(
        np.array([row["probabilities"] for row in prediction.predictions], np.float32),
        want["probabilities"],
    )


def test_parameters_outputs_names_the_outputs(
    vertex: Vertex, packages: dict[str, Path], iris_x: np.ndarray
) -> None:
    # One output named: each row's prediction is that output's value (no object around it).
    prediction = vertex.numeric.predict(
        instances=iris_x[:2].tolist(), parameters={"outputs": ["label"]}
    )
    assert prediction.predictions == predict(packages["iris"], iris_x[:2])["label"].tolist()
    both = vertex.numeric.predict(
        instances=iris_x[:2].tolist(), parameters={"outputs": ["probabilities", "label"]}
    )
    assert [set(row) for row in both.predictions] == [{"label", "probabilities"}] * 2


def test_an_error_raises_bad_request_with_the_servers_message(vertex: Vertex) -> None:
    from google.api_core import exceptions

    with pytest.raises(exceptions.BadRequest) as excinfo:
        vertex.numeric.predict(instances=[[SECRET, 2.0, 3.0]])  # 3 values, 4 expected
    error = excinfo.value
    assert error.code == 400
    assert "'input'" in error.message  # the server's own message names the input
    assert "987654" not in error.message
    # The body the SDK parsed is Google's error shape, from the container itself.
    last = vertex.front.seen[-1]
    assert last.method == "POST" and last.path.split("?")[0].endswith(":predict")


def test_unknown_column_raises_bad_request(vertex: Vertex) -> None:
    from google.api_core import exceptions

    with pytest.raises(exceptions.BadRequest) as excinfo:
        vertex.table.predict(instances=[{"num": SECRET, "colour": "secret-cell"}])
    assert "987654" not in excinfo.value.message
    assert "secret-cell" not in excinfo.value.message


def test_the_sdk_sent_anonymous_requests_to_the_fake_only(vertex: Vertex) -> None:
    vertex.numeric.predict(instances=[[0.0, 0.0, 0.0, 0.0]])
    assert vertex.front.seen
    for seen in vertex.front.seen:
        assert seen.headers["host"] == vertex.front.url.removeprefix("http://")
        assert "authorization" not in seen.headers  # AnonymousCredentials: no token fetched
    posts = [s for s in vertex.front.seen if s.method == "POST"]
    assert json.loads(posts[-1].body) == {"instances": [[0.0, 0.0, 0.0, 0.0]]}
