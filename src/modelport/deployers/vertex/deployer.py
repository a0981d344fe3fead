"""The ``vertex`` target: a package as a Vertex AI endpoint, with google-cloud-aiplatform.

What one deployment ``NAME`` is made of, generation ``N`` at a time:

- the serving image ``<registry>/<repository>-model:<digest>`` (the package baked in, built
  and pushed with :mod:`modelport.deployers.kit.images`, pinned by digest), or ``-C image``
  as is. Shared: no deployment removes it;
- the Vertex model ``modelport-NAME``, one version per generation: its container spec is the
  image, port 8080, the health route ``/ping`` and the predict route ``/predict`` (Vertex
  passes them as ``AIP_HEALTH_ROUTE`` and ``AIP_PREDICT_ROUTE``, which the server serves), and
  the environment that pins the package's digest;
- the endpoint (display name ``NAME``, labelled), or the one ``-C endpoint_id`` names, and on it
  the deployed model ``modelport-gN`` (:func:`~modelport.deployers.kit.naming.generation_name`),
  which gets the traffic.

``create`` and ``update`` are rollouts (:mod:`modelport.deployers.kit.rollout`): each step's
undo removes what it made when a later one fails, ``--dry-run`` prints the same steps, and
each step has a failpoint. ``update`` uploads version ``N+1`` of the model (``parent_model``),
deploys it beside ``N`` with no traffic, then moves all traffic to it and removes ``N``; with
``-C canary_percent`` it stops with that share on ``N+1`` until ``deployments promote`` or
``deployments rollback``. Every resource is labelled
(:func:`~modelport.deployers.kit.naming.labels`) and Vertex's own state is the only state: any
machine with the credentials can ``get``, ``list``, ``predict``, ``logs``, ``update``,
``promote``, ``rollback`` or ``delete``.
"""

from __future__ import annotations

import builtins
import contextlib
import dataclasses
import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from modelport import __version__
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
from modelport.deployers.vertex.config import DEFAULT_MACHINE_TYPE, TARGET, Location, VertexConfig
from modelport.deployers.vertex.google import (
    VERTEX_ERRORS,
    Google,
    message_of,
    not_found,
    quiet,
    quota_metric,
    retrying,
    status_of,
)
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
    TargetUnavailableError,
    ThrottledError,
    UsageError,
)

if TYPE_CHECKING:
    from modelport.deployers.kit.engine import Engine
    from modelport.model_format.package import Package

#: Deployment names: the model id ``modelport-NAME`` must fit Vertex's 63 characters.
MAX_NAME = 53
DEPLOYED_BASE = "modelport"
PORT = 8080
HEALTH_ROUTE = "/ping"
PREDICT_ROUTE = "/predict"
DEFAULT_ALIAS = "default"
CPU_METRIC = "aiplatform.googleapis.com/prediction/online/cpu/utilization"
LABEL_TARGET = label_key(Platform.GCP, "target")
LABEL_DEPLOYMENT = label_key(Platform.GCP, "deployment")
#: On an endpoint given with -C endpoint_id: modelport did not make it, so delete leaves it.
LABEL_REUSED = "modelport-reused-endpoint"
#: The longest pause between two looks at a deployment's operation.
MAX_POLL_S = 10.0
MAX_LOG_PAGE = 1000


@dataclass(frozen=True)
class Generation:
    """One version of a deployment: its deployed model and its model version."""

    name: str
    number: int

    @property
    def deployed(self) -> str:
        """The deployed model's display name on the endpoint."""
        return generation_name(DEPLOYED_BASE, self.number)


def model_id(name: str) -> str:
    """The Vertex model that holds a deployment's versions."""
    return f"{DEPLOYED_BASE}-{name}"


def _generation(display_name: str) -> int | None:
    return parse_generation(display_name, DEPLOYED_BASE)


def _time(value: Any) -> datetime | None:
    if not isinstance(value, datetime):
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    found: datetime = value.astimezone(timezone.utc).replace(microsecond=0)
    return found


def _call(call: str, params: Mapping[str, Any]) -> dict[str, Any]:
    """A google-cloud-aiplatform call as the plan shows it."""
    return {"call": call, "params": dict(params)}


@dataclass(frozen=True)
class Deployed:
    """One model deployed on the endpoint, as Vertex describes it."""

    id: str
    display_name: str
    model: str
    version: str
    created: datetime | None
    machine_type: str | None
    min_replicas: int | None
    max_replicas: int | None
    accelerator_type: str | None
    accelerator_count: int | None
    service_account: str | None
    cpu_target_percent: int | None = None

    @property
    def generation(self) -> int | None:
        """Its generation, when modelport deployed it."""
        return _generation(self.display_name)

    @classmethod
    def of(cls, proto: Any) -> Deployed:
        """From the SDK's ``DeployedModel``."""
        resources = getattr(proto, "dedicated_resources", None)
        spec = getattr(resources, "machine_spec", None)
        accelerator = getattr(spec, "accelerator_type", None)
        accelerator_name = getattr(accelerator, "name", None) or (str(accelerator or "") or None)
        if accelerator_name == "ACCELERATOR_TYPE_UNSPECIFIED":
            accelerator_name = None
        return cls(
            id=str(proto.id),
            display_name=str(proto.display_name or ""),
            model=str(proto.model or ""),
            version=str(getattr(proto, "model_version_id", "") or ""),
            created=_time(getattr(proto, "create_time", None)),
            machine_type=str(getattr(spec, "machine_type", "") or "") or None,
            min_replicas=int(getattr(resources, "min_replica_count", 0) or 0) or None,
            max_replicas=int(getattr(resources, "max_replica_count", 0) or 0) or None,
            accelerator_type=accelerator_name,
            accelerator_count=int(getattr(spec, "accelerator_count", 0) or 0) or None,
            service_account=str(getattr(proto, "service_account", "") or "") or None,
            cpu_target_percent=next(
                (
                    int(spec.target)
                    for spec in getattr(resources, "autoscaling_metric_specs", None) or ()
                    if spec.metric_name == CPU_METRIC and spec.target
                ),
                None,
            ),
        )


@dataclass(frozen=True)
class View:
    """An endpoint and what is deployed on it, read once.

    Attributes:
        endpoint: the SDK's ``Endpoint``.
        deployed: every deployed model, by id.
        traffic: percent by deployed model id (only non-zero shares).
    """

    endpoint: Any
    deployed: Mapping[str, Deployed]
    traffic: Mapping[str, int]

    @classmethod
    def of(cls, endpoint: Any) -> View:
        """From an ``Endpoint`` (as last synced)."""
        resource = endpoint.gca_resource
        deployed = {str(d.id): Deployed.of(d) for d in resource.deployed_models}
        traffic = {str(k): int(v) for k, v in dict(resource.traffic_split).items() if int(v)}
        return cls(endpoint, deployed, traffic)

    @property
    def ours(self) -> dict[str, Deployed]:
        """The deployed models modelport made, by id."""
        return {i: d for i, d in self.deployed.items() if d.generation is not None}

    @property
    def foreign(self) -> list[Deployed]:
        """The deployed models someone else made."""
        return [d for d in self.deployed.values() if d.generation is None]

    def primary(self) -> Deployed | None:
        """The version serving: the oldest generation with traffic, else the newest one.

        The oldest, not the one with the most traffic: a canary of 60 % is still the canary.
        """
        ours = self.ours
        live = [d for i, d in ours.items() if i in self.traffic]
        if live:
            return min(live, key=lambda d: d.generation or 0)
        return max(ours.values(), key=lambda d: d.generation or 0) if ours else None

    def candidate(self) -> Deployed | None:
        """The newer version beside the primary that takes a share of the traffic (a canary)."""
        primary = self.primary()
        floor = primary.generation or 0 if primary else 0
        newer = [
            d
            for i, d in self.ours.items()
            if i in self.traffic and (d.generation or 0) > floor and d is not primary
        ]
        return max(newer, key=lambda d: d.generation or 0) if newer else None

    def by_name(self, display_name: str) -> Deployed | None:
        """The deployed model with this display name."""
        return next((d for d in self.deployed.values() if d.display_name == display_name), None)


class VertexDeployer(Deployer[VertexConfig]):
    """Deploy a package as a Vertex AI endpoint, blue/green (or a canary) on update."""

    name = TARGET
    config_class = VertexConfig
    error_map = VERTEX_ERRORS

    def __init__(self, config: VertexConfig | None = None, **kwargs: Any) -> None:
        super().__init__(config, **kwargs)
        self._google: Google | None = None
        self._engine: Engine | None = None

    def check_name(self, name: str) -> None:
        """Names: the model id ``modelport-NAME`` must fit Vertex's 63 characters."""
        super().check_name(name)
        if len(name) > MAX_NAME or not name[0].isalpha():
            raise UsageError(
                f"invalid deployment name {name!r}: on vertex a name is 1-{MAX_NAME} lowercase "
                "letters, digits and hyphens, starting with a letter"
            )

    @classmethod
    def options_from_uri(cls, uri: str) -> dict[str, Any]:
        """``vertex:/PROJECT/REGION`` (or ``vertex:/PROJECT``) names where to deploy."""
        parts = [p for p in uri.strip("/").split("/") if p]
        if len(parts) > 2:
            raise ConfigError(
                [f"the target URI is vertex:/PROJECT/REGION, got vertex:{uri}"], TARGET
            )
        return dict(zip(("project", "region"), parts, strict=False))

    # --- Google ---------------------------------------------------------------------------

    @property
    def google(self) -> Google:
        """Credentials and the SDK's configuration, made on first use."""
        if self._google is None:
            self._google = Google(self.config)
        return self._google

    @property
    def location(self) -> Location:
        """The project and region."""
        return self.google.location

    def aip(self) -> Any:
        """``google.cloud.aiplatform``, configured for this target."""
        return self.google.aiplatform()

    @property
    def engine(self) -> Engine:
        """The Docker Engine API that builds and pushes the serving image."""
        if self._engine is None:
            from modelport.deployers.kit.engine import engine_at

            self._engine = engine_at(self.config.docker_host)
        return self._engine

    def _retrying(self, call: Any, what: str, *, idempotent: bool = True) -> Any:
        return retrying(call, what, progress=self.progress, idempotent=idempotent)

    # --- finding things -------------------------------------------------------------------

    def _endpoint(self, name: str) -> Any | None:
        """The endpoint of deployment ``name`` (by its labels), or None."""
        aip = self.aip()
        wanted = f'labels.{LABEL_DEPLOYMENT}="{name}" AND labels.{LABEL_TARGET}="{TARGET}"'
        found = self._retrying(
            lambda: builtins.list(aip.Endpoint.list(filter=wanted)), f"finding the endpoint {name}"
        )
        ours = [
            e
            for e in found
            if (e.labels or {}).get(LABEL_DEPLOYMENT) == name
            and (e.labels or {}).get(LABEL_TARGET) == TARGET
        ]
        if len(ours) > 1:
            ids = ", ".join(sorted(str(e.name) for e in ours))
            raise ConflictError(
                f"more than one endpoint is labelled as the vertex deployment {name!r}: {ids}",
                hint="delete the extra ones (gcloud ai endpoints delete ID), or remove their "
                f"{LABEL_DEPLOYMENT} label",
            )
        return ours[0] if ours else None

    def _view(self, name: str) -> View:
        """The endpoint of ``name`` and what is deployed on it.

        Raises:
            DeploymentNotFound: there is none.
        """
        found = self._endpoint(name)
        if found is None:
            raise DeploymentNotFound(
                f"no vertex deployment named {name!r} in {self.location.project}/"
                f"{self.location.region}"
            )
        return View.of(found)

    def _refresh(self, view: View) -> View:
        aip = self.aip()
        name = view.endpoint.resource_name
        return View.of(self._retrying(lambda: aip.Endpoint(name), "reading the endpoint"))

    def _model(self, name: str, version: str | None = None) -> Any | None:
        """The model ``modelport-NAME`` (a version of it, or the default one), or None."""
        aip = self.aip()
        try:
            return self._retrying(
                lambda: aip.Model(model_id(name), version=version), f"reading the model of {name}"
            )
        except Exception as exc:
            if not_found(exc):
                return None
            raise

    def _versions(self, name: str) -> builtins.list[Any]:
        """Every version of the model ``modelport-NAME`` (the GAPIC ``Model``s), or [].

        Their labels too, which the SDK's ``list_versions`` leaves out.
        """
        registry = self.aip().models.ModelRegistry(model_id(name))
        try:
            found: builtins.list[Any] = self._retrying(
                lambda: builtins.list(
                    registry.client.list_model_versions(name=registry.model_resource_name)
                ),
                f"listing the versions of {model_id(name)}",
            )
            return found
        except Exception as exc:
            if not_found(exc):
                return []
            raise

    @staticmethod
    def _next_generation(view: View | None, versions: Sequence[Any]) -> int:
        """One more than any generation left in Vertex (1 for a new name).

        On the endpoint (``view``), or among the model's ``versions``.
        """
        names = [d.display_name for d in view.deployed.values()] if view else []
        for info in versions:
            found = read_labels(Platform.GCP, getattr(info, "labels", None) or {}).generation
            if found:
                names.append(generation_name(DEPLOYED_BASE, found))
        return next_generation(names, DEPLOYED_BASE)

    # --- what a generation is made of -----------------------------------------------------

    def _facts(self, name: str, package: Package | None, generation: int | None) -> dict[str, str]:
        facts = Facts(
            package_digest=package.digest if package else None,
            package_name=package.name if package else None,
            package_version=package.version if package else None,
            flavor=package.manifest.flavor.name if package else None,
            modelport_version=__version__,
            deployment=name,
            target=TARGET,
            generation=generation,
        )
        if package is not None:
            facts = with_provenance(facts, package.provenance)
        return {**self.config.labels, **labels(Platform.GCP, facts)}

    def _environment(self, package: Package, config: VertexConfig) -> dict[str, str]:
        from modelport.deployers.kit.images import package_env

        return {**config.environment_variables, **package_env(package)}

    def _upload_params(
        self, gen: Generation, package: Package, config: VertexConfig, image: str, parent: bool
    ) -> dict[str, Any]:
        params: dict[str, Any] = {
            "display_name": model_id(gen.name),
            "serving_container_image_uri": image,
            "serving_container_predict_route": PREDICT_ROUTE,
            "serving_container_health_route": HEALTH_ROUTE,
            "serving_container_ports": [PORT],
            "serving_container_environment_variables": self._environment(package, config),
            "labels": self._facts(gen.name, package, gen.number),
            "description": f"modelport deployment {gen.name}",
            "version_description": f"{package.name} {package.version} ({package.digest})",
            # A canary's version is not the default until it is promoted.
            "is_default_version": not config.canary_percent,
        }
        if parent:
            params["parent_model"] = model_id(gen.name)
        else:
            params["model_id"] = model_id(gen.name)
        return params

    def _deploy_params(self, gen: Generation, config: VertexConfig) -> dict[str, Any]:
        minimum = config.min_replicas or 1
        params: dict[str, Any] = {
            "deployed_model_display_name": gen.deployed,
            "machine_type": config.machine_type or DEFAULT_MACHINE_TYPE,
            "min_replica_count": minimum,
            "max_replica_count": max(config.max_replicas or minimum, minimum),
        }
        if config.accelerator_type:
            params["accelerator_type"] = config.accelerator_type
            params["accelerator_count"] = config.accelerator_count or 1
        if config.service_account:
            params["service_account"] = config.service_account
        if config.cpu_target_percent:
            params["autoscaling_target_cpu_utilization"] = config.cpu_target_percent
        return params

    # --- steps ------------------------------------------------------------------------------

    def _image_ref(self, package: Package, config: VertexConfig) -> str:
        registry = (config.registry or "").rstrip("/")
        tag = package.digest.removeprefix("sha256:")[:32]
        return f"{registry}/{config.repository}-model:{tag}"

    def _image_step(self, package: Package, config: VertexConfig) -> Step:
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
                "the vertex target needs a registry to push the serving image to",
                hint="pass -C registry=REGION-docker.pkg.dev/PROJECT/REPOSITORY (Vertex must "
                "be able to pull from it), or -C image=... to use an image as is",
            )
        where = self._image_ref(package, config)
        return Step(
            "push-image",
            f"build the serving image with the package inside and push it as {where} (shared "
            "by every deployment of this package: it stays)",
            lambda _: self._push_image(package, config),
            kind="image",
            details={"image": where, "registry": config.registry.rstrip("/")},
        )

    def _push_image(self, package: Package, config: VertexConfig) -> str:
        """Build the serving image (on the cached runtime image) and push it; its pinned ref."""
        from modelport.deployers.kit import images

        with images.ENGINE_ERRORS.translating("asking the container engine its architecture"):
            native = self.engine.architecture()
        if native != "amd64":
            raise UsageError(
                f"the container engine builds {native} images, and Vertex AI runs amd64 ones",
                hint="build on an amd64 engine (-C docker_host), or pass -C image=...",
            )
        ref = self._image_ref(package, config)
        images.build_package_image(
            self.engine,
            package,
            ref=ref,
            base_image=config.base_image,
            index_url=config.index_url,
            pip_cert=images.pip_cert_or_env(config.pip_cert),
            labels=labels(
                Platform.DOCKER, with_provenance(Facts(target=TARGET), package.provenance)
            ),
            progress=self.progress,
        )
        return images.push_image(self.engine, ref, progress=self.progress).pinned

    def _upload_step(
        self,
        gen: Generation,
        package: Package,
        config: VertexConfig,
        image_step: str,
        *,
        parent: bool,
    ) -> Step:
        """Upload the generation's model version; ``parent``: the model exists already."""
        preview = self._upload_params(gen, package, config, f"<{image_step}>", parent)

        def upload(done: Mapping[str, Any]) -> str:
            aip = self.aip()
            params = self._upload_params(gen, package, config, str(done[image_step]), parent)
            model = self._retrying(
                lambda: aip.Model.upload(**params, sync=True),
                f"uploading the model {model_id(gen.name)}",
                idempotent=False,
            )
            return str(model.version_id)

        what = "a new version of the model" if parent else "the model"
        return Step(
            "upload-model",
            f"upload {what} {model_id(gen.name)} (the image; port {PORT}, health {HEALTH_ROUTE}, "
            f"predict {PREDICT_ROUTE})",
            upload,
            undo=lambda version: self._delete_version(gen.name, str(version), parent=parent),
            kind="model",
            details={"calls": [_call("aiplatform.Model.upload", preview)]},
            resource=lambda version: f"the model {model_id(gen.name)} version {version}",
            remove_with=lambda version: (
                f"gcloud ai models delete-version {model_id(gen.name)}@{version} --region "
                f"{self.location.region} --project {self.location.project}"
            ),
        )

    def _endpoint_step(self, name: str) -> Step:
        if self.config.endpoint_id:
            return self._adopt_step(name, self.config.endpoint_id)
        params = {
            "display_name": name,
            "labels": self._facts(name, None, None),
            "description": "made by modelport",
        }

        def create(_: Mapping[str, Any]) -> str:
            aip = self.aip()
            endpoint = self._retrying(
                lambda: aip.Endpoint.create(**params, sync=True),
                f"creating the endpoint {name}",
                idempotent=False,
            )
            return str(endpoint.resource_name)

        return Step(
            "create-endpoint",
            f"create the endpoint {name}",
            create,
            undo=lambda resource: self._delete_endpoint(str(resource)),
            kind="endpoint",
            details={"calls": [_call("aiplatform.Endpoint.create", params)]},
            resource=lambda resource: f"the endpoint {resource}",
            remove_with=lambda resource: (
                f"gcloud ai endpoints delete {str(resource).rsplit('/', 1)[-1]} --region "
                f"{self.location.region} --project {self.location.project}"
            ),
        )

    def _adopt_step(self, name: str, endpoint_id: str) -> Step:
        """Use an existing endpoint: it gets modelport's labels (delete takes them away)."""
        mine = {**self._facts(name, None, None), LABEL_REUSED: "true"}

        def adopt(_: Mapping[str, Any]) -> tuple[str, dict[str, str]]:
            aip = self.aip()
            try:
                endpoint = self._retrying(lambda: aip.Endpoint(endpoint_id), "reading the endpoint")
            except Exception as exc:
                if not_found(exc):
                    raise UsageError(
                        f"-C endpoint_id={endpoint_id}: no such endpoint in "
                        f"{self.location.project}/{self.location.region}"
                    ) from None
                raise
            view = View.of(endpoint)
            before = dict(endpoint.labels or {})
            if before.get(LABEL_DEPLOYMENT) not in (None, name):
                raise ConflictError(
                    f"the endpoint {endpoint_id} serves the vertex deployment "
                    f"{before[LABEL_DEPLOYMENT]!r}"
                )
            if view.deployed:
                raise ConflictError(
                    f"the endpoint {endpoint_id} has models deployed on it: modelport deploys "
                    "only to an empty endpoint",
                    hint="undeploy them first, or leave out -C endpoint_id",
                )
            self._retrying(lambda: endpoint.update(labels={**before, **mine}), "labelling it")
            return str(endpoint.resource_name), before

        def restore(result: tuple[str, dict[str, str]]) -> None:
            self._set_labels(result[0], result[1])

        return Step(
            "adopt-endpoint",
            f"use the endpoint {endpoint_id} (given: it is labelled, and stays after delete)",
            adopt,
            undo=restore,
            kind="endpoint",
            details={"calls": [_call("aiplatform.Endpoint.update", {"labels": mine})]},
            resource=lambda result: f"the labels of the endpoint {result[0]}",
        )

    def _set_labels(self, resource: str, wanted: Mapping[str, str]) -> None:
        aip = self.aip()
        endpoint = self._retrying(lambda: aip.Endpoint(resource), "reading the endpoint")
        self._retrying(lambda: endpoint.update(labels=dict(wanted)), "labelling the endpoint")

    def _deploy_step(
        self,
        gen: Generation,
        config: VertexConfig,
        endpoint_step: str | None,
        view: View | None,
        upload_step: str,
    ) -> Step:
        params = self._deploy_params(gen, config)
        # The first model takes all traffic; a new version beside an old one takes none yet.
        before = dict(view.traffic) if view is not None else {}
        split = {**before, "0": 0} if before else {"0": 100}

        def deploy(done: Mapping[str, Any]) -> str:
            if endpoint_step is not None:
                made = done[endpoint_step]  # adopt-endpoint gives (resource, labels before)
                resource = str(made[0] if isinstance(made, tuple) else made)
            else:
                assert view is not None
                resource = str(view.endpoint.resource_name)
            return self._deploy(gen, config, resource, str(done[upload_step]), params, split)

        def undeploy(deployed_id: str) -> None:
            resource = self._endpoint_resource(gen.name)
            if resource is not None:
                self._undeploy(resource, deployed_id, before)

        machines = f"{params['min_replica_count']}-{params['max_replica_count']}"
        if params["min_replica_count"] == params["max_replica_count"]:
            machines = str(params["min_replica_count"])
        machines = f"{machines} x {params['machine_type']}"
        if "accelerator_type" in params:
            machines += f" with {params['accelerator_count']} x {params['accelerator_type']}"
        return Step(
            "deploy-model",
            f"deploy the new version as {gen.deployed} on {machines}"
            f" ({split['0']} % of the traffic), and wait until it serves (at most "
            f"{config.startup_timeout:g} s)",
            deploy,
            undo=undeploy,
            kind="deployment",
            details={
                "calls": [_call("aiplatform.Model.deploy", {**params, "traffic_split": split})]
            },
            resource=lambda deployed_id: f"the deployed model {deployed_id} ({gen.deployed})",
            remove_with=lambda deployed_id: (
                f"gcloud ai endpoints undeploy-model ENDPOINT --deployed-model-id {deployed_id} "
                f"--region {self.location.region}"
            ),
        )

    def _endpoint_resource(self, name: str) -> str | None:
        found = self._endpoint(name)
        return str(found.resource_name) if found is not None else None

    def _deploy(
        self,
        gen: Generation,
        config: VertexConfig,
        resource: str,
        version: str,
        params: Mapping[str, Any],
        split: Mapping[str, int],
    ) -> str:
        """Deploy model version ``version`` on the endpoint; wait for it; its deployed id."""
        aip = self.aip()
        from google.cloud.aiplatform_v1 import types

        model = self._retrying(
            lambda: aip.Model(model_id(gen.name), version=version), "reading the model"
        )
        spec = types.MachineSpec(machine_type=params["machine_type"])
        if "accelerator_type" in params:
            spec.accelerator_type = params["accelerator_type"]
            spec.accelerator_count = params["accelerator_count"]
        resources = types.DedicatedResources(
            machine_spec=spec,
            min_replica_count=params["min_replica_count"],
            max_replica_count=params["max_replica_count"],
        )
        if "autoscaling_target_cpu_utilization" in params:
            resources.autoscaling_metric_specs = [
                types.AutoscalingMetricSpec(
                    metric_name=CPU_METRIC, target=params["autoscaling_target_cpu_utilization"]
                )
            ]
        deployed = types.DeployedModel(
            model=model.versioned_resource_name,
            display_name=gen.deployed,
            dedicated_resources=resources,
            service_account=params.get("service_account", ""),
        )
        endpoint = self._retrying(lambda: aip.Endpoint(resource), "reading the endpoint")
        doing = f"deploying {gen.deployed} on the endpoint {gen.name}"
        try:
            operation = self._retrying(
                lambda: endpoint.api_client.deploy_model(
                    endpoint=resource, deployed_model=deployed, traffic_split=dict(split)
                ),
                doing,
                idempotent=False,
            )
        except Exception as exc:
            raise self._quota_hint(exc, config, doing) from exc
        try:
            self._wait_operation(operation, f"{gen.deployed} to be deployed on {gen.name}", config)
            result = operation.result()
        except BaseException as exc:
            # The step failed, so its undo will not run: remove a model Vertex deployed anyway.
            undo_after_failure(
                exc,
                lambda: self._undeploy_named(resource, gen.deployed, dict(split)),
                f"the deployed model {gen.deployed} of the endpoint {resource}, remove it with: "
                f"gcloud ai endpoints undeploy-model {resource.rsplit('/', 1)[-1]} "
                f"--deployed-model-id ID --region {self.location.region}",
            )
            hinted = self._quota_hint(exc, config, doing)
            if hinted is exc:
                raise
            raise hinted from exc
        return str(result.deployed_model.id)

    def _wait_operation(self, operation: Any, what: str, config: VertexConfig) -> None:
        """Wait for a long-running operation, with a deadline and heartbeats."""
        name = str(getattr(getattr(operation, "operation", None), "name", "") or "")

        def poll() -> Seen:
            return Seen(done=bool(operation.done()), status=name.rsplit("/", 1)[-1] or None)

        try:
            wait_until(
                poll,
                what=what,
                timeout_s=config.startup_timeout,
                progress=self.progress,
                interval_s=0.5,
                max_interval_s=MAX_POLL_S,
                timeout_hint="raise -C startup_timeout (seconds)",
            )
        except BaseException:
            with contextlib.suppress(Exception):
                operation.cancel()
            raise

    def _quota_hint(self, exc: BaseException, config: VertexConfig, doing: str) -> BaseException:
        """``exc``, or for a quota refusal the error with a hint naming the metric and region."""
        error = exc if isinstance(exc, QuotaExceededError) else VERTEX_ERRORS.translate(exc, doing)
        if not isinstance(error, QuotaExceededError):
            return exc
        metric = quota_metric(message_of(exc)) or quota_metric(str(error))
        if metric is None:
            if config.accelerator_type:
                accelerator = config.accelerator_type.lower().replace("tesla_", "")
                metric = f"aiplatform.googleapis.com/custom_model_serving_{accelerator}_gpus"
            else:
                metric = "aiplatform.googleapis.com/custom_model_serving_cpus"
        asked = config.max_replicas or config.min_replicas or 1
        return QuotaExceededError(
            str(error),
            hint=f"ask for more {metric} quota in {self.location.region} (IAM & Admin > "
            f"Quotas), or ask for less: {asked} x {config.machine_type or DEFAULT_MACHINE_TYPE} "
            "was asked (-C machine_type, -C max_replicas, -C accelerator_count)",
        )

    def _traffic_step(
        self, name: str, split: Mapping[str, int], before: Mapping[str, int] | None, what: str
    ) -> Step:
        """Give the endpoint a new split: percent by deployed model id.

        The key ``new`` stands for the model this rollout's ``deploy-model`` step deployed.
        """

        def route(done: Mapping[str, Any]) -> dict[str, int]:
            wanted = {str(done["deploy-model"]) if k == "new" else k: v for k, v in split.items()}
            try:
                self._set_split(name, wanted)
            except BaseException as exc:
                # Vertex may still apply a change it accepted: put the old split back, as undo
                # would (it does not run for the step that failed).
                if before is not None:
                    undo_after_failure(
                        exc,
                        lambda: self._set_split(name, before),
                        f"the traffic of {name} as it was ({dict(before)}), set it with: "
                        "gcloud ai endpoints update ... --traffic-split",
                    )
                raise
            return wanted

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
                "calls": [_call("aiplatform.Endpoint.update", {"traffic_split": dict(split)})]
            },
        )

    def _set_split(self, name: str, split: Mapping[str, int]) -> None:
        view = self._view(name)
        self._retrying(
            lambda: view.endpoint.update(traffic_split={k: int(v) for k, v in split.items()}),
            f"setting the traffic of {name}",
        )

    # --- removing things --------------------------------------------------------------------

    def _undeploy(self, resource: str, deployed_id: str, traffic: Mapping[str, int]) -> None:
        """Undeploy one model; the others keep ``traffic`` (without it); fine if gone."""
        aip = self.aip()
        endpoint = self._retrying(lambda: aip.Endpoint(resource), "reading the endpoint")
        view = View.of(endpoint)
        if deployed_id not in view.deployed:
            return
        rest = {k: v for k, v in traffic.items() if k != deployed_id and k in view.deployed}
        if rest and sum(rest.values()) != 100:
            rest = {}
        if not rest:
            others = [i for i in view.deployed if i != deployed_id]
            rest = {max(others, key=lambda i: view.traffic.get(i, 0)): 100} if others else {}
        try:
            self._retrying(
                lambda: endpoint.undeploy(deployed_id, traffic_split=rest or None),
                f"undeploying {deployed_id}",
            )
        except Exception as exc:
            if not not_found(exc):
                raise

    def _undeploy_named(self, resource: str, display_name: str, traffic: Mapping[str, int]) -> None:
        aip = self.aip()
        view = View.of(self._retrying(lambda: aip.Endpoint(resource), "reading the endpoint"))
        found = view.by_name(display_name)
        if found is not None:
            self._undeploy(resource, found.id, {k: v for k, v in traffic.items() if k != "0"})

    def _delete_version(self, name: str, version: str, *, parent: bool = True) -> None:
        """Delete one version of the model (the whole model when it is its only one).

        Vertex refuses to delete the default version while others exist: ``default`` moves
        to the newest other version first.
        """
        versions = self._versions(name)
        mine = next((v for v in versions if str(v.version_id) == version), None)
        if mine is None:  # gone already
            return
        others = [v for v in versions if v is not mine]
        if not parent or not others:
            self._delete_model(name)
            return
        registry = self.aip().models.ModelRegistry(model_id(name))
        if DEFAULT_ALIAS in (getattr(mine, "version_aliases", None) or ()):
            newest = max(others, key=lambda v: int(str(v.version_id)))
            self._retrying(
                lambda: registry.add_version_aliases([DEFAULT_ALIAS], str(newest.version_id)),
                "moving the default version",
            )
        try:
            self._retrying(lambda: registry.delete_version(version), f"deleting version {version}")
        except Exception as exc:
            if not not_found(exc):
                raise

    def _delete_model(self, name: str) -> None:
        model = self._model(name)
        if model is None:
            return
        if (model.labels or {}).get(LABEL_TARGET) != TARGET:
            raise DeploymentError(
                f"the model {model_id(name)} was not made by modelport: it is left alone"
            )
        try:
            self._retrying(lambda: model.delete(sync=True), f"deleting the model {model_id(name)}")
        except Exception as exc:
            if not not_found(exc):
                raise

    def _delete_endpoint(self, resource: str) -> None:
        """Undeploy everything and delete the endpoint; fine if gone."""
        aip = self.aip()
        try:
            endpoint = self._retrying(lambda: aip.Endpoint(resource), "reading the endpoint")
        except Exception as exc:
            if not_found(exc):
                return
            raise
        try:
            self._retrying(lambda: endpoint.delete(force=True, sync=True), "deleting the endpoint")
        except Exception as exc:
            if not not_found(exc):
                raise

    def _retire(self, name: str, old: Deployed) -> None:
        """Remove a version that no longer takes traffic: its deployed model and model version."""
        try:
            view = self._view(name)
            self._undeploy(view.endpoint.resource_name, old.id, view.traffic)
            if old.version:
                self._delete_version(name, old.version)
        except Exception as exc:  # the switch is done: say what is left rather than fail
            error = VERTEX_ERRORS.translate(exc, f"removing the old version {old.display_name}")
            self.progress.warn(
                f"{error or exc}; left behind: the deployed model {old.id} ({old.display_name}) "
                f"of {name} and version {old.version} of the model {model_id(name)} (remove "
                f"them with gcloud ai endpoints undeploy-model and gcloud ai models "
                "delete-version)"
            )

    # --- records ----------------------------------------------------------------------------

    def _model_facts(self, name: str, deployed: Deployed) -> Facts:
        """What the labels of a deployed model's version say (its package, its provenance)."""
        model = self._model(name, deployed.version or None)
        if model is None:
            return Facts()
        return read_labels(Platform.GCP, model.labels or {})

    def _record(self, name: str, view: View, *, updating: bool = False) -> Deployment:
        primary = view.primary()
        candidate = view.candidate()
        facts = {i: self._model_facts(name, d) for i, d in view.ours.items()}
        digests = {i: f.package_digest for i, f in facts.items()}
        endpoint = view.endpoint
        resource = str(endpoint.resource_name)
        location = self.location
        described = {
            d.display_name: {
                "deployed_model_id": i,
                "model_version": d.version,
                "package_digest": digests.get(i),
                "traffic": view.traffic.get(i, 0),
                "machine_type": d.machine_type,
                "min_replicas": d.min_replicas,
                "max_replicas": d.max_replicas,
                "accelerator_type": d.accelerator_type,
                "accelerator_count": d.accelerator_count,
                "cpu_target_percent": d.cpu_target_percent,
                **provenance_details(facts.get(i)),
            }
            for i, d in sorted(view.ours.items())
        }
        endpoint_id = resource.rsplit("/", 1)[-1]
        details: dict[str, Any] = {
            "project": location.project,
            "region": location.region,
            "endpoint_id": endpoint_id,
            "endpoint": resource,
            "model": model_id(name),
            "deployment": primary.display_name if primary else None,
            "deployed_model_id": primary.id if primary else None,
            "traffic": {
                view.deployed[i].display_name: p
                for i, p in view.traffic.items()
                if i in view.deployed
            },
            "traffic_split": dict(view.traffic),
            "deployed_models": described,
            "reused_endpoint": (endpoint.labels or {}).get(LABEL_REUSED) == "true",
            "logs": log_filter(endpoint_id, location.region),
        }
        if primary is not None:
            details.update(provenance_details(facts.get(primary.id)))
        if view.foreign:
            details["other_deployed_models"] = [d.id for d in view.foreign]
        if candidate is not None:
            details["candidate"] = {
                "deployment": candidate.display_name,
                "deployed_model_id": candidate.id,
                "kind": "canary",
                "percent": view.traffic.get(candidate.id, 0),
                "package_digest": digests.get(candidate.id),
            }
        job = background.last(default_home(), TARGET, name)
        if job is not None:
            details["update_job"] = job.to_dict()
            updating = updating or job.status == "running"
        if primary is None:
            status = DeploymentStatus.STARTING
        elif view.traffic.get(primary.id) or candidate is not None:
            status = DeploymentStatus.UPDATING if updating else DeploymentStatus.READY
        else:
            status = DeploymentStatus.FAILED
        created = _time(getattr(endpoint, "create_time", None)) or utcnow()
        updated = (primary.created if primary else None) or created
        return Deployment(
            name=name,
            target=TARGET,
            status=status,
            endpoint=f"{self.google.api_host}/v1/{resource}:predict",
            package_digest=(digests.get(primary.id) if primary else None) or "",
            created_at=created,
            updated_at=max(updated, created),
            details=details,
        )

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
            details={"project": self.location.project, "create_job": dict(job)},
        )

    # --- the verbs --------------------------------------------------------------------------

    @VERTEX_ERRORS.translated("planning a vertex deployment")
    @quiet
    def create_steps(
        self, name: str, package: Package, *, wait: bool = True
    ) -> builtins.list[Step]:
        """Image, model upload, endpoint, deployment with all traffic.

        Building them reads (the model's versions) and changes nothing.
        """
        versions = self._versions(name)
        gen = Generation(name, self._next_generation(None, versions))
        image = self._image_step(package, self.config)
        upload = self._upload_step(gen, package, self.config, image.name, parent=bool(versions))
        endpoint = self._endpoint_step(name)
        deploy = self._deploy_step(gen, self.config, endpoint.name, None, upload.name)
        return [image, upload, endpoint, deploy]

    @VERTEX_ERRORS.translated("creating a vertex deployment")
    @quiet
    def create(self, name: str, package: Package, *, wait: bool = True) -> Deployment:
        """Make the deployment ``name`` serving ``package`` (see the module's docstring).

        With ``wait=False`` the same create runs in a background job, and the record returned
        says ``starting`` (``get`` says so too until the endpoint exists).
        """
        self.check_name(name)
        if self._endpoint(name) is not None:
            raise DeploymentExists(
                f"a vertex deployment named {name!r} exists in {self.location.project}/"
                f"{self.location.region}"
            )
        if not wait:
            job = background.start(self, "create", name, package, home=default_home())
            return self._starting(name, package.digest, job.to_dict())
        background.refuse_if_busy(default_home(), TARGET, name)
        self.rollout("create", self.create_steps(name, package)).run()
        return self._record(name, self._view(name))

    def _settings_for_update(self, name: str, primary: Deployed) -> VertexConfig:
        """The options, with the machine settings of the version serving now kept.

        Without ``-C image`` or ``-C registry``, the registry and repository too, when modelport
        built the serving image (``REGISTRY/REPOSITORY-model@...``).
        """
        kept: dict[str, Any] = {}
        config = self.config
        if not (config.image or config.registry):
            kept.update(self._image_settings(name, primary))
        if config.machine_type is None and primary.machine_type:
            kept["machine_type"] = primary.machine_type
        if config.min_replicas is None and primary.min_replicas:
            kept["min_replicas"] = primary.min_replicas
            if config.max_replicas is None and primary.max_replicas:
                kept["max_replicas"] = primary.max_replicas
        if config.accelerator_type is None and primary.accelerator_type:
            kept["accelerator_type"] = primary.accelerator_type
            kept["accelerator_count"] = primary.accelerator_count
        if config.service_account is None and primary.service_account:
            kept["service_account"] = primary.service_account
        if config.cpu_target_percent is None and primary.cpu_target_percent:
            kept["cpu_target_percent"] = primary.cpu_target_percent
        try:
            return dataclasses.replace(config, **kept)
        except ValueError as exc:
            raise ConfigError(
                [f"{exc} (with the settings {primary.display_name} has now)"], TARGET
            ) from None

    def _image_settings(self, name: str, primary: Deployed) -> dict[str, str]:
        """``{registry, repository}`` of the serving version's image, when modelport built it."""
        from modelport.deployers.kit.images import registry_of

        model = self._model(name, primary.version or None)
        spec = getattr(getattr(model, "gca_resource", None), "container_spec", None)
        image = str(getattr(spec, "image_uri", "") or "")
        registry = registry_of(image) if image else ""
        path = image[len(registry) + 1 :].split("@", maxsplit=1)[0].rsplit(":", 1)[0]
        if registry and image.startswith(f"{registry}/") and path.endswith("-model"):
            return {"registry": registry, "repository": path.removesuffix("-model")}
        return {}

    @VERTEX_ERRORS.translated("updating a vertex deployment")
    @quiet
    def update(self, name: str, package: Package, *, wait: bool = True) -> Deployment:
        """A new model version deployed beside the old one, then all traffic or a canary to it.

        With ``wait=False`` the same update runs in a background job and the record returned
        says ``updating``.
        """
        self.check_name(name)
        view = self._view(name)
        current = self._record(name, view)
        candidate = current.details.get("candidate")
        if current.package_digest == package.digest:
            return current
        if candidate:
            if candidate.get("package_digest") == package.digest:
                return current
            raise ConflictError(
                f"{name} has a canary in progress ({candidate['deployment']}, "
                f"{candidate['percent']} %)",
                hint=f"finish it first: modelport deployments promote -t vertex {name}, or "
                f"modelport deployments rollback -t vertex {name}",
            )
        if not wait:
            job = background.start(self, "update", name, package, home=default_home())
            record = self._record(name, view, updating=True)
            return dataclasses.replace(
                record, details={**record.details, "update_job": job.to_dict()}
            )
        background.refuse_if_busy(default_home(), TARGET, name)
        primary = view.primary()
        if primary is None or not view.traffic.get(primary.id):
            raise DeploymentError(
                f"the deployment {name} is {current.status.value}: it can be updated only when "
                "it serves",
                hint="wait for it (modelport deployments get), or delete and deploy again",
            )
        settings = self._settings_for_update(name, primary)
        versions = self._versions(name)
        gen = Generation(name, self._next_generation(view, versions))
        before = dict(view.traffic)
        if settings.canary_percent:
            share = settings.canary_percent
            after = {primary.id: 100 - share, "new": share}
            what = f"send {share} % of the traffic of {name} to {gen.deployed} (a canary)"
        else:
            after = {"new": 100}
            what = f"send all traffic of {name} to {gen.deployed}"
        image = self._image_step(package, settings)
        upload = self._upload_step(gen, package, settings, image.name, parent=bool(versions))
        steps = [
            image,
            upload,
            self._deploy_step(gen, settings, None, view, upload.name),
            self._traffic_step(name, after, before, what),
        ]
        self.rollout("update", steps).run()
        if not settings.canary_percent:
            self._retire(name, primary)
        else:
            self.progress(
                f"{gen.deployed} takes its share; finish with 'modelport deployments promote' "
                "or 'modelport deployments rollback'"
            )
        return self._record(name, self._view(name))

    def _canary(self, name: str) -> tuple[View, Deployed, Deployed]:
        view = self._view(name)
        primary, candidate = view.primary(), view.candidate()
        if primary is None or candidate is None:
            raise UsageError(
                f"{name} has no canary in progress: nothing to promote or roll back",
                hint="start one with modelport deployments update -C canary_percent=10",
            )
        return view, primary, candidate

    @VERTEX_ERRORS.translated("promoting a vertex deployment")
    @quiet
    def promote(self, name: str) -> Deployment:
        """All traffic to the canary, which becomes the default version; the old one goes."""
        self.check_name(name)
        view, primary, candidate = self._canary(name)

        def make_default(_: Mapping[str, Any]) -> str:
            registry = self.aip().models.ModelRegistry(model_id(name))
            self._retrying(
                lambda: registry.add_version_aliases([DEFAULT_ALIAS], candidate.version),
                "making the canary the default version",
            )
            return candidate.version

        self.rollout(
            "promote",
            [
                self._traffic_step(
                    name,
                    {candidate.id: 100},
                    dict(view.traffic),
                    f"send all traffic of {name} to {candidate.display_name}",
                ),
                Step(
                    "default-version",
                    f"make version {candidate.version} the default version of {model_id(name)}",
                    make_default,
                    kind="model",
                    details={
                        "calls": [
                            _call(
                                "aiplatform.models.ModelRegistry.add_version_aliases",
                                {"new_aliases": [DEFAULT_ALIAS], "version": candidate.version},
                            )
                        ]
                    },
                ),
            ],
        ).run()
        self._retire(name, primary)
        return self._record(name, self._view(name))

    @VERTEX_ERRORS.translated("rolling back a vertex deployment")
    @quiet
    def rollback(self, name: str) -> Deployment:
        """All traffic back to the old version, then the canary is removed."""
        self.check_name(name)
        view, primary, candidate = self._canary(name)
        self.rollout(
            "rollback",
            [
                self._traffic_step(
                    name,
                    {primary.id: 100},
                    dict(view.traffic),
                    f"send all traffic of {name} back to {primary.display_name}",
                )
            ],
        ).run()
        self._retire(name, candidate)
        return self._record(name, self._view(name))

    @VERTEX_ERRORS.translated("deleting a vertex deployment")
    @quiet
    def delete(self, name: str) -> None:
        """Undeploy every model, delete the endpoint (unless given) and the model's versions."""
        self.check_name(name)
        background.cancel(default_home(), TARGET, name, timeout=self.config.startup_timeout)
        found = self._endpoint(name)
        if found is not None:
            view = View.of(found)
            resource = str(found.resource_name)
            if (found.labels or {}).get(LABEL_REUSED) == "true":
                for deployed in sorted(view.ours.values(), key=lambda d: view.traffic.get(d.id, 0)):
                    self._undeploy(resource, deployed.id, self._refresh(view).traffic)
                theirs = {
                    k: v
                    for k, v in (found.labels or {}).items()
                    if not k.startswith(DEPLOYED_BASE + "-")
                }
                self._set_labels(resource, theirs)
            else:
                if view.foreign:
                    raise DeploymentError(
                        f"the endpoint of {name} also serves models modelport did not deploy "
                        f"({', '.join(d.id for d in view.foreign)}): it is left alone",
                        hint="undeploy them first (gcloud ai endpoints undeploy-model)",
                    )
                self._delete_endpoint(resource)
        self._delete_model(name)

    @VERTEX_ERRORS.translated("reading a vertex deployment")
    @quiet
    def get(self, name: str) -> Deployment:
        """The endpoint's state, deployed models, traffic split and package digest."""
        self.check_name(name)
        found = self._endpoint(name)
        if found is None:
            job = background.last(default_home(), TARGET, name)
            if job is not None and job.verb == "create" and job.status == "running":
                return self._starting(name, job.package_digest, job.to_dict())
            raise DeploymentNotFound(
                f"no vertex deployment named {name!r} in {self.location.project}/"
                f"{self.location.region}"
            )
        return self._record(name, View.of(found))

    @VERTEX_ERRORS.translated("listing the vertex deployments")
    @quiet
    def list(self) -> Sequence[Deployment]:
        """Every endpoint of the project and region that modelport made (by label), by name."""
        aip = self.aip()
        wanted = f'labels.{LABEL_TARGET}="{TARGET}"'
        found = self._retrying(
            lambda: builtins.list(aip.Endpoint.list(filter=wanted)), "listing the endpoints"
        )
        result = []
        for endpoint in found:
            labels_found = endpoint.labels or {}
            name = labels_found.get(LABEL_DEPLOYMENT)
            if labels_found.get(LABEL_TARGET) != TARGET or not name:
                continue
            with contextlib.suppress(UsageError):
                self.check_name(name)
                result.append(self._record(name, View.of(endpoint)))
        return sorted(result, key=lambda d: d.name)

    @VERTEX_ERRORS.translated("asking a vertex deployment")
    @quiet
    def predict(self, name: str, payload: Mapping[str, Any]) -> dict[str, Any]:
        """``Endpoint.predict`` with the payload's rows as ``instances`` (and ``parameters``)."""
        self.check_name(name)
        instances, parameters = vertex_request(payload)
        view = self._view(name)
        where = f"vertex deployment {name!r}"
        if not view.traffic:
            raise DeploymentError(f"{where} has no model taking traffic: is it ready?")
        try:
            answer = self._retrying(
                lambda: view.endpoint.predict(instances=instances, parameters=parameters),
                f"asking {name}",
            )
        except Exception as exc:
            raise _predict_error(where, exc) from None
        # The SDK gives them as plain JSON values already (MessageToDict per row).
        return {"predictions": list(answer.predictions)}

    def _log_lines(self, endpoint_id: str, tail: int | None) -> builtins.list[str]:
        location = self.location
        body: dict[str, Any] = {
            "resourceNames": [f"projects/{location.project}"],
            "filter": log_filter(endpoint_id, location.region),
            "orderBy": "timestamp desc",
            "pageSize": min(tail or MAX_LOG_PAGE, MAX_LOG_PAGE),
        }
        session = self.google.session()
        url = f"{self.google.logging_host}/v2/entries:list"
        lines: builtins.list[str] = []
        while True:
            response = self._retrying(
                lambda: _logging_answer(session.post(url, json=body, timeout=60)),
                "reading the logs",
            )
            for entry in response.get("entries") or []:
                text = entry.get("textPayload")
                if text is None:
                    payload = entry.get("jsonPayload") or {}
                    text = payload.get("message") if isinstance(payload, Mapping) else None
                if text is None:
                    text = json.dumps(entry.get("jsonPayload") or entry.get("protoPayload") or {})
                lines.extend(str(text).splitlines() or [""])
            token = response.get("nextPageToken")
            if not token or (tail is not None and len(lines) >= tail):
                break
            body["pageToken"] = token
        lines = lines[:tail] if tail is not None else lines
        return builtins.list(reversed(lines))

    @VERTEX_ERRORS.translated("reading the logs of a vertex deployment")
    @quiet
    def logs(self, name: str, *, tail: int | None = 100) -> Iterator[str]:
        """The endpoint's container logs, from Cloud Logging, oldest first."""
        self.check_name(name)
        view = self._view(name)
        if tail is not None and tail <= 0:
            return iter(())
        endpoint_id = str(view.endpoint.resource_name).rsplit("/", 1)[-1]
        where = log_filter(endpoint_id, self.location.region)
        self.progress(f"the logs are in Cloud Logging: {where}")
        try:
            return iter(self._log_lines(endpoint_id, tail))
        except Exception as exc:
            error = VERTEX_ERRORS.translate(exc, "reading the logs from Cloud Logging")
            if error is None:
                raise
            raise type(error)(
                str(error),
                hint=f"{error.hint + '; ' if error.hint else ''}read them with: gcloud logging "
                f"read '{where}' --project {self.location.project}",
            ) from exc


def log_filter(endpoint_id: str, region: str) -> str:
    """The Cloud Logging filter of an endpoint's container logs."""
    return (
        'resource.type="aiplatform.googleapis.com/Endpoint" AND '
        f'resource.labels.endpoint_id="{endpoint_id}" AND resource.labels.location="{region}"'
    )


def _logging_answer(response: Any) -> dict[str, Any]:
    """The JSON of a Cloud Logging answer; Google's error for anything else."""
    if int(response.status_code) >= 400:
        from google.api_core import exceptions

        raise exceptions.from_http_response(response)  # type: ignore[no-untyped-call]
    found = response.json()
    return found if isinstance(found, dict) else {}


def vertex_request(payload: Mapping[str, Any]) -> tuple[builtins.list[Any], Any]:
    """The ``instances`` and ``parameters`` Vertex takes for a modelport payload.

    ``instances`` go as they are; ``inputs`` (one column per input, or a single input's rows)
    become rows.

    Raises:
        InputError: the payload is in no form Vertex takes.
    """
    if "instances" in payload:
        instances = payload["instances"]
        if not isinstance(instances, builtins.list):
            raise InputError("'instances' must be a list of rows: Vertex sends a list")
        return instances, payload.get("parameters")
    if "inputs" in payload:
        inputs = payload["inputs"]
        parameters = payload.get("parameters") or payload.get("params")
        if isinstance(inputs, builtins.list):
            return inputs, parameters
        if isinstance(inputs, Mapping):
            columns = {str(k): v for k, v in inputs.items()}
            if not columns or not all(isinstance(v, builtins.list) for v in columns.values()):
                raise InputError("'inputs' must map each input to a list of rows")
            lengths = {len(v) for v in columns.values()}
            if len(lengths) != 1:
                raise InputError("'inputs': every input must have the same number of rows")
            rows = lengths.pop()
            return [{k: v[i] for k, v in columns.items()} for i in range(rows)], parameters
        raise InputError("'inputs' must be an object of input name to rows, or a list of rows")
    raise InputError(
        "the vertex target sends 'instances' (rows) or 'inputs' (columns by input)",
        hint='give {"instances": [...]} or {"inputs": {"NAME": [...]}}',
    )


def _predict_error(where: str, exc: BaseException) -> BaseException:
    """What a failed ``Endpoint.predict`` means, as modelport's error."""
    status = status_of(exc)
    message = message_of(exc)
    if status == 400 and "FAILED_PRECONDITION" not in str(exc):
        return InputError(f"{where} refused the input: {message}")
    if status == 500:
        return ModelError(f"{where}: the model failed: {message}")
    if status in (401, 403):
        return PermissionDeniedError(
            f"{where} refused the credentials (HTTP {status}): {message}",
            hint="the caller needs aiplatform.endpoints.predict (roles/aiplatform.user)",
        )
    if status == 429:
        return ThrottledError(
            f"{where} is busy (HTTP 429): {message}",
            hint="send fewer requests at once, or raise -C max_replicas",
        )
    if status in (502, 503, 504):
        return TargetUnavailableError(f"{where} is unavailable (HTTP {status}): {message}")
    translated = VERTEX_ERRORS.translate(exc, f"asking {where}")
    if translated is not None:
        return translated
    return DeploymentError(f"{where} failed: {message}")
