"""What one client may cost a worker: deadlines, bounds per connection, the buffer budget.

Every client costs a bounded share of the worker: deadlines for a head and a minimum body rate
(408), a connection limit at which the oldest idle connections make room, a bound on requests
read ahead per connection, and a budget of buffered request bytes (503).
"""

from __future__ import annotations

import threading
from collections.abc import Iterable

from modelport.serving.worker.request import Request

#: How long a connection whose answer said "close" is kept for the client to close it first.
LINGER_S = 2.0
#: How long a stopping worker keeps idle kept-alive connections, for requests already on the way.
STOP_LINGER_S = 1.0
#: Complete requests read ahead on one connection (pipelining) before reading from it pauses.
MAX_PIPELINED = 32
#: The largest request head (request line and header fields) read; larger ones get 431.
#: Checked per read, so up to one read more is buffered before the refusal.
MAX_HEAD_BYTES = 64 * 1024
#: A request head must arrive whole within this many seconds of its first byte (else 408).
HEAD_TIMEOUT_S = 10.0
#: A request body must arrive within this grace period plus one second per ``MIN_BODY_RATE``
#: bytes received (else 408): a client trickling its body cannot hold a connection for long.
BODY_GRACE_S = 10.0
MIN_BODY_RATE = 8 * 1024
#: Answers not yet taken by the client, per connection, past which no further pipelined request
#: on it is answered until the client reads: a client that never reads costs no pool thread.
MAX_UNSENT_BYTES = 64 * 1024
#: The longest a client may leave an answer untaken (no byte of it read) before it is dropped.
SEND_TIMEOUT_S = 30.0
#: Request bytes a worker buffers at most, over all its connections (beyond: 503, Retry-After),
#: unless :meth:`ModelportWorker.configured` sets another budget.
MIN_BUFFERED_BUDGET = 64 * 1024 * 1024
#: Bodies up to this size are never refused for the budget: a flood of large bodies must not
#: shut out small requests (the connection limit bounds what small ones buffer).
SMALL_BODY_BYTES = 64 * 1024


class BufferBudget:
    """The request bytes one worker holds over all its connections, and the most it may.

    The main thread reserves (as a head or body arrives); whoever drops a request releases.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        #: request bytes held (reserved at the head for a known length), under ``lock``
        self.held = 0
        self.lock = threading.Lock()

    def reserve(self, request: Request, size: int) -> bool:
        """Count ``size`` more bytes for ``request``; False (nothing counted) past the budget."""
        with self.lock:
            if self.held + size > self.limit:
                return False
            self.held += size
        request.reserved += size
        return True

    def release(self, requests: Iterable[Request | None]) -> None:
        """Give back the bytes that requests held (each once)."""
        total = 0
        for request in requests:
            if request is not None and request.reserved:
                total += request.reserved
                request.reserved = 0
        if total:
            with self.lock:
                self.held -= total
