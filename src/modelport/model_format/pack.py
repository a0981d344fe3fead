"""Packing: turn a model into a verified package directory or ``.mport`` archive.

Sources: ONNX, scikit-learn (and XGBoost, LightGBM, CatBoost), PyTorch, a Python class file, an
MLflow directory, or another package.

Packing is all-or-nothing: the package is staged in a temporary directory beside the output and
moved into place only once complete, so a failure leaves nothing behind. Packing is reproducible:
the same model and options give a byte-identical archive. No wall-clock time is recorded unless
asked for (``created_at=``, or the ``SOURCE_DATE_EPOCH`` convention of reproducible builds).
"""

from __future__ import annotations

import json
import os
import platform
import re
import shutil
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from modelport.errors import PackError
from modelport.model_format.archive import (
    ARCHIVE_SUFFIX,
    file_digest,
    write_archive,
)
from modelport.model_format.examples import read_example_file
from modelport.model_format.flavors import FLAVORS
from modelport.model_format.flavors.base import PackRequest, PackSource, Staged, write_files
from modelport.model_format.jsontext import plain
from modelport.model_format.manifest import (
    MANIFEST_NAME,
    NAME_PATTERN,
    Flavor,
    Manifest,
    _freeze_json,
    parse,
    requirement_problem,
)
from modelport.model_format.package import Package, code_allowed, load, open_package
from modelport.model_format.paths import make_temp_dir
from modelport.model_format.sources.boosting import BOOSTERS
from modelport.model_format.sources.mlflow import MLFLOW
from modelport.model_format.sources.pytorch import PYTORCH
from modelport.model_format.sources.sklearn import SKLEARN

EXAMPLE_NAME = "example.json"
DEFAULT_TOLERANCE = 1e-4


def pack(
    model: Any,
    path: str | os.PathLike[str],
    *,
    name: str | None = None,
    version: str | None = None,
    example: Any = None,
    requirements: Iterable[str] | None = None,
    metadata: Mapping[str, str] | None = None,
    tolerance: float = DEFAULT_TOLERANCE,
    created_at: datetime | str | None = None,
    model_class: str | None = None,
    artifacts: Sequence[str | os.PathLike[str]] = (),
    overwrite: bool = False,
    allow_code: bool = False,
) -> Package:
    """Pack a model into a package and return it loaded.

    Args:
        model: an ``.onnx`` file, an ``onnx.ModelProto``, a scikit-learn estimator or pipeline
            (XGBoost, LightGBM and CatBoost estimators included, alone or as steps), an
            ``xgboost.Booster`` or ``lightgbm.Booster``, a PyTorch ``nn.Module``, ScriptModule or
            ``ExportedProgram``, a TorchScript ``.pt`` or torch.export ``.pt2`` file, a Python
            file with a model class (``python`` flavor), an MLflow model directory, or an
            existing package (to rewrite it as a directory or archive).
        path: where to write; a path ending in ``.mport`` gives an archive, anything else a
            directory.
        name: package name; defaults to one derived from the source.
        version: package version; defaults to ``"1"``.
        example: input example: an array, a mapping of input name to array, a pandas DataFrame,
            or the path of a JSON file (``{"inputs": ...}`` or an MLflow scoring format). Stored in
            the package; refines the signature; required for converted models (scikit-learn,
            boosted trees, PyTorch; an ExportedProgram's own example inputs serve if none is
            given) and ``python`` models. A PyTorch example may also be a tensor, or a tuple of
            them in ``forward``'s order.
        requirements: extra pinned runtime requirements (``package==version``).
        metadata: free-form string labels.
        tolerance: largest absolute difference allowed between a converted model and the
            original on the example.
        created_at: time to record; default ``SOURCE_DATE_EPOCH`` if set, else none, so that
            packing is reproducible. ``"now"`` records the current time.
        model_class: for a Python file, the class to use when the file holds several.
        artifacts: for a Python file, files or directories to carry under ``artifacts/``.
        overwrite: replace ``path`` if it exists.
        allow_code: allow packing sources that run code when read: pickled MLflow models and
            MLflow ``python_function`` models. Also enabled by ``MODELPORT_ALLOW_CODE=1``.

    Returns:
        The new package, loaded (code-carrying packages are loaded with ``allow_code=True``,
        since their code already ran while packing).

    Raises:
        PackError: the model cannot be packed; nothing is written.
    """
    out = Path(path)
    if not 0 <= tolerance < float("inf"):
        raise PackError(f"tolerance must be a finite number >= 0, got {tolerance!r}")
    if out.exists() and not overwrite:
        raise PackError(f"{out} already exists; pass overwrite=True (--force) to replace it")
    if isinstance(example, (str, os.PathLike)):
        example = read_example_file(Path(example))

    allow_code = code_allowed(allow_code)
    request = PackRequest(example, tolerance, model_class, artifacts, allow_code)
    staged = _stage(model, request)
    files = staged.files
    if staged.example is not None:
        files[EXAMPLE_NAME] = _example_json(staged.example)

    manifest_name = name or _sanitize(staged.default_name)
    if not NAME_PATTERN.match(manifest_name):
        raise PackError(
            f"package name {manifest_name!r} is invalid: use letters, digits, '.', '_' and '-', "
            "starting with a letter or digit"
        )
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in (metadata or {}).items()):
        raise PackError("metadata must map strings to strings")
    all_requirements = list(dict.fromkeys([*staged.requirements, *(requirements or [])]))
    bad_requirements = [why for why in map(requirement_problem, all_requirements) if why]
    if bad_requirements:
        raise PackError(f"invalid requirement: {'; '.join(bad_requirements)}")

    out.parent.mkdir(parents=True, exist_ok=True)
    stage_dir = make_temp_dir(f".{out.name}.", out.parent)
    try:
        digests = {rel: file_digest(path) for rel, path in write_files(stage_dir, files).items()}
        manifest = Manifest(
            name=manifest_name,
            version=version or staged.default_version,
            flavor=Flavor(staged.flavor, _freeze_json(staged.settings)),
            signature=staged.signature,
            files=_freeze_json(digests),
            requirements=tuple(all_requirements),
            python=platform.python_version(),
            created_at=_created_at(created_at),
            metadata=_freeze_json({**staged.metadata, **(metadata or {})}),
            example=EXAMPLE_NAME if staged.example is not None else None,
        )
        # Validate what we wrote exactly as a reader would.
        manifest = parse(manifest.to_json(), MANIFEST_NAME)
        (stage_dir / MANIFEST_NAME).write_bytes(manifest.to_json())
        _replace(stage_dir, manifest, out, overwrite)
    finally:
        shutil.rmtree(stage_dir, ignore_errors=True)
    return load(out, allow_code=True)


def _replace(stage_dir: Path, manifest: Manifest, out: Path, overwrite: bool) -> None:
    if out.suffix == ARCHIVE_SUFFIX:
        if out.is_dir():
            raise PackError(f"{out} is a directory; cannot write an archive there")
        write_archive(stage_dir, manifest, out)
        return
    if out.exists():
        if not overwrite:  # pragma: no cover - checked earlier; kept for races
            raise PackError(f"{out} already exists")
        if out.is_dir():
            shutil.rmtree(out)
        else:
            out.unlink()
    os.replace(stage_dir, out)


def _created_at(value: datetime | str | None) -> str | None:
    if value is None:
        epoch = os.environ.get("SOURCE_DATE_EPOCH")
        if not epoch:
            return None
        try:
            value = datetime.fromtimestamp(int(epoch), tz=timezone.utc)
        except ValueError:
            raise PackError("SOURCE_DATE_EPOCH must be an integer number of seconds") from None
    elif isinstance(value, str):
        if value == "now":
            value = datetime.now(tz=timezone.utc).replace(microsecond=0)
        else:
            try:
                value = datetime.fromisoformat(value.replace("Z", "+00:00"))
            except ValueError:
                raise PackError(f"created_at {value!r} is not an ISO 8601 date and time") from None
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    return value.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


def _sanitize(text: str) -> str:
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-._")
    return cleaned[:128] or "model"


def _example_json(example: Mapping[str, np.ndarray]) -> bytes:
    body = {"inputs": {n: plain(np.asarray(v)) for n, v in example.items()}}
    try:
        text = json.dumps(body, indent=None, separators=(",", ":"), allow_nan=False)
    except ValueError:
        raise PackError(
            "the example holds NaN or infinite values, which the package's example (strict "
            "JSON) cannot keep; give an example without them (the model may still take them)"
        ) from None
    return (text + "\n").encode()


# --- one stager per kind of source ----------------------------------------------------------


def _stage(model: Any, request: PackRequest) -> Staged:
    """Stage ``model`` with the first source that accepts it (a path as an existing ``Path``)."""
    if isinstance(model, (str, os.PathLike)):
        model = Path(model)
        if not model.exists():
            raise PackError(f"{model}: no such file or directory")
    for source in SOURCES:
        if source.accepts(model):
            return source.stage(model, request)
    if isinstance(model, Path):
        raise PackError(
            f"{model}: don't know how to pack this; give an .onnx file, a .py file with a model "
            "class, a TorchScript .pt or torch.export .pt2 file, an MLflow model directory, or a "
            "modelport package"
        )
    raise PackError(
        f"cannot pack an object of type {type(model).__module__}.{type(model).__name__}; "
        "supported: ONNX models, scikit-learn estimators and pipelines, XGBoost, LightGBM and "
        "CatBoost models, PyTorch modules and exported programs, Python model files, MLflow "
        "directories"
    )


def _stage_package(source: Path) -> Staged:
    """Stage the contents of an existing package, verified, to rewrite it in another form."""
    with open_package(source) as opened:  # repacking copies files: no code runs
        root, manifest = opened.directory, opened.manifest
        files: dict[str, bytes | Path] = {
            rel: (root / rel).read_bytes() for rel in manifest.files if rel != manifest.example
        }
        example = None
        if manifest.example is not None:
            body = json.loads((root / manifest.example).read_text("utf-8"))
            example = manifest.signature.enforce(body["inputs"])
    return Staged(
        flavor=manifest.flavor.name,
        settings=manifest.flavor.settings,
        signature=manifest.signature,
        files=files,
        example=example,
        requirements=list(manifest.requirements),
        metadata=dict(manifest.metadata),
        default_name=manifest.name,
        default_version=manifest.version,
    )


def _is_package(model: Any) -> bool:
    if not isinstance(model, Path):
        return False
    return (model.is_dir() and (model / MANIFEST_NAME).is_file()) or model.suffix == ARCHIVE_SUFFIX


#: An existing package, rewritten as a directory or an archive.
PACKAGE = PackSource("package", _is_package, lambda model, _request: _stage_package(model))

#: What ``pack`` reads, asked in this order: an MLflow directory before a package directory
#: (both are directories), then each flavor's own files, then converted objects.
SOURCES: tuple[PackSource, ...] = (
    MLFLOW,
    PACKAGE,
    *(entry.source for entry in FLAVORS.values()),
    PYTORCH,
    BOOSTERS,
    SKLEARN,
)
