"""A pack source: PyTorch models, exported to ONNX at pack time and checked against the original.

Takes an ``nn.Module`` (with ``example=``), a ``torch.export`` ``ExportedProgram`` or its ``.pt2``
file, and a TorchScript module or its ``.pt`` file. Modules and programs go through the dynamo
exporter (``torch.onnx.export(..., dynamo=True)``, which needs onnxscript) with a dynamic batch
axis and the weights inside the one ``.onnx`` file; TorchScript modules, which it cannot take, go
through the legacy exporter, its deprecation warnings kept from the user. Input names are
``forward``'s parameters; outputs are ``output`` (one tensor), ``output_0``, ``output_1``, ...
(a tuple) or the keys of a returned dict.
"""

from __future__ import annotations

import inspect
import io
import logging
import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from modelport.errors import MissingDependencyError, ModelportWarning, PackError
from modelport.model_format.examples import PAYLOAD_KEY, is_payload
from modelport.model_format.flavors.base import PackRequest, PackSource, Staged
from modelport.model_format.payload import parse_payload
from modelport.model_format.signature import Signature, TensorSpec
from modelport.model_format.sources.parity import Conversion, qualified_name, stage_conversion

#: The opset each exporter writes: the dynamo exporter's lowest, and the legacy one's newest
#: well-supported; both load in every ONNX Runtime modelport accepts (1.17 and later).
DYNAMO_OPSET = 18
LEGACY_OPSET = 17
#: The files this source reads: TorchScript archives and torch.export archives.
TORCHSCRIPT_SUFFIX = ".pt"
EXPORT_SUFFIX = ".pt2"


def _mro_names(obj: Any) -> set[str]:
    return {f"{c.__module__}.{c.__qualname__}" for c in type(obj).__mro__}


def is_torch_model(obj: Any) -> bool:
    """True for an ``nn.Module``, a ``ScriptModule`` or an ``ExportedProgram`` (no imports)."""
    names = _mro_names(obj)
    return (
        "torch.nn.modules.module.Module" in names
        or "torch.export.exported_program.ExportedProgram" in names
    )


def _accepts(model: Any) -> bool:
    if isinstance(model, Path):
        return model.is_file() and model.suffix in (TORCHSCRIPT_SUFFIX, EXPORT_SUFFIX)
    return is_torch_model(model)


def _require() -> Any:
    try:
        import onnxscript  # noqa: F401  (the dynamo exporter imports it itself, late)
        import torch
    except ImportError as exc:
        raise MissingDependencyError(
            "packing a PyTorch model", "torch", exc.name or "torch"
        ) from None
    return torch


@contextmanager
def _quiet_exporter() -> Iterator[None]:
    """Keep the exporters' deprecation warnings and log lines from users (and from ``-W error``)."""
    logger = logging.getLogger("torch.onnx")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            warnings.simplefilter("ignore", FutureWarning)
            warnings.simplefilter("ignore", UserWarning)
            yield
    finally:
        logger.setLevel(level)


def _load_file(torch: Any, path: Path) -> Any:
    try:
        if path.suffix == EXPORT_SUFFIX:
            return torch.export.load(str(path))
        with _quiet_exporter():
            return torch.jit.load(str(path), map_location="cpu")
    except Exception as exc:
        if path.suffix == EXPORT_SUFFIX:
            raise PackError(f"{path} is not a torch.export archive: {exc}") from None
        raise PackError(
            f"{path} is not a TorchScript archive ({str(exc).splitlines()[0][:200]}); a module "
            "saved with torch.save needs its Python code to load: pack the nn.Module from Python "
            "with example=, or save it with torch.jit.save (.pt) or torch.export.save (.pt2)"
        ) from None


def _input_names(torch: Any, model: Any) -> list[str]:
    if isinstance(model, torch.export.ExportedProgram):
        return [str(n) for n in model.graph_signature.user_inputs]
    if isinstance(model, torch.jit.ScriptModule):
        return [a.name for a in model.forward.schema.arguments[1:]]
    parameters = inspect.signature(model.forward).parameters.values()
    return [p.name for p in parameters if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]


def _known_dtypes(torch: Any, model: Any, names: list[str]) -> dict[str, np.dtype[Any]]:
    """The dtype of each input an ExportedProgram records (other models do not say)."""
    if not isinstance(model, torch.export.ExportedProgram):
        return {}
    dtypes: dict[str, np.dtype[Any]] = {}
    for node in model.graph.nodes:
        value = node.meta.get("val")
        if node.op == "placeholder" and node.name in names and hasattr(value, "dtype"):
            dtype = _numpy_dtype(torch, value.dtype)
            if dtype is not None:  # else left to the example
                dtypes[node.name] = dtype
    return dtypes


def _numpy_dtype(torch: Any, dtype: Any) -> np.dtype[Any] | None:
    """The numpy dtype of a torch dtype; None for those numpy lacks (bfloat16 and friends)."""
    try:
        found: np.dtype[Any] = torch.empty((), dtype=dtype).numpy().dtype
    except TypeError:
        return None
    return found


def _example_arrays(
    torch: Any, model: Any, example: Any, names: list[str]
) -> dict[str, np.ndarray]:
    """The example as named arrays, in ``forward``'s order; floats in the module's float dtype."""
    if example is None and isinstance(model, torch.export.ExportedProgram):
        stored = getattr(model, "example_inputs", None)
        if stored is not None:
            example = tuple(stored[0])  # the inputs it was exported with: (args, kwargs)
    if example is None:
        raise PackError(
            "packing a PyTorch model needs an example input (example= in Python, --example FILE "
            "on the command line): the export traces it and the parity check runs it"
        )
    dtypes = _known_dtypes(torch, model, names)
    from_json = is_payload(example)
    if from_json:
        specs = tuple(TensorSpec(n, "float32", ()) for n in names)
        example = parse_payload(example[PAYLOAD_KEY], Signature(specs, ()))
    if isinstance(example, tuple):
        if len(example) > len(names):
            raise PackError(f"the example has {len(example)} inputs; forward takes {names}")
        example = dict(zip(names, example, strict=False))
    elif not isinstance(example, Mapping):
        example = {names[0]: example} if names else {}
    unknown = [str(k) for k in example if k not in names]
    if unknown or not example:
        raise PackError(f"the example names inputs {unknown or '(none)'}; forward takes {names}")
    float_dtype = _float_dtype(torch, model)
    arrays: dict[str, np.ndarray] = {}
    for name in names:
        if name not in example:
            continue
        value = example[name]
        if hasattr(value, "detach"):
            value = value.detach().cpu().numpy()
        array = np.asarray(value)
        if name in dtypes:
            array = array.astype(dtypes[name])
        elif array.dtype.kind == "f" or (from_json and array.dtype.kind in "iu"):
            # numpy's float64 (and JSON's numbers, which do not tell 1 from 1.0) in the float
            # type the module computes in: its parameters', float32 for most.
            array = array.astype(float_dtype)
        if array.ndim == 0:
            raise PackError(f"example input {name!r} must have a batch dimension (rows first)")
        arrays[name] = array
    if list(arrays) != names[: len(arrays)]:  # a gap: a later input given, an earlier not
        raise PackError(f"the example must give forward's inputs in order: {names}")
    return arrays


def _float_dtype(torch: Any, model: Any) -> np.dtype[Any]:
    """The float dtype of the module's first floating parameter (float32 if it has none)."""
    if isinstance(model, torch.export.ExportedProgram):
        parameters = model.state_dict.values()
    else:
        parameters = (*model.parameters(), *model.buffers())
    first = next((t for t in parameters if t.is_floating_point()), None)
    found = None if first is None else _numpy_dtype(torch, first.dtype)
    return found or np.dtype(np.float32)  # bfloat16: float32 examples, cast by torch


def _to_numpy(value: Any) -> np.ndarray:
    return np.asarray(value.detach().cpu().numpy() if hasattr(value, "detach") else value)


def _outputs(result: Any) -> dict[str, np.ndarray]:
    """Name what ``forward`` returned: ``output``, ``output_i`` of a tuple, a dict's keys."""
    if isinstance(result, Mapping):
        named = {str(k): v for k, v in result.items()}
    elif isinstance(result, (tuple, list)):
        named = {f"output_{i}": v for i, v in enumerate(result)}
    else:
        named = {"output": result}
    odd = [n for n, v in named.items() if not hasattr(v, "detach")]
    if odd:
        raise PackError(
            "forward must return a tensor, a tuple or list of tensors, or a dict of tensors; "
            f"{', '.join(odd)} {'is' if len(odd) == 1 else 'are'} not a tensor (nested or None)"
        )
    return {n: _to_numpy(v) for n, v in named.items()}


def _tensors(torch: Any, arrays: Any) -> tuple[Any, ...]:
    return tuple(torch.from_numpy(np.ascontiguousarray(a)) for a in arrays)


def _run(torch: Any, module: Any, arrays: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    tensors = _tensors(torch, arrays.values())
    try:
        with torch.no_grad():
            result = module(*tensors)
    except Exception as exc:
        raise PackError(f"the PyTorch model fails on the example: {exc}") from None
    return _outputs(result)


def _export_args(torch: Any, arrays: Mapping[str, np.ndarray]) -> tuple[Any, ...]:
    # torch.export specializes a dimension of size 1: trace with two rows so the batch stays free.
    rows = (np.concatenate([a, a]) if a.shape[0] == 1 else a for a in arrays.values())
    return _tensors(torch, rows)


def _free_batch_shapes(torch: Any, names: Any) -> dict[str, Any]:
    batch = torch.export.Dim("batch")  # one dimension, shared: every input has the same rows
    return {n: {0: batch} for n in names}


def _free_batch(torch: Any, program: Any, arrays: Mapping[str, np.ndarray]) -> Any:
    """``program`` re-exported with a free batch dimension, or as it is if its batch is fixed."""
    try:
        # Without its guards the module takes other sizes; export proves the graph does too.
        with _quiet_exporter():
            return torch.export.export(
                program.module(check_guards=False),
                _export_args(torch, arrays),
                dynamic_shapes=_free_batch_shapes(torch, arrays),
            )
    except Exception:
        warnings.warn(
            "this ExportedProgram cannot take another batch size than it was exported with; it "
            "is packed with that fixed batch",
            ModelportWarning,
            stacklevel=6,  # the caller of modelport.pack
        )
        return program


def _dynamo_export(
    torch: Any, model: Any, arrays: Mapping[str, np.ndarray], outputs: list[str]
) -> bytes:
    names = list(arrays)
    args: tuple[Any, ...] | None = None
    dynamic: dict[str, Any] | None = None
    if not isinstance(model, torch.export.ExportedProgram):  # a program keeps its own shapes
        args = _export_args(torch, arrays)
        dynamic = _free_batch_shapes(torch, names)
    try:
        with _quiet_exporter():
            program = torch.onnx.export(
                model,
                args,
                dynamo=True,
                input_names=names,
                output_names=outputs,
                dynamic_shapes=dynamic,
                opset_version=DYNAMO_OPSET,
                external_data=False,
                optimize=True,
                verbose=False,
                report=False,
            )
    except Exception as exc:
        first = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__
        raise PackError(
            f"torch.onnx could not export {type(model).__name__} with a dynamic batch: {first}"
        ) from None
    return bytes(program.model_proto.SerializeToString())


def _legacy_export(
    torch: Any, model: Any, arrays: Mapping[str, np.ndarray], outputs: list[str]
) -> bytes:
    names = list(arrays)
    buffer = io.BytesIO()
    try:
        with _quiet_exporter():
            torch.onnx.export(
                model,
                _export_args(torch, arrays),
                buffer,
                dynamo=False,
                input_names=names,
                output_names=outputs,
                dynamic_axes={n: {0: "batch"} for n in (*names, *outputs)},
                opset_version=LEGACY_OPSET,
            )
    except Exception as exc:
        raise PackError(f"torch.onnx could not export the TorchScript module: {exc}") from None
    return buffer.getvalue()


def convert(model: Any, example: Any) -> Conversion:
    """Export a PyTorch model to ONNX and run the original on the example.

    Raises:
        MissingDependencyError: torch or onnxscript is not installed.
        PackError: no example, an example that does not fit ``forward``, or the export fails.
    """
    torch = _require()
    source = model
    if isinstance(model, Path):
        model = _load_file(torch, model)
    names = _input_names(torch, model)
    if not names:
        raise PackError(
            "forward takes no named positional parameters (forward(self, *inputs)?): name "
            "them, as forward(self, x) or forward(self, x, mask): the inputs take those names"
        )
    arrays = _example_arrays(torch, model, example, names)
    scripted = isinstance(model, torch.jit.ScriptModule)
    exported = isinstance(model, torch.export.ExportedProgram)
    # Each submodule's own flag: a frozen batch norm inside a training model stays frozen.
    modes = {} if exported else {m: bool(m.training) for m in model.modules()}
    was_training = any(modes.values())
    if was_training:
        warnings.warn(
            f"{type(model).__name__} is in train mode; it is packed in eval mode (dropout off, "
            "batch norm with its running statistics), as it predicts",
            ModelportWarning,
            stacklevel=5,  # the caller of modelport.pack
        )
        model.eval()
    if exported:
        model = _free_batch(torch, model, arrays)
    try:
        expected = _run(torch, model.module() if exported else model, arrays)
        outputs = list(expected)
        clash = sorted(set(outputs) & set(names))
        if clash:
            raise PackError(f"forward returns outputs named as its inputs ({', '.join(clash)})")
        export = _legacy_export if scripted else _dynamo_export
        onnx_bytes = export(torch, model, arrays, outputs)
    finally:
        for module, training in modes.items():
            module.training = training
    how = "torch.onnx legacy TorchScript exporter" if scripted else "torch.onnx dynamo exporter"
    converter = f"torch=={torch.__version__} ({how})"
    if not scripted:
        import onnxscript

        converter += f", onnxscript=={onnxscript.__version__}"
    return Conversion(
        onnx_bytes=onnx_bytes,
        fed=dict(arrays),
        expected=expected,
        library=f"torch=={torch.__version__}",
        converter=converter,
        model_class=qualified_name(model),
        extra={"source_file": source.name} if isinstance(source, Path) else None,
    )


def _default_name(model: Any) -> str:
    if isinstance(model, Path):
        return model.stem
    return type(model).__name__.lower()


def _stage(model: Any, request: PackRequest) -> Staged:
    return stage_conversion(
        convert(model, request.example), request.tolerance, default_name=_default_name(model)
    )


#: An nn.Module, ScriptModule or ExportedProgram, or a ``.pt`` (TorchScript) or ``.pt2`` file.
PYTORCH = PackSource("pytorch", _accepts, _stage)
