"""The Deployer API: the abstract base class every target derives from, and its records.

A target is one small class::

    @dataclass(frozen=True)
    class EchoConfig:
        root: Path = field(default=Path("echo"), metadata={"help": "Where state lives."})

    class EchoDeployer(Deployer[EchoConfig]):
        name = "echo"
        config_class = EchoConfig

        def create(self, name, package, *, wait=True): ...
        def update(self, name, package, *, wait=True): ...
        def delete(self, name): ...
        def get(self, name): ...
        def list(self): ...
        def predict(self, name, payload): ...

registered under the entry-point group ``modelport.deployers.v1``. Everything added to this class
after v1 is an ordinary method with a default, so a v1 plugin never breaks. A target builds its
verbs from the shared machinery in :mod:`modelport.deployers.kit` (steps with undo, waiting, SDK
error translation, images, names, progress).
"""

from __future__ import annotations

import abc
import dataclasses
import enum
import inspect
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, ClassVar, Generic, TypeVar

from modelport.deployers.config import NoConfig, config_to_dict, fields_of
from modelport.deployers.kit.progress import Progress, as_progress
from modelport.errors import ConfigError, NotSupportedError, UsageError

if TYPE_CHECKING:
    from modelport.deployers.kit.errors import ErrorMap
    from modelport.deployers.kit.rollout import Rollout, Step
    from modelport.model_format.package import Package

ConfigT = TypeVar("ConfigT")
DeployerT = TypeVar("DeployerT", bound="Deployer[Any]")

#: Deployment names every target accepts: what DNS labels, container names and cloud resource
#: names have in common. A target may accept more by overriding :meth:`Deployer.check_name`.
NAME_PATTERN = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")


class DeploymentStatus(str, enum.Enum):
    """Where a deployment is in its life."""

    STARTING = "starting"  #: created, not ready yet
    READY = "ready"  #: serving requests
    UPDATING = "updating"  #: serving the old version while the new one starts
    FAILED = "failed"  #: not serving, and will not recover by itself
    UNKNOWN = "unknown"  #: the target cannot tell


def utcnow() -> datetime:
    """The current time, timezone-aware, in UTC, to the second (what records store)."""
    return datetime.now(timezone.utc).replace(microsecond=0)


@dataclass(frozen=True)
class Deployment:
    """What a target knows about one deployment.

    Attributes:
        name: the deployment's name on its target.
        target: the target's name (``local``, ``sagemaker``, ...).
        status: where it is in its life.
        endpoint: the URL that serves predictions, when there is one.
        package_digest: the digest (``sha256:...``) of the package it serves.
        created_at: when it was created (UTC).
        updated_at: when its package last changed (UTC); equals ``created_at`` until then.
        details: target-specific facts (ports, process ids, resource ids, ...), JSON values.
    """

    name: str
    target: str
    status: DeploymentStatus
    endpoint: str | None
    package_digest: str
    created_at: datetime
    updated_at: datetime
    details: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The record as JSON values (times in ISO 8601)."""
        return {
            "name": self.name,
            "target": self.target,
            "status": self.status.value,
            "endpoint": self.endpoint,
            "package_digest": self.package_digest,
            "created_at": self.created_at.isoformat(),
            "updated_at": self.updated_at.isoformat(),
            "details": dict(self.details),
        }


@dataclass(frozen=True)
class PlannedAction:
    """One thing a deploy would do, as ``--dry-run`` shows it.

    Attributes:
        kind: what is made or changed (``process``, ``image``, ``endpoint``, ``request``, ...).
        description: one line for people.
        details: the exact values (names, ports, request bodies), JSON values.
        step: the name of the rollout step that does it (the name a real run reports).
    """

    kind: str
    description: str
    details: Mapping[str, Any] = field(default_factory=dict)
    step: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """The action as JSON values."""
        return {
            "step": self.step,
            "kind": self.kind,
            "description": self.description,
            "details": dict(self.details),
        }


class Deployer(abc.ABC, Generic[ConfigT]):
    """The base class of every deploy target.

    Subclasses set :attr:`name` and :attr:`config_class` and implement the six abstract verbs.
    Semantics every target follows (checked by :class:`modelport.plugins.testing.DeployerContract`):

    - :meth:`create` blocks until the deployment is ready unless ``wait=False``, and refuses a
      name that exists (:class:`~modelport.errors.DeploymentExists`);
    - :meth:`update` of a missing name raises :class:`~modelport.errors.DeploymentNotFound`; an
      update to the package digest already deployed changes nothing;
    - :meth:`delete` is idempotent and removes everything the target made;
    - :meth:`get` and :meth:`predict` of a missing name raise ``DeploymentNotFound``;
    - a verb that fails leaves no half-made resources behind.

    Attributes:
        name: the target's name, the same as its entry point's name.
        config_class: a frozen dataclass; its fields are the target's ``-C key=value`` options.
        error_map: how the target's SDK exceptions become modelport's errors; rollouts use it.
        config: this instance's configuration (an instance of ``config_class``).
        target_uri: the part of an MLflow-style target URI after ``name:``, if one was given.
        progress: where the target reports what it does (:class:`~.kit.progress.Progress`;
            calling it with a line of text reports a note).
    """

    name: ClassVar[str]
    config_class: ClassVar[type[Any]] = NoConfig
    error_map: ClassVar[ErrorMap | None] = None

    def __init__(
        self,
        config: ConfigT | None = None,
        *,
        target_uri: str | None = None,
        progress: Progress | Callable[[str], None] | None = None,
    ) -> None:
        """Create a deployer.

        Args:
            config: the target's configuration; ``None`` means every option at its default
                (an error if the target has required options).
            target_uri: the part of a target URI after the scheme (``/eu-west-1`` for
                ``sagemaker:/eu-west-1``), kept for the target to use.
            progress: where to report steps, waits and warnings: a
                :class:`~.kit.progress.Progress`, or a function called with one line of text
                per event (the CLI shows these on a terminal).

        Raises:
            ConfigError: ``config`` is None and the target has required options.
        """
        if config is None:
            required = [f.name for f in fields_of(self.config_class, self.name) if f.required]
            if required:
                raise ConfigError([f"{k} is required" for k in required], self.name)
            config = self.config_class()
        self.config: ConfigT = config
        self.target_uri = target_uri
        self.progress: Progress = as_progress(progress)

    # --- hooks with defaults --------------------------------------------------------------

    @classmethod
    def options_from_uri(cls, uri: str) -> dict[str, Any]:
        """Turn the part of a target URI after the scheme into config options.

        ``sagemaker:/eu-west-1`` calls ``SageMakerDeployer.options_from_uri("/eu-west-1")``,
        which might return ``{"region": "eu-west-1"}``. The options rank between env vars and
        ``-C``. The default accepts only an empty URI (a target that does not override this takes
        no URI, and says so rather than ignoring it).

        Raises:
            ConfigError: the URI means nothing to this target.
        """
        if uri.strip("/"):
            raise ConfigError(
                [f"this target takes no URI; use -t {cls.name} (got {cls.name}:{uri})"], cls.name
            )
        return {}

    def check_name(self, name: str) -> None:
        """Refuse a deployment name the target cannot use.

        The default accepts lowercase letters, digits and inner hyphens, up to 63 characters.

        Raises:
            UsageError: the name is not acceptable.
        """
        if not NAME_PATTERN.match(name):
            raise UsageError(
                f"invalid deployment name {name!r}: use 1-63 lowercase letters, digits and "
                "hyphens, starting and ending with a letter or digit"
            )

    def rollout(self, verb: str, steps: Sequence[Step]) -> Rollout:
        """A :class:`~.kit.rollout.Rollout` of this target's ``steps`` for ``verb``.

        It reports to :attr:`progress` and translates SDK errors with :attr:`error_map`.
        """
        from modelport.deployers.kit.rollout import Rollout

        return Rollout(self.name, verb, steps, progress=self.progress, errors=self.error_map)

    def create_steps(self, name: str, package: Package, *, wait: bool = True) -> Sequence[Step]:
        """The steps :meth:`create` runs, built without touching anything.

        A target built on the kit returns them here and runs them in ``create`` with
        ``self.rollout("create", self.create_steps(name, package, wait=wait)).run()``; then
        :meth:`plan` (``deploy --dry-run``) shows exactly those steps, and the contract suite
        can fail each in turn. The default is no steps (a target that does not use the kit).
        """
        return ()

    def plan(self, name: str, package: Package) -> Sequence[PlannedAction]:
        """Say what :meth:`create` would make, touching nothing (``deploy --dry-run``).

        The default plans :meth:`create_steps`; a target without steps gets one generic action.
        """
        steps = self.create_steps(name, package)
        if steps:
            return self.rollout("create", steps).plan()
        return [
            PlannedAction(
                kind="deployment",
                description=(
                    f"create deployment {name!r} on target {self.name!r} serving package "
                    f"{package.name} {package.version} ({package.digest})"
                ),
                details={
                    "name": name,
                    "target": self.name,
                    "package": str(package.path),
                    "package_digest": package.digest,
                    "config": config_to_dict(self.config),
                },
            )
        ]

    def logs(self, name: str, *, tail: int | None = 100) -> Iterator[str]:
        """Yield the deployment's most recent log lines, oldest first.

        Args:
            name: the deployment.
            tail: how many lines, at most; None for all.

        Raises:
            DeploymentNotFound: no such deployment.
            NotSupportedError: the target keeps no logs (the default).
        """
        raise NotSupportedError(f"target {self.name!r} does not provide logs")

    def predict_body(
        self, name: str, body: bytes, *, content_type: str, accept: str | None = None
    ) -> tuple[bytes, str]:
        """Send one request body as it is (CSV, NumPy, JSON Lines, ...) and return the answer.

        For callers whose data is not a JSON object (``deployments predict --content-type``).

        Args:
            name: the deployment.
            body: the request body.
            content_type: its media type (``text/csv``, ``application/x-npy``, ...).
            accept: the media type asked for; None lets the server choose.

        Returns:
            The answer's body and its media type.

        Raises:
            DeploymentNotFound: no such deployment.
            InputError: the server refused the body.
            NotSupportedError: the target sends JSON objects only (the default).
        """
        raise NotSupportedError(
            f"target {self.name!r} sends JSON objects only",
            hint="convert the input to JSON, or drop --content-type",
        )

    @classmethod
    def supports_logs(cls) -> bool:
        """True when the target overrides :meth:`logs`."""
        return cls.logs is not Deployer.logs

    def promote(self, name: str) -> Deployment:
        """Send all traffic to the newest version and remove the older one (canary done).

        For targets that split traffic between versions (a canary, a mirror); see
        :meth:`supports_traffic`.

        Raises:
            DeploymentNotFound: no such deployment.
            NotSupportedError: the target does not split traffic (the default).
        """
        raise NotSupportedError(
            f"target {self.name!r} does not split traffic between versions: nothing to promote",
            hint="its updates switch all traffic at once",
        )

    def rollback(self, name: str) -> Deployment:
        """Send all traffic back to the older version and remove the newer one.

        Raises:
            DeploymentNotFound: no such deployment.
            NotSupportedError: the target does not split traffic (the default).
        """
        raise NotSupportedError(
            f"target {self.name!r} does not split traffic between versions: nothing to roll "
            "back to",
            hint="deploy the previous package with 'modelport deployments update'",
        )

    @classmethod
    def supports_traffic(cls) -> bool:
        """True when the target overrides :meth:`promote` and :meth:`rollback`."""
        return cls.promote is not Deployer.promote and cls.rollback is not Deployer.rollback

    @classmethod
    def update_can_skip_waiting(cls) -> bool:
        """True when the target's :meth:`update` takes ``wait`` (a v1 target's may not)."""
        return "wait" in inspect.signature(cls.update).parameters

    # --- the verbs ------------------------------------------------------------------------

    @abc.abstractmethod
    def create(self, name: str, package: Package, *, wait: bool = True) -> Deployment:
        """Deploy ``package`` as a new deployment called ``name``.

        Args:
            name: the deployment's name; must not exist yet.
            package: the loaded (hence verified) package to serve.
            wait: block until the deployment is ready (the default); False returns as soon as
                the deployment is under way, with status ``starting``.

        Raises:
            DeploymentExists: a deployment of that name exists (it is left untouched).
            DeploymentError: the deployment failed; everything made so far was removed.
        """

    @abc.abstractmethod
    def update(self, name: str, package: Package, *, wait: bool = True) -> Deployment:
        """Switch an existing deployment to ``package``, blue/green where the target allows.

        An update to the digest already deployed changes nothing and returns the record as is.

        Args:
            name: the deployment.
            package: the loaded (hence verified) package to switch to.
            wait: block until the new version serves (the default); False returns once the
                update is under way, with status ``updating``: the old version serves until
                the switch, and ``get`` tells when it is done.

        Raises:
            DeploymentNotFound: no such deployment.
            DeploymentError: the update failed; the old version still serves, and whatever
                the update made was removed.
        """

    @abc.abstractmethod
    def delete(self, name: str) -> None:
        """Remove the deployment and everything the target made for it; no error if absent."""

    @abc.abstractmethod
    def get(self, name: str) -> Deployment:
        """Describe one deployment, with its current health.

        Raises:
            DeploymentNotFound: no such deployment.
        """

    @abc.abstractmethod
    def list(self) -> Sequence[Deployment]:
        """Describe every deployment this target manages, by name."""

    @abc.abstractmethod
    def predict(self, name: str, payload: Mapping[str, Any]) -> dict[str, Any]:
        """Send one prediction request to a deployment.

        Args:
            name: the deployment.
            payload: a JSON body in any format the server accepts (``{"inputs": ...}``,
                ``{"instances": [...]}``, ``{"dataframe_split": ...}``, ...).

        Returns:
            The server's JSON answer, ``{"predictions": ...}``, formatted as
            :func:`modelport.model_format.payload.format_predictions` does.

        Raises:
            DeploymentNotFound: no such deployment.
            InputError: the payload does not fit the model's signature.
            DeploymentError: the deployment could not answer.
        """


def describe_config(deployer_class: type[Deployer[Any]]) -> dict[str, Any]:
    """The target's options as JSON values: name, type, default, required, help, env var."""
    return {
        f.name: {
            "type": f.type_name,
            "required": f.required,
            "default": None if f.required else f.default_text,
            "help": f.help,
            "env": f.env_var,
        }
        for f in fields_of(deployer_class.config_class, deployer_class.name)
    }


def is_config_class(obj: Any) -> bool:
    """True for a dataclass type (what ``config_class`` must be)."""
    return isinstance(obj, type) and dataclasses.is_dataclass(obj)
