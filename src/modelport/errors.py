"""The one exception tree of modelport.

Every error modelport raises on purpose derives from :class:`ModelportError` and carries the
process exit code the CLI turns it into (the CLI in ``modelport.cli.main`` is the only place that
does). Messages are written for the person at the terminal: they name the field, file, input or
target at fault and never repeat the data a user sent. Like pip's diagnostic errors, an error may
also carry a ``hint`` (what to check or run next) and a ``reference`` (where to read more); both
are rendered once, by :meth:`ModelportError.render`, and are part of ``--json`` output.

Beside its exit code, an error class carries how the server answers it: the HTTP status, its type
in the server's error metrics, and (for a failure on the server's side) the fixed message that
replaces its own, which may quote a request's data.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, ClassVar

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_PLUGIN = 3
EXIT_INVALID_PACKAGE = 4
#: A run stopped by Ctrl-C (SIGINT): 128 + 2, as shells report it.
EXIT_INTERRUPTED = 130


class ModelportError(Exception):
    """Base class of every error modelport raises on purpose.

    Args:
        message: what went wrong, for people.
        hint: what to check or run next, if there is something useful to say.
        reference: where to read more (a URL or a documentation path).
    """

    exit_code: int = EXIT_ERROR
    #: The status the server answers this error with.
    http_status: ClassVar[int] = 500
    #: The error's type in the server's metrics (one of ``serving.metrics.ERROR_TYPES``).
    error_type: ClassVar[str] = "internal"
    #: What the server's answer says instead of the message (None: the message itself); such
    #: errors are logged with their cause.
    http_message: ClassVar[str | None] = "internal server error; see the server log"
    #: What :meth:`render` puts before the message.
    label: ClassVar[str] = "Error"

    def __init__(
        self, message: str = "", *, hint: str | None = None, reference: str | None = None
    ) -> None:
        super().__init__(message)
        self.hint = hint
        self.reference = reference

    @property
    def message(self) -> str:
        """The message alone (``str(error)``)."""
        return str(self)

    def render(self) -> str:
        """The error as the CLI prints it: ``Error: message``, then the hint and reference."""
        lines = [f"{self.label}: {self}"]
        if self.hint:
            lines.append(f"  hint: {self.hint}")
        if self.reference:
            lines.append(f"  see: {self.reference}")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        """The error as JSON values (what ``--json`` prints when a command fails)."""
        return {
            "type": type(self).__name__,
            "message": str(self),
            "hint": self.hint,
            "reference": self.reference,
            "exit_code": self.exit_code,
        }


class ModelportWarning(UserWarning):
    """Warnings modelport emits (for example a package written by a newer minor format)."""


# --- names a client sent, in messages -------------------------------------------------------

#: The most characters of a client-sent name an error message echoes.
NAME_ECHO_CHARS = 32
#: The most client-sent names one message lists.
NAMES_ECHOED = 5
_PLAIN_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-")


def _escape(char: str) -> str:
    if char in _PLAIN_NAME_CHARS:
        return char
    code = ord(char)
    if code < 0x100:
        return f"\\x{code:02x}"
    if code < 0x10000:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def quote_name(name: object) -> str:
    r"""Quote a name a client sent (an input, a column, a key, a model) for an error message.

    At most :data:`NAME_ECHO_CHARS` characters are echoed, and every character outside
    ``[A-Za-z0-9_.-]`` is escaped (``\x3c``, ``\u2028``), so a message never carries a client's
    markup, control characters, lone surrogates or megabytes. A longer name is cut there and
    followed by its length, as in ``'<its first 32 characters>'... (4194304 characters)``.

    Examples: ``'sepal_width'``, ``'a\x3cb\x3e'`` (for ``a<b>``).
    """
    text = name if isinstance(name, str) else str(name)
    quoted = "'" + "".join(map(_escape, text[:NAME_ECHO_CHARS])) + "'"
    if len(text) > NAME_ECHO_CHARS:
        quoted += f"... ({len(text)} characters)"
    return quoted


def quote_names(names: Iterable[object]) -> str:
    """Quote client-sent names with :func:`quote_name`, comma-separated, listing a few at most."""
    items = list(names)
    shown = ", ".join(quote_name(n) for n in items[:NAMES_ECHOED])
    if len(items) > NAMES_ECHOED:
        shown += f" and {len(items) - NAMES_ECHOED} more"
    return shown


# --- usage ----------------------------------------------------------------------------------


class UsageError(ModelportError):
    """The caller asked for something that makes no sense (bad option value, bad config key)."""

    exit_code = EXIT_USAGE


class EnvironmentProblem(ModelportError):
    """The machine stops modelport, not a bug or the input: no writable temp dir, a full disk.

    The message says what failed and where; the hint says what to fix.
    """


class MissingDependencyError(ModelportError):
    """An optional dependency is not installed; the message says which extra brings it."""

    def __init__(self, what: str, extra: str, module: str) -> None:
        self.what = what
        self.extra = extra
        self.module = module
        super().__init__(
            f"{what} needs the Python package {module!r}, which is not installed",
            hint=f"install it with: pip install 'modelport[{extra}]'",
        )


# --- the package ----------------------------------------------------------------------------


class NoSuchFile(ModelportError):
    """A file or directory named on the command line does not exist (exit 1).

    Not a :class:`PackageError` (exit 4, "invalid package"): nothing was read, so nothing can
    be said of the package.
    """


class SourceError(ModelportError):
    """A package could not be fetched from where it was named: a storage URI or MLflow's registry.

    The message says what was tried (the URI, and the registry or store asked); the hint says
    what to check (credentials, the name, the alias).
    """


class SourceNotFound(SourceError):
    """Nothing is where the reference points.

    A missing object; an unknown registered model, version, alias or run.
    """


class PackageError(ModelportError):
    """A model package is invalid: unreadable, malformed, tampered with or unsafe."""

    exit_code = EXIT_INVALID_PACKAGE


class ManifestError(PackageError):
    """The manifest failed validation; ``problems`` lists every problem, each naming its field."""

    def __init__(self, problems: Iterable[str], source: str = "modelport.json") -> None:
        self.problems = tuple(problems)
        self.source = source
        lines = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(f"invalid manifest {source} ({len(self.problems)} problem(s)):\n{lines}")


class UnsupportedFormatError(PackageError):
    """The package was written by a newer major version of the format than this modelport reads."""


class IntegrityError(PackageError):
    """The package's files do not match the digests in its manifest."""

    def __init__(self, problems: Iterable[str]) -> None:
        self.problems = tuple(problems)
        lines = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(
            f"package integrity check failed ({len(self.problems)} problem(s)):\n{lines}"
        )


class UnsafeArchiveError(PackageError):
    """An archive entry that extraction refuses: traversal, absolute path, link, device, sparse."""


class ArchiveLimitError(PackageError):
    """A package goes over a limit on what reading it may cost (expanded size, entries, ...).

    The message names the limit's flag and the value found; the hint says how to raise it.
    """


class DigestMismatch(PackageError):
    """The package is not the one expected: its digest differs from the one the caller pinned."""

    def __init__(self, source: str, expected: str, found: str) -> None:
        self.expected = expected
        self.found = found
        super().__init__(
            f"{source}: package digest {found} is not the expected {expected}",
            hint="a different package is at this path; check which package you meant",
        )


class SignatureError(PackageError):
    """A package's signature is missing, unreadable, not by a trusted key, or does not match it.

    The message says which of these it is and names the files that differ.
    """


class TrustRefused(SignatureError):
    """The trust policy (``MODELPORT_TRUST=require``) refuses a package: ``refusing to …``."""

    # The line a log viewer shows, as the image's entrypoint says any refusal to start.
    label: ClassVar[str] = "modelport"


class CodeExecutionRefused(ModelportError):
    """Reading this model would run code (carried Python, or unpickling), and nobody opted in."""

    def __init__(self, what: str, risk: str = "runs Python code when loaded") -> None:
        self.what = what
        super().__init__(
            f"{what} {risk}; only do that for models you trust, and opt in with --allow-code, "
            "allow_code=True or MODELPORT_ALLOW_CODE=1"
        )


# --- packing --------------------------------------------------------------------------------


class PackError(ModelportError):
    """A model could not be packed (unsupported source, failed conversion, bad example)."""


class ConversionMismatchError(PackError):
    """The converted ONNX model disagrees with the original beyond the tolerance."""


# --- prediction -----------------------------------------------------------------------------


class InputError(ModelportError):
    """Inputs do not match the model's signature or a payload is malformed.

    The message names the input and what was expected; it never contains the values sent.
    """

    http_status = 400
    error_type = "bad_input"
    http_message = None


class ModelError(ModelportError):
    """The model itself failed while predicting (not the caller's fault)."""

    error_type = "model_failure"
    http_message = "the model failed while predicting; see the server log"


# --- serving --------------------------------------------------------------------------------


class ServeError(ModelportError):
    """The server stopped because of an error (the log above says which)."""


class NotReady(ModelportError):
    """The model is not loaded and warmed up yet."""

    http_status = 503
    error_type = "not_ready"
    http_message = None


class Overloaded(ModelportError):
    """A request waited longer than the server's timeout for its prediction."""

    http_status = 503
    error_type = "overloaded"
    http_message = None


class RequestRefused(ModelportError):
    """The server refuses a request for what it is, not for its inputs (route, media type, size)."""

    http_message = None


class ModelNotFound(RequestRefused):
    """The request names a model or version this server does not serve."""

    http_status = 404
    error_type = "not_found"


class NotAcceptable(RequestRefused):
    """The client accepts no answer format the route can give (``Accept``)."""

    http_status = 406
    error_type = "not_acceptable"


class BodyTooLarge(RequestRefused):
    """The request body is larger than the server's limit."""

    http_status = 413
    error_type = "too_large"


class UnsupportedMediaType(RequestRefused):
    """The body's ``Content-Type`` or ``Content-Encoding`` is not one the route reads."""

    http_status = 415
    error_type = "unsupported_media_type"


# --- plugins and deployments ----------------------------------------------------------------


class PluginError(ModelportError):
    """A target plugin is unknown, missing its extra, broken, or claimed twice."""

    exit_code = EXIT_PLUGIN


class DeploymentError(ModelportError):
    """A deployment verb failed on its target."""


class ResourceNotFound(DeploymentError):
    """Something the target looked for does not exist (a deployment, an image, a role, ...)."""


class DeploymentNotFound(ResourceNotFound):
    """No deployment of that name exists on the target."""


class ConflictError(DeploymentError):
    """The target refused a change that conflicts with what exists (name taken, resource busy)."""


class DeploymentExists(ConflictError):
    """A deployment of that name already exists on the target."""


class ThrottledError(DeploymentError):
    """The target's API asked us to slow down and kept refusing."""


class QuotaExceededError(DeploymentError):
    """The request needs more than the account's quota allows (instances, endpoints, ...)."""


class PermissionDeniedError(DeploymentError):
    """The credentials in use may not do what was asked."""


class TargetUnavailableError(DeploymentError):
    """The target's API (a cloud, a container engine) cannot be reached."""


class WaitTimeout(DeploymentError):
    """Something a verb waited for did not happen in time (the message says what was seen)."""


class RollbackIncomplete(DeploymentError):
    """A verb failed, and undoing what it had made failed too: resources were left behind.

    Attributes:
        left_behind: one line per resource left, each saying how to remove it.
    """

    def __init__(
        self, message: str, left_behind: Sequence[str], *, hint: str | None = None
    ) -> None:
        self.left_behind = tuple(left_behind)
        lines = "\n".join(f"  left behind: {line}" for line in self.left_behind)
        super().__init__(f"{message}\n{lines}", hint=hint)


class ConfigError(UsageError):
    """A target's configuration is invalid: unknown key, unparsable value or missing required key.

    ``problems`` lists every problem found, each naming the key (and where it came from).
    """

    def __init__(self, problems: Iterable[str], target: str | None = None) -> None:
        self.problems = tuple(problems)
        self.target = target
        where = f"target {target!r}" if target else "target"
        if len(self.problems) == 1:
            message = f"invalid configuration for {where}: {self.problems[0]}"
        else:
            lines = "\n".join(f"  - {p}" for p in self.problems)
            message = f"invalid configuration for {where} ({len(self.problems)} problems):\n{lines}"
        super().__init__(message)


class NotSupportedError(UsageError):
    """The target does not offer the verb asked for (for example ``logs``)."""
