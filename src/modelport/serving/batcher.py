"""The dynamic batcher: concurrent requests of one worker share one model call.

Request threads hand their enforced input arrays to :meth:`Batcher.predict` and block; one batcher
thread takes what is queued, merges compatible requests along the first (batch) dimension, runs
the model once and hands each request its own rows back.

- Requests are merged only when every input has the same dtype and the same non-batch dimensions,
  so nothing is ever padded and each row meets exactly the computation it would meet alone.
- A merged call holds at most ``max_batch_size`` rows; a larger request runs alone.
- The batcher waits for more requests (at most ``max_wait_s``) only while other requests are
  known to be on their way (their bodies are being parsed): a lone client never pays the wait.
- The model is only called from the batcher thread, so a model that is not thread-safe is safe.
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

from modelport.errors import ModelportError
from modelport.model_format.signature import Signature

log = logging.getLogger("modelport.serving")

Arrays = Mapping[str, np.ndarray]
Predict = Callable[[Arrays], dict[str, np.ndarray]]


class BatchObserver(Protocol):
    """Where the batcher reports what it does (the server's metrics)."""

    def observe_batch(self, requests: int, rows: int) -> None:
        """One model call merged ``requests`` requests holding ``rows`` rows."""

    def set_queue_depth(self, depth: int) -> None:
        """This many requests now wait for the model."""


class Overloaded(ModelportError):
    """A request waited longer than the server's timeout for its prediction."""


class _Item:
    __slots__ = ("cancelled", "done", "error", "inputs", "key", "result", "rows")

    def __init__(self, inputs: Arrays, key: object, rows: int) -> None:
        self.inputs = inputs
        self.key = key
        self.rows = rows
        self.result: dict[str, np.ndarray] | None = None
        self.error: BaseException | None = None
        self.cancelled = False
        # A plain lock is the cheapest one-shot signal: the batcher releases it when done.
        self.done = threading.Lock()
        self.done.acquire()


def batchable(signature: Signature) -> bool:
    """True when every input and output has a variable first dimension (one row per example)."""
    specs = (*signature.inputs, *signature.outputs)
    return bool(signature.inputs) and all(s.shape and s.shape[0] == -1 for s in specs)


class Batcher:
    """Merges concurrent predictions into one model call per batch.

    Args:
        predict: runs the model on enforced arrays (called from the batcher thread only).
        signature: the model's signature; merging is off unless :func:`batchable` says yes.
        max_batch_size: the most rows one merged call may hold.
        max_wait_s: how long a batch may wait for requests that are on their way.
        observer: receives batch sizes and queue depth.
        enabled: False runs each request in its own model call (still on the batcher thread).
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
    ) -> None:
        self._predict = predict
        self._merge = enabled and batchable(signature)
        self._max_rows = max(1, max_batch_size)
        self._max_wait = max(0.0, max_wait_s)
        self._observer = observer
        self._items: deque[_Item] = deque()
        self._cond = threading.Condition(threading.Lock())
        self._coming = 0  # requests announced by expect() and not yet submitted
        self._stopped = False
        self._thread = threading.Thread(target=self._run, name="modelport-batcher", daemon=True)
        self._thread.start()

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
            timeout_s: the longest to wait for the result.
            announced: the caller called :meth:`expect` for this request.

        Raises:
            Overloaded: no result within ``timeout_s``.
            ModelError: the model failed (every request of the failed batch gets it).
        """
        key: object = None
        rows = 0
        if self._merge:
            first = next(iter(inputs.values()))
            rows = int(first.shape[0]) if first.ndim else 0
            if 0 < rows <= self._max_rows:
                key = tuple((n, a.dtype.str, a.shape[1:]) for n, a in inputs.items())
            else:
                rows = 0
        item = _Item(inputs, key, rows)
        with self._cond:
            if announced:
                self._coming -= 1
            self._items.append(item)
            depth = len(self._items)
            self._cond.notify()
        self._observer.set_queue_depth(depth)
        if not item.done.acquire(timeout=timeout_s):
            item.cancelled = True
            raise Overloaded(f"no prediction within {timeout_s:g} s; the server is overloaded")
        if item.error is not None:
            raise item.error
        assert item.result is not None
        return item.result

    def stop(self) -> None:
        """Stop the batcher thread once the queue is empty (used by tests and the dev server)."""
        with self._cond:
            self._stopped = True
            self._cond.notify()
        self._thread.join(timeout=5)

    # --- the batcher thread -------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            batch = self._next_batch()
            if batch is None:
                return
            self._observer.set_queue_depth(len(self._items))
            self._execute(batch)

    def _next_batch(self) -> list[_Item] | None:
        cond = self._cond
        with cond:
            while not self._items:
                if self._stopped:
                    return None
                cond.wait()
            first = self._items.popleft()
            batch = [first]
            if first.key is None:
                return batch
            rows = first.rows
            deadline = time.monotonic() + self._max_wait
            while True:
                if self._items:
                    kept: deque[_Item] = deque()
                    for item in self._items:
                        if item.key == first.key and rows + item.rows <= self._max_rows:
                            batch.append(item)
                            rows += item.rows
                        else:
                            kept.append(item)
                    self._items = kept
                if rows >= self._max_rows or self._coming <= 0:
                    return batch
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return batch
                cond.wait(remaining)

    def _execute(self, batch: list[_Item]) -> None:
        live = [item for item in batch if not item.cancelled]
        if not live:
            return
        if len(live) == 1:
            self._run_alone(live[0])
            return
        names = list(live[0].inputs)
        merged = {n: np.concatenate([item.inputs[n] for item in live]) for n in names}
        total = sum(item.rows for item in live)
        try:
            outputs = self._predict(merged)
        except Exception:
            # Run each request alone, so only the one that breaks the model gets the error.
            for item in live:
                self._run_alone(item)
            return
        if any(a.ndim == 0 or a.shape[0] != total for a in outputs.values()):
            # The model does not return one row per input row after all: never merge again.
            log.warning("the model's outputs are not batch-major; request merging is now off")
            self._merge = False
            for item in live:
                self._run_alone(item)
            return
        self._observer.observe_batch(len(live), total)
        start = 0
        for item in live:
            end = start + item.rows
            item.result = {n: a[start:end] for n, a in outputs.items()}
            start = end
            item.done.release()

    def _run_alone(self, item: _Item) -> None:
        try:
            item.result = self._predict(item.inputs)
        except Exception as exc:
            item.error = exc
        else:
            first = next(iter(item.inputs.values()), None)
            rows = int(first.shape[0]) if first is not None and first.ndim else 1
            self._observer.observe_batch(1, rows)
        item.done.release()
