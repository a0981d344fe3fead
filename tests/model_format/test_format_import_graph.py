"""The layout's rules for model_format/, checked on the source: its modules import each other
without a cycle, each imports alone, and flavors/ never reaches back to the packer."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src" / "modelport"
MODEL_FORMAT = SRC / "model_format"
PREFIX = "modelport.model_format"


def module_name(path: Path) -> str:
    return ".".join(path.relative_to(SRC.parent).with_suffix("").parts).removesuffix(".__init__")


MODULES = {module_name(p): p for p in sorted(MODEL_FORMAT.rglob("*.py"))}


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def runtime_imports(path: Path) -> set[str]:
    """The model_format modules a file imports when it runs, at module level or in functions.

    Imports under ``if TYPE_CHECKING:`` are left out: they name types and never execute.
    """
    tree = ast.parse(path.read_text("utf-8"))
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{parent}.{base}" if base else parent
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    # ``from pkg import name`` names a module only when one is called so. Importing
    # ``pkg.sub`` runs ``pkg/__init__.py`` first: an edge, unless ``pkg`` holds this module
    # (a package's own submodules are always imported inside it).
    modules = {m for m in found if m in MODULES}
    own = {".".join(name.split(".")[:i]) for i in range(1, name.count(".") + 1)}
    for module in list(modules):
        parts = module.split(".")
        modules.update(
            parent
            for parent in (".".join(parts[:i]) for i in range(3, len(parts)))
            if parent in MODULES and parent not in own
        )
    modules.discard(name)
    return modules


GRAPH = {name: runtime_imports(path) for name, path in MODULES.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str]:
    """One import cycle as a path of modules (first == last), or [] when there is none."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def walk(node: str) -> list[str]:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt]
            if nxt not in state:
                cycle = walk(nxt)
                if cycle:
                    return cycle
        path.pop()
        state[node] = 2
        return []

    for node in sorted(graph):
        if node not in state:
            cycle = walk(node)
            if cycle:
                return cycle
    return []


def test_model_format_has_no_import_cycle() -> None:
    assert find_cycle(GRAPH) == []


def test_the_cycle_finder_finds_one() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}
    assert find_cycle(graph) == ["a", "b", "c", "a"]


def test_the_walker_sees_nested_imports_and_skips_type_checking() -> None:
    found = runtime_imports(MODEL_FORMAT / "flavors" / "onnx.py")
    assert f"{PREFIX}.flavors.onnx_refs" in found
    assert f"{PREFIX}.flavors.base" in found
    assert f"{PREFIX}.flavors" not in found  # its own package
    assert f"{PREFIX}.manifest" not in found  # named for types only
    assert f"{PREFIX}.flavors" in runtime_imports(MODEL_FORMAT / "sources" / "sklearn.py")


@pytest.mark.parametrize(
    "package", [f"{PREFIX}.flavors", f"{PREFIX}.sources"], ids=lambda p: p.rsplit(".", 1)[1]
)
def test_flavors_and_sources_never_import_the_packer_or_the_loader(package: str) -> None:
    above = {f"{PREFIX}.pack", f"{PREFIX}.package", f"{PREFIX}.archive"}
    for name in (m for m in GRAPH if m == package or m.startswith(package + ".")):
        if name == f"{PREFIX}.flavors.runtime":
            continue  # the loader's side of the flavors: above the manifest by design
        assert GRAPH[name] & above == set(), name


def test_each_module_imports_alone() -> None:
    """For real, each in a fresh interpreter: no module needs another imported first."""
    code = "import importlib, sys\nimportlib.import_module(sys.argv[1])\n"
    for name in MODULES:
        result = subprocess.run(
            [sys.executable, "-c", code, name], capture_output=True, text=True, check=False
        )
        assert result.returncode == 0, (name, result.stderr[-2000:])
