"""Every test runs in ``make test``: each file of ``tests/`` is in its serial or parallel part."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _paths(makefile: str, name: str) -> list[str]:
    found = re.search(rf"^{name} := (.*?)(?<!\\)\n", makefile, flags=re.MULTILINE | re.DOTALL)
    assert found is not None, f"no {name} in the Makefile"
    words = found.group(1).replace("\\\n", " ").split()
    return [w for w in words if not w.startswith("$(")]


def test_every_test_file_is_in_one_part_of_make_test() -> None:
    makefile = (ROOT / "Makefile").read_text("utf-8")
    parallel = _paths(makefile, "PARALLEL_TESTS")
    serial = _paths(makefile, "SERIAL_TESTS") + _paths(makefile, "ALONE_TESTS")
    alone = set(_paths(makefile, "ALONE_TESTS"))

    def covered(rel: str, parts: list[str]) -> bool:
        return any(rel == p or rel.startswith(p.rstrip("/") + "/") for p in parts)

    missing, twice = [], []
    for path in sorted((ROOT / "tests").rglob("test_*.py")):
        rel = path.relative_to(ROOT).as_posix()
        in_parallel = covered(rel, parallel) and rel not in alone
        in_serial = covered(rel, serial) and not (covered(rel, parallel) and rel not in alone)
        if not (in_parallel or in_serial):
            missing.append(rel)
        if in_parallel and rel in alone:
            twice.append(rel)
    assert not missing, f"in neither part of make test: {missing}"
    assert not twice, f"in both parts of make test: {twice}"
