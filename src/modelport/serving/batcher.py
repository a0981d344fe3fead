"""The dynamic batcher: concurrent requests of one worker share one model call.

Leader/follower, with no batcher thread of its own: a request that finds the model idle becomes
the *leader* and runs the model itself, on its own thread. Requests that arrive meanwhile queue up
and wait. When the leader's call returns, it hands each merged request its rows and, if requests
are still queued, makes the first of them the next leader. A lone client therefore never waits
for another thread, and under load each request thread is woken exactly once (with its result or
with the lead), which matters: thread hand-offs, not the model, dominate small requests.

- Requests are merged only when every input has the same dtype and the same non-batch dimensions,
  so nothing is ever padded and each row meets exactly the computation it would meet alone.
- A merged call holds at most ``max_batch_size`` rows; a larger request runs alone.
- A leader waits for more requests (at most ``max_wait_s``) only while other requests are known
  to be on their way (their bodies are being read and parsed): a lone client never pays the wait.
- One model call at a time per worker, so a model that is not thread-safe is safe.
- Request threads that hold a :mod:`turn <modelport.serving.turns>` give it up while they wait
  and while the model runs, and the requests of a finished call are woken in their turn, oldest
  first, rather than all at once: so no request waits for the GIL behind later ones, and a
  request waits at most for the batch it joins plus the call ahead of it.
- When a merged call fails, each of its requests is run alone, so only the request that breaks
  the model gets the error.

Batching assumes what every ``-1`` leading dimension in a signature promises: rows are
independent. Models whose outputs do not have one row per input row are never merged.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from typing import Protocol

import numpy as np

from modelport.errors import Overloaded
from modelport.model_format.signature import Signature
from modelport.serving.turns import TURNS, Turns

log = logging.getLogger("modelport.serving")

Arrays = Mapping[str, np.ndarray]
Predict = Callable[[Arrays], dict[str, np.ndarray]]

# Item states.
_QUEUED, _RUNNING, _DONE, _LEAD = range(4)


class BatchObserver(Protocol):
    """Where the batcher reports what it does (the server's metrics)."""

    def observe_batch(self, requests: int, rows: int) -> None:
        """One model call merged ``requests`` requests holding ``rows`` rows."""

    def set_queue_depth(self, depth: int) -> None:
        """This many requests now wait for the model."""


class _Item:
    __slots__ = ("error", "inputs", "key", "result", "rows", "state", "turn", "wake")

    def __init__(self, inputs: Arrays, key: object, rows: int, turn: int | None) -> None:
        self.inputs = inputs
        self.key = key
        self.rows = rows
        self.state = _QUEUED
        self.result: dict[str, np.ndarray] | None = None
        self.error: Exception | None = None
        #: the submitting thread's ident when it held a turn: it is woken in its turn
        self.turn = turn
        # A plain lock is the cheapest one-shot signal: whoever finishes the item releases it.
        self.wake = threading.Lock()
        self.wake.acquire()


def batchable(signature: Signature) -> bool:
    """True when every input and output has a variable first dimension (one row per example)."""
    specs = (*signature.inputs, *signature.outputs)
    return bool(signature.inputs) and all(s.shape and s.shape[0] == -1 for s in specs)


class Batcher:
    """Merges concurrent predictions into one model call per batch.

    Args:
        predict: runs the model on enforced arrays (never called by two threads at once).
        signature: the model's signature; merging is off unless :func:`batchable` says yes.
        max_batch_size: the most rows one merged call may hold.
        max_wait_s: how long a batch may wait for requests that are on their way.
        observer: receives batch sizes and queue depth.
        enabled: False runs each request in its own model call (still one call at a time).
        turns: the turns request threads may hold (default: the process's).
    """

    def __init__(
        self,
        predict: Predict,
        signature: Signature,
        *,
        max_batch_size: int,
        max_wait_s: float,
        observer: BatchObserver,
        enabled: bool = True,
        turns: Turns = TURNS,
    ) -> None:
        self._predict = predict
        self._turns = turns
        self._merge = enabled and batchable(signature)
        self._max_rows = max(1, max_batch_size)
        self._max_wait = max(0.0, max_wait_s)
        self._observer = observer
        self._queue: deque[_Item] = deque()
        self._cond = threading.Condition(threading.Lock())
        self._busy = False  # a leader is running
        self._coming = 0  # requests announced by expect() and not yet submitted

    @property
    def merging(self) -> bool:
        """Whether requests are merged (batching on and the signature allows it)."""
        return self._merge

    def expect(self) -> None:
        """Announce a request whose inputs are being parsed; a forming batch may wait for it."""
        with self._cond:
            self._coming += 1

    def unexpect(self) -> None:
        """Withdraw an announcement (the request failed before reaching the model)."""
        with self._cond:
            self._coming -= 1
            self._cond.notify()

    def predict(
        self, inputs: Arrays, timeout_s: float, *, announced: bool = False
    ) -> dict[str, np.ndarray]:
        """Predict on enforced inputs, possibly together with other requests.

        Args:
            inputs: arrays that passed signature enforcement.
            timeout_s: the longest to wait for other requests' model calls before giving up.
            announced: the caller called :meth:`expect` for this request.

        Raises:
            Overloaded: the model stayed busy with other requests for ``timeout_s``.
            ModelError: the model failed on this request.
        """
        key: object = None
        rows = 0
        if self._merge:
            first = next(iter(inputs.values()))
            rows = int(first.shape[0]) if first.ndim else 0
            if 0 < rows <= self._max_rows:
                key = tuple([(n, a.dtype.str, a.shape[1:]) for n, a in inputs.items()])
            else:
                rows = 0
        turns = self._turns
        turn = threading.get_ident() if turns.holding() else None
        item = _Item(inputs, key, rows, turn)
        with self._cond:
            if announced:
                self._coming -= 1
            self._queue.append(item)
            lead = not self._busy
            if lead:
                self._busy = True
            else:
                depth = len(self._queue)
                # A leader waiting for this request to arrive should look at the queue again.
                self._cond.notify()
        if not lead:
            self._observer.set_queue_depth(depth)
            if turn is not None:
                turns.give()  # woken holding it again (by _wake)
            if not item.wake.acquire(timeout=timeout_s):
                with self._cond:
                    late = item.state == _QUEUED
                    if late:
                        self._queue.remove(item)
                if late:
                    if turn is not None:
                        turns.take()
                    raise Overloaded(
                        f"no prediction within {timeout_s:g} s; the server is overloaded"
                    )
                # Taken by a leader or handed the lead just now: the wait is nearly over.
                item.wake.acquire()
            if item.state != _LEAD:
                return self._outcome(item)
        self._lead(item)
        return self._outcome(item)

    @staticmethod
    def _outcome(item: _Item) -> dict[str, np.ndarray]:
        if item.error is not None:
            raise item.error
        assert item.result is not None
        return item.result

    # --- the leader ---------------------------------------------------------------------------

    def _lead(self, own: _Item) -> None:
        """Run batches (FIFO) until ``own`` is done, then pass the lead on."""
        try:
            while own.state != _DONE:
                self._execute(self._next_batch(), own)
        finally:
            with self._cond:
                if self._queue:
                    successor = self._queue[0]
                    successor.state = _LEAD
                    self._wake(successor)
                else:
                    self._busy = False
                depth = len(self._queue)
            self._observer.set_queue_depth(depth)

    def _next_batch(self) -> list[_Item]:
        cond = self._cond
        with cond:
            first = self._queue.popleft()
            first.state = _RUNNING
            batch = [first]
            if first.key is None:
                return batch
            rows = first.rows
            deadline = 0.0
            while True:
                if self._queue:
                    kept: deque[_Item] = deque()
                    for item in self._queue:
                        if item.key == first.key and rows + item.rows <= self._max_rows:
                            item.state = _RUNNING
                            batch.append(item)
                            rows += item.rows
                        else:
                            kept.append(item)
                    self._queue = kept
                if rows >= self._max_rows or self._coming <= 0:
                    return batch
                now = time.monotonic()
                if not deadline:
                    deadline = now + self._max_wait
                if now >= deadline:
                    return batch
                self._wait_for_followers(deadline - now)

    def _wait_for_followers(self, timeout: float) -> None:
        """Wait on the condition (held) for announced requests; they need the turn to arrive."""
        cond, turns = self._cond, self._turns
        if not turns.holding():
            cond.wait(timeout)
            return
        turns.give()
        cond.wait(timeout)
        # Taken without the condition held: its holder may be waiting for the condition.
        cond.release()
        try:
            turns.take()
        finally:
            cond.acquire()

    def _wake(self, item: _Item) -> None:
        """Wake a parked request: at once, or in its turn when it gave one up to park."""
        if item.turn is None:
            item.wake.release()
        else:
            self._turns.hand(item.wake, item.turn)

    def _execute(self, batch: list[_Item], own: _Item) -> None:
        try:
            if len(batch) == 1:
                self._run_alone(batch[0])
            else:
                self._run_merged(batch)
        finally:
            # Whatever happened, every waiting request is answered (an error at worst).
            for item in batch:
                if item.result is None and item.error is None:
                    item.error = RuntimeError("the batch could not be run")
                item.state = _DONE
                if item is not own:
                    self._wake(item)

    def _run_merged(self, batch: list[_Item]) -> None:
        names = list(batch[0].inputs)
        merged = {n: np.concatenate([item.inputs[n] for item in batch]) for n in names}
        total = sum(item.rows for item in batch)
        try:
            with self._turns.paused():
                outputs = self._predict(merged)
        except Exception:
            # Run each request alone, so only the one that breaks the model gets the error.
            for item in batch:
                self._run_alone(item)
            return
        if any(a.ndim == 0 or a.shape[0] != total for a in outputs.values()):
            # The model does not return one row per input row after all: never merge again.
            log.warning("the model's outputs are not batch-major; request merging is now off")
            self._merge = False
            for item in batch:
                self._run_alone(item)
            return
        self._observer.observe_batch(len(batch), total)
        start = 0
        for item in batch:
            end = start + item.rows
            item.result = {n: a[start:end] for n, a in outputs.items()}
            start = end

    def _run_alone(self, item: _Item) -> None:
        try:
            with self._turns.paused():
                item.result = self._predict(item.inputs)
        except Exception as exc:
            item.error = exc
            return
        first = next(iter(item.inputs.values()), None)
        rows = int(first.shape[0]) if first is not None and first.ndim else 1
        self._observer.observe_batch(1, rows)
