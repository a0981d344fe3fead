"""Open-loop HTTP load: requests sent at a fixed rate, latency measured from the intended send time.

Usage:
    python benchmarks/open_loop.py URL BODY_FILE RATE SECONDS [--connections 64]
        [--content-type application/json]

A closed-loop client (wrk) sends the next request on a connection only once the last one is
answered, so a server that stalls also stalls its client, and the requests that would have
arrived meanwhile are never sent: the stall shows as one slow request instead of many (what Gil
Tene calls coordinated omission). Here request *i* is due at ``start + i / RATE`` whatever the
server does. It goes out on an idle keep-alive connection when one is free, else it waits for
one, and its latency runs from when it was due, so waiting for a connection counts. The rate is
the server's to keep up with: a server slower than ``RATE`` shows latencies that grow for the
whole run.

Prints one JSON object: ``sent``, ``answered``, ``errors`` (non-2xx answers and broken
connections), ``rate`` (answered per second), ``late_start_ms`` (how far behind schedule the
client itself fell at worst: a figure above a millisecond or so means the client, not the server,
was the limit) and ``p50_ms``, ``p90_ms``, ``p99_ms``, ``p99.9_ms``, ``max_ms``.

Plain Python (selectors, non-blocking sockets), one thread: pin it to its own core with taskset.
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import selectors
import socket
import sys
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

_RECV = 65536


@dataclass
class _Conn:
    sock: socket.socket
    due: float = 0.0  # when the request in flight was due; 0: idle
    buffer: bytearray = field(default_factory=bytearray)


def percentile(ordered: list[float], p: float) -> float:
    """The ``p``-th percentile (nearest rank) of sorted values; NaN for none."""
    if not ordered:
        return float("nan")
    rank = max(0, min(len(ordered) - 1, math.ceil(p / 100 * len(ordered)) - 1))
    return ordered[rank]


def _answer_length(buffer: bytearray) -> tuple[int, int] | None:
    """(status, total length) of the first complete answer in ``buffer``; None if incomplete."""
    end = buffer.find(b"\r\n\r\n")
    if end < 0:
        return None
    head = bytes(buffer[:end]).split(b"\r\n")
    status = int(head[0].split(b" ", 2)[1])
    length = 0
    for line in head[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    total = end + 4 + length
    return (status, total) if len(buffer) >= total else None


def open_loop(
    url: str,
    body: bytes,
    rate: float,
    seconds: float,
    *,
    connections: int = 64,
    content_type: str = "application/json",
) -> dict[str, float]:
    """Send ``rate`` requests per second for ``seconds``; the latencies, from each due time.

    Args:
        url: ``http://host:port/path`` to POST to.
        body: the request body.
        rate: requests per second, on a fixed schedule.
        seconds: how long to send; answers still due are waited for (at most 10 s more).
        connections: keep-alive connections opened before the clock starts.
        content_type: the body's media type.
    """
    # The client makes no reference cycles; a collection of its growing list of latencies would
    # only put its own pauses into the figures.
    gc.disable()
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    request = (
        f"POST {parts.path or '/'} HTTP/1.1\r\nHost: {host}:{port}\r\n"
        f"Content-Type: {content_type}\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode() + body
    selector = selectors.DefaultSelector()
    idle: deque[_Conn] = deque()
    for _ in range(connections):
        sock = socket.create_connection((host, port))
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.setblocking(False)
        conn = _Conn(sock)
        selector.register(sock, selectors.EVENT_READ, conn)
        idle.append(conn)
    waiting: deque[float] = deque()  # due times of requests with no idle connection yet
    latencies: list[float] = []
    errors = sent = 0
    late = 0.0
    total = int(rate * seconds)
    start = time.perf_counter() + 0.05
    drain_until = start + seconds + 10.0

    def send(conn: _Conn, due: float) -> None:
        nonlocal sent
        conn.due = due
        conn.sock.send(request)  # a small request into an empty buffer goes at once
        sent += 1

    scheduled = 0
    while True:
        now = time.perf_counter()
        while scheduled < total and start + scheduled / rate <= now:
            due = start + scheduled / rate
            late = max(late, now - due)
            scheduled += 1
            if idle:
                send(idle.popleft(), due)
            else:
                waiting.append(due)
        in_flight = sent - len(latencies) - errors
        if scheduled >= total and not waiting and in_flight == 0:
            break
        if now > drain_until:
            errors += in_flight + len(waiting)
            break
        timeout = (start + scheduled / rate - now) if scheduled < total else 0.1
        for key, _ in selector.select(max(0.0, timeout)):
            conn: _Conn = key.data
            try:
                data = conn.sock.recv(_RECV)
            except BlockingIOError:
                continue
            except OSError:
                data = b""
            if not data:
                raise RuntimeError("the server closed a keep-alive connection")
            conn.buffer += data
            answer = _answer_length(conn.buffer)
            if answer is None:
                continue
            status, length = answer
            del conn.buffer[:length]
            done = time.perf_counter()
            if 200 <= status < 300:
                latencies.append(done - conn.due)
            else:
                errors += 1
            if waiting:
                send(conn, waiting.popleft())
            else:
                conn.due = 0.0
                idle.append(conn)
    elapsed = max(time.perf_counter() - start, 1e-9)
    for key in list(selector.get_map().values()):
        key.fileobj.close()  # type: ignore[union-attr]
    selector.close()
    latencies.sort()
    ms = [x * 1e3 for x in latencies]
    return {
        "sent": float(sent),
        "answered": float(len(latencies)),
        "errors": float(errors),
        "rate": len(latencies) / elapsed,
        "late_start_ms": late * 1e3,
        "p50_ms": percentile(ms, 50),
        "p90_ms": percentile(ms, 90),
        "p99_ms": percentile(ms, 99),
        "p99.9_ms": percentile(ms, 99.9),
        "max_ms": ms[-1] if ms else float("nan"),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("url")
    parser.add_argument("body", type=Path)
    parser.add_argument("rate", type=float)
    parser.add_argument("seconds", type=float)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--content-type", default="application/json")
    args = parser.parse_args(argv)
    if args.rate <= 0 or args.seconds <= 0 or args.connections < 1:
        parser.error("RATE and SECONDS must be positive, --connections at least 1")
    result = open_loop(
        args.url,
        args.body.read_bytes(),
        args.rate,
        args.seconds,
        connections=args.connections,
        content_type=args.content_type,
    )
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
