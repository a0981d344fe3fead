"""The shared body corpus (``tests/bodies_corpus.py``) posted to a real ``modelport serve``.

Each body is answered (200, predictions equal to the package's own) or refused (400 in MLflow's
error shape, quoting nothing of the body), as the corpus says. ``tests/cli/test_predict_corpus.py``
feeds the same bodies to ``modelport predict``, which must accept exactly the bodies the server
accepts and print the same text.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import numpy as np
import pytest
from serving_support import Server, request, start_server

from bodies_corpus import (
    SECRET,
    BodyCase,
    CorpusModel,
    answer_outputs,
    corpus_models,
    expected_predictions,
    named_cases,
    single_cases,
)

CASES = [("named", c) for c in named_cases()] + [("single", c) for c in single_cases()]


@pytest.fixture(scope="module")
def corpus(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[dict[str, tuple[CorpusModel, Server]]]:
    models = corpus_models(tmp_path_factory.mktemp("corpus"))
    logs = tmp_path_factory.mktemp("corpus-logs")
    servers: dict[str, tuple[CorpusModel, Server]] = {}
    try:
        for name, model in models.items():
            servers[name] = (model, start_server(model.path, ["--workers", "1"], log_dir=logs))
        yield servers
    finally:
        for _, server in servers.values():
            assert server.stop() == 0, server.log()


@pytest.mark.parametrize(
    ("model", "case"), CASES, ids=[f"{m}-{c.name}-{'ok' if c.ok else 'refused'}" for m, c in CASES]
)
def test_corpus_body(
    corpus: dict[str, tuple[CorpusModel, Server]], model: str, case: BodyCase
) -> None:
    package, server = corpus[model]
    resp = request(
        server.url + "/invocations",
        "POST",
        case.body.encode(),
        {"Content-Type": "application/json"},
    )
    if not case.ok:
        assert resp.status == 400, (resp.status, resp.body[:300])
        answer = resp.json()
        assert answer["error_code"] == "BAD_REQUEST", answer
        assert SECRET not in answer["message"] and "secret-cell" not in answer["message"]
        return
    assert resp.status == 200, resp.body[:300]
    got = answer_outputs(json.loads(resp.body), package.output_names)  # NaN tokens read as NaN
    want = expected_predictions(package.path, case)
    assert set(got) == set(want)
    for name, value in want.items():
        np.testing.assert_array_equal(got[name], value.astype(np.float32), err_msg=name)
