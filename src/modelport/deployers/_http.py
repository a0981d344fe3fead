"""Plain HTTP to a deployment's server from this machine: probes and predictions (stdlib only)."""

from __future__ import annotations

import contextlib
import urllib.error
import urllib.request

PROBE_TIMEOUT_S = 2.0


def client_host(host: str) -> str:
    """The address a client on this machine uses to reach a server bound to ``host``."""
    if host in ("", "0.0.0.0"):
        return "127.0.0.1"
    if host == "::":
        return "[::1]"
    return f"[{host}]" if ":" in host else host


def http(
    method: str, url: str, body: bytes | None = None, timeout: float = PROBE_TIMEOUT_S
) -> tuple[int, bytes]:
    """One HTTP exchange. Returns (status, body); raises OSError when nothing answered."""
    request = urllib.request.Request(url, data=body, method=method)
    if body is not None:
        request.add_header("Content-Type", "application/json")
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never via $http_proxy
    try:
        with opener.open(request, timeout=timeout) as response:
            return int(response.status), bytes(response.read())
    except urllib.error.HTTPError as exc:
        with contextlib.closing(exc):
            return int(exc.code), bytes(exc.read())


def probe_status(url: str) -> int | None:
    """Status of ``GET url`` (None when nothing answered)."""
    try:
        return http("GET", url)[0]
    except OSError:
        return None
