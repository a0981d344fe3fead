"""Packing: turn a model into a verified package directory or ``.mport`` archive.

Sources: ONNX, scikit-learn, a Python class file, an MLflow directory, or another package.

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
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from modelport.errors import InputError, PackError
from modelport.model_format.archive import (
    ARCHIVE_SUFFIX,
    file_digest,
    write_archive,
)
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
from modelport.model_format.paths import make_temp_dir, temp_dir
from modelport.model_format.payload import to_jsonable
from modelport.model_format.signature import Signature, TensorSpec, dtype_name

EXAMPLE_NAME = "example.json"
DEFAULT_TOLERANCE = 1e-4


@dataclass
class Staged:
    """A package being assembled: files (relative path -> bytes or source) and manifest fields."""

    flavor: Flavor
    signature: Signature
    files: dict[str, bytes | Path] = field(default_factory=dict)
    example: dict[str, np.ndarray] | None = None
    requirements: list[str] = field(default_factory=list)
    metadata: dict[str, str] = field(default_factory=dict)
    default_name: str = "model"
    default_version: str = "1"


def runtime_requirements() -> list[str]:
    """The pinned packages an ONNX package needs at run time, as installed here."""
    import onnxruntime

    return [f"numpy=={np.__version__}", f"onnxruntime=={onnxruntime.__version__}"]


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
        model: an ``.onnx`` file, an ``onnx.ModelProto``, a scikit-learn estimator or pipeline, a
            Python file with a model class (``python`` flavor), an MLflow model directory, or an
            existing package (to rewrite it as a directory or archive).
        path: where to write; a path ending in ``.mport`` gives an archive, anything else a
            directory.
        name: package name; defaults to one derived from the source.
        version: package version; defaults to ``"1"``.
        example: input example: an array, a mapping of input name to array, a pandas DataFrame,
            or the path of a JSON file (``{"inputs": ...}`` or an MLflow scoring format). Stored in
            the package; refines the signature; required for scikit-learn and ``python`` models.
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
    staged = _stage(model, example, tolerance, model_class, artifacts, allow_code)
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
        digests = {rel: file_digest(path) for rel, path in _write_files(stage_dir, files).items()}
        manifest = Manifest(
            name=manifest_name,
            version=version or staged.default_version,
            flavor=staged.flavor,
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


def _write_files(root: Path, files: Mapping[str, bytes | Path]) -> dict[str, Path]:
    """Write each file (bytes, or a file to copy) under ``root``; returns where each went."""
    written: dict[str, Path] = {}
    for rel, content in sorted(files.items()):
        target = root.joinpath(*rel.split("/"))
        target.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, Path):
            shutil.copyfile(content, target)
        else:
            target.write_bytes(content)
        written[rel] = target
    return written


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
    body = {"inputs": {n: to_jsonable(np.asarray(v)) for n, v in example.items()}}
    return (json.dumps(body, indent=None, separators=(",", ":"), allow_nan=False) + "\n").encode()


def read_example_file(path: Path) -> dict[str, Any]:
    """Read an example JSON file: ``{"inputs": ...}`` or another accepted payload format."""
    try:
        body = json.loads(path.read_text("utf-8"))
    except FileNotFoundError:
        raise PackError(f"example file {path} does not exist") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise PackError(f"example file {path} is not valid JSON ({exc})") from None
    return {"__payload__": body}


def _resolve_example(example: Any, signature: Signature) -> dict[str, np.ndarray] | None:
    """Turn any accepted example form into enforced arrays for ``signature``.

    Raises:
        PackError: the example does not fit the model (the message names the input).
    """
    if example is None:
        return None
    try:
        return _example_arrays(example, signature)
    except InputError as exc:
        raise PackError(f"the example does not fit the model: {exc}") from None


def _example_arrays(example: Any, signature: Signature) -> dict[str, np.ndarray]:
    if isinstance(example, Mapping) and "__payload__" in example:
        from modelport.model_format.payload import parse_payload

        example = parse_payload(example["__payload__"], signature)
    from modelport.model_format.flavors.sklearn import example_columns

    if not isinstance(example, Mapping) and type(example).__name__ != "DataFrame":
        return _enforce_refined(signature, example)
    columns, table = example_columns(example)
    if table:
        from modelport.model_format.payload import table_to_inputs

        rows = list(zip(*(c.tolist() for c in columns.values()), strict=True))
        return _enforce_refined(signature, table_to_inputs(list(columns), rows, signature))
    return _enforce_refined(signature, columns)


def _enforce_refined(signature: Signature, inputs: Any) -> dict[str, np.ndarray]:
    """Enforce ``inputs`` after taking the rank of inputs the graph leaves unknown from them."""
    if isinstance(inputs, Mapping):
        named = dict(inputs)
    else:
        named = {signature.inputs[0].name: inputs} if len(signature.inputs) == 1 else {}
    arrays: dict[str, np.ndarray] = {}
    for name, value in named.items():
        try:
            arrays[str(name)] = np.asarray(value)
        except (ValueError, TypeError):
            continue  # ragged: enforcement names the input
    return _refine(signature, arrays).enforce(inputs)


def _refine(signature: Signature, example: Mapping[str, np.ndarray]) -> Signature:
    """Fill in inputs whose rank the graph leaves unknown from the example (rows stay -1)."""
    refined = []
    for spec in signature.inputs:
        if not spec.shape and spec.name in example and example[spec.name].ndim > 0:
            shape = (-1, *example[spec.name].shape[1:])
            refined.append(TensorSpec(spec.name, spec.dtype, shape))
        else:
            refined.append(spec)
    return Signature(tuple(refined), signature.outputs)


# --- one stager per kind of source ----------------------------------------------------------


def _stage(
    model: Any,
    example: Any,
    tolerance: float,
    model_class: str | None,
    artifacts: Sequence[str | os.PathLike[str]],
    allow_code: bool,
) -> Staged:
    from modelport.model_format.flavors.sklearn import is_sklearn_estimator

    if isinstance(model, (str, os.PathLike)):
        source = Path(model)
        if not source.exists():
            raise PackError(f"{source}: no such file or directory")
        if source.is_dir() and (source / "MLmodel").is_file():
            from modelport.model_format.flavors.mlflow import stage_mlflow

            staged: Staged = stage_mlflow(source, example, tolerance, allow_code)
            return staged
        if (
            source.is_dir() and (source / MANIFEST_NAME).is_file()
        ) or source.suffix == ARCHIVE_SUFFIX:
            return _stage_package(source)
        if source.suffix == ".onnx" and source.is_file():
            return stage_onnx(source.read_bytes(), example, default_name=source.stem)
        if source.suffix == ".py" and source.is_file():
            return stage_python(source, example, model_class, artifacts)
        raise PackError(
            f"{source}: don't know how to pack this; give an .onnx file, a .py file with a model "
            "class, an MLflow model directory, or a modelport package"
        )
    if type(model).__name__ == "ModelProto" and hasattr(model, "SerializeToString"):
        graph_name = getattr(getattr(model, "graph", None), "name", "") or "model"
        return stage_onnx(model.SerializeToString(), example, default_name=graph_name)
    if is_sklearn_estimator(model):
        return stage_sklearn(model, example, tolerance)
    raise PackError(
        f"cannot pack an object of type {type(model).__module__}.{type(model).__name__}; "
        "supported: ONNX models, scikit-learn estimators, Python model files, MLflow directories"
    )


def stage_onnx(
    onnx_bytes: bytes,
    example: Any,
    *,
    default_name: str,
    settings: Mapping[str, Any] | None = None,
    checked_example: dict[str, np.ndarray] | None = None,
) -> Staged:
    """Stage an ONNX model: signature from the graph, refined and checked by the example."""
    from modelport.model_format.flavors.onnx import make_session, session_signature, strip_zipmap

    onnx_bytes = strip_zipmap(onnx_bytes)
    try:
        session = make_session(onnx_bytes, threads=1)
    except Exception as exc:
        raise PackError(f"ONNX Runtime cannot load this model: {exc}") from None
    signature = session_signature(session)
    arrays = checked_example
    if arrays is None and example is not None:
        arrays = _resolve_example(example, signature)
    if arrays is not None:
        signature = _refine(signature, arrays)
        arrays = signature.enforce(arrays)
        try:
            session.run(None, arrays)
        except Exception as exc:
            raise PackError(f"the model fails on the example: {exc}") from None
    return Staged(
        flavor=Flavor("onnx", _freeze_json({"model": "model.onnx", **(settings or {})})),
        signature=signature,
        files={"model.onnx": onnx_bytes},
        example=arrays,
        requirements=runtime_requirements(),
        default_name=default_name,
    )


def stage_sklearn(estimator: Any, example: Any, tolerance: float) -> Staged:
    """Convert a scikit-learn estimator to ONNX and stage it with its parity report."""
    from modelport.model_format.flavors.sklearn import convert

    if isinstance(example, Mapping) and "__payload__" in example:
        raise PackError(
            "a scikit-learn example must be an array or a DataFrame, not a JSON file: the "
            "input types come from it"
        )
    converted = convert(estimator, example, tolerance)
    return stage_onnx(
        converted.onnx_bytes,
        None,
        default_name=type(estimator).__name__.lower(),
        settings=converted.settings,
        checked_example=converted.example,
    )


def stage_python(
    source: Path,
    example: Any,
    model_class: str | None,
    artifacts: Sequence[str | os.PathLike[str]],
) -> Staged:
    """Stage a ``python`` flavor model: class file, artifacts, signature from the example."""
    from modelport.model_format.flavors.python import find_model_class, instantiate
    from modelport.model_format.flavors.runtime import as_outputs

    class_name = find_model_class(source, model_class)
    if example is None:
        raise PackError(
            "packing a Python model needs an example input (--example): the signature is read "
            "from it and the model is checked on it"
        )
    files: dict[str, bytes | Path] = {f"code/{source.name}": source}
    for artifact in artifacts:
        files.update(_artifact_files(Path(artifact)))
    example_arrays = _python_example(example)
    input_signature = Signature(
        tuple(
            TensorSpec(n, dtype_name(a.dtype), (-1, *a.shape[1:]) if a.ndim else ())
            for n, a in example_arrays.items()
        ),
        (),
    )
    # Run the model as it will run from the package: from a staged copy of its files.
    with temp_dir("modelport-check-") as tmp:
        root = Path(tmp)
        _write_files(root, files)
        try:
            instance = instantiate(
                root / f"code/{source.name}", class_name, root, "modelport_pack_check"
            )
            outputs = as_outputs(instance.predict(input_signature.enforce(example_arrays)), ())
        except PackError:
            raise
        except Exception as exc:
            raise PackError(
                f"{source}: the model class {class_name} failed on the example "
                f"({type(exc).__name__}: {exc})"
            ) from None
        finally:
            import sys

            sys.modules.pop("modelport_pack_check", None)
    output_specs = tuple(
        TensorSpec(n, dtype_name(a.dtype), (-1, *a.shape[1:]) if a.ndim else ())
        for n, a in outputs.items()
    )
    return Staged(
        flavor=Flavor("python", _freeze_json({"code": f"code/{source.name}", "class": class_name})),
        signature=Signature(input_signature.inputs, output_specs),
        files=files,
        example=example_arrays,
        requirements=[f"numpy=={np.__version__}"],
        default_name=source.stem,
    )


def _python_example(example: Any) -> dict[str, np.ndarray]:
    if isinstance(example, Mapping) and "__payload__" in example:
        body = example["__payload__"]
        if not isinstance(body, Mapping) or not isinstance(body.get("inputs"), Mapping):
            raise PackError(
                'a Python model\'s example file must be {"inputs": {name: value}}: the input '
                "names come from it"
            )
        example = body["inputs"]
    from modelport.model_format.flavors.sklearn import example_columns

    columns, _ = example_columns(example)
    for name, array in columns.items():
        if array.dtype.kind == "O":
            if not all(isinstance(v, str) for v in array.flat):
                raise PackError(f"example input {name!r} mixes types; use one dtype per input")
        elif array.dtype.kind in "US":
            columns[name] = array.astype(object)
        else:
            dtype_name(array.dtype)  # raises for unsupported dtypes
    return columns


def _artifact_files(path: Path) -> dict[str, bytes | Path]:
    if not path.exists():
        raise PackError(f"artifact {path}: no such file or directory")
    if path.is_file():
        return {f"artifacts/{path.name}": path}
    files: dict[str, bytes | Path] = {}
    for item in sorted(path.rglob("*")):
        if item.is_symlink():
            raise PackError(f"artifact {item} is a symbolic link; packages hold regular files only")
        if item.is_file():
            files[f"artifacts/{path.name}/{item.relative_to(path).as_posix()}"] = item
    return files


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
        flavor=manifest.flavor,
        signature=manifest.signature,
        files=files,
        example=example,
        requirements=list(manifest.requirements),
        metadata=dict(manifest.metadata),
        default_name=manifest.name,
        default_version=manifest.version,
    )
