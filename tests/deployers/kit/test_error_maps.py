"""Error maps: each kind of SDK failure becomes its modelport error, with the SDK's message, a
hint and the original exception as the cause; what is not the SDK's passes through."""

from __future__ import annotations

import pytest

from modelport.deployers.kit.errors import (
    DEFAULT_HINTS,
    Classified,
    ErrorMap,
    Kind,
    kind_for_status,
)
from modelport.errors import (
    EXIT_ERROR,
    ConflictError,
    DeploymentError,
    DeploymentNotFound,
    ModelportError,
    PermissionDeniedError,
    QuotaExceededError,
    ResourceNotFound,
    TargetUnavailableError,
    ThrottledError,
)


class SdkError(Exception):
    """What a cloud SDK raises: an HTTP status and a message."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def classify(exc: BaseException) -> Kind | Classified | None:
    if isinstance(exc, SdkError):
        kind = kind_for_status(exc.status)
        if exc.status == 403 and "quota" in str(exc):
            return Classified(Kind.QUOTA, hint="ask Acme support for more endpoints")
        return kind
    return None


ACME = ErrorMap(
    "acme",
    classify,
    hints={Kind.PERMISSION_DENIED: "the role needs acme:CreateEndpoint"},
    reference="https://docs.acme.example/errors",
)


@pytest.mark.parametrize(
    ("status", "cls", "kind"),
    [
        (404, ResourceNotFound, Kind.NOT_FOUND),
        (409, ConflictError, Kind.CONFLICT),
        (429, ThrottledError, Kind.THROTTLED),
        (401, PermissionDeniedError, Kind.PERMISSION_DENIED),
        (403, PermissionDeniedError, Kind.PERMISSION_DENIED),
        (503, TargetUnavailableError, Kind.UNAVAILABLE),
        (400, DeploymentError, Kind.INVALID),
        (500, DeploymentError, Kind.OTHER),
    ],
)
def test_each_kind_becomes_its_error(status: int, cls: type[DeploymentError], kind: Kind) -> None:
    cause = SdkError(status, "the SDK's words")
    error = ACME.translate(cause, "creating the endpoint")
    assert type(error) is cls
    assert (
        str(error)
        == f"creating the endpoint failed on target 'acme' ({kind.value}): the SDK's words"
    )
    assert error.__cause__ is cause
    assert error.exit_code == EXIT_ERROR
    assert error.reference == "https://docs.acme.example/errors"
    expected = ACME.hints.get(kind) or DEFAULT_HINTS.get(kind)
    assert error.hint == expected


def test_a_classifier_may_say_more_than_the_kind() -> None:
    error = ACME.translate(SdkError(403, "endpoint quota reached"), "creating the endpoint")
    assert isinstance(error, QuotaExceededError)
    assert error.hint == "ask Acme support for more endpoints"


def test_what_is_not_the_sdks_passes_through() -> None:
    assert ACME.translate(ValueError("a bug"), "x") is None
    assert ACME.translate(DeploymentNotFound("no such thing"), "x") is None
    assert ACME.translate(KeyboardInterrupt(), "x") is None
    assert kind_for_status(200) is None and kind_for_status(None) is None


def test_translating_raises_the_translation_from_the_sdk_error() -> None:
    with pytest.raises(ConflictError) as raised, ACME.translating("renaming the model"):
        raise SdkError(409, "name in use")
    assert isinstance(raised.value.__cause__, SdkError)
    with pytest.raises(ValueError, match="a bug"), ACME.translating("renaming the model"):
        raise ValueError("a bug")


def test_errors_render_their_hint_and_reference_once() -> None:
    error = ACME.translate(SdkError(401, "token expired"), "listing endpoints")
    assert isinstance(error, ModelportError)
    assert error.render().splitlines() == [
        "Error: listing endpoints failed on target 'acme' (permission denied): token expired",
        "  hint: the role needs acme:CreateEndpoint",
        "  see: https://docs.acme.example/errors",
    ]
    assert error.to_dict() == {
        "type": "PermissionDeniedError",
        "message": "listing endpoints failed on target 'acme' (permission denied): token expired",
        "hint": "the role needs acme:CreateEndpoint",
        "reference": "https://docs.acme.example/errors",
        "exit_code": 1,
    }
    assert ModelportError("plain").render() == "Error: plain"
