"""Names of the fake cloud resolved to the fake, in this process and in the tests' subprocesses.

Blob URLs carry no port (``https://<account>.blob.core.fake.test/...``): the answer names the
fake's port, so the connection reaches the fake whatever port was asked. Nothing but names under
the fake's own domain is touched; every other name resolves as usual.

A subprocess of a test (the CLI, a background job) gets the same through ``sitecustomize.py``
beside this file: put this folder first on ``PYTHONPATH`` and set :data:`RESOLVE_ENV` to
``DOMAIN=PORT`` (:func:`subprocess_env`).
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

RESOLVE_ENV = "MODELPORT_FAKE_RESOLVE"
HERE = Path(__file__).resolve().parent


def install(domain: str, port: int) -> Callable[[], None]:
    """Resolve every ``*.<domain>`` name to 127.0.0.1:``port``; returns the undo."""
    original = socket.getaddrinfo

    def getaddrinfo(host: Any, service: Any, *args: Any, **kwargs: Any) -> Any:
        name = host.decode() if isinstance(host, bytes) else str(host or "")
        if name == domain or name.endswith("." + domain):
            return original("127.0.0.1", port, *args, **kwargs)
        return original(host, service, *args, **kwargs)

    socket.getaddrinfo = getaddrinfo

    def undo() -> None:
        socket.getaddrinfo = original

    return undo


def install_from_env(environ: Mapping[str, str] | None = None) -> None:
    """What ``sitecustomize`` runs: :func:`install` when :data:`RESOLVE_ENV` says so."""
    spec = (os.environ if environ is None else environ).get(RESOLVE_ENV, "")
    domain, _, port = spec.partition("=")
    if domain and port.isdigit():
        install(domain, int(port))


def subprocess_env(domain: str, port: int, base: Mapping[str, str]) -> dict[str, str]:
    """``base`` with what makes a Python subprocess resolve ``*.<domain>`` to the fake."""
    path = os.pathsep.join(p for p in (str(HERE), base.get("PYTHONPATH", "")) if p)
    return {**base, "PYTHONPATH": path, RESOLVE_ENV: f"{domain}={port}"}
