"""batch/ is not a deployer: it imports the package format (and errors) only, and nothing heavy
until it is used; ``modelport --help`` lists ``batch`` without importing it."""

from __future__ import annotations

import ast
from pathlib import Path

from process_helpers import imports_after

SRC = Path(__file__).resolve().parents[2] / "src" / "modelport"
ALLOWED = ("modelport.batch", "modelport.model_format", "modelport.errors")


def modelport_imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text("utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("modelport"):
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("modelport"))
    return found


def test_batch_imports_the_package_format_only() -> None:
    for path in sorted((SRC / "batch").glob("*.py")):
        for module in modelport_imports(path):
            assert module.startswith(ALLOWED), f"{path.name} imports {module}"


def test_importing_batch_and_the_cli_help_import_nothing_heavy() -> None:
    heavy = ["pyspark", "pyarrow", "pandas", "onnxruntime", "modelport.batch.spark"]
    assert imports_after("import modelport.batch", heavy).imported == set()
    check = imports_after(
        "from modelport.cli.main import main\nmain(['--help'])", [*heavy, "modelport.batch"]
    )
    assert check.imported == set()
    assert "batch" in check.stdout and "Score a file with a package" in check.stdout
