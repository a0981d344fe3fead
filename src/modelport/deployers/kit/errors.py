"""One place where a target's SDK exceptions become modelport's errors, each with a hint.

A target describes its SDK once, as an :class:`ErrorMap` whose ``classify`` function says what
kind of failure an exception is (:class:`Kind`), and wraps its SDK calls::

    DOCKER_ERRORS = ErrorMap("docker", classify=_classify_docker_py)

    with DOCKER_ERRORS.translating("starting the container"):
        client.containers.run(...)

A classified exception is raised again as the matching :class:`~modelport.errors.DeploymentError`
subclass (not found, conflict, throttled, quota, permission denied, unavailable), with the SDK's
message, a hint saying what to check, and the original exception kept as ``__cause__`` (shown by
``--debug``). Exceptions that are already modelport's, or that ``classify`` does not recognise,
pass through untouched. :class:`~modelport.deployers.kit.rollout.Rollout` translates what a step
raises with the target's map, so most targets never write ``translating`` themselves.
"""

from __future__ import annotations

import contextlib
import enum
import functools
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from modelport.errors import (
    ConflictError,
    DeploymentError,
    ModelportError,
    PermissionDeniedError,
    QuotaExceededError,
    ResourceNotFound,
    TargetUnavailableError,
    ThrottledError,
)


class Kind(enum.Enum):
    """What kind of failure an SDK exception is."""

    NOT_FOUND = "not found"
    CONFLICT = "conflict"
    THROTTLED = "throttled"
    QUOTA = "quota exceeded"
    PERMISSION_DENIED = "permission denied"
    UNAVAILABLE = "unavailable"
    INVALID = "invalid request"
    OTHER = "failed"


_CLASSES: dict[Kind, type[DeploymentError]] = {
    Kind.NOT_FOUND: ResourceNotFound,
    Kind.CONFLICT: ConflictError,
    Kind.THROTTLED: ThrottledError,
    Kind.QUOTA: QuotaExceededError,
    Kind.PERMISSION_DENIED: PermissionDeniedError,
    Kind.UNAVAILABLE: TargetUnavailableError,
    Kind.INVALID: DeploymentError,
    Kind.OTHER: DeploymentError,
}

#: What to check, when the target has nothing more precise to say.
DEFAULT_HINTS: dict[Kind, str] = {
    Kind.NOT_FOUND: "check the names, and the region or account the target points at",
    Kind.CONFLICT: "another operation may still be running on it: wait and retry, or use "
    "another name",
    Kind.THROTTLED: "the API is rate-limiting these credentials: retry in a minute",
    Kind.QUOTA: "ask for a higher quota, or ask for fewer or smaller resources",
    Kind.PERMISSION_DENIED: "check that the credentials in use are allowed to do this step",
    Kind.UNAVAILABLE: "check the API address, the network and any proxy in between",
}


@dataclass(frozen=True)
class Classified:
    """What ``classify`` may return when it knows more than the kind.

    Attributes:
        kind: the kind of failure.
        detail: the SDK's message, cleaned up (default: the exception's text).
        hint: a hint more precise than the map's for this kind.
    """

    kind: Kind
    detail: str | None = None
    hint: str | None = None


Classifier = Callable[[BaseException], Kind | Classified | None]
F = TypeVar("F", bound=Callable[..., Any])


def kind_for_status(status: int | None) -> Kind | None:
    """The kind of failure an HTTP status means (for SDKs that carry one); None below 400."""
    if status is None or status < 400:
        return None
    return {
        400: Kind.INVALID,
        401: Kind.PERMISSION_DENIED,
        403: Kind.PERMISSION_DENIED,
        404: Kind.NOT_FOUND,
        409: Kind.CONFLICT,
        412: Kind.CONFLICT,
        422: Kind.INVALID,
        429: Kind.THROTTLED,
        502: Kind.UNAVAILABLE,
        503: Kind.UNAVAILABLE,
        504: Kind.UNAVAILABLE,
    }.get(status, Kind.OTHER)


@dataclass(frozen=True)
class ErrorMap:
    """How one target's SDK exceptions map onto modelport's errors.

    Attributes:
        target: the target's name, for messages.
        classify: says what kind of failure an exception is, or None for "not the SDK's".
        hints: hints per kind, more precise than :data:`DEFAULT_HINTS`.
        reference: where to read more about this target's errors.
    """

    target: str
    classify: Classifier
    hints: Mapping[Kind, str] = field(default_factory=dict)
    reference: str | None = None

    def translate(self, exc: BaseException, doing: str) -> ModelportError | None:
        """The modelport error for ``exc``, raised while ``doing`` something; None to leave it.

        Args:
            exc: what the SDK raised.
            doing: what was being done, for the message (``"starting the container"``).
        """
        if isinstance(exc, ModelportError) or not isinstance(exc, Exception):
            return None
        found = self.classify(exc)
        if found is None:
            return None
        info = found if isinstance(found, Classified) else Classified(found)
        detail = info.detail or str(exc) or type(exc).__name__
        error = _CLASSES[info.kind](
            f"{doing} failed on target {self.target!r} ({info.kind.value}): {detail}",
            hint=info.hint or self.hints.get(info.kind) or DEFAULT_HINTS.get(info.kind),
            reference=self.reference,
        )
        error.__cause__ = exc
        return error

    @contextlib.contextmanager
    def translating(self, doing: str) -> Iterator[None]:
        """Raise what the block raises as modelport's error, when :meth:`translate` knows it."""
        try:
            yield
        except Exception as exc:
            error = self.translate(exc, doing)
            if error is None:
                raise
            raise error from exc

    def translated(self, doing: str) -> Callable[[F], F]:
        """A decorator: what the function raises is translated as in :meth:`translating`."""

        def decorate(function: F) -> F:
            @functools.wraps(function)
            def run(*args: Any, **kwargs: Any) -> Any:
                with self.translating(doing):
                    return function(*args, **kwargs)

            return run  # type: ignore[return-value]

        return decorate
