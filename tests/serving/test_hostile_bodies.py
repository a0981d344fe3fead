"""Hostile request bodies: deep nesting, too many values, absurd V2 shapes, lone surrogates,
huge or marked-up names. Each is a 400 in its protocol's error shape, cheap to refuse, and never
a traceback in the log.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from serving_support import Server, error_message, post_json, protocol_of, request, start_server
from test_app import ROW, error_of, make_app, post

from modelport.errors import InputError, quote_name
from modelport.model_format import jsontext
from modelport.model_format.signature import JsonBooleans, has_boolean
from modelport.serving import codec
from modelport.serving.config import ServeConfig

JSON_ROUTES = ("/invocations", "/score", "/vertex/predict", "/v2/models/iris/infer")
MIB = 1024 * 1024


@pytest.fixture
def app(packages: dict[str, Path], tmp_path: Path) -> Iterator[Flask]:
    """The classifier with the server's default limits and Vertex AI's predict route."""
    with make_app(packages["iris"], tmp_path, predict_route="/vertex/predict") as app:
        yield app


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


def _wrap(path: str, tensor: bytes) -> bytes:
    """A request for ``path`` whose one tensor is the JSON text ``tensor``."""
    if path.startswith("/v2/"):
        head = b'{"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 4], "data": '
        return head + tensor + b"}]}"
    if path == "/vertex/predict":
        return b'{"instances": ' + tensor + b"}"
    return b'{"inputs": ' + tensor + b"}"


def _post_raw(client: FlaskClient, path: str, body: bytes) -> Any:
    return client.post(path, data=body, content_type="application/json")


# --- the check on the raw bytes ----------------------------------------------------------------


def _random_json(rng: random.Random, depth: int) -> Any:
    kind = rng.random()
    if depth > 0 and kind < 0.35:
        return [_random_json(rng, depth - 1) for _ in range(rng.randrange(4))]
    if depth > 0 and kind < 0.55:
        return {_random_text(rng): _random_json(rng, depth - 1) for _ in range(rng.randrange(3))}
    if kind < 0.8:
        return _random_text(rng)
    return rng.choice([0, -1.5, 1e300, True, False, None])


def _random_text(rng: random.Random) -> str:
    # Every character that could fool a scan that is not string-aware, and those the scan takes
    # out before it looks (digits, signs, points, E and space: a number's), beside backslashes.
    return "".join(rng.choice('ab[]{},"\\/\n\u2028é09-+.Ee \t') for _ in range(rng.randrange(6)))


def _depth(value: Any) -> int:
    if isinstance(value, list):
        return 1 + max(map(_depth, value), default=0)
    if isinstance(value, dict):
        return 1 + max(map(_depth, value.values()), default=0)
    return 0


def _counted_values(value: Any) -> int:
    """What the check counts: every value, plus one for each empty array or object."""
    return 1 + _containers_and_commas(value)


def _containers_and_commas(value: Any) -> int:
    if not isinstance(value, list | dict):
        return 0
    children = list(value.values()) if isinstance(value, dict) else value
    return 1 + max(len(children) - 1, 0) + sum(map(_containers_and_commas, children))


def test_the_check_on_the_bytes_is_exact_for_strings_escapes_and_empties() -> None:
    rng = random.Random(7)
    for _ in range(400):
        value = _random_json(rng, rng.randrange(1, 8))
        plain = json.dumps(value)
        # json.dumps never escapes a slash; JSON may (a slash is only ever inside a string).
        texts = (plain, json.dumps(value, ensure_ascii=False, indent=1), plain.replace("/", "\\/"))
        for text in texts:
            body = text.encode()
            depth, values = _depth(value), _counted_values(value)
            jsontext.check_json_size(body, max_depth=depth, max_values=values)
            if depth:
                with pytest.raises(InputError, match=f"deeper than {depth - 1} levels"):
                    jsontext.check_json_size(body, max_depth=depth - 1, max_values=values)
            with pytest.raises(InputError, match=f"more than {values - 1} values"):
                jsontext.check_json_size(body, max_depth=depth, max_values=values - 1)


def test_the_one_scan_never_misses_a_boolean() -> None:
    # The body's skeleton (numbers and space taken out) keeps every true and false whole: a
    # boolean is never read as a number (a string that spells one only costs the walk).
    rng = random.Random(11)
    for _ in range(400):
        value = _random_json(rng, rng.randrange(1, 8))
        for text in (json.dumps(value), json.dumps(value, indent=1), json.dumps([value, 2.5])):
            decoded, booleans = jsontext.loads_with_booleans(text.encode())
            assert decoded == json.loads(text)
            if has_boolean(decoded):
                assert booleans is JsonBooleans.POSSIBLE
    assert jsontext.loads_with_booleans(b"[1.5e-05, -2E+3]")[1] is JsonBooleans.ABSENT
    assert jsontext.loads_with_booleans(b"[1.5e-05,\ttrue]")[1] is JsonBooleans.POSSIBLE


def test_brackets_inside_strings_are_not_nesting() -> None:
    deep_text = json.dumps({"inputs": "[" * 500 + "{" * 500, "x": '\\"[[[[' * 100}).encode()
    jsontext.check_json_size(deep_text, max_depth=1, max_values=3)


# --- deep nesting and too many values ----------------------------------------------------------


@pytest.mark.parametrize("path", JSON_ROUTES)
def test_deep_nesting_is_400_naming_the_limit(client: FlaskClient, path: str) -> None:
    # A boolean beside the deep list sent the recursive boolean walk past Python's recursion
    # limit: a RecursionError, a 500 and a 132 KB traceback in the log.
    deep = b"[" * 340 + b"]" * 340
    for tensor in (b"[" + deep + b", true]", b"[" + deep + b"]", deep):
        message = error_of(_post_raw(client, path, _wrap(path, tensor)), 400)
        assert message == "the JSON body nests deeper than 64 levels (the limit)"


@pytest.mark.parametrize("path", JSON_ROUTES)
def test_nesting_at_the_limit_is_decoded(client: FlaskClient, path: str) -> None:
    depth_of_wrapping = 3 if path.startswith("/v2/") else 1
    inner = 64 - depth_of_wrapping
    body = _wrap(path, b"[" * inner + b"]" * inner)
    # Decoded, and then refused for what it is (no tensor has 60 dimensions), not for its depth.
    assert "deeper" not in error_of(_post_raw(client, path, body), 400)


@pytest.mark.parametrize("path", JSON_ROUTES)
def test_too_many_values_is_400_before_decoding(client: FlaskClient, path: str) -> None:
    # Two million empty lists in 6 MB: some 200 MB once decoded.
    tensor = b"[" + b"[]," * 2_000_000 + b"[]]"
    message = error_of(_post_raw(client, path, _wrap(path, tensor)), 400)
    assert message == "the JSON body has more than 2000000 values (the limit)"


def test_a_full_size_body_of_floats_is_within_the_limits(client: FlaskClient) -> None:
    rows = [[0.123456789, 1.5, -2.25, 3.0]] * 180_000
    body = json.dumps({"inputs": rows}).encode()
    assert 5 * MIB < len(body) <= ServeConfig.max_body_bytes
    # 900k values in 3 levels: within both limits, and answered.
    resp = _post_raw(client, "/invocations", body)
    assert resp.status_code == 200, resp.data[:300]
    assert len(json.loads(resp.data)["predictions"]["label"]) == 180_000


# --- the default body limit --------------------------------------------------------------------


def test_the_default_body_limit_is_sagemakers_6_mib(client: FlaskClient) -> None:
    assert ServeConfig.max_body_bytes == 6 * MIB
    body = b'{"inputs": [' + b" " * (6 * MIB) + b"]}"
    assert "larger than 6291456 bytes" in error_of(_post_raw(client, "/invocations", body), 413)


# --- V2: absurd shapes, lone surrogates -----------------------------------------------------------


@pytest.mark.parametrize(
    "shape",
    [
        [0, 2**62, 2**62],  # numpy: array is too big
        [2**32, 2**32, 0],  # numpy: cannot reshape
        [0, 10_000_000_000_000],
        [1] * 65,  # numpy 2 allows 64 dimensions
        [0] * 40,
    ],
)
@pytest.mark.parametrize("binary", [False, True])
def test_v2_absurd_shapes_are_400(client: FlaskClient, shape: list[int], binary: bool) -> None:
    tensor: dict[str, Any] = {"name": "input", "datatype": "FP32", "shape": shape}
    if binary:
        tensor["parameters"] = {"binary_data_size": 0}
        head = json.dumps({"inputs": [tensor]}).encode()
        resp = client.post(
            "/v2/models/iris/infer",
            data=head,
            content_type="application/octet-stream",
            headers={codec.BINARY_HEADER: str(len(head))},
        )
    else:
        resp = post(client, "/v2/models/iris/infer", {"inputs": [{**tensor, "data": []}]})
    assert "'shape'" in error_of(resp, 400)


@pytest.mark.parametrize("extra", [b"", b'"big": -9223372036854775809, '])
def test_v2_id_with_a_lone_surrogate_is_400(client: FlaskClient, extra: bytes) -> None:
    # The second body holds an integer below int64's range, which the standard library reads
    # (orjson would round it); it lets "\ud800" through, and the answer could not be encoded.
    body = (
        b'{"id": "\\ud800", '
        + extra
        + b'"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 4], '
        + b'"data": [1, 2, 3, 4]}]}'
    )
    assert "malformed JSON" in error_of(_post_raw(client, "/v2/models/iris/infer", body), 400)


def test_a_lone_surrogate_in_a_name_is_400_everywhere(client: FlaskClient) -> None:
    body = b'{"inputs": {"\\udfff": [[1, 2, 3, 4]], "big": -9223372036854775809}}'
    assert "malformed JSON" in error_of(_post_raw(client, "/invocations", body), 400)


def test_valid_surrogate_pairs_and_big_integers_still_work(client: FlaskClient) -> None:
    body = (
        b'{"id": "\\ud83d\\ude00", "inputs": [{"name": "input", "datatype": "INT64", '
        b'"shape": [1, 4], "data": [1, 2, 3, 9223372036854775]}]}'
    )
    resp = _post_raw(client, "/v2/models/iris/infer", body)
    assert resp.status_code == 200, resp.data
    assert json.loads(resp.data)["id"] == "\U0001f600"


# --- echoed names ------------------------------------------------------------------------------


def test_quote_name_cuts_and_escapes() -> None:
    assert quote_name("sepal_width-2.x") == "'sepal_width-2.x'"
    assert quote_name("a<b> c") == r"'a\x3cb\x3e\x20c'"
    assert quote_name("\u2028\ud800\U0001f600") == r"'\u2028\ud800\U0001f600'"
    long = quote_name("x" * 4_000_000)
    assert long == "'" + "x" * 32 + "'... (4000000 characters)"
    assert quote_name(12) == "'12'"


HUGE = "<script>" + "n" * (1024 * 1024)


def _name_cases() -> list[tuple[str, str, Any]]:
    tensor = {"name": "input", "datatype": "FP32", "shape": [1, 4], "data": ROW}
    v2 = "/v2/models/iris/infer"
    return [
        ("unknown input", "/invocations", {"inputs": {"input": [ROW], HUGE: [ROW]}}),
        ("unknown key", "/invocations", {"inputs": [ROW], HUGE: 1}),
        ("unknown key /score", "/score", {"inputs": [ROW], HUGE: 1}),
        ("instance input", "/vertex/predict", {"instances": [{HUGE: ROW}, {"input": ROW}]}),
        ("records column", "/invocations", {"dataframe_records": [{"a": 1}, {HUGE: 2}]}),
        ("split column", "/invocations", {"dataframe_split": {"columns": [HUGE], "data": [[1]]}}),
        ("v2 datatype", v2, {"inputs": [{**tensor, "name": HUGE, "datatype": "BF16"}]}),
        ("v2 unknown input", v2, {"inputs": [{**tensor, "name": HUGE}]}),
        ("v2 bad data", v2, {"inputs": [{**tensor, "name": HUGE, "data": [[1], [1, 2]]}]}),
        ("v2 twice", v2, {"inputs": [{**tensor, "name": HUGE}, {**tensor, "name": HUGE}]}),
        ("v2 output", v2, {"inputs": [tensor], "outputs": [{"name": HUGE}]}),
        # A request target has a length limit of its own (414 above).
        ("v2 model", f"/v2/models/<b>{'n' * 2000}/infer", {"inputs": [tensor]}),
        (
            "many unknown",
            "/invocations",
            {"inputs": {"input": [ROW], **{f"{HUGE[:40]}{i}": [ROW] for i in range(10_000)}}},
        ),
    ]


@pytest.mark.parametrize(("case", "path", "body"), _name_cases(), ids=[c[0] for c in _name_cases()])
def test_names_a_client_sent_are_echoed_short_and_escaped(
    client: FlaskClient, case: str, path: str, body: Any
) -> None:
    resp = post(client, path, body)
    message = error_of(resp, 404 if case == "v2 model" else 400)
    assert len(message) < 600, (case, len(message))
    assert "<" not in message and ">" not in message, case
    assert "n" * 33 not in message, case
    if case not in ("v2 bad data", "split column"):  # these name no input of the client's
        assert "nnnnnnnnnnnnnnnnnnnnnnnn'... (" in message, case


def test_csv_column_names_are_echoed_short_and_escaped(client: FlaskClient) -> None:
    # (a field over 128 KiB is malformed CSV to the csv module)
    resp = client.post("/invocations", data=f"{HUGE[:100_000]}\nabc\n", content_type="text/csv")
    message = error_of(resp, 400)
    assert len(message) < 200 and "<" not in message


# --- the real server: statuses, and a log that stays short ---------------------------------------


@pytest.fixture(scope="module")
def server(packages: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """The classifier served with the default limits (one worker, so its memory can be read)."""
    server = start_server(
        packages["iris"],
        ["--workers", "1"],
        env={"AIP_PREDICT_ROUTE": "/vertex/predict"},
        log_dir=tmp_path_factory.mktemp("hostile-log"),
    )
    yield server
    assert server.stop() == 0, server.log()


def _hostile_requests(url: str) -> list[tuple[str, str, int, Any]]:
    """(case, path, status expected, answer) of each hostile request."""
    deep = b"[[" + b"[" * 340 + b"]" * 340 + b", true]]"
    json_type = {"Content-Type": "application/json"}
    answers = []
    for path in JSON_ROUTES:
        answer = request(url + path, "POST", _wrap(path, deep), json_type)
        answers.append((path, path, 400, answer))
    surrogate = (
        b'{"id": "\\ud800", "x": -9223372036854775809, "inputs": [{"name": "input", '
        b'"datatype": "FP32", "shape": [1, 4], "data": [1, 2, 3, 4]}]}'
    )
    v2_path = "/v2/models/iris/infer"
    v2 = url + v2_path
    answers.append(("surrogate", v2_path, 400, request(v2, "POST", surrogate, json_type)))
    for shape in ([0, 2**62, 2**62], [2**32, 2**32, 0], [1] * 65):
        tensor = {"name": "input", "datatype": "FP32", "shape": shape, "data": []}
        answer = post_json(v2, {"inputs": [tensor]})
        answers.append((f"shape {shape[:3]}", v2_path, 400, answer))
    for case, path, body in _name_cases():
        status = 404 if case == "v2 model" else 400
        answers.append((case, path, status, post_json(url + path, body)))
    return answers


def test_hostile_requests_get_400_json_and_the_log_one_short_line_at_most(server: Server) -> None:
    before = len(server.log().encode())
    for case, path, status, resp in _hostile_requests(server.url):
        assert resp.status == status, (case, resp.body[:300])
        assert resp.headers["content-type"] == "application/json", case
        error_message(resp.body, protocol_of(path), status)  # the route's protocol's shape
    # The server is still fine, and says so in a request that reaches the log's end.
    assert post_json(server.url + "/invocations", {"inputs": [ROW]}).status == 200
    log = server.log().encode()[before:]
    assert b"Traceback" not in log, log[:2000]
    assert all(len(line) <= 1024 for line in log.splitlines()), max(map(len, log.splitlines()))
    assert len(log) < 4096, log[:2000]


def _peak_rss(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    (line,) = [x for x in status.splitlines() if x.startswith("VmHWM:")]
    return int(line.split()[1]) * 1024


def test_a_full_size_body_of_empty_lists_costs_the_worker_little_memory(server: Server) -> None:
    (worker,) = server.worker_pids()
    assert post_json(server.url + "/invocations", {"inputs": [ROW]}).status == 200
    # The server is the module's: reset the peak earlier tests raised to the worker's RSS now.
    Path(f"/proc/{worker}/clear_refs").write_text("5")
    before = _peak_rss(worker)
    body = b'{"inputs": [' + b"[]," * 2_090_000 + b"[]]}"
    assert len(body) <= 6 * MIB
    resp = request(server.url + "/invocations", "POST", body, {"Content-Type": "application/json"})
    assert resp.status == 400, resp.body[:300]
    # Decoded, these 2 million lists take ~200 MB; refused on their bytes, a few copies of 6 MB.
    assert _peak_rss(worker) - before < 48 * MIB, (_peak_rss(worker) - before) / MIB
