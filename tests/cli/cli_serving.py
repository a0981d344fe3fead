"""A real ``modelport serve`` for the CLI's tests: started, waited for, asked, stopped.

The server binds 127.0.0.1 on a port of its own choosing (``--port 0``) and announces its URL on
stderr; tests wait for that line and for ``/ping``, with deadlines.
"""

from __future__ import annotations

import http.client
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any
from urllib.parse import urlsplit

from process_helpers import wait_for

MODELPORT = str(Path(sys.executable).parent / "modelport")
START_TIMEOUT_S = 120.0


@dataclass
class Answer:
    """An HTTP answer: status, headers (lower-case names) and body."""

    status: int
    headers: dict[str, str]
    body: bytes


@dataclass
class Served:
    """A running ``modelport serve``."""

    proc: subprocess.Popen[bytes]
    log_path: Path
    url: str = ""
    _log: IO[bytes] | None = field(default=None, repr=False)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def post(self, path: str, body: bytes, headers: Mapping[str, str] | None = None) -> Answer:
        return request(self.url + path, "POST", body, headers)

    def stop(self) -> int:
        """SIGTERM, and the exit status (killed after 30 s)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        if self._log is not None:
            self._log.close()
            self._log = None
        return int(self.proc.returncode)


def request(
    url: str,
    method: str = "GET",
    body: bytes | None = None,
    headers: Mapping[str, str] | None = None,
) -> Answer:
    """One request over a fresh loopback connection."""
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    try:
        conn.request(method, parts.path or "/", body=body, headers=dict(headers or {}))
        resp = conn.getresponse()
        return Answer(resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read())
    finally:
        conn.close()


def _ready(server: Served) -> bool:
    if server.proc.poll() is not None:
        return True  # it exited: stop waiting, the caller says why
    if not server.url:
        found = re.search(r"at (http://127\.0\.0\.1:\d+)", server.log())
        if found is None:
            return False
        server.url = found.group(1)
    try:
        return request(server.url + "/ping").status == 200
    except OSError:
        return False


def start(
    package: Path | str,
    args: Sequence[str] = (),
    log_dir: Path | None = None,
    env: Mapping[str, str] | None = None,
    pass_fds: Sequence[int] = (),
) -> Served:
    """``modelport serve PACKAGE --port 0 --workers 1 ARGS``, ready to answer.

    ``package`` may be a URI; then give ``log_dir``. ``pass_fds`` are inherited by the server.
    """
    where = Path(package)
    log_path = (log_dir or where.parent) / f"serve-{where.stem}-{time.monotonic_ns()}.log"
    log = log_path.open("wb")
    full_env: dict[str, Any] = {**os.environ, **(env or {})}
    full_env.pop("MODELPORT_HOST", None)
    proc = subprocess.Popen(
        [MODELPORT, "serve", str(package), "--port", "0", "--workers", "1", *args],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=full_env,
        pass_fds=pass_fds,
    )
    server = Served(proc, log_path, _log=log)
    try:
        wait_for(
            lambda: _ready(server),
            "modelport serve to be ready",
            timeout=START_TIMEOUT_S,
            log=server.log,
        )
        if proc.poll() is not None:
            raise AssertionError(f"modelport serve exited with {proc.returncode}:\n{server.log()}")
    except BaseException:
        server.stop()
        raise
    return server
