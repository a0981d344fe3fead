"""The ``python`` flavor: a class in a file the package carries, with ``load`` and ``predict``.

Loading such a package imports and runs that file, which is why it needs an explicit opt-in.
Packed from a ``.py`` file; MLflow ``python_function`` models convert into it.
"""

from __future__ import annotations

import ast
import importlib.util
import os
import re
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from modelport.errors import PackageError, PackError
from modelport.model_format.examples import PAYLOAD_KEY, example_columns, is_payload
from modelport.model_format.flavors.base import (
    FlavorEntry,
    PackRequest,
    PackSource,
    SettingProblem,
    Staged,
    as_outputs,
    write_files,
)
from modelport.model_format.paths import temp_dir
from modelport.model_format.signature import Signature, TensorSpec, dtype_name

if TYPE_CHECKING:
    from modelport.model_format.manifest import Manifest

IDENTIFIER_PATTERN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*\Z")


def find_model_class(source: Path, wanted: str | None = None) -> str:
    """Find the model class in a Python file by reading its syntax tree (nothing is executed).

    A model class defines both ``load`` and ``predict``. With ``wanted`` set, that class must exist
    and qualify; otherwise the file must hold exactly one such class.

    Raises:
        PackError: no such class, or several and none chosen.
    """
    try:
        tree = ast.parse(source.read_bytes(), filename=str(source))
    except SyntaxError as exc:
        raise PackError(f"{source}: not valid Python ({exc.msg}, line {exc.lineno})") from None
    candidates = []
    for node in tree.body:
        if isinstance(node, ast.ClassDef):
            methods = {
                n.name for n in node.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))
            }
            if {"load", "predict"} <= methods:
                candidates.append(node.name)
    if wanted is not None:
        if wanted not in candidates:
            raise PackError(
                f"{source}: no class {wanted!r} with methods load(self, path) and "
                "predict(self, inputs)"
            )
        return wanted
    if len(candidates) != 1:
        found = ", ".join(candidates) or "none"
        raise PackError(
            f"{source}: expected exactly one class with methods load(self, path) and "
            f"predict(self, inputs), found {found}; choose one with --class"
        )
    return candidates[0]


def instantiate(code: Path, class_name: str, root: Path, module_name: str) -> Any:
    """Import ``code`` as ``module_name``, create the class and call ``load(root)``."""
    spec = importlib.util.spec_from_file_location(module_name, code)
    if spec is None or spec.loader is None:
        raise PackageError(f"cannot import {code}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
        cls = getattr(module, class_name)
        model = cls()
        model.load(str(root))
    except Exception:
        sys.modules.pop(module_name, None)
        raise
    return model


class PythonRunner:
    """Runs the model class a ``python`` flavor package carries."""

    def __init__(self, root: Path, manifest: Manifest) -> None:
        settings = manifest.flavor.settings
        module_name = f"modelport_model_{manifest.digest[7:19]}"
        self.model = instantiate(
            root / str(settings["code"]), str(settings["class"]), root, module_name
        )
        self.output_names = manifest.signature.output_names

    def predict(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Call the carried class's ``predict`` with a dict of arrays."""
        return as_outputs(self.model.predict(dict(inputs)), self.output_names)


def stage_python(
    source: Path,
    example: Any,
    model_class: str | None,
    artifacts: Sequence[str | os.PathLike[str]],
) -> Staged:
    """Stage a ``python`` flavor model: class file, artifacts, signature from the example."""
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
        write_files(root, files)
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
            sys.modules.pop("modelport_pack_check", None)
    output_specs = tuple(
        TensorSpec(n, dtype_name(a.dtype), (-1, *a.shape[1:]) if a.ndim else ())
        for n, a in outputs.items()
    )
    return Staged(
        flavor="python",
        settings={"code": f"code/{source.name}", "class": class_name},
        signature=Signature(input_signature.inputs, output_specs),
        files=files,
        example=example_arrays,
        requirements=[f"numpy=={np.__version__}"],
        default_name=source.stem,
    )


def _python_example(example: Any) -> dict[str, np.ndarray]:
    if is_payload(example):
        body = example[PAYLOAD_KEY]
        if not isinstance(body, Mapping) or not isinstance(body.get("inputs"), Mapping):
            raise PackError(
                'a Python model\'s example file must be {"inputs": {name: value}}: the input '
                "names come from it"
            )
        example = body["inputs"]
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


def _check_settings(settings: Mapping[str, Any]) -> list[SettingProblem]:
    cls = settings.get("class")
    if isinstance(cls, str) and not IDENTIFIER_PATTERN.match(cls):
        return [("class", "must be a Python identifier")]
    return []


def _accepts(model: Any) -> bool:
    return isinstance(model, Path) and model.suffix == ".py" and model.is_file()


def _stage(model: Path, request: PackRequest) -> Staged:
    return stage_python(model, request.example, request.model_class, request.artifacts)


def _open(root: Path, manifest: Manifest, threads: int | None) -> PythonRunner:
    return PythonRunner(root, manifest)


PYTHON = FlavorEntry(
    name="python",
    runs_code=True,
    required=("code", "class"),
    file_settings=("code",),
    source=PackSource("python", _accepts, _stage),
    open=_open,
    check_settings=_check_settings,
)
