"""Turns: request threads run Python first come, first served, and the batcher wakes in turn.

No timing: each test orders events with the turns' own queue and the batcher's queue depth.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from test_batching import Depths, Ledger, make_batcher, rows_of

import modelport
from modelport.errors import Overloaded
from modelport.serving.turns import Turns
from process_helpers import wait_for


def test_the_turn_goes_to_threads_in_the_order_they_asked() -> None:
    turns = Turns()
    turns.take()
    order: list[str] = []

    def worker(name: str) -> None:
        turns.take()
        order.append(name)
        turns.give()

    threads = []
    for count, name in enumerate("abcd", 1):
        thread = threading.Thread(target=worker, args=(name,))
        thread.start()
        threads.append(thread)
        wait_for(lambda count=count: turns.waiting() == count, f"{count} waiting")  # type: ignore[misc]
    assert order == []  # nobody runs while the turn is held
    turns.give()
    for thread in threads:
        thread.join(30)
    assert order == ["a", "b", "c", "d"]
    assert turns.waiting() == 0 and not turns.holding()


def test_a_parked_thread_handed_the_turn_wakes_in_its_place_holding_it() -> None:
    turns = Turns()
    gate = threading.Lock()
    gate.acquire()
    seen: list[Any] = []
    parked = threading.Event()

    def follower() -> None:
        parked.set()
        assert gate.acquire(timeout=30)
        seen.append(("follower", turns.holding()))
        turns.give()

    def later() -> None:
        turns.take()
        seen.append(("later", turns.holding()))
        turns.give()

    turns.take()
    thread = threading.Thread(target=follower)
    thread.start()
    assert parked.wait(30)
    turns.hand(gate, thread.ident or 0)  # queued: it wakes when the turn comes to it
    other = threading.Thread(target=later)
    other.start()
    wait_for(lambda: turns.waiting() == 2, "both queued")
    assert seen == []
    turns.give()
    thread.join(30)
    other.join(30)
    assert seen == [("follower", True), ("later", True)]


def test_paused_gives_the_turn_up_while_blocked_and_takes_it_back_in_line() -> None:
    turns = Turns()
    blocked, release = threading.Event(), threading.Event()
    seen: list[Any] = []

    def holder() -> None:
        turns.take()
        with turns.paused():
            blocked.set()
            assert release.wait(30)
        seen.append(("holder", turns.holding()))
        turns.give()

    thread = threading.Thread(target=holder)
    thread.start()
    assert blocked.wait(30)
    turns.take()  # free while the holder is blocked: no deadlock
    release.set()
    wait_for(lambda: turns.waiting() == 1, "the holder queued")  # behind this thread now
    seen.append(("main", turns.holding()))
    turns.give()
    thread.join(30)
    assert seen == [("main", True), ("holder", True)]


def test_threads_without_a_turn_are_not_affected() -> None:
    turns = Turns()
    with turns.paused():  # nothing to give up
        assert not turns.holding()
    turns.give()  # not the holder: nothing happens
    turns.take()
    done: list[bool] = []
    thread = threading.Thread(target=lambda: (turns.give(), done.append(turns.holding())))
    thread.start()
    thread.join(30)
    assert done == [False] and turns.holding()  # another thread cannot end this one's turn
    turns.give()


def in_turn(
    turns: Turns, batcher: Any, value: float, answers: list[Any], timeout: float = 30.0
) -> threading.Thread:
    """A request thread as the worker runs one: take the turn, predict, answer, give it up."""

    def call() -> None:
        turns.take()
        try:
            result: Any = batcher.predict(rows_of(value), timeout)
        except Exception as exc:
            result = exc
        answers.append((value, turns.holding(), result))
        turns.give()

    thread = threading.Thread(target=call)
    thread.start()
    return thread


def holding_a_call(
    tricky: modelport.Package, turns: Turns, answers: list[Any]
) -> tuple[Ledger, Depths, Any, threading.Thread]:
    """A batcher whose first call (a row of 0s, sent in turn) is held until released."""
    ledger = Ledger(tricky, hold=0.0)
    depths = Depths()
    batcher = make_batcher(tricky, depths, ledger, max_wait_s=0.0, turns=turns)
    leader = in_turn(turns, batcher, 0.0, answers)
    assert ledger.held.wait(30)  # the model runs without the turn: others may queue
    return ledger, depths, batcher, leader


def test_requests_of_a_merged_call_are_answered_in_arrival_order(
    packages: dict[str, Path],
) -> None:
    turns = Turns()
    answers: list[Any] = []
    with modelport.load(packages["tricky"], allow_code=True) as tricky:
        ledger, depths, batcher, leader = holding_a_call(tricky, turns, answers)
        threads = [leader]
        order = [4.0, 1.0, 5.0, 2.0, 3.0]
        for count, value in enumerate(order, 1):
            threads.append(in_turn(turns, batcher, value, answers))
            depths.wait_for(count)
        ledger.release()
        for thread in threads:
            thread.join(30)
    assert ledger.calls == [[0.0], order]
    # Woken one at a time, holding the turn, in the order they arrived (not all at once).
    assert [(value, holding) for value, holding, _ in answers] == [
        (value, True) for value in [0.0, *order]
    ]
    for value, _, result in answers:
        np.testing.assert_array_equal(result["y"], np.full((1, 3), value * 2))
    assert turns.waiting() == 0


def test_a_request_that_times_out_in_the_queue_answers_in_its_turn(
    packages: dict[str, Path],
) -> None:
    turns = Turns()
    answers: list[Any] = []
    with modelport.load(packages["tricky"], allow_code=True) as tricky:
        ledger, _, batcher, leader = holding_a_call(tricky, turns, answers)
        late = in_turn(turns, batcher, 1.0, answers, timeout=0.05)
        late.join(30)  # the held call outlasts its timeout
        ledger.release()
        leader.join(30)
    (value, holding, result), *_ = answers
    assert value == 1.0 and holding and isinstance(result, Overloaded)
    assert ledger.calls == [[0.0]]


@pytest.mark.parametrize("enabled", [True, False], ids=["batching", "no-batching"])
def test_a_lone_request_in_turn_is_answered_at_once(
    packages: dict[str, Path], enabled: bool
) -> None:
    turns = Turns()
    with modelport.load(packages["tricky"], allow_code=True) as tricky:
        ledger = Ledger(tricky)
        # A wait far longer than the join: an answer within it proves nobody waited.
        batcher = make_batcher(
            tricky, Depths(), ledger, max_wait_s=300.0, enabled=enabled, turns=turns
        )
        answers: list[Any] = []
        in_turn(turns, batcher, 1.0, answers).join(30)
    assert [(v, h) for v, h, _ in answers] == [(1.0, True)]
    assert ledger.calls == [[1.0]]
