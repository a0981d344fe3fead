"""azure-ai-ml for the ``azureml`` target: the cloud, the credential, the clients, Azure's errors.

azure-ai-ml and azure-identity are imported here and in this folder only (the
``modelport[azureml]`` extra). A cloud is one azure-ai-ml knows by name (``-C cloud``) or any
Resource Manager (``-C resource_manager_url``), whose other endpoints come from its
``/metadata/endpoints`` document, as ``az cloud register`` reads them. Every request goes
through azure-core, whose retry policy honours ``Retry-After`` on 429 and 503; the few requests
azure-ai-ml has no operation for (deleting a version, scoring) go through the same pipeline.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import ssl
import sys
import urllib.request
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from modelport import __version__
from modelport.deployers.azureml.config import AzureMLConfig, Workspace
from modelport.deployers.kit.errors import Classified, ErrorMap, Kind, kind_for_status
from modelport.deployers.kit.progress import quiet as progress_quiet
from modelport.deployers.kit.progress import silence_loggers
from modelport.errors import MissingDependencyError, UsageError

TARGET = "azureml"
#: The api-version of the ARM requests modelport sends itself (what azure-ai-ml 1.35 uses).
ARM_API_VERSION = "2024-04-01"
METADATA_API_VERSION = "2022-09-01"
#: How often azure-core retries a throttled or failing ARM call (it honours Retry-After).
ARM_RETRIES = 8
#: A prediction is not idempotent: asked again only when throttled or unavailable.
SCORING_RETRIES = 2
#: Azure ML answers a scoring request within 180 s at most (request_timeout_ms).
SCORING_READ_TIMEOUT_S = 190
WORKSPACES = "providers/Microsoft.MachineLearningServices/workspaces"
#: Where azure-ai-ml keeps the name of the current cloud (in os.environ).
CLOUD_ENV = "AZUREML_CURRENT_CLOUD"


@dataclass(frozen=True)
class Cloud:
    """The endpoints of one Azure cloud, as azure-ai-ml's ``cloud_metadata`` names them.

    Attributes:
        name: azure-ai-ml's name for it (a made-up one for a cloud it does not know).
        resource_manager: the Resource Manager URL, ending in ``/``.
        active_directory: the login endpoint credentials get tokens from.
        storage_endpoint: the storage suffix (``core.windows.net``).
        portal: the portal's URL.
        aml_resource_id: the audience of tokens for endpoints (``aad_token``).
        registry_discovery: azure-ai-ml's registry discovery endpoint.
        known: azure-ai-ml knows it by name (no metadata is passed).
    """

    name: str
    resource_manager: str
    active_directory: str
    storage_endpoint: str
    portal: str
    aml_resource_id: str
    registry_discovery: str
    known: bool = True

    @property
    def arm_scope(self) -> str:
        """The scope of tokens for Resource Manager."""
        return f"{self.resource_manager}.default"

    @property
    def scoring_scope(self) -> str:
        """The scope of tokens for an ``aad_token`` endpoint."""
        return f"{self.aml_resource_id.rstrip('/')}/.default"

    def metadata(self) -> dict[str, str]:
        """azure-ai-ml's ``cloud_metadata`` for a cloud it does not know."""
        return {
            "azure_portal": self.portal,
            "resource_manager": self.resource_manager,
            "active_directory": self.active_directory,
            "aml_resource_id": self.aml_resource_id,
            "storage_endpoint": self.storage_endpoint,
            "registry_discovery_endpoint": self.registry_discovery,
        }


#: What azure-ai-ml's own table says of the clouds it knows (for plans and tokens).
KNOWN_CLOUDS = {
    "AzureCloud": Cloud(
        "AzureCloud",
        "https://management.azure.com/",
        "https://login.microsoftonline.com/",
        "core.windows.net",
        "https://ml.azure.com/",
        "https://ml.azure.com/",
        "https://eastus.api.azureml.ms/",
    ),
    "AzureChinaCloud": Cloud(
        "AzureChinaCloud",
        "https://management.chinacloudapi.cn/",
        "https://login.chinacloudapi.cn/",
        "core.chinacloudapi.cn",
        "https://studio.ml.azure.cn/",
        "https://ml.azure.cn/",
        "https://chinaeast2.api.ml.azure.cn/",
    ),
    "AzureUSGovernment": Cloud(
        "AzureUSGovernment",
        "https://management.usgovcloudapi.net/",
        "https://login.microsoftonline.us/",
        "core.usgovcloudapi.net",
        "https://ml.azure.us/",
        "https://ml.azure.us/",
        "https://usgovarizona.api.ml.azure.us/",
    ),
}


def _import_error(exc: ImportError) -> MissingDependencyError:
    return MissingDependencyError("the azureml target", "azureml", exc.name or "azure-ai-ml")


def _forget_inherited_cloud() -> None:
    """Drop an ``AZUREML_CURRENT_CLOUD`` this process cannot know, before azure-ai-ml loads.

    azure-ai-ml sets it in ``os.environ`` when a client is made for a cloud it did not know
    (the custom clouds here), so child processes inherit the name; and it reads it while its
    modules load, where a name it does not know fails the import ("Unknown cloud
    environment"). modelport always names its cloud, so it never needs the inherited one.
    """
    found = os.environ.get(CLOUD_ENV)
    if found and found not in KNOWN_CLOUDS and "azure.ai.ml" not in sys.modules:
        del os.environ[CLOUD_ENV]


#: Where azure-ai-ml's loggers live.
SDK_LOGGERS = "azure.ai.ml"
#: Its pollers print a dot per poll on stdout whatever ``show_progress`` says, and its INFO
#: lines say "Check: endpoint ... exists": a verb runs with both kept off stdout.
quiet = progress_quiet(SDK_LOGGERS)


def _silence_sdk_loggers() -> None:
    silence_loggers(SDK_LOGGERS)


def entities() -> Any:
    """``azure.ai.ml.entities``, loaded safely (:func:`_forget_inherited_cloud` first)."""
    _forget_inherited_cloud()
    try:
        from azure.ai.ml import entities as module
    except ImportError as exc:
        raise _import_error(exc) from None
    _silence_sdk_loggers()
    return module


def ssl_context(ca_bundle: Path | None) -> ssl.SSLContext:
    """The TLS context of modelport's own requests.

    It trusts ``ca_bundle``, else ``$REQUESTS_CA_BUNDLE`` (what azure-core's requests transport
    trusts), else the system's CAs.
    """
    cafile = str(ca_bundle) if ca_bundle else os.environ.get("REQUESTS_CA_BUNDLE") or None
    return ssl.create_default_context(cafile=cafile)


def cloud_from_metadata(resource_manager_url: str, ca_bundle: Path | None) -> Cloud:
    """A cloud's endpoints, read from its Resource Manager's ``/metadata/endpoints``.

    Raises:
        UsageError: the document cannot be read or lacks the endpoints.
    """
    base = resource_manager_url.rstrip("/") + "/"
    url = f"{base}metadata/endpoints?api-version={METADATA_API_VERSION}"
    opener = urllib.request.build_opener(
        urllib.request.ProxyHandler(), urllib.request.HTTPSHandler(context=ssl_context(ca_bundle))
    )
    try:
        with opener.open(url, timeout=30) as response:
            document: Any = json.loads(response.read())
    except (OSError, ValueError) as exc:
        raise UsageError(
            f"cannot read the cloud's endpoints from {url}: {exc}",
            hint="check -C resource_manager_url (and -C ca_bundle for a private CA)",
        ) from None
    if isinstance(document, list):  # api-versions before 2022 answer a list of clouds
        matches = [c for c in document if _same_url(c.get("resourceManager"), base)]
        document = matches[0] if matches else (document[0] if document else {})
    try:
        login = str(document["authentication"]["loginEndpoint"])
        storage = str(document["suffixes"]["storage"])
    except (KeyError, TypeError):
        raise UsageError(
            f"{url} is not a cloud metadata document (no authentication.loginEndpoint or "
            "suffixes.storage)",
            hint="-C resource_manager_url must be the Resource Manager URL of the cloud",
        ) from None
    # A name azure-ai-ml can keep in its table, one per Resource Manager.
    name = "modelport-" + hashlib.sha256(base.encode()).hexdigest()[:12]
    return Cloud(
        name=name,
        resource_manager=base,
        active_directory=login.rstrip("/") + "/",
        storage_endpoint=storage,
        portal=str(document.get("portal") or base),
        aml_resource_id="https://ml.azure.com/",
        registry_discovery=base,
        known=False,
    )


def _same_url(found: Any, base: str) -> bool:
    return str(found or "").rstrip("/") + "/" == base


def resolve_cloud(config: AzureMLConfig) -> Cloud:
    """The cloud the options name."""
    if config.resource_manager_url:
        return cloud_from_metadata(config.resource_manager_url, config.ca_bundle)
    return KNOWN_CLOUDS[config.cloud]


def make_credential(config: AzureMLConfig, cloud: Cloud) -> Any:
    """The azure-identity credential ``-C credential`` names, pointed at the cloud's login."""
    try:
        from azure import identity
    except ImportError as exc:
        raise _import_error(exc) from None
    authority = cloud.active_directory
    # A private cloud's login trusts the same CA as its Resource Manager.
    tls: dict[str, Any] = {"connection_verify": str(config.ca_bundle)} if config.ca_bundle else {}
    kind = config.credential
    if kind == "cli":
        return identity.AzureCliCredential()
    if kind == "environment":
        return identity.EnvironmentCredential(authority=authority, **tls)
    if kind == "managed_identity":
        return identity.ManagedIdentityCredential(client_id=config.client_id, **tls)
    if kind == "workload_identity":
        return identity.WorkloadIdentityCredential(authority=authority, **tls)
    return identity.DefaultAzureCredential(
        authority=authority, managed_identity_client_id=config.client_id, **tls
    )


class Azure:
    """One workspace's clients: azure-ai-ml's ``MLClient`` and a plain ARM pipeline.

    Made on first use, so options are checked, and ``--dry-run`` plans, without any request.
    """

    def __init__(self, config: AzureMLConfig, workspace: Workspace) -> None:
        self.config = config
        self.workspace = workspace
        self._cloud: Cloud | None = None
        self._credential: Any = None
        self._ml: Any = None
        self._arm: Any = None

    @property
    def cloud(self) -> Cloud:
        """The cloud (its metadata is read once, for a custom one)."""
        if self._cloud is None:
            self._cloud = resolve_cloud(self.config)
        return self._cloud

    @property
    def credential(self) -> Any:
        """The azure-identity credential."""
        if self._credential is None:
            self._credential = make_credential(self.config, self.cloud)
        return self._credential

    def _transport_options(self) -> dict[str, Any]:
        if self.config.ca_bundle:
            return {"connection_verify": str(self.config.ca_bundle)}
        return {}

    @property
    def ml(self) -> Any:
        """azure-ai-ml's ``MLClient`` for the workspace."""
        if self._ml is None:
            _forget_inherited_cloud()
            try:
                from azure.ai.ml import MLClient
            except ImportError as exc:
                raise _import_error(exc) from None
            cloud = self.cloud
            options: dict[str, Any] = {
                "cloud": cloud.name,
                "show_progress": False,
                "enable_telemetry": False,
            }
            if not cloud.known:
                options["cloud_metadata"] = cloud.metadata()
            options.update(self._transport_options())
            options["retry_total"] = ARM_RETRIES
            # cloud= always: azure-ai-ml otherwise reads AZUREML_CURRENT_CLOUD, which it sets
            # in os.environ for whichever client was made last (and children inherit).
            self._ml = MLClient(
                self.credential,
                self.workspace.subscription_id,
                self.workspace.resource_group,
                self.workspace.name,
                **options,
            )
            _silence_sdk_loggers()
        return self._ml

    def pipeline(self, *, bearer_scope: str | None, retries: int) -> Any:
        """An azure-core pipeline to send requests azure-ai-ml has no operation for.

        With a ``bearer_scope`` (ARM), azure-core's usual retries; without one (scoring), only
        429 and 503 are asked again (after their ``Retry-After``): a prediction is not
        idempotent, and a model's 500 would only fail again.
        """
        try:
            from azure.core import PipelineClient
            from azure.core.pipeline import policies
            from azure.core.pipeline.transport import RequestsTransport
        except ImportError as exc:
            raise _import_error(exc) from None
        retry: Any = (
            policies.RetryPolicy(retry_total=retries, retry_backoff_factor=0.5)
            if bearer_scope
            else _throttling_retry(retries)
        )
        chain: list[Any] = [
            policies.HeadersPolicy(),
            policies.UserAgentPolicy(f"modelport/{__version__}"),
            retry,
        ]
        if bearer_scope:
            chain.append(policies.BearerTokenCredentialPolicy(self.credential, bearer_scope))
        transport = RequestsTransport(
            connection_verify=str(self.config.ca_bundle) if self.config.ca_bundle else True,
            read_timeout=SCORING_READ_TIMEOUT_S,
        )
        return PipelineClient(self.cloud.resource_manager, policies=chain, transport=transport)

    @contextlib.contextmanager
    def storage_trust(self) -> Iterator[None]:
        """Let azure-storage-blob (the model upload) trust ``ca_bundle`` too, for the block.

        azure-ai-ml makes its storage clients itself, without the MLClient's TLS options; their
        requests transport trusts ``$REQUESTS_CA_BUNDLE``, so that names ``ca_bundle`` while
        they run, and is put back after.
        """
        if not self.config.ca_bundle:
            yield
            return
        saved = os.environ.get("REQUESTS_CA_BUNDLE")
        os.environ["REQUESTS_CA_BUNDLE"] = str(self.config.ca_bundle)
        try:
            yield
        finally:
            if saved is None:
                os.environ.pop("REQUESTS_CA_BUNDLE", None)
            else:
                os.environ["REQUESTS_CA_BUNDLE"] = saved

    def workspace_path(self, *parts: str) -> str:
        """The ARM path of something in the workspace."""
        ws = self.workspace
        base = (
            f"subscriptions/{ws.subscription_id}/resourceGroups/{ws.resource_group}/"
            f"{WORKSPACES}/{ws.name}"
        )
        return "/".join([base, *parts])

    def arm(self, method: str, *parts: str) -> tuple[int, Any]:
        """One ARM request on a workspace path; returns (status, JSON body or None)."""
        from azure.core.rest import HttpRequest

        if self._arm is None:
            self._arm = self.pipeline(bearer_scope=self.cloud.arm_scope, retries=ARM_RETRIES)
        url = self.cloud.resource_manager + self.workspace_path(*parts)
        request = HttpRequest(method, url, params={"api-version": ARM_API_VERSION})
        response = self._arm.send_request(request)
        try:
            body = response.json() if response.text() else None
        except ValueError:
            body = None
        if response.status_code >= 400 and response.status_code != 404:
            from azure.core.exceptions import HttpResponseError

            response.read()
            raise HttpResponseError(response=response)
        return response.status_code, body


def _throttling_retry(retries: int) -> Any:
    """An azure-core retry policy that retries 429 and 503 answers only."""
    from azure.core.pipeline.policies import RetryPolicy

    class ThrottlingRetry(RetryPolicy):  # type: ignore[type-arg]
        def is_retry(self, settings: Any, response: Any) -> bool:
            if response.http_response.status_code not in (429, 503):
                return False
            return bool(super().is_retry(settings, response))

    return ThrottlingRetry(
        retry_total=retries, retry_backoff_factor=0.5, retry_on_status_codes=[429, 503]
    )


# --- errors ----------------------------------------------------------------------------------

_AUTHZ = re.compile(
    r"does not have authorization to perform action '(?P<action>[^']+)' over scope "
    r"'(?P<scope>[^']+)'"
)
_QUOTA_CODES = {"QuotaExceeded", "OutOfQuota", "InsufficientQuota", "SkuNotAvailable"}
_CONFLICT_CODES = {
    "Conflict",
    "ResourceExists",
    "ResourceAlreadyExists",
    "AnotherOperationInProgress",
    "EndpointAlreadyExists",
}


def error_code(exc: BaseException) -> str | None:
    """Azure's error code of an azure-core exception (``ResourceNotFound``, ...), if any."""
    error = getattr(exc, "error", None)
    code = getattr(error, "code", None)
    if code:
        return str(code)
    match = re.match(r"^\((\w+)\)", str(getattr(exc, "message", "") or exc))
    return match.group(1) if match else None


def status_of(exc: BaseException) -> int | None:
    """The HTTP status of an azure-core exception, if it carries one."""
    status = getattr(exc, "status_code", None)
    if status is None:
        status = getattr(getattr(exc, "response", None), "status_code", None)
    return int(status) if isinstance(status, int) else None


def not_found(exc: BaseException) -> bool:
    """The exception says the resource does not exist."""
    from azure.core.exceptions import ResourceNotFoundError

    return (
        isinstance(exc, ResourceNotFoundError)
        or status_of(exc) == 404
        or (
            error_code(exc) in ("ResourceNotFound", "NotFound", "UserError")
            and "not found" in str(exc).lower()
        )
    )


_WORKSPACE_PART = re.compile(r"/workspaces/[^/]+/(?P<rest>[^?]+)")


def _resource_of(exc: BaseException) -> str | None:
    """What a failed ARM request was about, from its URL (``onlineEndpoints/churn``)."""
    request = getattr(getattr(exc, "response", None), "request", None)
    match = _WORKSPACE_PART.search(str(getattr(request, "url", "") or ""))
    return match["rest"].rstrip("/") if match else None


def _detail(exc: BaseException) -> str:
    message = str(getattr(exc, "message", "") or exc).strip()
    # azure-core appends the whole response ("Content: {...}"): the first lines say it all.
    for marker in ("\nCode:", "\nContent:", "\nAdditional Information:"):
        message = message.split(marker)[0]
    return message.strip()


def _classify(exc: BaseException) -> Kind | Classified | None:
    try:
        from azure.core import exceptions as core
    except ImportError:
        return None
    module = type(exc).__module__
    if isinstance(exc, core.ClientAuthenticationError):
        return Classified(
            Kind.PERMISSION_DENIED,
            _detail(exc),
            hint="sign in for the chosen -C credential (az login for cli; AZURE_CLIENT_ID, "
            "AZURE_TENANT_ID and AZURE_CLIENT_SECRET for environment)",
        )
    if isinstance(exc, (core.ServiceRequestError, core.ServiceResponseError)):
        return Classified(
            Kind.UNAVAILABLE,
            _detail(exc),
            hint="check the network, any proxy, and -C resource_manager_url / -C ca_bundle",
        )
    if isinstance(exc, core.HttpResponseError):
        status, code, detail = status_of(exc), error_code(exc), _detail(exc)
        authz = _AUTHZ.search(detail)
        if status == 403 or code == "AuthorizationFailed":
            hint = (
                "give the identity in use a role that allows this (AzureML Data Scientist, "
                "or Contributor) on the workspace"
            )
            if authz:
                hint = (
                    f"give the identity in use a role with {authz['action']} (AzureML Data "
                    f"Scientist, or Contributor) on the scope {authz['scope']}"
                )
            return Classified(Kind.PERMISSION_DENIED, detail, hint=hint)
        if status == 429 or code in ("TooManyRequests", "Throttled"):
            return Classified(Kind.THROTTLED, detail)
        if code in _QUOTA_CODES or "quota" in detail.lower():
            return Classified(
                Kind.QUOTA,
                detail,
                hint="ask for more quota for the VM family of -C instance_type in the "
                "workspace's region (Azure portal > Quotas), or use a smaller instance_type "
                "or instance_count",
            )
        if status == 409 or code in _CONFLICT_CODES:
            resource = _resource_of(exc) or "the resource"
            return Classified(
                Kind.CONFLICT,
                detail,
                hint=f"{resource}: another operation may still be running on it, or its name "
                "is taken in the region: wait and retry, or use another name",
            )
        if status == 404:
            return Classified(
                Kind.NOT_FOUND,
                detail,
                hint="check -C subscription_id, resource_group and workspace",
            )
        if code == "ResourceNotReady":
            return Classified(
                Kind.OTHER,
                detail,
                hint="the container did not start or did not get ready: read its log (above, "
                "or modelport deployments logs); a package refused at start (exit 4) does not "
                "match the image or MODELPORT_EXPECT_DIGEST",
            )
        return Classified(kind_for_status(status) or Kind.OTHER, detail)
    if module.startswith("azure.ai.ml"):
        # azure-ai-ml's own validation and deployment errors: what was asked is wrong.
        return Classified(Kind.INVALID, _detail(exc))
    return None


AZURE_ERRORS = ErrorMap(
    TARGET,
    classify=_classify,
    hints={
        Kind.INVALID: "Azure refused the request as invalid: check the -C options the message "
        "names (modelport deploy --dry-run shows what is sent)",
        Kind.NOT_FOUND: "check -C subscription_id, resource_group and workspace",
        Kind.UNAVAILABLE: "check the network, any proxy, and -C resource_manager_url",
    },
    reference="https://learn.microsoft.com/azure/machine-learning/how-to-troubleshoot-online-endpoints",
)


def json_body(raw: bytes) -> Any:
    """A response body as JSON, or None."""
    try:
        return json.loads(raw) if raw else None
    except ValueError:
        return None


def scoring_error_message(status: int, raw: bytes) -> str:
    """What a scoring answer's body says went wrong."""
    answer = json_body(raw)
    if isinstance(answer, Mapping):
        error = answer.get("error")
        message = answer.get("message") or (
            error.get("message") if isinstance(error, Mapping) else error
        )
        if message:
            return str(message)
    text = raw.decode("utf-8", "replace").strip()
    return text[:500] or f"HTTP {status}"
