"""Turns: a worker's request threads run Python one at a time, first come, first served.

CPython lets one thread run Python at a time (the GIL), but it does not choose which: a thread
that blocks (on the model, a lock, a socket) and wakes again joins a free-for-all, and under load
an unlucky one loses it many times over. Measured on one core, a request woken after a merged
model call waited up to 25 ms for the GIL while a hundred later requests were answered; that is
where the batcher's tail came from (issue 20), not from the batches themselves.

So request threads take *turns*, a lock handed over first come, first served. A thread holds
the turn while it runs Python for its request and gives it up whenever it blocks;
only the holder competes for the GIL (with the worker's main thread), so the wake-ups that follow
a batch no longer race. Threads that never take a turn (tests, other servers) are not affected:
everything here asks first whether the calling thread holds it.
"""

from __future__ import annotations

import threading
from collections import deque

Gate = threading.Lock


class Turns:
    """First come, first served turns at running Python.

    A thread takes the turn with :meth:`take`, gives it up with :meth:`give`, and wraps anything
    that blocks in :meth:`paused`. A thread parked on its own lock (a batcher's follower) can be
    woken holding the turn with :meth:`hand`, in its place in the order.
    """

    def __init__(self) -> None:
        self._mutex = threading.Lock()
        self._holder: int | None = None
        #: (thread ident, gate) of the threads waiting for the turn, in the order they asked
        self._waiting: deque[tuple[int, Gate]] = deque()
        self._local = threading.local()

    def take(self) -> None:
        """Wait for this thread's turn, after every thread that asked before."""
        me = threading.get_ident()
        with self._mutex:
            if self._holder is None or self._holder == me:
                self._holder = me
                return
            gate = self._gate()
            self._waiting.append((me, gate))
        gate.acquire()  # released by give() or hand(), which made this thread the holder

    def give(self) -> None:
        """End this thread's turn; the thread that has waited longest gets it."""
        with self._mutex:
            if self._holder != threading.get_ident():
                return
            if self._waiting:
                ident, gate = self._waiting.popleft()
                self._holder = ident
                gate.release()
            else:
                self._holder = None

    def waiting(self) -> int:
        """How many threads wait for the turn (parked ones handed it included)."""
        return len(self._waiting)

    def holding(self) -> bool:
        """Whether the calling thread holds the turn."""
        return self._holder == threading.get_ident()

    def hand(self, gate: Gate, ident: int) -> None:
        """Release ``gate`` (on which thread ``ident`` is parked) when that thread's turn comes.

        The parked thread wakes holding the turn: it must have given the turn up before parking.
        """
        with self._mutex:
            if self._holder is None:
                self._holder = ident
                gate.release()
            else:
                self._waiting.append((ident, gate))

    def paused(self) -> _Paused:
        """Give up the turn (if held) while the body blocks; take it again (last in line) after.

        A context manager of its own, not a generator: it wraps every model call, and costs
        half as much (0.8 against 1.7 us).
        """
        return _Paused(self)

    def _gate(self) -> Gate:
        gate: Gate | None = getattr(self._local, "gate", None)
        if gate is None:
            gate = self._local.gate = threading.Lock()
            gate.acquire()
        return gate


class _Paused:
    """:meth:`Turns.paused`: gives the turn up on entry if the thread held it, takes it after."""

    __slots__ = ("_held", "_turns")

    def __init__(self, turns: Turns) -> None:
        self._turns = turns
        self._held = False

    def __enter__(self) -> None:
        if self._turns.holding():
            self._held = True
            self._turns.give()

    def __exit__(self, *exc_info: object) -> None:
        if self._held:
            self._turns.take()


#: The process's turns: the worker's request threads take them, the batcher pauses them.
TURNS = Turns()
