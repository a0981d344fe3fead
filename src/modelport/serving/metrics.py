"""Prometheus metrics shared by every worker process, in the Prometheus text format.

Multi-worker aggregation: a scrape lands on one worker, but must report all of them. Each worker
owns one small file of float64 slots (``worker-<pid>.bin``) in a directory the server creates
before it starts the workers, and updates its slots in place through a memory map: a counter
increment is a few hundred nanoseconds and never crosses a process boundary. ``GET /metrics``
reads every worker's file and adds them up. The layout of the slots is a pure function of the
server's routes and batch size, so every worker computes the same one. When a worker exits, the
master zeroes its gauges (queue depth, in-flight, ready) and keeps its counters, so totals stay
monotonic across worker restarts. The files go away with the directory when the server stops.
"""

from __future__ import annotations

import bisect
import mmap
import os
import struct
import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np

#: Request latency buckets, in seconds.
LATENCY_BUCKETS: tuple[float, ...] = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip
#: Status codes with their own series; any other code is counted as "other".
STATUSES: tuple[int, ...] = (200, 400, 404, 405, 406, 413, 415, 500, 503)
#: Why a request failed; each error response names one.
ERROR_TYPES: tuple[str, ...] = (
    "bad_input",
    "not_found",
    "method_not_allowed",
    "not_acceptable",
    "too_large",
    "unsupported_media_type",
    "not_ready",
    "overloaded",
    "model_failure",
    "internal",
)
UNMATCHED_ROUTE = "unmatched"
_FILE_PREFIX = "worker-"
_FILE_SUFFIX = ".bin"
# Gauge slots, in order, right after the header slot that holds the layout size.
_QUEUE, _IN_FLIGHT, _READY, _LOAD_SECONDS = range(1, 5)
_GAUGES = 4


def batch_buckets(max_batch_size: int) -> tuple[float, ...]:
    """Powers of two up to the max batch size (and the size itself)."""
    buckets = [1.0]
    while buckets[-1] * 2 < max_batch_size:
        buckets.append(buckets[-1] * 2)
    if buckets[-1] < max_batch_size:
        buckets.append(float(max_batch_size))
    return tuple(buckets)


class Layout:
    """Where each series lives in a worker's slot array.

    Args:
        routes: the route templates the application serves.
        max_batch_size: the batcher's bound, which sets the batch histograms' buckets.
    """

    def __init__(self, routes: Sequence[str], max_batch_size: int) -> None:
        self.routes: tuple[str, ...] = (*dict.fromkeys(routes), UNMATCHED_ROUTE)
        self.route_index = {r: i for i, r in enumerate(self.routes)}
        self.status_index = {s: i for i, s in enumerate(STATUSES)}
        self.status_labels = (*(str(s) for s in STATUSES), "other")
        self.batch_buckets = batch_buckets(max_batch_size)
        # A histogram block is [count, sum, bucket_0, ..., bucket_n-1] (buckets not cumulative).
        self.request_block = 2 + len(LATENCY_BUCKETS)
        self.batch_block = 2 + len(self.batch_buckets)
        offset = 1 + _GAUGES
        self.requests_base = offset
        offset += len(self.routes) * len(self.status_labels) * self.request_block
        self.errors_base = offset
        offset += len(ERROR_TYPES)
        self.batch_requests_base = offset
        offset += self.batch_block
        self.batch_rows_base = offset
        offset += self.batch_block
        self.size = offset

    def request_offset(self, route: str, status: int) -> int:
        """The first slot of the latency histogram of (route, status)."""
        r = self.route_index.get(route, len(self.routes) - 1)
        s = self.status_index.get(status, len(STATUSES))
        return self.requests_base + (r * len(self.status_labels) + s) * self.request_block


class WorkerMetrics:
    """This process's metrics, written in place into its file in the metrics directory.

    Args:
        directory: the directory every worker of one server shares.
        layout: the slot layout (identical in every worker).
    """

    def __init__(self, directory: Path, layout: Layout) -> None:
        self.layout = layout
        self.directory = directory
        self.path = directory / f"{_FILE_PREFIX}{os.getpid()}{_FILE_SUFFIX}"
        size = layout.size * 8
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.ftruncate(fd, size)
            self._mmap = mmap.mmap(fd, size)
        finally:
            os.close(fd)
        self._slots = memoryview(self._mmap).cast("d")
        self._slots[0] = float(layout.size)
        # Several request threads update the same slots; "+=" on a slot is not atomic.
        self._lock = threading.Lock()

    def observe_request(self, route: str, status: int, seconds: float) -> None:
        """Count one answered request and its latency."""
        base = self.layout.request_offset(route, status)
        bucket = bisect.bisect_left(LATENCY_BUCKETS, seconds)
        slots = self._slots
        with self._lock:
            slots[base] += 1.0
            slots[base + 1] += seconds
            if bucket < len(LATENCY_BUCKETS):
                slots[base + 2 + bucket] += 1.0

    def count_error(self, kind: str) -> None:
        """Count one error response of type ``kind`` (one of :data:`ERROR_TYPES`)."""
        index = self.layout.errors_base + ERROR_TYPES.index(kind)
        with self._lock:
            self._slots[index] += 1.0

    def observe_batch(self, requests: int, rows: int) -> None:
        """Count one model call that merged ``requests`` requests holding ``rows`` rows."""
        buckets = self.layout.batch_buckets
        slots = self._slots
        with self._lock:
            for base, value in (
                (self.layout.batch_requests_base, requests),
                (self.layout.batch_rows_base, rows),
            ):
                slots[base] += 1.0
                slots[base + 1] += value
                bucket = bisect.bisect_left(buckets, value)
                if bucket < len(buckets):
                    slots[base + 2 + bucket] += 1.0

    def set_queue_depth(self, depth: int) -> None:
        """Record how many requests wait for the model in this worker."""
        self._slots[_QUEUE] = float(depth)

    def add_in_flight(self, delta: int) -> None:
        """Track requests being handled by this worker."""
        with self._lock:
            self._slots[_IN_FLIGHT] += delta

    def set_ready(self, ready: bool, load_seconds: float | None = None) -> None:
        """Record readiness and, once known, how long loading and warming up the model took."""
        if load_seconds is not None:
            self._slots[_LOAD_SECONDS] = load_seconds
        self._slots[_READY] = 1.0 if ready else 0.0

    def close(self) -> None:
        """Unmap the file (its counters stay for the aggregate)."""
        self._slots.release()
        self._mmap.close()


def zero_gauges(directory: Path, pid: int) -> None:
    """Called by the master when worker ``pid`` exits: its gauges no longer describe anything."""
    path = directory / f"{_FILE_PREFIX}{pid}{_FILE_SUFFIX}"
    try:
        with path.open("r+b") as fh:
            fh.seek(8)
            fh.write(b"\0" * (8 * _GAUGES))
    except FileNotFoundError:
        pass


def ready_workers(directory: Path) -> int:
    """How many workers' ready gauges say their model is loaded and warmed up."""
    ready = 0
    for path in directory.glob(f"{_FILE_PREFIX}*{_FILE_SUFFIX}"):
        try:
            with path.open("rb") as fh:
                fh.seek(8 * _READY)
                raw = fh.read(8)
        except OSError:  # a file being created or removed right now
            continue
        if len(raw) == 8 and struct.unpack("d", raw)[0] == 1.0:
            ready += 1
    return ready


def collect(directory: Path, layout: Layout) -> np.ndarray:
    """Sum every worker's slots; gauges are summed too, except model load time (the maximum)."""
    total = np.zeros(layout.size, dtype=np.float64)
    load_seconds = 0.0
    for path in directory.glob(f"{_FILE_PREFIX}*{_FILE_SUFFIX}"):
        try:
            slots = np.fromfile(path, dtype=np.float64)
        except OSError:  # a file being created or removed right now
            continue
        if slots.size != layout.size or slots[0] != layout.size:
            continue
        load_seconds = max(load_seconds, float(slots[_LOAD_SECONDS]))
        total += slots
    total[_LOAD_SECONDS] = load_seconds
    return total


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _number(value: float) -> str:
    return str(int(value)) if value.is_integer() else repr(value)


def _histogram(
    lines: list[str],
    name: str,
    labels: str,
    block: np.ndarray,
    buckets: Sequence[float],
) -> None:
    count, total = float(block[0]), float(block[1])
    running = 0.0
    sep = "," if labels else ""
    for bound, value in zip(buckets, block[2:], strict=True):
        running += float(value)
        lines.append(f'{name}_bucket{{{labels}{sep}le="{bound}"}} {_number(running)}')
    lines.append(f'{name}_bucket{{{labels}{sep}le="+Inf"}} {_number(count)}')
    suffix = f"{{{labels}}}" if labels else ""
    lines.append(f"{name}_sum{suffix} {_number(total)}")
    lines.append(f"{name}_count{suffix} {_number(count)}")


def render(directory: Path, layout: Layout) -> str:
    """The Prometheus text exposition (format 0.0.4) of every worker's metrics, added up."""
    slots = collect(directory, layout)
    lines: list[str] = []
    block = layout.request_block

    series = []
    for r, route in enumerate(layout.routes):
        for s, status in enumerate(layout.status_labels):
            base = layout.requests_base + (r * len(layout.status_labels) + s) * block
            if slots[base] > 0:
                series.append((f'route="{_escape(route)}",status="{status}"', base))
    lines.append("# HELP modelport_requests_total Requests answered, by route and status.")
    lines.append("# TYPE modelport_requests_total counter")
    for labels, base in series:
        lines.append(f"modelport_requests_total{{{labels}}} {_number(float(slots[base]))}")
    lines.append(
        "# HELP modelport_request_duration_seconds Time to answer a request, by route and status."
    )
    lines.append("# TYPE modelport_request_duration_seconds histogram")
    for labels, base in series:
        _histogram(
            lines,
            "modelport_request_duration_seconds",
            labels,
            slots[base : base + block],
            LATENCY_BUCKETS,
        )

    lines.append("# HELP modelport_errors_total Error responses, by type.")
    lines.append("# TYPE modelport_errors_total counter")
    for i, kind in enumerate(ERROR_TYPES):
        value = float(slots[layout.errors_base + i])
        lines.append(f'modelport_errors_total{{type="{kind}"}} {_number(value)}')

    for name, base, what in (
        ("modelport_batch_requests", layout.batch_requests_base, "Requests merged per model call."),
        ("modelport_batch_rows", layout.batch_rows_base, "Rows per model call."),
    ):
        lines.append(f"# HELP {name} {what}")
        lines.append(f"# TYPE {name} histogram")
        _histogram(
            lines,
            name,
            "",
            slots[base : base + layout.batch_block],
            layout.batch_buckets,
        )

    for name, slot, what in (
        ("modelport_queue_depth", _QUEUE, "Requests waiting for the model, all workers."),
        ("modelport_requests_in_flight", _IN_FLIGHT, "Requests being handled, all workers."),
        ("modelport_workers_ready", _READY, "Workers with the model loaded and warmed up."),
        (
            "modelport_model_load_seconds",
            _LOAD_SECONDS,
            "Time to load and warm up the model (slowest worker).",
        ),
    ):
        lines.append(f"# HELP {name} {what}")
        lines.append(f"# TYPE {name} gauge")
        lines.append(f"{name} {_number(float(slots[slot]))}")
    return "\n".join(lines) + "\n"
