"""Plain HTTP to a deployment's server from this machine: probes and predictions (stdlib only)."""

from __future__ import annotations

import contextlib
import json
import urllib.error
import urllib.request
from collections.abc import Mapping
from typing import Any

from modelport.errors import DeploymentError, InputError, ModelError

PROBE_TIMEOUT_S = 2.0


def client_host(host: str) -> str:
    """The address a client on this machine uses to reach a server bound to ``host``."""
    if host in ("", "0.0.0.0"):
        return "127.0.0.1"
    if host == "::":
        return "[::1]"
    return f"[{host}]" if ":" in host else host


def http(
    method: str,
    url: str,
    body: bytes | None = None,
    timeout: float = PROBE_TIMEOUT_S,
    headers: Mapping[str, str] | None = None,
) -> tuple[int, bytes]:
    """One HTTP exchange (a body is sent as JSON). Returns (status, body).

    Raises:
        OSError: nothing answered.
    """
    request = urllib.request.Request(url, data=body, method=method)
    if body is not None:
        request.add_header("Content-Type", "application/json")
    for key, value in (headers or {}).items():
        request.add_header(key, value)
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


def predict_over_http(
    where: str, endpoint: str, payload: Mapping[str, Any], unreachable_hint: str = ""
) -> dict[str, Any]:
    """POST ``payload`` to ``{endpoint}/invocations`` and map the answer onto modelport's errors.

    Args:
        where: names the deployment in messages, e.g. ``"local deployment 'demo'"``.
        endpoint: the server's base URL.
        payload: a JSON body in any format the server accepts.
        unreachable_hint: appended when nothing answers (where to look next).

    Raises:
        InputError: the server refused the input (4xx), with its message.
        ModelError: the model failed (500).
        DeploymentError: nothing answered, or any other status.
    """
    body = json.dumps(payload).encode()
    try:
        status, data = http("POST", f"{endpoint}/invocations", body, timeout=300.0)
    except OSError as exc:
        raise DeploymentError(
            f"{where} does not answer at {endpoint} ({exc}){unreachable_hint}"
        ) from None
    try:
        answer = json.loads(data)
    except ValueError:
        answer = None
    # /invocations answers errors in MLflow's shape, {"error_code", "message"}; a proxy in
    # front of it (the local target's) answers {"error": ...}.
    message = (answer.get("message") or answer.get("error")) if isinstance(answer, dict) else None
    if status == 200 and isinstance(answer, dict):
        return answer
    if status in (400, 413, 415, 422):
        raise InputError(str(message or f"the server refused the input (HTTP {status})"))
    if status == 500:
        raise ModelError(str(message or "the model failed (HTTP 500)"))
    raise DeploymentError(f"{where} answered HTTP {status}: {message or 'no details'}")
