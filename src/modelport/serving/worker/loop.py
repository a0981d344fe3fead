"""The worker's loop: the gunicorn worker, its selector thread and its pool of answering threads.

The main thread accepts, reads (parsing is the :class:`Connection`'s), evicts idle connections
at the limit, sweeps deadlines, and sends what clients could not take at once; complete
requests go through one queue to the pool, whose threads answer them with the
:class:`RequestCycle`. Only the main thread touches the selector or closes a socket; pool
threads hand it work through queues and a wake-up byte on gunicorn's pipe.
"""

from __future__ import annotations

import contextlib
import errno
import os
import queue
import selectors
import socket
import sys
import threading
import time
from typing import Any

from gunicorn.workers.base import Worker  # type: ignore[import-untyped]

from modelport.serving.turns import TURNS
from modelport.serving.worker.connection import Connection
from modelport.serving.worker.cycle import RequestCycle
from modelport.serving.worker.limits import (
    BODY_GRACE_S,
    HEAD_TIMEOUT_S,
    MAX_PIPELINED,
    MAX_UNSENT_BYTES,
    MIN_BODY_RATE,
    MIN_BUFFERED_BUDGET,
    SEND_TIMEOUT_S,
    STOP_LINGER_S,
    BufferBudget,
)
from modelport.serving.worker.request import Refused

#: When a worker is at its connection limit, it closes this fraction of its idle connections
#: (the oldest first) at once, so a flood of new ones does not cost a scan per accept.
_EVICT_FRACTION = 16
_RECV_SIZE = 65536
_OUT_OF_RESOURCES = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})


class ModelportWorker(Worker):  # type: ignore[misc]
    """A gunicorn worker: a selector thread parses, ``threads`` pool threads answer.

    gunicorn settings it honours: ``threads``, ``keepalive``, ``worker_connections`` (the
    connections one worker holds; at the limit the oldest idle ones are closed first),
    ``graceful_timeout``, ``max_requests``, ``limit_request_line``, ``limit_request_fields``,
    ``limit_request_field_size``. The request body limit is :attr:`max_body` and the budget of
    buffered request bytes :attr:`max_buffered`; build a worker class with others with
    :meth:`configured`.

    A hostile client costs a bounded share: a head must arrive within ``HEAD_TIMEOUT_S`` and a
    body at ``MIN_BODY_RATE`` (else 408); a client that does not read its answers holds no pool
    thread (the main thread sends what they cannot take at once) and at most
    ``MAX_UNSENT_BYTES`` of answers plus ``MAX_PIPELINED`` requests read ahead.
    """

    #: Bodies larger than this are not read: the application answers 413 from the length.
    max_body: int = sys.maxsize
    #: Request bytes buffered at most over all connections; requests beyond it get 503.
    max_buffered: int = sys.maxsize

    @classmethod
    def configured(cls, max_body: int, max_buffered: int | None = None) -> type[ModelportWorker]:
        """This worker class with other limits.

        Args:
            max_body: the request body limit in bytes.
            max_buffered: the budget of buffered request bytes; default: four bodies at the
                limit, and at least ``MIN_BUFFERED_BUDGET``.
        """
        budget = max_buffered or max(4 * max_body, MIN_BUFFERED_BUDGET)
        attrs = {"max_body": max_body, "max_buffered": max(budget, max_body)}
        return type(cls.__name__, (cls,), attrs)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.connections: set[Connection] = set()
        self.jobs: queue.SimpleQueue[Connection | None] = queue.SimpleQueue()
        self.resumed: queue.SimpleQueue[Connection] = queue.SimpleQueue()
        #: connections whose answers wait for the client: the main thread sends the rest
        self.unsent: queue.SimpleQueue[Connection] = queue.SimpleQueue()
        #: connections a pool thread is done with, for the main thread to close
        self.closing: queue.SimpleQueue[Connection] = queue.SimpleQueue()
        self.selector: selectors.BaseSelector | None = None
        self.limit_line = self.cfg.limit_request_line or 1 << 20
        self.limit_fields = self.cfg.limit_request_fields or 1 << 16
        self.limit_field_size = self.cfg.limit_request_field_size or 1 << 20
        self.accepting = False
        self.accept_paused_until = 0.0
        self.handled = 0
        self.threads: list[threading.Thread] = []
        #: the main thread reserves as requests arrive; whoever drops a request releases
        self.budget = BufferBudget(self.max_buffered)
        #: built in :meth:`run`, once gunicorn has loaded the application
        self.cycle: RequestCycle | None = None

    # --- the main thread -------------------------------------------------------------------------

    def run(self) -> None:
        """The main loop: accept, read, parse, dispatch, send what waits; close idle connections."""
        self.cycle = RequestCycle(self)
        self.selector = selectors.DefaultSelector()
        self.selector.register(self.PIPE[0], selectors.EVENT_READ, None)
        for listener in self.sockets:
            listener.setblocking(False)
        self.set_accepting(True)
        for index in range(max(1, self.cfg.threads)):
            thread = threading.Thread(
                target=self.answer_loop, name=f"modelport-request-{index}", daemon=True
            )
            thread.start()
            self.threads.append(thread)
        stopping_since: float | None = None
        last_beat = last_sweep = 0.0
        try:
            while True:
                now = time.monotonic()
                if now - last_beat >= 1.0:
                    self.notify()
                    last_beat = now
                    if self.ppid != os.getppid():
                        self.log.info("Parent changed, shutting down: %s", self)
                        self.alive = False
                if not self.alive and stopping_since is None:
                    stopping_since = now
                    self.set_accepting(False)
                    for listener in self.sockets:
                        listener.close()
                if stopping_since is not None and (
                    not self.connections or now - stopping_since > self.cfg.graceful_timeout
                ):
                    break
                if (
                    not self.accepting
                    and stopping_since is None
                    and now >= self.accept_paused_until
                ):
                    self.set_accepting(True)
                if now - last_sweep >= 0.5 or stopping_since is not None:
                    self.sweep(now, stopping_since)
                    last_sweep = now
                for key, events in self.selector.select(0.5 if stopping_since is None else 0.1):
                    data = key.data
                    if data is None:
                        self.drain_wakeups()
                    elif isinstance(data, Connection):
                        if events & selectors.EVENT_WRITE:
                            self.on_writable(data)
                        if events & selectors.EVENT_READ and data in self.connections:
                            self.on_readable(data)
                    else:
                        self.accept(key.fileobj)  # type: ignore[arg-type]
        finally:
            for _ in self.threads:
                self.jobs.put(None)
            for connection in list(self.connections):
                self.close(connection)

    def set_accepting(self, accepting: bool) -> None:
        """Watch the listening sockets for new connections, or stop watching them."""
        assert self.selector is not None
        if accepting == self.accepting or (accepting and not self.alive):
            return
        for listener in self.sockets:
            if accepting:
                self.selector.register(listener, selectors.EVENT_READ, "listener")
            else:
                self.selector.unregister(listener)
        self.accepting = accepting

    def accept(self, listener: socket.socket) -> None:
        """Accept the connections waiting on a listening socket, up to the connection limit.

        At the limit, the oldest idle connections (kept alive between requests, or with a head
        that is still arriving) make room; with none idle, accepting pauses until one closes.
        """
        assert self.selector is not None
        for attempt in range(64):
            if len(self.connections) >= self.cfg.worker_connections:
                if attempt:
                    # Room is made only when the selector said a connection waits: past the
                    # first, none may (another worker may take it), and the next wake-up says.
                    return
                if not self.evict_idle():
                    self.set_accepting(False)  # the main loop resumes shortly
                    self.accept_paused_until = time.monotonic() + 0.1
                    return
            try:
                sock, client = listener.accept()
            except OSError as exc:
                if exc.errno in _OUT_OF_RESOURCES:
                    # Out of file descriptors or memory: keep serving open connections, and
                    # try again shortly rather than spinning (or dying) on the listener.
                    self.log.warning("cannot accept connections for now: %s", exc)
                    self.set_accepting(False)
                    self.accept_paused_until = time.monotonic() + 0.5
                elif exc.errno not in (errno.EAGAIN, errno.ECONNABORTED, errno.EWOULDBLOCK):
                    raise
                return
            sock.setblocking(False)
            if sock.family in (socket.AF_INET, socket.AF_INET6):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            connection = Connection(self, sock, client, listener.getsockname())
            self.connections.add(connection)
            self.update(connection)

    def evict_idle(self) -> bool:
        """Close the oldest idle connections to make room for new ones. False: none is idle."""
        idle = []
        for connection in self.connections:
            if connection.busy or connection.ready or connection.out:
                continue
            current = connection.current
            if current is None:
                idle.append((connection.last_active, id(connection), connection))
            elif connection.in_head:
                idle.append((connection.head_started, id(connection), connection))
        if not idle:
            return False
        idle.sort()
        for _, _, connection in idle[: max(1, len(self.connections) // _EVICT_FRACTION)]:
            self.close(connection)
        return True

    def drain_wakeups(self) -> None:
        """Empty the wake-up pipe; take over answers to send, connections to close or resume."""
        try:
            while os.read(self.PIPE[0], 4096):
                pass
        except OSError:
            pass
        while True:
            try:
                connection = self.unsent.get_nowait()
            except queue.Empty:
                break
            if connection in self.connections and not connection.writing:
                connection.writing = True
                self.on_writable(connection)  # most often the client has read meanwhile
        while True:
            try:
                connection = self.closing.get_nowait()
            except queue.Empty:
                break
            self.close(connection)
        while True:
            try:
                connection = self.resumed.get_nowait()
            except queue.Empty:
                return
            if connection in self.connections and connection.paused:
                connection.paused = False
                self.watch(connection)
                self.dispatch(connection)  # what the pause held back

    def update(self, connection: Connection) -> None:
        """Register the connection with the selector for the events the main thread wants."""
        assert self.selector is not None
        want = (selectors.EVENT_READ if connection.reading else 0) | (
            selectors.EVENT_WRITE if connection.writing else 0
        )
        have = connection.events
        if want == have:
            return
        if not have:
            self.selector.register(connection.sock, want, connection)
        elif not want:
            self.selector.unregister(connection.sock)
        else:
            self.selector.modify(connection.sock, want, connection)
        connection.events = want

    def watch(self, connection: Connection) -> None:
        """Have the selector report the connection's input."""
        connection.reading = True
        self.update(connection)

    def unwatch(self, connection: Connection) -> None:
        """Stop the selector reporting the connection's input."""
        connection.reading = False
        self.update(connection)

    def on_readable(self, connection: Connection) -> None:
        """Read what a client sent: parse it, or notice that the client closed."""
        try:
            data = connection.sock.recv(_RECV_SIZE)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        connection.last_active = time.monotonic()
        if not data:
            with connection.lock:
                if connection.busy or connection.out:
                    # The answers already due go out first (by the pool thread, or the
                    # main thread as the client takes them); then the connection closes.
                    connection.eof = True
                    if not connection.busy:
                        connection.after_flush = "close"
                    self.unwatch(connection)
                    return
            self.close(connection)
            return
        if connection.discarding or connection.closing_deadline is not None:
            return  # the rest of a refused request, or input after an upgrade or a "close"
        connection.parse(data)
        self.dispatch(connection)

    def on_writable(self, connection: Connection) -> None:
        """Send answer bytes the client could not take earlier; when all went, carry on."""
        sent = connection.flush()
        self.update(connection)
        if sent is None:
            return
        action, busy = sent
        gone = connection.broken and not busy
        if gone or (action == "close" and not (connection.ready and connection.eof)):
            self.close(connection)
        elif action == "finish":
            connection.linger()
        else:
            self.dispatch(connection)  # answer what waited for the client to read

    def dispatch(self, connection: Connection) -> None:
        """Hand the connection's ready requests to the pool, unless they must wait."""
        if not connection.ready:
            return
        with connection.lock:
            if connection.busy or len(connection.out) > MAX_UNSENT_BYTES:
                # Answering goes on when the pool thread is done, or the client has read.
                if len(connection.ready) >= MAX_PIPELINED:
                    connection.paused = True
                    self.unwatch(connection)
                return
            connection.busy = True
        self.jobs.put(connection)

    def sweep(self, now: float, stopping_since: float | None) -> None:
        """Close connections that lingered, idled or stalled too long; time out slow requests."""
        keepalive = self.cfg.keepalive
        for connection in list(self.connections):
            if connection.busy:
                continue
            if connection.out:
                if now - connection.write_progress > SEND_TIMEOUT_S:
                    self.close(connection)  # the client has not read anything for too long
                continue
            if connection.ready:
                continue
            deadline = connection.closing_deadline
            if deadline is not None:
                if now >= deadline:
                    self.close(connection)
                continue
            current = connection.current
            if current is not None and not connection.discarding:
                if connection.in_head:
                    late = now - connection.head_started > HEAD_TIMEOUT_S
                    what = f"the request head did not arrive within {HEAD_TIMEOUT_S:g} s"
                else:
                    allowed = BODY_GRACE_S + current.size / MIN_BODY_RATE
                    late = now - connection.body_started > allowed
                    what = f"the request body arrived slower than {MIN_BODY_RATE} bytes/s"
                if late:
                    connection.refuse_current(current, Refused(408, what))
                    self.dispatch(connection)
                    continue
            idle = now - connection.last_active
            if idle > keepalive or (
                # Stopping: an idle connection, or a request that stopped arriving, waits a
                # moment for bytes already on the way; a request still arriving may finish.
                stopping_since is not None
                and now - max(stopping_since, connection.last_active) >= STOP_LINGER_S
            ):
                self.close(connection)

    def close(self, connection: Connection) -> None:
        """Forget a connection and close its socket (the main thread only)."""
        if connection not in self.connections:
            return
        connection.reading = connection.writing = False
        self.update(connection)
        self.connections.discard(connection)
        with connection.lock:
            held = [connection.current, *connection.ready]
            connection.ready.clear()
            connection.current = None
        self.budget.release(held)
        with contextlib.suppress(OSError):
            connection.sock.close()

    def wake(self) -> None:
        """Wake the main thread from its selector wait (any thread)."""
        # A full pipe means the main thread is about to wake anyway.
        with contextlib.suppress(OSError):
            os.write(self.PIPE[1], b"\0")

    # --- pool threads ----------------------------------------------------------------------------

    def answer_loop(self) -> None:
        """Take a connection with ready requests and answer them in order."""
        while True:
            connection = self.jobs.get()
            if connection is None:
                return
            try:
                self.serve(connection)
            except BaseException:
                # Never lose a pool thread (or leave a connection busy forever) to a bug.
                self.log.exception("Error answering on a connection; closing it")
                self.abandon(connection)

    def abandon(self, connection: Connection) -> None:
        """Drop the requests still waiting on a connection (their budget too), then finish it."""
        with connection.lock:
            dropped = list(connection.ready)
            connection.ready.clear()
            connection.busy = False
            eof = connection.eof
        self.budget.release(dropped)
        self.finish(connection, eof)

    def serve(self, connection: Connection) -> None:
        """Answer every ready request of a connection, in order, then give it back.

        It stops early while the client leaves more than ``MAX_UNSENT_BYTES`` of answers
        untaken; the main thread hands the connection back once the client has read them. While
        other connections wait for a pool thread, it answers one request at a time and then
        queues the connection behind them, so a pipelining client cannot starve the others.
        """
        assert self.cycle is not None
        answer = self.cycle.answer
        while True:
            with connection.lock:
                if not connection.ready or len(connection.out) > MAX_UNSENT_BYTES:
                    connection.busy = False
                    # Idle from now on: a long request does not count against the keep-alive.
                    connection.last_active = time.monotonic()
                    eof, paused = connection.eof, connection.paused
                    if eof and connection.out:
                        connection.after_flush = "close"
                        eof = False  # closed by the main thread once the client has it all
                    break
                request = connection.ready.popleft()
            # The application runs in this request's turn (see modelport.serving.turns).
            TURNS.take()
            try:
                keep = answer(connection, request)
            except OSError:
                keep = False  # the client went away
            finally:
                TURNS.give()
                if request.reserved:
                    self.budget.release((request,))
            self.count_request()
            if keep and connection.ready and not self.jobs.empty():
                self.jobs.put(connection)  # still busy: whichever thread takes it goes on
                return
            if not keep:
                self.abandon(connection)
                return
        if eof:
            self.closing.put(connection)  # the main thread saw the end and stopped watching
            self.wake()
        elif paused:
            self.resumed.put(connection)
            self.wake()

    def finish(self, connection: Connection, eof: bool) -> None:
        """After the last answer on a connection: stop sending; close it or let it linger.

        Closing a socket with unread input makes the kernel send a reset, which can destroy
        the answer before the client reads it; so unless the client has closed already, the
        main thread drops its input until it closes, for at most ``LINGER_S``. Answer bytes
        the client has not taken yet go first.
        """
        connection.discarding = True
        with connection.lock:
            if connection.out and not connection.broken:
                connection.after_flush = "close" if eof else "finish"
                return
        if eof or connection.broken:
            self.closing.put(connection)
            self.wake()
            return
        connection.linger()

    def count_request(self) -> None:
        """Count an answered request; past ``max_requests`` the worker stops (and is replaced)."""
        self.handled += 1
        if self.handled >= self.max_requests and self.alive:
            self.log.info("Autorestarting worker after current request.")
            self.alive = False
            self.wake()
