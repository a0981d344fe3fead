"""The dynamic batcher: merged results equal unbatched ones, and its bounds hold.

Parity is bitwise for a model whose computation does not depend on the batch (the python model's
elementwise ``x * 2``): that proves the batcher's merging and slicing exact. ONNX Runtime's
vectorised kernels (GEMM, softmax, even ReduceSum) are not bitwise batch-size invariant: the same
row sent alone and inside a 2-row request differ in float32's last bits with no server involved.
For those, labels must be identical and floats equal to float32 rounding.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from serving_support import Server, post_json, request, start_server

import modelport
from modelport.errors import ModelError, Overloaded
from modelport.serving.batcher import Batcher, batchable


class Recorder:
    """Records what the batcher reports (the real server sends it to its metrics)."""

    def __init__(self) -> None:
        self.batches: list[tuple[int, int]] = []
        self.depths: list[int] = []
        self._lock = threading.Lock()

    def observe_batch(self, requests: int, rows: int) -> None:
        with self._lock:
            self.batches.append((requests, rows))

    def set_queue_depth(self, depth: int) -> None:
        self.depths.append(depth)


@pytest.fixture(scope="module")
def iris(packages: dict[str, Path]) -> Iterator[modelport.Package]:
    with modelport.load(packages["iris"]) as package:
        yield package


def run_together(
    batcher: Batcher, requests: list[dict[str, np.ndarray]], timeout: float = 30.0
) -> list[Any]:
    """Submit every request at once from its own thread; return results or exceptions."""
    barrier = threading.Barrier(len(requests))

    def one(inputs: dict[str, np.ndarray]) -> Any:
        batcher.expect()  # as the server does before reading a body
        barrier.wait()
        try:
            return batcher.predict(inputs, timeout, announced=True)
        except Exception as exc:
            return exc

    with ThreadPoolExecutor(len(requests)) as pool:
        return list(pool.map(one, requests))


def make_batcher(
    package: modelport.Package,
    recorder: Recorder,
    predict: Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]] | None = None,
    **kwargs: Any,
) -> Batcher:
    settings: dict[str, Any] = {"max_batch_size": 64, "max_wait_s": 0.5, "enabled": True}
    settings.update(kwargs)
    model = predict or package.predict_arrays
    return Batcher(model, package.signature, observer=recorder, **settings)


def assert_same(result: dict[str, np.ndarray], alone: dict[str, np.ndarray]) -> None:
    assert set(result) == set(alone)
    for name, want in alone.items():
        assert result[name].dtype == want.dtype
        assert result[name].shape == want.shape
        if want.dtype.kind == "f":
            np.testing.assert_allclose(result[name], want, rtol=1e-6, atol=1e-7)
        else:
            np.testing.assert_array_equal(result[name], want)


def test_merged_results_equal_unbatched(iris: modelport.Package, iris_x: np.ndarray) -> None:
    recorder = Recorder()
    batcher = make_batcher(iris, recorder)
    requests = [{"input": iris_x[i : i + 1 + i % 4]} for i in range(24)]
    results = run_together(batcher, requests)
    for inputs, result in zip(requests, results, strict=True):
        assert_same(result, iris.predict_arrays(inputs))
    assert sum(r for r, _ in recorder.batches) == 24
    assert max(r for r, _ in recorder.batches) > 1, "nothing was merged"


def test_merged_results_are_bitwise_identical_for_row_independent_kernels(
    packages: dict[str, Path],
) -> None:
    with modelport.load(packages["tricky"], allow_code=True) as tricky:
        recorder = Recorder()
        batcher = make_batcher(tricky, recorder)
        rng = np.random.default_rng(2)
        requests = [{"x": rng.uniform(0, 100, size=(1 + i % 3, 3))} for i in range(24)]
        results = run_together(batcher, requests)
        for inputs, result in zip(requests, results, strict=True):
            alone = tricky.predict_arrays(inputs)["y"]
            assert result["y"].dtype == alone.dtype
            np.testing.assert_array_equal(result["y"], alone)
        assert max(r for r, _ in recorder.batches) > 1, "nothing was merged"


def test_batches_respect_the_max_size_and_big_requests_run_alone(
    iris: modelport.Package, iris_x: np.ndarray
) -> None:
    recorder = Recorder()
    batcher = make_batcher(iris, recorder, max_batch_size=8)
    requests = [{"input": iris_x[i * 3 : i * 3 + 3]} for i in range(10)]
    requests.append({"input": iris_x[:20]})
    results = run_together(batcher, requests)
    assert all(rows <= 8 for requests_, rows in recorder.batches if requests_ > 1)
    assert (1, 20) in recorder.batches
    assert_same(results[-1], iris.predict_arrays(requests[-1]))


def test_requests_of_different_shapes_are_never_mixed(packages: dict[str, Path]) -> None:
    with modelport.load(packages["sums"]) as sums:
        recorder = Recorder()
        batcher = make_batcher(sums, recorder)
        rng = np.random.default_rng(1)
        requests = [
            {"x": rng.normal(size=(2, 3 if i % 2 else 5)).astype(np.float32)} for i in range(16)
        ]
        results = run_together(batcher, requests)
        for inputs, result in zip(requests, results, strict=True):
            assert not isinstance(result, Exception), result
            # Mixing widths would fail to concatenate or sum the wrong values.
            np.testing.assert_allclose(result["s"], inputs["x"].sum(axis=1), rtol=1e-5, atol=1e-6)
        # Each merged call held only one width: 8 requests of 2 rows each at most.
        assert all(rows <= 16 for _, rows in recorder.batches)
        assert max(r for r, _ in recorder.batches) > 1


def test_batching_off_runs_each_request_alone(iris: modelport.Package, iris_x: np.ndarray) -> None:
    recorder = Recorder()
    batcher = make_batcher(iris, recorder, enabled=False)
    assert not batcher.merging
    results = run_together(batcher, [{"input": iris_x[i : i + 2]} for i in range(8)])
    assert len(results) == 8
    assert recorder.batches == [(1, 2)] * 8


def test_a_failing_request_does_not_fail_the_batch(packages: dict[str, Path]) -> None:
    with modelport.load(packages["tricky"], allow_code=True) as tricky:
        recorder = Recorder()
        batcher = make_batcher(tricky, recorder)
        requests = [{"x": np.full((1, 3), float(i + 1))} for i in range(8)]
        requests[3] = {"x": np.full((1, 3), -1.0)}
        results = run_together(batcher, requests)
        assert isinstance(results[3], ModelError)
        for i, result in enumerate(results):
            if i != 3:
                np.testing.assert_array_equal(result["y"], requests[i]["x"] * 2)


def test_waiting_longer_than_the_timeout_is_overloaded(packages: dict[str, Path]) -> None:
    with modelport.load(packages["tricky"], allow_code=True) as tricky:
        in_model = threading.Event()

        def predict(arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
            if (arrays["x"] >= 1000).any():
                in_model.set()
            return tricky.predict_arrays(arrays)

        batcher = make_batcher(tricky, Recorder(), predict, max_wait_s=0.0)
        slow = threading.Thread(target=batcher.predict, args=({"x": np.full((1, 3), 1500.0)}, 30.0))
        slow.start()
        try:
            # The slow request leads (the model sleeps 1.5 s on it); this one queues behind it
            # and gives up.
            assert in_model.wait(30), "the slow request never reached the model"
            with pytest.raises(Overloaded):
                batcher.predict({"x": np.ones((1, 3))}, 0.3)
        finally:
            slow.join(10)
        # The batcher is not stuck: the next request runs at once.
        np.testing.assert_array_equal(batcher.predict({"x": np.ones((1, 3))}, 5.0)["y"], 2.0)


def test_batchable_needs_a_variable_first_dimension_everywhere(
    iris: modelport.Package, packages: dict[str, Path]
) -> None:
    assert batchable(iris.signature)
    from modelport.model_format.signature import Signature, TensorSpec

    fixed = Signature((TensorSpec("x", "float32", (1, 4)),), (TensorSpec("y", "int64", (-1,)),))
    assert not batchable(fixed)


# --- order and waiting: a model that records what it was given, no timing -------------------------


class Ledger:
    """A model that records every call's rows (their first column), and can hold a call."""

    def __init__(self, package: modelport.Package, hold: float | None = None) -> None:
        self.package = package
        self.calls: list[list[float]] = []
        self.hold = hold  # a call whose first row starts with this waits for release()
        self.held = threading.Event()
        self._release = threading.Event()

    def __call__(self, arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        rows = arrays["x"][:, 0].tolist()
        self.calls.append(rows)
        if self.hold is not None and rows[0] == self.hold:
            self.held.set()
            assert self._release.wait(30), "never released"
        return self.package.predict_arrays(arrays)

    def release(self) -> None:
        self._release.set()


class Depths(Recorder):
    """A recorder whose queue depth can be waited for (each queued request reports it)."""

    def __init__(self) -> None:
        super().__init__()
        self.changed = threading.Condition()

    def set_queue_depth(self, depth: int) -> None:
        with self.changed:
            self.depths.append(depth)
            self.changed.notify_all()

    def wait_for(self, depth: int) -> None:
        with self.changed:
            assert self.changed.wait_for(lambda: depth in self.depths, 30), self.depths


def rows_of(value: float, count: int = 1) -> dict[str, np.ndarray]:
    return {"x": np.full((count, 3), value)}


def start(
    batcher: Batcher, inputs: dict[str, np.ndarray], answers: dict[float, Any]
) -> threading.Thread:
    def call() -> None:
        try:
            answers[float(inputs["x"][0, 0])] = batcher.predict(inputs, 30.0)
        except Exception as exc:
            answers[float(inputs["x"][0, 0])] = exc

    thread = threading.Thread(target=call)
    thread.start()
    return thread


def queued_behind_a_held_call(
    tricky: modelport.Package, queued: list[dict[str, np.ndarray]], **settings: Any
) -> tuple[Ledger, dict[float, Any]]:
    """Hold a call on a row of 0s, queue ``queued`` behind it one after another, release it.

    Each request is submitted once the one before it is in the queue (the queue depth it
    reports says so), as requests on different connections arriving in that order would be.
    Returns the model's record of its calls and each request's answer by its first value.
    """
    ledger = Ledger(tricky, hold=0.0)
    depths = Depths()
    batcher = make_batcher(tricky, depths, ledger, max_wait_s=0.0, **settings)
    answers: dict[float, Any] = {}
    threads = [start(batcher, rows_of(0.0), answers)]
    assert ledger.held.wait(30)
    for count, inputs in enumerate(queued, 1):
        threads.append(start(batcher, inputs, answers))
        depths.wait_for(count)
    ledger.release()
    for thread in threads:
        thread.join(30)
    return ledger, answers


def test_queued_requests_are_answered_first_come_first_served(packages: dict[str, Path]) -> None:
    with modelport.load(packages["tricky"], allow_code=True) as tricky:
        # Nine requests queue behind the held call, in an order unrelated to their values.
        order = [7.0, 3.0, 9.0, 1.0, 8.0, 2.0, 6.0, 4.0, 5.0]
        ledger, answers = queued_behind_a_held_call(
            tricky, [rows_of(value) for value in order], max_batch_size=3
        )
        # Batches of at most three rows, taken from the head of the queue: arrival order.
        assert ledger.calls == [[0.0], order[0:3], order[3:6], order[6:9]]
        for value in [0.0, *order]:
            np.testing.assert_array_equal(answers[value]["y"], np.full((1, 3), value * 2))


def test_the_oldest_waiting_request_always_heads_the_next_call(packages: dict[str, Path]) -> None:
    with modelport.load(packages["tricky"], allow_code=True) as tricky:
        queued = [rows_of(1.0), rows_of(2.0, 6), rows_of(3.0), rows_of(4.0, 3), rows_of(5.0)]
        ledger, answers = queued_behind_a_held_call(tricky, queued, max_batch_size=4)
        # Later requests that fit join the call at the head of the queue (which costs the six
        # rows, over the limit and so alone, no extra call); whatever waits longest goes next.
        assert ledger.calls == [[0.0], [1.0, 3.0, 5.0], [2.0] * 6, [4.0] * 3]
        for value in (1.0, 2.0, 3.0, 4.0, 5.0):
            assert float(answers[value]["y"][0, 0]) == value * 2


@pytest.mark.parametrize("withdrawn", [False, True], ids=["lone", "withdrawn-follower"])
def test_a_batch_never_waits_for_followers_that_cannot_come(
    packages: dict[str, Path], withdrawn: bool
) -> None:
    with modelport.load(packages["tricky"], allow_code=True) as tricky:
        ledger = Ledger(tricky)
        # A wait far longer than the join below: an answer within it proves nobody waited.
        batcher = make_batcher(tricky, Recorder(), ledger, max_wait_s=300.0)
        if withdrawn:
            batcher.expect()  # a request is being read...
        answers: dict[float, Any] = {}
        thread = start(batcher, rows_of(1.0), answers)
        if withdrawn:
            thread.join(0.2)  # not a timing check: the batch may or may not have waited by now
            batcher.unexpect()  # ...and its body turns out to be bad: it never comes
        thread.join(30)
        assert not thread.is_alive(), "the batch waited for a request that cannot come"
        assert ledger.calls == [[1.0]]


def test_an_announced_request_joins_the_batch_that_waits_for_it(
    packages: dict[str, Path],
) -> None:
    with modelport.load(packages["tricky"], allow_code=True) as tricky:
        ledger = Ledger(tricky)
        recorder = Recorder()
        batcher = make_batcher(tricky, recorder, ledger, max_wait_s=300.0)
        batcher.expect()
        answers: dict[float, Any] = {}
        leader = start(batcher, rows_of(1.0), answers)
        follower_answer = batcher.predict(rows_of(2.0), 30.0, announced=True)
        leader.join(30)
        assert ledger.calls == [[1.0, 2.0]]
        assert recorder.batches == [(2, 2)]
        np.testing.assert_array_equal(follower_answer["y"], np.full((1, 3), 4.0))
        np.testing.assert_array_equal(answers[1.0]["y"], np.full((1, 3), 2.0))


def test_a_failing_merged_call_is_run_again_per_request(packages: dict[str, Path]) -> None:
    with modelport.load(packages["tricky"], allow_code=True) as tricky:
        queued = [rows_of(1.0), rows_of(-1.0), rows_of(3.0)]
        ledger, answers = queued_behind_a_held_call(tricky, queued)
        # The merged call fails on the negative row; each request then runs alone, in order.
        assert ledger.calls == [[0.0], [1.0, -1.0, 3.0], [1.0], [-1.0], [3.0]]
        assert isinstance(answers[-1.0], ModelError)
        assert float(answers[3.0]["y"][0, 0]) == 6.0


# --- over HTTP ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def single_worker(
    packages: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    server = start_server(
        packages["iris"],
        ["--workers", "1", "--threads", "16", "--max-batch-wait-ms", "5"],
        log_dir=tmp_path_factory.mktemp("batch-log"),
    )
    yield server
    assert server.stop() == 0


def _metric(server: Server, name: str) -> float:
    text = request(server.url + "/metrics").body.decode()
    match = re.search(rf"^{name} (\S+)$", text, re.MULTILINE)
    assert match, name
    return float(match.group(1))


def test_http_batching_parity_under_concurrency(
    single_worker: Server, iris: modelport.Package, iris_x: np.ndarray
) -> None:
    calls_before = _metric(single_worker, "modelport_batch_requests_count")
    requests_before = _metric(single_worker, "modelport_batch_requests_sum")
    payloads = [iris_x[i % 250 : i % 250 + 1 + i % 3] for i in range(160)]

    def call(rows: np.ndarray) -> Callable[[], Any]:
        resp = post_json(single_worker.url + "/invocations", {"inputs": rows.tolist()})
        assert resp.status == 200, resp.body
        return json.loads(resp.body)["predictions"]

    with ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(call, payloads))
    for rows, answer in zip(payloads, answers, strict=True):
        alone = iris.predict(rows)
        assert answer["label"] == alone["label"].tolist()
        np.testing.assert_allclose(
            np.asarray(answer["probabilities"], np.float32),
            alone["probabilities"],
            rtol=1e-6,
            atol=1e-7,
        )
    calls = _metric(single_worker, "modelport_batch_requests_count") - calls_before
    merged = _metric(single_worker, "modelport_batch_requests_sum") - requests_before
    assert merged == 160
    assert calls < 160, "concurrent requests were never merged"
