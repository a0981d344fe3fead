"""Fixtures for the package-format tests."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from modelport.model_format.manifest import MANIFEST_NAME


@dataclass(frozen=True)
class PackageParts:
    """A valid package, as bytes: its manifest and every file the manifest lists."""

    manifest: bytes
    files: dict[str, bytes]


@pytest.fixture
def package_parts(pack_tiny: Callable[..., Any]) -> PackageParts:
    """The parts of the tiny ONNX package (``model.onnx``, ``example.json``, the manifest)."""
    package = pack_tiny("parts-source")
    root = Path(package.root)
    files = {rel: (root / rel).read_bytes() for rel in package.manifest.files}
    assert set(files) == {"model.onnx", "example.json"}
    return PackageParts((root / MANIFEST_NAME).read_bytes(), files)
