"""google-cloud-aiplatform for the ``vertex`` target: credentials, the SDK, Google's errors.

google-cloud-aiplatform and google-auth are imported here and in this folder only (the
``modelport[vertex]`` extra). Every client uses the REST transport, so ``-C api_endpoint``
reaches a private endpoint (or an emulator) as it reaches Google. Calls that Google answers
with ``429`` or ``503`` before doing anything are made again with backoff (:func:`retrying`);
the SDK's own operation polling retries transient errors itself.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from modelport.deployers.kit.errors import Classified, ErrorMap, Kind, kind_for_status
from modelport.deployers.kit.progress import Progress, silence_loggers
from modelport.deployers.kit.progress import quiet as progress_quiet
from modelport.deployers.vertex.config import TARGET, Location, VertexConfig, api_base
from modelport.errors import MissingDependencyError, UsageError

SCOPES = ("https://www.googleapis.com/auth/cloud-platform",)
DEFAULT_LOGGING_HOST = "logging.googleapis.com"
#: How often a call Google refused with 429 or 503 is made (the first time included).
MAX_TRIES = 6
FIRST_BACKOFF_S = 1.0
MAX_BACKOFF_S = 30.0
#: Where the SDK's loggers live: they print INFO lines on stdout ("Creating Endpoint").
SDK_LOGGERS = "google.cloud.aiplatform"
quiet = progress_quiet(SDK_LOGGERS)
T = TypeVar("T")
_PERMISSION = re.compile(r"Permission '?(?P<permission>[\w.]+)'? denied")
_QUOTA_METRIC = re.compile(r"(?P<metric>aiplatform\.googleapis\.com/[\w]+)")
_RESOURCE = re.compile(r"(?P<name>projects/[^\s'\"]+)")
_REQUEST_PREFIX = re.compile(r"^(GET|POST|PATCH|PUT|DELETE) \S+: ")


def _import_error(exc: ImportError) -> MissingDependencyError:
    return MissingDependencyError(
        "the vertex target", "vertex", exc.name or "google-cloud-aiplatform"
    )


def sdk() -> Any:
    """``google.cloud.aiplatform``, with its loggers kept quiet."""
    try:
        from google.cloud import aiplatform
    except ImportError as exc:
        raise _import_error(exc) from None
    silence_loggers(SDK_LOGGERS)
    return aiplatform


def make_credentials(config: VertexConfig) -> tuple[Any, str | None]:
    """The credentials (and the project they name): the key file, else google-auth's default.

    Raises:
        UsageError: the key file cannot be read, or there are no default credentials.
    """
    try:
        import google.auth
        from google.auth import exceptions as auth_errors
        from google.oauth2 import service_account
    except ImportError as exc:
        raise _import_error(exc) from None
    if config.service_account_file is not None:
        path = config.service_account_file
        try:
            credentials = service_account.Credentials.from_service_account_file(  # type: ignore[no-untyped-call]
                str(path), scopes=list(SCOPES)
            )
        except (OSError, ValueError, KeyError) as exc:
            raise UsageError(
                f"cannot read the service account key {path}: {exc}",
                hint="-C service_account_file is a JSON key (IAM > Service accounts > Keys)",
            ) from None
        return credentials, credentials.project_id
    try:
        credentials, project = google.auth.default(scopes=list(SCOPES))
    except auth_errors.DefaultCredentialsError as exc:
        raise UsageError(
            f"no Google credentials: {exc}",
            hint="run gcloud auth application-default login, set GOOGLE_APPLICATION_CREDENTIALS, "
            "or pass -C service_account_file=KEY.json",
        ) from None
    return credentials, project


@dataclass
class Google:
    """One project and region's access to Vertex AI: credentials and the SDK's configuration.

    Made on first use, so options are checked, and ``--dry-run`` plans, without any request.
    """

    config: VertexConfig
    _credentials: Any = None
    _location: Location | None = None

    def _load(self) -> None:
        if self._location is None:
            from modelport.deployers.vertex.config import resolve_location

            credentials, project = make_credentials(self.config)
            self._location = resolve_location(self.config, credentials_project=project)
            self._credentials = credentials

    @property
    def location(self) -> Location:
        """The project and region."""
        self._load()
        assert self._location is not None
        return self._location

    @property
    def credentials(self) -> Any:
        """google-auth credentials."""
        self._load()
        return self._credentials

    @property
    def api_host(self) -> str:
        """The Vertex API's ``scheme://host[:port]``."""
        return api_base(
            self.config.api_endpoint, f"{self.location.region}-aiplatform.googleapis.com"
        )

    @property
    def logging_host(self) -> str:
        """The Cloud Logging API's ``scheme://host[:port]``."""
        return api_base(self.config.logging_endpoint, DEFAULT_LOGGING_HOST)

    def aiplatform(self) -> Any:
        """The SDK, configured for this project, region, credentials and endpoint (REST).

        The SDK keeps one process-wide configuration: it is set again each time (about a
        microsecond), so another target's settings never leak into this one's calls.
        """
        location = self.location  # first: a missing project is said before the SDK loads
        module = sdk()
        # Always named (the regional host by default, as the SDK itself would pick): the SDK
        # keeps an endpoint set before, and never forgets it when given None.
        endpoint = self.config.api_endpoint or f"{location.region}-aiplatform.googleapis.com"
        endpoint = endpoint.removeprefix("https://")  # a host; http:// (an emulator) stays
        module.init(
            project=location.project,
            location=location.region,
            credentials=self.credentials,
            api_endpoint=endpoint,
            api_transport="rest",
        )
        return module

    def session(self) -> Any:
        """An authorized ``requests`` session (for the Cloud Logging API)."""
        from google.auth.transport.requests import AuthorizedSession

        return AuthorizedSession(self.credentials)  # type: ignore[no-untyped-call]


# --- errors -------------------------------------------------------------------------------------


def status_of(exc: BaseException) -> int | None:
    """The HTTP status of a Google API error (None for anything else)."""
    code = getattr(exc, "code", None)
    return int(code) if isinstance(code, int) else None


def not_found(exc: BaseException) -> bool:
    """The exception is Google's 404."""
    return type(exc).__name__ == "NotFound" or status_of(exc) == 404


def message_of(exc: BaseException) -> str:
    """Google's message, without the request google-api-core puts before it.

    Its REST errors read ``POST https://HOST/v1/...?$alt=...: <Google's message>``: the URL
    says nothing a person needs (and holds the whole query).
    """
    text = str(getattr(exc, "message", None) or exc)
    return _REQUEST_PREFIX.sub("", text, count=1)


def is_quota(message: str) -> bool:
    """Google says a quota is exhausted (not a rate limit that waiting lifts)."""
    return quota_metric(message) is not None or "quota" in message.lower()


def quota_metric(message: str) -> str | None:
    """The quota metric a Google message names (``aiplatform.googleapis.com/...``)."""
    found = _QUOTA_METRIC.search(message)
    return found["metric"] if found else None


def _permission_hint(message: str) -> str:
    found = _PERMISSION.search(message)
    permission = found["permission"] if found else None
    if permission is None:
        return "the credentials in use need roles/aiplatform.user (Vertex AI User) on the project"
    if permission.startswith("iam.serviceAccounts"):
        return (
            f"the credentials in use need {permission}: grant roles/iam.serviceAccountUser on "
            "the -C service_account the containers run as"
        )
    if permission.startswith("artifactregistry."):
        return (
            f"{permission} is missing: the Vertex AI service agent needs "
            "roles/artifactregistry.reader on the image's repository"
        )
    if permission.startswith("logging."):
        return f"the credentials in use need {permission}: grant roles/logging.viewer"
    return (
        f"the credentials in use need {permission}: grant roles/aiplatform.user (Vertex AI "
        "User) on the project"
    )


def _classify(exc: BaseException) -> Kind | Classified | None:
    try:
        from google.api_core import exceptions as api
        from google.auth import exceptions as auth
    except ImportError:
        return None
    if isinstance(exc, auth.DefaultCredentialsError):
        return Classified(Kind.PERMISSION_DENIED, str(exc), hint=_permission_hint(""))
    if isinstance(exc, auth.RefreshError):
        return Classified(
            Kind.PERMISSION_DENIED,
            str(exc),
            hint="the credentials could not get a token: check -C service_account_file, or run "
            "gcloud auth application-default login",
        )
    if isinstance(exc, auth.TransportError) or type(exc).__module__.startswith("requests"):
        return Classified(
            Kind.UNAVAILABLE,
            str(exc),
            hint="check the network, any proxy, and -C api_endpoint",
        )
    if not isinstance(exc, api.GoogleAPICallError):
        return None
    # The HTTP classes: the REST transport raises them (Forbidden), an operation's error the
    # gRPC ones beneath them (PermissionDenied).
    message = message_of(exc)
    if isinstance(exc, (api.Forbidden, api.Unauthorized)):
        return Classified(Kind.PERMISSION_DENIED, message, hint=_permission_hint(message))
    if isinstance(exc, api.TooManyRequests):
        if is_quota(message):
            metric = quota_metric(message)
            hint = (
                f"ask for more {metric} quota in the region (IAM & Admin > Quotas), or ask for less"
                if metric
                else None
            )
            return Classified(Kind.QUOTA, message, hint=hint)
        return Classified(Kind.THROTTLED, message)
    if isinstance(exc, api.NotFound):
        found = _RESOURCE.search(message)
        hint = (
            f"{found['name'].rstrip('.')} does not exist: check -C project and -C region"
            if found
            else None
        )
        return Classified(Kind.NOT_FOUND, message, hint=hint)
    if isinstance(exc, api.Conflict):
        return Classified(Kind.CONFLICT, message)
    if isinstance(
        exc, (api.ServiceUnavailable, api.DeadlineExceeded, api.GatewayTimeout, api.BadGateway)
    ):
        return Classified(Kind.UNAVAILABLE, message)
    if isinstance(exc, api.BadRequest):
        return Classified(Kind.INVALID, message)
    return Classified(kind_for_status(status_of(exc)) or Kind.OTHER, message)


VERTEX_ERRORS = ErrorMap(
    TARGET,
    classify=_classify,
    hints={
        Kind.INVALID: "Vertex refused the request as invalid: check the -C options the message "
        "names (modelport deploy --dry-run shows what is sent)",
        Kind.NOT_FOUND: "check -C project and -C region",
        Kind.UNAVAILABLE: "check the network, any proxy, and -C api_endpoint",
        Kind.QUOTA: "ask for more quota for the machine or accelerator in the region (IAM & "
        "Admin > Quotas), or ask for fewer or smaller replicas",
    },
    reference="https://cloud.google.com/vertex-ai/docs/general/troubleshooting",
)


# --- retries ------------------------------------------------------------------------------------


def _retry_after(exc: BaseException) -> float | None:
    response = getattr(exc, "response", None)
    headers: Mapping[str, str] = getattr(response, "headers", None) or {}
    value = str(headers.get("Retry-After") or "").strip()
    try:
        return max(0.0, float(value)) if value else None
    except ValueError:
        return None


def refused_before_acting(exc: BaseException, *, idempotent: bool) -> bool:
    """Google answered 429 or 503 to a request, so the call may be made again.

    A call that creates something (an upload, a deployment) is made again only when the
    refused request was the one that starts it (not a poll of its operation): then nothing
    was made. A quota refusal is not retried: waiting does not raise a quota.
    """
    status = status_of(exc)
    if status not in (429, 503) or is_quota(message_of(exc)):
        return False
    request = getattr(getattr(exc, "response", None), "request", None)
    method = str(getattr(request, "method", "") or "")
    if not method:  # an operation's own error, not an HTTP answer: the work was done
        return False
    return idempotent or method != "GET"


def retrying(
    call: Callable[[], T],
    what: str,
    *,
    progress: Progress | None = None,
    idempotent: bool = True,
    first_backoff_s: float = FIRST_BACKOFF_S,
) -> T:
    """``call()``, made again with backoff while Google refuses it with 429 or 503.

    Google's ``Retry-After`` is honoured when it sends one.
    """
    delay = first_backoff_s
    for attempt in range(1, MAX_TRIES + 1):
        try:
            return call()
        except Exception as exc:
            if attempt == MAX_TRIES or not refused_before_acting(exc, idempotent=idempotent):
                raise
            wait = _retry_after(exc)
            wait = delay if wait is None else min(wait, MAX_BACKOFF_S)
            if progress is not None:
                progress.info(
                    f"{what}: Google answered {status_of(exc)}; trying again in {wait:.1f} s "
                    f"({attempt}/{MAX_TRIES - 1})"
                )
            time.sleep(wait)  # backoff between tries, not a wait for an event
            delay = min(delay * 2, MAX_BACKOFF_S)
    raise AssertionError("unreachable")
