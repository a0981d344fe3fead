"""ONNX external data: a package's model may read only files of the package.

Every hostile package here is real and self-consistent (correct digests, valid manifest), so only
the external-data check can refuse it; the model computes ``Y = X + W`` with ``W`` read from the
external file, so a prediction would return that file's bytes.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

import modelport
from modelport.cli.main import main
from modelport.errors import PackageError, PackError
from modelport.model_format.archive import file_digest, write_archive
from modelport.model_format.manifest import MANIFEST_NAME, Flavor, Manifest
from modelport.model_format.signature import Signature, TensorSpec
from process_helpers import serve_refusal

SECRET = b"TOPSECRET-BYTES!"  # 16 bytes: four int32


def _external(name: str, location: str) -> TensorProto:
    tensor = TensorProto(name=name, data_type=TensorProto.INT32, dims=[4])
    tensor.data_location = TensorProto.EXTERNAL
    entry = tensor.external_data.add()
    entry.key, entry.value = "location", location
    return tensor


def _model(graph: onnx.GraphProto) -> onnx.ModelProto:
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def adder(location: str) -> onnx.ModelProto:
    """``Y = X + W``, ``W`` (int32 [4]) read from ``location``."""
    graph = helper.make_graph(
        [helper.make_node("Add", ["X", "W"], ["Y"])],
        "adder",
        [helper.make_tensor_value_info("X", TensorProto.INT32, [4])],
        [helper.make_tensor_value_info("Y", TensorProto.INT32, [4])],
        initializer=[_external("W", location)],
    )
    return _model(graph)


def write_package(
    root: Path, model: onnx.ModelProto, extra: dict[str, bytes] | None = None
) -> Path:
    """A package directory holding ``model`` and ``extra``, with a correct manifest."""
    root.mkdir(parents=True)
    (root / "model.onnx").write_bytes(model.SerializeToString())
    for rel, data in (extra or {}).items():
        (root / rel).write_bytes(data)
    files = {p.name: file_digest(p) for p in root.iterdir()}
    manifest = Manifest(
        name="hostile",
        version="1",
        flavor=Flavor("onnx", {"model": "model.onnx"}),
        signature=Signature((TensorSpec("X", "int32", (4,)),), (TensorSpec("Y", "int32", (4,)),)),
        files=files,
    )
    (root / MANIFEST_NAME).write_bytes(manifest.to_json())
    return root


def as_archive(root: Path) -> Path:
    out = root.with_suffix(".mport")
    write_archive(root, modelport.verify(root).manifest, out)
    return out


@pytest.fixture
def secret(tmp_path: Path) -> Path:
    path = tmp_path / "secret.bin"
    path.write_bytes(SECRET)
    return path


def hostile_cases(tmp_path: Path, secret: Path) -> dict[str, Path]:
    relative = "../" * 8 + secret.as_posix().lstrip("/")  # climbs out, lands on the secret
    return {
        "relative": write_package(tmp_path / "relative", adder(relative)),
        "absolute": write_package(tmp_path / "absolute", adder(str(secret))),
        # Inside the package and always there, but never listed: the manifest itself.
        "unlisted": write_package(tmp_path / "unlisted", adder(MANIFEST_NAME)),
    }


@pytest.mark.parametrize("case", ["relative", "absolute", "unlisted"])
@pytest.mark.parametrize("form", ["directory", "archive"])
def test_verify_reports_external_data_outside_the_package(
    tmp_path: Path, secret: Path, case: str, form: str
) -> None:
    root = hostile_cases(tmp_path, secret)[case]
    path = root if form == "directory" else as_archive(root)
    report = modelport.verify(path)
    assert not report.ok
    assert len(report.problems) == 1
    problem = report.problems[0]
    assert problem.startswith("model.onnx: tensor 'W' reads external data from")
    why = "does not list" if case == "unlisted" else "outside the package"
    assert why in problem


@pytest.mark.parametrize("case", ["relative", "absolute", "unlisted"])
@pytest.mark.parametrize("form", ["directory", "archive"])
def test_load_refuses_external_data_outside_the_package(
    tmp_path: Path, secret: Path, case: str, form: str
) -> None:
    root = hostile_cases(tmp_path, secret)[case]
    path = root if form == "directory" else as_archive(root)
    with pytest.raises(PackageError, match="reads external data from") as info:
        modelport.load(path)
    assert SECRET.decode() not in str(info.value)


@pytest.mark.parametrize("case", ["relative", "absolute"])
def test_verify_and_serve_commands_refuse_it_with_exit_code_4(
    tmp_path: Path, secret: Path, case: str, capsys: pytest.CaptureFixture[str]
) -> None:
    root = hostile_cases(tmp_path, secret)[case]
    assert main(["verify", str(root)]) == 4
    assert "outside the package" in capsys.readouterr().err
    # The server refuses before any worker starts: it returns instead of serving.
    assert serve_refusal(["serve", str(as_archive(root)), "--port", "0"]) == 4
    err = capsys.readouterr().err
    assert "outside the package" in err and "Traceback" not in err


def test_predict_command_refuses_it(
    tmp_path: Path, secret: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = hostile_cases(tmp_path, secret)["relative"]
    body = tmp_path / "in.json"
    body.write_text('{"inputs": {"X": [0, 0, 0, 0]}}')
    assert main(["predict", str(root), "-i", str(body)]) == 4
    captured = capsys.readouterr()
    assert "outside the package" in captured.err
    assert "TOPSECRET" not in captured.out + captured.err


@pytest.mark.parametrize("form", ["directory", "archive"])
def test_external_data_listed_in_the_package_still_works(tmp_path: Path, form: str) -> None:
    weights = np.array([1, 2, 3, 4], dtype="<i4")
    root = write_package(tmp_path / "ok", adder("weights.bin"), {"weights.bin": weights.tobytes()})
    path = root if form == "directory" else as_archive(root)
    assert modelport.verify(path).ok
    with modelport.load(path) as package:
        out = package.predict({"X": np.array([10, 10, 10, 10], dtype=np.int32)})
    assert out["Y"].tolist() == [11, 12, 13, 14]


def test_nested_subgraphs_attributes_and_sparse_initializers_are_read(tmp_path: Path) -> None:
    """Wherever a tensor can sit: If branches (any depth), Constant attributes, sparse data."""
    inner = helper.make_graph(
        [helper.make_node("Constant", [], ["Z"], value=_external("deep", "/etc/passwd"))],
        "inner",
        [],
        [helper.make_tensor_value_info("Z", TensorProto.INT32, [4])],
    )
    middle = helper.make_graph(
        [helper.make_node("If", ["c"], ["Z"], then_branch=inner, else_branch=inner)],
        "middle",
        [],
        [helper.make_tensor_value_info("Z", TensorProto.INT32, [4])],
        initializer=[_external("mid", "../mid.bin")],
    )
    sparse = helper.make_sparse_tensor(
        _external("sparse_values", "../values.bin"),
        helper.make_tensor("sparse_indices", TensorProto.INT64, [1], [0]),
        [4],
    )
    graph = helper.make_graph(
        [helper.make_node("If", ["c"], ["Y"], then_branch=middle, else_branch=middle)],
        "outer",
        [helper.make_tensor_value_info("c", TensorProto.BOOL, [])],
        [helper.make_tensor_value_info("Y", TensorProto.INT32, [4])],
        sparse_initializer=[sparse],
    )
    from modelport.model_format.flavors.onnx_refs import ExternalRef, external_refs

    model = _model(graph)
    refs = set(external_refs(model.SerializeToString()))
    assert refs == {
        ExternalRef("deep", "/etc/passwd"),
        ExternalRef("mid", "../mid.bin"),
        ExternalRef("sparse_values", "../values.bin"),
    }
    report = modelport.verify(write_package(tmp_path / "nested", model))
    assert len(report.problems) == 3
    assert all("outside the package" in p for p in report.problems)


def test_a_model_without_external_data_has_no_references(tiny_onnx: onnx.ModelProto) -> None:
    from modelport.model_format.flavors.onnx_refs import external_refs

    assert external_refs(tiny_onnx.SerializeToString()) == []


@pytest.mark.parametrize(
    "data",
    [b"\x3a\x05abc", b"\x3a\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01", b"\x0f", b"\x3a"],
    ids=["truncated", "long-varint", "bad-wire-type", "no-length"],
)
def test_malformed_bytes_are_a_format_error(data: bytes) -> None:
    from modelport.model_format.flavors.onnx_refs import OnnxFormatError, external_refs

    with pytest.raises(OnnxFormatError):
        external_refs(data)


def test_deep_nesting_is_refused_not_recursed() -> None:
    graph = b""
    for _ in range(200):  # graph -> node -> attribute -> graph ...
        attribute = b"\x32" + _len(graph) + graph  # AttributeProto.g = 6
        node = b"\x2a" + _len(attribute) + attribute  # NodeProto.attribute = 5
        graph = b"\x0a" + _len(node) + node  # GraphProto.node = 1
    model = b"\x3a" + _len(graph) + graph  # ModelProto.graph = 7
    from modelport.model_format.flavors.onnx_refs import OnnxFormatError, external_refs

    with pytest.raises(OnnxFormatError, match="nested too deeply"):
        external_refs(model)


def _len(data: bytes) -> bytes:
    n, out = len(data), bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def test_pack_refuses_a_model_with_external_data(
    tmp_path: Path, secret: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """From bytes, ONNX Runtime resolves a location against the working directory: any file."""
    monkeypatch.chdir(secret.parent)
    out = tmp_path / "packed.mport"
    with pytest.raises(PackError, match="external data"):
        modelport.pack(adder(secret.name), out, example={"X": np.zeros(4, dtype=np.int32)})
    assert not out.exists()


def _both_walks(data: bytes, kind: str) -> tuple[object, object]:
    """What the stream walker and the in-memory walker make of one message: refs or an error."""
    import io

    from modelport.model_format.flavors import onnx_refs

    outcomes: list[object] = []
    for walk in ("stream", "memory"):
        found: list[onnx_refs.ExternalRef] = []
        try:
            if walk == "stream":
                stream = onnx_refs._Stream(io.BytesIO(data), len(data))
                onnx_refs._walk(stream, kind, len(data), 0, found)
            else:
                onnx_refs._walk_bytes(data, 0, len(data), kind, 0, found)
        except onnx_refs.OnnxFormatError:
            outcomes.append("format error")
        else:
            outcomes.append(found)
    return outcomes[0], outcomes[1]


def _nested_node() -> bytes:
    """A node whose attributes hold a tensor with external data, a subgraph, and numbers."""
    inner = helper.make_graph(
        [helper.make_node("Constant", [], ["Z"], value=_external("deep", "../x.bin"))],
        "inner",
        [],
        [helper.make_tensor_value_info("Z", TensorProto.INT32, [4])],
    )
    node = helper.make_node(
        "If", ["c"], ["Y"], then_branch=inner, else_branch=inner, ints=[1, 300, 2**40], f=1.5
    )
    node.attribute.append(helper.make_attribute("floats", [0.5] * 40))
    return node.SerializeToString()


def test_the_in_memory_walk_reads_what_the_stream_walk_reads() -> None:
    from hypothesis import given, settings
    from hypothesis import strategies as st

    node = _nested_node()
    stream, memory = _both_walks(node, "node")
    assert stream == memory
    assert len(memory) == 2  # type: ignore[arg-type]

    @settings(max_examples=300, deadline=None, derandomize=True)
    @given(
        st.one_of(
            st.binary(max_size=64),
            st.tuples(st.integers(0, len(node) - 1), st.integers(0, 255)).map(
                lambda flip: node[: flip[0]] + bytes([flip[1]]) + node[flip[0] + 1 :]
            ),
            st.integers(0, len(node)).map(lambda cut: node[:cut]),
        )
    )
    def same(data: bytes) -> None:
        stream, memory = _both_walks(data, "node")
        assert stream == memory

    same()


def test_a_tree_ensemble_node_is_read_alike_by_both_walks() -> None:
    """A forest's node is MBs of unpacked numbers; both walks agree on it (no references)."""
    from skl2onnx import to_onnx
    from sklearn.ensemble import RandomForestClassifier

    rng = np.random.default_rng(0)
    x = rng.normal(size=(2000, 8)).astype(np.float32)
    y = (rng.random(2000) > 0.5).astype(np.int64)  # noise: deep trees
    model = to_onnx(RandomForestClassifier(n_estimators=10, random_state=0).fit(x, y), x[:1])
    forest = max(model.graph.node, key=lambda n: n.ByteSize()).SerializeToString()
    assert len(forest) > 100_000
    assert _both_walks(forest, "node") == ([], [])
