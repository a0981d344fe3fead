"""One parsed request, and the refusal the worker answers itself instead of the application."""

from __future__ import annotations


class Refused(Exception):
    """A request the worker answers itself (malformed or over a limit), then closes.

    Attributes:
        status: the HTTP status of the answer.
        message: what the answer's error body says (in the shape of its path's protocol).
    """

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class Request:
    """One parsed request. Mutable while the connection's parser fills it in, then only read."""

    __slots__ = (
        "body",
        "close_after",
        "content_length",
        "expect_continue",
        "headers",
        "keep_alive",
        "method",
        "refused",
        "reserved",
        "size",
        "target",
        "version",
    )

    def __init__(self) -> None:
        self.method = "GET"
        self.target = b""
        self.version = "1.1"
        self.headers: list[tuple[bytes, bytes]] = []
        self.body: list[bytes] = []
        self.size = 0
        self.keep_alive = True
        #: the connection closes after this answer (its body was not read, or input is unusable)
        self.close_after = False
        #: answered by the worker itself, without the application
        self.refused: Refused | None = None
        self.expect_continue = False
        self.content_length: int | None = None
        #: bytes of the worker's buffer budget this request holds until it is answered
        self.reserved = 0
