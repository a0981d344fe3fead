"""The ``onnx`` flavor: an ONNX model run by ONNX Runtime. Loading it never runs carried code.

Packed from an ``.onnx`` file or an ``onnx.ModelProto``; scikit-learn and MLflow sources convert
into it (:mod:`modelport.model_format.sources`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from modelport.errors import PackError
from modelport.model_format.examples import refine, resolve_example
from modelport.model_format.flavors.base import (
    FileOpener,
    FlavorEntry,
    PackRequest,
    PackSource,
    Staged,
)
from modelport.model_format.flavors.onnx_refs import (
    OnnxFormatError,
    external_data_problems,
    external_refs,
)
from modelport.model_format.signature import ONNX_TYPES, Signature, TensorSpec

if TYPE_CHECKING:
    from modelport.model_format.manifest import Manifest


def usable_cpus() -> int:
    """CPUs this process may run on (its affinity mask), not the host's core count."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - macOS and Windows have no affinity API
        return max(1, os.cpu_count() or 1)


def make_session(model: Path | bytes, threads: int | None = None) -> Any:
    """Create an ONNX Runtime CPU session sized to the CPUs this process may use.

    A model given as a path must have been checked (:func:`content_problems`); one
    given as bytes may not keep tensors in other files at all.

    Raises:
        PackError: ``model`` is bytes of a model with external data.
    """
    if isinstance(model, bytes):
        try:
            refs = external_refs(model)
        except OnnxFormatError:
            refs = []  # not ONNX at all: the runtime says so itself
        if refs:
            # From bytes, ONNX Runtime resolves external data against the working directory.
            raise PackError(
                "this ONNX model keeps tensors in other files (external data); embed them "
                "first: onnx.save(onnx.load(path), path) writes them into the model"
            )
    import onnxruntime as ort

    options = ort.SessionOptions()
    # Two threads fighting over one core cost throughput; size the pool from the affinity mask.
    options.intra_op_num_threads = threads or usable_cpus()
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    source = str(model) if isinstance(model, Path) else model
    return ort.InferenceSession(source, sess_options=options, providers=["CPUExecutionProvider"])


def _spec(arg: Any) -> TensorSpec:
    dtype = ONNX_TYPES.get(arg.type)
    if dtype is None:
        raise PackError(
            f"ONNX value {arg.name!r} has type {arg.type}, which modelport cannot serve "
            "(only plain tensors; convert sequences and maps to tensors)"
        )
    shape = arg.shape if isinstance(arg.shape, list) else []
    return TensorSpec(
        arg.name, dtype, tuple(d if isinstance(d, int) and d >= 0 else -1 for d in shape)
    )


def session_signature(session: Any) -> Signature:
    """Read the signature of a loaded model from its graph (symbolic dimensions become -1)."""
    return Signature(
        tuple(_spec(a) for a in session.get_inputs()),
        tuple(_spec(a) for a in session.get_outputs()),
    )


def strip_zipmap(onnx_bytes: bytes) -> bytes:
    """Replace ZipMap outputs (lists of dicts per row) with the probability tensor they wrap.

    Dictionaries per row are slow to build and awkward to serve; every protocol modelport speaks
    carries plain tensors. Models without ZipMap come back unchanged, byte for byte.
    """
    if b"ZipMap" not in onnx_bytes:
        return onnx_bytes
    try:
        import onnx
        from onnx import TensorProto, helper
    except ImportError:
        raise PackError(
            "this ONNX model returns ZipMap dictionaries; rewriting them as tensors needs the "
            "'onnx' package: pip install 'modelport[sklearn]'"
        ) from None
    model = onnx.load_from_string(onnx_bytes)
    graph = model.graph
    zipmaps = [n for n in graph.node if n.op_type == "ZipMap"]
    if not zipmaps:
        return onnx_bytes
    for node in zipmaps:
        source, target = node.input[0], node.output[0]
        graph.node.remove(node)
        # The tensor the ZipMap consumed now carries the ZipMap's (graph output) name.
        for other in graph.node:
            other.output[:] = [target if o == source else o for o in other.output]
            other.input[:] = [target if i == source else i for i in other.input]
        for i, output in enumerate(graph.output):
            if output.name == target:
                graph.output.remove(output)
                graph.output.insert(
                    i, helper.make_tensor_value_info(target, TensorProto.FLOAT, [None, None])
                )
    return bytes(model.SerializeToString())


class OnnxRunner:
    """Runs an ONNX model with ONNX Runtime."""

    def __init__(self, model_path: Path, threads: int | None = None) -> None:
        self.session = make_session(model_path, threads)
        self.output_names = [o.name for o in self.session.get_outputs()]

    def predict(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run the model; inputs already match the signature."""
        values = self.session.run(self.output_names, dict(inputs))
        return dict(zip(self.output_names, values, strict=True))


def runtime_requirements() -> list[str]:
    """The pinned packages an ONNX package needs at run time, as installed here."""
    import onnxruntime

    return [f"numpy=={np.__version__}", f"onnxruntime=={onnxruntime.__version__}"]


def stage_onnx(
    onnx_bytes: bytes,
    example: Any,
    *,
    default_name: str,
    settings: Mapping[str, Any] | None = None,
    checked_example: dict[str, np.ndarray] | None = None,
) -> Staged:
    """Stage an ONNX model: signature from the graph, refined and checked by the example."""
    onnx_bytes = strip_zipmap(onnx_bytes)
    try:
        session = make_session(onnx_bytes, threads=1)
    except Exception as exc:
        raise PackError(f"ONNX Runtime cannot load this model: {exc}") from None
    signature = session_signature(session)
    arrays = checked_example
    if arrays is None and example is not None:
        arrays = resolve_example(example, signature)
    if arrays is not None:
        signature = refine(signature, arrays)
        arrays = signature.enforce(arrays)
        try:
            session.run(None, arrays)
        except Exception as exc:
            raise PackError(f"the model fails on the example: {exc}") from None
    return Staged(
        flavor="onnx",
        settings={"model": "model.onnx", **(settings or {})},
        signature=signature,
        files={"model.onnx": onnx_bytes},
        example=arrays,
        requirements=runtime_requirements(),
        default_name=default_name,
    )


def _is_model_proto(model: Any) -> bool:
    return type(model).__name__ == "ModelProto" and hasattr(model, "SerializeToString")


def _accepts(model: Any) -> bool:
    is_file = isinstance(model, Path) and model.suffix == ".onnx" and model.is_file()
    return is_file or _is_model_proto(model)


def _stage(model: Any, request: PackRequest) -> Staged:
    if isinstance(model, Path):
        return stage_onnx(model.read_bytes(), request.example, default_name=model.stem)
    graph_name = getattr(getattr(model, "graph", None), "name", "") or "model"
    return stage_onnx(model.SerializeToString(), request.example, default_name=graph_name)


def _open(root: Path, manifest: Manifest, threads: int | None) -> OnnxRunner:
    return OnnxRunner(root / str(manifest.flavor.settings["model"]), threads)


def content_problems(manifest: Manifest, open_file: FileOpener) -> list[str]:
    """Every external-data location of the model must be a file of the package (:mod:`.onnx_refs`).

    Checked by verify and by every load (:func:`~modelport.model_format.package.open_package`):
    no runtime sees a model that reads other files.
    """
    model = str(manifest.flavor.settings["model"])
    with open_file(model) as (fh, size):
        return external_data_problems(fh, size, model, manifest.files)


ONNX = FlavorEntry(
    name="onnx",
    runs_code=False,
    required=("model",),
    file_settings=("model",),
    source=PackSource("onnx", _accepts, _stage),
    open=_open,
    content_problems=content_problems,
)
