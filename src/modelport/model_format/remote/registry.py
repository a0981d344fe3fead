"""MLflow URIs, resolved and downloaded through MLflow's own client.

``models:/NAME@ALIAS``, ``models:/NAME/VERSION``, ``models:/NAME/latest`` and
``runs:/RUN/PATH``.

The client reads ``MLFLOW_TRACKING_URI`` and ``MLFLOW_REGISTRY_URI`` (and its credentials:
``MLFLOW_TRACKING_TOKEN``, ``MLFLOW_TRACKING_USERNAME`` …) itself; ``mlflow-skinny`` is enough.
A downloaded MLflow model is packed as ``modelport pack`` packs an MLflow directory, with the
registry's name, version, alias and run recorded in the package metadata; a run artifact that
is already a modelport package is taken as it is.
"""

from __future__ import annotations

import importlib.util
import re
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from modelport.errors import (
    MissingDependencyError,
    ModelportError,
    PackageError,
    SourceError,
    SourceNotFound,
    UsageError,
)

_MODELS = re.compile(r"^models:/(?P<name>[^/@]+)(?:@(?P<alias>[^/@]+)|/(?P<version>[^/@]+))$")
_RUNS = re.compile(r"^runs:/(?P<run>[0-9A-Za-z_-]+)/(?P<path>.+)$")

#: The package metadata keys a registry fetch records.
METADATA_KEYS = ("mlflow.model", "mlflow.version", "mlflow.alias", "mlflow.run_id")


@dataclass(frozen=True)
class RegistryVersion:
    """What an MLflow URI names, once the registry has said which version.

    Attributes:
        uri: the URI as given.
        name: the registered model (None for a ``runs:/`` URI).
        version: the version the URI names now (None for ``runs:/``).
        alias: the alias it was named by, if any.
        run_id: the run that logged it (None when the version has none).
        artifact_uri: what is downloaded: ``models:/NAME/VERSION`` or the ``runs:/`` URI.
        registry_uri: the registry (or, for ``runs:/``, the tracking server) asked.
    """

    uri: str
    name: str | None
    version: str | None
    alias: str | None
    run_id: str | None
    artifact_uri: str
    registry_uri: str

    @property
    def key(self) -> str:
        """The cache key: this version, of this registry, named this way.

        The alias is recorded in the package, so ``@champion`` and ``/3`` are two packages.
        """
        return f"mlflow\n{self.registry_uri}\n{self.artifact_uri}\n{self.alias or ''}"

    def metadata(self) -> dict[str, str]:
        """The package metadata recording where it came from."""
        values = (self.name, self.version, self.alias, self.run_id)
        return {k: v for k, v in zip(METADATA_KEYS, values, strict=True) if v}


def parse_mlflow_uri(uri: str) -> tuple[str, str | None, str | None]:
    """``(name, alias, version)`` of a ``models:/`` URI, ``(run, None, path)`` of ``runs:/``.

    Raises:
        UsageError: not one of the four forms.
    """
    if uri.startswith("runs:/"):
        match = _RUNS.match(uri)
        if match is None:
            raise UsageError(f"{uri}: expected runs:/RUN_ID/PATH")
        return match["run"], None, match["path"]
    match = _MODELS.match(uri)
    if match is None:
        raise UsageError(
            f"{uri}: expected models:/NAME@ALIAS, models:/NAME/VERSION or models:/NAME/latest"
        )
    return match["name"], match["alias"], match["version"]


def _client() -> Any:
    if importlib.util.find_spec("mlflow") is None:
        raise MissingDependencyError("reading models:/ and runs:/ URIs", "mlflow", "mlflow")
    from mlflow import MlflowClient

    return MlflowClient()


def _error_code(exc: BaseException) -> str:
    return str(getattr(exc, "error_code", "") or "")


@contextmanager
def _asking(where: str, what: str) -> Iterator[None]:
    """Turn the MLflow client's failures (other than "not found") into modelport errors."""
    try:
        yield
    except ModelportError:
        raise
    except Exception as exc:
        code = _error_code(exc)
        text = " ".join(str(exc).split())[:300]
        if code in ("PERMISSION_DENIED", "UNAUTHENTICATED"):
            raise SourceError(
                f"{what}: the MLflow server at {where} refused ({code}: {text})",
                hint="set MLFLOW_TRACKING_TOKEN, or MLFLOW_TRACKING_USERNAME and "
                "MLFLOW_TRACKING_PASSWORD",
            ) from None
        if code == "RESOURCE_DOES_NOT_EXIST":
            raise SourceNotFound(f"{what}: {text}") from None
        if "Max retries" in text or "Connection refused" in text or "API request" in text:
            raise SourceError(
                f"{what}: cannot reach the MLflow server at {where} ({text})",
                hint="check MLFLOW_TRACKING_URI (and MLFLOW_REGISTRY_URI)",
            ) from None
        raise SourceError(f"{what}: {type(exc).__name__}: {text}") from None


def _not_found(exc: BaseException) -> bool:
    # An unknown alias is INVALID_PARAMETER_VALUE ("... alias X not found"), not a 404.
    code = _error_code(exc)
    return code == "RESOURCE_DOES_NOT_EXIST" or (
        code == "INVALID_PARAMETER_VALUE" and "not found" in str(exc).lower()
    )


def resolve(uri: str) -> RegistryVersion:
    """Ask the registry (or the tracking server) which version ``uri`` names now.

    Raises:
        MissingDependencyError: MLflow's client is not installed.
        SourceNotFound: no such registered model, version, alias or run (the message says
            which, and where it asked).
        SourceError: the server cannot be reached or refuses.
        UsageError: ``uri`` is not an MLflow URI modelport reads.
    """
    first, alias, rest = parse_mlflow_uri(uri)
    client = _client()
    import mlflow

    if uri.startswith("runs:/"):
        where = mlflow.get_tracking_uri()
        with _asking(where, f"resolving {uri}"):
            try:
                client.get_run(first)
            except Exception as exc:
                if _not_found(exc):
                    raise SourceNotFound(
                        f"resolving {uri}: the tracking server at {where} has no run {first!r}"
                    ) from None
                raise
        return RegistryVersion(uri, None, None, None, first, uri, where)
    name = first
    where = mlflow.get_registry_uri()
    with _asking(where, f"resolving {uri}"):
        try:
            if alias is not None:
                found = client.get_model_version_by_alias(name, alias)
            elif rest == "latest":
                if "'" in name:
                    raise UsageError(f"{uri}: a model name with a quote cannot be searched")
                versions = client.search_model_versions(f"name = '{name}'")
                if not versions:
                    client.get_registered_model(name)  # says when the model itself is unknown
                    raise SourceNotFound(
                        f"resolving {uri}: registered model {name!r} at {where} has no versions"
                    )
                found = max(versions, key=lambda v: int(v.version))
            else:
                found = client.get_model_version(name, rest)
        except Exception as exc:
            if not _not_found(exc):
                raise
            raise _unknown(client, uri, name, alias, rest, where) from None
    version = str(found.version)
    return RegistryVersion(
        uri, name, version, alias, found.run_id or None, f"models:/{name}/{version}", where
    )


def _unknown(
    client: Any, uri: str, name: str, alias: str | None, version: str | None, where: str
) -> SourceNotFound:
    """Say exactly what is unknown: the model, or its alias or version."""
    try:
        client.get_registered_model(name)
    except Exception as exc:
        if _not_found(exc):
            return SourceNotFound(
                f"resolving {uri}: the registry at {where} has no registered model {name!r}"
            )
    if alias is not None:
        return SourceNotFound(
            f"resolving {uri}: registered model {name!r} at {where} has no alias {alias!r}",
            hint=f"set it with MlflowClient().set_registered_model_alias({name!r}, {alias!r}, V)",
        )
    return SourceNotFound(
        f"resolving {uri}: registered model {name!r} at {where} has no version {version!r}"
    )


def download_package(found: RegistryVersion, stage: Path, out: Path, *, allow_code: bool) -> None:
    """Download what ``found`` names into ``stage`` and write it as the archive ``out``.

    An MLflow model is packed (name, version and the registry's metadata recorded); a
    modelport package (a directory or a ``.mport``) is copied as it is.

    Raises:
        SourceError: the download failed.
        PackageError: what was downloaded is neither an MLflow model nor a package.
        PackError: packing the MLflow model failed (its conversion, its parity check).
    """
    import mlflow.artifacts

    from modelport.model_format.archive import write_archive
    from modelport.model_format.manifest import MANIFEST_NAME
    from modelport.model_format.pack import pack
    from modelport.model_format.package import read_manifest

    with _asking(found.registry_uri, f"downloading {found.uri}"):
        local = Path(
            mlflow.artifacts.download_artifacts(
                artifact_uri=found.artifact_uri, dst_path=str(stage / "artifacts")
            )
        )
    if local.is_file() and local.suffix == ".mport":
        shutil.copyfile(local, out)  # the cache checks it as it checks any download
        return
    if (local / MANIFEST_NAME).is_file():
        # Written as the archive, byte for byte what pack would write; nothing is loaded.
        write_archive(local, read_manifest(local), out)
        return
    if not (local / "MLmodel").is_file():
        raise PackageError(
            f"{found.uri} is neither an MLflow model (no MLmodel file) nor a modelport package"
        )
    pack(
        local,
        out,
        name=found.name,
        version=found.version,
        metadata=found.metadata(),
        allow_code=allow_code,
    ).close()
