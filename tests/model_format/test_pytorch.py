"""PyTorch models exported to ONNX at pack time: modules, TorchScript, torch.export programs.

Real torch (the CPU build), the real exporters: the dynamo one for modules and programs, the
legacy one for TorchScript. Each package must take any batch size and answer as the module does.
"""

from __future__ import annotations

import json
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import modelport
from modelport.errors import ConversionMismatchError, ModelportWarning, PackError

torch = pytest.importorskip("torch")
nn = torch.nn
MODELPORT = str(Path(sys.executable).parent / "modelport")


class MLP(nn.Module):
    def __init__(self, width: int = 16) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(4, width), nn.ReLU(), nn.Dropout(0.3), nn.Linear(width, 3)
        )

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.net(features), dim=-1)


class SmallCNN(nn.Module):
    """Conv, batch norm, pooling: returns logits and probabilities (a tuple)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.norm = nn.BatchNorm2d(4)
        self.head = nn.Linear(4 * 4 * 4, 2)

    def forward(self, image: Any) -> Any:
        x = nn.functional.max_pool2d(torch.relu(self.norm(self.conv(image))), 2)
        logits = self.head(x.flatten(1))
        return logits, torch.softmax(logits, dim=-1)


class TwoInputs(nn.Module):
    """Inputs named by ``forward``; a dict of outputs keeps its keys."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(3, 1)

    def forward(self, values: Any, weights: Any) -> Any:
        return {"score": self.linear(values * weights), "total": (values * weights).sum(dim=1)}


@pytest.fixture(scope="module")
def rng() -> np.random.Generator:
    return np.random.default_rng(7)


def torch_answer(module: Any, *arrays: np.ndarray) -> Any:
    with torch.no_grad():
        return module(*(torch.from_numpy(a) for a in arrays))


def assert_answers_as(model: Any, package: Any, x: np.ndarray, atol: float = 1e-5) -> None:
    """The package's ``output`` on ``x`` is the module's, within ``atol``."""
    np.testing.assert_allclose(
        package.predict(x)["output"], torch_answer(model, x).numpy(), atol=atol
    )


def trained_cnn() -> SmallCNN:
    """A CNN whose batch norm has running statistics (a few training steps in train mode)."""
    torch.manual_seed(0)
    model = SmallCNN()
    with torch.no_grad():
        for _ in range(3):
            model(torch.randn(8, 1, 8, 8))  # updates the running mean and variance
    return model.eval()


def test_mlp_packs_with_a_dynamic_batch(rng: np.random.Generator, tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = MLP().eval()
    example = rng.normal(size=(5, 4))  # float64: fed to both sides as float32
    package = modelport.pack(model, tmp_path / "mlp.mport", example=example)
    try:
        record = package.manifest.flavor.settings["converted_from"]
        assert record["library"].startswith("torch==")
        assert "dynamo exporter" in record["converter"] and "onnxscript==" in record["converter"]
        assert record["estimator"].endswith(".MLP")
        assert record["opset"] == {"": 18}
        assert record["rows_checked"] == 5
        assert 0.0 <= record["max_abs_diff"]["output"] <= 1e-4
        (spec,) = package.manifest.signature.inputs
        assert (spec.name, spec.dtype, spec.shape) == ("features", "float32", (-1, 4))
        for rows in (1, 2, 9):
            x = rng.normal(size=(rows, 4)).astype(np.float32)
            got = package.predict(x)["output"]
            np.testing.assert_allclose(got, torch_answer(model, x).numpy(), atol=1e-5)
        # One file: the weights are inside the ONNX model, no .onnx.data beside it.
        assert sorted(package.manifest.files) == ["example.json", "model.onnx"]
        assert not any("torch" in r for r in package.manifest.requirements)
    finally:
        package.close()


def test_cnn_from_a_one_row_example_takes_other_batch_sizes(
    rng: np.random.Generator, tmp_path: Path
) -> None:
    model = trained_cnn()
    example = rng.normal(size=(1, 1, 8, 8)).astype(np.float32)
    package = modelport.pack(model, tmp_path / "cnn", example=example)
    try:
        assert [o.name for o in package.manifest.signature.outputs] == ["output_0", "output_1"]
        assert package.manifest.signature.inputs[0].shape == (-1, 1, 8, 8)
        for rows in (1, 4):
            x = rng.normal(size=(rows, 1, 8, 8)).astype(np.float32)
            logits, probabilities = torch_answer(model, x)
            got = package.predict(x)
            np.testing.assert_allclose(got["output_0"], logits.numpy(), atol=1e-5)
            np.testing.assert_allclose(got["output_1"], probabilities.numpy(), atol=1e-5)
    finally:
        package.close()


def test_a_module_in_train_mode_is_packed_in_eval_mode_with_a_warning(
    rng: np.random.Generator, tmp_path: Path
) -> None:
    model = trained_cnn().train()
    x = rng.normal(size=(3, 1, 8, 8)).astype(np.float32)
    with pytest.warns(ModelportWarning, match="train mode; it is packed in eval mode"):
        package = modelport.pack(model, tmp_path / "cnn", example=x)
    try:
        assert model.training  # the caller's module is left as it was
        model.eval()
        np.testing.assert_allclose(
            package.predict(x)["output_1"], torch_answer(model, x)[1].numpy(), atol=1e-5
        )
    finally:
        package.close()


def test_inputs_are_named_by_forward_and_dict_outputs_by_their_keys(
    rng: np.random.Generator, tmp_path: Path
) -> None:
    torch.manual_seed(1)
    model = TwoInputs().eval()
    values = rng.normal(size=(4, 3)).astype(np.float32)
    weights = rng.uniform(size=(4, 3)).astype(np.float32)
    # A tuple in forward's order, or a mapping by name: the same package.
    by_order = modelport.pack(model, tmp_path / "a", example=(values, weights))
    by_name = modelport.pack(model, tmp_path / "b", example={"weights": weights, "values": values})
    try:
        for package in (by_order, by_name):
            assert [s.name for s in package.manifest.signature.inputs] == ["values", "weights"]
            assert {o.name for o in package.manifest.signature.outputs} == {"score", "total"}
            got = package.predict({"values": values, "weights": weights})
            want = torch_answer(model, values, weights)
            np.testing.assert_allclose(got["score"], want["score"].numpy(), atol=1e-5)
            np.testing.assert_allclose(got["total"], want["total"].numpy(), atol=1e-5)
    finally:
        by_order.close()
        by_name.close()


def test_an_example_naming_another_input_is_refused(tmp_path: Path) -> None:
    with pytest.raises(PackError, match=r"forward takes \['values', 'weights'\]"):
        modelport.pack(TwoInputs(), tmp_path / "x", example={"value": np.zeros((2, 3))})
    with pytest.raises(PackError, match="needs an example input"):
        modelport.pack(TwoInputs(), tmp_path / "x")
    assert list(tmp_path.iterdir()) == []


def test_an_exported_program_packs_with_its_own_example_inputs(
    rng: np.random.Generator, tmp_path: Path
) -> None:
    torch.manual_seed(2)
    model = MLP().eval()
    program = torch.export.export(model, (torch.randn(3, 4),))  # exported with a fixed batch
    package = modelport.pack(program, tmp_path / "ep")
    try:
        record = package.manifest.flavor.settings["converted_from"]
        assert record["estimator"].endswith("ExportedProgram")
        assert record["rows_checked"] == 3  # the program's own example inputs
        assert package.manifest.signature.inputs[0].shape == (-1, 4)  # re-exported, batch free
        x = rng.normal(size=(6, 4)).astype(np.float32)
        assert_answers_as(model, package, x, atol=1e-5)
    finally:
        package.close()


class FixedBatch(nn.Module):
    def forward(self, x: Any) -> Any:
        return x.reshape(3, 2, 2).sum(-1)


def test_a_program_bound_to_its_batch_is_packed_with_it_and_a_warning(tmp_path: Path) -> None:
    program = torch.export.export(FixedBatch(), (torch.randn(3, 4),))
    with pytest.warns(ModelportWarning, match="cannot take another batch size"):
        package = modelport.pack(program, tmp_path / "fixed")
    try:
        assert package.manifest.signature.inputs[0].shape == (3, 4)
    finally:
        package.close()


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [MODELPORT, *args], capture_output=True, text=True, timeout=300, check=False
    )


def test_pt_and_pt2_files_pack_from_the_command_line(
    rng: np.random.Generator, tmp_path: Path
) -> None:
    torch.manual_seed(3)
    model = MLP().eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # torch.jit is deprecated upstream
        torch.jit.save(torch.jit.script(model), tmp_path / "mlp.pt")
    torch.export.save(torch.export.export(model, (torch.randn(3, 4),)), tmp_path / "mlp.pt2")
    x = rng.normal(size=(5, 4))
    example = tmp_path / "example.json"
    example.write_text(json.dumps({"inputs": {"features": x.tolist()}}))

    for source, exporter, opset in (("mlp.pt", "legacy", 17), ("mlp.pt2", "dynamo", 18)):
        out = tmp_path / f"{source}.mport"
        done = run_cli("pack", str(tmp_path / source), "-o", str(out), "--example", str(example))
        assert done.returncode == 0, done.stderr
        assert "parity: max abs difference output" in done.stdout
        assert "Warning" not in done.stderr  # the legacy exporter's deprecations stay inside
        package = modelport.load(out)
        try:
            record = package.manifest.flavor.settings["converted_from"]
            assert exporter in record["converter"]
            assert record["opset"] == {"": opset}
            assert record["source_file"] == source
            assert package.manifest.signature.inputs[0].shape == (-1, 4)
            y = rng.normal(size=(7, 4)).astype(np.float32)
            np.testing.assert_allclose(
                package.predict(y)["output"], torch_answer(model, y).numpy(), atol=1e-5
            )
        finally:
            package.close()


def test_a_pickled_module_file_is_refused_with_what_to_do(tmp_path: Path) -> None:
    torch.save(MLP().state_dict(), tmp_path / "weights.pt")
    done = run_cli("pack", str(tmp_path / "weights.pt"), "-o", str(tmp_path / "out"))
    assert done.returncode == 1
    assert "not a TorchScript archive" in done.stderr
    assert "torch.export.save" in done.stderr
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "out").exists()


def test_a_conversion_beyond_the_tolerance_fails_naming_output_and_row(
    rng: np.random.Generator, tmp_path: Path
) -> None:
    torch.manual_seed(4)
    model = MLP(width=64).eval()
    x = rng.normal(size=(16, 4)) * 10
    package = modelport.pack(model, tmp_path / "ok", example=x)
    diff = package.manifest.flavor.settings["converted_from"]["max_abs_diff"]["output"]
    package.close()
    assert diff > 0  # float32 arithmetic in another order: tiny, but there
    with pytest.raises(ConversionMismatchError) as caught:
        modelport.pack(model, tmp_path / "strict", example=x, tolerance=diff / 2)
    assert "'output' max abs difference" in str(caught.value)
    assert "at example row " in str(caught.value)
    assert not (tmp_path / "strict").exists()


MISSING = """
import sys
sys.modules["onnxscript"] = None  # as if it were not installed
from modelport.cli.main import main
sys.exit(main(["pack", {source!r}, "-o", {out!r}]))
"""


def test_without_onnxscript_the_error_names_the_extra(tmp_path: Path) -> None:
    torch.export.save(torch.export.export(MLP(), (torch.randn(3, 4),)), tmp_path / "m.pt2")
    code = MISSING.format(source=str(tmp_path / "m.pt2"), out=str(tmp_path / "out"))
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 1, done.stderr
    assert "pip install 'modelport[torch]'" in done.stderr
    assert "'onnxscript'" in done.stderr
    assert not (tmp_path / "out").exists()


def test_a_script_module_packs_in_process_with_warnings_as_errors(
    rng: np.random.Generator, tmp_path: Path
) -> None:
    # pytest runs with -W error (pyproject): a deprecation warning of the legacy exporter
    # escaping modelport would fail this pack.
    torch.manual_seed(5)
    model = MLP().eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # torch.jit.script's own
        scripted = torch.jit.script(model)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        package = modelport.pack(scripted, tmp_path / "scripted", example=rng.normal(size=(3, 4)))
    try:
        record = package.manifest.flavor.settings["converted_from"]
        assert "legacy TorchScript exporter" in record["converter"]
        assert package.manifest.signature.inputs[0].name == "features"
        x = rng.normal(size=(2, 4)).astype(np.float32)
        assert_answers_as(model, package, x, atol=1e-5)
    finally:
        package.close()


def test_each_submodule_keeps_its_own_mode(rng: np.random.Generator, tmp_path: Path) -> None:
    model = trained_cnn().train()
    model.norm.eval()  # a frozen batch norm inside a training model
    x = rng.normal(size=(2, 1, 8, 8)).astype(np.float32)
    with pytest.warns(ModelportWarning, match="train mode"):
        modelport.pack(model, tmp_path / "frozen", example=x).close()
    assert model.training and model.conv.training
    assert not model.norm.training

    model.eval()
    model.conv.train()  # only a submodule in train mode: still packed in eval mode
    with pytest.warns(ModelportWarning, match="train mode"):
        modelport.pack(model, tmp_path / "partly", example=x).close()
    assert model.conv.training and not model.training


def test_a_float64_module_takes_float64_inputs(rng: np.random.Generator, tmp_path: Path) -> None:
    torch.manual_seed(6)
    model = nn.Linear(3, 2).double().eval()
    x = rng.normal(size=(4, 3))
    package = modelport.pack(model, tmp_path / "double", example=x)
    try:
        assert package.manifest.signature.inputs[0].dtype == "float64"
        assert_answers_as(model, package, x, atol=1e-12)
    finally:
        package.close()


class Nested(nn.Module):
    def forward(self, x: Any) -> Any:
        return x, (x * 2, x * 3)


class Starred(nn.Module):
    def forward(self, *xs: Any) -> Any:
        return xs[0]


class Infinite(nn.Module):
    def forward(self, x: Any) -> Any:
        return torch.log(torch.relu(x))  # -inf wherever x <= 0


def test_outputs_and_inputs_it_cannot_name_are_refused(tmp_path: Path) -> None:
    x = np.ones((2, 3), dtype=np.float32)
    with pytest.raises(PackError, match=r"output_1 is not a tensor \(nested or None\)"):
        modelport.pack(Nested().eval(), tmp_path / "nested", example=x)
    with pytest.raises(PackError, match="no named positional parameters"):
        modelport.pack(Starred().eval(), tmp_path / "starred", example=x)
    assert list(tmp_path.iterdir()) == []


def test_infinities_on_both_sides_agree(rng: np.random.Generator, tmp_path: Path) -> None:
    x = rng.normal(size=(6, 3)).astype(np.float32)
    package = modelport.pack(Infinite().eval(), tmp_path / "inf", example=x)
    try:
        assert package.manifest.flavor.settings["converted_from"]["max_abs_diff"]["output"] < 1e-6
        assert np.isinf(package.predict(x)["output"]).any()
    finally:
        package.close()
