"""The ``azureml`` target: a package as an Azure ML managed online endpoint, with azure-ai-ml.

What one deployment ``NAME`` is made of, generation ``N`` at a time:

- the serving image: the package's image ``<registry>/<repository>-model:<digest>`` (the package
  baked in), or with ``-C model_asset=true`` the shared runtime image
  ``<registry>/<repository>-runtime:<key>`` (:mod:`modelport.deployers.kit.images`); pushed
  with the Docker Engine API, pinned by digest. Shared: no deployment removes it;
- with ``model_asset``, the model asset ``modelport-NAME`` version ``N`` (``custom_model``: the
  package's ``.mport`` archive), which Azure mounts at ``AZUREML_MODEL_DIR``, where the
  image's entrypoint finds it;
- the environment ``modelport-NAME`` version ``N``: the image, and an ``inference_config``
  pointing liveness, readiness and scoring at the server's ``/ping``, ``/ping`` and ``/score``
  on port 8080;
- the online endpoint ``NAME`` and its deployment ``modelport-gN``
  (:func:`~modelport.deployers.kit.naming.generation_name`), which gets the traffic.

``create`` and ``update`` are rollouts (:mod:`modelport.deployers.kit.rollout`): each step's
undo removes what it made when a later one fails, ``--dry-run`` prints the same steps, and each
step has a failpoint. ``update`` is blue/green: deployment ``N+1`` beside ``N``, then all
traffic moves to it and ``N`` is removed; or, with ``-C canary_percent`` / ``-C mirror_percent``,
it stops with a share of the live (or mirrored) traffic on ``N+1`` until ``deployments promote``
or ``deployments rollback``. Everything is tagged (:func:`~modelport.deployers.kit.naming.labels`),
and Azure's own state is the only state: any machine with the credentials can ``get``, ``list``,
``predict``, ``logs``, ``update``, ``promote``, ``rollback`` or ``delete``.
"""

from __future__ import annotations

import builtins
import contextlib
import dataclasses
import re
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelport import __version__
from modelport.deployers.azureml.azure import (
    AZURE_ERRORS,
    SCORING_RETRIES,
    TARGET,
    Azure,
    entities,
    json_body,
    not_found,
    quiet,
    scoring_error_message,
    status_of,
)
from modelport.deployers.azureml.config import AzureMLConfig, Workspace, resolve_workspace
from modelport.deployers.base import Deployer, Deployment, DeploymentStatus, utcnow
from modelport.deployers.kit import background
from modelport.deployers.kit.naming import (
    Facts,
    Platform,
    generation_name,
    label_key,
    labels,
    next_generation,
    parse_generation,
    provenance_details,
    read_labels,
    with_provenance,
)
from modelport.deployers.kit.rollout import Step, undo_after_failure
from modelport.deployers.kit.state import default_home
from modelport.deployers.kit.waiting import Seen, wait_until
from modelport.errors import (
    ConfigError,
    ConflictError,
    DeploymentError,
    DeploymentExists,
    DeploymentNotFound,
    InputError,
    ModelError,
    PermissionDeniedError,
    QuotaExceededError,
    ResourceNotFound,
    TargetUnavailableError,
    ThrottledError,
    UsageError,
)

if TYPE_CHECKING:
    from modelport.deployers.kit.engine import Engine
    from modelport.model_format.package import Package

#: Azure ML's rule for endpoint names (unique in the region).
_ENDPOINT_NAME = re.compile(r"^[a-z][a-z0-9-]{1,30}[a-z0-9]$")
MAX_NAME = 32
#: An environment version as a deployment names it (an ARM id, or azureml:NAME:VERSION).
_ENVIRONMENT_ID = re.compile(
    r"(?:environments/(?P<name>[^/:]+)/versions/(?P<version>[^/:]+)$)"
    r"|(?:^azureml:(?P<name2>[^/:]+):(?P<version2>[^/:]+)$)"
)
#: Deployments of an endpoint are ``modelport-g<N>`` (Azure allows 32 characters).
DEPLOYMENT_BASE = "modelport"
PORT = 8080
READY_ROUTE = "/ping"
SCORING_ROUTE = "/score"
DEFAULT_INSTANCE_TYPE = "Standard_DS3_v2"
#: How long one look at a long-running operation blocks (it returns as soon as it ends).
POLL_WAIT_S = 1.0
#: Azure's getLogs tail limit.
MAX_LOG_LINES = 10000
JSON = "application/json"
#: The header where Azure ML's 424 answer names the status the container answered.
MODEL_ERROR_STATUS = "ms-azureml-model-error-statuscode"
TAG_TARGET = label_key(Platform.AZURE, "target")
TAG_DEPLOYMENT = label_key(Platform.AZURE, "deployment")
_SETTLING = ("Creating", "Updating", "Scaling", "Deleting")
_STATUS = {
    "Succeeded": DeploymentStatus.READY,
    "Creating": DeploymentStatus.STARTING,
    "Updating": DeploymentStatus.UPDATING,
    "Scaling": DeploymentStatus.UPDATING,
    "Deleting": DeploymentStatus.UNKNOWN,
    "Failed": DeploymentStatus.FAILED,
    "Canceled": DeploymentStatus.FAILED,
}


@dataclass(frozen=True)
class Generation:
    """One version of a deployment: its Azure ML deployment, environment and model versions."""

    endpoint: str
    number: int

    @property
    def deployment(self) -> str:
        """The Azure ML deployment's name in the endpoint."""
        return generation_name(DEPLOYMENT_BASE, self.number, max_length=MAX_NAME)

    @property
    def asset(self) -> str:
        """The name of the environment and of the model asset (one version per generation)."""
        return asset_name(self.endpoint)

    @property
    def version(self) -> str:
        """The environment's (and model's) version."""
        return str(self.number)


def asset_name(endpoint: str) -> str:
    """The environment and model asset names of a deployment."""
    return f"modelport-{endpoint}"


@dataclass(frozen=True)
class Split:
    """How an endpoint shares its traffic between its deployments.

    Attributes:
        traffic: live traffic, percent by deployment (only the non-zero shares).
        mirror: mirrored traffic, percent by deployment.
    """

    traffic: Mapping[str, int]
    mirror: Mapping[str, int]

    @classmethod
    def of(cls, endpoint: Any) -> Split:
        """The split of an azure-ai-ml endpoint entity."""
        live = {str(k): int(v) for k, v in (endpoint.traffic or {}).items() if int(v)}
        mirror = {str(k): int(v) for k, v in (endpoint.mirror_traffic or {}).items() if int(v)}
        return cls(live, mirror)

    def primary(self, deployments: Sequence[str]) -> str | None:
        """The version serving: the oldest generation with live traffic, else the newest one.

        The oldest, not the one with the most traffic: a canary of 60 % is still the canary.
        """
        live = [d for d in self.traffic if d in deployments and _generation(d) is not None]
        if live:
            return min(live, key=lambda d: _generation(d) or 0)
        ours = [d for d in deployments if _generation(d) is not None]
        return max(ours, key=lambda d: _generation(d) or 0) if ours else None

    def candidate(self, deployments: Sequence[str]) -> str | None:
        """The new version beside the primary (a canary or a mirror), if there is one.

        A newer generation that takes a share of the live or the mirrored traffic.
        """
        primary = self.primary(deployments)
        shared = {d for d in (*self.traffic, *self.mirror) if d in deployments} - {primary}
        floor = _generation(primary or "") or 0
        newer = [d for d in shared if (_generation(d) or 0) > floor]
        return max(newer, key=lambda d: _generation(d) or 0) if newer else None


def _state(entity: Any) -> str:
    """An entity's provisioning state as text (azure-ai-ml gives an enum, or a string)."""
    found = getattr(entity, "provisioning_state", None)
    return str(getattr(found, "value", found) or "")


def _generation(deployment: str) -> int | None:
    return parse_generation(deployment, DEPLOYMENT_BASE, max_length=MAX_NAME)


def _time(value: Any) -> datetime | None:
    if not value:
        return None
    text = str(value).replace("Z", "+00:00")
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        with contextlib.suppress(ValueError):
            parsed = datetime.strptime(str(value), "%Y-%m-%dT%H:%M:%S.%f%z")
            return parsed.astimezone(timezone.utc).replace(microsecond=0)
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone.utc)
    return parsed.astimezone(timezone.utc).replace(microsecond=0)


def _call(operation: str, entity: Mapping[str, Any]) -> dict[str, Any]:
    """An azure-ai-ml call as the plan shows it.

    The operation, and the entity it sends in azure-ai-ml's YAML form.
    """
    return {"call": f"azure-ai-ml {operation}", "params": dict(entity)}


class AzureMLDeployer(Deployer[AzureMLConfig]):
    """Deploy a package as an Azure ML managed online endpoint, blue/green on update."""

    name = TARGET
    config_class = AzureMLConfig
    error_map = AZURE_ERRORS

    def __init__(self, config: AzureMLConfig | None = None, **kwargs: Any) -> None:
        super().__init__(config, **kwargs)
        self._azure: Azure | None = None
        self._engine: Engine | None = None

    def check_name(self, name: str) -> None:
        """Azure ML's endpoint names: 3-32 lowercase letters, digits and hyphens, from a letter."""
        super().check_name(name)
        if not _ENDPOINT_NAME.match(name):
            raise UsageError(
                f"invalid deployment name {name!r}: on azureml an endpoint name is 3-{MAX_NAME} "
                "lowercase letters, digits and hyphens, starting with a letter"
            )

    @classmethod
    def options_from_uri(cls, uri: str) -> dict[str, Any]:
        """``azureml:/SUBSCRIPTION/RESOURCE_GROUP/WORKSPACE`` names the workspace."""
        parts = [p for p in uri.strip("/").split("/") if p]
        if not parts:
            return {}
        if len(parts) != 3:
            raise ConfigError(
                [
                    f"the target URI is azureml:/SUBSCRIPTION/RESOURCE_GROUP/WORKSPACE, got "
                    f"azureml:{uri}"
                ],
                TARGET,
            )
        return dict(zip(("subscription_id", "resource_group", "workspace"), parts, strict=True))

    # --- Azure ----------------------------------------------------------------------------

    @property
    def workspace(self) -> Workspace:
        """The workspace the options (or config.json, or the environment) name."""
        return self.azure.workspace

    @property
    def azure(self) -> Azure:
        """The workspace's clients, made on first use."""
        if self._azure is None:
            self._azure = Azure(self.config, resolve_workspace(self.config))
        return self._azure

    @property
    def ml(self) -> Any:
        """azure-ai-ml's ``MLClient``."""
        return self.azure.ml

    @property
    def engine(self) -> Engine:
        """The Docker Engine API that builds and pushes the serving image."""
        if self._engine is None:
            from modelport.deployers.kit.engine import engine_at

            self._engine = engine_at(self.config.docker_host)
        return self._engine

    def _endpoint(self, name: str) -> Any | None:
        """The endpoint entity, or None when there is none."""
        try:
            return self.ml.online_endpoints.get(name)
        except Exception as exc:
            if not_found(exc):
                return None
            raise

    def _deployments(self, name: str) -> dict[str, Any]:
        """The endpoint's deployments by name."""
        try:
            return {d.name: d for d in self.ml.online_deployments.list(name)}
        except Exception as exc:
            if not_found(exc):
                return {}
            raise

    def _ours(self, name: str, found: Any = None) -> Any:
        """The endpoint ``name`` (``found``, else read now), made by modelport.

        Raises:
            DeploymentNotFound: there is none, or it is not modelport's.
        """
        found = self._endpoint(name) if found is None else found
        if found is None:
            raise DeploymentNotFound(
                f"no azureml deployment named {name!r} in the workspace {self.workspace.name}"
            )
        if (found.tags or {}).get(TAG_TARGET) != TARGET:
            raise DeploymentNotFound(
                f"the endpoint {name} in {self.workspace.name} was not made by modelport",
                hint=f"modelport manages only the endpoints it made (tagged {TAG_TARGET}={TARGET})",
            )
        return found

    # --- what a generation is made of ------------------------------------------------------

    def _facts(self, name: str, package: Package, generation: int | None) -> dict[str, str]:
        facts = Facts(
            package_digest=package.digest,
            package_name=package.name,
            package_version=package.version,
            flavor=package.manifest.flavor.name,
            modelport_version=__version__,
            deployment=name,
            target=TARGET,
            generation=generation,
        )
        facts = with_provenance(facts, package.provenance)
        return {**self.config.tags, **labels(Platform.AZURE, facts)}

    def _endpoint_tags(self, name: str) -> dict[str, str]:
        facts = Facts(modelport_version=__version__, deployment=name, target=TARGET)
        return {**self.config.tags, **labels(Platform.AZURE, facts)}

    @staticmethod
    def inference_config() -> dict[str, Any]:
        """The routes Azure ML probes and scores on: the server's own, on port 8080."""
        return {
            "liveness_route": {"port": PORT, "path": READY_ROUTE},
            "readiness_route": {"port": PORT, "path": READY_ROUTE},
            "scoring_route": {"port": PORT, "path": SCORING_ROUTE},
        }

    def _environment_entity(self, gen: Generation, package: Package, image: str) -> Any:
        return entities().Environment(
            name=gen.asset,
            version=gen.version,
            image=image,
            inference_config=self.inference_config(),
            tags=self._facts(gen.endpoint, package, gen.number),
            description=f"modelport serving image of {package.name} {package.version} "
            f"({package.digest})",
        )

    def _environment_variables(self, package: Package, config: AzureMLConfig) -> dict[str, str]:
        from modelport.deployers.kit.images import package_env

        return {**config.environment_variables, **package_env(package)}

    def _deployment_entity(
        self, gen: Generation, package: Package, config: AzureMLConfig, model: str | None
    ) -> Any:
        sdk = entities()

        request: dict[str, Any] = {}
        if config.request_timeout_ms is not None:
            request["request_timeout_ms"] = config.request_timeout_ms
        if config.max_concurrent_requests_per_instance is not None:
            request["max_concurrent_requests_per_instance"] = (
                config.max_concurrent_requests_per_instance
            )
        return sdk.ManagedOnlineDeployment(
            name=gen.deployment,
            endpoint_name=gen.endpoint,
            environment=f"azureml:{gen.asset}:{gen.version}",
            model=model,
            instance_type=config.instance_type or DEFAULT_INSTANCE_TYPE,
            instance_count=config.instance_count or 1,
            environment_variables=self._environment_variables(package, config),
            request_settings=sdk.OnlineRequestSettings(**request) if request else None,
            liveness_probe=sdk.ProbeSettings(**config.liveness_probe)
            if config.liveness_probe
            else None,
            readiness_probe=(
                sdk.ProbeSettings(**config.readiness_probe) if config.readiness_probe else None
            ),
            tags=self._facts(gen.endpoint, package, gen.number),
            description=f"{package.name} {package.version} ({package.digest})",
        )

    def _endpoint_entity(self, name: str) -> Any:
        return entities().ManagedOnlineEndpoint(
            name=name,
            auth_mode=self.config.auth_mode,
            tags=self._endpoint_tags(name),
            description="made by modelport",
        )

    @staticmethod
    def _dict(entity: Any) -> dict[str, Any]:
        """An entity as the plan shows it (azure-ai-ml's own YAML form)."""
        with contextlib.suppress(Exception):
            found = entity._to_dict()
            if isinstance(found, dict):
                return found
        return {"name": getattr(entity, "name", None)}

    # --- steps ------------------------------------------------------------------------------

    def _image_ref(self, package: Package, config: AzureMLConfig) -> str:
        registry = (config.registry or "").rstrip("/")
        tag = package.digest.removeprefix("sha256:")[:32]
        return f"{registry}/{config.repository}-model:{tag}"

    def _image_step(self, package: Package, config: AzureMLConfig) -> Step:
        if config.image:
            image = config.image
            return Step(
                "use-image",
                f"serve with the image {image} (given: nothing is built)",
                lambda _: image,
                kind="image",
                details={"image": image},
            )
        if not config.registry:
            raise UsageError(
                "the azureml target needs a registry to push the serving image to",
                hint="pass -C registry=NAME.azurecr.io (the workspace must be able to pull "
                "from it), or -C image=... to use an image as is",
            )
        registry = config.registry.rstrip("/")
        if config.model_asset:
            where = f"{registry}/{config.repository}-runtime:<runtime key>"
            description = (
                f"build (or reuse) the shared runtime image and push it as {where} (shared: "
                "it stays)"
            )
        else:
            where = self._image_ref(package, config)
            description = (
                f"build the serving image with the package inside and push it as {where} "
                "(shared by every deployment of this package: it stays)"
            )
        return Step(
            "push-image",
            description,
            lambda _: self._push_image(package, config),
            kind="image",
            details={"image": where, "registry": registry},
        )

    def _push_image(self, package: Package, config: AzureMLConfig) -> str:
        """Build the serving image (the runtime image is reused when it exists) and push it."""
        from modelport.deployers.kit import images

        pip_cert = images.pip_cert_or_env(config.pip_cert)
        build: dict[str, Any] = {
            "base_image": config.base_image,
            "index_url": config.index_url,
            "pip_cert": pip_cert,
        }
        # Azure ML runs amd64 virtual machines only.
        with images.ENGINE_ERRORS.translating("asking the container engine its architecture"):
            native = self.engine.architecture()
        registry = str(config.registry).rstrip("/")
        if config.model_asset:
            with images.runtime_context(
                self.engine,
                package,
                platform=None if native == "amd64" else "linux/amd64",
                progress=self.progress,
                **build,
            ) as prepared:
                runtime = images.build_runtime_image(self.engine, prepared, progress=self.progress)
                remote = f"{registry}/{config.repository}-runtime"
                with images.ENGINE_ERRORS.translating(f"tagging {runtime.ref}"):
                    self.engine.tag(runtime.ref, remote, prepared.key)
            return images.push_image(
                self.engine, f"{remote}:{prepared.key}", progress=self.progress
            ).pinned
        if native != "amd64":
            raise UsageError(
                f"the container engine builds {native} images, and Azure ML runs amd64 ones",
                hint="build on an amd64 engine (-C docker_host), or pass -C model_asset=true "
                "(its runtime image is built for linux/amd64)",
            )
        ref = self._image_ref(package, config)
        images.build_package_image(
            self.engine,
            package,
            ref=ref,
            labels=labels(
                Platform.DOCKER, with_provenance(Facts(target=TARGET), package.provenance)
            ),
            progress=self.progress,
            **build,
        )
        return images.push_image(self.engine, ref, progress=self.progress).pinned

    def _model_step(self, gen: Generation, package: Package) -> Step:
        entity = {
            "name": gen.asset,
            "version": gen.version,
            "type": "custom_model",
            "path": "<the package's .mport archive>",
        }

        def register(_: Mapping[str, Any]) -> str:
            from azure.ai.ml.constants import AssetTypes

            from modelport.model_format.archive import write_archive

            with tempfile.TemporaryDirectory(prefix="modelport-azureml-") as tmp:
                archive = Path(tmp) / "package.mport"
                write_archive(package.root, package.manifest, archive)
                self.progress(
                    f"registering the model asset {gen.asset}:{gen.version} "
                    f"({archive.stat().st_size} bytes)"
                )
                model = entities().Model(
                    name=gen.asset,
                    version=gen.version,
                    path=str(archive),
                    type=AssetTypes.CUSTOM_MODEL,
                    tags=self._facts(gen.endpoint, package, gen.number),
                    description=f"{package.name} {package.version} ({package.digest})",
                )
                with self.azure.storage_trust():
                    self.ml.models.create_or_update(model)
            return f"azureml:{gen.asset}:{gen.version}"

        return Step(
            "register-model",
            f"register the package as the model asset {gen.asset}:{gen.version} (Azure mounts "
            "it at AZUREML_MODEL_DIR)",
            register,
            undo=lambda _: self._delete_version("models", gen.asset, gen.version),
            kind="model",
            details={"calls": [_call("models.create_or_update", entity)]},
            resource=lambda _: f"the model asset {gen.asset}:{gen.version}",
            remove_with=lambda _: f"az ml model archive --name {gen.asset} --version {gen.version}",
        )

    def _environment_step(self, gen: Generation, package: Package, image_step: str) -> Step:
        def register(done: Mapping[str, Any]) -> str:
            entity = self._environment_entity(gen, package, str(done[image_step]))
            self.ml.environments.create_or_update(entity)
            return f"azureml:{gen.asset}:{gen.version}"

        preview = self._dict(self._environment_entity(gen, package, f"<{image_step}>"))
        return Step(
            "register-environment",
            f"register the environment {gen.asset}:{gen.version} (the image; probes on "
            f"{READY_ROUTE}, scoring on {SCORING_ROUTE}, port {PORT})",
            register,
            undo=lambda _: self._delete_version("environments", gen.asset, gen.version),
            kind="environment",
            details={"calls": [_call("environments.create_or_update", preview)]},
            resource=lambda _: f"the environment {gen.asset}:{gen.version}",
            remove_with=lambda _: (
                f"az ml environment archive --name {gen.asset} --version {gen.version}"
            ),
        )

    def _delete_version(self, kind: str, name: str, version: str) -> None:
        """Delete one environment or model version; archive it where Azure refuses deletes."""
        try:
            self.azure.arm("DELETE", kind, name, "versions", version)
        except Exception as exc:
            if status_of(exc) not in (400, 405, 409):
                raise
            operations = self.ml.environments if kind == "environments" else self.ml.models
            operations.archive(name=name, version=version)
            self.progress.warn(f"Azure keeps {kind[:-1]} {name}:{version}: it is archived")

    def _endpoint_step(self, name: str) -> Step:
        entity = self._endpoint_entity(name)

        def create(_: Mapping[str, Any]) -> str:
            poller = self.ml.online_endpoints.begin_create_or_update(entity)
            try:
                self._wait_poller(poller, f"the endpoint {name} to be created")
            except BaseException as exc:
                # Accepted, then failed or late: this step's undo will not run, so undo here.
                undo_after_failure(
                    exc,
                    lambda: self._delete_endpoint(name),
                    f"the online endpoint {name}, remove with: az ml online-endpoint delete "
                    f"--name {name} --yes",
                )
                raise
            return name

        return Step(
            "create-endpoint",
            f"create the online endpoint {name} (auth_mode {self.config.auth_mode})",
            create,
            undo=lambda _: self._delete_endpoint(name),
            kind="endpoint",
            details={
                "calls": [_call("online_endpoints.begin_create_or_update", self._dict(entity))]
            },
            resource=lambda _: f"the online endpoint {name}",
            remove_with=lambda _: (
                f"az ml online-endpoint delete --name {name} --yes --workspace-name "
                f"{self.workspace.name} --resource-group {self.workspace.resource_group}"
            ),
        )

    def _deployment_step(
        self,
        gen: Generation,
        package: Package,
        config: AzureMLConfig,
        model_step: str | None,
    ) -> Step:
        def create(done: Mapping[str, Any]) -> str:
            model = str(done[model_step]) if model_step else None
            entity = self._deployment_entity(gen, package, config, model)
            doing = f"creating the deployment {gen.deployment} of {gen.endpoint}"
            try:
                poller = self.ml.online_deployments.begin_create_or_update(entity)
            except Exception as exc:
                hinted = self._quota_hint(exc, config, doing)
                if hinted is exc:
                    raise
                raise hinted from exc
            try:
                self._wait_poller(
                    poller,
                    f"the deployment {gen.deployment} of {gen.endpoint} to be provisioned",
                    log=lambda: self._log_tail(gen.endpoint, gen.deployment),
                )
            except BaseException as exc:
                # This step failed, so its undo will not run: remove the Failed deployment here.
                undo_after_failure(
                    exc,
                    lambda: self._delete_deployment(gen.endpoint, gen.deployment),
                    f"the deployment {gen.deployment} of {gen.endpoint}, remove with: az ml "
                    f"online-deployment delete --endpoint-name {gen.endpoint} --name "
                    f"{gen.deployment} --yes",
                )
                hinted = self._quota_hint(exc, config, doing)
                if hinted is exc:
                    raise
                raise hinted from exc
            return gen.deployment

        preview = self._dict(
            self._deployment_entity(
                gen, package, config, "<register-model>" if model_step else None
            )
        )
        return Step(
            "create-deployment",
            f"create the deployment {gen.deployment} of {gen.endpoint} on "
            f"{config.instance_count or 1} x {config.instance_type or DEFAULT_INSTANCE_TYPE}, "
            f"and wait until it is provisioned (at most {config.startup_timeout:g} s)",
            create,
            undo=lambda _: self._delete_deployment(gen.endpoint, gen.deployment),
            kind="deployment",
            details={"calls": [_call("online_deployments.begin_create_or_update", preview)]},
            resource=lambda _: f"the deployment {gen.deployment} of the endpoint {gen.endpoint}",
            remove_with=lambda _: (
                f"az ml online-deployment delete --endpoint-name {gen.endpoint} --name "
                f"{gen.deployment} --yes"
            ),
        )

    @staticmethod
    def _quota_hint(exc: BaseException, config: AzureMLConfig, doing: str) -> BaseException:
        """``exc``, or for a quota refusal the same error with a hint naming what was asked."""
        error = exc if isinstance(exc, QuotaExceededError) else AZURE_ERRORS.translate(exc, doing)
        if not isinstance(error, QuotaExceededError):
            return exc
        sku = config.instance_type or DEFAULT_INSTANCE_TYPE
        count = config.instance_count or 1
        return QuotaExceededError(
            str(error),
            hint=f"the deployment asked for {count} x {sku}: ask for more {sku} quota (its VM "
            "family) in the workspace's region, or pass a smaller -C instance_type or "
            "-C instance_count",
        )

    def _traffic_step(self, name: str, split: Split, before: Split | None, what: str) -> Step:
        def route(_: Mapping[str, Any]) -> Split:
            try:
                self._set_split(name, split)
            except BaseException as exc:
                # Azure may still apply a move it accepted: put the old split back, as undo
                # would (it does not run for the step that failed).
                if before is not None:
                    undo_after_failure(
                        exc,
                        lambda: self._set_split(name, before),
                        f"the traffic of {name} as it was ({dict(before.traffic)}), set it "
                        f"with: az ml online-endpoint update --name {name} --traffic ...",
                    )
                raise
            return split

        def restore(_: Any) -> None:
            if before is not None:
                self._set_split(name, before)

        return Step(
            "route-traffic",
            what,
            route,
            undo=restore if before is not None else None,
            kind="traffic",
            details={
                "calls": [
                    _call(
                        "online_endpoints.begin_create_or_update",
                        {
                            "name": name,
                            "traffic": dict(split.traffic),
                            "mirror_traffic": dict(split.mirror),
                        },
                    )
                ]
            },
        )

    def _set_split(self, name: str, split: Split) -> None:
        """Give the endpoint this traffic and mirror split (every other deployment: 0)."""
        endpoint = self._ours(name)
        # Every deployment the split names, even one a listing does not show yet.
        deployments = [*self._deployments(name), *split.traffic, *split.mirror]
        endpoint.traffic = {d: int(split.traffic.get(d, 0)) for d in deployments}
        endpoint.mirror_traffic = {d: int(v) for d, v in split.mirror.items()}
        poller = self.ml.online_endpoints.begin_create_or_update(endpoint)
        self._wait_poller(poller, f"the endpoint {name} to take its new traffic")

    # --- waiting ---------------------------------------------------------------------------

    def _wait_poller(self, poller: Any, what: str, log: Any = None) -> Any:
        """Wait for an azure-core long-running operation, with a deadline and heartbeats."""

        def poll() -> Seen:
            # Blocks on the poller's own thread, so the end is seen the moment it comes; a
            # failure is raised by result() below.
            with contextlib.suppress(Exception):
                poller.wait(timeout=POLL_WAIT_S)
            return Seen(done=poller.done(), status=str(poller.status()))

        wait_until(
            poll,
            what=what,
            timeout_s=self.config.startup_timeout,
            progress=self.progress,
            interval_s=0.0,
            max_interval_s=0.0,
            log=log,
            timeout_hint="raise -C startup_timeout (seconds)",
        )
        try:
            return poller.result()
        except Exception as exc:
            translated = AZURE_ERRORS.translate(exc, what.replace(" to be ", " being ", 1))
            if translated is None:
                raise
            # The lines Azure's message does not already show.
            tail = [line for line in (log() if log else ()) if line not in str(translated)]
            if tail:
                lines = "\n".join(f"  {line}" for line in list(tail)[-15:])
                translated = type(translated)(
                    f"{translated}; its log ends:\n{lines}", hint=translated.hint
                )
            raise translated from exc

    def _delete_deployment(self, name: str, deployment: str) -> None:
        """Delete one deployment of the endpoint (no traffic may point at it); fine if gone."""
        try:
            poller = self.ml.online_deployments.begin_delete(name=deployment, endpoint_name=name)
        except Exception as exc:
            if not_found(exc):
                return
            raise
        try:
            self._wait_poller(poller, f"the deployment {deployment} of {name} to be deleted")
        except ResourceNotFound:  # gone meanwhile: as good
            return

    def _delete_endpoint(self, name: str) -> None:
        """Delete the endpoint with its deployments, and wait until it is gone."""
        try:
            poller = self.ml.online_endpoints.begin_delete(name=name)
        except Exception as exc:
            if not_found(exc):
                return
            raise
        with contextlib.suppress(ResourceNotFound):  # gone meanwhile: as good
            self._wait_poller(poller, f"the endpoint {name} to be deleted")

    # --- records ---------------------------------------------------------------------------

    def _record(
        self, endpoint: Any, deployments: Mapping[str, Any] | None = None, *, updating: bool = False
    ) -> Deployment:
        name = str(endpoint.name)
        deployments = self._deployments(name) if deployments is None else deployments
        split = Split.of(endpoint)
        primary = split.primary(builtins.list(deployments))
        candidate = split.candidate(builtins.list(deployments))
        serving = deployments.get(primary) if primary else None
        facts = read_labels(Platform.AZURE, (serving.tags or {}) if serving is not None else {})
        tagged = {
            d: read_labels(Platform.AZURE, found.tags or {}) for d, found in deployments.items()
        }
        described = {
            d: {
                "state": _state(found) or None,
                "package_digest": tagged[d].package_digest,
                "traffic": split.traffic.get(d, 0),
                "mirror": split.mirror.get(d, 0),
                "instance_type": getattr(found, "instance_type", None),
                "instance_count": getattr(found, "instance_count", None),
                **provenance_details(tagged[d]),
            }
            for d, found in sorted(deployments.items())
        }
        details: dict[str, Any] = {
            "workspace": self.workspace.name,
            "resource_group": self.workspace.resource_group,
            "subscription_id": self.workspace.subscription_id,
            "location": getattr(endpoint, "location", None),
            "auth_mode": getattr(endpoint, "auth_mode", None),
            "scoring_uri": getattr(endpoint, "scoring_uri", None),
            "provisioning_state": _state(endpoint) or None,
            "deployment": primary,
            "traffic": dict(split.traffic),
            "mirror_traffic": dict(split.mirror),
            "deployments": described,
            **provenance_details(facts),
        }
        if candidate is not None:
            share = split.mirror.get(candidate) or split.traffic.get(candidate, 0)
            details["candidate"] = {
                "deployment": candidate,
                "kind": "mirror" if candidate in split.mirror else "canary",
                "percent": share,
                "package_digest": described[candidate]["package_digest"],
            }
        job = background.last(default_home(), TARGET, name)
        if job is not None:
            details["update_job"] = job.to_dict()
            updating = updating or job.status == "running"
        status = self._status(endpoint, deployments, primary, candidate)
        if updating and status is DeploymentStatus.READY:
            status = DeploymentStatus.UPDATING
        properties = getattr(endpoint, "properties", None) or {}
        created = _time(properties.get("createdAt")) or utcnow()
        updated = created
        if primary is not None:
            deployed = getattr(deployments[primary], "properties", None) or {}
            updated = (
                _time(deployed.get("createdAt"))
                or _time(properties.get("lastModifiedAt"))
                or created
            )
        return Deployment(
            name=name,
            target=TARGET,
            status=status,
            endpoint=getattr(endpoint, "scoring_uri", None),
            package_digest=facts.package_digest or "",
            created_at=created,
            updated_at=max(updated, created),
            details=details,
        )

    @staticmethod
    def _status(
        endpoint: Any, deployments: Mapping[str, Any], primary: str | None, candidate: str | None
    ) -> DeploymentStatus:
        state = _state(endpoint)
        if state in ("Failed", "Canceled"):
            return DeploymentStatus.FAILED
        if primary is None:
            return DeploymentStatus.STARTING
        found = _state(deployments[primary])
        status = _STATUS.get(found, DeploymentStatus.UNKNOWN)
        if status is DeploymentStatus.STARTING and len(deployments) > 1:
            status = DeploymentStatus.UPDATING
        settling = candidate is not None and _state(deployments[candidate]) in _SETTLING
        if status is DeploymentStatus.READY and settling:
            status = DeploymentStatus.UPDATING
        if status is DeploymentStatus.READY and state in ("Creating", "Updating"):
            status = DeploymentStatus.UPDATING
        return status

    def _next_generation(self, name: str) -> int:
        """One more than any generation of ``name`` left in Azure (1 for a new name)."""
        names = [
            generation_name(DEPLOYMENT_BASE, int(v), max_length=MAX_NAME)
            for kind in ("environments", "models")
            for v in self._versions(kind, name, archived=True, ours=False)
        ]
        names += builtins.list(self._deployments(name)) if self._endpoint(name) else []
        return next_generation(names, DEPLOYMENT_BASE, max_length=MAX_NAME)

    def _versions(
        self, kind: str, name: str, *, archived: bool = False, ours: bool = True
    ) -> builtins.list[str]:
        """The numeric versions of the deployment's environment or model asset made by modelport.

        With ``archived``, the archived ones too, and without ``ours`` anyone's: a number Azure
        keeps can never be used again.
        """
        from azure.ai.ml.constants import ListViewType

        operations = self.ml.environments if kind == "environments" else self.ml.models
        view = ListViewType.ALL if archived else ListViewType.ACTIVE_ONLY
        try:
            found = builtins.list(operations.list(name=asset_name(name), list_view_type=view))
        except Exception as exc:
            if not_found(exc):
                return []
            raise
        return sorted(
            (
                str(item.version)
                for item in found
                if str(item.version).isdigit()
                and (
                    not ours
                    or (
                        (item.tags or {}).get(TAG_DEPLOYMENT) == name
                        and (item.tags or {}).get(TAG_TARGET) == TARGET
                    )
                )
            ),
            key=int,
        )

    # --- the verbs ------------------------------------------------------------------------

    def _generation_steps(
        self, gen: Generation, package: Package, config: AzureMLConfig
    ) -> builtins.list[Step]:
        image = self._image_step(package, config)
        steps = [image]
        model_step = None
        if config.model_asset:
            model = self._model_step(gen, package)
            steps.append(model)
            model_step = model.name
        steps.append(self._environment_step(gen, package, image.name))
        return [*steps, self._deployment_step(gen, package, config, model_step)]

    @AZURE_ERRORS.translated("planning an azureml deployment")
    @quiet
    def create_steps(
        self, name: str, package: Package, *, wait: bool = True
    ) -> builtins.list[Step]:
        """Image, model asset, environment, endpoint, deployment, all traffic to it.

        Building them reads (the next generation) and changes nothing.
        """
        gen = Generation(name, self._next_generation(name))
        generation = self._generation_steps(gen, package, self.config)
        endpoint = self._endpoint_step(name)
        # Undone by taking the traffic away again: a deployment with traffic cannot be deleted.
        traffic = self._traffic_step(
            name,
            Split({gen.deployment: 100}, {}),
            Split({}, {}),
            f"send all traffic of {name} to {gen.deployment}",
        )
        # The endpoint first: a deployment needs its endpoint.
        return [*generation[:-1], endpoint, generation[-1], traffic]

    @AZURE_ERRORS.translated("creating an azureml deployment")
    @quiet
    def create(self, name: str, package: Package, *, wait: bool = True) -> Deployment:
        """Make the endpoint ``name`` serving ``package`` (see the module's docstring).

        With ``wait=False`` the same create runs in a background job, and the record returned
        says ``starting`` (``get`` says so too until the endpoint exists).
        """
        self.check_name(name)
        if self._endpoint(name) is not None:
            raise DeploymentExists(
                f"an online endpoint named {name!r} exists in the workspace {self.workspace.name}"
            )
        if not wait:
            job = background.start(self, "create", name, package, home=default_home())
            return self._starting(name, package.digest, job.to_dict())
        background.refuse_if_busy(default_home(), TARGET, name)
        self.rollout("create", self.create_steps(name, package)).run()
        return self._record(self._ours(name))

    def _starting(self, name: str, digest: str, job: Mapping[str, Any]) -> Deployment:
        now = utcnow()
        return Deployment(
            name=name,
            target=TARGET,
            status=DeploymentStatus.STARTING,
            endpoint=None,
            package_digest=digest,
            created_at=now,
            updated_at=now,
            details={"workspace": self.workspace.name, "create_job": dict(job)},
        )

    def _settings_for_update(self, deployments: Mapping[str, Any], primary: str) -> AzureMLConfig:
        """The options, with the instance settings the deployment serving now has kept."""
        current = deployments[primary]
        from modelport.deployers.kit.images import PACKAGE_ENV_KEYS

        kept: dict[str, Any] = {}
        if self.config.instance_type is None and getattr(current, "instance_type", None):
            kept["instance_type"] = current.instance_type
        if self.config.instance_count is None and getattr(current, "instance_count", None):
            kept["instance_count"] = int(current.instance_count)
        extra = {
            k: str(v)
            for k, v in (getattr(current, "environment_variables", None) or {}).items()
            if k not in PACKAGE_ENV_KEYS
        }
        if not self.config.environment_variables and extra:
            kept["environment_variables"] = extra
        if not (self.config.image or self.config.registry):
            kept.update(self._image_settings(current))
        try:
            return dataclasses.replace(self.config, **kept)
        except ValueError as exc:
            raise ConfigError(
                [f"{exc} (with the settings the deployment {primary} has now)"], TARGET
            ) from None

    def _image_settings(self, deployment: Any) -> dict[str, Any]:
        """Where the serving deployment's image came from, when modelport built it.

        ``{registry, repository, model_asset}`` from its environment's image
        (``REGISTRY/REPOSITORY-model@...`` or ``-runtime@...``); empty for an image given as is.
        """
        from modelport.deployers.kit.images import registry_of

        found = _ENVIRONMENT_ID.search(str(getattr(deployment, "environment", "") or ""))
        if found is None:
            return {}
        try:
            name = found["name"] or found["name2"]
            version = found["version"] or found["version2"]
            image = str(self.ml.environments.get(name, version=version).image)
        except Exception as exc:
            if not_found(exc):
                return {}
            raise
        registry = registry_of(image)
        path = image[len(registry) + 1 :].split("@", maxsplit=1)[0].rsplit(":", 1)[0]
        for suffix, asset in (("-model", False), ("-runtime", True)):
            if path.endswith(suffix) and image.startswith(f"{registry}/"):
                return {
                    "registry": registry,
                    "repository": path.removesuffix(suffix),
                    "model_asset": asset or self.config.model_asset,
                }
        return {}

    @AZURE_ERRORS.translated("updating an azureml deployment")
    @quiet
    def update(self, name: str, package: Package, *, wait: bool = True) -> Deployment:
        """A new deployment beside the old one, then all traffic, a canary or a mirror to it.

        With ``wait=False`` the same update runs in a background job and the record returned
        says ``updating``.
        """
        self.check_name(name)
        endpoint = self._ours(name)
        deployments = self._deployments(name)
        current = self._record(endpoint, deployments)
        candidate = current.details.get("candidate")
        if current.package_digest == package.digest:
            return current
        if candidate:
            if candidate.get("package_digest") == package.digest:
                return current
            raise ConflictError(
                f"{name} has a {candidate['kind']} in progress ({candidate['deployment']}, "
                f"{candidate['percent']} %)",
                hint=f"finish it first: modelport deployments promote -t azureml {name}, or "
                f"modelport deployments rollback -t azureml {name}",
            )
        if not wait:
            job = background.start(self, "update", name, package, home=default_home())
            record = self._record(endpoint, deployments, updating=True)
            return dataclasses.replace(
                record, details={**record.details, "update_job": job.to_dict()}
            )
        background.refuse_if_busy(default_home(), TARGET, name)
        primary = current.details.get("deployment")
        # Azure's state alone (not this very job, which `current` counts as updating).
        state = self._status(endpoint, deployments, primary, None)
        if primary is None or state is not DeploymentStatus.READY:
            raise DeploymentError(
                f"the endpoint {name} is {state.value}: it can be updated only when ready",
                hint="wait for it (modelport deployments get), or delete and deploy again",
            )
        settings = self._settings_for_update(deployments, str(primary))
        gen = Generation(name, self._next_generation(name))
        before = Split.of(endpoint)
        if settings.canary_percent:
            share = settings.canary_percent
            after = Split({str(primary): 100 - share, gen.deployment: share}, {})
            what = f"send {share} % of the live traffic of {name} to {gen.deployment} (a canary)"
        elif settings.mirror_percent:
            after = Split(dict(before.traffic), {gen.deployment: settings.mirror_percent})
            what = (
                f"mirror {settings.mirror_percent} % of the live traffic of {name} to "
                f"{gen.deployment} (its answers are discarded)"
            )
        else:
            after = Split({gen.deployment: 100}, {})
            what = f"send all traffic of {name} to {gen.deployment}"
        steps = [
            *self._generation_steps(gen, package, settings),
            self._traffic_step(name, after, before, what),
        ]
        self.rollout("update", steps).run()
        if not settings.splits_traffic:
            self._retire(name, str(primary))
        else:
            self.progress(
                f"{gen.deployment} takes its share; finish with 'modelport deployments promote' "
                "or 'modelport deployments rollback'"
            )
        return self._record(self._ours(name))

    def _retire(self, name: str, deployment: str) -> None:
        """Remove a deployment that no longer takes traffic, with its environment and model."""
        number = _generation(deployment)
        try:
            self._delete_deployment(name, deployment)
            if number is not None:
                for kind in ("environments", "models"):
                    if str(number) in self._versions(kind, name):
                        self._delete_version(kind, asset_name(name), str(number))
        except Exception as exc:  # the switch is done: say what is left rather than fail
            error = AZURE_ERRORS.translate(exc, f"removing the old deployment {deployment}")
            self.progress.warn(
                f"{error or exc}; left behind: the deployment {deployment} of {name} (remove it "
                f"with az ml online-deployment delete --endpoint-name {name} --name {deployment})"
            )

    def _candidate(self, name: str) -> tuple[Any, dict[str, Any], str, str]:
        endpoint = self._ours(name)
        deployments = self._deployments(name)
        split = Split.of(endpoint)
        primary = split.primary(builtins.list(deployments))
        candidate = split.candidate(builtins.list(deployments))
        if primary is None or candidate is None:
            raise UsageError(
                f"{name} has no canary or mirror in progress: nothing to promote or roll back",
                hint="start one with modelport deployments update -C canary_percent=10 (or "
                "-C mirror_percent=20)",
            )
        return endpoint, deployments, primary, candidate

    @AZURE_ERRORS.translated("promoting an azureml deployment")
    @quiet
    def promote(self, name: str) -> Deployment:
        """All traffic to the canary (or mirror), then the old deployment is removed."""
        self.check_name(name)
        endpoint, _, primary, candidate = self._candidate(name)
        self.rollout(
            "promote",
            [
                self._traffic_step(
                    name,
                    Split({candidate: 100}, {}),
                    Split.of(endpoint),
                    f"send all traffic of {name} to {candidate}",
                )
            ],
        ).run()
        self._retire(name, primary)
        return self._record(self._ours(name))

    @AZURE_ERRORS.translated("rolling back an azureml deployment")
    @quiet
    def rollback(self, name: str) -> Deployment:
        """All traffic back to the old deployment, then the canary (or mirror) is removed."""
        self.check_name(name)
        endpoint, _, primary, candidate = self._candidate(name)
        self.rollout(
            "rollback",
            [
                self._traffic_step(
                    name,
                    Split({primary: 100}, {}),
                    Split.of(endpoint),
                    f"send all traffic of {name} back to {primary}",
                )
            ],
        ).run()
        self._retire(name, candidate)
        return self._record(self._ours(name))

    @AZURE_ERRORS.translated("deleting an azureml deployment")
    @quiet
    def delete(self, name: str) -> None:
        """Remove the endpoint, its deployments, environment versions and model assets."""
        self.check_name(name)
        background.cancel(default_home(), TARGET, name, timeout=self.config.startup_timeout)
        found = self._endpoint(name)
        if found is not None:
            if (found.tags or {}).get(TAG_TARGET) != TARGET:
                raise DeploymentError(
                    f"the endpoint {name} was not made by modelport: it is left alone"
                )
            self._delete_endpoint(name)
        for kind in ("environments", "models"):
            for version in self._versions(kind, name):
                self._delete_version(kind, asset_name(name), version)

    @AZURE_ERRORS.translated("reading an azureml deployment")
    @quiet
    def get(self, name: str) -> Deployment:
        """The endpoint's state, traffic split, package digest and scoring URI."""
        self.check_name(name)
        found = self._endpoint(name)
        if found is None:
            job = background.last(default_home(), TARGET, name)
            if job is not None and job.verb == "create" and job.status == "running":
                return self._starting(name, job.package_digest, job.to_dict())
        return self._record(self._ours(name, found))

    @AZURE_ERRORS.translated("listing the azureml deployments")
    @quiet
    def list(self) -> Sequence[Deployment]:
        """Every online endpoint of the workspace that modelport made (by its tags), by name."""
        result = []
        for endpoint in self.ml.online_endpoints.list():
            if (endpoint.tags or {}).get(TAG_TARGET) != TARGET:
                continue
            with contextlib.suppress(DeploymentNotFound, UsageError):
                self.check_name(str(endpoint.name))
                result.append(self._record(self._ours(str(endpoint.name), endpoint)))
        return sorted(result, key=lambda d: d.name)

    def _authorization(self, name: str, endpoint: Any) -> str:
        if str(getattr(endpoint, "auth_mode", "key")).lower() in ("aad_token", "aadtoken"):
            token = self.azure.credential.get_token(self.azure.cloud.scoring_scope)
            return f"Bearer {token.token}"
        keys = self.ml.online_endpoints.get_keys(name)
        return f"Bearer {keys.primary_key}"

    @AZURE_ERRORS.translated("asking an azureml deployment")
    @quiet
    def predict(self, name: str, payload: Mapping[str, Any]) -> dict[str, Any]:
        """POST the payload to the scoring URI (the endpoint key, or an AAD token)."""
        from azure.core.rest import HttpRequest

        self.check_name(name)
        endpoint = self._ours(name)
        uri = getattr(endpoint, "scoring_uri", None)
        if not uri:
            raise DeploymentError(f"the endpoint {name} has no scoring URI yet: is it ready?")
        request = HttpRequest(
            "POST",
            str(uri),
            json=dict(payload),
            headers={"Authorization": self._authorization(name, endpoint), "Accept": JSON},
        )
        client = self.azure.pipeline(bearer_scope=None, retries=SCORING_RETRIES)
        response = client.send_request(request)
        raw = response.read()
        status = int(response.status_code)
        where = f"azureml deployment {name!r}"
        if status == 200:
            answer = json_body(raw)
            if answer is None:
                raise DeploymentError(f"{where} answered something that is not JSON")
            if isinstance(answer, dict) and "predictions" in answer:
                return answer
            # /score answers the predictions themselves, as Azure ML's MLflow scoring does.
            return {"predictions": answer}
        message = scoring_error_message(status, raw)
        if status == 424:
            # Azure ML answers 424 for any non-200 of the container, whose status it names.
            container = str(response.headers.get(MODEL_ERROR_STATUS) or "")
            status = int(container) if container.isdigit() else 500
        if status in (400, 413, 415, 422):
            raise InputError(message)
        if status == 500:
            raise ModelError(f"{where}: the model failed: {message}")
        if status in (401, 403):
            raise PermissionDeniedError(
                f"{where} refused the credentials (HTTP {status}): {message}",
                hint="for auth_mode=aad_token the identity needs the AzureML Data Scientist "
                "role (or .../onlineEndpoints/score/action) on the endpoint",
            )
        if status == 429:
            raise ThrottledError(
                f"{where} is busy (HTTP 429): {message}",
                hint="send fewer requests at once, or raise instance_count",
            )
        if status in (502, 503, 504):
            raise TargetUnavailableError(f"{where} is unavailable (HTTP {status}): {message}")
        if status == 408:
            raise DeploymentError(
                f"{where} timed out: {message}", hint="raise -C request_timeout_ms (at most 180000)"
            )
        raise DeploymentError(f"{where} answered HTTP {status}: {message}")

    def _log_tail(self, name: str, deployment: str, lines: int = 15) -> builtins.list[str]:
        """The last lines of a deployment's container log (for failure messages); [] if none."""
        with contextlib.suppress(Exception):
            text = self.ml.online_deployments.get_logs(
                name=deployment, endpoint_name=name, lines=lines
            )
            return str(text or "").splitlines()
        return []

    @AZURE_ERRORS.translated("reading the logs of an azureml deployment")
    @quiet
    def logs(self, name: str, *, tail: int | None = 100) -> Iterator[str]:
        """The container log of the deployment serving now (Azure's getLogs)."""
        self.check_name(name)
        endpoint = self._ours(name)
        deployments = self._deployments(name)
        primary = Split.of(endpoint).primary(builtins.list(deployments))
        if primary is None:
            return iter(())
        if tail is not None and tail <= 0:
            return iter(())
        lines = MAX_LOG_LINES if tail is None else min(tail, MAX_LOG_LINES)
        text = self.ml.online_deployments.get_logs(name=primary, endpoint_name=name, lines=lines)
        found = str(text or "").splitlines()
        return iter(found[-tail:] if tail is not None else found)
