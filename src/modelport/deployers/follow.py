"""Keep a deployment on whatever version an MLflow registry alias names.

A :class:`Follower` asks the registry which version ``models:/NAME@ALIAS`` names: every
``interval_s`` seconds, and at once when MLflow delivers a ``model_version_alias.created``
webhook for that alias (HMAC-signed; see :class:`WebhookReceiver`). When the version moved it
fetches and packs it (the package cache keeps each version), runs the package's input example
through it (the gate), and calls the target's ``update``. A version that fails the gate is not
deployed and not tried again until the alias moves; a failed update leaves the old version
serving (the targets' own guarantee) and is tried again at the next check. Each outcome is
reported as a :class:`FollowEvent`.

One follower per deployment: a lock under ``$MODELPORT_HOME/follow``. What it last deployed is
kept beside the lock, and a restarted follower compares the package the alias names with the
one the deployment serves, so a restart redeploys nothing.
"""

from __future__ import annotations

import base64
import collections
import contextlib
import datetime as dt
import fcntl
import hashlib
import hmac
import json
import os
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelport.errors import ConflictError, ModelportError, UsageError
from modelport.home import default_home, write_json_atomic

if TYPE_CHECKING:
    from modelport.deployers.base import Deployer
    from modelport.model_format.remote.registry import RegistryVersion

#: The environment variable holding the webhook's shared secret (the MLflow webhook's secret).
WEBHOOK_SECRET_ENV = "MODELPORT_WEBHOOK_SECRET"

#: MLflow's webhook headers (mlflow/webhooks/constants.py) and the signature's version.
SIGNATURE_HEADER = "X-MLflow-Signature"
TIMESTAMP_HEADER = "X-MLflow-Timestamp"
DELIVERY_HEADER = "X-MLflow-Delivery-Id"
SIGNATURE_VERSION = "v1"

#: A delivery older (or newer) than this is refused: a captured one cannot be replayed later.
MAX_CLOCK_SKEW_S = 300
#: The largest webhook body read; MLflow's are a few hundred bytes.
MAX_WEBHOOK_BYTES = 64 * 1024


@dataclass(frozen=True)
class FollowEvent:
    """One thing a follower did or saw.

    Attributes:
        kind: ``following`` (started), ``unchanged``, ``deployed``, ``rejected`` (the version
            failed to pack or its example failed the gate: not deployed), ``update-failed``
            (the old version still serves), ``registry-error``, ``webhook`` (a delivery
            accepted), ``webhook-refused`` (bad signature, stale or replayed), ``stopped``.
        deployment: the deployment's name.
        uri: the followed URI.
        version: the registry version concerned, if any.
        digest: the package digest concerned, if any.
        message: what happened, for people.
        at: when (UTC, ISO 8601).
    """

    kind: str
    deployment: str
    uri: str
    version: str | None = None
    digest: str | None = None
    message: str = ""
    at: str = field(default_factory=lambda: dt.datetime.now(dt.timezone.utc).isoformat())

    def to_dict(self) -> dict[str, Any]:
        """The event as JSON values (one line of ``--json`` output)."""
        return asdict(self)


def check_followable(uri: str) -> tuple[str, str | None]:
    """``(name, alias)`` of a URI a deployment can follow; alias None for ``/latest``.

    ``models:/NAME@ALIAS`` and ``models:/NAME/latest`` move; nothing else does.

    Raises:
        UsageError: any other reference (a fixed version or a path never moves).
    """
    from modelport.model_format.remote.registry import parse_mlflow_uri

    if uri.startswith("models:/"):
        name, alias, version = parse_mlflow_uri(uri)
        if alias is not None or version == "latest":
            return name, alias
    raise UsageError(
        f"{uri}: only a registry alias (models:/NAME@ALIAS) or models:/NAME/latest can be followed",
        hint="a path, a storage URI or a fixed version never moves; deploy it without --follow",
    )


class WebhookReceiver:
    """A small HTTP endpoint for MLflow's registry webhooks, checked before it is believed.

    MLflow signs ``f"{delivery_id}.{timestamp}.{body}"`` with HMAC-SHA256 and the webhook's
    secret, sending ``v1,<base64>`` in ``X-MLflow-Signature``. A delivery is accepted only with
    a valid signature, a timestamp within :data:`MAX_CLOCK_SKEW_S` and a delivery id not seen
    before; it then only wakes the follower, which asks the registry itself.

    Args:
        secret: the webhook's shared secret.
        on_alias: called with ``(name, alias, version)`` of an accepted
            ``model_version_alias.created`` delivery.
        on_refused: called with the reason a delivery was refused.
        host: address to listen on.
        port: port to listen on (0: any free port).
    """

    def __init__(
        self,
        secret: str,
        on_alias: Callable[[str, str, str], None],
        on_refused: Callable[[str], None],
        *,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        if not secret:
            raise UsageError(
                "a webhook endpoint needs the webhook's secret",
                hint=f"set {WEBHOOK_SECRET_ENV} to the secret the MLflow webhook was created with",
            )
        import http.server  # only a follower with webhooks listens

        self._secret = secret.encode()
        self._on_alias = on_alias
        self._on_refused = on_refused
        self._seen: collections.OrderedDict[str, None] = collections.OrderedDict()
        self._lock = threading.Lock()
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            server_version = "modelport-follow"
            sys_version = ""

            def do_POST(self) -> None:
                status, body = receiver.handle(self.headers, self.rfile)
                self._answer(status, body)

            def do_GET(self) -> None:
                self._answer(200, {"status": "following"})

            def _answer(self, status: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        try:
            self._server = http.server.ThreadingHTTPServer((host, port), Handler)
        except OSError as exc:
            raise UsageError(
                f"cannot listen for webhooks on {host}:{port} ({exc.strerror or exc})"
            ) from None
        self._server.daemon_threads = True
        self._server.timeout = 10  # a client that stalls its request is dropped
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="modelport-webhook", daemon=True
        )

    @property
    def address(self) -> tuple[str, int]:
        """The host and port it listens on."""
        host, port = self._server.server_address[:2]
        return str(host), int(port)

    def start(self) -> None:
        """Start answering, in a background thread."""
        self._thread.start()

    def close(self) -> None:
        """Stop answering and close the socket."""
        if self._thread.is_alive():
            self._server.shutdown()
        self._server.server_close()

    def handle(self, headers: Any, body_stream: Any) -> tuple[int, dict[str, Any]]:
        """Check one delivery; return the HTTP status and JSON body to answer with."""
        try:
            length = int(headers.get("Content-Length", ""))
        except ValueError:
            return self._refuse(411, "a delivery needs a Content-Length")
        if not 0 <= length <= MAX_WEBHOOK_BYTES:
            return self._refuse(413, f"a delivery is at most {MAX_WEBHOOK_BYTES} bytes")
        body = body_stream.read(length)
        delivery = headers.get(DELIVERY_HEADER) or ""
        stamp = headers.get(TIMESTAMP_HEADER) or ""
        signature = headers.get(SIGNATURE_HEADER) or ""
        if not (delivery and stamp and signature):
            return self._refuse(401, "unsigned delivery (no MLflow signature headers)")
        version, _, given = signature.partition(",")
        expected = hmac.new(
            self._secret, f"{delivery}.{stamp}.".encode() + body, hashlib.sha256
        ).digest()
        try:
            given_bytes = base64.b64decode(given, validate=True)
        except ValueError:
            given_bytes = b""
        if version != SIGNATURE_VERSION or not hmac.compare_digest(expected, given_bytes):
            return self._refuse(401, "bad signature")
        try:
            skew = abs(time.time() - int(stamp))
        except ValueError:
            return self._refuse(400, "the timestamp is not a number")
        if skew > MAX_CLOCK_SKEW_S:
            return self._refuse(401, f"the delivery is {skew:.0f} s from now (a replay?)")
        with self._lock:
            if delivery in self._seen:
                return self._refuse(409, "this delivery was already received (a replay?)")
            self._seen[delivery] = None
            while len(self._seen) > 1000:
                self._seen.popitem(last=False)
        try:
            event = json.loads(body)
            entity, action, data = event["entity"], event["action"], event["data"]
        except (ValueError, KeyError, TypeError):
            return self._refuse(400, "not an MLflow webhook payload")
        if (entity, action) != ("model_version_alias", "created"):
            return 200, {"accepted": False, "reason": f"{entity}.{action} is not followed"}
        try:
            self._on_alias(str(data["name"]), str(data["alias"]), str(data["version"]))
        except (KeyError, TypeError):
            return self._refuse(400, "the alias event has no name, alias or version")
        return 200, {"accepted": True}

    def _refuse(self, status: int, reason: str) -> tuple[int, dict[str, Any]]:
        self._on_refused(reason)
        return status, {"error": reason}


class Follower:
    """Keeps deployment ``name`` on ``deployer`` on the version ``uri`` names (see the module).

    Args:
        deployer: the target, configured.
        name: the deployment; it must exist.
        uri: ``models:/NAME@ALIAS`` or ``models:/NAME/latest``.
        interval_s: how often to ask the registry.
        report: called with each :class:`FollowEvent`.
        webhook_secret: with ``webhook_port``, listen for MLflow's webhooks (see
            :class:`WebhookReceiver`).
        webhook_host: address to listen on for webhooks.
        webhook_port: port to listen on for webhooks (0: any free port; None: no webhooks).
        allow_code: allow versions whose packages run code (as ``--allow-code``).
        home: where the lock and the state live; default ``$MODELPORT_HOME/follow``.

    Raises:
        UsageError: ``uri`` cannot be followed, or webhooks without a secret.
    """

    def __init__(
        self,
        deployer: Deployer[Any],
        name: str,
        uri: str,
        *,
        interval_s: float = 60.0,
        report: Callable[[FollowEvent], None] = lambda event: None,
        webhook_secret: str | None = None,
        webhook_host: str = "127.0.0.1",
        webhook_port: int | None = None,
        allow_code: bool = False,
        home: Path | None = None,
    ) -> None:
        self.model, self.alias = check_followable(uri)
        if interval_s <= 0:
            raise UsageError("the poll interval must be more than 0 seconds")
        self.deployer = deployer
        self.name = name
        self.uri = uri
        self.interval_s = interval_s
        self.allow_code = allow_code
        self._report = report
        self._wake = threading.Event()
        self._stopping = threading.Event()
        root = (home if home is not None else default_home() / "follow") / deployer.name
        self._state_path = root / f"{name}.json"
        self._lock_path = root / f"{name}.lock"
        self.webhook: WebhookReceiver | None = None
        if webhook_port is not None:
            self.webhook = WebhookReceiver(
                webhook_secret or "",
                self._on_alias,
                self._on_refused,
                host=webhook_host,
                port=webhook_port,
            )

    # --- running ------------------------------------------------------------------------------

    def run(self) -> None:
        """Follow until :meth:`stop` (the CLI calls it on SIGTERM): check, then wait.

        Raises:
            ConflictError: another follower holds this deployment.
        """
        with self._locked():
            if self.webhook is not None:
                self.webhook.start()
            try:
                where = ""
                if self.webhook is not None:
                    host, port = self.webhook.address
                    where = f"; webhooks on http://{host}:{port}/"
                self._emit(
                    "following",
                    message=f"following {self.uri} every {self.interval_s:g} s{where}",
                )
                while not self._stopping.is_set():
                    self.check()
                    self._wake.wait(self.interval_s)
                    self._wake.clear()
            finally:
                if self.webhook is not None:
                    self.webhook.close()
                self._emit("stopped", message="stopped following")

    def stop(self) -> None:
        """Ask :meth:`run` to return once the check under way (an update, say) is done."""
        self._stopping.set()
        self._wake.set()

    def wake(self) -> None:
        """Check now instead of at the end of the interval."""
        self._wake.set()

    def _on_refused(self, reason: str) -> None:
        self._emit("webhook-refused", message=reason)

    def _on_alias(self, name: str, alias: str, version: str) -> None:
        if name == self.model and (self.alias is None or alias == self.alias):
            self._emit("webhook", version=version, message=f"{name}@{alias} moved to {version}")
            self.wake()

    # --- one check -----------------------------------------------------------------------------

    def check(self) -> FollowEvent:
        """Ask the registry once and bring the deployment to the version it names."""
        from modelport.model_format.remote.registry import resolve

        try:
            found = resolve(self.uri)
        except ModelportError as exc:
            return self._emit("registry-error", message=str(exc))
        version = found.version
        state = self._read_state()
        if state.get("rejected") == version:
            return self._emit("unchanged", version=version, message="rejected before")
        try:
            serving = self.deployer.get(self.name).package_digest
        except ModelportError as exc:
            return self._emit("update-failed", version=version, message=str(exc))
        if state.get("version") == version and state.get("digest") == serving:
            return self._emit("unchanged", version=version, digest=serving)
        return self._deploy(found, serving)

    def _deploy(self, found: RegistryVersion, serving: str) -> FollowEvent:
        from modelport.model_format.locate import fetch_version
        from modelport.model_format.package import load

        version = found.version
        try:
            path = fetch_version(found, allow_code=self.allow_code).path
            package = load(path, allow_code=self.allow_code)
        except ModelportError as exc:
            self._write_state(rejected=version)
            return self._emit("rejected", version=version, message=f"cannot be packed: {exc}")
        with package:
            if package.digest == serving:
                self._write_state(version=version, digest=serving)
                return self._emit("unchanged", version=version, digest=serving)
            problem = _gate(package)
            if problem:
                self._write_state(rejected=version)
                return self._emit(
                    "rejected", version=version, digest=package.digest, message=problem
                )
            try:
                deployment = self.deployer.update(self.name, package)
            except ModelportError as exc:
                return self._emit(
                    "update-failed",
                    version=version,
                    digest=package.digest,
                    message=f"{exc}; the previous version still serves",
                )
        self._write_state(version=version, digest=deployment.package_digest)
        return self._emit(
            "deployed",
            version=version,
            digest=deployment.package_digest,
            message=f"{self.name} serves version {version}",
        )

    # --- state ---------------------------------------------------------------------------------

    def _emit(self, kind: str, **fields: Any) -> FollowEvent:
        event = FollowEvent(kind, self.name, self.uri, **fields)
        self._report(event)
        return event

    def _read_state(self) -> dict[str, Any]:
        try:
            data = json.loads(self._state_path.read_text("utf-8"))
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) and data.get("uri") == self.uri else {}

    def _write_state(self, **values: Any) -> None:
        state = self._read_state()
        state.update(values, uri=self.uri)
        if "digest" in values:
            state.pop("rejected", None)
        write_json_atomic(self._state_path, state)

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """Hold this deployment's follower lock for as long as the block runs."""
        self._lock_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self._lock_path, "a+") as fh:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                fh.seek(0)
                holder = fh.read().strip() or "another process"
                raise ConflictError(
                    f"deployment {self.name!r} on target {self.deployer.name!r} is already "
                    f"followed (by pid {holder})",
                    hint="stop that follower first (SIGTERM); one follower per deployment",
                ) from None
            fh.truncate(0)
            fh.write(str(os.getpid()))
            fh.flush()
            try:
                yield
            finally:
                fh.truncate(0)
                fcntl.flock(fh, fcntl.LOCK_UN)


def _gate(package: Any) -> str | None:
    """Run the package's example through it; what went wrong, or None."""
    try:
        example = package.example()
    except ModelportError as exc:
        return f"its input example is unusable: {exc}"
    if example is None:
        return "it carries no input example to check it with"
    try:
        outputs = package.predict_arrays(example)
    except ModelportError as exc:
        return f"its input example failed: {exc}"
    if not outputs:
        return "its input example gave no outputs"
    return None
