"""The server's options, defined once: ``modelport serve`` and every image's entrypoint read them.

:data:`SERVE_OPTIONS` lists each option with its flag, type, bounds, environment variable and
default (the defaults are :class:`~modelport.serving.config.ServeConfig`'s). The CLI turns the
table into click options; an image's entrypoint, which must not import the CLI, parses its
arguments with :func:`parse_args`. Both end in :func:`serve_config`, the one place option values
and the environment become a :class:`ServeConfig`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelport.errors import UsageError
from modelport.model_format.limits import MIB, ArchiveLimits
from modelport.serving.config import ANSWER_MODES, ServeConfig

if TYPE_CHECKING:
    from modelport.model_format.signing import TrustPolicy

SAGEMAKER_MODEL_DIR = Path("/opt/ml/model")
#: Where Azure ML mounts a model asset attached to a deployment (it sets this variable).
AZUREML_MODEL_DIR_ENV = "AZUREML_MODEL_DIR"
PACKAGE_ENV = "MODELPORT_PACKAGE"
_TRUE = frozenset({"1", "true", "t", "yes", "y", "on"})
_FALSE = frozenset({"0", "false", "f", "no", "n", "off", ""})


@dataclass(frozen=True)
class ServeOption:
    """One option of the server.

    Attributes:
        name: the value's name (``max_batch_size``); the flag is ``--max-batch-size``.
        kind: ``int``, ``float``, ``str`` or ``bool`` (a flag that takes no value).
        help: one line for ``--help``.
        env: the environment variable read when the option is not given.
        default: the value when neither is given (None: decided later, from the environment).
        low: the smallest value allowed.
        low_open: ``low`` itself is not allowed.
        high: the largest value allowed.
        choices: the values allowed (for ``str`` options), if only some are.
    """

    name: str
    kind: type
    help: str
    env: str | None = None
    default: Any = None
    low: float | None = None
    low_open: bool = False
    high: float | None = None
    choices: tuple[str, ...] = ()

    @property
    def flag(self) -> str:
        """The command-line flag."""
        return "--" + self.name.replace("_", "-")

    def convert(self, text: str, where: str) -> Any:
        """Parse a value given as text (an argument or an environment variable).

        Raises:
            UsageError: not a value of this option's type, or out of bounds.
        """
        if self.kind is bool:
            lowered = text.strip().lower()
            if lowered in _TRUE | _FALSE:
                return lowered in _TRUE
            raise UsageError(f"{where}: expected a boolean, got {text!r}")
        try:
            value = self.kind(text)
        except ValueError:
            kind = {int: "an integer", float: "a number"}.get(self.kind, "a value")
            raise UsageError(f"{where}: expected {kind}, got {text!r}") from None
        self.check(value, where)
        return value

    def check(self, value: Any, where: str) -> None:
        """Refuse a value outside the bounds.

        Raises:
            UsageError: out of bounds, or not one of the choices.
        """
        if self.choices and value not in self.choices:
            raise UsageError(f"{where}: must be one of {', '.join(self.choices)}, got {value!r}")
        if self.low is not None and (value < self.low or (self.low_open and value == self.low)):
            bound = f"greater than {self.low:g}" if self.low_open else f"at least {self.low:g}"
            raise UsageError(f"{where}: must be {bound}, got {value}")
        if self.high is not None and value > self.high:
            raise UsageError(f"{where}: must be at most {self.high:g}, got {value}")


#: The limits on what reading a package may cost (:class:`ArchiveLimits`, one option per field);
#: ``modelport verify``, ``inspect`` and ``predict`` take them too.
ARCHIVE_LIMIT_OPTIONS: tuple[ServeOption, ...] = (
    ServeOption(
        "max_expanded_mb",
        float,
        "Most an archive may expand to, in MiB (its files and tar headers).",
        env="MODELPORT_MAX_EXPANDED_MB",
        default=ArchiveLimits.max_expanded_mb,
        low=0,
        low_open=True,
    ),
    ServeOption(
        "max_entries",
        int,
        "Most files an archive may hold.",
        env="MODELPORT_MAX_ENTRIES",
        default=ArchiveLimits.max_entries,
        low=1,
    ),
    ServeOption(
        "max_manifest_mb",
        float,
        "Largest package manifest read, in MiB.",
        env="MODELPORT_MAX_MANIFEST_MB",
        default=ArchiveLimits.max_manifest_mb,
        low=0,
        low_open=True,
    ),
    ServeOption(
        "max_ratio",
        float,
        "Most an archive may expand past 256 MiB, as a multiple of its own size.",
        env="MODELPORT_MAX_RATIO",
        default=ArchiveLimits.max_ratio,
        low=0,
        low_open=True,
    ),
)


def archive_limits(values: Mapping[str, Any]) -> ArchiveLimits:
    """The :class:`ArchiveLimits` among option values (by :data:`ARCHIVE_LIMIT_OPTIONS` name)."""
    return ArchiveLimits(**{option.name: values[option.name] for option in ARCHIVE_LIMIT_OPTIONS})


SERVE_OPTIONS: tuple[ServeOption, ...] = (
    ServeOption("host", str, "Address to bind. [default: $MODELPORT_HOST, else 127.0.0.1]"),
    ServeOption(
        "port",
        int,
        "Port (0: any free one). [default: $SAGEMAKER_BIND_TO_PORT, $AIP_HTTP_PORT, else 8080]",
        low=0,
        high=65535,
    ),
    ServeOption(
        "fd",
        int,
        "Serve on this inherited listening socket (a file descriptor) instead of binding "
        "--host and --port.",
        low=0,
    ),
    ServeOption(
        "workers",
        int,
        "Worker processes, each with its own model. [default: usable CPUs, at most 8]",
        env="MODELPORT_WORKERS",
        low=1,
    ),
    ServeOption(
        "threads",
        int,
        "Request threads per worker (the most requests one batch can merge).",
        env="MODELPORT_THREADS",
        default=ServeConfig.threads,
        low=1,
    ),
    ServeOption(
        "max_batch_size",
        int,
        "Most rows one merged model call may hold.",
        env="MODELPORT_MAX_BATCH_SIZE",
        default=ServeConfig.max_batch_size,
        low=1,
    ),
    ServeOption(
        "max_batch_wait_ms",
        float,
        "Longest a batch waits for requests still being read.",
        env="MODELPORT_MAX_BATCH_WAIT_MS",
        default=ServeConfig.max_batch_wait_s * 1000.0,
        low=0,
    ),
    ServeOption(
        "no_batching",
        bool,
        "Run every request in its own model call.",
        env="MODELPORT_NO_BATCHING",
        default=False,
    ),
    ServeOption(
        "max_body_mb",
        float,
        "Largest request body accepted, in MiB (413 above; SageMaker's own limit is 6 MB).",
        env="MODELPORT_MAX_BODY_MB",
        default=ServeConfig.max_body_bytes / MIB,
        low=0,
        low_open=True,
    ),
    ServeOption(
        "max_connections",
        int,
        "Connections one worker holds at most (at the limit the oldest idle ones close).",
        env="MODELPORT_MAX_CONNECTIONS",
        default=ServeConfig.max_connections,
        low=1,
    ),
    ServeOption(
        "max_buffered_mb",
        float,
        "Request bytes one worker holds at most, over all connections (503 beyond). "
        "[default: 4 bodies at the limit, at least 64]",
        env="MODELPORT_MAX_BUFFERED_MB",
        low=0,
        low_open=True,
    ),
    ServeOption(
        "timeout_s",
        float,
        "Longest a request may wait for its prediction (503 after).",
        env="MODELPORT_TIMEOUT_S",
        default=ServeConfig.timeout_s,
        low=0,
        low_open=True,
    ),
    ServeOption(
        "answer",
        str,
        "What predictions hold: full (every output), or mlflow (what MLflow's server answers: "
        "a classifier's labels, [n, 1] outputs flat).",
        env="MODELPORT_ANSWER",
        default=ServeConfig.answer,
        choices=ANSWER_MODES,
    ),
    ServeOption(
        "strict_inputs",
        bool,
        "Refuse table columns that feed no input (CSV, Parquet, dataframe_*), instead of "
        "ignoring them and naming them in the Modelport-Ignored-Columns header.",
        env="MODELPORT_STRICT_INPUTS",
        default=False,
    ),
    ServeOption(
        "allow_code",
        bool,
        "Allow a package that runs code it carries (python flavor). Also MODELPORT_ALLOW_CODE=1.",
        default=False,
    ),
    ServeOption(
        "expect_digest",
        str,
        "Serve only the package with this digest (sha256:<64 hex>); refuse any other.",
        env="MODELPORT_EXPECT_DIGEST",
    ),
    ServeOption(
        "trust",
        str,
        "Signature policy: off, warn (log an unsigned or unverified package and go on) or "
        "require (refuse it, exit 4). [default: $MODELPORT_TRUST, else off]",
        env="MODELPORT_TRUST",
        choices=("off", "warn", "require"),
    ),
    ServeOption(
        "trusted_key",
        str,
        "The public keys (PEM) or CA certificates a signature must chain to: a file, a "
        f"directory of them, or several joined with {os.pathsep!r}. Also $MODELPORT_TRUSTED_KEYS.",
        env="MODELPORT_TRUSTED_KEYS",
    ),
    *ARCHIVE_LIMIT_OPTIONS,
    ServeOption("dev", bool, "Use Flask's development server instead of gunicorn.", default=False),
)
_BY_FLAG = {option.flag: option for option in SERVE_OPTIONS}


def usage() -> str:
    """The options, one per line, as ``--help`` inside an image prints them."""
    lines = ["Options (each also read from its environment variable):"]
    for option in SERVE_OPTIONS:
        value = "" if option.kind is bool else f" {option.kind.__name__.upper()}"
        env = f" [${option.env}]" if option.env else ""
        lines.append(f"  {option.flag}{value}{env}  {option.help}")
    return "\n".join(lines)


def parse_args(argv: Sequence[str], env: Mapping[str, str]) -> dict[str, Any]:
    """Parse server options the way ``modelport serve`` does (``--flag value``, ``--flag=value``).

    Returns:
        Every option's value by name: from ``argv``, else its environment variable, else its
        default.

    Raises:
        UsageError: an unknown option, a missing or bad value, or a positional argument.
    """
    given: dict[str, Any] = {}
    args = list(argv)
    while args:
        arg = args.pop(0)
        flag, sep, inline = arg.partition("=")
        option = _BY_FLAG.get(flag)
        if option is None:
            known = ", ".join(sorted(_BY_FLAG))
            raise UsageError(f"unknown server option {arg!r} (options: {known})")
        if option.kind is bool:
            if sep:
                raise UsageError(f"{flag} takes no value")
            given[option.name] = True
            continue
        if not sep:
            if not args:
                raise UsageError(f"{flag} needs a value")
            inline = args.pop(0)
        given[option.name] = option.convert(inline, flag)
    values = {}
    for option in SERVE_OPTIONS:
        if option.name in given:
            values[option.name] = given[option.name]
        elif option.env and env.get(option.env, "").strip():
            values[option.name] = option.convert(env[option.env], option.env)
        else:
            values[option.name] = option.default
    return values


def mounted_package(env: Mapping[str, str]) -> Path | None:
    """A package a cloud mounted into the container, or None.

    SageMaker unpacks ``model.tar.gz`` into ``/opt/ml/model``. Azure ML mounts a model asset at
    ``$AZUREML_MODEL_DIR``, holding what was uploaded: the package's files, a folder of them,
    or one ``.mport`` archive. Only those places are looked at, one level deep.
    """
    from modelport.model_format.manifest import MANIFEST_NAME

    if (SAGEMAKER_MODEL_DIR / MANIFEST_NAME).is_file():
        return SAGEMAKER_MODEL_DIR
    azure = env.get(AZUREML_MODEL_DIR_ENV)
    if not azure or not Path(azure).is_dir():
        return None
    root = Path(azure)
    if (root / MANIFEST_NAME).is_file():
        return root
    found = [
        child
        for child in sorted(root.iterdir())
        if (child.is_dir() and (child / MANIFEST_NAME).is_file())
        or (child.is_file() and child.suffix == ".mport")
    ]
    # Two candidates would be a guess: refuse rather than serve the wrong one.
    return found[0] if len(found) == 1 else None


def package_path(package: str | None, env: Mapping[str, str] | None = None) -> Path:
    """The package to serve: the one given, else one a cloud mounted (:func:`mounted_package`).

    Raises:
        UsageError: neither.
    """
    if package:
        return Path(package)
    mounted = mounted_package(os.environ if env is None else env)
    if mounted is not None:
        return mounted
    raise UsageError(
        f"no package to serve: pass PKG, or set {PACKAGE_ENV} (or mount a package at "
        f"{SAGEMAKER_MODEL_DIR}, or attach one package as an Azure ML model asset)"
    )


def serve_config(
    package: str | None, values: Mapping[str, Any], env: Mapping[str, str]
) -> ServeConfig:
    """Resolve option values (by :data:`SERVE_OPTIONS` name) and the environment into a config.

    Raises:
        UsageError: no package, or a platform variable (port, Vertex routes) is malformed.
    """
    from modelport.model_format.flavors.onnx import usable_cpus
    from modelport.model_format.manifest import expected_digest
    from modelport.serving import config as cfg

    cpus = usable_cpus()
    dev = bool(values["dev"])
    workers = 1 if dev else values["workers"] or cfg.default_workers(cpus)
    return ServeConfig(
        package=package_path(package, env),
        host=cfg.resolve_host(values["host"], env),
        port=cfg.resolve_port(values["port"], env),
        fd=values["fd"],
        workers=workers,
        threads=values["threads"],
        ort_threads=cfg.ort_threads_per_worker(cpus, workers),
        batching=not values["no_batching"],
        max_batch_size=values["max_batch_size"],
        max_batch_wait_s=values["max_batch_wait_ms"] / 1000.0,
        max_body_bytes=max(1, int(values["max_body_mb"] * MIB)),
        max_connections=values["max_connections"],
        max_buffered_bytes=(
            max(1, int(values["max_buffered_mb"] * MIB)) if values["max_buffered_mb"] else None
        ),
        timeout_s=values["timeout_s"],
        allow_code=bool(values["allow_code"]),
        answer=values["answer"],
        strict_inputs=bool(values["strict_inputs"]),
        dev=dev,
        health_route=cfg.vertex_route(cfg.HEALTH_ROUTE_ENV, env),
        predict_route=cfg.vertex_route(cfg.PREDICT_ROUTE_ENV, env),
        expected_digest=(
            None
            if values["expect_digest"] is None
            else expected_digest(values["expect_digest"], "--expect-digest")
        ),
        archive_limits=archive_limits(values),
        trust=trust_policy(values, env),
    )


def trust_policy(values: Mapping[str, Any], env: Mapping[str, str]) -> TrustPolicy:
    """The signature policy from ``--trust`` and ``--trusted-key`` (over the environment's).

    Raises:
        UsageError: an unknown mode, or ``require`` without a trusted key.
    """
    from modelport.model_format.signing import TrustPolicy

    keys = values.get("trusted_key") or ""
    return TrustPolicy.from_env(
        env,
        trust=values.get("trust"),
        trusted_keys=tuple(Path(k) for k in keys.split(os.pathsep) if k),
    )
