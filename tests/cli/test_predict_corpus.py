"""``modelport predict`` and ``modelport serve`` accept exactly the same JSON bodies.

Every body of the shared corpus (``tests/bodies_corpus.py``) goes to ``modelport predict -i FILE``
and to a real server's ``POST /invocations``: the same ones are answered (exit 0, 200) with the
same text and the predictions the package itself gives, and the same ones are refused (exit 1,
400, in MLflow's error shape), neither quoting the body.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from cli_serving import Served, start

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
from modelport.cli.main import main

CASES = [("named", c) for c in named_cases()] + [("single", c) for c in single_cases()]


@pytest.fixture(scope="module")
def corpus(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[dict[str, tuple[CorpusModel, Served]]]:
    models = corpus_models(tmp_path_factory.mktemp("cli-corpus"))
    logs = tmp_path_factory.mktemp("cli-corpus-logs")
    servers: dict[str, tuple[CorpusModel, Served]] = {}
    try:
        for name, model in models.items():
            servers[name] = (model, start(model.path, log_dir=logs))
        yield servers
    finally:
        for _, server in servers.values():
            assert server.stop() == 0, server.log()


@pytest.mark.parametrize(
    ("model", "case"), CASES, ids=[f"{m}-{c.name}-{'ok' if c.ok else 'refused'}" for m, c in CASES]
)
def test_predict_and_serve_take_the_same_bodies(
    corpus: dict[str, tuple[CorpusModel, Served]],
    model: str,
    case: BodyCase,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    package, server = corpus[model]
    body = tmp_path / "body.json"
    body.write_text(case.body, "utf-8")
    code = main(["predict", str(package.path), "-i", str(body)])
    printed, err = capsys.readouterr()
    answer = server.post("/invocations", case.body.encode(), {"Content-Type": "application/json"})

    if not case.ok:
        assert (code, answer.status) == (1, 400), (err, answer.body[:300])
        refusal = json.loads(answer.body)
        assert refusal["error_code"] == "BAD_REQUEST" and "message" in refusal, refusal
        for text in (err, refusal["message"]):
            assert SECRET not in text and "secret-cell" not in text, text
        assert err.startswith("Error: ") and "Traceback" not in err
        return
    assert (code, answer.status) == (0, 200), (err, answer.body[:300])
    assert printed.encode() == answer.body + b"\n"  # the same text, number for number
    got = answer_outputs(json.loads(printed), package.output_names)  # NaN tokens read as NaN
    want = expected_predictions(package.path, case)
    assert set(got) == set(want)
    for name, value in want.items():
        np.testing.assert_array_equal(got[name], value.astype(np.float32), err_msg=name)


def test_the_corpus_holds_both_kinds_of_bodies() -> None:
    for cases in (named_cases(), single_cases()):
        assert any(c.ok for c in cases) and any(not c.ok for c in cases)
